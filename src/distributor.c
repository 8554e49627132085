/*
 * distributor.c - the distributor role: public listeners, the
 * not-authenticated state of IMAP, routing and relaying.
 *
 * Each client connection runs on its own thread (server.h) through three
 * phases:
 *
 *   1. pre-authentication: TLS (implicit, or STARTTLS on the plain port),
 *      the greeting, and the few commands RFC 3501 allows before login,
 *      parsed with tight limits (8 KiB a line) and a bounded total time,
 *      since nobody is known yet;
 *   2. opening the user's session at the worker owning the user's id, or
 *      at storage naming that worker when the worker cannot be reached
 *      (relay_open() does the retries);
 *   3. relaying (relay_run()) until either side ends.
 *
 * A backend that dies only ends the sessions relayed to it: every write
 * to it is checked, SIGPIPE is ignored (main.c), and the client gets a
 * "* BYE" and can log in again, to be routed afresh.
 *
 * Secrets: the password (LOGIN argument or decoded SASL message) is
 * handed to auth_check() and wiped afterwards; it is never logged.
 *
 * Locks: none of its own.  The role's state is written by start() and
 * stop() on the main thread only, while no connection thread runs, and is
 * read-only in between.
 */
#include "autoconfig.h"

#include "distributor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "auth.h"
#include "base64.h"
#include "buf.h"
#include "config.h"
#include "imap_parser.h"
#include "log.h"
#include "net.h"
#include "relay.h"
#include "server.h"
#include "tls.h"

/* How long the pre-authentication phase may last in total, in units of
 * [Limits] PreAuthTimeout (which bounds each single wait). */
#define PREAUTH_TOTAL_FACTOR 4
/* Each wait for the client to take our output. */
#define CLIENT_WRITE_MS 30000U
/* The distributor's idle backstop beyond the backend's autologout. */
#define IDLE_MARGIN_S 300U
/* The tag of the distributor's own CAPABILITY to a fresh backend. */
#define CAPS_TAG "pluto0"
#define CAPS_MAX 1024

struct distributor;

struct dist_listener {
	struct distributor *d;
	bool implicit_tls;
};

struct distributor {
	const struct pluto_config *config;
	struct tls_creds *public_creds;
	struct tls_creds *internal_creds;
	struct auth *auth;
	struct server *tls_server;
	struct server *plain_server;
	struct dist_listener tls_listener;
	struct dist_listener plain_listener;
};

/* The running role: see "Locks" above. */
static struct distributor dist;

enum dist_step {
	DIST_CONTINUE,		/* still not authenticated */
	DIST_CLOSE,		/* end the connection */
	DIST_LOGGED_IN,		/* a backend session is open: relay */
};

/* One client connection. */
struct dist_session {
	struct distributor *d;
	const struct pluto_config *config;
	struct server_conn *sc;
	struct conn *conn;
	struct conn *backend;
	bool tls;
	struct imap_parser *parser;
	struct buf in;		/* read but not yet parsed from in_pos */
	size_t in_pos;
	long long deadline_ms;	/* end of the pre-authentication phase */
	unsigned failures;
	struct auth_user user;
	char caps[CAPS_MAX];	/* the backend's capabilities, or "" */
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Pure helpers
 */

int distributor_sasl_plain(const void *msg, size_t len, const char **user_r,
			   size_t *user_len_r, const void **pass_r,
			   size_t *pass_len_r, const char **error_r)
{
	const char *p = msg;
	const char *nul1, *nul2;
	size_t authz_len, user_len;

	nul1 = len > 0 ? memchr(p, '\0', len) : NULL;
	if (nul1 == NULL) {
		*error_r = "malformed PLAIN message";
		return -1;
	}
	authz_len = (size_t)(nul1 - p);
	nul2 = memchr(nul1 + 1, '\0', len - authz_len - 1);
	if (nul2 == NULL) {
		*error_r = "malformed PLAIN message";
		return -1;
	}
	user_len = (size_t)(nul2 - (nul1 + 1));
	if (user_len == 0) {
		*error_r = "empty user name in PLAIN message";
		return -1;
	}
	*pass_len_r = len - authz_len - 1 - user_len - 1;
	if (memchr(nul2 + 1, '\0', *pass_len_r) != NULL) {
		*error_r = "malformed PLAIN message";
		return -1;
	}
	/* Acting as another user is not offered to anyone. */
	if (authz_len != 0 &&
	    (authz_len != user_len || memcmp(p, nul1 + 1, user_len) != 0)) {
		*error_r = "authorization identity differs";
		return -2;
	}
	*user_r = nul1 + 1;
	*user_len_r = user_len;
	*pass_r = nul2 + 1;
	return 0;
}

bool distributor_is_loopback(const char *ip)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, ip, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, ip, &a6) != 1)
		return false;
	if (IN6_IS_ADDR_LOOPBACK(&a6))
		return true;
	return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

