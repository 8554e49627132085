/*
 * user_sync.c - the user store's side of replication: per-link clocks,
 * durable receipt of peers' ops, and the applier thread.
 *
 * A received op is first written to this node's journal as a JREC_REMOTE
 * record and made durable (user_store_receive); only then may the link
 * acknowledge it.  The applier thread tails the journal and applies
 * remote records in journal order, which is the order they were received
 * in, which the receive check keeps causal (vclock_deliverable).  After a
 * crash, replay applies them like every other record, so an op is never
 * lost between its acknowledgement and its application.
 *
 * Lock order: user->lock, then store->clock_lock (see user_store_int.h).
 * The applier takes a user's lock per record and never holds two.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "server.h"
#include "user_store_int.h"

/* How long received messages may wait for their bulk sync. */
#define FILES_SYNC_MS 1000

/*
 * Link bookkeeping.
 */

const char *user_store_link_key(const struct user_store *store,
				const char *name)
{
	return store->is_storage ? name : "";
}

struct link_state *user_store_link_locked(struct user_store *store,
					  const char *key)
{
	struct link_state *links;

	for (size_t i = 0; i < store->link_count; i++) {
		if (strcmp(store->links[i].key, key) == 0)
			return &store->links[i];
	}
	links = realloc(store->links, (store->link_count + 1) * sizeof(*links));
	if (links == NULL)
		return NULL;
	store->links = links;
	links = &store->links[store->link_count];
	memset(links, 0, sizeof(*links));
	snprintf(links->key, sizeof(links->key), "%s", key);
	links->clock = vclock_new();
	if (links->clock == NULL)
		return NULL;
	store->link_count++;
	return links;
}

int user_store_note_record_locked(struct user_store *store,
				  const struct jrec *jrec)
{
	struct link_state *link =
		user_store_link_locked(store,
				       user_store_link_key(store, jrec->name));
	const char *why = NULL;

	if (link == NULL || vclock_merge(link->clock, jrec->clock, &why) < 0)
		return -1;
	if (jrec->type == JREC_REMOTE && jrec->origin_lsn > link->received_lsn)
		link->received_lsn = jrec->origin_lsn;
	return 0;
}

void user_set_home_locked(struct user *user, const char *worker)
{
	if (user->store->is_storage && vclock_name_valid(worker))
		snprintf(user->home, sizeof(user->home), "%s", worker);
}

const char *user_home_locked(const struct user *user)
{
	return user->home;
}

uint64_t user_store_received_lsn(struct user_store *store, const char *peer)
{
	struct link_state *link;
	uint64_t lsn = 0;

	pthread_mutex_lock(&store->clock_lock);
	link = user_store_link_locked(store, user_store_link_key(store, peer));
	if (link != NULL)
		lsn = link->received_lsn;
	pthread_mutex_unlock(&store->clock_lock);
	return lsn;
}

struct vclock *user_store_link_clock(struct user_store *store,
				     const char *peer)
{
	struct link_state *link;
	struct vclock *copy = NULL;

	pthread_mutex_lock(&store->clock_lock);
	link = user_store_link_locked(store, user_store_link_key(store, peer));
	if (link != NULL)
		copy = vclock_copy(link->clock);
	pthread_mutex_unlock(&store->clock_lock);
	return copy;
}

bool user_store_record_for_peer(const struct user_store *store,
				const struct jrec *jrec, const char *peer)
{
	if (jrec->type != JREC_LOCAL)
		return false;
	/* A worker ships all its ops to storage; storage ships each worker
	 * the ops of that worker's users. */
	return !store->is_storage || strcmp(jrec->name, peer) == 0;
}

/*
 * Receiving.
 */

int user_store_receive(struct user_store *store, const char *origin,
		       uint64_t origin_lsn, const struct vclock *clock,
		       const void *op_bytes, size_t op_len, uint64_t *lsn_r,
		       const char **error_r)
{
	const char *why = NULL;
	int ret = user_store_receive_async(store, origin, origin_lsn, clock,
					   op_bytes, op_len, lsn_r, error_r);

	if (ret == 1 && journal_wait_durable(store->journal, *lsn_r, &why) < 0) {
		*error_r = user_store_set_error("cannot sync the journal: %s",
						why);
		return -1;
	}
	return ret;
}

