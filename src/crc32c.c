/*
 * crc32c.c - table-driven CRC-32C, slicing by eight.
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

uint32_t crc32c_update(uint32_t crc, const void *data, size_t len)
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

uint32_t crc32c(const void *data, size_t len)
{
	return crc32c_update(0, data, len);
}
