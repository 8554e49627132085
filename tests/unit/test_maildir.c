/*
 * test_maildir.c - the Maildir++ store in a private temp directory:
 * delivery (memory and streamed) and reading back, flag renames, expunge,
 * folder create/rename/delete, listings, start-up cleaning of tmp/, a
 * write failure (RLIMIT_FSIZE standing in for ENOSPC) that must leave no
 * trace, hostile names refused before the tree changes, and identical
 * file names on two "replicas".
 */
#include "autoconfig.h"

#include "maildir.h"
#include "cu_run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *outer;	/* a private directory holding base */
static char *base;	/* the MaildirRoot of the current test */

/* base lives inside a private directory, so that a test can watch
 * base's parent without seeing other tests' temporary files. */
static void setup(void)
{
	size_t len;

	outer = cu_tempdir("test_maildir");
	CU_ASSERT_PTR_NOT_NULL_FATAL(outer);
	len = strlen(outer) + sizeof("/root");
	base = malloc(len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(base);
	snprintf(base, len, "%s/root", outer);
	CU_ASSERT_EQUAL_FATAL(mkdir(base, 0700), 0);
}

static void teardown(void)
{
	cu_rmtree(outer);
	free(outer);
	free(base);
	outer = NULL;
	base = NULL;
}

static struct maildir *open_user(const char *user)
{
	struct maildir *md = NULL;
	const char *error = NULL;

	if (maildir_open(base, user, strlen(user), '.', &md, &error) < 0) {
		fprintf(stderr, "maildir_open: %s\n", error);
		CU_FAIL_FATAL("maildir_open failed");
	}
	return md;
}

/* stat()s base/rel; returns the st_mode, or 0 when absent. */
static mode_t path_mode(const char *rel)
{
	char path[1024];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", base, rel);
	if (lstat(path, &st) < 0)
		return 0;
	return st.st_mode;
}

static bool is_dir(const char *rel)
{
	return S_ISDIR(path_mode(rel));
}

static bool is_file(const char *rel)
{
	return S_ISREG(path_mode(rel));
}

/* Number of entries in base/rel other than . and .. (-1: no dir). */
static int count_entries(const char *rel)
{
	char path[1024];
	struct dirent *de;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", base, rel);
	dir = opendir(path);
	if (dir == NULL)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	}
	closedir(dir);
	return n;
}

static void read_all(int fd, char *out, size_t size, size_t *len_r)
{
	size_t len = 0;
	ssize_t n;

	while (len < size && (n = read(fd, out + len, size - len)) > 0)
		len += (size_t)n;
	*len_r = len;
}

#define TAG64 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" \
	"0123456789_-"

static void test_file_names(void)
{
	static const struct {
		unsigned int flags;
		const char *name;
	} names[] = {
		{ 0, "T1:2," },
		{ MAILDIR_FLAG_SEEN, "T1:2,S" },
		{ MAILDIR_FLAG_SEEN | MAILDIR_FLAG_DRAFT, "T1:2,DS" },
		{ MAILDIR_FLAG_DELETED | MAILDIR_FLAG_ANSWERED, "T1:2,RT" },
		{ MAILDIR_FLAGS_ALL, "T1:2,DFRST" },
		{ MAILDIR_FLAG_FLAGGED, "T1:2,F" },
	};
	static const char *const bad[] = {
		"T1", "T1:2", ":2,S", "T1:2,SD", "T1:2,SS", "T1:2,P",
		"T1:2,s", "T/1:2,", "T.1:2,", "T1:1,S", "T1:2,S:2,S",
		"1234567890123456789012345678901234567890123456789012345678901"
		"2345:2,",
	};
	char name[MAILDIR_FILENAME_BUFSIZE], tag[MAILDIR_TAG_MAX + 1];
	const char *error = NULL;
	unsigned int flags;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		CU_ASSERT_EQUAL(maildir_file_name("T1", names[i].flags, name,
						  &error), 0);
		CU_ASSERT_STRING_EQUAL(name, names[i].name);
		CU_ASSERT_EQUAL(maildir_file_name_parse(name, tag, &flags), 0);
		CU_ASSERT_STRING_EQUAL(tag, "T1");
		CU_ASSERT_EQUAL(flags, names[i].flags);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (maildir_file_name_parse(bad[i], tag, &flags) == 0) {
			fprintf(stderr, "accepted '%s'\n", bad[i]);
			CU_FAIL("foreign file name accepted");
		}
	}
	CU_ASSERT_EQUAL(maildir_file_name("T1", 0x20, name, &error), -1);
	CU_ASSERT_EQUAL(maildir_file_name("", 0, name, &error), -1);
	CU_ASSERT_EQUAL(maildir_file_name("a:b", 0, name, &error), -1);
	CU_ASSERT_EQUAL(maildir_file_name("../x", 0, name, &error), -1);
	CU_ASSERT_EQUAL(maildir_tag_validate(TAG64, &error), 0);
	CU_ASSERT_EQUAL(maildir_tag_validate(TAG64 "x", &error), -1);
	CU_ASSERT_STRING_EQUAL(error, "Message tag is too long");
}

