/*
 * cmd_fetch.c - FETCH and UID FETCH (RFC 3501 6.4.5, 7.4.2).
 *
 * Items that the state answers (FLAGS, UID, INTERNALDATE, RFC822.SIZE)
 * cost no disk access.  Items that need the message (ENVELOPE, BODY,
 * BODYSTRUCTURE, BODY[...], RFC822*) read its file whole with the user's
 * lock dropped (imap_cmd_read_message_locked) and have mime.h answer
 * about it, one message at a time, so memory stays at one message plus
 * the output not yet written.
 *
 * Messages are served as they are stored: RFC822.SIZE is the size of the
 * stored bytes, which are the bytes BODY[] sends, so sizes and partial
 * offsets agree with each other.
 *
 * \Seen.  A body fetch that is not a PEEK (BODY[...], RFC822,
 * RFC822.TEXT) sets \Seen.  It is set for all the messages concerned at
 * once, as one durable change, before anything is sent, and their FETCH
 * responses then carry FLAGS, as RFC 3501 asks.  In a read-only
 * (EXAMINE) mailbox nothing is set.
 *
 * Expunged messages.  A non-UID FETCH may not send EXPUNGE, so a message
 * another session expunged keeps its number until the next command that
 * may; its data can no longer be served, so it is left out and the
 * command answers NO [EXPUNGEISSUE] (RFC 5530).  UID FETCH simply leaves
 * it out, as it does a UID that does not exist.
 */
#include "autoconfig.h"

#include "imap_cmd.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mime.h"
#include "op.h"
#include "user_store.h"

/* What the atts of one FETCH need. */
struct fetch_plan {
	bool body;	/* the message bytes */
	bool mime;	/* and their MIME structure */
	bool seen;	/* sets \Seen */
	bool flags;	/* FLAGS was asked for */
	bool uid;	/* UID was asked for */
};

static void fetch_plan_make(const struct imap_command *cmd,
			    struct fetch_plan *plan)
{
	memset(plan, 0, sizeof(*plan));
	for (unsigned i = 0; i < cmd->u.fetch.count; i++) {
		const struct imap_fetch_att *a = &cmd->u.fetch.atts[i];

		switch (a->type) {
		case IMAP_FETCH_FLAGS:
			plan->flags = true;
			break;
		case IMAP_FETCH_UID:
			plan->uid = true;
			break;
		case IMAP_FETCH_INTERNALDATE:
		case IMAP_FETCH_RFC822_SIZE:
			break;
		case IMAP_FETCH_RFC822:
			plan->body = true;
			plan->seen = true;
			break;
		case IMAP_FETCH_RFC822_TEXT:
			plan->body = plan->mime = plan->seen = true;
			break;
		case IMAP_FETCH_BODY_SECTION:
			plan->body = plan->mime = true;
			if (!a->peek)
				plan->seen = true;
			break;
		case IMAP_FETCH_ENVELOPE:
		case IMAP_FETCH_BODY:
		case IMAP_FETCH_BODYSTRUCTURE:
		case IMAP_FETCH_RFC822_HEADER:
			plan->body = plan->mime = true;
			break;
		}
	}
}

/* The message a response is about, as far as it is known. */
struct fetch_msg {
	size_t index;				/* in the view */
	uint32_t uid;
	int64_t internal_date;
	uint64_t size;
	const struct mailstate_msg *state;	/* NULL: expunged meanwhile */
	const unsigned char *data;		/* when plan.body */
	size_t len;
	struct mime_message *mime;		/* when plan.mime */
	bool seen_set;		/* this FETCH set \Seen: report FLAGS */
};

