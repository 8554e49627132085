/*
 * maildir.h - one user's Maildir++ store: message files and folders.
 *
 * Layout (readable by Dovecot, mutt, mbsync):
 *
 *   MaildirRoot/<user>/{cur,new,tmp}          INBOX
 *   MaildirRoot/<user>/.<dir>/{cur,new,tmp}   other mailboxes, plus an
 *                                             empty "maildirfolder" file
 *
 * where <dir> comes from mailbox_name_to_dir() ("a.b" -> ".a.b").  Every
 * mailbox argument below is a mailbox name in canonical or client form; it
 * is validated again here (mailbox_name.h) before any path is built, so no
 * function can be tricked into leaving the user's root.  User names and
 * message tags are validated as well.
 *
 * Message files live in cur/ and are named
 *
 *   <tag>:2,<flags>
 *
 * <tag> is the message's immutable identity minted by the CRDT layer:
 * 1..MAILDIR_TAG_MAX characters of [A-Za-z0-9_-], opaque here.  Because
 * the name depends only on the tag and the flags, and never on local time,
 * host or pid, every replica names a message identically.  <flags> are the
 * standard Maildir letters of the set flags in ASCII order: D (\Draft),
 * F (\Flagged), R (\Answered), S (\Seen), T (\Deleted).  Keywords are not
 * stored in the name (the CRDT state holds them).  new/ is created for
 * other tools but pluto delivers straight into cur/.
 *
 * The store keeps no index: the caller (who holds the CRDT state) passes a
 * message's current flags, from which its file name follows.  Every
 * operation touches a constant number of directory entries, whatever the
 * mailbox size; only the listing functions (for recovery and fsck) read
 * whole directories.
 *
 * Durability: a function returning success has fsync()ed what it changed,
 * file and directory both.  On failure (ENOSPC, EIO, ...) it returns -1,
 * sets errno, and leaves cur/ as it was: a failed delivery removes its tmp
 * file and never shows a partial file in cur/.  Folder creation and
 * deletion go through a staging directory in the user's tmp/ and a single
 * rename, so a crash never leaves half a folder visible either; what a
 * crash leaves in a tmp/ is removed by maildir_cleanup_tmp() at start-up.
 *
 * Errors: *error_r is a human-readable reason suitable for a tagged NO
 * (e.g. "Mailbox already exists", "write(tmp): No space left on device").
 * It points to static or thread-local storage valid until the calling
 * thread's next maildir call; copy it to keep it.
 *
 * Threads: a struct maildir is read-only after maildir_open() and may be
 * shared.  The caller serialises operations on one user (the per-user lock
 * of user_state); the "exists" checks below rely on that.
 */
#ifndef PLUTO_MAILDIR_H
#define PLUTO_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailbox_name.h"

/* Lazy mode, for the calling thread until turned off: no fsync at all,
 * so a crash may lose or tear what the thread changed.  Only for work
 * that can be redone from a durable record -- the applier's Maildir work
 * for received ops, whose records are in the journal; the caller makes
 * it durable later, at once, with syncfs (user_store_sync_files). */
void maildir_set_lazy(bool on);
bool maildir_is_lazy(void);

#define MAILDIR_TAG_MAX 64
#define MAILDIR_USER_MAX 64
/* "<tag>" ":2," "DFRST" NUL */
#define MAILDIR_FILENAME_BUFSIZE (MAILDIR_TAG_MAX + 3 + 5 + 1)

enum maildir_flag {
	MAILDIR_FLAG_DRAFT = 0x01,	/* D */
	MAILDIR_FLAG_FLAGGED = 0x02,	/* F */
	MAILDIR_FLAG_ANSWERED = 0x04,	/* R */
	MAILDIR_FLAG_SEEN = 0x08,	/* S */
	MAILDIR_FLAG_DELETED = 0x10,	/* T */
};
#define MAILDIR_FLAGS_ALL 0x1fU

struct maildir;
struct maildir_delivery;

/* A user name may be used as a directory: 1..MAILDIR_USER_MAX bytes of
 * printable ASCII without space or '/', not starting with '.', and (this
 * is why a length is passed) no NUL.  Returns 0 or -1 with *error_r. */
int maildir_user_validate(const void *user, size_t len, const char **error_r);

/* 1..MAILDIR_TAG_MAX characters of [A-Za-z0-9_-]. */
int maildir_tag_validate(const char *tag, const char **error_r);

/* Writes "<tag>:2,<flags>".  Fails on an invalid tag or unknown flag
 * bits. */
int maildir_file_name(const char *tag, unsigned int flags,
		      char name_r[MAILDIR_FILENAME_BUFSIZE],
		      const char **error_r);

/* The inverse: accepts exactly the names maildir_file_name() writes (flag
 * letters known, ascending, not repeated).  tag_r gets the tag. */
int maildir_file_name_parse(const char *name,
			    char tag_r[MAILDIR_TAG_MAX + 1],
			    unsigned int *flags_r);

/* Opens (creating if needed, mode 0700) MaildirRoot/<user> with INBOX's
 * cur/ new/ tmp/.  maildir_root must exist; the user directory is not
 * followed if it is a symlink.  sep is the IMAP hierarchy separator.
 * Returns 0 with *md_r (freed with maildir_free), or -1. */
int maildir_open(const char *maildir_root, const void *user, size_t user_len,
		 char sep, struct maildir **md_r, const char **error_r);
void maildir_free(struct maildir **md);

