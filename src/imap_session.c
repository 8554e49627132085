/*
 * imap_session.c - one internal IMAP session: the read loop that feeds
 * the parser, output buffering, and the view of the selected mailbox that
 * turns other sessions' changes into untagged EXPUNGE, EXISTS and FETCH
 * responses.
 *
 * Reading.  Whatever conn_read_some() returns is fed to the parser; after
 * each complete command the rest is fed again, so pipelined commands are
 * run one after the other and their answers go out in one write, made
 * just before the session would block on the socket again.
 *
 * The view.  The state (mailstate.h) changes under the session's feet:
 * other sessions of the same user and replication change it whenever
 * they hold the user's lock.  The client must however see a stable
 * numbering, changed only by the untagged responses we send.  So the
 * session keeps its own copy of what it reported (UIDs, identity tags and
 * a digest of each message's flags) and, after every command, compares it
 * with the state when the user's version counter moved.  The comparison
 * is O(n log n) in the mailbox size and only happens when something of
 * the user changed.  Messages whose UID is not above every UID the client
 * already knows (possible only after a partition, before the worker
 * renumbered them) cannot be announced without breaking UID order; they
 * stay hidden until the next SELECT.
 *
 * Locking: the session takes the user's lock (user_store.h) around every
 * command and never writes to the network while holding it.
 */
#include "autoconfig.h"

#include "imap_session.h"

#include <errno.h>
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

#include "imap_cmd.h"
#include "log.h"
#include "op.h"
#include "server.h"
#include "tls.h"
#include "user_store.h"

#define SESSION_READ_SIZE (16 * 1024)
/* Output beyond this is written after the command that made it, instead
 * of waiting for the end of the pipelined batch. */
#define SESSION_FLUSH_AT (64 * 1024)
/* A client that does not read for this long is dropped. */
#define SESSION_WRITE_TIMEOUT_MS (120U * 1000U)
/* Keywords per message that are reported (the state holds at most
 * MAILSTATE_KEYWORDS_MAX from clients, more only from a bad peer). */
#define SESSION_MSG_KEYWORDS_MAX OP_KEYWORDS_MAX

struct imap_session *imap_session_new(struct conn *conn, struct user *user,
				      const struct pluto_config *config,
				      struct server *server)
{
	struct imap_session *s = calloc(1, sizeof(*s));
	struct imap_parser_limits limits;

	if (s == NULL)
		return NULL;
	imap_parser_limits_default(&limits);
	limits.max_line_size = config->limits.max_line_length;
	limits.max_literal_size = config->limits.max_literal_size;
	s->parser = imap_parser_new(&limits);
	if (s->parser == NULL) {
		free(s);
		return NULL;
	}
	s->conn = conn;
	s->user = user;
	s->config = config;
	s->server = server;
	s->sep = config->hierarchy_separator;
	s->state = IMAP_STATE_AUTH;
	buf_init(&s->out);
	buf_init(&s->result_text);
	return s;
}

static void view_free(struct imap_view *view)
{
	for (size_t i = 0; i < view->count; i++)
		free(view->msgs[i].tag);
	free(view->msgs);
	for (size_t i = 0; i < view->keyword_count; i++)
		free(view->keywords[i]);
	free(view->keywords);
	memset(view, 0, sizeof(*view));
}

void imap_session_free(struct imap_session **sp)
{
	struct imap_session *s = *sp;

	if (s == NULL)
		return;
	view_free(&s->view);
	free(s->idle_tag);
	imap_parser_free(&s->parser);
	buf_free(&s->out);
	buf_free(&s->result_text);
	free(s);
	*sp = NULL;
}

/* ------------------------------------------------------------------ */
/* Output */

static void vprintf_buf(struct buf *b, bool *failed, const char *fmt,
			va_list ap)
{
	va_list aq;
	int n;

	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0 || buf_reserve(b, (size_t)n + 1) < 0) {
		*failed = true;
		return;
	}
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void imap_session_printf(struct imap_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf_buf(&s->out, &s->out_failed, fmt, ap);
	va_end(ap);
}

