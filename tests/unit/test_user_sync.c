/*
 * test_user_sync.c - two user stores, a worker and storage, exchange their
 * journals the way sync links do: ops arrive durably, the applier applies
 * them with their Maildir work, duplicates are dropped, and concurrent
 * appends of a partition end with distinct UIDs on both replicas.
 */
#include "autoconfig.h"

#include "cu_run.h"
#include "jrec.h"
#include "snapshot.h"
#include "user_store.h"

#include <dirent.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char *root;

struct node {
	const char *name;
	struct user_store *store;
	uint64_t shipped;	/* last own LSN handed to the peer */
	char maildirs[512];
};

static uint64_t segment_size;	/* 0: the journal's default */

static void node_open(struct node *n, const char *name, bool is_storage)
{
	struct user_store_options opts;
	char crdt[512];
	const char *error = NULL;

	memset(&opts, 0, sizeof(opts));
	n->name = name;
	snprintf(n->maildirs, sizeof(n->maildirs), "%s/%s/maildirs", root,
		 name);
	snprintf(crdt, sizeof(crdt), "%s/%s/crdt", root, name);
	opts.node_name = name;
	opts.is_storage = is_storage;
	opts.maildir_root = n->maildirs;
	opts.crdt_root = crdt;
	opts.hierarchy_separator = '.';
	opts.journal_segment_size = segment_size;
	n->store = NULL;
	if (user_store_open(&opts, &n->store, &error) < 0)
		fprintf(stderr, "open %s: %s\n", name, error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(n->store);
	CU_ASSERT_EQUAL_FATAL(user_store_start_applier(n->store, &error), 0);
}

/* Ships every record of from meant for to; returns how many were stored
 * (not duplicates). */
static int ship(struct node *from, struct node *to, bool again)
{
	struct journal *j = user_store_journal(from->store);
	struct journal_reader *r;
	struct journal_record rec;
	const char *error = NULL;
	int stored = 0;

	r = journal_reader_new(j, again ? 1 : from->shipped + 1, &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	while (journal_reader_next(r, &rec, &error) == 1) {
		struct jrec jrec;
		uint64_t lsn;
		int ret;

		CU_ASSERT_EQUAL_FATAL(jrec_decode(&rec, &jrec, &error), 0);
		if (user_store_record_for_peer(from->store, &jrec, to->name)) {
			ret = user_store_receive(to->store, from->name, rec.lsn,
						 jrec.clock, jrec.op,
						 jrec.op_len, &lsn, &error);
			CU_ASSERT(ret >= 0);
			if (ret < 0)
				fprintf(stderr, "receive: %s\n", error);
			if (ret == 1)
				stored++;
			if (again)
				CU_ASSERT_EQUAL(ret, 0);
		}
		jrec_clear(&jrec);
		from->shipped = rec.lsn;
	}
	journal_reader_free(&r);
	return stored;
}

static void wait_applied(struct node *n)
{
	struct journal *j = user_store_journal(n->store);

	for (int i = 0; i < 500; i++) {
		if (user_store_applied_lsn(n->store) >= journal_durable_lsn(j))
			return;
		usleep(10 * 1000);
	}
	CU_FAIL("the applier did not catch up");
}

static struct user *get(struct node *n, const char *user)
{
	const char *error = NULL;
	struct user *u = user_store_get(n->store, user, &error);

	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	return u;
}

static void append(struct user *u, const char *mailbox, const char *body)
{
	const char *error = NULL;

	user_lock(u);
	CU_ASSERT_EQUAL(user_append_locked(u, mailbox, body, strlen(body), 0,
					   0, NULL, 0, NULL, NULL, &error),
			0);
	user_unlock(u);
}

/* The visible state of a user as text: mailboxes, UIDs, tags, flags. */
static void describe(struct user *u, char *out, size_t size)
{
	const char **names = NULL;
	size_t count = 0, len = 0;

	out[0] = '\0';
	user_lock(u);
	mailstate_mailbox_list(user_state(u), &names, &count);
	for (size_t i = 0; i < count; i++) {
		struct mailstate_mailbox *box =
			mailstate_mailbox_find(user_state(u), names[i]);
		len += (size_t)snprintf(out + len, size - len, "%s:%u:", names[i],
				mailstate_mailbox_uidvalidity(box));
		for (size_t k = 0; k < mailstate_mailbox_count(box); k++) {
			const struct mailstate_msg *m =
				mailstate_mailbox_msg_at(box, k);
			len += (size_t)snprintf(out + len, size - len,
					"%u/%s/%u ", m->uid, m->tag, m->flags);
		}
	}
	user_unlock(u);
	free(names);
}

/* Names of the files in a user's INBOX cur/, sorted, as one string. */
static void inbox_files(struct node *n, const char *user, char *out,
			size_t size)
{
	char path[1024];
	struct dirent **list = NULL;
	int count;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/%s/cur", n->maildirs, user);
	count = scandir(path, &list, NULL, alphasort);
	out[0] = '\0';
	for (int i = 0; i < count; i++) {
		if (list[i]->d_name[0] != '.')
			len += (size_t)snprintf(out + len, size - len, "%s ",
						list[i]->d_name);
		free(list[i]);
	}
	free(list);
}

static void test_worker_to_storage_and_back(void)
{
	struct node w, s;
	struct user *uw, *us;
	char a[4096], b[4096];
	const struct mailstate_msg *msg;
	const char *error = NULL;

	root = cu_tempdir("pluto-sync");
	node_open(&w, "worker-1", false);
	node_open(&s, "storage", true);
	w.shipped = s.shipped = 0;

	uw = get(&w, "alice");
	append(uw, "INBOX", "one");
	append(uw, "INBOX", "two");
	user_lock(uw);
	CU_ASSERT_EQUAL(user_create_locked(uw, "Sent", &error), 0);
	user_unlock(uw);
	CU_ASSERT(ship(&w, &s, false) >= 4);
	wait_applied(&s);
	/* Resending everything is harmless: all duplicates. */
	ship(&w, &s, true);

	us = get(&s, "alice");
	describe(uw, a, sizeof(a));
	describe(us, b, sizeof(b));
	CU_ASSERT_STRING_EQUAL(a, b);
	inbox_files(&w, "alice", a, sizeof(a));
	inbox_files(&s, "alice", b, sizeof(b));
	CU_ASSERT_STRING_EQUAL(a, b);
	CU_ASSERT(strlen(a) > 0);

	/* Storage serves alice during a failover: its change goes back. */
	user_lock(us);
	user_set_home_locked(us, "worker-1");
	msg = mailstate_mailbox_msg_at(
		mailstate_mailbox_find(user_state(us), "INBOX"), 0);
	CU_ASSERT_EQUAL(user_store_flags_locked(
				us, mailstate_mailbox_find(user_state(us),
							   "INBOX"),
				&msg, 1, MAILSTATE_STORE_ADD, OP_FLAG_SEEN, NULL,
				0, &error),
			0);
	user_unlock(us);
	CU_ASSERT_EQUAL(ship(&s, &w, false), 1);
	wait_applied(&w);
	describe(uw, a, sizeof(a));
	describe(us, b, sizeof(b));
	CU_ASSERT_STRING_EQUAL(a, b);
	inbox_files(&w, "alice", a, sizeof(a));
	inbox_files(&s, "alice", b, sizeof(b));
	CU_ASSERT_STRING_EQUAL(a, b);
	CU_ASSERT_PTR_NOT_NULL(strstr(a, ":2,S"));

	user_store_free(&w.store);
	user_store_free(&s.store);
	cu_rmtree(root);
	free(root);
}

static void test_partition_uid_conflict(void)
{
	struct node w, s;
	struct user *uw, *us;
	char a[4096], b[4096];

	root = cu_tempdir("pluto-sync");
	node_open(&w, "worker-1", false);
	node_open(&s, "storage", true);
	w.shipped = s.shipped = 0;
	uw = get(&w, "bob");
	append(uw, "INBOX", "before");
	ship(&w, &s, false);
	wait_applied(&s);
	us = get(&s, "bob");
	user_lock(us);
	user_set_home_locked(us, "worker-1");
	user_unlock(us);

	/* Both accept an append while the link is down: both pick UID 2. */
	append(uw, "INBOX", "at the worker");
	append(us, "INBOX", "at storage");
	ship(&w, &s, false);
	ship(&s, &w, false);
	wait_applied(&w);
	wait_applied(&s);
	/* The worker renumbered one of them; that ships to storage. */
	ship(&w, &s, false);
	wait_applied(&s);

	describe(uw, a, sizeof(a));
	describe(us, b, sizeof(b));
	CU_ASSERT_STRING_EQUAL(a, b);
	CU_ASSERT_PTR_NOT_NULL(strstr(a, "1/"));
	CU_ASSERT_PTR_NOT_NULL(strstr(a, "2/"));
	CU_ASSERT_PTR_NOT_NULL(strstr(a, "3/"));
	inbox_files(&w, "bob", a, sizeof(a));
	inbox_files(&s, "bob", b, sizeof(b));
	CU_ASSERT_STRING_EQUAL(a, b);

	/* A reopened worker replays received ops as well. */
	describe(uw, b, sizeof(b));
	user_store_free(&w.store);
	node_open(&w, "worker-1", false);
	uw = get(&w, "bob");
	describe(uw, a, sizeof(a));
	CU_ASSERT_STRING_EQUAL(a, b);
	user_store_free(&w.store);
	user_store_free(&s.store);
	cu_rmtree(root);
	free(root);
}

/* The one message file in a user's INBOX cur/ on n: its path. */
static void inbox_file_path(struct node *n, const char *user, char *out,
			    size_t size)
{
	char names[512];
	char *space;

	inbox_files(n, user, names, sizeof(names));
	space = strchr(names, ' ');
	CU_ASSERT_FATAL(space != NULL && space[1] == '\0');
	*space = '\0';
	snprintf(out, size, "%.600s/%.64s/cur/%.200s", n->maildirs, user,
		 names);
}

/* The applier writes received messages without fsyncs and makes them
 * durable in bulk.  A crash before that bulk sync may leave a file torn
 * while its record is durable: at the next start, the record is after
 * the "=files" checkpoint, and reconciliation rewrites the file. */
static void test_torn_received_file(void)
{
	static const char body[] = "Subject: received\r\n\r\nall of it\r\n";
	struct node w, s;
	struct user *us;
	char path[1400], snap[1024], got[256];
	const char *error = NULL;
	struct stat st;
	FILE *f;

	root = cu_tempdir("pluto-sync");
	node_open(&w, "worker-1", false);
	node_open(&s, "storage", true);
	w.shipped = s.shipped = 0;
	append(get(&w, "carol"), "INBOX", body);
	ship(&w, &s, false);
	wait_applied(&s);
	inbox_file_path(&s, "carol", path, sizeof(path));
	user_store_free(&s.store);

	/* What a crash before the bulk sync can leave: the checkpoint
	 * from before the APPEND, no snapshot, the file cut short. */
	snprintf(snap, sizeof(snap), "%s/storage/crdt/snapshots", root);
	CU_ASSERT_EQUAL(snapshot_write(snap, "=files", 0, "", 0, &error), 0);
	snprintf(snap, sizeof(snap), "%s/storage/crdt/snapshots/carol.snap",
		 root);
	unlink(snap);
	CU_ASSERT_EQUAL(truncate(path, 9), 0);

	node_open(&s, "storage", true);
	us = get(&s, "carol");
	CU_ASSERT_PTR_NOT_NULL(us);
	inbox_file_path(&s, "carol", path, sizeof(path));
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_size, (off_t)strlen(body));
	f = fopen(path, "rb");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(fread(got, 1, sizeof(got), f), strlen(body));
	CU_ASSERT_EQUAL(memcmp(got, body, strlen(body)), 0);
	fclose(f);

	/* Verified once: a clean stop moves the checkpoint past it. */
	user_store_free(&s.store);
	CU_ASSERT_EQUAL(truncate(path, 9), 0);
	node_open(&s, "storage", true);
	get(&s, "carol");
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_size, 9);

	user_store_free(&w.store);
	user_store_free(&s.store);
	cu_rmtree(root);
	free(root);
}

