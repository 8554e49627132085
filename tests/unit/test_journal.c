/*
 * test_journal.c - the journal against its contract: records survive a
 * reopen byte for byte at every size; a torn or corrupt last record is
 * dropped at every byte offset and appending continues after it; corruption
 * in an older segment is refused; rotation and trim; group commit really
 * shares fsyncs across threads; durable waits; a reader running alongside
 * the writer; a write failure (RLIMIT_FSIZE) leaves the journal consistent.
 */
#include "autoconfig.h"

#include "journal.h"
#include "cu_run.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG1 "00000000000000000001.log"

/* What a read-back produced: payloads concatenated with their bounds. */
struct collected {
	size_t count;
	uint64_t lsn[4096];
	uint8_t type[4096];
	size_t off[4096];
	size_t len[4096];
	unsigned char *data;
	size_t data_len;
};

static int collect_cb(const struct journal_record *rec, void *ctx,
		      const char **error_r)
{
	struct collected *c = ctx;
	unsigned char *n;

	if (c->count == 4096) {
		*error_r = "too many records";
		return -1;
	}
	n = realloc(c->data, c->data_len + rec->len + 1);
	if (n == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	c->data = n;
	if (rec->len > 0)
		memcpy(c->data + c->data_len, rec->payload, rec->len);
	c->lsn[c->count] = rec->lsn;
	c->type[c->count] = rec->type;
	c->off[c->count] = c->data_len;
	c->len[c->count] = rec->len;
	c->data_len += rec->len;
	c->count++;
	return 0;
}

static struct collected *collect(struct journal *j, uint64_t from)
{
	struct collected *c = calloc(1, sizeof(*c));
	const char *error = NULL;

	CU_ASSERT_FATAL(c != NULL);
	if (journal_read_from(j, from, collect_cb, c, &error) < 0) {
		fprintf(stderr, "read_from: %s\n", error);
		CU_FAIL("journal_read_from failed");
	}
	return c;
}

static void collected_free(struct collected *c)
{
	free(c->data);
	free(c);
}

/* A deterministic payload for record number i of length len. */
static void fill_payload(unsigned char *p, size_t len, uint64_t i)
{
	for (size_t k = 0; k < len; k++)
		p[k] = (unsigned char)(i * 31 + k * 7 + (k >> 8));
}

static bool payload_ok(const unsigned char *p, size_t len, uint64_t i)
{
	for (size_t k = 0; k < len; k++)
		if (p[k] != (unsigned char)(i * 31 + k * 7 + (k >> 8)))
			return false;
	return true;
}

static struct journal *open_ok(const char *dir, uint64_t seg_size)
{
	struct journal_options opts = { .segment_size = seg_size };
	struct journal *j = NULL;
	const char *error = NULL;

	if (journal_open(dir, &opts, &j, &error) < 0) {
		fprintf(stderr, "journal_open: %s\n", error);
		CU_FAIL_FATAL("journal_open failed");
	}
	return j;
}

static uint64_t append_one(struct journal *j, uint8_t type, const void *data,
			   size_t len)
{
	struct journal_part part = { data, len };
	const char *error = NULL;
	uint64_t lsn = 0;

	if (journal_append(j, type, &part, 1, &lsn, &error) < 0) {
		fprintf(stderr, "journal_append: %s\n", error);
		CU_FAIL("journal_append failed");
	}
	return lsn;
}

static char *path_in(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *p = malloc(len);

	CU_ASSERT_FATAL(p != NULL);
	snprintf(p, len, "%s/%s", dir, name);
	return p;
}

static off_t file_size(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -1;
	return st.st_size;
}

static unsigned char *slurp(const char *path, size_t *len_r)
{
	off_t size = file_size(path);
	unsigned char *b;
	int fd;

	CU_ASSERT_FATAL(size >= 0);
	b = malloc((size_t)size + 1);
	fd = open(path, O_RDONLY);
	CU_ASSERT_FATAL(b != NULL && fd >= 0);
	CU_ASSERT_FATAL(read(fd, b, (size_t)size) == (ssize_t)size);
	close(fd);
	*len_r = (size_t)size;
	return b;
}

static void spit(const char *path, const unsigned char *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(write(fd, b, len) == (ssize_t)len);
	close(fd);
}

static size_t count_segments(const char *dir)
{
	char cmd[512];
	size_t n = 0;
	FILE *f;
	char line[256];

	snprintf(cmd, sizeof(cmd), "ls '%s'", dir);
	f = popen(cmd, "r");
	CU_ASSERT_FATAL(f != NULL);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, ".log") != NULL)
			n++;
	pclose(f);
	return n;
}

