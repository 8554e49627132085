/*
 * mutf7.c - strict modified UTF-7 <-> UTF-8.
 *
 * The encoder reads UTF-8 one code point at a time (rejecting anything RFC
 * 3629 forbids), copies printable ASCII through, and gathers each maximal
 * stretch of other code points into one base64 run of UTF-16BE units.  The
 * decoder is the exact inverse and refuses every input the encoder could
 * not have produced; mutf7.h lists the rules.  Keeping the two canonical
 * means a mailbox name has one spelling, which mailbox_name.c relies on.
 */
#include "autoconfig.h"

#include "mutf7.h"

#include "base64.h"

#include <stdbool.h>
#include <stdint.h>

static const char mutf7_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static bool mutf7_is_direct(uint32_t c)
{
	return c >= 0x20 && c <= 0x7e;
}

/* Reads one code point from p[0..left).  Returns its length in bytes, or
 * 0 with *error_r set. */
static size_t utf8_read(const unsigned char *p, size_t left, uint32_t *cp_r,
			const char **error_r)
{
	uint32_t cp, min;
	size_t n;

	if (p[0] < 0x80) {
		*cp_r = p[0];
		return 1;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
		cp = p[0] & 0x1fU;
		min = 0x80;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		cp = p[0] & 0x0fU;
		min = 0x800;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		cp = p[0] & 0x07U;
		min = 0x10000;
	} else if (p[0] == 0xc0 || p[0] == 0xc1) {
		*error_r = "invalid UTF-8: overlong encoding";
		return 0;
	} else if (p[0] < 0xc0) {
		*error_r = "invalid UTF-8: unexpected continuation byte";
		return 0;
	} else {
		*error_r = "invalid UTF-8: code point above U+10FFFF";
		return 0;
	}
	if (left < n) {
		*error_r = "invalid UTF-8: truncated sequence";
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80) {
			*error_r = "invalid UTF-8: truncated sequence";
			return 0;
		}
		cp = cp << 6 | (p[i] & 0x3fU);
	}
	if (cp < min) {
		*error_r = "invalid UTF-8: overlong encoding";
		return 0;
	}
	if (cp >= 0xd800 && cp <= 0xdfff) {
		*error_r = "invalid UTF-8: surrogate code point";
		return 0;
	}
	if (cp > 0x10ffff) {
		*error_r = "invalid UTF-8: code point above U+10FFFF";
		return 0;
	}
	*cp_r = cp;
	return n;
}

/* Appends the UTF-8 form of a valid code point. */
static int utf8_write(struct buf *dest, uint32_t cp)
{
	unsigned char out[4];
	size_t n;

	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		out[0] = (unsigned char)(0xf0 | cp >> 18);
		out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		out[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return buf_append(dest, out, n);
}

/* Base64 state of the run being written: bits not yet output. */
struct mutf7_run {
	uint32_t bits;
	unsigned int nbits;
};

static int mutf7_put_unit(struct buf *dest, struct mutf7_run *run,
			  uint32_t unit)
{
	run->bits = run->bits << 16 | unit;
	run->nbits += 16;
	while (run->nbits >= 6) {
		run->nbits -= 6;
		if (buf_put_u8(dest, (uint8_t)mutf7_alphabet[
				(run->bits >> run->nbits) & 0x3f]) < 0)
			return -1;
	}
	run->bits &= (1U << run->nbits) - 1;
	return 0;
}

int mutf7_encode(const void *src, size_t len, struct buf *dest,
		 const char **error_r)
{
	const unsigned char *p = src;
	size_t start = dest->len, i = 0;

	while (i < len) {
		struct mutf7_run run = { 0, 0 };
		uint32_t cp;
		size_t n;
		int ret;

		if (mutf7_is_direct(p[i])) {
			ret = p[i] == '&' ? buf_append(dest, "&-", 2) :
					    buf_put_u8(dest, p[i]);
			if (ret < 0)
				goto nomem;
			i++;
			continue;
		}
		if (buf_put_u8(dest, '&') < 0)
			goto nomem;
		while (i < len && !mutf7_is_direct(p[i])) {
			n = utf8_read(p + i, len - i, &cp, error_r);
			if (n == 0) {
				dest->len = start;
				return -1;
			}
			i += n;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				ret = mutf7_put_unit(dest, &run,
						     0xd800 | cp >> 10);
				if (ret == 0)
					ret = mutf7_put_unit(dest, &run,
							0xdc00 | (cp & 0x3ff));
			} else {
				ret = mutf7_put_unit(dest, &run, cp);
			}
			if (ret < 0)
				goto nomem;
		}
		/* Flush the last bits, zero-filled to a whole character. */
		if (run.nbits > 0 &&
		    buf_put_u8(dest, (uint8_t)mutf7_alphabet[
				(run.bits << (6 - run.nbits)) & 0x3f]) < 0)
			goto nomem;
		if (buf_put_u8(dest, '-') < 0)
			goto nomem;
	}
	return 0;
nomem:
	dest->len = start;
	*error_r = "out of memory";
	return -1;
}