/*
 * Output
 */

/* Formats and writes one or more response lines.  Returns false when the
 * client cannot be written to (the caller then closes). */
static bool say(struct dist_session *s, const char *fmt, ...)
	PLUTO_PRINTF(2, 3);

static bool say(struct dist_session *s, const char *fmt, ...)
{
	struct buf out = BUF_INIT;
	const char *err;
	va_list ap;
	int ret;
	bool ok;

	va_start(ap, fmt);
	ret = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (ret < 0 || buf_reserve(&out, (size_t)ret + 1) < 0)
		return false;
	va_start(ap, fmt);
	vsnprintf((char *)out.data, (size_t)ret + 1, fmt, ap);
	va_end(ap);
	out.len = (size_t)ret;
	ok = conn_write(s->conn, out.data, out.len, &err) == CONN_OK;
	buf_free(&out);
	return ok;
}

/* LOGIN and AUTHENTICATE are allowed under TLS, and in plaintext only
 * from loopback when the configuration says so (tests). */
static bool login_allowed(const struct dist_session *s)
{
	return s->tls || (s->config->distributor.allow_plaintext_loopback &&
			  distributor_is_loopback(s->sc->peer_ip));
}

static void capabilities(const struct dist_session *s, char *out,
			 size_t size)
{
	snprintf(out, size, "IMAP4rev1 LITERAL+ SASL-IR ID%s%s",
		 s->tls ? "" : " STARTTLS",
		 login_allowed(s) ? " AUTH=PLAIN" : " LOGINDISABLED");
}

/*
 * Input
 */

/* Reads more client bytes into s->in, waiting at most until the
 * pre-authentication deadline. */
static int fill(struct dist_session *s)
{
	long long left = s->deadline_ms - now_ms();
	unsigned per_read = s->config->limits.pre_auth_timeout_s * 1000U;
	const char *err;
	size_t n = 0;
	int ret;

	if (left <= 0)
		return CONN_TIMEOUT;
	if ((long long)per_read > left)
		per_read = (unsigned)left;
	(void)conn_set_timeouts(s->conn, per_read, CLIENT_WRITE_MS);
	if (s->in_pos == s->in.len) {
		buf_reset(&s->in);
		s->in_pos = 0;
	} else if (s->in_pos > 0) {
		memmove(s->in.data, s->in.data + s->in_pos,
			s->in.len - s->in_pos);
		s->in.len -= s->in_pos;
		s->in_pos = 0;
	}
	if (buf_reserve(&s->in, 4096) < 0)
		return CONN_ERROR;
	/* Wait here rather than in the read: server_stop() shuts the
	 * socket down for reading, and a TLS session that read that
	 * end-of-file can no longer carry the BYE. */
	if (!conn_pending(s->conn)) {
		struct pollfd pfd = { .fd = conn_fd(s->conn), .events = POLLIN };

		do {
			ret = poll(&pfd, 1, (int)per_read);
		} while (ret < 0 && errno == EINTR);
		if (ret == 0)
			return CONN_TIMEOUT;
		if (server_stopping(s->sc->server))
			return CONN_WOKEN;
	}
	ret = conn_read_some(s->conn, s->in.data + s->in.len,
			     s->in.cap - s->in.len, &n, &err);
	if (ret == CONN_OK)
		s->in.len += n;
	else if (ret == CONN_ERROR)
		log_debug("client read: %s", err);
	return ret;
}

