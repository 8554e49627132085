/*
 * journal.c - append-only, checksummed operation journal with group commit,
 * segment rotation, trimming, crash recovery and concurrent readers.
 *
 * Writers append whole frames with one writev() at the tracked end of the
 * current segment while holding the journal lock, so frames never
 * interleave; that is cheap because it only copies into the page cache.
 * Making records durable is the expensive part and happens outside the
 * lock: the first thread that needs a sync notes the newest written LSN,
 * drops the lock and calls fdatasync; threads arriving meanwhile wait on
 * sync_cond and are either covered by that sync or elect the next leader.
 * One fdatasync thus acknowledges every record written before it started.
 * A syncer thread of the journal's own is kicked by every append and
 * leads a sync at once when none is running, so that the journal's sync
 * overlaps whatever the appender does before it waits (a Maildir delivery
 * with its own fsyncs): with one client, an APPEND then costs the longer
 * of the two syncs instead of their sum.
 *
 * Rotation fdatasyncs the old segment before creating the next one (and
 * fsyncs the directory after creating it), so every segment but the newest
 * is complete on disk: recovery may treat a bad record in an older segment
 * as real corruption and a bad record in the newest as a torn write.
 * Rotation runs with the lock held; it happens once per segment_size bytes.
 *
 * Readers open segment files themselves and stop at durable_lsn, read under
 * the lock: every record up to it was completely written before it became
 * durable, and nothing up to it is ever truncated, so a reader never races
 * the writer's partial frames.
 *
 * Recovery and readers read segments through a window of up to 1 MiB
 * rather than with a pread per header, payload and trailer: start-up reads
 * the whole journal twice (recovery, then replay), and the system calls
 * were most of its time.  A reader's window may also hold the writer's
 * partial frames past the durable end, so it is only trusted for records
 * that were durable before it was filled (see struct journal_reader).
 *
 * Per append the disk work is one writev plus a share of one fdatasync:
 * nothing depends on the size of the journal or of any mailbox.
 *
 * Threads: the syncer (journal_open to journal_free) only ever leads syncs.
 *
 * Lock order: journal->lock is a leaf.  No other lock is held while taking
 * it and none is taken while holding it; callbacks of journal_read_from run
 * without it.
 */
#include "autoconfig.h"

#include "journal.h"

#include "buf.h"
#include "crc32c.h"
#include "fileio.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define JOURNAL_MAGIC 0x504A5231U	/* "PJR1" */
#define JOURNAL_HEADER_SIZE 20
#define JOURNAL_TRAILER_SIZE 4
#define JOURNAL_NAME_DIGITS 20
#define JOURNAL_NAME_SUFFIX ".log"
#define JOURNAL_NAME_SIZE (JOURNAL_NAME_DIGITS + sizeof(JOURNAL_NAME_SUFFIX))
/* Segments are read through a window that starts at the first size and
 * doubles per refill up to the second: a reader fetching one record reads
 * little, a replay of the whole journal makes one pread per megabyte
 * instead of three per record. */
#define JOURNAL_WINDOW_MIN (64U * 1024)
#define JOURNAL_WINDOW_MAX (1024U * 1024)
#define JOURNAL_SYNCER_STACK (128U * 1024)

struct journal {
	char *dir;
	int dir_fd;
	int lock_fd;		/* holds the flock on dir/LOCK */
	uint64_t segment_size;

	/* Everything below is guarded by lock.  syncing is set by the one
	 * thread running fdatasync on fd; while it is set, fd must not be
	 * closed, so rotation waits for it to clear. */
	pthread_mutex_t lock;
	pthread_cond_t sync_cond;	/* a sync finished */
	pthread_cond_t new_cond;	/* durable_lsn moved, wake, shutdown */
	/* journal_wait_type: the newest LSN written of every record type,
	 * how many threads wait for each type, and their condition, which
	 * is signalled only when a durable advance covers a newer record of
	 * a waited-for type (plus wake and shutdown). */
	pthread_cond_t type_cond;
	uint64_t newest_of_type[256];
	unsigned type_waiters[256];
	pthread_cond_t kick_cond;	/* wakes the syncer: records to sync */
	int fd;			/* newest segment, position == seg_size */
	uint64_t seg_size;	/* bytes of whole records in it */
	uint64_t next_lsn;
	uint64_t durable_lsn;
	bool syncing;
	bool failed;
	bool shut_down;
	bool syncer_started;
	bool syncer_quit;
	pthread_t syncer;
	const char *fail_reason;
	/* First LSN of every segment on disk, ascending; the last entry is
	 * the segment fd refers to. */
	uint64_t *segs;
	size_t nsegs;
	size_t segs_cap;
	struct journal_stats stats;
};

/* Buffered bytes of one segment file: data[0..len) is the file at off. */
struct read_window {
	unsigned char *data;
	size_t cap;
	uint64_t off;
	size_t len;
};

struct journal_reader {
	struct journal *j;
	uint64_t next_lsn;
	int fd;			/* -1 until positioned in a segment */
	uint64_t seg_first;
	uint64_t off;
	unsigned char *buf;	/* payloads too long for the window */
	size_t buf_cap;
	/* The window may hold bytes past the durable end that were still
	 * being written when it was filled.  Records up to win_durable were
	 * whole before every fill since it was set, so only those are
	 * served from it; a later record empties it first. */
	struct read_window win;
	uint64_t win_durable;
	bool broken;
};

static int syncer_start(struct journal *j);

/* The header of one frame, decoded. */
struct journal_header {
	uint32_t magic;
	uint32_t len;
	uint64_t lsn;
	uint8_t type;
	uint8_t pad[3];
};

static _Thread_local char journal_errbuf[512];

/* Formats an error into the thread's buffer; with_errno appends
 * strerror(errno). */
