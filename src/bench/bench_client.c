/*
 * bench_client.c - one simulated IMAP client of pluto-bench: connect,
 * (STARTTLS), LOGIN, the workload's commands, LOGOUT.
 *
 * The workloads model the original pluto evaluation and by default use
 * only the prototype's command subset (CAPABILITY LOGIN LOGOUT SELECT
 * CREATE DELETE LIST APPEND EXPUNGE STORE), so that servers implementing
 * nothing more can be measured; only "fetch" (FETCH) and "lag" with
 * --lag-noop (NOOP) go beyond it.  Literals are synchronising by default,
 * since the prototype has no LITERAL+; non-synchronising ones are used
 * only when asked for and advertised.
 *
 * Every measured command becomes a sample in the client's own array;
 * commands that only prepare the mailbox (seeding a message, polling in
 * the lag workload) are not measured.  A NO or BAD is recorded as an
 * error and the client carries on; a lost connection ends the client.
 * The client touches shared state only through the atomics of struct
 * bench_run.
 */
#include "autoconfig.h"

#include "bench.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A command under construction: text pieces live in text[], literal
 * pieces point at the caller's data, which must outlive the command. */
#define CMD_TEXT_MAX 2048
#define CMD_PIECES_MAX 8

struct cmd {
	char text[CMD_TEXT_MAX];
	size_t used;			/* bytes of text[] in use */
	size_t open_start;		/* start of the text piece being built */
	struct bench_piece pieces[CMD_PIECES_MAX];
	size_t n;
	bool overflow;
	bool literal_plus;
	const char *label;		/* for errors; NULL: the command's */
};

static void cmd_init(struct cmd *cmd, bool literal_plus)
{
	cmd->used = 0;
	cmd->open_start = 0;
	cmd->n = 0;
	cmd->overflow = false;
	cmd->literal_plus = literal_plus;
	cmd->label = NULL;
}

static void cmd_text(struct cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void cmd_text(struct cmd *cmd, const char *fmt, ...)
{
	va_list ap;
	int ret;

	if (cmd->overflow)
		return;
	va_start(ap, fmt);
	ret = vsnprintf(cmd->text + cmd->used, CMD_TEXT_MAX - cmd->used, fmt,
			ap);
	va_end(ap);
	if (ret < 0 || (size_t)ret >= CMD_TEXT_MAX - cmd->used) {
		cmd->overflow = true;
		return;
	}
	cmd->used += (size_t)ret;
}

/* Closes the text piece being built (if it holds anything). */
static void cmd_close_text(struct cmd *cmd, bool sync_literal)
{
	if (cmd->overflow || cmd->used == cmd->open_start)
		return;
	if (cmd->n == CMD_PIECES_MAX) {
		cmd->overflow = true;
		return;
	}
	cmd->pieces[cmd->n].data = cmd->text + cmd->open_start;
	cmd->pieces[cmd->n].len = cmd->used - cmd->open_start;
	cmd->pieces[cmd->n].sync_literal = sync_literal;
	cmd->n++;
	cmd->open_start = cmd->used;
}

static void cmd_literal(struct cmd *cmd, const void *data, size_t len)
{
	cmd_text(cmd, "{%zu%s}\r\n", len, cmd->literal_plus ? "+" : "");
	cmd_close_text(cmd, !cmd->literal_plus);
	if (cmd->overflow)
		return;
	if (cmd->n == CMD_PIECES_MAX) {
		cmd->overflow = true;
		return;
	}
	cmd->pieces[cmd->n].data = data;
	cmd->pieces[cmd->n].len = len;
	cmd->pieces[cmd->n].sync_literal = false;
	cmd->n++;
}

/* An astring: quoted when every byte may appear in a quoted string,
 * otherwise a literal (8-bit bytes, CR, LF). */
static void cmd_astring(struct cmd *cmd, const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p >= 0x80 || *p == '\r' || *p == '\n') {
			cmd_literal(cmd, s, strlen(s));
			return;
		}
	}
	cmd_text(cmd, "\"");
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			cmd_text(cmd, "\\%c", *p);
		else
			cmd_text(cmd, "%c", *p);
	}
	cmd_text(cmd, "\"");
}

static void cmd_finish(struct cmd *cmd)
{
	cmd_text(cmd, "\r\n");
	cmd_close_text(cmd, false);
}

