/*
 * test_mutf7.c - modified UTF-7: known vectors both ways, a table of
 * malformed mUTF-7 and malformed UTF-8 with the exact error, and round
 * trips (random text through encode/decode, and random wire strings that
 * decode must either refuse or reproduce exactly when re-encoded, which is
 * what "strict" means).
 */
#include "autoconfig.h"

#include "mutf7.h"
#include "cu_run.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vector {
	const char *utf8;
	size_t utf8_len;	/* 0: strlen */
	const char *mutf7;
};

static const struct vector vectors[] = {
	{ "", 0, "" },
	{ "INBOX", 0, "INBOX" },
	{ "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
	  "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 0,
	  "~peter/mail/&U,BTFw-/&ZeVnLIqe-" },
	{ "&", 0, "&-" },
	{ "a&b", 0, "a&-b" },
	{ "&&", 0, "&-&-" },
	{ "\xc3\xa9", 0, "&AOk-" },
	{ "Entw\xc3\xbcrfe", 0, "Entw&APw-rfe" },
	{ "\xf0\x9f\x98\x80", 0, "&2D3eAA-" },
	{ "\xf0\x9d\x84\x9ex", 0, "&2DTdHg-x" },
	{ "\xf4\x8f\xbf\xbf", 0, "&2,,f,w-" },
	{ "\xef\xbf\xbd", 0, "&,,0-" },
	{ "\x01", 0, "&AAE-" },
	{ "\x7f", 0, "&AH8-" },
	{ "\0", 1, "&AAA-" },
	{ "a&b\x01&", 0, "a&-b&AAE-&-" },
	{ "\xd0\x96&\xd0\x96", 0, "&BBY-&-&BBY-" },
	{ "\xc3\xa9\xf0\x9f\x98\x80\xc3\xa9", 0, "&AOnYPd4AAOk-" },
	{ "\xd0\xa7\xd0\xb5\xd1\x80\xd0\xbd\xd0\xbe\xd0\xb2\xd0\xb8\xd0\xba"
	  "\xd0\xb8", 0, "&BCcENQRABD0EPgQyBDgEOgQ4-" },
	{ " !\"#$%'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~", 0,
	  " !\"#$%'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~" },
};

static void test_vectors(void)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const struct vector *v = &vectors[i];
		size_t ulen = v->utf8_len != 0 ? v->utf8_len : strlen(v->utf8);
		struct buf b = BUF_INIT;
		const char *error = NULL;

		CU_ASSERT_EQUAL(mutf7_encode(v->utf8, ulen, &b, &error), 0);
		if (b.len != strlen(v->mutf7) ||
		    (b.len > 0 && memcmp(b.data, v->mutf7, b.len) != 0)) {
			fprintf(stderr, "encode %zu: got '%s'\n", i,
				buf_cstr(&b));
			CU_FAIL("encode mismatch");
		}
		buf_reset(&b);
		CU_ASSERT_EQUAL(mutf7_decode(v->mutf7, strlen(v->mutf7), &b,
					     &error), 0);
		CU_ASSERT_EQUAL(b.len, ulen);
		CU_ASSERT_TRUE(b.len == 0 ||
			       memcmp(b.data, v->utf8, ulen) == 0);
		buf_free(&b);
	}
}

struct bad_case {
	const char *input;
	size_t len;		/* 0: strlen */
	const char *error;
};

#define E_UNTERM "modified UTF-7: unterminated &-run"
#define E_CHAR "modified UTF-7: invalid character in &-run"
#define E_ASCII "modified UTF-7: printable ASCII in &-run"
#define E_SURR "modified UTF-7: unpaired surrogate"
#define E_EXTRA "modified UTF-7: superfluous base64 character"
#define E_BITS "modified UTF-7: non-zero bits at end of &-run"
#define E_ADJ "modified UTF-7: adjacent &-runs"
#define E_8BIT "modified UTF-7: 8-bit character"
#define E_CTRL "modified UTF-7: control character"

