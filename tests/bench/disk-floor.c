/*
 * disk-floor.c - what durable writes cost on one file system, so that
 * server latencies can be read as multiples of it.
 *
 *   disk-floor [-n COUNT] [-s BYTES] DIR
 *
 * Measures, in a fresh directory under DIR, COUNT times each and
 * interleaved (so that a noisy neighbour hits every kind alike):
 *
 *   journal   BYTES appended to one growing file, then fdatasync() --
 *             the cost of one group-commit journal sync;
 *   file      a new file created in a directory, BYTES written, fsync()
 *             of the file, link() into a second directory, fsync() of
 *             that directory, unlink of the first name -- a Maildir
 *             delivery through tmp/ into cur/, made durable;
 *   both      journal then file, back to back: the serial disk work of one
 *             durable APPEND, the "floor" vs-dovecot.sh compares with;
 *   overlap   journal on a second thread while this one does file: what
 *             the same work costs when the two syncs run concurrently.
 *
 * Prints one line per kind: "kind count p50_us p90_us p99_us mean_us",
 * after a "#" header line.  Everything it creates is removed again.
 * Exit status 0, or 1 when a system call fails, 2 on a usage error.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_COUNT_MAX 1000000UL
#define FLOOR_SIZE_MAX (64UL * 1024 * 1024)

enum floor_kind {
	FLOOR_JOURNAL, FLOOR_FILE, FLOOR_BOTH, FLOOR_OVERLAP, FLOOR_KINDS
};

static const char *const floor_names[FLOOR_KINDS] = {
	"journal", "file", "both", "overlap"
};

struct floor_run {
	int journal_fd;		/* the growing journal-like file */
	int tmp_fd, cur_fd;	/* the two delivery directories */
	unsigned char *data;
	size_t size;
	unsigned long seq;	/* names the delivered files */

	/* The helper thread of "overlap": runs do_journal once per request
	 * (pending set), then clears pending; result is its return value. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool pending, quit;
	int result;
};

static int do_journal(struct floor_run *run);

static void *helper_main(void *arg)
{
	struct floor_run *run = arg;

	pthread_mutex_lock(&run->lock);
	for (;;) {
		while (!run->pending && !run->quit)
			pthread_cond_wait(&run->cond, &run->lock);
		if (run->quit)
			break;
		pthread_mutex_unlock(&run->lock);
		int r = do_journal(run);
		pthread_mutex_lock(&run->lock);
		run->result = r;
		run->pending = false;
		pthread_cond_broadcast(&run->cond);
	}
	pthread_mutex_unlock(&run->lock);
	return NULL;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int do_journal(struct floor_run *run)
{
	if (write_all(run->journal_fd, run->data, run->size) < 0) {
		perror("disk-floor: write(journal)");
		return -1;
	}
	if (fdatasync(run->journal_fd) < 0) {
		perror("disk-floor: fdatasync(journal)");
		return -1;
	}
	return 0;
}

static int do_file(struct floor_run *run)
{
	char name[64];
	int fd;

	snprintf(name, sizeof(name), "m%lu", run->seq++);
	fd = openat(run->tmp_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    0600);
	if (fd < 0) {
		perror("disk-floor: create");
		return -1;
	}
	if (write_all(fd, run->data, run->size) < 0 || fsync(fd) < 0) {
		perror("disk-floor: write+fsync(file)");
		close(fd);
		return -1;
	}
	if (close(fd) < 0 ||
	    linkat(run->tmp_fd, name, run->cur_fd, name, 0) < 0 ||
	    fsync(run->cur_fd) < 0 || unlinkat(run->tmp_fd, name, 0) < 0) {
		perror("disk-floor: link+fsync(directory)");
		return -1;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples, like pluto-bench. */
static uint64_t percentile(const uint64_t *v, size_t n, unsigned pct)
{
	size_t rank = (n * pct + 99) / 100;

	return v[rank > 0 ? rank - 1 : 0];
}

static void report(const char *name, uint64_t *v, size_t n)
{
	uint64_t sum = 0;

	qsort(v, n, sizeof(*v), cmp_u64);
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	printf("%-8s %6zu %8llu %8llu %8llu %8llu\n", name, n,
	       (unsigned long long)percentile(v, n, 50),
	       (unsigned long long)percentile(v, n, 90),
	       (unsigned long long)percentile(v, n, 99),
	       (unsigned long long)(sum / n));
}

/* Removes what the run left in dir (files of tmp/ and cur/, the journal,
 * the directories). */
static void cleanup(const char dir[1024])
{
	static const char *const subs[] = { "tmp", "cur" };
	char path[4096];

	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, subs[i]);
		int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			for (unsigned long k = 0;; k++) {
				char name[64];

				snprintf(name, sizeof(name), "m%lu", k);
				if (unlinkat(fd, name, 0) < 0)
					break;
			}
			close(fd);
		}
		rmdir(path);
	}
	snprintf(path, sizeof(path), "%s/journal", dir);
	unlink(path);
	rmdir(dir);
}

static void usage(void)
{
	fprintf(stderr, "usage: disk-floor [-n COUNT] [-s BYTES] DIR\n");
	exit(2);
}

