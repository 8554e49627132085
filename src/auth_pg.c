/*
 * auth_pg.c - the AuthPostgres adapter: users in a PostgreSQL table, read
 * through libpq.  Built only when configure found libpq (HAVE_POSTGRESQL).
 *
 * The schema pluto expects (see also doc/auth.md):
 *
 *   CREATE TABLE users (
 *           id integer PRIMARY KEY,      -- >= 1, picks the worker
 *           name text UNIQUE NOT NULL,   -- the login name, exact match
 *           password text NOT NULL       -- crypt(3) hash, e.g. $y$...
 *   );
 *
 * and pluto only ever runs "SELECT id, password FROM users WHERE name =
 * $1", with the name as a parameter, never spliced into the SQL.
 *
 * Connections.  A PGconn must not be used by two threads at once, so the
 * adapter keeps a small pool of idle connections: a session thread takes
 * one (or opens a new one when none is idle), runs its one query, and puts
 * it back, or closes it when the pool is full.  A pooled connection may
 * have died since (server restart, idle timeout); a query failing on a
 * broken pooled connection is retried once on a fresh one.  When no
 * connection can be made the login gets AUTH_TEMPFAIL.
 *
 * TLS.  UseTLS = true asks for sslmode=require: the link is encrypted but
 * the server's certificate is not checked.  To check it, set PGSSLMODE to
 * verify-ca or verify-full and PGSSLROOTCERT to the CA file in pluto's
 * environment: with UseTLS they replace "require".  UseTLS = false means
 * sslmode=disable.
 *
 * Lock order: auth_pg.lock is a leaf, held only to move a pointer in or
 * out of the idle pool, never across a libpq call.
 */
#include "autoconfig.h"

#include "auth.h"
#include "buf.h"
#include "log.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Idle connections kept; more may be open while many logins overlap. */
#define AUTH_PG_IDLE_MAX 4
/* Keywords passed to PQconnectdbParams(), plus the closing NULL. */
#define AUTH_PG_PARAMS_MAX 16

static const char auth_pg_query[] =
	"SELECT id, password FROM users WHERE name = $1";

struct auth_pg {
	struct auth auth;

	const char *keys[AUTH_PG_PARAMS_MAX];
	const char *values[AUTH_PG_PARAMS_MAX];
	char *host, *dbname, *user, *password;
	char port[8];
	char *endpoint;		/* "host:port/dbname", for logs */
	char *dummy;		/* what an unknown user is verified against */

	pthread_mutex_t lock;
	PGconn *idle[AUTH_PG_IDLE_MAX];	/* protected by lock */
	size_t n_idle;			/* protected by lock */
};

/* The first line of a libpq message, without its newline, in the
 * thread-local error buffer. */
static const char *auth_pg_message(const char *what, const char *msg)
{
	size_t len = strcspn(msg, "\n");

	return auth_error("%s: %.*s", what, (int)(len > 400 ? 400 : len),
			  msg);
}

