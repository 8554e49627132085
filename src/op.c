/*
 * op.c - encoding, decoding and validation of replication operations.
 *
 * Decoding is in two steps: a structural pass that only trusts what the
 * input can back (every count is checked against the bytes left, times the
 * smallest encoding of one entry, before anything is allocated), then
 * op_validate(), the same semantic check the encoder applies, so that no
 * op that one side could not have produced is ever accepted.  A payload
 * comes from a peer and may be hostile: nothing here may crash or allocate
 * without bound on any input.
 */
#include "autoconfig.h"

#include "op.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const flag_names[] = {
	"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft",
};

const char *op_type_name(enum op_type type)
{
	switch (type) {
	case OP_CREATE:
		return "create";
	case OP_DELETE:
		return "delete";
	case OP_RENAME:
		return "rename";
	case OP_APPEND:
		return "append";
	case OP_EXPUNGE:
		return "expunge";
	case OP_STORE:
		return "store";
	case OP_UID_RENUMBER:
		return "uid-renumber";
	}
	return "unknown";
}

const char *op_flag_name(unsigned flag)
{
	for (unsigned i = 0; i < 5; i++)
		if (flag == 1u << i)
			return flag_names[i];
	return NULL;
}

unsigned op_flag_from_name(const char *name)
{
	for (unsigned i = 0; i < 5; i++)
		if (strcasecmp(name, flag_names[i]) == 0)
			return 1u << i;
	return 0;
}

bool op_keyword_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > OP_KEYWORD_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return true;
}

