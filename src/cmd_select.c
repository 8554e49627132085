/*
 * cmd_select.c - entering and leaving the selected state: SELECT,
 * EXAMINE (read-only), CLOSE, UNSELECT (RFC 3691) and CHECK.
 */
#include "autoconfig.h"

#include "imap_cmd.h"

#include "user_store.h"

void cmd_select(struct imap_session *s, const struct imap_command *cmd)
{
	char name[MAILBOX_NAME_BUFSIZE];
	struct mailstate_mailbox *box;
	bool examine = cmd->id == IMAP_CMD_EXAMINE;

	/* RFC 3501 6.3.1: a SELECT, even a failing one, first deselects
	 * the current mailbox. */
	imap_session_unselect(s);
	if (imap_cmd_mailbox_arg(s, &cmd->u.mailbox.name, name) < 0)
		return;
	box = mailstate_mailbox_find(user_state(s->user), name);
	if (box == NULL) {
		imap_session_result(s, IMAP_RESULT_NO, "Mailbox does not "
				    "exist");
		return;
	}
	if (imap_session_select_locked(s, box, examine) < 0) {
		imap_session_result(s, IMAP_RESULT_NO, "Out of memory");
		return;
	}
	imap_session_result(s, IMAP_RESULT_OK, "[%s] %s completed",
			    examine ? "READ-ONLY" : "READ-WRITE", cmd->name);
}

void cmd_close(struct imap_session *s, const struct imap_command *cmd)
{
	const char *error;

	(void)cmd;
	/* CLOSE expunges silently: no EXPUNGE responses, because the
	 * client is leaving the mailbox anyway. */
	if (!s->view.read_only &&
	    imap_cmd_expunge_deleted_locked(s, NULL, 0, &error) < 0) {
		imap_session_result(s, IMAP_RESULT_NO, "%s", error);
		return;
	}
	imap_session_unselect(s);
	imap_session_result(s, IMAP_RESULT_OK, "CLOSE completed");
}

void cmd_unselect(struct imap_session *s, const struct imap_command *cmd)
{
	(void)cmd;
	imap_session_unselect(s);
	imap_session_result(s, IMAP_RESULT_OK, "UNSELECT completed");
}

/* Every change is durable before its command is answered, so there is
 * nothing left for a checkpoint to do. */
void cmd_check(struct imap_session *s, const struct imap_command *cmd)
{
	(void)cmd;
	imap_session_result(s, IMAP_RESULT_OK, "CHECK completed");
}
