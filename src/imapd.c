/*
 * imapd.c - the worker and storage roles: a node's MailPort, where the
 * distributor (and, at storage, a failover node) opens internal IMAP
 * sessions as doc/protocol.md describes.
 *
 * Each connection gets a thread from server.c.  Its handler runs the
 * mutual TLS handshake, which already refuses any peer not presenting an
 * internal certificate naming an accepted node (conn_tls_server checks
 * chain and name), reads and checks the opening line, finds the user in
 * the store and hands the connection to an imap_session.  Refusals are
 * logged with the peer's address and never reach IMAP.
 *
 * The role's state is one static struct: main.c runs one role per
 * process, starts it once and stops it once, both from the main thread.
 * Connection threads only read it (the store and credentials are
 * thread-safe by their own contracts) between start and the end of
 * server_stop(), which joins them.
 */
#include "autoconfig.h"

#include "imapd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imap_session.h"
#include "log.h"
#include "mailbox_name.h"
#include "net.h"
#include "server.h"
#include "tls.h"
#include "sync.h"
#include "user_store.h"

#define OPENING_VERSION "1"
#define OPENING_LINE_MAX 1024
/* Handshake and opening line together must come within this time (or
 * IntlConnTimeout, if that is longer): a peer that connects and says
 * nothing must not hold a thread. */
#define OPENING_TIMEOUT_MS 10000U
#define LISTEN_BACKLOG 128

struct imapd {
	const struct pluto_config *config;
	const struct config_node *node;
	bool storage;
	const char **accept_names;	/* NULL-terminated */
	struct user_store *store;
	struct sync *sync;		/* replication links */
	struct tls_creds *creds;
	struct server *server;
};

static struct imapd imapd;

/* ------------------------------------------------------------------ */
/* The opening line */

/* Length of the UTF-8 sequence at p (at most left bytes) when it is a
 * valid, shortest-form, non-control character above U+007F; 0 when not. */
static size_t utf8_char_len(const unsigned char *p, size_t left)
{
	uint32_t cp;
	size_t n;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1fu;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0fu;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07u;
	} else {
		return 0;
	}
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3fu);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
	    (cp >= 0x80 && cp <= 0x9f))
		return 0;
	return n;
}

/* A user name names a Maildir directory: printable ASCII or UTF-8, no
 * space, control or '/', not starting with '.'. */
static bool user_name_valid(const char *name, size_t len)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t i = 0;

	if (len == 0 || len > OP_USER_MAX || p[0] == '.')
		return false;
	while (i < len) {
		if (p[i] >= 0x80) {
			size_t n = utf8_char_len(p + i, len - i);

			if (n == 0)
				return false;
			i += n;
			continue;
		}
		if (p[i] <= 0x20 || p[i] == 0x7f || p[i] == '/')
			return false;
		i++;
	}
	return true;
}

/* Takes the next space-separated token of line[*pos..len). */
static bool next_token(const char *line, size_t len, size_t *pos,
		       const char **tok_r, size_t *tok_len_r)
{
	size_t start = *pos, end;

	if (start >= len)
		return false;
	for (end = start; end < len && line[end] != ' '; end++)
		;
	if (end == start)
		return false;
	*tok_r = line + start;
	*tok_len_r = end - start;
	*pos = end < len ? end + 1 : end;
	/* A trailing or doubled space makes an empty token: refused. */
	return !(end < len && end + 1 == len);
}

static bool token_is(const char *tok, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(tok, word, len) == 0;
}

int imapd_parse_opening(const char *line, size_t len,
			struct imapd_opening *out, const char **error_r)
{
	const char *tok;
	size_t tlen, pos = 0;

	memset(out, 0, sizeof(*out));
	if (!next_token(line, len, &pos, &tok, &tlen) ||
	    !token_is(tok, tlen, "PLUTO-SESSION")) {
		*error_r = "Expected PLUTO-SESSION";
		return -1;
	}
	if (!next_token(line, len, &pos, &tok, &tlen) ||
	    !token_is(tok, tlen, OPENING_VERSION)) {
		*error_r = "Unsupported protocol version";
		return -1;
	}
	if (!next_token(line, len, &pos, &tok, &tlen) ||
	    !user_name_valid(tok, tlen)) {
		*error_r = "Invalid user name";
		return -1;
	}
	memcpy(out->user, tok, tlen);
	if (!next_token(line, len, &pos, &tok, &tlen) ||
	    tlen >= sizeof(out->client)) {
		*error_r = "Invalid client address";
		return -1;
	}
	for (size_t i = 0; i < tlen; i++) {
		unsigned char c = (unsigned char)tok[i];

		if (c <= 0x20 || c >= 0x7f) {
			*error_r = "Invalid client address";
			return -1;
		}
	}
	memcpy(out->client, tok, tlen);
	if (pos >= len)
		return 0;
	if (!next_token(line, len, &pos, &tok, &tlen) ||
	    tlen > CONFIG_NODE_NAME_MAX || memchr(tok, '\0', tlen) != NULL) {
		*error_r = "Invalid worker name";
		return -1;
	}
	memcpy(out->worker, tok, tlen);
	if (!config_node_name_valid(out->worker)) {
		*error_r = "Invalid worker name";
		return -1;
	}
	if (pos < len) {
		*error_r = "Too many fields";
		return -1;
	}
	return 0;
}

