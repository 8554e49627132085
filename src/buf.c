/*
 * buf.c - growable byte buffers and a bounds-checked reader.
 */
#include "autoconfig.h"

#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_wipe(void *p, size_t len)
{
	if (p == NULL || len == 0)
		return;
#ifdef HAVE_EXPLICIT_BZERO
	explicit_bzero(p, len);
#else
	volatile unsigned char *v = p;

	while (len-- > 0)
		*v++ = 0;
#endif
}

void buf_reset(struct buf *b)
{
	b->len = 0;
}

int buf_reserve(struct buf *b, size_t more)
{
	size_t need, cap;
	unsigned char *data;

	if (more > SIZE_MAX - b->len - 1) {
		errno = EOVERFLOW;
		return -1;
	}
	/* One spare byte so that buf_cstr never has to grow. */
	need = b->len + more + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap < 64 ? 64 : b->cap;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	data = realloc(b->data, cap);
	if (data == NULL)
		return -1;
	b->data = data;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	if (len == 0)
		return 0;
	if (buf_reserve(b, len) < 0)
		return -1;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

static int put_be(struct buf *b, uint64_t v, size_t bytes)
{
	unsigned char tmp[8];

	for (size_t i = 0; i < bytes; i++)
		tmp[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
	return buf_append(b, tmp, bytes);
}

int buf_put_u8(struct buf *b, uint8_t v)
{
	return put_be(b, v, 1);
}

int buf_put_u16(struct buf *b, uint16_t v)
{
	return put_be(b, v, 2);
}

int buf_put_u32(struct buf *b, uint32_t v)
{
	return put_be(b, v, 4);
}

int buf_put_u64(struct buf *b, uint64_t v)
{
	return put_be(b, v, 8);
}

int buf_put_blob(struct buf *b, const void *data, size_t len)
{
	if (len > UINT32_MAX) {
		errno = EOVERFLOW;
		return -1;
	}
	if (buf_reserve(b, 4 + len) < 0)
		return -1;
	put_be(b, (uint32_t)len, 4);
	return buf_append(b, data, len);
}

char *buf_cstr(struct buf *b)
{
	if (buf_reserve(b, 0) < 0)
		return NULL;
	b->data[b->len] = '\0';
	return (char *)b->data;
}

unsigned char *buf_steal(struct buf *b, size_t *len_r)
{
	unsigned char *data = b->data;

	if (len_r != NULL)
		*len_r = b->len;
	buf_init(b);
	return data;
}

void buf_reader_init(struct buf_reader *r, const void *data, size_t len)
{
	r->p = data;
	r->left = len;
}

static bool get_be(struct buf_reader *r, size_t bytes, uint64_t *v_r)
{
	uint64_t v = 0;

	if (r->left < bytes)
		return false;
	for (size_t i = 0; i < bytes; i++)
		v = (v << 8) | r->p[i];
	r->p += bytes;
	r->left -= bytes;
	*v_r = v;
	return true;
}

bool buf_get_u8(struct buf_reader *r, uint8_t *v_r)
{
	uint64_t v;

	if (!get_be(r, 1, &v))
		return false;
	*v_r = (uint8_t)v;
	return true;
}

bool buf_get_u16(struct buf_reader *r, uint16_t *v_r)
{
	uint64_t v;

	if (!get_be(r, 2, &v))
		return false;
	*v_r = (uint16_t)v;
	return true;
}

bool buf_get_u32(struct buf_reader *r, uint32_t *v_r)
{
	uint64_t v;

	if (!get_be(r, 4, &v))
		return false;
	*v_r = (uint32_t)v;
	return true;
}

bool buf_get_u64(struct buf_reader *r, uint64_t *v_r)
{
	return get_be(r, 8, v_r);
}

bool buf_get_bytes(struct buf_reader *r, size_t len, const unsigned char **p_r)
{
	if (r->left < len)
		return false;
	*p_r = r->p;
	r->p += len;
	r->left -= len;
	return true;
}

bool buf_get_blob(struct buf_reader *r, size_t max, const unsigned char **p_r,
		  size_t *len_r)
{
	struct buf_reader save = *r;
	uint32_t len;

	if (!buf_get_u32(r, &len))
		return false;
	if (len > max || !buf_get_bytes(r, len, p_r)) {
		*r = save;
		return false;
	}
	*len_r = len;
	return true;
}
