/*
 * test_imapd.c - the opening line of an internal session: a table of
 * lines that must parse (with their fields) and of lines that must be
 * refused, each also with the line cut short and with a NUL inside.
 */
#include "autoconfig.h"

#include "cu_run.h"
#include "imapd.h"

#include <string.h>

struct good_case {
	const char *line;
	const char *user, *client, *worker;
};

static const struct good_case good[] = {
	{ "PLUTO-SESSION 1 alice 192.0.2.1:993", "alice", "192.0.2.1:993",
	  "" },
	{ "PLUTO-SESSION 1 bob [2001:db8::1]:50000 worker-1", "bob",
	  "[2001:db8::1]:50000", "worker-1" },
	{ "PLUTO-SESSION 1 j\xc3\xb6rg@example.org 127.0.0.1:1",
	  "j\xc3\xb6rg@example.org", "127.0.0.1:1", "" },
	{ "PLUTO-SESSION 1 a.b 1:2 w_2.x", "a.b", "1:2", "w_2.x" },
};

static const char *const bad[] = {
	"",
	"PLUTO-SESSION",
	"PLUTO-SESSION 1",
	"PLUTO-SESSION 1 alice",
	"PLUTO-SESSION 2 alice 192.0.2.1:993",
	"PLUTO-SESSION 01 alice 192.0.2.1:993",
	"pluto-session 1 alice 192.0.2.1:993",
	"PLUTO-SESSION  1 alice 192.0.2.1:993",
	"PLUTO-SESSION 1 alice  192.0.2.1:993",
	"PLUTO-SESSION 1 alice 192.0.2.1:993 ",
	"PLUTO-SESSION 1 alice 192.0.2.1:993 worker-1 x",
	"PLUTO-SESSION 1 alice 192.0.2.1:993 work/er",
	"PLUTO-SESSION 1 .alice 192.0.2.1:993",
	"PLUTO-SESSION 1 .. 192.0.2.1:993",
	"PLUTO-SESSION 1 a/b 192.0.2.1:993",
	"PLUTO-SESSION 1 a\tb 192.0.2.1:993",
	"PLUTO-SESSION 1 a\x7f 192.0.2.1:993",
	"PLUTO-SESSION 1 \xc3 192.0.2.1:993",		/* truncated UTF-8 */
	"PLUTO-SESSION 1 \xc0\xaf 192.0.2.1:993",	/* overlong '/' */
	"PLUTO-SESSION 1 \xed\xa0\x80 192.0.2.1:993",	/* surrogate */
	"PLUTO-SESSION 1 \xc2\x85 192.0.2.1:993",	/* C1 control */
	"PLUTO-SESSION 1 \xf4\x90\x80\x80 192.0.2.1:993", /* > U+10FFFF */
	"PLUTO-SESSION 1 alice 192.0.2.1:\x01",
	"PLUTO-SESSION 1 alice 192.0.2.\xc3\xa9",
};

static void test_good_lines(void)
{
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct imapd_opening o;
		const char *error = NULL;

		CU_ASSERT_EQUAL_FATAL(imapd_parse_opening(good[i].line,
							  strlen(good[i].line),
							  &o, &error),
				      0);
		CU_ASSERT_STRING_EQUAL(o.user, good[i].user);
		CU_ASSERT_STRING_EQUAL(o.client, good[i].client);
		CU_ASSERT_STRING_EQUAL(o.worker, good[i].worker);
	}
}

static void test_bad_lines(void)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct imapd_opening o;
		const char *error = NULL;

		CU_ASSERT_EQUAL(imapd_parse_opening(bad[i], strlen(bad[i]),
						    &o, &error),
				-1);
		CU_ASSERT_PTR_NOT_NULL(error);
	}
}

/* A NUL anywhere is refused; a prefix of a good line is good exactly
 * when it still holds a (shorter) client address and does not end with a
 * space. */
static void test_nul_and_prefixes(void)
{
	char line[128];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		size_t len = strlen(good[i].line);
		size_t client_at = (size_t)(strstr(good[i].line,
						   good[i].client) -
					    good[i].line);

		CU_ASSERT_FATAL(len < sizeof(line));
		for (size_t cut = 0; cut < len; cut++) {
			struct imapd_opening o;
			const char *error = NULL;
			int want = cut > client_at &&
					   good[i].line[cut - 1] != ' '
					   ? 0
					   : -1;

			CU_ASSERT_EQUAL(imapd_parse_opening(good[i].line, cut,
							    &o, &error),
					want);
			memcpy(line, good[i].line, len);
			line[cut] = '\0';
			CU_ASSERT_EQUAL(imapd_parse_opening(line, len, &o,
							    &error),
					-1);
		}
	}
}

/* A 255-byte user is the longest; 256 bytes are refused. */
static void test_user_length(void)
{
	char line[400];
	struct imapd_opening o;
	const char *error = NULL;
	int n;

	n = snprintf(line, sizeof(line), "PLUTO-SESSION 1 %0255d 1:2", 0);
	CU_ASSERT_EQUAL(imapd_parse_opening(line, (size_t)n, &o, &error), 0);
	CU_ASSERT_EQUAL(strlen(o.user), 255);
	n = snprintf(line, sizeof(line), "PLUTO-SESSION 1 %0256d 1:2", 0);
	CU_ASSERT_EQUAL(imapd_parse_opening(line, (size_t)n, &o, &error), -1);
}

static CU_TestInfo tests[] = {
	{ "good opening lines", test_good_lines },
	{ "bad opening lines", test_bad_lines },
	{ "NUL bytes and truncation", test_nul_and_prefixes },
	{ "user name length", test_user_length },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("imapd", tests);
}
