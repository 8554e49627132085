/*
 * test_bench.c - unit tests of pluto-bench's pure parts and of its IMAP
 * response reading.
 *
 * The connection tests put a scripted server on the other end of a
 * socketpair; a thread writes the script one byte at a time, so every
 * response arrives split at every possible place (inside the tag, the
 * literal marker, the literal, the CRLF).
 */
#include "autoconfig.h"

#include "bench.h"
#include "tests/unit/cu_run.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct marker_case {
	const char *line;
	bool marker;
	uint64_t size;
};

static const struct marker_case marker_cases[] = {
	{ "* 1 FETCH (BODY[] {5}", true, 5 },
	{ "* 1 FETCH (BODY[] {12+}", true, 12 },
	{ "* LIST () \"/\" {3}", true, 3 },
	{ "* X {4294967296}", true, UINT64_C(4294967296) },
	{ "* X {0}", true, 0 },
	{ "* X {4294967297}", false, 0 },
	{ "* X {99999999999999999999999}", false, 0 },
	{ "* 1 FETCH (X {}", false, 0 },
	{ "* 1 FETCH (X {+}", false, 0 },
	{ "* X {1a}", false, 0 },
	{ "* X {1+2}", false, 0 },
	{ "* X 5}", false, 0 },
	{ "}", false, 0 },
	{ "", false, 0 },
	/* Status responses end in human-readable text, never a literal. */
	{ "a1 OK done {5}", false, 0 },
	{ "a1 no failed {5}", false, 0 },
	{ "* OK [ALERT] {5}", false, 0 },
	{ "* BYE {5}", false, 0 },
	{ "* PREAUTH {5}", false, 0 },
	{ "+ {3}", false, 0 },
	{ "+{3}", false, 0 },
};

static void test_literal_marker(void)
{
	size_t i;

	for (i = 0; i < sizeof(marker_cases) / sizeof(marker_cases[0]); i++) {
		const struct marker_case *t = &marker_cases[i];
		uint64_t size = 12345;
		bool got;

		got = bench_literal_marker(t->line, strlen(t->line), &size);
		CU_ASSERT_EQUAL(got, t->marker);
		if (got != t->marker)
			fprintf(stderr, "marker case %zu: %s\n", i, t->line);
		if (t->marker)
			CU_ASSERT_EQUAL(size, t->size);
	}
}

struct pattern_case {
	const char *pattern;
	unsigned int id;
	size_t size;
	const char *want;		/* NULL: must fail */
};

static const struct pattern_case pattern_cases[] = {
	{ "user%d", 7, 64, "user7" },
	{ "u%d-%d", 12, 64, "u12-12" },
	{ "plain", 3, 64, "plain" },
	{ "100%%", 3, 64, "100%" },
	{ "%d", 4294967295u, 64, "4294967295" },
	{ "", 1, 64, "" },
	{ "user%d", 10, 7, "user10" },
	{ "user%d", 10, 6, NULL },
	{ "user%s", 1, 64, NULL },
	{ "user%", 1, 64, NULL },
	{ "%n", 1, 64, NULL },
	{ "%5d", 1, 64, NULL },
	{ "abc", 1, 3, NULL },
	{ "abc", 1, 0, NULL },
};

static void test_expand_pattern(void)
{
	char out[64];
	size_t i;

	for (i = 0; i < sizeof(pattern_cases) / sizeof(pattern_cases[0]); i++) {
		const struct pattern_case *t = &pattern_cases[i];
		int ret;

		ret = bench_expand_pattern(t->pattern, t->id, out, t->size);
		if (t->want == NULL) {
			CU_ASSERT_EQUAL(ret, -1);
		} else {
			CU_ASSERT_EQUAL(ret, 0);
			CU_ASSERT_STRING_EQUAL(out, t->want);
		}
	}
}

