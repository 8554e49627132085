/*
 * cmd_message.c - commands on messages: APPEND, EXPUNGE, UID EXPUNGE,
 * STORE and UID STORE.
 *
 * Flags cross two vocabularies here: the parser's IMAP_FLAG_* and the
 * state's OP_FLAG_*.  Their values happen to agree for the five system
 * flags, but they are converted name by name so that neither side can
 * renumber them under the other.
 */
#include "autoconfig.h"

#include "imap_cmd.h"

#include <stdlib.h>
#include <time.h>

#include "op.h"
#include "user_store.h"

static unsigned flags_to_op(unsigned imap)
{
	static const struct {
		unsigned imap, op;
	} map[] = {
		{ IMAP_FLAG_SEEN, OP_FLAG_SEEN },
		{ IMAP_FLAG_ANSWERED, OP_FLAG_ANSWERED },
		{ IMAP_FLAG_FLAGGED, OP_FLAG_FLAGGED },
		{ IMAP_FLAG_DELETED, OP_FLAG_DELETED },
		{ IMAP_FLAG_DRAFT, OP_FLAG_DRAFT },
	};
	unsigned op = 0;

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if ((imap & map[i].imap) != 0)
			op |= map[i].op;
	return op;
}

/* Fills kw_r (OP_KEYWORDS_MAX entries) with the keywords of flags as C
 * strings.  Returns their number, or -1 after setting a NO answer. */
static int keywords_arg(struct imap_session *s, const struct imap_flags *flags,
			const char *kw_r[OP_KEYWORDS_MAX])
{
	if (flags->keyword_count > OP_KEYWORDS_MAX) {
		imap_session_result(s, IMAP_RESULT_NO, "Too many keywords "
				    "(at most %d)", OP_KEYWORDS_MAX);
		return -1;
	}
	for (unsigned i = 0; i < flags->keyword_count; i++) {
		const struct imap_string *k = &flags->keywords[i];

		if (!imap_string_is_text(k) || !op_keyword_valid(k->data)) {
			imap_session_result(s, IMAP_RESULT_NO, "Invalid "
					    "keyword (1 to %d atom "
					    "characters)", OP_KEYWORD_MAX);
			return -1;
		}
		kw_r[i] = k->data;
	}
	return (int)flags->keyword_count;
}

void cmd_append(struct imap_session *s, const struct imap_command *cmd)
{
	char name[MAILBOX_NAME_BUFSIZE];
	const char *kw[OP_KEYWORDS_MAX];
	const char *error;
	unsigned flags = 0;
	int nkw = 0;
	int64_t date;
	uint32_t uid = 0, uidvalidity = 0;

	if (imap_cmd_mailbox_arg(s, &cmd->u.append.mailbox, name) < 0)
		return;
	if (mailstate_mailbox_find(user_state(s->user), name) == NULL) {
		imap_session_result(s, IMAP_RESULT_NO, "[TRYCREATE] Mailbox "
				    "does not exist");
		return;
	}
	if (cmd->u.append.has_flags) {
		flags = flags_to_op(cmd->u.append.flags.system);
		nkw = keywords_arg(s, &cmd->u.append.flags, kw);
		if (nkw < 0)
			return;
	}
	date = cmd->u.append.has_date ? (int64_t)cmd->u.append.date
				      : (int64_t)time(NULL);
	if (user_append_locked(s->user, name, cmd->u.append.message.data,
			       cmd->u.append.message.len, date, flags, kw,
			       (size_t)nkw, &uid, &uidvalidity, &error) < 0) {
		imap_session_result(s, IMAP_RESULT_NO, "%s", error);
		return;
	}
	imap_session_result(s, IMAP_RESULT_OK, "[APPENDUID %lu %lu] APPEND "
			    "completed", (unsigned long)uidvalidity,
			    (unsigned long)uid);
}

int imap_cmd_expunge_deleted_locked(struct imap_session *s, const size_t *idx,
				    size_t count, const char **error_r)
{
	struct mailstate_mailbox *box = imap_session_box_locked(s);
	const struct mailstate_msg **msgs;
	size_t n = 0, total = idx != NULL ? count : s->view.count;
	int ret = 0;

	if (box == NULL) {
		*error_r = "The selected mailbox no longer exists";
		return -1;
	}
	if (total == 0)
		return 0;
	msgs = calloc(total, sizeof(*msgs));
	if (msgs == NULL) {
		*error_r = "Out of memory";
		return -1;
	}
	/* Only messages the client knows are expunged: one it has not been
	 * told about yet must not vanish before it ever saw it. */
	for (size_t i = 0; i < total; i++) {
		const struct mailstate_msg *m;

		m = imap_session_view_msg_locked(s, box,
						 idx != NULL ? idx[i] : i);
		if (m != NULL && (m->flags & OP_FLAG_DELETED) != 0)
			msgs[n++] = m;
	}
	if (n > 0)
		ret = user_expunge_locked(s->user, box, msgs, n, error_r);
	free(msgs);
	return ret;
}

