/*
 * test_auth.c - the shared authentication helpers and the AuthFile
 * adapter: constant-time comparison, name rules, crypt(3) verification
 * with hashes made here by libcrypt, users files good and malformed (each
 * error naming its line), concurrency, the failure delay and log line.
 */
#include "autoconfig.h"

#include "auth.h"
#include "cu_run.h"
#include "log.h"

#include <crypt.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

/* A crypt(3) hash of password with a fresh salt of method prefix ("$6$",
 * "$y$"...), made by libcrypt itself; the caller frees it. */
static char *make_hash(const char *prefix, const char *password)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *data = calloc(1, sizeof(*data));
	const char *h;
	char *copy = NULL;

	CU_ASSERT_PTR_NOT_NULL_FATAL(data);
	if (crypt_gensalt_rn(prefix, 0, NULL, 0, setting,
			     (int)sizeof(setting)) == NULL) {
		CU_FAIL("crypt_gensalt_rn");
		free(data);
		return NULL;
	}
	h = crypt_r(password, setting, data);
	CU_ASSERT_PTR_NOT_NULL(h);
	if (h != NULL && h[0] == '$')
		copy = strdup(h);
	CU_ASSERT_PTR_NOT_NULL(copy);
	free(data);
	return copy;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes content to dir/name with mode 0600; returns the malloc'd path. */
static char *write_file(const char *dir, const char *name,
			const char *content, size_t len)
{
	size_t plen = strlen(dir) + strlen(name) + 2;
	char *path = malloc(plen);
	int fd;

	CU_ASSERT_PTR_NOT_NULL_FATAL(path);
	snprintf(path, plen, "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, content, len), (ssize_t)len);
	close(fd);
	return path;
}

static enum auth_result check(struct auth *a, const char *user,
			      const char *pass, struct auth_user *u)
{
	return auth_check(a, user, strlen(user), pass, strlen(pass), u);
}

/* ---- constant-time comparison -------------------------------------- */

struct ct_case {
	const char *a;
	size_t a_len;
	const char *b;
	size_t b_len;
	bool equal;
};

static const struct ct_case ct_cases[] = {
	{ "", 0, "", 0, true },
	{ "secret", 6, "secret", 6, true },
	{ "secret", 6, "Secret", 6, false },	/* first byte */
	{ "secret", 6, "secreT", 6, false },	/* last byte */
	{ "secret", 6, "secre", 5, false },	/* prefix */
	{ "secre", 5, "secret", 6, false },
	{ "", 0, "x", 1, false },
	{ "x", 1, "", 0, false },
	{ "a\0b", 3, "a\0b", 3, true },		/* binary */
	{ "a\0b", 3, "a\0c", 3, false },
	{ "a", 1, "a\0", 2, false },		/* trailing NUL counts */
	{ "\xff\x80", 2, "\xff\x80", 2, true },
	{ "\xff\x80", 2, "\xff\x81", 2, false },
};

static void test_equal_ct(void)
{
	for (size_t i = 0; i < N_ELEMENTS(ct_cases); i++) {
		const struct ct_case *c = &ct_cases[i];

		CU_ASSERT_EQUAL(auth_equal_ct(c->a, c->a_len, c->b, c->b_len),
				c->equal);
		CU_ASSERT_EQUAL(auth_equal_ct(c->b, c->b_len, c->a, c->a_len),
				c->equal);
	}
}

static void test_equal_ct_long(void)
{
	char a[4096], b[4096];

	memset(a, 'q', sizeof(a));
	memcpy(b, a, sizeof(b));
	CU_ASSERT_TRUE(auth_equal_ct(a, sizeof(a), b, sizeof(b)));
	/* Every single-bit difference, at every position class. */
	for (size_t pos = 0; pos < sizeof(b); pos += 511) {
		for (unsigned bit = 0; bit < 8; bit++) {
			b[pos] = (char)(a[pos] ^ (1 << bit));
			CU_ASSERT_FALSE(auth_equal_ct(a, sizeof(a), b,
						      sizeof(b)));
			b[pos] = a[pos];
		}
	}
	CU_ASSERT_TRUE(auth_equal_ct(a, sizeof(a), b, sizeof(b)));
}

/* ---- user names ---------------------------------------------------- */

struct name_case {
	const char *name;
	size_t len;
	bool valid;
};

static void test_name_valid(void)
{
	char longest[AUTH_NAME_MAX + 2];
	const struct name_case cases[] = {
		{ "alice", 5, true },
		{ "alice@example.org", 17, true },
		{ "a.b", 3, true },
		{ "with space", 10, true },
		{ "\xc3\xa9mile", 6, true },	/* UTF-8 */
		{ "", 0, false },
		{ ".hidden", 7, false },
		{ "..", 2, false },
		{ "a/b", 3, false },
		{ "/", 1, false },
		{ "tab\there", 8, false },
		{ "nl\n", 3, false },
		{ "del\x7f", 4, false },
		{ "nul\0x", 5, false },
		{ longest, AUTH_NAME_MAX, true },
		{ longest, AUTH_NAME_MAX + 1, false },
	};

	memset(longest, 'n', sizeof(longest));
	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		if (auth_name_valid(cases[i].name, cases[i].len) !=
		    cases[i].valid) {
			fprintf(stderr, "name case %zu\n", i);
			CU_FAIL("auth_name_valid");
		}
	}
}