static void test_user_names(void)
{
	static const struct {
		const char *user;
		size_t len;
		bool ok;
	} users[] = {
		{ "alice", 5, true },
		{ "bob@example.org", 15, true },
		{ "a.b-c_d+e", 9, true },
		{ "", 0, false },
		{ ".alice", 6, false },
		{ "..", 2, false },
		{ ".", 1, false },
		{ "a/b", 3, false },
		{ "../evil", 7, false },
		{ "a\0b", 3, false },
		{ "a b", 3, false },
		{ "a\nb", 3, false },
		{ "\xc3\xa9", 2, false },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaa", 65, false },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaa", 64, true },
	};
	const char *error = NULL;

	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
		int ret = maildir_user_validate(users[i].user, users[i].len,
						&error);

		if ((ret == 0) != users[i].ok) {
			fprintf(stderr, "user case %zu\n", i);
			CU_FAIL("user name misjudged");
		}
	}
}

static void test_open_layout(void)
{
	struct maildir *md;
	struct maildir *md2 = NULL;
	const char *error = NULL;
	char other[1024], link_path[1024];

	setup();
	md = open_user("alice");
	CU_ASSERT_TRUE(is_dir("alice/cur"));
	CU_ASSERT_TRUE(is_dir("alice/new"));
	CU_ASSERT_TRUE(is_dir("alice/tmp"));
	CU_ASSERT_EQUAL(path_mode("alice") & 0777, 0700);
	maildir_free(&md);
	CU_ASSERT_PTR_NULL(md);
	/* Opening again is fine. */
	md = open_user("alice");
	maildir_free(&md);
	/* A user root that is a symlink is not followed. */
	snprintf(other, sizeof(other), "%s/alice", base);
	snprintf(link_path, sizeof(link_path), "%s/mallory", base);
	CU_ASSERT_EQUAL(symlink(other, link_path), 0);
	CU_ASSERT_EQUAL(maildir_open(base, "mallory", 7, '.', &md2, &error),
			-1);
	CU_ASSERT_PTR_NULL(md2);
	/* A missing MaildirRoot is an error, not created. */
	snprintf(other, sizeof(other), "%s/nope", base);
	CU_ASSERT_EQUAL(maildir_open(other, "alice", 5, '.', &md2, &error),
			-1);
	CU_ASSERT_EQUAL(maildir_open(base, "alice", 5, '*', &md2, &error),
			-1);
	teardown();
}

static void test_deliver_and_read(void)
{
	static const char msg[] = "From: a@b\r\nSubject: hi\r\n\r\nbody\r\n";
	struct maildir *md;
	const char *error = NULL;
	char back[256];
	uint64_t size;
	size_t len;
	int fd;

	setup();
	md = open_user("alice");
	CU_ASSERT_EQUAL(maildir_deliver(md, "INBOX", "tag-1",
					MAILDIR_FLAG_SEEN, msg,
					sizeof(msg) - 1, &error), 1);
	CU_ASSERT_TRUE(is_file("alice/cur/tag-1:2,S"));
	CU_ASSERT_EQUAL(path_mode("alice/cur/tag-1:2,S") & 0777, 0600);
	CU_ASSERT_EQUAL(count_entries("alice/tmp"), 0);
	CU_ASSERT_EQUAL(count_entries("alice/new"), 0);
	CU_ASSERT_EQUAL(maildir_message_open(md, "inbox", "tag-1",
					     MAILDIR_FLAG_SEEN, &fd, &size,
					     &error), 0);
	CU_ASSERT_EQUAL(size, sizeof(msg) - 1);
	read_all(fd, back, sizeof(back), &len);
	close(fd);
	CU_ASSERT_EQUAL(len, sizeof(msg) - 1);
	CU_ASSERT_EQUAL(memcmp(back, msg, len), 0);
	/* A replayed delivery changes nothing and says so. */
	CU_ASSERT_EQUAL(maildir_deliver(md, "INBOX", "tag-1",
					MAILDIR_FLAG_SEEN, "other", 5,
					&error), 0);
	CU_ASSERT_EQUAL(count_entries("alice/cur"), 1);
	CU_ASSERT_EQUAL(count_entries("alice/tmp"), 0);
	CU_ASSERT_EQUAL(path_mode("alice/cur/tag-1:2,S") != 0, 1);
	/* Wrong flags: not found. */
	CU_ASSERT_EQUAL(maildir_message_open(md, "INBOX", "tag-1", 0, &fd,
					     &size, &error), -1);
	CU_ASSERT_STRING_EQUAL(error, "Message file not found");
	/* Empty message, and a missing mailbox. */
	CU_ASSERT_EQUAL(maildir_deliver(md, "INBOX", "empty", 0, "", 0,
					&error), 1);
	CU_ASSERT_TRUE(is_file("alice/cur/empty:2,"));
	CU_ASSERT_EQUAL(maildir_deliver(md, "Nope", "t", 0, "x", 1, &error),
			-1);
	CU_ASSERT_STRING_EQUAL(error, "Mailbox doesn't exist");
	CU_ASSERT_FALSE(is_dir("alice/.Nope"));
	maildir_free(&md);
	teardown();
}

