/*
 * test_user_store.c - changes are journalled and materialised; a reopened
 * store shows exactly what was acknowledged; crash leftovers are repaired.
 */
#include "autoconfig.h"

#include "cu_run.h"
#include "maildir.h"
#include "user_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *root;
static char maildir_root[512], crdt_root[512];

static struct user_store *open_store(unsigned snapshot_every)
{
	struct user_store_options opts;
	struct user_store *store = NULL;
	const char *error = NULL;

	memset(&opts, 0, sizeof(opts));
	opts.node_name = "test";
	opts.maildir_root = maildir_root;
	opts.crdt_root = crdt_root;
	opts.hierarchy_separator = '.';
	opts.snapshot_every = snapshot_every;
	if (user_store_open(&opts, &store, &error) < 0)
		fprintf(stderr, "user_store_open: %s\n", error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(store);
	return store;
}

static void setup(void)
{
	root = cu_tempdir("pluto-us");
	snprintf(maildir_root, sizeof(maildir_root), "%s/maildirs", root);
	snprintf(crdt_root, sizeof(crdt_root), "%s/crdt", root);
}

static void teardown(void)
{
	cu_rmtree(root);
	free(root);
	root = NULL;
}

/* Number of files in MaildirRoot/alice/<dir>/cur. */
static int count_files(const char *dir)
{
	char path[1024];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/alice/%s%scur", maildir_root, dir,
		 *dir ? "/" : "");
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(d);
	return n;
}

static struct mailstate_mailbox *box_of(struct user *u, const char *name)
{
	return mailstate_mailbox_find(user_state(u), name);
}

static void append(struct user *u, const char *mailbox, const char *body,
		   unsigned flags, uint32_t *uid_r)
{
	const char *error = NULL;

	user_lock(u);
	CU_ASSERT_EQUAL(user_append_locked(u, mailbox, body, strlen(body),
					   1700000000, flags, NULL, 0, uid_r,
					   NULL, &error),
			0);
	user_unlock(u);
}