static void test_percentile(void)
{
	uint64_t v[100], one = 42, two[2] = { 10, 20 };
	size_t i;

	for (i = 0; i < 100; i++)
		v[i] = i + 1;
	CU_ASSERT_EQUAL(bench_percentile(v, 100, 50), 50);
	CU_ASSERT_EQUAL(bench_percentile(v, 100, 90), 90);
	CU_ASSERT_EQUAL(bench_percentile(v, 100, 99), 99);
	CU_ASSERT_EQUAL(bench_percentile(v, 100, 100), 100);
	CU_ASSERT_EQUAL(bench_percentile(v, 100, 1), 1);
	CU_ASSERT_EQUAL(bench_percentile(v, 10, 50), 5);
	CU_ASSERT_EQUAL(bench_percentile(v, 10, 99), 10);
	CU_ASSERT_EQUAL(bench_percentile(v, 11, 50), 6);
	CU_ASSERT_EQUAL(bench_percentile(&one, 1, 50), 42);
	CU_ASSERT_EQUAL(bench_percentile(&one, 1, 99), 42);
	CU_ASSERT_EQUAL(bench_percentile(two, 2, 50), 10);
	CU_ASSERT_EQUAL(bench_percentile(two, 2, 51), 20);
	CU_ASSERT_EQUAL(bench_percentile(two, 2, 90), 20);
}

static void test_make_message(void)
{
	static const size_t sizes[] = { 0, 1, 300, 301, 302, 375, 376, 1024,
					100000 };
	size_t i, len, hlen, j;
	char *msg;

	msg = bench_make_message(0, 1, 1, &hlen);
	CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
	free(msg);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		msg = bench_make_message(sizes[i], 1, 1, &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
		CU_ASSERT_EQUAL(len, sizes[i] > hlen ? sizes[i] : hlen);
		/* Every LF ends a CRLF, and lines stay short. */
		for (j = 0; j < len; j++) {
			if (msg[j] == '\n')
				CU_ASSERT(j > 0 && msg[j - 1] == '\r');
			CU_ASSERT(msg[j] != '\0');
		}
		free(msg);
	}
}

/* The scripted server: writes script one byte at a time. */
struct script {
	int fd;
	const char *data;
	size_t len;
};

static void *script_writer(void *arg)
{
	struct script *s = arg;
	struct timespec pause = { 0, 20000 };
	size_t i;

	for (i = 0; i < s->len; i++) {
		if (send(s->fd, s->data + i, 1, MSG_NOSIGNAL) != 1)
			break;
		if (i % 8 == 0)
			nanosleep(&pause, NULL);
	}
	shutdown(s->fd, SHUT_WR);
	return NULL;
}

struct conn_case {
	const char *name;
	const char *script;
	size_t script_len;		/* 0: strlen(script) */
	bool append;			/* APPEND with a literal, else SELECT */
	enum bench_status status;
	uint32_t exists;
	uint64_t literal_bytes;
	unsigned int fetches;
	const char *sent;		/* what the client must have written */
};

static const struct conn_case conn_cases[] = {
	{ "select", "* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] u\r\n"
	  "b1 OK [READ-WRITE] done\r\n", 0, false, BENCH_STATUS_OK, 3, 0, 0,
	  "b1 SELECT INBOX\r\n" },
	{ "lower-case status", "b1 ok fine\r\n", 0, false, BENCH_STATUS_OK,
	  0, 0, 0, NULL },
	{ "literal hides a fake tag",
	  "* 1 FETCH (BODY[] {12}\r\nb1 OK fake\r\n FLAGS ())\r\n"
	  "* 2 FETCH (BODY[] {0}\r\n)\r\nb1 NO real\r\n", 0, false,
	  BENCH_STATUS_NO, 0, 12, 2, NULL },
	{ "bad", "b1 BAD what\r\n", 0, false, BENCH_STATUS_BAD, 0, 0, 0,
	  NULL },
	{ "bare LF lines", "* 5 EXISTS\nb1 OK x\n", 0, false,
	  BENCH_STATUS_OK, 5, 0, 0, NULL },
	{ "expunge", "* 5 EXISTS\r\n* 2 EXPUNGE\r\nb1 OK x\r\n", 0, false,
	  BENCH_STATUS_OK, 4, 0, 0, NULL },
	{ "append", "+ go ahead\r\n* 1 EXISTS\r\nb1 OK appended\r\n", 0,
	  true, BENCH_STATUS_OK, 1, 0, 0,
	  "b1 APPEND INBOX {5}\r\nhello\r\n" },
	{ "append refused before the literal", "b1 NO [TOOBIG] no\r\n", 0,
	  true, BENCH_STATUS_NO, 0, 0, 0, "b1 APPEND INBOX {5}\r\n" },
	{ "unknown status", "b1 MAYBE\r\n", 0, false, BENCH_STATUS_ERR, 0,
	  0, 0, NULL },
	{ "other tag", "b9 OK\r\n", 0, false, BENCH_STATUS_ERR, 0, 0, 0,
	  NULL },
	{ "stray continuation", "+ what\r\nb1 OK\r\n", 0, false,
	  BENCH_STATUS_ERR, 0, 0, 0, NULL },
	{ "eof", "* 1 EXISTS\r\n", 0, false, BENCH_STATUS_ERR, 1, 0, 0,
	  NULL },
	{ "eof in a line", "* 1 EXI", 0, false, BENCH_STATUS_ERR, 0, 0, 0,
	  NULL },
	{ "eof in a literal", "* 1 FETCH (BODY[] {100}\r\nshort", 0, false,
	  BENCH_STATUS_ERR, 0, 0, 0, NULL },
	{ "eof after a literal", "* 1 FETCH (BODY[] {2}\r\nab", 0, false,
	  BENCH_STATUS_ERR, 0, 0, 0, NULL },
	{ "nul in a line", "* OK a\0b\r\nb1 OK\r\n", 14, false,
	  BENCH_STATUS_ERR, 0, 0, 0, NULL },
	{ "bye then close", "* BYE going\r\n", 0, false, BENCH_STATUS_ERR,
	  0, 0, 0, NULL },
	{ "empty line", "\r\nb1 OK\r\n", 0, false, BENCH_STATUS_ERR, 0, 0,
	  0, NULL },
};

