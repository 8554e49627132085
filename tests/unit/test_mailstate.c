/*
 * test_mailstate.c - the per-user mail state: local semantics, every pair
 * of concurrent operations applied in both orders on two replicas (they
 * must converge, to the documented merge rule), idempotent apply, UID
 * conflict resolution, random two-replica runs, and strict snapshots.
 */
#include "autoconfig.h"

#include "mailstate.h"
#include "cu_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *err;
static const char msgbody[] = "Subject: hi\r\n\r\nbody\r\n";

static void apply_ok(struct mailstate *s, const struct op *op)
{
	err = NULL;
	CU_ASSERT_EQUAL(mailstate_apply(s, op, &err), 0);
	if (err != NULL)
		fprintf(stderr, "apply: %s\n", err);
}

/* Ships op through the wire encoding, so every test also exercises it. */
static void ship(struct mailstate *to, const struct op *op)
{
	struct buf b = BUF_INIT;
	struct op *copy = NULL;

	CU_ASSERT_EQUAL_FATAL(op_encode(op, &b, &err), 0);
	CU_ASSERT_EQUAL_FATAL(op_decode(b.data, b.len, &copy, &err), 0);
	apply_ok(to, copy);
	/* Idempotent: a second delivery changes nothing. */
	apply_ok(to, copy);
	op_free(&copy);
	buf_free(&b);
}

static bool same(const struct mailstate *a, const struct mailstate *b)
{
	struct buf x = BUF_INIT, y = BUF_INIT;
	bool eq;

	CU_ASSERT_EQUAL(mailstate_serialize(a, &x), 0);
	CU_ASSERT_EQUAL(mailstate_serialize(b, &y), 0);
	eq = x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
	buf_free(&x);
	buf_free(&y);
	return eq;
}

static struct mailstate *clone(const struct mailstate *s)
{
	struct buf b = BUF_INIT;
	struct mailstate *c;

	CU_ASSERT_EQUAL(mailstate_serialize(s, &b), 0);
	c = mailstate_deserialize(b.data, b.len, &err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	buf_free(&b);
	CU_ASSERT_TRUE(same(s, c));
	return c;
}

static struct op *create(struct mailstate *s, const char *name)
{
	struct op *op = NULL;