static void test_append_reopen_read(void)
{
	char *dir = cu_tempdir("journal");
	struct journal *j = open_ok(dir, 0);
	struct collected *c;
	struct journal_stats st;
	const char *error = NULL;
	struct journal *j2 = NULL;

	CU_ASSERT_EQUAL(journal_next_lsn(j), 1);
	CU_ASSERT_EQUAL(journal_durable_lsn(j), 0);
	CU_ASSERT_EQUAL(journal_first_lsn(j), 1);
	CU_ASSERT_EQUAL(append_one(j, 1, "create INBOX", 12), 1);
	CU_ASSERT_EQUAL(append_one(j, 2, "append", 6), 2);
	CU_ASSERT_EQUAL(append_one(j, 255, "", 0), 3);
	CU_ASSERT_EQUAL(journal_durable_lsn(j), 3);
	/* A second opener of the same directory is refused. */
	CU_ASSERT_EQUAL(journal_open(dir, NULL, &j2, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "in use"));
	journal_free(&j);
	CU_ASSERT_PTR_NULL(j);

	j = open_ok(dir, 0);
	CU_ASSERT_EQUAL(journal_next_lsn(j), 4);
	CU_ASSERT_EQUAL(journal_durable_lsn(j), 3);
	c = collect(j, 1);
	CU_ASSERT_EQUAL_FATAL(c->count, 3);
	CU_ASSERT_EQUAL(c->lsn[0], 1);
	CU_ASSERT_EQUAL(c->type[0], 1);
	CU_ASSERT_EQUAL(c->len[0], 12);
	CU_ASSERT_EQUAL(memcmp(c->data + c->off[0], "create INBOX", 12), 0);
	CU_ASSERT_EQUAL(c->type[1], 2);
	CU_ASSERT_EQUAL(memcmp(c->data + c->off[1], "append", 6), 0);
	CU_ASSERT_EQUAL(c->lsn[2], 3);
	CU_ASSERT_EQUAL(c->type[2], 255);
	CU_ASSERT_EQUAL(c->len[2], 0);
	collected_free(c);
	c = collect(j, 2);
	CU_ASSERT_EQUAL(c->count, 2);
	CU_ASSERT_EQUAL(c->lsn[0], 2);
	collected_free(c);
	c = collect(j, 4);	/* the end: nothing, no error */
	CU_ASSERT_EQUAL(c->count, 0);
	collected_free(c);
	CU_ASSERT_EQUAL(append_one(j, 3, "after", 5), 4);
	journal_get_stats(j, &st);
	CU_ASSERT_EQUAL(st.appends, 1);
	CU_ASSERT_EQUAL(st.bytes, 5 + JOURNAL_RECORD_OVERHEAD);
	journal_free(&j);
	/* The frame is exactly as documented. */
	{
		char *seg = path_in(dir, SEG1);

		CU_ASSERT_EQUAL(file_size(seg), 12 + 6 + 0 + 5 +
				4 * JOURNAL_RECORD_OVERHEAD);
		free(seg);
	}
	cu_rmtree(dir);
	free(dir);
}

static void test_record_sizes_and_parts(void)
{
	static const size_t sizes[] = { 0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63,
					64, 65, 255, 256, 4095, 4096, 4097,
					65535, 65536, 65537, 200000,
					1048576 + 3 };
	const size_t n = sizeof(sizes) / sizeof(sizes[0]);
	char *dir = cu_tempdir("journal");
	struct journal *j = open_ok(dir, 0);
	unsigned char *p = malloc(1048576 + 3);
	struct collected *c;
	const char *error = NULL;
	uint64_t lsn;

	CU_ASSERT_FATAL(p != NULL);
	for (size_t i = 0; i < n; i++) {
		fill_payload(p, sizes[i], i + 1);
		CU_ASSERT_EQUAL(append_one(j, (uint8_t)i, p, sizes[i]), i + 1);
	}
	/* A payload in parts is their concatenation; empty parts are fine. */
	{
		struct journal_part parts[4];

		fill_payload(p, 1000, n + 1);
		parts[0] = (struct journal_part){ p, 10 };
		parts[1] = (struct journal_part){ NULL, 0 };
		parts[2] = (struct journal_part){ p + 10, 500 };
		parts[3] = (struct journal_part){ p + 510, 490 };
		CU_ASSERT_EQUAL(journal_append(j, 9, parts, 4, &lsn, &error),
				0);
		CU_ASSERT_EQUAL(lsn, n + 1);
	}
	/* Refused up front, consuming no LSN. */
	{
		struct journal_part many[JOURNAL_PARTS_MAX + 1];
		struct journal_part huge[2] = {
			{ p, JOURNAL_RECORD_MAX }, { p, 1 }
		};

		memset(many, 0, sizeof(many));
		CU_ASSERT_EQUAL(journal_append(j, 1, many,
					       JOURNAL_PARTS_MAX + 1, &lsn,
					       &error), -1);
		CU_ASSERT_EQUAL(journal_append(j, 1, huge, 2, &lsn, &error),
				-1);
		CU_ASSERT_PTR_NOT_NULL(strstr(error, "too large"));
		CU_ASSERT_EQUAL(journal_next_lsn(j), n + 2);
	}
	journal_free(&j);

	j = open_ok(dir, 0);
	c = collect(j, 1);
	CU_ASSERT_EQUAL_FATAL(c->count, n + 1);
	for (size_t i = 0; i < n; i++) {
		CU_ASSERT_EQUAL(c->lsn[i], i + 1);
		CU_ASSERT_EQUAL(c->type[i], (uint8_t)i);
		CU_ASSERT_EQUAL(c->len[i], sizes[i]);
		CU_ASSERT_TRUE(payload_ok(c->data + c->off[i], sizes[i],
					  i + 1));
	}
	CU_ASSERT_EQUAL(c->len[n], 1000);
	CU_ASSERT_TRUE(payload_ok(c->data + c->off[n], 1000, n + 1));
	collected_free(c);
	journal_free(&j);
	free(p);
	cu_rmtree(dir);
	free(dir);
}

/* Writes records 1..nrec (record i has i*5 bytes, the last one last_len)
 * and returns the bytes of the newest segment and where its last record
 * starts. */