static void test_streamed_delivery(void)
{
	const size_t chunk = 65536, chunks = 48;	/* 3 MiB */
	struct maildir_delivery *d = NULL;
	struct maildir *md;
	const char *error = NULL;
	unsigned char *data, *back;
	uint64_t size;
	size_t len;
	int fd;

	setup();
	md = open_user("alice");
	data = malloc(chunk * chunks);
	back = malloc(chunk * chunks + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(data);
	CU_ASSERT_PTR_NOT_NULL_FATAL(back);
	for (size_t i = 0; i < chunk * chunks; i++)
		data[i] = (unsigned char)(i * 31 + i / 977);
	CU_ASSERT_EQUAL_FATAL(maildir_delivery_begin(md, "INBOX", "big", 0,
						     &d, &error), 0);
	/* While streaming, only tmp/ holds it. */
	CU_ASSERT_EQUAL(count_entries("alice/tmp"), 1);
	for (size_t i = 0; i < chunks; i++)
		CU_ASSERT_EQUAL(maildir_delivery_write(d, data + i * chunk,
						       chunk, &error), 0);
	CU_ASSERT_EQUAL(count_entries("alice/cur"), 0);
	CU_ASSERT_EQUAL(maildir_delivery_finish(&d, &error), 1);
	CU_ASSERT_PTR_NULL(d);
	CU_ASSERT_EQUAL(count_entries("alice/tmp"), 0);
	CU_ASSERT_EQUAL(maildir_message_open(md, "INBOX", "big", 0, &fd,
					     &size, &error), 0);
	CU_ASSERT_EQUAL(size, chunk * chunks);
	read_all(fd, (char *)back, chunk * chunks + 1, &len);
	close(fd);
	CU_ASSERT_EQUAL(len, chunk * chunks);
	CU_ASSERT_EQUAL(memcmp(back, data, chunk * chunks), 0);

	/* An aborted delivery leaves nothing anywhere. */
	CU_ASSERT_EQUAL_FATAL(maildir_delivery_begin(md, "INBOX", "gone", 0,
						     &d, &error), 0);
	CU_ASSERT_EQUAL(maildir_delivery_write(d, data, chunk, &error), 0);
	maildir_delivery_abort(&d);
	CU_ASSERT_PTR_NULL(d);
	CU_ASSERT_EQUAL(count_entries("alice/tmp"), 0);
	CU_ASSERT_EQUAL(count_entries("alice/cur"), 1);
	free(data);
	free(back);
	maildir_free(&md);
	teardown();
}

static void test_write_failure_leaves_nothing(void)
{
	struct maildir_delivery *d = NULL;
	struct maildir *md;
	const char *error = NULL;
	struct rlimit old, small;
	char *data;

	setup();
	md = open_user("alice");
	data = calloc(1, 65536);
	CU_ASSERT_PTR_NOT_NULL_FATAL(data);
	/* A file size limit makes write() fail (EFBIG) the way a full disk
	 * (ENOSPC) would. */
	signal(SIGXFSZ, SIG_IGN);
	CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &old), 0);
	small = old;
	small.rlim_cur = 4096;
	CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &small), 0);

	CU_ASSERT_EQUAL(maildir_deliver(md, "INBOX", "toolarge", 0, data,
					65536, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "write(tmp)"));
	CU_ASSERT_EQUAL(count_entries("alice/tmp"), 0);
	CU_ASSERT_EQUAL(count_entries("alice/cur"), 0);

	CU_ASSERT_EQUAL_FATAL(maildir_delivery_begin(md, "INBOX", "chunks", 0,
						     &d, &error), 0);
	CU_ASSERT_EQUAL(maildir_delivery_write(d, data, 4000, &error), 0);
	CU_ASSERT_EQUAL(maildir_delivery_write(d, data, 4000, &error), -1);
	/* After a failed write, finish refuses and cleans up too. */
	CU_ASSERT_EQUAL(maildir_delivery_finish(&d, &error), -1);
	CU_ASSERT_PTR_NULL(d);
	CU_ASSERT_EQUAL(count_entries("alice/tmp"), 0);
	CU_ASSERT_EQUAL(count_entries("alice/cur"), 0);

	CU_ASSERT_EQUAL(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	free(data);
	maildir_free(&md);
	teardown();
}

