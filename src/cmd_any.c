/*
 * cmd_any.c - commands valid in any state of a worker or storage session:
 * CAPABILITY, NOOP, LOGOUT, ID, ENABLE, NAMESPACE, IDLE, and the
 * authentication commands, which are refused because the distributor
 * authenticated the user before the session was opened.
 */
#include "autoconfig.h"

#include "imap_cmd.h"

void cmd_capability(struct imap_session *s, const struct imap_command *cmd)
{
	(void)cmd;
	imap_session_printf(s, "* CAPABILITY " IMAP_CAPABILITIES "\r\n");
	imap_session_result(s, IMAP_RESULT_OK, "CAPABILITY completed");
}

/* The dispatcher's sync after every command does NOOP's real work. */
void cmd_noop(struct imap_session *s, const struct imap_command *cmd)
{
	imap_session_result(s, IMAP_RESULT_OK, "%s completed", cmd->name);
}

void cmd_logout(struct imap_session *s, const struct imap_command *cmd)
{
	(void)cmd;
	imap_session_printf(s, "* BYE Logging out\r\n");
	imap_session_result(s, IMAP_RESULT_OK, "LOGOUT completed");
	s->closing = true;
}

void cmd_no_auth(struct imap_session *s, const struct imap_command *cmd)
{
	imap_session_result(s, IMAP_RESULT_BAD, "%s: already authenticated",
			    cmd->name);
}

/* RFC 2971.  The client's fields are not logged: they are client data of
 * no use to an operator of an internal node. */
void cmd_id(struct imap_session *s, const struct imap_command *cmd)
{
	(void)cmd;
	imap_session_printf(s, "* ID (\"name\" \"pluto\" \"version\" \""
			       PACKAGE_VERSION "\")\r\n");
	imap_session_result(s, IMAP_RESULT_OK, "ID completed");
}

/* RFC 5161.  Nothing this server implements can be enabled, so the
 * answer is an empty ENABLED, as the RFC asks for unknown names. */
void cmd_enable(struct imap_session *s, const struct imap_command *cmd)
{
	(void)cmd;
	imap_session_printf(s, "* ENABLED\r\n");
	imap_session_result(s, IMAP_RESULT_OK, "ENABLE completed");
}

/* RFC 2342: one personal namespace, the user's mailboxes. */
void cmd_namespace(struct imap_session *s, const struct imap_command *cmd)
{
	(void)cmd;
	imap_session_printf(s, "* NAMESPACE ((\"\" ");
	imap_session_append_string(s, &s->sep, 1);
	imap_session_printf(s, ")) NIL NIL\r\n");
	imap_session_result(s, IMAP_RESULT_OK, "NAMESPACE completed");
}

/* RFC 2177.  The handler only starts IDLE: the session's read loop runs
 * it (it needs the input buffer, to find the DONE) and answers the tag. */
void cmd_idle(struct imap_session *s, const struct imap_command *cmd)
{
	(void)cmd;
	imap_session_printf(s, "+ idling\r\n");
	imap_session_result(s, IMAP_RESULT_OK, "IDLE terminated");
	s->idling = true;
}