void imap_session_append(struct imap_session *s, const void *data,
			 size_t len)
{
	if (buf_append(&s->out, data, len) < 0)
		s->out_failed = true;
}

void imap_session_append_string(struct imap_session *s, const char *data,
				size_t len)
{
	bool literal = false;
	size_t i, start;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)data[i];

		if (c == '\0' || c == '\r' || c == '\n' || c >= 0x80) {
			literal = true;
			break;
		}
	}
	if (literal) {
		imap_session_printf(s, "{%zu}\r\n", len);
		imap_session_append(s, data, len);
		return;
	}
	imap_session_append(s, "\"", 1);
	for (start = i = 0; i < len; i++) {
		if (data[i] == '"' || data[i] == '\\') {
			imap_session_append(s, data + start, i - start);
			imap_session_append(s, "\\", 1);
			start = i;
		}
	}
	imap_session_append(s, data + start, len - start);
	imap_session_append(s, "\"", 1);
}

void imap_session_append_flags(struct imap_session *s,
			       const struct mailstate_msg *msg)
{
	const char *kw[SESSION_MSG_KEYWORDS_MAX];
	size_t n;
	bool first = true;

	imap_session_append(s, "(", 1);
	for (unsigned bit = 1; bit <= OP_FLAGS_ALL; bit <<= 1) {
		if ((msg->flags & bit) == 0)
			continue;
		imap_session_printf(s, "%s%s", first ? "" : " ",
				    op_flag_name(bit));
		first = false;
	}
	n = mailstate_msg_keywords(msg, kw, SESSION_MSG_KEYWORDS_MAX);
	if (n > SESSION_MSG_KEYWORDS_MAX)
		n = SESSION_MSG_KEYWORDS_MAX;
	for (size_t i = 0; i < n; i++) {
		imap_session_printf(s, "%s%s", first ? "" : " ", kw[i]);
		first = false;
	}
	imap_session_append(s, ")", 1);
}

void imap_session_result(struct imap_session *s, enum imap_result result,
			 const char *fmt, ...)
{
	va_list ap;

	s->result = result;
	buf_reset(&s->result_text);
	va_start(ap, fmt);
	vprintf_buf(&s->result_text, &s->out_failed, fmt, ap);
	va_end(ap);
}

int imap_session_flush(struct imap_session *s)
{
	const char *error;
	int ret;

	if (s->out.len == 0)
		return 0;
	ret = conn_write(s->conn, s->out.data, s->out.len, &error);
	buf_reset(&s->out);
	if (ret == CONN_OK)
		return 0;
	if (ret == CONN_ERROR)
		log_info("session write failed: %s", error);
	else
		log_debug("session write: %s", conn_status_str(ret));
	return -1;
}

/* ------------------------------------------------------------------ */
/* The selected view */

/* An order-independent hash of a message's keywords (case-insensitive,
 * as keywords compare), so that a change of keywords shows as a changed
 * digest without keeping copies of every keyword of every message. */
static uint32_t keyword_digest(const struct mailstate_msg *msg)
{
	const char *kw[SESSION_MSG_KEYWORDS_MAX];
	size_t n = mailstate_msg_keywords(msg, kw, SESSION_MSG_KEYWORDS_MAX);
	uint32_t sum = (uint32_t)n;

	if (n > SESSION_MSG_KEYWORDS_MAX)
		n = SESSION_MSG_KEYWORDS_MAX;
	for (size_t i = 0; i < n; i++) {
		uint32_t h = 2166136261u;

		for (const char *p = kw[i]; *p != '\0'; p++) {
			unsigned char c = (unsigned char)*p;

			if (c >= 'A' && c <= 'Z')
				c = (unsigned char)(c - 'A' + 'a');
			h = (h ^ c) * 16777619u;
		}
		sum += h;
	}
	return sum;
}