/* Says goodbye after a failed read, as far as there is anyone to say it
 * to. */
static void read_failed(struct dist_session *s, int status)
{
	if (server_stopping(s->sc->server))
		(void)say(s, "* BYE [UNAVAILABLE] Server shutting down\r\n");
	else if (status == CONN_TIMEOUT)
		(void)say(s, "* BYE Autologout; no login in time\r\n");
	else if (status == CONN_TOO_LONG)
		(void)say(s, "* BYE Line too long\r\n");
}

/* The next line of s->in (the AUTHENTICATE response), without its line
 * end, borrowed until the next fill(). */
static int read_line(struct dist_session *s, const char **line_r,
		     size_t *len_r)
{
	for (;;) {
		const char *start = (const char *)s->in.data + s->in_pos;
		size_t avail = s->in.len - s->in_pos;
		const char *lf = avail > 0 ? memchr(start, '\n', avail) : NULL;
		int ret;

		if (lf != NULL) {
			size_t len = (size_t)(lf - start);

			s->in_pos += len + 1;
			if (len > 0 && start[len - 1] == '\r')
				len--;
			*line_r = start;
			*len_r = len;
			return CONN_OK;
		}
		if (avail > DISTRIBUTOR_PREAUTH_LINE_MAX)
			return CONN_TOO_LONG;
		ret = fill(s);
		if (ret != CONN_OK)
			return ret;
	}
}

/*
 * The backend
 */

/* Asks the fresh backend session for its capabilities, for the tagged OK
 * of the login.  Returns 0 (s->caps may stay empty when the answer is
 * unusable), or -1 when the backend failed. */
static int backend_caps(struct dist_session *s)
{
	static const char cmd[] = CAPS_TAG " CAPABILITY\r\n";
	const char *err, *line;
	size_t len;

	s->caps[0] = '\0';
	if (conn_write(s->backend, cmd, strlen(cmd), &err) != CONN_OK)
		return -1;
	/* Untagged lines other than CAPABILITY cannot matter before the
	 * client sent anything; a few are tolerated, not an endless
	 * stream. */
	for (unsigned i = 0; i < 64; i++) {
		if (conn_read_line(s->backend, DISTRIBUTOR_PREAUTH_LINE_MAX,
				   &line, &len, &err) != CONN_OK)
			return -1;
		if (len > 13 && strncasecmp(line, "* CAPABILITY ", 13) == 0 &&
		    len - 13 < sizeof(s->caps)) {
			bool ok = true;

			for (size_t k = 13; k < len; k++) {
				unsigned char ch = (unsigned char)line[k];

				if (ch < 0x20 || ch >= 0x7f || ch == ']')
					ok = false;
			}
			if (ok) {
				memcpy(s->caps, line + 13, len - 13);
				s->caps[len - 13] = '\0';
			}
			continue;
		}
		if (len >= strlen(CAPS_TAG " ") &&
		    memcmp(line, CAPS_TAG " ", strlen(CAPS_TAG " ")) == 0) {
			if (len < strlen(CAPS_TAG " OK") ||
			    strncasecmp(line + strlen(CAPS_TAG " "), "OK", 2) !=
				    0)
				s->caps[0] = '\0';
			return 0;
		}
	}
	return -1;
}

/* Opens the user's session at its worker, or at storage on the worker's
 * behalf.  Returns 0 with s->backend set, or -1 (logged). */
