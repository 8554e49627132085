/*
 * test_relay.c - the relay (opening lines, the backend scanner, relaying
 * over socket pairs) and the distributor's pure helpers (SASL PLAIN,
 * loopback detection).
 */
#include "autoconfig.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CUnit/CUnit.h>

#include "buf.h"
#include "cu_run.h"
#include "distributor.h"
#include "net.h"
#include "relay.h"
#include "tls.h"

/*
 * Opening lines
 */

static void test_opening_line(void)
{
	static const struct {
		const char *user, *addr, *worker;
		const char *expect;	/* NULL: refused */
	} cases[] = {
		{ "alice", "127.0.0.1:5000", NULL,
		  "PLUTO-SESSION 1 alice 127.0.0.1:5000\r\n" },
		{ "alice", "[::1]:5000", "worker-1",
		  "PLUTO-SESSION 1 alice [::1]:5000 worker-1\r\n" },
		{ "j\xc3\xbcrgen", "1.2.3.4:1", NULL,
		  "PLUTO-SESSION 1 j\xc3\xbcrgen 1.2.3.4:1\r\n" },
		{ "a b", "1.2.3.4:1", NULL, NULL },
		{ "a/b", "1.2.3.4:1", NULL, NULL },
		{ ".hidden", "1.2.3.4:1", NULL, NULL },
		{ "", "1.2.3.4:1", NULL, NULL },
		{ "tab\tname", "1.2.3.4:1", NULL, NULL },
		{ "alice", "", NULL, NULL },
		{ "alice", "1.2.3.4 1", NULL, NULL },
		{ "alice", "1.2.3.4:1", "bad name", NULL },
		{ "alice", "1.2.3.4:1", "", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf out = BUF_INIT;
		const char *err = NULL;
		int ret;

		buf_append_str(&out, "x");
		ret = relay_opening_line(&out, cases[i].user, cases[i].addr,
					 cases[i].worker, &err);
		if (cases[i].expect == NULL) {
			CU_ASSERT_EQUAL(ret, -1);
			CU_ASSERT_PTR_NOT_NULL(err);
			CU_ASSERT_EQUAL(out.len, 1);
		} else {
			CU_ASSERT_EQUAL_FATAL(ret, 0);
			CU_ASSERT_EQUAL(out.len, 1 + strlen(cases[i].expect));
			CU_ASSERT(memcmp(out.data + 1, cases[i].expect,
					 out.len - 1) == 0);
		}
		buf_free(&out);
	}
}

static void test_parse_opening(void)
{
	static const struct {
		const char *line;
		int ret;
		const char *user, *addr, *worker;
	} cases[] = {
		{ "PLUTO-SESSION 1 alice 127.0.0.1:5", 0, "alice",
		  "127.0.0.1:5", "" },
		{ "PLUTO-SESSION 1 bob [::1]:99 worker-2", 0, "bob",
		  "[::1]:99", "worker-2" },
		{ "PLUTO-SESSION 2 alice 127.0.0.1:5", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION 11 alice 127.0.0.1:5", -1, NULL, NULL, NULL },
		{ "pluto-session 1 alice 127.0.0.1:5", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION 1 alice", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION 1", -1, NULL, NULL, NULL },
		{ "", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION  1 alice 1.2.3.4:5", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION 1 alice 1.2.3.4:5 ", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION 1 alice  1.2.3.4:5", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION 1 ../x 1.2.3.4:5", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION 1 .x 1.2.3.4:5", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION 1 a/b 1.2.3.4:5", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION 1 a 1.2.3.4:5 w x", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION 1 a 1.2.3.4:5 w/x", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION 1 a 1.2.3.4:5 "
		  "w0123456789012345678901234567890123456789012345678901234567"
		  "890123", -1, NULL, NULL, NULL },
		{ "PLUTO-SESSION 1 a 1.2.3.4:5 "
		  "w0123456789012345678901234567890123456789012345678901234567"
		  "89", 0, "a", "1.2.3.4:5",
		  "w0123456789012345678901234567890123456789012345678901234567"
		  "89" },
		{ "PLUTO-SESSION 1 a 1.2.\x01.4:5", -1, NULL, NULL, NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct relay_opening o;
		const char *err = NULL;
		int ret;

		ret = relay_parse_opening(cases[i].line,
					  strlen(cases[i].line), &o, &err);
		CU_ASSERT_EQUAL(ret, cases[i].ret);
		if (ret != cases[i].ret)
			fprintf(stderr, "case %zu: %s\n", i, cases[i].line);
		if (cases[i].ret == 0 && ret == 0) {
			CU_ASSERT_STRING_EQUAL(o.user, cases[i].user);
			CU_ASSERT_STRING_EQUAL(o.client_addr, cases[i].addr);
			CU_ASSERT_STRING_EQUAL(o.worker, cases[i].worker);
		} else if (ret != 0) {
			CU_ASSERT_PTR_NOT_NULL(err);
		}
	}
}

static void test_parse_opening_nul_and_length(void)
{
	static const char with_nul[] = "PLUTO-SESSION 1 al\0ce 1.2.3.4:5";
	struct relay_opening o;
	const char *err;
	char *huge;

	CU_ASSERT_EQUAL(relay_parse_opening(with_nul, sizeof(with_nul) - 1,
					    &o, &err), -1);
	huge = malloc(RELAY_LINE_MAX + 10);
	CU_ASSERT_PTR_NOT_NULL_FATAL(huge);
	memset(huge, 'a', RELAY_LINE_MAX + 10);
	memcpy(huge, "PLUTO-SESSION 1 ", 16);
	CU_ASSERT_EQUAL(relay_parse_opening(huge, RELAY_LINE_MAX + 10, &o,
					    &err), -1);
	free(huge);
}

static void test_opening_round_trip(void)
{
	struct buf out = BUF_INIT;
	struct relay_opening o;
	const char *err;

	CU_ASSERT_EQUAL_FATAL(relay_opening_line(&out, "user7",
						 "[2001:db8::1]:993",
						 "worker-9", &err), 0);
	CU_ASSERT_EQUAL_FATAL(relay_parse_opening((const char *)out.data,
						  out.len - 2, &o, &err), 0);
	CU_ASSERT_STRING_EQUAL(o.user, "user7");
	CU_ASSERT_STRING_EQUAL(o.client_addr, "[2001:db8::1]:993");
	CU_ASSERT_STRING_EQUAL(o.worker, "worker-9");
	buf_free(&out);
}

/*
 * The scanner
 */

struct scan_case {
	const char *stream;
	bool bye;
	bool boundary;
};

static const struct scan_case scan_cases[] = {
	{ "", false, true },
	{ "* OK hello\r\n", false, true },
	{ "* OK hel", false, false },
	{ "* BYE Autologout\r\n", true, true },
	{ "* bye going\r\n", true, true },
	{ "* BYE\r\n", true, true },
	{ "* BYEBYE\r\n", false, true },
	{ "a1 OK * BYE\r\n", false, true },
	/* A BYE inside a literal is message text, not a response. */
	{ "* 1 FETCH (BODY[] {13}\r\n* BYE fake\r\n)\r\n", false, true },
	{ "* 1 FETCH (BODY[] {13}\r\n* BYE fa", false, false },
	{ "* 1 FETCH (BODY[] {0}\r\n)\r\n* BYE x\r\n", true, true },
	{ "* 1 FETCH (BODY[] {2}\r\n\r\n)\r\n", false, true },
	/* A literal ends mid-stream: the rest is lines again. */
	{ "* 1 FETCH (BODY[] {3}\r\nabc)\r\n* BYE now\r\n", true, true },
	/* Two literals in one response. */
	{ "* 1 FETCH (A {1}\r\nx B {4}\r\n\r\n\r\n)\r\n", false, true },
	/* LF alone ends a line too. */
	{ "* OK x\n* BYE y\n", true, true },
	/* Not literals: no digits, no brace, text after the brace. */
	{ "* OK {}\r\n* BYE\r\n", true, true },
	{ "* OK 12}\r\n* BYE\r\n", true, true },
	{ "* OK {12} x\r\n* BYE\r\n", true, true },
	/* An absurd size does not overflow: it is no literal at all. */
	{ "* OK {99999999999999999999999}\r\n* BYE\r\n", true, true },
	/* A long line keeps its head and its tail. */
	{ "* BYE 0123456789012345678901234567890123456789\r\n", true, true },
	{ "* OK 0123456789012345678901234567890123456789 {5}\r\nabcde",
	  false, true },
	{ "* OK 0123456789012345678901234567890123456789 {5}\r\nabcd",
	  false, false },
};

static void check_scan(const struct scan_case *c, size_t step)
{
	struct relay_scan scan;
	size_t len = strlen(c->stream);

	relay_scan_init(&scan);
	for (size_t off = 0; off < len; off += step) {
		size_t n = len - off < step ? len - off : step;

		relay_scan_feed(&scan, c->stream + off, n);
	}
	CU_ASSERT_EQUAL(scan.bye, c->bye);
	CU_ASSERT_EQUAL(relay_scan_at_boundary(&scan), c->boundary);
	if (scan.bye != c->bye || relay_scan_at_boundary(&scan) != c->boundary)
		fprintf(stderr, "scan case (step %zu): %s\n", step, c->stream);
}

static void test_scan(void)
{
	for (size_t i = 0; i < sizeof(scan_cases) / sizeof(scan_cases[0]);
	     i++) {
		check_scan(&scan_cases[i], 1);
		check_scan(&scan_cases[i], 3);
		check_scan(&scan_cases[i], 1000);
	}
}

static void test_scan_big_literal(void)
{
	struct relay_scan scan;
	size_t size = 20u * 1024 * 1024;
	char *body = malloc(size);
	char head[64];

	CU_ASSERT_PTR_NOT_NULL_FATAL(body);
	/* A body made of fake BYE lines. */
	for (size_t i = 0; i < size; i++)
		body[i] = "* BYE \r\n"[i % 8];
	relay_scan_init(&scan);
	snprintf(head, sizeof(head), "* 1 FETCH (RFC822 {%zu}\r\n", size);
	relay_scan_feed(&scan, head, strlen(head));
	relay_scan_feed(&scan, body, size - 100);
	CU_ASSERT_FALSE(relay_scan_at_boundary(&scan));
	relay_scan_feed(&scan, body + size - 100, 100);
	relay_scan_feed(&scan, ")\r\n", 3);
	CU_ASSERT_TRUE(relay_scan_at_boundary(&scan));
	CU_ASSERT_FALSE(scan.bye);
	free(body);
}

/*
 * The distributor's helpers
 */

static void test_sasl_plain(void)
{
	static const struct {
		const char *msg;
		size_t len;
		int ret;
		const char *user, *pass;
	} cases[] = {
		{ "\0alice\0secret", 13, 0, "alice", "secret" },
		{ "alice\0alice\0secret", 18, 0, "alice", "secret" },
		{ "\0alice\0", 7, 0, "alice", "" },
		{ "bob\0alice\0secret", 16, -2, NULL, NULL },
		{ "alic\0alice\0secret", 17, -2, NULL, NULL },
		{ "\0\0secret", 8, -1, NULL, NULL },
		{ "alice\0secret", 12, -1, NULL, NULL },
		{ "alicesecret", 11, -1, NULL, NULL },
		{ "", 0, -1, NULL, NULL },
		{ "\0alice\0sec\0ret", 14, -1, NULL, NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *user = NULL, *err = NULL;
		const void *pass = NULL;
		size_t ulen = 0, plen = 0;
		int ret;

		ret = distributor_sasl_plain(cases[i].msg, cases[i].len,
					     &user, &ulen, &pass, &plen, &err);
		CU_ASSERT_EQUAL(ret, cases[i].ret);
		if (ret != cases[i].ret)
			fprintf(stderr, "sasl case %zu\n", i);
		if (ret == 0 && cases[i].ret == 0) {
			CU_ASSERT_EQUAL(ulen, strlen(cases[i].user));
			CU_ASSERT(memcmp(user, cases[i].user, ulen) == 0);
			CU_ASSERT_EQUAL(plen, strlen(cases[i].pass));
			CU_ASSERT(memcmp(pass, cases[i].pass, plen) == 0);
		} else if (ret != 0) {
			CU_ASSERT_PTR_NOT_NULL(err);
		}
	}
}

static void test_loopback(void)
{
	static const struct {
		const char *ip;
		bool loopback;
	} cases[] = {
		{ "127.0.0.1", true },	  { "127.255.3.4", true },
		{ "::1", true },	  { "::ffff:127.0.0.1", true },
		{ "128.0.0.1", false },	  { "10.0.0.1", false },
		{ "::", false },	  { "::ffff:10.0.0.1", false },
		{ "2001:db8::1", false }, { "localhost", false },
		{ "", false },		  { "?", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CU_ASSERT_EQUAL(distributor_is_loopback(cases[i].ip),
				cases[i].loopback);
}

/*
 * Relaying over socket pairs: the test plays client and backend.
 */

struct relay_fixture {
	int client_fd;		/* the test's end of the client side */
	int backend_fd;		/* the test's end of the backend side */
	struct conn *client;	/* the relay's ends */
	struct conn *backend;
	struct buf initial;
	struct relay_options opts;
	struct relay_stats stats;
	enum relay_end end;
	pthread_t thread;
	bool joined;
};

static void *relay_thread(void *arg)
{
	struct relay_fixture *f = arg;

	f->end = relay_run(f->client, f->backend, &f->initial, &f->opts,
			   &f->stats);
	return NULL;
}

static void fixture_start(struct relay_fixture *f, const char *initial,
			  unsigned idle_ms, bool bye_on_loss)
{
	int cp[2], bp[2];

	memset(f, 0, sizeof(*f));
	CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, cp), 0);
	CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, bp), 0);
	f->client_fd = cp[0];
	f->backend_fd = bp[0];
	f->client = conn_new(cp[1]);
	f->backend = conn_new(bp[1]);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f->client);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f->backend);
	buf_init(&f->initial);
	if (initial != NULL)
		buf_append_str(&f->initial, initial);
	f->opts.idle_ms = idle_ms;
	f->opts.bye_on_backend_loss = bye_on_loss;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&f->thread, NULL, relay_thread,
					     f), 0);
}