/*
 * Delivery, streamed so a large message (up to the literal limit) is never
 * held in memory twice: begin, write any number of chunks, then finish or
 * abort.  The data goes to tmp/ and finish() fsyncs the file, hard-links it
 * into cur/ under its final name, removes the tmp name and fsyncs cur/.
 * link() rather than rename() so that an existing message of the same tag
 * and flags is never overwritten.
 *
 * begin: 0 with *d_r, or -1.  write: 0, or -1 after which only abort is
 * allowed.  finish: 1 = delivered; 0 = a file of that name already was in
 * cur/ (a replay: nothing changed, the new copy was dropped); -1 = error,
 * nothing left behind.  finish and abort free *d and set it to NULL.
 * The store cannot see a copy of the tag filed under other flags (that
 * would need a directory scan): the caller's CRDT state says whether a
 * tag is new.
 */
int maildir_delivery_begin(struct maildir *md, const char *mailbox,
			   const char *tag, unsigned int flags,
			   struct maildir_delivery **d_r,
			   const char **error_r);
int maildir_delivery_write(struct maildir_delivery *d, const void *data,
			   size_t len, const char **error_r);
int maildir_delivery_finish(struct maildir_delivery **d,
			    const char **error_r);
void maildir_delivery_abort(struct maildir_delivery **d);

/* A whole delivery of a message in memory, with the same guarantees and
 * return values as maildir_delivery_finish().  Where the system has
 * O_TMPFILE the data goes into an unnamed file of cur/, which is fsynced
 * and then linked in under its final name (no tmp/ name to create and
 * remove); elsewhere it goes through tmp/ as above. */
int maildir_deliver(struct maildir *md, const char *mailbox, const char *tag,
		    unsigned int flags, const void *data, size_t len,
		    const char **error_r);

/* Opens the message for reading: *fd_r (O_RDONLY, close-on-exec; the
 * caller closes it) and its size.  -1 if it does not exist under that
 * tag and these flags. */
int maildir_message_open(struct maildir *md, const char *mailbox,
			 const char *tag, unsigned int flags, int *fd_r,
			 uint64_t *size_r, const char **error_r);

/* Renames the message from its old_flags name to its new_flags name
 * (atomic rename, then fsync of cur/).  Idempotent: 0 also when the
 * message already carries new_flags.  -1 when neither name exists. */
int maildir_message_set_flags(struct maildir *md, const char *mailbox,
			      const char *tag, unsigned int old_flags,
			      unsigned int new_flags, const char **error_r);

/* Removes the message's file and fsyncs cur/.  Returns 1 when removed, 0
 * when it was already gone (an expunge applied twice), -1 on error. */
int maildir_message_expunge(struct maildir *md, const char *mailbox,
			    const char *tag, unsigned int flags,
			    const char **error_r);

/* Calls cb for every message file in the mailbox's cur/ (in directory
 * order), for recovery and fsck.  Files not named by this module are
 * skipped with a warning.  A negative return from cb stops the walk and
 * makes this return -1.  Returns 0 or -1. */
typedef int maildir_message_cb(const char *tag, unsigned int flags,
			       uint64_t size, void *ctx);
int maildir_message_list(struct maildir *md, const char *mailbox,
			 maildir_message_cb *cb, void *ctx,
			 const char **error_r);

/* Creates a mailbox (not INBOX, which always exists): .<dir>/ with cur/
 * new/ tmp/ and maildirfolder, built in tmp/ and renamed into place, then
 * the user root is fsynced.  Parents are not needed (Maildir++ folders are
 * flat).  -1 with "Mailbox already exists" if it does. */
int maildir_mailbox_create(struct maildir *md, const char *mailbox,
			   const char **error_r);

/* Whether the mailbox's folder exists (INBOX always does). */
bool maildir_mailbox_exists(struct maildir *md, const char *mailbox);

/* Removes the mailbox's folder and all it holds: renamed into tmp/ (the
 * mailbox is gone once that rename is fsynced), then removed.  Children
 * ("a.b" for "a") are separate folders and stay.  INBOX cannot be
 * deleted. */
int maildir_mailbox_delete(struct maildir *md, const char *mailbox,
			   const char **error_r);

/* Renames the mailbox and each of its children ("a.x" -> "b.x") by
 * renaming their folders, then fsyncs the root.  Refused when the target
 * or a child's target exists, when new_name is inside old_name, and for
 * INBOX (whose RFC 3501 move-the-messages semantics are not implemented).
 * Each folder rename is atomic; if one fails, the ones done are renamed
 * back.  A rename replayed after a crash completes: when old_name is gone
 * but new_name exists, the remaining children are moved. */
int maildir_mailbox_rename(struct maildir *md, const char *old_name,
			   const char *new_name, const char **error_r);

/* Calls cb with INBOX, then with each folder's mailbox name (directory
 * order).  Directories that are not the exact mapping of a valid name, or
 * lack cur/, are skipped (logged at debug level: LIST runs often).  A
 * negative return from cb stops the walk and makes this return -1. */
typedef int maildir_mailbox_cb(const char *name, void *ctx);
int maildir_mailbox_list(struct maildir *md, maildir_mailbox_cb *cb,
			 void *ctx, const char **error_r);

/* Start-up: removes from INBOX's and every folder's tmp/ what pluto left
 * there (entries named "pluto-*": interrupted deliveries and staging
 * folders) and any other file older than 36 hours (Maildir convention for
 * other writers).  Call before serving the user.  *removed_r (may be
 * NULL) counts the entries removed. */
int maildir_cleanup_tmp(struct maildir *md, unsigned int *removed_r,
			const char **error_r);

#endif