static const char *journal_err(bool with_errno, const char *fmt, ...)
	PLUTO_PRINTF(2, 3);

static const char *journal_err(bool with_errno, const char *fmt, ...)
{
	const char *msg;
	va_list ap;

	va_start(ap, fmt);
	msg = fileio_error(journal_errbuf, sizeof(journal_errbuf), with_errno, fmt, ap);
	va_end(ap);
	return msg;
}

static void header_encode(unsigned char *p, uint32_t len, uint64_t lsn,
			  uint8_t type)
{
	buf_write_be32(p, JOURNAL_MAGIC);
	buf_write_be32(p + 4, len);
	buf_write_be64(p + 8, lsn);
	p[16] = type;
	p[17] = 0;
	p[18] = 0;
	p[19] = 0;
}

/* Checks what can be checked without the payload.  Returns NULL when the
 * header is plausible for the record expected_lsn, else why not. */
static const char *header_check(const unsigned char *p, uint64_t expected_lsn,
				struct journal_header *h_r)
{
	h_r->magic = buf_read_be32(p);
	h_r->len = buf_read_be32(p + 4);
	h_r->lsn = buf_read_be64(p + 8);
	h_r->type = p[16];
	memcpy(h_r->pad, p + 17, 3);
	if (h_r->magic != JOURNAL_MAGIC)
		return "bad record magic";
	if (h_r->pad[0] != 0 || h_r->pad[1] != 0 || h_r->pad[2] != 0)
		return "bad record padding";
	if (h_r->len > JOURNAL_RECORD_MAX)
		return "record length out of range";
	if (h_r->lsn != expected_lsn)
		return "unexpected record LSN";
	return NULL;
}

/* pread until len bytes or end of file.  Returns the bytes read, or -1
 * with errno. */