static void test_flags_and_expunge(void)
{
	struct maildir *md;
	const char *error = NULL;

	setup();
	md = open_user("alice");
	CU_ASSERT_EQUAL(maildir_deliver(md, "INBOX", "m1", 0, "x", 1,
					&error), 1);
	CU_ASSERT_EQUAL(maildir_message_set_flags(md, "INBOX", "m1", 0,
			MAILDIR_FLAG_SEEN | MAILDIR_FLAG_FLAGGED, &error), 0);
	CU_ASSERT_FALSE(is_file("alice/cur/m1:2,"));
	CU_ASSERT_TRUE(is_file("alice/cur/m1:2,FS"));
	/* Replayed: already there. */
	CU_ASSERT_EQUAL(maildir_message_set_flags(md, "INBOX", "m1", 0,
			MAILDIR_FLAG_SEEN | MAILDIR_FLAG_FLAGGED, &error), 0);
	/* Unchanged flags are a no-op. */
	CU_ASSERT_EQUAL(maildir_message_set_flags(md, "INBOX", "m1",
			MAILDIR_FLAG_SEEN | MAILDIR_FLAG_FLAGGED,
			MAILDIR_FLAG_SEEN | MAILDIR_FLAG_FLAGGED, &error), 0);
	CU_ASSERT_EQUAL(maildir_message_set_flags(md, "INBOX", "m1",
			MAILDIR_FLAG_SEEN | MAILDIR_FLAG_FLAGGED,
			MAILDIR_FLAG_DELETED, &error), 0);
	CU_ASSERT_TRUE(is_file("alice/cur/m1:2,T"));
	CU_ASSERT_EQUAL(count_entries("alice/cur"), 1);
	/* Neither name exists. */
	CU_ASSERT_EQUAL(maildir_message_set_flags(md, "INBOX", "m2", 0,
			MAILDIR_FLAG_SEEN, &error), -1);
	CU_ASSERT_STRING_EQUAL(error, "Message file not found");
	CU_ASSERT_EQUAL(maildir_message_set_flags(md, "INBOX", "m1",
			MAILDIR_FLAG_DELETED, 0x40, &error), -1);

	CU_ASSERT_EQUAL(maildir_message_expunge(md, "INBOX", "m1",
			MAILDIR_FLAG_DELETED, &error), 1);
	CU_ASSERT_EQUAL(count_entries("alice/cur"), 0);
	CU_ASSERT_EQUAL(maildir_message_expunge(md, "INBOX", "m1",
			MAILDIR_FLAG_DELETED, &error), 0);
	CU_ASSERT_EQUAL(maildir_message_expunge(md, "Nope", "m1", 0, &error),
			-1);
	maildir_free(&md);
	teardown();
}

struct collected {
	char names[16][MAILBOX_NAME_BUFSIZE];
	unsigned int flags[16];
	uint64_t sizes[16];
	int n;
	int stop_after;
};

static int collect_mailbox(const char *name, void *ctx)
{
	struct collected *c = ctx;

	if (c->stop_after > 0 && c->n == c->stop_after)
		return -1;
	if (c->n < 16)
		snprintf(c->names[c->n], MAILBOX_NAME_BUFSIZE, "%s", name);
	c->n++;
	return 0;
}

static int collect_message(const char *tag, unsigned int flags,
			   uint64_t size, void *ctx)
{
	struct collected *c = ctx;

	if (c->n < 16) {
		snprintf(c->names[c->n], MAILBOX_NAME_BUFSIZE, "%s", tag);
		c->flags[c->n] = flags;
		c->sizes[c->n] = size;
	}
	c->n++;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void sort_collected(struct collected *c)
{
	qsort(c->names, (size_t)(c->n < 16 ? c->n : 16),
	      MAILBOX_NAME_BUFSIZE, cmp_names);
}

static void test_mailbox_create_list(void)
{
	struct collected c;
	struct maildir *md;
	const char *error = NULL;
	char junk[1024];

	setup();
	md = open_user("alice");
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "Sent", &error), 0);
	CU_ASSERT_TRUE(is_dir("alice/.Sent/cur"));
	CU_ASSERT_TRUE(is_dir("alice/.Sent/new"));
	CU_ASSERT_TRUE(is_dir("alice/.Sent/tmp"));
	CU_ASSERT_TRUE(is_file("alice/.Sent/maildirfolder"));
	CU_ASSERT_EQUAL(count_entries("alice/tmp"), 0);
	CU_ASSERT_TRUE(maildir_mailbox_exists(md, "Sent"));
	CU_ASSERT_TRUE(maildir_mailbox_exists(md, "inbox"));
	CU_ASSERT_FALSE(maildir_mailbox_exists(md, "sent"));
	CU_ASSERT_FALSE(maildir_mailbox_exists(md, "../x"));
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "Sent", &error), -1);
	CU_ASSERT_STRING_EQUAL(error, "Mailbox already exists");
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "inbox", &error), -1);
	CU_ASSERT_STRING_EQUAL(error, "INBOX always exists");
	/* No parent needed; hierarchy and INBOX children. */
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "a.b", &error), 0);
	CU_ASSERT_TRUE(is_dir("alice/.a.b/cur"));
	CU_ASSERT_FALSE(is_dir("alice/.a"));
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "inbox.Sub", &error), 0);
	CU_ASSERT_TRUE(is_dir("alice/.INBOX.Sub/cur"));
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "&ZeVnLIqe-", &error), 0);
	CU_ASSERT_EQUAL(maildir_deliver(md, "a.b", "t1", 0, "x", 1, &error),
			1);
	CU_ASSERT_TRUE(is_file("alice/.a.b/cur/t1:2,"));

	/* Things that are not mailboxes are left out of the listing. */
	snprintf(junk, sizeof(junk), "%s/alice/.inbox.x", base);
	mkdir(junk, 0700);
	snprintf(junk, sizeof(junk), "%s/alice/.nocur", base);
	mkdir(junk, 0700);
	snprintf(junk, sizeof(junk), "%s/alice/.file", base);
	close(open(junk, O_CREAT | O_WRONLY, 0600));
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(maildir_mailbox_list(md, collect_mailbox, &c, &error),
			0);
	CU_ASSERT_EQUAL_FATAL(c.n, 5);
	sort_collected(&c);
	CU_ASSERT_STRING_EQUAL(c.names[0], "&ZeVnLIqe-");
	CU_ASSERT_STRING_EQUAL(c.names[1], "INBOX");
	CU_ASSERT_STRING_EQUAL(c.names[2], "INBOX.Sub");
	CU_ASSERT_STRING_EQUAL(c.names[3], "Sent");
	CU_ASSERT_STRING_EQUAL(c.names[4], "a.b");
	/* A callback can stop the walk. */
	memset(&c, 0, sizeof(c));
	c.stop_after = 2;
	CU_ASSERT_EQUAL(maildir_mailbox_list(md, collect_mailbox, &c, &error),
			-1);
	maildir_free(&md);
	teardown();
}

