/*
 * base64.h - RFC 4648 base64 (the standard alphabet, with padding).
 *
 * Used for AUTHENTICATE (RFC 3501 section 6.2.2, SASL PLAIN) where the
 * client sends base64 lines.  Decoding is strict, because anything lenient
 * here lets two different byte strings stand for one credential and hides
 * client bugs:
 *
 *   - the length must be a multiple of 4 (padding is mandatory);
 *   - '=' may only appear as the last one or two characters;
 *   - the bits a padded quantum leaves unused must be zero (RFC 4648
 *     section 3.5), so every byte string has exactly one encoding;
 *   - any other character, whitespace and CR/LF included, is an error.
 *
 * The empty string encodes and decodes to the empty string.
 *
 * Message content is another matter: a SEARCH must find text in base64
 * bodies and RFC 2047 "B" words however carelessly a mailer wrapped or
 * padded them, and nothing there is a credential, so mime.c uses the
 * lenient decoder below.  mutf7.c shares the character table, with ','
 * for '/' (RFC 3501 section 5.1.3).
 */
#ifndef PLUTO_BASE64_H
#define PLUTO_BASE64_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Length of the encoding of len bytes, or false when that overflows
 * size_t. */
bool base64_encoded_len(size_t len, size_t *out_len_r);

/* Upper bound of the decoded length of len base64 characters. */
size_t base64_decoded_max(size_t len);

/* Appends the base64 encoding of src[0..len) to dest.  Returns 0, or -1
 * (errno ENOMEM or EOVERFLOW) leaving dest as it was. */
int base64_encode(const void *src, size_t len, struct buf *dest);

/* Appends the bytes encoded in src[0..len) to dest.  The result is binary
 * (it may hold NUL bytes).  Returns 0, or -1 with a static error string in
 * *error_r, and dest as it was on entry. */
int base64_decode(const void *src, size_t len, struct buf *dest,
		  const char **error_r);

/* The 6-bit value of c in the base64 alphabet whose last two characters
 * are '+' and c63 ('/' for RFC 4648, ',' for modified UTF-7), or -1 when
 * c is not in it. */
int base64_char_value(unsigned char c, unsigned char c63);

/* Appends the bytes encoded in src[0..len), leniently: characters outside
 * the alphabet (line breaks, spaces, stray bytes) are skipped, the first
 * '=' ends the data and bits left over at the end are dropped.  Never
 * fails on content.  Returns 0, or -1 (errno ENOMEM or EOVERFLOW) with
 * dest as it was. */
int base64_decode_lenient(const void *src, size_t len, struct buf *dest);

#endif