static void build_journal(const char *dir, uint64_t seg_size, int nrec,
			  size_t last_len, char **seg_r, size_t *last_start_r)
{
	struct journal *j = open_ok(dir, seg_size);
	unsigned char p[512];
	char name[64];
	uint64_t lsn = 0;

	for (int i = 1; i <= nrec; i++) {
		size_t len = i == nrec ? last_len : (size_t)i * 5;

		fill_payload(p, len, (uint64_t)i);
		lsn = append_one(j, (uint8_t)i, p, len);
	}
	CU_ASSERT_EQUAL(lsn, (uint64_t)nrec);
	{
		struct journal_reader *r;
		struct journal_record rec;
		const char *error = NULL;

		/* The last segment is named by its first LSN; find it by
		 * asking where the last record's segment starts. */
		snprintf(name, sizeof(name), "%s", SEG1);
		for (uint64_t first = (uint64_t)nrec; first >= 1; first--) {
			char cand[64];
			char *p2;

			snprintf(cand, sizeof(cand), "%020" PRIu64 ".log",
				 first);
			p2 = path_in(dir, cand);
			if (file_size(p2) >= 0) {
				snprintf(name, sizeof(name), "%s", cand);
				free(p2);
				break;
			}
			free(p2);
		}
		r = journal_reader_new(j, (uint64_t)nrec, &error);
		CU_ASSERT_FATAL(r != NULL);
		CU_ASSERT_EQUAL(journal_reader_next(r, &rec, &error), 1);
		journal_reader_free(&r);
	}
	journal_free(&j);
	*seg_r = path_in(dir, name);
	*last_start_r = (size_t)file_size(*seg_r) - last_len -
			JOURNAL_RECORD_OVERHEAD;
}

/* After damage to the last record: recovery yields exactly records
 * 1..nrec-1 and appending continues with LSN nrec. */
static bool recovers_to_previous(const char *dir, int nrec, size_t seg_len)
{
	struct journal *j = open_ok(dir, 0);
	struct collected *c = collect(j, 1);
	bool ok = c->count == (size_t)nrec - 1 &&
		  journal_next_lsn(j) == (uint64_t)nrec &&
		  journal_durable_lsn(j) == (uint64_t)nrec - 1;

	for (size_t i = 0; ok && i < c->count; i++)
		ok = c->lsn[i] == i + 1 &&
		     c->len[i] == (i + 1) * 5 &&
		     payload_ok(c->data + c->off[i], c->len[i], i + 1);
	collected_free(c);
	(void)seg_len;
	ok = ok && append_one(j, 77, "new", 3) == (uint64_t)nrec;
	journal_free(&j);
	j = open_ok(dir, 0);
	c = collect(j, 1);
	ok = ok && c->count == (size_t)nrec && c->type[nrec - 1] == 77 &&
	     c->len[nrec - 1] == 3 &&
	     memcmp(c->data + c->off[nrec - 1], "new", 3) == 0;
	collected_free(c);
	journal_free(&j);
	return ok;
}

static void torn_tail_case(uint64_t seg_size, int nrec, size_t last_len)
{
	char *dir = cu_tempdir("journal");
	char *seg;
	size_t start, len, bad = 0;
	unsigned char *orig;

	build_journal(dir, seg_size, nrec, last_len, &seg, &start);
	orig = slurp(seg, &len);
	CU_ASSERT_EQUAL(len, start + last_len + JOURNAL_RECORD_OVERHEAD);
	/* Every cut inside the last record, from losing all of it to
	 * losing only its final CRC byte. */
	for (size_t cut = start; cut < len; cut++) {
		spit(seg, orig, cut);
		if (!recovers_to_previous(dir, nrec, cut))
			bad++;
		CU_ASSERT_EQUAL(file_size(seg),
				(off_t)(start + 3 + JOURNAL_RECORD_OVERHEAD));
	}
	CU_ASSERT_EQUAL(bad, 0);
	/* Every single corrupted byte of the last record (header, payload
	 * or CRC) makes it dropped the same way. */
	bad = 0;
	for (size_t at = start; at < len; at++) {
		orig[at] ^= 0x40;
		spit(seg, orig, len);
		orig[at] ^= 0x40;
		if (!recovers_to_previous(dir, nrec, len))
			bad++;
	}
	CU_ASSERT_EQUAL(bad, 0);
	/* Zeroed space after the last good record (a crash after the size
	 * grew but before data hit the disk) is dropped too. */
	{
		unsigned char *z = calloc(1, len + 100);

		CU_ASSERT_FATAL(z != NULL);
		memcpy(z, orig, start);
		spit(seg, z, start + 100);
		CU_ASSERT_TRUE(recovers_to_previous(dir, nrec, start + 100));
		free(z);
	}
	free(orig);
	free(seg);
	cu_rmtree(dir);
	free(dir);
}

static void test_torn_tail_every_offset(void)
{
	/* The last record in the middle of one segment, with a payload
	 * longer than one CRC stride... */
	torn_tail_case(0, 6, 37);
	/* ...a 0-byte last record... */
	torn_tail_case(0, 4, 0);
	/* ...and a last record that is alone in a fresh segment (the
	 * cut at its start leaves that segment empty). */
	torn_tail_case(64, 6, 41);
}

