/*
 * test_mailbox_name.c - a table of valid and hostile mailbox names with
 * their canonical form and directory or their exact error, under both the
 * default separator and '/', plus the reverse mapping and its refusals.
 */
#include "autoconfig.h"

#include "mailbox_name.h"
#include "cu_run.h"

#include <stdio.h>
#include <string.h>

struct name_case {
	const char *name;
	size_t len;		/* 0: strlen */
	char sep;
	const char *canon;	/* NULL: must be refused */
	const char *dir_or_error;
};

#define OK(n, s, c, d) { n, 0, s, c, d }
#define NO(n, s, e) { n, 0, s, NULL, e }

#define E_EMPTY "Mailbox name is empty"
#define E_LONG "Mailbox name is too long"
#define E_NUL "Mailbox name contains NUL"
#define E_CTRL "Mailbox name contains a control character"
#define E_8BIT "Mailbox name contains 8-bit characters (use modified UTF-7)"
#define E_SLASH "Mailbox name contains '/'"
#define E_WILD "Mailbox name contains a wildcard (* or %)"
#define E_LEVEL "Mailbox name has an empty hierarchy level"
#define E_DOTDOT "Mailbox name has a '..' hierarchy level"
#define E_DOT "Mailbox name has a hierarchy level starting with '.'"
#define E_RESDOT "Mailbox name contains '.', reserved when the hierarchy " \
		 "separator is not '.'"

/* 255 and 254 'a's. */
#define A50 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define A254 A50 A50 A50 A50 A50 "aaaa"

static const struct name_case cases[] = {
	/* Valid, default separator. */
	OK("INBOX", '.', "INBOX", ""),
	OK("inbox", '.', "INBOX", ""),
	OK("InBoX", '.', "INBOX", ""),
	OK("inbox.Sub", '.', "INBOX.Sub", ".INBOX.Sub"),
	OK("INBOX.sub.inbox", '.', "INBOX.sub.inbox", ".INBOX.sub.inbox"),
	OK("Sent", '.', "Sent", ".Sent"),
	OK("sent", '.', "sent", ".sent"),
	OK("a.b", '.', "a.b", ".a.b"),
	OK("a.b.c", '.', "a.b.c", ".a.b.c"),
	OK("inboxes", '.', "inboxes", ".inboxes"),
	OK("Inbox2.x", '.', "Inbox2.x", ".Inbox2.x"),
	OK("x.INBOX", '.', "x.INBOX", ".x.INBOX"),
	OK("Entw&APw-rfe", '.', "Entw&APw-rfe", ".Entw&APw-rfe"),
	OK("~peter.mail.&U,BTFw-", '.', "~peter.mail.&U,BTFw-",
	   ".~peter.mail.&U,BTFw-"),
	NO("Tom & Jerry", '.', "modified UTF-7: invalid character in &-run"),
	OK("Tom &- Jerry", '.', "Tom &- Jerry", ".Tom &- Jerry"),
	OK("a b", '.', "a b", ".a b"),
	OK("a:b", '.', "a:b", ".a:b"),
	OK("cur", '.', "cur", ".cur"),
	OK("a-", '.', "a-", ".a-"),
	NO("a.b..", '.', E_LEVEL),
	OK(A254, '.', A254, "." A254),
	/* Valid, separator '/'. */
	OK("a/b", '/', "a/b", ".a.b"),
	OK("inbox/x", '/', "INBOX/x", ".INBOX.x"),
	OK("INBOX", '/', "INBOX", ""),
	OK("x:y/z", '/', "x:y/z", ".x:y.z"),
	OK("&ZeVnLIqe-/&U,BTFw-", '/', "&ZeVnLIqe-/&U,BTFw-",
	   ".&ZeVnLIqe-.&U,BTFw-"),
	/* Hostile or malformed. */
	NO("", '.', E_EMPTY),
	{ "x\0y", 3, '.', NULL, E_NUL },
	{ "\0", 1, '.', NULL, E_NUL },
	{ "INBOX\0", 6, '.', NULL, E_NUL },
	NO("../x", '.', E_SLASH),
	NO("a/b", '.', E_SLASH),
	NO("/etc", '.', E_SLASH),
	NO("..", '.', E_LEVEL),
	NO(".", '.', E_LEVEL),
	NO(".hidden", '.', E_LEVEL),
	NO("a..b", '.', E_LEVEL),
	NO("a.", '.', E_LEVEL),
	NO("a.b.", '.', E_LEVEL),
	NO("inbox.", '.', E_LEVEL),
	NO("a\tb", '.', E_CTRL),
	NO("a\nb", '.', E_CTRL),
	NO("a\rb", '.', E_CTRL),
	NO("a\x7f", '.', E_CTRL),
	NO("a&AAA-", '.', E_CTRL),		/* encoded U+0000 */
	NO("&AAo-", '.', E_CTRL),		/* encoded LF */
	NO("&AH8-", '.', E_CTRL),		/* encoded DEL */
	NO("&AIU-", '.', E_CTRL),		/* encoded U+0085 (C1) */
	NO("Entw\xc3\xbcrfe", '.', E_8BIT),
	NO("\xff", '.', E_8BIT),
	NO("*", '.', E_WILD),
	NO("a%", '.', E_WILD),
	NO("a&", '.', "modified UTF-7: unterminated &-run"),
	NO("&AGE-", '.', "modified UTF-7: printable ASCII in &-run"),
	NO("&AOl-", '.', "modified UTF-7: non-zero bits at end of &-run"),
	NO("&AC8-", '.', "modified UTF-7: printable ASCII in &-run"),
	NO("&2D0-", '.', "modified UTF-7: unpaired surrogate"),
	NO("&AOk-&AOk-", '.', "modified UTF-7: adjacent &-runs"),
	NO(A254 "a", '.', E_LONG),
	NO(A254 A254, '.', E_LONG),
	/* Hostile, separator '/'. */
	NO("a.b", '/', E_RESDOT),
	NO("..", '/', E_RESDOT),
	NO("../x", '/', E_RESDOT),
	NO("/x", '/', E_LEVEL),
	NO("x/", '/', E_LEVEL),
	NO("a//b", '/', E_LEVEL),
	NO("x/.y", '/', E_RESDOT),
};

