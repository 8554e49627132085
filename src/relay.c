/*
 * relay.c - opening internal sessions (with retries) and relaying a
 * session's bytes both ways.
 *
 * One thread relays one session: it polls both sockets and copies what
 * arrives to the other side with a blocking write.  A slow reader on one
 * side therefore slows the other direction down too, which is the flow
 * control a direct connection would have had; writes are bounded by
 * RELAY_IO_TIMEOUT_MS, so a peer that stops reading entirely cannot hold
 * the thread forever.  TLS may hold decrypted bytes that the socket no
 * longer shows, so conn_pending() is asked before every poll.
 *
 * Nothing the client sends is looked at.  The backend's output goes
 * through struct relay_scan, which costs a few comparisons per byte of
 * response lines and nothing per byte of literals.
 *
 * No locks: every function works on the calling thread's own data.
 */
#include "autoconfig.h"

#include "relay.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "server.h"
#include "tls.h"

#define RELAY_CHUNK (16 * 1024)
#define RELAY_OPENING_MAGIC "PLUTO-SESSION"
#define RELAY_OK_PREFIX "* OK [PLUTO-SESSION]"

static _Thread_local char relay_errbuf[320];

static const char *relay_error(const char *fmt, ...) PLUTO_PRINTF(1, 2);

static const char *relay_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(relay_errbuf, sizeof(relay_errbuf), fmt, ap);
	va_end(ap);
	return relay_errbuf;
}

/*
 * Opening lines
 */

static bool user_valid(const char *user, size_t len)
{
	if (!auth_name_valid(user, len))
		return false;
	return memchr(user, ' ', len) == NULL;
}

/* Printable ASCII without space: what "ip:port" and "[ip6]:port" use. */
static bool addr_valid(const char *addr, size_t len)
{
	if (len == 0 || len > RELAY_ADDR_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)addr[i];

		if (ch <= 0x20 || ch >= 0x7f)
			return false;
	}
	return true;
}

