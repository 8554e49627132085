/*
 * mailbox_name.h - validation of client mailbox names, and their mapping
 * to Maildir++ directory names.
 *
 * A mailbox name arrives from the IMAP parser as bytes with a length; it
 * may hold anything, NUL included.  Nothing may build a path from it before
 * mailbox_name_validate() has accepted it.  A valid name:
 *
 *   - is 1..MAILBOX_NAME_MAX bytes in its wire form;
 *   - is strict modified UTF-7 (mutf7.h): 7-bit, and one spelling per name;
 *   - holds no NUL and no control character (C0, DEL, C1), neither raw nor
 *     encoded (e.g. "&AAA-" is U+0000);
 *   - holds no '/' (unless '/' is the separator: then it maps to '.'),
 *     and no '*' or '%', which LIST could never match literally;
 *   - splits on the separator into levels that are all non-empty (no
 *     leading, trailing or doubled separator) and none of which starts
 *     with '.' ("." and ".." included), so no mapped directory can be
 *     hidden, refer to a parent, or alias another name;
 *   - when the separator is not '.', holds no '.' at all: Maildir++ writes
 *     every level separator as '.', so "a.b" would land in the directory
 *     of the two-level name a<sep>b.
 *
 * INBOX is case-insensitive: a first level spelled any way ("inbox",
 * "InBoX") is rewritten "INBOX", so "inbox.Sub" is "INBOX.Sub".  Every other
 * level is case-sensitive.  The canonical form is what mailbox_name_validate
 * writes out; it is a NUL-terminated string (valid names hold no NUL).
 *
 * Directory names (relative to the user's Maildir++ root):
 *
 *   INBOX        ""              (the root itself: cur/ new/ tmp/)
 *   Sent         ".Sent"
 *   a<sep>b      ".a.b"
 *   INBOX<sep>x  ".INBOX.x"
 *
 * MAILBOX_NAME_MAX is 254 so that '.' plus the name fits the 255 bytes most
 * file systems allow in one directory entry (Maildir++ flattens the whole
 * hierarchy into one entry).
 *
 * Error strings are static, fit a tagged NO, and never echo the name back.
 * All functions are pure and thread-safe.
 */
#ifndef PLUTO_MAILBOX_NAME_H
#define PLUTO_MAILBOX_NAME_H

#include <stdbool.h>
#include <stddef.h>

#define MAILBOX_NAME_MAX 254
#define MAILBOX_NAME_BUFSIZE (MAILBOX_NAME_MAX + 1)
/* A leading '.' and the NUL. */
#define MAILBOX_DIR_BUFSIZE (MAILBOX_NAME_MAX + 2)
#define MAILBOX_NAME_DEFAULT_SEP '.'
#define MAILBOX_NAME_INBOX "INBOX"

/* Whether sep can be the hierarchy separator: printable ASCII, not a
 * letter or digit, and none of "&-+," (modified UTF-7 syntax, so a
 * separator never appears inside an encoded run), "*%" (LIST wildcards),
 * "\"\\(){} ]" (IMAP quoting and atom specials). */
bool mailbox_name_sep_is_valid(char sep);

/* Validates name[0..len) (wire form) against the rules above with
 * separator sep (which must pass mailbox_name_sep_is_valid).  Returns 0
 * with the canonical name in canon_r, or -1 with *error_r set. */
int mailbox_name_validate(const void *name, size_t len, char sep,
			  char canon_r[MAILBOX_NAME_BUFSIZE],
			  const char **error_r);

/* True for the canonical name of INBOX (only "INBOX" exactly: pass the
 * output of mailbox_name_validate). */
bool mailbox_name_is_inbox(const char *canon);

/* Validates the NUL-terminated name and writes its directory name relative
 * to the user's root ("" for INBOX).  Returns 0 or -1 with *error_r. */
int mailbox_name_to_dir(const char *name, char sep,
			char dir_r[MAILBOX_DIR_BUFSIZE], const char **error_r);

/* The reverse, for listing: the canonical mailbox name of directory dir
 * ("" is INBOX).  Fails (-1, *error_r) unless dir is exactly what
 * mailbox_name_to_dir makes of that name, so directories other tools left
 * (".inbox.x", ".INBOX", "..x", ".a:b" with separator ':') are not
 * mistaken for mailboxes. */
int mailbox_name_from_dir(const char *dir, char sep,
			  char name_r[MAILBOX_NAME_BUFSIZE],
			  const char **error_r);

#endif
