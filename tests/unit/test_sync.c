/*
 * test_sync.c - replication links between two user stores of one process,
 * a worker ("worker-1") and storage, over real loopback mutual TLS with
 * certificates of a throw-away internal CA: operations flow both ways, a
 * link killed under load resumes without loss or duplication, a stopped
 * node's backlog drains, every concurrent pair of doc/replication.md
 * converges to its documented rule in both orders, and hostile peers are
 * rejected while the node keeps serving.
 */
#include "autoconfig.h"

#include "cu_run.h"
#include "crc32c.h"
#include "jrec.h"
#include "net.h"
#include "pki.h"
#include "sync.h"
#include "sync_msg.h"
#include "tls.h"
#include "user_store.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 2000

/*
 * PKI and configuration.
 */

enum ident {
	ID_STORAGE,
	ID_WORKER1,
	ID_FOREIGN_WORKER1,	/* signed by another CA */
	ID_WORKER9,		/* our CA, a name nobody configured */
	ID_DISTRIBUTOR,		/* our CA, a node that is not a sync peer */
	ID_COUNT,
};

static char *pki_dir;
static char ca_file[512];
static struct {
	char cert[512], key[512];
} files[ID_COUNT];

static void write_pem(const char *path, const char *pem, bool secret)
{
	const char *error = NULL;

	if (pki_write_file(path, pem, strlen(pem), secret ? 0600 : 0644,
			   false, &error) < 0)
		fprintf(stderr, "%s\n", error);
}

static void write_node(enum ident id, const struct pki_ca *ca,
		       const char *name)
{
	static const struct pki_key_params ec = { PKI_KEY_ECDSA_P256, 0 };
	static const char *const ips[] = { "127.0.0.1" };
	const struct pki_subject subject = { name, ips, 1 };
	struct pki_pem_pair pair;
	const char *error = NULL;

	snprintf(files[id].cert, sizeof(files[id].cert), "%s/%d.pem", pki_dir,
		 (int)id);
	snprintf(files[id].key, sizeof(files[id].key), "%s/%d.key", pki_dir,
		 (int)id);
	CU_ASSERT_FATAL(pki_issue_node(ca, &ec, &subject, 2, &pair, &error) ==
			0);
	write_pem(files[id].cert, pair.cert_pem, false);
	write_pem(files[id].key, pair.key_pem, true);
	pki_pem_pair_free(&pair);
}

static void pki_fixture(void)
{
	static const struct pki_key_params ec = { PKI_KEY_ECDSA_P256, 0 };
	struct pki_ca *ca = NULL, *foreign = NULL;
	struct pki_pem_pair pair;
	const char *error = NULL;

	if (pki_dir != NULL)
		return;
	pki_dir = cu_tempdir("test_sync_pki");
	CU_ASSERT_PTR_NOT_NULL_FATAL(pki_dir);
	CU_ASSERT_FATAL(pki_ca_generate(&ec, "internal CA", 2, &ca, &error) ==
			0);
	CU_ASSERT_FATAL(pki_ca_generate(&ec, "internal CA", 2, &foreign,
					&error) == 0);
	snprintf(ca_file, sizeof(ca_file), "%s/ca.pem", pki_dir);
	CU_ASSERT_FATAL(pki_ca_export(ca, &pair, &error) == 0);
	write_pem(ca_file, pair.cert_pem, false);
	pki_pem_pair_free(&pair);
	write_node(ID_STORAGE, ca, "storage");
	write_node(ID_WORKER1, ca, "worker-1");
	write_node(ID_FOREIGN_WORKER1, foreign, "worker-1");
	write_node(ID_WORKER9, ca, "worker-9");
	write_node(ID_DISTRIBUTOR, ca, "distributor");
	pki_ca_free(&ca);
	pki_ca_free(&foreign);
}

static struct tls_creds *creds_of(enum ident id)
{
	struct tls_creds *creds = NULL;
	const char *error = NULL;

