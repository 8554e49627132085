/*
 * test_tls.c - sockets and connections, plain and TLS, over socketpair()
 * and loopback, with certificates made by pki.c.
 *
 * The two ends of a connection live in one process: handshakes run the
 * server side in a thread and the client side in the test's thread.  Data
 * small enough for the socket buffer is then written and read from the
 * test's thread alone; larger transfers use writer threads.  CUnit is not
 * thread-safe, so helper threads only record what happened and the
 * test's thread asserts after joining them.
 */
#include "autoconfig.h"

#include "cu_run.h"
#include "net.h"
#include "pki.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HS_TIMEOUT 5000

/* A throw-away PKI on disk: the internal CA, node certificates, a foreign
 * CA's certificate for a worker, one with a name no config has, a
 * self-signed public certificate, and an RSA CA with two nodes. */
static char *pki_dir;

enum ident {
	ID_DISTRIBUTOR,
	ID_STORAGE,
	ID_WORKER1,
	ID_FOREIGN_WORKER1,	/* signed by the foreign CA */
	ID_WORKER9,		/* internal CA, a name nobody accepts */
	ID_PUBLIC,		/* self-signed "localhost" */
	ID_RSA_DISTRIBUTOR,	/* signed by the RSA CA */
	ID_RSA_STORAGE,
	ID_COUNT,
};

static struct {
	char cert[512], key[512];
} files[ID_COUNT];
static char ca_file[512], rsa_ca_file[512], empty_file[512];

static void write_pem(const char *path, const char *pem, bool secret)
{
	const char *error = NULL;

	if (pki_write_file(path, pem, strlen(pem), secret ? 0600 : 0644,
			   false, &error) < 0)
		fprintf(stderr, "%s\n", error);
}

static void write_node(enum ident id, const struct pki_ca *ca,
		       const struct pki_key_params *kp, const char *name)
{
	static const char *const ips[] = { "127.0.0.1", "::1" };
	const struct pki_subject subject = { name, ips, 2 };
	struct pki_pem_pair pair;
	const char *error = NULL;
	int ret;

	snprintf(files[id].cert, sizeof(files[id].cert), "%s/%d.pem", pki_dir,
		 (int)id);
	snprintf(files[id].key, sizeof(files[id].key), "%s/keys/%d.key",
		 pki_dir, (int)id);
	if (ca != NULL)
		ret = pki_issue_node(ca, kp, &subject, 2, &pair, &error);
	else
		ret = pki_self_signed(kp, &subject, 2, &pair, &error);
	CU_ASSERT_FATAL(ret == 0);
	write_pem(files[id].cert, pair.cert_pem, false);
	write_pem(files[id].key, pair.key_pem, true);
	pki_pem_pair_free(&pair);
}

static void write_ca(const struct pki_ca *ca, char *path, size_t size,
		     const char *name)
{
	struct pki_pem_pair pair;
	const char *error = NULL;

	snprintf(path, size, "%s/%s", pki_dir, name);
	CU_ASSERT_FATAL(pki_ca_export(ca, &pair, &error) == 0);
	write_pem(path, pair.cert_pem, false);
	pki_pem_pair_free(&pair);
}

static void fixture(void)
{
	static const struct pki_key_params ec = { PKI_KEY_ECDSA_P256, 0 };
	static const struct pki_key_params rsa = { PKI_KEY_RSA, 2048 };
	struct pki_ca *ca = NULL, *foreign = NULL, *rsa_ca = NULL;
	const char *error = NULL;

	if (pki_dir != NULL)
		return;
	pki_dir = cu_tempdir("test_tls");
	CU_ASSERT_PTR_NOT_NULL_FATAL(pki_dir);
	CU_ASSERT_FATAL(pki_ca_generate(&ec, "internal CA", 2, &ca,
					&error) == 0);
	CU_ASSERT_FATAL(pki_ca_generate(&ec, "internal CA", 2, &foreign,
					&error) == 0);
	CU_ASSERT_FATAL(pki_ca_generate(&rsa, "RSA CA", 2, &rsa_ca,
					&error) == 0);
	write_ca(ca, ca_file, sizeof(ca_file), "ca.pem");
	write_ca(rsa_ca, rsa_ca_file, sizeof(rsa_ca_file), "rsa-ca.pem");
	snprintf(empty_file, sizeof(empty_file), "%s/empty.pem", pki_dir);
	write_pem(empty_file, "", false);
	write_node(ID_DISTRIBUTOR, ca, &ec, "distributor");
	write_node(ID_STORAGE, ca, &ec, "storage");
	write_node(ID_WORKER1, ca, &ec, "worker-1");
	write_node(ID_FOREIGN_WORKER1, foreign, &ec, "worker-1");
	write_node(ID_WORKER9, ca, &ec, "worker-9");
	write_node(ID_PUBLIC, NULL, &ec, "localhost");
	write_node(ID_RSA_DISTRIBUTOR, rsa_ca, &rsa, "distributor");
	write_node(ID_RSA_STORAGE, rsa_ca, &rsa, "storage");
	pki_ca_free(&ca);
	pki_ca_free(&foreign);
	pki_ca_free(&rsa_ca);
}

static struct tls_creds *internal(const char *ca, enum ident id)
{
	struct tls_creds *creds = NULL;
	const char *error = NULL;

