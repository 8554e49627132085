/*
 * imap_cmd.h - the command table of worker and storage sessions and the
 * handlers it points to (one cmd_*.c file per command family).
 *
 * imap_cmd_execute() looks a parsed command up, checks that the session's
 * state allows it, runs the handler holding the user's lock, brings the
 * client's view of the selected mailbox up to date, and appends the tagged
 * answer, all to the session's output buffer.
 *
 * A handler runs with the user's lock held, so it may read and change the
 * state but must not do network I/O; it appends untagged responses with
 * imap_session_printf() and sets its tagged answer with
 * imap_session_result().  Client data in a handler is bounded by the
 * parser's limits and validated before use (mailbox_name_validate for
 * every mailbox argument).
 */
#ifndef PLUTO_IMAP_CMD_H
#define PLUTO_IMAP_CMD_H

#include "imap_parser.h"
#include "imap_session.h"

/* A non-UID FETCH, STORE or SEARCH: no EXPUNGE may be sent while it runs
 * (RFC 3501 7.4.1). */
#define IMAP_CMD_F_NO_EXPUNGE (1U << 0)
/* Needs a writable selected mailbox (not after EXAMINE). */
#define IMAP_CMD_F_WRITE (1U << 1)

typedef void imap_cmd_handler(struct imap_session *s,
			      const struct imap_command *cmd);

struct imap_cmd_def {
	enum imap_cmd_id id;
	imap_cmd_handler *handler;	/* NULL: not supported yet */
	unsigned states;		/* enum imap_state bits */
	unsigned flags;			/* IMAP_CMD_F_* */
};

/* The table entry of id; never NULL for a valid id. */
const struct imap_cmd_def *imap_cmd_find(enum imap_cmd_id id);

/* Runs cmd in s as described above. */
void imap_cmd_execute(struct imap_session *s, const struct imap_command *cmd);

/* The capabilities this server implements, for CAPABILITY. */
#define IMAP_CAPABILITIES \
	"IMAP4rev1 LITERAL+ ID ENABLE NAMESPACE UNSELECT UIDPLUS MOVE IDLE"

/* The largest message file a command reads into memory. */
#define IMAP_CMD_MESSAGE_MAX ((uint64_t)1024 * 1024 * 1024)

/* Validates a mailbox argument into its canonical name.  On failure sets
 * the NO answer and returns -1. */
int imap_cmd_mailbox_arg(struct imap_session *s, const struct imap_string *arg,
			 char canon_r[MAILBOX_NAME_BUFSIZE]);

/* Expunges the messages of the selected view flagged \Deleted, or only
 * those of them at the view indexes idx[0..count) when idx is not NULL
 * (UID EXPUNGE).  EXPUNGE responses come from the sync that follows.
 * Returns 0, or -1 with *error_r (nothing expunged). */
int imap_cmd_expunge_deleted_locked(struct imap_session *s, const size_t *idx,
				    size_t count, const char **error_r);

/* Looks up the view indexes idx[0..count) of the selected mailbox: sets
 * *box_r and *msgs_r to a new array (caller frees) whose entry i is the
 * message of idx[i], or NULL when it is gone (expunged, not yet
 * reported).  Returns 0, or -1 with *error_r (a NO text: the mailbox no
 * longer exists, or out of memory). */
int imap_cmd_view_msgs_locked(struct imap_session *s, const size_t *idx,
			      size_t count, struct mailstate_mailbox **box_r,
			      const struct mailstate_msg ***msgs_r,
			      const char **error_r);

/*
 * Reads the whole of msg (in box) into *data_r (caller frees) and its
 * length into *len_r.  Called holding the user's lock, it drops the lock
 * while reading the file (and writes out buffered output when much has
 * piled up) and takes it again before returning, so every pointer into
 * the state the caller held is stale afterwards: look messages up again
 * through the view.  Returns 0, or -1 with *error_r (a NO text; lock held
 * either way).  When the connection failed meanwhile it returns -1 with
 * s->closing set.
 */
int imap_cmd_read_message_locked(struct imap_session *s,
				 struct mailstate_mailbox *box,
				 const struct mailstate_msg *msg,
				 unsigned char **data_r, size_t *len_r,
				 const char **error_r);

/* cmd_any.c: any state. */
imap_cmd_handler cmd_capability, cmd_noop, cmd_logout, cmd_no_auth, cmd_id,
	cmd_enable, cmd_namespace, cmd_idle;
/* cmd_mailbox.c: mailboxes and subscriptions. */
imap_cmd_handler cmd_create, cmd_delete, cmd_rename, cmd_subscribe,
	cmd_list, cmd_status;
/* cmd_select.c: entering and leaving the selected state. */
imap_cmd_handler cmd_select, cmd_close, cmd_unselect, cmd_check;
/* cmd_message.c: messages. */
imap_cmd_handler cmd_append, cmd_expunge, cmd_store;
/* cmd_fetch.c */
imap_cmd_handler cmd_fetch;
/* cmd_search.c */
imap_cmd_handler cmd_search;
/* cmd_copy.c: COPY, MOVE and their UID forms. */
imap_cmd_handler cmd_copy;

#endif
