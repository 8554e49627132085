/*
 * tls.c - GnuTLS credentials and buffered connections, plain or TLS.
 *
 * Every pluto thread that talks to a client or a peer does blocking I/O on
 * a struct conn: the distributor on client connections (implicit TLS, or
 * plain then STARTTLS) and on its per-session links to workers; workers
 * and storage on sessions from the distributor and on sync links.  This
 * file is where the rules of GnuTLS are kept once (STYLE.md, "GnuTLS, the
 * facts that matter"): credentials and priority caches built once and
 * shared read-only; internal links TLS 1.3 only with the peer's chain
 * checked against the internal CA and its name against the configured
 * node names; E_AGAIN and E_INTERRUPTED retried, premature termination
 * read as EOF, non-fatal alerts ignored, short sends looped; close_notify
 * on the way out.
 *
 * Input is buffered in the conn so that lines can be cut without reading
 * byte by byte.  The buffer is only ever touched by the reading thread;
 * the writing thread touches only the session's send side, which GnuTLS
 * allows concurrently with the receive side.  The one field both threads
 * and conn_wake() share is the woken flag, an atomic.  No locks.
 */
#include "autoconfig.h"

#include "tls.h"
#include "log.h"
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

/* One TLS record's worth of plaintext: the most one read can return. */
#define CONN_CHUNK 16384
/* What one recv() under GnuTLS asks for: a whole record of the largest
 * size (16 KiB of data plus header and cipher overhead) and then some, so
 * that one system call usually brings every record that has arrived. */
#define CONN_RAW_CHUNK (16384 + 2048 + 5)
/* A TLS record header: type, version (2), length (2). */
#define TLS_RECORD_HEADER 5
/* Bounds gnutls_bye() when the caller set no write timeout. */
#define CONN_BYE_TIMEOUT_MS 5000

enum tls_creds_kind {
	TLS_CREDS_PUBLIC_SERVER,
	TLS_CREDS_PUBLIC_CLIENT,
	TLS_CREDS_INTERNAL,
};

struct tls_creds {
	enum tls_creds_kind kind;
	gnutls_certificate_credentials_t cert;
	gnutls_priority_t prio;
};

struct conn {
	int fd;
	gnutls_session_t session;	/* NULL while plain */
	/* Set after a fatal TLS error or a timed-out send: the session
	 * must not be used for close_notify any more. */
	bool broken;
	/* The peer has closed: every later read is EOF again, without
	 * asking a session that has seen the end. */
	bool eof;
	atomic_bool woken;
	unsigned read_ms, write_ms;
	char *peer_name;		/* verified internal peer, or NULL */
	char peer_addr[NET_ADDR_STRLEN];

	/* Input buffer: unread bytes are ibuf[ipos..ilen). */
	unsigned char *ibuf;
	size_t ipos, ilen, icap;

	/* Encrypted bytes read ahead for GnuTLS: rbuf[rpos..rlen).  The
	 * buffer is freed whenever it drains, so idle connections hold
	 * none.  rerr is a receive error (or 0 with reof, the peer's
	 * end-of-file) met while reading ahead, told at the next pull. */
	unsigned char *rbuf;
	size_t rpos, rlen;
	bool reof;
	int rerr;
};

static _Thread_local char tls_errbuf[512];

static const char *tls_error(const char *fmt, ...) PLUTO_PRINTF(1, 2);

static const char *tls_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tls_errbuf, sizeof(tls_errbuf), fmt, ap);
	va_end(ap);
	return tls_errbuf;
}

const char *conn_status_str(int status)
{
	switch (status) {
	case CONN_OK:
		return "ok";
	case CONN_EOF:
		return "eof";
	case CONN_TIMEOUT:
		return "timeout";
	case CONN_TOO_LONG:
		return "too long";
	case CONN_WOKEN:
		return "woken";
	case CONN_ERROR:
		return "error";
	default:
		return "unknown";
	}
}

/*
 * Credentials
 */

static int creds_new(enum tls_creds_kind kind, const char *prio_append,
		     struct tls_creds **creds_r, const char **error_r)
{
	struct tls_creds *creds;
	const char *errpos = NULL;
	int ret;

