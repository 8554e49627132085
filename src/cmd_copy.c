/*
 * cmd_copy.c - COPY and MOVE (RFC 6851), and their UID forms, with the
 * UIDPLUS COPYUID response (RFC 4315).
 *
 * A copy is a new message: a new identity tag and a new UID in the
 * target, the same bytes, flags, keywords and internal date.  Each one is
 * read from the source's file with the user's lock dropped and appended
 * to the target as its own durable change, so a large COPY does not hold
 * the user's lock for the whole of its disk work.  RFC 3501 wants a COPY
 * to be all or nothing: when one append fails, the copies already made
 * are expunged again before NO is answered.
 *
 * MOVE is a copy followed by one expunge of the sources.  Its responses
 * come in the order RFC 6851 asks for: COPYUID in an untagged OK, then
 * the EXPUNGEs (sent by the dispatcher's sync, which runs after the
 * handler), then the tagged OK.
 */
#include "autoconfig.h"

#include "imap_cmd.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "op.h"
#include "user_store.h"

/* What is copied of a message: taken under the lock, kept across the
 * unlocked read. */
struct copy_source {
	uint32_t uid;
	int64_t internal_date;
	unsigned flags;
	size_t keyword_count;
	char keywords[OP_KEYWORDS_MAX][OP_KEYWORD_MAX + 1];
	const char *kw[OP_KEYWORDS_MAX];
};

static void copy_source_take(struct copy_source *src,
			     const struct mailstate_msg *msg)
{
	const char *kw[OP_KEYWORDS_MAX];
	size_t n = mailstate_msg_keywords(msg, kw, OP_KEYWORDS_MAX);

	if (n > OP_KEYWORDS_MAX)
		n = OP_KEYWORDS_MAX;
	src->uid = msg->uid;
	src->internal_date = msg->internal_date;
	src->flags = msg->flags;
	src->keyword_count = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(kw[i]);

		/* The state holds only valid keywords; a longer one could
		 * only come from a bad peer and is not copied. */
		if (len > OP_KEYWORD_MAX)
			continue;
		memcpy(src->keywords[src->keyword_count], kw[i], len + 1);
		src->kw[src->keyword_count] = src->keywords[src->keyword_count];
		src->keyword_count++;
	}
}

/* Appends "a:b,c" for the ascending list uids[0..n) to out.  Returns 0,
 * or -1 when out of memory. */
static int append_uid_set(struct buf *out, const uint32_t *uids, size_t n)
{
	size_t i = 0;
	int ret = 0;

	while (i < n) {
		size_t j = i;

		while (j + 1 < n && uids[j + 1] == uids[j] + 1)
			j++;
		if (j == i)
			ret |= buf_printf(out, "%s%lu", i > 0 ? "," : "",
					  (unsigned long)uids[i]);
		else
			ret |= buf_printf(out, "%s%lu:%lu", i > 0 ? "," : "",
					  (unsigned long)uids[i],
					  (unsigned long)uids[j]);
		i = j + 1;
	}
	return ret < 0 ? -1 : 0;
}

/* Expunges the copies made so far (the UIDs uids[0..n) of target), after
 * a later step failed.  Best effort: a copy that cannot be expunged stays
 * and is logged. */
static void undo_copies(struct imap_session *s, const char *target,
			const uint32_t *uids, size_t n)
{
	struct mailstate_mailbox *box;
	const struct mailstate_msg **msgs;
	const char *error;
	size_t found = 0;

	if (n == 0)
		return;
	box = mailstate_mailbox_find(user_state(s->user), target);
	msgs = calloc(n, sizeof(*msgs));
	if (box == NULL || msgs == NULL) {
		free(msgs);
		log_warnx("cannot undo a failed COPY of %zu messages for %s",
			  n, user_name(s->user));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		size_t idx;

		if (mailstate_mailbox_uid_find(box, uids[i], &idx))
			msgs[found++] = mailstate_mailbox_msg_at(box, idx);
	}
	if (found > 0 &&
	    user_expunge_locked(s->user, box, msgs, found, &error) < 0)
		log_warnx("cannot undo a failed COPY for %s: %s",
			  user_name(s->user), error);
	free(msgs);
}

/* Expunges the sources of a MOVE that are still there.  Returns 0 or -1
 * with *error_r. */
