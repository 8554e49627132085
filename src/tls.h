/*
 * tls.h - TLS credentials and buffered connections (plain or TLS).
 *
 * tls.c is the only GnuTLS user of pluto besides pki.c (which makes
 * certificates).  It offers two things:
 *
 * Credentials (struct tls_creds): a certificate store plus a priority
 * cache, made once at start-up and shared read-only by every session of
 * every thread.  Three kinds:
 *   - public server: the client-facing listener; the system's default
 *     priorities with server precedence; no client certificate asked for;
 *   - public client: trusts a CA file (or the system store), for tools and
 *     tests talking to a public listener;
 *   - internal: mutual TLS between nodes, TLS 1.3 only, our node's
 *     certificate and key, and the internal CA as the only trust anchor.
 *     The same credentials serve both ends: a node is a server for some
 *     links and a client for others.
 *
 * Connections (struct conn): a socket, plain at first, that can be turned
 * into TLS by a handshake (implicit TLS right after accept/connect, or
 * STARTTLS later), with buffered, bounded, timed reads.
 *
 * Results.  Every read and write returns one of enum conn_status.  When it
 * is CONN_ERROR (or a handshake fails), *error_r points to a message in a
 * thread-local buffer valid until the next failing tls/conn call of the
 * same thread; the message never holds payload bytes.
 *
 * Threads.  A conn may be used by at most one reading thread (the
 * conn_read_*, conn_skip_line and conn_pending calls) and one writing
 * thread (conn_write) at a time; GnuTLS allows exactly this on a session.
 * conn_wake() may be called from any thread at any time before
 * conn_close().  Handshakes, conn_set_timeouts() and conn_close() need the
 * conn to themselves: join or stop the other thread first.
 */
#ifndef PLUTO_TLS_H
#define PLUTO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_creds;
struct conn;

enum conn_status {
	CONN_OK = 0,
	/* The peer closed: close_notify, a FIN (TLS without close_notify
	 * counts: premature termination), or a broken pipe on write. */
	CONN_EOF = -1,
	/* No byte arrived (or could be sent) within the timeout. */
	CONN_TIMEOUT = -2,
	/* conn_read_line: the line exceeds max_len (nothing consumed). */
	CONN_TOO_LONG = -3,
	/* conn_wake() was called: the caller is being shut down. */
	CONN_WOKEN = -4,
	/* Anything else: a socket error, a fatal TLS alert, a failed
	 * allocation, a callback refusing data.  *error_r says which. */
	CONN_ERROR = -5,
};

/* A short name for a status, for logs: "ok", "eof", "timeout"... */
const char *conn_status_str(int status);

/*
 * Credentials.  Files are PEM.  Each constructor returns 0 and the
 * credentials, which the caller frees with tls_creds_free() after every
 * conn using them is closed; or -1 and *error_r.
 */

/* The public listener: certificate chain and key. */
int tls_creds_public_server(const char *cert_file, const char *key_file,
			    struct tls_creds **creds_r, const char **error_r);
/* A client of a public listener, trusting the CAs in ca_file, or the
 * system's trust store when ca_file is NULL. */
int tls_creds_public_client(const char *ca_file, struct tls_creds **creds_r,
			    const char **error_r);
/* Internal mutual TLS: ca_file holds the internal CA (RootCertLoc) and
 * must contain at least one certificate; cert_file and key_file are this
 * node's. */
int tls_creds_internal(const char *ca_file, const char *cert_file,
		       const char *key_file, struct tls_creds **creds_r,
		       const char **error_r);
void tls_creds_free(struct tls_creds **creds);

/*
 * Connections.
 */

/* Wraps a connected stream socket, which the conn owns from now on (even
 * when this fails).  The conn starts plain.  Returns NULL only when out of
 * memory (the fd is then closed). */
struct conn *conn_new(int fd);

/* Read and write timeouts in milliseconds, 0 meaning none (the default).
 * The read timeout bounds a whole conn_read_line() call (a peer dribbling
 * one byte a minute cannot hold a line open forever), and each wait for
 * more bytes of conn_read_exact/_stream/_some (a large literal may take
 * long, but must keep moving).  The write timeout bounds each wait for
 * the socket to accept more bytes. */
int conn_set_timeouts(struct conn *c, unsigned read_ms, unsigned write_ms);

/* Makes c a TLS server (implicit TLS after accept, or STARTTLS after the
 * "OK Begin TLS" reply was written) and runs the handshake, bounded by
 * timeout_ms (0: none).
 *   - With public server credentials, accept_names must be NULL.
 *   - With internal credentials, the client must present a certificate
 *     that chains to the internal CA, and that certificate must be valid
 *     for one of accept_names (a NULL-terminated list of node names, CN
 *     or DNS subjectAltName); the first name of the list it matches
 *     becomes conn_peer_name().
 * Fails, changing nothing, when bytes received in plaintext are still
 * buffered: a client must not pipeline data after STARTTLS, and such
 * bytes would otherwise be taken as sent under TLS.  Returns 0, or -1 and
 * *error_r; after a failure the caller only closes c. */
