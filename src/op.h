/*
 * op.h - replication operations and their payload encoding.
 *
 * Every state change of a user's mail state (mailstate.h) is described by
 * one struct op.  The same bytes are written to the node's journal and
 * shipped to the peer, whose applier hands the decoded op to
 * mailstate_apply().  Framing (magic, sender, vector clock, checksums) is
 * the replication layer's business; this is the payload inside it.
 *
 * Encoding, version 1 (integers big-endian; str = u16 length + bytes;
 * list = u32 count + that many str):
 *
 *   u8 version (OP_VERSION), u8 type, str user, str mailbox, then by type:
 *   CREATE       str tag, u32 uidvalidity
 *   DELETE       list tags, list msg_tags
 *   RENAME       str new_mailbox, str tag, u32 uidvalidity, u64 uidnext,
 *                list tags, u32 n * { str msg_tag, list placements }
 *   APPEND       str tag, u32 uidvalidity, u32 uid, u64 internal_date
 *                (two's complement), u8 flags, list keywords, list tags,
 *                u64 body_len, body_len bytes of message
 *   EXPUNGE      u64 uidnext, list msg_tags
 *   STORE        str tag, u32 n * { str msg_tag, u8 add_flags,
 *                list add_keywords, u32 m * { str flag, str tag } }
 *   UID_RENUMBER u32 n * { str msg_tag, u32 old_uid, u32 new_uid }
 *
 * The body of an APPEND comes last so that a writer can emit the header
 * with op_encode_header() and then write the message bytes straight from
 * where they already are (no 64 MiB copy); header followed by body is
 * exactly what op_encode() produces and op_decode() reads.  For every other
 * type op_encode_header() writes the whole payload.
 *
 * What the fields mean (and how concurrent operations merge) is documented
 * in mailstate.h.
 */
#ifndef PLUTO_OP_H
#define PLUTO_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "orset.h"

#define OP_VERSION 1

/* Limits that op_validate and op_decode enforce. */
#define OP_USER_MAX 255
#define OP_MAILBOX_MAX 1024
#define OP_KEYWORD_MAX 64
/* Keywords in one flag set (APPEND, one STORE entry). */
#define OP_KEYWORDS_MAX 64
/* Same as the default IMAP literal limit. */
#define OP_BODY_MAX ((size_t)64 * 1024 * 1024)
/* Entries of any one list (tags of a DELETE of a huge mailbox...). */
#define OP_LIST_MAX ((size_t)1 << 22)
/* Placement tags per moved message, flag removals per STORE entry. */
#define OP_PLACEMENTS_MAX 64
#define OP_REMOVES_MAX 1024
/* UIDNEXT may reach 2^32 when UID 4294967295 has been used. */
#define OP_UIDNEXT_MAX ((uint64_t)UINT32_MAX + 1)

enum op_type {
	OP_CREATE = 1,
	OP_DELETE = 2,
	OP_RENAME = 3,
	OP_APPEND = 4,
	OP_EXPUNGE = 5,
	OP_STORE = 6,
	OP_UID_RENUMBER = 7,
};

/* The IMAP system flags (\Recent is per session and never replicated). */
enum op_flag {
	OP_FLAG_SEEN = 0x01,
	OP_FLAG_ANSWERED = 0x02,
	OP_FLAG_FLAGGED = 0x04,
	OP_FLAG_DELETED = 0x08,
	OP_FLAG_DRAFT = 0x10,
};
#define OP_FLAGS_ALL 0x1fu

/* A flag instance being removed: flag is a system flag's canonical name
 * ("\\Seen") or a keyword; tag is the tag it was added under. */
struct op_flag_tag {
	char *flag;
	char *tag;
};

/* One message of a STORE: add add_flags and add_keywords under the op's
 * tag, and remove the listed flag instances. */
struct op_store_entry {
	char *msg_tag;
	unsigned add_flags;
	char **add_keywords;
	size_t add_keyword_count;
	struct op_flag_tag *removes;
	size_t remove_count;
};

/* One message moved by a RENAME, with the placement tags it was observed
 * under (they are replaced by the op's tag). */
struct op_move {
	char *msg_tag;
	char **placements;
	size_t placement_count;
};

struct op_renumber {
	char *msg_tag;
	uint32_t old_uid;
	uint32_t new_uid;
};

/*
 * Fields used by each type are listed in the encoding above; the others
 * are zero/NULL.  Strings are NUL-terminated and owned by the op, except
 * body, which is borrowed (from the caller of mailstate_append, or from the
 * buffer given to op_decode) and must outlive every use of the op.
 */
struct op {
	enum op_type type;
	char *user;
	char *mailbox;
	char *new_mailbox;
	char *tag;
	uint32_t uidvalidity;
	uint64_t uidnext;
	uint32_t uid;
	int64_t internal_date;
	unsigned flags;
	char **keywords;
	size_t keyword_count;
	char **tags;
	size_t tag_count;
	char **msg_tags;
	size_t msg_tag_count;
	struct op_move *moves;
	size_t move_count;
	struct op_store_entry *entries;
	size_t entry_count;
	struct op_renumber *renumbers;
	size_t renumber_count;
	const unsigned char *body;
	size_t body_len;
};

/* "create", "delete", ... or "unknown". */
const char *op_type_name(enum op_type type);
/* The canonical name of one system flag bit ("\\Seen"), or NULL. */
const char *op_flag_name(unsigned flag);
/* The bit of a system flag name, case-insensitively; 0 when name is not a
 * system flag. */
unsigned op_flag_from_name(const char *name);
/* Whether name is a valid keyword: 1..OP_KEYWORD_MAX atom characters (no
 * space, control, ( ) { % * " \ ]), so it cannot start with a backslash. */
bool op_keyword_valid(const char *name);
/* Whether name is a valid mailbox name: 1..OP_MAILBOX_MAX bytes, none of
 * them a control character (NUL, CR, LF, ...).  Path safety is the Maildir
 * layer's check; this is what every replica must agree on. */
bool op_mailbox_valid(const char *name);
/* Whether name is a valid user name: 1..OP_USER_MAX bytes, no control
 * character. */
bool op_user_valid(const char *name);

/* A zeroed op of that type with copies of user and mailbox, or NULL when
 * out of memory.  Free with op_free. */
struct op *op_new(enum op_type type, const char *user, const char *mailbox);
/* Frees everything the op owns (not the body); *op becomes NULL. */
void op_free(struct op **op);

/* Checks every field against the rules and limits above.  Returns 0, or -1
 * with *error_r naming the problem. */
int op_validate(const struct op *op, const char **error_r);

/* Appends the encoding of op, except the body bytes of an APPEND, to out.
 * Returns 0, or -1 with *error_r when the op is invalid or memory ran out;
 * out may then hold a partial encoding (truncate it back). */
int op_encode_header(const struct op *op, struct buf *out,
		     const char **error_r);
/* The whole payload: the header and, for an APPEND, the body. */
int op_encode(const struct op *op, struct buf *out, const char **error_r);

/* Decodes exactly len bytes.  Rejects truncation, trailing bytes, an
 * unknown version or type, anything op_validate rejects, and lists longer
 * than the input could hold (so a forged count cannot make it allocate).
 * Returns 0 and a new op (caller frees; its body points into data), or -1
 * with *error_r. */
int op_decode(const void *data, size_t len, struct op **op_r,
	      const char **error_r);

#endif
