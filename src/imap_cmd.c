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

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "user_store.h"

/* Output beyond this is written while a command reading messages has the
 * user's lock dropped, so that FETCH 1:* BODY[] does not pile up a whole
 * mailbox in memory. */
#define CMD_FLUSH_AT ((size_t)256 * 1024)

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
	{ IMAP_CMD_SEARCH, cmd_search, S_SEL, F_NOEXP },
	{ IMAP_CMD_FETCH, cmd_fetch, S_SEL, F_NOEXP },
	{ IMAP_CMD_STORE, cmd_store, S_SEL, F_NOEXP | F_WRITE },
	{ IMAP_CMD_COPY, cmd_copy, S_SEL, 0 },
	{ IMAP_CMD_MOVE, cmd_copy, S_SEL, F_WRITE },
	{ IMAP_CMD_IDLE, cmd_idle, S_ANY, 0 },
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

int imap_cmd_view_msgs_locked(struct imap_session *s, const size_t *idx,
			      size_t count, struct mailstate_mailbox **box_r,
			      const struct mailstate_msg ***msgs_r,
			      const char **error_r)
{
	struct mailstate_mailbox *box = imap_session_box_locked(s);
	const struct mailstate_msg **msgs;

	if (box == NULL) {
		*error_r = "The selected mailbox no longer exists";
		return -1;
	}
	msgs = calloc(count, sizeof(*msgs));
	if (msgs == NULL) {
		*error_r = "Out of memory";
		return -1;
	}
	for (size_t i = 0; i < count; i++)
		msgs[i] = imap_session_view_msg_locked(s, box, idx[i]);
	*box_r = box;
	*msgs_r = msgs;
	return 0;
}

int imap_cmd_read_message_locked(struct imap_session *s,
				 struct mailstate_mailbox *box,
				 const struct mailstate_msg *msg,
				 unsigned char **data_r, size_t *len_r,
				 const char **error_r)
{
	unsigned char *data;
	uint64_t size;
	size_t len = 0;
	int fd;

	*data_r = NULL;
	*len_r = 0;
	if (user_message_open_locked(s->user, box, msg, &fd, &size,
				     error_r) < 0)
		return -1;
	if (size > IMAP_CMD_MESSAGE_MAX) {
		close(fd);
		*error_r = "Message too large to read";
		return -1;
	}
	/* One more byte than needed, so that an empty message is not a
	 * zero-byte allocation. */
	data = malloc((size_t)size + 1);
	if (data == NULL) {
		close(fd);
		*error_r = "Out of memory";
		return -1;
	}
	user_unlock(s->user);
	while (len < (size_t)size) {
		ssize_t n = pread(fd, data + len, (size_t)size - len,
				  (off_t)len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (s->out.len >= CMD_FLUSH_AT && imap_session_flush(s) < 0)
		s->closing = true;
	user_lock(s->user);
	if (len < (size_t)size) {
		/* Message files are written once and never change: a short
		 * read is an I/O error. */
		log_warnx("short read of a message file of %s",
			  user_name(s->user));
		free(data);
		*error_r = "Cannot read the message";
		return -1;
	}
	if (s->closing) {
		free(data);
		*error_r = "Connection lost";
		return -1;
	}
	*data_r = data;
	*len_r = len;
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

	if (s->idling) {
		/* IDLE answers once the client said DONE (imap_session.c). */
		s->idle_tag = strdup(cmd->tag);
		if (s->idle_tag == NULL) {
			s->idling = false;
			s->out_failed = true;
		}
		return;
	}

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
