/*
 * imap_parser.h - incremental parser for IMAP4rev1 client commands.
 *
 * Pure: no I/O, no logging of client data.  The session feeds whatever it
 * read; the parser answers with one of four results:
 *
 *   IMAP_PARSE_COMPLETE          a command is ready: take it with
 *                                imap_parser_take_command().  Only the bytes
 *                                of that command were consumed; feed the
 *                                rest again (pipelining).
 *   IMAP_PARSE_NEED_MORE         every byte was consumed; feed more.
 *   IMAP_PARSE_NEED_CONTINUATION a synchronising literal {n} was announced
 *                                and the command so far is valid: send
 *                                "+ ..." (or refuse with
 *                                imap_parser_reject_continuation()), then
 *                                feed the rest.  n is
 *                                imap_parser_continuation_size().
 *   IMAP_PARSE_ERROR             the command is invalid.  Answer
 *                                "TAG BAD msg", or "* BAD msg" when no tag
 *                                could be read (imap_parser_get_error()).
 *                                A non-fatal error has the parser skip the
 *                                rest of that command by itself (including
 *                                the bytes of non-synchronising literals
 *                                it announced) and go on with the next.  A
 *                                fatal one (line too long, oversized {n+},
 *                                out of memory) cannot be resynchronised:
 *                                answer BAD and close; every further feed
 *                                returns ERROR and consumes nothing.
 *
 * Only a command's own bytes are consumed, so lines that are not commands
 * (the "DONE" ending IDLE, AUTHENTICATE responses) stay in the caller's
 * buffer after COMPLETE: the session reads those itself, then feeds the
 * parser again.
 *
 * The result of a byte stream never depends on how it is split into feeds:
 * feeding a whole buffer or one byte at a time gives the same sequence of
 * results (the unit tests check this for every case).
 *
 * Lexical rules (RFC 3501 section 9, RFC 7888 LITERAL+):
 * - A line ends at CRLF; a lone LF is accepted too, a CR not followed by LF
 *   is an error.  Literals {n} and {n+} may carry any octets, NUL included.
 * - Outside literals, NUL, 8-bit octets and (outside quoted strings)
 *   control characters are errors.  Quoted strings hold 7-bit TEXT-CHARs;
 *   only \\ and \" are valid escapes.
 * - A tag is 1*<ASTRING-CHAR except "+">; command names are
 *   case-insensitive and must be in the command table (RFC 3501 plus IDLE,
 *   MOVE, UID EXPUNGE/MOVE, UNSELECT, NAMESPACE, ID, ENABLE).
 *
 * Limits (struct imap_parser_limits; a zero field means its default):
 * - max_line_size: bytes of one command, terminator and literal contents
 *   included, except the message literal of APPEND (default 64 KiB).
 *   Exceeding it is fatal; a synchronising literal that would exceed it is
 *   refused (non-fatal), a non-synchronising one is fatal.
 * - max_literal_size: size of the APPEND message literal (default 64 MiB,
 *   from the configuration).  Same refusal rules.  Literal sizes are
 *   overflow-checked while their digits are read.
 * - max_depth: parenthesis nesting (default 16).
 * - max_args: tokens (atoms, strings, lists) in one command (default 1000).
 * - max_search_depth: nesting of SEARCH keys through parentheses, NOT and
 *   OR, which bounds the parser's recursion (default 64).
 */
#ifndef PLUTO_IMAP_PARSER_H
#define PLUTO_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"

struct imap_parser_limits {
	size_t max_line_size;
	uint64_t max_literal_size;
	unsigned max_depth;
	unsigned max_args;
	unsigned max_search_depth;
};

#define IMAP_PARSER_DEFAULT_LINE_SIZE ((size_t)64 * 1024)
#define IMAP_PARSER_DEFAULT_LITERAL_SIZE ((uint64_t)64 * 1024 * 1024)
#define IMAP_PARSER_DEFAULT_DEPTH 16U
#define IMAP_PARSER_DEFAULT_ARGS 1000U
#define IMAP_PARSER_DEFAULT_SEARCH_DEPTH 64U

enum imap_parse_result {
	IMAP_PARSE_ERROR = -1,
	IMAP_PARSE_NEED_MORE = 0,
	IMAP_PARSE_COMPLETE = 1,
	IMAP_PARSE_NEED_CONTINUATION = 2,
};