static void test_table(void)
{
	size_t n = sizeof(cases) / sizeof(cases[0]), checked = 0;

	for (size_t i = 0; i < n; i++) {
		const struct name_case *c = &cases[i];
		size_t len = c->len != 0 ? c->len : strlen(c->name);
		char canon[MAILBOX_NAME_BUFSIZE];
		char dir[MAILBOX_DIR_BUFSIZE], back[MAILBOX_NAME_BUFSIZE];
		const char *error = NULL;
		int ret;

		checked++;
		ret = mailbox_name_validate(c->name, len, c->sep, canon,
					    &error);
		if (c->canon == NULL) {
			if (ret != -1 || error == NULL ||
			    strcmp(error, c->dir_or_error) != 0) {
				fprintf(stderr, "case %zu: ret %d error '%s'\n",
					i, ret, error ? error : "(none)");
				CU_FAIL("hostile name not refused as expected");
			}
			continue;
		}
		if (ret != 0) {
			fprintf(stderr, "case %zu: refused: %s\n", i, error);
			CU_FAIL("valid name refused");
			continue;
		}
		CU_ASSERT_STRING_EQUAL(canon, c->canon);
		CU_ASSERT_EQUAL(mailbox_name_to_dir(c->name, c->sep, dir,
						    &error), 0);
		CU_ASSERT_STRING_EQUAL(dir, c->dir_or_error);
		/* Mapping back gives the canonical name. */
		CU_ASSERT_EQUAL(mailbox_name_from_dir(dir, c->sep, back,
						      &error), 0);
		CU_ASSERT_STRING_EQUAL(back, c->canon);
	}
	CU_ASSERT_TRUE(checked >= 60);
}

static void test_inbox_only_first_level(void)
{
	char canon[MAILBOX_NAME_BUFSIZE];
	const char *error = NULL;

	CU_ASSERT_TRUE(mailbox_name_is_inbox("INBOX"));
	CU_ASSERT_FALSE(mailbox_name_is_inbox("inbox"));
	CU_ASSERT_FALSE(mailbox_name_is_inbox("INBOX.x"));
	CU_ASSERT_EQUAL(mailbox_name_validate("iNbOx.iNbOx", 11, '.', canon,
					      &error), 0);
	CU_ASSERT_STRING_EQUAL(canon, "INBOX.iNbOx");
	/* With separator '/', "inbox.x" is one level (and has a '.'). */
	CU_ASSERT_EQUAL(mailbox_name_validate("inbox.x", 7, '/', canon,
					      &error), -1);
	/* "inbox/x" under '.' has a '/'. */
	CU_ASSERT_EQUAL(mailbox_name_validate("inbox/x", 7, '.', canon,
					      &error), -1);
}