static const struct bad_case bad_mutf7[] = {
	{ "&", 0, E_UNTERM },
	{ "abc&", 0, E_UNTERM },
	{ "&-&", 0, E_UNTERM },
	{ "&AOk", 0, E_UNTERM },
	{ "&ZeVnLIqe", 0, E_UNTERM },
	{ "&AOk-&AOk", 0, E_ADJ },
	{ "&Jjo!-", 0, E_CHAR },
	{ "&U/BTFw-", 0, E_CHAR },
	{ "&AOk=-", 0, E_CHAR },
	{ "&AO k-", 0, E_CHAR },
	{ "&&-", 0, E_CHAR },
	{ "&AGE-", 0, E_ASCII },		/* 'a' */
	{ "&ACY-", 0, E_ASCII },		/* '&' */
	{ "&ACA-", 0, E_ASCII },		/* ' ' */
	{ "&AH4-", 0, E_ASCII },		/* '~' */
	{ "&AOkAYQ-", 0, E_ASCII },		/* e-acute, 'a' */
	{ "&2D0-", 0, E_SURR },			/* lone high */
	{ "&3gA-", 0, E_SURR },			/* lone low */
	{ "&2D3YPQ-", 0, E_SURR },		/* high, high */
	{ "&2D0AQQ-", 0, E_SURR },		/* high, 'A' */
	{ "&3gDYPQ-", 0, E_SURR },		/* low, high */
	{ "&AOnYPQ-", 0, E_SURR },		/* e-acute, high */
	{ "&2D0-&3gA-", 0, E_SURR },		/* pair split across runs */
	{ "&A-", 0, E_EXTRA },
	{ "&AOkA-", 0, E_EXTRA },
	{ "&AOkAAAA-", 0, E_EXTRA },
	{ "&AOl-", 0, E_BITS },
	{ "&AOn-", 0, E_BITS },
	{ "&2D3eAB-", 0, E_BITS },
	{ "&AOk-&AOk-", 0, E_ADJ },
	{ "&U,BTFw-&ZeVnLIqe-", 0, E_ADJ },
	{ "\xc3\xa9", 0, E_8BIT },
	{ "abc\xff", 0, E_8BIT },
	{ "\x01", 0, E_CTRL },
	{ "a\tb", 0, E_CTRL },
	{ "\x7f", 0, E_CTRL },
	{ "a\0b", 3, E_CTRL },
	{ "a\r\n", 0, E_CTRL },
};

static const struct bad_case bad_utf8[] = {
	{ "\xc0\xaf", 0, "invalid UTF-8: overlong encoding" },
	{ "\xc1\xbf", 0, "invalid UTF-8: overlong encoding" },
	{ "\xe0\x80\xaf", 0, "invalid UTF-8: overlong encoding" },
	{ "\xe0\x9f\xbf", 0, "invalid UTF-8: overlong encoding" },
	{ "\xf0\x80\x80\xaf", 0, "invalid UTF-8: overlong encoding" },
	{ "\xf0\x8f\xbf\xbf", 0, "invalid UTF-8: overlong encoding" },
	{ "\xed\xa0\x80", 0, "invalid UTF-8: surrogate code point" },
	{ "\xed\xbf\xbf", 0, "invalid UTF-8: surrogate code point" },
	{ "a\xed\xa0\xbd\xed\xb8\x80", 0,
	  "invalid UTF-8: surrogate code point" },	/* CESU-8 */
	{ "\xf4\x90\x80\x80", 0, "invalid UTF-8: code point above U+10FFFF" },
	{ "\xf5\x80\x80\x80", 0, "invalid UTF-8: code point above U+10FFFF" },
	{ "\xf8\x88\x80\x80\x80", 0,
	  "invalid UTF-8: code point above U+10FFFF" },
	{ "\xfe", 0, "invalid UTF-8: code point above U+10FFFF" },
	{ "\xff", 0, "invalid UTF-8: code point above U+10FFFF" },
	{ "\x80", 0, "invalid UTF-8: unexpected continuation byte" },
	{ "ab\xbf", 0, "invalid UTF-8: unexpected continuation byte" },
	{ "\xc3", 0, "invalid UTF-8: truncated sequence" },
	{ "\xe6\x97", 0, "invalid UTF-8: truncated sequence" },
	{ "\xf0\x9f\x98", 0, "invalid UTF-8: truncated sequence" },
	{ "\xc3\x28", 0, "invalid UTF-8: truncated sequence" },
	{ "\xe6\x97x", 0, "invalid UTF-8: truncated sequence" },
	{ "\xc3\xa9\xc3", 0, "invalid UTF-8: truncated sequence" },
};

static void run_bad(const struct bad_case *cases, size_t n,
		    int (*fn)(const void *, size_t, struct buf *,
			      const char **), const char *what)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = cases[i].len != 0 ? cases[i].len :
						 strlen(cases[i].input);
		struct buf b = BUF_INIT;
		const char *error = NULL;

		buf_append_str(&b, "keep");
		CU_ASSERT_EQUAL(fn(cases[i].input, len, &b, &error), -1);
		/* A failure leaves the buffer as it was. */
		CU_ASSERT_EQUAL(b.len, 4);
		if (error == NULL || strcmp(error, cases[i].error) != 0) {
			fprintf(stderr, "%s case %zu: got '%s'\n", what, i,
				error != NULL ? error : "(none)");
			CU_FAIL("wrong error");
		}
		buf_free(&b);
	}
}

static void test_bad_mutf7(void)
{
	run_bad(bad_mutf7, sizeof(bad_mutf7) / sizeof(bad_mutf7[0]),
		mutf7_decode, "decode");
}

static void test_bad_utf8(void)
{
	run_bad(bad_utf8, sizeof(bad_utf8) / sizeof(bad_utf8[0]),
		mutf7_encode, "encode");
}

