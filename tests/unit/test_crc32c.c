/*
 * test_crc32c.c - CRC-32C against published check values (the catalogue's
 * "123456789" and the iSCSI vectors of RFC 3720 B.4), against a bit-at-a-time
 * reference for every length and alignment around the 8-byte stride, and
 * chained updates against one-shot sums, and the CPU-instruction path
 * against the table code on random buffers of every length up to 1024 at
 * every alignment.
 */
#include "autoconfig.h"

#include "crc32c.h"
#include "cu_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The definition, one bit at a time: slow and obviously right. */
static uint32_t reference_crc32c(const unsigned char *p, size_t len)
{
	uint32_t c = 0xffffffffU;

	for (size_t i = 0; i < len; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c & 1U) != 0 ? (c >> 1) ^ 0x82F63B78U : c >> 1;
	}
	return ~c;
}

static void test_check_value(void)
{
	CU_ASSERT_EQUAL(crc32c("123456789", 9), 0xE3069283U);
	CU_ASSERT_EQUAL(crc32c("", 0), 0);
	CU_ASSERT_EQUAL(crc32c(NULL, 0), 0);
	CU_ASSERT_EQUAL(crc32c("a", 1), 0xC1D04330U);
}

static void test_rfc3720_vectors(void)
{
	static const struct {
		int kind;	/* 0 zeros, 1 ones, 2 ascending, 3 descending */
		uint32_t want;
	} cases[] = {
		{ 0, 0x8A9136AAU },
		{ 1, 0x62A8AB43U },
		{ 2, 0x46DD794EU },
		{ 3, 0x113FDB5CU },
	};
	unsigned char b[32];

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		for (unsigned int i = 0; i < 32; i++) {
			switch (cases[c].kind) {
			case 0: b[i] = 0; break;
			case 1: b[i] = 0xff; break;
			case 2: b[i] = (unsigned char)i; break;
			default: b[i] = (unsigned char)(31 - i); break;
			}
		}
		CU_ASSERT_EQUAL(crc32c(b, sizeof(b)), cases[c].want);
	}
}

static void test_matches_reference(void)
{
	unsigned char b[300];
	unsigned int seed = 12345;

	for (size_t i = 0; i < sizeof(b); i++) {
		seed = seed * 1103515245U + 12345U;
		b[i] = (unsigned char)(seed >> 16);
	}
	/* Every start offset modulo 8 and every length up to 64, then some
	 * longer ones, so the sliced loop and the byte tail both run. */
	for (size_t off = 0; off < 8; off++) {
		for (size_t len = 0; len <= 64; len++)
			CU_ASSERT_EQUAL(crc32c(b + off, len),
					reference_crc32c(b + off, len));
		CU_ASSERT_EQUAL(crc32c(b + off, sizeof(b) - off),
				reference_crc32c(b + off, sizeof(b) - off));
	}
}

static void test_chained_updates(void)
{
	const char *s = "The quick brown fox jumps over the lazy dog";
	size_t len = strlen(s);
	uint32_t whole = crc32c(s, len);

	for (size_t cut = 0; cut <= len; cut++) {
		uint32_t c = crc32c_update(0, s, cut);

		c = crc32c_update(c, s + cut, len - cut);
		CU_ASSERT_EQUAL(c, whole);
	}
	CU_ASSERT_EQUAL(crc32c_update(whole, s, 0), whole);
}

/* crc32c_update takes the CPU-instruction path where there is one; the
 * table code is the oracle.  Every length 0..1024 at every start offset
 * 0..7 covers the word loop, the byte tail and unaligned loads, and a
 * nonzero starting crc checks that both invert the same way. */
static void test_hw_matches_table(void)
{
	enum { MAXLEN = 1024, MAXOFF = 8 };
	unsigned char *b = malloc(MAXLEN + MAXOFF);
	unsigned int seed = 2026;
	unsigned int mismatches = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	for (size_t i = 0; i < MAXLEN + MAXOFF; i++) {
		seed = seed * 1103515245U + 12345U;
		b[i] = (unsigned char)(seed >> 16);
	}
	for (size_t off = 0; off < MAXOFF; off++) {
		for (size_t len = 0; len <= MAXLEN; len++) {
			uint32_t start = (uint32_t)(len * 2654435761U);

			if (crc32c_update(0, b + off, len) !=
			    crc32c_table_update(0, b + off, len))
				mismatches++;
			if (crc32c_update(start, b + off, len) !=
			    crc32c_table_update(start, b + off, len))
				mismatches++;
		}
	}
	CU_ASSERT_EQUAL(mismatches, 0);
	/* The oracle itself against the definition, on the longest case. */
	CU_ASSERT_EQUAL(crc32c_table_update(0, b + 3, MAXLEN),
			reference_crc32c(b + 3, MAXLEN));
	free(b);
}

static CU_TestInfo tests[] = {
	{ "check value of 123456789", test_check_value },
	{ "RFC 3720 iSCSI vectors", test_rfc3720_vectors },
	{ "matches bitwise reference at all alignments",
	  test_matches_reference },
	{ "hardware matches table, lengths 0..1024, offsets 0..7",
	  test_hw_matches_table },
	{ "chained updates equal one-shot", test_chained_updates },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	/* Say which path ran, so a log shows whether the comparison of the
	 * instruction with the tables was real on this machine. */
	fprintf(stderr, "crc32c: %s\n", crc32c_have_hw() != 0 ?
		"CPU instruction" : "tables only");
	return cu_run("crc32c", tests);
}