	creds = calloc(1, sizeof(*creds));
	if (creds == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	creds->kind = kind;
	ret = gnutls_certificate_allocate_credentials(&creds->cert);
	if (ret < 0) {
		free(creds);
		*error_r = tls_error("allocating credentials: %s",
				     gnutls_strerror(ret));
		return -1;
	}
	/* Appending to the default keeps the system's crypto policy in
	 * force; we only narrow it (or ask for server precedence). */
	if (prio_append == NULL)
		ret = gnutls_priority_init(&creds->prio, NULL, &errpos);
	else
		ret = gnutls_priority_init2(&creds->prio, prio_append, &errpos,
					    GNUTLS_PRIORITY_INIT_DEF_APPEND);
	if (ret < 0) {
		gnutls_certificate_free_credentials(creds->cert);
		free(creds);
		*error_r = tls_error("priority string at \"%s\": %s",
				     errpos == NULL ? "" : errpos,
				     gnutls_strerror(ret));
		return -1;
	}
	*creds_r = creds;
	return 0;
}

static int creds_add_key(struct tls_creds *creds, const char *cert_file,
			 const char *key_file, const char **error_r)
{
	int ret;

	if (cert_file == NULL || key_file == NULL) {
		*error_r = "certificate or key file not configured";
		return -1;
	}
	ret = gnutls_certificate_set_x509_key_file(creds->cert, cert_file,
						   key_file,
						   GNUTLS_X509_FMT_PEM);
	if (ret < 0) {
		*error_r = tls_error("loading %s and %s: %s", cert_file,
				     key_file, gnutls_strerror(ret));
		return -1;
	}
	return 0;
}

static int creds_add_trust(struct tls_creds *creds, const char *ca_file,
			   const char **error_r)
{
	int ret;

	if (ca_file == NULL)
		ret = gnutls_certificate_set_x509_system_trust(creds->cert);
	else
		ret = gnutls_certificate_set_x509_trust_file(
			creds->cert, ca_file, GNUTLS_X509_FMT_PEM);
	/* The count of CAs loaded: none at all is as bad as an error,
	 * since every peer would then be refused (or worse, a caller
	 * might be tempted to skip verification). */
	if (ret <= 0) {
		*error_r = tls_error("loading trusted CAs from %s: %s",
				     ca_file == NULL ? "the system" : ca_file,
				     ret == 0 ? "no certificate found" :
						gnutls_strerror(ret));
		return -1;
	}
	return 0;
}

int tls_creds_public_server(const char *cert_file, const char *key_file,
			    struct tls_creds **creds_r, const char **error_r)
{
	struct tls_creds *creds;

	if (creds_new(TLS_CREDS_PUBLIC_SERVER, "%SERVER_PRECEDENCE", &creds,
		      error_r) < 0)
		return -1;
	if (creds_add_key(creds, cert_file, key_file, error_r) < 0) {
		tls_creds_free(&creds);
		return -1;
	}
	*creds_r = creds;
	return 0;
}

int tls_creds_public_client(const char *ca_file, struct tls_creds **creds_r,
			    const char **error_r)
{
	struct tls_creds *creds;

	if (creds_new(TLS_CREDS_PUBLIC_CLIENT, NULL, &creds, error_r) < 0)
		return -1;
	if (creds_add_trust(creds, ca_file, error_r) < 0) {
		tls_creds_free(&creds);
		return -1;
	}
	*creds_r = creds;
	return 0;
}

int tls_creds_internal(const char *ca_file, const char *cert_file,
		       const char *key_file, struct tls_creds **creds_r,
		       const char **error_r)
{
	struct tls_creds *creds;

	if (ca_file == NULL) {
		*error_r = "internal CA file (RootCertLoc) not configured";
		return -1;
	}
	if (creds_new(TLS_CREDS_INTERNAL, "-VERS-ALL:+VERS-TLS1.3", &creds,
		      error_r) < 0)
		return -1;
	if (creds_add_trust(creds, ca_file, error_r) < 0 ||
	    creds_add_key(creds, cert_file, key_file, error_r) < 0) {
		tls_creds_free(&creds);
		return -1;
	}
	*creds_r = creds;
	return 0;
}

void tls_creds_free(struct tls_creds **creds)
{
	if (*creds == NULL)
		return;
	gnutls_priority_deinit((*creds)->prio);
	gnutls_certificate_free_credentials((*creds)->cert);
	free(*creds);
	*creds = NULL;
}

/*
 * Connection set-up and tear-down
 */

struct conn *conn_new(int fd)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		close(fd);
		return NULL;
	}
	c->fd = fd;
	atomic_init(&c->woken, false);
	net_peer_addr(fd, c->peer_addr, sizeof(c->peer_addr));
	return c;
}

