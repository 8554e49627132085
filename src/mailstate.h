/*
 * mailstate.h - one user's replicated mail state: mailboxes, messages,
 * UIDs and flags, as op-based CRDTs.
 *
 * No locks: the caller holds the user's mutex around every call, and keeps
 * returned pointers only while holding it.  No I/O except the system's
 * random source for tags and the clock for UIDVALIDITY.
 *
 * Every mutating function is the source step of an operation: it checks
 * the request against local state, builds the struct op (op.h) that
 * describes it, applies that op locally through the same code a remote op
 * takes, and hands it to the caller to journal and replicate.
 * mailstate_apply() is the downstream step for ops from a peer (or journal
 * replay).  Applying is idempotent; it assumes causal delivery (the
 * applier's vector-clock rule), and a late duplicate of an already applied
 * op has no effect as long as tombstones have not been purged.
 *
 * The model and the merge rules
 * -----------------------------
 *
 * Mailboxes.  The structure is an OR-Set of names (orset.h).  A name is a
 * live mailbox while it has a tag.  CREATE adds a tag; DELETE removes the
 * tags it observed; RENAME removes the observed tags of the old name and
 * adds one to the new; APPEND also adds its message tag to the mailbox's
 * name (replacing the tags it observed, so they do not pile up).  Hence:
 *  - create || delete of one name: the mailbox exists (add wins);
 *  - append || delete: the mailbox exists afterwards and holds exactly the
 *    messages the deleter had not seen (the IMAP-CRDT rule);
 *  - rename || append to the old name: the appended message stays under
 *    the old name, which exists again;
 *  - rename || delete of the old name: the deleter's messages are gone,
 *    the new name exists (empty unless it received unseen messages).
 * Per name the state also keeps, even while the name is dead, UIDVALIDITY
 * and UIDNEXT as max-registers fed only by values the ops carry, so every
 * replica computes the same numbers: a (re)create or rename picks a
 * UIDVALIDITY above every one the user has seen, and UIDNEXT never goes
 * down.  mailstate_mailbox_uidnext() is that register or the highest UID
 * present plus one, whichever is larger.
 *
 * Messages.  A message is identified by the tag minted when it was
 * appended; that identity is immutable (it names the Maildir file).
 * Ops name messages by tag, wherever they currently are, so a store or an
 * expunge finds a message that a concurrent rename moved.  EXPUNGE and
 * DELETE remove the messages they observed; a removed message never comes
 * back:
 *  - store || expunge of one message: expunge wins (a store adds flags, not
 *    the message; the IMAP-CRDT paper lets store re-create the message under
 *    a new identity, which would re-create its file and is not done here);
 *  - append || expunge cannot touch the same message (tags are unique).
 * Where a message lives is itself a multi-value register of placements
 * (tag, mailbox): APPEND places it under its own tag, RENAME replaces the
 * placements it observed with its own tag.  The mailbox is the placement
 * with the greatest tag, so two concurrent renames of one mailbox put its
 * messages in the same place on every replica.
 *
 * Flags.  Per message, flags (the five system flags and keywords) form an
 * OR-Set of (flag, tag) pairs: APPEND adds its flags under the message tag,
 * STORE adds under the op's fresh tag and removes the pairs it observed.
 * +FLAGS of a flag that is already set is a no-op (nothing is shipped).
 *  - two concurrent stores: +X || -X leaves X set (add wins); otherwise
 *    their effects simply combine;
 *  - FLAGS (replace) = add what is missing, remove what was observed.
 * Keywords compare case-insensitively.
 *
 * UIDs.  The replica that accepts an APPEND assigns UIDNEXT and carries the
 * UID in the op.  If worker and storage both accepted appends during a
 * partition, two messages of one mailbox can share a UID; both are kept,
 * ordered by tag.  The worker (owner of the UID space) then calls
 * mailstate_resolve_uid_conflicts(), which gives every such message but the
 * one with the lowest tag a fresh UID and returns UID_RENUMBER ops; clients
 * see an EXPUNGE of the old UID and a new message.  Applying a renumbering
 * only ever raises a UID.
 *
 * Limits.  Sources refuse more than MAILSTATE_KEYWORDS_MAX distinct
 * keywords per message and MAILSTATE_MAILBOXES_MAX live mailboxes; apply
 * keeps at most MAILSTATE_FLAG_TAGS_MAX flag tags per message (only a
 * misbehaving peer gets there, and then replicas may disagree on flags).
 *
 * Tombstones.  Removed tags (of messages, placements and flags) are
 * remembered so late duplicates stay harmless; mailstate_purge_tombstones()
 * forgets them once every peer has acknowledged everything applied so far.
 */