void imap_session_view_mark_reported(struct imap_session *s, size_t index,
				     const struct mailstate_msg *msg)
{
	s->view.msgs[index].flags = msg->flags;
	s->view.msgs[index].kw_digest = keyword_digest(msg);
}

bool imap_session_view_is_current(const struct imap_session *s, size_t index,
				  const struct mailstate_msg *msg)
{
	return s->view.msgs[index].flags == msg->flags &&
	       s->view.msgs[index].kw_digest == keyword_digest(msg);
}

static int view_push(struct imap_view *view, const struct mailstate_msg *msg)
{
	struct imap_view_msg *m;

	if (view->count == view->cap) {
		size_t cap = view->cap == 0 ? 64 : view->cap;
		void *p;

		if (cap > SIZE_MAX / 2 / sizeof(*view->msgs))
			return -1;
		cap *= 2;
		p = realloc(view->msgs, cap * sizeof(*view->msgs));
		if (p == NULL)
			return -1;
		view->msgs = p;
		view->cap = cap;
	}
	m = &view->msgs[view->count];
	m->tag = strdup(msg->tag);
	if (m->tag == NULL)
		return -1;
	m->uid = msg->uid;
	m->flags = msg->flags;
	m->kw_digest = keyword_digest(msg);
	m->gone = false;
	view->count++;
	return 0;
}

static bool view_has_keyword(const struct imap_view *view, const char *kw)
{
	for (size_t i = 0; i < view->keyword_count; i++)
		if (strcasecmp(view->keywords[i], kw) == 0)
			return true;
	return false;
}

/* Adds msg's keywords that the view has not announced yet.  Returns 1
 * when it added any, 0 when not, -1 when out of memory. */
static int view_add_keywords(struct imap_view *view,
			     const struct mailstate_msg *msg)
{
	const char *kw[SESSION_MSG_KEYWORDS_MAX];
	size_t n = mailstate_msg_keywords(msg, kw, SESSION_MSG_KEYWORDS_MAX);
	int added = 0;

	if (n > SESSION_MSG_KEYWORDS_MAX)
		n = SESSION_MSG_KEYWORDS_MAX;
	for (size_t i = 0; i < n; i++) {
		char **p;

		if (view_has_keyword(view, kw[i]))
			continue;
		if (view->keyword_count >= SIZE_MAX / sizeof(char *) - 1)
			return -1;
		p = realloc(view->keywords,
			    (view->keyword_count + 1) * sizeof(char *));
		if (p == NULL)
			return -1;
		view->keywords = p;
		p[view->keyword_count] = strdup(kw[i]);
		if (p[view->keyword_count] == NULL)
			return -1;
		view->keyword_count++;
		added = 1;
	}
	return added;
}

static void append_flags_response(struct imap_session *s)
{
	imap_session_printf(s, "* FLAGS (\\Answered \\Flagged \\Deleted "
			       "\\Seen \\Draft");
	for (size_t i = 0; i < s->view.keyword_count; i++)
		imap_session_printf(s, " %s", s->view.keywords[i]);
	imap_session_printf(s, ")\r\n");
}

void imap_session_announce_keywords_locked(
	struct imap_session *s, const struct mailstate_msg *const *msgs,
	size_t n)
{
	bool added = false;

	for (size_t i = 0; i < n; i++) {
		int r;

		if (msgs[i] == NULL)
			continue;
		r = view_add_keywords(&s->view, msgs[i]);
		if (r < 0)
			s->out_failed = true;
		if (r > 0)
			added = true;
	}
	if (added)
		append_flags_response(s);
}

void imap_session_unselect(struct imap_session *s)
{
	view_free(&s->view);
	s->state = IMAP_STATE_AUTH;
}

struct mailstate_mailbox *imap_session_box_locked(struct imap_session *s)
{
	struct mailstate_mailbox *box;