static int set_send_timeout(int fd, unsigned ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	return setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int conn_set_timeouts(struct conn *c, unsigned read_ms, unsigned write_ms)
{
	/* A blocking send then fails with EAGAIN after write_ms, which
	 * both our send loop and GnuTLS's push report as a timeout. */
	if (write_ms != c->write_ms && set_send_timeout(c->fd, write_ms) < 0)
		return -1;
	c->read_ms = read_ms;
	c->write_ms = write_ms;
	return 0;
}

bool conn_is_tls(const struct conn *c)
{
	return c->session != NULL;
}

const char *conn_peer_name(const struct conn *c)
{
	return c->peer_name;
}

const char *conn_peer_addr(const struct conn *c)
{
	return c->peer_addr;
}

int conn_fd(const struct conn *c)
{
	return c->fd;
}

void conn_wake(struct conn *c)
{
	atomic_store(&c->woken, true);
	(void)shutdown(c->fd, SHUT_RDWR);
}

bool conn_is_woken(const struct conn *c)
{
	return atomic_load(&c->woken);
}

void conn_close(struct conn **cp)
{
	struct conn *c = *cp;

	if (c == NULL)
		return;
	if (c->session != NULL) {
		if (!c->broken && !conn_is_woken(c)) {
			int ret;

			/* Only our half: waiting for the peer's
			 * close_notify would let it hold us up. */
			if (c->write_ms == 0)
				(void)set_send_timeout(c->fd,
						       CONN_BYE_TIMEOUT_MS);
			do {
				ret = gnutls_bye(c->session, GNUTLS_SHUT_WR);
			} while (ret == GNUTLS_E_INTERRUPTED);
		}
	}
	close(c->fd);
	if (c->session != NULL)
		gnutls_deinit(c->session);
	free(c->ibuf);
	free(c->rbuf);
	free(c->peer_name);
	free(c);
	*cp = NULL;
}

/*
 * Handshakes
 */

static bool is_ip_literal(const char *name)
{
	unsigned char addr[16];

	return inet_pton(AF_INET, name, addr) == 1 ||
	       inet_pton(AF_INET6, name, addr) == 1;
}

/*
 * GnuTLS's transport: buffered reads.
 *
 * Left to itself GnuTLS reads a record's header and then its body with
 * two recv() calls, each after a poll() when a timeout is set: four
 * system calls per record.  These functions read whatever has arrived in
 * one recv() and hand it out from memory, so a burst of records costs
 * one call, and the poll is skipped when bytes are already here.
 */

static bool raw_buffered(const struct conn *c)
{
	return c->rpos < c->rlen || c->reof || c->rerr != 0;
}

static void raw_consume(struct conn *c, size_t n)
{
	c->rpos += n;
	if (c->rpos == c->rlen) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->rpos = c->rlen = 0;
	}
}

/* One recv() into the read-ahead buffer (empty on entry); flags as for
 * recv.  Returns what recv returned, with errno. */
static ssize_t raw_fill(struct conn *c, int flags)
{
	ssize_t n;

	c->rbuf = malloc(CONN_RAW_CHUNK);
	if (c->rbuf == NULL) {
		errno = ENOMEM;
		return -1;
	}
	n = recv(c->fd, c->rbuf, CONN_RAW_CHUNK, flags);
	if (n > 0) {
		c->rpos = 0;
		c->rlen = (size_t)n;
	} else {
		free(c->rbuf);
		c->rbuf = NULL;
	}
	return n;
}

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *dst, size_t len)
{
	struct conn *c = ptr;
	size_t n;

	if (c->rpos == c->rlen) {
		ssize_t got;

		if (c->rerr != 0) {
			errno = c->rerr;
			c->rerr = 0;
			return -1;
		}
		if (c->reof)
			return 0;
		got = raw_fill(c, 0);
		if (got <= 0)
			return got;
	}
	n = c->rlen - c->rpos;
	if (n > len)
		n = len;
	memcpy(dst, c->rbuf + c->rpos, n);
	raw_consume(c, n);
	return (ssize_t)n;
}

/* GnuTLS asks this before a pull when a timeout is set: > 0 when a pull
 * will not block, 0 on timeout, -1 on error. */