static void test_corrupt_older_segment(void)
{
	char *dir = cu_tempdir("journal");
	struct journal *j = open_ok(dir, 100);
	struct journal *j2 = NULL;
	const char *error = NULL;
	unsigned char p[40];
	char *seg1 = path_in(dir, SEG1);
	unsigned char *orig;
	size_t len;

	for (uint64_t i = 1; i <= 20; i++) {
		fill_payload(p, sizeof(p), i);
		append_one(j, 1, p, sizeof(p));
	}
	journal_free(&j);
	CU_ASSERT_TRUE(count_segments(dir) > 3);
	orig = slurp(seg1, &len);

	/* A flipped payload byte in the first (older) segment. */
	orig[JOURNAL_RECORD_OVERHEAD + 5] ^= 1;
	spit(seg1, orig, len);
	orig[JOURNAL_RECORD_OVERHEAD + 5] ^= 1;
	CU_ASSERT_EQUAL(journal_open(dir, NULL, &j2, &error), -1);
	CU_ASSERT_PTR_NULL(j2);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "corrupt"));
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "checksum"));

	/* A torn tail in an older segment is corruption, not a crash. */
	spit(seg1, orig, len - 1);
	CU_ASSERT_EQUAL(journal_open(dir, NULL, &j2, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "corrupt"));

	/* A missing segment in the middle. */
	spit(seg1, orig, len);
	{
		char *seg3 = path_in(dir, "00000000000000000005.log");

		CU_ASSERT_EQUAL_FATAL(file_size(seg3) > 0, 1);
		CU_ASSERT_EQUAL(unlink(seg3), 0);
		CU_ASSERT_EQUAL(journal_open(dir, NULL, &j2, &error), -1);
		CU_ASSERT_PTR_NOT_NULL(strstr(error, "missing"));
		free(seg3);
	}
	/* A FIFO under a segment's name is refused without hanging. */
	{
		char *fifo = path_in(dir, "00000000000000000099.log");

		CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0600), 0);
		j2 = NULL;
		CU_ASSERT_EQUAL(journal_open(dir, NULL, &j2, &error), -1);
		CU_ASSERT_PTR_NULL(j2);
		free(fifo);
	}
	free(orig);
	free(seg1);
	cu_rmtree(dir);
	free(dir);
}

static void test_rotation_and_trim(void)
{
	char *dir = cu_tempdir("journal");
	struct journal *j = open_ok(dir, 200);
	struct journal_stats st;
	struct journal_reader *r;
	struct journal_record rec;
	struct collected *c;
	const char *error = NULL;
	unsigned char p[50];
	size_t nseg;
	char *stray;
	int n;

	for (uint64_t i = 1; i <= 60; i++) {
		fill_payload(p, sizeof(p), i);
		CU_ASSERT_EQUAL(append_one(j, 1, p, sizeof(p)), i);
	}
	/* 74-byte frames, rotation once 200 bytes are reached: 3 per
	 * segment. */
	nseg = count_segments(dir);
	CU_ASSERT_EQUAL(nseg, 20);
	journal_get_stats(j, &st);
	CU_ASSERT_EQUAL(st.rotations, 19);
	CU_ASSERT_TRUE(st.dir_syncs >= 19);

	CU_ASSERT_EQUAL(journal_trim(j, 1, &error), 0);
	CU_ASSERT_EQUAL(journal_trim(j, 3, &error), 0);
	/* Segment [1..3] goes once 4 is the bound: all of it is below. */
	CU_ASSERT_EQUAL(journal_trim(j, 4, &error), 1);
	CU_ASSERT_EQUAL(journal_first_lsn(j), 4);
	CU_ASSERT_EQUAL(journal_trim(j, 21, &error), 5);
	CU_ASSERT_EQUAL(journal_first_lsn(j), 19);
	CU_ASSERT_EQUAL(count_segments(dir), 14);
	/* Below the first LSN is gone; from it on everything reads. */
	CU_ASSERT_PTR_NULL(journal_reader_new(j, 18, &error));
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "trimmed"));
	r = journal_reader_new(j, 20, &error);
	CU_ASSERT_FATAL(r != NULL);
	for (uint64_t i = 20; i <= 60; i++) {
		n = journal_reader_next(r, &rec, &error);
		CU_ASSERT_EQUAL(n, 1);
		CU_ASSERT_EQUAL(rec.lsn, i);
		CU_ASSERT_TRUE(n == 1 && payload_ok(rec.payload, rec.len, i));
	}
	CU_ASSERT_EQUAL(journal_reader_next(r, &rec, &error), 0);
	CU_ASSERT_EQUAL(journal_reader_position(r), 61);
	journal_reader_free(&r);
	journal_free(&j);

	/* A stray file is ignored; the trimmed journal reopens. */
	stray = path_in(dir, "notes.txt");
	spit(stray, (const unsigned char *)"x", 1);
	j = open_ok(dir, 200);
	CU_ASSERT_EQUAL(journal_first_lsn(j), 19);
	CU_ASSERT_EQUAL(journal_next_lsn(j), 61);
	c = collect(j, 19);
	CU_ASSERT_EQUAL(c->count, 42);
	collected_free(c);
	/* Trimming everything keeps the newest segment and the LSNs. */
	CU_ASSERT_EQUAL(journal_trim(j, UINT64_MAX, &error), 13);
	CU_ASSERT_EQUAL(count_segments(dir), 1);
	CU_ASSERT_EQUAL(journal_first_lsn(j), 58);
	CU_ASSERT_EQUAL(append_one(j, 1, "x", 1), 61);
	journal_free(&j);
	j = open_ok(dir, 200);
	CU_ASSERT_EQUAL(journal_next_lsn(j), 62);
	c = collect(j, 58);
	CU_ASSERT_EQUAL(c->count, 4);
	collected_free(c);
	journal_free(&j);
	CU_ASSERT_EQUAL(file_size(stray), 1);
	free(stray);
	/* A missing directory is created (trailing slash and all). */
	{
		char *sub = path_in(dir, "sub/");
		struct stat sst;

		j = open_ok(sub, 0);
		CU_ASSERT_EQUAL(append_one(j, 1, "x", 1), 1);
		journal_free(&j);
		CU_ASSERT_EQUAL(stat(sub, &sst), 0);
		CU_ASSERT_TRUE(S_ISDIR(sst.st_mode));
		CU_ASSERT_EQUAL(sst.st_mode & 0777, 0700);
		free(sub);
	}
	cu_rmtree(dir);
	free(dir);
}

