/*
 * failover.c - the failover role: `pluto --worker NAME --failover`.
 *
 * The seed's pass-through node.  Started on a stopped worker's host (or
 * address), it listens on that worker's ListenIP:MailPort with the
 * worker's internal certificate, so the distributor reaches it exactly as
 * it would reach the worker.  Each session is checked (mutual TLS, peer
 * "distributor", a valid opening line) and forwarded to storage with the
 * worker's name appended, so storage serves it from its own replica as a
 * failover session; then the bytes are relayed both ways.
 *
 * It never touches the worker's Maildir or journal: the worker's data may
 * be on a dead disk, and storage is the replica that takes the writes.
 * When storage goes away mid-session the node just closes, and the
 * distributor tells the client BYE.
 *
 * Locks: none.  The role's state is set by start() and cleared by stop()
 * on the main thread while no session thread runs.
 */
#include "autoconfig.h"

#include "distributor.h"

#include <string.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "net.h"
#include "relay.h"
#include "server.h"
#include "tls.h"

#define FAILOVER_IDLE_MARGIN_S 300U

struct failover {
	const struct pluto_config *config;
	const struct config_node *worker;
	struct tls_creds *creds;	/* the worker's internal identity */
	struct server *server;
};

static struct failover fo;

static void refuse(struct conn *conn, const char *reason)
{
	struct buf line = BUF_INIT;
	const char *err;

	if (buf_printf(&line, "* BYE [PLUTO-SESSION] %s\r\n", reason) == 0)
		(void)conn_write(conn, line.data, line.len, &err);
	buf_free(&line);
}

static void fo_handle(struct server_conn *sc, void *ctx)
{
	static const char *const accept_names[] = { "distributor", NULL };
	const struct pluto_config *cfg = fo.config;
	unsigned hs_ms = cfg->intl_conn_timeout_ms > RELAY_MIN_HANDSHAKE_MS
				 ? cfg->intl_conn_timeout_ms
				 : RELAY_MIN_HANDSHAKE_MS;
	struct relay_options opts = {
		.idle_ms = (cfg->limits.idle_timeout_s +
			    FAILOVER_IDLE_MARGIN_S) * 1000U,
		.server = sc->server,
		.bye_on_backend_loss = false,
	};
	struct relay_opening opening;
	struct relay_target storage = {
		.node = "storage",
		.ip = cfg->storage.public_ip,
		.port = cfg->storage.mail_port,
	};
	struct relay_stats stats;
	struct conn *conn, *backend = NULL;
	struct buf line = BUF_INIT;
	const char *err, *text;
	size_t len;
	enum relay_end end;
	int ret;

	(void)ctx;
	conn = conn_new(sc->fd);
	if (conn == NULL) {
		log_warnx("out of memory for a connection");
		return;
	}
	(void)conn_set_timeouts(conn, hs_ms, hs_ms);
	if (conn_tls_server(conn, fo.creds, accept_names, hs_ms, &err) < 0) {
		log_warnx("refused internal session from %s: %s", sc->peer,
			  err);
		goto out;
	}
	ret = conn_read_line(conn, RELAY_LINE_MAX, &text, &len, &err);
	if (ret != CONN_OK) {
		log_info("no opening line from %s: %s", sc->peer,
			 ret == CONN_ERROR ? err : conn_status_str(ret));
		goto out;
	}
	if (relay_parse_opening(text, len, &opening, &err) < 0) {
		log_warnx("bad opening line from %s: %s", sc->peer, err);
		refuse(conn, err);
		goto out;
	}
	if (opening.worker[0] != '\0') {
		log_warnx("opening line from %s names a worker", sc->peer);
		refuse(conn, "a worker's session names no worker");
		goto out;
	}
	log_context_set("user", opening.user);
	if (relay_opening_line(&line, opening.user, opening.client_addr,
			       fo.worker->name, &err) < 0) {
		refuse(conn, err);
		goto out;
	}
	if (relay_open(fo.creds, &storage, &line, cfg->intl_conn_timeout_ms,
		       cfg->intl_conn_retry, sc->server, &backend,
		       &err) < 0) {
		log_warnx("cannot forward to storage: %s", err);
		refuse(conn, "storage unavailable");
		goto out;
	}
	buf_reset(&line);
	if (buf_printf(&line, "* OK [PLUTO-SESSION] %s ready\r\n",
		       opening.user) < 0 ||
	    conn_write(conn, line.data, line.len, &err) != CONN_OK)
		goto out;
	log_info("session of client %s forwarded to storage for %s",
		 opening.client_addr, fo.worker->name);
	end = relay_run(conn, backend, NULL, &opts, &stats);
	log_info("session closed (%s, %llu bytes in, %llu bytes out)",
		 relay_end_str(end), (unsigned long long)stats.to_backend,
		 (unsigned long long)stats.to_client);
out:
	buf_free(&line);
	conn_close(&backend);
	conn_close(&conn);
}

static const struct server_ops fo_server_ops = {
	.handle = fo_handle,
	.reject = NULL,
};

static int fo_stop(void)
{
	server_free(&fo.server);
	tls_creds_free(&fo.creds);
	memset(&fo, 0, sizeof(fo));
	return 0;
}

static int fo_start(const struct pluto_config *config, const char *name)
{
	const char *err;
	int fd;

	memset(&fo, 0, sizeof(fo));
	fo.config = config;
	fo.worker = name != NULL ? config_worker(config, name) : NULL;
	if (fo.worker == NULL) {
		log_error("no [Workers.%s] section", name != NULL ? name : "?");
		return -1;
	}
	if (tls_creds_internal(config->root_cert_loc, fo.worker->tls.cert_loc,
			       fo.worker->tls.key_loc, &fo.creds, &err) < 0) {
		log_error("[Workers.%s.TLS]: %s", fo.worker->name, err);
		goto fail;
	}
	fd = net_listen(fo.worker->listen_ip, fo.worker->mail_port, 256, &err);
	if (fd < 0) {
		log_error("cannot listen on %s port %u: %s",
			  fo.worker->listen_ip, (unsigned)fo.worker->mail_port,
			  err);
		goto fail;
	}
	fo.server = server_new("failover", fd, &fo_server_ops, NULL,
			       config->limits.max_connections,
			       config->limits.max_connections);
	if (fo.server == NULL || server_start(fo.server) < 0) {
		log_error("cannot start the accept thread");
		goto fail;
	}
	log_info("failover node for %s listening on %s port %u, forwarding"
		 " to storage at %s port %u", fo.worker->name,
		 fo.worker->listen_ip, (unsigned)fo.worker->mail_port,
		 config->storage.public_ip, (unsigned)config->storage.mail_port);
	return 0;
fail:
	fo_stop();
	return -1;
}

const struct role_ops failover_role_ops = {
	.start = fo_start,
	.stop = fo_stop,
};