/* ---- crypt(3) verification ----------------------------------------- */

static void test_verify_plaintext(void)
{
	char big[AUTH_PASSWORD_MAX + 2];

	CU_ASSERT_EQUAL(auth_verify("hunter2", "hunter2", 7), 1);
	CU_ASSERT_EQUAL(auth_verify("hunter2", "hunter3", 7), 0);
	CU_ASSERT_EQUAL(auth_verify("hunter2", "hunter", 6), 0);
	CU_ASSERT_EQUAL(auth_verify("hunter2", "hunter22", 8), 0);
	CU_ASSERT_EQUAL(auth_verify("hunter2", "", 0), 0);
	CU_ASSERT_EQUAL(auth_verify("hunter2", "hunter2\0", 8), 0);
	memset(big, 'b', sizeof(big));
	CU_ASSERT_EQUAL(auth_verify("b", big, sizeof(big)), 0);
}

static void test_verify_hashes(void)
{
	static const char *const prefixes[] = { "$6$", "$5$", "$y$", "$2b$" };

	for (size_t i = 0; i < N_ELEMENTS(prefixes); i++) {
		char *h = make_hash(prefixes[i], "correct horse");

		if (h == NULL)
			continue;
		CU_ASSERT_TRUE(auth_is_hash(h));
		CU_ASSERT_TRUE(auth_stored_usable(h));
		CU_ASSERT_EQUAL(auth_verify(h, "correct horse", 13), 1);
		CU_ASSERT_EQUAL(auth_verify(h, "correct horsf", 13), 0);
		CU_ASSERT_EQUAL(auth_verify(h, "correct hors", 12), 0);
		CU_ASSERT_EQUAL(auth_verify(h, "", 0), 0);
		/* A NUL would cut the phrase short for crypt(3): refused
		 * instead of matching "correct horse". */
		CU_ASSERT_EQUAL(auth_verify(h, "correct horse\0x", 15), 0);
		/* The hash itself is not the password. */
		CU_ASSERT_EQUAL(auth_verify(h, h, strlen(h)), 0);
		free(h);
	}
}

