/*
 * cmd_search.c - SEARCH and UID SEARCH (RFC 3501 6.4.4).
 *
 * The parser hands over the key tree (one AND node at the top).  Each
 * message of the view is first tested with what the state knows (flags,
 * keywords, dates, size, numbers) in three-valued logic: a key about the
 * message's contents (header fields, body, text, sent date) is
 * "unknown" then, and AND, OR and NOT combine unknowns the way Kleene's
 * logic does.  Only a message the state alone cannot decide is read, with
 * the user's lock dropped, and tested again with its parsed contents, so
 * "UNSEEN SUBJECT x" reads only the unseen messages.
 *
 * Dates.  BEFORE, ON and SINCE compare the day of INTERNALDATE (kept as
 * an instant, so its UTC day); SENTBEFORE, SENTON and SENTSINCE the
 * calendar date written in the Date: field.  A message without a
 * readable Date: field matches no SENT* key.
 *
 * \Recent is not tracked (see doc/protocol.md), so RECENT and NEW match
 * nothing and OLD everything.
 *
 * Charsets: US-ASCII and UTF-8 (strings are compared as bytes, ASCII
 * letters case-insensitively, against header and body text that mime.h
 * decoded to UTF-8); any other is refused with [BADCHARSET].
 */
#include "autoconfig.h"

#include "imap_cmd.h"

#include <stdlib.h>
#include <strings.h>

#include "mime.h"
#include "op.h"
#include "user_store.h"

enum match {
	MATCH_ERROR = -1,	/* out of memory */
	MATCH_NO = 0,
	MATCH_YES = 1,
	MATCH_UNKNOWN = 2,	/* needs the message's contents */
};

struct search_ctx {
	const struct mailstate_msg *msg;
	uint32_t seq;
	uint32_t max_seq, max_uid;		/* what '*' means */
	const struct mime_message *mime;	/* NULL: not read */
};

static enum match yes_if(bool cond)
{
	return cond ? MATCH_YES : MATCH_NO;
}

static enum match from_mime(int ret)
{
	if (ret < 0)
		return MATCH_ERROR;
	return yes_if(ret > 0);
}

/* 00:00:00 UTC of the day of t. */
static int64_t day_of(int64_t t)
{
	int64_t r = t % 86400;

	return r < 0 ? t - r - 86400 : t - r;
}

static enum match match_date(enum imap_search_type type, int64_t day,
			     time_t key)
{
	switch (type) {
	case IMAP_SEARCH_BEFORE:
	case IMAP_SEARCH_SENTBEFORE:
		return yes_if(day < (int64_t)key);
	case IMAP_SEARCH_ON:
	case IMAP_SEARCH_SENTON:
		return yes_if(day == (int64_t)key);
	default:
		return yes_if(day >= (int64_t)key);
	}
}

static enum match match_header(const struct search_ctx *c, const char *name,
			       const struct imap_string *str)
{
	if (c->mime == NULL)
		return MATCH_UNKNOWN;
	return from_mime(mime_header_contains(c->mime, name, str->data,
					      str->len));
}

static enum match match_key(const struct imap_search_key *k,
			    const struct search_ctx *c);

static enum match match_and(const struct imap_search_key *k,
			    const struct search_ctx *c)
{
	enum match r = MATCH_YES;

	for (; k != NULL; k = k->next) {
		enum match m = match_key(k, c);

		if (m == MATCH_ERROR || m == MATCH_NO)
			return m;
		if (m == MATCH_UNKNOWN)
			r = MATCH_UNKNOWN;
	}
	return r;
}

static enum match match_or(const struct imap_search_key *a,
			   const struct search_ctx *c)
{
	enum match ma, mb;

	if (a == NULL || a->next == NULL)
		return MATCH_NO;	/* the parser always gives two */
	ma = match_key(a, c);
	if (ma == MATCH_ERROR || ma == MATCH_YES)
		return ma;
	mb = match_key(a->next, c);
	if (mb == MATCH_ERROR || mb == MATCH_YES)
		return mb;
	return ma == MATCH_UNKNOWN || mb == MATCH_UNKNOWN ? MATCH_UNKNOWN
							  : MATCH_NO;
}

static enum match match_flag(const struct search_ctx *c, unsigned flag,
			     bool set)
{
	return yes_if(((c->msg->flags & flag) != 0) == set);
}