static void test_reader_errors_and_trim_under_reader(void)
{
	char *dir = cu_tempdir("journal");
	struct journal *j = open_ok(dir, 200);
	struct journal_reader *r, *lazy;
	struct journal_record rec;
	const char *error = NULL;
	unsigned char p[50];
	char *seg1 = path_in(dir, SEG1);
	int fd;

	for (uint64_t i = 1; i <= 9; i++) {
		fill_payload(p, sizeof(p), i);
		append_one(j, 1, p, sizeof(p));
	}
	/* Segments [1..3] [4..6] [7..9].  One reader is inside the first
	 * segment when it is trimmed: it finishes it from its open file
	 * and moves on.  One has not opened anything yet: it is told. */
	r = journal_reader_new(j, 1, &error);
	lazy = journal_reader_new(j, 2, &error);
	CU_ASSERT_FATAL(r != NULL && lazy != NULL);
	CU_ASSERT_EQUAL(journal_reader_next(r, &rec, &error), 1);
	CU_ASSERT_EQUAL(journal_trim(j, 4, &error), 1);
	for (uint64_t i = 2; i <= 9; i++) {
		CU_ASSERT_EQUAL(journal_reader_next(r, &rec, &error), 1);
		CU_ASSERT_EQUAL(rec.lsn, i);
	}
	CU_ASSERT_EQUAL(journal_reader_next(r, &rec, &error), 0);
	journal_reader_free(&r);
	CU_ASSERT_EQUAL(journal_reader_next(lazy, &rec, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "trimmed"));
	journal_reader_free(&lazy);

	/* A durable record damaged on disk afterwards is reported by the
	 * reader, which then stays failed. */
	free(seg1);
	seg1 = path_in(dir, "00000000000000000004.log");
	fd = open(seg1, O_WRONLY);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(pwrite(fd, "\xff", 1, 74 + 30), 1);
	close(fd);
	r = journal_reader_new(j, 4, &error);
	CU_ASSERT_FATAL(r != NULL);
	CU_ASSERT_EQUAL(journal_reader_next(r, &rec, &error), 1);
	CU_ASSERT_EQUAL(journal_reader_next(r, &rec, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "checksum"));
	CU_ASSERT_EQUAL(journal_reader_next(r, &rec, &error), -1);
	journal_reader_free(&r);
	journal_free(&j);
	/* It is in an older segment now, so reopening refuses too. */
	CU_ASSERT_EQUAL(journal_open(dir, NULL, &j, &error), -1);
	free(seg1);
	cu_rmtree(dir);
	free(dir);
}

#define GC_THREADS 8
#define GC_APPENDS 200

struct gc_thread {
	struct journal *j;
	int id;
	uint64_t lsns[GC_APPENDS];
	int failures;
	bool not_durable;
};

static void *gc_main(void *arg)
{
	struct gc_thread *t = arg;
	char payload[32];

	for (int i = 0; i < GC_APPENDS; i++) {
		struct journal_part part;
		const char *error = NULL;
		int len = snprintf(payload, sizeof(payload), "t%d-i%d",
				   t->id, i);

		part.data = payload;
		part.len = (size_t)len;
		if (journal_append(t->j, (uint8_t)t->id, &part, 1,
				   &t->lsns[i], &error) < 0)
			t->failures++;
		/* "Durable" was said: the durable end must cover it. */
		else if (journal_durable_lsn(t->j) < t->lsns[i])
			t->not_durable = true;
	}
	return NULL;
}

