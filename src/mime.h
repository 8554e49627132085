/*
 * mime.h - a pure, read-only parser of Internet messages (RFC 5322 header,
 * RFC 2045/2046 MIME structure) for FETCH and SEARCH (RFC 3501 sections
 * 6.4.4, 6.4.5 and 7.4.2).
 *
 * No I/O and no logging.  mime_parse() indexes a message the caller holds
 * in memory (read or mmap()ed); everything else answers questions about it:
 * ENVELOPE, BODY and BODYSTRUCTURE as IMAP syntax, BODY[section] byte
 * ranges, and the header/body/date tests of SEARCH.
 *
 * Ownership: the message bytes are BORROWED.  They must stay valid and
 * unchanged until mime_free(); every (pointer, length) this module returns
 * points either into them or into a struct buf the caller passed in.
 *
 * Robustness: there is no such thing as a malformed message here.  Any byte
 * string parses to some structure (only running out of memory fails), and
 * the work and memory of every call are linear in the message size (times
 * at most MIME_MAX_DEPTH for the multipart boundary scan).  The rules for
 * broken input:
 *   - Lines end at LF; a CR right before the LF belongs to the line end.
 *     Lines may be of any length and hold any octet, NUL and 8-bit included.
 *   - A header ends at the first empty line; the empty line belongs to the
 *     header (it is part of BODY[HEADER] and of the header size).  With no
 *     empty line, everything is header and the body is empty.
 *   - A missing or invalid Content-Type is text/plain; charset=us-ascii
 *     (message/rfc822 inside multipart/digest).
 *   - multipart/any without a boundary parameter, and multipart/any or
 *     message/rfc822 parts beyond MIME_MAX_DEPTH levels or after
 *     MIME_MAX_PARTS parts, are leaves of type application/octet-stream:
 *     their contents are not parsed.
 *   - In a multipart body, a boundary line is "--" boundary at the start of
 *     a line followed by only spaces/tabs, or "--" boundary "--" (the close
 *     delimiter, anything may follow it).  The line end before a boundary
 *     line belongs to the boundary.  Preamble and epilogue are ignored; a
 *     missing close delimiter ends the last part at the end of the
 *     enclosing body.  A multipart in which no boundary line is found gets
 *     one empty text/plain part, so that BODYSTRUCTURE stays valid.
 *
 * Sizes and line counts are of the bytes as given: IMAP wants CRLF, so a
 * caller holding LF-only messages should run them through mime_to_crlf()
 * first and parse (and serve sections from) the converted copy, so that
 * RFC822.SIZE, the BODYSTRUCTURE sizes and partial offsets agree with what
 * is sent.
 *
 * Thread safety: a parsed message is immutable; concurrent read calls on
 * one struct mime_message are safe.
 */
#ifndef PLUTO_MIME_H
#define PLUTO_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "imap_parser.h"

/* Nesting of multipart/message parts below the top-level message. */
#define MIME_MAX_DEPTH 20U
/* Parts (the message itself included) indexed in one message. */
#define MIME_MAX_PARTS 10000U

struct mime_message;

/*
 * Indexes data[0..len).  data may be NULL when len is 0.  Returns the parsed
 * message, or NULL with a static error in *error_r (only on out of memory:
 * malformed input still parses, see the top of this file).  data is
 * borrowed until mime_free().
 */
struct mime_message *mime_parse(const void *data, size_t len,
				const char **error_r);

/* Frees the index (not the message bytes); sets *m to NULL.  NULL-safe. */
void mime_free(struct mime_message **m);

/* The message bytes and their length (RFC822.SIZE). */
const unsigned char *mime_data(const struct mime_message *m);
size_t mime_size(const struct mime_message *m);

/* Number of parts indexed (1 for a simple message), for tests and limits. */
unsigned mime_part_count(const struct mime_message *m);

