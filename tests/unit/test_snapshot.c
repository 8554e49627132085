/*
 * test_snapshot.c - snapshots round-trip at several sizes, replace each
 * other atomically, leave no temporary files, and every truncation, every
 * flipped byte and any trailing garbage is reported as corrupt rather than
 * returned.
 */
#include "autoconfig.h"

#include "snapshot.h"
#include "cu_run.h"
#include "log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *path_in(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *p = malloc(len);

	CU_ASSERT_FATAL(p != NULL);
	snprintf(p, len, "%s/%s", dir, name);
	return p;
}

static unsigned char *slurp(const char *path, size_t *len_r)
{
	struct stat st;
	unsigned char *b;
	int fd;

	CU_ASSERT_FATAL(stat(path, &st) == 0);
	b = malloc((size_t)st.st_size + 1);
	fd = open(path, O_RDONLY);
	CU_ASSERT_FATAL(b != NULL && fd >= 0);
	CU_ASSERT_FATAL(read(fd, b, (size_t)st.st_size) == st.st_size);
	close(fd);
	*len_r = (size_t)st.st_size;
	return b;
}

static void spit(const char *path, const unsigned char *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(write(fd, b, len) == (ssize_t)len);
	close(fd);
}

static size_t count_files(const char *dir)
{
	char cmd[512], line[256];
	size_t n = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "ls -A '%s'", dir);
	f = popen(cmd, "r");
	CU_ASSERT_FATAL(f != NULL);
	while (fgets(line, sizeof(line), f) != NULL)
		n++;
	pclose(f);
	return n;
}

static void test_round_trip(void)
{
	static const size_t sizes[] = { 0, 1, 5, 4096, 1000003 };
	char *dir = cu_tempdir("snapshot");
	unsigned char *data = malloc(1000003);
	struct buf b = BUF_INIT;
	const char *error = NULL;
	uint64_t lsn = 0;

	CU_ASSERT_FATAL(data != NULL);
	for (size_t i = 0; i < 1000003; i++)
		data[i] = (unsigned char)(i * 13 + (i >> 9));
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t want = 1000 + i;

		CU_ASSERT_EQUAL(snapshot_write(dir, "user-42", want, data,
					       sizes[i], &error), 0);
		CU_ASSERT_EQUAL(snapshot_read(dir, "user-42", &lsn, &b,
					      &error), 1);
		CU_ASSERT_EQUAL(lsn, want);
		CU_ASSERT_EQUAL(b.len, sizes[i]);
		CU_ASSERT_TRUE(b.len == sizes[i] &&
			       (sizes[i] == 0 ||
				memcmp(b.data, data, sizes[i]) == 0));
		/* The new one replaced the old: one file, no leftovers. */
		CU_ASSERT_EQUAL(count_files(dir), 1);
	}
	/* Names are independent; a big LSN round-trips. */
	CU_ASSERT_EQUAL(snapshot_write(dir, "7", UINT64_MAX, "abc", 3,
				       &error), 0);
	CU_ASSERT_EQUAL(snapshot_read(dir, "7", &lsn, &b, &error), 1);
	CU_ASSERT_EQUAL(lsn, UINT64_MAX);
	CU_ASSERT_EQUAL(b.len, 3);
	CU_ASSERT_EQUAL(snapshot_read(dir, "user-42", &lsn, &b, &error), 1);
	CU_ASSERT_EQUAL(lsn, 1004);

	/* Missing is 0, not an error; remove is idempotent. */
	CU_ASSERT_EQUAL(snapshot_remove(dir, "7", &error), 0);
	CU_ASSERT_EQUAL(snapshot_remove(dir, "7", &error), 0);
	CU_ASSERT_EQUAL(snapshot_read(dir, "7", &lsn, &b, &error), 0);
	CU_ASSERT_EQUAL(b.len, 0);
	CU_ASSERT_EQUAL(snapshot_read(dir, "never", &lsn, &b, &error), 0);
	buf_free(&b);
	free(data);
	cu_rmtree(dir);
	free(dir);
}

static void test_corruption_detected(void)
{
	char *dir = cu_tempdir("snapshot");
	char *file = path_in(dir, "u.snap");
	const char payload[] = "mailbox state, encoded";
	struct buf b = BUF_INIT;
	const char *error = NULL;
	unsigned char *orig, *big;
	size_t len, missed = 0;
	uint64_t lsn;

	CU_ASSERT_EQUAL_FATAL(snapshot_write(dir, "u", 99, payload,
					     sizeof(payload), &error), 0);
	orig = slurp(file, &len);
	CU_ASSERT_EQUAL(len, sizeof(payload) + 24);

	/* Every truncation, including the empty file. */
	for (size_t cut = 0; cut < len; cut++) {
		spit(file, orig, cut);
		if (snapshot_read(dir, "u", &lsn, &b, &error) != -1 ||
		    b.len != 0 || strstr(error, "corrupt") == NULL)
			missed++;
	}
	CU_ASSERT_EQUAL(missed, 0);
	/* Every single flipped bit pattern at every byte. */
	for (size_t at = 0; at < len; at++) {
		orig[at] ^= 0x01;
		spit(file, orig, len);
		if (snapshot_read(dir, "u", &lsn, &b, &error) != -1)
			missed++;
		orig[at] ^= 0x81;
		spit(file, orig, len);
		if (snapshot_read(dir, "u", &lsn, &b, &error) != -1)
			missed++;
		orig[at] ^= 0x80;
	}
	CU_ASSERT_EQUAL(missed, 0);
	/* Trailing garbage. */
	big = malloc(len + 1);
	CU_ASSERT_FATAL(big != NULL);
	memcpy(big, orig, len);
	big[len] = 0;
	spit(file, big, len + 1);
	CU_ASSERT_EQUAL(snapshot_read(dir, "u", &lsn, &b, &error), -1);
	/* A length field claiming far more than the file holds must not
	 * make the reader allocate it. */
	memset(big + 12, 0xff, 8);
	spit(file, big, len);
	CU_ASSERT_EQUAL(snapshot_read(dir, "u", &lsn, &b, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "length"));
	free(big);
	/* The intact bytes still read back, so the checks above were about
	 * the damage. */
	spit(file, orig, len);
	CU_ASSERT_EQUAL(snapshot_read(dir, "u", &lsn, &b, &error), 1);
	CU_ASSERT_EQUAL(lsn, 99);
	/* A rewrite over a corrupt snapshot repairs it. */
	orig[30] ^= 0xff;
	spit(file, orig, len);
	CU_ASSERT_EQUAL(snapshot_write(dir, "u", 100, "x", 1, &error), 0);
	CU_ASSERT_EQUAL(snapshot_read(dir, "u", &lsn, &b, &error), 1);
	CU_ASSERT_EQUAL(lsn, 100);
	buf_free(&b);
	free(orig);
	free(file);
	cu_rmtree(dir);
	free(dir);
}