int user_store_receive_async(struct user_store *store, const char *origin,
			     uint64_t origin_lsn, const struct vclock *clock,
			     const void *op_bytes, size_t op_len,
			     uint64_t *lsn_r, const char **error_r)
{
	struct op *op = NULL;
	struct buf prefix = BUF_INIT;
	struct journal_part parts[2];
	struct link_state *link;
	const char *why = NULL;
	int ret = -1;

	*lsn_r = 0;
	if (op_decode(op_bytes, op_len, &op, &why) < 0) {
		*error_r = user_store_set_error("malformed op: %s", why);
		return -1;
	}
	pthread_mutex_lock(&store->clock_lock);
	link = user_store_link_locked(store, user_store_link_key(store, origin));
	if (link == NULL) {
		*error_r = "out of memory";
		goto out;
	}
	if (vclock_is_duplicate(link->clock, clock, origin)) {
		ret = 0;
		goto out;
	}
	if (!vclock_deliverable(link->clock, clock, origin)) {
		*error_r = "op out of causal order";
		goto out;
	}
	if (jrec_encode_prefix(&prefix, JREC_REMOTE, origin, origin_lsn, clock,
			       &why) < 0) {
		*error_r = why;
		goto out;
	}
	parts[0].data = prefix.data;
	parts[0].len = prefix.len;
	parts[1].data = op_bytes;
	parts[1].len = op_len;
	if (journal_append_async(store->journal, JREC_REMOTE, parts, 2, lsn_r,
				 &why) < 0) {
		*error_r = user_store_set_error("cannot write the journal: %s",
						why);
		goto out;
	}
	if (vclock_merge(link->clock, clock, &why) < 0) {
		*error_r = "out of memory";
		goto out;
	}
	if (origin_lsn > link->received_lsn)
		link->received_lsn = origin_lsn;
	ret = 1;
out:
	pthread_mutex_unlock(&store->clock_lock);
	buf_free(&prefix);
	op_free(&op);
	return ret;
}

/*
 * Applying.
 */

/* What a message looked like before a remote op changed it. */
struct msg_before {
	char tag[ORSET_TAG_BUFSIZE];
	char mailbox[MAILBOX_NAME_BUFSIZE];
	unsigned md_flags;
	bool present;
};

static struct msg_before *remember(struct user *user, char **tags,
				   size_t count)
{
	struct msg_before *before = calloc(count + 1, sizeof(*before));

	if (before == NULL)
		return NULL;
	for (size_t i = 0; i < count; i++) {
		const struct mailstate_msg *msg =
			mailstate_msg_find(user->state, tags[i]);

		snprintf(before[i].tag, sizeof(before[i].tag), "%s", tags[i]);
		if (msg == NULL)
			continue;
		before[i].present = true;
		before[i].md_flags = user_store_maildir_flags(msg->flags);
		snprintf(before[i].mailbox, sizeof(before[i].mailbox), "%s",
			 mailstate_mailbox_name(msg->mailbox));
	}
	return before;
}

/* Unlinks the files of remembered messages the op removed. */
static void unlink_removed(struct user *user, const struct msg_before *before,
			   size_t count)
{
	const char *why = NULL;

	for (size_t i = 0; i < count; i++) {
		if (before[i].present &&
		    mailstate_msg_find(user->state, before[i].tag) == NULL)
			maildir_message_expunge(user->md, before[i].mailbox,
						before[i].tag,
						before[i].md_flags, &why);
	}
}

/* Renames the files of remembered messages whose flags changed. */
static void rename_changed(struct user *user, const struct msg_before *before,
			   size_t count)
{
	const char *why = NULL;

	for (size_t i = 0; i < count; i++) {
		const struct mailstate_msg *msg =
			mailstate_msg_find(user->state, before[i].tag);
		unsigned now;

		if (!before[i].present || msg == NULL)
			continue;
		now = user_store_maildir_flags(msg->flags);
		if (now != before[i].md_flags)
			maildir_message_set_flags(user->md, before[i].mailbox,
						  before[i].tag,
						  before[i].md_flags, now,
						  &why);
	}
}

/* The Maildir work of a remote op, done after applying it.  Like local
 * changes, a failed step is left to the next reconciliation: the state
 * is the truth and the journal holds every body. */
static void materialise_locked(struct user *user, const struct op *op,
			       struct msg_before *before, size_t before_count)
{
	const struct mailstate_msg *msg;
	const char *why = NULL;