static void run_conn_case(const struct conn_case *t)
{
	static const char select_cmd[] = "SELECT INBOX\r\n";
	static const char append_cmd[] = "APPEND INBOX {5}\r\n";
	struct bench_piece pieces[3];
	struct bench_conn conn;
	struct script script;
	pthread_t thread;
	uint64_t start, latency;
	const char *error = NULL;
	enum bench_status status;
	char sent[256];
	ssize_t n;
	size_t npieces;
	int sv[2];

	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CU_ASSERT_FATAL(bench_conn_init(&conn, 5000) == 0);
	conn.fd = sv[0];
	if (t->append) {
		pieces[0].data = append_cmd;
		pieces[0].len = strlen(append_cmd);
		pieces[0].sync_literal = true;
		pieces[1].data = "hello";
		pieces[1].len = 5;
		pieces[1].sync_literal = false;
		pieces[2].data = "\r\n";
		pieces[2].len = 2;
		pieces[2].sync_literal = false;
		npieces = 3;
	} else {
		pieces[0].data = select_cmd;
		pieces[0].len = strlen(select_cmd);
		pieces[0].sync_literal = false;
		npieces = 1;
	}
	script.fd = sv[1];
	script.data = t->script;
	script.len = t->script_len != 0 ? t->script_len : strlen(t->script);
	CU_ASSERT_FATAL(pthread_create(&thread, NULL, script_writer,
				       &script) == 0);
	status = bench_conn_command(&conn, pieces, npieces, &start, &latency,
				    &error);
	pthread_join(thread, NULL);
	if (status != t->status)
		fprintf(stderr, "conn case %s: status %s (%s)\n", t->name,
			bench_status_name(status), error != NULL ? error : "");
	CU_ASSERT_EQUAL(status, t->status);
	if (status == BENCH_STATUS_ERR)
		CU_ASSERT_PTR_NOT_NULL(error);
	CU_ASSERT_EQUAL(conn.exists, t->exists);
	if (t->status != BENCH_STATUS_ERR) {
		CU_ASSERT_EQUAL(conn.cmd_literal_bytes, t->literal_bytes);
		CU_ASSERT_EQUAL(conn.fetch_count, t->fetches);
		CU_ASSERT(start > 0);
	}
	if (t->sent != NULL) {
		shutdown(sv[0], SHUT_WR);
		n = read(sv[1], sent, sizeof(sent) - 1);
		CU_ASSERT_FATAL(n >= 0);
		sent[n] = '\0';
		CU_ASSERT_STRING_EQUAL(sent, t->sent);
	}
	close(sv[1]);
	bench_conn_deinit(&conn);
}