static ssize_t read_at(int fd, void *buf, size_t len, uint64_t off)
{
	unsigned char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n;

		if (off + done > (uint64_t)INT64_MAX) {
			errno = EOVERFLOW;
			return -1;
		}
		n = pread(fd, p + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* Makes the want bytes (at most JOURNAL_WINDOW_MAX) at off available in
 * w, refilling it from fd at off unless they are all there already.  Sets
 * *p_r to them and returns how many of want there are: fewer only when
 * the file ends first.  -1 with errno on a read or allocation error. */
static ssize_t window_get(int fd, struct read_window *w, uint64_t off,
			  size_t want, const unsigned char **p_r)
{
	size_t cap = w->cap;
	ssize_t n;

	if (want > JOURNAL_WINDOW_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (off >= w->off && off - w->off <= w->len &&
	    w->len - (size_t)(off - w->off) >= want) {
		*p_r = w->data + (off - w->off);
		return (ssize_t)want;
	}
	cap = cap == 0 ? JOURNAL_WINDOW_MIN : cap;
	if (w->data != NULL && cap < JOURNAL_WINDOW_MAX)
		cap *= 2;
	while (cap < want && cap < JOURNAL_WINDOW_MAX)
		cap *= 2;
	if (cap != w->cap) {
		unsigned char *nd = realloc(w->data, cap);

		if (nd == NULL)
			return -1;
		w->data = nd;
		w->cap = cap;
	}
	w->len = 0;
	n = read_at(fd, w->data, w->cap, off);
	if (n < 0)
		return -1;
	w->off = off;
	w->len = (size_t)n;
	*p_r = w->data;
	return (size_t)n < want ? n : (ssize_t)want;
}

/* Forgets the window's contents, keeping its memory. */
static void window_reset(struct read_window *w)
{
	w->off = 0;
	w->len = 0;
}

static int sync_data(int fd)
{
	int r;

	do {
#if defined(_POSIX_SYNCHRONIZED_IO) && _POSIX_SYNCHRONIZED_IO > 0
		r = fdatasync(fd);
#else
		r = fsync(fd);
#endif
	} while (r < 0 && errno == EINTR);
	return r;
}

static int sync_full(int fd)
{
	int r;

	do {
		r = fsync(fd);
	} while (r < 0 && errno == EINTR);
	return r;
}

static void segment_name(char *buf, uint64_t first)
{
	snprintf(buf, JOURNAL_NAME_SIZE, "%0*" PRIu64 JOURNAL_NAME_SUFFIX,
		 JOURNAL_NAME_DIGITS, first);
}

/* Parses a segment file name; false for anything else. */
static bool segment_parse(const char *name, uint64_t *first_r)
{
	uint64_t v = 0;

	if (strlen(name) != JOURNAL_NAME_SIZE - 1 ||
	    strcmp(name + JOURNAL_NAME_DIGITS, JOURNAL_NAME_SUFFIX) != 0)
		return false;
	for (int i = 0; i < JOURNAL_NAME_DIGITS; i++) {
		unsigned int d;

		if (name[i] < '0' || name[i] > '9')
			return false;
		d = (unsigned int)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (v == 0)
		return false;
	*first_r = v;
	return true;
}

/* Makes room for one more entry in j->segs. */
static int segs_reserve(struct journal *j)
{
	if (j->nsegs == j->segs_cap) {
		size_t cap = j->segs_cap == 0 ? 16 : j->segs_cap;
		uint64_t *n;

		if (cap > SIZE_MAX / 2 / sizeof(*n)) {
			errno = ENOMEM;
			return -1;
		}
		cap *= 2;
		n = realloc(j->segs, cap * sizeof(*n));
		if (n == NULL)
			return -1;
		j->segs = n;
		j->segs_cap = cap;
	}
	return 0;
}

static int segs_push(struct journal *j, uint64_t first)
{
	if (segs_reserve(j) < 0)
		return -1;
	j->segs[j->nsegs++] = first;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* Index of the segment holding lsn: the last one whose first LSN is not
 * above it.  The caller has checked lsn >= segs[0]. */
static size_t segs_find_locked(const struct journal *j, uint64_t lsn)
{
	size_t lo = 0, hi = j->nsegs;

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (j->segs[mid] <= lsn)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* Validates the records of one segment from offset 0, expecting LSNs from
 * *lsn on.  Sets *good_r to the end of the last valid record and *lsn to
 * the LSN after it; returns NULL when the whole file is valid, else why
 * the record at *good_r is not (or -1 for an I/O error: *error_r). */
static int segment_scan(int fd, const char *name, uint64_t *lsn,
			uint64_t *good_r, const char **bad_r,
			struct read_window *win, const char **error_r)
{
	struct stat st;
	uint64_t off = 0, size;

	*bad_r = NULL;
	if (fstat(fd, &st) < 0) {
		*error_r = journal_err(true, "fstat %s", name);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		*error_r = journal_err(false, "%s is not a regular file", name);
		return -1;
	}
	size = (uint64_t)st.st_size;
	while (off < size) {
		unsigned char hdr[JOURNAL_HEADER_SIZE];
		unsigned char tr[JOURNAL_TRAILER_SIZE];
		struct journal_header h;
		uint64_t left = size - off, done = 0;
		const unsigned char *p;
		uint32_t crc = 0;
		ssize_t n;

		if (left < JOURNAL_RECORD_OVERHEAD) {
			*bad_r = "incomplete record header";
			break;
		}
		n = window_get(fd, win, off, sizeof(hdr), &p);
		if (n < 0) {
			*error_r = journal_err(true, "read %s", name);
			return -1;
		}
		if ((size_t)n != sizeof(hdr)) {
			*bad_r = "incomplete record header";
			break;
		}
		/* Copied: reading the payload may refill the window. */
		memcpy(hdr, p, sizeof(hdr));
		*bad_r = header_check(hdr, *lsn, &h);
		if (*bad_r != NULL)
			break;
		if (h.len > left - JOURNAL_RECORD_OVERHEAD) {
			*bad_r = "incomplete record";
			break;
		}
		while (done < h.len) {
			size_t want = h.len - done > JOURNAL_WINDOW_MAX ?
				      JOURNAL_WINDOW_MAX :
				      (size_t)(h.len - done);

			n = window_get(fd, win, off + JOURNAL_HEADER_SIZE +
				       done, want, &p);
			if (n < 0) {
				*error_r = journal_err(true, "read %s", name);
				return -1;
			}
			if ((size_t)n != want)
				break;
			crc = crc32c_update(crc, p, want);
			done += want;
		}
		if (done < h.len) {
			*bad_r = "incomplete record";
			break;
		}
		crc = crc32c_update(crc, hdr, sizeof(hdr));
		n = window_get(fd, win, off + JOURNAL_HEADER_SIZE + h.len,
			       sizeof(tr), &p);
		if (n < 0) {
			*error_r = journal_err(true, "read %s", name);
			return -1;
		}
		if ((size_t)n != sizeof(tr)) {
			*bad_r = "incomplete record";
			break;
		}
		memcpy(tr, p, sizeof(tr));
		if (buf_read_be32(tr) != crc) {
			*bad_r = "record checksum mismatch";
			break;
		}
		off += JOURNAL_RECORD_OVERHEAD + (uint64_t)h.len;
		(*lsn)++;
	}
	*good_r = off;
	return 0;
}

/* Creates the directory when missing, making its entry durable. */
static int journal_mkdir(const char *dir, const char **error_r)
{
	char *parent, *slash;
	int pfd;

	if (mkdir(dir, 0700) == 0) {
		parent = strdup(dir);
		if (parent == NULL) {
			*error_r = journal_err(true, "strdup");
			return -1;
		}
		/* "a/b/" names b too: its parent is "a". */
		for (size_t n = strlen(parent); n > 1 && parent[n - 1] == '/';
		     n--)
			parent[n - 1] = '\0';
		slash = strrchr(parent, '/');
		if (slash == NULL) {
			/* strdup of a non-empty name: 2 bytes exist. */
			parent[0] = '.';
			parent[1] = '\0';
		} else if (slash == parent) {
			parent[1] = '\0';
		} else {
			*slash = '\0';
		}
		pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pfd < 0 || sync_full(pfd) < 0) {
			*error_r = journal_err(true, "sync directory %s",
					       parent);
			if (pfd >= 0)
				close(pfd);
			free(parent);
			return -1;
		}
		close(pfd);
		free(parent);
		return 0;
	}
	if (errno == EEXIST)
		return 0;
	*error_r = journal_err(true, "mkdir %s", dir);
	return -1;
}

/* Creates (or empties) the segment starting at first and makes its
 * directory entry durable.  Returns the descriptor or -1. */
static int segment_create(struct journal *j, uint64_t first,
			  const char **error_r)
{
	char name[JOURNAL_NAME_SIZE];
	int fd;

	segment_name(name, first);
	fd = openat(j->dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0600);
	if (fd < 0) {
		*error_r = journal_err(true, "create %s/%s", j->dir, name);
		return -1;
	}
	if (sync_full(j->dir_fd) < 0) {
		*error_r = journal_err(true, "sync directory %s", j->dir);
		close(fd);
		(void)unlinkat(j->dir_fd, name, 0);
		return -1;
	}
	j->stats.dir_syncs++;
	return fd;
}

/* Lists the segment files into j->segs, sorted.  Other names are logged
 * and left alone. */
static int journal_list(struct journal *j, const char **error_r)
{
	struct dirent *de;
	DIR *d;
	int fd;

	fd = openat(j->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (d = fdopendir(fd)) == NULL) {
		*error_r = journal_err(true, "open directory %s", j->dir);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		uint64_t first;

		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, "LOCK") == 0)
			continue;
		if (!segment_parse(de->d_name, &first)) {
			log_warnx("journal %s: ignoring unexpected file %s",
				  j->dir, de->d_name);
			continue;
		}
		if (segs_push(j, first) < 0) {
			*error_r = journal_err(true, "listing %s", j->dir);
			closedir(d);
			return -1;
		}
		errno = 0;
	}
	if (errno != 0) {
		*error_r = journal_err(true, "readdir %s", j->dir);
		closedir(d);
		return -1;
	}
	closedir(d);
	if (j->nsegs > 0)
		qsort(j->segs, j->nsegs, sizeof(j->segs[0]), cmp_u64);
	return 0;
}

/* Validates every segment, truncates a torn tail of the newest and leaves
 * it open for appending. */
static int journal_recover(struct journal *j, const char **error_r)
{
	struct read_window win = { NULL, 0, 0, 0 };
	uint64_t lsn;

	if (j->nsegs == 0) {
		j->fd = segment_create(j, 1, error_r);
		if (j->fd < 0)
			return -1;
		if (segs_push(j, 1) < 0) {
			*error_r = journal_err(true, "journal %s", j->dir);
			return -1;
		}
		j->next_lsn = 1;
		j->durable_lsn = 0;
		return 0;
	}
	lsn = j->segs[0];
	for (size_t i = 0; i < j->nsegs; i++) {
		bool last = i + 1 == j->nsegs;
		char name[JOURNAL_NAME_SIZE];
		const char *bad;
		uint64_t good;
		struct stat st;
		int fd;

		segment_name(name, j->segs[i]);
		if (j->segs[i] != lsn) {
			*error_r = journal_err(false,
				"journal %s: segment %s does not follow LSN "
				"%" PRIu64 " (segment missing?)",
				j->dir, name, lsn - 1);
			goto fail;
		}
		/* O_NONBLOCK only so that a FIFO planted under a segment's
		 * name cannot hang start-up; segment_scan rejects it. */
		fd = openat(j->dir_fd, name, (last ? O_RDWR : O_RDONLY) |
			    O_CLOEXEC | O_NONBLOCK);
		if (fd < 0) {
			*error_r = journal_err(true, "open %s/%s", j->dir,
					       name);
			goto fail;
		}
		window_reset(&win);
		if (segment_scan(fd, name, &lsn, &good, &bad, &win,
				 error_r) < 0) {
			close(fd);
			goto fail;
		}
		if (bad != NULL && !last) {
			*error_r = journal_err(false,
				"journal %s: segment %s is corrupt at offset "
				"%" PRIu64 " (LSN %" PRIu64 "): %s",
				j->dir, name, good, lsn, bad);
			close(fd);
			goto fail;
		}
		if (!last) {
			close(fd);
			continue;
		}
		if (bad != NULL) {
			if (fstat(fd, &st) < 0)
				st.st_size = 0;
			log_warnx("journal %s: dropping torn tail of %s at "
				  "offset %" PRIu64 " (%" PRIu64 " bytes, "
				  "LSN %" PRIu64 "): %s", j->dir, name, good,
				  (uint64_t)st.st_size - good, lsn, bad);
			if (ftruncate(fd, (off_t)good) < 0 ||
			    sync_data(fd) < 0) {
				*error_r = journal_err(true,
					"truncate %s/%s", j->dir, name);
				close(fd);
				goto fail;
			}
		}
		if (lseek(fd, (off_t)good, SEEK_SET) < 0) {
			*error_r = journal_err(true, "seek %s/%s", j->dir,
					       name);
			close(fd);
			goto fail;
		}
		(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		j->fd = fd;
		j->seg_size = good;
	}
	free(win.data);
	j->next_lsn = lsn;
	j->durable_lsn = lsn - 1;
	return 0;
fail:
	free(win.data);
	return -1;
}

int journal_open(const char *dir, const struct journal_options *opts,
		 struct journal **j_r, const char **error_r)
{
	struct journal *j;
	pthread_condattr_t ca;

	if (journal_mkdir(dir, error_r) < 0)
		return -1;
	j = calloc(1, sizeof(*j));
	if (j == NULL || (j->dir = strdup(dir)) == NULL) {
		*error_r = journal_err(true, "journal %s", dir);
		free(j);
		return -1;
	}
	j->fd = -1;
	j->lock_fd = -1;
	j->segment_size = opts != NULL && opts->segment_size > 0 ?
			  opts->segment_size : JOURNAL_SEGMENT_SIZE_DEFAULT;
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->sync_cond, NULL);
	pthread_cond_init(&j->kick_cond, NULL);
	/* Timed waits measure a monotonic clock so that a clock step does
	 * not stretch or cut them. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j->new_cond, &ca);
	pthread_cond_init(&j->type_cond, &ca);
	pthread_condattr_destroy(&ca);

	j->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->dir_fd < 0) {
		*error_r = journal_err(true, "open %s", dir);
		goto fail;
	}
	j->lock_fd = openat(j->dir_fd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC,
			    0600);
	if (j->lock_fd < 0) {
		*error_r = journal_err(true, "open %s/LOCK", dir);
		goto fail;
	}
	if (flock(j->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		*error_r = journal_err(true, "journal %s is in use", dir);
		goto fail;
	}
	if (journal_list(j, error_r) < 0 || journal_recover(j, error_r) < 0)
		goto fail;
	if (syncer_start(j) < 0) {
		*error_r = journal_err(false, "journal %s: cannot start its "
				       "syncer thread", dir);
		goto fail;
	}
	log_debug("journal %s: opened, LSNs %" PRIu64 "..%" PRIu64
		  " in %zu segments", dir, j->segs[0], j->next_lsn - 1,
		  j->nsegs);
	*j_r = j;
	return 0;
fail:
	journal_free(&j);
	return -1;
}

void journal_free(struct journal **jp)
{
	struct journal *j = *jp;

	if (j == NULL)
		return;
	*jp = NULL;
	if (j->syncer_started) {
		pthread_mutex_lock(&j->lock);
		j->syncer_quit = true;
		pthread_cond_broadcast(&j->kick_cond);
		pthread_mutex_unlock(&j->lock);
		pthread_join(j->syncer, NULL);
	}
	if (j->fd >= 0) {
		if (!j->failed && j->durable_lsn + 1 < j->next_lsn &&
		    sync_data(j->fd) < 0)
			log_warn("journal %s: final sync", j->dir);
		close(j->fd);
	}
	if (j->lock_fd >= 0)
		close(j->lock_fd);
	if (j->dir_fd >= 0)
		close(j->dir_fd);
	pthread_cond_destroy(&j->new_cond);
	pthread_cond_destroy(&j->type_cond);
	pthread_cond_destroy(&j->sync_cond);
	pthread_cond_destroy(&j->kick_cond);
	pthread_mutex_destroy(&j->lock);
	free(j->segs);
	free(j->dir);
	free(j);
}

static int journal_failed_locked(struct journal *j, const char **error_r)
{
	*error_r = journal_err(false, "journal %s has failed (%s); reopen it",
			       j->dir, j->fail_reason);
	return -1;
}

/* Moves durable_lsn up to target and wakes the threads waiting for it:
 * all of journal_wait_new's, and journal_wait_type's only when a record
 * of their type became durable. */
static void durable_advance_locked(struct journal *j, uint64_t target)
{
	uint64_t old = j->durable_lsn;

	if (target <= old)
		return;
	j->durable_lsn = target;
	pthread_cond_broadcast(&j->new_cond);
	for (unsigned t = 0; t < 256; t++) {
		if (j->type_waiters[t] > 0 && j->newest_of_type[t] > old) {
			pthread_cond_broadcast(&j->type_cond);
			break;
		}
	}
}

/* Starts a new segment.  The old one is synced first so that only the
 * newest segment can ever hold a torn record (see the file comment). */
static int journal_rotate_locked(struct journal *j, const char **error_r)
{
	int fd;

	if (sync_data(j->fd) < 0) {
		*error_r = journal_err(true, "sync journal %s", j->dir);
		j->failed = true;
		j->fail_reason = "fdatasync failed";
		pthread_cond_broadcast(&j->sync_cond);
		return -1;
	}
	j->stats.syncs++;
	durable_advance_locked(j, j->next_lsn - 1);
	pthread_cond_broadcast(&j->sync_cond);
	/* Room in the list first, so that a failure leaves no file behind. */
	if (segs_reserve(j) < 0) {
		*error_r = journal_err(true, "journal %s", j->dir);
		return -1;
	}
	fd = segment_create(j, j->next_lsn, error_r);
	if (fd < 0)
		return -1;
	j->segs[j->nsegs++] = j->next_lsn;
	close(j->fd);
	j->fd = fd;
	j->seg_size = 0;
	j->stats.rotations++;
	return 0;
}

int journal_append_async(struct journal *j, uint8_t type,
			 const struct journal_part *parts, unsigned int nparts,
			 uint64_t *lsn_r, const char **error_r)
{
	struct iovec iov[JOURNAL_PARTS_MAX + 2];
	unsigned char hdr[JOURNAL_HEADER_SIZE], tr[JOURNAL_TRAILER_SIZE];
	uint32_t crc = 0;
	size_t len = 0;
	int iovcnt = 0;
	uint64_t lsn;

	if (nparts > JOURNAL_PARTS_MAX) {
		*error_r = journal_err(false, "too many record parts (%u)",
				       nparts);
		return -1;
	}
	for (unsigned int i = 0; i < nparts; i++) {
		if (parts[i].len > JOURNAL_RECORD_MAX - len) {
			*error_r = journal_err(false, "record too large");
			return -1;
		}
		len += parts[i].len;
	}
	/* The payload is summed before the lock is taken: it is the long
	 * part, and it does not depend on the LSN. */
	for (unsigned int i = 0; i < nparts; i++)
		crc = crc32c_update(crc, parts[i].data, parts[i].len);
	iov[iovcnt].iov_base = hdr;
	iov[iovcnt++].iov_len = sizeof(hdr);
	for (unsigned int i = 0; i < nparts; i++) {
		if (parts[i].len == 0)
			continue;
		iov[iovcnt].iov_base = (void *)parts[i].data;
		iov[iovcnt++].iov_len = parts[i].len;
	}
	iov[iovcnt].iov_base = tr;
	iov[iovcnt++].iov_len = sizeof(tr);

	pthread_mutex_lock(&j->lock);
	while (!j->failed && j->seg_size >= j->segment_size) {
		if (j->syncing) {
			/* The leader is syncing the old segment's fd. */
			pthread_cond_wait(&j->sync_cond, &j->lock);
			continue;
		}
		if (journal_rotate_locked(j, error_r) < 0) {
			pthread_mutex_unlock(&j->lock);
			return -1;
		}
	}
	if (j->failed) {
		journal_failed_locked(j, error_r);
		pthread_mutex_unlock(&j->lock);
		return -1;
	}
	if (j->next_lsn == UINT64_MAX) {
		/* Unreachable by appending, but a segment name can claim
		 * it; refuse rather than wrap. */
		pthread_mutex_unlock(&j->lock);
		*error_r = journal_err(false, "journal %s: LSNs exhausted",
				       j->dir);
		return -1;
	}
	lsn = j->next_lsn;
	header_encode(hdr, (uint32_t)len, lsn, type);
	buf_write_be32(tr, crc32c_update(crc, hdr, sizeof(hdr)));
	if (fileio_write_all(j->fd, iov, iovcnt) < 0) {
		*error_r = journal_err(true, "write journal %s", j->dir);
		j->stats.write_errors++;
		/* Cut off the partial frame so the next one follows the
		 * last whole record; if even that fails, stop appending. */
		if (ftruncate(j->fd, (off_t)j->seg_size) < 0 ||
		    lseek(j->fd, (off_t)j->seg_size, SEEK_SET) < 0) {
			log_warn("journal %s: cannot cut a failed write",
				 j->dir);
			j->failed = true;
			j->fail_reason = "a failed write could not be undone";
			pthread_cond_broadcast(&j->sync_cond);
		}
		pthread_mutex_unlock(&j->lock);
		return -1;
	}
	j->seg_size += JOURNAL_RECORD_OVERHEAD + (uint64_t)len;
	j->newest_of_type[type] = lsn;
	j->next_lsn++;
	j->stats.appends++;
	j->stats.bytes += JOURNAL_RECORD_OVERHEAD + (uint64_t)len;
	/* A running sync kicks the syncer again when it ends. */
	if (!j->syncing)
		pthread_cond_signal(&j->kick_cond);
	pthread_mutex_unlock(&j->lock);
	*lsn_r = lsn;
	return 0;
}

/* One fdatasync for every record written so far.  Called with the lock
 * held and no sync running; drops the lock during the sync and returns
 * with it held again. */
static void lead_sync_locked(struct journal *j)
{
	uint64_t target = j->next_lsn - 1;
	int fd = j->fd, r;

	j->syncing = true;
	pthread_mutex_unlock(&j->lock);
	r = sync_data(fd);
	if (r < 0)
		log_warn("journal %s: fdatasync", j->dir);
	pthread_mutex_lock(&j->lock);
	j->syncing = false;
	j->stats.syncs++;
	if (r == 0) {
		durable_advance_locked(j, target);
	} else {
		/* After a failed fsync the page cache may have dropped the
		 * data: only recovery can tell. */
		j->failed = true;
		j->fail_reason = "fdatasync failed";
	}
	pthread_cond_broadcast(&j->sync_cond);
	/* Records written during this sync: start the next one now. */
	if (!j->failed && j->durable_lsn + 1 < j->next_lsn)
		pthread_cond_signal(&j->kick_cond);
}

/* The syncer: leads a sync whenever records wait for one and no other
 * thread is syncing. */
static void *syncer_main(void *arg)
{
	struct journal *j = arg;

	log_thread_name("journal-sync");
	pthread_mutex_lock(&j->lock);
	while (!j->syncer_quit) {
		if (j->failed || j->syncing ||
		    j->durable_lsn + 1 >= j->next_lsn) {
			pthread_cond_wait(&j->kick_cond, &j->lock);
			continue;
		}
		lead_sync_locked(j);
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

/* Starts the syncer with a small explicit stack and every signal blocked
 * (signals are for the main thread). */
static int syncer_start(struct journal *j)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int r;

	if (pthread_attr_init(&attr) != 0)
		return -1;
	pthread_attr_setstacksize(&attr, JOURNAL_SYNCER_STACK);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&j->syncer, &attr, syncer_main, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r != 0)
		return -1;
	j->syncer_started = true;
	return 0;
}

int journal_wait_durable(struct journal *j, uint64_t lsn, const char **error_r)
{
	pthread_mutex_lock(&j->lock);
	if (lsn >= j->next_lsn) {
		pthread_mutex_unlock(&j->lock);
		*error_r = journal_err(false, "LSN %" PRIu64 " not written",
				       lsn);
		return -1;
	}
	while (j->durable_lsn < lsn) {
		if (j->failed) {
			journal_failed_locked(j, error_r);
			pthread_mutex_unlock(&j->lock);
			return -1;
		}
		if (j->syncing) {
			pthread_cond_wait(&j->sync_cond, &j->lock);
			continue;
		}
		lead_sync_locked(j);
	}
	pthread_mutex_unlock(&j->lock);
	return 0;
}

int journal_append(struct journal *j, uint8_t type,
		   const struct journal_part *parts, unsigned int nparts,
		   uint64_t *lsn_r, const char **error_r)
{
	uint64_t lsn;

	if (journal_append_async(j, type, parts, nparts, &lsn, error_r) < 0)
		return -1;
	if (journal_wait_durable(j, lsn, error_r) < 0)
		return -1;
	*lsn_r = lsn;
	return 0;
}

uint64_t journal_durable_lsn(struct journal *j)
{
	uint64_t v;

	pthread_mutex_lock(&j->lock);
	v = j->durable_lsn;
	pthread_mutex_unlock(&j->lock);
	return v;
}

uint64_t journal_next_lsn(struct journal *j)
{
	uint64_t v;

	pthread_mutex_lock(&j->lock);
	v = j->next_lsn;
	pthread_mutex_unlock(&j->lock);
	return v;
}

uint64_t journal_first_lsn(struct journal *j)
{
	uint64_t v;

	pthread_mutex_lock(&j->lock);
	v = j->segs[0];
	pthread_mutex_unlock(&j->lock);
	return v;
}

/* The CLOCK_MONOTONIC time (new_cond's clock) timeout_ms from now. */
static void deadline_in(struct timespec *deadline, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, deadline);
	deadline->tv_sec += timeout_ms / 1000;
	deadline->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline->tv_nsec >= 1000000000L) {
		deadline->tv_sec++;
		deadline->tv_nsec -= 1000000000L;
	}
}

int journal_wait_new(struct journal *j, uint64_t after_lsn,
		     const atomic_bool *stop, int timeout_ms,
		     uint64_t *durable_r)
{
	struct timespec deadline;
	int ret;

	if (timeout_ms >= 0)
		deadline_in(&deadline, timeout_ms);
	pthread_mutex_lock(&j->lock);
	while (j->durable_lsn <= after_lsn && !j->shut_down &&
	       (stop == NULL || !atomic_load(stop))) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&j->new_cond, &j->lock);
		} else if (pthread_cond_timedwait(&j->new_cond, &j->lock,
						  &deadline) == ETIMEDOUT) {
			break;
		}
	}
	ret = j->durable_lsn > after_lsn ? 1 : 0;
	if (durable_r != NULL)
		*durable_r = j->durable_lsn;
	pthread_mutex_unlock(&j->lock);
	return ret;
}