int bench_expand_pattern(const char *pattern, unsigned int id, char *out,
			 size_t size)
{
	const char *p;
	size_t used = 0;
	int ret;

	if (size == 0)
		return -1;
	for (p = pattern; *p != '\0'; p++) {
		if (*p != '%') {
			if (used + 1 >= size)
				return -1;
			out[used++] = *p;
			continue;
		}
		p++;
		if (*p == '%') {
			if (used + 1 >= size)
				return -1;
			out[used++] = '%';
		} else if (*p == 'd') {
			ret = snprintf(out + used, size - used, "%u", id);
			if (ret < 0 || (size_t)ret >= size - used)
				return -1;
			used += (size_t)ret;
		} else {
			return -1;
		}
	}
	out[used] = '\0';
	return 0;
}

char *bench_make_message(size_t size, unsigned int client, uint64_t seq,
			 size_t *len_r)
{
	static const char fill[] =
		"The quick brown fox jumps over the lazy dog 0123456789 "
		"pluto-bench load";
	char header[512], date[64];
	struct tm tm;
	time_t now = time(NULL);
	size_t hlen, total, pos, line;
	char *msg;
	int ret;

	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000",
		     &tm) == 0)
		snprintf(date, sizeof(date), "Thu, 01 Jan 1970 00:00:00 +0000");
	ret = snprintf(header, sizeof(header),
		       "From: pluto-bench <bench@pluto-bench.invalid>\r\n"
		       "To: <bench@pluto-bench.invalid>\r\n"
		       "Subject: pluto-bench client %u message %llu\r\n"
		       "Date: %s\r\n"
		       "Message-ID: <%llu.%u@pluto-bench.invalid>\r\n"
		       "MIME-Version: 1.0\r\n"
		       "Content-Type: text/plain; charset=us-ascii\r\n"
		       "\r\n", client, (unsigned long long)seq, date,
		       (unsigned long long)seq, client);
	if (ret < 0 || (size_t)ret >= sizeof(header))
		return NULL;
	hlen = (size_t)ret;
	total = size > hlen ? size : hlen;
	msg = malloc(total);
	if (msg == NULL)
		return NULL;
	memcpy(msg, header, hlen);
	/* Body lines of at most 72 characters plus CRLF; the last line
	 * takes what is left, a lone byte going without a line end. */
	pos = hlen;
	while (total - pos >= 2) {
		line = total - pos - 2;
		if (line > 72)
			line = 72;
		if (line > sizeof(fill) - 1)
			line = sizeof(fill) - 1;
		memcpy(msg + pos, fill, line);
		pos += line;
		msg[pos++] = '\r';
		msg[pos++] = '\n';
	}
	if (pos < total)
		msg[pos++] = '.';
	*len_r = total;
	return msg;
}

/* Wipes a secret in a way the compiler may not drop. */
static void wipe(void *p, size_t len)
{
#ifdef HAVE_EXPLICIT_BZERO
	explicit_bzero(p, len);
#else
	volatile unsigned char *v = p;

	while (len-- > 0)
		*v++ = 0;
#endif
}

static uint64_t rng_next(uint64_t *state)
{
	/* xorshift64*: plenty for choosing operations. */
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * UINT64_C(2685821657736338717);
}

/* Keeps the first failure of a client, with control bytes of server text
 * made harmless. */