static void test_separator_slash(void)
{
	struct maildir *md = NULL;
	const char *error = NULL;

	setup();
	CU_ASSERT_EQUAL_FATAL(maildir_open(base, "alice", 5, '/', &md,
					   &error), 0);
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "a/b", &error), 0);
	CU_ASSERT_TRUE(is_dir("alice/.a.b/cur"));
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "a.b", &error), -1);
	CU_ASSERT_EQUAL(maildir_deliver(md, "a/b", "t", 0, "x", 1, &error),
			1);
	CU_ASSERT_TRUE(is_file("alice/.a.b/cur/t:2,"));
	maildir_free(&md);
	teardown();
}

static void test_mailbox_rename(void)
{
	static const char *const boxes[] = { "a", "a.x", "a.x.y", "ab", "c" };
	struct maildir *md;
	const char *error = NULL;
	char from[1024], to[1024];
	uint64_t size;
	int fd;

	setup();
	md = open_user("alice");
	for (size_t i = 0; i < 5; i++)
		CU_ASSERT_EQUAL(maildir_mailbox_create(md, boxes[i], &error),
				0);
	CU_ASSERT_EQUAL(maildir_deliver(md, "a.x", "m", MAILDIR_FLAG_SEEN,
					"hello", 5, &error), 1);

	CU_ASSERT_EQUAL(maildir_mailbox_rename(md, "a", "b", &error), 0);
	CU_ASSERT_FALSE(is_dir("alice/.a"));
	CU_ASSERT_FALSE(is_dir("alice/.a.x"));
	CU_ASSERT_FALSE(is_dir("alice/.a.x.y"));
	CU_ASSERT_TRUE(is_dir("alice/.b/cur"));
	CU_ASSERT_TRUE(is_dir("alice/.b.x/cur"));
	CU_ASSERT_TRUE(is_dir("alice/.b.x.y/cur"));
	CU_ASSERT_TRUE(is_dir("alice/.ab/cur"));	/* not a child */
	CU_ASSERT_EQUAL(maildir_message_open(md, "b.x", "m",
					     MAILDIR_FLAG_SEEN, &fd, &size,
					     &error), 0);
	close(fd);
	CU_ASSERT_EQUAL(size, 5);

	/* Refusals leave everything in place. */
	CU_ASSERT_EQUAL(maildir_mailbox_rename(md, "b", "c", &error), -1);
	CU_ASSERT_STRING_EQUAL(error, "Mailbox already exists");
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "d.x", &error), 0);
	CU_ASSERT_EQUAL(maildir_mailbox_rename(md, "b", "d", &error), -1);
	CU_ASSERT_STRING_EQUAL(error, "Mailbox already exists");
	CU_ASSERT_TRUE(is_dir("alice/.b"));
	CU_ASSERT_FALSE(is_dir("alice/.d"));
	CU_ASSERT_EQUAL(maildir_mailbox_rename(md, "b", "b.z", &error), -1);
	CU_ASSERT_STRING_EQUAL(error, "Cannot rename a mailbox into its own "
			       "hierarchy");
	CU_ASSERT_EQUAL(maildir_mailbox_rename(md, "INBOX", "old", &error),
			-1);
	CU_ASSERT_EQUAL(maildir_mailbox_rename(md, "b", "inbox", &error), -1);
	CU_ASSERT_EQUAL(maildir_mailbox_rename(md, "zz", "yy", &error), -1);
	CU_ASSERT_STRING_EQUAL(error, "Mailbox doesn't exist");
	CU_ASSERT_EQUAL(maildir_mailbox_rename(md, "b", "b", &error), -1);
	CU_ASSERT_EQUAL(maildir_mailbox_rename(md, "b", "../x", &error), -1);

	/* A crash after the parent moved: the replay moves the rest. */
	snprintf(from, sizeof(from), "%s/alice/.b", base);
	snprintf(to, sizeof(to), "%s/alice/.e", base);
	CU_ASSERT_EQUAL_FATAL(rename(from, to), 0);
	CU_ASSERT_EQUAL(maildir_mailbox_rename(md, "b", "e", &error), 0);
	CU_ASSERT_TRUE(is_dir("alice/.e.x/cur"));
	CU_ASSERT_TRUE(is_dir("alice/.e.x.y/cur"));
	CU_ASSERT_FALSE(is_dir("alice/.b.x"));
	CU_ASSERT_FALSE(is_dir("alice/.b.x.y"));
	maildir_free(&md);
	teardown();
}