enum imap_cmd_id {
	IMAP_CMD_CAPABILITY,
	IMAP_CMD_NOOP,
	IMAP_CMD_LOGOUT,
	IMAP_CMD_STARTTLS,
	IMAP_CMD_AUTHENTICATE,
	IMAP_CMD_LOGIN,
	IMAP_CMD_SELECT,
	IMAP_CMD_EXAMINE,
	IMAP_CMD_CREATE,
	IMAP_CMD_DELETE,
	IMAP_CMD_RENAME,
	IMAP_CMD_SUBSCRIBE,
	IMAP_CMD_UNSUBSCRIBE,
	IMAP_CMD_LIST,
	IMAP_CMD_LSUB,
	IMAP_CMD_STATUS,
	IMAP_CMD_APPEND,
	IMAP_CMD_CHECK,
	IMAP_CMD_CLOSE,
	IMAP_CMD_EXPUNGE,
	IMAP_CMD_SEARCH,
	IMAP_CMD_FETCH,
	IMAP_CMD_STORE,
	IMAP_CMD_COPY,
	IMAP_CMD_MOVE,
	IMAP_CMD_IDLE,
	IMAP_CMD_UNSELECT,
	IMAP_CMD_NAMESPACE,
	IMAP_CMD_ID,
	IMAP_CMD_ENABLE,
	IMAP_CMD_COUNT
};

/* Upper-case name of a command id ("UID" is a prefix, not a command). */
const char *imap_cmd_name(enum imap_cmd_id id);

/*
 * A length-tracked string borrowed from the command (valid until
 * imap_command_free).  data is NUL-terminated for convenience but may hold
 * NUL octets when it came from a literal: check with imap_string_is_text()
 * before using it as a C string.  data is NULL only for NIL (ID values).
 */
struct imap_string {
	const char *data;
	size_t len;
};

/* True when s has no NUL inside, so s->data is a complete C string. */
bool imap_string_is_text(const struct imap_string *s);

/*
 * A sequence set as sorted, merged, non-overlapping ranges lo <= hi.  '*'
 * is IMAP_SEQ_STAR, greater than any number (numbers are 1..2^32-1; 0 is
 * rejected by the parser), so "*" is {STAR, STAR}, "3:*" and "*:3" are
 * {3, STAR}, and only the last range can hold STAR.
 */
#define IMAP_SEQ_STAR ((uint64_t)UINT32_MAX + 1)

struct imap_seq_range {
	uint64_t lo, hi;
};

struct imap_seqset {
	const struct imap_seq_range *ranges;
	unsigned count;		/* >= 1 */
};

/*
 * True when n is in set, with '*' meaning max, the highest message number
 * or UID of the mailbox (RFC 3501 6.4.8: "5:*" with max 3 means 3:5, so it
 * contains 3).  Numbers above max, and everything when max is 0, are out.
 */
bool imap_seqset_contains(const struct imap_seqset *set, uint32_t n,
			  uint32_t max);

/* System flags, as bits. */
enum imap_flag {
	IMAP_FLAG_SEEN = 1U << 0,
	IMAP_FLAG_ANSWERED = 1U << 1,
	IMAP_FLAG_FLAGGED = 1U << 2,
	IMAP_FLAG_DELETED = 1U << 3,
	IMAP_FLAG_DRAFT = 1U << 4,
	IMAP_FLAG_RECENT = 1U << 5,	/* never in a parsed command */
};

/* A flag list: system flags (case-insensitive on the wire) and keywords
 * (atoms, kept as sent, in order, possibly repeated).  \Recent and unknown
 * \Flags are rejected by STORE and APPEND. */
struct imap_flags {
	unsigned system;	/* enum imap_flag bits */
	const struct imap_string *keywords;
	unsigned keyword_count;
};

enum imap_status_item {
	IMAP_STATUS_MESSAGES = 1U << 0,
	IMAP_STATUS_RECENT = 1U << 1,
	IMAP_STATUS_UIDNEXT = 1U << 2,
	IMAP_STATUS_UIDVALIDITY = 1U << 3,
	IMAP_STATUS_UNSEEN = 1U << 4,
};

enum imap_fetch_type {
	IMAP_FETCH_ENVELOPE,
	IMAP_FETCH_FLAGS,
	IMAP_FETCH_INTERNALDATE,
	IMAP_FETCH_RFC822,
	IMAP_FETCH_RFC822_HEADER,
	IMAP_FETCH_RFC822_SIZE,
	IMAP_FETCH_RFC822_TEXT,
	IMAP_FETCH_BODY,		/* BODY without a section */
	IMAP_FETCH_BODYSTRUCTURE,
	IMAP_FETCH_UID,
	IMAP_FETCH_BODY_SECTION,	/* BODY[...] and BODY.PEEK[...] */
};