	CU_ASSERT_EQUAL(mailstate_create(s, name, &op, &err), 0);
	return op;
}

static struct op *append(struct mailstate *s, const char *name,
			 unsigned flags)
{
	struct op *op = NULL;

	CU_ASSERT_EQUAL(mailstate_append(s, name, msgbody, sizeof(msgbody) - 1,
					 1700000000, flags, NULL, 0, &op,
					 &err), 0);
	return op;
}

static struct mailstate_mailbox *box(struct mailstate *s, const char *name)
{
	return mailstate_mailbox_find(s, name);
}

static const struct mailstate_msg *msg(struct mailstate *s, const char *name,
				       size_t i)
{
	struct mailstate_mailbox *b = box(s, name);

	return b == NULL ? NULL : mailstate_mailbox_msg_at(b, i);
}

static size_t count(struct mailstate *s, const char *name)
{
	struct mailstate_mailbox *b = box(s, name);

	return b == NULL ? 0 : mailstate_mailbox_count(b);
}

static struct op *store(struct mailstate *s, const char *name, size_t i,
			enum mailstate_store_mode mode, unsigned flags,
			const char *kw)
{
	const struct mailstate_msg *m = msg(s, name, i);
	struct op *op = NULL;

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL(mailstate_store(s, box(s, name), &m, 1, mode, flags,
					kw == NULL ? NULL : &kw,
					kw == NULL ? 0 : 1, &op, &err), 0);
	return op;
}

static struct op *expunge(struct mailstate *s, const char *name, size_t i)
{
	const struct mailstate_msg *m = msg(s, name, i);
	struct op *op = NULL;

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT_EQUAL(mailstate_expunge(s, box(s, name), &m, 1, &op, &err),
			0);
	return op;
}

static void test_mailboxes(void)
{
	struct mailstate *s = mailstate_new("alice");
	struct op *op, *op2;
	const char **names;
	size_t n;
	uint32_t uv;

	CU_ASSERT_PTR_NULL(mailstate_new("bad\nuser"));
	CU_ASSERT_STRING_EQUAL(mailstate_user(s), "alice");
	op = create(s, "INBOX");
	CU_ASSERT_PTR_NOT_NULL_FATAL(op);
	CU_ASSERT_EQUAL(op->type, OP_CREATE);
	CU_ASSERT_STRING_EQUAL(op->user, "alice");
	uv = op->uidvalidity;
	CU_ASSERT_TRUE(uv > 0);
	CU_ASSERT_EQUAL(mailstate_mailbox_uidvalidity(box(s, "INBOX")), uv);
	CU_ASSERT_EQUAL(mailstate_mailbox_uidnext(box(s, "INBOX")), 1);
	op_free(&op);
	CU_ASSERT_EQUAL(mailstate_create(s, "INBOX", &op, &err), -1);
	CU_ASSERT_PTR_NULL(op);
	CU_ASSERT_EQUAL(mailstate_create(s, "a\0b", &op, &err), 0);
	op_free(&op);
	CU_ASSERT_EQUAL(mailstate_create(s, "bad\rname", &op, &err), -1);
	CU_ASSERT_EQUAL(mailstate_create(s, "", &op, &err), -1);
	op = create(s, "Sent");
	op2 = create(s, "Drafts");
	CU_ASSERT_TRUE(op->uidvalidity > uv);
	CU_ASSERT_TRUE(op2->uidvalidity > op->uidvalidity);
	op_free(&op);
	op_free(&op2);
	CU_ASSERT_EQUAL(mailstate_mailbox_list(s, &names, &n), 0);
	CU_ASSERT_EQUAL_FATAL(n, 4);
	CU_ASSERT_STRING_EQUAL(names[0], "Drafts");
	CU_ASSERT_STRING_EQUAL(names[1], "INBOX");
	CU_ASSERT_STRING_EQUAL(names[2], "Sent");
	CU_ASSERT_STRING_EQUAL(names[3], "a");
	free(names);
	CU_ASSERT_EQUAL(mailstate_delete(s, "Sent", &op, &err), 0);
	CU_ASSERT_EQUAL(op->type, OP_DELETE);
	CU_ASSERT_EQUAL(op->tag_count, 1);
	op_free(&op);
	CU_ASSERT_PTR_NULL(box(s, "Sent"));
	CU_ASSERT_EQUAL(mailstate_delete(s, "Sent", &op, &err), -1);
	/* Re-created: a new, higher UIDVALIDITY. */
	op = create(s, "Sent");
	CU_ASSERT_TRUE(op->uidvalidity > uv + 2);
	op_free(&op);
	CU_ASSERT_EQUAL(mailstate_rename(s, "Nope", "X", &op, &err), -1);
	CU_ASSERT_EQUAL(mailstate_rename(s, "Sent", "INBOX", &op, &err), -1);
	CU_ASSERT_EQUAL(mailstate_rename(s, "Sent", "Sent", &op, &err), -1);
	mailstate_free(&s);
	CU_ASSERT_PTR_NULL(s);
}

static void test_append_and_uids(void)
{
	struct mailstate *s = mailstate_new("alice");
	const char *kws[] = { "$Forwarded", "Work", "work" };
	const char *got[4];
	struct op *op;
	size_t idx;

	op_free((op = create(s, "INBOX"), &op));
	CU_ASSERT_EQUAL(mailstate_append(s, "Nope", "x", 1, 0, 0, NULL, 0, &op,
					 &err), -1);
	CU_ASSERT_EQUAL(mailstate_append(s, "INBOX", "x", 1, 0, 0x20, NULL, 0,
					 &op, &err), -1);
	for (unsigned i = 1; i <= 5; i++) {
		op = append(s, "INBOX", i == 3 ? OP_FLAG_SEEN : 0);
		CU_ASSERT_EQUAL(op->uid, i);
		CU_ASSERT_EQUAL(op->body_len, sizeof(msgbody) - 1);
		CU_ASSERT_PTR_EQUAL(op->body, msgbody);
		CU_ASSERT_EQUAL(op->tag_count, 1);
		op_free(&op);
	}
	CU_ASSERT_EQUAL(mailstate_append(s, "INBOX", "abc", 3, -5,
					 OP_FLAG_FLAGGED, kws, 3, &op, &err),
			0);
	CU_ASSERT_EQUAL(op->keyword_count, 2);
	op_free(&op);
	CU_ASSERT_EQUAL(count(s, "INBOX"), 6);
	CU_ASSERT_EQUAL(mailstate_mailbox_uidnext(box(s, "INBOX")), 7);
	CU_ASSERT_EQUAL(msg(s, "INBOX", 2)->flags, OP_FLAG_SEEN);
	CU_ASSERT_EQUAL(msg(s, "INBOX", 5)->uid, 6);
	CU_ASSERT_EQUAL(msg(s, "INBOX", 5)->size, 3);
	CU_ASSERT_EQUAL(msg(s, "INBOX", 5)->internal_date, -5);
	CU_ASSERT_EQUAL(msg(s, "INBOX", 5)->flags, OP_FLAG_FLAGGED);
	CU_ASSERT_EQUAL(mailstate_msg_keywords(msg(s, "INBOX", 5), got, 4), 2);
	CU_ASSERT_TRUE(mailstate_msg_has_keyword(msg(s, "INBOX", 5), "WORK"));
	CU_ASSERT_FALSE(mailstate_msg_has_keyword(msg(s, "INBOX", 5),
						  "\\Flagged"));
	CU_ASSERT_PTR_EQUAL(mailstate_msg_find(s, msg(s, "INBOX", 3)->tag),
			    msg(s, "INBOX", 3));
	CU_ASSERT_PTR_NULL(mailstate_mailbox_msg_at(box(s, "INBOX"), 6));

	/* Expunge 2 and 4: sequence numbers close up, UIDs stay. */
	op = expunge(s, "INBOX", 3);
	CU_ASSERT_EQUAL(op->uidnext, 7);
	op_free(&op);
	op_free((op = expunge(s, "INBOX", 1), &op));
	CU_ASSERT_EQUAL(count(s, "INBOX"), 4);
	CU_ASSERT_EQUAL(msg(s, "INBOX", 1)->uid, 3);
	CU_ASSERT_TRUE(mailstate_mailbox_uid_find(box(s, "INBOX"), 5, &idx));
	CU_ASSERT_EQUAL(idx, 2);
	CU_ASSERT_FALSE(mailstate_mailbox_uid_find(box(s, "INBOX"), 4, &idx));
	CU_ASSERT_EQUAL(mailstate_mailbox_uid_lower_bound(box(s, "INBOX"), 4),
			2);
	CU_ASSERT_EQUAL(mailstate_mailbox_uid_lower_bound(box(s, "INBOX"),
							  100), 4);
	/* Expunging the newest does not lower UIDNEXT. */
	op_free((op = expunge(s, "INBOX", 3), &op));
	CU_ASSERT_EQUAL(mailstate_mailbox_uidnext(box(s, "INBOX")), 7);
	op = append(s, "INBOX", 0);
	CU_ASSERT_EQUAL(op->uid, 7);
	op_free(&op);
	/* A message from another mailbox is refused. */
	op_free((op = create(s, "Other"), &op));
	{
		const struct mailstate_msg *m = msg(s, "INBOX", 0);

		CU_ASSERT_EQUAL(mailstate_expunge(s, box(s, "Other"), &m, 1,
						  &op, &err), -1);
	}
	mailstate_free(&s);
}

static void test_store_local(void)
{
	struct mailstate *s = mailstate_new("alice");
	const char *kw2[] = { "A", "b" };
	const struct mailstate_msg *m;
	struct op *op;

	op_free((op = create(s, "INBOX"), &op));
	op_free((op = append(s, "INBOX", OP_FLAG_SEEN), &op));
	/* +FLAGS of what is set ships nothing. */
	op = store(s, "INBOX", 0, MAILSTATE_STORE_ADD, OP_FLAG_SEEN, NULL);
	CU_ASSERT_PTR_NULL(op);
	op = store(s, "INBOX", 0, MAILSTATE_STORE_ADD,
		   OP_FLAG_SEEN | OP_FLAG_ANSWERED, "Junk");
	CU_ASSERT_PTR_NOT_NULL_FATAL(op);
	CU_ASSERT_EQUAL(op->entries[0].add_flags, OP_FLAG_ANSWERED);
	CU_ASSERT_EQUAL(op->entries[0].add_keyword_count, 1);
	op_free(&op);
	m = msg(s, "INBOX", 0);
	CU_ASSERT_EQUAL(m->flags, OP_FLAG_SEEN | OP_FLAG_ANSWERED);
	CU_ASSERT_TRUE(mailstate_msg_has_keyword(m, "junk"));
	op = store(s, "INBOX", 0, MAILSTATE_STORE_REMOVE, OP_FLAG_SEEN, "JUNK");
	CU_ASSERT_EQUAL(op->entries[0].remove_count, 2);
	op_free(&op);
	CU_ASSERT_EQUAL(m->flags, OP_FLAG_ANSWERED);
	CU_ASSERT_FALSE(mailstate_msg_has_keyword(m, "junk"));
	op = store(s, "INBOX", 0, MAILSTATE_STORE_REMOVE, OP_FLAG_SEEN, NULL);
	CU_ASSERT_PTR_NULL(op);
	/* FLAGS replaces. */
	CU_ASSERT_EQUAL(mailstate_store(s, box(s, "INBOX"), &m, 1,
					MAILSTATE_STORE_REPLACE,
					OP_FLAG_DELETED, kw2, 2, &op, &err), 0);
	op_free(&op);
	CU_ASSERT_EQUAL(m->flags, OP_FLAG_DELETED);
	CU_ASSERT_TRUE(mailstate_msg_has_keyword(m, "a"));
	CU_ASSERT_TRUE(mailstate_msg_has_keyword(m, "B"));
	CU_ASSERT_EQUAL(mailstate_store(s, box(s, "INBOX"), &m, 1,
					MAILSTATE_STORE_REPLACE, 0, kw2 + 1, 1,
					&op, &err), 0);
	op_free(&op);
	CU_ASSERT_EQUAL(m->flags, 0);
	CU_ASSERT_FALSE(mailstate_msg_has_keyword(m, "a"));
	CU_ASSERT_TRUE(mailstate_msg_has_keyword(m, "b"));
	/* Expunge of \Deleted only. */
	op_free((op = append(s, "INBOX", OP_FLAG_DELETED), &op));
	op_free((op = append(s, "INBOX", 0), &op));
	CU_ASSERT_EQUAL(mailstate_expunge_deleted(s, box(s, "INBOX"), &op,
						  &err), 0);
	CU_ASSERT_EQUAL(op->msg_tag_count, 1);
	op_free(&op);
	CU_ASSERT_EQUAL(count(s, "INBOX"), 2);
	CU_ASSERT_EQUAL(mailstate_expunge_deleted(s, box(s, "INBOX"), &op,
						  &err), 0);
	CU_ASSERT_PTR_NULL(op);
	CU_ASSERT_EQUAL(mailstate_store(s, box(s, "INBOX"), &m, 1,
					MAILSTATE_STORE_ADD, 0x40, NULL, 0,
					&op, &err), -1);
	mailstate_free(&s);
}

static void test_rename_local(void)
{
	struct mailstate *s = mailstate_new("alice");
	struct op *op;
	uint32_t uv;

	op = create(s, "Work");
	uv = op->uidvalidity;
	op_free(&op);
	op_free((op = append(s, "Work", 0), &op));
	op_free((op = append(s, "Work", OP_FLAG_SEEN), &op));
	op_free((op = expunge(s, "Work", 1), &op));
	CU_ASSERT_EQUAL(mailstate_rename(s, "Work", "Archive", &op, &err), 0);
	CU_ASSERT_EQUAL(op->move_count, 1);
	CU_ASSERT_EQUAL(op->uidnext, 3);
	op_free(&op);
	CU_ASSERT_PTR_NULL(box(s, "Work"));
	CU_ASSERT_EQUAL(count(s, "Archive"), 1);
	CU_ASSERT_EQUAL(msg(s, "Archive", 0)->uid, 1);
	CU_ASSERT_TRUE(mailstate_mailbox_uidvalidity(box(s, "Archive")) > uv);
	CU_ASSERT_EQUAL(mailstate_mailbox_uidnext(box(s, "Archive")), 3);
	op = append(s, "Archive", 0);
	CU_ASSERT_EQUAL(op->uid, 3);
	op_free(&op);
	/* And back, onto the dead name. */
	CU_ASSERT_EQUAL(mailstate_rename(s, "Archive", "Work", &op, &err), 0);
	op_free(&op);
	CU_ASSERT_EQUAL(count(s, "Work"), 2);
	CU_ASSERT_PTR_NULL(box(s, "Archive"));
	mailstate_free(&s);
}

/*
 * Concurrent pairs.  Both replicas start from the same state; x is done on
 * a, y on b; then each receives the other's op.  They must converge, and
 * the check function states the merge rule.
 */
struct pair {
	const char *what;
	void (*setup)(struct mailstate *s);
	struct op *(*x)(struct mailstate *a);
	struct op *(*y)(struct mailstate *b);
	void (*check)(struct mailstate *s);
};

static void setup_box(struct mailstate *s)
{
	struct op *op;

	op_free((op = create(s, "X"), &op));
	op_free((op = append(s, "X", 0), &op));
	op_free((op = append(s, "X", OP_FLAG_SEEN), &op));
}

static struct op *do_create_new(struct mailstate *s)
{
	return create(s, "New");
}

static struct op *do_delete_x(struct mailstate *s)
{
	struct op *op = NULL;