int journal_wait_type(struct journal *j, uint8_t type, uint64_t after_lsn,
		      const atomic_bool *stop, int timeout_ms)
{
	struct timespec deadline;
	int ret;

	if (timeout_ms >= 0)
		deadline_in(&deadline, timeout_ms);
	pthread_mutex_lock(&j->lock);
	j->type_waiters[type]++;
	while (!(j->durable_lsn > after_lsn &&
		 j->newest_of_type[type] > after_lsn) &&
	       !j->shut_down && (stop == NULL || !atomic_load(stop))) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&j->type_cond, &j->lock);
		} else if (pthread_cond_timedwait(&j->type_cond, &j->lock,
						  &deadline) == ETIMEDOUT) {
			break;
		}
	}
	j->type_waiters[type]--;
	ret = j->durable_lsn > after_lsn ? 1 : 0;
	pthread_mutex_unlock(&j->lock);
	return ret;
}

void journal_wake(struct journal *j)
{
	pthread_mutex_lock(&j->lock);
	pthread_cond_broadcast(&j->type_cond);
	pthread_cond_broadcast(&j->new_cond);
	pthread_mutex_unlock(&j->lock);
}

void journal_shutdown(struct journal *j)
{
	pthread_mutex_lock(&j->lock);
	j->shut_down = true;
	pthread_cond_broadcast(&j->type_cond);
	pthread_cond_broadcast(&j->new_cond);
	pthread_mutex_unlock(&j->lock);
}