	switch (op->type) {
	case OP_CREATE:
		if (mailstate_mailbox_find(user->state, op->mailbox) != NULL &&
		    !maildir_mailbox_exists(user->md, op->mailbox))
			maildir_mailbox_create(user->md, op->mailbox, &why);
		break;
	case OP_APPEND:
		msg = mailstate_msg_find(user->state, op->tag);
		/* The mailbox may have been deleted or renamed here while the
		 * append happened there: its folder comes back. */
		if (msg != NULL &&
		    !maildir_mailbox_exists(user->md,
					    mailstate_mailbox_name(msg->mailbox)))
			maildir_mailbox_create(user->md,
					       mailstate_mailbox_name(msg->mailbox),
					       &why);
		if (msg != NULL &&
		    maildir_deliver(user->md, mailstate_mailbox_name(msg->mailbox),
				    op->tag,
				    user_store_maildir_flags(msg->flags),
				    op->body, op->body_len, &why) < 0)
			log_warnx("cannot store replicated message %s of %s: "
				  "%s", op->tag, user->name, why);
		break;
	case OP_STORE:
		rename_changed(user, before, before_count);
		break;
	case OP_EXPUNGE:
		unlink_removed(user, before, before_count);
		break;
	case OP_DELETE:
		unlink_removed(user, before, before_count);
		if (mailstate_mailbox_find(user->state, op->mailbox) == NULL &&
		    maildir_mailbox_exists(user->md, op->mailbox))
			maildir_mailbox_delete(user->md, op->mailbox, &why);
		break;
	case OP_RENAME:
		/* Rare: bring every folder in line with the state. */
		user_store_reconcile_folders(user);
		break;
	case OP_UID_RENUMBER:
		break;
	}
}

/* materialise_locked without fsyncs, where user_store_sync_files can
 * make them durable in bulk (syncfs); the record is durable already and
 * a crash before that sync is repaired from it at start-up (the
 * "=files" checkpoint says which files to verify). */
static void materialise_lazily_locked(struct user *user, const struct op *op,
				      uint64_t lsn, struct msg_before *before,
				      size_t before_count)
{
#ifdef HAVE_SYNCFS
	maildir_set_lazy(true);
	user->lazy_lsn = lsn;
	atomic_store(&user->store->lazy_lsn, lsn);
#else
	(void)lsn;
#endif
	materialise_locked(user, op, before, before_count);
	maildir_set_lazy(false);
}

/* Worker only: UIDs both replicas assigned during a partition are
 * renumbered here, and the renumbering ships to storage as local ops. */
static void resolve_uid_conflicts_locked(struct user *user)
{
	struct op **ops = NULL;
	size_t count = 0;
	const char *why = NULL;

	if (user->store->is_storage)
		return;
	if (mailstate_resolve_uid_conflicts(user->state, &ops, &count, &why) <
	    0) {
		log_warnx("cannot resolve UID conflicts of %s: %s", user->name,
			  why);
		return;
	}
	for (size_t i = 0; i < count; i++) {
		uint64_t lsn;

		if (user_store_commit_local_locked(user, ops[i], &lsn, &why) ==
		    0)
			user_store_changed_locked(user, lsn);
		else
			log_warnx("cannot journal a UID renumbering of %s: %s",
				  user->name, why);
		op_free(&ops[i]);
	}
	free(ops);
	if (count > 0)
		log_info("renumbered conflicting UIDs of %s in %zu mailboxes",
			 user->name, count);
}

static void apply_remote_locked(struct user *user, const struct op *op,
				uint64_t lsn)
{
	struct msg_before *before = NULL;
	size_t before_count = 0;
	const char *why = NULL;

	if (op->type == OP_STORE) {
		char **tags = calloc(op->entry_count + 1, sizeof(*tags));

		if (tags != NULL) {
			for (size_t i = 0; i < op->entry_count; i++)
				tags[i] = op->entries[i].msg_tag;
			before = remember(user, tags, op->entry_count);
			before_count = op->entry_count;
			free(tags);
		}
	} else if (op->type == OP_EXPUNGE || op->type == OP_DELETE) {
		before = remember(user, op->msg_tags, op->msg_tag_count);
		before_count = op->msg_tag_count;
	}
	if (mailstate_apply(user->state, op, &why) < 0) {
		log_warnx("replicated op %s of %s not applied: %s",
			  op_type_name(op->type), user->name, why);
	} else {
		if (op->type == OP_APPEND)
			user_store_note_append(user, op->tag, lsn, false);
		materialise_lazily_locked(user, op, lsn, before,
					  before != NULL ? before_count : 0);
		if (op->type == OP_APPEND)
			resolve_uid_conflicts_locked(user);
	}
	free(before);
	user_store_note_applied_locked(user, lsn);
	user->version++;
	pthread_cond_broadcast(&user->changed);
}