static void test_mailbox_delete(void)
{
	struct maildir *md;
	const char *error = NULL;

	setup();
	md = open_user("alice");
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "a", &error), 0);
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "a.b", &error), 0);
	for (int i = 0; i < 20; i++) {
		char tag[16];

		snprintf(tag, sizeof(tag), "m%d", i);
		CU_ASSERT_EQUAL(maildir_deliver(md, "a", tag, 0, "x", 1,
						&error), 1);
	}
	CU_ASSERT_EQUAL(maildir_mailbox_delete(md, "a", &error), 0);
	CU_ASSERT_FALSE(is_dir("alice/.a"));
	CU_ASSERT_TRUE(is_dir("alice/.a.b/cur"));
	CU_ASSERT_EQUAL(count_entries("alice/tmp"), 0);
	CU_ASSERT_EQUAL(maildir_mailbox_delete(md, "a", &error), -1);
	CU_ASSERT_STRING_EQUAL(error, "Mailbox doesn't exist");
	CU_ASSERT_EQUAL(maildir_mailbox_delete(md, "INBOX", &error), -1);
	CU_ASSERT_STRING_EQUAL(error, "INBOX cannot be deleted");
	CU_ASSERT_TRUE(is_dir("alice/cur"));
	maildir_free(&md);
	teardown();
}

static void test_message_list(void)
{
	struct collected c;
	struct maildir *md;
	const char *error = NULL;
	char junk[1024];

	setup();
	md = open_user("alice");
	CU_ASSERT_EQUAL(maildir_deliver(md, "INBOX", "a", 0, "1", 1, &error),
			1);
	CU_ASSERT_EQUAL(maildir_deliver(md, "INBOX", "b", MAILDIR_FLAG_SEEN,
					"22", 2, &error), 1);
	CU_ASSERT_EQUAL(maildir_deliver(md, "INBOX", "c",
					MAILDIR_FLAG_DRAFT |
					MAILDIR_FLAG_ANSWERED, "333", 3,
					&error), 1);
	snprintf(junk, sizeof(junk), "%s/alice/cur/1234.M5P6.host", base);
	close(open(junk, O_CREAT | O_WRONLY, 0600));
	snprintf(junk, sizeof(junk), "%s/alice/cur/d:2,S", base);
	mkdir(junk, 0700);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(maildir_message_list(md, "INBOX", collect_message, &c,
					     &error), 0);
	CU_ASSERT_EQUAL_FATAL(c.n, 3);
	for (int i = 0; i < 3; i++) {
		if (strcmp(c.names[i], "a") == 0) {
			CU_ASSERT_EQUAL(c.flags[i], 0);
			CU_ASSERT_EQUAL(c.sizes[i], 1);
		} else if (strcmp(c.names[i], "b") == 0) {
			CU_ASSERT_EQUAL(c.flags[i], MAILDIR_FLAG_SEEN);
			CU_ASSERT_EQUAL(c.sizes[i], 2);
		} else {
			CU_ASSERT_STRING_EQUAL(c.names[i], "c");
			CU_ASSERT_EQUAL(c.flags[i], MAILDIR_FLAG_DRAFT |
						    MAILDIR_FLAG_ANSWERED);
			CU_ASSERT_EQUAL(c.sizes[i], 3);
		}
	}
	CU_ASSERT_EQUAL(maildir_message_list(md, "Nope", collect_message, &c,
					     &error), -1);
	maildir_free(&md);
	teardown();
}