	fixture();
	if (tls_creds_internal(ca, files[id].cert, files[id].key, &creds,
			       &error) < 0)
		fprintf(stderr, "creds: %s\n", error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(creds);
	return creds;
}

static void conn_pair(struct conn **a_r, struct conn **b_r)
{
	int sv[2];

	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	*a_r = conn_new(sv[0]);
	*b_r = conn_new(sv[1]);
	CU_ASSERT_PTR_NOT_NULL_FATAL(*a_r);
	CU_ASSERT_PTR_NOT_NULL_FATAL(*b_r);
}

/*
 * Handshakes: the server side in a thread.
 */

struct server_side {
	struct conn *conn;
	const struct tls_creds *creds;
	const char *const *names;
	int ret;
	char error[512];
};

static void *server_main(void *arg)
{
	struct server_side *s = arg;
	const char *error = NULL;

	s->ret = conn_tls_server(s->conn, s->creds, s->names, HS_TIMEOUT,
				 &error);
	if (s->ret < 0) {
		snprintf(s->error, sizeof(s->error), "%s", error);
		/* As a real server would: drop the connection, so that
		 * the client sees it go. */
		conn_wake(s->conn);
	}
	return NULL;
}

struct hs_result {
	int server_ret, client_ret;
	char server_error[512], client_error[512];
};

/* Runs both handshakes over the connected pair (server, client). */
static void handshake_pair(struct conn *server, const struct tls_creds *sc,
			   const char *const *names, struct conn *client,
			   const struct tls_creds *cc, const char *peer_name,
			   struct hs_result *r)
{
	struct server_side s = { server, sc, names, -1, "" };
	const char *error = NULL;
	pthread_t t;

	CU_ASSERT_FATAL(pthread_create(&t, NULL, server_main, &s) == 0);
	r->client_ret = conn_tls_client(client, cc, peer_name, HS_TIMEOUT,
					&error);
	r->client_error[0] = '\0';
	if (r->client_ret < 0) {
		snprintf(r->client_error, sizeof(r->client_error), "%s",
			 error);
		conn_wake(client);
	}
	pthread_join(t, NULL);
	r->server_ret = s.ret;
	snprintf(r->server_error, sizeof(r->server_error), "%s", s.error);
}

/* A healthy internal link: client "distributor", server "worker-1". */
static void internal_pair(struct conn **server_r, struct conn **client_r,
			  struct tls_creds **sc_r, struct tls_creds **cc_r)
{
	static const char *const names[] = { "distributor", NULL };
	struct hs_result r;

	*sc_r = internal(ca_file, ID_WORKER1);
	*cc_r = internal(ca_file, ID_DISTRIBUTOR);
	conn_pair(server_r, client_r);
	handshake_pair(*server_r, *sc_r, names, *client_r, *cc_r, "worker-1",
		       &r);
	if (r.server_ret != 0 || r.client_ret != 0)
		fprintf(stderr, "server: %s; client: %s\n", r.server_error,
			r.client_error);
	CU_ASSERT_FATAL(r.server_ret == 0 && r.client_ret == 0);
}

static void put(struct conn *c, const char *s)
{
	const char *error = NULL;

	CU_ASSERT_EQUAL(conn_write(c, s, strlen(s), &error), CONN_OK);
}

/* Reads a line and compares it. */
static void expect_line(struct conn *c, size_t max, const char *want)
{
	const char *line = NULL, *error = NULL;
	size_t len = 0;
	int ret = conn_read_line(c, max, &line, &len, &error);

	CU_ASSERT_EQUAL(ret, CONN_OK);
	if (ret == CONN_OK) {
		if (len != strlen(want) || strcmp(line, want) != 0)
			fprintf(stderr, "got \"%.40s\" (%zu), want \"%s\"\n",
				line, len, want);
		CU_ASSERT_EQUAL(len, strlen(want));
		CU_ASSERT_STRING_EQUAL(line, want);
	} else {
		fprintf(stderr, "read_line: %s (want \"%s\")\n",
			conn_status_str(ret), want);
	}
}

static int read_line_status(struct conn *c, size_t max)
{
	const char *line = NULL, *error = NULL;
	size_t len = 0;

	return conn_read_line(c, max, &line, &len, &error);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * net.c
 */

static void test_net_ipv4(void)
{
	const char *error = NULL;
	char addr[NET_ADDR_STRLEN], peer[NET_ADDR_STRLEN], want[64];
	uint16_t port;
	int lfd, cfd, afd, lfd2;

	lfd = net_listen("127.0.0.1", 0, 16, &error);
	CU_ASSERT_FATAL(lfd >= 0);
	port = net_local_port(lfd);
	CU_ASSERT(port != 0);
	/* A second listener on the same port is refused. */
	lfd2 = net_listen("127.0.0.1", port, 16, &error);
	CU_ASSERT_EQUAL(lfd2, -1);
	CU_ASSERT_EQUAL(errno, EADDRINUSE);

	errno = 0;
	CU_ASSERT_EQUAL(net_accept(lfd, 20, addr), -1);
	CU_ASSERT_EQUAL(errno, ETIMEDOUT);

	cfd = net_connect("127.0.0.1", port, 2000, &error);
	CU_ASSERT_FATAL(cfd >= 0);
	afd = net_accept(lfd, 2000, addr);
	CU_ASSERT_FATAL(afd >= 0);
	CU_ASSERT_EQUAL(strncmp(addr, "127.0.0.1:", 10), 0);
	net_peer_addr(cfd, peer, sizeof(peer));
	snprintf(want, sizeof(want), "127.0.0.1:%u", port);
	CU_ASSERT_STRING_EQUAL(peer, want);

	/* The accepted socket works as a conn. */
	struct conn *a = conn_new(afd), *c = conn_new(cfd);

	CU_ASSERT_STRING_EQUAL(conn_peer_addr(a), addr);
	put(c, "hello\r\n");
	expect_line(a, 100, "hello");
	conn_close(&a);
	conn_close(&c);
	CU_ASSERT_PTR_NULL(a);

	close(lfd);
	cfd = net_connect("127.0.0.1", port, 2000, &error);
	CU_ASSERT_EQUAL(cfd, -1);
	CU_ASSERT_EQUAL(errno, ECONNREFUSED);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "127.0.0.1"));

	CU_ASSERT_EQUAL(net_listen("localhost", 0, 1, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "not an IP address"));
	CU_ASSERT_EQUAL(net_connect("[::1]", 1, 100, &error), -1);
}

