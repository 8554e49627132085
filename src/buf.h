/*
 * buf.h - length-tracked, binary-safe byte buffers, and a bounds-checked
 * reader for decoding what they hold.
 *
 * Integers are written big-endian.  Every size computation is checked for
 * overflow; a failed append leaves the buffer as it was and returns -1
 * (errno ENOMEM or EOVERFLOW).
 */
#ifndef PLUTO_BUF_H
#define PLUTO_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

struct buf {
	unsigned char *data;	/* owned; NULL while empty */
	size_t len;
	size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

void buf_init(struct buf *b);
/* Frees the storage; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);
/* Keeps the storage, forgets the contents. */
void buf_reset(struct buf *b);
/* Makes room for at least more further bytes. */
int buf_reserve(struct buf *b, size_t more);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) PLUTO_PRINTF(2, 3);
int buf_put_u8(struct buf *b, uint8_t v);
int buf_put_u16(struct buf *b, uint16_t v);
int buf_put_u32(struct buf *b, uint32_t v);
int buf_put_u64(struct buf *b, uint64_t v);
/* A u32 length followed by the bytes. */
int buf_put_blob(struct buf *b, const void *data, size_t len);
/* Zeroes p[0..len) in a way the compiler may not optimise away, for
 * secrets about to be freed or to go out of scope; p may be NULL when len
 * is 0. */
void buf_wipe(void *p, size_t len);
/* Ensures data[len] == '\0' (not counted in len) and returns data, or
 * NULL on allocation failure. */
char *buf_cstr(struct buf *b);
/* Hands the storage to the caller (who frees it) and empties b. */
unsigned char *buf_steal(struct buf *b, size_t *len_r);

/* Big-endian integers at a fixed place in memory the caller has checked
 * is large enough: for file and wire headers written in place or patched
 * after the fact, where the appending and bounds-checked calls above do
 * not fit. */
static inline void buf_write_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static inline void buf_write_be64(unsigned char *p, uint64_t v)
{
	buf_write_be32(p, (uint32_t)(v >> 32));
	buf_write_be32(p + 4, (uint32_t)v);
}

static inline uint32_t buf_read_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t buf_read_be64(const unsigned char *p)
{
	return (uint64_t)buf_read_be32(p) << 32 | buf_read_be32(p + 4);
}

/* Reads from borrowed memory; every getter returns false, consuming
 * nothing, when too few bytes are left. */
struct buf_reader {
	const unsigned char *p;
	size_t left;
};

void buf_reader_init(struct buf_reader *r, const void *data, size_t len);
bool buf_get_u8(struct buf_reader *r, uint8_t *v_r);
bool buf_get_u16(struct buf_reader *r, uint16_t *v_r);
bool buf_get_u32(struct buf_reader *r, uint32_t *v_r);
bool buf_get_u64(struct buf_reader *r, uint64_t *v_r);
bool buf_get_bytes(struct buf_reader *r, size_t len, const unsigned char **p_r);
/* A u32 length then that many bytes, borrowed from the reader's memory;
 * fails when the length exceeds max or what is left. */
bool buf_get_blob(struct buf_reader *r, size_t max, const unsigned char **p_r,
		  size_t *len_r);

#endif
