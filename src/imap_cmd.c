/*
 * imap_cmd.c - the command table and the dispatcher of worker and storage
 * sessions.
 *
 * One table row per command, in enum imap_cmd_id order: its handler, the
 * states it is valid in and its flags.  The dispatcher is the only place
 * that checks states and takes the user's lock, so handlers contain
 * nothing but their command.  Commands the parser knows but this server
 * does not implement yet have no handler and are answered BAD.
 */
#include "autoconfig.h"

#include "imap_cmd.h"

#include <stddef.h>

#include "log.h"
#include "user_store.h"

#define S_ANY IMAP_STATES_ANY
#define S_SEL IMAP_STATE_SELECTED
#define F_NOEXP IMAP_CMD_F_NO_EXPUNGE
#define F_WRITE IMAP_CMD_F_WRITE

static const struct imap_cmd_def cmd_table[IMAP_CMD_COUNT] = {
	{ IMAP_CMD_CAPABILITY, cmd_capability, S_ANY, 0 },
	{ IMAP_CMD_NOOP, cmd_noop, S_ANY, 0 },
	{ IMAP_CMD_LOGOUT, cmd_logout, S_ANY, 0 },
	{ IMAP_CMD_STARTTLS, cmd_no_auth, S_ANY, 0 },
	{ IMAP_CMD_AUTHENTICATE, cmd_no_auth, S_ANY, 0 },
	{ IMAP_CMD_LOGIN, cmd_no_auth, S_ANY, 0 },
	{ IMAP_CMD_SELECT, cmd_select, S_ANY, 0 },
	{ IMAP_CMD_EXAMINE, cmd_select, S_ANY, 0 },
	{ IMAP_CMD_CREATE, cmd_create, S_ANY, 0 },
	{ IMAP_CMD_DELETE, cmd_delete, S_ANY, 0 },
	{ IMAP_CMD_RENAME, cmd_rename, S_ANY, 0 },
	{ IMAP_CMD_SUBSCRIBE, cmd_subscribe, S_ANY, 0 },
	{ IMAP_CMD_UNSUBSCRIBE, cmd_subscribe, S_ANY, 0 },
	{ IMAP_CMD_LIST, cmd_list, S_ANY, 0 },
	{ IMAP_CMD_LSUB, cmd_list, S_ANY, 0 },
	{ IMAP_CMD_STATUS, cmd_status, S_ANY, 0 },
	{ IMAP_CMD_APPEND, cmd_append, S_ANY, 0 },
	{ IMAP_CMD_CHECK, cmd_check, S_SEL, 0 },
	{ IMAP_CMD_CLOSE, cmd_close, S_SEL, 0 },
	{ IMAP_CMD_EXPUNGE, cmd_expunge, S_SEL, F_WRITE },
	{ IMAP_CMD_SEARCH, NULL, S_SEL, F_NOEXP },
	{ IMAP_CMD_FETCH, NULL, S_SEL, F_NOEXP },
	{ IMAP_CMD_STORE, cmd_store, S_SEL, F_NOEXP | F_WRITE },
	{ IMAP_CMD_COPY, NULL, S_SEL, 0 },
	{ IMAP_CMD_MOVE, NULL, S_SEL, F_WRITE },
	{ IMAP_CMD_IDLE, NULL, S_ANY, 0 },
	{ IMAP_CMD_UNSELECT, cmd_unselect, S_SEL, 0 },
	{ IMAP_CMD_NAMESPACE, cmd_namespace, S_ANY, 0 },
	{ IMAP_CMD_ID, cmd_id, S_ANY, 0 },
	{ IMAP_CMD_ENABLE, cmd_enable, S_ANY, 0 },
};

const struct imap_cmd_def *imap_cmd_find(enum imap_cmd_id id)
{
	if ((unsigned)id >= IMAP_CMD_COUNT)
		return NULL;
	return &cmd_table[id];
}

int imap_cmd_mailbox_arg(struct imap_session *s, const struct imap_string *arg,
			 char canon_r[MAILBOX_NAME_BUFSIZE])
{
	const char *error;

	if (mailbox_name_validate(arg->data, arg->len, s->sep, canon_r,
				  &error) < 0) {
		imap_session_result(s, IMAP_RESULT_NO, "Invalid mailbox name: "
				    "%s", error);
		return -1;
	}
	return 0;
}

static const char *result_word(enum imap_result r)
{
	switch (r) {
	case IMAP_RESULT_OK:
		return "OK";
	case IMAP_RESULT_NO:
		return "NO";
	case IMAP_RESULT_BAD:
	case IMAP_RESULT_NONE:
		break;
	}
	return "BAD";
}

void imap_cmd_execute(struct imap_session *s, const struct imap_command *cmd)
{
	const struct imap_cmd_def *def = imap_cmd_find(cmd->id);
	bool allow_expunge;

	s->result = IMAP_RESULT_NONE;
	buf_reset(&s->result_text);
	if (def == NULL || def->handler == NULL) {
		imap_session_printf(s, "%s BAD %s%s is not supported yet\r\n",
				    cmd->tag, cmd->uid ? "UID " : "",
				    cmd->name);
		return;
	}
	if ((def->states & s->state) == 0) {
		imap_session_printf(s, "%s BAD No mailbox selected\r\n",
				    cmd->tag);
		return;
	}
	allow_expunge = (def->flags & IMAP_CMD_F_NO_EXPUNGE) == 0 || cmd->uid;

	user_lock(s->user);
	if ((def->flags & IMAP_CMD_F_WRITE) != 0 && s->view.read_only) {
		imap_session_result(s, IMAP_RESULT_NO, "[READ-ONLY] The "
				    "mailbox is read-only (EXAMINE)");
	} else {
		def->handler(s, cmd);
	}
	imap_session_sync_locked(s, allow_expunge);
	user_unlock(s->user);

	if (s->result == IMAP_RESULT_NONE) {
		/* A handler that forgot to answer is a bug; answering
		 * keeps the client in step all the same. */
		log_error("%s set no result", cmd->name);
		imap_session_result(s, IMAP_RESULT_NO, "Internal error");
	}
	imap_session_printf(s, "%s %s ", cmd->tag, result_word(s->result));
	imap_session_append(s, s->result_text.data, s->result_text.len);
	imap_session_append(s, "\r\n", 2);
}
