/*
 * bench_conn.h - one pluto-bench connection to an IMAP server: TCP, an
 * optional GnuTLS client session (implicit TLS or after STARTTLS), and the
 * small part of an IMAP client that sending commands and reading their
 * responses needs, server literals included.
 *
 * The bench must measure any IMAP server, so this file is deliberately
 * independent of pluto's own tls.c and parser: it trusts nothing the
 * server sends, bounds every line, and never keeps literal contents.
 *
 * A connection belongs to one thread; nothing here takes locks.  The
 * credentials in struct bench_tls are shared read-only by all threads.
 */
#ifndef PLUTO_BENCH_CONN_H
#define PLUTO_BENCH_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

/* Longest response text kept, literals excluded (a longer one is a
 * protocol error), and the most literal bytes one response may carry. */
#define BENCH_LINE_MAX (64 * 1024)
#define BENCH_LITERAL_MAX (UINT64_C(1) << 32)

enum bench_tls_mode {
	BENCH_TLS_PLAIN,
	BENCH_TLS_IMPLICIT,
	BENCH_TLS_STARTTLS,
};

/* Credentials shared by every client thread. */
struct bench_tls {
	gnutls_certificate_credentials_t cred;
	bool insecure;
};

/* Loads the trust anchors: cafile when not NULL, else the system store.
 * With insecure set, no anchors are needed and certificates are not
 * checked.  Returns 0, or -1 with *error_r set (static storage). */
int bench_tls_init(struct bench_tls *tls, const char *cafile, bool insecure,
		   const char **error_r);
void bench_tls_deinit(struct bench_tls *tls);

/* How a command completed.  NO and BAD are errors, never successes; ERR
 * means no tagged response came (I/O error, timeout, protocol error). */
enum bench_status {
	BENCH_STATUS_OK,
	BENCH_STATUS_NO,
	BENCH_STATUS_BAD,
	BENCH_STATUS_ERR,
};

const char *bench_status_name(enum bench_status status);

/* One piece of a command.  A piece with sync_literal set ends in a
 * synchronising literal marker "{n}\r\n": the next piece is sent only
 * after the server's "+" continuation. */
struct bench_piece {
	const void *data;
	size_t len;
	bool sync_literal;
};

struct bench_conn {
	int fd;
	gnutls_session_t session;	/* NULL until TLS is on */
	bool corked;			/* TLS output held back */
	int timeout_ms;

	unsigned char *rbuf;		/* read buffer, BENCH_RBUF_SIZE */
	size_t rpos, rlen;

	/* The last response read: its text with literal contents left out
	 * (NUL-terminated), and how many literal bytes it carried. */
	char *text;
	size_t text_len;
	uint64_t literal_bytes;

	unsigned int tag_seq;
	char tag[16];

	/* Learnt from untagged responses and response codes. */
	uint32_t exists;
	bool exists_seen;
	unsigned int fetch_count;	/* "* n FETCH" since the last command */
	uint64_t cmd_literal_bytes;	/* literal bytes since then */
	bool caps_known;
	bool cap_literal_plus;
	bool cap_starttls;
	bool bye;

	char errbuf[256];
};

/* Prepares c; timeout_ms bounds every connect, read, write and
 * handshake.  Returns 0, or -1 when out of memory. */
int bench_conn_init(struct bench_conn *c, int timeout_ms);
/* Closes the connection (TLS close_notify first when TLS is on) and frees
 * the buffers.  Safe to call twice. */
void bench_conn_deinit(struct bench_conn *c);

/* Resolves host and connects to the first address that answers.  Returns
 * 0, or -1 with *error_r set (borrowed from c). */
int bench_conn_connect(struct bench_conn *c, const char *host,
		       const char *port, const char **error_r);
/* Runs a client TLS handshake on the connected socket, checking the
 * server certificate against host unless tls->insecure.  Returns 0 or -1
 * with *error_r set. */
int bench_conn_start_tls(struct bench_conn *c, const struct bench_tls *tls,
			 const char *host, const char **error_r);
/* Reads the greeting.  Returns 0 for OK or PREAUTH, -1 for BYE, an error
 * or anything else, with *error_r set. */
int bench_conn_greeting(struct bench_conn *c, const char **error_r);

/* Sends one command, "TAG " followed by the pieces, and reads responses
 * until its tagged completion, updating the learnt state.  The clock runs
 * from just before the first byte is written until the tagged response
 * is read: *start_us_r (CLOCK_MONOTONIC) and *latency_us_r.  Returns the
 * status; for BENCH_STATUS_ERR *error_r says why (borrowed from c) and
 * the connection must not be used for further commands. */
enum bench_status bench_conn_command(struct bench_conn *c,
				     const struct bench_piece *pieces,
				     size_t npieces, uint64_t *start_us_r,
				     uint64_t *latency_us_r,
				     const char **error_r);

/* Reads one whole response (one line, plus the literals it announces and
 * the lines that follow them) into c->text.  Returns 1 when one was read,
 * 0 on a clean end of stream, -1 on error with *error_r set.  Exposed for
 * the unit test. */
int bench_conn_read_response(struct bench_conn *c, const char **error_r);

/* When line (len bytes, CRLF stripped) ends in a literal marker "{n}" or
 * "{n+}", stores n and returns true.  Lines whose tail is human-readable
 * text (tagged and untagged status responses, continuations) never carry
 * a literal.  n above BENCH_LITERAL_MAX or malformed is not a marker. */
bool bench_literal_marker(const char *line, size_t len, uint64_t *size_r);

/* CLOCK_MONOTONIC in microseconds. */
uint64_t bench_now_us(void);

#endif