static void test_conn_cases(void)
{
	size_t i;

	for (i = 0; i < sizeof(conn_cases) / sizeof(conn_cases[0]); i++)
		run_conn_case(&conn_cases[i]);
}

static void test_long_line(void)
{
	struct bench_conn conn;
	const char *error = NULL;
	char *big;
	int sv[2], ret;
	struct script script;
	pthread_t thread;

	/* One byte over the limit, sent in one piece by a thread (the
	 * socket buffer may be smaller than the line). */
	big = malloc(BENCH_LINE_MAX + 16);
	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	memset(big, 'x', BENCH_LINE_MAX + 16);
	memcpy(big, "* ", 2);
	big[BENCH_LINE_MAX + 13] = '\r';
	big[BENCH_LINE_MAX + 14] = '\n';
	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CU_ASSERT_FATAL(bench_conn_init(&conn, 5000) == 0);
	conn.fd = sv[0];
	script.fd = sv[1];
	script.data = big;
	script.len = BENCH_LINE_MAX + 15;
	CU_ASSERT_FATAL(pthread_create(&thread, NULL, script_writer,
				       &script) == 0);
	ret = bench_conn_read_response(&conn, &error);
	CU_ASSERT_EQUAL(ret, -1);
	CU_ASSERT_PTR_NOT_NULL(error);
	bench_conn_deinit(&conn);	/* closes sv[0]: the writer stops */
	pthread_join(thread, NULL);
	close(sv[1]);
	free(big);
}

static void test_greeting(void)
{
	static const struct {
		const char *script;
		int ret;
		bool literal_plus;
	} cases[] = {
		{ "* OK [CAPABILITY IMAP4rev1 LITERAL+ STARTTLS] hi\r\n", 0,
		  true },
		{ "* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n", 0, true },
		{ "* OK [CAPABILITY IMAP4rev1 literal+]\r\n", 0, true },
		{ "* OK ready\r\n", 0, false },
		{ "* PREAUTH hi\r\n", 0, false },
		{ "* BYE too busy\r\n", -1, false },
		{ "hello\r\n", -1, false },
		{ "", -1, false },
	};
	struct bench_conn conn;
	struct script script;
	pthread_t thread;
	const char *error;
	size_t i;
	int sv[2];

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
		CU_ASSERT_FATAL(bench_conn_init(&conn, 5000) == 0);
		conn.fd = sv[0];
		script.fd = sv[1];
		script.data = cases[i].script;
		script.len = strlen(cases[i].script);
		CU_ASSERT_FATAL(pthread_create(&thread, NULL, script_writer,
					       &script) == 0);
		CU_ASSERT_EQUAL(bench_conn_greeting(&conn, &error),
				cases[i].ret);
		CU_ASSERT_EQUAL(conn.cap_literal_plus, cases[i].literal_plus);
		pthread_join(thread, NULL);
		close(sv[1]);
		bench_conn_deinit(&conn);
	}
}

static void test_names(void)
{
	enum bench_workload wl;

	CU_ASSERT(bench_workload_parse("append", &wl) && wl == BENCH_WL_APPEND);
	CU_ASSERT(bench_workload_parse("CreateDelete", &wl) &&
		  wl == BENCH_WL_CREATEDELETE);
	CU_ASSERT(bench_workload_parse("lag", &wl) && wl == BENCH_WL_LAG);
	CU_ASSERT(!bench_workload_parse("appendx", &wl));
	CU_ASSERT(!bench_workload_parse("", &wl));
	CU_ASSERT_STRING_EQUAL(bench_cmd_name(BENCH_CMD_STORE), "STORE");
	CU_ASSERT_STRING_EQUAL(bench_cmd_name(BENCH_CMD_COUNT), "?");
	CU_ASSERT_STRING_EQUAL(bench_status_name(BENCH_STATUS_NO), "NO");
}

int main(void)
{
	CU_TestInfo tests[] = {
		{ "literal markers", test_literal_marker },
		{ "user and password patterns", test_expand_pattern },
		{ "nearest-rank percentiles", test_percentile },
		{ "message sizes", test_make_message },
		{ "commands against a scripted server", test_conn_cases },
		{ "an overlong response line", test_long_line },
		{ "greetings", test_greeting },
		{ "names", test_names },
		CU_TEST_INFO_NULL,
	};

	return cu_run("bench", tests);
}