static void fixture_join(struct relay_fixture *f)
{
	if (!f->joined)
		pthread_join(f->thread, NULL);
	f->joined = true;
}

static void fixture_finish(struct relay_fixture *f)
{
	fixture_join(f);
	conn_close(&f->client);
	conn_close(&f->backend);
	if (f->client_fd >= 0)
		close(f->client_fd);
	if (f->backend_fd >= 0)
		close(f->backend_fd);
	buf_free(&f->initial);
}

static void write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		CU_ASSERT_FATAL(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

/* Reads exactly len bytes (5 s at most). */
static bool read_exact(int fd, void *dst, size_t len)
{
	char *p = dst;

	while (len > 0) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 5000) <= 0)
			return false;
		n = read(fd, p, len);
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Reads until EOF (5 s at most) into out. */
static bool read_to_eof(int fd, struct buf *out)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		char tmp[4096];
		ssize_t n;

		if (poll(&pfd, 1, 5000) <= 0)
			return false;
		n = read(fd, tmp, sizeof(tmp));
		if (n < 0)
			return false;
		if (n == 0)
			return true;
		buf_append(out, tmp, (size_t)n);
	}
}

static bool buf_is(const struct buf *b, const char *s)
{
	return b->len == strlen(s) && memcmp(b->data, s, b->len) == 0;
}