	box = mailstate_mailbox_find(user_state(s->user), s->view.name);
	if (box == NULL ||
	    mailstate_mailbox_uidvalidity(box) != s->view.uidvalidity)
		return NULL;
	return box;
}

/* The message with this UID and identity in box, or NULL.  Two messages
 * share a UID only between a partition and the worker's renumbering. */
static const struct mailstate_msg *
box_find(const struct mailstate_mailbox *box, uint32_t uid, const char *tag)
{
	const struct mailstate_msg *m;
	size_t idx, count = mailstate_mailbox_count(box);

	if (!mailstate_mailbox_uid_find(box, uid, &idx))
		return NULL;
	while (idx > 0) {
		m = mailstate_mailbox_msg_at(box, idx - 1);
		if (m == NULL || m->uid != uid)
			break;
		idx--;
	}
	for (; idx < count; idx++) {
		m = mailstate_mailbox_msg_at(box, idx);
		if (m == NULL || m->uid != uid)
			break;
		if (strcmp(m->tag, tag) == 0)
			return m;
	}
	return NULL;
}

const struct mailstate_msg *
imap_session_view_msg_locked(struct imap_session *s,
			     struct mailstate_mailbox *box, size_t index)
{
	const struct imap_view_msg *v = &s->view.msgs[index];

	if (v->gone || box == NULL)
		return NULL;
	return box_find(box, v->uid, v->tag);
}

int imap_session_select_locked(struct imap_session *s,
			       struct mailstate_mailbox *box, bool read_only)
{
	struct imap_view *view = &s->view;
	size_t count = mailstate_mailbox_count(box);
	size_t first_unseen = 0;

	imap_session_unselect(s);
	snprintf(view->name, sizeof(view->name), "%s",
		 mailstate_mailbox_name(box));
	view->uidvalidity = mailstate_mailbox_uidvalidity(box);
	view->read_only = read_only;
	view->version = user_version_locked(s->user);
	for (size_t i = 0; i < count; i++) {
		const struct mailstate_msg *m = mailstate_mailbox_msg_at(box,
									 i);

		if (m == NULL)
			break;
		if (view_push(view, m) < 0 || view_add_keywords(view, m) < 0) {
			view_free(view);
			return -1;
		}
		if (first_unseen == 0 && (m->flags & OP_FLAG_SEEN) == 0)
			first_unseen = i + 1;
	}
	s->state = IMAP_STATE_SELECTED;

	append_flags_response(s);
	if (read_only)
		imap_session_printf(s, "* OK [PERMANENTFLAGS ()] "
				       "Read-only mailbox\r\n");
	else
		imap_session_printf(s, "* OK [PERMANENTFLAGS (\\Answered "
				       "\\Flagged \\Deleted \\Seen \\Draft "
				       "\\*)] Flags permitted\r\n");
	imap_session_printf(s, "* %zu EXISTS\r\n", view->count);
	/* \Recent is not tracked (it would need per-session state that
	 * survives across sessions and replicas): nothing is ever recent. */
	imap_session_printf(s, "* 0 RECENT\r\n");
	if (first_unseen != 0)
		imap_session_printf(s, "* OK [UNSEEN %zu] First unseen\r\n",
				    first_unseen);
	imap_session_printf(s, "* OK [UIDVALIDITY %lu] UIDs valid\r\n",
			    (unsigned long)view->uidvalidity);
	imap_session_printf(s, "* OK [UIDNEXT %llu] Predicted next UID\r\n",
			    (unsigned long long)
				    mailstate_mailbox_uidnext(box));
	return 0;
}