static void test_stored_usable(void)
{
	char big[AUTH_PASSWORD_MAX + 2];

	CU_ASSERT_TRUE(auth_stored_usable("plain"));
	CU_ASSERT_FALSE(auth_stored_usable(""));
	CU_ASSERT_FALSE(auth_stored_usable("$"));
	CU_ASSERT_FALSE(auth_stored_usable("$zz$nosuchmethod"));
	CU_ASSERT_FALSE(auth_stored_usable("$6$"));
	CU_ASSERT_FALSE(auth_stored_usable("$6$saltsalt$"));
	CU_ASSERT_FALSE(auth_stored_usable("$6$saltsalt"));
	CU_ASSERT_FALSE(auth_stored_usable("$y$j9T$saltsaltsaltsalt$"));
	CU_ASSERT_EQUAL(auth_verify("$zz$nosuchmethod", "x", 1), -1);
	memset(big, 'p', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CU_ASSERT_FALSE(auth_stored_usable(big));
}

static void test_dummy_hash(void)
{
	const char *error = NULL;
	char *h6 = make_hash("$6$", "pw");
	char *d;

	CU_ASSERT_PTR_NOT_NULL_FATAL(h6);
	d = auth_dummy_hash(h6, &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	CU_ASSERT_EQUAL(strncmp(d, "$6$", 3), 0);
	CU_ASSERT_EQUAL(auth_verify(d, "pw", 2), 0);
	free(d);
	d = auth_dummy_hash(NULL, &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	CU_ASSERT_TRUE(auth_stored_usable(d));
	free(d);
	CU_ASSERT_PTR_NULL(auth_dummy_hash("$zz$bad", &error));
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "dummy"));
	free(h6);
}

/* ---- AuthFile ------------------------------------------------------ */

static void test_file_users(void)
{
	char *dir = cu_tempdir("test_auth");
	char *h6 = make_hash("$6$", "six-pass");
	char *hy = make_hash("$y$", "yes-pass");
	char content[2048];
	const char *error = NULL;
	struct auth *a = NULL;
	struct auth_user u;
	char *path;
	int n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h6);
	CU_ASSERT_PTR_NOT_NULL_FATAL(hy);
	/* Line 4 has CRLF, line 5 a separator in its password, the last
	 * line no newline. */
	n = snprintf(content, sizeof(content),
		     "alice:plain-pass\n"
		     "bob:%s\n"
		     "carol:%s\n"
		     "dave:crlf-pass\r\n"
		     "erin:with:colons\n"
		     "Alice:other-alice",
		     h6, hy);
	CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof(content));
	path = write_file(dir, "users", content, (size_t)n);
	CU_ASSERT_EQUAL_FATAL(auth_file_new(path, ':', &a, &error), 0);
	CU_ASSERT_STRING_EQUAL(auth_adapter_name(a), "AuthFile");

	CU_ASSERT_EQUAL(check(a, "alice", "plain-pass", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 1);
	CU_ASSERT_STRING_EQUAL(u.name, "alice");
	CU_ASSERT_EQUAL(check(a, "bob", "six-pass", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 2);
	CU_ASSERT_STRING_EQUAL(u.name, "bob");
	CU_ASSERT_EQUAL(check(a, "carol", "yes-pass", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 3);
	CU_ASSERT_EQUAL(check(a, "dave", "crlf-pass", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 4);
	CU_ASSERT_EQUAL(check(a, "erin", "with:colons", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 5);
	CU_ASSERT_EQUAL(check(a, "Alice", "other-alice", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 6);
	CU_ASSERT_STRING_EQUAL(u.name, "Alice");

	/* Wrong passwords, including other users' and the stored hash. */
	CU_ASSERT_EQUAL(check(a, "alice", "plain-pasS", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(u.id, 0);
	CU_ASSERT_STRING_EQUAL(u.name, "");
	CU_ASSERT_EQUAL(check(a, "alice", "other-alice", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(check(a, "bob", "yes-pass", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(check(a, "bob", h6, &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(check(a, "carol", "", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(check(a, "dave", "crlf-pass\r", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(check(a, "erin", "with", &u), AUTH_FAILED);

	/* Names are exact: no case folding, no prefixes. */
	CU_ASSERT_EQUAL(check(a, "ALICE", "plain-pass", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(check(a, "alic", "plain-pass", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(check(a, "alicea", "plain-pass", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(check(a, "nobody", "plain-pass", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(check(a, "", "", &u), AUTH_FAILED);
	CU_ASSERT_EQUAL(check(a, "../alice", "plain-pass", &u), AUTH_FAILED);
	/* Length-delimited: bytes past user_len are not part of it. */
	CU_ASSERT_EQUAL(auth_check(a, "alicex", 5, "plain-pass", 10, &u),
			AUTH_OK);
	CU_ASSERT_EQUAL(auth_check(a, "alice\0", 6, "plain-pass", 10, &u),
			AUTH_FAILED);
	CU_ASSERT_EQUAL(auth_check(a, "alice", 5, "plain-pass\0", 11, &u),
			AUTH_FAILED);

	auth_free(&a);
	CU_ASSERT_PTR_NULL(a);
	auth_free(&a);
	free(path);
	free(h6);
	free(hy);
	cu_rmtree(dir);
	free(dir);
}

static void test_file_separator_and_dispatch(void)
{
	static const char content[] = "x|one\ny|two:three\n";
	char *dir = cu_tempdir("test_auth");
	struct pluto_config config;
	const char *error = NULL;
	struct auth *a = NULL;
	struct auth_user u;
	char *path;
	bool tls;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	path = write_file(dir, "users", content, sizeof(content) - 1);
	memset(&config, 0, sizeof(config));
	config.distributor.auth_adapter = CONFIG_AUTH_FILE;
	config.distributor.auth_file.file = path;
	config.distributor.auth_file.separator = '|';
	CU_ASSERT_EQUAL_FATAL(auth_new(&config, &a, &error), 0);
	CU_ASSERT_EQUAL(check(a, "y", "two:three", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 2);
	CU_ASSERT_EQUAL(check(a, "x", "one", &u), AUTH_OK);
	CU_ASSERT_EQUAL(u.id, 1);
	CU_ASSERT_EQUAL(auth_probe(a, &tls, &error), -1);
	auth_free(&a);

	/* With ':' the same file has no separator on line 1. */
	config.distributor.auth_file.separator = ':';
	CU_ASSERT_EQUAL(auth_new(&config, &a, &error), -1);
	CU_ASSERT_PTR_NULL(a);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, ":1: missing separator"));

#ifndef HAVE_POSTGRESQL
	config.distributor.auth_adapter = CONFIG_AUTH_POSTGRES;
	CU_ASSERT_EQUAL(auth_new(&config, &a, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "without PostgreSQL"));
#endif
	free(path);
	cu_rmtree(dir);
	free(dir);
}

struct malformed_case {
	const char *content;
	size_t len;		/* 0: strlen(content) */
	const char *error;	/* expected after "PATH" */
};

static void test_file_malformed(void)
{
	char longname[AUTH_NAME_MAX + 16];
	char longpass[AUTH_PASSWORD_MAX + 16];
	const struct malformed_case cases[] = {
		{ "a:1\nnosep\n", 0, ":2: missing separator" },
		{ "a:1\n\nb:2\n", 0, ":2: missing separator" },
		{ "a:1\r\n\r\n", 0, ":2: missing separator" },
		{ ":pw\n", 0, ":1: empty user name" },
		{ "a:1\nb:\n", 0, ":2: empty password" },
		{ "a:1\nb:2\na:3\n", 0,
		  ":3: duplicate user name (first on line 1)" },
		/* The earliest repeat is named, whatever the sort did. */
		{ "z:1\nz:2\na:3\na:4\n", 0,
		  ":2: duplicate user name (first on line 1)" },
		{ "b:1\na:2\nc:3\na:4\nb:5\n", 0,
		  ":4: duplicate user name (first on line 2)" },
		{ "a:1\nb\tc:2\n", 0, ":2: control character in user name" },
		{ "a\x7f:1\n", 0, ":1: control character in user name" },
		{ "a:1\nb:p\tw\n", 0, ":2: control character in password" },
		{ "a:p\rw\n", 0, ":1: control character in password" },
		{ "a:1\nb\0c:2\n", 10, ":2: NUL byte in line" },
		{ "a/b:1\n", 0, ":1: '/' in user name" },
		{ ".a:1\n", 0, ":1: user name starts with '.'" },
		{ "a:$zz$nosuchmethod\n", 0,
		  ":1: password hash not supported by this system's "
		  "crypt(3)" },
		{ "a:1\nb:2\nc:$\n", 0,
		  ":3: password hash not supported by this system's "
		  "crypt(3)" },
		{ longname, 0, ":2: user name longer than 255 bytes" },
		{ longpass, 0, ":1: password longer than 1024 bytes" },
	};
	char *dir = cu_tempdir("test_auth");

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	memcpy(longname, "a:1\n", 4);
	memset(longname + 4, 'n', AUTH_NAME_MAX + 1);
	memcpy(longname + 4 + AUTH_NAME_MAX + 1, ":x\n", 4);
	memcpy(longpass, "a:", 2);
	memset(longpass + 2, 'p', AUTH_PASSWORD_MAX + 1);
	longpass[2 + AUTH_PASSWORD_MAX + 1] = '\0';

	for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
		const struct malformed_case *c = &cases[i];
		size_t len = c->len != 0 ? c->len : strlen(c->content);
		char *path = write_file(dir, "users", c->content, len);
		char expected[4200];
		const char *error = NULL;
		struct auth *a = NULL;

		snprintf(expected, sizeof(expected), "%s%s", path, c->error);
		if (auth_file_new(path, ':', &a, &error) != -1 ||
		    strcmp(error, expected) != 0) {
			fprintf(stderr, "malformed case %zu: got \"%s\"\n", i,
				a != NULL ? "success" : error);
			CU_FAIL("malformed users file");
		}
		CU_ASSERT_PTR_NULL(a);
		auth_free(&a);
		free(path);
	}
	cu_rmtree(dir);
	free(dir);
}

static void test_file_errors_never_show_secrets(void)
{
	static const char content[] = "alice:s3cr3t-pw\nbob:s3cr3t\tpw\n";
	char *dir = cu_tempdir("test_auth");
	const char *error = NULL;
	struct auth *a = NULL;
	char *path;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	path = write_file(dir, "users", content, sizeof(content) - 1);
	CU_ASSERT_EQUAL(auth_file_new(path, ':', &a, &error), -1);
	CU_ASSERT_PTR_NULL(strstr(error, "s3cr3t"));
	free(path);
	cu_rmtree(dir);
	free(dir);
}

static void test_file_unreadable(void)
{
	char *dir = cu_tempdir("test_auth");
	const char *error = NULL;
	struct auth *a = NULL;
	char missing[512];

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	snprintf(missing, sizeof(missing), "%s/none", dir);
	CU_ASSERT_EQUAL(auth_file_new(missing, ':', &a, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "No such file"));
	CU_ASSERT_EQUAL(auth_file_new(dir, ':', &a, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "not a regular file"));
	CU_ASSERT_PTR_NULL(a);
	cu_rmtree(dir);
	free(dir);
}

static void test_file_empty(void)
{
	char *dir = cu_tempdir("test_auth");
	const char *error = NULL;
	struct auth *a = NULL;
	struct auth_user u;
	char *path;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	path = write_file(dir, "users", "", 0);
	CU_ASSERT_EQUAL_FATAL(auth_file_new(path, ':', &a, &error), 0);
	CU_ASSERT_EQUAL(check(a, "a", "b", &u), AUTH_FAILED);
	auth_free(&a);
	free(path);
	cu_rmtree(dir);
	free(dir);
}

/* Median time of 5 logins. */
static double time_login(struct auth *a, const char *user, const char *pass)
{
	double t[5], tmp;
	struct auth_user u;

	for (size_t i = 0; i < 5; i++) {
		double start = now_s();

		(void)check(a, user, pass, &u);
		t[i] = now_s() - start;
	}
	for (size_t i = 0; i < 5; i++)
		for (size_t j = i + 1; j < 5; j++)
			if (t[j] < t[i]) {
				tmp = t[i];
				t[i] = t[j];
				t[j] = tmp;
			}
	return t[2];
}

/* An unknown user costs a hash like a known one: without the dummy
 * hash it would take microseconds instead of milliseconds. */
static void test_file_unknown_user_timing(void)
{
	char *dir = cu_tempdir("test_auth");
	char *h = make_hash("$6$", "pw");
	const char *error = NULL;
	struct auth *a = NULL;
	char content[512];
	double known, unknown;
	char *path;
	int n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	n = snprintf(content, sizeof(content), "plain:pw\nhashed:%s\n"
		     "hashed2:%s\n", h, h);
	path = write_file(dir, "users", content, (size_t)n);
	CU_ASSERT_EQUAL_FATAL(auth_file_new(path, ':', &a, &error), 0);
	known = time_login(a, "hashed", "wrong");
	unknown = time_login(a, "nobody", "wrong");
	fprintf(stderr, "wrong password %.6f s, unknown user %.6f s\n",
		known, unknown);
	CU_ASSERT_TRUE(unknown > known * 0.3);
	CU_ASSERT_TRUE(unknown < known * 3.0);
	/* Invalid names too. */
	unknown = time_login(a, ".bad", "wrong");
	CU_ASSERT_TRUE(unknown > known * 0.3);
	auth_free(&a);
	free(path);
	free(h);
	cu_rmtree(dir);
	free(dir);
}

/* ---- concurrency --------------------------------------------------- */

#define CONC_THREADS 8
#define CONC_ROUNDS 40

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
		/* Alternate between the plaintext and the hashed user and
		 * between right and wrong passwords. */
		bool hashed = (r + arg->index) % 2 == 0;
		bool right = (r / 2 + arg->index) % 2 == 0;
		const char *user = hashed ? "hashed" : "plain";
		const char *pass = right ? "pw" : "nope";
		enum auth_result res = check(arg->a, user, pass, &u);

		if (right && (res != AUTH_OK || u.id != (hashed ? 2u : 1u) ||
			      strcmp(u.name, user) != 0))
			arg->errors++;
		if (!right && res != AUTH_FAILED)
			arg->errors++;
	}
	return NULL;
}

static void test_file_concurrent(void)
{
	char *dir = cu_tempdir("test_auth");
	char *h = make_hash("$5$", "pw");
	struct conc_arg args[CONC_THREADS];
	pthread_t threads[CONC_THREADS];
	const char *error = NULL;
	struct auth *a = NULL;
	char content[512];
	char *path;
	int n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	CU_ASSERT_PTR_NOT_NULL_FATAL(h);
	n = snprintf(content, sizeof(content), "plain:pw\nhashed:%s\n", h);
	path = write_file(dir, "users", content, (size_t)n);
	CU_ASSERT_EQUAL_FATAL(auth_file_new(path, ':', &a, &error), 0);
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
	free(path);
	free(h);
	cu_rmtree(dir);
	free(dir);
}

/* ---- failure delay and log line ------------------------------------ */

static void test_fail_delay(void)
{
	double start;

	CU_ASSERT_EQUAL(auth_get_fail_delay_ms(), AUTH_FAIL_DELAY_MS_DEFAULT);
	auth_set_fail_delay_ms(120);
	start = now_s();
	auth_fail_delay();
	CU_ASSERT_TRUE(now_s() - start >= 0.119);
	auth_set_fail_delay_ms(0);
	start = now_s();
	auth_fail_delay();
	CU_ASSERT_TRUE(now_s() - start < 0.1);
	auth_set_fail_delay_ms(AUTH_FAIL_DELAY_MS_DEFAULT);
}

static void test_log_name(void)
{
	char buf[AUTH_LOG_NAME_MAX * 4 + 8];
	char big[200];

	auth_log_name(buf, sizeof(buf), "alice", 5);
	CU_ASSERT_STRING_EQUAL(buf, "\"alice\"");
	auth_log_name(buf, sizeof(buf), "a\"b\\c", 5);
	CU_ASSERT_STRING_EQUAL(buf, "\"a\\\"b\\\\c\"");
	auth_log_name(buf, sizeof(buf), "x\ny\0z\xc3", 6);
	CU_ASSERT_STRING_EQUAL(buf, "\"x\\x0ay\\x00z\\xc3\"");
	memset(big, 'k', sizeof(big));
	auth_log_name(buf, sizeof(buf), big, sizeof(big));
	CU_ASSERT_EQUAL(strlen(buf), AUTH_LOG_NAME_MAX + 5);
	CU_ASSERT_EQUAL(strcmp(buf + AUTH_LOG_NAME_MAX + 1, "...\""), 0);
	/* Small buffers: truncated, always terminated. */
	auth_log_name(buf, 4, "alice", 5);
	CU_ASSERT_TRUE(strlen(buf) < 4);
	auth_log_name(buf, 1, "alice", 5);
	CU_ASSERT_STRING_EQUAL(buf, "");
}

/* Runs auth_log_failure() with stderr sent to a file; returns what it
 * wrote (malloc'd). */
static char *capture_log_failure(const char *user, const char *peer,
				 enum auth_result result)
{
	char *dir = cu_tempdir("test_auth");
	char path[512], *out = NULL;
	int saved, fd;
	FILE *f;
	long size;

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	snprintf(path, sizeof(path), "%s/log", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	auth_log_failure(user, strlen(user), peer, result);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	f = fopen(path, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	out = calloc(1, (size_t)size + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	CU_ASSERT_EQUAL(fread(out, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	cu_rmtree(dir);
	free(dir);
	return out;
}

static void test_log_failure(void)
{
	char *line;

	log_init("test", LOG_LEVEL_INFO, false);
	line = capture_log_failure("mallory", "192.0.2.7", AUTH_FAILED);
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "level=warn"));
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "login failed"));
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "\\\"mallory\\\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "peer 192.0.2.7"));
	CU_ASSERT_PTR_NOT_NULL(strchr(line, '\n'));
	CU_ASSERT_EQUAL(strchr(line, '\n')[1], '\0');	/* one line */
	free(line);

	/* A forged second line stays inside the first. */
	line = capture_log_failure("x\nlevel=info msg=forged", "::1",
				   AUTH_TEMPFAIL);
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "backend unavailable"));
	CU_ASSERT_EQUAL(strchr(line, '\n')[1], '\0');
	free(line);

	line = capture_log_failure("u", NULL, AUTH_FAILED);
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "peer unknown"));
	free(line);
}

static CU_TestInfo tests[] = {
	{ "constant-time compare: table", test_equal_ct },
	{ "constant-time compare: every bit", test_equal_ct_long },
	{ "user name rules", test_name_valid },
	{ "plaintext verification", test_verify_plaintext },
	{ "crypt(3) hashes $6$ $5$ $y$ $2b$", test_verify_hashes },
	{ "stored values usable or not", test_stored_usable },
	{ "dummy hash", test_dummy_hash },
	{ "AuthFile: users, ids, wrong passwords", test_file_users },
	{ "AuthFile: separator, auth_new", test_file_separator_and_dispatch },
	{ "AuthFile: malformed files name the line", test_file_malformed },
	{ "AuthFile: errors never show secrets",
	  test_file_errors_never_show_secrets },
	{ "AuthFile: missing file, directory", test_file_unreadable },
	{ "AuthFile: empty file", test_file_empty },
	{ "AuthFile: unknown user costs a hash",
	  test_file_unknown_user_timing },
	{ "AuthFile: concurrent checks", test_file_concurrent },
	{ "failure delay", test_fail_delay },
	{ "log name escaping", test_log_name },
	{ "failure log line", test_log_failure },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("auth", tests);
}