static void test_relay_both_ways(void)
{
	struct relay_fixture f;
	char got[64];
	struct buf rest = BUF_INIT;

	fixture_start(&f, "a1 NOOP\r\n", 0, true);
	CU_ASSERT_TRUE(read_exact(f.backend_fd, got, 9));
	CU_ASSERT(memcmp(got, "a1 NOOP\r\n", 9) == 0);
	write_all(f.backend_fd, "a1 OK done\r\n", 12);
	CU_ASSERT_TRUE(read_exact(f.client_fd, got, 12));
	CU_ASSERT(memcmp(got, "a1 OK done\r\n", 12) == 0);
	/* Pipelined commands and a literal pass unchanged. */
	write_all(f.client_fd, "a2 NOOP\r\na3 APPEND x {3+}\r\nabc\r\n", 32);
	CU_ASSERT_TRUE(read_exact(f.backend_fd, got, 32));
	CU_ASSERT(memcmp(got, "a2 NOOP\r\na3 APPEND x {3+}\r\nabc\r\n", 32) ==
		  0);
	/* The client leaves: the relay ends without a BYE of its own. */
	shutdown(f.client_fd, SHUT_WR);
	fixture_join(&f);
	CU_ASSERT_EQUAL(f.end, RELAY_END_CLIENT);
	CU_ASSERT_FALSE(f.stats.sent_bye);
	CU_ASSERT_EQUAL(f.stats.to_backend, 9 + 32);
	CU_ASSERT_EQUAL(f.stats.to_client, 12);
	conn_close(&f.client);
	CU_ASSERT_TRUE(read_to_eof(f.client_fd, &rest));
	CU_ASSERT_EQUAL(rest.len, 0);
	buf_free(&rest);
	fixture_finish(&f);
}