void imap_session_sync_locked(struct imap_session *s, bool allow_expunge)
{
	struct imap_view *view = &s->view;
	struct mailstate_mailbox *box;
	uint64_t version;
	size_t count, first_new, i, j, old_count;
	uint32_t max_uid;
	bool new_keywords = false, ghosts = false;
	unsigned char *changed = NULL;

	if (s->state != IMAP_STATE_SELECTED || s->closing)
		return;
	version = user_version_locked(s->user);
	if (version == view->version)
		return;
	box = imap_session_box_locked(s);
	if (box == NULL) {
		/* Deleted or renamed by another session (or by this one):
		 * there is no way to tell the client that its selected
		 * mailbox is gone but to end the session. */
		imap_session_printf(s, "* BYE Selected mailbox was deleted "
				       "or renamed\r\n");
		s->closing = true;
		return;
	}

	/* Which reported messages are gone, and which changed flags. */
	old_count = view->count;
	if (old_count > 0) {
		changed = calloc(old_count, 1);
		if (changed == NULL) {
			s->out_failed = true;
			return;
		}
	}
	for (i = 0; i < old_count; i++) {
		const struct mailstate_msg *m;

		m = imap_session_view_msg_locked(s, box, i);
		if (m == NULL) {
			view->msgs[i].gone = true;
			continue;
		}
		if (imap_session_view_is_current(s, i, m))
			continue;
		changed[i] = 1;
		if (view_add_keywords(view, m) > 0)
			new_keywords = true;
	}
	max_uid = old_count > 0 ? view->msgs[old_count - 1].uid : 0;
	count = mailstate_mailbox_count(box);
	first_new = max_uid == UINT32_MAX
			    ? count
			    : mailstate_mailbox_uid_lower_bound(box,
								max_uid + 1);
	for (j = first_new; j < count; j++) {
		int r = view_add_keywords(view,
					  mailstate_mailbox_msg_at(box, j));

		if (r < 0) {
			s->out_failed = true;
			goto out;
		}
		if (r > 0)
			new_keywords = true;
	}
	if (new_keywords)
		append_flags_response(s);

	/* EXPUNGE from the highest number down, so that every number sent
	 * is still valid when the client reads it. */
	if (allow_expunge) {
		for (i = old_count; i-- > 0;) {
			if (view->msgs[i].gone)
				imap_session_printf(s, "* %zu EXPUNGE\r\n",
						    i + 1);
		}
		for (i = j = 0; i < old_count; i++) {
			if (view->msgs[i].gone) {
				free(view->msgs[i].tag);
				continue;
			}
			changed[j] = changed[i];
			view->msgs[j++] = view->msgs[i];
		}
		view->count = j;
	} else {
		for (i = 0; i < old_count; i++)
			if (view->msgs[i].gone)
				ghosts = true;
	}
	old_count = view->count;

	for (j = first_new; j < count; j++) {
		if (view_push(view, mailstate_mailbox_msg_at(box, j)) < 0) {
			s->out_failed = true;
			goto out;
		}
	}
	if (view->count != old_count)
		imap_session_printf(s, "* %zu EXISTS\r\n", view->count);

	for (i = 0; i < old_count; i++) {
		const struct mailstate_msg *m;

		if (!changed[i])
			continue;
		m = imap_session_view_msg_locked(s, box, i);
		if (m == NULL)
			continue;
		imap_session_printf(s, "* %zu FETCH (FLAGS ", i + 1);
		imap_session_append_flags(s, m);
		imap_session_printf(s, ")\r\n");
		imap_session_view_mark_reported(s, i, m);
	}
	/* With unreported expunges left, the next command must look again
	 * even if nothing else changes. */
	if (!ghosts)
		view->version = version;
out:
	free(changed);
}