/* Trimming keeps what replay and the links still need: after trimming
 * and reopening, the state is the same, old ops from the peer are still
 * known duplicates and its new ops are still deliverable. */
static void test_trim(void)
{
	struct node w, s;
	struct user *uw, *us;
	char a[8192], b[8192];
	const char *error = NULL;
	uint64_t first, received;
	int removed;

	root = cu_tempdir("pluto-sync");
	segment_size = 2048;
	node_open(&w, "worker-1", false);
	node_open(&s, "storage", true);
	w.shipped = s.shipped = 0;
	uw = get(&w, "carol");
	ship(&w, &s, false);
	wait_applied(&s);
	us = get(&s, "carol");
	user_lock(us);
	user_set_home_locked(us, "worker-1");
	user_unlock(us);
	/* Storage's op lands in the worker's oldest segment... */
	append(us, "INBOX", "from storage");
	ship(&s, &w, false);
	wait_applied(&w);
	/* ...which the worker's own ops then push out of the journal. */
	for (int i = 0; i < 40; i++)
		append(uw, "INBOX", "a message long enough to fill segments "
				    "of two kilobytes after a few dozen");
	ship(&w, &s, false);
	wait_applied(&s);

	first = journal_first_lsn(user_store_journal(w.store));
	removed = user_store_trim(w.store, journal_durable_lsn(
						   user_store_journal(w.store)),
				  &error);
	CU_ASSERT(removed > 0);
	CU_ASSERT(journal_first_lsn(user_store_journal(w.store)) > first);
	/* Nothing above what the peers acknowledged goes. */
	CU_ASSERT_EQUAL(user_store_trim(s.store, 0, &error), 0);

	describe(uw, b, sizeof(b));
	received = user_store_received_lsn(w.store, "storage");
	CU_ASSERT(received > 0);
	user_store_free(&w.store);
	node_open(&w, "worker-1", false);
	uw = get(&w, "carol");
	describe(uw, a, sizeof(a));
	CU_ASSERT_STRING_EQUAL(a, b);
	/* Where storage must resume survived the trim (HELLO says it). */
	CU_ASSERT_EQUAL(user_store_received_lsn(w.store, "storage"), received);
	/* Storage's old op is a duplicate, its next one is deliverable. */
	ship(&s, &w, true);
	append(us, "INBOX", "after the trim");
	CU_ASSERT_EQUAL(ship(&s, &w, false), 1);
	wait_applied(&w);
	describe(uw, a, sizeof(a));
	describe(us, b, sizeof(b));
	CU_ASSERT_STRING_EQUAL(a, b);
	user_store_free(&w.store);
	user_store_free(&s.store);
	segment_size = 0;
	cu_rmtree(root);
	free(root);
}

static CU_TestInfo tests[] = {
	{ "trim", test_trim },
	{ "worker to storage and back", test_worker_to_storage_and_back },
	{ "partition UID conflict", test_partition_uid_conflict },
	{ "a received file torn by a crash is rewritten",
	  test_torn_received_file },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("user_sync", tests);
}