int conn_tls_server(struct conn *c, const struct tls_creds *creds,
		    const char *const *accept_names, unsigned timeout_ms,
		    const char **error_r);

/* Makes c a TLS client and runs the handshake, checking that the server's
 * certificate chains to the trusted CA(s) and is valid for peer_name
 * (required; a node name for internal credentials, the server's host name
 * or IP for public client credentials).  peer_name is also sent as SNI
 * when it is a host name.  With internal credentials our own certificate
 * is presented.  Same rules as conn_tls_server() otherwise. */
int conn_tls_client(struct conn *c, const struct tls_creds *creds,
		    const char *peer_name, unsigned timeout_ms,
		    const char **error_r);

bool conn_is_tls(const struct conn *c);
/* The verified node name of an internal TLS peer (borrowed until
 * conn_close), or NULL. */
const char *conn_peer_name(const struct conn *c);
/* "192.0.2.1:50123", "[::1]:4242" or "unix", taken when the conn was made
 * (borrowed until conn_close). */
const char *conn_peer_addr(const struct conn *c);
/* The socket, for poll(2) by a reader that also waits on something else.
 * Check conn_pending() first: TLS may hold decrypted bytes the socket no
 * longer shows. */
int conn_fd(const struct conn *c);

/* Reads one line ended by LF or CRLF.  On CONN_OK, *line_r points to the
 * line without its terminator, NUL-terminated for convenience (it may
 * contain NUL bytes: trust *len_r), borrowed until the next read call on
 * c.  A line longer than max_len bytes (not counting CRLF) gives
 * CONN_TOO_LONG without consuming anything: answer and close, or drop the
 * line with conn_skip_line().  CONN_EOF in the middle of a line discards
 * the partial line.  max_len must be below SIZE_MAX - 2. */
int conn_read_line(struct conn *c, size_t max_len, const char **line_r,
		   size_t *len_r, const char **error_r);

/* Discards input up to and including the next LF, reading at most
 * max_skip bytes (CONN_TOO_LONG beyond that). */
int conn_skip_line(struct conn *c, uint64_t max_skip, const char **error_r);

/* Reads exactly n bytes into dst (for an IMAP literal whose size the
 * caller has already checked against its limit).  CONN_EOF when the peer
 * closes before n bytes came. */
int conn_read_exact(struct conn *c, void *dst, size_t n, const char **error_r);

/* Reads exactly n bytes and hands them to cb in chunks of at most a TLS
 * record (16 KiB) as they arrive, so a large literal never needs one
 * allocation.  cb returns 0 to go on or -1 to stop: conn_read_stream
 * then returns CONN_ERROR, leaving the refused chunk and the rest of the
 * literal unread (the caller will normally close the conn). */
typedef int conn_chunk_cb(void *ctx, const void *data, size_t len);
int conn_read_stream(struct conn *c, uint64_t n, conn_chunk_cb *cb, void *ctx,
		     const char **error_r);

/* Reads what is available, at least 1 and at most max bytes, waiting for
 * it (for relaying a stream without interpreting it).  *len_r is set on
 * CONN_OK. */
int conn_read_some(struct conn *c, void *dst, size_t max, size_t *len_r,
		   const char **error_r);

/* True when a read would return data without touching the socket:
 * bytes are in c's buffer or decrypted in GnuTLS's.  Reader thread only. */
bool conn_pending(const struct conn *c);

/* Writes all len bytes (looping over short sends and record limits).
 * CONN_EOF when the peer has gone (EPIPE/ECONNRESET). */
int conn_write(struct conn *c, const void *data, size_t len,
	       const char **error_r);

/* Wakes the conn's blocked reader and writer from another thread with
 * shutdown(fd, SHUT_RDWR): they return CONN_WOKEN, as does every later
 * read or write.  Never closes the fd (the descriptor number cannot be
 * reused under the blocked threads' feet).  Join them, then conn_close. */
void conn_wake(struct conn *c);
bool conn_is_woken(const struct conn *c);

/* Ends the conn: for TLS still healthy, sends close_notify with
 * gnutls_bye(GNUTLS_SHUT_WR) (bounded by the write timeout, 5 s when
 * none is set); then closes the fd, deinitialises the session, frees c
 * and sets *c to NULL.  NULL-safe. */
void conn_close(struct conn **c);

#endif