static int open_backend(struct dist_session *s)
{
	const struct pluto_config *cfg = s->config;
	const struct config_node *w;
	struct relay_target t;
	struct buf line = BUF_INIT;
	const char *err;

	w = config_worker_for_user(cfg, s->user.id);
	if (w == NULL) {
		log_warnx("no worker's UserStart..UserEnd holds user id %u",
			  (unsigned)s->user.id);
		return -1;
	}
	if (relay_opening_line(&line, s->user.name, s->sc->peer, NULL,
			       &err) < 0) {
		log_warnx("cannot open a session for this user: %s", err);
		return -1;
	}
	t.node = w->name;
	t.ip = w->public_ip;
	t.port = w->mail_port;
	if (relay_open(s->d->internal_creds, &t, &line,
		       cfg->intl_conn_timeout_ms, cfg->intl_conn_retry,
		       s->sc->server, &s->backend, &err) == 0) {
		log_info("session opened at %s", w->name);
		buf_free(&line);
		return 0;
	}
	log_warnx("worker %s unreachable after %u attempts (%s); failing"
		  " over to storage", w->name, cfg->intl_conn_retry + 1, err);
	buf_reset(&line);
	if (server_stopping(s->sc->server) ||
	    relay_opening_line(&line, s->user.name, s->sc->peer, w->name,
			       &err) < 0) {
		buf_free(&line);
		return -1;
	}
	t.node = "storage";
	t.ip = cfg->storage.public_ip;
	t.port = cfg->storage.mail_port;
	if (relay_open(s->d->internal_creds, &t, &line,
		       cfg->intl_conn_timeout_ms, cfg->intl_conn_retry,
		       s->sc->server, &s->backend, &err) == 0) {
		log_info("session opened at storage for %s (failover)",
			 w->name);
		buf_free(&line);
		return 0;
	}
	log_error("storage unreachable too (%s): cannot serve the user",
		  err);
	buf_free(&line);
	return -1;
}

/*
 * Commands before authentication
 */

/* Checks credentials and, when they are right, opens the backend
 * session.  tag is the client's. */
static enum dist_step try_login(struct dist_session *s, const char *tag,
				const char *user, size_t user_len,
				const void *pass, size_t pass_len)
{
	enum auth_result r;

	r = auth_check(s->d->auth, user, user_len, pass, pass_len, &s->user);
	if (r != AUTH_OK) {
		auth_log_failure(user, user_len, s->sc->peer, r);
		if (r == AUTH_FAILED) {
			auth_fail_delay();
			if (!say(s, "%s NO [AUTHENTICATIONFAILED]"
				    " Authentication failed\r\n", tag))
				return DIST_CLOSE;
		} else if (!say(s, "%s NO [UNAVAILABLE] Authentication is"
				   " temporarily unavailable\r\n", tag)) {
			return DIST_CLOSE;
		}
		if (++s->failures >= DISTRIBUTOR_MAX_AUTH_FAILURES) {
			log_warnx("closing after %u failed logins",
				  s->failures);
			(void)say(s, "* BYE Too many failed logins\r\n");
			return DIST_CLOSE;
		}
		return DIST_CONTINUE;
	}
	log_context_set("user", s->user.name);
	log_info("login ok (id %u, %s)", (unsigned)s->user.id,
		 auth_adapter_name(s->d->auth));
	if (open_backend(s) < 0 || backend_caps(s) < 0) {
		conn_close(&s->backend);
		log_context_set("user", NULL);
		memset(&s->user, 0, sizeof(s->user));
		return say(s, "%s NO [UNAVAILABLE] Your mail is unavailable"
			      " right now, please try again later\r\n", tag)
			       ? DIST_CONTINUE
			       : DIST_CLOSE;
	}
	if (s->caps[0] != '\0') {
		if (!say(s, "%s OK [CAPABILITY %s] Logged in\r\n", tag,
			 s->caps))
			return DIST_CLOSE;
	} else if (!say(s, "%s OK Logged in\r\n", tag)) {
		return DIST_CLOSE;
	}
	return DIST_LOGGED_IN;
}

static enum dist_step cmd_login(struct dist_session *s,
				struct imap_command *cmd)
{
	struct imap_string *pass = &cmd->u.login.password;
	enum dist_step step;

