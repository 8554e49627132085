/*
 * auth.c - the authenticator interface: dispatch to the adapter chosen in
 * the configuration, and the pieces every adapter shares.
 *
 * Shared pieces: the constant-time comparison, crypt(3) verification with
 * crypt_r() (each call has its own struct crypt_data, so any number of
 * session threads verify at once without a lock), the dummy hash that an
 * unknown user is verified against, user-name rules, the failed-login
 * delay and the failed-login log line.  Adapters (auth_file.c, auth_pg.c)
 * only look users up.
 *
 * No locks here: the delay is an atomic, the error buffer thread-local.
 */
#include "autoconfig.h"

#include "auth.h"
#include "buf.h"
#include "log.h"

#include <crypt.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The password the dummy hash is made from.  It need not be secret: the
 * result of verifying against the dummy is always thrown away. */
#define AUTH_DUMMY_PHRASE "pluto-dummy-password-never-matches"

static _Thread_local char auth_error_buf[512];
static atomic_uint auth_delay_ms = AUTH_FAIL_DELAY_MS_DEFAULT;

const char *auth_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(auth_error_buf, sizeof(auth_error_buf), fmt, ap);
	va_end(ap);
	return auth_error_buf;
}

int auth_new(const struct pluto_config *config, struct auth **auth_r,
	     const char **error_r)
{
	const struct config_distributor *dist = &config->distributor;

	*auth_r = NULL;
	switch (dist->auth_adapter) {
	case CONFIG_AUTH_FILE:
		if (dist->auth_file.file == NULL) {
			*error_r = auth_error("AuthFile: no File configured");
			return -1;
		}
		return auth_file_new(dist->auth_file.file,
				     dist->auth_file.separator, auth_r,
				     error_r);
	case CONFIG_AUTH_POSTGRES:
#ifdef HAVE_POSTGRESQL
		return auth_pg_new(&dist->auth_postgres, auth_r, error_r);
#else
		*error_r = auth_error(
			"AuthPostgres: this pluto was built without "
			"PostgreSQL support (rebuild with libpq, Debian "
			"package libpq-dev, and configure --with-postgresql)");
		return -1;
#endif
	}
	*error_r = auth_error("unknown AuthAdapter %d",
			      (int)dist->auth_adapter);
	return -1;
}

void auth_free(struct auth **auth)
{
	if (auth == NULL || *auth == NULL)
		return;
	(*auth)->v->deinit(*auth);
	*auth = NULL;
}

const char *auth_adapter_name(const struct auth *auth)
{
	return auth->v->name;
}

enum auth_result auth_check(struct auth *auth, const char *user,
			    size_t user_len, const void *pass, size_t pass_len,
			    struct auth_user *user_r)
{
	enum auth_result ret;

	memset(user_r, 0, sizeof(*user_r));
	ret = auth->v->check(auth, user, user_len, pass, pass_len, user_r);
	if (ret != AUTH_OK)
		memset(user_r, 0, sizeof(*user_r));
	return ret;
}

int auth_probe(struct auth *auth, bool *tls_r, const char **error_r)
{
	if (auth->v->probe == NULL) {
		*error_r = auth_error("%s has no connection to probe",
				      auth->v->name);
		return -1;
	}
	return auth->v->probe(auth, tls_r, error_r);
}

void auth_set_fail_delay_ms(unsigned ms)
{
	atomic_store(&auth_delay_ms, ms);
}

unsigned auth_get_fail_delay_ms(void)
{
	return atomic_load(&auth_delay_ms);
}

void auth_fail_delay(void)
{
	unsigned ms = atomic_load(&auth_delay_ms);
	struct timespec left = {
		.tv_sec = (time_t)(ms / 1000),
		.tv_nsec = (long)(ms % 1000) * 1000000L,
	};
	int saved_errno = errno;

	/* nanosleep() leaves the remaining time in left when a signal
	 * interrupts it, so the delay is never cut short. */
	while (nanosleep(&left, &left) < 0 && errno == EINTR)
		;
	errno = saved_errno;
}

void auth_log_name(char *buf, size_t size, const char *user, size_t user_len)
{
	size_t n = 0, i, shown = user_len;

	if (size == 0)
		return;
	if (shown > AUTH_LOG_NAME_MAX)
		shown = AUTH_LOG_NAME_MAX;
	/* Each input byte takes at most 4 output bytes; keep room for
	 * "...", the closing quote and the NUL. */
	if (n + 1 < size)
		buf[n++] = '"';
	for (i = 0; i < shown && n + 4 + 5 <= size; i++) {
		unsigned char c = (unsigned char)user[i];

		if (c == '"' || c == '\\') {
			buf[n++] = '\\';
			buf[n++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			n += (size_t)snprintf(buf + n, size - n, "\\x%02x", c);
		} else {
			buf[n++] = (char)c;
		}
	}
	if (i < user_len && n + 3 + 2 <= size) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	if (n + 1 < size)
		buf[n++] = '"';
	buf[n] = '\0';
}

void auth_log_failure(const char *user, size_t user_len, const char *peer,
		      enum auth_result result)
{
	char name[AUTH_LOG_NAME_MAX * 4 + 8];

	auth_log_name(name, sizeof(name), user, user_len);
	if (peer == NULL)
		peer = "unknown";
	if (result == AUTH_TEMPFAIL)
		log_warnx("login impossible, authentication backend "
			  "unavailable: user %s peer %s", name, peer);
	else
		log_warnx("login failed: user %s peer %s", name, peer);
}

bool auth_equal_ct(const void *a, size_t a_len, const void *b, size_t b_len)
{
	const unsigned char *pa = a, *pb = b;
	size_t n = a_len > b_len ? a_len : b_len;
	/* volatile keeps the compiler from ending the loop at the first
	 * difference. */
	volatile unsigned char diff = a_len == b_len ? 0 : 1;

	for (size_t i = 0; i < n; i++) {
		/* These branches depend on the lengths only. */
		unsigned char x = i < a_len ? pa[i] : 0;
		unsigned char y = i < b_len ? pb[i] : 0;

		diff = (unsigned char)(diff | (x ^ y));
	}
	return diff == 0;
}

bool auth_name_valid(const char *name, size_t len)
{
	if (len == 0 || len > AUTH_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c == 0x7f || c == '/')
			return false;
	}
	return true;
}