int relay_opening_line(struct buf *out, const char *user,
		       const char *client_addr, const char *worker,
		       const char **error_r)
{
	size_t start = out->len;

	if (!user_valid(user, strlen(user))) {
		*error_r = "user name cannot be sent to a backend";
		return -1;
	}
	if (!addr_valid(client_addr, strlen(client_addr))) {
		*error_r = "invalid client address";
		return -1;
	}
	if (worker != NULL && !config_node_name_valid(worker)) {
		*error_r = "invalid worker name";
		return -1;
	}
	if (buf_printf(out, RELAY_OPENING_MAGIC " 1 %s %s", user,
		       client_addr) < 0 ||
	    (worker != NULL && buf_printf(out, " %s", worker) < 0) ||
	    buf_append_str(out, "\r\n") < 0) {
		out->len = start;
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}

/* Splits off the next space-separated token of [*p, end).  Returns false
 * when there is none or it is empty (two spaces in a row). */
static bool next_token(const char **p, const char *end, const char **tok_r,
		       size_t *len_r)
{
	const char *s = *p;
	const char *sp;

	if (s >= end)
		return false;
	sp = memchr(s, ' ', (size_t)(end - s));
	if (sp == NULL)
		sp = end;
	if (sp == s)
		return false;
	*tok_r = s;
	*len_r = (size_t)(sp - s);
	*p = sp < end ? sp + 1 : end;
	return true;
}

int relay_parse_opening(const char *line, size_t len,
			struct relay_opening *opening_r, const char **error_r)
{
	const char *p = line, *end = line + len;
	const char *tok;
	size_t tlen;

	memset(opening_r, 0, sizeof(*opening_r));
	/* A trailing space would otherwise pass as a missing last field. */
	if (len == 0 || len > RELAY_LINE_MAX || line[len - 1] == ' ' ||
	    memchr(line, '\0', len) != NULL) {
		*error_r = "malformed opening line";
		return -1;
	}
	if (!next_token(&p, end, &tok, &tlen) ||
	    tlen != strlen(RELAY_OPENING_MAGIC) ||
	    memcmp(tok, RELAY_OPENING_MAGIC, tlen) != 0) {
		*error_r = "not a PLUTO-SESSION opening line";
		return -1;
	}
	if (!next_token(&p, end, &tok, &tlen)) {
		*error_r = "missing protocol version";
		return -1;
	}
	if (tlen != 1 || tok[0] != '1') {
		*error_r = "unsupported protocol version";
		return -1;
	}
	if (!next_token(&p, end, &tok, &tlen) || !user_valid(tok, tlen)) {
		*error_r = "missing or invalid user name";
		return -1;
	}
	memcpy(opening_r->user, tok, tlen);
	if (!next_token(&p, end, &tok, &tlen) || !addr_valid(tok, tlen)) {
		*error_r = "missing or invalid client address";
		return -1;
	}
	memcpy(opening_r->client_addr, tok, tlen);
	if (p < end) {
		if (!next_token(&p, end, &tok, &tlen) ||
		    tlen > CONFIG_NODE_NAME_MAX) {
			*error_r = "invalid worker name";
			return -1;
		}
		memcpy(opening_r->worker, tok, tlen);
		if (!config_node_name_valid(opening_r->worker)) {
			memset(opening_r, 0, sizeof(*opening_r));
			*error_r = "invalid worker name";
			return -1;
		}
	}
	if (p < end) {
		memset(opening_r, 0, sizeof(*opening_r));
		*error_r = "too many fields in the opening line";
		return -1;
	}
	return 0;
}

/*
 * Opening a session
 */

/* A server's refusal, made fit for a log line and bounded. */
static void sanitise(char *dst, size_t size, const char *src, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len && n + 1 < size && n < 160; i++) {
		unsigned char ch = (unsigned char)src[i];

		dst[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	dst[n] = '\0';
}

static int open_once(const struct tls_creds *creds,
		     const struct relay_target *t, const struct buf *opening,
		     unsigned connect_ms, unsigned hs_ms, struct conn **conn_r,
		     const char **error_r)
{
	struct conn *c;
	const char *err = "?";
	const char *line;
	size_t len;
	char reason[200];
	int fd, ret, one = 1;

	fd = net_connect(t->ip, t->port, connect_ms, &err);
	if (fd < 0) {
		*error_r = relay_error("connect to %s (%s:%u): %s", t->node,
				       t->ip, (unsigned)t->port, err);
		return -1;
	}
	/* The TLS handshake and every relayed command are small writes
	 * answered by the peer: with Nagle's algorithm one of them waits
	 * for the peer's delayed ACK (40 ms on Linux) at every LOGIN. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_debug("cannot set TCP_NODELAY towards %s: %s", t->node,
			  strerror(errno));
	c = conn_new(fd);
	if (c == NULL) {
		*error_r = relay_error("out of memory");
		return -1;
	}
	if (conn_set_timeouts(c, hs_ms, hs_ms) < 0) {
		*error_r = relay_error("cannot set timeouts: %s",
				       strerror(errno));
		conn_close(&c);
		return -1;
	}
	if (conn_tls_client(c, creds, t->node, hs_ms, &err) < 0) {
		*error_r = relay_error("TLS with %s: %s", t->node, err);
		conn_close(&c);
		return -1;
	}
	ret = conn_write(c, opening->data, opening->len, &err);
	if (ret != CONN_OK) {
		*error_r = relay_error("opening at %s: %s", t->node,
				       ret == CONN_ERROR ? err :
				       conn_status_str(ret));
		conn_close(&c);
		return -1;
	}
	ret = conn_read_line(c, RELAY_LINE_MAX, &line, &len, &err);
	if (ret != CONN_OK) {
		*error_r = relay_error("no answer from %s: %s", t->node,
				       ret == CONN_ERROR ? err :
				       conn_status_str(ret));
		conn_close(&c);
		return -1;
	}
	if (len < strlen(RELAY_OK_PREFIX) ||
	    memcmp(line, RELAY_OK_PREFIX, strlen(RELAY_OK_PREFIX)) != 0) {
		sanitise(reason, sizeof(reason), line, len);
		*error_r = relay_error("%s refused the session: %s", t->node,
				       reason);
		conn_close(&c);
		return -1;
	}
	*conn_r = c;
	return 0;
}

static void pause_ms(unsigned ms)
{
	struct timespec ts = {
		.tv_sec = (time_t)(ms / 1000),
		.tv_nsec = (long)(ms % 1000) * 1000000L,
	};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int relay_open(const struct tls_creds *creds, const struct relay_target *t,
	       const struct buf *opening, unsigned connect_ms,
	       unsigned retries, struct server *srv, struct conn **conn_r,
	       const char **error_r)
{
	unsigned hs_ms = connect_ms > RELAY_MIN_HANDSHAKE_MS
				 ? connect_ms
				 : RELAY_MIN_HANDSHAKE_MS;

	*conn_r = NULL;
	for (unsigned attempt = 0;; attempt++) {
		if (open_once(creds, t, opening, connect_ms, hs_ms, conn_r,
			      error_r) == 0)
			return 0;
		log_debug("attempt %u to open a session at %s failed: %s",
			  attempt + 1, t->node, *error_r);
		if (attempt >= retries)
			break;
		if (srv != NULL && server_stopping(srv))
			break;
		/* A restarting node needs a moment; a dead one costs the
		 * client this pause per retry, so keep it short. */
		pause_ms(attempt < 5 ? 100U * (attempt + 1) : 500U);
	}
	return -1;
}

/*
 * The backend scanner
 */

void relay_scan_init(struct relay_scan *scan)
{
	memset(scan, 0, sizeof(*scan));
}

bool relay_scan_at_boundary(const struct relay_scan *scan)
{
	return scan->literal_left == 0 && scan->line_len == 0;
}

/* The literal size "{n}" or "{n+}" ending the line held in the tail
 * window (without CR), or false. */
static bool tail_literal(const struct relay_scan *scan, uint64_t *size_r)
{
	size_t end = scan->tail_len;
	size_t i;
	uint64_t n = 0;

	if (end > 0 && scan->tail[end - 1] == '\r')
		end--;
	if (end < 3 || scan->tail[end - 1] != '}')
		return false;
	end--;
	if (scan->tail[end - 1] == '+')
		end--;
	i = end;
	while (i > 0 && scan->tail[i - 1] >= '0' && scan->tail[i - 1] <= '9')
		i--;
	if (i == end || i == 0 || scan->tail[i - 1] != '{')
		return false;
	for (size_t k = i; k < end; k++) {
		unsigned d = (unsigned)(scan->tail[k] - '0');

		if (n > (UINT64_MAX - d) / 10)
			return false;
		n = n * 10 + d;
	}
	*size_r = n;
	return true;
}

static void scan_line_end(struct relay_scan *scan)
{
	uint64_t size;

	if (scan->line_len >= 5 && strncasecmp(scan->head, "* BYE", 5) == 0 &&
	    (scan->line_len == 5 || scan->head[5] == ' ' ||
	     scan->head[5] == '\r'))
		scan->bye = true;
	if (tail_literal(scan, &size))
		scan->literal_left = size;
	scan->line_len = 0;
	scan->tail_len = 0;
	memset(scan->head, 0, sizeof(scan->head));
}

void relay_scan_feed(struct relay_scan *scan, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len > 0) {
		unsigned char ch;

		if (scan->literal_left > 0) {
			size_t n = len;

			if (scan->literal_left < (uint64_t)n)
				n = (size_t)scan->literal_left;
			p += n;
			len -= n;
			scan->literal_left -= n;
			continue;
		}
		ch = *p++;
		len--;
		if (ch == '\n') {
			scan_line_end(scan);
			continue;
		}
		if (scan->line_len < sizeof(scan->head))
			scan->head[scan->line_len] = (char)ch;
		if (scan->line_len < SIZE_MAX)
			scan->line_len++;
		if (scan->tail_len == sizeof(scan->tail)) {
			memmove(scan->tail, scan->tail + 1,
				sizeof(scan->tail) - 1);
			scan->tail_len--;
		}
		scan->tail[scan->tail_len++] = (char)ch;
	}
}