	if (!login_allowed(s))
		return say(s, "%s NO [PRIVACYREQUIRED] Use STARTTLS or the TLS"
			      " port first\r\n", cmd->tag)
			       ? DIST_CONTINUE
			       : DIST_CLOSE;
	step = try_login(s, cmd->tag, cmd->u.login.user.data,
			 cmd->u.login.user.len, pass->data, pass->len);
	/* The command is ours until freed: leave no password behind. */
	buf_wipe((void *)(uintptr_t)pass->data, pass->len);
	return step;
}

static enum dist_step cmd_authenticate(struct dist_session *s,
				       struct imap_command *cmd)
{
	const struct imap_string *mech = &cmd->u.authenticate.mechanism;
	struct buf msg = BUF_INIT;
	const char *b64, *err, *user;
	const void *pass;
	size_t b64_len, user_len, pass_len;
	enum dist_step step;
	int ret;

	if (mech->len != 5 || strncasecmp(mech->data, "PLAIN", 5) != 0)
		return say(s, "%s NO Unsupported authentication mechanism\r\n",
			   cmd->tag)
			       ? DIST_CONTINUE
			       : DIST_CLOSE;
	if (!login_allowed(s))
		return say(s, "%s NO [PRIVACYREQUIRED] Use STARTTLS or the TLS"
			      " port first\r\n", cmd->tag)
			       ? DIST_CONTINUE
			       : DIST_CLOSE;
	if (cmd->u.authenticate.has_initial) {
		b64 = cmd->u.authenticate.initial.data;
		b64_len = cmd->u.authenticate.initial.len;
	} else {
		if (!say(s, "+ \r\n"))
			return DIST_CLOSE;
		ret = read_line(s, &b64, &b64_len);
		if (ret != CONN_OK) {
			read_failed(s, ret);
			return DIST_CLOSE;
		}
		if (b64_len == 1 && b64[0] == '*')
			return say(s, "%s BAD AUTHENTICATE cancelled\r\n",
				   cmd->tag)
				       ? DIST_CONTINUE
				       : DIST_CLOSE;
	}
	/* RFC 4959: "=" is an empty initial response. */
	if (b64_len == 1 && b64[0] == '=')
		b64_len = 0;
	if (base64_decode(b64, b64_len, &msg, &err) < 0) {
		buf_free(&msg);
		return say(s, "%s BAD Invalid base64 in AUTHENTICATE\r\n",
			   cmd->tag)
			       ? DIST_CONTINUE
			       : DIST_CLOSE;
	}
	ret = distributor_sasl_plain(msg.data, msg.len, &user, &user_len,
				     &pass, &pass_len, &err);
	if (ret == -2) {
		auth_log_failure((const char *)msg.data,
				 strnlen((const char *)msg.data, msg.len),
				 s->sc->peer, AUTH_FAILED);
		auth_fail_delay();
		step = say(s, "%s NO [AUTHORIZATIONFAILED] You may only"
			      " act as yourself\r\n", cmd->tag)
			       ? DIST_CONTINUE
			       : DIST_CLOSE;
		if (step == DIST_CONTINUE &&
		    ++s->failures >= DISTRIBUTOR_MAX_AUTH_FAILURES) {
			(void)say(s, "* BYE Too many failed logins\r\n");
			step = DIST_CLOSE;
		}
	} else if (ret < 0) {
		step = say(s, "%s BAD %s\r\n", cmd->tag, err) ? DIST_CONTINUE
							      : DIST_CLOSE;
	} else {
		step = try_login(s, cmd->tag, user, user_len, pass, pass_len);
	}
	buf_wipe(msg.data, msg.len);
	buf_free(&msg);
	return step;
}

static enum dist_step cmd_starttls(struct dist_session *s,
				   struct imap_command *cmd)
{
	const char *err;

