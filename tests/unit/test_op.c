/*
 * test_op.c - every operation type survives an encode/decode round trip,
 * and the decoder refuses truncated, padded, forged and corrupted payloads
 * without crashing (run it under ASan too).
 */
#include "autoconfig.h"

#include "op.h"
#include "cu_run.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define T1 "0123456789abcdef0123456789abcdef"
#define T2 "fedcba9876543210fedcba9876543210"
#define T3 "node-1_42"

static const char *err;

static char **strs(size_t n, ...)
{
	char **v = calloc(n, sizeof(*v));
	va_list ap;

	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		v[i] = strdup(va_arg(ap, const char *));
	va_end(ap);
	return v;
}

static const unsigned char body[] = "From: a@example.org\r\n\r\nhi\0there\r\n";

/* One valid op of each type, exercising every field. */
static struct op *make_op(enum op_type type)
{
	struct op *op = op_new(type, "alice", "INBOX.Sub folder");

	switch (type) {
	case OP_CREATE:
		op->tag = strdup(T1);
		op->uidvalidity = 1700000000;
		break;
	case OP_DELETE:
		op->tags = strs(2, T1, T2);
		op->tag_count = 2;
		op->msg_tags = strs(3, T3, "a", "B-_9");
		op->msg_tag_count = 3;
		break;
	case OP_RENAME:
		op->new_mailbox = strdup("Archive \"2024\"");
		op->tag = strdup(T2);
		op->uidvalidity = 0xfffffffeu;
		op->uidnext = OP_UIDNEXT_MAX;
		op->tags = strs(1, T1);
		op->tag_count = 1;
		op->moves = calloc(2, sizeof(*op->moves));
		op->move_count = 2;
		op->moves[0].msg_tag = strdup(T3);
		op->moves[0].placements = strs(1, T3);
		op->moves[0].placement_count = 1;
		op->moves[1].msg_tag = strdup("m2");
		op->moves[1].placements = strs(2, "p1", "p2");
		op->moves[1].placement_count = 2;
		break;
	case OP_APPEND:
		op->tag = strdup(T1);
		op->uidvalidity = 7;
		op->uid = 0xffffffffu;
		op->internal_date = -1234567890123LL;
		op->flags = OP_FLAG_SEEN | OP_FLAG_DRAFT;
		op->keywords = strs(2, "$Forwarded", "Junk");
		op->keyword_count = 2;
		op->tags = strs(1, T2);
		op->tag_count = 1;
		op->body = body;
		op->body_len = sizeof(body);
		break;
	case OP_EXPUNGE:
		op->uidnext = 43;
		op->msg_tags = strs(2, T1, T2);
		op->msg_tag_count = 2;
		break;
	case OP_STORE:
		op->tag = strdup(T3);
		op->entries = calloc(2, sizeof(*op->entries));
		op->entry_count = 2;
		op->entries[0].msg_tag = strdup(T1);
		op->entries[0].add_flags = OP_FLAG_FLAGGED;
		op->entries[0].add_keywords = strs(1, "$Label1");
		op->entries[0].add_keyword_count = 1;
		op->entries[1].msg_tag = strdup(T2);
		op->entries[1].removes = calloc(2,
				sizeof(*op->entries[1].removes));
		op->entries[1].remove_count = 2;
		op->entries[1].removes[0].flag = strdup("\\Seen");
		op->entries[1].removes[0].tag = strdup(T2);
		op->entries[1].removes[1].flag = strdup("work");
		op->entries[1].removes[1].tag = strdup("x");
		break;
	case OP_UID_RENUMBER:
		op->renumbers = calloc(2, sizeof(*op->renumbers));
		op->renumber_count = 2;
		op->renumbers[0].msg_tag = strdup(T1);
		op->renumbers[0].old_uid = 5;
		op->renumbers[0].new_uid = 9;
		op->renumbers[1].msg_tag = strdup(T2);
		op->renumbers[1].old_uid = 1;
		op->renumbers[1].new_uid = 0xffffffffu;
		break;
	}
	return op;
}