static void test_group_commit(void)
{
	char *dir = cu_tempdir("journal");
	struct journal *j = open_ok(dir, 16 * 1024);
	static struct gc_thread t[GC_THREADS];
	static bool seen[GC_THREADS * GC_APPENDS + 1];
	const uint64_t total = GC_THREADS * GC_APPENDS;
	pthread_t tid[GC_THREADS];
	struct journal_stats st;
	struct collected *c;
	bool dense = true, order = true, content = true;

	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < GC_THREADS; i++) {
		memset(&t[i], 0, sizeof(t[i]));
		t[i].j = j;
		t[i].id = i;
		CU_ASSERT_EQUAL_FATAL(pthread_create(&tid[i], NULL, gc_main,
						     &t[i]), 0);
	}
	for (int i = 0; i < GC_THREADS; i++)
		pthread_join(tid[i], NULL);
	for (int i = 0; i < GC_THREADS; i++) {
		CU_ASSERT_EQUAL(t[i].failures, 0);
		CU_ASSERT_FALSE(t[i].not_durable);
		for (int k = 0; k < GC_APPENDS; k++) {
			uint64_t l = t[i].lsns[k];

			if (l < 1 || l > total || seen[l])
				dense = false;
			else
				seen[l] = true;
			if (k > 0 && l <= t[i].lsns[k - 1])
				order = false;
		}
	}
	CU_ASSERT_TRUE(dense);	/* unique and within 1..total: dense */
	CU_ASSERT_TRUE(order);
	journal_get_stats(j, &st);
	CU_ASSERT_EQUAL(st.appends, total);
	printf("\n    group commit: %" PRIu64 " appends, %" PRIu64
	       " fdatasyncs, %" PRIu64 " rotations\n", st.appends, st.syncs,
	       st.rotations);
	CU_ASSERT_TRUE(st.syncs < st.appends);
	journal_free(&j);

	/* Every record is on disk with the payload its thread wrote. */
	j = open_ok(dir, 16 * 1024);
	c = collect(j, 1);
	CU_ASSERT_EQUAL_FATAL(c->count, total);
	for (int i = 0; i < GC_THREADS; i++) {
		for (int k = 0; k < GC_APPENDS; k++) {
			size_t at = (size_t)(t[i].lsns[k] - 1);
			char want[32];
			int len = snprintf(want, sizeof(want), "t%d-i%d", i,
					   k);

			if (c->len[at] != (size_t)len ||
			    c->type[at] != (uint8_t)i ||
			    memcmp(c->data + c->off[at], want,
				   (size_t)len) != 0)
				content = false;
		}
	}
	CU_ASSERT_TRUE(content);
	collected_free(c);
	journal_free(&j);
	cu_rmtree(dir);
	free(dir);
}

struct waiter {
	struct journal *j;
	uint64_t after;
	atomic_bool stop;
	int ret;
	uint64_t durable;
	atomic_bool done;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	w->ret = journal_wait_new(w->j, w->after, &w->stop, -1, &w->durable);
	atomic_store(&w->done, true);
	return NULL;
}

static void test_durable_wait(void)
{
	char *dir = cu_tempdir("journal");
	struct journal *j = open_ok(dir, 0);
	struct journal_part part = { "op", 2 };
	struct journal_stats st0, st1;
	struct waiter w;
	const char *error = NULL;
	uint64_t lsn1, lsn2, durable;
	pthread_t tid;

	CU_ASSERT_EQUAL(journal_append_async(j, 1, &part, 1, &lsn1, &error),
			0);
	CU_ASSERT_EQUAL(journal_append_async(j, 1, &part, 1, &lsn2, &error),
			0);
	CU_ASSERT_EQUAL(lsn2, lsn1 + 1);
	/* Written is not durable until someone syncs. */
	CU_ASSERT_EQUAL(journal_durable_lsn(j), 0);
	CU_ASSERT_EQUAL(journal_wait_new(j, 0, NULL, 0, &durable), 0);
	CU_ASSERT_EQUAL(durable, 0);
	journal_get_stats(j, &st0);
	CU_ASSERT_EQUAL(journal_wait_durable(j, lsn1, &error), 0);
	/* One sync covered both records. */
	CU_ASSERT_EQUAL(journal_durable_lsn(j), lsn2);
	CU_ASSERT_EQUAL(journal_wait_durable(j, lsn2, &error), 0);
	journal_get_stats(j, &st1);
	CU_ASSERT_EQUAL(st1.syncs, st0.syncs + 1);
	CU_ASSERT_EQUAL(journal_wait_durable(j, 0, &error), 0);
	CU_ASSERT_EQUAL(journal_wait_durable(j, lsn2 + 1, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "not written"));

	CU_ASSERT_EQUAL(journal_wait_new(j, 0, NULL, 0, &durable), 1);
	CU_ASSERT_EQUAL(durable, 2);
	CU_ASSERT_EQUAL(journal_wait_new(j, 2, NULL, 30, &durable), 0);

	/* A sleeping waiter wakes when a newer record becomes durable... */
	memset(&w, 0, sizeof(w));
	w.j = j;
	w.after = 2;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&tid, NULL, waiter_main, &w), 0);
	usleep(20000);
	CU_ASSERT_FALSE(atomic_load(&w.done));
	append_one(j, 1, "x", 1);
	pthread_join(tid, NULL);
	CU_ASSERT_EQUAL(w.ret, 1);
	CU_ASSERT_EQUAL(w.durable, 3);

	/* ...when its stop flag is set and the journal woken... */
	memset(&w, 0, sizeof(w));
	w.j = j;
	w.after = 3;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&tid, NULL, waiter_main, &w), 0);
	usleep(20000);
	CU_ASSERT_FALSE(atomic_load(&w.done));
	atomic_store(&w.stop, true);
	journal_wake(j);
	pthread_join(tid, NULL);
	CU_ASSERT_EQUAL(w.ret, 0);

	/* ...and on shutdown, which also ends later waits at once. */
	memset(&w, 0, sizeof(w));
	w.j = j;
	w.after = 3;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&tid, NULL, waiter_main, &w), 0);
	usleep(20000);
	CU_ASSERT_FALSE(atomic_load(&w.done));
	journal_shutdown(j);
	pthread_join(tid, NULL);
	CU_ASSERT_EQUAL(w.ret, 0);
	CU_ASSERT_EQUAL(journal_wait_new(j, 3, NULL, -1, &durable), 0);
	CU_ASSERT_EQUAL(append_one(j, 1, "y", 1), 4);

	/* A reader asked for the future sees nothing until it exists. */
	{
		struct journal_reader *r = journal_reader_new(j, 6, &error);
		struct journal_record rec;

		CU_ASSERT_FATAL(r != NULL);
		CU_ASSERT_EQUAL(journal_reader_next(r, &rec, &error), 0);
		append_one(j, 1, "5", 1);
		CU_ASSERT_EQUAL(journal_reader_next(r, &rec, &error), 0);
		CU_ASSERT_EQUAL(journal_append_async(j, 6, &part, 1, &lsn1,
						     &error), 0);
		/* Written but not durable: still invisible to readers. */
		CU_ASSERT_EQUAL(journal_reader_next(r, &rec, &error), 0);
		CU_ASSERT_EQUAL(journal_wait_durable(j, lsn1, &error), 0);
		CU_ASSERT_EQUAL(journal_reader_next(r, &rec, &error), 1);
		CU_ASSERT_EQUAL(rec.lsn, 6);
		CU_ASSERT_EQUAL(rec.type, 6);
		journal_reader_free(&r);
	}
	journal_free(&j);
	cu_rmtree(dir);
	free(dir);
}