enum imap_section_text {
	IMAP_SECTION_ALL,		/* [] or [1.2]: the whole part */
	IMAP_SECTION_HEADER,
	IMAP_SECTION_HEADER_FIELDS,
	IMAP_SECTION_HEADER_FIELDS_NOT,
	IMAP_SECTION_TEXT,
	IMAP_SECTION_MIME,		/* only after a part number */
};

struct imap_fetch_att {
	enum imap_fetch_type type;
	/* The rest is for IMAP_FETCH_BODY_SECTION only. */
	bool peek;
	const uint32_t *parts;		/* "1.2.3": {1, 2, 3}; may be empty */
	unsigned part_count;
	enum imap_section_text text;
	const struct imap_string *fields;	/* HEADER.FIELDS[.NOT] names */
	unsigned field_count;
	bool partial;			/* <offset.length> given */
	uint32_t partial_offset, partial_length;
};

enum imap_search_type {
	IMAP_SEARCH_AND,	/* children: all must match */
	IMAP_SEARCH_OR,		/* children: exactly two */
	IMAP_SEARCH_NOT,	/* children: exactly one */
	IMAP_SEARCH_ALL,
	IMAP_SEARCH_ANSWERED,
	IMAP_SEARCH_DELETED,
	IMAP_SEARCH_DRAFT,
	IMAP_SEARCH_FLAGGED,
	IMAP_SEARCH_NEW,
	IMAP_SEARCH_OLD,
	IMAP_SEARCH_RECENT,
	IMAP_SEARCH_SEEN,
	IMAP_SEARCH_UNANSWERED,
	IMAP_SEARCH_UNDELETED,
	IMAP_SEARCH_UNDRAFT,
	IMAP_SEARCH_UNFLAGGED,
	IMAP_SEARCH_UNSEEN,
	IMAP_SEARCH_KEYWORD,	/* str: an atom */
	IMAP_SEARCH_UNKEYWORD,	/* str */
	IMAP_SEARCH_BCC,	/* str: an astring, any charset */
	IMAP_SEARCH_BODY,
	IMAP_SEARCH_CC,
	IMAP_SEARCH_FROM,
	IMAP_SEARCH_SUBJECT,
	IMAP_SEARCH_TEXT,
	IMAP_SEARCH_TO,
	IMAP_SEARCH_HEADER,	/* field, str */
	IMAP_SEARCH_BEFORE,	/* date */
	IMAP_SEARCH_ON,
	IMAP_SEARCH_SINCE,
	IMAP_SEARCH_SENTBEFORE,
	IMAP_SEARCH_SENTON,
	IMAP_SEARCH_SENTSINCE,
	IMAP_SEARCH_LARGER,	/* number */
	IMAP_SEARCH_SMALLER,
	IMAP_SEARCH_UID,	/* set (UIDs) */
	IMAP_SEARCH_SEQSET,	/* set (message numbers) */
};

struct imap_search_key {
	enum imap_search_type type;
	struct imap_string str;
	struct imap_string field;
	time_t date;		/* 00:00:00 UTC of the day */
	uint32_t number;
	struct imap_seqset set;
	const struct imap_search_key *children;	/* AND, OR, NOT */
	const struct imap_search_key *next;	/* sibling */
};

enum imap_store_mode {
	IMAP_STORE_REPLACE,	/* FLAGS */
	IMAP_STORE_ADD,		/* +FLAGS */
	IMAP_STORE_REMOVE,	/* -FLAGS */
};

struct imap_command_mem;

/*
 * A parsed command: everything the handlers need, validated against the
 * command's grammar.  Only the union member of the command's family is
 * set (see each comment); all strings are borrowed from the command.
 */