/*
 * Relaying
 */

const char *relay_end_str(enum relay_end end)
{
	switch (end) {
	case RELAY_END_CLIENT:
		return "client closed";
	case RELAY_END_BACKEND:
		return "backend closed";
	case RELAY_END_STOP:
		return "server stopping";
	case RELAY_END_IDLE:
		return "idle timeout";
	}
	return "?";
}

static bool stopping(const struct relay_options *opts)
{
	return opts->server != NULL && server_stopping(opts->server);
}

static const char *bye_text(enum relay_end end)
{
	switch (end) {
	case RELAY_END_STOP:
		return "* BYE [UNAVAILABLE] Server shutting down\r\n";
	case RELAY_END_IDLE:
		return "* BYE Autologout; idle for too long\r\n";
	case RELAY_END_BACKEND:
		return "* BYE [UNAVAILABLE] Backend unavailable, please log"
		       " in again\r\n";
	case RELAY_END_CLIENT:
		break;
	}
	return NULL;
}

enum relay_end relay_run(struct conn *client, struct conn *backend,
			 const struct buf *initial,
			 const struct relay_options *opts,
			 struct relay_stats *stats_r)
{
	struct relay_scan scan;
	unsigned char *chunk;
	enum relay_end end;
	const char *err = NULL;
	const char *bye;
	int idle = opts->idle_ms == 0 ? -1
		   : opts->idle_ms > INT_MAX ? INT_MAX : (int)opts->idle_ms;