static int tls_pull_timeout(gnutls_transport_ptr_t ptr, unsigned int ms)
{
	struct conn *c = ptr;
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	ssize_t got;

	if (raw_buffered(c))
		return 1;
	/* Under load the bytes are usually here already: try first. */
	got = raw_fill(c, MSG_DONTWAIT);
	if (got > 0)
		return 1;
	if (got == 0) {
		c->reof = true;
		return 1;
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		c->rerr = errno;
		return 1;
	}
	return poll(&pfd, 1,
		    ms == GNUTLS_INDEFINITE_TIMEOUT || ms > INT_MAX ? -1
								     : (int)ms);
}

/* Whether the read-ahead buffer holds a whole record, which a read can
 * then take without waiting for the socket. */
static bool raw_record_ready(const struct conn *c)
{
	size_t have = c->rlen - c->rpos;
	const unsigned char *h;

	if (c->reof || c->rerr != 0)
		return true;
	if (have < TLS_RECORD_HEADER)
		return false;
	h = c->rbuf + c->rpos;
	return have >= TLS_RECORD_HEADER + ((size_t)h[3] << 8 | h[4]);
}

static void transport_setup(struct conn *c, gnutls_session_t s)
{
	gnutls_transport_ptr_t recv_ptr, send_ptr;

	/* Sending stays GnuTLS's own, on the descriptor. */
	gnutls_transport_set_int(s, c->fd);
	gnutls_transport_get_ptr2(s, &recv_ptr, &send_ptr);
	gnutls_transport_set_ptr2(s, c, send_ptr);
	gnutls_transport_set_pull_function(s, tls_pull);
	gnutls_transport_set_pull_timeout_function(s, tls_pull_timeout);
}

static int session_new(struct conn *c, const struct tls_creds *creds,
		       unsigned flags, gnutls_session_t *s_r,
		       const char **error_r)
{
	gnutls_session_t s;
	int ret;

	if (c->session != NULL) {
		*error_r = "TLS is already active";
		return -1;
	}
	if (c->ipos < c->ilen) {
		*error_r = "plaintext data pipelined before the TLS handshake";
		return -1;
	}
	if (conn_is_woken(c)) {
		*error_r = "connection shut down";
		return -1;
	}
	/* No session tickets: pluto does not resume sessions, and internal
	 * peers reconnect rarely enough not to need it. */
	ret = gnutls_init(&s, flags | GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS);
	if (ret < 0) {
		*error_r = tls_error("gnutls_init: %s", gnutls_strerror(ret));
		return -1;
	}
	ret = gnutls_priority_set(s, creds->prio);
	if (ret == 0)
		ret = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE,
					     creds->cert);
	if (ret < 0) {
		gnutls_deinit(s);
		*error_r = tls_error("setting up the session: %s",
				     gnutls_strerror(ret));
		return -1;
	}
	transport_setup(c, s);
	*s_r = s;
	return 0;
}

/* Runs the handshake to its end.  On failure explains it in *error_r,
 * with the verification status when the peer's certificate was at
 * fault. */
static int handshake(struct conn *c, gnutls_session_t s, unsigned timeout_ms,
		     const char **error_r)
{
	int ret;

	gnutls_handshake_set_timeout(s, timeout_ms);
	do {
		ret = gnutls_handshake(s);
	} while (ret < 0 && gnutls_error_is_fatal(ret) == 0 &&
		 !conn_is_woken(c));
	if (ret >= 0)
		return 0;

	/* Tell the peer why, so its side fails promptly with a reason
	 * instead of waiting for a timeout. */
	if (!conn_is_woken(c) && ret != GNUTLS_E_PREMATURE_TERMINATION &&
	    ret != GNUTLS_E_PUSH_ERROR && ret != GNUTLS_E_PULL_ERROR)
		(void)gnutls_alert_send_appropriate(s, ret);
	if (ret == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		gnutls_datum_t out = { NULL, 0 };
		unsigned status = gnutls_session_get_verify_cert_status(s);

		if (gnutls_certificate_verification_status_print(
			    status, GNUTLS_CRT_X509, &out, 0) == 0) {
			*error_r = tls_error("peer certificate refused: %s",
					     (const char *)out.data);
			gnutls_free(out.data);
		} else {
			*error_r = "peer certificate refused";
		}
	} else if (ret == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		*error_r = tls_error("TLS handshake: peer sent alert: %s",
				     gnutls_alert_get_name(gnutls_alert_get(s)));
	} else if (conn_is_woken(c)) {
		*error_r = "TLS handshake: connection shut down";
	} else {
		*error_r = tls_error("TLS handshake: %s", gnutls_strerror(ret));
	}
	return -1;
}