/* The recursion is bounded by the parser's max_search_depth. */
static enum match match_key(const struct imap_search_key *k,
			    const struct search_ctx *c)
{
	const struct mailstate_msg *m = c->msg;
	enum match r;
	time_t day;

	switch (k->type) {
	case IMAP_SEARCH_AND:
		return match_and(k->children, c);
	case IMAP_SEARCH_OR:
		return match_or(k->children, c);
	case IMAP_SEARCH_NOT:
		r = k->children == NULL ? MATCH_NO : match_key(k->children, c);
		if (r == MATCH_YES)
			return MATCH_NO;
		if (r == MATCH_NO)
			return MATCH_YES;
		return r;
	case IMAP_SEARCH_ALL:
	case IMAP_SEARCH_OLD:
		return MATCH_YES;
	case IMAP_SEARCH_NEW:
	case IMAP_SEARCH_RECENT:
		return MATCH_NO;
	case IMAP_SEARCH_ANSWERED:
		return match_flag(c, OP_FLAG_ANSWERED, true);
	case IMAP_SEARCH_DELETED:
		return match_flag(c, OP_FLAG_DELETED, true);
	case IMAP_SEARCH_DRAFT:
		return match_flag(c, OP_FLAG_DRAFT, true);
	case IMAP_SEARCH_FLAGGED:
		return match_flag(c, OP_FLAG_FLAGGED, true);
	case IMAP_SEARCH_SEEN:
		return match_flag(c, OP_FLAG_SEEN, true);
	case IMAP_SEARCH_UNANSWERED:
		return match_flag(c, OP_FLAG_ANSWERED, false);
	case IMAP_SEARCH_UNDELETED:
		return match_flag(c, OP_FLAG_DELETED, false);
	case IMAP_SEARCH_UNDRAFT:
		return match_flag(c, OP_FLAG_DRAFT, false);
	case IMAP_SEARCH_UNFLAGGED:
		return match_flag(c, OP_FLAG_FLAGGED, false);
	case IMAP_SEARCH_UNSEEN:
		return match_flag(c, OP_FLAG_SEEN, false);
	case IMAP_SEARCH_KEYWORD:
	case IMAP_SEARCH_UNKEYWORD:
		/* A keyword no message can carry is simply not set. */
		r = yes_if(imap_string_is_text(&k->str) &&
			   mailstate_msg_has_keyword(m, k->str.data));
		if (k->type == IMAP_SEARCH_UNKEYWORD)
			r = r == MATCH_YES ? MATCH_NO : MATCH_YES;
		return r;
	case IMAP_SEARCH_BCC:
		return match_header(c, "Bcc", &k->str);
	case IMAP_SEARCH_CC:
		return match_header(c, "Cc", &k->str);
	case IMAP_SEARCH_FROM:
		return match_header(c, "From", &k->str);
	case IMAP_SEARCH_SUBJECT:
		return match_header(c, "Subject", &k->str);
	case IMAP_SEARCH_TO:
		return match_header(c, "To", &k->str);
	case IMAP_SEARCH_HEADER:
		/* A field name with a NUL names no field. */
		if (!imap_string_is_text(&k->field))
			return MATCH_NO;
		return match_header(c, k->field.data, &k->str);
	case IMAP_SEARCH_BODY:
		if (c->mime == NULL)
			return MATCH_UNKNOWN;
		return from_mime(mime_body_contains(c->mime, k->str.data,
						    k->str.len));
	case IMAP_SEARCH_TEXT:
		if (c->mime == NULL)
			return MATCH_UNKNOWN;
		return from_mime(mime_text_contains(c->mime, k->str.data,
						    k->str.len));
	case IMAP_SEARCH_BEFORE:
	case IMAP_SEARCH_ON:
	case IMAP_SEARCH_SINCE:
		return match_date(k->type, day_of(m->internal_date), k->date);
	case IMAP_SEARCH_SENTBEFORE:
	case IMAP_SEARCH_SENTON:
	case IMAP_SEARCH_SENTSINCE:
		if (c->mime == NULL)
			return MATCH_UNKNOWN;
		if (!mime_sent_date(c->mime, NULL, NULL, &day))
			return MATCH_NO;
		return match_date(k->type, (int64_t)day, k->date);
	case IMAP_SEARCH_LARGER:
		return yes_if(m->size > k->number);
	case IMAP_SEARCH_SMALLER:
		return yes_if(m->size < k->number);
	case IMAP_SEARCH_UID:
		return yes_if(imap_seqset_contains(&k->set, m->uid,
						   c->max_uid));
	case IMAP_SEARCH_SEQSET:
		return yes_if(imap_seqset_contains(&k->set, c->seq,
						   c->max_seq));
	}
	return MATCH_NO;
}

