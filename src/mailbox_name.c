/*
 * mailbox_name.c - the gate between client-chosen mailbox names and
 * paths on disk.
 *
 * The original prototype joined the client's string onto a path; here a
 * name is checked byte by byte, decoded as strict modified UTF-7, checked
 * again as text, and split into hierarchy levels before anything maps it to
 * a Maildir++ directory.  The reverse mapping re-runs the forward one and
 * insists on getting the same directory back, so exactly one directory
 * corresponds to each valid name and vice versa.
 */
#include "autoconfig.h"

#include "mailbox_name.h"

#include "buf.h"
#include "mutf7.h"

#include <string.h>
#include <strings.h>

bool mailbox_name_sep_is_valid(char sep)
{
	unsigned char c = (unsigned char)sep;

	if (c <= 0x20 || c >= 0x7f)
		return false;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return false;
	return strchr("&-+,*%\"\\(){}]", sep) == NULL;
}

/* Checks decoded UTF-8 (known valid) for C0, DEL and C1 controls. */
static bool utf8_has_control(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			return true;
		/* U+0080..U+009F are 0xc2 0x80..0x9f. */
		if (p[i] == 0xc2 && i + 1 < len && p[i + 1] <= 0x9f)
			return true;
	}
	return false;
}

static int mailbox_name_check_bytes(const unsigned char *p, size_t len,
				    char sep, const char **error_r)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\0') {
			*error_r = "Mailbox name contains NUL";
			return -1;
		}
		if (p[i] < 0x20 || p[i] == 0x7f) {
			*error_r = "Mailbox name contains a control character";
			return -1;
		}
		if (p[i] >= 0x80) {
			*error_r = "Mailbox name contains 8-bit characters "
				   "(use modified UTF-7)";
			return -1;
		}
		if (p[i] == '/' && sep != '/') {
			*error_r = "Mailbox name contains '/'";
			return -1;
		}
		if (p[i] == '*' || p[i] == '%') {
			*error_r = "Mailbox name contains a wildcard (* or %)";
			return -1;
		}
	}
	return 0;
}

static int mailbox_name_check_levels(const unsigned char *p, size_t len,
				     char sep, const char **error_r)
{
	size_t start = 0;

	for (size_t i = 0; i <= len; i++) {
		size_t level_len;

		if (i < len && p[i] != (unsigned char)sep) {
			if (p[i] == '.' && sep != '.') {
				*error_r = "Mailbox name contains '.', "
					   "reserved when the hierarchy "
					   "separator is not '.'";
				return -1;
			}
			continue;
		}
		level_len = i - start;
		if (level_len == 0) {
			*error_r = "Mailbox name has an empty hierarchy level";
			return -1;
		}
		if (p[start] == '.') {
			*error_r = level_len == 2 && p[start + 1] == '.' ?
				"Mailbox name has a '..' hierarchy level" :
				"Mailbox name has a hierarchy level starting "
				"with '.'";
			return -1;
		}
		start = i + 1;
	}
	return 0;
}

int mailbox_name_validate(const void *name, size_t len, char sep,
			  char canon_r[MAILBOX_NAME_BUFSIZE],
			  const char **error_r)
{
	const unsigned char *p = name;
	struct buf text = BUF_INIT;
	size_t inbox_len = strlen(MAILBOX_NAME_INBOX);
	bool bad_text;

	if (!mailbox_name_sep_is_valid(sep)) {
		*error_r = "Invalid hierarchy separator";
		return -1;
	}
	if (len == 0) {
		*error_r = "Mailbox name is empty";
		return -1;
	}
	if (len > MAILBOX_NAME_MAX) {
		*error_r = "Mailbox name is too long";
		return -1;
	}
	if (mailbox_name_check_bytes(p, len, sep, error_r) < 0)
		return -1;
	if (mutf7_decode(p, len, &text, error_r) < 0) {
		/* The decoder rolls back the length, not the storage. */
		buf_free(&text);
		return -1;
	}
	bad_text = utf8_has_control(text.data, text.len);
	buf_free(&text);
	if (bad_text) {
		*error_r = "Mailbox name contains a control character";
		return -1;
	}
	if (mailbox_name_check_levels(p, len, sep, error_r) < 0)
		return -1;

	memcpy(canon_r, p, len);
	canon_r[len] = '\0';
	if (len >= inbox_len &&
	    strncasecmp(canon_r, MAILBOX_NAME_INBOX, inbox_len) == 0 &&
	    (len == inbox_len || canon_r[inbox_len] == sep))
		memcpy(canon_r, MAILBOX_NAME_INBOX, inbox_len);
	return 0;
}

bool mailbox_name_is_inbox(const char *canon)
{
	return strcmp(canon, MAILBOX_NAME_INBOX) == 0;
}

int mailbox_name_to_dir(const char *name, char sep,
			char dir_r[MAILBOX_DIR_BUFSIZE], const char **error_r)
{
	char canon[MAILBOX_NAME_BUFSIZE];
	size_t len;

	/* strnlen: a string longer than any valid name is refused without
	 * reading all of it. */
	len = strnlen(name, MAILBOX_NAME_MAX + 1);
	if (mailbox_name_validate(name, len, sep, canon, error_r) < 0)
		return -1;
	if (mailbox_name_is_inbox(canon)) {
		dir_r[0] = '\0';
		return 0;
	}
	len = strlen(canon);
	dir_r[0] = '.';
	for (size_t i = 0; i < len; i++)
		dir_r[i + 1] = canon[i] == sep ? '.' : canon[i];
	dir_r[len + 1] = '\0';
	return 0;
}

int mailbox_name_from_dir(const char *dir, char sep,
			  char name_r[MAILBOX_NAME_BUFSIZE],
			  const char **error_r)
{
	char candidate[MAILBOX_NAME_BUFSIZE], again[MAILBOX_DIR_BUFSIZE];
	size_t len;

	if (dir[0] == '\0') {
		strcpy(name_r, MAILBOX_NAME_INBOX);
		return 0;
	}
	if (dir[0] != '.') {
		*error_r = "Not a Maildir++ folder name";
		return -1;
	}
	len = strnlen(dir + 1, MAILBOX_NAME_MAX + 1);
	if (len > MAILBOX_NAME_MAX) {
		*error_r = "Mailbox name is too long";
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		candidate[i] = dir[i + 1] == '.' ? sep : dir[i + 1];
	candidate[len] = '\0';
	if (mailbox_name_validate(candidate, len, sep, name_r, error_r) < 0)
		return -1;
	if (mailbox_name_to_dir(name_r, sep, again, error_r) < 0)
		return -1;
	if (strcmp(again, dir) != 0) {
		*error_r = "Folder name is not the canonical form of a mailbox";
		return -1;
	}
	return 0;
}