static void test_net_ipv6(void)
{
	const char *error = NULL;
	char addr[NET_ADDR_STRLEN], want[64];
	int lfd, cfd, afd;
	uint16_t port;

	lfd = net_listen("::1", 0, 16, &error);
	if (lfd < 0) {
		/* Containers without IPv6 loopback. */
		fprintf(stderr, "(no IPv6 loopback: %s) ", error);
		return;
	}
	port = net_local_port(lfd);
	cfd = net_connect("::1", port, 2000, &error);
	CU_ASSERT_FATAL(cfd >= 0);
	afd = net_accept(lfd, 2000, addr);
	CU_ASSERT_FATAL(afd >= 0);
	CU_ASSERT_EQUAL(strncmp(addr, "[::1]:", 6), 0);
	net_peer_addr(cfd, addr, sizeof(addr));
	snprintf(want, sizeof(want), "[::1]:%u", port);
	CU_ASSERT_STRING_EQUAL(addr, want);
	close(afd);
	close(cfd);
	close(lfd);
}

static void test_net_format(void)
{
	static const struct {
		const char *ip;
		uint16_t port;
		const char *want;
	} cases[] = {
		{ "192.0.2.1", 993, "192.0.2.1:993" },
		{ "2001:db8::1", 993, "[2001:db8::1]:993" },
		{ "::ffff:192.0.2.1", 1, "[::ffff:192.0.2.1]:1" },
		{ "0.0.0.0", 0, "0.0.0.0:0" },
	};
	static const char *const bad[] = { "", "[::1]", "1.2.3", "1.2.3.4.5",
					   "localhost", "::1%lo0x", " 1.2.3.4" };
	struct sockaddr_storage ss;
	struct sockaddr_un sun;
	socklen_t len;
	char buf[NET_ADDR_STRLEN];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CU_ASSERT_FATAL(net_parse_addr(cases[i].ip, cases[i].port, &ss,
					       &len));
		net_format_addr((struct sockaddr *)&ss, len, buf, sizeof(buf));
		CU_ASSERT_STRING_EQUAL(buf, cases[i].want);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CU_ASSERT_FALSE(net_parse_addr(bad[i], 1, &ss, &len));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	net_format_addr((struct sockaddr *)&sun, sizeof(sun), buf,
			sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "unix");
	/* Truncation still terminates. */
	net_parse_addr("2001:db8::1", 993, &ss, &len);
	net_format_addr((struct sockaddr *)&ss, len, buf, 6);
	CU_ASSERT_STRING_EQUAL(buf, "[2001");
}

/*
 * Plain connections
 */