	CU_ASSERT_EQUAL(mailstate_delete(s, "X", &op, &err), 0);
	return op;
}

static struct op *do_append_x(struct mailstate *s)
{
	return append(s, "X", OP_FLAG_DRAFT);
}

static struct op *do_rename_xy(struct mailstate *s)
{
	struct op *op = NULL;

	CU_ASSERT_EQUAL(mailstate_rename(s, "X", "Y", &op, &err), 0);
	return op;
}

static struct op *do_rename_xz(struct mailstate *s)
{
	struct op *op = NULL;

	CU_ASSERT_EQUAL(mailstate_rename(s, "X", "Z", &op, &err), 0);
	return op;
}

static struct op *do_expunge_first(struct mailstate *s)
{
	return expunge(s, "X", 0);
}

static struct op *do_flag_first(struct mailstate *s)
{
	return store(s, "X", 0, MAILSTATE_STORE_ADD, OP_FLAG_FLAGGED, "k");
}

static struct op *do_seen_first(struct mailstate *s)
{
	return store(s, "X", 0, MAILSTATE_STORE_ADD, OP_FLAG_SEEN, NULL);
}

/* Sets \Seen and clears it again locally: ships only the removal of its
 * own tag, so the other side's concurrent +\Seen must survive. */
static struct op *do_seen_unseen_first(struct mailstate *s)
{
	struct op *op = store(s, "X", 0, MAILSTATE_STORE_ADD, OP_FLAG_SEEN,
			      NULL);

