/*
 * seed-store.c - fills a stopped node with many users and messages, fast,
 * for the benchmarks that need a big mail store (tests/bench/vs-dovecot.sh).
 *
 *   seed-store -c CONFIG -N NODE [-u PATTERN] [-f FIRST] [-U USERS]
 *              [-m MESSAGES] [-s BYTES] [-t THREADS] [-S [-T]]
 *
 * Opens NODE's store (CRDTLayerRoot and MaildirRoot from CONFIG) through
 * the real user_store API, the one the server uses, and APPENDs MESSAGES
 * messages of about BYTES bytes into the INBOX of each of USERS users
 * (PATTERN with %d replaced by FIRST, FIRST+1, ...), THREADS users at a
 * time.  The journal records, snapshots and Maildir files are exactly
 * what the server would have written for the same APPENDs.
 *
 * With -S, storage is then caught up, as its sync link would have done:
 * every record of NODE's journal that storage has not received yet is
 * stored there through user_store_receive() and applied by storage's
 * applier thread.  Storage then says, in its HELLO, that it holds NODE's
 * journal up to its end, so starting the cluster ships nothing.  With -T
 * as well, NODE's journal is then trimmed as far as storage now holds it
 * (user_store_trim, after snapshots), which is what NODE's trim thread
 * does once storage has acknowledged: the steady state of a worker whose
 * storage keeps up.
 *
 * What is not real: this process replaces fsync() and fdatasync() with
 * no-ops (its own definitions win over the C library's at link time) and
 * calls syncfs() once at the end instead.  Seeding is not a benchmark; a
 * million durable deliveries one by one would take an hour.
 *
 * Both nodes must be stopped (the journal is locked against a second
 * opener anyway).  Exit status 0, 1 on an error, 2 on a usage error.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "jrec.h"
#include "journal.h"
#include "log.h"
#include "user_store.h"

#define SEED_USERS_MAX 1000000UL
#define SEED_MESSAGES_MAX 10000000UL
#define SEED_SIZE_MAX (1024UL * 1024)
#define SEED_THREADS_MAX 64UL

/* Durability is not wanted while seeding: see the top of the file. */
int fsync(int fd)
{
	(void)fd;
	return 0;
}

int fdatasync(int fd)
{
	(void)fd;
	return 0;
}

struct seed {
	struct user_store *store;
	const char *pattern;
	unsigned long first, users, messages, threads;
	size_t size;
	atomic_ulong next_user;		/* index of the next user to seed */
	atomic_ulong done;		/* messages appended */
	atomic_bool failed;
};

/* pattern with %d replaced by id and %% by '%'. */
static int user_name_of(const char *pattern, unsigned long id, char *out,
			size_t out_size)
{
	size_t n = 0;

	for (const char *p = pattern; *p != '\0'; p++) {
		char num[32];
		const char *s = num;
		size_t len;

		if (p[0] == '%' && p[1] == 'd') {
			snprintf(num, sizeof(num), "%lu", id);
			p++;
		} else if (p[0] == '%' && p[1] == '%') {
			num[0] = '%';
			num[1] = '\0';
			p++;
		} else {
			num[0] = *p;
			num[1] = '\0';
		}
		len = strlen(s);
		if (len >= out_size - n)
			return -1;
		memcpy(out + n, s, len);
		n += len;
	}
	out[n] = '\0';
	return 0;
}

/* A plain message of about size bytes, unique by user and number. */
static size_t make_message(char *buf, size_t size, const char *user,
			   unsigned long seq)
{
	int n = snprintf(buf, size,
			 "From: seed-store <seed@localhost>\r\n"
			 "To: %s <%s@localhost>\r\n"
			 "Subject: seeded message %lu\r\n"
			 "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
			 "Message-ID: <seed.%s.%lu@localhost>\r\n"
			 "\r\n",
			 user, user, seq, user, seq);
	size_t len;

	if (n < 0 || (size_t)n >= size)
		return 0;
	len = (size_t)n;
	while (len + 2 < size) {
		size_t line = size - len - 2 < 70 ? size - len - 2 : 70;

		for (size_t i = 0; i < line; i++)
			buf[len + i] = (char)('a' + (seq + i) % 26);
		len += line;
		buf[len++] = '\r';
		buf[len++] = '\n';
	}
	return len;
}