static void apply_record(struct user_store *store,
			 const struct journal_record *rec)
{
	struct jrec jrec;
	struct op *op = NULL;
	struct user *user;
	const char *why = NULL;

	if (rec->type != JREC_REMOTE)
		return;
	if (user_store_decode_op(rec, &jrec, &op, &why) < 0) {
		log_error("cannot apply a received record: %s", why);
		return;
	}
	user = user_store_table_get(store, op->user);
	if (user != NULL) {
		pthread_mutex_lock(&user->lock);
		user_set_home_locked(user, jrec.name);
		if (user_store_prepare_locked(user, &why) < 0)
			log_error("cannot load %s to apply a received op: %s",
				  op->user, why);
		else
			apply_remote_locked(user, op, rec->lsn);
		pthread_mutex_unlock(&user->lock);
	}
	jrec_clear(&jrec);
	op_free(&op);
}

static long long monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool lazy_pending(struct user_store *store)
{
	return atomic_load(&store->lazy_lsn) >
	       atomic_load(&store->files_synced_lsn);
}

/* The applier's bulk sync: when lazy work waits and FILES_SYNC_MS passed
 * since the last one.  Returns how long the applier may sleep. */
static int sync_files_if_due(struct user_store *store, long long *last_ms)
{
	long long now = monotonic_ms();
	const char *why = NULL;

	if (!lazy_pending(store))
		return 1000;
	if (now - *last_ms < FILES_SYNC_MS)
		return (int)(FILES_SYNC_MS - (now - *last_ms));
	*last_ms = now;
	if (user_store_sync_files(store, false, &why) < 0)
		log_error("cannot make received messages durable: %s "
			  "(their records are kept until it works)", why);
	return FILES_SYNC_MS;
}

static void *applier_main(void *arg)
{
	struct user_store *store = arg;
	struct journal_reader *reader;
	struct journal_record rec;
	const char *why = NULL;
	long long last_sync_ms = monotonic_ms();

	log_thread_name("applier");
	reader = journal_reader_new(store->journal, atomic_load(&store->applied_lsn) + 1,
				    &why);
	if (reader == NULL) {
		log_error("the applier cannot read the journal: %s", why);
		return NULL;
	}
	while (!atomic_load(&store->applier_stop)) {
		int ret = journal_reader_next(reader, &rec, &why);

		if (ret < 0) {
			log_error("the applier stopped: %s", why);
			break;
		}
		if (ret == 0) {
			int wait = sync_files_if_due(store, &last_sync_ms);

			journal_wait_new(store->journal,
					 journal_reader_position(reader) - 1,
					 &store->applier_stop, wait, NULL);
			continue;
		}
		apply_record(store, &rec);
		atomic_store(&store->applied_lsn, rec.lsn);
		(void)sync_files_if_due(store, &last_sync_ms);
	}
	journal_reader_free(&reader);
	return NULL;
}

uint64_t user_store_applied_lsn(struct user_store *store)
{
	return atomic_load(&store->applied_lsn);
}

int user_store_start_applier(struct user_store *store, const char **error_r)
{
	atomic_store(&store->applier_stop, false);
	if (server_thread_start(&store->applier, true, applier_main, store) <
	    0) {
		*error_r = user_store_set_error("cannot start the applier: %s",
						strerror(errno));
		return -1;
	}
	store->applier_running = true;
	return 0;
}

void user_sync_stop_applier(struct user_store *store)
{
	if (!store->applier_running)
		return;
	atomic_store(&store->applier_stop, true);
	journal_wake(store->journal);
	pthread_join(store->applier, NULL);
	store->applier_running = false;
	{
		const char *why = NULL;

		/* A clean stop leaves nothing for the next start to verify. */
		if (user_store_sync_files(store, true, &why) < 0)
			log_error("cannot make received messages durable: %s",
				  why);
	}
}

/*
 * Trimming.  Replay rebuilds the link clocks from the records it finds,
 * so before records go the link states are written to a checkpoint that
 * open reads first ("=links" among the snapshots: no user's file name
 * can be that, as '=' always starts a hex escape there).
 */