	if (s->tls)
		return say(s, "%s BAD TLS is already active\r\n", cmd->tag)
			       ? DIST_CONTINUE
			       : DIST_CLOSE;
	/* Bytes sent behind STARTTLS were sent in plaintext: taking them
	 * as part of the TLS session would let an attacker inject
	 * commands (CVE-2011-0411 style). */
	if (s->in_pos < s->in.len) {
		log_warnx("data pipelined after STARTTLS; closing");
		(void)say(s, "%s BAD Nothing may follow STARTTLS before the"
			     " handshake\r\n", cmd->tag);
		return DIST_CLOSE;
	}
	if (!say(s, "%s OK Begin TLS negotiation now\r\n", cmd->tag))
		return DIST_CLOSE;
	if (conn_tls_server(s->conn, s->d->public_creds, NULL,
			    s->config->limits.pre_auth_timeout_s * 1000U,
			    &err) < 0) {
		log_info("STARTTLS handshake failed: %s", err);
		return DIST_CLOSE;
	}
	s->tls = true;
	return DIST_CONTINUE;
}

static enum dist_step dispatch(struct dist_session *s,
			       struct imap_command *cmd)
{
	char caps[128];
	bool ok;

	switch (cmd->id) {
	case IMAP_CMD_CAPABILITY:
		capabilities(s, caps, sizeof(caps));
		ok = say(s, "* CAPABILITY %s\r\n%s OK CAPABILITY completed\r\n",
			 caps, cmd->tag);
		break;
	case IMAP_CMD_NOOP:
		ok = say(s, "%s OK NOOP completed\r\n", cmd->tag);
		break;
	case IMAP_CMD_ID:
		ok = say(s, "* ID (\"name\" \"pluto\" \"version\" \"%s\")\r\n"
			    "%s OK ID completed\r\n", PACKAGE_VERSION,
			 cmd->tag);
		break;
	case IMAP_CMD_LOGOUT:
		(void)say(s, "* BYE Logging out\r\n%s OK LOGOUT completed\r\n",
			  cmd->tag);
		return DIST_CLOSE;
	case IMAP_CMD_STARTTLS:
		return cmd_starttls(s, cmd);
	case IMAP_CMD_LOGIN:
		return cmd_login(s, cmd);
	case IMAP_CMD_AUTHENTICATE:
		return cmd_authenticate(s, cmd);
	default:
		ok = say(s, "%s BAD Log in first\r\n", cmd->tag);
		break;
	}
	return ok ? DIST_CONTINUE : DIST_CLOSE;
}

/* A synchronising literal was announced: only LOGIN (its credentials) and
 * ID may have one here; anything else is refused before the client sends
 * it. */
static enum dist_step continuation(struct dist_session *s)
{
	const char *tag;
	enum imap_cmd_id id;
	bool ok;

	imap_parser_get_pending(s->parser, &tag, &id);
	if (id == IMAP_CMD_LOGIN && !login_allowed(s)) {
		ok = say(s, "%s NO [PRIVACYREQUIRED] Use STARTTLS or the TLS"
			    " port first\r\n", tag);
		imap_parser_reject_continuation(s->parser);
	} else if (id == IMAP_CMD_LOGIN || id == IMAP_CMD_ID) {
		ok = say(s, "+ Ready for literal data\r\n");
	} else {
		ok = say(s, "%s BAD Log in first\r\n", tag);
		imap_parser_reject_continuation(s->parser);
	}
	return ok ? DIST_CONTINUE : DIST_CLOSE;
}

static enum dist_step preauth(struct dist_session *s)
{
	for (;;) {
		enum imap_parse_result res;
		struct imap_command *cmd;
		enum dist_step step = DIST_CONTINUE;
		const char *msg, *tag;
		size_t consumed = 0;
		bool fatal;
		int ret;

		if (s->in_pos == s->in.len) {
			ret = fill(s);
			if (ret != CONN_OK) {
				read_failed(s, ret);
				return DIST_CLOSE;
			}
			continue;
		}
		res = imap_parser_feed(s->parser, s->in.data + s->in_pos,
				       s->in.len - s->in_pos, &consumed);
		s->in_pos += consumed;
		switch (res) {
		case IMAP_PARSE_NEED_MORE:
			break;
		case IMAP_PARSE_NEED_CONTINUATION:
			step = continuation(s);
			break;
		case IMAP_PARSE_ERROR:
			msg = imap_parser_get_error(s->parser, &tag, &fatal);
			if (!say(s, "%s BAD %s\r\n", tag != NULL ? tag : "*",
				 msg) ||
			    fatal)
				step = DIST_CLOSE;
			break;
		case IMAP_PARSE_COMPLETE:
			cmd = imap_parser_take_command(s->parser);
			if (cmd == NULL)
				return DIST_CLOSE;
			step = dispatch(s, cmd);
			imap_command_free(&cmd);
			break;
		}
		if (step != DIST_CONTINUE)
			return step;
	}
}

