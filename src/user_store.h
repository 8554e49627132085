/*
 * user_store.h - a node's users: their replicated mail state, made durable
 * through the journal and materialised as Maildir++.
 *
 * One user_store per worker or storage process.  It owns the journal
 * (CRDTLayerRoot/journal), the per-user snapshots (CRDTLayerRoot/snapshots)
 * and the users' Maildirs (MaildirRoot/<user>).
 *
 * Every change goes through one function here, which, holding the user's
 * lock:
 *   1. runs the mailstate source step (the op is applied in memory),
 *   2. writes the op to the journal (an APPEND's record holds the body),
 *   3. does the Maildir work (delivery with fsync of file and directory,
 *      flag renames, unlinks, folder changes),
 *   4. waits until the journal record is durable (group commit: the fsync
 *      is shared with every other user's writers),
 * and only then returns 0, after which the caller may answer OK.  When a
 * step fails the command fails: a journal that cannot write is fatal for
 * writes until restart (the in-memory user is reloaded from disk so that it
 * shows only what is durable), and a failed Maildir step is undone by a
 * compensating op (an APPEND whose file could not be written is expunged
 * again) before NO is answered.
 *
 * Recovery.  At open, the journal is replayed over the snapshots.  A user's
 * Maildir is reconciled with its state the first time the user is used
 * (lazily, so start-up cost does not grow with the number of mailboxes):
 * folders are created, renamed or removed, files whose tag the state does
 * not hold are removed (deliveries whose journal record never became
 * durable, so were never acknowledged), files with stale flags are renamed,
 * and a message whose file is missing is written again from its journal
 * record.
 *
 * Locks.  Lock order: user_store.lock (the user map; held only to find or
 * insert a user, never during I/O), then user.lock.  user.lock is held for
 * the whole of a change, disk work included, so changes of one user are
 * serialised while different users proceed in parallel; no network I/O is
 * ever done under it.  Callers that read state (mailstate_* getters) hold
 * the user's lock through user_lock()/user_unlock().
 */
#ifndef PLUTO_USER_STORE_H
#define PLUTO_USER_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "mailstate.h"
#include "op.h"
#include "vclock.h"

struct user_store;
struct user;

struct user_store_options {
	const char *node_name;		/* this node: its clock entry, logs */
	bool is_storage;		/* storage tracks each user's worker */
	const char *maildir_root;	/* MaildirRoot */
	const char *crdt_root;		/* CRDTLayerRoot */
	char hierarchy_separator;	/* [IMAP] HierarchySeparator */
	/* A user's snapshot is rewritten after this many of its ops (0: the
	 * default, 1000). */
	unsigned snapshot_every;
	uint64_t journal_segment_size;	/* 0: the journal's default */
};

/* Opens the store: creates the directories, opens and recovers the
 * journal, replays it over the snapshots.  Returns 0, or -1 with *error_r
 * (valid until the next user_store call of this thread). */
int user_store_open(const struct user_store_options *opts,
		    struct user_store **store_r, const char **error_r);
/* Writes a snapshot of every user changed since its last one, then closes
 * everything.  No session may still hold a user. */
void user_store_free(struct user_store **store);

struct journal *user_store_journal(struct user_store *store);

/* The user called name, loaded and reconciled on first use.  The user
 * stays loaded; the pointer is valid until user_store_free.  Returns NULL
 * with *error_r when name is not a valid user name or the user's data
 * cannot be read. */
struct user *user_store_get(struct user_store *store, const char *name,
			    const char **error_r);

/* Locking around reads of the state and around the changes below. */
void user_lock(struct user *user);
void user_unlock(struct user *user);
/* The state; the caller holds the user's lock while using it. */
struct mailstate *user_state(struct user *user);
const char *user_name(const struct user *user);

/* Incremented under the user's lock by every change, local or replicated.
 * A session compares it with the value it saw last to know, in O(1),
 * whether its view of the selected mailbox may be stale. */
uint64_t user_version_locked(const struct user *user);

/* Blocks until the user's version differs from seen or timeout_ms passed
 * (negative: forever); for IDLE, which alternates it with a look at the
 * socket.  Called without the lock.  Returns the current version. */
uint64_t user_wait_change(struct user *user, uint64_t seen, int timeout_ms);

/*
 * Changes.  The caller holds the user's lock.  Each returns 0 once the
 * change is durable, or -1 with *error_r (a message fit for a NO answer)
 * and nothing changed, as far as any client can ever tell.
 */
int user_create_locked(struct user *user, const char *mailbox,
		       const char **error_r);
int user_delete_locked(struct user *user, const char *mailbox,
		       const char **error_r);
int user_rename_locked(struct user *user, const char *old_name,
		       const char *new_name, const char **error_r);
