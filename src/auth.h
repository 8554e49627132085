/*
 * auth.h - the authenticator interface of the distributor and its
 * adapters (DESIGN section 6): AuthFile and AuthPostgres.
 *
 * Life cycle.  The distributor calls auth_new() once at start-up, before
 * it serves anyone; AuthFile reads and validates its whole file then, so a
 * broken file stops the start-up with "FILE:LINE: reason".  Every session
 * thread then calls auth_check() concurrently on the same struct auth, for
 * as long as the distributor runs; auth_free() comes after every session
 * thread is joined.
 *
 * What the caller does with the result: AUTH_OK logs the user in; on
 * AUTH_FAILED it calls auth_log_failure() and auth_fail_delay() and then
 * answers NO [AUTHENTICATIONFAILED]; on AUTH_TEMPFAIL (the backend cannot
 * be asked) it logs likewise and answers NO [UNAVAILABLE].
 *
 * Secrets.  Stored passwords are crypt(3) hashes ("$6$...", "$y$...",
 * anything starting with '$') or, discouraged, plaintext.  Every
 * comparison of a secret is constant-time, and a login naming an unknown
 * user does the same work as a wrong password (it verifies against a dummy
 * hash) so that timing does not tell which users exist.  No function here
 * logs a password, and none may be passed to a log function.
 */
#ifndef PLUTO_AUTH_H
#define PLUTO_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Longest user name, in bytes; longer ones never authenticate. */
#define AUTH_NAME_MAX 255
/* Longest password (or stored hash), in bytes; likewise. */
#define AUTH_PASSWORD_MAX 1024

enum auth_result {
	/* Name and password match: *user_r is filled. */
	AUTH_OK = 0,
	/* Unknown user, wrong password, or a name or password that cannot
	 * be valid (too long, control characters, NUL...). */
	AUTH_FAILED,
	/* The backend could not answer (database down, query failed): the
	 * client may try again later.  Already logged by the adapter. */
	AUTH_TEMPFAIL,
};

/* Who logged in. */
struct auth_user {
	uint32_t id;			/* >= 1; picks the worker */
	char name[AUTH_NAME_MAX + 1];	/* canonical name, NUL-terminated */
};

struct auth;

/*
 * Creates the adapter chosen by config->distributor.auth_adapter.  Returns
 * 0 and *auth_r, which the caller frees with auth_free(); or -1 and
 * *error_r, a message in a thread-local buffer valid until the next
 * failing auth call of the same thread (for AuthFile "FILE:LINE: reason";
 * for AuthPostgres in a build without libpq, a message saying so).
 * Only the Distributor sections of config are read; config may be freed
 * afterwards.
 */
int auth_new(const struct pluto_config *config, struct auth **auth_r,
	     const char **error_r);

/* The adapters' own constructors, with the same contract as auth_new();
 * auth_new() calls them, tests may too.  auth_pg_new() exists only when
 * HAVE_POSTGRESQL is defined. */
int auth_file_new(const char *path, char separator, struct auth **auth_r,
		  const char **error_r);
int auth_pg_new(const struct config_auth_postgres *pg, struct auth **auth_r,
		const char **error_r);

/* Frees auth and sets *auth to NULL; no thread may still be inside
 * auth_check().  NULL and *auth == NULL are fine. */
void auth_free(struct auth **auth);

/* "AuthFile" or "AuthPostgres". */
const char *auth_adapter_name(const struct auth *auth);

/*
 * Checks user (user_len bytes, need not be NUL-terminated) and pass
 * (pass_len bytes, may hold any byte) against the backend.  Thread-safe:
 * any number of threads may call it at once.  On AUTH_OK fills *user_r;
 * otherwise leaves *user_r zeroed.  Never sleeps on purpose: the failure
 * delay is the caller's, see auth_fail_delay().
 */
enum auth_result auth_check(struct auth *auth, const char *user,
			    size_t user_len, const void *pass, size_t pass_len,
			    struct auth_user *user_r);

