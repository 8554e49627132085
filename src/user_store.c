/*
 * user_store.c - users' mail state: journal first, then Maildir, then OK.
 *
 * See user_store.h for the contract.  The shape of every change is
 *
 *   mailstate source step -> journal_append_async -> Maildir work
 *                         -> journal_wait_durable
 *
 * so the journal's fsync (shared by group commit with every other writer)
 * overlaps the Maildir fsyncs of this change.
 *
 * Crash windows and how recovery closes them:
 *   - record written, not durable, Maildir done: the record is lost, the
 *     file is an orphan; reconciliation removes it (never acknowledged);
 *   - record durable, Maildir not done: replay applies the op and
 *     reconciliation redoes the Maildir work (an APPEND's body is in its
 *     record).
 * Reconciliation runs once per user per process, on first use.
 *
 * Lock order: store->lock, then user->lock.  store->lock guards the user
 * table only and is never held during I/O.
 */
#include "autoconfig.h"

#include "user_store.h"
#include "user_store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "maildir.h"
#include "snapshot.h"

static _Thread_local char store_error[256];

const char *user_store_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(store_error, sizeof(store_error), fmt, ap);
	va_end(ap);
	return store_error;
}

/*
 * Small helpers.
 */

unsigned user_store_maildir_flags(unsigned op_flags)
{
	unsigned md = 0;

	if (op_flags & OP_FLAG_DRAFT)
		md |= MAILDIR_FLAG_DRAFT;
	if (op_flags & OP_FLAG_FLAGGED)
		md |= MAILDIR_FLAG_FLAGGED;
	if (op_flags & OP_FLAG_ANSWERED)
		md |= MAILDIR_FLAG_ANSWERED;
	if (op_flags & OP_FLAG_SEEN)
		md |= MAILDIR_FLAG_SEEN;
	if (op_flags & OP_FLAG_DELETED)
		md |= MAILDIR_FLAG_DELETED;
	return md;
}

static unsigned hash_name(const char *name)
{
	unsigned h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % USER_TABLE_SIZE;
}

static char *path_join(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *path = malloc(len);

	if (path != NULL)
		snprintf(path, len, "%s/%s", dir, name);
	return path;
}