/* Decodes the run starting at p[*pos] (just after '&') up to and
 * including its '-'.  Returns 0 or -1 with *error_r set. */
static int mutf7_decode_run(const unsigned char *p, size_t len, size_t *pos,
			    struct buf *dest, const char **error_r)
{
	uint32_t bits = 0, high = 0;
	unsigned int nbits = 0;
	size_t i = *pos;

	for (;;) {
		uint32_t unit;
		int v;

		if (i >= len) {
			*error_r = "modified UTF-7: unterminated &-run";
			return -1;
		}
		if (p[i] == '-')
			break;
		v = base64_char_value(p[i], ',');
		if (v < 0) {
			*error_r = "modified UTF-7: invalid character in &-run";
			return -1;
		}
		i++;
		bits = bits << 6 | (uint32_t)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		unit = bits >> nbits;
		bits &= (1U << nbits) - 1;
		if (high != 0) {
			if (unit < 0xdc00 || unit > 0xdfff) {
				*error_r = "modified UTF-7: unpaired surrogate";
				return -1;
			}
			unit = 0x10000 + ((high - 0xd800) << 10) +
			       (unit - 0xdc00);
			high = 0;
		} else if (unit >= 0xd800 && unit <= 0xdbff) {
			high = unit;
			continue;
		} else if (unit >= 0xdc00 && unit <= 0xdfff) {
			*error_r = "modified UTF-7: unpaired surrogate";
			return -1;
		} else if (mutf7_is_direct(unit)) {
			*error_r = "modified UTF-7: printable ASCII in &-run";
			return -1;
		}
		if (utf8_write(dest, unit) < 0) {
			*error_r = "out of memory";
			return -1;
		}
	}
	if (i == *pos) {
		/* Unreachable from mutf7_decode ("&-" is handled there),
		 * kept so the function stands on its own. */
		*error_r = "modified UTF-7: empty &-run";
		return -1;
	}
	if (high != 0) {
		*error_r = "modified UTF-7: unpaired surrogate";
		return -1;
	}
	if (nbits >= 6) {
		*error_r = "modified UTF-7: superfluous base64 character";
		return -1;
	}
	if (bits != 0) {
		*error_r = "modified UTF-7: non-zero bits at end of &-run";
		return -1;
	}
	*pos = i + 1;
	return 0;
}

int mutf7_decode(const void *src, size_t len, struct buf *dest,
		 const char **error_r)
{
	const unsigned char *p = src;
	size_t start = dest->len, i = 0;
	bool after_run = false;

	while (i < len) {
		if (!mutf7_is_direct(p[i])) {
			*error_r = p[i] >= 0x80 ?
				"modified UTF-7: 8-bit character" :
				"modified UTF-7: control character";
			goto fail;
		}
		if (p[i] != '&') {
			if (buf_put_u8(dest, p[i]) < 0)
				goto nomem;
			i++;
			after_run = false;
			continue;
		}
		i++;
		if (i < len && p[i] == '-') {
			if (buf_put_u8(dest, '&') < 0)
				goto nomem;
			i++;
			after_run = false;
			continue;
		}
		if (after_run) {
			*error_r = "modified UTF-7: adjacent &-runs";
			goto fail;
		}
		if (mutf7_decode_run(p, len, &i, dest, error_r) < 0)
			goto fail;
		after_run = true;
	}
	return 0;
nomem:
	*error_r = "out of memory";
fail:
	dest->len = start;
	return -1;
}