int journal_trim(struct journal *j, uint64_t upto_lsn, const char **error_r)
{
	int removed = 0, ret = 0;

	/* Unlinking under the lock keeps the list and the directory in
	 * step; it is a metadata operation and trims are rare. */
	pthread_mutex_lock(&j->lock);
	while (j->nsegs > 1 && j->segs[1] <= upto_lsn && removed < INT_MAX) {
		char name[JOURNAL_NAME_SIZE];

		segment_name(name, j->segs[0]);
		if (unlinkat(j->dir_fd, name, 0) < 0 && errno != ENOENT) {
			*error_r = journal_err(true, "remove %s/%s", j->dir,
					       name);
			ret = -1;
			break;
		}
		memmove(j->segs, j->segs + 1,
			(j->nsegs - 1) * sizeof(j->segs[0]));
		j->nsegs--;
		removed++;
	}
	pthread_mutex_unlock(&j->lock);
	/* Not needed for correctness (a segment that comes back after a
	 * crash is only extra history), but it keeps disk usage honest. */
	if (removed > 0 && sync_full(j->dir_fd) < 0)
		log_warn("journal %s: sync after trim", j->dir);
	return ret < 0 ? -1 : removed;
}

void journal_get_stats(struct journal *j, struct journal_stats *stats_r)
{
	pthread_mutex_lock(&j->lock);
	*stats_r = j->stats;
	pthread_mutex_unlock(&j->lock);
}