/*
 * Appends to out a copy of data[0..len) with every line end made CRLF: a
 * lone LF becomes CRLF, and a lone CR (not followed by LF) becomes CRLF too.
 * Returns 1 when something changed, 0 when data already was CRLF-only (out
 * then holds an identical copy), -1 on ENOMEM/EOVERFLOW (out as it was).
 */
int mime_to_crlf(const void *data, size_t len, struct buf *out);

/*
 * IMAP string output.  mime_write_string() appends data[0..len) as a quoted
 * string when it is short (< 1024 bytes) and holds only 7-bit octets other
 * than NUL, CR and LF ('"' and '\' are escaped), and as a literal {n}CRLF...
 * otherwise.  mime_write_nstring() appends NIL when data is NULL.  Both
 * return 0, or -1 on ENOMEM/EOVERFLOW (out may then hold a partial
 * string: the caller drops the whole response).
 */
int mime_write_string(struct buf *out, const void *data, size_t len);
int mime_write_nstring(struct buf *out, const void *data, size_t len);

/*
 * Appends the ENVELOPE of the top-level message (the parenthesised list,
 * without the "ENVELOPE " label), RFC 3501 section 7.4.2:
 *   (date subject from sender reply-to to cc bcc in-reply-to message-id)
 * date, subject, in-reply-to and message-id are the first such field's
 * value, unfolded (CRLF/LF of folds removed) with surrounding white space
 * trimmed, not decoded; NIL when the field is absent.  Address lists are
 * lists of (name adl mailbox host), NIL when the field is absent or holds
 * no address; groups use the RFC's (NIL NIL "group" NIL) ... (NIL NIL NIL
 * NIL) markers; an address without '@' gets host "MISSING_DOMAIN".  Names
 * are not RFC 2047-decoded (the client does that).  sender and reply-to
 * default to from when absent or empty.
 * Returns 0, or -1 on ENOMEM/EOVERFLOW.
 */
int mime_envelope(const struct mime_message *m, struct buf *out);

/*
 * Appends BODYSTRUCTURE (extensible true) or BODY (false) of the message,
 * without the label, as RFC 3501 section 7.4.2 lays it out.  Types,
 * subtypes and parameter names/values are as written in the message
 * (defaults are lower-case "text" "plain" ("charset" "us-ascii") and
 * "7bit").  Leaves carry size in bytes, text/any also the line count (LF
 * count), message/rfc822 also the encapsulated ENVELOPE, BODY[STRUCTURE]
 * and line count.  The extension data are: for leaves md5 (the
 * Content-MD5 value or NIL) disposition language location; for multiparts
 * parameters disposition language location.
 * Returns 0, or -1 on ENOMEM/EOVERFLOW.
 */
int mime_bodystructure(const struct mime_message *m, struct buf *out,
		       bool extensible);

/*
 * Locates BODY[section] (RFC 3501 section 6.4.5).  parts[0..part_count) is
 * the part path ("1.2" = {1, 2}; empty for the whole message), text and
 * fields[0..field_count) as parsed into struct imap_fetch_att.
 *
 * Part numbering: the parts of a multipart are its children; part 1 of a
 * message whose body is not multipart is that body; the parts of a
 * message/rfc822 part are those of the message it encapsulates.
 *   []               the whole message
 *   [HEADER] [TEXT]  header (with the empty line) / body of the message
 *   [HEADER.FIELDS (a b)], [HEADER.FIELDS.NOT (a b)]
 *                    the fields named (not named), compared
 *                    case-insensitively, in message order, each with its
 *                    folds as written, then "\r\n"; built in scratch
 *   [n...]           the body of that part (for a message/rfc822 part the
 *                    whole encapsulated message)
 *   [n...MIME]       the MIME header of that part (with its empty line)
 *   [n...HEADER] etc. need part n... to be message/rfc822 and refer to the
 *                    encapsulated message
 *
 * Returns 1 with *data_r, *len_r set (pointing into the message or into
 * scratch, which is reset first when used), 0 when the section does not
 * exist (*data_r, *len_r are then an empty string: the RFC asks for "" in
 * that case), -1 on ENOMEM/EOVERFLOW.
 */