#define CR_RECORDS 3000

struct cr_reader {
	struct journal *j;
	uint64_t got;
	bool in_order;
	bool content;
	bool beyond_durable;
	const char *error;
};

static void *cr_reader_main(void *arg)
{
	struct cr_reader *cr = arg;
	struct journal_reader *r;
	struct journal_record rec;

	r = journal_reader_new(cr->j, 1, &cr->error);
	if (r == NULL)
		return NULL;
	while (cr->got < CR_RECORDS) {
		int n = journal_reader_next(r, &rec, &cr->error);

		if (n < 0)
			break;
		if (n == 0) {
			journal_wait_new(cr->j, journal_reader_position(r) - 1,
					 NULL, 1000, NULL);
			continue;
		}
		if (rec.lsn != cr->got + 1)
			cr->in_order = false;
		if (rec.len != rec.lsn % 300 ||
		    !payload_ok(rec.payload, rec.len, rec.lsn))
			cr->content = false;
		if (rec.lsn > journal_durable_lsn(cr->j))
			cr->beyond_durable = true;
		cr->got++;
	}
	journal_reader_free(&r);
	return NULL;
}

static void *type_waiter_main(void *arg)
{
	struct waiter *w = arg;

	w->ret = journal_wait_type(w->j, 7, w->after, &w->stop, -1);
	atomic_store(&w->done, true);
	return NULL;
}

/* A thread waiting for one record type sleeps through durable records of
 * other types (a sync sender on storage, where most records are received
 * ones), wakes for its own type, and for its stop flag. */
static void test_wait_for_type(void)
{
	char *dir = cu_tempdir("journal");
	struct journal *j = open_ok(dir, 0);
	struct waiter w;
	uint64_t lsn;
	pthread_t tid;

	append_one(j, 7, "a", 1);
	lsn = append_one(j, 2, "b", 1);
	/* Durable records after 0, one of them of type 7: no wait. */
	CU_ASSERT_EQUAL(journal_wait_type(j, 7, 0, NULL, -1), 1);
	/* Newer durable records exist, none of type 7: waits it out. */
	CU_ASSERT_EQUAL(journal_wait_type(j, 7, 1, NULL, 30), 1);
	CU_ASSERT_EQUAL(journal_wait_type(j, 7, lsn, NULL, 30), 0);

	memset(&w, 0, sizeof(w));
	w.j = j;
	w.after = lsn;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&tid, NULL, type_waiter_main, &w),
			      0);
	for (int i = 0; i < 20; i++)
		append_one(j, 2, "r", 1);
	usleep(50000);
	CU_ASSERT_FALSE(atomic_load(&w.done));
	lsn = append_one(j, 7, "mine", 4);
	pthread_join(tid, NULL);
	CU_ASSERT_EQUAL(w.ret, 1);

	memset(&w, 0, sizeof(w));
	w.j = j;
	w.after = lsn;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&tid, NULL, type_waiter_main, &w),
			      0);
	append_one(j, 2, "r", 1);
	usleep(20000);
	CU_ASSERT_FALSE(atomic_load(&w.done));
	atomic_store(&w.stop, true);
	journal_wake(j);
	pthread_join(tid, NULL);
	/* Stopped, with a newer durable record (of another type) there. */
	CU_ASSERT_EQUAL(w.ret, 1);
	journal_free(&j);
	cu_rmtree(dir);
	free(dir);
}