#ifndef PLUTO_MAILSTATE_H
#define PLUTO_MAILSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "op.h"

#define MAILSTATE_KEYWORDS_MAX 32
#define MAILSTATE_MAILBOXES_MAX 10000
#define MAILSTATE_FLAG_TAGS_MAX 256
#define MAILSTATE_SERIAL_VERSION 1

struct mailstate;
struct mailstate_mailbox;
struct mailstate_flag_tag;
struct mailstate_place;

/* A message.  The public fields are read-only for callers; the rest is
 * private to mailstate.c. */
struct mailstate_msg {
	char *tag;		/* identity, 1..ORSET_TAG_MAX chars */
	uint32_t uid;
	int64_t internal_date;	/* seconds since the epoch */
	uint64_t size;		/* RFC822.SIZE: the body length */
	unsigned flags;		/* OP_FLAG_* currently set */

	struct mailstate_mailbox *mailbox;
	struct mailstate_flag_tag *ftags;	/* sorted (flag, tag) */
	size_t ftag_count;
	struct mailstate_place *places;		/* sorted by tag */
	size_t place_count;
};

enum mailstate_store_mode {
	MAILSTATE_STORE_ADD,		/* +FLAGS */
	MAILSTATE_STORE_REMOVE,		/* -FLAGS */
	MAILSTATE_STORE_REPLACE,	/* FLAGS */
};

/* An empty state for user (copied; must satisfy op_user_valid), or NULL
 * when out of memory or the name is invalid. */
struct mailstate *mailstate_new(const char *user);
void mailstate_free(struct mailstate **state);
const char *mailstate_user(const struct mailstate *state);

/*
 * Reading.  Pointers are borrowed until the state is next modified.
 */

/* The live mailbox called name (byte-exact: the caller canonicalises INBOX
 * and the encoding), or NULL. */
struct mailstate_mailbox *mailstate_mailbox_find(struct mailstate *state,
						 const char *name);
/* Names of the live mailboxes in strcmp order; *names_r is a new array the
 * caller frees (not the strings, which are borrowed).  Returns 0 or -1 when
 * out of memory. */
int mailstate_mailbox_list(const struct mailstate *state,
			   const char ***names_r, size_t *count_r);
const char *mailstate_mailbox_name(const struct mailstate_mailbox *box);
uint32_t mailstate_mailbox_uidvalidity(const struct mailstate_mailbox *box);
/* The next UID to assign; OP_UIDNEXT_MAX means the UID space is used up. */
uint64_t mailstate_mailbox_uidnext(const struct mailstate_mailbox *box);
/* Number of messages (EXISTS). */
size_t mailstate_mailbox_count(const struct mailstate_mailbox *box);
/* The message at index (sequence number - 1), ordered by UID then tag;
 * NULL when out of range.  O(1). */
const struct mailstate_msg *
mailstate_mailbox_msg_at(const struct mailstate_mailbox *box, size_t index);
/* Index of the first message whose UID is >= uid (count when none), for
 * UID ranges.  O(log n). */
size_t mailstate_mailbox_uid_lower_bound(const struct mailstate_mailbox *box,
					 uint32_t uid);
/* The index of the message with that UID.  Returns false when absent. */
bool mailstate_mailbox_uid_find(const struct mailstate_mailbox *box,
				uint32_t uid, size_t *index_r);
/* The message with that identity tag, in whatever mailbox, or NULL. */
const struct mailstate_msg *mailstate_msg_find(const struct mailstate *state,
					       const char *tag);