/* The backend dies: the client is told BYE, once, between responses. */
static void test_relay_backend_lost(void)
{
	struct relay_fixture f;
	struct buf got = BUF_INIT;

	fixture_start(&f, NULL, 0, true);
	write_all(f.backend_fd, "* 1 EXISTS\r\n", 12);
	close(f.backend_fd);
	f.backend_fd = -1;
	fixture_join(&f);
	CU_ASSERT_EQUAL(f.end, RELAY_END_BACKEND);
	CU_ASSERT_TRUE(f.stats.sent_bye);
	conn_close(&f.client);
	CU_ASSERT_TRUE(read_to_eof(f.client_fd, &got));
	CU_ASSERT_TRUE(buf_is(&got, "* 1 EXISTS\r\n* BYE [UNAVAILABLE] Backend"
				    " unavailable, please log in again\r\n"));
	buf_free(&got);
	fixture_finish(&f);
}

static void test_relay_backend_bye(void)
{
	struct relay_fixture f;
	struct buf got = BUF_INIT;
	static const char out[] = "* BYE Logging out\r\na9 OK LOGOUT done\r\n";

	fixture_start(&f, NULL, 0, true);
	write_all(f.backend_fd, out, strlen(out));
	close(f.backend_fd);
	f.backend_fd = -1;
	fixture_join(&f);
	CU_ASSERT_EQUAL(f.end, RELAY_END_BACKEND);
	CU_ASSERT_TRUE(f.stats.backend_bye);
	CU_ASSERT_FALSE(f.stats.sent_bye);
	conn_close(&f.client);
	CU_ASSERT_TRUE(read_to_eof(f.client_fd, &got));
	CU_ASSERT_TRUE(buf_is(&got, out));
	buf_free(&got);
	fixture_finish(&f);
}

