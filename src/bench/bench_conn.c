/*
 * bench_conn.c - sockets, the GnuTLS client side and IMAP response
 * reading for pluto-bench.
 *
 * Responses are read a whole response at a time: a line, and when it
 * ends in a literal marker, the literal (counted and dropped: the bench
 * never needs message contents) and the rest of the response after it.
 * The text kept is bounded by BENCH_LINE_MAX and the literal total by
 * BENCH_LITERAL_MAX, so a hostile or broken server costs at most that
 * much memory and never a crash.  Every read and write is bounded in time
 * by the connection's timeout.  No locks: one connection, one thread.
 */
#include "autoconfig.h"

#include "bench_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/x509.h>

#define BENCH_RBUF_SIZE 16384

static const char *conn_error(struct bench_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static const char *conn_error(struct bench_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->errbuf, sizeof(c->errbuf), fmt, ap);
	va_end(ap);
	return c->errbuf;
}

uint64_t bench_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

const char *bench_status_name(enum bench_status status)
{
	switch (status) {
	case BENCH_STATUS_OK:
		return "OK";
	case BENCH_STATUS_NO:
		return "NO";
	case BENCH_STATUS_BAD:
		return "BAD";
	case BENCH_STATUS_ERR:
		break;
	}
	return "ERR";
}

int bench_tls_init(struct bench_tls *tls, const char *cafile, bool insecure,
		   const char **error_r)
{
	static _Thread_local char err[256];
	int ret;

	tls->insecure = insecure;
	ret = gnutls_certificate_allocate_credentials(&tls->cred);
	if (ret < 0) {
		snprintf(err, sizeof(err), "TLS credentials: %s",
			 gnutls_strerror(ret));
		*error_r = err;
		return -1;
	}
	if (insecure)
		return 0;
	if (cafile != NULL) {
		ret = gnutls_certificate_set_x509_trust_file(
			tls->cred, cafile, GNUTLS_X509_FMT_PEM);
		if (ret <= 0) {
			snprintf(err, sizeof(err), "%s: no CA certificate read%s%s",
				 cafile, ret < 0 ? ": " : "",
				 ret < 0 ? gnutls_strerror(ret) : "");
			goto fail;
		}
	} else {
		ret = gnutls_certificate_set_x509_system_trust(tls->cred);
		if (ret <= 0) {
			snprintf(err, sizeof(err),
				 "no system CA certificates (use --cafile or "
				 "--insecure)%s%s", ret < 0 ? ": " : "",
				 ret < 0 ? gnutls_strerror(ret) : "");
			goto fail;
		}
	}
	return 0;
fail:
	gnutls_certificate_free_credentials(tls->cred);
	tls->cred = NULL;
	*error_r = err;
	return -1;
}

void bench_tls_deinit(struct bench_tls *tls)
{
	if (tls->cred != NULL)
		gnutls_certificate_free_credentials(tls->cred);
	tls->cred = NULL;
}

int bench_conn_init(struct bench_conn *c, int timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->timeout_ms = timeout_ms;
	c->rbuf = malloc(BENCH_RBUF_SIZE);
	c->text = malloc(BENCH_LINE_MAX + 1);
	if (c->rbuf == NULL || c->text == NULL) {
		free(c->rbuf);
		free(c->text);
		c->rbuf = NULL;
		c->text = NULL;
		return -1;
	}
	c->text[0] = '\0';
	return 0;
}

void bench_conn_deinit(struct bench_conn *c)
{
	if (c->session != NULL) {
		/* Best effort: the server may already have closed. */
		if (c->fd >= 0)
			(void)gnutls_bye(c->session, GNUTLS_SHUT_WR);
		gnutls_deinit(c->session);
		c->session = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->rbuf);
	free(c->text);
	c->rbuf = NULL;
	c->text = NULL;
}

/* Waits until fd is ready for events or the timeout passes.  Returns 1
 * when ready, 0 on timeout, -1 on error. */
static int conn_wait(int fd, short events, int timeout_ms)
{
	struct pollfd pfd;
	int ret;

	pfd.fd = fd;
	pfd.events = events;
	pfd.revents = 0;
	do {
		ret = poll(&pfd, 1, timeout_ms);
	} while (ret < 0 && errno == EINTR);
	return ret;
}