struct imap_command {
	const char *tag;
	enum imap_cmd_id id;
	const char *name;	/* upper-case, static */
	bool uid;		/* "UID FETCH" etc. */
	union {
		/* AUTHENTICATE mechanism [initial-response]: the response is
		 * the raw base64 (checked for the alphabet), "=" for empty. */
		struct {
			struct imap_string mechanism;
			bool has_initial;
			struct imap_string initial;
		} authenticate;
		struct {
			struct imap_string user, password;
		} login;
		/* SELECT EXAMINE CREATE DELETE SUBSCRIBE UNSUBSCRIBE.  A
		 * mailbox named INBOX in any case is given as "INBOX"; other
		 * names are as sent (modified UTF-7 is not decoded, names
		 * from literals may hold any octet). */
		struct {
			struct imap_string name;
		} mailbox;
		struct {
			struct imap_string from, to;
		} rename;
		/* LIST LSUB: reference and pattern as sent. */
		struct {
			struct imap_string reference, pattern;
		} list;
		struct {
			struct imap_string mailbox;
			unsigned items;		/* enum imap_status_item bits */
		} status;
		/* message borrows the literal's bytes (any octets). */
		struct {
			struct imap_string mailbox;
			bool has_flags;
			struct imap_flags flags;
			bool has_date;
			time_t date;
			struct imap_string message;
		} append;
		/* keys is one AND node holding the top-level keys. */
		struct {
			bool has_charset;
			struct imap_string charset;
			const struct imap_search_key *keys;
		} search;
		/* Macros ALL, FAST and FULL are expanded.  For UID FETCH the
		 * handler must add UID itself when it is missing. */
		struct {
			struct imap_seqset set;
			const struct imap_fetch_att *atts;
			unsigned count;
		} fetch;
		struct {
			struct imap_seqset set;
			enum imap_store_mode mode;
			bool silent;
			struct imap_flags flags;
		} store;
		/* COPY MOVE */
		struct {
			struct imap_seqset set;
			struct imap_string mailbox;
		} copy;
		/* EXPUNGE, and UID EXPUNGE with has_set. */
		struct {
			bool has_set;
			struct imap_seqset set;
		} expunge;
		/* ID: nil, or count field/value pairs (value.data NULL for
		 * NIL). */
		struct {
			bool nil;
			const struct imap_string *fields, *values;
			unsigned count;
		} id;
		struct {
			const struct imap_string *capabilities;
			unsigned count;
		} enable;
	} u;
	struct imap_command_mem *mem;	/* private */
};

void imap_command_free(struct imap_command **cmd);

/*
 * Appends a canonical one-line rendering of cmd to out, e.g.
 *   A1 UID FETCH 1:3,7:* (FLAGS BODY.PEEK[HEADER.FIELDS ("From")]<0.64>)
 * for tests and debugging.  The LOGIN password, the AUTHENTICATE initial
 * response and the APPEND message are shown only by size, but mailbox
 * names and search strings are client data: quote before logging.
 * Returns 0, or -1 when out cannot grow.
 */
int imap_command_dump(const struct imap_command *cmd, struct buf *out);

struct imap_parser;

/* Sets every field to its default. */
void imap_parser_limits_default(struct imap_parser_limits *limits);

/* limits may be NULL (defaults); it is copied.  NULL on ENOMEM. */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits);
void imap_parser_free(struct imap_parser **p);

/*
 * Consumes bytes from data and returns as explained at the top.  *consumed_r
 * is always set: the caller must feed data + *consumed_r again (with more
 * input appended as it arrives) after handling the result.  A command not
 * taken before the next feed is freed.
 */
enum imap_parse_result imap_parser_feed(struct imap_parser *p,
					const void *data, size_t len,
					size_t *consumed_r);

/* After COMPLETE: the command, which the caller now owns; NULL otherwise. */
struct imap_command *imap_parser_take_command(struct imap_parser *p);

/* After NEED_CONTINUATION: the announced literal size n. */
uint64_t imap_parser_continuation_size(const struct imap_parser *p);

/* After NEED_CONTINUATION: tag and command of the command waiting for the
 * literal (e.g. so that APPEND can answer NO [TRYCREATE] instead of "+"). */
void imap_parser_get_pending(const struct imap_parser *p, const char **tag_r,
			     enum imap_cmd_id *id_r);

/*
 * Right after NEED_CONTINUATION, instead of sending "+": drop that command
 * (the client will not send the literal once it got a tagged answer).  The
 * next byte fed starts a new command.
 */
void imap_parser_reject_continuation(struct imap_parser *p);

/*
 * After ERROR: the message for BAD (static text, no client data), *tag_r
 * the tag (NULL when none could be read: answer "* BAD"), *fatal_r whether
 * the connection must be closed.  Valid until the next feed.
 */
const char *imap_parser_get_error(const struct imap_parser *p,
				  const char **tag_r, bool *fatal_r);

/* True when the parser holds part of a command (e.g. at EOF: the client
 * hung up mid-command). */
bool imap_parser_in_command(const struct imap_parser *p);

#endif