static void *seed_main(void *arg)
{
	struct seed *s = arg;
	size_t buf_size = s->size + 512;
	char *body = malloc(buf_size);
	char name[256];
	const char *error;

	if (body == NULL) {
		atomic_store(&s->failed, true);
		return NULL;
	}
	for (;;) {
		unsigned long idx = atomic_fetch_add(&s->next_user, 1);
		struct user *user;

		if (idx >= s->users || atomic_load(&s->failed))
			break;
		if (user_name_of(s->pattern, s->first + idx, name,
				 sizeof(name)) < 0) {
			fprintf(stderr, "seed-store: user name too long\n");
			atomic_store(&s->failed, true);
			break;
		}
		user = user_store_get(s->store, name, &error);
		if (user == NULL) {
			fprintf(stderr, "seed-store: %s: %s\n", name, error);
			atomic_store(&s->failed, true);
			break;
		}
		user_lock(user);
		for (unsigned long m = 0; m < s->messages; m++) {
			size_t len = make_message(body, buf_size, name, m);

			if (user_append_locked(user, "INBOX", body, len,
					       (int64_t)time(NULL), 0, NULL, 0,
					       NULL, NULL, &error) < 0) {
				fprintf(stderr, "seed-store: APPEND for %s: "
					"%s\n", name, error);
				atomic_store(&s->failed, true);
				break;
			}
			atomic_fetch_add(&s->done, 1);
		}
		user_unlock(user);
	}
	free(body);
	return NULL;
}

static int open_store(const struct config_node *node, bool storage,
		      char sep, struct user_store **store_r)
{
	struct user_store_options opts;
	const char *error;

	memset(&opts, 0, sizeof(opts));
	opts.node_name = node->name;
	opts.is_storage = storage;
	opts.maildir_root = node->maildir_root;
	opts.crdt_root = node->crdt_root;
	opts.hierarchy_separator = sep;
	if (user_store_open(&opts, store_r, &error) < 0) {
		fprintf(stderr, "seed-store: cannot open %s: %s\n", node->name,
			error);
		return -1;
	}
	return 0;
}

/* Stores in storage every record of the worker's journal it lacks, then
 * waits until storage applied them. */
static int catch_up(struct user_store *worker, const char *worker_name,
		    struct user_store *storage)
{
	struct journal *wj = user_store_journal(worker);
	struct journal *sj = user_store_journal(storage);
	uint64_t from = user_store_received_lsn(storage, worker_name) + 1;
	struct journal_reader *reader;
	struct journal_record rec;
	const char *error = NULL;
	unsigned long shipped = 0;
	int r;

	if (from < journal_first_lsn(wj))
		from = journal_first_lsn(wj);
	reader = journal_reader_new(wj, from, &error);
	if (reader == NULL) {
		fprintf(stderr, "seed-store: journal: %s\n", error);
		return -1;
	}
	if (user_store_start_applier(storage, &error) < 0) {
		fprintf(stderr, "seed-store: applier: %s\n", error);
		journal_reader_free(&reader);
		return -1;
	}
	while ((r = journal_reader_next(reader, &rec, &error)) == 1) {
		struct jrec jrec;
		uint64_t lsn;

		if (jrec_decode(&rec, &jrec, &error) < 0) {
			fprintf(stderr, "seed-store: record %" PRIu64 ": %s\n",
				rec.lsn, error);
			r = -1;
			break;
		}
		if (user_store_record_for_peer(worker, &jrec, "storage") &&
		    user_store_receive(storage, worker_name, rec.lsn,
				       jrec.clock, jrec.op, jrec.op_len, &lsn,
				       &error) < 0) {
			fprintf(stderr, "seed-store: storage refused record "
				"%" PRIu64 ": %s\n", rec.lsn, error);
			jrec_clear(&jrec);
			r = -1;
			break;
		}
		shipped++;
		jrec_clear(&jrec);
	}
	journal_reader_free(&reader);
	if (r < 0)
		return -1;
	/* The applier runs behind the receipts; wait for it. */
	while (user_store_applied_lsn(storage) + 1 < journal_next_lsn(sj)) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	printf("seed-store: storage caught up with %lu records of %s\n",
	       shipped, worker_name);
	return 0;
}