	memset(stats_r, 0, sizeof(*stats_r));
	relay_scan_init(&scan);
	(void)conn_set_timeouts(client, RELAY_IO_TIMEOUT_MS,
				RELAY_IO_TIMEOUT_MS);
	(void)conn_set_timeouts(backend, RELAY_IO_TIMEOUT_MS,
				RELAY_IO_TIMEOUT_MS);
	chunk = malloc(RELAY_CHUNK);
	if (chunk == NULL) {
		log_warnx("out of memory for a relay buffer");
		end = RELAY_END_CLIENT;
		goto out;
	}
	if (initial != NULL && initial->len > 0) {
		if (conn_write(backend, initial->data, initial->len, &err) !=
		    CONN_OK) {
			end = RELAY_END_BACKEND;
			goto out;
		}
		stats_r->to_backend += initial->len;
	}
	for (;;) {
		bool client_ready = conn_pending(client);
		bool backend_ready = conn_pending(backend);
		struct pollfd pfd[2] = {
			{ .fd = conn_fd(client), .events = POLLIN },
			{ .fd = conn_fd(backend), .events = POLLIN },
		};
		size_t n = 0;
		int ret;

		ret = poll(pfd, 2, client_ready || backend_ready ? 0 : idle);
		if (ret < 0) {
			if (errno == EINTR)
				continue;
			log_warn("poll in relay failed");
			end = RELAY_END_CLIENT;
			break;
		}
		if (ret == 0 && !client_ready && !backend_ready) {
			end = RELAY_END_IDLE;
			break;
		}
		/* server_stop() shuts the client's socket down for reading.
		 * Reading that end-of-file would spoil a TLS session for the
		 * goodbye (GnuTLS refuses to send after a premature
		 * termination), so look at the flag first. */
		if (stopping(opts)) {
			end = RELAY_END_STOP;
			break;
		}
		if ((pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0)
			client_ready = true;
		if ((pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0)
			backend_ready = true;

		/* The backend first: a BYE it sent just before closing
		 * reaches the client before we look at the client. */
		if (backend_ready) {
			ret = conn_read_some(backend, chunk, RELAY_CHUNK, &n,
					     &err);
			if (ret != CONN_OK) {
				if (ret == CONN_ERROR)
					log_debug("backend read: %s", err);
				end = RELAY_END_BACKEND;
				break;
			}
			relay_scan_feed(&scan, chunk, n);
			if (conn_write(client, chunk, n, &err) != CONN_OK) {
				end = stopping(opts) ? RELAY_END_STOP
						     : RELAY_END_CLIENT;
				break;
			}
			stats_r->to_client += n;
		}
		if (client_ready) {
			ret = conn_read_some(client, chunk, RELAY_CHUNK, &n,
					     &err);
			if (ret != CONN_OK) {
				if (ret == CONN_ERROR)
					log_debug("client read: %s", err);
				end = stopping(opts) ? RELAY_END_STOP
						     : RELAY_END_CLIENT;
				break;
			}
			if (conn_write(backend, chunk, n, &err) != CONN_OK) {
				end = RELAY_END_BACKEND;
				break;
			}
			stats_r->to_backend += n;
		}
	}
out:
	free(chunk);
	stats_r->backend_bye = scan.bye;
	bye = bye_text(end);
	if (end == RELAY_END_BACKEND && !opts->bye_on_backend_loss)
		bye = NULL;
	/* Our BYE goes only between two responses: inside a literal or a
	 * line it would corrupt what the client is parsing, and a client
	 * cut off there sees the connection end anyway. */
	if (bye != NULL && !scan.bye && relay_scan_at_boundary(&scan) &&
	    conn_write(client, bye, strlen(bye), &err) == CONN_OK)
		stats_r->sent_bye = true;
	return end;
}
