/*
 * test_auth_pg.c - the AuthPostgres adapter against a real PostgreSQL
 * server.  Run by tests/integration/test_auth_postgres.sh, which starts
 * the server and passes it in the environment:
 *
 *   PLUTO_PG_HOST, PLUTO_PG_PORT, PLUTO_PG_DB  where the server listens
 *   PLUTO_PG_USER, PLUTO_PG_PASSWORD           owner of the users table
 *   PLUTO_PG_TLS_USER                          a role the server admits
 *                                              over TLS only (same
 *                                              password)
 *   PLUTO_PG_STOP                              a shell command stopping
 *                                              the server (last test)
 *
 * The first test fills the users table with hashes made here by libcrypt;
 * the rest log in through the adapter: right and wrong passwords, unknown
 * and odd names, TLS on and off, a killed connection, many threads at
 * once, and finally a stopped server (AUTH_TEMPFAIL).
 */
#include "autoconfig.h"

#include "auth.h"
#include "cu_run.h"
#include "log.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct config_auth_postgres pg_config;
static char *tls_user;
static const char *stop_cmd;

static const char *const env_names[] = {
	"PLUTO_PG_HOST", "PLUTO_PG_PORT", "PLUTO_PG_DB", "PLUTO_PG_USER",
	"PLUTO_PG_PASSWORD", "PLUTO_PG_TLS_USER", "PLUTO_PG_STOP",
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *make_hash(const char *prefix, const char *password)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *data = calloc(1, sizeof(*data));
	const char *h = NULL;
	char *copy = NULL;

	if (data != NULL &&
	    crypt_gensalt_rn(prefix, 0, NULL, 0, setting,
			     (int)sizeof(setting)) != NULL)
		h = crypt_r(password, setting, data);
	if (h != NULL && h[0] == '$')
		copy = strdup(h);
	free(data);
	CU_ASSERT_PTR_NOT_NULL_FATAL(copy);
	return copy;
}

/* A direct libpq connection as the table's owner, for setting up rows
 * and killing the adapter's connections. */
static PGconn *admin_connect(void)
{
	const char *keys[] = { "host", "port", "dbname", "user", "password",
			       "sslmode", "application_name", NULL };
	char port[8];
	const char *values[8];
	PGconn *conn;

	snprintf(port, sizeof(port), "%u", (unsigned)pg_config.port);
	values[0] = pg_config.ip;
	values[1] = port;
	values[2] = pg_config.database;
	values[3] = pg_config.user;
	values[4] = pg_config.password;
	values[5] = "disable";
	values[6] = "pluto-test-admin";
	values[7] = NULL;
	conn = PQconnectdbParams(keys, values, 0);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "admin connection: %s", PQerrorMessage(conn));
		CU_FAIL_FATAL("admin connection");
	}
	return conn;
}

static void admin_exec(PGconn *conn, const char *sql, int n,
		       const char *const *params)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL,
				     0);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(res));
		CU_FAIL("admin query");
	}
	PQclear(res);
}

static struct auth *new_auth(bool use_tls, const char *user)
{
	struct config_auth_postgres c = pg_config;
	const char *error = NULL;
	struct auth *a = NULL;

	c.use_tls = use_tls;
	if (user != NULL)
		c.user = (char *)user;
	if (auth_pg_new(&c, &a, &error) < 0) {
		fprintf(stderr, "auth_pg_new: %s\n", error);
		CU_FAIL_FATAL("auth_pg_new");
	}
	return a;
}

static enum auth_result login(struct auth *a, const char *user,
			      const char *pass, struct auth_user *u)
{
	return auth_check(a, user, strlen(user), pass, strlen(pass), u);
}

/* ---- the users ------------------------------------------------------ */

struct row {
	const char *id;
	const char *name;
	const char *prefix;	/* NULL: the password as is */
	const char *password;
};

static const struct row rows[] = {
	{ "1", "alice", "$6$", "alice-pw" },
	{ "2", "bob", "$y$", "bob-pw" },
	{ "3", "carol", NULL, "carol-pw" },	/* plaintext */
	{ "17", "\xc3\xa9mile", "$5$", "emile-pw" },
	{ "2147483647", "max", "$2b$", "max-pw" },
	{ "-5", "negative", NULL, "neg-pw" },	/* id out of range */
	{ "6", "sethash", NULL, "$6$onlyasetting$" },	/* unusable */
};