	op_free(&op);
	return store(s, "X", 0, MAILSTATE_STORE_REMOVE, OP_FLAG_SEEN, NULL);
}

static struct op *do_unseen_second(struct mailstate *s)
{
	return store(s, "X", 1, MAILSTATE_STORE_REMOVE, OP_FLAG_SEEN, NULL);
}

static struct op *do_answer_second(struct mailstate *s)
{
	return store(s, "X", 1, MAILSTATE_STORE_ADD, OP_FLAG_ANSWERED, NULL);
}

static void check_create_create(struct mailstate *s)
{
	const char **names;
	size_t n;

	CU_ASSERT_PTR_NOT_NULL(box(s, "New"));
	CU_ASSERT_EQUAL(mailstate_mailbox_list(s, &names, &n), 0);
	CU_ASSERT_EQUAL(n, 2);
	free(names);
}

static void check_append_delete(struct mailstate *s)
{
	/* The mailbox survives with only the message the deleter missed. */
	CU_ASSERT_PTR_NOT_NULL(box(s, "X"));
	CU_ASSERT_EQUAL(count(s, "X"), 1);
	CU_ASSERT_EQUAL(msg(s, "X", 0)->flags, OP_FLAG_DRAFT);
	CU_ASSERT_EQUAL(msg(s, "X", 0)->uid, 3);
}

static void check_store_expunge(struct mailstate *s)
{
	CU_ASSERT_EQUAL(count(s, "X"), 1);
	CU_ASSERT_EQUAL(msg(s, "X", 0)->uid, 2);
}

static void check_add_wins_seen(struct mailstate *s)
{
	CU_ASSERT_EQUAL(msg(s, "X", 0)->flags, OP_FLAG_SEEN);
}

static void check_two_stores(struct mailstate *s)
{
	CU_ASSERT_EQUAL(msg(s, "X", 1)->flags,
			OP_FLAG_SEEN | OP_FLAG_ANSWERED);
	CU_ASSERT_EQUAL(msg(s, "X", 0)->flags, OP_FLAG_FLAGGED);
	CU_ASSERT_TRUE(mailstate_msg_has_keyword(msg(s, "X", 0), "K"));
}

static void check_rename_append(struct mailstate *s)
{
	CU_ASSERT_EQUAL(count(s, "Y"), 2);
	CU_ASSERT_PTR_NOT_NULL(box(s, "X"));
	CU_ASSERT_EQUAL(count(s, "X"), 1);
	CU_ASSERT_EQUAL(msg(s, "X", 0)->flags, OP_FLAG_DRAFT);
}

static void check_rename_rename(struct mailstate *s)
{
	/* Both names exist; the messages sit together in one of them. */
	CU_ASSERT_PTR_NULL(box(s, "X"));
	CU_ASSERT_PTR_NOT_NULL(box(s, "Y"));
	CU_ASSERT_PTR_NOT_NULL(box(s, "Z"));
	CU_ASSERT_EQUAL(count(s, "Y") + count(s, "Z"), 2);
	CU_ASSERT_TRUE(count(s, "Y") == 0 || count(s, "Z") == 0);
}

static void check_rename_delete(struct mailstate *s)
{
	CU_ASSERT_PTR_NULL(box(s, "X"));
	CU_ASSERT_PTR_NOT_NULL(box(s, "Y"));
	CU_ASSERT_EQUAL(count(s, "Y"), 0);
}

static void check_rename_store(struct mailstate *s)
{
	CU_ASSERT_EQUAL(count(s, "Y"), 2);
	CU_ASSERT_EQUAL(msg(s, "Y", 0)->flags, OP_FLAG_FLAGGED);
}

static void check_rename_expunge(struct mailstate *s)
{
	CU_ASSERT_EQUAL(count(s, "Y"), 1);
	CU_ASSERT_EQUAL(msg(s, "Y", 0)->uid, 2);
}

static void check_gone(struct mailstate *s)
{
	CU_ASSERT_PTR_NULL(box(s, "X"));
}

static void check_expunge_twice(struct mailstate *s)
{
	CU_ASSERT_EQUAL(count(s, "X"), 1);
}

static const struct pair pairs[] = {
	{ "create || create", setup_box, do_create_new, do_create_new,
	  check_create_create },
	{ "append || delete", setup_box, do_append_x, do_delete_x,
	  check_append_delete },
	{ "store || expunge", setup_box, do_flag_first, do_expunge_first,
	  check_store_expunge },
	{ "+seen || +seen-seen", setup_box, do_seen_first,
	  do_seen_unseen_first, check_add_wins_seen },
	{ "store || store", setup_box, do_flag_first, do_answer_second,
	  check_two_stores },
	{ "store || store, other flags", setup_box, do_flag_first,
	  do_unseen_second, NULL },
	{ "rename || append", setup_box, do_rename_xy, do_append_x,
	  check_rename_append },
	{ "rename || rename", setup_box, do_rename_xy, do_rename_xz,
	  check_rename_rename },
	{ "rename || delete", setup_box, do_rename_xy, do_delete_x,
	  check_rename_delete },
	{ "rename || store", setup_box, do_rename_xy, do_flag_first,
	  check_rename_store },
	{ "rename || expunge", setup_box, do_rename_xy, do_expunge_first,
	  check_rename_expunge },
	{ "delete || delete", setup_box, do_delete_x, do_delete_x,
	  check_gone },
	{ "expunge || expunge", setup_box, do_expunge_first, do_expunge_first,
	  check_expunge_twice },
	{ "delete || store", setup_box, do_delete_x, do_flag_first,
	  check_gone },
};

static void test_concurrent_pairs(void)
{
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		const struct pair *p = &pairs[i];
		struct mailstate *a = mailstate_new("alice"), *b;
		struct op *x, *y;

		p->setup(a);
		b = clone(a);
		x = p->x(a);
		y = p->y(b);
		CU_ASSERT_PTR_NOT_NULL_FATAL(x);
		CU_ASSERT_PTR_NOT_NULL_FATAL(y);
		ship(a, y);
		ship(b, x);
		if (!same(a, b)) {
			fprintf(stderr, "diverged: %s\n", p->what);
			CU_FAIL("replicas diverged");
		}
		if (p->check != NULL) {
			p->check(a);
			p->check(b);
		}
		op_free(&x);
		op_free(&y);
		mailstate_free(&a);
		mailstate_free(&b);
	}
}