bool auth_is_hash(const char *stored)
{
	return stored[0] == '$';
}

/* crypt_r() of phrase with setting into out (CRYPT_OUTPUT_SIZE bytes).
 * Returns 0, or -1 when crypt(3) refuses setting or memory runs out. */
static int auth_crypt(const char *phrase, const char *setting, char *out,
		      size_t out_size)
{
	/* struct crypt_data is tens of KiB: too big for a session
	 * thread's stack. */
	struct crypt_data *data = calloc(1, sizeof(*data));
	const char *res;
	int ret = -1;

	if (data == NULL)
		return -1;
	res = crypt_r(phrase, setting, data);
	/* Failure is NULL or a token starting with '*', depending on the
	 * implementation. */
	if (res != NULL && res[0] != '*' && strlen(res) < out_size) {
		memcpy(out, res, strlen(res) + 1);
		ret = 0;
	}
	buf_wipe(data, sizeof(*data));
	free(data);
	return ret;
}

bool auth_stored_usable(const char *stored)
{
	size_t dollars = 0;

	if (stored[0] == '\0' || strlen(stored) > AUTH_PASSWORD_MAX)
		return false;
	if (!auth_is_hash(stored))
		return true;
	/* A whole hash, not just a setting such as "$6$salt$" that no
	 * password can match: every method's hash has at least three '$'
	 * and ends with a non-empty checksum. */
	for (const char *p = stored; *p != '\0'; p++) {
		if (*p == '$')
			dollars++;
	}
	if (dollars < 3 || stored[strlen(stored) - 1] == '$')
		return false;
#ifdef CRYPT_CHECKSALT_AVAILABLE
	/* Cheap: checks the method, its parameters and the salt without
	 * hashing, which matters for files of many yescrypt users. */
	int rc = crypt_checksalt(stored);

	return rc == CRYPT_SALT_OK || rc == CRYPT_SALT_METHOD_LEGACY;
#else
	{
		char out[CRYPT_OUTPUT_SIZE];

		return auth_crypt("", stored, out, sizeof(out)) == 0;
	}
#endif
}

int auth_verify(const char *stored, const void *pass, size_t pass_len)
{
	char phrase[AUTH_PASSWORD_MAX + 1];
	char out[CRYPT_OUTPUT_SIZE];
	bool match;

	if (pass_len > AUTH_PASSWORD_MAX || memchr(pass, '\0', pass_len))
		return 0;
	if (!auth_is_hash(stored))
		return auth_equal_ct(stored, strlen(stored), pass, pass_len) ?
		       1 : 0;

	memcpy(phrase, pass, pass_len);
	phrase[pass_len] = '\0';
	if (auth_crypt(phrase, stored, out, sizeof(out)) < 0) {
		buf_wipe(phrase, sizeof(phrase));
		return -1;
	}
	match = auth_equal_ct(out, strlen(out), stored, strlen(stored));
	buf_wipe(phrase, sizeof(phrase));
	buf_wipe(out, sizeof(out));
	return match ? 1 : 0;
}

char *auth_dummy_hash(const char *like, const char **error_r)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	char out[CRYPT_OUTPUT_SIZE];
	const char *use = like;
	char *copy;

	if (like == NULL || !auth_is_hash(like)) {
#ifdef CRYPT_GENSALT_IMPLEMENTS_DEFAULT_PREFIX
		/* NULL prefix: the system's default method and cost, with
		 * a random salt. */
		if (crypt_gensalt_rn(NULL, 0, NULL, 0, setting,
				     (int)sizeof(setting)) == NULL) {
			*error_r = auth_error("crypt_gensalt: %s",
					      strerror(errno));
			return NULL;
		}
#else
		/* No default method to ask for: SHA-512, which every
		 * crypt(3) we build on knows. */
		snprintf(setting, sizeof(setting), "$6$plutodummysalt$");
#endif
		use = setting;
	}
	/* A whole hash is a valid setting: same method, cost and salt. */
	if (auth_crypt(AUTH_DUMMY_PHRASE, use, out, sizeof(out)) < 0) {
		*error_r = auth_error("crypt(3) cannot make a dummy hash "
				      "like the stored ones");
		return NULL;
	}
	copy = strdup(out);
	if (copy == NULL)
		*error_r = auth_error("out of memory");
	return copy;
}