static void test_setup_users(void)
{
	PGconn *conn = admin_connect();

	admin_exec(conn, "DELETE FROM users", 0, NULL);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char *hash = rows[i].prefix != NULL ?
			     make_hash(rows[i].prefix, rows[i].password) :
			     strdup(rows[i].password);
		const char *params[3] = { rows[i].id, rows[i].name, hash };

		admin_exec(conn, "INSERT INTO users (id, name, password) "
			   "VALUES ($1::integer, $2, $3)", 3, params);
		free(hash);
	}
	PQfinish(conn);
}

static void test_logins(void)
{
	struct auth *a = new_auth(false, NULL);
	struct auth_user u;

	CU_ASSERT_STRING_EQUAL(auth_adapter_name(a), "AuthPostgres");
	CU_ASSERT_EQUAL(login(a, "alice", "alice-pw", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 1);
	CU_ASSERT_STRING_EQUAL(u.name, "alice");
	CU_ASSERT_EQUAL(login(a, "bob", "bob-pw", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 2);
	CU_ASSERT_EQUAL(login(a, "carol", "carol-pw", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 3);
	CU_ASSERT_EQUAL(login(a, "\xc3\xa9mile", "emile-pw", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 17);
	CU_ASSERT_STRING_EQUAL(u.name, "\xc3\xa9mile");
	CU_ASSERT_EQUAL(login(a, "max", "max-pw", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 2147483647u);

	/* Wrong passwords. */
	CU_ASSERT_EQUAL(login(a, "alice", "alice-pW", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(u.id, 0);
	CU_ASSERT_EQUAL(login(a, "alice", "bob-pw", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(login(a, "bob", "", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(login(a, "carol", "carol-p", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(auth_check(a, "carol", 5, "carol-pw\0", 9, &u),
			AUTH_FAILED);

	/* Unknown users, exact names only, hostile names. */
	CU_ASSERT_EQUAL(login(a, "nobody", "alice-pw", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(login(a, "Alice", "alice-pw", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(login(a, "alice ", "alice-pw", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(login(a, "x' OR '1'='1", "alice-pw", &u),
			AUTH_FAILED);
	CU_ASSERT_EQUAL(login(a, "alice' --", "alice-pw", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(login(a, "%", "alice-pw", &u), AUTH_FAILED);
	/* Not UTF-8: refused before the database could call it an
	 * error, and never a TEMPFAIL. */
	CU_ASSERT_EQUAL(login(a, "\xff\xfe", "x", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(login(a, "\xc3\xa9mil\xc3", "x", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(login(a, "\xed\xa0\x80", "x", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(login(a, "\xc0\xaf", "x", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(auth_check(a, "alice\0", 6, "alice-pw", 8, &u),
			AUTH_FAILED);

	/* Rows pluto cannot use never log anyone in. */
	CU_ASSERT_EQUAL(login(a, "negative", "neg-pw", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(login(a, "sethash", "$6$onlyasetting$", &u),
			AUTH_FAILED);

	/* Still fine after all that. */
	CU_ASSERT_EQUAL(login(a, "alice", "alice-pw", &u), AUTH_OK);
	auth_free(&a);
	CU_ASSERT_PTR_NULL(a);
}

static void test_auth_new_from_config(void)
{
	struct pluto_config config;
	const char *error = NULL;
	struct auth *a = NULL;
	struct auth_user u;

	memset(&config, 0, sizeof(config));
	config.distributor.auth_adapter = CONFIG_AUTH_POSTGRES;
	config.distributor.auth_postgres = pg_config;
	config.distributor.auth_postgres.use_tls = true;
	CU_ASSERT_EQUAL_FATAL(auth_new(&config, &a, &error), 0);
	CU_ASSERT_EQUAL(login(a, "bob", "bob-pw", &u), AUTH_OK);
	auth_free(&a);
}

static void test_tls(void)
{
	struct auth *a;
	const char *error = NULL;
	struct auth_user u;
	bool tls = false;

	a = new_auth(true, NULL);
	CU_ASSERT_EQUAL(auth_probe(a, &tls, &error), 0);
	CU_ASSERT_TRUE(tls);
	CU_ASSERT_EQUAL(login(a, "alice", "alice-pw", &u), AUTH_OK);
	CU_ASSERT_EQUAL(login(a, "alice", "wrong", &u), AUTH_FAILED);
	auth_free(&a);

	a = new_auth(false, NULL);
	tls = true;
	CU_ASSERT_EQUAL(auth_probe(a, &tls, &error), 0);
	CU_ASSERT_FALSE(tls);
	auth_free(&a);

	/* The server admits this role over TLS only: UseTLS decides. */
	a = new_auth(true, tls_user);
	CU_ASSERT_EQUAL(login(a, "carol", "carol-pw", &u), AUTH_OK);
	CU_ASSERT_EQUAL(auth_probe(a, &tls, &error), 0);
	CU_ASSERT_TRUE(tls);
	auth_free(&a);
	a = new_auth(false, tls_user);
	CU_ASSERT_EQUAL(login(a, "carol", "carol-pw", &u), AUTH_TEMPFAIL);
	CU_ASSERT_EQUAL(auth_probe(a, &tls, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(error);
	auth_free(&a);
}

/* Unknown users cost a hash, like wrong passwords of $y$ users (the
 * adapter's dummy is the system default method, yescrypt on Debian). */
static void test_unknown_user_timing(void)
{
	struct auth *a = new_auth(false, NULL);
	struct auth_user u;
	double known = 0, unknown = 0, start;

	(void)login(a, "bob", "warm-up", &u);
	for (int i = 0; i < 5; i++) {
		start = now_s();
		(void)login(a, "bob", "wrong", &u);
		known += now_s() - start;
		start = now_s();
		(void)login(a, "nobody", "wrong", &u);
		unknown += now_s() - start;
	}
	fprintf(stderr, "wrong password %.4f s, unknown user %.4f s\n",
		known / 5, unknown / 5);
	CU_ASSERT_TRUE(unknown > known * 0.3);
	CU_ASSERT_TRUE(unknown < known * 3.0);
	auth_free(&a);
}

/* The server ends the adapter's idle connection; the next login notices
 * and reconnects, once, without failing. */
static void test_reconnect(void)
{
	struct auth *a = new_auth(false, NULL);
	PGconn *admin = admin_connect();
	struct auth_user u;

	CU_ASSERT_EQUAL(login(a, "alice", "alice-pw", &u), AUTH_OK);
	admin_exec(admin, "SELECT pg_terminate_backend(pid) "
		   "FROM pg_stat_activity WHERE application_name = 'pluto' "
		   "AND pid <> pg_backend_pid()", 0, NULL);
	/* pg_terminate_backend only signals: let the backends go. */
	usleep(200 * 1000);
	CU_ASSERT_EQUAL(login(a, "alice", "alice-pw", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 1);
	CU_ASSERT_EQUAL(login(a, "alice", "wrong", &u), AUTH_FAILED);
	PQfinish(admin);
	auth_free(&a);
}

#define CONC_THREADS 8
#define CONC_ROUNDS 15

struct conc_arg {
	struct auth *a;
	unsigned index;
	unsigned errors;
};

static void *conc_worker(void *p)
{
	struct conc_arg *arg = p;

	for (unsigned r = 0; r < CONC_ROUNDS; r++) {
		struct auth_user u;
		bool right = (r + arg->index) % 3 != 0;
		enum auth_result res = login(arg->a, "carol",
					     right ? "carol-pw" : "nope", &u);

		if (right && (res != AUTH_OK || u.id != 3))
			arg->errors++;
		if (!right && res != AUTH_FAILED)
			arg->errors++;
	}
	return NULL;
}

static void test_concurrent(void)
{
	struct auth *a = new_auth(true, NULL);
	struct conc_arg args[CONC_THREADS];
	pthread_t threads[CONC_THREADS];

	for (unsigned i = 0; i < CONC_THREADS; i++) {
		args[i] = (struct conc_arg){ .a = a, .index = i };
		CU_ASSERT_EQUAL_FATAL(pthread_create(&threads[i], NULL,
						     conc_worker, &args[i]),
				      0);
	}
	for (unsigned i = 0; i < CONC_THREADS; i++) {
		pthread_join(threads[i], NULL);
		CU_ASSERT_EQUAL(args[i].errors, 0);
	}
	auth_free(&a);
}

static void test_bad_credentials_tempfail(void)
{
	struct config_auth_postgres c = pg_config;
	const char *error = NULL;
	struct auth *a = NULL;
	struct auth_user u;

	c.password = (char *)"not-the-db-password";
	CU_ASSERT_EQUAL_FATAL(auth_pg_new(&c, &a, &error), 0);
	CU_ASSERT_EQUAL(login(a, "alice", "alice-pw", &u), AUTH_TEMPFAIL);
	CU_ASSERT_EQUAL(u.id, 0);
	auth_free(&a);

	c = pg_config;
	c.database = (char *)"no_such_database";
	CU_ASSERT_EQUAL_FATAL(auth_pg_new(&c, &a, &error), 0);
	CU_ASSERT_EQUAL(login(a, "alice", "alice-pw", &u), AUTH_TEMPFAIL);
	auth_free(&a);
}

/* A port nobody listens on: bound but never listening, so connecting is
 * refused at once. */
static void test_wrong_port_tempfail(void)
{
	struct config_auth_postgres c = pg_config;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	const char *error = NULL;
	struct auth *a = NULL;
	struct auth_user u;
	bool tls;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	CU_ASSERT_FATAL(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	c.port = ntohs(sin.sin_port);
	/* A database that is down is no reason not to start. */
	CU_ASSERT_EQUAL_FATAL(auth_pg_new(&c, &a, &error), 0);
	CU_ASSERT_EQUAL(login(a, "alice", "alice-pw", &u), AUTH_TEMPFAIL);
	/* Whether a user exists cannot be known either. */
	CU_ASSERT_EQUAL(login(a, "nobody", "x", &u), AUTH_TEMPFAIL);
	/* A name that can never be valid needs no database. */
	CU_ASSERT_EQUAL(login(a, ".dot", "x", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(auth_probe(a, &tls, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "127.0.0.1"));
	auth_free(&a);
	close(fd);
}

/* Last: stops the server under a working adapter. */
static void test_server_stopped_tempfail(void)
{
	struct auth *a = new_auth(true, NULL);
	const char *error = NULL;
	struct auth_user u;
	bool tls;

	CU_ASSERT_EQUAL(login(a, "alice", "alice-pw", &u), AUTH_OK);
	CU_ASSERT_EQUAL_FATAL(system(stop_cmd), 0);
	CU_ASSERT_EQUAL(login(a, "alice", "alice-pw", &u), AUTH_TEMPFAIL);
	CU_ASSERT_EQUAL(login(a, "bob", "wrong", &u), AUTH_TEMPFAIL);
	CU_ASSERT_EQUAL(auth_probe(a, &tls, &error), -1);
	auth_free(&a);
}

static CU_TestInfo tests[] = {
	{ "users table filled", test_setup_users },
	{ "logins: right, wrong, unknown, hostile", test_logins },
	{ "auth_new() picks AuthPostgres", test_auth_new_from_config },
	{ "UseTLS on and off", test_tls },
	{ "unknown user costs a hash", test_unknown_user_timing },
	{ "reconnect after the server drops us", test_reconnect },
	{ "concurrent logins share the pool", test_concurrent },
	{ "bad database credentials: TEMPFAIL",
	  test_bad_credentials_tempfail },
	{ "nobody listening: TEMPFAIL", test_wrong_port_tempfail },
	{ "server stopped: TEMPFAIL", test_server_stopped_tempfail },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	const char *port;
	char *end;
	unsigned long p;

	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]);
	     i++) {
		if (getenv(env_names[i]) == NULL) {
			fprintf(stderr, "test_auth_pg: %s is not set; run "
				"tests/integration/test_auth_postgres.sh, "
				"which starts a PostgreSQL server\n",
				env_names[i]);
			return 1;
		}
	}
	port = getenv("PLUTO_PG_PORT");
	p = strtoul(port, &end, 10);
	if (*port == '\0' || *end != '\0' || p == 0 || p > 65535) {
		fprintf(stderr, "test_auth_pg: bad PLUTO_PG_PORT\n");
		return 1;
	}
	pg_config.ip = getenv("PLUTO_PG_HOST");
	pg_config.port = (uint16_t)p;
	pg_config.database = getenv("PLUTO_PG_DB");
	pg_config.user = getenv("PLUTO_PG_USER");
	pg_config.password = getenv("PLUTO_PG_PASSWORD");
	tls_user = getenv("PLUTO_PG_TLS_USER");
	stop_cmd = getenv("PLUTO_PG_STOP");
	log_init("test_auth_pg", LOG_LEVEL_INFO, false);
	return cu_run("auth_pg", tests);
}