static void test_create_delete_rule(void)
{
	struct mailstate *a = mailstate_new("alice"), *b;
	struct op *x, *y;

	setup_box(a);
	b = clone(a);
	/* a deletes X; b deletes and re-creates it: the re-create wins,
	 * empty, with the higher UIDVALIDITY on both sides. */
	x = do_delete_x(a);
	y = do_delete_x(b);
	op_free(&y);
	y = create(b, "X");
	ship(a, y);
	ship(b, x);
	CU_ASSERT_TRUE(same(a, b));
	CU_ASSERT_PTR_NOT_NULL(box(a, "X"));
	CU_ASSERT_EQUAL(count(a, "X"), 0);
	CU_ASSERT_EQUAL(mailstate_mailbox_uidvalidity(box(a, "X")),
			y->uidvalidity);
	CU_ASSERT_EQUAL(mailstate_mailbox_uidnext(box(a, "X")), 3);
	op_free(&x);
	op_free(&y);
	mailstate_free(&a);
	mailstate_free(&b);
}

static void test_uid_conflict(void)
{
	struct mailstate *w = mailstate_new("alice"), *st;
	struct op *x, *y, **ops;
	size_t n;
	const char *high;

	setup_box(w);
	st = clone(w);
	/* Partition: both accept an APPEND and pick UID 3. */
	x = do_append_x(w);
	y = do_append_x(st);
	CU_ASSERT_EQUAL(x->uid, 3);
	CU_ASSERT_EQUAL(y->uid, 3);
	high = strcmp(x->tag, y->tag) > 0 ? x->tag : y->tag;
	ship(w, y);
	ship(st, x);
	CU_ASSERT_TRUE(same(w, st));
	CU_ASSERT_EQUAL(count(w, "X"), 4);
	CU_ASSERT_EQUAL(msg(w, "X", 2)->uid, 3);
	CU_ASSERT_EQUAL(msg(w, "X", 3)->uid, 3);
	/* Storage never renumbers; the worker does, once. */
	CU_ASSERT_EQUAL(mailstate_resolve_uid_conflicts(w, &ops, &n, &err), 0);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_EQUAL(ops[0]->type, OP_UID_RENUMBER);
	CU_ASSERT_EQUAL_FATAL(ops[0]->renumber_count, 1);
	CU_ASSERT_STRING_EQUAL(ops[0]->renumbers[0].msg_tag, high);
	CU_ASSERT_EQUAL(ops[0]->renumbers[0].old_uid, 3);
	CU_ASSERT_EQUAL(ops[0]->renumbers[0].new_uid, 4);
	ship(st, ops[0]);
	CU_ASSERT_TRUE(same(w, st));
	CU_ASSERT_EQUAL(msg(st, "X", 3)->uid, 4);
	CU_ASSERT_STRING_EQUAL(msg(st, "X", 3)->tag, high);
	CU_ASSERT_EQUAL(mailstate_mailbox_uidnext(box(st, "X")), 5);
	op_free(&ops[0]);
	free(ops);
	CU_ASSERT_EQUAL(mailstate_resolve_uid_conflicts(w, &ops, &n, &err), 0);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_PTR_NULL(ops);
	op_free(&x);
	op_free(&y);
	mailstate_free(&w);
	mailstate_free(&st);
}