/* Cut off inside a literal: a BYE there would corrupt the message. */
static void test_relay_backend_lost_mid_literal(void)
{
	struct relay_fixture f;
	struct buf got = BUF_INIT;
	static const char out[] = "* 1 FETCH (BODY[] {100}\r\nFrom: x\r\n";

	fixture_start(&f, NULL, 0, true);
	write_all(f.backend_fd, out, strlen(out));
	close(f.backend_fd);
	f.backend_fd = -1;
	fixture_join(&f);
	CU_ASSERT_EQUAL(f.end, RELAY_END_BACKEND);
	CU_ASSERT_FALSE(f.stats.sent_bye);
	conn_close(&f.client);
	CU_ASSERT_TRUE(read_to_eof(f.client_fd, &got));
	CU_ASSERT_TRUE(buf_is(&got, out));
	buf_free(&got);
	fixture_finish(&f);
}

/* The failover node closes without a BYE: the distributor says it. */
static void test_relay_backend_lost_quietly(void)
{
	struct relay_fixture f;
	struct buf got = BUF_INIT;

	fixture_start(&f, NULL, 0, false);
	close(f.backend_fd);
	f.backend_fd = -1;
	fixture_join(&f);
	CU_ASSERT_EQUAL(f.end, RELAY_END_BACKEND);
	CU_ASSERT_FALSE(f.stats.sent_bye);
	conn_close(&f.client);
	CU_ASSERT_TRUE(read_to_eof(f.client_fd, &got));
	CU_ASSERT_EQUAL(got.len, 0);
	buf_free(&got);
	fixture_finish(&f);
}

static void test_relay_idle(void)
{
	struct relay_fixture f;
	struct buf got = BUF_INIT;

	fixture_start(&f, NULL, 200, true);
	fixture_join(&f);
	CU_ASSERT_EQUAL(f.end, RELAY_END_IDLE);
	CU_ASSERT_TRUE(f.stats.sent_bye);
	conn_close(&f.client);
	CU_ASSERT_TRUE(read_to_eof(f.client_fd, &got));
	CU_ASSERT_TRUE(buf_is(&got, "* BYE Autologout; idle for too long\r\n"));
	buf_free(&got);
	fixture_finish(&f);
}

/* Large transfers both ways at once, with the test reading and writing
 * concurrently (a writer thread per direction). */
struct pump {
	int fd;
	size_t size;
	unsigned char seed;
};

static void *pump_thread(void *arg)
{
	struct pump *p = arg;
	unsigned char chunk[8192];
	size_t done = 0;

	while (done < p->size) {
		size_t n = p->size - done < sizeof(chunk) ? p->size - done
							  : sizeof(chunk);

		for (size_t i = 0; i < n; i++)
			chunk[i] = (unsigned char)((done + i) * 7 + p->seed);
		write_all(p->fd, chunk, n);
		done += n;
	}
	return NULL;
}