	pki_fixture();
	if (tls_creds_internal(ca_file, files[id].cert, files[id].key, &creds,
			       &error) < 0)
		fprintf(stderr, "creds: %s\n", error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(creds);
	return creds;
}

static uint16_t free_port(void)
{
	const char *error = NULL;
	int fd = net_listen("127.0.0.1", 0, 1, &error);
	uint16_t port;

	CU_ASSERT_FATAL(fd >= 0);
	port = net_local_port(fd);
	close(fd);
	return port;
}

static char *root;
static struct pluto_config config;
static struct config_node worker_node;
static char paths[4][512];

/* A config with worker-1 and storage on loopback, fresh ports, data
 * under a fresh root. */
static void setup_cluster(void)
{
	pki_fixture();
	root = cu_tempdir("test_sync");
	CU_ASSERT_PTR_NOT_NULL_FATAL(root);
	memset(&config, 0, sizeof(config));
	memset(&worker_node, 0, sizeof(worker_node));
	config.root_cert_loc = ca_file;
	config.intl_conn_timeout_ms = TIMEOUT_MS;
	config.intl_conn_retry = 2;
	config.hierarchy_separator = '.';
	snprintf(paths[0], sizeof(paths[0]), "%s/worker-1/crdt", root);
	snprintf(paths[1], sizeof(paths[1]), "%s/worker-1/maildirs", root);
	snprintf(paths[2], sizeof(paths[2]), "%s/storage/crdt", root);
	snprintf(paths[3], sizeof(paths[3]), "%s/storage/maildirs", root);
	worker_node.name = (char *)"worker-1";
	worker_node.public_ip = (char *)"127.0.0.1";
	worker_node.listen_ip = (char *)"127.0.0.1";
	worker_node.sync_port = free_port();
	worker_node.user_start = 1;
	worker_node.user_end = 100;
	worker_node.crdt_root = paths[0];
	worker_node.maildir_root = paths[1];
	config.workers = &worker_node;
	config.n_workers = 1;
	config.storage.name = (char *)"storage";
	config.storage.public_ip = (char *)"127.0.0.1";
	config.storage.listen_ip = (char *)"127.0.0.1";
	config.storage.sync_port = free_port();
	config.storage.crdt_root = paths[2];
	config.storage.maildir_root = paths[3];
}

static void teardown_cluster(void)
{
	cu_rmtree(root);
	free(root);
	root = NULL;
}

/*
 * Nodes.
 */

struct node {
	const char *name;
	bool is_storage;
	const struct config_node *cfg;
	struct user_store *store;
	struct tls_creds *creds;
	struct sync *sync;
};

static struct node W = { "worker-1", false, &worker_node, NULL, NULL, NULL };
static struct node S = { "storage", true, &config.storage, NULL, NULL, NULL };

static void node_open(struct node *n)
{
	struct user_store_options opts;
	const char *error = NULL;

	memset(&opts, 0, sizeof(opts));
	opts.node_name = n->name;
	opts.is_storage = n->is_storage;
	opts.maildir_root = n->cfg->maildir_root;
	opts.crdt_root = n->cfg->crdt_root;
	opts.hierarchy_separator = '.';
	/* Small segments, so that trimming has whole segments to drop. */
	opts.journal_segment_size = 4096;
	if (user_store_open(&opts, &n->store, &error) < 0)
		fprintf(stderr, "open %s: %s\n", n->name, error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(n->store);
	n->creds = creds_of(n->is_storage ? ID_STORAGE : ID_WORKER1);
}

static void node_sync(struct node *n)
{
	struct sync_tuning t;
	const char *error = NULL;

	sync_tuning_defaults(&t);
	t.backoff_min_ms = 10;
	t.backoff_max_ms = 200;
	t.report_interval_ms = 300;
	t.trim_interval_ms = 100;
	if (sync_start_tuned(&config, n->name, n->store, n->creds, &t,
			     &n->sync, &error) < 0)
		fprintf(stderr, "sync %s: %s\n", n->name, error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(n->sync);
}

/* A node process going away: links, then store. */
static void node_close(struct node *n)
{
	sync_stop(&n->sync);
	CU_ASSERT_PTR_NULL(n->sync);
	user_store_free(&n->store);
	tls_creds_free(&n->creds);
}

static struct user *get(struct node *n, const char *user)
{
	const char *error = NULL;
	struct user *u = user_store_get(n->store, user, &error);

	CU_ASSERT_PTR_NOT_NULL_FATAL(u);
	return u;
}

/* The visible state of a user as text. */
static void describe(struct node *n, const char *user, char *out,
		     size_t size)
{
	struct user *u = get(n, user);
	const char **names = NULL;
	size_t count = 0, len = 0;

	out[0] = '\0';
	user_lock(u);
	mailstate_mailbox_list(user_state(u), &names, &count);
	for (size_t i = 0; i < count && len < size; i++) {
		struct mailstate_mailbox *box =
			mailstate_mailbox_find(user_state(u), names[i]);

		len += (size_t)snprintf(
			out + len, size - len, "[%s v%u n%llu] ", names[i],
			mailstate_mailbox_uidvalidity(box),
			(unsigned long long)mailstate_mailbox_uidnext(box));
		for (size_t k = 0; k < mailstate_mailbox_count(box) &&
				   len < size;
		     k++) {
			const struct mailstate_msg *m =
				mailstate_mailbox_msg_at(box, k);

			len += (size_t)snprintf(out + len, size - len,
						"%u/%s/%u ", m->uid, m->tag,
						m->flags);
		}
	}
	user_unlock(u);
	free(names);
}

/* Every file name under cur/ of every folder of a user, sorted. */
static void files_of(struct node *n, const char *user, char *out,
		     size_t size)
{
	char path[1024];
	struct dirent **dirs = NULL;
	int ndirs;
	size_t len = 0;

	out[0] = '\0';
	snprintf(path, sizeof(path), "%s/%s", n->cfg->maildir_root, user);
	ndirs = scandir(path, &dirs, NULL, alphasort);
	for (int d = 0; d < ndirs; d++) {
		const char *dn = dirs[d]->d_name;
		struct dirent **list = NULL;
		int count;

		if (strcmp(dn, "cur") == 0)
			snprintf(path, sizeof(path), "%s/%s/cur",
				 n->cfg->maildir_root, user);
		else if (dn[0] == '.' && strcmp(dn, ".") != 0 &&
			 strcmp(dn, "..") != 0)
			snprintf(path, sizeof(path), "%s/%s/%s/cur",
				 n->cfg->maildir_root, user, dn);
		else {
			free(dirs[d]);
			continue;
		}
		count = scandir(path, &list, NULL, alphasort);
		for (int i = 0; i < count; i++) {
			if (list[i]->d_name[0] != '.' && len < size)
				len += (size_t)snprintf(out + len, size - len,
							"%s/%s ", dn,
							list[i]->d_name);
			free(list[i]);
		}
		free(list);
		free(dirs[d]);
	}
	free(dirs);
}

static int64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether n applied all it holds and its peer acknowledged all of it. */
static bool settled(struct node *n, const char *peer)
{
	struct journal *j = user_store_journal(n->store);
	struct sync_peer_status st;
	uint64_t durable = journal_durable_lsn(j);

	if (user_store_applied_lsn(n->store) < durable)
		return false;
	if (sync_peer_status(n->sync, peer, &st) < 0)
		return false;
	return st.connected && st.safe_lsn >= durable;
}

/* Waits until both nodes are quiet and acknowledged, twice in a row,
 * then checks that state and files are equal for user. */
static void converge(const char *user)
{
	char a[16384], b[16384];
	int64_t deadline = ms_now() + 20000;
	int stable = 0;

	while (ms_now() < deadline && stable < 3) {
		if (settled(&W, "storage") && settled(&S, "worker-1"))
			stable++;
		else
			stable = 0;
		usleep(50 * 1000);
	}
	CU_ASSERT_EQUAL(stable, 3);
	describe(&W, user, a, sizeof(a));
	describe(&S, user, b, sizeof(b));
	if (strcmp(a, b) != 0)
		fprintf(stderr, "\nworker:  %s\nstorage: %s\n", a, b);
	CU_ASSERT_STRING_EQUAL(a, b);
	files_of(&W, user, a, sizeof(a));
	files_of(&S, user, b, sizeof(b));
	if (strcmp(a, b) != 0)
		fprintf(stderr, "\nworker files:  %s\nstorage files: %s\n", a,
			b);
	CU_ASSERT_STRING_EQUAL(a, b);
}

/*
 * Mail operations.
 */

static void op_append(struct node *n, const char *user, const char *box,
		      const char *body)
{
	struct user *u = get(n, user);
	const char *error = NULL;

	user_lock(u);
	if (user_append_locked(u, box, body, strlen(body), 1700000000, 0,
			       NULL, 0, NULL, NULL, &error) < 0)
		fprintf(stderr, "append: %s\n", error);
	user_unlock(u);
}

static void op_create(struct node *n, const char *user, const char *box)
{
	struct user *u = get(n, user);
	const char *error = NULL;

	user_lock(u);
	CU_ASSERT_EQUAL(user_create_locked(u, box, &error), 0);
	user_unlock(u);
}

static void op_delete(struct node *n, const char *user, const char *box)
{
	struct user *u = get(n, user);
	const char *error = NULL;

	user_lock(u);
	CU_ASSERT_EQUAL(user_delete_locked(u, box, &error), 0);
	user_unlock(u);
}

static void op_rename(struct node *n, const char *user, const char *from,
		      const char *to)
{
	struct user *u = get(n, user);
	const char *error = NULL;

	user_lock(u);
	CU_ASSERT_EQUAL(user_rename_locked(u, from, to, &error), 0);
	user_unlock(u);
}

/* STORE on the first message of box. */
static void op_store(struct node *n, const char *user, const char *box,
		     enum mailstate_store_mode mode, unsigned flags)
{
	struct user *u = get(n, user);
	struct mailstate_mailbox *mb;
	const struct mailstate_msg *msg;
	const char *error = NULL;

	user_lock(u);
	mb = mailstate_mailbox_find(user_state(u), box);
	CU_ASSERT_PTR_NOT_NULL_FATAL(mb);
	msg = mailstate_mailbox_msg_at(mb, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
	CU_ASSERT_EQUAL(user_store_flags_locked(u, mb, &msg, 1, mode, flags,
						NULL, 0, &error),
			0);
	user_unlock(u);
}

/* EXPUNGE of the first message of box. */
static void op_expunge(struct node *n, const char *user, const char *box)
{
	struct user *u = get(n, user);
	struct mailstate_mailbox *mb;
	const struct mailstate_msg *msg;
	const char *error = NULL;

	user_lock(u);
	mb = mailstate_mailbox_find(user_state(u), box);
	CU_ASSERT_PTR_NOT_NULL_FATAL(mb);
	msg = mailstate_mailbox_msg_at(mb, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
	CU_ASSERT_EQUAL(user_expunge_locked(u, mb, &msg, 1, &error), 0);
	user_unlock(u);
}

static size_t box_count(struct node *n, const char *user, const char *box)
{
	struct user *u = get(n, user);
	struct mailstate_mailbox *mb;
	size_t count;

	user_lock(u);
	mb = mailstate_mailbox_find(user_state(u), box);
	count = mb != NULL ? mailstate_mailbox_count(mb) : (size_t)-1;
	user_unlock(u);
	return count;
}

static unsigned first_flags(struct node *n, const char *user,
			    const char *box)
{
	struct user *u = get(n, user);
	struct mailstate_mailbox *mb;
	const struct mailstate_msg *msg = NULL;
	unsigned flags;

	user_lock(u);
	mb = mailstate_mailbox_find(user_state(u), box);
	if (mb != NULL)
		msg = mailstate_mailbox_msg_at(mb, 0);
	flags = msg != NULL ? msg->flags : 0xffu;
	user_unlock(u);
	return flags;
}

/*
 * Steady state, both ways.
 */

static void test_both_ways(void)
{
	struct sync_stats ws, ss;
	struct user *us;
	char path[1024];
	struct stat st;

	setup_cluster();
	node_open(&W);
	node_open(&S);
	node_sync(&W);
	node_sync(&S);

	for (int i = 0; i < 20; i++) {
		char body[64];

		snprintf(body, sizeof(body), "Subject: %d\r\n\r\nbody %d\r\n",
			 i, i);
		op_append(&W, "alice", "INBOX", body);
	}
	op_create(&W, "alice", "Sent");
	op_append(&W, "alice", "Sent", "sent mail");
	op_store(&W, "alice", "INBOX", MAILSTATE_STORE_ADD, OP_FLAG_SEEN);
	converge("alice");
	CU_ASSERT_EQUAL(box_count(&S, "alice", "INBOX"), 20);
	CU_ASSERT_EQUAL(box_count(&S, "alice", "Sent"), 1);

	/* Storage stands in for the worker (failover): its changes go
	 * back. */
	us = get(&S, "alice");
	user_lock(us);
	CU_ASSERT_STRING_EQUAL(user_home_locked(us), "worker-1");
	user_unlock(us);
	op_store(&S, "alice", "INBOX", MAILSTATE_STORE_ADD, OP_FLAG_FLAGGED);
	op_append(&S, "alice", "INBOX", "delivered during failover");
	converge("alice");
	CU_ASSERT_EQUAL(box_count(&W, "alice", "INBOX"), 21);
	CU_ASSERT_EQUAL(first_flags(&W, "alice", "INBOX"),
			OP_FLAG_SEEN | OP_FLAG_FLAGGED);

	sync_get_stats(W.sync, &ws);
	sync_get_stats(S.sync, &ss);
	CU_ASSERT_EQUAL(ss.ops_stored, 24);	/* 20 + create + 1 + store */
	CU_ASSERT_EQUAL(ws.ops_stored, 2);
	CU_ASSERT_EQUAL(ws.ops_sent, 24);
	CU_ASSERT_EQUAL(ss.protocol_errors + ws.protocol_errors, 0);
	CU_ASSERT_EQUAL(ss.links_rejected + ws.links_rejected, 0);

	node_close(&W);
	node_close(&S);
	/* The acknowledged positions were written. */
	snprintf(path, sizeof(path), "%s/sync/storage.acked",
		 worker_node.crdt_root);
	CU_ASSERT_EQUAL(stat(path, &st), 0);
	teardown_cluster();
}

/*
 * Links killed under load.
 */

struct loader {
	struct node *n;
	int count;
	atomic_bool done;
};

static void *loader_main(void *arg)
{
	struct loader *l = arg;

	for (int i = 0; i < l->count; i++) {
		char body[64];

		snprintf(body, sizeof(body), "message %d\r\n", i);
		op_append(l->n, "bob", "INBOX", body);
		if (i % 10 == 0)
			usleep(2000);
	}
	atomic_store(&l->done, true);
	return NULL;
}

static void test_break_under_load(void)
{
	struct loader l;
	struct sync_stats ss;
	struct sync_peer_status st;
	pthread_t t;
	int breaks = 0;

	setup_cluster();
	node_open(&W);
	node_open(&S);
	node_sync(&W);
	node_sync(&S);
	l.n = &W;
	l.count = 300;
	atomic_init(&l.done, false);
	CU_ASSERT_FATAL(pthread_create(&t, NULL, loader_main, &l) == 0);
	while (!atomic_load(&l.done)) {
		usleep(15 * 1000);
		sync_break_links(breaks % 2 == 0 ? W.sync : S.sync);
		breaks++;
	}
	pthread_join(t, NULL);
	converge("bob");
	CU_ASSERT_EQUAL(box_count(&S, "bob", "INBOX"), 300);
	sync_get_stats(S.sync, &ss);
	/* Each op stored exactly once; resending is harmless. */
	if (ss.ops_stored != 301)
		fprintf(stderr, "stored %llu, duplicates %llu\n",
			(unsigned long long)ss.ops_stored,
			(unsigned long long)ss.ops_duplicate);
	CU_ASSERT_EQUAL(ss.ops_stored, 301);	/* INBOX too */
	CU_ASSERT_EQUAL(ss.protocol_errors, 0);
	CU_ASSERT_EQUAL(sync_peer_status(W.sync, "storage", &st), 0);
	CU_ASSERT(st.links_up >= 2);
	CU_ASSERT(breaks >= 2);
	CU_ASSERT_EQUAL(sync_peer_status(W.sync, "nobody", &st), -1);
	node_close(&W);
	node_close(&S);
	teardown_cluster();
}

/*
 * A peer down for a while: the backlog stays and drains.
 */

static void test_backlog_drains(void)
{
	struct journal_stats js0, js1;
	struct sync_peer_status st;
	uint64_t first;

	setup_cluster();
	node_open(&W);
	node_open(&S);
	node_sync(&W);
	node_sync(&S);
	op_append(&W, "carol", "INBOX", "first");
	converge("carol");
	node_close(&S);

	first = journal_first_lsn(user_store_journal(W.store));
	for (int i = 0; i < 100; i++)
		op_append(&W, "carol", "INBOX", "while storage is down");
	/* Longer than the report interval: the backlog is logged. */
	usleep(800 * 1000);
	CU_ASSERT_EQUAL(sync_peer_status(W.sync, "storage", &st), 0);
	CU_ASSERT_FALSE(st.connected);
	CU_ASSERT(st.safe_lsn < journal_durable_lsn(user_store_journal(W.store)));
	/* The backlog is kept, however many trim rounds pass. */
	CU_ASSERT_EQUAL(journal_first_lsn(user_store_journal(W.store)), first);

	node_open(&S);
	journal_get_stats(user_store_journal(S.store), &js0);
	node_sync(&S);
	converge("carol");
	CU_ASSERT_EQUAL(box_count(&S, "carol", "INBOX"), 101);
	/* The backlog came in a few frames, each stored with one sync
	 * (it was one per op). */
	journal_get_stats(user_store_journal(S.store), &js1);
	CU_ASSERT(js1.syncs - js0.syncs < 25);
	if (js1.syncs - js0.syncs >= 25)
		fprintf(stderr, "%llu syncs for a backlog of 100\n",
			(unsigned long long)(js1.syncs - js0.syncs));
	/* Acknowledged now: the journal sheds it. */
	for (int i = 0; i < 50 && journal_first_lsn(user_store_journal(
					   W.store)) == first; i++)
		usleep(20 * 1000);
	CU_ASSERT(journal_first_lsn(user_store_journal(W.store)) > first);

	/* And the worker restarting resumes where it was. */
	node_close(&W);
	op_append(&S, "carol", "INBOX", "while the worker is down");
	node_open(&W);
	node_sync(&W);
	converge("carol");
	CU_ASSERT_EQUAL(box_count(&W, "carol", "INBOX"), 102);
	node_close(&W);
	node_close(&S);
	teardown_cluster();
}

/*
 * Concurrent pairs (doc/replication.md): set up a common state, take both
 * nodes down, apply one operation on each, bring the links back, and
 * check the converged state against the documented rule.  Each pair runs
 * twice, with the roles of worker and storage swapped.
 */

struct pair {
	const char *name;
	void (*setup)(struct node *w);
	void (*op_a)(struct node *n);
	void (*op_b)(struct node *n);
	/* Checks the converged state (on the worker). */
	void (*check)(struct node *w);
};

#define U "dave"

static void setup_box_x(struct node *w)
{
	op_create(w, U, "X");
	op_append(w, U, "X", "old message");
}

static void setup_inbox_msg(struct node *w)
{
	op_append(w, U, "INBOX", "the message");
}

static void setup_inbox_seen(struct node *w)
{
	op_append(w, U, "INBOX", "the message");
	op_store(w, U, "INBOX", MAILSTATE_STORE_ADD, OP_FLAG_SEEN);
}

static void delete_x(struct node *n)
{
	op_delete(n, U, "X");
}

static void delete_create_x(struct node *n)
{
	op_delete(n, U, "X");
	op_create(n, U, "X");
}

static void append_x(struct node *n)
{
	op_append(n, U, "X", "new message");
}

static void rename_x_y(struct node *n)
{
	op_rename(n, U, "X", "Y");
}

static void rename_x_z(struct node *n)
{
	op_rename(n, U, "X", "Z");
}

static void store_seen(struct node *n)
{
	op_store(n, U, "INBOX", MAILSTATE_STORE_ADD, OP_FLAG_SEEN);
}

static void store_flagged(struct node *n)
{
	op_store(n, U, "INBOX", MAILSTATE_STORE_ADD, OP_FLAG_FLAGGED);
}

static void unseen(struct node *n)
{
	op_store(n, U, "INBOX", MAILSTATE_STORE_REMOVE, OP_FLAG_SEEN);
}

static void unseen_seen(struct node *n)
{
	op_store(n, U, "INBOX", MAILSTATE_STORE_REMOVE, OP_FLAG_SEEN);
	op_store(n, U, "INBOX", MAILSTATE_STORE_ADD, OP_FLAG_SEEN);
}

static void expunge_first(struct node *n)
{
	op_expunge(n, U, "INBOX");
}

static void append_inbox(struct node *n)
{
	op_append(n, U, "INBOX", n->is_storage ? "at storage" : "at worker");
}

static void check_x_exists_empty(struct node *w)
{
	CU_ASSERT_EQUAL(box_count(w, U, "X"), 0);
}

static void check_x_holds_new_only(struct node *w)
{
	CU_ASSERT_EQUAL(box_count(w, U, "X"), 1);
}

static void check_rename_append(struct node *w)
{
	CU_ASSERT_EQUAL(box_count(w, U, "X"), 1);	/* the new one */
	CU_ASSERT_EQUAL(box_count(w, U, "Y"), 1);	/* the old one */
}

static void check_rename_delete(struct node *w)
{
	CU_ASSERT_EQUAL(box_count(w, U, "X"), (size_t)-1);
	CU_ASSERT_EQUAL(box_count(w, U, "Y"), 0);
}

/* The message is in exactly one place, the same on both (converge
 * compared them). */
static void check_rename_rename(struct node *w)
{
	size_t y = box_count(w, U, "Y"), z = box_count(w, U, "Z");

	CU_ASSERT_EQUAL(box_count(w, U, "X"), (size_t)-1);
	CU_ASSERT((y == 1 && (z == 0 || z == (size_t)-1)) ||
		  (z == 1 && (y == 0 || y == (size_t)-1)));
}

static void check_rename_delete_both(struct node *w)
{
	CU_ASSERT_EQUAL(box_count(w, U, "X"), (size_t)-1);
}

static void check_expunged(struct node *w)
{
	CU_ASSERT_EQUAL(box_count(w, U, "INBOX"), 0);
}

static void check_seen_flagged(struct node *w)
{
	CU_ASSERT_EQUAL(first_flags(w, U, "INBOX"),
			OP_FLAG_SEEN | OP_FLAG_FLAGGED);
}

static void check_seen(struct node *w)
{
	CU_ASSERT_EQUAL(first_flags(w, U, "INBOX"), OP_FLAG_SEEN);
}

static void check_uids(struct node *w)
{
	struct user *u = get(w, U);
	struct mailstate_mailbox *mb;

	CU_ASSERT_EQUAL(box_count(w, U, "INBOX"), 3);
	user_lock(u);
	mb = mailstate_mailbox_find(user_state(u), "INBOX");
	for (size_t i = 1; mb != NULL && i < mailstate_mailbox_count(mb); i++)
		CU_ASSERT(mailstate_mailbox_msg_at(mb, i - 1)->uid <
			  mailstate_mailbox_msg_at(mb, i)->uid);
	user_unlock(u);
}

static const struct pair pairs[] = {
	{ "create || delete", setup_box_x, delete_create_x, delete_x,
	  check_x_exists_empty },
	{ "append || delete", setup_box_x, append_x, delete_x,
	  check_x_holds_new_only },
	{ "rename || append", setup_box_x, rename_x_y, append_x,
	  check_rename_append },
	{ "rename || delete", setup_box_x, rename_x_y, delete_x,
	  check_rename_delete },
	{ "rename || rename", setup_box_x, rename_x_y, rename_x_z,
	  check_rename_rename },
	{ "delete || delete", setup_box_x, delete_x, delete_x,
	  check_rename_delete_both },
	{ "store || expunge", setup_inbox_msg, store_seen, expunge_first,
	  check_expunged },
	{ "store +a || store +b", setup_inbox_msg, store_seen, store_flagged,
	  check_seen_flagged },
	{ "store -x || store -x +x", setup_inbox_seen, unseen, unseen_seen,
	  check_seen },
	{ "append || append", setup_inbox_msg, append_inbox, append_inbox,
	  check_uids },
};

static void run_pair(const struct pair *p, bool swapped)
{
	struct user *us;

	setup_cluster();
	node_open(&W);
	node_open(&S);
	node_sync(&W);
	node_sync(&S);
	p->setup(&W);
	converge(U);
	us = get(&S, U);
	user_lock(us);
	CU_ASSERT_STRING_EQUAL(user_home_locked(us), "worker-1");
	user_unlock(us);
	node_close(&W);
	node_close(&S);

	/* The partition: each side alone. */
	node_open(&W);
	node_open(&S);
	if (!swapped) {
		p->op_a(&W);
		p->op_b(&S);
	} else {
		p->op_b(&W);
		p->op_a(&S);
	}
	node_sync(&W);
	node_sync(&S);
	converge(U);
	p->check(&W);
	p->check(&S);
	node_close(&W);
	node_close(&S);
	teardown_cluster();
}

static void test_concurrent_pairs(void)
{
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		for (int swapped = 0; swapped < 2; swapped++) {
			fprintf(stderr, "pair %s%s\n", pairs[i].name,
				swapped ? " (swapped)" : "");
			run_pair(&pairs[i], swapped != 0);
		}
	}
}

/*
 * Hostile peers against storage's SyncPort.  The test plays worker-1
 * (or an impostor) with a raw TLS client.
 */

static struct conn *dial(struct tls_creds *creds, bool expect_ok)
{
	const char *error = NULL;
	int fd = net_connect("127.0.0.1", config.storage.sync_port, TIMEOUT_MS,
			     &error);
	struct conn *c;
	int ret;

	CU_ASSERT_FATAL(fd >= 0);
	c = conn_new(fd);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	conn_set_timeouts(c, TIMEOUT_MS, TIMEOUT_MS);
	ret = conn_tls_client(c, creds, "storage", TIMEOUT_MS, &error);
	if (expect_ok)
		CU_ASSERT_EQUAL(ret, 0);
	if (ret < 0)
		conn_close(&c);
	return c;
}

/* After a rejected handshake, the server may only notice when we talk:
 * write something and expect the link to be gone. */
static void expect_closed(struct conn *c)
{
	char byte;
	const char *error = NULL;
	int st = conn_read_exact(c, &byte, 1, &error);

	CU_ASSERT(st == CONN_EOF || st == CONN_ERROR);
}

static void raw_write(struct conn *c, const void *data, size_t len)
{
	const char *error = NULL;

	CU_ASSERT_EQUAL(conn_write(c, data, len, &error), CONN_OK);
}

/* Reads the server's HELLO and answers with ours (as worker-1). */
static void raw_hello(struct conn *c, const char *as)
{
	unsigned char hdr[SYNC_MSG_HEADER_SIZE];
	unsigned char *frame;
	size_t frame_len = 0, consumed = 0;
	struct sync_msg_frame f;
	struct buf out = BUF_INIT;
	struct vclock *vc = vclock_new();
	const char *error = NULL;

	CU_ASSERT_EQUAL_FATAL(conn_read_exact(c, hdr, sizeof(hdr), &error),
			      CONN_OK);
	CU_ASSERT_EQUAL_FATAL(sync_msg_peek(hdr, sizeof(hdr), &frame_len,
					    &error),
			      1);
	frame = malloc(frame_len);
	memcpy(frame, hdr, sizeof(hdr));
	CU_ASSERT_EQUAL_FATAL(conn_read_exact(c, frame + sizeof(hdr),
					      frame_len - sizeof(hdr), &error),
			      CONN_OK);
	CU_ASSERT_EQUAL(sync_msg_parse(frame, frame_len, &f, &consumed,
				       &error),
			1);
	CU_ASSERT_EQUAL(f.type, SYNC_MSG_HELLO);
	CU_ASSERT_STRING_EQUAL(f.sender, "storage");
	sync_msg_frame_clear(&f);
	free(frame);
	CU_ASSERT_EQUAL(sync_msg_encode_hello(&out, as, 0, vc, &error), 0);
	raw_write(c, out.data, out.len);
	buf_free(&out);
	vclock_free(&vc);
}

/* Expects an ACK of lsn. */
static void raw_expect_ack(struct conn *c, uint64_t lsn)
{
	unsigned char frame[SYNC_MSG_OVERHEAD + 8];
	struct sync_msg_frame f;
	size_t consumed = 0;
	const char *error = NULL;

	CU_ASSERT_EQUAL_FATAL(conn_read_exact(c, frame, sizeof(frame), &error),
			      CONN_OK);
	CU_ASSERT_EQUAL(sync_msg_parse(frame, sizeof(frame), &f, &consumed,
				       &error),
			1);
	CU_ASSERT_EQUAL(f.type, SYNC_MSG_ACK);
	CU_ASSERT_EQUAL(f.lsn, lsn);
	sync_msg_frame_clear(&f);
}

/* An OPS frame of worker-1's journal records from..to (all its own). */
static void ops_frame(struct buf *out, const char *sender, uint64_t from,
		      uint64_t to)
{
	struct journal_reader *r;
	struct journal_record rec;
	struct sync_msg_batch b;
	const char *error = NULL;

	r = journal_reader_new(user_store_journal(W.store), from, &error);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_EQUAL_FATAL(sync_msg_batch_begin(&b, out, sender, 0, &error),
			      0);
	while (journal_reader_position(r) <= to &&
	       journal_reader_next(r, &rec, &error) == 1) {
		struct jrec jrec;

		CU_ASSERT_EQUAL_FATAL(jrec_decode(&rec, &jrec, &error), 0);
		int ret = sync_msg_batch_add(&b, rec.lsn, jrec.clock, jrec.op,
					     jrec.op_len, &error);

		if (ret != 1)
			fprintf(stderr, "batch_add: %s\n", error);
		CU_ASSERT_EQUAL(ret, 1);
		jrec_clear(&jrec);
	}
	CU_ASSERT_EQUAL(sync_msg_batch_finish(&b, &error), 0);
	journal_reader_free(&r);
}

/* Rewrites the last letter of an OPS frame's sender ("worker-1") and
 * fixes the checksum, making a well-formed frame from someone else. */
static void rename_sender(struct buf *frame, char last)
{
	uint32_t crc;
	size_t end = frame->len - SYNC_MSG_TRAILER_SIZE;

	CU_ASSERT_EQUAL_FATAL(frame->data[SYNC_MSG_HEADER_SIZE], 8);
	frame->data[SYNC_MSG_HEADER_SIZE + 8] = (unsigned char)last;
	crc = crc32c(frame->data, end);
	frame->data[end] = (unsigned char)(crc >> 24);
	frame->data[end + 1] = (unsigned char)(crc >> 16);
	frame->data[end + 2] = (unsigned char)(crc >> 8);
	frame->data[end + 3] = (unsigned char)crc;
}

static uint64_t stat_of(size_t offset)
{
	struct sync_stats s;

	sync_get_stats(S.sync, &s);
	return *(const uint64_t *)((const char *)&s + offset);
}

#define STAT(field) stat_of(offsetof(struct sync_stats, field))

static void wait_stat(size_t offset, uint64_t value)
{
	for (int i = 0; i < 200 && stat_of(offset) < value; i++)
		usleep(10 * 1000);
	CU_ASSERT(stat_of(offset) >= value);
}

#define WAIT_STAT(field, v) wait_stat(offsetof(struct sync_stats, field), v)

static void test_hostile_peers(void)
{
	struct tls_creds *client, *foreign, *wrong, *dist, *w1;
	struct buf out = BUF_INIT;
	struct conn *c;
	uint64_t rejected, errors;
	const char *error = NULL;
	const char garbage[] = "GET / HTTP/1.0\r\n\r\n";

	setup_cluster();
	node_open(&W);
	node_open(&S);
	node_sync(&S);
	/* Two ops the impostors can replay: APPEND and STORE. */
	op_append(&W, "erin", "INBOX", "real mail");
	op_store(&W, "erin", "INBOX", MAILSTATE_STORE_ADD, OP_FLAG_SEEN);

	/* No client certificate at all. */
	CU_ASSERT_EQUAL(tls_creds_public_client(ca_file, &client, &error), 0);
	rejected = STAT(links_rejected);
	c = dial(client, false);
	if (c != NULL) {
		expect_closed(c);
		conn_close(&c);
	}
	WAIT_STAT(links_rejected, rejected + 1);

	/* A certificate of another CA naming worker-1. */
	foreign = creds_of(ID_FOREIGN_WORKER1);
	c = dial(foreign, false);
	if (c != NULL) {
		expect_closed(c);
		conn_close(&c);
	}
	WAIT_STAT(links_rejected, rejected + 2);

	/* Our CA, but a name that is no peer: worker-9, distributor. */
	wrong = creds_of(ID_WORKER9);
	c = dial(wrong, false);
	if (c != NULL) {
		expect_closed(c);
		conn_close(&c);
	}
	WAIT_STAT(links_rejected, rejected + 3);
	dist = creds_of(ID_DISTRIBUTOR);
	c = dial(dist, false);
	if (c != NULL) {
		expect_closed(c);
		conn_close(&c);
	}
	WAIT_STAT(links_rejected, rejected + 4);

	/* A real worker-1 certificate speaking garbage instead of HELLO. */
	w1 = creds_of(ID_WORKER1);
	c = dial(w1, true);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	raw_write(c, garbage, sizeof(garbage) - 1);
	WAIT_STAT(links_rejected, rejected + 5);
	conn_close(&c);

	/* worker-1 whose HELLO names someone else. */
	c = dial(w1, true);
	raw_hello(c, "worker-9");
	expect_closed(c);
	conn_close(&c);
	WAIT_STAT(links_rejected, rejected + 6);

	/* Garbage after a good HELLO. */
	errors = STAT(protocol_errors);
	c = dial(w1, true);
	raw_hello(c, "worker-1");
	raw_write(c, garbage, sizeof(garbage) - 1);
	expect_closed(c);
	conn_close(&c);
	WAIT_STAT(protocol_errors, errors + 1);

	/* A frame with a bad checksum. */
	c = dial(w1, true);
	raw_hello(c, "worker-1");
	buf_reset(&out);
	ops_frame(&out, "worker-1", 1, 2);
	out.data[out.len - 1] ^= 0x55;
	raw_write(c, out.data, out.len);
	expect_closed(c);
	conn_close(&c);
	WAIT_STAT(protocol_errors, errors + 2);

	/* A truncated frame, then the connection goes. */
	c = dial(w1, true);
	raw_hello(c, "worker-1");
	buf_reset(&out);
	ops_frame(&out, "worker-1", 1, 2);
	raw_write(c, out.data, out.len / 2);
	conn_close(&c);
	WAIT_STAT(protocol_errors, errors + 3);

	/* An OPS frame naming another sender. */
	c = dial(w1, true);
	raw_hello(c, "worker-1");
	buf_reset(&out);
	ops_frame(&out, "worker-1", 1, 2);
	rename_sender(&out, '9');
	raw_write(c, out.data, out.len);
	expect_closed(c);
	conn_close(&c);
	WAIT_STAT(protocol_errors, errors + 4);

	/* An op out of causal order (the second without the first). */
	c = dial(w1, true);
	raw_hello(c, "worker-1");
	buf_reset(&out);
	ops_frame(&out, "worker-1", 2, 2);
	raw_write(c, out.data, out.len);
	expect_closed(c);
	conn_close(&c);
	WAIT_STAT(protocol_errors, errors + 5);
	/* None of that stored anything. */
	CU_ASSERT_EQUAL(STAT(ops_stored), 0);
	CU_ASSERT_EQUAL(STAT(ops_duplicate), 0);
	CU_ASSERT_EQUAL(box_count(&S, "erin", "INBOX"), 0);

	/* A valid frame, then the same frame replayed: stored once,
	 * acknowledged twice. */
	c = dial(w1, true);
	raw_hello(c, "worker-1");
	buf_reset(&out);
	ops_frame(&out, "worker-1", 1, 2);
	raw_write(c, out.data, out.len);
	raw_expect_ack(c, 2);
	raw_write(c, out.data, out.len);
	raw_expect_ack(c, 2);
	conn_close(&c);
	CU_ASSERT_EQUAL(STAT(ops_stored), 2);
	CU_ASSERT_EQUAL(STAT(ops_duplicate), 2);

	/* The node still serves: the real worker connects and converges,
	 * nothing was applied twice. */
	node_sync(&W);
	converge("erin");
	CU_ASSERT_EQUAL(box_count(&S, "erin", "INBOX"), 1);
	CU_ASSERT_EQUAL(first_flags(&S, "erin", "INBOX"), OP_FLAG_SEEN);

	buf_free(&out);
	tls_creds_free(&client);
	tls_creds_free(&foreign);
	tls_creds_free(&wrong);
	tls_creds_free(&dist);
	tls_creds_free(&w1);
	node_close(&W);
	node_close(&S);
	teardown_cluster();
}

/* A peer that answers on SyncPort with the wrong certificate: the sender
 * refuses it and keeps trying; nothing is sent. */
struct fake_server {
	int fd;
	struct tls_creds *creds;
	int accepted;
};

static void *fake_main(void *arg)
{
	struct fake_server *fs = arg;
	const char *names[] = { "worker-1", NULL };

	for (int i = 0; i < 2; i++) {
		int fd = net_accept(fs->fd, 5000, NULL);
		struct conn *c;
		const char *error = NULL;

		if (fd < 0)
			break;
		c = conn_new(fd);
		if (conn_tls_server(c, fs->creds, names, TIMEOUT_MS, &error) ==
		    0)
			fs->accepted++;
		conn_close(&c);
	}
	return NULL;
}

static void test_wrong_server_name(void)
{
	struct fake_server fs;
	struct sync_peer_status st;
	const char *error = NULL;
	pthread_t t;

	setup_cluster();
	fs.fd = net_listen("127.0.0.1", config.storage.sync_port, 4, &error);
	CU_ASSERT_FATAL(fs.fd >= 0);
	fs.creds = creds_of(ID_WORKER9);
	fs.accepted = 0;
	CU_ASSERT_FATAL(pthread_create(&t, NULL, fake_main, &fs) == 0);
	node_open(&W);
	op_append(&W, "frank", "INBOX", "must not leak");
	node_sync(&W);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(sync_peer_status(W.sync, "storage", &st), 0);
	CU_ASSERT_FALSE(st.connected);
	CU_ASSERT_EQUAL(st.links_up, 0);
	close(fs.fd);
	tls_creds_free(&fs.creds);
	node_close(&W);
	teardown_cluster();
}

static void test_start_errors(void)
{
	struct sync *sync = NULL;
	const char *error = NULL;
	int fd;

	setup_cluster();
	node_open(&W);
	CU_ASSERT_EQUAL(sync_start(&config, "worker-7", W.store, W.creds,
				   &sync, &error),
			-1);
	CU_ASSERT_PTR_NULL(sync);
	CU_ASSERT_EQUAL(sync_start(&config, "bad name!", W.store, W.creds,
				   &sync, &error),
			-1);
	/* SyncPort taken. */
	fd = net_listen("127.0.0.1", worker_node.sync_port, 1, &error);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(sync_start(&config, "worker-1", W.store, W.creds,
				   &sync, &error),
			-1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "listen"));
	close(fd);
	sync_stop(&sync);
	node_close(&W);
	teardown_cluster();
}

/*
 * Replication lag: from the moment the worker's APPEND returns (the
 * client would get its OK) until storage has applied it.  Prints the
 * median and p99; tests/bench/repl-lag.sh runs more samples.  The only
 * assertion is a generous bound, so a loaded CI machine cannot fail it.
 */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int64_t us_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void test_lag(void)
{
	const char *env = getenv("PLUTO_LAG_SAMPLES");
	size_t n = env != NULL ? (size_t)strtoul(env, NULL, 10) : 200;
	int64_t *lag;
	struct user *us;

	if (n == 0 || n > 1000000)
		n = 200;
	lag = calloc(n, sizeof(*lag));
	CU_ASSERT_PTR_NOT_NULL_FATAL(lag);
	setup_cluster();
	node_open(&W);
	node_open(&S);
	node_sync(&W);
	node_sync(&S);
	op_append(&W, "lag", "INBOX", "warm-up");
	converge("lag");
	us = get(&S, "lag");
	for (size_t i = 0; i < n; i++) {
		int64_t t0, t1;

		op_append(&W, "lag", "INBOX", "Subject: lag\r\n\r\nprobe\r\n");
		t0 = us_now();
		while (box_count(&S, "lag", "INBOX") < i + 2) {
			uint64_t seen;

			user_lock(us);
			seen = user_version_locked(us);
			user_unlock(us);
			if (box_count(&S, "lag", "INBOX") >= i + 2)
				break;
			user_wait_change(us, seen, 1000);
			if (us_now() - t0 > 10 * 1000000)
				break;
		}
		t1 = us_now();
		lag[i] = t1 - t0;
		usleep(2000);
	}
	qsort(lag, n, sizeof(*lag), cmp_i64);
	fprintf(stderr, "\nreplication lag over %zu appends: median %lld us, "
		"p99 %lld us, max %lld us\n",
		n, (long long)lag[n / 2], (long long)lag[(n * 99) / 100],
		(long long)lag[n - 1]);
	CU_ASSERT(lag[(n * 99) / 100] < 2 * 1000000);
	free(lag);
	node_close(&W);
	node_close(&S);
	teardown_cluster();
}

int main(void)
{
	CU_TestInfo tests[] = {
		{ "ops flow both ways", test_both_ways },
		{ "links killed under load", test_break_under_load },
		{ "backlog drains after restarts", test_backlog_drains },
		{ "concurrent pairs converge", test_concurrent_pairs },
		{ "hostile peers", test_hostile_peers },
		{ "server with the wrong name", test_wrong_server_name },
		{ "start errors", test_start_errors },
		{ "replication lag", test_lag },
		CU_TEST_INFO_NULL,
	};
	int ret;

	if (getenv("PLUTO_LAG_ONLY") != NULL) {
		tests[0] = tests[7];
		tests[1] = (CU_TestInfo)CU_TEST_INFO_NULL;
	}
	ret = cu_run("sync", tests);

	if (pki_dir != NULL) {
		cu_rmtree(pki_dir);
		free(pki_dir);
	}
	return ret;
}