static void syncfs_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || syncfs(fd) < 0)
		fprintf(stderr, "seed-store: syncfs %s: %s\n", path,
			strerror(errno));
	if (fd >= 0)
		close(fd);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: seed-store -c CONFIG -N NODE [-u PATTERN] [-f FIRST] "
		"[-U USERS]\n"
		"                  [-m MESSAGES] [-s BYTES] [-t THREADS] "
		"[-S [-T]]\n");
	exit(2);
}

static unsigned long parse_num(const char *s, unsigned long min,
			       unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min ||
	    v > max)
		usage();
	return v;
}

int main(int argc, char **argv)
{
	struct seed s;
	struct pluto_config *cfg = NULL;
	const struct config_node *node;
	const char *config_path = NULL, *node_name = NULL;
	struct user_store *storage = NULL;
	pthread_t threads[SEED_THREADS_MAX];
	struct timespec t0, t1;
	char *errors = NULL;
	bool catch_up_storage = false, trim = false;
	int opt, ret = 1;

	memset(&s, 0, sizeof(s));
	s.pattern = "user%d";
	s.first = 1;
	s.users = 1;
	s.messages = 1000;
	s.size = 1024;
	s.threads = 2;
	while ((opt = getopt(argc, argv, "c:N:u:f:U:m:s:t:STh")) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'N': node_name = optarg; break;
		case 'u': s.pattern = optarg; break;
		case 'f': s.first = parse_num(optarg, 0, UINT32_MAX); break;
		case 'U': s.users = parse_num(optarg, 1, SEED_USERS_MAX); break;
		case 'm':
			s.messages = parse_num(optarg, 0, SEED_MESSAGES_MAX);
			break;
		case 's':
			s.size = parse_num(optarg, 300, SEED_SIZE_MAX);
			break;
		case 't':
			s.threads = parse_num(optarg, 1, SEED_THREADS_MAX);
			break;
		case 'S': catch_up_storage = true; break;
		case 'T': trim = true; break;
		default: usage();
		}
	}
	if (config_path == NULL || node_name == NULL || optind != argc ||
	    (trim && !catch_up_storage))
		usage();
	log_init("seed-store", LOG_LEVEL_WARN, false);
	if (config_load_node(config_path, CONFIG_NODE_NONE, &cfg, &errors) <
	    0) {
		fprintf(stderr, "seed-store: %s:\n%s", config_path, errors);
		free(errors);
		return 1;
	}
	node = config_worker(cfg, node_name);
	if (node == NULL) {
		fprintf(stderr, "seed-store: %s is no worker of %s\n",
			node_name, config_path);
		goto out;
	}
	if (open_store(node, false, cfg->hierarchy_separator, &s.store) < 0)
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (s.threads > s.users)
		s.threads = s.users;
	for (unsigned long i = 0; i < s.threads; i++) {
		if (pthread_create(&threads[i], NULL, seed_main, &s) != 0) {
			fprintf(stderr, "seed-store: pthread_create failed\n");
			atomic_store(&s.failed, true);
			s.threads = i;
			break;
		}
	}
	for (unsigned long i = 0; i < s.threads; i++)
		pthread_join(threads[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("seed-store: %lu messages for %lu users in %.1f s\n",
	       atomic_load(&s.done), s.users,
	       (double)(t1.tv_sec - t0.tv_sec) +
		       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	if (atomic_load(&s.failed))
		goto out;
	if (catch_up_storage) {
		if (open_store(&cfg->storage, true, cfg->hierarchy_separator,
			       &storage) < 0 ||
		    catch_up(s.store, node_name, storage) < 0)
			goto out;
	}
	if (trim) {
		struct journal *wj = user_store_journal(s.store);
		const char *error;
		int removed = user_store_trim(s.store, journal_durable_lsn(wj),
					      &error);

		if (removed < 0) {
			fprintf(stderr, "seed-store: trim: %s\n", error);
			goto out;
		}
		printf("seed-store: trimmed %d journal segments of %s; it "
		       "starts at record %" PRIu64 " of %" PRIu64 "\n",
		       removed, node_name, journal_first_lsn(wj),
		       journal_durable_lsn(wj));
	}
	ret = 0;
out:
	/* Freeing writes the snapshots. */
	user_store_free(&storage);
	user_store_free(&s.store);
	if (ret == 0 && node != NULL) {
		syncfs_path(node->crdt_root);
		syncfs_path(node->maildir_root);
	}
	config_free(&cfg);
	return ret;
}