struct drain {
	int fd;
	size_t size;
	unsigned char seed;
	size_t skip;		/* bytes of a header to skip first */
	bool ok;
};

static void *drain_thread(void *arg)
{
	struct drain *d = arg;
	unsigned char chunk[8192];
	size_t done = 0;

	d->ok = d->skip <= sizeof(chunk) && read_exact(d->fd, chunk, d->skip);
	while (d->ok && done < d->size) {
		size_t n = d->size - done < sizeof(chunk) ? d->size - done
							  : sizeof(chunk);

		if (!read_exact(d->fd, chunk, n)) {
			d->ok = false;
			break;
		}
		for (size_t i = 0; i < n; i++)
			if (chunk[i] != (unsigned char)((done + i) * 7 +
							d->seed))
				d->ok = false;
		done += n;
	}
	return NULL;
}

static void test_relay_bulk(void)
{
	static const char head[] = "* 1 FETCH (RFC822 {8388608}\r\n";
	const size_t size = 8u * 1024 * 1024;
	struct relay_fixture f;
	struct pump up, down;
	struct drain at_backend, at_client;
	pthread_t t[4];

	fixture_start(&f, NULL, 0, true);
	up = (struct pump){ f.client_fd, size, 3 };
	down = (struct pump){ f.backend_fd, size, 11 };
	at_backend = (struct drain){ f.backend_fd, size, 3, 0, false };
	at_client = (struct drain){ f.client_fd, size, 11, strlen(head),
				    false };
	/* The backend's bytes form one long literal, as a FETCH would. */
	write_all(f.backend_fd, head, strlen(head));
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t[0], NULL, pump_thread, &up),
			      0);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t[1], NULL, pump_thread, &down),
			      0);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t[2], NULL, drain_thread,
					     &at_backend), 0);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t[3], NULL, drain_thread,
					     &at_client), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CU_ASSERT_TRUE(at_backend.ok);
	CU_ASSERT_TRUE(at_client.ok);
	close(f.client_fd);
	f.client_fd = -1;
	fixture_finish(&f);
	CU_ASSERT_EQUAL(f.end, RELAY_END_CLIENT);
	CU_ASSERT_EQUAL(f.stats.to_backend, size);
	CU_ASSERT_EQUAL(f.stats.to_client, size + strlen(head));
}

/*
 * relay_open's failure path: nothing listens.
 */

static void test_open_refused(void)
{
	struct relay_target t = { "storage", "127.0.0.1", 0 };
	struct buf line = BUF_INIT;
	struct conn *c = NULL;
	const char *err = NULL;
	int fd;

	/* A port that was free a moment ago. */
	fd = net_listen("127.0.0.1", 0, 1, &err);
	CU_ASSERT_FATAL(fd >= 0);
	t.port = net_local_port(fd);
	close(fd);
	buf_append_str(&line, "PLUTO-SESSION 1 a 1.2.3.4:5\r\n");
	CU_ASSERT_EQUAL(relay_open(NULL, &t, &line, 500, 2, NULL, &c, &err),
			-1);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT_PTR_NOT_NULL_FATAL(err);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "connect to storage"));
	buf_free(&line);
}

static CU_TestInfo tests[] = {
	{ "opening line: built and refused", test_opening_line },
	{ "opening line: parsed and refused", test_parse_opening },
	{ "opening line: NUL and length", test_parse_opening_nul_and_length },
	{ "opening line: round trip", test_opening_round_trip },
	{ "scanner: table, every split", test_scan },
	{ "scanner: 20 MiB literal of fake BYEs", test_scan_big_literal },
	{ "SASL PLAIN messages", test_sasl_plain },
	{ "loopback addresses", test_loopback },
	{ "relay: both ways, pipelined, client EOF", test_relay_both_ways },
	{ "relay: backend lost -> BYE", test_relay_backend_lost },
	{ "relay: backend's own BYE is not doubled", test_relay_backend_bye },
	{ "relay: no BYE inside a literal",
	  test_relay_backend_lost_mid_literal },
	{ "relay: quiet close for the failover node",
	  test_relay_backend_lost_quietly },
	{ "relay: idle backstop", test_relay_idle },
	{ "relay: 8 MiB each way at once", test_relay_bulk },
	{ "open: refused after retries", test_open_refused },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("relay", tests);
}