/* Fills kw_r with up to max distinct keywords of msg (borrowed) and
 * returns how many it has in all. */
size_t mailstate_msg_keywords(const struct mailstate_msg *msg,
			      const char **kw_r, size_t max);
bool mailstate_msg_has_keyword(const struct mailstate_msg *msg,
			       const char *keyword);

/*
 * Source steps.  Each returns 0 and a new op in *op_r (caller frees with
 * op_free), already applied locally, or -1 with *error_r and the state
 * unchanged.  (Only when memory runs out while applying may a change be
 * half made; the caller should then reload the user from disk.)
 */

int mailstate_create(struct mailstate *state, const char *name,
		     struct op **op_r, const char **error_r);
int mailstate_delete(struct mailstate *state, const char *name,
		     struct op **op_r, const char **error_r);
/* Renames one mailbox and moves its messages; the IMAP layer issues one
 * rename per inferior, and handles RENAME INBOX (move the messages, keep
 * INBOX) itself. */
int mailstate_rename(struct mailstate *state, const char *old_name,
		     const char *new_name, struct op **op_r,
		     const char **error_r);
/* Appends a message of body_len bytes with the given flags (OP_FLAG_*) and
 * keywords.  The op's body points at body (borrowed): keep it until the op
 * is journalled and freed.  The new message's UID is (*op_r)->uid and its
 * tag (*op_r)->tag. */
int mailstate_append(struct mailstate *state, const char *name,
		     const void *body, size_t body_len, int64_t internal_date,
		     unsigned flags, const char *const *keywords,
		     size_t keyword_count, struct op **op_r,
		     const char **error_r);
/* Expunges msgs, which must all be in box.  With count 0 (or when called
 * through mailstate_expunge_deleted with nothing flagged \Deleted) it
 * returns 0 with *op_r NULL. */
int mailstate_expunge(struct mailstate *state, struct mailstate_mailbox *box,
		      const struct mailstate_msg *const *msgs, size_t count,
		      struct op **op_r, const char **error_r);
int mailstate_expunge_deleted(struct mailstate *state,
			      struct mailstate_mailbox *box, struct op **op_r,
			      const char **error_r);
/* STORE of flags/keywords on msgs of box.  Returns 0 with *op_r NULL when
 * no message would change. */
int mailstate_store(struct mailstate *state, struct mailstate_mailbox *box,
		    const struct mailstate_msg *const *msgs, size_t count,
		    enum mailstate_store_mode mode, unsigned flags,
		    const char *const *keywords, size_t keyword_count,
		    struct op **op_r, const char **error_r);
/* Worker only: renumbers every message that shares its UID with one of
 * lower tag.  *ops_r receives an array of *count_r UID_RENUMBER ops (one
 * per mailbox concerned; NULL and 0 when there is no conflict), already
 * applied; the caller frees each op and the array. */
int mailstate_resolve_uid_conflicts(struct mailstate *state,
				    struct op ***ops_r, size_t *count_r,
				    const char **error_r);

/*
 * Downstream step.  Applies op (from a peer, or replayed from the journal).
 * Returns 0 when the state now reflects op (including when it already
 * did), -1 with *error_r when op is invalid or for another user (state
 * unchanged) or memory ran out (re-applying completes it).
 */
int mailstate_apply(struct mailstate *state, const struct op *op,
		    const char **error_r);

/* Forgets all tombstones (see above for when that is safe). */
void mailstate_purge_tombstones(struct mailstate *state);
size_t mailstate_tombstone_count(const struct mailstate *state);

/* Appends the canonical encoding of the whole state (two replicas in the
 * same state produce the same bytes) to out, for snapshots; checksumming
 * is the caller's.  Returns 0 or -1 when out of memory. */
int mailstate_serialize(const struct mailstate *state, struct buf *out);
/* Rebuilds a state from exactly len bytes of mailstate_serialize output.
 * Strict: any malformed, out-of-order, duplicate or trailing data is an
 * error.  Returns the state or NULL with *error_r. */
struct mailstate *mailstate_deserialize(const void *data, size_t len,
					const char **error_r);

#endif