static void client_error(struct bench_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void client_error(struct bench_client *c, const char *fmt, ...)
{
	va_list ap;
	char *p;

	if (c->error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, ap);
	va_end(ap);
	for (p = c->error; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			*p = '?';
	}
}

/* Runs cmd on conn.  When record is set the request becomes a sample of
 * kind which.  Returns the status; ERR also marks the client failed. */
static enum bench_status client_run_cmd(struct bench_client *c,
					struct bench_conn *conn,
					enum bench_cmd which,
					const struct cmd *cmd, bool record)
{
	struct bench_sample s;
	enum bench_status status;
	const char *error = "";
	const char *label = cmd->label != NULL ? cmd->label :
		bench_cmd_name(which);
	uint64_t start, latency;

	if (cmd->overflow) {
		client_error(c, "%s: command too long", label);
		c->failed = true;
		return BENCH_STATUS_ERR;
	}
	status = bench_conn_command(conn, cmd->pieces, cmd->n, &start,
				    &latency, &error);
	if (record) {
		s.start_us = start - c->run->epoch_us;
		s.latency_us = latency;
		s.cmd = (uint8_t)which;
		s.status = (uint8_t)status;
		if (bench_samples_add(&c->samples, &s) < 0) {
			client_error(c, "out of memory for samples");
			c->failed = true;
			return BENCH_STATUS_ERR;
		}
		atomic_fetch_add(&c->run->done, 1);
		if (status != BENCH_STATUS_OK)
			atomic_fetch_add(&c->run->errors, 1);
	}
	if (status == BENCH_STATUS_ERR) {
		client_error(c, "%s: %s", label, error);
		c->failed = true;
	} else if (status != BENCH_STATUS_OK) {
		client_error(c, "%s: %.160s", label, conn->text);
	}
	return status;
}

static enum bench_status client_simple(struct bench_client *c,
				       struct bench_conn *conn,
				       enum bench_cmd which, const char *line,
				       bool record)
{
	struct cmd cmd;

	cmd_init(&cmd, false);
	cmd_text(&cmd, "%s", line);
	cmd_finish(&cmd);
	if (!record)
		cmd.label = line;
	return client_run_cmd(c, conn, which, &cmd, record);
}

static bool literal_plus(const struct bench_client *c,
			 const struct bench_conn *conn)
{
	return c->run->opts->literal_plus && conn->caps_known &&
		conn->cap_literal_plus;
}

static enum bench_status client_append(struct bench_client *c,
				       struct bench_conn *conn, uint64_t seq,
				       bool record)
{
	const struct bench_opts *o = c->run->opts;
	enum bench_status status;
	struct cmd cmd;
	size_t len;
	char *msg;

	msg = bench_make_message(o->msg_size, c->index, seq, &len);
	if (msg == NULL) {
		client_error(c, "APPEND: out of memory");
		c->failed = true;
		return BENCH_STATUS_ERR;
	}
	cmd_init(&cmd, literal_plus(c, conn));
	cmd_text(&cmd, "APPEND INBOX ");
	cmd_literal(&cmd, msg, len);
	cmd_finish(&cmd);
	status = client_run_cmd(c, conn, BENCH_CMD_APPEND, &cmd, record);
	free(msg);
	return status;
}

/* Connects, (STARTTLS), reads the greeting and logs in.  Returns 0 when
 * logged in. */
static int client_open(struct bench_client *c, struct bench_conn *conn,
		       const char *host, const char *port,
		       enum bench_tls_mode mode, bool record)
{
	const struct bench_opts *o = c->run->opts;
	char user[256], password[256];
	const char *error;
	enum bench_status status;
	struct cmd cmd;

	if (bench_expand_pattern(o->user_pattern, c->id, user,
				 sizeof(user)) < 0 ||
	    bench_expand_pattern(o->password_pattern, c->id, password,
				 sizeof(password)) < 0) {
		client_error(c, "user or password pattern too long");
		return -1;
	}
	if (bench_conn_connect(conn, host, port, &error) < 0 ||
	    (mode == BENCH_TLS_IMPLICIT &&
	     bench_conn_start_tls(conn, c->run->tls, host, &error) < 0) ||
	    bench_conn_greeting(conn, &error) < 0) {
		client_error(c, "%s", error);
		return -1;
	}
	if (mode == BENCH_TLS_STARTTLS) {
		if (client_simple(c, conn, BENCH_CMD_LOGIN, "STARTTLS",
				  false) != BENCH_STATUS_OK)
			return -1;
		/* What was learnt in clear text must be forgotten. */
		conn->caps_known = false;
		conn->cap_literal_plus = false;
		if (bench_conn_start_tls(conn, c->run->tls, host,
					 &error) < 0) {
			client_error(c, "%s", error);
			return -1;
		}
	}
	if (record)
		c->connected = true;
	cmd_init(&cmd, false);
	cmd_text(&cmd, "LOGIN ");
	cmd_astring(&cmd, user);
	cmd_text(&cmd, " ");
	cmd_astring(&cmd, password);
	cmd_finish(&cmd);
	status = client_run_cmd(c, conn, BENCH_CMD_LOGIN, &cmd, record);
	wipe(password, sizeof(password));
	wipe(cmd.text, sizeof(cmd.text));
	if (status != BENCH_STATUS_OK)
		return -1;
	if (o->literal_plus && !conn->caps_known &&
	    client_simple(c, conn, BENCH_CMD_LOGIN, "CAPABILITY",
			  false) != BENCH_STATUS_OK)
		return -1;
	return 0;
}

/* SELECT INBOX (measured), then makes sure message 1 exists. */
static int client_select_seeded(struct bench_client *c,
				struct bench_conn *conn)
{
	if (client_simple(c, conn, BENCH_CMD_SELECT, "SELECT INBOX",
			  true) != BENCH_STATUS_OK)
		return -1;
	if (conn->exists > 0)
		return 0;
	if (client_append(c, conn, 0, false) != BENCH_STATUS_OK ||
	    client_simple(c, conn, BENCH_CMD_SELECT, "SELECT INBOX",
			  false) != BENCH_STATUS_OK)
		return -1;
	if (conn->exists == 0) {
		client_error(c, "INBOX still empty after APPEND");
		return -1;
	}
	return 0;
}

static enum bench_status client_store(struct bench_client *c,
				      struct bench_conn *conn, uint64_t seq)
{
	return client_simple(c, conn, BENCH_CMD_STORE, seq % 2 == 0 ?
			     "STORE 1 +FLAGS (\\Seen)" :
			     "STORE 1 -FLAGS (\\Seen)", true);
}

static enum bench_status client_createdelete(struct bench_client *c,
					     struct bench_conn *conn,
					     uint64_t seq)
{
	char line[160];
	enum bench_status status;

	snprintf(line, sizeof(line), "CREATE \"bench-%s-%u-%llu\"",
		 c->run->run_id, c->index, (unsigned long long)seq);
	status = client_simple(c, conn, BENCH_CMD_CREATE, line, true);
	if (status == BENCH_STATUS_ERR)
		return status;
	/* DELETE even after a failed CREATE: the pair is the unit. */
	snprintf(line, sizeof(line), "DELETE \"bench-%s-%u-%llu\"",
		 c->run->run_id, c->index, (unsigned long long)seq);
	return client_simple(c, conn, BENCH_CMD_DELETE, line, true);
}

/* One step of the mixed workload, chosen by the client's seeded RNG:
 * 40% APPEND, 20% SELECT, 20% STORE, 10% CREATE+DELETE, 10% LIST. */
static enum bench_status client_mixed(struct bench_client *c,
				      struct bench_conn *conn, uint64_t seq)
{
	unsigned int r = (unsigned int)(rng_next(&c->rng) % 100);

	if (r < 40)
		return client_append(c, conn, seq, true);
	if (r < 60)
		return client_simple(c, conn, BENCH_CMD_SELECT,
				     "SELECT INBOX", true);
	if (r < 80)
		return client_store(c, conn, seq);
	if (r < 90)
		return client_createdelete(c, conn, seq);
	return client_simple(c, conn, BENCH_CMD_LIST, "LIST \"\" \"*\"",
			     true);
}

/* Appends through conn and polls lag_conn until its INBOX holds one
 * message more; records the time from the APPEND's OK until then. */
static enum bench_status client_lag(struct bench_client *c,
				    struct bench_conn *conn,
				    struct bench_conn *lag_conn, uint64_t seq)
{
	const struct bench_opts *o = c->run->opts;
	enum bench_status status;
	struct bench_sample s;
	struct timespec pause;
	uint64_t ok_at, now;
	uint32_t before;

	if (lag_conn == NULL) {
		client_error(c, "LAG: no second connection");
		c->failed = true;
		return BENCH_STATUS_ERR;
	}
	before = lag_conn->exists;
	status = client_append(c, conn, seq, true);
	if (status != BENCH_STATUS_OK)
		return status;
	ok_at = bench_now_us();
	pause.tv_sec = (time_t)(o->lag_poll_us / 1000000u);
	pause.tv_nsec = (long)(o->lag_poll_us % 1000000u) * 1000L;
	status = BENCH_STATUS_OK;
	for (;;) {
		if (client_simple(c, lag_conn, BENCH_CMD_LAG, o->lag_noop ?
				  "NOOP" : "SELECT INBOX", false) !=
		    BENCH_STATUS_OK) {
			status = BENCH_STATUS_ERR;
			break;
		}
		now = bench_now_us();
		if (lag_conn->exists > before)
			break;
		if (now - ok_at > (uint64_t)o->timeout_ms * 1000u) {
			client_error(c, "LAG: message not seen within the "
				     "timeout");
			status = BENCH_STATUS_NO;
			break;
		}
		if (o->lag_poll_us > 0)
			nanosleep(&pause, NULL);
	}
	s.start_us = ok_at - c->run->epoch_us;
	s.latency_us = bench_now_us() - ok_at;
	s.cmd = BENCH_CMD_LAG;
	s.status = (uint8_t)status;
	if (bench_samples_add(&c->samples, &s) < 0) {
		client_error(c, "out of memory for samples");
		c->failed = true;
		return BENCH_STATUS_ERR;
	}
	atomic_fetch_add(&c->run->done, 1);
	if (status != BENCH_STATUS_OK)
		atomic_fetch_add(&c->run->errors, 1);
	return status;
}

static int client_setup(struct bench_client *c, struct bench_conn *conn,
			struct bench_conn *lag_conn)
{
	const struct bench_opts *o = c->run->opts;

	switch (o->workload) {
	case BENCH_WL_STORE:
	case BENCH_WL_FETCH:
	case BENCH_WL_MIXED:
		return client_select_seeded(c, conn);
	case BENCH_WL_LAG:
		if (client_open(c, lag_conn, o->lag_host, o->lag_port,
				o->lag_tls_mode, false) < 0 ||
		    client_simple(c, lag_conn, BENCH_CMD_SELECT,
				  "SELECT INBOX", false) != BENCH_STATUS_OK)
			return -1;
		return 0;
	case BENCH_WL_APPEND:
	case BENCH_WL_CREATEDELETE:
	case BENCH_WL_SELECT:
		break;
	}
	return 0;
}

static enum bench_status client_step(struct bench_client *c,
				     struct bench_conn *conn,
				     struct bench_conn *lag_conn,
				     uint64_t seq)
{
	switch (c->run->opts->workload) {
	case BENCH_WL_APPEND:
		return client_append(c, conn, seq + 1, true);
	case BENCH_WL_CREATEDELETE:
		return client_createdelete(c, conn, seq);
	case BENCH_WL_STORE:
		return client_store(c, conn, seq);
	case BENCH_WL_SELECT:
		return client_simple(c, conn, BENCH_CMD_SELECT, "SELECT INBOX",
				     true);
	case BENCH_WL_FETCH:
		return client_simple(c, conn, BENCH_CMD_FETCH,
				     "FETCH 1 (FLAGS BODY.PEEK[])", true);
	case BENCH_WL_MIXED:
		return client_mixed(c, conn, seq + 1);
	case BENCH_WL_LAG:
		return client_lag(c, conn, lag_conn, seq + 1);
	}
	return BENCH_STATUS_ERR;
}

/* Counts the client ready and waits for the main thread's go, so that
 * the workload starts at once everywhere.  Returns the run's deadline. */
static uint64_t client_ready(struct bench_client *c)
{
	struct bench_run *run = c->run;
	uint64_t deadline;

	pthread_mutex_lock(&run->lock);
	run->ready++;
	pthread_cond_broadcast(&run->cond);
	while (!run->go)
		pthread_cond_wait(&run->cond, &run->lock);
	deadline = run->deadline_us;
	pthread_mutex_unlock(&run->lock);
	return deadline;
}

void bench_client_run(struct bench_client *c)
{
	const struct bench_opts *o = c->run->opts;
	struct bench_conn conn, lag_conn;
	uint64_t seq, deadline = 0;
	bool lag_open = false;

	if (bench_conn_init(&conn, o->timeout_ms) < 0) {
		client_error(c, "out of memory");
		c->failed = true;
		client_ready(c);
		goto out;
	}
	if (o->workload == BENCH_WL_LAG) {
		if (bench_conn_init(&lag_conn, o->timeout_ms) < 0) {
			client_error(c, "out of memory");
			c->failed = true;
			client_ready(c);
			goto out_conn;
		}
		lag_open = true;
	}
	if (client_open(c, &conn, o->host, o->port, o->tls_mode, true) < 0) {
		c->failed = true;
		client_ready(c);
		goto out_conn;
	}
	c->logged_in = true;
	if (client_setup(c, &conn, lag_open ? &lag_conn : NULL) < 0) {
		c->failed = true;
		client_ready(c);
		goto out_conn;
	}
	deadline = client_ready(c);
	for (seq = 0;; seq++) {
		if (atomic_load(&c->run->stop))
			break;
		if (deadline != 0 ? bench_now_us() >= deadline :
		    seq >= o->runs)
			break;
		if (client_step(c, &conn, lag_open ? &lag_conn : NULL,
				seq) == BENCH_STATUS_ERR)
			break;
	}
	c->end_us = bench_now_us();
	if (!c->failed)
		(void)client_simple(c, &conn, BENCH_CMD_LOGOUT, "LOGOUT", true);
	if (lag_open && !c->failed)
		(void)client_simple(c, &lag_conn, BENCH_CMD_LAG, "LOGOUT",
				    false);
out_conn:
	if (lag_open)
		bench_conn_deinit(&lag_conn);
	bench_conn_deinit(&conn);
out:
	if (c->end_us == 0)
		c->end_us = bench_now_us();
	atomic_fetch_sub(&c->run->active, 1);
}
