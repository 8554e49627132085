/*
 * test_fsck.c - the convergence checker: two stores made identical by
 * shipping journal records the way sync links do compare equal; every
 * kind of divergence afterwards (a message, flags, a mailbox, a Maildir
 * file) is printed; a running node's journal is refused.
 */
#include "autoconfig.h"

#include "cu_run.h"
#include "fsck.h"
#include "jrec.h"
#include "user_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *root;

struct node {
	const char *name;
	bool is_storage;
	char crdt[512], maildirs[512];
	struct user_store *store;
};

static struct node W = { "worker-1", false, "", "", NULL };
static struct node S = { "storage", true, "", "", NULL };

static void node_open(struct node *n)
{
	struct user_store_options opts;
	const char *error = NULL;

	snprintf(n->crdt, sizeof(n->crdt), "%s/%s/crdt", root, n->name);
	snprintf(n->maildirs, sizeof(n->maildirs), "%s/%s/maildirs", root,
		 n->name);
	memset(&opts, 0, sizeof(opts));
	opts.node_name = n->name;
	opts.is_storage = n->is_storage;
	opts.maildir_root = n->maildirs;
	opts.crdt_root = n->crdt;
	opts.hierarchy_separator = '.';
	CU_ASSERT_EQUAL_FATAL(user_store_open(&opts, &n->store, &error), 0);
	CU_ASSERT_EQUAL_FATAL(user_store_start_applier(n->store, &error), 0);
}

/* Ships from's records for to, from its first record (duplicates are
 * dropped by the receiver), then waits for to's applier. */
static void ship(struct node *from, struct node *to)
{
	struct journal_reader *r;
	struct journal_record rec;
	struct journal *tj = user_store_journal(to->store);
	const char *error = NULL;

	r = journal_reader_new(user_store_journal(from->store), 1, &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	while (journal_reader_next(r, &rec, &error) == 1) {
		struct jrec jrec;
		uint64_t lsn;

		CU_ASSERT_EQUAL_FATAL(jrec_decode(&rec, &jrec, &error), 0);
		if (user_store_record_for_peer(from->store, &jrec, to->name))
			CU_ASSERT(user_store_receive(to->store, from->name,
						     rec.lsn, jrec.clock,
						     jrec.op, jrec.op_len,
						     &lsn, &error) >= 0);
		jrec_clear(&jrec);
	}
	journal_reader_free(&r);
	for (int i = 0; i < 500 && user_store_applied_lsn(to->store) <
					   journal_durable_lsn(tj);
	     i++)
		usleep(10 * 1000);
}

static struct user *get(struct node *n, const char *user)
{
	const char *error = NULL;
	struct user *u = user_store_get(n->store, user, &error);

	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	return u;
}

static void append(struct node *n, const char *user, const char *box,
		   const char *body)
{
	struct user *u = get(n, user);
	const char *error = NULL;

	user_lock(u);
	CU_ASSERT_EQUAL(user_append_locked(u, box, body, strlen(body), 1000,
					   0, NULL, 0, NULL, NULL, &error),
			0);
	user_unlock(u);
}

/* Runs the comparison and returns the number of differences; the
 * report goes into out. */
static size_t compare(const char *user, char *out, size_t size)
{
	struct fsck_node *a = NULL, *b = NULL;
	const char *error = NULL;
	size_t diffs = 0;
	FILE *f = fmemopen(out, size, "w");

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	if (fsck_node_load("worker-1", W.crdt, W.maildirs, user, &a, &error) <
		    0 ||
	    fsck_node_load("storage", S.crdt, S.maildirs, user, &b, &error) <
		    0)
		fprintf(stderr, "load: %s\n", error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	if (user != NULL) {
		CU_ASSERT_EQUAL(fsck_compare_user(a, b, user, f, &diffs,
						  &error),
				0);
	} else {
		CU_ASSERT_EQUAL(fsck_compare_all(a, b, f, &diffs, &error), 0);
	}
	CU_ASSERT_EQUAL(fsck_node_apply_errors(a), 0);
	CU_ASSERT_EQUAL(fsck_node_apply_errors(b), 0);
	fclose(f);
	fsck_node_free(&a);
	fsck_node_free(&b);
	return diffs;
}

static void test_fsck(void)
{
	char out[8192], path[1024];
	struct fsck_node *n = NULL;
	const char *error = NULL;
	struct user *u;

	root = cu_tempdir("test_fsck");
	node_open(&W);
	node_open(&S);
	append(&W, "alice", "INBOX", "one");
	append(&W, "alice", "INBOX", "two");
	u = get(&W, "alice");
	user_lock(u);
	CU_ASSERT_EQUAL(user_create_locked(u, "Work", &error), 0);
	user_unlock(u);
	append(&W, "alice", "Work", "three");
	append(&W, "bob", "INBOX", "bob's");
	ship(&W, &S);

	/* A running node's journal is locked. */
	CU_ASSERT_EQUAL(fsck_node_load("worker-1", W.crdt, W.maildirs, NULL,
				       &n, &error),
			-1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "stopped"));
	user_store_free(&W.store);
	user_store_free(&S.store);

	CU_ASSERT_EQUAL(compare("alice", out, sizeof(out)), 0);
	CU_ASSERT_EQUAL(compare(NULL, out, sizeof(out)), 0);

	/* Divergence: the worker alone gets a message, a flag and a
	 * mailbox; storage loses a file. */
	node_open(&W);
	append(&W, "alice", "INBOX", "four");
	u = get(&W, "alice");
	user_lock(u);
	{
		struct mailstate_mailbox *box =
			mailstate_mailbox_find(user_state(u), "INBOX");
		const struct mailstate_msg *m =
			mailstate_mailbox_msg_at(box, 0);

		CU_ASSERT_EQUAL(user_store_flags_locked(u, box, &m, 1,
							MAILSTATE_STORE_ADD,
							OP_FLAG_SEEN, NULL, 0,
							&error),
				0);
	}
	CU_ASSERT_EQUAL(user_create_locked(u, "Only", &error), 0);
	user_unlock(u);
	user_store_free(&W.store);
	snprintf(path, sizeof(path), "rm -f %s/bob/cur/*", S.maildirs);
	CU_ASSERT_EQUAL(system(path), 0);

	CU_ASSERT(compare("alice", out, sizeof(out)) >= 5);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "mailbox Only: only on worker-1"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "UIDNEXT 4 on worker-1, 3 on "
					   "storage"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "(UID 3): only on worker-1"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "flags \\Seen on worker-1, "
					   "(none) on storage"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "maildir cur/"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, ":2,S: only on worker-1"));
	CU_ASSERT_EQUAL(compare("bob", out, sizeof(out)), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "bob: maildir cur/"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "only on worker-1"));
	CU_ASSERT(compare(NULL, out, sizeof(out)) >= 6);
	/* A user only one node knows. */
	CU_ASSERT_EQUAL(compare("nobody", out, sizeof(out)), 0);

	/* No journal at all is an error, not an empty node. */
	CU_ASSERT_EQUAL(fsck_node_load("x", "/nonexistent", "/nonexistent",
				       NULL, &n, &error),
			-1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "no journal"));
	cu_rmtree(root);
	free(root);
}

int main(void)
{
	CU_TestInfo tests[] = {
		{ "identical and diverged nodes", test_fsck },
		CU_TEST_INFO_NULL,
	};

	return cu_run("fsck", tests);
}
