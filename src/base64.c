/*
 * base64.c - strict RFC 4648 base64.
 *
 * The decoder works one 4-character quantum at a time and only accepts the
 * canonical encoding of some byte string: see base64.h for the rules and
 * why.  Both directions append to a struct buf and roll it back on error,
 * so a caller never sees half a result.  The lenient decoder for mail
 * content shares the character table and nothing else.
 */
#include "autoconfig.h"

#include "base64.h"

#include <errno.h>
#include <stdint.h>

static const char base64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_char_value(unsigned char c, unsigned char c63)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == c63)
		return 63;
	return -1;
}

bool base64_encoded_len(size_t len, size_t *out_len_r)
{
	size_t groups = len / 3 + (len % 3 != 0 ? 1 : 0);

	if (groups > SIZE_MAX / 4)
		return false;
	*out_len_r = groups * 4;
	return true;
}

size_t base64_decoded_max(size_t len)
{
	return len / 4 * 3;
}

int base64_encode(const void *src, size_t len, struct buf *dest)
{
	const unsigned char *p = src;
	size_t out_len, i;
	unsigned char *o;

	if (!base64_encoded_len(len, &out_len)) {
		errno = EOVERFLOW;
		return -1;
	}
	if (buf_reserve(dest, out_len) < 0)
		return -1;
	o = dest->data + dest->len;
	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
			     p[i + 2];

		*o++ = (unsigned char)base64_alphabet[v >> 18];
		*o++ = (unsigned char)base64_alphabet[(v >> 12) & 0x3f];
		*o++ = (unsigned char)base64_alphabet[(v >> 6) & 0x3f];
		*o++ = (unsigned char)base64_alphabet[v & 0x3f];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;

		*o++ = (unsigned char)base64_alphabet[v >> 18];
		*o++ = (unsigned char)base64_alphabet[(v >> 12) & 0x3f];
		*o++ = '=';
		*o++ = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;

		*o++ = (unsigned char)base64_alphabet[v >> 18];
		*o++ = (unsigned char)base64_alphabet[(v >> 12) & 0x3f];
		*o++ = (unsigned char)base64_alphabet[(v >> 6) & 0x3f];
		*o++ = '=';
	}
	dest->len += out_len;
	return 0;
}

int base64_decode(const void *src, size_t len, struct buf *dest,
		  const char **error_r)
{
	const unsigned char *p = src;
	size_t start = dest->len, i;

	if (len % 4 != 0) {
		*error_r = "base64 length is not a multiple of 4";
		return -1;
	}
	if (buf_reserve(dest, base64_decoded_max(len)) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	for (i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		unsigned int pad = 0;
		uint32_t v = 0;
		int d[4];

		for (unsigned int k = 0; k < 4; k++)
			d[k] = base64_char_value(p[i + k], '/');
		if (last && p[i + 3] == '=') {
			pad = p[i + 2] == '=' ? 2 : 1;
		}
		for (unsigned int k = 0; k < 4 - pad; k++) {
			if (d[k] < 0) {
				*error_r = p[i + k] == '=' ?
					"base64 padding in the wrong place" :
					"invalid character in base64";
				dest->len = start;
				return -1;
			}
			v |= (uint32_t)d[k] << (18 - 6 * k);
		}
		/* Bits that no output byte uses must be zero: otherwise
		 * "QQ==" and "QR==" would both decode to "A". */
		if ((pad == 2 && (v & 0xffff) != 0) ||
		    (pad == 1 && (v & 0xff) != 0)) {
			*error_r = "base64 has non-zero padding bits";
			dest->len = start;
			return -1;
		}
		dest->data[dest->len++] = (unsigned char)(v >> 16);
		if (pad < 2)
			dest->data[dest->len++] = (unsigned char)(v >> 8);
		if (pad < 1)
			dest->data[dest->len++] = (unsigned char)v;
	}
	return 0;
}

int base64_decode_lenient(const void *src, size_t len, struct buf *dest)
{
	const unsigned char *p = src;
	size_t start = dest->len;
	uint32_t acc = 0;
	unsigned int bits = 0;

	if (buf_reserve(dest, base64_decoded_max(len) + 3) < 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v;
		unsigned char byte;

		if (p[i] == '=')
			break;
		v = base64_char_value(p[i], '/');
		if (v < 0)
			continue;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			byte = (unsigned char)(acc >> bits);
			if (buf_append(dest, &byte, 1) < 0) {
				dest->len = start;
				return -1;
			}
			acc &= (1U << bits) - 1;
		}
	}
	return 0;
}