void cmd_expunge(struct imap_session *s, const struct imap_command *cmd)
{
	size_t *idx = NULL, count = 0;
	const char *error;

	if (cmd->uid && cmd->u.expunge.has_set &&
	    imap_session_resolve_set(s, &cmd->u.expunge.set, true, &idx,
				     &count, &error) < 0) {
		imap_session_result(s, IMAP_RESULT_BAD, "%s", error);
		return;
	}
	if (imap_cmd_expunge_deleted_locked(s, cmd->uid ? idx : NULL, count,
					    &error) < 0) {
		free(idx);
		imap_session_result(s, IMAP_RESULT_NO, "%s", error);
		return;
	}
	/* UID EXPUNGE with nothing matching expunges nothing, which is
	 * what count 0 and a non-NULL (or NULL, from an empty view) idx
	 * means. */
	free(idx);
	imap_session_result(s, IMAP_RESULT_OK, "%sEXPUNGE completed",
			    cmd->uid ? "UID " : "");
}

static enum mailstate_store_mode store_mode(enum imap_store_mode mode)
{
	switch (mode) {
	case IMAP_STORE_ADD:
		return MAILSTATE_STORE_ADD;
	case IMAP_STORE_REMOVE:
		return MAILSTATE_STORE_REMOVE;
	case IMAP_STORE_REPLACE:
		break;
	}
	return MAILSTATE_STORE_REPLACE;
}

void cmd_store(struct imap_session *s, const struct imap_command *cmd)
{
	const struct imap_flags *fl = &cmd->u.store.flags;
	struct mailstate_mailbox *box;
	const struct mailstate_msg **msgs = NULL;
	const char *kw[OP_KEYWORDS_MAX];
	size_t *idx = NULL, count = 0, n = 0;
	unsigned char *was_current = NULL;
	const char *error;
	int nkw;

	if (imap_session_resolve_set(s, &cmd->u.store.set, cmd->uid, &idx,
				     &count, &error) < 0) {
		imap_session_result(s, IMAP_RESULT_BAD, "%s", error);
		return;
	}
	nkw = keywords_arg(s, fl, kw);
	if (nkw < 0)
		goto out;
	box = imap_session_box_locked(s);
	if (box == NULL) {
		imap_session_result(s, IMAP_RESULT_NO, "The selected mailbox "
				    "no longer exists");
		goto out;
	}
	if (count > 0) {
		msgs = calloc(count, sizeof(*msgs));
		was_current = calloc(count, 1);
		if (msgs == NULL || was_current == NULL) {
			imap_session_result(s, IMAP_RESULT_NO, "Out of "
					    "memory");
			goto out;
		}
	}
	/* Expunged messages not yet reported are skipped (RFC 3501
	 * leaves STORE on them to the server). */
	for (size_t i = 0; i < count; i++) {
		const struct mailstate_msg *m;

		m = imap_session_view_msg_locked(s, box, idx[i]);
		if (m == NULL)
			continue;
		was_current[i] = imap_session_view_is_current(s, idx[i], m);
		msgs[n++] = m;
	}
	if (n > 0 &&
	    user_store_flags_locked(s->user, box, msgs, n,
				    store_mode(cmd->u.store.mode),
				    flags_to_op(fl->system), kw, (size_t)nkw,
				    &error) < 0) {
		imap_session_result(s, IMAP_RESULT_NO, "%s", error);
		goto out;
	}
	/* The state changed, so every message pointer is looked up
	 * again.  The client gets the new flags of every message it
	 * named, unless .SILENT, which suppresses exactly the report of
	 * its own change: a change by someone else that it had not seen
	 * yet is still reported by the sync. */
	for (size_t i = 0; i < count; i++)
		msgs[i] = imap_session_view_msg_locked(s, box, idx[i]);
	imap_session_announce_keywords_locked(s, msgs, count);
	for (size_t i = 0; i < count; i++) {
		const struct mailstate_msg *m = msgs[i];

		if (m == NULL)
			continue;
		if (cmd->u.store.silent) {
			if (was_current[i])
				imap_session_view_mark_reported(s, idx[i], m);
			continue;
		}
		imap_session_printf(s, "* %zu FETCH (", idx[i] + 1);
		if (cmd->uid)
			imap_session_printf(s, "UID %lu ",
					    (unsigned long)m->uid);
		imap_session_printf(s, "FLAGS ");
		imap_session_append_flags(s, m);
		imap_session_printf(s, ")\r\n");
		imap_session_view_mark_reported(s, idx[i], m);
	}
	imap_session_result(s, IMAP_RESULT_OK, "%sSTORE completed",
			    cmd->uid ? "UID " : "");
out:
	free(was_current);
	free(msgs);
	free(idx);
}