static int expunge_sources(struct imap_session *s, const size_t *idx,
			   size_t count, const char **error_r)
{
	struct mailstate_mailbox *box;
	const struct mailstate_msg **msgs;
	size_t n = 0;
	int ret = 0;

	if (imap_cmd_view_msgs_locked(s, idx, count, &box, &msgs,
				      error_r) < 0)
		return -1;
	for (size_t i = 0; i < count; i++) {
		if (msgs[i] != NULL)
			msgs[n++] = msgs[i];
	}
	if (n > 0)
		ret = user_expunge_locked(s->user, box, msgs, n, error_r);
	free(msgs);
	return ret;
}

void cmd_copy(struct imap_session *s, const struct imap_command *cmd)
{
	bool move = cmd->id == IMAP_CMD_MOVE;
	char target[MAILBOX_NAME_BUFSIZE];
	struct copy_source *src = NULL;
	uint32_t *src_uids = NULL, *dst_uids = NULL, uidvalidity = 0;
	size_t *idx = NULL, count = 0, n = 0;
	struct buf code = BUF_INIT;
	const char *error, *copyuid;

	if (imap_session_resolve_set(s, &cmd->u.copy.set, cmd->uid, &idx,
				     &count, &error) < 0) {
		imap_session_result(s, IMAP_RESULT_BAD, "%s", error);
		return;
	}
	if (imap_cmd_mailbox_arg(s, &cmd->u.copy.mailbox, target) < 0)
		goto out;
	if (mailstate_mailbox_find(user_state(s->user), target) == NULL) {
		imap_session_result(s, IMAP_RESULT_NO, "[TRYCREATE] Mailbox "
				    "does not exist");
		goto out;
	}
	src = malloc(sizeof(*src));
	if (count > 0) {
		src_uids = calloc(count, sizeof(*src_uids));
		dst_uids = calloc(count, sizeof(*dst_uids));
	}
	if (src == NULL || (count > 0 && (src_uids == NULL ||
					  dst_uids == NULL))) {
		imap_session_result(s, IMAP_RESULT_NO, "Out of memory");
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		struct mailstate_mailbox *box = imap_session_box_locked(s);
		const struct mailstate_msg *m;
		unsigned char *data;
		size_t len;
		int ret;

		if (box == NULL) {
			error = "The selected mailbox no longer exists";
			goto failed;
		}
		/* An expunge the client has not been told of yet: there is
		 * nothing left to copy (RFC 2180 4.4.1 lets it be left
		 * out). */
		m = imap_session_view_msg_locked(s, box, idx[i]);
		if (m == NULL)
			continue;
		copy_source_take(src, m);
		if (imap_cmd_read_message_locked(s, box, m, &data, &len,
						 &error) < 0)
			goto failed;
		ret = user_append_locked(s->user, target, data, len,
					 src->internal_date, src->flags,
					 src->kw, src->keyword_count,
					 &dst_uids[n], &uidvalidity, &error);
		free(data);
		if (ret < 0)
			goto failed;
		src_uids[n++] = src->uid;
	}
	if (move && n > 0 && expunge_sources(s, idx, count, &error) < 0)
		goto failed;

	/* With nothing copied (a UID set naming no message) there is no
	 * COPYUID: RFC 4315 has no syntax for empty sets. */
	copyuid = "";
	if (n > 0) {
		int ret = buf_printf(&code, "[COPYUID %lu ",
				     (unsigned long)uidvalidity);

		ret |= append_uid_set(&code, src_uids, n);
		ret |= buf_printf(&code, " ");
		ret |= append_uid_set(&code, dst_uids, n);
		ret |= buf_printf(&code, "] ");
		copyuid = ret < 0 ? NULL : buf_cstr(&code);
		if (copyuid == NULL) {
			/* The copy is made; only its report is lost. */
			s->out_failed = true;
			copyuid = "";
		}
	}
	if (move) {
		if (*copyuid != '\0')
			imap_session_printf(s, "* OK %sMoved\r\n", copyuid);
		imap_session_result(s, IMAP_RESULT_OK, "%sMOVE completed",
				    cmd->uid ? "UID " : "");
	} else {
		imap_session_result(s, IMAP_RESULT_OK, "%s%sCOPY completed",
				    copyuid, cmd->uid ? "UID " : "");
	}
	goto out;

failed:
	undo_copies(s, target, dst_uids, n);
	imap_session_result(s, IMAP_RESULT_NO, "%s", error);
out:
	buf_free(&code);
	free(src);
	free(src_uids);
	free(dst_uids);
	free(idx);
}