/* Which worker a session may name depends on who opened it: a failover
 * node presents the certificate of the worker it stands in for and must
 * name exactly that worker; the distributor names one only at storage,
 * and only a configured one. */
static int opening_check_peer(const struct imapd_opening *o,
			      const char *peer, const char **error_r)
{
	bool peer_is_worker = strcmp(peer, "distributor") != 0;

	if (o->worker[0] == '\0') {
		if (peer_is_worker) {
			*error_r = "A failover session must name its worker";
			return -1;
		}
		return 0;
	}
	if (!imapd.storage) {
		*error_r = "Only storage takes sessions for another worker";
		return -1;
	}
	if (config_worker(imapd.config, o->worker) == NULL) {
		*error_r = "Unknown worker";
		return -1;
	}
	if (peer_is_worker && strcmp(peer, o->worker) != 0) {
		*error_r = "Worker does not match the peer certificate";
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Connections */

static void refuse(struct conn *conn, const char *why)
{
	const char *error;
	char line[256];
	int n;

	n = snprintf(line, sizeof(line), "* BYE [PLUTO-SESSION] %s\r\n", why);
	if (n > 0)
		(void)conn_write(conn, line, strlen(line), &error);
}

static void imapd_handle(struct server_conn *sc, void *ctx)
{
	struct conn *conn = conn_new(sc->fd);
	struct imap_session *session;
	struct imapd_opening o;
	struct user *user;
	const char *error, *line;
	unsigned timeout_ms = OPENING_TIMEOUT_MS;
	size_t len;
	int ret;

	(void)ctx;
	if (conn == NULL) {
		log_error("out of memory for a connection from %s", sc->peer);
		return;
	}
	if (imapd.config->intl_conn_timeout_ms > timeout_ms)
		timeout_ms = imapd.config->intl_conn_timeout_ms;
	(void)conn_set_timeouts(conn, timeout_ms, timeout_ms);
	if (conn_tls_server(conn, imapd.creds, imapd.accept_names, timeout_ms,
			    &error) < 0) {
		log_warnx("refused internal session from %s: %s", sc->peer,
			  error);
		conn_close(&conn);
		return;
	}
	log_context_set("from", conn_peer_name(conn));

	ret = conn_read_line(conn, OPENING_LINE_MAX, &line, &len, &error);
	if (ret != CONN_OK) {
		log_warnx("no opening line from %s: %s", sc->peer,
			  ret == CONN_ERROR ? error : conn_status_str(ret));
		if (ret == CONN_TOO_LONG || ret == CONN_TIMEOUT)
			refuse(conn, ret == CONN_TOO_LONG
					     ? "Opening line too long"
					     : "Timeout");
		conn_close(&conn);
		return;
	}
	if (imapd_parse_opening(line, len, &o, &error) < 0 ||
	    opening_check_peer(&o, conn_peer_name(conn), &error) < 0) {
		log_warnx("bad opening line from %s: %s", sc->peer, error);
		refuse(conn, error);
		conn_close(&conn);
		return;
	}
	log_context_set("user", o.user);
	log_context_set("client", o.client);

	user = user_store_get(imapd.store, o.user, &error);
	/* The store gives every user an INBOX on first use. */
	if (user == NULL) {
		log_warnx("cannot open the session: %s", error);
		refuse(conn, "Cannot open the user's mail");
		conn_close(&conn);
		return;
	}
	if (o.worker[0] != '\0') {
		/* Storage standing in for a worker: this user's changes go
		 * back to that worker when it returns. */
		user_lock(user);
		user_set_home_locked(user, o.worker);
		user_unlock(user);
	}
	session = imap_session_new(conn, user, imapd.config, imapd.server);
	if (session == NULL) {
		log_error("out of memory for a session");
		refuse(conn, "Out of memory");
		conn_close(&conn);
		return;
	}
	log_info("session opened%s%s", o.worker[0] != '\0' ? " for worker "
							    : "",
		 o.worker);
	imap_session_printf(session, "* OK [PLUTO-SESSION] %s ready\r\n",
			    o.user);
	imap_session_run(session);
	imap_session_free(&session);
	conn_close(&conn);
	log_info("session closed");
}

static void imapd_reject(int fd, const char *reason, void *ctx)
{
	(void)fd;
	(void)ctx;
	/* No TLS yet, so nothing can be said to the peer. */
	log_warnx("internal session refused: %s", reason);
}

static const struct server_ops imapd_server_ops = {
	imapd_handle,
	imapd_reject,
};

/* ------------------------------------------------------------------ */
/* The roles */

static int imapd_stop(void);

static int imapd_start(const struct pluto_config *config,
		       const struct config_node *node, bool storage)
{
	struct user_store_options opts;
	const char *error;
	size_t n = 0;
	int fd;

	memset(&imapd, 0, sizeof(imapd));
	imapd.config = config;
	imapd.node = node;
	imapd.storage = storage;
	imapd.accept_names = calloc(config->n_workers + 2, sizeof(char *));
	if (imapd.accept_names == NULL) {
		log_error("out of memory");
		return -1;
	}
	imapd.accept_names[n++] = "distributor";
	if (storage) {
		for (size_t i = 0; i < config->n_workers; i++)
			imapd.accept_names[n++] = config->workers[i].name;
	}

	memset(&opts, 0, sizeof(opts));
	opts.node_name = node->name;
	opts.is_storage = storage;
	opts.maildir_root = node->maildir_root;
	opts.crdt_root = node->crdt_root;
	opts.hierarchy_separator = config->hierarchy_separator;
	if (user_store_open(&opts, &imapd.store, &error) < 0) {
		log_error("cannot open the mail store: %s", error);
		goto fail;
	}
	if (tls_creds_internal(config->root_cert_loc, node->tls.cert_loc,
			       node->tls.key_loc, &imapd.creds, &error) < 0) {
		log_error("internal TLS: %s", error);
		goto fail;
	}
	fd = net_listen(node->listen_ip, node->mail_port, LISTEN_BACKLOG,
			&error);
	if (fd < 0) {
		log_error("cannot listen on %s port %u: %s", node->listen_ip,
			  (unsigned)node->mail_port, error);
		goto fail;
	}
	imapd.server = server_new("imap", fd, &imapd_server_ops, NULL,
				  config->limits.max_connections,
				  config->limits.max_connections_per_ip);
	if (imapd.server == NULL) {
		close(fd);
		log_error("cannot create the IMAP server");
		goto fail;
	}
	if (server_start(imapd.server) < 0) {
		log_error("cannot start the IMAP server");
		goto fail;
	}
	log_info("serving internal IMAP sessions on %s port %u",
		 node->listen_ip, (unsigned)node->mail_port);
	if (sync_start(config, node->name, imapd.store, imapd.creds,
		       &imapd.sync, &error) < 0) {
		log_error("cannot start replication: %s", error);
		goto fail;
	}
	return 0;
fail:
	(void)imapd_stop();
	return -1;
}

static int imapd_stop(void)
{
	if (imapd.server != NULL) {
		server_stop(imapd.server);
		server_free(&imapd.server);
	}
	/* Replication stops before the store it reads and writes. */
	sync_stop(&imapd.sync);
	if (imapd.store != NULL)
		user_store_free(&imapd.store);
	if (imapd.creds != NULL)
		tls_creds_free(&imapd.creds);
	free(imapd.accept_names);
	imapd.accept_names = NULL;
	return 0;
}

static int worker_start(const struct pluto_config *config, const char *name)
{
	const struct config_node *node = config_worker(config, name);

	if (node == NULL) {
		log_error("no worker named %s", name != NULL ? name : "(none)");
		return -1;
	}
	return imapd_start(config, node, false);
}

static int storage_start(const struct pluto_config *config, const char *name)
{
	(void)name;
	return imapd_start(config, &config->storage, true);
}

static const struct role_ops worker_ops = { worker_start, imapd_stop };
static const struct role_ops storage_ops = { storage_start, imapd_stop };

const struct role_ops *imapd_worker_role(void)
{
	return &worker_ops;
}

const struct role_ops *imapd_storage_role(void)
{
	return &storage_ops;
}