/*
 * Connections
 */

static void relay_session(struct dist_session *s)
{
	struct relay_options opts = {
		.idle_ms = (s->config->limits.idle_timeout_s + IDLE_MARGIN_S) *
			   1000U,
		.server = s->sc->server,
		.bye_on_backend_loss = true,
	};
	/* Bytes the client pipelined behind its login belong to the
	 * session: they go to the backend first. */
	struct buf rest = {
		.data = s->in.data + s->in_pos,
		.len = s->in.len - s->in_pos,
		.cap = 0,
	};
	struct relay_stats stats;
	enum relay_end end;

	imap_parser_free(&s->parser);
	end = relay_run(s->conn, s->backend, &rest, &opts, &stats);
	if (end == RELAY_END_BACKEND && !stats.backend_bye)
		log_warnx("backend lost mid-session; client told to log in"
			  " again");
	log_info("session closed (%s, %llu bytes in, %llu bytes out)",
		 relay_end_str(end), (unsigned long long)stats.to_backend,
		 (unsigned long long)stats.to_client);
}

static void dist_handle(struct server_conn *sc, void *ctx)
{
	struct dist_listener *l = ctx;
	const struct pluto_config *cfg = l->d->config;
	unsigned pre_ms = cfg->limits.pre_auth_timeout_s * 1000U;
	struct imap_parser_limits limits;
	struct dist_session s;
	char caps[128];
	const char *err;
	int one = 1;

	memset(&s, 0, sizeof(s));
	s.d = l->d;
	s.config = cfg;
	s.sc = sc;
	buf_init(&s.in);
	s.deadline_ms = now_ms() + (long long)pre_ms * PREAUTH_TOTAL_FACTOR;
	/* Handshake messages, the greeting and relayed answers are small
	 * writes; with Nagle's algorithm one can wait for the client's
	 * delayed ACK (40 ms). */
	if (setsockopt(sc->fd, IPPROTO_TCP, TCP_NODELAY, &one,
		       sizeof(one)) < 0)
		log_debug("cannot set TCP_NODELAY: %s", strerror(errno));
	s.conn = conn_new(sc->fd);
	if (s.conn == NULL) {
		log_warnx("out of memory for a connection");
		return;
	}
	(void)conn_set_timeouts(s.conn, pre_ms, CLIENT_WRITE_MS);
	if (l->implicit_tls) {
		if (conn_tls_server(s.conn, s.d->public_creds, NULL, pre_ms,
				    &err) < 0) {
			log_debug("TLS handshake failed: %s", err);
			goto out;
		}
		s.tls = true;
	}
	imap_parser_limits_default(&limits);
	limits.max_line_size = DISTRIBUTOR_PREAUTH_LINE_MAX;
	limits.max_literal_size = DISTRIBUTOR_PREAUTH_LINE_MAX;
	s.parser = imap_parser_new(&limits);
	if (s.parser == NULL) {
		log_warnx("out of memory for a parser");
		goto out;
	}
	capabilities(&s, caps, sizeof(caps));
	if (!say(&s, "* OK [CAPABILITY %s] %s\r\n", caps, cfg->greeting))
		goto out;
	if (preauth(&s) == DIST_LOGGED_IN)
		relay_session(&s);
out:
	imap_parser_free(&s.parser);
	buf_wipe(s.in.data, s.in.cap);
	buf_free(&s.in);
	conn_close(&s.backend);
	conn_close(&s.conn);
}