static void test_names(void)
{
	static const struct {
		const char *name;
		bool valid;
	} cases[] = {
		{ "alice", true },
		{ "42", true },
		{ "a.b-c_d@example.org", true },
		{ "x+y=z,w", true },
		{ "", false },
		{ ".hidden", false },
		{ "..", false },
		{ "a/b", false },
		{ "../etc", false },
		{ "sp ace", false },
		{ "tab\t", false },
		{ "nl\n", false },
		{ "\xc3\xa9", false },
	};
	char longname[SNAPSHOT_NAME_MAX + 2];
	char *dir = cu_tempdir("snapshot");
	struct buf b = BUF_INIT;
	const char *error = NULL;
	uint64_t lsn;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CU_ASSERT_EQUAL(snapshot_name_valid(cases[i].name),
				cases[i].valid);
		if (!cases[i].valid) {
			CU_ASSERT_EQUAL(snapshot_write(dir, cases[i].name, 1,
						       "x", 1, &error), -1);
			CU_ASSERT_EQUAL(snapshot_read(dir, cases[i].name,
						      &lsn, &b, &error), -1);
		}
	}
	memset(longname, 'a', sizeof(longname));
	longname[SNAPSHOT_NAME_MAX] = '\0';
	CU_ASSERT_TRUE(snapshot_name_valid(longname));
	CU_ASSERT_EQUAL(snapshot_write(dir, longname, 1, "x", 1, &error), 0);
	CU_ASSERT_EQUAL(snapshot_read(dir, longname, &lsn, &b, &error), 1);
	longname[SNAPSHOT_NAME_MAX] = 'a';
	longname[SNAPSHOT_NAME_MAX + 1] = '\0';
	CU_ASSERT_FALSE(snapshot_name_valid(longname));
	/* Only the one valid snapshot was created. */
	CU_ASSERT_EQUAL(count_files(dir), 1);
	/* A FIFO in place of a snapshot is refused without hanging. */
	{
		char *fifo = path_in(dir, "pipe.snap");

		CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0600), 0);
		CU_ASSERT_EQUAL(snapshot_read(dir, "pipe", &lsn, &b, &error),
				-1);
		CU_ASSERT_PTR_NOT_NULL(strstr(error, "regular"));
		unlink(fifo);
		free(fifo);
	}
	/* A directory that is not there is an error, not a crash. */
	CU_ASSERT_EQUAL(snapshot_write("/nonexistent/pluto", "a", 1, "x", 1,
				       &error), -1);
	CU_ASSERT_EQUAL(snapshot_read("/nonexistent/pluto", "a", &lsn, &b,
				      &error), -1);
	buf_free(&b);
	cu_rmtree(dir);
	free(dir);
}

static void test_clean_tmp(void)
{
	char *dir = cu_tempdir("snapshot");
	char *t1 = path_in(dir, ".tmp-alice-abc123");
	char *t2 = path_in(dir, ".tmp-bob-zzzzzz");
	struct buf b = BUF_INIT;
	const char *error = NULL;
	uint64_t lsn;

	CU_ASSERT_EQUAL(snapshot_write(dir, "alice", 5, "state", 5, &error),
			0);
	spit(t1, (const unsigned char *)"half", 4);
	spit(t2, (const unsigned char *)"", 0);
	CU_ASSERT_EQUAL(count_files(dir), 3);
	CU_ASSERT_EQUAL(snapshot_clean_tmp(dir, &error), 2);
	CU_ASSERT_EQUAL(count_files(dir), 1);
	CU_ASSERT_EQUAL(snapshot_clean_tmp(dir, &error), 0);
	CU_ASSERT_EQUAL(snapshot_read(dir, "alice", &lsn, &b, &error), 1);
	CU_ASSERT_EQUAL(lsn, 5);
	buf_free(&b);
	free(t1);
	free(t2);
	cu_rmtree(dir);
	free(dir);
}

static CU_TestInfo tests[] = {
	{ "write and read back", test_round_trip },
	{ "truncation and corruption detected", test_corruption_detected },
	{ "names validated", test_names },
	{ "crash leftovers removed", test_clean_tmp },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	log_init("test", LOG_LEVEL_ERROR, false);
	return cu_run("snapshot", tests);
}