static bool charset_ok(const struct imap_command *cmd)
{
	const struct imap_string *cs = &cmd->u.search.charset;

	if (!cmd->u.search.has_charset)
		return true;
	return imap_string_is_text(cs) &&
	       (strcasecmp(cs->data, "US-ASCII") == 0 ||
		strcasecmp(cs->data, "UTF-8") == 0);
}

/* Tests view entry index, reading the message when the state cannot
 * decide.  Returns the match, or MATCH_ERROR with *error_r; a message
 * that is gone (now or after the read) does not match. */
static enum match search_one(struct imap_session *s,
			     const struct imap_command *cmd,
			     struct search_ctx *c, size_t index,
			     const char **error_r)
{
	struct mailstate_mailbox *box = imap_session_box_locked(s);
	struct mime_message *mime;
	unsigned char *data;
	size_t len;
	enum match r;

	if (box == NULL) {
		*error_r = "The selected mailbox no longer exists";
		return MATCH_ERROR;
	}
	c->msg = imap_session_view_msg_locked(s, box, index);
	if (c->msg == NULL)
		return MATCH_NO;
	c->mime = NULL;
	r = match_key(cmd->u.search.keys, c);
	if (r != MATCH_UNKNOWN) {
		if (r == MATCH_ERROR)
			*error_r = "Out of memory";
		return r;
	}
	if (imap_cmd_read_message_locked(s, box, c->msg, &data, &len,
					 error_r) < 0)
		return MATCH_ERROR;
	box = imap_session_box_locked(s);
	c->msg = box == NULL ? NULL
			     : imap_session_view_msg_locked(s, box, index);
	if (c->msg == NULL) {
		free(data);
		return MATCH_NO;
	}
	mime = mime_parse(data, len, error_r);
	if (mime == NULL) {
		free(data);
		return MATCH_ERROR;
	}
	c->mime = mime;
	r = match_key(cmd->u.search.keys, c);
	c->mime = NULL;
	mime_free(&mime);
	free(data);
	if (r == MATCH_ERROR)
		*error_r = "Out of memory";
	/* With the contents known nothing is left unknown. */
	return r == MATCH_YES ? MATCH_YES : r == MATCH_ERROR ? r : MATCH_NO;
}

void cmd_search(struct imap_session *s, const struct imap_command *cmd)
{
	struct imap_view *view = &s->view;
	struct search_ctx c;
	uint32_t *hits = NULL;
	size_t n = 0;
	const char *error;

	if (!charset_ok(cmd)) {
		imap_session_result(s, IMAP_RESULT_NO, "[BADCHARSET (US-ASCII "
				    "UTF-8)] Unsupported charset");
		return;
	}
	if (view->count > UINT32_MAX) {
		imap_session_result(s, IMAP_RESULT_NO, "Mailbox too large");
		return;
	}
	if (view->count > 0) {
		hits = calloc(view->count, sizeof(*hits));
		if (hits == NULL) {
			imap_session_result(s, IMAP_RESULT_NO, "Out of "
					    "memory");
			return;
		}
	}
	c.max_seq = (uint32_t)view->count;
	c.max_uid = view->count > 0 ? view->msgs[view->count - 1].uid : 0;
	for (size_t i = 0; i < view->count; i++) {
		enum match r;

		c.seq = (uint32_t)(i + 1);
		r = search_one(s, cmd, &c, i, &error);
		if (r == MATCH_ERROR) {
			imap_session_result(s, IMAP_RESULT_NO, "%s", error);
			goto out;
		}
		if (r == MATCH_YES)
			hits[n++] = cmd->uid ? view->msgs[i].uid : c.seq;
	}
	imap_session_printf(s, "* SEARCH");
	for (size_t i = 0; i < n; i++)
		imap_session_printf(s, " %lu", (unsigned long)hits[i]);
	imap_session_printf(s, "\r\n");
	imap_session_result(s, IMAP_RESULT_OK, "%sSEARCH completed",
			    cmd->uid ? "UID " : "");
out:
	free(hits);
}