static bool printable_bounded(const char *s, size_t max)
{
	size_t len = strlen(s);

	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

bool op_mailbox_valid(const char *name)
{
	return name != NULL && printable_bounded(name, OP_MAILBOX_MAX);
}

bool op_user_valid(const char *name)
{
	return name != NULL && printable_bounded(name, OP_USER_MAX);
}

struct op *op_new(enum op_type type, const char *user, const char *mailbox)
{
	struct op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->type = type;
	op->user = strdup(user);
	op->mailbox = strdup(mailbox);
	if (op->user == NULL || op->mailbox == NULL)
		op_free(&op);
	return op;
}

static void strlist_free(char **list, size_t count)
{
	if (list == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		free(list[i]);
	free(list);
}

void op_free(struct op **opp)
{
	struct op *op = *opp;

	if (op == NULL)
		return;
	free(op->user);
	free(op->mailbox);
	free(op->new_mailbox);
	free(op->tag);
	strlist_free(op->keywords, op->keyword_count);
	strlist_free(op->tags, op->tag_count);
	strlist_free(op->msg_tags, op->msg_tag_count);
	for (size_t i = 0; op->moves != NULL && i < op->move_count; i++) {
		free(op->moves[i].msg_tag);
		strlist_free(op->moves[i].placements,
			     op->moves[i].placement_count);
	}
	free(op->moves);
	for (size_t i = 0; op->entries != NULL && i < op->entry_count; i++) {
		struct op_store_entry *e = &op->entries[i];

		free(e->msg_tag);
		strlist_free(e->add_keywords, e->add_keyword_count);
		for (size_t j = 0; e->removes != NULL && j < e->remove_count;
		     j++) {
			free(e->removes[j].flag);
			free(e->removes[j].tag);
		}
		free(e->removes);
	}
	free(op->entries);
	for (size_t i = 0; op->renumbers != NULL && i < op->renumber_count;
	     i++)
		free(op->renumbers[i].msg_tag);
	free(op->renumbers);
	free(op);
	*opp = NULL;
}

/*
 * Validation.
 */

static bool tag_ok(const char *tag)
{
	return tag != NULL && orset_tag_valid(tag, strlen(tag));
}

static int check_tags(char **tags, size_t count, bool nonempty,
		      const char *what, const char **error_r)
{
	if ((nonempty && count == 0) || count > OP_LIST_MAX ||
	    (count > 0 && tags == NULL)) {
		*error_r = what;
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		if (!tag_ok(tags[i])) {
			*error_r = what;
			return -1;
		}
	}
	return 0;
}

static int check_keywords(char **kw, size_t count, const char **error_r)
{
	if (count > OP_KEYWORDS_MAX || (count > 0 && kw == NULL)) {
		*error_r = "too many keywords";
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		if (kw[i] == NULL || !op_keyword_valid(kw[i])) {
			*error_r = "invalid keyword";
			return -1;
		}
		/* Keywords compare case-insensitively, as flags do. */
		for (size_t j = 0; j < i; j++) {
			if (strcasecmp(kw[i], kw[j]) == 0) {
				*error_r = "duplicate keyword";
				return -1;
			}
		}
	}
	return 0;
}

static bool flag_string_ok(const char *flag)
{
	if (flag == NULL)
		return false;
	if (flag[0] == '\\') {
		unsigned bit = op_flag_from_name(flag);

		/* Canonical spelling only, so that replicas compare bytes. */
		return bit != 0 && strcmp(flag, op_flag_name(bit)) == 0;
	}
	return op_keyword_valid(flag);
}

static int check_store(const struct op *op, const char **error_r)
{
	if (op->entry_count == 0 || op->entry_count > OP_LIST_MAX ||
	    op->entries == NULL) {
		*error_r = "store without messages";
		return -1;
	}
	for (size_t i = 0; i < op->entry_count; i++) {
		const struct op_store_entry *e = &op->entries[i];

		if (!tag_ok(e->msg_tag)) {
			*error_r = "invalid message tag";
			return -1;
		}
		if ((e->add_flags & ~OP_FLAGS_ALL) != 0) {
			*error_r = "unknown flag bits";
			return -1;
		}
		if (check_keywords(e->add_keywords, e->add_keyword_count,
				   error_r) < 0)
			return -1;
		if (e->remove_count > OP_REMOVES_MAX ||
		    (e->remove_count > 0 && e->removes == NULL)) {
			*error_r = "too many flag removals";
			return -1;
		}
		if (e->add_flags == 0 && e->add_keyword_count == 0 &&
		    e->remove_count == 0) {
			*error_r = "empty store entry";
			return -1;
		}
		for (size_t j = 0; j < e->remove_count; j++) {
			if (!flag_string_ok(e->removes[j].flag) ||
			    !tag_ok(e->removes[j].tag)) {
				*error_r = "invalid flag removal";
				return -1;
			}
		}
	}
	return 0;
}

static int check_moves(const struct op *op, const char **error_r)
{
	if (op->move_count > OP_LIST_MAX ||
	    (op->move_count > 0 && op->moves == NULL)) {
		*error_r = "too many moved messages";
		return -1;
	}
	for (size_t i = 0; i < op->move_count; i++) {
		const struct op_move *m = &op->moves[i];

		if (!tag_ok(m->msg_tag) || m->placement_count == 0 ||
		    m->placement_count > OP_PLACEMENTS_MAX ||
		    check_tags(m->placements, m->placement_count, true,
			       "invalid placement tag", error_r) < 0) {
			*error_r = "invalid moved message";
			return -1;
		}
	}
	return 0;
}

static int check_renumbers(const struct op *op, const char **error_r)
{
	if (op->renumber_count == 0 || op->renumber_count > OP_LIST_MAX ||
	    op->renumbers == NULL) {
		*error_r = "renumber without messages";
		return -1;
	}
	for (size_t i = 0; i < op->renumber_count; i++) {
		const struct op_renumber *n = &op->renumbers[i];

		if (!tag_ok(n->msg_tag)) {
			*error_r = "invalid message tag";
			return -1;
		}
		/* UID 0 does not exist, and renumbering only moves up. */
		if (n->old_uid == 0 || n->new_uid <= n->old_uid) {
			*error_r = "invalid renumbering";
			return -1;
		}
	}
	return 0;
}

int op_validate(const struct op *op, const char **error_r)
{
	if (!op_user_valid(op->user)) {
		*error_r = "invalid user name";
		return -1;
	}
	if (!op_mailbox_valid(op->mailbox)) {
		*error_r = "invalid mailbox name";
		return -1;
	}
	switch (op->type) {
	case OP_CREATE:
		if (!tag_ok(op->tag)) {
			*error_r = "invalid tag";
			return -1;
		}
		if (op->uidvalidity == 0) {
			*error_r = "UIDVALIDITY 0";
			return -1;
		}
		return 0;
	case OP_DELETE:
		if (check_tags(op->tags, op->tag_count, true,
			       "invalid mailbox tags", error_r) < 0)
			return -1;
		return check_tags(op->msg_tags, op->msg_tag_count, false,
				  "invalid message tags", error_r);
	case OP_RENAME:
		if (!op_mailbox_valid(op->new_mailbox) ||
		    strcmp(op->mailbox, op->new_mailbox) == 0) {
			*error_r = "invalid new mailbox name";
			return -1;
		}
		if (!tag_ok(op->tag)) {
			*error_r = "invalid tag";
			return -1;
		}
		if (op->uidvalidity == 0) {
			*error_r = "UIDVALIDITY 0";
			return -1;
		}
		if (op->uidnext == 0 || op->uidnext > OP_UIDNEXT_MAX) {
			*error_r = "invalid UIDNEXT";
			return -1;
		}
		if (check_tags(op->tags, op->tag_count, true,
			       "invalid mailbox tags", error_r) < 0)
			return -1;
		return check_moves(op, error_r);
	case OP_APPEND:
		if (!tag_ok(op->tag)) {
			*error_r = "invalid tag";
			return -1;
		}
		if (op->uidvalidity == 0) {
			*error_r = "UIDVALIDITY 0";
			return -1;
		}
		if (op->uid == 0) {
			*error_r = "UID 0";
			return -1;
		}
		if ((op->flags & ~OP_FLAGS_ALL) != 0) {
			*error_r = "unknown flag bits";
			return -1;
		}
		if (op->body_len > OP_BODY_MAX) {
			*error_r = "message too large";
			return -1;
		}
		if (check_keywords(op->keywords, op->keyword_count,
				   error_r) < 0)
			return -1;
		return check_tags(op->tags, op->tag_count, false,
				  "invalid mailbox tags", error_r);
	case OP_EXPUNGE:
		if (op->uidnext == 0 || op->uidnext > OP_UIDNEXT_MAX) {
			*error_r = "invalid UIDNEXT";
			return -1;
		}
		return check_tags(op->msg_tags, op->msg_tag_count, true,
				  "invalid message tags", error_r);
	case OP_STORE:
		if (!tag_ok(op->tag)) {
			*error_r = "invalid tag";
			return -1;
		}
		return check_store(op, error_r);
	case OP_UID_RENUMBER:
		return check_renumbers(op, error_r);
	}
	*error_r = "unknown operation type";
	return -1;
}

/*
 * Encoding.
 */

static int put_str(struct buf *out, const char *s)
{
	size_t len = strlen(s);

	/* Validation bounds every string far below 64 KiB. */
	if (len > UINT16_MAX)
		return -1;
	if (buf_put_u16(out, (uint16_t)len) < 0)
		return -1;
	return buf_append(out, s, len);
}

static int put_list(struct buf *out, char **list, size_t count)
{
	if (buf_put_u32(out, (uint32_t)count) < 0)
		return -1;
	for (size_t i = 0; i < count; i++)
		if (put_str(out, list[i]) < 0)
			return -1;
	return 0;
}

static int encode_body_fields(const struct op *op, struct buf *out)
{
	switch (op->type) {
	case OP_CREATE:
		if (put_str(out, op->tag) < 0 ||
		    buf_put_u32(out, op->uidvalidity) < 0)
			return -1;
		return 0;
	case OP_DELETE:
		if (put_list(out, op->tags, op->tag_count) < 0)
			return -1;
		return put_list(out, op->msg_tags, op->msg_tag_count);
	case OP_RENAME:
		if (put_str(out, op->new_mailbox) < 0 ||
		    put_str(out, op->tag) < 0 ||
		    buf_put_u32(out, op->uidvalidity) < 0 ||
		    buf_put_u64(out, op->uidnext) < 0 ||
		    put_list(out, op->tags, op->tag_count) < 0 ||
		    buf_put_u32(out, (uint32_t)op->move_count) < 0)
			return -1;
		for (size_t i = 0; i < op->move_count; i++)
			if (put_str(out, op->moves[i].msg_tag) < 0 ||
			    put_list(out, op->moves[i].placements,
				     op->moves[i].placement_count) < 0)
				return -1;
		return 0;
	case OP_APPEND:
		if (put_str(out, op->tag) < 0 ||
		    buf_put_u32(out, op->uidvalidity) < 0 ||
		    buf_put_u32(out, op->uid) < 0 ||
		    buf_put_u64(out, (uint64_t)op->internal_date) < 0 ||
		    buf_put_u8(out, (uint8_t)op->flags) < 0 ||
		    put_list(out, op->keywords, op->keyword_count) < 0 ||
		    put_list(out, op->tags, op->tag_count) < 0 ||
		    buf_put_u64(out, op->body_len) < 0)
			return -1;
		return 0;
	case OP_EXPUNGE:
		if (buf_put_u64(out, op->uidnext) < 0)
			return -1;
		return put_list(out, op->msg_tags, op->msg_tag_count);
	case OP_STORE:
		if (put_str(out, op->tag) < 0 ||
		    buf_put_u32(out, (uint32_t)op->entry_count) < 0)
			return -1;
		for (size_t i = 0; i < op->entry_count; i++) {
			const struct op_store_entry *e = &op->entries[i];

			if (put_str(out, e->msg_tag) < 0 ||
			    buf_put_u8(out, (uint8_t)e->add_flags) < 0 ||
			    put_list(out, e->add_keywords,
				     e->add_keyword_count) < 0 ||
			    buf_put_u32(out, (uint32_t)e->remove_count) < 0)
				return -1;
			for (size_t j = 0; j < e->remove_count; j++)
				if (put_str(out, e->removes[j].flag) < 0 ||
				    put_str(out, e->removes[j].tag) < 0)
					return -1;
		}
		return 0;
	case OP_UID_RENUMBER:
		if (buf_put_u32(out, (uint32_t)op->renumber_count) < 0)
			return -1;
		for (size_t i = 0; i < op->renumber_count; i++)
			if (put_str(out, op->renumbers[i].msg_tag) < 0 ||
			    buf_put_u32(out, op->renumbers[i].old_uid) < 0 ||
			    buf_put_u32(out, op->renumbers[i].new_uid) < 0)
				return -1;
		return 0;
	}
	return -1;
}

int op_encode_header(const struct op *op, struct buf *out,
		     const char **error_r)
{
	if (op_validate(op, error_r) < 0)
		return -1;
	if (buf_put_u8(out, OP_VERSION) < 0 ||
	    buf_put_u8(out, (uint8_t)op->type) < 0 ||
	    put_str(out, op->user) < 0 || put_str(out, op->mailbox) < 0 ||
	    encode_body_fields(op, out) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}

int op_encode(const struct op *op, struct buf *out, const char **error_r)
{
	if (op->type == OP_APPEND && op->body_len > 0 && op->body == NULL) {
		*error_r = "append without its body";
		return -1;
	}
	if (op_encode_header(op, out, error_r) < 0)
		return -1;
	if (op->type == OP_APPEND &&
	    buf_append(out, op->body, op->body_len) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}

/*
 * Decoding.
 */

/* Smallest encodings, to bound counts by the bytes that are left. */
#define MIN_STR 2
#define MIN_MOVE (MIN_STR + 4)
#define MIN_ENTRY (MIN_STR + 1 + 4 + 4)
#define MIN_REMOVE (MIN_STR * 2)
#define MIN_RENUMBER (MIN_STR + 8)

/* Reads a str into a new C string; rejects embedded NULs (which would
 * make the string mean something else than its bytes) and over-long ones. */
static bool get_str(struct buf_reader *r, size_t max, char **s_r)
{
	uint16_t len;
	const unsigned char *p;
	char *s;

	if (!buf_get_u16(r, &len) || len > max ||
	    !buf_get_bytes(r, len, &p))
		return false;
	if (len > 0 && memchr(p, '\0', len) != NULL)
		return false;
	s = malloc((size_t)len + 1);
	if (s == NULL)
		return false;
	if (len > 0)
		memcpy(s, p, len);
	s[len] = '\0';
	*s_r = s;
	return true;
}

static bool get_count(struct buf_reader *r, size_t max, size_t min_size,
		      size_t *count_r)
{
	uint32_t n;

	if (!buf_get_u32(r, &n) || n > max || n > r->left / min_size)
		return false;
	*count_r = n;
	return true;
}

/* Allocates n zeroed entries, n > 0 (NULL list for n == 0 is fine). */
static bool alloc_array(size_t n, size_t size, void *array_r)
{
	void *p = NULL;

	if (n > 0) {
		p = calloc(n, size);
		if (p == NULL)
			return false;
	}
	memcpy(array_r, &p, sizeof(p));
	return true;
}

static bool get_list(struct buf_reader *r, size_t max, size_t str_max,
		     char ***list_r, size_t *count_r)
{
	size_t n;
	char **list;

	if (!get_count(r, max, MIN_STR, &n) ||
	    !alloc_array(n, sizeof(*list), &list))
		return false;
	*list_r = list;
	/* The count tracks what is filled, so op_free frees exactly that. */
	*count_r = 0;
	for (size_t i = 0; i < n; i++) {
		if (!get_str(r, str_max, &list[i]))
			return false;
		(*count_r)++;
	}
	return true;
}

static bool decode_store(struct buf_reader *r, struct op *op)
{
	size_t n;

	if (!get_str(r, ORSET_TAG_MAX, &op->tag) ||
	    !get_count(r, OP_LIST_MAX, MIN_ENTRY, &n) ||
	    !alloc_array(n, sizeof(*op->entries), &op->entries))
		return false;
	for (size_t i = 0; i < n; i++) {
		struct op_store_entry *e = &op->entries[i];
		uint8_t flags;
		size_t m;

		op->entry_count++;
		if (!get_str(r, ORSET_TAG_MAX, &e->msg_tag) ||
		    !buf_get_u8(r, &flags))
			return false;
		e->add_flags = flags;
		if (!get_list(r, OP_KEYWORDS_MAX, OP_KEYWORD_MAX,
			      &e->add_keywords, &e->add_keyword_count) ||
		    !get_count(r, OP_REMOVES_MAX, MIN_REMOVE, &m) ||
		    !alloc_array(m, sizeof(*e->removes), &e->removes))
			return false;
		for (size_t j = 0; j < m; j++) {
			e->remove_count++;
			if (!get_str(r, OP_KEYWORD_MAX, &e->removes[j].flag) ||
			    !get_str(r, ORSET_TAG_MAX, &e->removes[j].tag))
				return false;
		}
	}
	return true;
}

static bool decode_rename(struct buf_reader *r, struct op *op)
{
	size_t n;

	if (!get_str(r, OP_MAILBOX_MAX, &op->new_mailbox) ||
	    !get_str(r, ORSET_TAG_MAX, &op->tag) ||
	    !buf_get_u32(r, &op->uidvalidity) ||
	    !buf_get_u64(r, &op->uidnext) ||
	    !get_list(r, OP_LIST_MAX, ORSET_TAG_MAX, &op->tags,
		      &op->tag_count) ||
	    !get_count(r, OP_LIST_MAX, MIN_MOVE, &n) ||
	    !alloc_array(n, sizeof(*op->moves), &op->moves))
		return false;
	for (size_t i = 0; i < n; i++) {
		struct op_move *m = &op->moves[i];

		op->move_count++;
		if (!get_str(r, ORSET_TAG_MAX, &m->msg_tag) ||
		    !get_list(r, OP_PLACEMENTS_MAX, ORSET_TAG_MAX,
			      &m->placements, &m->placement_count))
			return false;
	}
	return true;
}

static bool decode_renumber(struct buf_reader *r, struct op *op)
{
	size_t n;

	if (!get_count(r, OP_LIST_MAX, MIN_RENUMBER, &n) ||
	    !alloc_array(n, sizeof(*op->renumbers), &op->renumbers))
		return false;
	for (size_t i = 0; i < n; i++) {
		struct op_renumber *e = &op->renumbers[i];

		op->renumber_count++;
		if (!get_str(r, ORSET_TAG_MAX, &e->msg_tag) ||
		    !buf_get_u32(r, &e->old_uid) ||
		    !buf_get_u32(r, &e->new_uid))
			return false;
	}
	return true;
}

static bool decode_append(struct buf_reader *r, struct op *op)
{
	uint64_t date, body_len;
	uint8_t flags;

	if (!get_str(r, ORSET_TAG_MAX, &op->tag) ||
	    !buf_get_u32(r, &op->uidvalidity) ||
	    !buf_get_u32(r, &op->uid) || !buf_get_u64(r, &date) ||
	    !buf_get_u8(r, &flags) ||
	    !get_list(r, OP_KEYWORDS_MAX, OP_KEYWORD_MAX, &op->keywords,
		      &op->keyword_count) ||
	    !get_list(r, OP_LIST_MAX, ORSET_TAG_MAX, &op->tags,
		      &op->tag_count) ||
	    !buf_get_u64(r, &body_len))
		return false;
	/* Two's complement, spelled out so no implementation-defined
	 * conversion is involved. */
	op->internal_date = date <= INT64_MAX ? (int64_t)date :
			    -(int64_t)(~date) - 1;
	op->flags = flags;
	if (body_len > OP_BODY_MAX || body_len != r->left)
		return false;
	op->body_len = (size_t)body_len;
	return buf_get_bytes(r, op->body_len, &op->body);
}

static bool decode_fields(struct buf_reader *r, struct op *op)
{
	switch (op->type) {
	case OP_CREATE:
		return get_str(r, ORSET_TAG_MAX, &op->tag) &&
		       buf_get_u32(r, &op->uidvalidity);
	case OP_DELETE:
		return get_list(r, OP_LIST_MAX, ORSET_TAG_MAX, &op->tags,
				&op->tag_count) &&
		       get_list(r, OP_LIST_MAX, ORSET_TAG_MAX, &op->msg_tags,
				&op->msg_tag_count);
	case OP_RENAME:
		return decode_rename(r, op);
	case OP_APPEND:
		return decode_append(r, op);
	case OP_EXPUNGE:
		return buf_get_u64(r, &op->uidnext) &&
		       get_list(r, OP_LIST_MAX, ORSET_TAG_MAX, &op->msg_tags,
				&op->msg_tag_count);
	case OP_STORE:
		return decode_store(r, op);
	case OP_UID_RENUMBER:
		return decode_renumber(r, op);
	}
	return false;
}

int op_decode(const void *data, size_t len, struct op **op_r,
	      const char **error_r)
{
	struct buf_reader r;
	struct op *op;
	uint8_t version, type;

	*op_r = NULL;
	buf_reader_init(&r, data, len);
	if (!buf_get_u8(&r, &version) || version != OP_VERSION) {
		*error_r = "unknown operation version";
		return -1;
	}
	if (!buf_get_u8(&r, &type) || type < OP_CREATE ||
	    type > OP_UID_RENUMBER) {
		*error_r = "unknown operation type";
		return -1;
	}
	op = calloc(1, sizeof(*op));
	if (op == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	op->type = (enum op_type)type;
	if (!get_str(&r, OP_USER_MAX, &op->user) ||
	    !get_str(&r, OP_MAILBOX_MAX, &op->mailbox) ||
	    !decode_fields(&r, op)) {
		*error_r = "truncated or malformed operation";
		op_free(&op);
		return -1;
	}
	if (r.left != 0) {
		*error_r = "trailing bytes after operation";
		op_free(&op);
		return -1;
	}
	if (op_validate(op, error_r) < 0) {
		op_free(&op);
		return -1;
	}
	*op_r = op;
	return 0;
}