/* Appends the UTF-8 of cp (a valid scalar value). */
static void put_utf8(struct buf *b, uint32_t cp)
{
	unsigned char o[4];

	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		buf_append(b, o, 1);
	} else if (cp < 0x800) {
		o[0] = (unsigned char)(0xc0 | cp >> 6);
		o[1] = (unsigned char)(0x80 | (cp & 0x3f));
		buf_append(b, o, 2);
	} else if (cp < 0x10000) {
		o[0] = (unsigned char)(0xe0 | cp >> 12);
		o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (unsigned char)(0x80 | (cp & 0x3f));
		buf_append(b, o, 3);
	} else {
		o[0] = (unsigned char)(0xf0 | cp >> 18);
		o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		o[3] = (unsigned char)(0x80 | (cp & 0x3f));
		buf_append(b, o, 4);
	}
}

static uint32_t random_cp(void)
{
	uint32_t cp;

	switch (rand() % 6) {
	case 0:
		return '&';
	case 1:
		return (uint32_t)(rand() % 0x80);
	case 2:
		return 0x20 + (uint32_t)(rand() % 0x5f);
	case 3:
		return 0x80 + (uint32_t)(rand() % 0x780);
	case 4:
		do {
			cp = (uint32_t)(rand() % 0x10000);
		} while (cp >= 0xd800 && cp <= 0xdfff);
		return cp;
	default:
		return 0x10000 + (uint32_t)(rand() % 0x100000);
	}
}

static void test_text_round_trips(void)
{
	struct buf text = BUF_INIT, wire = BUF_INIT, back = BUF_INIT,
		   again = BUF_INIT;
	const char *error = NULL;

	srand(1);
	for (int iter = 0; iter < 5000; iter++) {
		int n = rand() % 12;

		buf_reset(&text);
		buf_reset(&wire);
		buf_reset(&back);
		buf_reset(&again);
		for (int k = 0; k < n; k++)
			put_utf8(&text, random_cp());
		CU_ASSERT_EQUAL_FATAL(mutf7_encode(text.data, text.len, &wire,
						   &error), 0);
		CU_ASSERT_EQUAL_FATAL(mutf7_decode(wire.data, wire.len, &back,
						   &error), 0);
		CU_ASSERT_EQUAL_FATAL(back.len, text.len);
		CU_ASSERT_TRUE(text.len == 0 ||
			       memcmp(back.data, text.data, text.len) == 0);
		/* The wire form only ever holds printable ASCII. */
		for (size_t k = 0; k < wire.len; k++)
			CU_ASSERT_TRUE(wire.data[k] >= 0x20 &&
				       wire.data[k] <= 0x7e);
		CU_ASSERT_EQUAL(mutf7_encode(back.data, back.len, &again,
					     &error), 0);
		CU_ASSERT_EQUAL(again.len, wire.len);
	}
	buf_free(&text);
	buf_free(&wire);
	buf_free(&back);
	buf_free(&again);
}

/* Strictness as a property: any wire string decode accepts is exactly
 * what encode makes of its decoding. */
static void test_wire_strings_are_canonical(void)
{
	static const char alphabet[] = "&-AaBgZ2D3eOk,+x/=.";
	struct buf wire = BUF_INIT, text = BUF_INIT, again = BUF_INIT;
	const char *error = NULL;
	int accepted = 0;

	srand(2);
	for (int iter = 0; iter < 200000; iter++) {
		int n = rand() % 10;

		buf_reset(&wire);
		buf_reset(&text);
		buf_reset(&again);
		for (int k = 0; k < n; k++)
			buf_put_u8(&wire, (uint8_t)alphabet[
				rand() % (int)(sizeof(alphabet) - 1)]);
		if (mutf7_decode(wire.data, wire.len, &text, &error) < 0) {
			CU_ASSERT_EQUAL(text.len, 0);
			continue;
		}
		accepted++;
		CU_ASSERT_EQUAL_FATAL(mutf7_encode(text.data, text.len,
						   &again, &error), 0);
		if (again.len != wire.len ||
		    (wire.len > 0 &&
		     memcmp(again.data, wire.data, wire.len) != 0)) {
			fprintf(stderr, "not canonical: '%s'\n",
				buf_cstr(&wire));
			CU_FAIL("decode accepted a non-canonical form");
			break;
		}
	}
	/* The alphabet is rich enough that many strings decode. */
	CU_ASSERT_TRUE(accepted > 1000);
	buf_free(&wire);
	buf_free(&text);
	buf_free(&again);
}

static CU_TestInfo tests[] = {
	{ "known vectors both ways", test_vectors },
	{ "malformed modified UTF-7 refused", test_bad_mutf7 },
	{ "malformed UTF-8 refused", test_bad_utf8 },
	{ "random text round-trips", test_text_round_trips },
	{ "accepted wire strings are canonical",
	  test_wire_strings_are_canonical },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("mutf7", tests);
}