int imap_session_resolve_set(struct imap_session *s,
			     const struct imap_seqset *set, bool uid,
			     size_t **idx_r, size_t *count_r,
			     const char **error_r)
{
	const struct imap_view *view = &s->view;
	size_t n = 0, *idx;

	*idx_r = NULL;
	*count_r = 0;
	if (!uid) {
		const struct imap_seq_range *last;
		uint64_t max_num;

		if (view->count == 0) {
			*error_r = "Invalid message number: the mailbox "
				   "is empty";
			return -1;
		}
		/* The highest explicit number decides: '*' is always
		 * valid. */
		last = &set->ranges[set->count - 1];
		if (last->hi != IMAP_SEQ_STAR)
			max_num = last->hi;
		else if (last->lo != IMAP_SEQ_STAR)
			max_num = last->lo;
		else if (set->count > 1)
			max_num = set->ranges[set->count - 2].hi;
		else
			max_num = 0;
		if (max_num > view->count) {
			*error_r = "Invalid message number: beyond the last "
				   "message";
			return -1;
		}
	}
	if (view->count == 0)
		return 0;
	idx = calloc(view->count, sizeof(*idx));
	if (idx == NULL) {
		*error_r = "Out of memory";
		return -1;
	}
	if (view->count > UINT32_MAX) {
		free(idx);
		*error_r = "Mailbox too large";
		return -1;
	}
	for (size_t i = 0; i < view->count; i++) {
		uint32_t key = uid ? view->msgs[i].uid : (uint32_t)(i + 1);
		uint32_t max = uid ? view->msgs[view->count - 1].uid
				   : (uint32_t)view->count;

		if (imap_seqset_contains(set, key, max))
			idx[n++] = i;
	}
	*idx_r = idx;
	*count_r = n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The read loop */

/* A synchronising literal was announced: let the client send it. */
static int continuation(struct imap_session *s)
{
	imap_session_printf(s, "+ Ready for literal data\r\n");
	return imap_session_flush(s);
}

static bool stopping(const struct imap_session *s)
{
	return s->server != NULL && server_stopping(s->server);
}

static void say_bye(struct imap_session *s, const char *why)
{
	imap_session_printf(s, "* BYE %s\r\n", why);
	(void)imap_session_flush(s);
}

/* After a parse error: answers BAD.  Returns -1 when the session must
 * end. */
static int parse_error(struct imap_session *s, size_t consumed)
{
	const char *tag, *msg;
	bool fatal;

	msg = imap_parser_get_error(s->parser, &tag, &fatal);
	if (tag != NULL)
		imap_session_printf(s, "%s BAD %s\r\n", tag, msg);
	else
		imap_session_printf(s, "* BAD %s\r\n", msg);
	if (fatal || consumed == 0) {
		log_info("closing session after a fatal protocol error: %s",
			 msg);
		(void)imap_session_flush(s);
		return -1;
	}
	return 0;
}

/* Handles the end of input.  Never returns a value: the session ends. */
static void read_failed(struct imap_session *s, int ret, const char *error)
{
	switch (ret) {
	case CONN_TIMEOUT:
		log_info("session idle for too long");
		say_bye(s, "Autologout; idle for too long");
		return;
	case CONN_EOF:
	case CONN_WOKEN:
		if (stopping(s)) {
			say_bye(s, "Server shutting down");
			return;
		}
		if (imap_parser_in_command(s->parser))
			log_info("peer closed in the middle of a command");
		else
			log_debug("peer closed the session");
		return;
	default:
		log_info("session read failed: %s", error);
		return;
	}
}

/*
 * Waits until the connection has input.  Returns 1 when it has, 0 after
 * idle_ms without any, -1 when the server is stopping (or poll failed).
 *
 * Waiting here rather than in the TLS read is what lets a session say
 * BYE on shutdown: server_stop() wakes readers with shutdown(SHUT_RD),
 * and once GnuTLS itself has read that end of file it treats the session
 * as broken and will not send anything more.
 */
static int wait_input(struct imap_session *s, unsigned idle_ms)
{
	struct pollfd pfd;
	int ret;

	if (conn_pending(s->conn))
		return 1;
	pfd.fd = conn_fd(s->conn);
	pfd.events = POLLIN;
	for (;;) {
		pfd.revents = 0;
		ret = poll(&pfd, 1, idle_ms > INT32_MAX ? -1 : (int)idle_ms);
		if (ret < 0 && errno == EINTR)
			continue;
		break;
	}
	if (ret < 0) {
		log_warn("poll on a session");
		return -1;
	}
	if (stopping(s))
		return -1;
	return ret == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* IDLE */

/* How long one wait for a change lasts before the socket is looked at
 * again, which is the most a DONE waits to be noticed.  A change is seen
 * at once: user_wait_change() wakes on it. */
#define IDLE_POLL_MS 40
/* Bytes an idling client may send without ending a line: DONE is 6. */
#define IDLE_LINE_MAX 1024

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000U + (uint64_t)ts.tv_nsec / 1000000U;
}

static void idle_end(struct imap_session *s, const char *answer)
{
	imap_session_printf(s, "%s %s\r\n", s->idle_tag, answer);
	free(s->idle_tag);
	s->idle_tag = NULL;
	s->idling = false;
}

/*
 * Looks for the line that ends IDLE in ibuf[*ipos, ilen).  Returns 1 when
 * IDLE ended (the line is consumed: DONE answers OK, anything else BAD),
 * 0 when the line is not complete yet, -1 when the client sent more than
 * a line can be without ending it (the session ends).
 */
static int idle_input(struct imap_session *s, const unsigned char *ibuf,
		      size_t *ipos, size_t ilen)
{
	const unsigned char *p = ibuf + *ipos, *lf;
	size_t n = ilen - *ipos, len;

	lf = memchr(p, '\n', n);
	if (lf == NULL) {
		if (n <= IDLE_LINE_MAX)
			return 0;
		idle_end(s, "BAD Expected DONE");
		log_info("closing session: overlong line during IDLE");
		return -1;
	}
	len = (size_t)(lf - p);
	*ipos += len + 1;
	if (len > 0 && p[len - 1] == '\r')
		len--;
	if (len == 4 && strncasecmp((const char *)p, "DONE", 4) == 0)
		idle_end(s, "OK IDLE terminated");
	else
		idle_end(s, "BAD Expected DONE to end IDLE");
	return 1;
}

/*
 * Runs IDLE after its "+ idling": reports changes of the selected mailbox
 * as they happen until the client sends DONE.  Input goes to ibuf
 * (SESSION_READ_SIZE bytes, [*ipos, *ilen) unread), so that commands the
 * client pipelined after DONE reach the parser.  Returns 0 when IDLE
 * ended and the session goes on, -1 when the session ends (idle timeout,
 * connection lost, server stopping, selected mailbox gone).
 *
 * There is no single wait for both a change and input, so the session
 * alternates: user_wait_change() for at most IDLE_POLL_MS (it returns as
 * soon as anything of the user changes), then a look at the socket.
 */
static int idle_run(struct imap_session *s, unsigned char *ibuf,
		    size_t *ipos, size_t *ilen, unsigned idle_ms)
{
	uint64_t deadline = now_ms() + idle_ms;
	uint64_t seen = s->view.version;
	const char *error = "";

	for (;;) {
		size_t got;
		int ret, timeout = IDLE_POLL_MS;

		if (s->closing || s->out_failed) {
			(void)imap_session_flush(s);
			return -1;
		}
		ret = idle_input(s, ibuf, ipos, *ilen);
		if (ret != 0) {
			(void)imap_session_flush(s);
			return ret < 0 ? -1 : 0;
		}
		if (imap_session_flush(s) < 0)
			return -1;
		if (stopping(s)) {
			say_bye(s, "Server shutting down");
			return -1;
		}
		/* Keep the partial line at the start of the buffer. */
		if (*ipos > 0) {
			memmove(ibuf, ibuf + *ipos, *ilen - *ipos);
			*ilen -= *ipos;
			*ipos = 0;
		}
		if (s->state != IMAP_STATE_SELECTED) {
			timeout = 1000;	/* nothing to report: wait for DONE */
		} else if (!conn_pending(s->conn)) {
			uint64_t t0 = now_ms(), v;

			v = user_wait_change(s->user, seen, IDLE_POLL_MS);
			if (v != seen) {
				user_lock(s->user);
				imap_session_sync_locked(s, true);
				user_unlock(s->user);
				seen = v;
				continue;
			}
			/* Back at once without a change: woken for a
			 * shutdown, which the next round notices.  Wait on
			 * the socket then, not to spin meanwhile. */
			if (now_ms() - t0 >= IDLE_POLL_MS / 2)
				timeout = 0;
		}
		ret = wait_input(s, (unsigned)timeout);
		if (ret < 0) {
			read_failed(s, CONN_WOKEN, "");
			return -1;
		}
		if (ret == 0) {
			if (now_ms() >= deadline) {
				read_failed(s, CONN_TIMEOUT, "");
				return -1;
			}
			continue;
		}
		ret = conn_read_some(s->conn, ibuf + *ilen,
				     SESSION_READ_SIZE - *ilen, &got, &error);
		if (ret != CONN_OK) {
			read_failed(s, ret, error);
			return -1;
		}
		*ilen += got;
		deadline = now_ms() + idle_ms;
	}
}

void imap_session_run(struct imap_session *s)
{
	unsigned char *ibuf = malloc(SESSION_READ_SIZE);
	size_t ipos = 0, ilen = 0;
	const char *error = "";
	unsigned idle_ms;
	int one = 1;

	if (ibuf == NULL) {
		log_error("out of memory for a session");
		return;
	}
	idle_ms = s->config->limits.idle_timeout_s * 1000U;
	if (conn_set_timeouts(s->conn, idle_ms, SESSION_WRITE_TIMEOUT_MS) < 0)
		log_warnx("cannot set the session timeouts");
	/* Responses are written in one piece per batch of commands, so
	 * Nagle's algorithm has nothing to merge; it would only hold back
	 * an IDLE update behind the peer's delayed ACK of the one before. */
	if (setsockopt(conn_fd(s->conn), IPPROTO_TCP, TCP_NODELAY, &one,
		       sizeof(one)) < 0)
		log_debug("cannot set TCP_NODELAY on a session: %s",
			  strerror(errno));

	while (!s->out_failed) {
		enum imap_parse_result r;
		struct imap_command *cmd;
		size_t consumed = 0;
		int ret;

		if (ipos == ilen) {
			if (imap_session_flush(s) < 0)
				break;
			ret = wait_input(s, idle_ms);
			if (ret <= 0) {
				read_failed(s, ret == 0 ? CONN_TIMEOUT
							: CONN_WOKEN, "");
				break;
			}
			ret = conn_read_some(s->conn, ibuf, SESSION_READ_SIZE,
					     &ilen, &error);
			if (ret != CONN_OK) {
				read_failed(s, ret, error);
				break;
			}
			ipos = 0;
			continue;
		}
		r = imap_parser_feed(s->parser, ibuf + ipos, ilen - ipos,
				     &consumed);
		ipos += consumed;
		if (r == IMAP_PARSE_NEED_MORE)
			continue;
		if (r == IMAP_PARSE_NEED_CONTINUATION) {
			if (continuation(s) < 0)
				break;
			continue;
		}
		if (r == IMAP_PARSE_ERROR) {
			if (parse_error(s, consumed) < 0)
				break;
			continue;
		}
		cmd = imap_parser_take_command(s->parser);
		if (cmd == NULL) {
			s->out_failed = true;
			break;
		}
		imap_cmd_execute(s, cmd);
		imap_command_free(&cmd);
		if (s->idling &&
		    idle_run(s, ibuf, &ipos, &ilen, idle_ms) < 0)
			break;
		if (s->closing) {
			(void)imap_session_flush(s);
			break;
		}
		if (stopping(s)) {
			say_bye(s, "Server shutting down");
			break;
		}
		if (s->out.len >= SESSION_FLUSH_AT &&
		    imap_session_flush(s) < 0)
			break;
	}
	if (s->out_failed)
		log_error("session out of memory, closing");
	free(ibuf);
}
