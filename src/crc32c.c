/*
 * crc32c.c - CRC-32C: the CPU's crc32 instruction where there is one,
 * otherwise table-driven, slicing by eight.
 *
 * On x86-64 SSE4.2 has an instruction for exactly this polynomial; it is
 * several times faster than the tables and start-up verifies every journal
 * record, so the checksum was a fifth of the time to first LOGIN.  The
 * instruction is used through a function compiled for SSE4.2 and chosen at
 * run time, so the binary still runs on CPUs without it.  On aarch64 the
 * equivalent instructions are used when the compiler targets them
 * (__ARM_FEATURE_CRC32), with no run-time check.  The tables stay as the
 * portable fallback and as the tests' oracle for the instructions.
 *
 * The eight 256-entry tables are computed once (pthread_once) rather than
 * spelled out as constants: 2048 numbers in the source would be unreadable
 * and unreviewable, while the generator below is a dozen lines that follow
 * the definition.  Slicing by eight folds eight input bytes per step, which
 * is several times faster than the byte-wise loop and matters because the
 * journal checksums every message body it carries.  Words are assembled
 * from bytes explicitly, so the result does not depend on host byte order
 * or alignment.
 */
#include "autoconfig.h"

#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
#define CRC32C_HW_X86 1
#elif defined(__aarch64__) && defined(__ARM_FEATURE_CRC32)
#include <arm_acle.h>
#define CRC32C_HW_ARM 1
#endif

#define CRC32C_POLY 0x82F63B78U	/* Castagnoli, bit-reflected */

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init_tables(void)
{
	for (unsigned int i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1U) != 0 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc32c_table[0][i] = c;
	}
	/* table[k][i] is the CRC of byte i followed by k zero bytes. */
	for (unsigned int i = 0; i < 256; i++) {
		uint32_t c = crc32c_table[0][i];

		for (int k = 1; k < 8; k++) {
			c = (c >> 8) ^ crc32c_table[0][c & 0xffU];
			crc32c_table[k][i] = c;
		}
	}
}

uint32_t crc32c_table_update(uint32_t crc, const void *data, size_t len)
{
	const unsigned char *p = data;
	uint32_t c = ~crc;

	if (len == 0)
		return crc;
	pthread_once(&crc32c_once, crc32c_init_tables);
	while (len >= 8) {
		uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
				   (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);

		c = crc32c_table[7][lo & 0xffU] ^
		    crc32c_table[6][(lo >> 8) & 0xffU] ^
		    crc32c_table[5][(lo >> 16) & 0xffU] ^
		    crc32c_table[4][lo >> 24] ^
		    crc32c_table[3][p[4]] ^ crc32c_table[2][p[5]] ^
		    crc32c_table[1][p[6]] ^ crc32c_table[0][p[7]];
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xffU];
	return ~c;
}

#if defined(CRC32C_HW_X86)
/* The instruction takes and returns the register form of the CRC (not
 * inverted), the same convention as the table loop.  Eight-byte words are
 * loaded with memcpy: unaligned loads are cheap on x86-64 and this keeps
 * the code free of pointer casts. */
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw_update(uint32_t crc, const unsigned char *p,
				 size_t len)
{
	uint64_t c = (uint32_t)~crc;

	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, sizeof(w));
		c = _mm_crc32_u64(c, w);
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return ~(uint32_t)c;
}
#elif defined(CRC32C_HW_ARM)
/* __crc32cd consumes a little-endian doubleword, which is what memcpy
 * gives on little-endian aarch64 and the order the reflected CRC wants;
 * on big-endian aarch64 the tables are used instead. */
static uint32_t crc32c_hw_update(uint32_t crc, const unsigned char *p,
				 size_t len)
{
	uint32_t c = ~crc;

#if defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, sizeof(w));
		c = __crc32cd(c, w);
		p += 8;
		len -= 8;
	}
#endif
	while (len-- > 0)
		c = __crc32cb(c, *p++);
	return ~c;
}
#endif

int crc32c_have_hw(void)
{
#if defined(CRC32C_HW_X86)
	return __builtin_cpu_supports("sse4.2") ? 1 : 0;
#elif defined(CRC32C_HW_ARM)
	return 1;
#else
	return 0;
#endif
}

uint32_t crc32c_update(uint32_t crc, const void *data, size_t len)
{
	if (len == 0)
		return crc;
#if defined(CRC32C_HW_X86)
	/* __builtin_cpu_supports reads a word filled in by libgcc's
	 * constructor: cheap enough to ask on every call. */
	if (__builtin_cpu_supports("sse4.2"))
		return crc32c_hw_update(crc, data, len);
#elif defined(CRC32C_HW_ARM)
	return crc32c_hw_update(crc, data, len);
#endif
	return crc32c_table_update(crc, data, len);
}

uint32_t crc32c(const void *data, size_t len)
{
	return crc32c_update(0, data, len);
}
