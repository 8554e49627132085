/*
 * crc32c.h - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of the journal and of snapshots.
 *
 * Chosen over zlib's CRC-32 because its error-detection properties are
 * better for the record sizes we store and because it is what iSCSI, ext4
 * and many storage formats use, so its values can be checked by other tools.
 * The check value of "123456789" is 0xE3069283.
 */
#ifndef PLUTO_CRC32C_H
#define PLUTO_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a checksum: crc is the value returned for the bytes before
 * data (0 for none), so that
 *   crc32c_update(crc32c_update(0, a, n), b, m) == crc32c(a||b).
 * Thread-safe; data may be NULL when len is 0. */
uint32_t crc32c_update(uint32_t crc, const void *data, size_t len);

/* For tests: the portable table-driven implementation, which
 * crc32c_update uses when the CPU has no CRC-32C instruction; same
 * contract as crc32c_update. */
uint32_t crc32c_table_update(uint32_t crc, const void *data, size_t len);

/* For tests: 1 if crc32c_update uses a CPU instruction on this machine,
 * 0 if it falls back to crc32c_table_update. */
int crc32c_have_hw(void);

/* The checksum of one buffer: crc32c_update(0, data, len). */
uint32_t crc32c(const void *data, size_t len);

#endif
