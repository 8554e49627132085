/*
 * relay.h - internal sessions seen from their client side: opening a
 * session at a worker or at storage (doc/protocol.md), and relaying bytes
 * between an IMAP client's connection and that session.
 *
 * Both the distributor (for every logged-in client) and the failover node
 * (for every session it forwards to storage on a stopped worker's behalf)
 * use it.  Neither interprets the IMAP traffic it relays: the only thing
 * watched is the backend's output, by a small scanner that knows where
 * lines and literals begin and end, so that a "* BYE" of the backend is
 * noticed and a BYE of our own is only ever inserted between two
 * responses, never inside one.
 */
#ifndef PLUTO_RELAY_H
#define PLUTO_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "buf.h"
#include "config.h"
#include "net.h"

struct conn;
struct server;
struct tls_creds;

/* Longest opening line and answer line, without CRLF. */
#define RELAY_LINE_MAX 1024
/* Longest client address in an opening line. */
#define RELAY_ADDR_MAX (NET_ADDR_STRLEN - 1)
/* Each wait for a relayed byte to be read or written, once a session is
 * open: a peer that stops reading or writing half-way through a record
 * for this long is dropped. */
#define RELAY_IO_TIMEOUT_MS 120000U
/* The shortest time allowed for a TLS handshake and the opening answer,
 * whatever IntlConnTimeout says (which bounds the TCP connect). */
#define RELAY_MIN_HANDSHAKE_MS 5000U

/*
 * Opening lines.
 */

/* Appends "PLUTO-SESSION 1 <user> <client_addr>[ <worker>]\r\n" to out.
 * worker may be NULL.  Returns 0, or -1 with *error_r (static text) when a
 * field cannot be sent: user not valid per doc/protocol.md (which also
 * forbids spaces), client_addr empty, too long or not printable ASCII
 * without space, worker not a valid node name, or out of memory. */
int relay_opening_line(struct buf *out, const char *user,
		       const char *client_addr, const char *worker,
		       const char **error_r);

struct relay_opening {
	char user[AUTH_NAME_MAX + 1];
	char client_addr[RELAY_ADDR_MAX + 1];
	char worker[CONFIG_NODE_NAME_MAX + 1];	/* "" when not given */
};

/* Parses an opening line (without its line end; line need not be
 * NUL-terminated and may hold NUL bytes, which are refused).  Checks the
 * syntax and each field as relay_opening_line() does.  Returns 0, or -1
 * with *error_r (static text, no client data). */
int relay_parse_opening(const char *line, size_t len,
			struct relay_opening *opening_r, const char **error_r);

/* Where a session is opened: node is the name the server's certificate
 * must carry ("storage" or a worker's name). */
struct relay_target {
	const char *node;
	const char *ip;
	uint16_t port;
};

/*
 * Connects to target with creds (internal credentials), handshakes,
 * writes opening (a whole line with CRLF, from relay_opening_line()) and
 * reads the answer.  An attempt fails when the connection, the handshake
 * or the opening fails, or the answer is not "* OK [PLUTO-SESSION] ...";
 * 1 + retries attempts are made, a little apart, unless srv (may be NULL)
 * begins stopping.  connect_ms bounds each TCP connect (IntlConnTimeout);
 * the handshake and the answer get at least RELAY_MIN_HANDSHAKE_MS.
 *
 * Returns 0 and *conn_r, the open session (the caller closes it); or -1
 * and *error_r, which says what the last attempt ran into (a thread-local
 * buffer valid until the next failing relay call of the thread; no
 * payload bytes, and the server's refusal text only sanitised).
 */
int relay_open(const struct tls_creds *creds, const struct relay_target *t,
	       const struct buf *opening, unsigned connect_ms,
	       unsigned retries, struct server *srv, struct conn **conn_r,
	       const char **error_r);

/*
 * The backend's output scanner.  Fed every byte the backend sends, in any
 * split, it tracks whether the stream stands at the start of a response
 * line (outside any literal) and whether a "* BYE" response was seen.
 * Literals announced as "{n}" (or "{n+}") at the end of a line are
 * skipped without looking at them, so message contents cannot fake a BYE.
 */
struct relay_scan {
	uint64_t literal_left;	/* literal bytes still to skip */
	size_t line_len;	/* bytes of the current line so far */
	char head[6];		/* its first bytes */
	char tail[24];		/* its last bytes (a window, for "{n}") */
	size_t tail_len;
	bool bye;		/* a "* BYE" line was seen */
};

void relay_scan_init(struct relay_scan *scan);
void relay_scan_feed(struct relay_scan *scan, const void *data, size_t len);
/* True when the next byte would start a new response line. */
bool relay_scan_at_boundary(const struct relay_scan *scan);

/*
 * Relaying.
 */

enum relay_end {
	RELAY_END_CLIENT,	/* the client closed, or failed */
	RELAY_END_BACKEND,	/* the backend closed, or failed */
	RELAY_END_STOP,		/* the server is stopping */
	RELAY_END_IDLE,		/* nothing moved for idle_ms */
};

struct relay_options {
	/* Backstop for a session where nothing moves either way (the
	 * backend's own autologout should come first); 0: none. */
	unsigned idle_ms;
	/* server_stopping() tells a stop (server_stop shuts the client's
	 * socket down) from a client leaving; may be NULL. */
	struct server *server;
	/* When the backend goes away without having said BYE, tell the
	 * client "* BYE [UNAVAILABLE] ..." (the distributor) or just close
	 * (the failover node: the distributor then says it). */
	bool bye_on_backend_loss;
};

struct relay_stats {
	uint64_t to_backend;	/* bytes relayed client -> backend */
	uint64_t to_client;	/* bytes relayed backend -> client */
	bool backend_bye;	/* the backend said BYE */
	bool sent_bye;		/* we told the client BYE ourselves */
};

/* Short name of an end, for logs. */
const char *relay_end_str(enum relay_end end);

/*
 * Copies client -> backend and backend -> client until one side closes
 * or fails, the server stops, or the idle backstop expires.  initial
 * (may be NULL or empty) is written to the backend first: bytes the
 * client pipelined behind its LOGIN.  Sets the read and write timeouts
 * of both conns to RELAY_IO_TIMEOUT_MS.  On a stop or an idle expiry,
 * and on a backend loss when asked to, a "* BYE" is written to the
 * client if the backend has not said one and its output stands between
 * two responses.  Closes neither conn.  *stats_r is filled.
 */
enum relay_end relay_run(struct conn *client, struct conn *backend,
			 const struct buf *initial,
			 const struct relay_options *opts,
			 struct relay_stats *stats_r);

#endif