/* Returns the first of names the peer's certificate is valid for. */
static const char *match_peer_name(gnutls_session_t s,
				   const char *const *names,
				   const char **error_r)
{
	const gnutls_datum_t *certs;
	unsigned n_certs = 0;
	gnutls_x509_crt_t crt;
	const char *found = NULL;

	certs = gnutls_certificate_get_peers(s, &n_certs);
	if (certs == NULL || n_certs == 0) {
		*error_r = "peer sent no certificate";
		return NULL;
	}
	if (gnutls_x509_crt_init(&crt) < 0) {
		*error_r = "out of memory";
		return NULL;
	}
	if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) < 0) {
		gnutls_x509_crt_deinit(crt);
		*error_r = "peer certificate cannot be parsed";
		return NULL;
	}
	for (size_t i = 0; names[i] != NULL; i++) {
		/* Node names are plain labels: no wildcard may stand in
		 * for one. */
		if (gnutls_x509_crt_check_hostname2(
			    crt, names[i],
			    GNUTLS_VERIFY_DO_NOT_ALLOW_WILDCARDS) != 0) {
			found = names[i];
			break;
		}
	}
	if (found == NULL) {
		char cn[128];
		size_t cn_len = sizeof(cn);

		if (gnutls_x509_crt_get_dn_by_oid(crt,
						  GNUTLS_OID_X520_COMMON_NAME,
						  0, 0, cn, &cn_len) < 0)
			snprintf(cn, sizeof(cn), "?");
		/* The CN is from a certificate our CA signed, but still
		 * quoted so odd bytes cannot garble the log line. */
		char quoted[160];

		log_quote(quoted, sizeof(quoted), cn);
		*error_r = tls_error("peer certificate (CN %s) names no "
				     "accepted node", quoted);
	}
	gnutls_x509_crt_deinit(crt);
	return found;
}

int conn_tls_server(struct conn *c, const struct tls_creds *creds,
		    const char *const *accept_names, unsigned timeout_ms,
		    const char **error_r)
{
	gnutls_session_t s;
	const char *name = NULL;
	bool internal = creds->kind == TLS_CREDS_INTERNAL;

	if (creds->kind == TLS_CREDS_PUBLIC_CLIENT ||
	    (internal && (accept_names == NULL || accept_names[0] == NULL)) ||
	    (!internal && accept_names != NULL)) {
		*error_r = "conn_tls_server: credentials and names do not fit";
		return -1;
	}
	if (session_new(c, creds, GNUTLS_SERVER, &s, error_r) < 0)
		return -1;
	if (internal) {
		gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
		/* Chain only: which of several names is acceptable is
		 * checked below, once we know the certificate. */
		gnutls_session_set_verify_cert2(s, NULL, 0, 0);
	}
	if (handshake(c, s, timeout_ms, error_r) < 0) {
		gnutls_deinit(s);
		return -1;
	}
	if (internal) {
		name = match_peer_name(s, accept_names, error_r);
		if (name == NULL) {
			(void)gnutls_alert_send(s, GNUTLS_AL_FATAL,
						GNUTLS_A_ACCESS_DENIED);
			gnutls_deinit(s);
			return -1;
		}
		c->peer_name = strdup(name);
		if (c->peer_name == NULL) {
			gnutls_deinit(s);
			*error_r = "out of memory";
			return -1;
		}
	}
	c->session = s;
	return 0;
}

int conn_tls_client(struct conn *c, const struct tls_creds *creds,
		    const char *peer_name, unsigned timeout_ms,
		    const char **error_r)
{
	gnutls_session_t s;
	int ret;

	if (creds->kind == TLS_CREDS_PUBLIC_SERVER || peer_name == NULL ||
	    *peer_name == '\0') {
		*error_r = "conn_tls_client: credentials and name do not fit";
		return -1;
	}
	if (session_new(c, creds, GNUTLS_CLIENT, &s, error_r) < 0)
		return -1;
	/* RFC 6066: SNI carries host names, never address literals. */
	if (!is_ip_literal(peer_name)) {
		ret = gnutls_server_name_set(s, GNUTLS_NAME_DNS, peer_name,
					     strlen(peer_name));
		if (ret < 0) {
			gnutls_deinit(s);
			*error_r = tls_error("server name: %s",
					     gnutls_strerror(ret));
			return -1;
		}
	}
	/* Chain and name are both checked inside the handshake. */
	gnutls_session_set_verify_cert(s, peer_name, 0);
	if (handshake(c, s, timeout_ms, error_r) < 0) {
		gnutls_deinit(s);
		return -1;
	}
	if (creds->kind == TLS_CREDS_INTERNAL) {
		c->peer_name = strdup(peer_name);
		if (c->peer_name == NULL) {
			gnutls_deinit(s);
			*error_r = "out of memory";
			return -1;
		}
	}
	c->session = s;
	return 0;
}