static const char *const month_names[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/* INTERNALDATE in UTC: the state keeps the instant, not the zone it was
 * given in. */
static void append_internaldate(struct imap_session *s, int64_t when)
{
	struct tm tm;
	time_t t;

	/* Clamp to years 1..9999, which the date-time syntax can carry. */
	if (when < -62135596800LL)
		when = -62135596800LL;
	if (when > 253402300799LL)
		when = 253402300799LL;
	t = (time_t)when;
	if (gmtime_r(&t, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	imap_session_printf(s, "INTERNALDATE \"%2d-%s-%04d %02d:%02d:%02d "
			       "+0000\"", tm.tm_mday,
			    month_names[(unsigned)tm.tm_mon % 12],
			    tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
			    tm.tm_sec);
}

static bool is_atom(const struct imap_string *str)
{
	if (str->len == 0)
		return false;
	for (size_t i = 0; i < str->len; i++) {
		unsigned char c = (unsigned char)str->data[i];

		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return true;
}

/* "BODY[1.2.HEADER.FIELDS (A B)]<0>", the label of a section response. */
static void append_section_label(struct imap_session *s,
				 const struct imap_fetch_att *a)
{
	static const char *const text_names[] = {
		[IMAP_SECTION_ALL] = "",
		[IMAP_SECTION_HEADER] = "HEADER",
		[IMAP_SECTION_HEADER_FIELDS] = "HEADER.FIELDS",
		[IMAP_SECTION_HEADER_FIELDS_NOT] = "HEADER.FIELDS.NOT",
		[IMAP_SECTION_TEXT] = "TEXT",
		[IMAP_SECTION_MIME] = "MIME",
	};

	imap_session_printf(s, "BODY[");
	for (unsigned i = 0; i < a->part_count; i++)
		imap_session_printf(s, "%s%lu", i > 0 ? "." : "",
				    (unsigned long)a->parts[i]);
	if (a->text != IMAP_SECTION_ALL &&
	    (unsigned)a->text < sizeof(text_names) / sizeof(text_names[0]))
		imap_session_printf(s, "%s%s", a->part_count > 0 ? "." : "",
				    text_names[a->text]);
	if (a->text == IMAP_SECTION_HEADER_FIELDS ||
	    a->text == IMAP_SECTION_HEADER_FIELDS_NOT) {
		imap_session_printf(s, " (");
		for (unsigned i = 0; i < a->field_count; i++) {
			if (i > 0)
				imap_session_append(s, " ", 1);
			if (is_atom(&a->fields[i]))
				imap_session_append(s, a->fields[i].data,
						    a->fields[i].len);
			else
				imap_session_append_string(
					s, a->fields[i].data,
					a->fields[i].len);
		}
		imap_session_printf(s, ")");
	}
	imap_session_printf(s, "]");
	if (a->partial)
		imap_session_printf(s, "<%lu>",
				    (unsigned long)a->partial_offset);
}

static void append_literal(struct imap_session *s, const unsigned char *data,
			   size_t len)
{
	imap_session_printf(s, "{%zu}\r\n", len);
	imap_session_append(s, data, len);
}

/* Appends one body section item.  Returns 0, or -1 when out of memory. */
static int append_section(struct imap_session *s, const struct fetch_msg *fm,
			  const struct imap_fetch_att *a, struct buf *scratch)
{
	const unsigned char *data;
	size_t len;

	if (mime_section(fm->mime, a->parts, a->part_count, a->text,
			 a->fields, a->field_count, scratch, &data,
			 &len) < 0)
		return -1;
	if (a->partial)
		mime_partial(&data, &len, a->partial_offset,
			     a->partial_length);
	append_section_label(s, a);
	imap_session_append(s, " ", 1);
	append_literal(s, data, len);
	return 0;
}

/* RFC822.HEADER and RFC822.TEXT: BODY.PEEK[HEADER] and BODY[TEXT] under
 * their old names. */
static int append_rfc822_part(struct imap_session *s,
			      const struct fetch_msg *fm,
			      enum imap_section_text text, const char *label,
			      struct buf *scratch)
{
	const unsigned char *data;
	size_t len;

	if (mime_section(fm->mime, NULL, 0, text, NULL, 0, scratch, &data,
			 &len) < 0)
		return -1;
	imap_session_printf(s, "%s ", label);
	append_literal(s, data, len);
	return 0;
}

static void append_flags_item(struct imap_session *s,
			      const struct fetch_msg *fm)
{
	imap_session_printf(s, "FLAGS ");
	imap_session_append_flags(s, fm->state);
	imap_session_view_mark_reported(s, fm->index, fm->state);
}

/* Appends the FETCH response of one message.  Returns 0, or -1 when out
 * of memory (the response may be cut: the session then closes). */
static int append_response(struct imap_session *s,
			   const struct imap_command *cmd,
			   const struct fetch_plan *plan,
			   const struct fetch_msg *fm, struct buf *scratch)
{
	bool first = true, flags_sent = false;

	if (fm->state != NULL && (plan->flags || fm->seen_set))
		imap_session_announce_keywords_locked(s, &fm->state, 1);
	imap_session_printf(s, "* %zu FETCH (", fm->index + 1);
	if (cmd->uid && !plan->uid) {
		imap_session_printf(s, "UID %lu", (unsigned long)fm->uid);
		first = false;
	}
	for (unsigned i = 0; i < cmd->u.fetch.count; i++) {
		const struct imap_fetch_att *a = &cmd->u.fetch.atts[i];
		int ret = 0;

		/* A message expunged while its file was read has no
		 * flags left to report. */
		if (a->type == IMAP_FETCH_FLAGS &&
		    (fm->state == NULL || flags_sent))
			continue;
		if (!first)
			imap_session_append(s, " ", 1);
		first = false;
		switch (a->type) {
		case IMAP_FETCH_FLAGS:
			append_flags_item(s, fm);
			flags_sent = true;
			break;
		case IMAP_FETCH_UID:
			imap_session_printf(s, "UID %lu",
					    (unsigned long)fm->uid);
			break;
		case IMAP_FETCH_INTERNALDATE:
			append_internaldate(s, fm->internal_date);
			break;
		case IMAP_FETCH_RFC822_SIZE:
			imap_session_printf(s, "RFC822.SIZE %llu",
					    (unsigned long long)fm->size);
			break;
		case IMAP_FETCH_ENVELOPE:
			imap_session_printf(s, "ENVELOPE ");
			ret = mime_envelope(fm->mime, &s->out);
			break;
		case IMAP_FETCH_BODY:
		case IMAP_FETCH_BODYSTRUCTURE:
			imap_session_printf(s, "%s ",
					    a->type == IMAP_FETCH_BODY
						    ? "BODY"
						    : "BODYSTRUCTURE");
			ret = mime_bodystructure(
				fm->mime, &s->out,
				a->type == IMAP_FETCH_BODYSTRUCTURE);
			break;
		case IMAP_FETCH_RFC822:
			imap_session_printf(s, "RFC822 ");
			append_literal(s, fm->data, fm->len);
			break;
		case IMAP_FETCH_RFC822_HEADER:
			ret = append_rfc822_part(s, fm, IMAP_SECTION_HEADER,
						 "RFC822.HEADER", scratch);
			break;
		case IMAP_FETCH_RFC822_TEXT:
			ret = append_rfc822_part(s, fm, IMAP_SECTION_TEXT,
						 "RFC822.TEXT", scratch);
			break;
		case IMAP_FETCH_BODY_SECTION:
			ret = append_section(s, fm, a, scratch);
			break;
		}
		if (ret < 0)
			return -1;
	}
	if (fm->seen_set && !flags_sent && fm->state != NULL) {
		if (!first)
			imap_session_append(s, " ", 1);
		append_flags_item(s, fm);
	}
	imap_session_printf(s, ")\r\n");
	return 0;
}

/* Sets \Seen on the messages at idx[0..count) that lack it, marking them
 * in seen_set.  Returns 0 or -1 with *error_r (nothing set). */
static int set_seen(struct imap_session *s, const size_t *idx, size_t count,
		    unsigned char *seen_set, const char **error_r)
{
	struct mailstate_mailbox *box;
	const struct mailstate_msg **msgs;
	size_t n = 0;
	int ret = 0;

	if (imap_cmd_view_msgs_locked(s, idx, count, &box, &msgs,
				      error_r) < 0)
		return -1;
	for (size_t i = 0; i < count; i++) {
		const struct mailstate_msg *m = msgs[i];

		if (m == NULL || (m->flags & OP_FLAG_SEEN) != 0)
			continue;
		msgs[n++] = m;
		seen_set[i] = 1;
	}
	if (n > 0)
		ret = user_store_flags_locked(s->user, box, msgs, n,
					      MAILSTATE_STORE_ADD,
					      OP_FLAG_SEEN, NULL, 0, error_r);
	if (ret < 0)
		memset(seen_set, 0, count);
	free(msgs);
	return ret;
}

/* Serves one message.  Returns 1 when it was served, 0 when it is gone,
 * -1 with *error_r to end the command with NO, -2 when out of memory. */
static int fetch_one(struct imap_session *s, const struct imap_command *cmd,
		     const struct fetch_plan *plan, size_t index,
		     bool seen_set, struct buf *scratch, const char **error_r)
{
	struct mailstate_mailbox *box = imap_session_box_locked(s);
	struct fetch_msg fm;
	unsigned char *data = NULL;
	int ret;

	if (box == NULL) {
		*error_r = "The selected mailbox no longer exists";
		return -1;
	}
	memset(&fm, 0, sizeof(fm));
	fm.index = index;
	fm.seen_set = seen_set;
	fm.state = imap_session_view_msg_locked(s, box, index);
	if (fm.state == NULL)
		return 0;
	fm.uid = fm.state->uid;
	fm.internal_date = fm.state->internal_date;
	fm.size = fm.state->size;
	if (plan->body) {
		if (imap_cmd_read_message_locked(s, box, fm.state, &data,
						 &fm.len, error_r) < 0)
			return -1;
		/* The lock was dropped: look the message up again. */
		box = imap_session_box_locked(s);
		fm.state = box == NULL ? NULL
				       : imap_session_view_msg_locked(s, box,
								      index);
		fm.data = data;
		fm.size = fm.len;
	}
	if (plan->mime) {
		fm.mime = mime_parse(data, fm.len, error_r);
		if (fm.mime == NULL) {
			free(data);
			return -2;
		}
	}
	ret = append_response(s, cmd, plan, &fm, scratch);
	mime_free(&fm.mime);
	free(data);
	return ret < 0 ? -2 : 1;
}

void cmd_fetch(struct imap_session *s, const struct imap_command *cmd)
{
	struct fetch_plan plan;
	struct buf scratch = BUF_INIT;
	unsigned char *seen_set = NULL;
	size_t *idx = NULL, count = 0, gone = 0;
	const char *error;

	if (imap_session_resolve_set(s, &cmd->u.fetch.set, cmd->uid, &idx,
				     &count, &error) < 0) {
		imap_session_result(s, IMAP_RESULT_BAD, "%s", error);
		return;
	}
	fetch_plan_make(cmd, &plan);
	if (count > 0) {
		seen_set = calloc(count, 1);
		if (seen_set == NULL) {
			imap_session_result(s, IMAP_RESULT_NO, "Out of "
					    "memory");
			goto out;
		}
	}
	if (plan.seen && !s->view.read_only && count > 0 &&
	    set_seen(s, idx, count, seen_set, &error) < 0) {
		imap_session_result(s, IMAP_RESULT_NO, "%s", error);
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		int ret = fetch_one(s, cmd, &plan, idx[i], seen_set[i] != 0,
				    &scratch, &error);

		if (ret == 0)
			gone++;
		if (ret == -1) {
			imap_session_result(s, IMAP_RESULT_NO, "%s", error);
			goto out;
		}
		if (ret == -2) {
			s->out_failed = true;
			imap_session_result(s, IMAP_RESULT_NO, "Out of "
					    "memory");
			goto out;
		}
	}
	if (gone > 0 && !cmd->uid)
		imap_session_result(s, IMAP_RESULT_NO, "[EXPUNGEISSUE] Some "
				    "messages were expunged meanwhile");
	else
		imap_session_result(s, IMAP_RESULT_OK, "%sFETCH completed",
				    cmd->uid ? "UID " : "");
out:
	buf_free(&scratch);
	free(seen_set);
	free(idx);
}