static void test_apply_refuses(void)
{
	struct mailstate *a = mailstate_new("alice");
	struct mailstate *b = mailstate_new("bob");
	struct op *op = create(a, "INBOX");

	CU_ASSERT_EQUAL(mailstate_apply(b, op, &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "operation for another user");
	CU_ASSERT_PTR_NULL(box(b, "INBOX"));
	op->uidvalidity = 0;
	CU_ASSERT_EQUAL(mailstate_apply(a, op, &err), -1);
	op_free(&op);
	mailstate_free(&a);
	mailstate_free(&b);
}

/*
 * Random two-replica runs: worker and storage each do random local
 * operations; each ships its ops to the other in order (FIFO between two
 * replicas is causal delivery), interleaved at random.  At quiescence the
 * replicas must be byte-identical, and after the worker resolves UID
 * conflicts no mailbox may hold a UID twice.
 */
#define QMAX 2048

struct queue {
	struct op *ops[QMAX];
	size_t head, tail;
};

static uint64_t rng;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static const char *const box_names[] = { "INBOX", "A", "B", "A.sub" };

static struct op *random_op(struct mailstate *s)
{
	const char *name = box_names[rnd(4)];
	const char *other = box_names[rnd(4)];
	struct mailstate_mailbox *b = box(s, name);
	struct op *op = NULL;
	const char *kw[] = { "k1", "K2" };

	if (b == NULL) {
		mailstate_create(s, name, &op, &err);
		return op;
	}
	switch (rnd(13)) {
	case 0:
		mailstate_delete(s, name, &op, &err);
		break;
	case 1:
	case 12:
		mailstate_rename(s, name, other, &op, &err);
		break;
	case 2:
	case 3:
	case 4:
	case 5:
		mailstate_append(s, name, "m", 1, rnd(1000), rnd(32), kw,
				 rnd(3), &op, &err);
		break;
	case 6:
	case 7:
		if (mailstate_mailbox_count(b) > 0) {
			const struct mailstate_msg *m =
				mailstate_mailbox_msg_at(b,
				rnd((unsigned)mailstate_mailbox_count(b)));

			mailstate_expunge(s, b, &m, 1, &op, &err);
		}
		break;
	default:
		if (mailstate_mailbox_count(b) > 0) {
			const struct mailstate_msg *m[2];

			m[0] = mailstate_mailbox_msg_at(b,
				rnd((unsigned)mailstate_mailbox_count(b)));
			m[1] = mailstate_mailbox_msg_at(b,
				rnd((unsigned)mailstate_mailbox_count(b)));
			mailstate_store(s, b, m, 2,
					(enum mailstate_store_mode)rnd(3),
					rnd(32), kw + rnd(2), rnd(2), &op,
					&err);
		}
		break;
	}
	return op;
}

static void check_unique_uids(struct mailstate *s)
{
	const char **names;
	size_t n;

	CU_ASSERT_EQUAL(mailstate_mailbox_list(s, &names, &n), 0);
	for (size_t i = 0; i < n; i++) {
		struct mailstate_mailbox *b = box(s, names[i]);

		for (size_t j = 1; j < mailstate_mailbox_count(b); j++)
			CU_ASSERT(mailstate_mailbox_msg_at(b, j - 1)->uid <
				  mailstate_mailbox_msg_at(b, j)->uid);
		if (mailstate_mailbox_count(b) > 0)
			CU_ASSERT(mailstate_mailbox_uidnext(b) >
				  mailstate_mailbox_msg_at(b,
					mailstate_mailbox_count(b) - 1)->uid);
	}
	free(names);
}

static void run_random(uint64_t seed)
{
	struct mailstate *rep[2];
	static struct queue q[2];	/* q[i]: ops made at i, for 1-i */
	struct op **ops;
	size_t n;

	rng = seed * 0x9e3779b97f4a7c15ULL + 7;
	rep[0] = mailstate_new("alice");
	rep[1] = mailstate_new("alice");
	memset(q, 0, sizeof(q));
	for (int step = 0; step < 600; step++) {
		unsigned r = rnd(2);

		if (rnd(2) == 0 && q[r].tail < QMAX) {
			struct op *op = random_op(rep[r]);

			if (op != NULL)
				q[r].ops[q[r].tail++] = op;
		} else if (q[1 - r].head < q[1 - r].tail) {
			ship(rep[r], q[1 - r].ops[q[1 - r].head++]);
		}
	}
	for (int r = 0; r < 2; r++)
		while (q[r].head < q[r].tail)
			ship(rep[1 - r], q[r].ops[q[r].head++]);
	if (!same(rep[0], rep[1])) {
		fprintf(stderr, "random run %llu diverged\n",
			(unsigned long long)seed);
		CU_FAIL("random run diverged");
	}
	/* The worker (replica 0) settles UID conflicts. */
	CU_ASSERT_EQUAL(mailstate_resolve_uid_conflicts(rep[0], &ops, &n,
							&err), 0);
	for (size_t i = 0; i < n; i++) {
		ship(rep[1], ops[i]);
		op_free(&ops[i]);
	}
	free(ops);
	CU_ASSERT_TRUE(same(rep[0], rep[1]));
	check_unique_uids(rep[0]);
	check_unique_uids(rep[1]);
	/* A snapshot of the result loads back to the same state. */
	{
		struct mailstate *c = clone(rep[1]);

		mailstate_free(&c);
	}
	for (int r = 0; r < 2; r++) {
		for (size_t i = 0; i < q[r].tail; i++)
			op_free(&q[r].ops[i]);
		mailstate_free(&rep[r]);
	}
}

static void test_random_convergence(void)
{
	for (uint64_t seed = 1; seed <= 300; seed++)
		run_random(seed);
}

static void test_snapshot(void)
{
	struct mailstate *a = mailstate_new("alice"), *b;
	struct buf s = BUF_INIT;
	struct op *op;
	unsigned char *copy;

	setup_box(a);
	op_free((op = store(a, "X", 0, MAILSTATE_STORE_ADD, OP_FLAG_FLAGGED,
			    "kw"), &op));
	op_free((op = expunge(a, "X", 1), &op));
	op_free((op = do_rename_xy(a), &op));
	op_free((op = create(a, "Dead"), &op));
	CU_ASSERT_EQUAL(mailstate_delete(a, "Dead", &op, &err), 0);
	op_free(&op);
	CU_ASSERT_TRUE(mailstate_tombstone_count(a) > 0);
	b = clone(a);
	CU_ASSERT_EQUAL(count(b, "Y"), 1);
	CU_ASSERT_EQUAL(msg(b, "Y", 0)->flags, OP_FLAG_FLAGGED);
	mailstate_free(&b);

	CU_ASSERT_EQUAL(mailstate_serialize(a, &s), 0);
	for (size_t len = 0; len < s.len; len++) {
		err = NULL;
		b = mailstate_deserialize(s.data, len, &err);
		CU_ASSERT_PTR_NULL(b);
		CU_ASSERT_PTR_NOT_NULL(err);
		mailstate_free(&b);
	}
	buf_put_u8(&s, 0);
	CU_ASSERT_PTR_NULL(mailstate_deserialize(s.data, s.len, &err));
	s.len--;
	copy = malloc(s.len);
	for (int round = 0; round < 5000; round++) {
		memcpy(copy, s.data, s.len);
		copy[rnd((unsigned)s.len)] ^= (unsigned char)(1u << rnd(8));
		b = mailstate_deserialize(copy, s.len, &err);
		if (b != NULL) {
			/* Accepted means well-formed: it serialises back. */
			struct buf again = BUF_INIT;

			CU_ASSERT_EQUAL(mailstate_serialize(b, &again), 0);
			buf_free(&again);
		}
		mailstate_free(&b);
	}
	free(copy);
	mailstate_purge_tombstones(a);
	CU_ASSERT_EQUAL(mailstate_tombstone_count(a), 0);
	buf_free(&s);
	mailstate_free(&a);
}

static void test_scale(void)
{
	struct mailstate *s = mailstate_new("alice");
	struct mailstate_mailbox *b;
	const struct mailstate_msg **m;
	struct op *op;
	size_t n;

	op_free((op = create(s, "INBOX"), &op));
	for (int i = 0; i < 20000; i++) {
		CU_ASSERT_EQUAL_FATAL(mailstate_append(s, "INBOX", "x", 1, 0, 0,
						       NULL, 0, &op, &err), 0);
		op_free(&op);
	}
	b = box(s, "INBOX");
	n = mailstate_mailbox_count(b);
	CU_ASSERT_EQUAL(n, 20000);
	m = malloc(n / 2 * sizeof(*m));
	for (size_t i = 0; i < n / 2; i++)
		m[i] = mailstate_mailbox_msg_at(b, 2 * i);
	CU_ASSERT_EQUAL(mailstate_store(s, b, m, n / 2, MAILSTATE_STORE_ADD,
					OP_FLAG_DELETED, NULL, 0, &op, &err),
			0);
	op_free(&op);
	CU_ASSERT_EQUAL(mailstate_expunge_deleted(s, b, &op, &err), 0);
	CU_ASSERT_EQUAL(op->msg_tag_count, 10000);
	op_free(&op);
	CU_ASSERT_EQUAL(mailstate_mailbox_count(b), 10000);
	CU_ASSERT_EQUAL(mailstate_mailbox_msg_at(b, 0)->uid, 2);
	free(m);
	mailstate_free(&s);
}

static CU_TestInfo tests[] = {
	{ "create, list, delete, UIDVALIDITY", test_mailboxes },
	{ "append, UIDs, sequence numbers, expunge", test_append_and_uids },
	{ "store modes and keywords", test_store_local },
	{ "rename moves messages", test_rename_local },
	{ "concurrent pairs converge in both orders", test_concurrent_pairs },
	{ "delete || delete+create", test_create_delete_rule },
	{ "UID conflict renumbering", test_uid_conflict },
	{ "apply refuses other users and bad ops", test_apply_refuses },
	{ "random two-replica runs converge", test_random_convergence },
	{ "strict snapshots", test_snapshot },
	{ "twenty thousand messages", test_scale },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("mailstate", tests);
}