static unsigned long parse_num(const char *s, unsigned long max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v == 0 || v > max ||
	    s[0] == '-')
		usage();
	return v;
}

int main(int argc, char **argv)
{
	struct floor_run run;
	unsigned long count = 1000;
	uint64_t *samples[FLOOR_KINDS] = { NULL, NULL, NULL, NULL };
	pthread_t helper;
	bool helper_started = false;
	char dir[1024], path[4096];
	int opt, ret = 1;

	memset(&run, 0, sizeof(run));
	run.journal_fd = run.tmp_fd = run.cur_fd = -1;
	run.size = 4096;
	pthread_mutex_init(&run.lock, NULL);
	pthread_cond_init(&run.cond, NULL);
	while ((opt = getopt(argc, argv, "n:s:h")) != -1) {
		switch (opt) {
		case 'n':
			count = parse_num(optarg, FLOOR_COUNT_MAX);
			break;
		case 's':
			run.size = parse_num(optarg, FLOOR_SIZE_MAX);
			break;
		default:
			usage();
		}
	}
	if (optind + 1 != argc)
		usage();
	if ((size_t)snprintf(dir, sizeof(dir), "%s/disk-floor.%ld",
			     argv[optind], (long)getpid()) >= sizeof(dir) - 16)
		usage();
	if (mkdir(dir, 0700) < 0) {
		perror("disk-floor: mkdir");
		return 1;
	}
	run.data = malloc(run.size);
	for (size_t k = 0; k < FLOOR_KINDS; k++)
		samples[k] = calloc(count, sizeof(uint64_t));
	if (run.data == NULL || samples[0] == NULL || samples[1] == NULL ||
	    samples[2] == NULL || samples[3] == NULL) {
		fprintf(stderr, "disk-floor: out of memory\n");
		goto out;
	}
	/* Not zeros: some storage compresses or skips them. */
	for (size_t i = 0; i < run.size; i++)
		run.data[i] = (unsigned char)('a' + i % 26);
	run.data[run.size - 1] = '\n';

	snprintf(path, sizeof(path), "%s/tmp", dir);
	if (mkdir(path, 0700) < 0 ||
	    (run.tmp_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		perror("disk-floor: tmp");
		goto out;
	}
	snprintf(path, sizeof(path), "%s/cur", dir);
	if (mkdir(path, 0700) < 0 ||
	    (run.cur_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		perror("disk-floor: cur");
		goto out;
	}
	snprintf(path, sizeof(path), "%s/journal", dir);
	run.journal_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			      0600);
	if (run.journal_fd < 0) {
		perror("disk-floor: journal");
		goto out;
	}
	/* The directories themselves durable first, as a server's are. */
	if (fsync(run.tmp_fd) < 0 || fsync(run.cur_fd) < 0) {
		perror("disk-floor: fsync(directories)");
		goto out;
	}

	if (pthread_create(&helper, NULL, helper_main, &run) != 0) {
		fprintf(stderr, "disk-floor: pthread_create failed\n");
		goto out;
	}
	helper_started = true;

	for (unsigned long i = 0; i < count; i++) {
		uint64_t t0, t1, t2;
		int r;

		t0 = now_us();
		if (do_journal(&run) < 0)
			goto out;
		t1 = now_us();
		if (do_file(&run) < 0)
			goto out;
		t2 = now_us();
		samples[FLOOR_JOURNAL][i] = t1 - t0;
		samples[FLOOR_FILE][i] = t2 - t1;
		/* Back to back, as one APPEND does them. */
		t0 = now_us();
		if (do_journal(&run) < 0 || do_file(&run) < 0)
			goto out;
		samples[FLOOR_BOTH][i] = now_us() - t0;
		/* Concurrently, as a journal syncing on its own thread
		 * would. */
		t0 = now_us();
		pthread_mutex_lock(&run.lock);
		run.pending = true;
		pthread_cond_broadcast(&run.cond);
		pthread_mutex_unlock(&run.lock);
		r = do_file(&run);
		pthread_mutex_lock(&run.lock);
		while (run.pending)
			pthread_cond_wait(&run.cond, &run.lock);
		pthread_mutex_unlock(&run.lock);
		if (r < 0 || run.result < 0)
			goto out;
		samples[FLOOR_OVERLAP][i] = now_us() - t0;
	}
	printf("# kind    count   p50_us   p90_us   p99_us  mean_us"
	       "  (%zu bytes)\n", run.size);
	for (size_t k = 0; k < FLOOR_KINDS; k++)
		report(floor_names[k], samples[k], count);
	ret = 0;
out:
	if (helper_started) {
		pthread_mutex_lock(&run.lock);
		run.quit = true;
		pthread_cond_broadcast(&run.cond);
		pthread_mutex_unlock(&run.lock);
		pthread_join(helper, NULL);
	}
	if (run.journal_fd >= 0)
		close(run.journal_fd);
	if (run.tmp_fd >= 0)
		close(run.tmp_fd);
	if (run.cur_fd >= 0)
		close(run.cur_fd);
	cleanup(dir);
	for (size_t k = 0; k < FLOOR_KINDS; k++)
		free(samples[k]);
	free(run.data);
	return ret;
}