/*
 * Reading
 */

static long long monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A deadline for one wait of the read timeout, 0 meaning none. */
static long long read_deadline(const struct conn *c)
{
	return c->read_ms == 0 ? 0 : monotonic_ms() + c->read_ms;
}

/* Milliseconds left until deadline (-1: no deadline), or 0 when it has
 * passed. */
static int time_left(long long deadline)
{
	long long left;

	if (deadline == 0)
		return -1;
	left = deadline - monotonic_ms();
	if (left <= 0)
		return 0;
	return left > 0x7fffffff ? 0x7fffffff : (int)left;
}

static int raw_read_plain(struct conn *c, void *dst, size_t max,
			  long long deadline, size_t *got_r,
			  const char **error_r)
{
	for (;;) {
		int left = time_left(deadline);
		ssize_t n;

		if (left >= 0) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
			int ret;

			if (left == 0)
				return CONN_TIMEOUT;
			ret = poll(&pfd, 1, left);
			if (ret == 0)
				return CONN_TIMEOUT;
			if (ret < 0) {
				if (errno == EINTR)
					continue;
				*error_r = tls_error("poll: %s",
						     strerror(errno));
				return CONN_ERROR;
			}
		}
		n = recv(c->fd, dst, max, 0);
		if (n > 0) {
			*got_r = (size_t)n;
			return CONN_OK;
		}
		if (conn_is_woken(c))
			return CONN_WOKEN;
		if (n == 0)
			return CONN_EOF;
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			continue;
		if (errno == ECONNRESET)
			return CONN_EOF;
		*error_r = tls_error("recv: %s", strerror(errno));
		return CONN_ERROR;
	}
}

static int raw_read_tls(struct conn *c, void *dst, size_t max,
			long long deadline, size_t *got_r, const char **error_r)
{
	for (;;) {
		int left = time_left(deadline);
		ssize_t n;

		if (left == 0)
			return CONN_TIMEOUT;
		/* 0 tells GnuTLS "no timeout", which is what -1 means
		 * here. */
		gnutls_record_set_timeout(c->session,
					  left < 0 ? 0 : (unsigned)left);
		n = gnutls_record_recv(c->session, dst, max);
		if (n > 0) {
			*got_r = (size_t)n;
			return CONN_OK;
		}
		if (conn_is_woken(c))
			return CONN_WOKEN;
		if (n == 0)
			return CONN_EOF;
		switch (n) {
		case GNUTLS_E_AGAIN:
		case GNUTLS_E_INTERRUPTED:
			continue;
		case GNUTLS_E_TIMEDOUT:
			return CONN_TIMEOUT;
		case GNUTLS_E_PREMATURE_TERMINATION:
			/* The peer closed the socket without close_notify:
			 * for IMAP framing makes truncation visible, so
			 * this is an ordinary EOF. */
			c->broken = true;
			return CONN_EOF;
		default:
			break;
		}
		if (gnutls_error_is_fatal((int)n) == 0)
			continue;	/* warning alert, rehandshake ask */
		c->broken = true;
		if (n == GNUTLS_E_FATAL_ALERT_RECEIVED)
			*error_r = tls_error(
				"TLS alert from peer: %s",
				gnutls_alert_get_name(gnutls_alert_get(
					c->session)));
		else
			*error_r = tls_error("TLS receive: %s",
					     gnutls_strerror((int)n));
		return CONN_ERROR;
	}
}

/* One read from the socket (or GnuTLS's decrypted records) into dst,
 * waiting until deadline at most. */
static int raw_read(struct conn *c, void *dst, size_t max, long long deadline,
		    size_t *got_r, const char **error_r)
{
	int ret;

	if (conn_is_woken(c))
		return CONN_WOKEN;
	if (c->eof)
		return CONN_EOF;
	if (c->session != NULL)
		ret = raw_read_tls(c, dst, max, deadline, got_r, error_r);
	else
		ret = raw_read_plain(c, dst, max, deadline, got_r, error_r);
	if (ret == CONN_EOF)
		c->eof = true;
	return ret;
}

