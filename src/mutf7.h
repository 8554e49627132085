/*
 * mutf7.h - modified UTF-7 (RFC 3501 section 5.1.3), the encoding of
 * mailbox names on the IMAP wire, to and from UTF-8.
 *
 * Printable US-ASCII (0x20..0x7e) stands for itself, except '&', which is
 * written "&-".  Everything else (controls, DEL, non-ASCII) is UTF-16BE in
 * a base64 variant (',' instead of '/', no padding) between '&' and '-'.
 *
 * Both directions are strict, because a mailbox name must have exactly one
 * wire spelling: otherwise two spellings of one name could name two
 * mailboxes, or slip past a check done on the other spelling.  So
 * mutf7_decode() only accepts what mutf7_encode() would produce:
 *
 *   - only printable ASCII outside runs, only the base64 alphabet inside;
 *   - every run ends with '-' (no implicit end at the end of the string);
 *   - the leftover bits of a run are fewer than 6 and all zero;
 *   - no printable ASCII character (and so no '&') inside a run;
 *   - surrogates come in high/low pairs, within one run;
 *   - no run directly after another ("&AOk-&AOk-" must be "&AOkA6Q-"),
 *     though "&-" may follow a run;
 *   - a run is not empty ("&-" is the ampersand, not an empty run).
 *
 * and mutf7_encode() refuses input that is not UTF-8 by the letter of RFC
 * 3629: overlong forms, surrogates (U+D800..U+DFFF), code points above
 * U+10FFFF, stray or missing continuation bytes.
 *
 * Decoding may produce any code point, U+0000 and other controls included:
 * the codec checks the encoding, not whether the text is a good mailbox
 * name (mailbox_name.h does that).
 *
 * For both functions: the result is appended to dest; on error -1 is
 * returned with a static string in *error_r and dest is left as it was on
 * entry.  Errors are caused by the input (or, with "out of memory", by
 * the allocator); the functions keep no state and are thread-safe.
 */
#ifndef PLUTO_MUTF7_H
#define PLUTO_MUTF7_H

#include <stddef.h>

#include "buf.h"

/* UTF-8 src[0..len) -> modified UTF-7, appended to dest. */
int mutf7_encode(const void *src, size_t len, struct buf *dest,
		 const char **error_r);

/* Modified UTF-7 src[0..len) -> UTF-8, appended to dest. */
int mutf7_decode(const void *src, size_t len, struct buf *dest,
		 const char **error_r);

#endif