int mime_section(const struct mime_message *m, const uint32_t *parts,
		 unsigned part_count, enum imap_section_text text,
		 const struct imap_string *fields, unsigned field_count,
		 struct buf *scratch, const unsigned char **data_r,
		 size_t *len_r);

/*
 * BODY[...]<offset.length>: narrows *data, *len to the bytes from offset
 * on, at most length of them (empty when offset is past the end).  The
 * response label is then "BODY[...]<offset>".
 */
void mime_partial(const unsigned char **data, size_t *len, uint32_t offset,
		  uint32_t length);

/*
 * Raw value of the index-th (0-based) header field called name
 * (case-insensitive) of the top-level message: the bytes after the colon
 * up to the end of the field, folds included, line end excluded.  Returns
 * true and sets *value_r, *len_r (pointing into the message) when found.
 */
bool mime_header_get(const struct mime_message *m, const char *name,
		     unsigned index, const unsigned char **value_r,
		     size_t *len_r);

/*
 * Appends to out the decoded value of a header value: unfolded, surrounding
 * white space trimmed, RFC 2047 encoded-words decoded to UTF-8 (us-ascii,
 * utf-8 and iso-8859-1/latin1 are converted; other charsets' bytes are
 * kept as they are; white space between adjacent encoded-words dropped).
 * Returns 0, or -1 on ENOMEM/EOVERFLOW.
 */
int mime_header_decode(const unsigned char *value, size_t len,
		       struct buf *out);

/*
 * SEARCH tests.  needle[0..needle_len) is matched as a substring,
 * case-insensitively for ASCII letters and byte for byte otherwise (the
 * SEARCH CHARSET is US-ASCII or UTF-8, and text is decoded to UTF-8 where
 * this module can).  Each returns 1 on a match, 0 on none, -1 on ENOMEM.
 *
 * mime_header_contains: any field called name of the top-level message,
 *   decoded by mime_header_decode(), contains needle.  An empty needle
 *   matches every message that has the field (SEARCH HEADER name "").
 *   FROM/TO/CC/BCC/SUBJECT are this with those names.
 * mime_body_contains (SEARCH BODY): the body of the message contains
 *   needle: each text/any leaf part is searched after undoing its
 *   Content-Transfer-Encoding (quoted-printable, base64; others raw) and,
 *   for iso-8859-1, converting to UTF-8; the headers of encapsulated
 *   message/rfc822 messages are searched decoded.  Other leaves
 *   (attachments) are not searched.
 * mime_text_contains (SEARCH TEXT): the decoded top-level header or the
 *   body as above.
 */
int mime_header_contains(const struct mime_message *m, const char *name,
			 const void *needle, size_t needle_len);
int mime_body_contains(const struct mime_message *m, const void *needle,
		       size_t needle_len);
int mime_text_contains(const struct mime_message *m, const void *needle,
		       size_t needle_len);

/*
 * The Date: field of the top-level message, parsed leniently (RFC 5322
 * and its obsolete forms: optional weekday and seconds, 2- and 3-digit
 * years, named and military zones, comments; a missing zone is +0000).
 * Returns true and sets *when_r to the instant (UTC), *tz_minutes_r to the
 * zone offset (e.g. -300 for -0500) and *day_r to 00:00:00 UTC of the
 * calendar date as written in the field (what SENTBEFORE/SENTON/SENTSINCE
 * compare, "disregarding time and timezone", against the search key's
 * date); false when the field is absent or unparsable.  Any pointer may be
 * NULL.
 */
bool mime_sent_date(const struct mime_message *m, time_t *when_r,
		    int *tz_minutes_r, time_t *day_r);

/* The same for any date string (exposed for tests and for callers that
 * hold a Date value themselves). */
bool mime_parse_date(const unsigned char *s, size_t len, time_t *when_r,
		     int *tz_minutes_r, time_t *day_r);

#endif