static void test_inbox_and_append(void)
{
	struct user_store *store;
	struct user *u;
	const char *error = NULL;
	uint32_t uid1 = 0, uid2 = 0;
	uint64_t v;

	setup();
	store = open_store(0);
	u = user_store_get(store, "alice", &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	user_lock(u);
	CU_ASSERT_PTR_NOT_NULL(box_of(u, "INBOX"));
	CU_ASSERT_EQUAL(mailstate_mailbox_uidvalidity(box_of(u, "INBOX")), 1);
	v = user_version_locked(u);
	user_unlock(u);
	append(u, "INBOX", "Subject: one\r\n\r\nbody\r\n", 0, &uid1);
	append(u, "INBOX", "Subject: two\r\n\r\nbody\r\n", OP_FLAG_SEEN,
	       &uid2);
	CU_ASSERT_EQUAL(uid1, 1);
	CU_ASSERT_EQUAL(uid2, 2);
	CU_ASSERT_EQUAL(count_files(""), 2);
	user_lock(u);
	CU_ASSERT(user_version_locked(u) == v + 2);
	CU_ASSERT_EQUAL(user_append_locked(u, "Nope", "x", 1, 0, 0, NULL, 0,
					   NULL, NULL, &error),
			-1);
	CU_ASSERT_EQUAL(user_delete_locked(u, "INBOX", &error), -1);
	user_unlock(u);
	user_store_free(&store);

	/* Reopened, the state is what was acknowledged. */
	store = open_store(0);
	u = user_store_get(store, "alice", &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	user_lock(u);
	CU_ASSERT_EQUAL(mailstate_mailbox_count(box_of(u, "INBOX")), 2);
	CU_ASSERT_EQUAL(
		mailstate_mailbox_msg_at(box_of(u, "INBOX"), 1)->flags,
		OP_FLAG_SEEN);
	user_unlock(u);
	user_store_free(&store);
	teardown();
}

static void test_flags_expunge_folders(void)
{
	struct user_store *store;
	struct user *u;
	const char *error = NULL;
	const struct mailstate_msg *msgs[2];
	struct mailstate_mailbox *box;

	setup();
	store = open_store(0);
	u = user_store_get(store, "alice", &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	user_lock(u);
	CU_ASSERT_EQUAL(user_create_locked(u, "Work", &error), 0);
	CU_ASSERT_EQUAL(user_create_locked(u, "Work.Old", &error), 0);
	CU_ASSERT_EQUAL(user_create_locked(u, "Work", &error), -1);
	user_unlock(u);
	append(u, "Work", "a", 0, NULL);
	append(u, "Work", "b", 0, NULL);
	user_lock(u);
	box = box_of(u, "Work");
	msgs[0] = mailstate_mailbox_msg_at(box, 0);
	msgs[1] = mailstate_mailbox_msg_at(box, 1);
	CU_ASSERT_EQUAL(user_store_flags_locked(u, box, msgs, 2,
						MAILSTATE_STORE_ADD,
						OP_FLAG_DELETED, NULL, 0,
						&error),
			0);
	CU_ASSERT_EQUAL(mailstate_mailbox_msg_at(box, 0)->flags,
			OP_FLAG_DELETED);
	msgs[0] = mailstate_mailbox_msg_at(box, 0);
	CU_ASSERT_EQUAL(user_expunge_locked(u, box, msgs, 1, &error), 0);
	CU_ASSERT_EQUAL(mailstate_mailbox_count(box), 1);
	CU_ASSERT_EQUAL(count_files(".Work"), 1);
	/* Rename takes the inferior along. */
	CU_ASSERT_EQUAL(user_rename_locked(u, "Work", "Job", &error), 0);
	CU_ASSERT_PTR_NULL(box_of(u, "Work"));
	CU_ASSERT_PTR_NOT_NULL(box_of(u, "Job"));
	CU_ASSERT_PTR_NOT_NULL(box_of(u, "Job.Old"));
	CU_ASSERT_EQUAL(count_files(".Job"), 1);
	CU_ASSERT_EQUAL(count_files(".Job.Old"), 0);
	CU_ASSERT_EQUAL(count_files(".Work"), -1);
	CU_ASSERT_EQUAL(user_delete_locked(u, "Job.Old", &error), 0);
	CU_ASSERT_EQUAL(count_files(".Job.Old"), -1);
	user_unlock(u);
	user_store_free(&store);

	store = open_store(0);
	u = user_store_get(store, "alice", &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	user_lock(u);
	CU_ASSERT_PTR_NOT_NULL(box_of(u, "Job"));
	CU_ASSERT_PTR_NULL(box_of(u, "Job.Old"));
	CU_ASSERT_EQUAL(mailstate_mailbox_count(box_of(u, "Job")), 1);
	CU_ASSERT_EQUAL(mailstate_mailbox_msg_at(box_of(u, "Job"), 0)->flags,
			OP_FLAG_DELETED);
	user_unlock(u);
	user_store_free(&store);
	teardown();
}

/* Removes the one file in alice's INBOX cur/ and plants an orphan. */
static void damage_inbox(void)
{
	char path[1024];
	struct dirent *de;
	DIR *d;
	int fd;

	snprintf(path, sizeof(path), "%s/alice/cur", maildir_root);
	d = opendir(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/alice/cur/%s", maildir_root,
			 de->d_name);
		CU_ASSERT_EQUAL(unlink(path), 0);
	}
	closedir(d);
	snprintf(path, sizeof(path), "%s/alice/cur/orphan0123:2,", maildir_root);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	CU_ASSERT(fd >= 0);
	close(fd);
}

/* A crash after the journal record was durable but before the Maildir
 * work: the file is missing, and an unacknowledged delivery left an
 * orphan.  Reopening without a snapshot replays the journal, rewrites the
 * file from the record and removes the orphan. */
static void test_reconcile_after_crash(void)
{
	struct user_store *store;
	struct user *u;
	const char *error = NULL;
	int fd = -1;
	uint64_t size = 0;
	char buf[64], snap[1024];

	setup();
	store = open_store(1000);
	u = user_store_get(store, "alice", &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	append(u, "INBOX", "Subject: kept\r\n\r\nhello\r\n", 0, NULL);
	damage_inbox();
	user_store_free(&store);
	/* Closing wrote a snapshot; a crash would not have. */
	snprintf(snap, sizeof(snap), "%s/snapshots/alice.snap", crdt_root);
	CU_ASSERT_EQUAL(unlink(snap), 0);

	store = open_store(1000);
	u = user_store_get(store, "alice", &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	CU_ASSERT_EQUAL(count_files(""), 1);
	user_lock(u);
	CU_ASSERT_EQUAL(user_message_open_locked(
				u, box_of(u, "INBOX"),
				mailstate_mailbox_msg_at(box_of(u, "INBOX"), 0),
				&fd, &size, &error),
			0);
	user_unlock(u);
	CU_ASSERT_EQUAL(size, 24);
	CU_ASSERT_EQUAL(read(fd, buf, sizeof(buf)), 24);
	CU_ASSERT_EQUAL(memcmp(buf, "Subject: kept", 13), 0);
	close(fd);
	user_store_free(&store);
	teardown();
}

/* The same crash, but the journal is trimmed before anyone uses alice
 * again: her replay notes must not go with a snapshot before they have
 * repaired her files, so trimming reconciles her first. */
static void test_trim_before_first_use(void)
{
	struct user_store *store;
	const char *error = NULL;
	char snap[1024];

	setup();
	store = open_store(1000);
	CU_ASSERT_PTR_NOT_NULL_FATAL(user_store_get(store, "alice", &error));
	append(user_store_get(store, "alice", &error), "INBOX",
	       "Subject: kept\r\n\r\nhello\r\n", 0, NULL);
	damage_inbox();
	user_store_free(&store);
	snprintf(snap, sizeof(snap), "%s/snapshots/alice.snap", crdt_root);
	CU_ASSERT_EQUAL(unlink(snap), 0);

	store = open_store(1000);
	CU_ASSERT(user_store_trim(store, UINT64_MAX, &error) >= 0);
	CU_ASSERT_EQUAL(count_files(""), 1);
	CU_ASSERT_PTR_NOT_NULL(user_store_get(store, "alice", &error));
	CU_ASSERT_EQUAL(count_files(""), 1);
	user_store_free(&store);
	teardown();
}

/* Removes every message file of alice's folder dir ("" is INBOX). */
static void remove_files(const char *dir)
{
	char path[1024];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "%s/alice/%s%scur", maildir_root, dir,
		 *dir ? "/" : "");
	d = opendir(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	while ((de = readdir(d)) != NULL) {
		char file[1400];

		if (de->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
		CU_ASSERT_EQUAL(unlink(file), 0);
	}
	closedir(d);
}

/* Many files missing in several folders after a crash: all are written
 * again from the journal, in one pass over it. */
static void test_many_missing_files(void)
{
	struct user_store *store;
	struct user *u;
	const char *error = NULL;
	char snap[1024], body[64];

	setup();
	store = open_store(1000);
	u = user_store_get(store, "alice", &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	user_lock(u);
	CU_ASSERT_EQUAL(user_create_locked(u, "A", &error), 0);
	CU_ASSERT_EQUAL(user_create_locked(u, "B", &error), 0);
	user_unlock(u);
	for (int i = 0; i < 60; i++) {
		snprintf(body, sizeof(body), "Subject: %d\r\n\r\nbody\r\n", i);
		append(u, i % 3 == 0 ? "INBOX" : i % 3 == 1 ? "A" : "B", body,
		       i % 2 == 0 ? OP_FLAG_SEEN : 0, NULL);
	}
	user_store_free(&store);
	snprintf(snap, sizeof(snap), "%s/snapshots/alice.snap", crdt_root);
	CU_ASSERT_EQUAL(unlink(snap), 0);
	remove_files("");
	remove_files(".A");
	remove_files(".B");

	store = open_store(1000);
	u = user_store_get(store, "alice", &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	CU_ASSERT_EQUAL(count_files(""), 20);
	CU_ASSERT_EQUAL(count_files(".A"), 20);
	CU_ASSERT_EQUAL(count_files(".B"), 20);
	user_store_free(&store);
	teardown();
}

static void test_snapshots_and_subscriptions(void)
{
	struct user_store *store;
	struct user *u;
	const char *error = NULL;
	const char *const *subs;
	size_t n = 0;
	char snap[1024];
	struct stat st;

	setup();
	store = open_store(3);
	u = user_store_get(store, "bob@example.org", &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	for (int i = 0; i < 10; i++)
		append(u, "INBOX", "m", 0, NULL);
	snprintf(snap, sizeof(snap), "%s/snapshots/bob@example.org.snap",
		 crdt_root);
	CU_ASSERT_EQUAL(stat(snap, &st), 0);
	user_lock(u);
	CU_ASSERT_EQUAL(user_subscribe_locked(u, "INBOX", true, &error), 0);
	CU_ASSERT_EQUAL(user_subscribe_locked(u, "Sent", true, &error), 0);
	CU_ASSERT_EQUAL(user_subscribe_locked(u, "Sent", true, &error), 0);
	CU_ASSERT_EQUAL(user_subscribe_locked(u, "INBOX", false, &error), 0);
	user_unlock(u);
	user_store_free(&store);

	store = open_store(3);
	u = user_store_get(store, "bob@example.org", &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	user_lock(u);
	CU_ASSERT_EQUAL(mailstate_mailbox_count(box_of(u, "INBOX")), 10);
	subs = user_subscriptions_locked(u, &n);
	CU_ASSERT_EQUAL(n, 1);
	if (n == 1)
		CU_ASSERT_STRING_EQUAL(subs[0], "Sent");
	user_unlock(u);
	CU_ASSERT_PTR_NULL(user_store_get(store, "../evil", &error));
	CU_ASSERT_PTR_NULL(user_store_get(store, ".hidden", &error));
	CU_ASSERT_PTR_NULL(user_store_get(store, "", &error));
	user_store_free(&store);
	teardown();
}

static CU_TestInfo tests[] = {
	{ "INBOX and append", test_inbox_and_append },
	{ "flags, expunge and folders", test_flags_expunge_folders },
	{ "reconcile after a crash", test_reconcile_after_crash },
	{ "trim before the first use after a crash",
	  test_trim_before_first_use },
	{ "many missing files", test_many_missing_files },
	{ "snapshots and subscriptions", test_snapshots_and_subscriptions },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("user_store", tests);
}