static bool str_eq(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	       (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool list_eq(char **a, size_t an, char **b, size_t bn)
{
	if (an != bn)
		return false;
	for (size_t i = 0; i < an; i++)
		if (!str_eq(a[i], b[i]))
			return false;
	return true;
}

static bool op_eq(const struct op *a, const struct op *b)
{
	if (a->type != b->type || !str_eq(a->user, b->user) ||
	    !str_eq(a->mailbox, b->mailbox) ||
	    !str_eq(a->new_mailbox, b->new_mailbox) ||
	    !str_eq(a->tag, b->tag) || a->uidvalidity != b->uidvalidity ||
	    a->uidnext != b->uidnext || a->uid != b->uid ||
	    a->internal_date != b->internal_date || a->flags != b->flags ||
	    !list_eq(a->keywords, a->keyword_count, b->keywords,
		     b->keyword_count) ||
	    !list_eq(a->tags, a->tag_count, b->tags, b->tag_count) ||
	    !list_eq(a->msg_tags, a->msg_tag_count, b->msg_tags,
		     b->msg_tag_count) ||
	    a->move_count != b->move_count ||
	    a->entry_count != b->entry_count ||
	    a->renumber_count != b->renumber_count ||
	    a->body_len != b->body_len ||
	    (a->body_len > 0 && memcmp(a->body, b->body, a->body_len) != 0))
		return false;
	for (size_t i = 0; i < a->move_count; i++)
		if (!str_eq(a->moves[i].msg_tag, b->moves[i].msg_tag) ||
		    !list_eq(a->moves[i].placements,
			     a->moves[i].placement_count,
			     b->moves[i].placements,
			     b->moves[i].placement_count))
			return false;
	for (size_t i = 0; i < a->entry_count; i++) {
		const struct op_store_entry *x = &a->entries[i];
		const struct op_store_entry *y = &b->entries[i];

		if (!str_eq(x->msg_tag, y->msg_tag) ||
		    x->add_flags != y->add_flags ||
		    !list_eq(x->add_keywords, x->add_keyword_count,
			     y->add_keywords, y->add_keyword_count) ||
		    x->remove_count != y->remove_count)
			return false;
		for (size_t j = 0; j < x->remove_count; j++)
			if (!str_eq(x->removes[j].flag, y->removes[j].flag) ||
			    !str_eq(x->removes[j].tag, y->removes[j].tag))
				return false;
	}
	for (size_t i = 0; i < a->renumber_count; i++)
		if (!str_eq(a->renumbers[i].msg_tag, b->renumbers[i].msg_tag) ||
		    a->renumbers[i].old_uid != b->renumbers[i].old_uid ||
		    a->renumbers[i].new_uid != b->renumbers[i].new_uid)
			return false;
	return true;
}

static void test_round_trip(void)
{
	for (int t = OP_CREATE; t <= OP_UID_RENUMBER; t++) {
		struct op *op = make_op((enum op_type)t), *back = NULL;
		struct buf b = BUF_INIT, again = BUF_INIT;

		CU_ASSERT_EQUAL_FATAL(op_encode(op, &b, &err), 0);
		CU_ASSERT_EQUAL(b.data[0], OP_VERSION);
		CU_ASSERT_EQUAL(b.data[1], t);
		CU_ASSERT_EQUAL_FATAL(op_decode(b.data, b.len, &back, &err), 0);
		CU_ASSERT_TRUE(op_eq(op, back));
		CU_ASSERT_EQUAL(op_encode(back, &again, &err), 0);
		CU_ASSERT_EQUAL(again.len, b.len);
		CU_ASSERT_EQUAL(memcmp(again.data, b.data, b.len), 0);
		if (t == OP_APPEND) {
			/* The body is borrowed from the payload. */
			CU_ASSERT_PTR_EQUAL(back->body,
					    b.data + b.len - sizeof(body));
		}
		CU_ASSERT_STRING_NOT_EQUAL(op_type_name((enum op_type)t),
					   "unknown");
		op_free(&op);
		op_free(&back);
		CU_ASSERT_PTR_NULL(back);
		buf_free(&b);
		buf_free(&again);
	}
}

static void test_header_then_body(void)
{
	struct op *op = make_op(OP_APPEND);
	struct buf whole = BUF_INIT, split = BUF_INIT;

	CU_ASSERT_EQUAL(op_encode(op, &whole, &err), 0);
	CU_ASSERT_EQUAL(op_encode_header(op, &split, &err), 0);
	CU_ASSERT_EQUAL(split.len + sizeof(body), whole.len);
	buf_append(&split, body, sizeof(body));
	CU_ASSERT_EQUAL(memcmp(split.data, whole.data, whole.len), 0);
	/* An append that lost its body cannot be encoded whole. */
	op->body = NULL;
	CU_ASSERT_EQUAL(op_encode(op, &whole, &err), -1);
	op_free(&op);
	/* For other types the header is everything. */
	op = make_op(OP_STORE);
	buf_reset(&whole);
	buf_reset(&split);
	CU_ASSERT_EQUAL(op_encode(op, &whole, &err), 0);
	CU_ASSERT_EQUAL(op_encode_header(op, &split, &err), 0);
	CU_ASSERT_EQUAL(split.len, whole.len);
	op_free(&op);
	buf_free(&whole);
	buf_free(&split);
}

static void test_large_body(void)
{
	struct op *op = make_op(OP_APPEND), *back;
	unsigned char *big = malloc(OP_BODY_MAX + 1);
	struct buf b = BUF_INIT;

	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	memset(big, 'x', OP_BODY_MAX + 1);
	op->body = big;
	op->body_len = OP_BODY_MAX;
	CU_ASSERT_EQUAL(op_encode(op, &b, &err), 0);
	CU_ASSERT_EQUAL(op_decode(b.data, b.len, &back, &err), 0);
	CU_ASSERT_EQUAL(back->body_len, OP_BODY_MAX);
	op_free(&back);
	buf_reset(&b);
	op->body_len = OP_BODY_MAX + 1;
	CU_ASSERT_EQUAL(op_encode(op, &b, &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "message too large");
	op_free(&op);
	buf_free(&b);
	free(big);
}

static void test_truncation_and_trailing(void)
{
	for (int t = OP_CREATE; t <= OP_UID_RENUMBER; t++) {
		struct op *op = make_op((enum op_type)t), *back;
		struct buf b = BUF_INIT;

		CU_ASSERT_EQUAL_FATAL(op_encode(op, &b, &err), 0);
		for (size_t len = 0; len < b.len; len++) {
			back = NULL;
			err = NULL;
			CU_ASSERT_EQUAL(op_decode(b.data, len, &back, &err),
					-1);
			CU_ASSERT_PTR_NULL(back);
			CU_ASSERT_PTR_NOT_NULL(err);
		}
		buf_put_u8(&b, 0);
		CU_ASSERT_EQUAL(op_decode(b.data, b.len, &back, &err), -1);
		op_free(&op);
		buf_free(&b);
	}
}

/* Raw payload builder that skips validation, to forge bad input. */
static void put_str(struct buf *b, const char *s, size_t len)
{
	buf_put_u16(b, (uint16_t)len);
	buf_append(b, s, len);
}

static int decode_raw(const struct buf *b)
{
	struct op *op = NULL;
	int ret;

	err = NULL;
	ret = op_decode(b->data, b->len, &op, &err);
	if (ret < 0)
		CU_ASSERT_PTR_NOT_NULL(err);
	op_free(&op);
	return ret;
}

static void raw_create(struct buf *b, uint8_t version, uint8_t type,
		       const char *user, size_t ulen, const char *mbox,
		       size_t mlen, const char *tag, uint32_t uidvalidity)
{
	buf_reset(b);
	buf_put_u8(b, version);
	buf_put_u8(b, type);
	put_str(b, user, ulen);
	put_str(b, mbox, mlen);
	put_str(b, tag, strlen(tag));
	buf_put_u32(b, uidvalidity);
}

static void test_forged_headers(void)
{
	struct buf b = BUF_INIT;
	char *longname = malloc(OP_MAILBOX_MAX + 2);

	memset(longname, 'a', OP_MAILBOX_MAX + 1);
	longname[OP_MAILBOX_MAX + 1] = '\0';

	raw_create(&b, OP_VERSION, OP_CREATE, "u", 1, "INBOX", 5, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), 0);
	raw_create(&b, 2, OP_CREATE, "u", 1, "INBOX", 5, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, 0, OP_CREATE, "u", 1, "INBOX", 5, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, OP_VERSION, 0, "u", 1, "INBOX", 5, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, OP_VERSION, 8, "u", 1, "INBOX", 5, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	/* Names: NUL, CR, LF, DEL inside, empty, too long. */
	raw_create(&b, OP_VERSION, OP_CREATE, "u", 1, "IN\0BOX", 6, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, OP_VERSION, OP_CREATE, "u", 1, "IN\rBOX", 6, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, OP_VERSION, OP_CREATE, "u", 1, "IN\nBOX", 6, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, OP_VERSION, OP_CREATE, "u", 1, "IN\x7f", 3, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, OP_VERSION, OP_CREATE, "u", 1, "", 0, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, OP_VERSION, OP_CREATE, "u", 1, longname,
		   OP_MAILBOX_MAX, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), 0);
	raw_create(&b, OP_VERSION, OP_CREATE, "u", 1, longname,
		   OP_MAILBOX_MAX + 1, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, OP_VERSION, OP_CREATE, "", 0, "INBOX", 5, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, OP_VERSION, OP_CREATE, longname, OP_USER_MAX + 1,
		   "INBOX", 5, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, OP_VERSION, OP_CREATE, "a\0", 2, "INBOX", 5, T1, 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	/* Tags and UIDVALIDITY. */
	raw_create(&b, OP_VERSION, OP_CREATE, "u", 1, "INBOX", 5, "a/b", 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, OP_VERSION, OP_CREATE, "u", 1, "INBOX", 5, "", 1);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	raw_create(&b, OP_VERSION, OP_CREATE, "u", 1, "INBOX", 5, T1, 0);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	free(longname);
	buf_free(&b);
}

static void test_forged_lists(void)
{
	struct buf b = BUF_INIT;

	/* A DELETE claiming four billion tags is refused before any
	 * allocation. */
	buf_put_u8(&b, OP_VERSION);
	buf_put_u8(&b, OP_DELETE);
	put_str(&b, "u", 1);
	put_str(&b, "INBOX", 5);
	buf_put_u32(&b, 0xffffffffu);
	put_str(&b, T1, strlen(T1));
	buf_put_u32(&b, 0);
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	/* The same with the right count decodes; with none it does not (a
	 * delete always names what it observed). */
	b.data[2 + 3 + 7 + 3] = 1;
	b.data[2 + 3 + 7] = 0;
	b.data[2 + 3 + 7 + 1] = 0;
	b.data[2 + 3 + 7 + 2] = 0;
	CU_ASSERT_EQUAL(decode_raw(&b), 0);
	b.data[2 + 3 + 7 + 3] = 0;
	CU_ASSERT_EQUAL(decode_raw(&b), -1);
	buf_free(&b);
}

/* Mutations of a valid op that op_validate must refuse, so the encoder
 * refuses them and the decoder could never accept their bytes. */
static void test_invalid_ops(void)
{
	static const struct {
		enum op_type type;
		int mutation;
	} cases[] = {
		{ OP_APPEND, 0 }, { OP_APPEND, 1 }, { OP_APPEND, 2 },
		{ OP_APPEND, 3 }, { OP_APPEND, 4 }, { OP_RENAME, 5 },
		{ OP_RENAME, 6 }, { OP_RENAME, 7 }, { OP_EXPUNGE, 8 },
		{ OP_EXPUNGE, 9 }, { OP_STORE, 10 }, { OP_STORE, 11 },
		{ OP_STORE, 12 }, { OP_STORE, 13 }, { OP_UID_RENUMBER, 14 },
		{ OP_UID_RENUMBER, 15 }, { OP_DELETE, 16 }, { OP_RENAME, 17 },
		{ OP_STORE, 18 }, { OP_APPEND, 19 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct op *op = make_op(cases[i].type);
		struct buf b = BUF_INIT;

		switch (cases[i].mutation) {
		case 0:
			op->uid = 0;
			break;
		case 1:
			op->flags = 0x20;
			break;
		case 2:
			free(op->keywords[1]);
			op->keywords[1] = strdup("\\Seen");
			break;
		case 3:
			free(op->keywords[1]);
			op->keywords[1] = strdup("$forwarded");
			break;
		case 4:
			op->uidvalidity = 0;
			break;
		case 5:
			free(op->new_mailbox);
			op->new_mailbox = strdup(op->mailbox);
			break;
		case 6:
			op->uidnext = OP_UIDNEXT_MAX + 1;
			break;
		case 7:
			op->moves[1].placement_count = 0;
			break;
		case 8:
			op->uidnext = 0;
			break;
		case 9:
			op->msg_tag_count = 0;
			break;
		case 10:
			free(op->entries[1].removes[0].flag);
			op->entries[1].removes[0].flag = strdup("\\SEEN");
			break;
		case 11:
			free(op->entries[1].removes[0].flag);
			op->entries[1].removes[0].flag = strdup("\\Recent");
			break;
		case 12:
			op->entries[0].add_flags = 0;
			op->entries[0].add_keyword_count = 0;
			break;
		case 13:
			free(op->entries[0].add_keywords[0]);
			op->entries[0].add_keywords[0] = strdup("a b");
			break;
		case 14:
			op->renumbers[0].new_uid = op->renumbers[0].old_uid;
			break;
		case 15:
			op->renumbers[1].old_uid = 0;
			break;
		case 16:
			op->tag_count = 0;
			break;
		case 17:
			free(op->new_mailbox);
			op->new_mailbox = strdup("a\tb");
			break;
		case 18:
			op->entry_count = 0;
			break;
		case 19:
			free(op->tag);
			op->tag = strdup("tag.with.dots");
			break;
		}
		err = NULL;
		CU_ASSERT_EQUAL(op_encode(op, &b, &err), -1);
		CU_ASSERT_PTR_NOT_NULL(err);
		/* Restore counts so op_free frees what was allocated. */
		if (cases[i].mutation == 7)
			op->moves[1].placement_count = 2;
		if (cases[i].mutation == 9)
			op->msg_tag_count = 2;
		if (cases[i].mutation == 12)
			op->entries[0].add_keyword_count = 1;
		if (cases[i].mutation == 16)
			op->tag_count = 2;
		if (cases[i].mutation == 18)
			op->entry_count = 2;
		op_free(&op);
		buf_free(&b);
	}
}

static void test_patched_bytes(void)
{
	struct op *op = make_op(OP_APPEND), *back;
	struct buf b = BUF_INIT;
	unsigned char *p;

	/* UID 0xffffffff is the only run of four 0xff bytes: zero it. */
	CU_ASSERT_EQUAL_FATAL(op_encode(op, &b, &err), 0);
	p = memmem(b.data, b.len, "\xff\xff\xff\xff", 4);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	memset(p, 0, 4);
	CU_ASSERT_EQUAL(op_decode(b.data, b.len, &back, &err), -1);
	memset(p, 0xff, 4);
	CU_ASSERT_EQUAL(op_decode(b.data, b.len, &back, &err), 0);
	op_free(&back);
	/* A keyword with a space. */
	p = memmem(b.data, b.len, "Junk", 4);
	p[1] = ' ';
	CU_ASSERT_EQUAL(op_decode(b.data, b.len, &back, &err), -1);
	op_free(&op);
	buf_free(&b);
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_bit_flips(void)
{
	unsigned accepted = 0, rejected = 0;

	for (int t = OP_CREATE; t <= OP_UID_RENUMBER; t++) {
		struct op *op = make_op((enum op_type)t);
		struct buf b = BUF_INIT;
		unsigned char *copy;

		CU_ASSERT_EQUAL_FATAL(op_encode(op, &b, &err), 0);
		copy = malloc(b.len);
		for (int round = 0; round < 3000; round++) {
			struct op *back = NULL;
			int flips = 1 + (int)(next_rand() % 3);

			memcpy(copy, b.data, b.len);
			for (int f = 0; f < flips; f++) {
				size_t at = (size_t)(next_rand() % b.len);

				copy[at] ^= (unsigned char)(1u <<
						(next_rand() % 8));
			}
			if (op_decode(copy, b.len, &back, &err) == 0) {
				struct buf again = BUF_INIT;

				/* Whatever is accepted is a valid op that
				 * encodes back to the same bytes. */
				CU_ASSERT_EQUAL(op_encode(back, &again, &err),
						0);
				CU_ASSERT_EQUAL(again.len, b.len);
				if (again.len == b.len)
					CU_ASSERT_EQUAL(memcmp(again.data,
							       copy, b.len),
							0);
				buf_free(&again);
				accepted++;
			} else {
				rejected++;
			}
			op_free(&back);
		}
		free(copy);
		op_free(&op);
		buf_free(&b);
	}
	CU_ASSERT_TRUE(rejected > 0);
	CU_ASSERT_TRUE(accepted > 0);
}

static void test_names(void)
{
	CU_ASSERT_EQUAL(op_flag_from_name("\\seen"), OP_FLAG_SEEN);
	CU_ASSERT_EQUAL(op_flag_from_name("\\DRAFT"), OP_FLAG_DRAFT);
	CU_ASSERT_EQUAL(op_flag_from_name("\\Recent"), 0);
	CU_ASSERT_EQUAL(op_flag_from_name("Seen"), 0);
	CU_ASSERT_STRING_EQUAL(op_flag_name(OP_FLAG_ANSWERED), "\\Answered");
	CU_ASSERT_PTR_NULL(op_flag_name(3));
	CU_ASSERT_TRUE(op_keyword_valid("$MDNSent"));
	CU_ASSERT_FALSE(op_keyword_valid(""));
	CU_ASSERT_FALSE(op_keyword_valid("\\Seen"));
	CU_ASSERT_FALSE(op_keyword_valid("a(b"));
	CU_ASSERT_FALSE(op_keyword_valid("a]"));
	CU_ASSERT_FALSE(op_keyword_valid("caf\xc3\xa9"));
	CU_ASSERT_TRUE(op_mailbox_valid("INBOX.&AOk-t&AOk-"));
	CU_ASSERT_TRUE(op_mailbox_valid("with space"));
	CU_ASSERT_FALSE(op_mailbox_valid("tab\there"));
	CU_ASSERT_FALSE(op_mailbox_valid(""));
	CU_ASSERT_STRING_EQUAL(op_type_name((enum op_type)99), "unknown");
}

static CU_TestInfo tests[] = {
	{ "round trip of every type", test_round_trip },
	{ "append header then body", test_header_then_body },
	{ "64 MiB body limit", test_large_body },
	{ "every truncation and trailing byte fail",
	  test_truncation_and_trailing },
	{ "forged versions, types, names, tags", test_forged_headers },
	{ "forged list counts", test_forged_lists },
	{ "invalid ops are not encoded", test_invalid_ops },
	{ "patched payload bytes", test_patched_bytes },
	{ "random bit flips", test_bit_flips },
	{ "flag, keyword and name syntax", test_names },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("op", tests);
}