static void test_reader_concurrent_with_writer(void)
{
	char *dir = cu_tempdir("journal");
	struct journal *j = open_ok(dir, 8 * 1024);
	struct cr_reader cr[2];
	pthread_t tid[2];
	unsigned char p[300];
	struct journal_stats st;

	for (int i = 0; i < 2; i++) {
		memset(&cr[i], 0, sizeof(cr[i]));
		cr[i].j = j;
		cr[i].in_order = true;
		cr[i].content = true;
		CU_ASSERT_EQUAL_FATAL(pthread_create(&tid[i], NULL,
						     cr_reader_main, &cr[i]),
				      0);
	}
	for (uint64_t i = 1; i <= CR_RECORDS; i++) {
		struct journal_part part = { p, (size_t)(i % 300) };
		const char *error = NULL;
		uint64_t lsn;

		fill_payload(p, part.len, i);
		/* Mostly written without waiting, so readers see a durable
		 * end that trails the written one. */
		if (i % 7 == 0) {
			CU_ASSERT_EQUAL(journal_append(j, 1, &part, 1, &lsn,
						       &error), 0);
		} else {
			CU_ASSERT_EQUAL(journal_append_async(j, 1, &part, 1,
							     &lsn, &error),
					0);
		}
	}
	{
		const char *error = NULL;

		CU_ASSERT_EQUAL(journal_wait_durable(j, CR_RECORDS, &error),
				0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(tid[i], NULL);
		if (cr[i].error != NULL && cr[i].got < CR_RECORDS)
			fprintf(stderr, "reader: %s\n", cr[i].error);
		CU_ASSERT_EQUAL(cr[i].got, CR_RECORDS);
		CU_ASSERT_TRUE(cr[i].in_order);
		CU_ASSERT_TRUE(cr[i].content);
		CU_ASSERT_FALSE(cr[i].beyond_durable);
	}
	journal_get_stats(j, &st);
	CU_ASSERT_TRUE(st.rotations > 10);
	journal_free(&j);
	cu_rmtree(dir);
	free(dir);
}

static void test_write_failure_leaves_consistent(void)
{
	char *dir = cu_tempdir("journal");
	struct journal *j = open_ok(dir, 0);
	char *seg = path_in(dir, SEG1);
	struct journal_part part;
	struct journal_stats st;
	struct collected *c;
	struct rlimit old, lim;
	struct sigaction ign, old_sa;
	unsigned char p[1000];
	const char *error = NULL;
	off_t good;
	uint64_t lsn = 0;
	int r1, r2;

	for (uint64_t i = 1; i <= 3; i++) {
		fill_payload(p, 100, i);
		append_one(j, 1, p, 100);
	}
	good = file_size(seg);
	CU_ASSERT_EQUAL(good, 3 * (100 + JOURNAL_RECORD_OVERHEAD));

	/* A file size limit part-way into the next record: the first
	 * writev is short, the next fails with EFBIG, like a disk that
	 * fills up mid-record. */
	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	sigaction(SIGXFSZ, &ign, &old_sa);
	CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)good + 50;
	CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &lim), 0);
	fill_payload(p, sizeof(p), 4);
	part.data = p;
	part.len = sizeof(p);
	r1 = journal_append(j, 1, &part, 1, &lsn, &error);
	/* Even the first byte past the limit fails. */
	lim.rlim_cur = (rlim_t)good;
	setrlimit(RLIMIT_FSIZE, &lim);
	r2 = journal_append(j, 1, &part, 1, &lsn, &error);
	setrlimit(RLIMIT_FSIZE, &old);
	sigaction(SIGXFSZ, &old_sa, NULL);

	CU_ASSERT_EQUAL(r1, -1);
	CU_ASSERT_EQUAL(r2, -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "write journal"));
	/* No partial frame left behind, no LSN consumed. */
	CU_ASSERT_EQUAL(file_size(seg), good);
	CU_ASSERT_EQUAL(journal_next_lsn(j), 4);
	journal_get_stats(j, &st);
	CU_ASSERT_EQUAL(st.write_errors, 2);

	/* Space is back: appends continue the dense sequence. */
	CU_ASSERT_EQUAL(journal_append(j, 1, &part, 1, &lsn, &error), 0);
	CU_ASSERT_EQUAL(lsn, 4);
	CU_ASSERT_EQUAL(append_one(j, 2, "five", 4), 5);
	journal_free(&j);

	j = open_ok(dir, 0);
	c = collect(j, 1);
	CU_ASSERT_EQUAL_FATAL(c->count, 5);
	for (size_t i = 0; i < 3; i++)
		CU_ASSERT_TRUE(payload_ok(c->data + c->off[i], 100, i + 1));
	CU_ASSERT_EQUAL(c->len[3], sizeof(p));
	CU_ASSERT_TRUE(payload_ok(c->data + c->off[3], sizeof(p), 4));
	CU_ASSERT_EQUAL(memcmp(c->data + c->off[4], "five", 4), 0);
	collected_free(c);
	journal_free(&j);
	free(seg);
	cu_rmtree(dir);
	free(dir);
}

static CU_TestInfo tests[] = {
	{ "append, reopen, read back", test_append_reopen_read },
	{ "records of every size, in parts", test_record_sizes_and_parts },
	{ "torn or corrupt last record at every byte",
	  test_torn_tail_every_offset },
	{ "corruption in an older segment is refused",
	  test_corrupt_older_segment },
	{ "segment rotation and trim", test_rotation_and_trim },
	{ "reader errors, trim under a reader",
	  test_reader_errors_and_trim_under_reader },
	{ "group commit: 8 threads x 200 appends", test_group_commit },
	{ "durable waits, wake and shutdown", test_durable_wait },
	{ "waiting for one record type", test_wait_for_type },
	{ "readers alongside the writer",
	  test_reader_concurrent_with_writer },
	{ "write failure leaves the journal consistent",
	  test_write_failure_leaves_consistent },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	/* Recovery warns about every torn tail it drops; the tests make
	 * hundreds on purpose. */
	log_init("test", LOG_LEVEL_ERROR, false);
	return cu_run("journal", tests);
}