static PGconn *auth_pg_connect(struct auth_pg *pg, const char **error_r)
{
	PGconn *conn = PQconnectdbParams(pg->keys, pg->values, 0);

	if (conn == NULL) {
		*error_r = auth_error("%s: out of memory", pg->endpoint);
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		*error_r = auth_pg_message(pg->endpoint, PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* An idle connection (*fresh_r = false) or a new one (*fresh_r = true);
 * NULL and *error_r when none can be made. */
static PGconn *auth_pg_take(struct auth_pg *pg, bool *fresh_r,
			    const char **error_r)
{
	PGconn *conn = NULL;

	pthread_mutex_lock(&pg->lock);
	if (pg->n_idle > 0)
		conn = pg->idle[--pg->n_idle];
	pthread_mutex_unlock(&pg->lock);
	*fresh_r = conn == NULL;
	if (conn != NULL)
		return conn;
	return auth_pg_connect(pg, error_r);
}

static void auth_pg_give(struct auth_pg *pg, PGconn *conn)
{
	if (PQstatus(conn) == CONNECTION_OK &&
	    PQtransactionStatus(conn) == PQTRANS_IDLE) {
		pthread_mutex_lock(&pg->lock);
		if (pg->n_idle < AUTH_PG_IDLE_MAX) {
			pg->idle[pg->n_idle++] = conn;
			conn = NULL;
		}
		pthread_mutex_unlock(&pg->lock);
	}
	if (conn != NULL)
		PQfinish(conn);
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above
 * U+10FFFF.  The database would refuse such a name with an error, which
 * must not look like an outage. */
static bool auth_pg_utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1fu;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0fu;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07u;
			min = 0x10000;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3fu);
		}
		if (cp < min || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

/* Parses users.id as sent by the server (decimal text) into 1 ..
 * UINT32_MAX. */
static bool auth_pg_parse_id(const char *s, uint32_t *id_r)
{
	uint64_t v = 0;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return false;
	}
	if (v == 0)
		return false;
	*id_r = (uint32_t)v;
	return true;
}

/* Runs the query for name on a pooled connection, retrying once on a new
 * connection when the pooled one turns out to be broken.  Returns the
 * result (status checked by the caller), or NULL with *error_r when no
 * connection could be made. */
static PGresult *auth_pg_query_user(struct auth_pg *pg, const char *name,
				    const char **error_r)
{
	const char *params[1] = { name };
	PGresult *res;
	PGconn *conn;
	bool fresh;

	conn = auth_pg_take(pg, &fresh, error_r);
	if (conn == NULL)
		return NULL;
	res = PQexecParams(conn, auth_pg_query, 1, NULL, params, NULL, NULL,
			   0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK &&
	    PQstatus(conn) == CONNECTION_BAD && !fresh) {
		PQclear(res);
		PQfinish(conn);
		log_info("AuthPostgres: connection to %s lost, reconnecting",
			 pg->endpoint);
		conn = auth_pg_connect(pg, error_r);
		if (conn == NULL)
			return NULL;
		res = PQexecParams(conn, auth_pg_query, 1, NULL, params, NULL,
				   NULL, 0);
	}
	if (res == NULL) {
		*error_r = auth_pg_message(pg->endpoint, PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	auth_pg_give(pg, conn);
	return res;
}

static enum auth_result
auth_pg_check(struct auth *auth, const char *user, size_t user_len,
	      const void *pass, size_t pass_len, struct auth_user *user_r)
{
	struct auth_pg *pg = (struct auth_pg *)auth;
	char name[AUTH_NAME_MAX + 1];
	char stored[AUTH_PASSWORD_MAX + 1];
	const char *error = NULL, *sqlstate, *value;
	PGresult *res;
	uint32_t id = 0;
	int rc;

	if (!auth_name_valid(user, user_len) ||
	    !auth_pg_utf8_valid((const unsigned char *)user, user_len)) {
		(void)auth_verify(pg->dummy, pass, pass_len);
		return AUTH_FAILED;
	}
	memcpy(name, user, user_len);
	name[user_len] = '\0';

	res = auth_pg_query_user(pg, name, &error);
	if (res == NULL) {
		log_error("AuthPostgres: cannot query %s", error);
		return AUTH_TEMPFAIL;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (sqlstate != NULL && strncmp(sqlstate, "22", 2) == 0) {
			/* Class 22, data exception: something about this
			 * name the database refuses, not an outage. */
			PQclear(res);
			(void)auth_verify(pg->dummy, pass, pass_len);
			return AUTH_FAILED;
		}
		log_error("%s", auth_pg_message("AuthPostgres: query failed",
						PQresultErrorMessage(res)));
		PQclear(res);
		return AUTH_TEMPFAIL;
	}
	if (PQntuples(res) != 1 || PQnfields(res) != 2) {
		if (PQntuples(res) > 1)
			log_error("AuthPostgres: users.name is not unique "
				  "in %s", pg->endpoint);
		PQclear(res);
		(void)auth_verify(pg->dummy, pass, pass_len);
		return AUTH_FAILED;
	}
	value = PQgetvalue(res, 0, 1);
	if (PQgetisnull(res, 0, 0) || PQgetisnull(res, 0, 1) ||
	    !auth_pg_parse_id(PQgetvalue(res, 0, 0), &id) ||
	    !auth_stored_usable(value)) {
		log_error("AuthPostgres: the users row of id %s has a NULL, "
			  "an id out of 1..4294967295 or an unusable "
			  "password hash", PQgetvalue(res, 0, 0));
		PQclear(res);
		(void)auth_verify(pg->dummy, pass, pass_len);
		return AUTH_FAILED;
	}
	/* auth_stored_usable() bounded its length. */
	memcpy(stored, value, strlen(value) + 1);
	PQclear(res);

	rc = auth_verify(stored, pass, pass_len);
	buf_wipe(stored, sizeof(stored));
	if (rc < 0) {
		log_error("AuthPostgres: crypt(3) failed on the hash of user "
			  "id %u", (unsigned)id);
		return AUTH_TEMPFAIL;
	}
	if (rc == 0)
		return AUTH_FAILED;
	user_r->id = id;
	memcpy(user_r->name, name, user_len + 1);
	return AUTH_OK;
}

static int auth_pg_probe(struct auth *auth, bool *tls_r, const char **error_r)
{
	struct auth_pg *pg = (struct auth_pg *)auth;
	PGconn *conn;
	bool fresh;

	conn = auth_pg_take(pg, &fresh, error_r);
	if (conn == NULL)
		return -1;
	*tls_r = PQsslInUse(conn) != 0;
	auth_pg_give(pg, conn);
	return 0;
}

static void auth_pg_deinit(struct auth *auth)
{
	struct auth_pg *pg = (struct auth_pg *)auth;

	for (size_t i = 0; i < pg->n_idle; i++)
		PQfinish(pg->idle[i]);
	pthread_mutex_destroy(&pg->lock);
	if (pg->password != NULL) {
		buf_wipe(pg->password, strlen(pg->password));
		free(pg->password);
	}
	free(pg->host);
	free(pg->dbname);
	free(pg->user);
	free(pg->endpoint);
	free(pg->dummy);
	free(pg);
}

static const struct auth_vfuncs auth_pg_vfuncs = {
	.name = "AuthPostgres",
	.check = auth_pg_check,
	.probe = auth_pg_probe,
	.deinit = auth_pg_deinit,
};

static void auth_pg_param(struct auth_pg *pg, size_t *n, const char *key,
			  const char *value)
{
	/* Callers pass a fixed set, well below the bound. */
	if (*n + 1 >= AUTH_PG_PARAMS_MAX)
		return;
	pg->keys[*n] = key;
	pg->values[*n] = value;
	(*n)++;
	pg->keys[*n] = NULL;
	pg->values[*n] = NULL;
}

/* The sslmode for UseTLS: "require", or PGSSLMODE when it asks for more
 * (verify-ca, verify-full) so that an operator can check the server's
 * certificate without a pluto option. */
static const char *auth_pg_sslmode(bool use_tls)
{
	const char *env = getenv("PGSSLMODE");

	if (!use_tls)
		return "disable";
	if (env != NULL && (strcmp(env, "verify-ca") == 0 ||
			    strcmp(env, "verify-full") == 0))
		return env;
	return "require";
}

int auth_pg_new(const struct config_auth_postgres *cfg, struct auth **auth_r,
		const char **error_r)
{
	struct auth_pg *pg;
	size_t n = 0, ep_len;
	PGconn *conn;
	const char *error = NULL;

	*auth_r = NULL;
	if (cfg->ip == NULL || cfg->database == NULL || cfg->user == NULL) {
		*error_r = auth_error("AuthPostgres: IP, Database and User "
				      "are required");
		return -1;
	}
	if (PQisthreadsafe() == 0) {
		*error_r = auth_error("AuthPostgres: this libpq is not "
				      "thread-safe");
		return -1;
	}
	pg = calloc(1, sizeof(*pg));
	if (pg == NULL) {
		*error_r = auth_error("AuthPostgres: out of memory");
		return -1;
	}
	pg->auth.v = &auth_pg_vfuncs;
	if (pthread_mutex_init(&pg->lock, NULL) != 0) {
		free(pg);
		*error_r = auth_error("AuthPostgres: cannot create a mutex");
		return -1;
	}
	snprintf(pg->port, sizeof(pg->port), "%u", (unsigned)cfg->port);
	pg->host = strdup(cfg->ip);
	pg->dbname = strdup(cfg->database);
	pg->user = strdup(cfg->user);
	pg->password = strdup(cfg->password != NULL ? cfg->password : "");
	ep_len = strlen(cfg->ip) + strlen(cfg->database) + 16;
	pg->endpoint = malloc(ep_len);
	if (pg->host == NULL || pg->dbname == NULL || pg->user == NULL ||
	    pg->password == NULL || pg->endpoint == NULL) {
		*error_r = auth_error("AuthPostgres: out of memory");
		goto fail;
	}
	snprintf(pg->endpoint, ep_len, "%s:%s/%s", pg->host, pg->port,
		 pg->dbname);

	auth_pg_param(pg, &n, "host", pg->host);
	auth_pg_param(pg, &n, "port", pg->port);
	auth_pg_param(pg, &n, "dbname", pg->dbname);
	auth_pg_param(pg, &n, "user", pg->user);
	/* Empty: let libpq look in ~/.pgpass or PGPASSWORD. */
	if (pg->password[0] != '\0')
		auth_pg_param(pg, &n, "password", pg->password);
	auth_pg_param(pg, &n, "sslmode", auth_pg_sslmode(cfg->use_tls));
	/* Nothing but passwords is configured: no Kerberos attempts. */
	auth_pg_param(pg, &n, "gssencmode", "disable");
	auth_pg_param(pg, &n, "connect_timeout", "5");
	/* A login must not hang on a stuck server or network. */
	auth_pg_param(pg, &n, "options", "-c statement_timeout=5000");
	auth_pg_param(pg, &n, "tcp_user_timeout", "10000");
	auth_pg_param(pg, &n, "application_name", "pluto");
	auth_pg_param(pg, &n, "client_encoding", "UTF8");

	pg->dummy = auth_dummy_hash(NULL, error_r);
	if (pg->dummy == NULL)
		goto fail;

	/* Tell the operator now, not at the first login, whether the
	 * database can be reached; a database still starting up is not a
	 * reason to refuse to start. */
	conn = auth_pg_connect(pg, &error);
	if (conn == NULL) {
		log_warnx("AuthPostgres: cannot connect yet (%s); logins get "
			  "NO [UNAVAILABLE] until it can", error);
	} else {
		log_info("AuthPostgres: connected to %s, tls=%s",
			 pg->endpoint, PQsslInUse(conn) ? "yes" : "no");
		auth_pg_give(pg, conn);
	}
	*auth_r = &pg->auth;
	return 0;
fail:
	auth_pg_deinit(&pg->auth);
	return -1;
}