/* Makes sure the buffer can hold want bytes from ipos on (and has room
 * at its end to read into), moving unread bytes to the front or growing
 * it.  want must be larger than the unread bytes. */
static int ibuf_make_room(struct conn *c, size_t want, const char **error_r)
{
	size_t unread = c->ilen - c->ipos;

	if (want < CONN_CHUNK)
		want = CONN_CHUNK;
	if (unread > 0 && c->ipos > 0 &&
	    (c->icap - c->ipos < want || c->ilen == c->icap))
		memmove(c->ibuf, c->ibuf + c->ipos, unread);
	if (unread == 0 || c->icap - c->ipos < want || c->ilen == c->icap) {
		c->ipos = 0;
		c->ilen = unread;
	}
	if (c->icap < want) {
		/* Doubling keeps a long line's growth linear overall. */
		size_t cap = c->icap <= SIZE_MAX / 2 && c->icap * 2 > want ?
				     c->icap * 2 : want;
		unsigned char *p = realloc(c->ibuf, cap);

		if (p == NULL) {
			*error_r = "out of memory";
			return -1;
		}
		c->ibuf = p;
		c->icap = cap;
	}
	return 0;
}

/* Appends what one read brings to the buffer, which must have room. */
static int ibuf_fill(struct conn *c, long long deadline, const char **error_r)
{
	size_t got = 0;
	int ret;

	ret = raw_read(c, c->ibuf + c->ilen, c->icap - c->ilen, deadline, &got,
		       error_r);
	if (ret == CONN_OK)
		c->ilen += got;
	return ret;
}

int conn_read_line(struct conn *c, size_t max_len, const char **line_r,
		   size_t *len_r, const char **error_r)
{
	long long deadline = read_deadline(c);
	size_t scanned = 0;
	int ret;

	if (max_len > SIZE_MAX - 2) {
		*error_r = "conn_read_line: max_len too large";
		return CONN_ERROR;
	}
	for (;;) {
		size_t avail = c->ilen - c->ipos;
		unsigned char *start = NULL, *lf = NULL;

		if (avail > scanned) {
			start = c->ibuf + c->ipos;
			lf = memchr(start + scanned, '\n', avail - scanned);
		}
		if (lf != NULL) {
			size_t len = (size_t)(lf - start);
			size_t consumed = len + 1;

			if (len > 0 && start[len - 1] == '\r')
				len--;
			if (len > max_len)
				return CONN_TOO_LONG;
			start[len] = '\0';
			c->ipos += consumed;
			*line_r = (const char *)start;
			*len_r = len;
			return CONN_OK;
		}
		/* max_len + 2 bytes without LF: even a CR as the last of
		 * them leaves more than max_len before the terminator. */
		if (avail >= max_len + 2)
			return CONN_TOO_LONG;
		scanned = avail;
		/* Room for one more record, not for max_len at once: most
		 * lines are short and thousands of idle conns keep their
		 * buffers. */
		if (avail > SIZE_MAX - CONN_CHUNK ||
		    ibuf_make_room(c, avail + CONN_CHUNK, error_r) < 0) {
			*error_r = "out of memory";
			return CONN_ERROR;
		}
		ret = ibuf_fill(c, deadline, error_r);
		if (ret != CONN_OK) {
			if (ret == CONN_EOF)
				c->ipos = c->ilen = 0;
			return ret;
		}
	}
}

int conn_skip_line(struct conn *c, uint64_t max_skip, const char **error_r)
{
	uint64_t skipped = 0;
	int ret;

	for (;;) {
		size_t avail = c->ilen - c->ipos;
		unsigned char *start = NULL, *lf = NULL;

		if (avail > 0) {
			start = c->ibuf + c->ipos;
			lf = memchr(start, '\n', avail);
		}

		if (lf != NULL) {
			size_t n = (size_t)(lf - start) + 1;

			if (n > max_skip - skipped)
				return CONN_TOO_LONG;
			c->ipos += n;
			return CONN_OK;
		}
		if (avail > max_skip - skipped)
			return CONN_TOO_LONG;
		skipped += avail;
		c->ipos = c->ilen = 0;
		if (ibuf_make_room(c, CONN_CHUNK, error_r) < 0)
			return CONN_ERROR;
		ret = ibuf_fill(c, read_deadline(c), error_r);
		if (ret != CONN_OK)
			return ret;
	}
}