static void test_plain_lines(void)
{
	struct conn *a, *b;
	const char *line = NULL, *error = NULL;
	size_t len = 0;
	char lit[16];

	conn_pair(&a, &b);
	CU_ASSERT_FALSE(conn_is_tls(a));
	CU_ASSERT_STRING_EQUAL(conn_peer_addr(a), "unix");
	CU_ASSERT_PTR_NULL(conn_peer_name(a));

	put(a, "one\r\ntwo\nthree");
	expect_line(b, 100, "one");
	CU_ASSERT_TRUE(conn_pending(b));
	expect_line(b, 100, "two");
	put(a, "\r\n");
	expect_line(b, 100, "three");
	CU_ASSERT_FALSE(conn_pending(b));

	/* Empty lines, bare LF, embedded NUL, lone CR kept. */
	CU_ASSERT_EQUAL(conn_write(a, "\r\n\na\0b\nx\ry\r\n", 12, &error),
			CONN_OK);
	expect_line(b, 10, "");
	expect_line(b, 10, "");
	CU_ASSERT_EQUAL(conn_read_line(b, 10, &line, &len, &error), CONN_OK);
	CU_ASSERT_EQUAL(len, 3);
	CU_ASSERT(memcmp(line, "a\0b", 4) == 0);
	expect_line(b, 10, "x\ry");

	/* The limit counts the line without CRLF. */
	put(a, "0123456789\r\n0123456789\r\n0123456789\n");
	expect_line(b, 10, "0123456789");
	CU_ASSERT_EQUAL(read_line_status(b, 9), CONN_TOO_LONG);
	/* Nothing consumed: a larger limit reads it. */
	expect_line(b, 10, "0123456789");
	CU_ASSERT_EQUAL(read_line_status(b, 9), CONN_TOO_LONG);
	CU_ASSERT_EQUAL(conn_skip_line(b, 100, &error), CONN_OK);

	/* Too long without any LF in sight, then skipped. */
	put(a, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	CU_ASSERT_EQUAL(read_line_status(b, 20), CONN_TOO_LONG);
	CU_ASSERT_EQUAL(conn_skip_line(b, 10, &error), CONN_TOO_LONG);
	put(a, "aaaa\nnext\n");
	CU_ASSERT_EQUAL(conn_skip_line(b, 1000, &error), CONN_OK);
	expect_line(b, 20, "next");

	/* A literal after its announcing line. */
	put(a, "a APPEND x {5}\r\nhello)\r\n");
	expect_line(b, 100, "a APPEND x {5}");
	CU_ASSERT_EQUAL(conn_read_exact(b, lit, 5, &error), CONN_OK);
	CU_ASSERT(memcmp(lit, "hello", 5) == 0);
	expect_line(b, 100, ")");

	/* read_some returns buffered bytes first. */
	put(a, "xyz\r\nrest");
	expect_line(b, 100, "xyz");
	CU_ASSERT_EQUAL(conn_read_some(b, lit, sizeof(lit), &len, &error),
			CONN_OK);
	CU_ASSERT_EQUAL(len, 4);
	CU_ASSERT(memcmp(lit, "rest", 4) == 0);

	/* Timeout, then EOF in the middle of a line. */
	CU_ASSERT_EQUAL(conn_set_timeouts(b, 100, 0), 0);
	long long t0 = now_ms();

	CU_ASSERT_EQUAL(read_line_status(b, 100), CONN_TIMEOUT);
	CU_ASSERT(now_ms() - t0 >= 90);
	CU_ASSERT_EQUAL(conn_read_exact(b, lit, 1, &error), CONN_TIMEOUT);
	put(a, "partial");
	conn_close(&a);
	CU_ASSERT_EQUAL(read_line_status(b, 100), CONN_EOF);
	CU_ASSERT_EQUAL(conn_read_exact(b, lit, 1, &error), CONN_EOF);
	/* Writing to a closed peer: EOF, not SIGPIPE. */
	CU_ASSERT_EQUAL(conn_write(b, "x\r\n", 3, &error), CONN_EOF);
	conn_close(&b);
	conn_close(&b);	/* NULL-safe */
}

/* A line spread over many tiny writes, each read separately. */
static void test_plain_growing_line(void)
{
	struct conn *a, *b;
	char big[70000];
	const char *line = NULL, *error = NULL;
	size_t len = 0;

	conn_pair(&a, &b);
	/* Longer than the default buffer: the buffer grows to the limit. */
	memset(big, 'q', sizeof(big));
	memcpy(big + sizeof(big) - 2, "\r\n", 2);
	/* 70000 bytes fit into a Unix socket's buffer (Linux: ~200 KiB),
	 * so one thread can write them all before reading. */
	CU_ASSERT_EQUAL(conn_write(a, big, 1000, &error), CONN_OK);
	CU_ASSERT_EQUAL(read_line_status(b, 500), CONN_TOO_LONG);
	CU_ASSERT_EQUAL(conn_write(a, big + 1000, sizeof(big) - 1000, &error),
			CONN_OK);
	CU_ASSERT_EQUAL(conn_read_line(b, 69998, &line, &len, &error),
			CONN_OK);
	CU_ASSERT_EQUAL(len, 69998);
	CU_ASSERT_EQUAL(line[69997], 'q');
	CU_ASSERT_EQUAL(line[69998], '\0');
	conn_close(&a);
	conn_close(&b);
}

/*
 * Writer threads for transfers larger than a socket buffer.
 */

struct writer {
	struct conn *conn;
	size_t total, piece;
	const char *trailer;
	int ret;
};

static unsigned char pattern(size_t i)
{
	return (unsigned char)((i * 7 + i / 251) & 0xff);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	unsigned char piece[4096];
	const char *error = NULL;
	size_t sent = 0;

	w->ret = CONN_OK;
	while (sent < w->total && w->ret == CONN_OK) {
		size_t n = w->total - sent;

		if (n > w->piece)
			n = w->piece;
		for (size_t i = 0; i < n; i++)
			piece[i] = pattern(sent + i);
		w->ret = conn_write(w->conn, piece, n, &error);
		sent += n;
	}
	if (w->ret == CONN_OK && w->trailer != NULL)
		w->ret = conn_write(w->conn, w->trailer, strlen(w->trailer),
				    &error);
	return NULL;
}

struct checker {
	size_t seen, max_chunk;
	bool bad;
};

static int check_chunk(void *ctx, const void *data, size_t len)
{
	struct checker *ck = ctx;
	const unsigned char *p = data;

	if (len > ck->max_chunk)
		ck->max_chunk = len;
	for (size_t i = 0; i < len; i++)
		ck->bad = ck->bad || p[i] != pattern(ck->seen + i);
	ck->seen += len;
	return 0;
}

static int refuse_chunk(void *ctx, const void *data, size_t len)
{
	(void)ctx;
	(void)data;
	(void)len;
	return -1;
}

/*
 * TLS
 */

static void test_tls_data_both_ways(void)
{
	struct tls_creds *sc, *cc;
	struct conn *s, *c;
	const char *error = NULL;
	char buf[512];
	struct writer w;
	struct checker ck = { 0, 0, false };
	pthread_t t;

	internal_pair(&s, &c, &sc, &cc);
	CU_ASSERT_TRUE(conn_is_tls(s));
	CU_ASSERT_TRUE(conn_is_tls(c));
	CU_ASSERT_STRING_EQUAL(conn_peer_name(s), "distributor");
	CU_ASSERT_STRING_EQUAL(conn_peer_name(c), "worker-1");

	/* Lines both ways. */
	put(c, "a1 LOGIN x y\r\n");
	expect_line(s, 100, "a1 LOGIN x y");
	put(s, "* OK hello\r\n");
	expect_line(c, 100, "* OK hello");

	/* A literal. */
	put(c, "a2 APPEND INBOX {11}\r\nhello world\r\n");
	expect_line(s, 100, "a2 APPEND INBOX {11}");
	CU_ASSERT_EQUAL(conn_read_exact(s, buf, 11, &error), CONN_OK);
	CU_ASSERT(memcmp(buf, "hello world", 11) == 0);
	expect_line(s, 100, "");

	/* One record per byte: the line is assembled across 12 reads. */
	for (const char *p = "split line\r\n"; *p != '\0'; p++)
		CU_ASSERT_EQUAL(conn_write(c, p, 1, &error), CONN_OK);
	expect_line(s, 100, "split line");

	/* Short reads across records: 7-byte records, 5-byte reads. */
	for (size_t i = 0; i < 350; i++)
		buf[i] = (char)pattern(i);
	for (size_t i = 0; i < 350; i += 7)
		CU_ASSERT_EQUAL(conn_write(c, buf + i, 7, &error), CONN_OK);
	memset(buf, 0, sizeof(buf));
	for (size_t i = 0; i < 350; i += 5)
		CU_ASSERT_EQUAL(conn_read_exact(s, buf + i, 5, &error),
				CONN_OK);
	for (size_t i = 0; i < 350; i++)
		CU_ASSERT_EQUAL((unsigned char)buf[i], pattern(i));

	/* Pending: the second line is already decrypted and buffered. */
	put(c, "p1\r\np2\r\n");
	expect_line(s, 100, "p1");
	CU_ASSERT_TRUE(conn_pending(s));
	expect_line(s, 100, "p2");
	CU_ASSERT_FALSE(conn_pending(s));

	/* Over the limit, then skipped. */
	memset(buf, 'x', 100);
	memcpy(buf + 100, "\r\nok\r\n", 7);
	put(c, buf);
	CU_ASSERT_EQUAL(read_line_status(s, 50), CONN_TOO_LONG);
	CU_ASSERT_EQUAL(conn_skip_line(s, 200, &error), CONN_OK);
	expect_line(s, 50, "ok");

	/* A 1 MiB literal streamed in chunks while a thread writes it. */
	w = (struct writer){ c, 1 << 20, 1000, "DONE\r\n", -99 };
	CU_ASSERT_FATAL(pthread_create(&t, NULL, writer_main, &w) == 0);
	CU_ASSERT_EQUAL(conn_read_stream(s, 1 << 20, check_chunk, &ck,
					 &error), CONN_OK);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(w.ret, CONN_OK);
	CU_ASSERT_EQUAL(ck.seen, 1 << 20);
	CU_ASSERT_FALSE(ck.bad);
	CU_ASSERT(ck.max_chunk > 0 && ck.max_chunk <= 16384);
	expect_line(s, 100, "DONE");

	/* A consumer may refuse a literal. */
	put(c, "abc");
	CU_ASSERT_EQUAL(conn_read_stream(s, 3, refuse_chunk, NULL, &error),
			CONN_ERROR);
	/* The refused chunk is left unread. */
	CU_ASSERT_EQUAL(conn_read_exact(s, buf, 3, &error), CONN_OK);
	CU_ASSERT(memcmp(buf, "abc", 3) == 0);

	/* Timeout, and the session survives it. */
	CU_ASSERT_EQUAL(conn_set_timeouts(s, 100, 1000), 0);
	CU_ASSERT_EQUAL(read_line_status(s, 100), CONN_TIMEOUT);
	put(c, "late\r\n");
	expect_line(s, 100, "late");

	/* close_notify: a clean EOF. */
	conn_close(&c);
	CU_ASSERT_EQUAL(read_line_status(s, 100), CONN_EOF);
	conn_close(&s);
	tls_creds_free(&sc);
	tls_creds_free(&cc);
	CU_ASSERT_PTR_NULL(sc);
}

static void test_tls_premature_termination(void)
{
	struct tls_creds *sc, *cc;
	struct conn *s, *c;
	const char *error = NULL;
	char buf[8];
	size_t len = 0;

	internal_pair(&s, &c, &sc, &cc);
	put(c, "abc");
	/* No close_notify: the socket just goes. */
	CU_ASSERT_EQUAL(shutdown(conn_fd(c), SHUT_RDWR), 0);
	CU_ASSERT_EQUAL(read_line_status(s, 100), CONN_EOF);
	CU_ASSERT_EQUAL(conn_read_some(s, buf, sizeof(buf), &len, &error),
			CONN_EOF);
	conn_close(&c);
	conn_close(&s);
	tls_creds_free(&sc);
	tls_creds_free(&cc);
}

/* Records that arrived together are read with one recv() and handed out
 * one by one: conn_pending() says so while the socket shows nothing, which
 * is what the relay asks before it polls. */
static void test_tls_records_read_ahead(void)
{
	struct tls_creds *sc, *cc;
	struct conn *s, *c;
	struct pollfd pfd;
	const char *error = NULL;
	char buf[16];
	size_t len = 0;

	internal_pair(&s, &c, &sc, &cc);
	/* Three writes, three records, all on loopback before we read. */
	put(c, "a1\r\n");
	put(c, "b2\r\n");
	put(c, "c3\r\n");
	usleep(20000);
	CU_ASSERT_EQUAL(conn_read_some(s, buf, 4, &len, &error), CONN_OK);
	CU_ASSERT_EQUAL(len, 4);
	CU_ASSERT_EQUAL(memcmp(buf, "a1\r\n", 4), 0);
	CU_ASSERT_TRUE(conn_pending(s));
	pfd.fd = conn_fd(s);
	pfd.events = POLLIN;
	pfd.revents = 0;
	CU_ASSERT_EQUAL(poll(&pfd, 1, 0), 0);
	expect_line(s, 100, "b2");
	CU_ASSERT_TRUE(conn_pending(s));
	expect_line(s, 100, "c3");
	CU_ASSERT_FALSE(conn_pending(s));
	/* And the buffer empty, a read waits for the socket again. */
	put(c, "d4\r\n");
	expect_line(s, 100, "d4");
	conn_close(&c);
	CU_ASSERT_EQUAL(read_line_status(s, 100), CONN_EOF);
	conn_close(&s);
	tls_creds_free(&sc);
	tls_creds_free(&cc);
}

/* A refused handshake: at least the refusing side fails, with a reason,
 * and the other side cannot exchange data. */
static void expect_refused(const char *ca_s, enum ident server_id,
			   const char *const *names, const char *ca_c,
			   enum ident client_id, const char *peer_name,
			   bool server_refuses, const char *why)
{
	struct tls_creds *sc = internal(ca_s, server_id);
	struct tls_creds *cc = internal(ca_c, client_id);
	struct conn *s, *c;
	struct hs_result r;

	conn_pair(&s, &c);
	handshake_pair(s, sc, names, c, cc, peer_name, &r);
	if (server_refuses) {
		CU_ASSERT_EQUAL(r.server_ret, -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(r.server_error, why));
		/* TLS 1.3: the client may finish first; then its first
		 * read finds the connection gone. */
		if (r.client_ret == 0)
			CU_ASSERT_NOT_EQUAL(read_line_status(c, 100), CONN_OK);
	} else {
		CU_ASSERT_EQUAL(r.client_ret, -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(r.client_error, why));
		CU_ASSERT_EQUAL(r.server_ret, -1);
	}
	if (strstr(server_refuses ? r.server_error : r.client_error, why) ==
	    NULL)
		fprintf(stderr, "server: %s; client: %s\n", r.server_error,
			r.client_error);
	conn_close(&s);
	conn_close(&c);
	tls_creds_free(&sc);
	tls_creds_free(&cc);
}

static void test_tls_foreign_ca(void)
{
	static const char *const names[] = { "distributor", "worker-1",
					     NULL };

	fixture();
	/* A client certificate from another CA, right name. */
	expect_refused(ca_file, ID_STORAGE, names, ca_file,
		       ID_FOREIGN_WORKER1, "storage", true,
		       "certificate refused");
	/* A server certificate from another CA, right name. */
	expect_refused(ca_file, ID_FOREIGN_WORKER1, names, ca_file,
		       ID_DISTRIBUTOR, "worker-1", false,
		       "certificate refused");
}

static void test_tls_wrong_name(void)
{
	static const char *const names[] = { "distributor", "storage", NULL };
	static const char *const worker1[] = { "storage", "worker-1", NULL };
	struct tls_creds *sc, *cc;
	struct conn *s, *c;
	struct hs_result r;

	fixture();
	/* Server refuses a client of the right CA with the wrong name. */
	expect_refused(ca_file, ID_WORKER1, names, ca_file, ID_WORKER9,
		       "worker-1", true, "worker-9");
	/* Client refuses a server that is not who it dialled. */
	expect_refused(ca_file, ID_WORKER1, names, ca_file, ID_DISTRIBUTOR,
		       "storage", false, "certificate refused");

	/* The peer name is the one from the list its certificate has. */
	sc = internal(ca_file, ID_STORAGE);
	cc = internal(ca_file, ID_WORKER1);
	conn_pair(&s, &c);
	handshake_pair(s, sc, worker1, c, cc, "storage", &r);
	CU_ASSERT_EQUAL(r.server_ret, 0);
	CU_ASSERT_EQUAL(r.client_ret, 0);
	CU_ASSERT_STRING_EQUAL(conn_peer_name(s), "worker-1");
	CU_ASSERT_STRING_EQUAL(conn_peer_name(c), "storage");
	put(s, "x\r\n");
	expect_line(c, 10, "x");
	conn_close(&s);
	conn_close(&c);
	tls_creds_free(&sc);
	tls_creds_free(&cc);
}

static void test_tls_no_client_cert(void)
{
	static const char *const names[] = { "distributor", NULL };
	struct tls_creds *sc = internal(ca_file, ID_WORKER1), *cc = NULL;
	const char *error = NULL;
	struct conn *s, *c;
	struct hs_result r;

	/* A client that trusts the CA but presents no certificate. */
	CU_ASSERT_FATAL(tls_creds_public_client(ca_file, &cc, &error) == 0);
	conn_pair(&s, &c);
	handshake_pair(s, sc, names, c, cc, "worker-1", &r);
	CU_ASSERT_EQUAL(r.server_ret, -1);
	if (r.client_ret == 0)
		CU_ASSERT_NOT_EQUAL(read_line_status(c, 100), CONN_OK);
	conn_close(&s);
	conn_close(&c);
	tls_creds_free(&sc);
	tls_creds_free(&cc);
}

struct blocked_reader {
	struct conn *conn;
	int ret;
};

static void *reader_main(void *arg)
{
	struct blocked_reader *br = arg;

	br->ret = read_line_status(br->conn, 100);
	return NULL;
}

static void *big_writer_main(void *arg)
{
	struct blocked_reader *br = arg;
	static char chunk[65536];
	const char *error = NULL;

	do {
		br->ret = conn_write(br->conn, chunk, sizeof(chunk), &error);
	} while (br->ret == CONN_OK);
	return NULL;
}

static void test_wake(void)
{
	struct tls_creds *sc, *cc;
	struct conn *s, *c, *a, *b;
	struct blocked_reader rd, wr;
	pthread_t tr, tw;

	/* TLS: a reader blocked with no timeout and a writer blocked on a
	 * full socket, on the same conn, both woken by a third thread. */
	internal_pair(&s, &c, &sc, &cc);
	rd = (struct blocked_reader){ s, -99 };
	wr = (struct blocked_reader){ s, -99 };
	CU_ASSERT_FATAL(pthread_create(&tr, NULL, reader_main, &rd) == 0);
	CU_ASSERT_FATAL(pthread_create(&tw, NULL, big_writer_main, &wr) ==
			0);
	usleep(100000);
	conn_wake(s);
	pthread_join(tr, NULL);
	pthread_join(tw, NULL);
	CU_ASSERT_EQUAL(rd.ret, CONN_WOKEN);
	CU_ASSERT_EQUAL(wr.ret, CONN_WOKEN);
	CU_ASSERT_TRUE(conn_is_woken(s));
	CU_ASSERT_EQUAL(read_line_status(s, 100), CONN_WOKEN);
	conn_close(&s);
	conn_close(&c);
	tls_creds_free(&sc);
	tls_creds_free(&cc);

	/* Plain, the same. */
	conn_pair(&a, &b);
	rd = (struct blocked_reader){ a, -99 };
	CU_ASSERT_FATAL(pthread_create(&tr, NULL, reader_main, &rd) == 0);
	usleep(50000);
	conn_wake(a);
	pthread_join(tr, NULL);
	CU_ASSERT_EQUAL(rd.ret, CONN_WOKEN);
	conn_close(&a);
	conn_close(&b);
}

static void test_starttls(void)
{
	struct tls_creds *sc = NULL, *cc = NULL;
	const char *error = NULL;
	struct conn *s, *c;
	struct hs_result r;

	fixture();
	CU_ASSERT_FATAL(tls_creds_public_server(files[ID_PUBLIC].cert,
						files[ID_PUBLIC].key, &sc,
						&error) == 0);
	/* The test client trusts the self-signed certificate itself. */
	CU_ASSERT_FATAL(tls_creds_public_client(files[ID_PUBLIC].cert, &cc,
						&error) == 0);

	conn_pair(&s, &c);
	put(s, "* OK ready\r\n");
	expect_line(c, 100, "* OK ready");
	put(c, "a STARTTLS\r\n");
	expect_line(s, 100, "a STARTTLS");
	put(s, "a OK begin TLS\r\n");
	expect_line(c, 100, "a OK begin TLS");
	handshake_pair(s, sc, NULL, c, cc, "localhost", &r);
	CU_ASSERT_EQUAL(r.server_ret, 0);
	CU_ASSERT_EQUAL(r.client_ret, 0);
	CU_ASSERT_TRUE(conn_is_tls(s));
	CU_ASSERT_PTR_NULL(conn_peer_name(s));
	put(c, "b LOGIN u p\r\n");
	expect_line(s, 100, "b LOGIN u p");
	put(s, "b OK\r\n");
	expect_line(c, 100, "b OK");
	/* A second STARTTLS is refused. */
	CU_ASSERT_EQUAL(conn_tls_server(s, sc, NULL, 100, &error), -1);
	conn_close(&c);
	conn_close(&s);

	/* By IP address: no SNI, the IP SAN matches. */
	conn_pair(&s, &c);
	handshake_pair(s, sc, NULL, c, cc, "::1", &r);
	CU_ASSERT_EQUAL(r.server_ret, 0);
	CU_ASSERT_EQUAL(r.client_ret, 0);
	conn_close(&c);
	conn_close(&s);

	/* Plaintext pipelined behind STARTTLS must not survive into the
	 * TLS session. */
	conn_pair(&s, &c);
	put(c, "a STARTTLS\r\nb LOGIN u p\r\n");
	expect_line(s, 100, "a STARTTLS");
	CU_ASSERT_EQUAL(conn_tls_server(s, sc, NULL, 100, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "pipelined"));
	CU_ASSERT_FALSE(conn_is_tls(s));
	conn_close(&c);
	conn_close(&s);

	/* Credentials used the wrong way round are refused. */
	conn_pair(&s, &c);
	CU_ASSERT_EQUAL(conn_tls_client(c, sc, "localhost", 100, &error), -1);
	CU_ASSERT_EQUAL(conn_tls_server(s, cc, NULL, 100, &error), -1);
	conn_close(&c);
	conn_close(&s);
	tls_creds_free(&sc);
	tls_creds_free(&cc);
}

static void test_tls_rsa(void)
{
	static const char *const names[] = { "distributor", NULL };
	struct tls_creds *sc = internal(rsa_ca_file, ID_RSA_STORAGE);
	struct tls_creds *cc = internal(rsa_ca_file, ID_RSA_DISTRIBUTOR);
	struct conn *s, *c;
	struct hs_result r;

	conn_pair(&s, &c);
	handshake_pair(s, sc, names, c, cc, "storage", &r);
	CU_ASSERT_EQUAL(r.server_ret, 0);
	CU_ASSERT_EQUAL(r.client_ret, 0);
	if (r.server_ret == 0 && r.client_ret == 0) {
		put(c, "rsa ping\r\n");
		expect_line(s, 100, "rsa ping");
		put(s, "rsa pong\r\n");
		expect_line(c, 100, "rsa pong");
	}
	conn_close(&c);
	conn_close(&s);
	tls_creds_free(&sc);
	tls_creds_free(&cc);

	/* The ECDSA internal CA does not vouch for the RSA CA's nodes;
	 * GnuTLS's client does not even offer a certificate the server's
	 * CA list does not name. */
	expect_refused(ca_file, ID_WORKER1, names, ca_file,
		       ID_RSA_DISTRIBUTOR, "worker-1", true, "required");
}

struct duplex_reader {
	struct conn *conn;
	size_t total;
	int ret;
	bool bad;
};

static int duplex_chunk(void *ctx, const void *data, size_t len)
{
	struct checker *ck = ctx;

	return check_chunk(ck, data, len);
}

static void *duplex_reader_main(void *arg)
{
	struct duplex_reader *d = arg;
	struct checker ck = { 0, 0, false };
	const char *error = NULL;

	d->ret = conn_read_stream(d->conn, d->total, duplex_chunk, &ck,
				  &error);
	d->bad = ck.bad || ck.seen != d->total;
	return NULL;
}

static void test_full_duplex(void)
{
	struct tls_creds *sc, *cc;
	struct conn *s, *c;
	struct writer ws, wc;
	struct duplex_reader rs, rc;
	pthread_t t[4];

	/* One reader and one writer per conn, both conns at once, as the
	 * distributor relays. */
	internal_pair(&s, &c, &sc, &cc);
	ws = (struct writer){ s, 2 << 20, 3000, NULL, -99 };
	wc = (struct writer){ c, 2 << 20, 4096, NULL, -99 };
	rs = (struct duplex_reader){ s, 2 << 20, -99, true };
	rc = (struct duplex_reader){ c, 2 << 20, -99, true };
	CU_ASSERT_FATAL(pthread_create(&t[0], NULL, writer_main, &ws) == 0);
	CU_ASSERT_FATAL(pthread_create(&t[1], NULL, writer_main, &wc) == 0);
	CU_ASSERT_FATAL(pthread_create(&t[2], NULL, duplex_reader_main,
				       &rs) == 0);
	CU_ASSERT_FATAL(pthread_create(&t[3], NULL, duplex_reader_main,
				       &rc) == 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CU_ASSERT_EQUAL(ws.ret, CONN_OK);
	CU_ASSERT_EQUAL(wc.ret, CONN_OK);
	CU_ASSERT_EQUAL(rs.ret, CONN_OK);
	CU_ASSERT_EQUAL(rc.ret, CONN_OK);
	CU_ASSERT_FALSE(rs.bad);
	CU_ASSERT_FALSE(rc.bad);
	conn_close(&c);
	conn_close(&s);
	tls_creds_free(&sc);
	tls_creds_free(&cc);
}

static void test_creds_errors(void)
{
	static const char *const names[] = { "x", NULL };
	struct tls_creds *creds = NULL, *pub = NULL;
	const char *error = NULL;
	struct conn *a, *b;

	fixture();
	CU_ASSERT_EQUAL(tls_creds_internal(empty_file,
					   files[ID_WORKER1].cert,
					   files[ID_WORKER1].key, &creds,
					   &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "no certificate found"));
	CU_ASSERT_EQUAL(tls_creds_internal(ca_file, "/nonexistent/c.pem",
					   files[ID_WORKER1].key, &creds,
					   &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "/nonexistent/c.pem"));
	/* A key that does not belong to the certificate. */
	CU_ASSERT_EQUAL(tls_creds_public_server(files[ID_WORKER1].cert,
						files[ID_STORAGE].key, &creds,
						&error), -1);
	CU_ASSERT_EQUAL(tls_creds_internal(NULL, files[ID_WORKER1].cert,
					   files[ID_WORKER1].key, &creds,
					   &error), -1);
	CU_ASSERT_PTR_NULL(creds);

	/* Internal servers need names; public ones take none. */
	creds = internal(ca_file, ID_WORKER1);
	CU_ASSERT_FATAL(tls_creds_public_server(files[ID_PUBLIC].cert,
						files[ID_PUBLIC].key, &pub,
						&error) == 0);
	conn_pair(&a, &b);
	CU_ASSERT_EQUAL(conn_tls_server(a, creds, NULL, 100, &error), -1);
	CU_ASSERT_EQUAL(conn_tls_server(a, pub, names, 100, &error), -1);
	CU_ASSERT_EQUAL(conn_tls_client(b, creds, NULL, 100, &error), -1);
	CU_ASSERT_EQUAL(conn_tls_client(b, creds, "", 100, &error), -1);
	/* A handshake with nobody answering times out. */
	long long t0 = now_ms();

	CU_ASSERT_EQUAL(conn_tls_client(b, creds, "worker-1", 200, &error),
			-1);
	CU_ASSERT(now_ms() - t0 < 3000);
	conn_close(&a);
	conn_close(&b);
	tls_creds_free(&creds);
	tls_creds_free(&pub);
	CU_ASSERT_STRING_EQUAL(conn_status_str(CONN_TOO_LONG), "too long");
}

static void *fill_writer_main(void *arg)
{
	struct blocked_reader *br = arg;
	static char chunk[65536];
	const char *error = NULL;
	int n = 0;

	/* Bounded, in case the timeout never fires. */
	do {
		br->ret = conn_write(br->conn, chunk, sizeof(chunk), &error);
	} while (br->ret == CONN_OK && ++n < 1000);
	return NULL;
}

static void test_write_timeout(void)
{
	struct tls_creds *sc, *cc;
	struct conn *s, *c, *a, *b;
	struct blocked_reader wr;
	pthread_t t;

	/* Nobody reads: the writer gives up after its timeout instead of
	 * blocking forever, plain and TLS. */
	conn_pair(&a, &b);
	CU_ASSERT_EQUAL(conn_set_timeouts(a, 0, 100), 0);
	wr = (struct blocked_reader){ a, -99 };
	CU_ASSERT_FATAL(pthread_create(&t, NULL, fill_writer_main, &wr) == 0);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(wr.ret, CONN_TIMEOUT);
	conn_close(&a);
	conn_close(&b);

	internal_pair(&s, &c, &sc, &cc);
	CU_ASSERT_EQUAL(conn_set_timeouts(c, 0, 100), 0);
	wr = (struct blocked_reader){ c, -99 };
	CU_ASSERT_FATAL(pthread_create(&t, NULL, fill_writer_main, &wr) == 0);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(wr.ret, CONN_TIMEOUT);
	/* The broken session is closed without waiting on close_notify. */
	long long t0 = now_ms();

	conn_close(&c);
	CU_ASSERT(now_ms() - t0 < 1000);
	conn_close(&s);
	tls_creds_free(&sc);
	tls_creds_free(&cc);
}

static void test_cleanup(void)
{
	cu_rmtree(pki_dir);
	free(pki_dir);
	pki_dir = NULL;
}

static CU_TestInfo tests[] = {
	{ "tls: records that arrive together are read ahead",
	  test_tls_records_read_ahead },
	{ "net: IPv4 listen, accept, connect", test_net_ipv4 },
	{ "net: IPv6 loopback", test_net_ipv6 },
	{ "net: address parsing and formatting", test_net_format },
	{ "plain: lines, limits, literals, timeout, EOF", test_plain_lines },
	{ "plain: a line longer than the buffer", test_plain_growing_line },
	{ "tls: data both ways across records", test_tls_data_both_ways },
	{ "tls: premature termination is EOF",
	  test_tls_premature_termination },
	{ "tls: foreign CA refused both ways", test_tls_foreign_ca },
	{ "tls: wrong node name refused both ways", test_tls_wrong_name },
	{ "tls: client without certificate refused",
	  test_tls_no_client_cert },
	{ "wake unblocks reader and writer", test_wake },
	{ "STARTTLS upgrade", test_starttls },
	{ "tls: RSA certificates", test_tls_rsa },
	{ "tls: full duplex, four threads", test_full_duplex },
	{ "write timeout, plain and TLS", test_write_timeout },
	{ "credential and API misuse", test_creds_errors },
	{ "cleanup", test_cleanup },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("tls", tests);
}