struct journal_reader *journal_reader_new(struct journal *j, uint64_t from_lsn,
					  const char **error_r)
{
	struct journal_reader *r;
	uint64_t first;

	first = journal_first_lsn(j);
	if (from_lsn < first) {
		*error_r = journal_err(false, "journal %s: LSN %" PRIu64
				       " was trimmed (oldest %" PRIu64 ")",
				       j->dir, from_lsn, first);
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		*error_r = journal_err(true, "journal reader");
		return NULL;
	}
	r->j = j;
	r->next_lsn = from_lsn;
	r->fd = -1;
	return r;
}

void journal_reader_free(struct journal_reader **rp)
{
	struct journal_reader *r = *rp;

	if (r == NULL)
		return;
	*rp = NULL;
	if (r->fd >= 0)
		close(r->fd);
	free(r->buf);
	free(r->win.data);
	free(r);
}

uint64_t journal_reader_position(const struct journal_reader *r)
{
	return r->next_lsn;
}

static int reader_fail(struct journal_reader *r)
{
	r->broken = true;
	if (r->fd >= 0) {
		close(r->fd);
		r->fd = -1;
	}
	return -1;
}

/* Opens the segment holding r->next_lsn and walks its headers up to that
 * record.  Every record it passes is durable, so all of them are whole.
 * The caller has emptied the window since reading the durable LSN. */