static void test_separators(void)
{
	static const char good[] = "./:|^!#$~_;<>=?@'`[";
	static const char bad[] = "&-+,*%\"\\(){} ]aZ09";
	char canon[MAILBOX_NAME_BUFSIZE];
	const char *error = NULL;

	for (size_t i = 0; good[i] != '\0'; i++)
		CU_ASSERT_TRUE(mailbox_name_sep_is_valid(good[i]));
	for (size_t i = 0; bad[i] != '\0'; i++)
		CU_ASSERT_FALSE(mailbox_name_sep_is_valid(bad[i]));
	CU_ASSERT_FALSE(mailbox_name_sep_is_valid('\0'));
	CU_ASSERT_FALSE(mailbox_name_sep_is_valid('\x7f'));
	CU_ASSERT_FALSE(mailbox_name_sep_is_valid((char)0xe9));
	CU_ASSERT_EQUAL(mailbox_name_validate("a", 1, '&', canon, &error),
			-1);
	CU_ASSERT_STRING_EQUAL(error, "Invalid hierarchy separator");
	/* ':' as separator: levels map to '.', ':' never reaches a path. */
	CU_ASSERT_EQUAL(mailbox_name_validate("a:b", 3, ':', canon, &error),
			0);
	{
		char dir[MAILBOX_DIR_BUFSIZE];

		CU_ASSERT_EQUAL(mailbox_name_to_dir("a:b", ':', dir, &error),
				0);
		CU_ASSERT_STRING_EQUAL(dir, ".a.b");
	}
}

struct dir_case {
	const char *dir;
	char sep;
	const char *name;	/* NULL: refused */
};

static const struct dir_case dir_cases[] = {
	{ "", '.', "INBOX" },
	{ ".Sent", '.', "Sent" },
	{ ".a.b", '.', "a.b" },
	{ ".a.b", '/', "a/b" },
	{ ".INBOX.x", '.', "INBOX.x" },
	{ ".INBOX", '.', NULL },	/* would alias INBOX itself */
	{ ".inbox.x", '.', NULL },	/* not canonical */
	{ ".Inbox", '/', NULL },
	{ ".", '.', NULL },
	{ "..", '.', NULL },
	{ "..x", '.', NULL },
	{ ".x.", '.', NULL },
	{ ".a..b", '.', NULL },
	{ "cur", '.', NULL },
	{ "tmp", '.', NULL },
	{ "new", '.', NULL },
	{ "maildirfolder", '.', NULL },
	{ ".a:b", ':', NULL },		/* ':' would be a separator */
	{ ".a\xc3\xa9", '.', NULL },
	{ ".a\nb", '.', NULL },
	{ ".*", '.', NULL },
	{ "." A254, '.', A254 },
	{ ".a" A254, '.', NULL },
};

static void test_from_dir(void)
{
	for (size_t i = 0; i < sizeof(dir_cases) / sizeof(dir_cases[0]);
	     i++) {
		char name[MAILBOX_NAME_BUFSIZE];
		const char *error = NULL;
		int ret;

		ret = mailbox_name_from_dir(dir_cases[i].dir, dir_cases[i].sep,
					    name, &error);
		if (dir_cases[i].name == NULL) {
			if (ret != -1) {
				fprintf(stderr, "dir case %zu accepted\n", i);
				CU_FAIL("hostile directory accepted");
			}
			continue;
		}
		CU_ASSERT_EQUAL(ret, 0);
		if (ret == 0)
			CU_ASSERT_STRING_EQUAL(name, dir_cases[i].name);
	}
}

static void test_to_dir_refuses_long_strings(void)
{
	char big[4096], dir[MAILBOX_DIR_BUFSIZE];
	const char *error = NULL;

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CU_ASSERT_EQUAL(mailbox_name_to_dir(big, '.', dir, &error), -1);
	CU_ASSERT_STRING_EQUAL(error, E_LONG);
	CU_ASSERT_EQUAL(mailbox_name_to_dir("../../etc", '.', dir, &error),
			-1);
}

static CU_TestInfo tests[] = {
	{ "table of valid and hostile names", test_table },
	{ "INBOX is case-insensitive, first level only",
	  test_inbox_only_first_level },
	{ "separator choices", test_separators },
	{ "directory to name", test_from_dir },
	{ "long strings refused", test_to_dir_refuses_long_strings },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("mailbox_name", tests);
}