/* *uid_r (may be NULL) receives the new message's UID, *uidvalidity_r
 * (may be NULL) its mailbox's UIDVALIDITY. */
int user_append_locked(struct user *user, const char *mailbox,
		       const void *body, size_t body_len, int64_t internal_date,
		       unsigned flags, const char *const *keywords,
		       size_t keyword_count, uint32_t *uid_r,
		       uint32_t *uidvalidity_r, const char **error_r);
int user_expunge_locked(struct user *user, struct mailstate_mailbox *box,
			const struct mailstate_msg *const *msgs, size_t count,
			const char **error_r);
int user_store_flags_locked(struct user *user, struct mailstate_mailbox *box,
			    const struct mailstate_msg *const *msgs,
			    size_t count, enum mailstate_store_mode mode,
			    unsigned flags, const char *const *keywords,
			    size_t keyword_count, const char **error_r);

/* Opens a message's file for reading (FETCH): *fd_r and *size_r.  The
 * caller holds the lock for the call only; the fd stays readable after
 * the lock is dropped even if the message is then expunged. */
int user_message_open_locked(struct user *user,
			     const struct mailstate_mailbox *box,
			     const struct mailstate_msg *msg, int *fd_r,
			     uint64_t *size_r, const char **error_r);

/*
 * Subscriptions (LSUB): a per-user set of names, not replicated, kept in
 * CRDTLayerRoot/subscriptions/<user> and rewritten atomically on change.
 */
int user_subscribe_locked(struct user *user, const char *mailbox,
			  bool subscribe, const char **error_r);
/* Borrowed array of subscribed names (strcmp order) until the next
 * change; the caller holds the lock. */
const char *const *user_subscriptions_locked(struct user *user,
					     size_t *count_r);

/*
 * Replication (user_sync.c).  Every local change is a JREC_LOCAL record
 * of the journal (jrec.h), stamped with the vector clock of its link; the
 * sync sender of a peer ships the records user_store_record_for_peer()
 * selects.
 */

/* Storage: the worker a user belongs to, learnt from a failover session's
 * opening line (or from that worker's replicated ops); its local ops are
 * shipped to that worker only.  No-op on a worker. */
void user_set_home_locked(struct user *user, const char *worker);
const char *user_home_locked(const struct user *user);

/* Stores an op received from peer origin durably (a JREC_REMOTE record)
 * for the applier thread.  clock is the op's stamp, origin_lsn its
 * position in origin's journal.  Returns 1 once durable (acknowledge it;
 * *lsn_r is its position here), 0 for a duplicate already stored
 * (acknowledge and drop it), -1 with *error_r for a malformed op, an op
 * out of causal order or a disk error (close the link; the peer resends
 * from its last acknowledged position). */
int user_store_receive(struct user_store *store, const char *origin,
		       uint64_t origin_lsn, const struct vclock *clock,
		       const void *op_bytes, size_t op_len, uint64_t *lsn_r,
		       const char **error_r);
/* user_store_receive without the wait: returns 1 once the record is
 * written (*lsn_r), and the caller waits for journal_wait_durable(*lsn_r)
 * before acknowledging -- once for a whole batch, so that one fdatasync
 * covers it.  A caller that stops must still wait for what it wrote
 * before anyone asks user_store_received_lsn. */
int user_store_receive_async(struct user_store *store, const char *origin,
			     uint64_t origin_lsn, const struct vclock *clock,
			     const void *op_bytes, size_t op_len,
			     uint64_t *lsn_r, const char **error_r);
/* Highest position of peer's journal durably stored here (for HELLO). */
uint64_t user_store_received_lsn(struct user_store *store, const char *peer);
/* A copy of the clock of the link with peer (caller frees), or NULL. */
struct vclock *user_store_link_clock(struct user_store *store,
				     const char *peer);
/* Whether a decoded journal record is to be shipped to peer. */
struct jrec;
bool user_store_record_for_peer(const struct user_store *store,
				const struct jrec *jrec, const char *peer);
/* The position up to which this node's journal has been applied (local
 * records count as applied when written). */
uint64_t user_store_applied_lsn(struct user_store *store);
/* Starts the thread applying received ops; user_store_free stops it. */
int user_store_start_applier(struct user_store *store, const char **error_r);

/* Removes journal segments no longer needed: everything below
 * peers_safe_lsn (what every peer acknowledged, as the sync layer knows
 * it), applied, and covered by snapshots -- users holding older records
 * get a snapshot first.  The link clocks are checkpointed before, since
 * replay can no longer rebuild them from the trimmed records.  Returns
 * the number of segments removed, or -1 with *error_r. */
int user_store_trim(struct user_store *store, uint64_t peers_safe_lsn,
		    const char **error_r);

#endif
