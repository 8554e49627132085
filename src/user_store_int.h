/*
 * user_store_int.h - what user_store.c and user_sync.c share: the user
 * table and per-user structures, and the internal steps of a change.
 * Nothing outside those two files includes this.
 */
#ifndef PLUTO_USER_STORE_INT_H
#define PLUTO_USER_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "jrec.h"
#include "log.h"
#include "snapshot.h"
#include "maildir.h"
#include "user_store.h"
#include "vclock.h"

#define USER_TABLE_SIZE 1024
#define SNAPSHOT_EVERY_DEFAULT 1000

/* Where an APPEND replayed since the user's snapshot lives in the journal,
 * so reconciliation can rewrite a missing file from its record.  verify:
 * a received APPEND after the "=files" checkpoint, whose file the last
 * process wrote lazily and a crash may have left torn. */
struct replayed_append {
	char *tag;
	uint64_t lsn;
	bool verify;
};

struct replayed_rename {
	char *old_name, *new_name;
};

struct link_state {
	char key[VCLOCK_NAME_MAX + 1];
	struct vclock *clock;
	uint64_t received_lsn;
};

struct user {
	struct user_store *store;
	struct user *next;		/* hash chain; store->lock */
	char *name;

	/* Everything below: hold lock. */
	pthread_mutex_t lock;
	pthread_cond_t changed;
	bool loaded;
	bool reconciled;
	struct mailstate *state;
	struct maildir *md;
	uint64_t version;
	/* Storage: the worker this user belongs to ("" until known), so
	 * that its ops are shipped to that worker only. */
	char home[VCLOCK_NAME_MAX + 1];
	uint64_t snapshot_lsn;		/* covered by the snapshot on disk */
	uint64_t last_lsn;		/* newest journal record of ours */
	/* The oldest record not covered by the snapshot, 0 when none: the
	 * journal cannot be trimmed past it. */
	uint64_t first_unsnapped_lsn;
	unsigned ops_since_snapshot;

	struct replayed_append *appends;
	size_t append_count, append_cap;
	/* Some appends[] have verify set; counted in unverified_users. */
	bool verify_pending;
	/* The newest record whose Maildir work was done lazily. */
	uint64_t lazy_lsn;
	struct replayed_rename *renames;
	size_t rename_count, rename_cap;

	bool subs_loaded;
	char **subs;
	size_t sub_count;
};

struct user_store {
	char *node_name;
	char *maildir_root;
	char *journal_dir;
	char *snapshot_dir;
	char *subs_dir;
	char sep;
	unsigned snapshot_every;
	struct journal *journal;

	bool is_storage;

	pthread_mutex_t lock;		/* guards table */
	struct user *table[USER_TABLE_SIZE];

	/* Replication bookkeeping, one entry per link: on a worker a single
	 * entry with key "" (its link to storage), on storage one per
	 * worker.  The clock counts the ops each side originated on that
	 * link; received_lsn is the highest position of the peer's journal
	 * stored durably here.  clock_lock is taken after a user's lock and
	 * held across journal_append_async so that clock order is journal
	 * order; it is never held during an fsync. */
	pthread_mutex_t clock_lock;
	struct link_state *links;
	size_t link_count;

	/* The applier thread (user_sync.c). */
	pthread_t applier;
	bool applier_running;
	atomic_bool applier_stop;
	_Atomic uint64_t applied_lsn;	/* replayed or applied so far */

	/* The applier's Maildir work is lazy (maildir_set_lazy): the
	 * received records are durable in the journal, so their files are
	 * made durable in bulk by user_store_sync_files, at most every
	 * FILES_SYNC_MS, rather than with two fsyncs each.  Every record
	 * up to files_synced_lsn has its Maildir work on stable storage;
	 * lazy_lsn is the newest record done lazily; files_marker_lsn is
	 * the "=files" checkpoint as found at start-up, after which received
	 * APPENDs get verified; unverified_users counts users whose
	 * reconciliation has yet to verify them (the checkpoint cannot move
	 * past those files until then).  files_lock serialises syncs. */
	pthread_mutex_t files_lock;
	_Atomic uint64_t files_synced_lsn;
	_Atomic uint64_t lazy_lsn;
	uint64_t files_marker_lsn;
	atomic_uint unverified_users;
};

const char *user_store_set_error(const char *fmt, ...) PLUTO_PRINTF(1, 2);
unsigned user_store_maildir_flags(unsigned op_flags);

/* The user called name, created (not loaded) if new; NULL without memory. */
struct user *user_store_table_get(struct user_store *store, const char *name);
/* Loads the snapshot if not done yet; holds user->lock. */
int user_store_load_locked(struct user *user, const char **error_r);
/* Loads the user and, once per process, reconciles its Maildir with the
 * state; holds user->lock. */
int user_store_prepare_locked(struct user *user, const char **error_r);

/* The link entry for key, created if new; clock_lock held.  NULL without
 * memory. */
struct link_state *user_store_link_locked(struct user_store *store,
					  const char *key);
/* The link key of a peer or home name: the name on storage, "" on a
 * worker. */
const char *user_store_link_key(const struct user_store *store,
				const char *name);
/* jrec_decode + op_decode of a record; on success the caller clears
 * *jrec_r and frees *op_r (whose body points into rec). */
int user_store_decode_op(const struct journal_record *rec, struct jrec *jrec_r,
			 struct op **op_r, const char **error_r);
/* Notes a decoded record's clock and position (replay and receive). */
int user_store_note_record_locked(struct user_store *store,
				  const struct jrec *jrec);

void user_store_changed_locked(struct user *user, uint64_t lsn);
/* Notes that record lsn of the user is applied in memory: last_lsn and
 * what the snapshot does not cover yet. */
void user_store_note_applied_locked(struct user *user, uint64_t lsn);
/* Journals a local op (JREC_LOCAL) without waiting; stamps its clock. */
int user_store_journal_local(struct user *user, const struct op *op,
			     uint64_t *lsn_r, const char **error_r);
int user_store_commit_local_locked(struct user *user, const struct op *op,
				   uint64_t *lsn_r, const char **error_r);

/* Brings the user's whole Maildir in line with the state: folders,
 * misplaced, stale and orphaned files, missing files rewritten from the
 * journal (user_store.c).  O(files of the user). */
void user_store_reconcile_folders(struct user *user);
/* Remembers where an APPEND's body is in the journal until the next
 * snapshot, for reconciliation; verify as in struct replayed_append. */
int user_store_note_append(struct user *user, const char *tag, uint64_t lsn,
			   bool verify);

/* Makes the lazy Maildir work of every record applied so far durable
 * (one syncfs) and records that in the "=files" checkpoint; with nothing
 * lazy pending it only moves files_synced_lsn (and writes the checkpoint
 * when persist is set).  0, or -1 with *error_r (user_sync.c). */
int user_store_sync_files(struct user_store *store, bool persist,
			  const char **error_r);
/* Reads the "=files" checkpoint at start-up: 0, or -1 with *error_r. */
int user_sync_load_files_marker(struct user_store *store,
				const char **error_r);

/* Writes the user's snapshot covering everything applied; 0 or -1. */
int user_store_snapshot_locked(struct user *user);

/* Reads the link checkpoint written by user_store_trim: 1 read, 0 none,
 * -1 with *error_r (user_sync.c). */
int user_sync_load_links(struct user_store *store, const char **error_r);

/* Replication thread hooks (user_sync.c). */
void user_sync_stop_applier(struct user_store *store);

#endif
