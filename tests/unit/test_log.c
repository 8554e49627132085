/*
 * test_log.c - logfmt quoting, level names and context fields.
 */
#include "autoconfig.h"

#include "cu_run.h"
#include "log.h"

#include <errno.h>
#include <string.h>

static void test_quote_plain(void)
{
	char buf[64];

	log_quote(buf, sizeof(buf), "alice");
	CU_ASSERT_STRING_EQUAL(buf, "alice");
}

static void test_quote_special(void)
{
	char buf[64];

	log_quote(buf, sizeof(buf), "a b");
	CU_ASSERT_STRING_EQUAL(buf, "\"a b\"");
	log_quote(buf, sizeof(buf), "x=\"y\"");
	CU_ASSERT_STRING_EQUAL(buf, "\"x=\\\"y\\\"\"");
	log_quote(buf, sizeof(buf), "line\nforged level=error");
	CU_ASSERT_STRING_EQUAL(buf, "\"line\\nforged level=error\"");
	log_quote(buf, sizeof(buf), "");
	CU_ASSERT_STRING_EQUAL(buf, "\"\"");
	log_quote(buf, sizeof(buf), "\x01");
	CU_ASSERT_STRING_EQUAL(buf, "\"\\x01\"");
}

static void test_quote_truncates(void)
{
	char buf[8];

	log_quote(buf, sizeof(buf), "a very long value with spaces");
	CU_ASSERT(strlen(buf) < sizeof(buf));
	CU_ASSERT_EQUAL(buf[0], '"');
}

static void test_level_parse(void)
{
	enum log_level level = LOG_LEVEL_INFO;

	CU_ASSERT_TRUE(log_level_parse("DEBUG", &level));
	CU_ASSERT_EQUAL(level, LOG_LEVEL_DEBUG);
	CU_ASSERT_TRUE(log_level_parse("warning", &level));
	CU_ASSERT_EQUAL(level, LOG_LEVEL_WARN);
	CU_ASSERT_FALSE(log_level_parse("loud", &level));
	CU_ASSERT_EQUAL(level, LOG_LEVEL_WARN);
	CU_ASSERT_STRING_EQUAL(log_level_name(LOG_LEVEL_ERROR), "error");
}

static void test_errno_preserved(void)
{
	log_init("test", LOG_LEVEL_ERROR, false);
	log_context_set("user", "bob");
	log_context_set("user", NULL);
	errno = ENOSPC;
	log_warn("filtered out");
	CU_ASSERT_EQUAL(errno, ENOSPC);
	errno = EIO;
	log_error("shown on stderr (expected in test output)");
	CU_ASSERT_EQUAL(errno, EIO);
	log_context_clear();
}

static CU_TestInfo tests[] = {
	{ "quote plain", test_quote_plain },
	{ "quote special", test_quote_special },
	{ "quote truncates", test_quote_truncates },
	{ "level parse", test_level_parse },
	{ "errno preserved", test_errno_preserved },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("log", tests);
}