static int conn_connect_addr(struct bench_conn *c, const struct addrinfo *ai)
{
	int fd, flags, ret, soerr;
	socklen_t len;

	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
	if (fd < 0)
		return -1;
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		goto fail;
	ret = connect(fd, ai->ai_addr, ai->ai_addrlen);
	if (ret < 0 && errno != EINPROGRESS)
		goto fail;
	if (ret < 0) {
		ret = conn_wait(fd, POLLOUT, c->timeout_ms);
		if (ret == 0)
			errno = ETIMEDOUT;
		if (ret <= 0)
			goto fail;
		len = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
			goto fail;
		if (soerr != 0) {
			errno = soerr;
			goto fail;
		}
	}
	/* Blocking from here on: reads wait in poll(), writes are bounded
	 * by SO_SNDTIMEO. */
	if (fcntl(fd, F_SETFL, flags) < 0)
		goto fail;
	c->fd = fd;
	return 0;
fail:
	ret = errno;
	close(fd);
	errno = ret;
	return -1;
}

int bench_conn_connect(struct bench_conn *c, const char *host,
		       const char *port, const char **error_r)
{
	struct addrinfo hints, *res, *ai;
	struct timeval tv;
	int ret, one = 1, saved = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	ret = getaddrinfo(host, port, &hints, &res);
	if (ret != 0) {
		*error_r = conn_error(c, "%s port %s: %s", host, port,
				      gai_strerror(ret));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (conn_connect_addr(c, ai) == 0)
			break;
		saved = errno;
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		*error_r = conn_error(c, "connect to %s port %s: %s", host,
				      port, strerror(saved));
		return -1;
	}
	tv.tv_sec = c->timeout_ms / 1000;
	tv.tv_usec = (c->timeout_ms % 1000) * 1000;
	/* Latency is what we measure: do not let Nagle hold back the
	 * second half of a command. */
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		*error_r = conn_error(c, "SO_SNDTIMEO: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* True when host is an IPv4 or IPv6 address literal: SNI must not carry
 * one (RFC 6066, section 3). */
static bool host_is_address(const char *host)
{
	unsigned char addr[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, addr) == 1 ||
		inet_pton(AF_INET6, host, addr) == 1;
}

int bench_conn_start_tls(struct bench_conn *c, const struct bench_tls *tls,
			 const char *host, const char **error_r)
{
	gnutls_datum_t out;
	unsigned int status;
	int ret;

	ret = gnutls_init(&c->session, GNUTLS_CLIENT);
	if (ret < 0) {
		c->session = NULL;
		*error_r = conn_error(c, "gnutls_init: %s",
				      gnutls_strerror(ret));
		return -1;
	}
	ret = gnutls_set_default_priority(c->session);
	if (ret >= 0)
		ret = gnutls_credentials_set(c->session,
					     GNUTLS_CRD_CERTIFICATE, tls->cred);
	if (ret >= 0 && !host_is_address(host))
		ret = gnutls_server_name_set(c->session, GNUTLS_NAME_DNS, host,
					     strlen(host));
	if (ret < 0) {
		*error_r = conn_error(c, "TLS session setup: %s",
				      gnutls_strerror(ret));
		return -1;
	}
	if (!tls->insecure)
		gnutls_session_set_verify_cert(c->session, host, 0);
	gnutls_transport_set_int(c->session, c->fd);
	gnutls_handshake_set_timeout(c->session, (unsigned int)c->timeout_ms);
	gnutls_record_set_timeout(c->session, (unsigned int)c->timeout_ms);
	do {
		ret = gnutls_handshake(c->session);
	} while (ret < 0 && ret != GNUTLS_E_TIMEDOUT &&
		 gnutls_error_is_fatal(ret) == 0);
	if (ret == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		status = gnutls_session_get_verify_cert_status(c->session);
		if (gnutls_certificate_verification_status_print(
			    status, gnutls_certificate_type_get(c->session),
			    &out, 0) >= 0) {
			conn_error(c, "TLS handshake: %s", (char *)out.data);
			gnutls_free(out.data);
			*error_r = c->errbuf;
			return -1;
		}
	}
	if (ret < 0) {
		*error_r = conn_error(c, "TLS handshake: %s",
				      gnutls_strerror(ret));
		return -1;
	}
	return 0;
}

/* Fills the read buffer.  Returns the number of bytes read, 0 at end of
 * stream, -1 on error or timeout. */
static ssize_t conn_fill(struct bench_conn *c, const char **error_r)
{
	ssize_t n;
	int ret;

	c->rpos = 0;
	c->rlen = 0;
	if (c->session != NULL) {
		do {
			n = gnutls_record_recv(c->session, c->rbuf,
					       BENCH_RBUF_SIZE);
		} while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED ||
			 (n < 0 && n != GNUTLS_E_TIMEDOUT &&
			  gnutls_error_is_fatal((int)n) == 0));
		if (n == GNUTLS_E_PREMATURE_TERMINATION)
			n = 0;
		if (n < 0) {
			*error_r = conn_error(c, "TLS read: %s",
					      gnutls_strerror((int)n));
			return -1;
		}
	} else {
		ret = conn_wait(c->fd, POLLIN, c->timeout_ms);
		if (ret <= 0) {
			*error_r = conn_error(c, "read: %s", ret == 0 ?
					      "timed out" : strerror(errno));
			return -1;
		}
		do {
			n = recv(c->fd, c->rbuf, BENCH_RBUF_SIZE, 0);
		} while (n < 0 && errno == EINTR);
		if (n < 0) {
			*error_r = conn_error(c, "read: %s", strerror(errno));
			return -1;
		}
	}
	c->rlen = (size_t)n;
	return n;
}

#ifndef MSG_MORE
#define MSG_MORE 0
#endif

/* Writes len bytes.  With more set, further bytes of the same flight
 * follow at once: the plain socket is told so (MSG_MORE) and TLS is
 * corked, so that a command leaves in as few segments and records as
 * possible; conn_flush() ends the flight. */
static int conn_write(struct bench_conn *c, const void *data, size_t len,
		      bool more, const char **error_r)
{
	const unsigned char *p = data;
	ssize_t n;

	if (c->session != NULL && more && !c->corked) {
		gnutls_record_cork(c->session);
		c->corked = true;
	}
	while (len > 0) {
		if (c->session != NULL) {
			do {
				n = gnutls_record_send(c->session, p, len);
			} while (n == GNUTLS_E_INTERRUPTED);
			if (n < 0) {
				*error_r = conn_error(
					c, "TLS write: %s", n == GNUTLS_E_AGAIN ?
					"timed out" : gnutls_strerror((int)n));
				return -1;
			}
		} else {
			do {
				n = send(c->fd, p, len, MSG_NOSIGNAL |
					 (more ? MSG_MORE : 0));
			} while (n < 0 && errno == EINTR);
			if (n < 0) {
				*error_r = conn_error(
					c, "write: %s", errno == EAGAIN ?
					"timed out" : strerror(errno));
				return -1;
			}
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Sends what a corked TLS session holds back. */
static int conn_flush(struct bench_conn *c, const char **error_r)
{
	int ret;

	if (c->session == NULL || !c->corked)
		return 0;
	c->corked = false;
	do {
		ret = gnutls_record_uncork(c->session, GNUTLS_RECORD_WAIT);
	} while (ret == GNUTLS_E_INTERRUPTED);
	if (ret < 0) {
		*error_r = conn_error(c, "TLS write: %s", ret == GNUTLS_E_AGAIN ?
				      "timed out" : gnutls_strerror(ret));
		return -1;
	}
	return 0;
}

/* The word that starts at *p (up to a space or the end), advancing *p
 * past it and one space. */
static void next_word(const char **p, const char *end, const char **word_r,
		      size_t *len_r)
{
	const char *s = *p;

	while (s < end && *s != ' ')
		s++;
	*word_r = *p;
	*len_r = (size_t)(s - *p);
	*p = s < end ? s + 1 : s;
}

static bool word_is(const char *word, size_t len, const char *what)
{
	return strlen(what) == len && strncasecmp(word, what, len) == 0;
}

static bool is_status_word(const char *word, size_t len)
{
	return word_is(word, len, "OK") || word_is(word, len, "NO") ||
		word_is(word, len, "BAD") || word_is(word, len, "BYE") ||
		word_is(word, len, "PREAUTH");
}

bool bench_literal_marker(const char *line, size_t len, uint64_t *size_r)
{
	const char *p = line, *end = line + len, *word;
	size_t wlen, i, open;
	uint64_t n = 0;

	if (len == 0 || line[0] == '+')
		return false;
	next_word(&p, end, &word, &wlen);	/* tag or "*" */
	next_word(&p, end, &word, &wlen);
	if (is_status_word(word, wlen))
		return false;
	if (line[len - 1] != '}')
		return false;
	for (open = len - 1; open > 0 && line[open - 1] != '{'; open--)
		;
	if (open == 0)
		return false;
	i = open;			/* first digit */
	if (i >= len - 1)
		return false;
	for (; i < len - 1; i++) {
		if (line[i] == '+' && i == len - 2 && i > open)
			break;
		if (line[i] < '0' || line[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(line[i] - '0');
		if (n > BENCH_LITERAL_MAX)
			return false;
	}
	*size_r = n;
	return true;
}

/* Appends one line's bytes to c->text, failing when the response text
 * outgrows BENCH_LINE_MAX. */
static int text_append(struct bench_conn *c, const unsigned char *p,
		       size_t len, const char **error_r)
{
	if (len > BENCH_LINE_MAX - c->text_len) {
		*error_r = conn_error(c, "response longer than %u bytes",
				      BENCH_LINE_MAX);
		return -1;
	}
	memcpy(c->text + c->text_len, p, len);
	c->text_len += len;
	c->text[c->text_len] = '\0';
	return 0;
}

/* Reads up to and including the next LF, appending the line without CRLF
 * to c->text.  Returns 1, 0 at end of stream before any byte of the
 * line, or -1. */
static int conn_read_line(struct bench_conn *c, const char **error_r)
{
	const unsigned char *lf;
	size_t start = c->text_len, chunk;
	bool any = false;
	ssize_t n;

	for (;;) {
		if (c->rpos == c->rlen) {
			n = conn_fill(c, error_r);
			if (n < 0)
				return -1;
			if (n == 0) {
				if (!any)
					return 0;
				*error_r = conn_error(c, "connection closed "
						      "in the middle of a line");
				return -1;
			}
		}
		any = true;
		lf = memchr(c->rbuf + c->rpos, '\n', c->rlen - c->rpos);
		chunk = lf != NULL ? (size_t)(lf - (c->rbuf + c->rpos)) :
			c->rlen - c->rpos;
		if (text_append(c, c->rbuf + c->rpos, chunk, error_r) < 0)
			return -1;
		c->rpos += chunk;
		if (lf != NULL) {
			c->rpos++;
			break;
		}
	}
	if (c->text_len > start && c->text[c->text_len - 1] == '\r')
		c->text[--c->text_len] = '\0';
	if (memchr(c->text + start, '\0', c->text_len - start) != NULL) {
		*error_r = conn_error(c, "NUL byte in a response line");
		return -1;
	}
	return 1;
}

/* Reads and drops size literal bytes. */
static int conn_skip_literal(struct bench_conn *c, uint64_t size,
			     const char **error_r)
{
	size_t chunk;

	while (size > 0) {
		if (c->rpos == c->rlen) {
			ssize_t n = conn_fill(c, error_r);

			if (n < 0)
				return -1;
			if (n == 0) {
				*error_r = conn_error(c, "connection closed "
						      "inside a literal");
				return -1;
			}
		}
		chunk = c->rlen - c->rpos;
		if (chunk > size)
			chunk = (size_t)size;
		c->rpos += chunk;
		size -= chunk;
	}
	return 0;
}

int bench_conn_read_response(struct bench_conn *c, const char **error_r)
{
	size_t line_start = 0;
	uint64_t size;
	int ret;

	c->text_len = 0;
	c->text[0] = '\0';
	c->literal_bytes = 0;
	for (;;) {
		ret = conn_read_line(c, error_r);
		if (ret <= 0) {
			if (ret == 0 && line_start > 0) {
				*error_r = conn_error(c, "connection closed "
						      "after a literal");
				return -1;
			}
			return ret;
		}
		/* The marker test looks at the whole response so far: the
		 * words that decide "status text" are at its start. */
		if (!bench_literal_marker(c->text, c->text_len, &size))
			return 1;
		if (size > BENCH_LITERAL_MAX - c->literal_bytes) {
			*error_r = conn_error(c, "more than %llu literal bytes "
					      "in one response",
					      (unsigned long long)
					      BENCH_LITERAL_MAX);
			return -1;
		}
		c->literal_bytes += size;
		if (conn_skip_literal(c, size, error_r) < 0)
			return -1;
		line_start = c->text_len;
	}
}

/* Parses a decimal IMAP number (at most 2^32-1). */
static bool parse_u32(const char *word, size_t len, uint32_t *n_r)
{
	uint64_t n = 0;
	size_t i;

	if (len == 0 || len > 10)
		return false;
	for (i = 0; i < len; i++) {
		if (word[i] < '0' || word[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(word[i] - '0');
	}
	if (n > UINT32_MAX)
		return false;
	*n_r = (uint32_t)n;
	return true;
}

/* Reads a capability list (the words from p to end, up to a ']'). */
static void parse_capabilities(struct bench_conn *c, const char *p,
			       const char *end)
{
	const char *word;
	size_t wlen;

	c->caps_known = true;
	c->cap_literal_plus = false;
	c->cap_starttls = false;
	while (p < end) {
		next_word(&p, end, &word, &wlen);
		if (wlen > 0 && word[wlen - 1] == ']') {
			wlen--;
			p = end;
		}
		if (word_is(word, wlen, "LITERAL+"))
			c->cap_literal_plus = true;
		else if (word_is(word, wlen, "STARTTLS"))
			c->cap_starttls = true;
	}
}

/* Looks for a "[CAPABILITY ...]" response code after a status word. */
static void parse_resp_code(struct bench_conn *c, const char *p,
			    const char *end)
{
	const char *word;
	size_t wlen;

	if (p >= end || *p != '[')
		return;
	p++;
	next_word(&p, end, &word, &wlen);
	if (word_is(word, wlen, "CAPABILITY"))
		parse_capabilities(c, p, end);
}

/* Learns what an untagged response says about the session. */
static void conn_untagged(struct bench_conn *c)
{
	const char *p = c->text + 2, *end = c->text + c->text_len, *word;
	size_t wlen;
	uint32_t n;

	next_word(&p, end, &word, &wlen);
	if (parse_u32(word, wlen, &n)) {
		next_word(&p, end, &word, &wlen);
		if (word_is(word, wlen, "EXISTS")) {
			c->exists = n;
			c->exists_seen = true;
		} else if (word_is(word, wlen, "EXPUNGE")) {
			if (c->exists > 0)
				c->exists--;
		} else if (word_is(word, wlen, "FETCH")) {
			c->fetch_count++;
		}
		return;
	}
	if (word_is(word, wlen, "CAPABILITY")) {
		parse_capabilities(c, p, end);
	} else if (word_is(word, wlen, "BYE")) {
		c->bye = true;
	} else if (word_is(word, wlen, "OK")) {
		parse_resp_code(c, p, end);
	}
}

int bench_conn_greeting(struct bench_conn *c, const char **error_r)
{
	const char *p, *end, *word;
	size_t wlen;
	int ret;

	ret = bench_conn_read_response(c, error_r);
	if (ret == 0)
		*error_r = conn_error(c, "connection closed before the "
				      "greeting");
	if (ret <= 0)
		return -1;
	p = c->text;
	end = c->text + c->text_len;
	next_word(&p, end, &word, &wlen);
	if (!word_is(word, wlen, "*")) {
		*error_r = conn_error(c, "unexpected greeting");
		return -1;
	}
	next_word(&p, end, &word, &wlen);
	if (!word_is(word, wlen, "OK") && !word_is(word, wlen, "PREAUTH")) {
		*error_r = conn_error(c, "server refused the connection");
		return -1;
	}
	parse_resp_code(c, p, end);
	return 0;
}

/* Interprets the response in c->text during a command.  Returns 1 with
 * *status_r set for the tagged completion, 2 for a continuation, 0 for an
 * untagged response, -1 for something no server should send. */
static int conn_classify(struct bench_conn *c, enum bench_status *status_r)
{
	const char *p = c->text, *end = c->text + c->text_len, *word;
	size_t wlen, taglen = strlen(c->tag);

	if (c->text_len >= 1 && c->text[0] == '+')
		return 2;
	if (c->text_len >= 2 && c->text[0] == '*' && c->text[1] == ' ') {
		conn_untagged(c);
		return 0;
	}
	if (c->text_len <= taglen || memcmp(c->text, c->tag, taglen) != 0 ||
	    c->text[taglen] != ' ')
		return -1;
	p += taglen + 1;
	next_word(&p, end, &word, &wlen);
	if (word_is(word, wlen, "OK"))
		*status_r = BENCH_STATUS_OK;
	else if (word_is(word, wlen, "NO"))
		*status_r = BENCH_STATUS_NO;
	else if (word_is(word, wlen, "BAD"))
		*status_r = BENCH_STATUS_BAD;
	else
		return -1;
	parse_resp_code(c, p, end);
	return 1;
}

/* Reads responses until the tagged completion (returns 1) or, when
 * want_continuation, a "+" (returns 2).  -1 on error. */
static int conn_wait_response(struct bench_conn *c, bool want_continuation,
			      enum bench_status *status_r,
			      const char **error_r)
{
	int ret;

	for (;;) {
		ret = bench_conn_read_response(c, error_r);
		if (ret == 0)
			*error_r = conn_error(c, "connection closed by the "
					      "server%s", c->bye ?
					      " (BYE)" : "");
		if (ret <= 0)
			return -1;
		c->cmd_literal_bytes += c->literal_bytes;
		ret = conn_classify(c, status_r);
		if (ret == 1)
			return 1;
		if (ret == 2) {
			if (want_continuation)
				return 2;
			*error_r = conn_error(c, "unexpected continuation");
			return -1;
		}
		if (ret < 0) {
			*error_r = conn_error(c, "unexpected response "
					      "(not tagged %s)", c->tag);
			return -1;
		}
	}
}

enum bench_status bench_conn_command(struct bench_conn *c,
				     const struct bench_piece *pieces,
				     size_t npieces, uint64_t *start_us_r,
				     uint64_t *latency_us_r,
				     const char **error_r)
{
	enum bench_status status = BENCH_STATUS_ERR;
	char tagsp[sizeof(c->tag) + 1];
	uint64_t start;
	bool flight_end;
	size_t i;
	int ret;

	c->tag_seq++;
	snprintf(c->tag, sizeof(c->tag), "b%u", c->tag_seq);
	snprintf(tagsp, sizeof(tagsp), "%s ", c->tag);
	c->fetch_count = 0;
	c->cmd_literal_bytes = 0;

	start = bench_now_us();
	*start_us_r = start;
	*latency_us_r = 0;
	if (conn_write(c, tagsp, strlen(tagsp), npieces > 0, error_r) < 0)
		return BENCH_STATUS_ERR;
	for (i = 0; i < npieces; i++) {
		/* A flight ends at the command's end or a literal marker
		 * that must wait for the server's "+". */
		flight_end = pieces[i].sync_literal || i + 1 == npieces;
		if (conn_write(c, pieces[i].data, pieces[i].len, !flight_end,
			       error_r) < 0 ||
		    (flight_end && conn_flush(c, error_r) < 0))
			return BENCH_STATUS_ERR;
		if (!pieces[i].sync_literal || i + 1 == npieces)
			continue;
		ret = conn_wait_response(c, true, &status, error_r);
		if (ret < 0)
			return BENCH_STATUS_ERR;
		if (ret == 1) {
			/* Refused before the literal: the command is over. */
			*latency_us_r = bench_now_us() - start;
			return status;
		}
	}
	if (conn_wait_response(c, false, &status, error_r) < 0)
		return BENCH_STATUS_ERR;
	*latency_us_r = bench_now_us() - start;
	return status;
}
