/*
 * imap_session.h - one internal IMAP session on a worker or the storage
 * node, after the opening line (doc/protocol.md): the read loop, output
 * buffering, the RFC 3501 state machine and the session's view of its
 * selected mailbox.
 *
 * A session runs on its connection's thread and is used by that thread
 * only.  It reads the user's state under the user's lock (user_store.h)
 * and never writes to the network while holding it: every command's
 * responses are collected in the session's output buffer under the lock
 * and written after it was dropped, at the latest before the session
 * blocks on the next read (so a batch of pipelined commands costs one
 * write).
 *
 * The struct is public to the command files (imap_cmd.c, cmd_*.c) of this
 * module only; everybody else uses imap_session_new/run/free.
 */
#ifndef PLUTO_IMAP_SESSION_H
#define PLUTO_IMAP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "imap_parser.h"
#include "log.h"
#include "mailbox_name.h"
#include "mailstate.h"

struct conn;
struct server;
struct user;

/* RFC 3501 states after authentication, as bits so that the command table
 * can list several.  (Not authenticated does not exist here: the
 * distributor authenticated the user.  Logout is the session ending.) */
enum imap_state {
	IMAP_STATE_AUTH = 1U << 0,
	IMAP_STATE_SELECTED = 1U << 1,
};
#define IMAP_STATES_ANY (IMAP_STATE_AUTH | IMAP_STATE_SELECTED)

/*
 * The selected mailbox as this session last reported it to its client.
 * Sequence numbers in commands resolve against it, and comparing it with
 * the state tells which EXPUNGE, EXISTS and FETCH (FLAGS) responses the
 * client still needs.  Messages are kept by identity (tag, owned copy)
 * and UID, in the order the client numbers them, which is ascending UID.
 */
struct imap_view_msg {
	char *tag;
	uint32_t uid;
	unsigned flags;		/* OP_FLAG_* last reported */
	uint32_t kw_digest;	/* keywords last reported, hashed */
	/* Expunged, but not yet reported: a FETCH, STORE or SEARCH may not
	 * send EXPUNGE (RFC 3501 7.4.1), so the number stays taken until
	 * the next command that may. */
	bool gone;
};

struct imap_view {
	char name[MAILBOX_NAME_BUFSIZE];	/* canonical, the state key */
	uint32_t uidvalidity;
	bool read_only;				/* EXAMINE */
	uint64_t version;	/* user_version_locked() when last synced */
	struct imap_view_msg *msgs;
	size_t count, cap;
	/* Keywords announced in the last FLAGS response (owned). */
	char **keywords;
	size_t keyword_count;
};

enum imap_result {
	IMAP_RESULT_NONE = 0,
	IMAP_RESULT_OK,
	IMAP_RESULT_NO,
	IMAP_RESULT_BAD,
};

struct imap_session {
	struct conn *conn;
	struct user *user;
	struct server *server;		/* for server_stopping() */
	const struct pluto_config *config;
	char sep;			/* hierarchy separator */
	struct imap_parser *parser;

	struct buf out;			/* responses not yet written */
	bool out_failed;		/* out of memory: close */

	enum imap_state state;
	struct imap_view view;		/* valid in IMAP_STATE_SELECTED */

	/* Set by a handler: end the session after its tagged answer
	 * (LOGOUT, or the selected mailbox vanished). */
	bool closing;

	/* IDLE (RFC 2177): set by its handler; the read loop then waits
	 * for DONE, reporting changes as they happen, and answers with
	 * idle_tag (owned) when it ends. */
	bool idling;
	char *idle_tag;

	/* The tagged answer of the command being run, which the dispatcher
	 * writes after the untagged updates. */
	enum imap_result result;
	struct buf result_text;
};

/*
 * Public API (imapd.c).
 */

/* A session for user on conn (both borrowed: the caller closes and frees
 * them after imap_session_free).  NULL when out of memory. */
struct imap_session *imap_session_new(struct conn *conn, struct user *user,
				      const struct pluto_config *config,
				      struct server *server);
/* Serves IMAP until LOGOUT, the peer closing, the idle timeout, an I/O
 * error or the server stopping.  Never fails in a way the caller must
 * handle: whatever happened is logged. */
void imap_session_run(struct imap_session *s);
void imap_session_free(struct imap_session **s);

/*
 * For the command files.
 */

/* Appends to the output; a failed allocation sets out_failed. */
void imap_session_printf(struct imap_session *s, const char *fmt, ...)
	PLUTO_PRINTF(2, 3);
void imap_session_append(struct imap_session *s, const void *data,
			 size_t len);
/* A string as an IMAP quoted string, or as a literal when it holds bytes
 * a quoted string cannot carry (CR, LF, NUL, 8-bit). */
void imap_session_append_string(struct imap_session *s, const char *data,
				size_t len);
/* "(\Seen \Flagged kw ...)" for a message. */
void imap_session_append_flags(struct imap_session *s,
			       const struct mailstate_msg *msg);

/* Sets the tagged answer of the current command (the last call wins). */
void imap_session_result(struct imap_session *s, enum imap_result result,
			 const char *fmt, ...) PLUTO_PRINTF(3, 4);

/* Writes out the buffered output.  Returns 0, or -1 when the connection
 * failed (the session then ends).  Never call it holding the user lock. */
int imap_session_flush(struct imap_session *s);

/*
 * The selected view.  Every _locked function is called holding the
 * user's lock.
 */

/* Forgets the view and leaves the selected state. */
void imap_session_unselect(struct imap_session *s);
/* Makes box the selected mailbox: loads the view from the state and
 * answers the untagged FLAGS/EXISTS/... of SELECT.  Returns 0, or -1
 * (out of memory; the session is left in the authenticated state). */
int imap_session_select_locked(struct imap_session *s,
			       struct mailstate_mailbox *box, bool read_only);
/* The selected mailbox in the state, or NULL when it vanished. */
struct mailstate_mailbox *imap_session_box_locked(struct imap_session *s);
/* The message that view entry index stands for, or NULL when it is gone
 * (expunged, not yet reported). */
const struct mailstate_msg *
imap_session_view_msg_locked(struct imap_session *s,
			     struct mailstate_mailbox *box, size_t index);
/* Brings the client up to date with the state: FLAGS for new keywords,
 * EXPUNGE (only when allow_expunge), EXISTS and FETCH (FLAGS). */
void imap_session_sync_locked(struct imap_session *s, bool allow_expunge);
/* Sends a FLAGS response first when msgs[0..n) (NULL entries are
 * skipped) carry keywords the client has not been told about. */
void imap_session_announce_keywords_locked(
	struct imap_session *s, const struct mailstate_msg *const *msgs,
	size_t n);
/* Records msg's current flags as reported for view entry index. */
void imap_session_view_mark_reported(struct imap_session *s, size_t index,
				     const struct mailstate_msg *msg);
/* True when view entry index holds msg's current flags. */
bool imap_session_view_is_current(const struct imap_session *s, size_t index,
				  const struct mailstate_msg *msg);
/* Resolves a sequence set (or a UID set) against the view: *idx_r is a
 * new array (caller frees) of view indexes in ascending order.  A message
 * number beyond the view, or any message number in an empty mailbox,
 * makes it fail with -1 and *error_r (answer BAD); UIDs that do not exist
 * are skipped, as RFC 3501 asks.  Out of memory: -1 too. */
int imap_session_resolve_set(struct imap_session *s,
			     const struct imap_seqset *set, bool uid,
			     size_t **idx_r, size_t *count_r,
			     const char **error_r);

#endif