/* A limit refused the connection: say so on the plain port (on the TLS
 * port a plaintext line would only confuse the client's TLS stack). */
static void dist_reject(int fd, const char *reason, void *ctx)
{
	const struct dist_listener *l = ctx;
	char line[160];
	int n;

	if (l->implicit_tls)
		return;
	n = snprintf(line, sizeof(line), "* BYE [UNAVAILABLE] %s\r\n",
		     reason);
	if (n > 0)
		(void)send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static const struct server_ops dist_server_ops = {
	.handle = dist_handle,
	.reject = dist_reject,
};

/*
 * The role
 */

static int dist_stop(void)
{
	server_free(&dist.tls_server);
	server_free(&dist.plain_server);
	auth_free(&dist.auth);
	tls_creds_free(&dist.public_creds);
	tls_creds_free(&dist.internal_creds);
	memset(&dist, 0, sizeof(dist));
	return 0;
}

static int listen_on(const char *ip, uint16_t port, const char *label,
		     struct dist_listener *l, struct server **srv_r)
{
	const struct config_limits *lim = &dist.config->limits;
	const char *err;
	int fd;

	fd = net_listen(ip, port, 256, &err);
	if (fd < 0) {
		log_error("cannot listen on %s port %u: %s", ip,
			  (unsigned)port, err);
		return -1;
	}
	*srv_r = server_new(label, fd, &dist_server_ops, l,
			    lim->max_connections, lim->max_connections_per_ip);
	if (*srv_r == NULL) {
		log_error("out of memory");
		return -1;
	}
	if (server_start(*srv_r) < 0) {
		log_warn("cannot start the %s accept thread", label);
		return -1;
	}
	return 0;
}

static int dist_start(const struct pluto_config *config, const char *name)
{
	const struct config_distributor *dc = &config->distributor;
	const char *err;

	(void)name;
	memset(&dist, 0, sizeof(dist));
	dist.config = config;
	dist.tls_listener.d = &dist;
	dist.tls_listener.implicit_tls = true;
	dist.plain_listener.d = &dist;
	dist.plain_listener.implicit_tls = false;

	if (tls_creds_public_server(dc->public_tls.cert_loc,
				    dc->public_tls.key_loc,
				    &dist.public_creds, &err) < 0) {
		log_error("[Distributor.PublicTLS]: %s", err);
		goto fail;
	}
	if (tls_creds_internal(config->root_cert_loc,
			       dc->internal_tls.cert_loc,
			       dc->internal_tls.key_loc, &dist.internal_creds,
			       &err) < 0) {
		log_error("[Distributor.InternalTLS]: %s", err);
		goto fail;
	}
	if (auth_new(config, &dist.auth, &err) < 0) {
		log_error("authentication adapter: %s", err);
		goto fail;
	}
	if (listen_on(dc->listen_ip, dc->port, "imaps", &dist.tls_listener,
		      &dist.tls_server) < 0)
		goto fail;
	if (dc->starttls_port != 0 &&
	    listen_on(dc->listen_ip, dc->starttls_port, "imap",
		      &dist.plain_listener, &dist.plain_server) < 0)
		goto fail;
	log_info("distributor listening on %s port %u (TLS)%s, users checked"
		 " by %s", dc->listen_ip, (unsigned)dc->port,
		 dc->starttls_port != 0 ? " and a STARTTLS port" : "",
		 auth_adapter_name(dist.auth));
	if (dc->starttls_port != 0)
		log_info("STARTTLS port %u%s", (unsigned)dc->starttls_port,
			 dc->allow_plaintext_loopback
				 ? "; plaintext logins allowed from loopback"
				   " (AllowPlaintextLoopback, tests only)"
				 : "");
	return 0;
fail:
	dist_stop();
	return -1;
}

const struct role_ops distributor_role_ops = {
	.start = dist_start,
	.stop = dist_stop,
};