#define LINKS_CHECKPOINT "=links"
/* Every record up to its LSN has its Maildir work on stable storage. */
#define FILES_CHECKPOINT "=files"

int user_sync_load_files_marker(struct user_store *store,
				const char **error_r)
{
	struct buf data = BUF_INIT;
	uint64_t lsn = 0;
	const char *why = NULL;
	int ret;

	ret = snapshot_read(store->snapshot_dir, FILES_CHECKPOINT, &lsn, &data,
			    &why);
	buf_free(&data);
	if (ret < 0) {
		*error_r = user_store_set_error(
			"cannot read the files checkpoint: %s", why);
		return -1;
	}
	store->files_marker_lsn = ret > 0 ? lsn : 0;
	atomic_store(&store->files_synced_lsn, store->files_marker_lsn);
	return 0;
}

/* Writes out every dirty page and directory of the Maildir file system. */
static int sync_maildir_fs(struct user_store *store, const char **error_r)
{
#ifdef HAVE_SYNCFS
	int fd = open(store->maildir_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret;

	if (fd < 0) {
		*error_r = user_store_set_error("open(%s): %s",
						store->maildir_root,
						strerror(errno));
		return -1;
	}
	ret = syncfs(fd);
	if (ret < 0)
		*error_r = user_store_set_error("syncfs(%s): %s",
						store->maildir_root,
						strerror(errno));
	close(fd);
	return ret;
#else
	/* Without syncfs nothing is done lazily (materialise_lazily). */
	(void)store;
	(void)error_r;
	return 0;
#endif
}

int user_store_sync_files(struct user_store *store, bool persist,
			  const char **error_r)
{
	/* Everything applied by now had its Maildir calls made. */
	uint64_t target = atomic_load(&store->applied_lsn);
	const char *why = NULL;
	int ret = 0;

	pthread_mutex_lock(&store->files_lock);
	if (lazy_pending(store) || persist) {
		ret = sync_maildir_fs(store, error_r);
		/* Files a crash may have torn before this process are not
		 * verified yet: the checkpoint stays below them. */
		if (ret == 0 && atomic_load(&store->unverified_users) == 0 &&
		    target > store->files_marker_lsn) {
			ret = snapshot_write(store->snapshot_dir,
					     FILES_CHECKPOINT, target, "", 0,
					     &why);
			if (ret < 0)
				*error_r = user_store_set_error(
					"cannot write the files checkpoint: "
					"%s", why);
			else
				store->files_marker_lsn = target;
		}
	}
	if (ret == 0 && target > atomic_load(&store->files_synced_lsn))
		atomic_store(&store->files_synced_lsn, target);
	pthread_mutex_unlock(&store->files_lock);
	return ret;
}

static int links_encode_locked(struct user_store *store, struct buf *out)
{
	if (buf_put_u32(out, (uint32_t)store->link_count) < 0)
		return -1;
	for (size_t i = 0; i < store->link_count; i++) {
		const struct link_state *l = &store->links[i];
		size_t len = strlen(l->key);

		if (buf_put_u8(out, (uint8_t)len) < 0 ||
		    buf_append(out, l->key, len) < 0 ||
		    buf_put_u64(out, l->received_lsn) < 0 ||
		    vclock_encode(l->clock, out) < 0)
			return -1;
	}
	return 0;
}

int user_sync_load_links(struct user_store *store, const char **error_r)
{
	struct buf data = BUF_INIT;
	struct buf_reader r;
	uint64_t lsn;
	uint32_t count;
	const char *why = NULL;
	int ret;

	ret = snapshot_read(store->snapshot_dir, LINKS_CHECKPOINT, &lsn, &data,
			    &why);
	if (ret <= 0) {
		buf_free(&data);
		if (ret < 0)
			*error_r = user_store_set_error(
				"cannot read the link checkpoint: %s", why);
		return ret;
	}
	buf_reader_init(&r, data.data, data.len);
	ret = buf_get_u32(&r, &count) && count <= VCLOCK_ENTRIES_MAX ? 0 : -1;
	for (uint32_t i = 0; ret == 0 && i < count; i++) {
		const unsigned char *key;
		char name[VCLOCK_NAME_MAX + 1];
		uint8_t len;
		uint64_t received;
		struct vclock *clock = NULL;
		struct link_state *link;

		if (!buf_get_u8(&r, &len) || len > VCLOCK_NAME_MAX ||
		    !buf_get_bytes(&r, len, &key) ||
		    !buf_get_u64(&r, &received) ||
		    vclock_read(&r, &clock, &why) < 0) {
			ret = -1;
			break;
		}
		memcpy(name, key, len);
		name[len] = '\0';
		pthread_mutex_lock(&store->clock_lock);
		link = user_store_link_locked(store, name);
		if (link == NULL || vclock_merge(link->clock, clock, &why) < 0)
			ret = -1;
		else if (received > link->received_lsn)
			link->received_lsn = received;
		pthread_mutex_unlock(&store->clock_lock);
		vclock_free(&clock);
	}
	if (ret < 0 || r.left != 0) {
		*error_r = "corrupt link checkpoint";
		ret = -1;
	}
	buf_free(&data);
	return ret;
}

/* Every user of the table, in a new array (NULL when empty or out of
 * memory; *count_r tells which). */
static struct user **collect_users(struct user_store *store, size_t *count_r)
{
	struct user **users = NULL;
	size_t count = 0, cap = 0;

	pthread_mutex_lock(&store->lock);
	for (size_t i = 0; i < USER_TABLE_SIZE; i++) {
		for (struct user *u = store->table[i]; u != NULL; u = u->next) {
			if (count == cap) {
				size_t ncap = cap == 0 ? 64 : cap * 2;
				struct user **n =
					realloc(users, ncap * sizeof(*n));
				if (n == NULL) {
					free(users);
					pthread_mutex_unlock(&store->lock);
					*count_r = 1;
					return NULL;
				}
				users = n;
				cap = ncap;
			}
			users[count++] = u;
		}
	}
	pthread_mutex_unlock(&store->lock);
	*count_r = count;
	return users;
}

int user_store_trim(struct user_store *store, uint64_t peers_safe_lsn,
		    const char **error_r)
{
	struct user **users;
	size_t count;
	struct buf data = BUF_INIT;
	uint64_t durable = journal_durable_lsn(store->journal);
	uint64_t upto = peers_safe_lsn;
	uint64_t synced;
	const char *why = NULL;
	int ret;

	/* Records whose Maildir work is not durable yet stay. */
	if (user_store_sync_files(store, false, &why) < 0)
		log_warnx("trim: %s", why);
	synced = atomic_load(&store->files_synced_lsn);
	if (store->applier_running && synced < upto)
		upto = synced;
	if (durable < upto)
		upto = durable;
	/* Every user whose records would go gets a snapshot first.  The
	 * users are collected under the table lock and snapshotted outside
	 * it (users are never removed before user_store_free). */
	users = collect_users(store, &count);
	if (users == NULL && count > 0) {
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		struct user *u = users[i];

		pthread_mutex_lock(&u->lock);
		/* A user replayed but not used yet is reconciled first: its
		 * replay notes repair its files, and go with the snapshot. */
		if (u->first_unsnapped_lsn != 0 &&
		    u->first_unsnapped_lsn <= upto && !u->reconciled &&
		    user_store_prepare_locked(u, &why) < 0)
			log_warnx("cannot reconcile %s before trimming: %s",
				  u->name, why);
		if (u->first_unsnapped_lsn != 0 &&
		    u->first_unsnapped_lsn <= upto)
			user_store_snapshot_locked(u);
		if (u->first_unsnapped_lsn != 0 &&
		    u->first_unsnapped_lsn <= upto)
			upto = u->first_unsnapped_lsn - 1;
		pthread_mutex_unlock(&u->lock);
	}
	free(users);
	if (upto < journal_first_lsn(store->journal))
		return 0;
	pthread_mutex_lock(&store->clock_lock);
	ret = links_encode_locked(store, &data);
	pthread_mutex_unlock(&store->clock_lock);
	if (ret < 0 ||
	    snapshot_write(store->snapshot_dir, LINKS_CHECKPOINT, durable,
			   data.data, data.len, &why) < 0) {
		buf_free(&data);
		*error_r = user_store_set_error(
			"cannot write the link checkpoint: %s",
			why != NULL ? why : "out of memory");
		return -1;
	}
	buf_free(&data);
	ret = journal_trim(store->journal, upto + 1, &why);
	if (ret < 0) {
		*error_r = user_store_set_error("cannot trim the journal: %s",
						why);
		return -1;
	}
	if (ret > 0)
		log_info("journal trimmed below record %llu (%d segments)",
			 (unsigned long long)(upto + 1), ret);
	return ret;
}