/*
 * AuthPostgres only: takes a database connection as auth_check() would
 * (connecting if none is idle) and says whether it uses TLS.  Returns 0,
 * or -1 and *error_r (thread-local, as for auth_new()) when the database
 * cannot be reached or auth is not AuthPostgres.  For start-up logs and
 * tests.
 */
int auth_probe(struct auth *auth, bool *tls_r, const char **error_r);

/*
 * The failed-login delay: sleeps the calling thread for the configured
 * time (default AUTH_FAIL_DELAY_MS_DEFAULT), restarting after signals.
 * auth_set_fail_delay_ms() changes it for every thread (tests use 0).
 */
#define AUTH_FAIL_DELAY_MS_DEFAULT 1500
void auth_fail_delay(void);
void auth_set_fail_delay_ms(unsigned ms);
unsigned auth_get_fail_delay_ms(void);

/*
 * Logs one failed (AUTH_FAILED) or impossible (AUTH_TEMPFAIL) login at
 * warning level: the user name as given, escaped and truncated, in quotes,
 * and the client's address peer (may be NULL).  Never the password, which
 * is why it takes none.
 */
void auth_log_failure(const char *user, size_t user_len, const char *peer,
		      enum auth_result result);

/* Writes user as shown in logs into buf: '"', printable ASCII with '"'
 * and '\' escaped, other bytes as \xNN, at most AUTH_LOG_NAME_MAX input
 * bytes then "...", '"'.  Always NUL-terminated.  Exposed for tests. */
#define AUTH_LOG_NAME_MAX 64
void auth_log_name(char *buf, size_t size, const char *user, size_t user_len);

/*
 * Shared helpers for the adapters (and their tests).
 */

/* True when a and b hold the same bytes.  The time taken depends only on
 * the larger of the two lengths, never on the contents. */
bool auth_equal_ct(const void *a, size_t a_len, const void *b, size_t b_len);

/* True when name is acceptable as a user name: 1 to AUTH_NAME_MAX bytes,
 * no control character (bytes below 0x20, 0x7f), no NUL, no '/', and not
 * starting with '.'.  Names end up in logs and paths; these rules keep
 * both safe. */
bool auth_name_valid(const char *name, size_t len);

/* True when a stored password is a crypt(3) hash (starts with '$'), as
 * opposed to a plaintext password. */
bool auth_is_hash(const char *stored);

/* True when stored is a hash this system's crypt(3) can verify (or is
 * plaintext).  Used to refuse unusable entries at start-up. */
bool auth_stored_usable(const char *stored);

/*
 * Verifies pass against stored, a crypt(3) hash or a plaintext password,
 * in constant time for a given stored value.  Returns 1 on a match, 0 on
 * a mismatch (including a pass holding NUL or longer than
 * AUTH_PASSWORD_MAX), -1 when crypt(3) fails on stored (unusable hash) or
 * memory runs out.  Thread-safe (crypt_r with its own struct crypt_data).
 */
int auth_verify(const char *stored, const void *pass, size_t pass_len);

/* A hash made at start-up with the same method and cost as like (or the
 * system's default method when like is NULL or plaintext), never matching
 * any password: an unknown user is verified against it.  Returns a
 * malloc'd string or NULL with *error_r (thread-local). */
char *auth_dummy_hash(const char *like, const char **error_r);

/*
 * The adapter interface, for auth_file.c and auth_pg.c only: each adapter
 * embeds struct auth as its first member.
 */
struct auth_vfuncs {
	const char *name;
	enum auth_result (*check)(struct auth *auth, const char *user,
				  size_t user_len, const void *pass,
				  size_t pass_len, struct auth_user *user_r);
	/* NULL when the adapter has no connection to probe. */
	int (*probe)(struct auth *auth, bool *tls_r, const char **error_r);
	void (*deinit)(struct auth *auth);	/* frees everything */
};

struct auth {
	const struct auth_vfuncs *v;
};

/* Formats an error into the thread-local buffer and returns it. */
const char *auth_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

#endif