static int reader_position(struct journal_reader *r, const char **error_r)
{
	struct journal *j = r->j;
	char name[JOURNAL_NAME_SIZE];
	uint64_t lsn;

	pthread_mutex_lock(&j->lock);
	if (r->next_lsn < j->segs[0]) {
		pthread_mutex_unlock(&j->lock);
		*error_r = journal_err(false, "journal %s: LSN %" PRIu64
				       " was trimmed", j->dir, r->next_lsn);
		return -1;
	}
	r->seg_first = j->segs[segs_find_locked(j, r->next_lsn)];
	pthread_mutex_unlock(&j->lock);

	segment_name(name, r->seg_first);
	r->fd = openat(j->dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (r->fd < 0) {
		if (errno == ENOENT)
			*error_r = journal_err(false, "journal %s: LSN %"
					       PRIu64 " was trimmed", j->dir,
					       r->next_lsn);
		else
			*error_r = journal_err(true, "open %s/%s", j->dir,
					       name);
		return -1;
	}
	r->off = 0;
	for (lsn = r->seg_first; lsn < r->next_lsn; lsn++) {
		const unsigned char *hdr;
		struct journal_header h;
		const char *bad;
		ssize_t n = window_get(r->fd, &r->win, r->off,
				       JOURNAL_HEADER_SIZE, &hdr);

		if (n < 0) {
			*error_r = journal_err(true, "read %s/%s", j->dir,
					       name);
			return -1;
		}
		bad = (size_t)n != JOURNAL_HEADER_SIZE ? "segment ends early" :
		      header_check(hdr, lsn, &h);
		if (bad != NULL) {
			*error_r = journal_err(false, "journal %s: %s at "
					       "offset %" PRIu64 ": %s",
					       j->dir, name, r->off, bad);
			return -1;
		}
		r->off += JOURNAL_RECORD_OVERHEAD + (uint64_t)h.len;
	}
	return 0;
}

int journal_reader_next(struct journal_reader *r, struct journal_record *rec_r,
			const char **error_r)
{
	struct journal *j = r->j;
	const unsigned char *hdr, *p = NULL, *payload, *tr;
	unsigned char hdr_copy[JOURNAL_HEADER_SIZE];
	unsigned char tr_copy[JOURNAL_TRAILER_SIZE];
	struct journal_header h;
	const char *bad;
	uint64_t durable;
	size_t total;
	ssize_t n;

	if (r->broken) {
		*error_r = journal_err(false, "journal reader failed before");
		return -1;
	}
	durable = journal_durable_lsn(j);
	if (r->next_lsn > durable)
		return 0;
	if (r->next_lsn > r->win_durable) {
		/* Every fill from now on happens after durable was read. */
		window_reset(&r->win);
		r->win_durable = durable;
	}
	for (int tries = 0;; tries++) {
		if (r->fd < 0) {
			window_reset(&r->win);
			r->win_durable = durable;
			if (reader_position(r, error_r) < 0)
				return reader_fail(r);
		}
		n = window_get(r->fd, &r->win, r->off, JOURNAL_HEADER_SIZE,
			       &hdr);
		if (n < 0) {
			*error_r = journal_err(true, "read journal %s",
					       j->dir);
			return reader_fail(r);
		}
		if (n != 0 || tries > 0)
			break;
		/* The end of a whole segment: the record is durable, so
		 * it is in the next one, which was created before it. */
		close(r->fd);
		r->fd = -1;
	}
	bad = (size_t)n != JOURNAL_HEADER_SIZE ? "segment ends early" :
	      header_check(hdr, r->next_lsn, &h);
	if (bad != NULL) {
		*error_r = journal_err(false, "journal %s: segment %" PRIu64
				       " offset %" PRIu64 ": %s", j->dir,
				       r->seg_first, r->off, bad);
		return reader_fail(r);
	}
	/* header_check bounds h.len by JOURNAL_RECORD_MAX: no overflow. */
	total = JOURNAL_RECORD_OVERHEAD + (size_t)h.len;
	if (total <= JOURNAL_WINDOW_MAX) {
		/* The whole frame from the window, payload borrowed from it
		 * until the next call. */
		n = window_get(r->fd, &r->win, r->off, total, &p);
		if (n >= 0 && (size_t)n != total)
			n = 0;
		else if (n >= 0)
			n = JOURNAL_TRAILER_SIZE;
		hdr = p;
		payload = p + JOURNAL_HEADER_SIZE;
		tr = p + JOURNAL_HEADER_SIZE + h.len;
	} else {
		memcpy(hdr_copy, hdr, sizeof(hdr_copy));
		hdr = hdr_copy;
		if (h.len > r->buf_cap) {
			unsigned char *nb = realloc(r->buf, h.len);

			if (nb == NULL) {
				*error_r = journal_err(true, "journal reader");
				return reader_fail(r);
			}
			r->buf = nb;
			r->buf_cap = h.len;
		}
		n = read_at(r->fd, r->buf, h.len,
			    r->off + JOURNAL_HEADER_SIZE);
		if (n >= 0 && (size_t)n == h.len)
			n = read_at(r->fd, tr_copy, sizeof(tr_copy),
				    r->off + JOURNAL_HEADER_SIZE + h.len);
		else if (n >= 0)
			n = 0;
		payload = r->buf;
		tr = tr_copy;
	}
	if (n < 0 || (size_t)n != JOURNAL_TRAILER_SIZE) {
		*error_r = journal_err(n < 0, "journal %s: segment %" PRIu64
				       " offset %" PRIu64 ": %s", j->dir,
				       r->seg_first, r->off,
				       n < 0 ? "read" : "record ends early");
		return reader_fail(r);
	}
	if (buf_read_be32(tr) != crc32c_update(crc32c(payload, h.len), hdr,
					       JOURNAL_HEADER_SIZE)) {
		*error_r = journal_err(false, "journal %s: segment %" PRIu64
				       " offset %" PRIu64 ": record checksum "
				       "mismatch", j->dir, r->seg_first,
				       r->off);
		return reader_fail(r);
	}
	rec_r->lsn = h.lsn;
	rec_r->type = h.type;
	rec_r->payload = h.len > 0 ? payload : NULL;
	rec_r->len = h.len;
	r->off += JOURNAL_RECORD_OVERHEAD + (uint64_t)h.len;
	r->next_lsn++;
	return 1;
}

int journal_read_from(struct journal *j, uint64_t from_lsn,
		      journal_record_cb *cb, void *ctx, const char **error_r)
{
	struct journal_reader *r;
	struct journal_record rec;
	uint64_t end = journal_durable_lsn(j);
	int ret = 0;

	r = journal_reader_new(j, from_lsn, error_r);
	if (r == NULL)
		return -1;
	while (journal_reader_position(r) <= end) {
		int n = journal_reader_next(r, &rec, error_r);

		if (n <= 0) {
			ret = n;
			break;
		}
		if (cb(&rec, ctx, error_r) < 0) {
			ret = -1;
			break;
		}
	}
	journal_reader_free(&r);
	return ret;
}