/* mkdir -p for the store's own directories (not Maildir folders). */
static int make_dirs(const char *path)
{
	char tmp[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

/*
 * The user table.
 */

static struct user *user_new(struct user_store *store, const char *name)
{
	struct user *user = calloc(1, sizeof(*user));

	if (user == NULL)
		return NULL;
	user->name = strdup(name);
	if (user->name == NULL) {
		free(user);
		return NULL;
	}
	user->store = store;
	pthread_mutex_init(&user->lock, NULL);
	pthread_cond_init(&user->changed, NULL);
	return user;
}

static void replay_notes_free(struct user *user)
{
	for (size_t i = 0; i < user->append_count; i++)
		free(user->appends[i].tag);
	free(user->appends);
	user->appends = NULL;
	user->append_count = user->append_cap = 0;
	for (size_t i = 0; i < user->rename_count; i++) {
		free(user->renames[i].old_name);
		free(user->renames[i].new_name);
	}
	free(user->renames);
	user->renames = NULL;
	user->rename_count = user->rename_cap = 0;
}

static void subs_free(struct user *user)
{
	for (size_t i = 0; i < user->sub_count; i++)
		free(user->subs[i]);
	free(user->subs);
	user->subs = NULL;
	user->sub_count = 0;
	user->subs_loaded = false;
}

static void user_free(struct user *user)
{
	replay_notes_free(user);
	subs_free(user);
	mailstate_free(&user->state);
	maildir_free(&user->md);
	pthread_mutex_destroy(&user->lock);
	pthread_cond_destroy(&user->changed);
	free(user->name);
	free(user);
}

/* Finds or inserts name; NULL when out of memory. */
struct user *user_store_table_get(struct user_store *store, const char *name)
{
	unsigned h = hash_name(name);
	struct user *user;

	pthread_mutex_lock(&store->lock);
	for (user = store->table[h]; user != NULL; user = user->next) {
		if (strcmp(user->name, name) == 0)
			break;
	}
	if (user == NULL) {
		user = user_new(store, name);
		if (user != NULL) {
			user->next = store->table[h];
			store->table[h] = user;
		}
	}
	pthread_mutex_unlock(&store->lock);
	return user;
}

/* Reads the user's snapshot, or starts an empty state.  Holds user lock. */
int user_store_load_locked(struct user *user, const char **error_r)
{
	char fname[SNAPSHOT_NAME_BUFSIZE];
	struct buf data = BUF_INIT;
	uint64_t lsn = 0;
	const char *why = NULL;
	int ret;

	if (user->loaded)
		return 0;
	if (snapshot_name_for_user(user->name, fname) < 0) {
		*error_r = "user name too long for this node";
		return -1;
	}
	ret = snapshot_read(user->store->snapshot_dir, fname, &lsn, &data,
			    &why);
	if (ret < 0) {
		*error_r = user_store_set_error("cannot read the user's snapshot: %s",
				     why);
		buf_free(&data);
		return -1;
	}
	if (ret == 0) {
		user->state = mailstate_new(user->name);
		if (user->state == NULL) {
			*error_r = "invalid user name";
			buf_free(&data);
			return -1;
		}
	} else {
		user->state = mailstate_deserialize(data.data, data.len, &why);
		if (user->state == NULL) {
			*error_r = user_store_set_error("corrupt snapshot: %s", why);
			buf_free(&data);
			return -1;
		}
		if (strcmp(mailstate_user(user->state), user->name) != 0) {
			mailstate_free(&user->state);
			*error_r = "snapshot belongs to another user";
			buf_free(&data);
			return -1;
		}
	}
	buf_free(&data);
	user->snapshot_lsn = lsn;
	user->last_lsn = lsn;
	user->loaded = true;
	return 0;
}

/*
 * Snapshots.
 */

/* Writes the user's snapshot covering everything applied so far.  Holds
 * user lock.  Failure only costs a longer replay next time. */
int user_store_snapshot_locked(struct user *user)
{
	char fname[SNAPSHOT_NAME_BUFSIZE];
	struct buf data = BUF_INIT;
	const char *why = NULL;
	int ret;

	if (!user->loaded || user->last_lsn == user->snapshot_lsn)
		return 0;
	/* The replay notes go with the snapshot: not before reconciliation
	 * has used them to repair the files. */
	if (!user->reconciled &&
	    (user->append_count > 0 || user->rename_count > 0))
		return -1;
	/* Nor may it cover lazy Maildir work not yet durable. */
	if (user->lazy_lsn > atomic_load(&user->store->files_synced_lsn) &&
	    user_store_sync_files(user->store, false, &why) < 0) {
		log_warnx("no snapshot of %s: %s", user->name, why);
		return -1;
	}
	if (snapshot_name_for_user(user->name, fname) < 0)
		return -1;
	if (mailstate_serialize(user->state, &data) < 0) {
		buf_free(&data);
		return -1;
	}
	ret = snapshot_write(user->store->snapshot_dir, fname, user->last_lsn,
			     data.data, data.len, &why);
	buf_free(&data);
	if (ret < 0) {
		log_warnx("cannot write the snapshot of %s: %s", user->name,
			  why);
		return -1;
	}
	user->snapshot_lsn = user->last_lsn;
	user->first_unsnapped_lsn = 0;
	user->ops_since_snapshot = 0;
	/* Ops up to the snapshot need no redoing from the journal now. */
	replay_notes_free(user);
	return 0;
}

/*
 * Replay.
 */

int user_store_note_append(struct user *user, const char *tag, uint64_t lsn,
			   bool verify)
{
	if (user->append_count == user->append_cap) {
		size_t cap = user->append_cap == 0 ? 16 : user->append_cap * 2;
		struct replayed_append *a =
			realloc(user->appends, cap * sizeof(*a));
		if (a == NULL)
			return -1;
		user->appends = a;
		user->append_cap = cap;
	}
	user->appends[user->append_count].tag = strdup(tag);
	if (user->appends[user->append_count].tag == NULL)
		return -1;
	user->appends[user->append_count].verify = verify;
	user->appends[user->append_count++].lsn = lsn;
	if (verify && !user->verify_pending) {
		user->verify_pending = true;
		atomic_fetch_add(&user->store->unverified_users, 1);
	}
	return 0;
}

static int note_rename(struct user *user, const char *old_name,
		       const char *new_name)
{
	struct replayed_rename *r;

	if (user->rename_count == user->rename_cap) {
		size_t cap = user->rename_cap == 0 ? 4 : user->rename_cap * 2;
		r = realloc(user->renames, cap * sizeof(*r));
		if (r == NULL)
			return -1;
		user->renames = r;
		user->rename_cap = cap;
	}
	r = &user->renames[user->rename_count];
	r->old_name = strdup(old_name);
	r->new_name = strdup(new_name);
	if (r->old_name == NULL || r->new_name == NULL) {
		free(r->old_name);
		free(r->new_name);
		return -1;
	}
	user->rename_count++;
	return 0;
}

int user_store_decode_op(const struct journal_record *rec, struct jrec *jrec_r,
			 struct op **op_r, const char **error_r)
{
	const char *why = NULL;

	*op_r = NULL;
	if (jrec_decode(rec, jrec_r, &why) < 0 ||
	    op_decode(jrec_r->op, jrec_r->op_len, op_r, &why) < 0) {
		jrec_clear(jrec_r);
		*error_r = user_store_set_error("journal record %llu: %s",
						(unsigned long long)rec->lsn,
						why);
		return -1;
	}
	return 0;
}

/* Storage learns which worker a user belongs to from the ops it sees. */
static void note_home_locked(struct user *user, const struct jrec *jrec)
{
	if (user->store->is_storage && jrec->name[0] != '\0')
		snprintf(user->home, sizeof(user->home), "%s", jrec->name);
}

static int replay_record(const struct journal_record *rec, void *ctx,
			 const char **error_r)
{
	struct user_store *store = ctx;
	struct user *user;
	struct jrec jrec;
	struct op *op = NULL;
	const char *why = NULL;
	int ret = 0;

	if (user_store_decode_op(rec, &jrec, &op, error_r) < 0)
		return -1;
	pthread_mutex_lock(&store->clock_lock);
	ret = user_store_note_record_locked(store, &jrec);
	pthread_mutex_unlock(&store->clock_lock);
	user = user_store_table_get(store, op->user);
	if (ret < 0 || user == NULL) {
		jrec_clear(&jrec);
		op_free(&op);
		*error_r = "out of memory";
		return -1;
	}
	pthread_mutex_lock(&user->lock);
	note_home_locked(user, &jrec);
	if (user_store_load_locked(user, error_r) < 0) {
		ret = -1;
	} else if (rec->lsn > user->snapshot_lsn) {
		if (mailstate_apply(user->state, op, &why) < 0) {
			/* The op was valid when journalled; refusing it now
			 * means a bug, not a bad disk: keep going. */
			log_error("journal record %llu of %s not applied: %s",
				  (unsigned long long)rec->lsn, user->name,
				  why);
		}
		user_store_note_applied_locked(user, rec->lsn);
		if ((op->type == OP_APPEND &&
		     user_store_note_append(
			     user, op->tag, rec->lsn,
			     rec->type == JREC_REMOTE &&
				     rec->lsn > store->files_marker_lsn) < 0) ||
		    (op->type == OP_RENAME &&
		     note_rename(user, op->mailbox, op->new_mailbox) < 0)) {
			*error_r = "out of memory";
			ret = -1;
		}
	}
	atomic_store(&store->applied_lsn, rec->lsn);
	pthread_mutex_unlock(&user->lock);
	jrec_clear(&jrec);
	op_free(&op);
	return ret;
}

/*
 * Reconciliation of a user's Maildir with its state.
 *
 * The state is the truth.  Every file on disk is looked up by its tag:
 * a file whose message the state does not hold is removed (a delivery
 * never acknowledged, or an expunge the crash interrupted); one in the
 * wrong folder (a rename merged differently) is moved; one with stale
 * flags is renamed; a message without a file is rewritten from its
 * journal record.  Folders are created and removed to match.
 */

struct disk_file {
	char folder[MAILBOX_NAME_BUFSIZE];
	char tag[MAILDIR_TAG_MAX + 1];
	unsigned flags;
};

struct disk_scan {
	struct disk_file *files;
	size_t count, cap;
	const char *folder;	/* being listed */
};

static int collect_file(const char *tag, unsigned flags, uint64_t size,
			void *ctx)
{
	struct disk_scan *scan = ctx;
	struct disk_file *f;

	(void)size;
	if (scan->count == scan->cap) {
		size_t cap = scan->cap == 0 ? 64 : scan->cap * 2;
		f = realloc(scan->files, cap * sizeof(*f));
		if (f == NULL)
			return -1;
		scan->files = f;
		scan->cap = cap;
	}
	f = &scan->files[scan->count++];
	snprintf(f->folder, sizeof(f->folder), "%s", scan->folder);
	snprintf(f->tag, sizeof(f->tag), "%s", tag);
	f->flags = flags;
	return 0;
}

static int collect_mailbox(const char *name, void *ctx)
{
	struct buf *names = ctx;

	return buf_append(names, name, strlen(name) + 1);
}

/* A message to rewrite from its journal record. */
struct missing_file {
	uint64_t lsn;			/* 0: no record known */
	const char *mailbox;
	const struct mailstate_msg *msg;
};

static int compare_missing(const void *a, const void *b)
{
	uint64_t x = ((const struct missing_file *)a)->lsn;
	uint64_t y = ((const struct missing_file *)b)->lsn;

	return x < y ? -1 : x > y;
}

static int compare_appends(const void *a, const void *b)
{
	return strcmp(((const struct replayed_append *)a)->tag,
		      ((const struct replayed_append *)b)->tag);
}

/* Whether the file of m holds exactly body. */
static bool file_matches(struct user *user, const struct missing_file *m,
			 const unsigned char *body, size_t len)
{
	const char *why = NULL;
	unsigned char buf[8192];
	uint64_t size = 0;
	size_t off = 0;
	bool same;
	int fd;

	if (maildir_message_open(user->md, m->mailbox, m->msg->tag,
				 user_store_maildir_flags(m->msg->flags), &fd,
				 &size, &why) < 0)
		return false;
	same = size == len;
	while (same && off < len) {
		size_t want = len - off < sizeof(buf) ? len - off : sizeof(buf);
		ssize_t n = read(fd, buf, want);

		if (n <= 0 || memcmp(buf, body + off, (size_t)n) != 0)
			same = false;
		else
			off += (size_t)n;
	}
	close(fd);
	return same;
}

/* One message of deliver_from_journal: rewrites the file from the body
 * (replace: only when the file there differs).  Returns true when it
 * wrote a file. */
static bool deliver_one(struct user *user, const struct missing_file *m,
			const struct op *op, bool replace)
{
	const char *why = NULL;
	unsigned flags = user_store_maildir_flags(m->msg->flags);

	if (op->type != OP_APPEND || strcmp(op->tag, m->msg->tag) != 0)
		return false;
	if (replace) {
		if (file_matches(user, m, op->body, op->body_len))
			return false;
		log_warnx("message %s in %s of %s was torn by a crash; "
			  "rewriting it from the journal", m->msg->tag,
			  m->mailbox, user->name);
		maildir_message_expunge(user->md, m->mailbox, m->msg->tag,
					flags, &why);
	}
	return maildir_deliver(user->md, m->mailbox, m->msg->tag, flags,
			       op->body, op->body_len, &why) >= 0;
}

/* Writes the files of missing[] (sorted by LSN) from their APPEND
 * records with one reader moving forward, since positioning a new reader
 * scans its segment's headers: a reader per message made rewriting n
 * files O(n x segment).  With replace, the files exist and only those
 * whose content differs from the record are rewritten.  Returns how many
 * were written. */
static size_t deliver_from_journal(struct user *user,
				   const struct missing_file *missing,
				   size_t count, bool replace)
{
	struct journal_reader *reader = NULL;
	size_t done = 0;

	for (size_t i = 0; i < count; i++) {
		const struct missing_file *m = &missing[i];
		struct journal_record rec;
		const char *why = NULL;
		int ret = 0;

		if (reader != NULL && journal_reader_position(reader) > m->lsn)
			journal_reader_free(&reader);
		if (reader == NULL) {
			reader = journal_reader_new(user->store->journal,
						    m->lsn, &why);
			if (reader == NULL)
				continue;
		}
		while (journal_reader_position(reader) <= m->lsn &&
		       (ret = journal_reader_next(reader, &rec, &why)) == 1 &&
		       rec.lsn < m->lsn)
			;
		if (ret == 1 && rec.lsn == m->lsn) {
			struct jrec jrec;
			struct op *op = NULL;

			if (user_store_decode_op(&rec, &jrec, &op, &why) ==
			    0) {
				if (deliver_one(user, m, op, replace))
					done++;
				jrec_clear(&jrec);
			}
			op_free(&op);
		} else {
			/* Broken or at the end: start afresh next time. */
			journal_reader_free(&reader);
		}
	}
	journal_reader_free(&reader);
	return done;
}

/* Copies a message file into another folder (Maildir++ has no atomic
 * move between folders that keeps both names valid), then removes the
 * old one. */
static int move_file(struct user *user, const struct disk_file *f,
		     const char *to, unsigned to_flags)
{
	const char *why = NULL;
	uint64_t size = 0;
	unsigned char *data;
	size_t got = 0;
	int fd, ret;

	if (maildir_message_open(user->md, f->folder, f->tag, f->flags, &fd,
				 &size, &why) < 0)
		return -1;
	data = malloc(size > 0 ? (size_t)size : 1);
	if (data == NULL) {
		close(fd);
		return -1;
	}
	while (got < size) {
		ssize_t n = read(fd, data + got, (size_t)size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	ret = got == size ? maildir_deliver(user->md, to, f->tag, to_flags,
					    data, got, &why)
			  : -1;
	free(data);
	if (ret < 0)
		return -1;
	maildir_message_expunge(user->md, f->folder, f->tag, f->flags, &why);
	return 0;
}

/* Lists every file of every folder on disk.  Returns 0 or -1. */
static int scan_disk(struct user *user, struct buf *folders,
		     struct disk_scan *scan)
{
	const char *why = NULL;

	if (maildir_mailbox_list(user->md, collect_mailbox, folders, &why) <
	    0) {
		log_warnx("cannot list the folders of %s: %s", user->name,
			  why);
		return -1;
	}
	for (size_t off = 0; off < folders->len;) {
		const char *name = (const char *)folders->data + off;

		off += strlen(name) + 1;
		scan->folder = name;
		if (maildir_message_list(user->md, name, collect_file, scan,
					 &why) < 0) {
			log_warnx("cannot list %s of %s: %s", name, user->name,
				  why);
			return -1;
		}
	}
	return 0;
}

/* Puts each file where the state says its message is. */
static size_t fix_files(struct user *user, const struct disk_scan *scan)
{
	const char *why = NULL;
	size_t fixed = 0;

	for (size_t i = 0; i < scan->count; i++) {
		const struct disk_file *f = &scan->files[i];
		const struct mailstate_msg *msg =
			mailstate_msg_find(user->state, f->tag);
		const char *home;
		unsigned want;

		if (msg == NULL) {
			maildir_message_expunge(user->md, f->folder, f->tag,
						f->flags, &why);
			fixed++;
			continue;
		}
		home = mailstate_mailbox_name(msg->mailbox);
		want = user_store_maildir_flags(msg->flags);
		if (strcmp(home, f->folder) != 0) {
			if (move_file(user, f, home, want) == 0)
				fixed++;
		} else if (f->flags != want) {
			maildir_message_set_flags(user->md, f->folder, f->tag,
						  f->flags, want, &why);
			fixed++;
		}
	}
	return fixed;
}

static int compare_files(const void *a, const void *b)
{
	return strcmp(((const struct disk_file *)a)->tag,
		      ((const struct disk_file *)b)->tag);
}

/* Whether a file of tag was found; scan->files is sorted by tag. */
static bool scanned(const struct disk_scan *scan, const char *tag)
{
	struct disk_file key;

	if (scan->count == 0)
		return false;
	snprintf(key.tag, sizeof(key.tag), "%s", tag);
	return bsearch(&key, scan->files, scan->count, sizeof(key),
		       compare_files) != NULL;
}

/* Rewrites the files of messages that have none anywhere. */
static size_t restore_missing(struct user *user, const char *const *live,
			      size_t live_count, const struct disk_scan *scan)
{
	struct missing_file *missing = NULL;
	struct replayed_append *by_tag = NULL;
	size_t count = 0, cap = 0, fixed = 0;

	for (size_t i = 0; i < live_count; i++) {
		struct mailstate_mailbox *box =
			mailstate_mailbox_find(user->state, live[i]);
		size_t n = box != NULL ? mailstate_mailbox_count(box) : 0;

		for (size_t k = 0; k < n; k++) {
			const struct mailstate_msg *msg =
				mailstate_mailbox_msg_at(box, k);

			if (scanned(scan, msg->tag))
				continue;
			if (count == cap) {
				size_t ncap = cap == 0 ? 16 : cap * 2;
				struct missing_file *m =
					ncap > SIZE_MAX / sizeof(*m) ? NULL :
					realloc(missing, ncap * sizeof(*m));

				if (m == NULL) {
					free(missing);
					return 0;
				}
				missing = m;
				cap = ncap;
			}
			missing[count].lsn = 0;
			missing[count].mailbox = live[i];
			missing[count++].msg = msg;
		}
	}
	if (count == 0)
		return 0;
	/* The record of each: the replay notes, looked up by tag. */
	if (user->append_count > 0 &&
	    (by_tag = malloc(user->append_count * sizeof(*by_tag))) != NULL) {
		memcpy(by_tag, user->appends,
		       user->append_count * sizeof(*by_tag));
		qsort(by_tag, user->append_count, sizeof(*by_tag),
		      compare_appends);
		for (size_t i = 0; i < count; i++) {
			struct replayed_append key, *a;

			key.tag = (char *)missing[i].msg->tag;
			a = bsearch(&key, by_tag, user->append_count,
				    sizeof(*by_tag), compare_appends);
			if (a != NULL)
				missing[i].lsn = a->lsn;
		}
	}
	qsort(missing, count, sizeof(*missing), compare_missing);
	for (size_t i = 0; i < count && missing[i].lsn == 0; i++)
		log_error("message %s in %s of %s has no file and no journal "
			  "record to rewrite it from", missing[i].msg->tag,
			  missing[i].mailbox, user->name);
	{
		size_t first = 0;

		while (first < count && missing[first].lsn == 0)
			first++;
		fixed = deliver_from_journal(user, missing + first,
					     count - first, false);
		if (fixed < count - first)
			log_error("%zu message files of %s could not be "
				  "rewritten from the journal",
				  count - first - fixed, user->name);
	}
	free(by_tag);
	free(missing);
	return fixed;
}

/* Compares the files of received APPENDs the last process wrote lazily
 * (replay notes with verify) with their records and rewrites the torn
 * ones.  Runs after restore_missing: a file missing then is written. */
static size_t verify_lazy_files(struct user *user)
{
	struct missing_file *check;
	size_t count = 0, fixed;

	check = calloc(user->append_count, sizeof(*check));
	if (check == NULL)
		return 0;
	for (size_t i = 0; i < user->append_count; i++) {
		const struct replayed_append *a = &user->appends[i];
		const struct mailstate_msg *msg;

		if (!a->verify ||
		    (msg = mailstate_msg_find(user->state, a->tag)) == NULL)
			continue;
		check[count].lsn = a->lsn;
		check[count].mailbox = mailstate_mailbox_name(msg->mailbox);
		check[count++].msg = msg;
	}
	qsort(check, count, sizeof(*check), compare_missing);
	fixed = deliver_from_journal(user, check, count, true);
	free(check);
	for (size_t i = 0; i < user->append_count; i++)
		user->appends[i].verify = false;
	user->verify_pending = false;
	atomic_fetch_sub(&user->store->unverified_users, 1);
	return fixed;
}

static void reconcile_folders(struct user *user);

void user_store_reconcile_folders(struct user *user)
{
	bool lazy = maildir_is_lazy();

	/* Repairs are made durable at once whoever asks for them: the
	 * "=files" checkpoint does not cover them. */
	maildir_set_lazy(false);
	reconcile_folders(user);
	maildir_set_lazy(lazy);
}

static void reconcile_folders(struct user *user)
{
	struct buf folders = BUF_INIT;
	struct disk_scan scan = { NULL, 0, 0, NULL };
	const char **live = NULL;
	size_t live_count = 0, fixed = 0;
	const char *why = NULL;

	for (size_t i = 0; i < user->rename_count; i++) {
		const struct replayed_rename *r = &user->renames[i];
		if (maildir_mailbox_exists(user->md, r->old_name) &&
		    !maildir_mailbox_exists(user->md, r->new_name))
			maildir_mailbox_rename(user->md, r->old_name,
					       r->new_name, &why);
	}
	if (mailstate_mailbox_list(user->state, &live, &live_count) < 0)
		return;
	for (size_t i = 0; i < live_count; i++) {
		if (!maildir_mailbox_exists(user->md, live[i]) &&
		    maildir_mailbox_create(user->md, live[i], &why) < 0)
			log_warnx("cannot create folder %s of %s: %s",
				  live[i], user->name, why);
	}
	if (scan_disk(user, &folders, &scan) == 0) {
		fixed += fix_files(user, &scan);
		/* qsort and bsearch want a real array, even when empty. */
		if (scan.count > 0)
			qsort(scan.files, scan.count, sizeof(*scan.files),
			      compare_files);
		fixed += restore_missing(user, live, live_count, &scan);
		if (user->verify_pending)
			fixed += verify_lazy_files(user);
		for (size_t off = 0; off < folders.len;) {
			const char *name = (const char *)folders.data + off;

			off += strlen(name) + 1;
			if (mailbox_name_is_inbox(name) ||
			    mailstate_mailbox_find(user->state, name) != NULL)
				continue;
			log_info("removing folder %s of %s: not in the state",
				 name, user->name);
			maildir_mailbox_delete(user->md, name, &why);
		}
	}
	if (fixed > 0)
		log_info("reconciled %zu message files of %s", fixed,
			 user->name);
	free(scan.files);
	free(live);
	buf_free(&folders);
}

int user_store_prepare_locked(struct user *user, const char **error_r)
{
	const char *why = NULL;
	unsigned removed = 0;

	if (user_store_load_locked(user, error_r) < 0)
		return -1;
	if (user->reconciled)
		return 0;
	if (user->md == NULL &&
	    maildir_open(user->store->maildir_root, user->name,
			 strlen(user->name), user->store->sep, &user->md,
			 &why) < 0) {
		*error_r = user_store_set_error("cannot open the Maildir: %s", why);
		return -1;
	}
	if (maildir_cleanup_tmp(user->md, &removed, &why) < 0)
		log_warnx("cannot clean tmp/ of %s: %s", user->name, why);
	user_store_reconcile_folders(user);
	user->reconciled = true;
	return 0;
}

/*
 * Opening and closing.
 */

int user_store_open(const struct user_store_options *opts,
		    struct user_store **store_r, const char **error_r)
{
	struct journal_options jopts = { opts->journal_segment_size };
	struct user_store *store = calloc(1, sizeof(*store));
	const char *why = NULL;

	*store_r = NULL;
	if (store == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	pthread_mutex_init(&store->lock, NULL);
	pthread_mutex_init(&store->clock_lock, NULL);
	pthread_mutex_init(&store->files_lock, NULL);
	store->is_storage = opts->is_storage;
	store->sep = opts->hierarchy_separator;
	store->snapshot_every = opts->snapshot_every != 0
					? opts->snapshot_every
					: SNAPSHOT_EVERY_DEFAULT;
	store->node_name = strdup(opts->node_name);
	store->maildir_root = strdup(opts->maildir_root);
	store->journal_dir = path_join(opts->crdt_root, "journal");
	store->snapshot_dir = path_join(opts->crdt_root, "snapshots");
	store->subs_dir = path_join(opts->crdt_root, "subscriptions");
	if (store->node_name == NULL || store->maildir_root == NULL ||
	    store->journal_dir == NULL || store->snapshot_dir == NULL ||
	    store->subs_dir == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	if (make_dirs(store->maildir_root) < 0 ||
	    make_dirs(store->snapshot_dir) < 0 ||
	    make_dirs(store->subs_dir) < 0) {
		*error_r = user_store_set_error("cannot create the data directories: %s",
				     strerror(errno));
		goto fail;
	}
	if (snapshot_clean_tmp(store->snapshot_dir, &why) < 0 ||
	    snapshot_clean_tmp(store->subs_dir, &why) < 0)
		log_warnx("cannot clean snapshot temporaries: %s", why);
	if (journal_open(store->journal_dir, &jopts, &store->journal, &why) <
	    0) {
		*error_r = user_store_set_error("cannot open the journal: %s", why);
		goto fail;
	}
	if (user_sync_load_links(store, &why) < 0 ||
	    user_sync_load_files_marker(store, &why) < 0) {
		*error_r = why;
		goto fail;
	}
	if (journal_read_from(store->journal, journal_first_lsn(store->journal),
			      replay_record, store, &why) < 0) {
		*error_r = user_store_set_error("cannot replay the journal: %s", why);
		goto fail;
	}
	log_info("journal replayed up to record %llu",
		 (unsigned long long)journal_durable_lsn(store->journal));
	*store_r = store;
	return 0;
fail:
	user_store_free(&store);
	return -1;
}

void user_store_free(struct user_store **storep)
{
	struct user_store *store = *storep;

	if (store == NULL)
		return;
	user_sync_stop_applier(store);
	for (size_t i = 0; i < USER_TABLE_SIZE; i++) {
		struct user *user = store->table[i];

		while (user != NULL) {
			struct user *next = user->next;

			pthread_mutex_lock(&user->lock);
			if (store->journal != NULL)
				user_store_snapshot_locked(user);
			pthread_mutex_unlock(&user->lock);
			user_free(user);
			user = next;
		}
		store->table[i] = NULL;
	}
	journal_free(&store->journal);
	for (size_t i = 0; i < store->link_count; i++)
		vclock_free(&store->links[i].clock);
	free(store->links);
	pthread_mutex_destroy(&store->clock_lock);
	pthread_mutex_destroy(&store->files_lock);
	pthread_mutex_destroy(&store->lock);
	free(store->node_name);
	free(store->maildir_root);
	free(store->journal_dir);
	free(store->snapshot_dir);
	free(store->subs_dir);
	free(store);
	*storep = NULL;
}

struct journal *user_store_journal(struct user_store *store)
{
	return store->journal;
}


/* Every user has an INBOX.  It is created by the same op on every replica
 * (fixed tag and UIDVALIDITY), so a worker and storage that both meet a
 * new user create one INBOX, not two that would then merge. */
static int ensure_inbox_locked(struct user *user, const char **error_r)
{
	struct op *op;
	uint64_t lsn;
	const char *why = NULL;
	int ret;

	if (mailstate_mailbox_find(user->state, "INBOX") != NULL)
		return 0;
	op = op_new(OP_CREATE, user->name, "INBOX");
	if (op == NULL || (op->tag = strdup("inbox")) == NULL) {
		op_free(&op);
		*error_r = "out of memory";
		return -1;
	}
	op->uidvalidity = 1;
	ret = mailstate_apply(user->state, op, &why);
	if (ret < 0)
		*error_r = user_store_set_error("cannot create INBOX: %s", why);
	else
		ret = user_store_commit_local_locked(user, op, &lsn, error_r);
	if (ret == 0)
		user_store_changed_locked(user, lsn);
	op_free(&op);
	return ret;
}

struct user *user_store_get(struct user_store *store, const char *name,
			    const char **error_r)
{
	struct user *user;
	const char *why = NULL;
	int ret;

	if (maildir_user_validate(name, strlen(name), &why) < 0 ||
	    !op_user_valid(name)) {
		*error_r = why != NULL ? why : "invalid user name";
		return NULL;
	}
	user = user_store_table_get(store, name);
	if (user == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	pthread_mutex_lock(&user->lock);
	ret = user_store_prepare_locked(user, error_r);
	if (ret == 0)
		ret = ensure_inbox_locked(user, error_r);
	pthread_mutex_unlock(&user->lock);
	return ret == 0 ? user : NULL;
}

void user_lock(struct user *user)
{
	pthread_mutex_lock(&user->lock);
}

void user_unlock(struct user *user)
{
	pthread_mutex_unlock(&user->lock);
}

struct mailstate *user_state(struct user *user)
{
	return user->state;
}

const char *user_name(const struct user *user)
{
	return user->name;
}

uint64_t user_version_locked(const struct user *user)
{
	return user->version;
}

uint64_t user_wait_change(struct user *user, uint64_t seen, int timeout_ms)
{
	struct timespec deadline;
	uint64_t version;

	clock_gettime(CLOCK_REALTIME, &deadline);
	if (timeout_ms >= 0) {
		deadline.tv_sec += timeout_ms / 1000;
		deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&user->lock);
	while (user->version == seen) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&user->changed, &user->lock);
		} else if (pthread_cond_timedwait(&user->changed, &user->lock,
						  &deadline) != 0) {
			break;
		}
	}
	version = user->version;
	pthread_mutex_unlock(&user->lock);
	return version;
}

/*
 * Changes.
 */

/* After the op is in memory: notes the change for sessions and IDLE, and
 * takes a snapshot when enough ops piled up. */
void user_store_note_applied_locked(struct user *user, uint64_t lsn)
{
	user->last_lsn = lsn;
	if (user->first_unsnapped_lsn == 0)
		user->first_unsnapped_lsn = lsn;
	user->ops_since_snapshot++;
}

void user_store_changed_locked(struct user *user, uint64_t lsn)
{
	user->version++;
	user_store_note_applied_locked(user, lsn);
	pthread_cond_broadcast(&user->changed);
	if (user->ops_since_snapshot >= user->store->snapshot_every)
		user_store_snapshot_locked(user);
}

/* The journal failed: the in-memory state may hold an op that is not
 * durable.  Rebuild the user from disk so that sessions see only what
 * survived; every later write fails until restart (journal failure
 * policy), which the log says loudly. */
static void reload_after_failure_locked(struct user *user)
{
	struct user_store *store = user->store;
	const char *why = NULL;

	log_error("journal write failed for %s: reloading the user from "
		  "disk; writes are refused until pluto restarts",
		  user->name);
	mailstate_free(&user->state);
	replay_notes_free(user);
	user->loaded = false;
	/* The lock is ours; replay takes it per record, so load first and
	 * then apply the user's records here. */
	if (user_store_load_locked(user, &why) < 0) {
		log_error("cannot reload %s: %s", user->name, why);
		return;
	}
	struct journal_reader *r =
		journal_reader_new(store->journal, user->snapshot_lsn + 1, &why);
	struct journal_record rec;

	while (r != NULL && journal_reader_next(r, &rec, &why) == 1) {
		struct jrec jrec;
		struct op *op = NULL;

		if (user_store_decode_op(&rec, &jrec, &op, &why) < 0)
			continue;
		if (strcmp(op->user, user->name) == 0)
			mailstate_apply(user->state, op, &why);
		jrec_clear(&jrec);
		op_free(&op);
	}
	journal_reader_free(&r);
	user->version++;
	pthread_cond_broadcast(&user->changed);
}

/* Journals op without waiting for durability. */
int user_store_journal_local(struct user *user, const struct op *op,
			     uint64_t *lsn_r, const char **error_r)
{
	struct user_store *store = user->store;
	struct buf header = BUF_INIT;
	struct journal_part parts[2];
	struct link_state *link;
	const char *home = store->is_storage ? user->home : "";
	const char *why = NULL;
	unsigned nparts = 1;
	uint64_t count;
	int ret = -1;

	/* The clock is stamped and the record written under clock_lock so
	 * that the counter of this node rises in journal order. */
	pthread_mutex_lock(&store->clock_lock);
	link = user_store_link_locked(store, user_store_link_key(store, home));
	if (link == NULL ||
	    vclock_increment(link->clock, store->node_name, &count, &why) < 0) {
		*error_r = "out of memory";
		goto out;
	}
	if (jrec_encode_prefix(&header, JREC_LOCAL, home, 0, link->clock,
			       &why) < 0 ||
	    op_encode_header(op, &header, &why) < 0) {
		*error_r = user_store_set_error("cannot encode the change: %s",
						why);
		goto undo;
	}
	parts[0].data = header.data;
	parts[0].len = header.len;
	if (op->type == OP_APPEND && op->body_len > 0) {
		parts[1].data = op->body;
		parts[1].len = op->body_len;
		nparts = 2;
	}
	if (journal_append_async(store->journal, JREC_LOCAL, parts, nparts,
				 lsn_r, &why) < 0) {
		*error_r = user_store_set_error("cannot write the journal: %s",
						why);
		goto undo;
	}
	ret = 0;
	goto out;
undo:
	/* Nothing was written: the counter goes back. */
	vclock_set(link->clock, store->node_name, count - 1, &why);
out:
	pthread_mutex_unlock(&store->clock_lock);
	buf_free(&header);
	return ret;
}

/* Waits until lsn is durable.  On failure the change is applied in memory
 * but may not be on disk, so the user is reloaded from what is. */
static int wait_durable_locked(struct user *user, uint64_t lsn,
			       const char **error_r)
{
	const char *why = NULL;

	if (journal_wait_durable(user->store->journal, lsn, &why) < 0) {
		*error_r = user_store_set_error("cannot sync the journal: %s", why);
		reload_after_failure_locked(user);
		return -1;
	}
	return 0;
}

/* Journals op and waits for it; on failure reloads the user. */
int user_store_commit_local_locked(struct user *user, const struct op *op,
			    uint64_t *lsn_r, const char **error_r)
{
	if (user_store_journal_local(user, op, lsn_r, error_r) < 0) {
		reload_after_failure_locked(user);
		return -1;
	}
	return wait_durable_locked(user, *lsn_r, error_r);
}

static int user_writable(struct user *user, const char **error_r)
{
	if (!user->loaded || !user->reconciled) {
		*error_r = "user not loaded";
		return -1;
	}
	return 0;
}

int user_create_locked(struct user *user, const char *mailbox,
		       const char **error_r)
{
	struct op *op = NULL;
	uint64_t lsn;
	const char *why = NULL;

	if (user_writable(user, error_r) < 0)
		return -1;
	if (mailstate_create(user->state, mailbox, &op, error_r) < 0)
		return -1;
	if (user_store_journal_local(user, op, &lsn, error_r) < 0) {
		op_free(&op);
		reload_after_failure_locked(user);
		return -1;
	}
	if (maildir_mailbox_create(user->md, mailbox, &why) < 0 &&
	    !maildir_mailbox_exists(user->md, mailbox)) {
		/* The folder could not be made: undo by deleting again. */
		struct op *undo = NULL;
		uint64_t undo_lsn;

		*error_r = user_store_set_error("cannot create the mailbox: %s", why);
		op_free(&op);
		if (mailstate_delete(user->state, mailbox, &undo, &why) == 0) {
			if (user_store_commit_local_locked(user, undo, &undo_lsn, &why) == 0)
				user_store_changed_locked(user, undo_lsn);
			op_free(&undo);
		}
		return -1;
	}
	op_free(&op);
	if (wait_durable_locked(user, lsn, error_r) < 0)
		return -1;
	user_store_changed_locked(user, lsn);
	return 0;
}

int user_delete_locked(struct user *user, const char *mailbox,
		       const char **error_r)
{
	struct op *op = NULL;
	uint64_t lsn;
	const char *why = NULL;

	if (user_writable(user, error_r) < 0)
		return -1;
	if (mailbox_name_is_inbox(mailbox)) {
		*error_r = "INBOX cannot be deleted";
		return -1;
	}
	if (mailstate_delete(user->state, mailbox, &op, error_r) < 0)
		return -1;
	if (user_store_commit_local_locked(user, op, &lsn, error_r) < 0) {
		op_free(&op);
		return -1;
	}
	op_free(&op);
	/* Durable in the journal: the folder goes now or, if this fails,
	 * at the next reconciliation. */
	if (maildir_mailbox_delete(user->md, mailbox, &why) < 0 &&
	    maildir_mailbox_exists(user->md, mailbox))
		log_warnx("cannot remove folder %s of %s: %s", mailbox,
			  user->name, why);
	user_store_changed_locked(user, lsn);
	return 0;
}

/* Names of the live mailboxes strictly inside name (name + sep + ...). */
static int inferiors(struct user *user, const char *name, const char ***out_r,
		     size_t *count_r)
{
	const char **all = NULL;
	size_t count = 0, n = 0, len = strlen(name);

	if (mailstate_mailbox_list(user->state, &all, &count) < 0)
		return -1;
	for (size_t i = 0; i < count; i++) {
		if (strncmp(all[i], name, len) == 0 &&
		    all[i][len] == user->store->sep)
			all[n++] = all[i];
	}
	*out_r = all;
	*count_r = n;
	return 0;
}

int user_rename_locked(struct user *user, const char *old_name,
		       const char *new_name, const char **error_r)
{
	const char **kids = NULL;
	size_t kid_count = 0;
	size_t old_len = strlen(old_name);
	uint64_t lsn = 0;
	const char *why = NULL;
	int ret = 0;

	if (user_writable(user, error_r) < 0)
		return -1;
	if (mailbox_name_is_inbox(old_name)) {
		*error_r = "Renaming INBOX is not supported";
		return -1;
	}
	if (mailstate_mailbox_find(user->state, old_name) == NULL) {
		*error_r = "No such mailbox";
		return -1;
	}
	if (mailstate_mailbox_find(user->state, new_name) != NULL) {
		*error_r = "Mailbox already exists";
		return -1;
	}
	if (inferiors(user, old_name, &kids, &kid_count) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	/* Check every new name first, so that the renames below fail only
	 * for want of memory or disk. */
	for (size_t i = 0; i < kid_count; i++) {
		char to[MAILBOX_NAME_BUFSIZE * 2], canon[MAILBOX_NAME_BUFSIZE];
		int n = snprintf(to, sizeof(to), "%s%s", new_name,
				 kids[i] + old_len);

		if (n < 0 || (size_t)n >= sizeof(to) ||
		    mailbox_name_validate(to, (size_t)n, user->store->sep,
					  canon, error_r) < 0) {
			*error_r = "A renamed inferior's name would be invalid";
			free(kids);
			return -1;
		}
		if (mailstate_mailbox_find(user->state, to) != NULL) {
			*error_r = "An inferior's new name already exists";
			free(kids);
			return -1;
		}
	}
	/* RFC 3501: inferiors are renamed along.  One op per mailbox, all
	 * journalled before the folders move (one rename moves them all). */
	for (size_t i = 0; i <= kid_count && ret == 0; i++) {
		char from[MAILBOX_NAME_BUFSIZE * 2], to[MAILBOX_NAME_BUFSIZE * 2];
		struct op *op = NULL;

		if (i == 0) {
			snprintf(from, sizeof(from), "%s", old_name);
			snprintf(to, sizeof(to), "%s", new_name);
		} else {
			snprintf(from, sizeof(from), "%s", kids[i - 1]);
			if ((size_t)snprintf(to, sizeof(to), "%s%s", new_name,
					     kids[i - 1] + old_len) >=
			    sizeof(to)) {
				*error_r = "Mailbox name too long";
				ret = -1;
				break;
			}
		}
		if (mailstate_rename(user->state, from, to, &op, error_r) < 0) {
			ret = -1;
			break;
		}
		if (user_store_journal_local(user, op, &lsn, error_r) < 0) {
			op_free(&op);
			reload_after_failure_locked(user);
			ret = -1;
			break;
		}
		op_free(&op);
	}
	free(kids);
	if (ret < 0 && lsn == 0)
		return -1;
	if (wait_durable_locked(user, lsn, error_r) < 0)
		return -1;
	if (maildir_mailbox_rename(user->md, old_name, new_name, &why) < 0)
		log_warnx("cannot rename folder %s of %s: %s (the next "
			  "reconciliation retries)", old_name, user->name, why);
	else
		note_rename(user, old_name, new_name);
	user_store_changed_locked(user, lsn);
	return ret;
}

int user_append_locked(struct user *user, const char *mailbox,
		       const void *body, size_t body_len, int64_t internal_date,
		       unsigned flags, const char *const *keywords,
		       size_t keyword_count, uint32_t *uid_r,
		       uint32_t *uidvalidity_r, const char **error_r)
{
	struct op *op = NULL;
	uint64_t lsn;
	const char *why = NULL;

	if (user_writable(user, error_r) < 0)
		return -1;
	if (mailstate_append(user->state, mailbox, body, body_len,
			     internal_date, flags, keywords, keyword_count,
			     &op, error_r) < 0)
		return -1;
	if (user_store_journal_local(user, op, &lsn, error_r) < 0) {
		op_free(&op);
		reload_after_failure_locked(user);
		return -1;
	}
	/* The file's fsyncs overlap the journal's group commit. */
	if (maildir_deliver(user->md, mailbox, op->tag,
			    user_store_maildir_flags(flags), body, body_len,
			    &why) < 0) {
		const struct mailstate_msg *msg =
			mailstate_msg_find(user->state, op->tag);
		struct op *undo = NULL;
		uint64_t undo_lsn;

		*error_r = user_store_set_error("cannot store the message: %s", why);
		/* The append is in the journal: expunge it again so no
		 * replica ever shows a message we said NO to. */
		if (msg != NULL &&
		    mailstate_expunge(user->state, msg->mailbox, &msg, 1,
				      &undo, &why) == 0 && undo != NULL) {
			if (user_store_commit_local_locked(user, undo, &undo_lsn, &why) == 0)
				user_store_changed_locked(user, undo_lsn);
			op_free(&undo);
		}
		op_free(&op);
		return -1;
	}
	if (wait_durable_locked(user, lsn, error_r) < 0) {
		op_free(&op);
		return -1;
	}
	if (uid_r != NULL)
		*uid_r = op->uid;
	if (uidvalidity_r != NULL)
		*uidvalidity_r = op->uidvalidity;
	op_free(&op);
	user_store_changed_locked(user, lsn);
	return 0;
}

int user_expunge_locked(struct user *user, struct mailstate_mailbox *box,
			const struct mailstate_msg *const *msgs, size_t count,
			const char **error_r)
{
	struct op *op = NULL;
	char **tags;
	unsigned *flags;
	char *name;
	uint64_t lsn;
	const char *why = NULL;
	int ret = -1;

	if (user_writable(user, error_r) < 0)
		return -1;
	if (count == 0)
		return 0;
	/* The messages are freed by the expunge: keep what the unlinks
	 * need. */
	tags = calloc(count, sizeof(*tags));
	flags = calloc(count, sizeof(*flags));
	name = strdup(mailstate_mailbox_name(box));
	if (tags == NULL || flags == NULL || name == NULL) {
		free(tags);
		free(flags);
		free(name);
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		tags[i] = strdup(msgs[i]->tag);
		flags[i] = user_store_maildir_flags(msgs[i]->flags);
	}
	if (mailstate_expunge(user->state, box, msgs, count, &op, error_r) <
	    0)
		goto out;
	if (op == NULL) {
		/* Nothing left to expunge. */
		ret = 0;
		goto out;
	}
	if (user_store_commit_local_locked(user, op, &lsn, error_r) < 0)
		goto out;
	for (size_t i = 0; i < count; i++) {
		if (tags[i] != NULL &&
		    maildir_message_expunge(user->md, name, tags[i], flags[i],
					    &why) < 0)
			log_warnx("cannot unlink %s in %s of %s: %s", tags[i],
				  name, user->name, why);
	}
	user_store_changed_locked(user, lsn);
	ret = 0;
out:
	op_free(&op);
	for (size_t i = 0; i < count; i++)
		free(tags[i]);
	free(tags);
	free(flags);
	free(name);
	return ret;
}

int user_store_flags_locked(struct user *user, struct mailstate_mailbox *box,
			    const struct mailstate_msg *const *msgs,
			    size_t count, enum mailstate_store_mode mode,
			    unsigned flags, const char *const *keywords,
			    size_t keyword_count, const char **error_r)
{
	struct op *op = NULL;
	unsigned *before;
	uint64_t lsn;
	const char *why = NULL;
	const char *name = mailstate_mailbox_name(box);

	if (user_writable(user, error_r) < 0)
		return -1;
	if (count == 0)
		return 0;
	before = calloc(count, sizeof(*before));
	if (before == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < count; i++)
		before[i] = user_store_maildir_flags(msgs[i]->flags);
	if (mailstate_store(user->state, box, msgs, count, mode, flags,
			    keywords, keyword_count, &op, error_r) < 0) {
		free(before);
		return -1;
	}
	if (op == NULL) {
		free(before);
		return 0;
	}
	if (user_store_journal_local(user, op, &lsn, error_r) < 0) {
		op_free(&op);
		free(before);
		reload_after_failure_locked(user);
		return -1;
	}
	op_free(&op);
	/* Renames overlap the journal's fsync; a failed one is repaired by
	 * the next reconciliation (the state is the truth). */
	for (size_t i = 0; i < count; i++) {
		unsigned now = user_store_maildir_flags(msgs[i]->flags);

		if (now != before[i] &&
		    maildir_message_set_flags(user->md, name, msgs[i]->tag,
					      before[i], now, &why) < 0)
			log_warnx("cannot rename %s in %s of %s: %s",
				  msgs[i]->tag, name, user->name, why);
	}
	free(before);
	if (wait_durable_locked(user, lsn, error_r) < 0)
		return -1;
	user_store_changed_locked(user, lsn);
	return 0;
}

int user_message_open_locked(struct user *user,
			     const struct mailstate_mailbox *box,
			     const struct mailstate_msg *msg, int *fd_r,
			     uint64_t *size_r, const char **error_r)
{
	if (maildir_message_open(user->md, mailstate_mailbox_name(box),
				 msg->tag, user_store_maildir_flags(msg->flags),
				 fd_r, size_r, error_r) < 0)
		return -1;
	return 0;
}

/*
 * Subscriptions.
 */

/* The subscription list is stored like a snapshot (snapshot.h): one
 * checksummed file per user, replaced atomically, holding the names
 * NUL-separated. */
static int subs_load_locked(struct user *user)
{
	char fname[SNAPSHOT_NAME_BUFSIZE];
	struct buf data = BUF_INIT;
	uint64_t unused;
	const char *why = NULL;
	int ret;

	if (user->subs_loaded)
		return 0;
	if (snapshot_name_for_user(user->name, fname) < 0)
		return -1;
	ret = snapshot_read(user->store->subs_dir, fname, &unused, &data, &why);
	for (size_t off = 0; ret > 0 && off < data.len;) {
		const char *name = (const char *)data.data + off;
		size_t len = strnlen(name, data.len - off);
		char **subs;

		off += len + 1;
		if (len == 0 || off > data.len)
			continue;
		subs = realloc(user->subs, (user->sub_count + 1) * sizeof(*subs));
		if (subs == NULL)
			break;
		user->subs = subs;
		user->subs[user->sub_count] = strndup(name, len);
		if (user->subs[user->sub_count] != NULL)
			user->sub_count++;
	}
	buf_free(&data);
	if (ret < 0) {
		log_warnx("cannot read the subscriptions of %s: %s", user->name,
			  why);
		return -1;
	}
	user->subs_loaded = true;
	return 0;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int subs_save_locked(struct user *user, const char **error_r)
{
	char fname[SNAPSHOT_NAME_BUFSIZE];
	struct buf data = BUF_INIT;
	const char *why = NULL;
	int ret = 0;

	if (snapshot_name_for_user(user->name, fname) < 0) {
		*error_r = "user name too long for this node";
		return -1;
	}
	for (size_t i = 0; i < user->sub_count && ret == 0; i++)
		ret = buf_append(&data, user->subs[i],
				 strlen(user->subs[i]) + 1);
	if (ret == 0)
		ret = snapshot_write(user->store->subs_dir, fname, 0,
				     data.data, data.len, &why);
	buf_free(&data);
	if (ret < 0)
		*error_r = user_store_set_error("cannot save subscriptions: %s",
						why != NULL ? why
							    : "out of memory");
	return ret < 0 ? -1 : 0;
}

int user_subscribe_locked(struct user *user, const char *mailbox,
			  bool subscribe, const char **error_r)
{
	size_t i;

	if (subs_load_locked(user) < 0) {
		*error_r = "cannot read subscriptions";
		return -1;
	}
	for (i = 0; i < user->sub_count; i++) {
		if (strcmp(user->subs[i], mailbox) == 0)
			break;
	}
	if (subscribe) {
		char **subs;

		if (i < user->sub_count)
			return 0;
		subs = realloc(user->subs,
			       (user->sub_count + 1) * sizeof(*subs));
		if (subs == NULL) {
			*error_r = "out of memory";
			return -1;
		}
		user->subs = subs;
		user->subs[user->sub_count] = strdup(mailbox);
		if (user->subs[user->sub_count] == NULL) {
			*error_r = "out of memory";
			return -1;
		}
		user->sub_count++;
		qsort(user->subs, user->sub_count, sizeof(*user->subs),
		      compare_names);
	} else {
		if (i == user->sub_count)
			return 0;
		free(user->subs[i]);
		memmove(&user->subs[i], &user->subs[i + 1],
			(user->sub_count - i - 1) * sizeof(*user->subs));
		user->sub_count--;
	}
	return subs_save_locked(user, error_r);
}

const char *const *user_subscriptions_locked(struct user *user,
					     size_t *count_r)
{
	if (subs_load_locked(user) < 0) {
		*count_r = 0;
		return NULL;
	}
	*count_r = user->sub_count;
	return (const char *const *)user->subs;
}