static void make_file(const char *rel, time_t age)
{
	char path[1024];
	struct timespec ts[2];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", base, rel);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	CU_ASSERT_TRUE_FATAL(fd >= 0);
	if (write(fd, "partial", 7) != 7)
		CU_FAIL("write");
	close(fd);
	if (age > 0) {
		ts[0].tv_sec = ts[1].tv_sec = time(NULL) - age;
		ts[0].tv_nsec = ts[1].tv_nsec = 0;
		CU_ASSERT_EQUAL(utimensat(AT_FDCWD, path, ts, 0), 0);
	}
}

static void test_cleanup_tmp(void)
{
	struct maildir *md;
	const char *error = NULL;
	unsigned int removed = 99;
	char path[1024];

	setup();
	md = open_user("alice");
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "Sent", &error), 0);
	make_file("alice/tmp/pluto-123-4-tagA", 0);
	make_file("alice/tmp/1700000000.M1P2.otherhost", 0);
	make_file("alice/tmp/1600000000.M1P2.oldhost", 40 * 3600);
	snprintf(path, sizeof(path), "%s/alice/tmp/pluto-123-5-mbox", base);
	CU_ASSERT_EQUAL(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/alice/tmp/pluto-123-5-mbox/cur",
		 base);
	CU_ASSERT_EQUAL(mkdir(path, 0700), 0);
	make_file("alice/tmp/pluto-123-5-mbox/cur/x:2,S", 0);
	make_file("alice/.Sent/tmp/pluto-9-9-tagB", 0);
	make_file("alice/cur/keep:2,", 0);

	CU_ASSERT_EQUAL(maildir_cleanup_tmp(md, &removed, &error), 0);
	CU_ASSERT_EQUAL(removed, 4);
	CU_ASSERT_EQUAL(count_entries("alice/tmp"), 1);
	CU_ASSERT_TRUE(is_file("alice/tmp/1700000000.M1P2.otherhost"));
	CU_ASSERT_EQUAL(count_entries("alice/.Sent/tmp"), 0);
	CU_ASSERT_TRUE(is_file("alice/cur/keep:2,"));
	/* Nothing left to do the second time. */
	CU_ASSERT_EQUAL(maildir_cleanup_tmp(md, &removed, &error), 0);
	CU_ASSERT_EQUAL(removed, 0);
	maildir_free(&md);
	teardown();
}

/* Appends every path below base, to compare trees. */
static char tree_buf[65536];
static size_t tree_len;

static int tree_entry(const char *path, const struct stat *st, int flag,
		      struct FTW *ftw)
{
	size_t n = strlen(path);

	(void)st;
	(void)flag;
	(void)ftw;
	if (tree_len + n + 2 < sizeof(tree_buf)) {
		memcpy(tree_buf + tree_len, path, n);
		tree_buf[tree_len + n] = '\n';
		tree_len += n + 1;
		tree_buf[tree_len] = '\0';
	}
	return 0;
}

static char *snapshot(const char *dir)
{
	tree_len = 0;
	tree_buf[0] = '\0';
	nftw(dir, tree_entry, 16, FTW_PHYS);
	return strdup(tree_buf);
}

static void test_hostile_names(void)
{
	static const char *const hostile[] = {
		"../x", "../../etc", "a/b", "/etc/passwd", ".hidden", "..",
		".", "a..b", "", "a.", ".a", "a/../../b", "x&AAA-y", "*",
		"Entw\xc3\xbcrfe", "a\nb",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	static const char *const hostile_users[] = {
		"../x", "..", ".", "a/b", "/etc", ".hidden", "", "a\nb",
		"\xc3\xa9", "a b",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaa",
	};
	struct maildir_delivery *d = NULL;
	struct maildir *md, *bad = NULL;
	const char *error = NULL;
	char *parent, *before, *after, *pbefore, *pafter, *slash;
	uint64_t size;
	int fd;

	setup();
	md = open_user("alice");
	CU_ASSERT_EQUAL(maildir_mailbox_create(md, "ok", &error), 0);
	CU_ASSERT_EQUAL(maildir_deliver(md, "ok", "m", 0, "x", 1, &error), 1);
	parent = strdup(base);
	slash = strrchr(parent, '/');
	CU_ASSERT_PTR_NOT_NULL_FATAL(slash);
	*slash = '\0';
	before = snapshot(base);
	pbefore = snapshot(parent);
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		const char *h = hostile[i];

		CU_ASSERT_EQUAL(maildir_mailbox_create(md, h, &error), -1);
		CU_ASSERT_EQUAL(maildir_mailbox_delete(md, h, &error), -1);
		CU_ASSERT_EQUAL(maildir_mailbox_rename(md, "ok", h, &error),
				-1);
		CU_ASSERT_EQUAL(maildir_mailbox_rename(md, h, "new", &error),
				-1);
		CU_ASSERT_EQUAL(maildir_deliver(md, h, "t", 0, "x", 1, &error),
				-1);
		CU_ASSERT_EQUAL(maildir_delivery_begin(md, h, "t", 0, &d,
						       &error), -1);
		CU_ASSERT_EQUAL(maildir_message_open(md, h, "m", 0, &fd,
						     &size, &error), -1);
		CU_ASSERT_EQUAL(maildir_message_set_flags(md, h, "m", 0, 1,
							  &error), -1);
		CU_ASSERT_EQUAL(maildir_message_expunge(md, h, "m", 0,
							&error), -1);
		CU_ASSERT_FALSE(maildir_mailbox_exists(md, h));
		/* Hostile tags too. */
		CU_ASSERT_EQUAL(maildir_deliver(md, "ok", h, 0, "x", 1,
						&error), -1);
		CU_ASSERT_EQUAL(maildir_message_expunge(md, "ok", h, 0,
							&error), -1);
	}
	for (size_t i = 0; i < sizeof(hostile_users) /
				   sizeof(hostile_users[0]); i++) {
		const char *h = hostile_users[i];

		CU_ASSERT_EQUAL(maildir_open(base, h, strlen(h), '.', &bad,
					     &error), -1);
	}
	CU_ASSERT_EQUAL(maildir_open(base, "a\0b", 3, '.', &bad, &error), -1);
	CU_ASSERT_EQUAL(maildir_deliver(md, "ok", "m\xff", 0, "x", 1, &error),
			-1);
	after = snapshot(base);
	pafter = snapshot(parent);
	CU_ASSERT_STRING_EQUAL(before, after);
	CU_ASSERT_STRING_EQUAL(pbefore, pafter);
	free(before);
	free(after);
	free(pbefore);
	free(pafter);
	free(parent);
	maildir_free(&md);
	teardown();
}