/* Hands out up to max buffered bytes. */
static size_t ibuf_take(struct conn *c, void *dst, size_t max)
{
	size_t n = c->ilen - c->ipos;

	if (n > max)
		n = max;
	if (n > 0) {
		memcpy(dst, c->ibuf + c->ipos, n);
		c->ipos += n;
	}
	return n;
}

int conn_read_exact(struct conn *c, void *dst, size_t n, const char **error_r)
{
	unsigned char *p = dst;
	size_t got = ibuf_take(c, p, n);

	/* The rest goes straight into dst: no point copying a literal
	 * through the line buffer. */
	while (got < n) {
		size_t more = 0;
		int ret = raw_read(c, p + got, n - got, read_deadline(c),
				   &more, error_r);

		if (ret != CONN_OK)
			return ret;
		got += more;
	}
	return CONN_OK;
}

int conn_read_stream(struct conn *c, uint64_t n, conn_chunk_cb *cb, void *ctx,
		     const char **error_r)
{
	while (n > 0) {
		size_t avail = c->ilen - c->ipos;

		if (avail > 0) {
			size_t take = avail < n ? avail : (size_t)n;

			if (cb(ctx, c->ibuf + c->ipos, take) < 0) {
				*error_r = "literal refused by its consumer";
				return CONN_ERROR;
			}
			c->ipos += take;
			n -= take;
			continue;
		}
		c->ipos = c->ilen = 0;
		if (ibuf_make_room(c, CONN_CHUNK, error_r) < 0)
			return CONN_ERROR;
		int ret = ibuf_fill(c, read_deadline(c), error_r);

		if (ret != CONN_OK)
			return ret;
	}
	return CONN_OK;
}

int conn_read_some(struct conn *c, void *dst, size_t max, size_t *len_r,
		   const char **error_r)
{
	size_t n;
	int ret;

	if (max == 0) {
		*error_r = "conn_read_some: empty destination";
		return CONN_ERROR;
	}
	n = ibuf_take(c, dst, max);
	if (n > 0) {
		*len_r = n;
		return CONN_OK;
	}
	ret = raw_read(c, dst, max, read_deadline(c), &n, error_r);
	if (ret == CONN_OK)
		*len_r = n;
	return ret;
}

bool conn_pending(const struct conn *c)
{
	if (c->ipos < c->ilen)
		return true;
	return c->session != NULL &&
	       (gnutls_record_check_pending(c->session) > 0 ||
		raw_record_ready(c));
}

/*
 * Writing
 */

static int write_plain(struct conn *c, const unsigned char *p, size_t len,
		       const char **error_r)
{
	while (len > 0) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (conn_is_woken(c))
			return CONN_WOKEN;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return CONN_TIMEOUT;
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
			return CONN_EOF;
		*error_r = tls_error("send: %s",
				     n == 0 ? "no progress" : strerror(errno));
		return CONN_ERROR;
	}
	return CONN_OK;
}

static int write_tls(struct conn *c, const unsigned char *p, size_t len,
		     const char **error_r)
{
	while (len > 0) {
		ssize_t n = gnutls_record_send(c->session, p, len);

		if (n > 0) {
			/* At most one record's worth goes per call. */
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (conn_is_woken(c)) {
			c->broken = true;
			return CONN_WOKEN;
		}
		/* GnuTLS wants the same arguments again after these. */
		if (n == GNUTLS_E_INTERRUPTED)
			continue;
		c->broken = true;
		if (n == GNUTLS_E_AGAIN)
			return CONN_TIMEOUT;	/* SO_SNDTIMEO expired */
		if (n == GNUTLS_E_PUSH_ERROR &&
		    (errno == EPIPE || errno == ECONNRESET))
			return CONN_EOF;
		*error_r = tls_error("TLS send: %s",
				     n == 0 ? "no progress" :
					      gnutls_strerror((int)n));
		return CONN_ERROR;
	}
	return CONN_OK;
}

int conn_write(struct conn *c, const void *data, size_t len,
	       const char **error_r)
{
	if (conn_is_woken(c))
		return CONN_WOKEN;
	if (c->session != NULL)
		return write_tls(c, data, len, error_r);
	return write_plain(c, data, len, error_r);
}