static int list_files(const char *rel, char out[][64], int max)
{
	char path[1024];
	struct dirent *de;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", base, rel);
	dir = opendir(path);
	if (dir == NULL)
		return -1;
	while ((de = readdir(dir)) != NULL && n < max) {
		if (de->d_name[0] == '.')
			continue;
		if (strlen(de->d_name) >= 64)
			continue;
		memcpy(out[n++], de->d_name, strlen(de->d_name) + 1);
	}
	closedir(dir);
	qsort(out, (size_t)n, 64, cmp_names);
	return n;
}

static void test_replicas_name_identically(void)
{
	struct maildir *w, *s;
	const char *error = NULL;
	char wf[8][64], sf[8][64];
	int nw, ns;

	setup();
	/* Two users stand in for the worker's and the storage's copy. */
	w = open_user("worker");
	s = open_user("storage");
	for (int r = 0; r < 2; r++) {
		struct maildir *md = r == 0 ? w : s;

		CU_ASSERT_EQUAL(maildir_mailbox_create(md, "Work", &error), 0);
		CU_ASSERT_EQUAL(maildir_deliver(md, "Work", "n1-0000002a", 0,
						"msg", 3, &error), 1);
		CU_ASSERT_EQUAL(maildir_deliver(md, "Work", "n2-00000001",
						MAILDIR_FLAG_FLAGGED, "m2", 2,
						&error), 1);
		CU_ASSERT_EQUAL(maildir_message_set_flags(md, "Work",
				"n1-0000002a", 0, MAILDIR_FLAG_SEEN |
				MAILDIR_FLAG_ANSWERED, &error), 0);
	}
	nw = list_files("worker/.Work/cur", wf, 8);
	ns = list_files("storage/.Work/cur", sf, 8);
	CU_ASSERT_EQUAL_FATAL(nw, 2);
	CU_ASSERT_EQUAL_FATAL(ns, 2);
	CU_ASSERT_STRING_EQUAL(wf[0], "n1-0000002a:2,RS");
	CU_ASSERT_STRING_EQUAL(wf[1], "n2-00000001:2,F");
	for (int i = 0; i < 2; i++)
		CU_ASSERT_STRING_EQUAL(wf[i], sf[i]);
	maildir_free(&w);
	maildir_free(&s);
	teardown();
}

static CU_TestInfo tests[] = {
	{ "file names from tags and flags", test_file_names },
	{ "user names", test_user_names },
	{ "open creates the user's Maildir", test_open_layout },
	{ "deliver and read back", test_deliver_and_read },
	{ "streamed delivery, abort", test_streamed_delivery },
	{ "write failure leaves nothing", test_write_failure_leaves_nothing },
	{ "flags rename, expunge", test_flags_and_expunge },
	{ "mailbox create and list", test_mailbox_create_list },
	{ "separator '/'", test_separator_slash },
	{ "mailbox rename with children", test_mailbox_rename },
	{ "mailbox delete", test_mailbox_delete },
	{ "message list for recovery", test_message_list },
	{ "tmp cleaned at start-up", test_cleanup_tmp },
	{ "hostile names touch nothing", test_hostile_names },
	{ "replicas name files identically",
	  test_replicas_name_identically },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("maildir", tests);
}
