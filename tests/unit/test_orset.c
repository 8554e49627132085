/*
 * test_orset.c - OR-Set semantics: add wins over a concurrent remove,
 * downstream effects are idempotent and commute, and replicas that receive
 * random operation streams in different causal orders converge.
 */
#include "autoconfig.h"

#include "orset.h"
#include "cu_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *err;

static void fixed_tag(char tag_r[ORSET_TAG_BUFSIZE], unsigned n)
{
	unsigned char rnd[16] = { 0 };

	rnd[12] = (unsigned char)(n >> 24);
	rnd[13] = (unsigned char)(n >> 16);
	rnd[14] = (unsigned char)(n >> 8);
	rnd[15] = (unsigned char)n;
	orset_tag_from_random(tag_r, rnd);
}

static bool has(const struct orset *s, const char *v)
{
	return orset_lookup(s, v, strlen(v));
}

static int add(struct orset *s, const char *v, const char *tag)
{
	err = NULL;
	return orset_apply_add(s, v, strlen(v), tag, &err);
}

static int rm(struct orset *s, const char *v, const char *const *tags,
	      size_t n)
{
	err = NULL;
	return orset_apply_remove(s, v, strlen(v), tags, n, &err);
}

static void test_tag_valid(void)
{
	static const struct {
		const char *tag;
		bool ok;
	} cases[] = {
		{ "a", true },
		{ "Az09-_", true },
		{ "0123456789abcdef0123456789abcdef", true },
		{ "", false },
		{ "a b", false },
		{ "a/b", false },
		{ "a.b", false },
		{ "\xc3\xa9", false },
		{ "tag\n", false },
		{ "1234567890123456789012345678901234567890123456789012345678901"
		  "234", true },
		{ "1234567890123456789012345678901234567890123456789012345678901"
		  "2345", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CU_ASSERT_EQUAL(orset_tag_valid(cases[i].tag,
						strlen(cases[i].tag)),
				cases[i].ok);
	CU_ASSERT_FALSE(orset_tag_valid("a\0b", 3));
	CU_ASSERT_FALSE(orset_tag_valid(NULL, 0));
}

static void test_mint(void)
{
	char a[ORSET_TAG_BUFSIZE], b[ORSET_TAG_BUFSIZE];
	unsigned char rnd[16];

	CU_ASSERT_EQUAL(orset_tag_mint(a, &err), 0);
	CU_ASSERT_EQUAL(orset_tag_mint(b, &err), 0);
	CU_ASSERT_EQUAL(strlen(a), ORSET_TAG_MINT_LEN);
	CU_ASSERT_TRUE(orset_tag_valid(a, strlen(a)));
	CU_ASSERT_STRING_NOT_EQUAL(a, b);
	for (int i = 0; i < 16; i++)
		rnd[i] = (unsigned char)(i * 17);
	orset_tag_from_random(a, rnd);
	CU_ASSERT_STRING_EQUAL(a, "00112233445566778899aabbccddeeff");
}

static void test_add_remove_local(void)
{
	struct orset *s = orset_new();
	char t1[ORSET_TAG_BUFSIZE], t2[ORSET_TAG_BUFSIZE];
	char **tags;
	size_t n;

	CU_ASSERT_FALSE(has(s, "INBOX"));
	CU_ASSERT_EQUAL(orset_add(s, "INBOX", 5, t1, &err), 0);
	CU_ASSERT_TRUE(has(s, "INBOX"));
	CU_ASSERT_EQUAL(orset_add(s, "INBOX", 5, t2, &err), 0);
	CU_ASSERT_STRING_NOT_EQUAL(t1, t2);
	orset_tags(s, "INBOX", 5, &n);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT_EQUAL(orset_count(s), 1);
	CU_ASSERT_EQUAL(orset_remove(s, "INBOX", 5, &tags, &n, &err), 0);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT_FALSE(has(s, "INBOX"));
	CU_ASSERT_EQUAL(orset_count(s), 0);
	CU_ASSERT_EQUAL(orset_tombstone_count(s), 2);
	CU_ASSERT_TRUE(orset_tag_removed(s, t1));
	orset_tag_list_free(&tags, n);
	CU_ASSERT_PTR_NULL(tags);
	/* Removing what is absent ships nothing. */
	CU_ASSERT_EQUAL(orset_remove(s, "INBOX", 5, &tags, &n, &err), 0);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_PTR_NULL(tags);
	orset_free(&s);
	CU_ASSERT_PTR_NULL(s);
	orset_free(&s);
}

static void test_add_wins(void)
{
	struct orset *a = orset_new(), *b = orset_new();
	char t1[ORSET_TAG_BUFSIZE], t2[ORSET_TAG_BUFSIZE];
	char **removed;
	size_t n;

	/* Both replicas know "x" under t1. */
	fixed_tag(t1, 1);
	CU_ASSERT_EQUAL(add(a, "x", t1), 1);
	CU_ASSERT_EQUAL(add(b, "x", t1), 1);
	/* a removes x (observing t1) while b adds it again (t2). */
	CU_ASSERT_EQUAL(orset_remove(a, "x", 1, &removed, &n, &err), 0);
	CU_ASSERT_EQUAL(n, 1);
	fixed_tag(t2, 2);
	CU_ASSERT_EQUAL(add(b, "x", t2), 1);
	/* Exchange. */
	CU_ASSERT_EQUAL(add(a, "x", t2), 1);
	CU_ASSERT_EQUAL(rm(b, "x", (const char *const *)removed, n), 1);
	CU_ASSERT_TRUE(has(a, "x"));
	CU_ASSERT_TRUE(has(b, "x"));
	orset_tags(a, "x", 1, &n);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_STRING_EQUAL(orset_tags(b, "x", 1, &n)[0], t2);
	orset_tag_list_free(&removed, 1);
	orset_free(&a);
	orset_free(&b);
}

static void test_idempotent_and_commuting(void)
{
	struct orset *s = orset_new();
	char t1[ORSET_TAG_BUFSIZE], t2[ORSET_TAG_BUFSIZE];
	const char *both[2] = { t1, t2 };
	size_t n;

	fixed_tag(t1, 10);
	fixed_tag(t2, 11);
	CU_ASSERT_EQUAL(add(s, "v", t1), 1);
	CU_ASSERT_EQUAL(add(s, "v", t1), 0);
	orset_tags(s, "v", 1, &n);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_EQUAL(rm(s, "v", both, 1), 1);
	CU_ASSERT_EQUAL(rm(s, "v", both, 1), 0);
	/* A late duplicate of the add stays removed. */
	CU_ASSERT_EQUAL(add(s, "v", t1), 0);
	CU_ASSERT_FALSE(has(s, "v"));
	/* A remove that overtakes its add: the add has no effect. */
	CU_ASSERT_EQUAL(rm(s, "v", both + 1, 1), 1);
	CU_ASSERT_EQUAL(add(s, "v", t2), 0);
	CU_ASSERT_FALSE(has(s, "v"));
	/* One remove naming a tag twice. */
	fixed_tag(t1, 12);
	CU_ASSERT_EQUAL(add(s, "w", t1), 1);
	both[1] = t1;
	CU_ASSERT_EQUAL(rm(s, "w", both, 2), 1);
	CU_ASSERT_FALSE(has(s, "w"));
	CU_ASSERT_EQUAL(orset_tombstone_count(s), 3);
	orset_tombstones_purge(s);
	CU_ASSERT_EQUAL(orset_tombstone_count(s), 0);
	CU_ASSERT_FALSE(orset_tag_removed(s, t1));
	orset_free(&s);
}

static void test_bad_input(void)
{
	struct orset *s = orset_new();
	char t1[ORSET_TAG_BUFSIZE];
	static char big[ORSET_VALUE_MAX + 1];
	const char *bad[] = { "no spaces" };
	const char *tagv[] = { t1 };

	fixed_tag(t1, 20);
	CU_ASSERT_EQUAL(add(s, "a", t1), 1);
	/* A tag is bound to one value for ever. */
	CU_ASSERT_EQUAL(add(s, "b", t1), -1);
	CU_ASSERT_PTR_NOT_NULL(err);
	/* A remove naming another value's tag leaves it alone. */
	CU_ASSERT_EQUAL(rm(s, "b", tagv, 1), 0);
	CU_ASSERT_TRUE(has(s, "a"));
	CU_ASSERT_EQUAL(orset_tombstone_count(s), 0);
	CU_ASSERT_EQUAL(add(s, "a", "bad tag"), -1);
	CU_ASSERT_EQUAL(add(s, "a", ""), -1);
	CU_ASSERT_EQUAL(rm(s, "a", bad, 1), -1);
	CU_ASSERT_TRUE(has(s, "a"));
	err = NULL;
	CU_ASSERT_EQUAL(orset_apply_add(s, big, sizeof(big), t1, &err), -1);
	CU_ASSERT_EQUAL(orset_apply_add(s, big, sizeof(big) - 1, "x", &err),
			1);
	CU_ASSERT_EQUAL(orset_count(s), 2);
	orset_free(&s);
}

static void test_binary_values(void)
{
	struct orset *s = orset_new();
	char t[ORSET_TAG_BUFSIZE];
	struct orset_iter it = ORSET_ITER_INIT;
	const void *v;
	size_t len, seen = 0;

	CU_ASSERT_EQUAL(orset_add(s, "a\0b", 3, t, &err), 0);
	CU_ASSERT_EQUAL(orset_add(s, "a\0c", 3, t, &err), 0);
	CU_ASSERT_EQUAL(orset_add(s, "", 0, t, &err), 0);
	CU_ASSERT_TRUE(orset_lookup(s, "a\0b", 3));
	CU_ASSERT_FALSE(orset_lookup(s, "a", 1));
	CU_ASSERT_TRUE(orset_lookup(s, "", 0));
	CU_ASSERT_EQUAL(orset_count(s), 3);
	while (orset_iter_next(s, &it, &v, &len)) {
		CU_ASSERT_TRUE(len == 0 || len == 3);
		seen++;
	}
	CU_ASSERT_EQUAL(seen, 3);
	orset_free(&s);
}

static void test_many(void)
{
	struct orset *s = orset_new();
	char name[32], t[ORSET_TAG_BUFSIZE];
	size_t n;

	for (unsigned i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "box%u", i);
		fixed_tag(t, i);
		CU_ASSERT_EQUAL_FATAL(add(s, name, t), 1);
	}
	CU_ASSERT_EQUAL(orset_count(s), 20000);
	for (unsigned i = 0; i < 20000; i += 2) {
		const char *tagv[1] = { t };

		snprintf(name, sizeof(name), "box%u", i);
		fixed_tag(t, i);
		CU_ASSERT_EQUAL_FATAL(rm(s, name, tagv, 1), 1);
	}
	CU_ASSERT_EQUAL(orset_count(s), 10000);
	CU_ASSERT_FALSE(has(s, "box0"));
	CU_ASSERT_TRUE(has(s, "box1"));
	fixed_tag(t, 19999);
	CU_ASSERT_STRING_EQUAL(orset_tags(s, "box19999", 8, &n)[0], t);
	orset_free(&s);
}

static void test_serialize(void)
{
	struct orset *a = orset_new(), *b = orset_new(), *c;
	char t[ORSET_TAG_BUFSIZE];
	struct buf ba = BUF_INIT, bb = BUF_INIT, bc = BUF_INIT;
	struct buf_reader r;
	const char *tagv[1] = { t };

	/* Same state reached in different orders. */
	for (unsigned i = 0; i < 50; i++) {
		char name[16];

		snprintf(name, sizeof(name), "m%u", i % 7);
		fixed_tag(t, i);
		CU_ASSERT_EQUAL(add(a, name, t), 1);
	}
	for (unsigned i = 50; i-- > 0;) {
		char name[16];

		snprintf(name, sizeof(name), "m%u", i % 7);
		fixed_tag(t, i);
		CU_ASSERT_EQUAL(add(b, name, t), 1);
	}
	fixed_tag(t, 3);
	CU_ASSERT_EQUAL(rm(a, "m3", tagv, 1), 1);
	CU_ASSERT_EQUAL(rm(b, "m3", tagv, 1), 1);
	CU_ASSERT_EQUAL(orset_serialize(a, &ba), 0);
	CU_ASSERT_EQUAL(orset_serialize(b, &bb), 0);
	CU_ASSERT_EQUAL_FATAL(ba.len, bb.len);
	CU_ASSERT_EQUAL(memcmp(ba.data, bb.data, ba.len), 0);

	buf_reader_init(&r, ba.data, ba.len);
	c = orset_deserialize(&r, &err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(r.left, 0);
	CU_ASSERT_EQUAL(orset_count(c), 7);
	CU_ASSERT_TRUE(orset_tag_removed(c, t));
	CU_ASSERT_EQUAL(orset_serialize(c, &bc), 0);
	CU_ASSERT_EQUAL(bc.len, ba.len);
	CU_ASSERT_EQUAL(memcmp(ba.data, bc.data, ba.len), 0);
	orset_free(&c);

	/* Every truncation fails cleanly. */
	for (size_t len = 0; len < ba.len; len++) {
		buf_reader_init(&r, ba.data, len);
		err = NULL;
		c = orset_deserialize(&r, &err);
		CU_ASSERT_PTR_NULL(c);
		CU_ASSERT_PTR_NOT_NULL(err);
		orset_free(&c);
	}
	/* A bad version, a bad tag character. */
	ba.data[0] = 9;
	buf_reader_init(&r, ba.data, ba.len);
	CU_ASSERT_PTR_NULL(orset_deserialize(&r, &err));
	ba.data[0] = ORSET_SERIAL_VERSION;
	ba.data[ba.len - 1] = '/';
	buf_reader_init(&r, ba.data, ba.len);
	CU_ASSERT_PTR_NULL(orset_deserialize(&r, &err));
	buf_free(&ba);
	buf_free(&bb);
	buf_free(&bc);
	orset_free(&a);
	orset_free(&b);
}

/*
 * Randomised convergence.  Three replicas generate adds and removes over a
 * small pool of values; every operation carries the vector clock of its
 * origin, and each replica delivers the others' operations in a random
 * interleaving that is causally consistent (the standard rule: next from
 * its origin, and nothing it depends on is missing).  Random duplicates are
 * re-delivered along the way.  At the end all replicas must hold the same
 * bytes, equal to what a direct reading of the OR-Set definition gives.
 */
#define NREP 3
#define NVAL 6
#define MAXOPS 400

struct rop {
	bool is_add;
	unsigned value;
	char tag[ORSET_TAG_BUFSIZE];
	char **tags;
	size_t ntags;
	unsigned vc[NREP];
};

struct replica {
	struct orset *set;
	unsigned seen[NREP];	/* ops applied, per origin */
};

static uint64_t rng_state;

static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)(rng_state % n);
}

static const char *val_name(unsigned v)
{
	static const char *names[NVAL] = {
		"INBOX", "Sent", "Drafts", "a\0b", "", "Trash"
	};
	return names[v];
}

static size_t val_len(unsigned v)
{
	return v == 3 ? 3 : strlen(val_name(v));
}

static void apply_rop(struct orset *s, const struct rop *op)
{
	int ret;

	if (op->is_add)
		ret = orset_apply_add(s, val_name(op->value),
				      val_len(op->value), op->tag, &err);
	else
		ret = orset_apply_remove(s, val_name(op->value),
					 val_len(op->value),
					 (const char *const *)op->tags,
					 op->ntags, &err);
	CU_ASSERT(ret >= 0);
}

static bool ready(const struct replica *r, const struct rop *op,
		  unsigned origin)
{
	for (unsigned k = 0; k < NREP; k++)
		if (k != origin && op->vc[k] > r->seen[k])
			return false;
	return true;
}

static void run_convergence(uint64_t seed)
{
	static struct rop ops[NREP][MAXOPS];
	struct replica reps[NREP];
	unsigned nops[NREP] = { 0 };
	unsigned total = 0;
	struct buf out[NREP];
	bool expect[NVAL];

	rng_state = seed * 2654435761u + 1;
	for (unsigned i = 0; i < NREP; i++) {
		reps[i].set = orset_new();
		memset(reps[i].seen, 0, sizeof(reps[i].seen));
		buf_init(&out[i]);
	}
	while (total < MAXOPS) {
		unsigned r = rnd(NREP), o = rnd(NREP);
		struct replica *rep = &reps[r];

		if (rnd(3) == 0 && nops[r] < MAXOPS) {
			/* Generate at r. */
			struct rop *op = &ops[r][nops[r]];
			unsigned v = rnd(NVAL);

			op->value = v;
			op->is_add = rnd(2) == 0 ||
				     !orset_lookup(rep->set, val_name(v),
						   val_len(v));
			op->tags = NULL;
			op->ntags = 0;
			int ret;

			if (op->is_add)
				ret = orset_add(rep->set, val_name(v),
						val_len(v), op->tag, &err);
			else
				ret = orset_remove(rep->set, val_name(v),
						   val_len(v), &op->tags,
						   &op->ntags, &err);
			CU_ASSERT_EQUAL(ret, 0);
			rep->seen[r]++;
			memcpy(op->vc, rep->seen, sizeof(op->vc));
			nops[r]++;
			total++;
		} else if (o != r && rep->seen[o] < nops[o] &&
			   ready(rep, &ops[o][rep->seen[o]], o)) {
			apply_rop(rep->set, &ops[o][rep->seen[o]]);
			if (rnd(4) == 0)
				apply_rop(rep->set, &ops[o][rep->seen[o]]);
			rep->seen[o]++;
		} else if (rep->seen[o] > 0 && rnd(8) == 0) {
			/* A late duplicate of anything already applied. */
			apply_rop(rep->set, &ops[o][rnd(rep->seen[o])]);
		}
	}
	/* Drain: keep delivering whatever is ready. */
	for (bool progress = true; progress;) {
		progress = false;
		for (unsigned r = 0; r < NREP; r++)
			for (unsigned o = 0; o < NREP; o++) {
				struct replica *rep = &reps[r];

				if (o == r || rep->seen[o] >= nops[o] ||
				    !ready(rep, &ops[o][rep->seen[o]], o))
					continue;
				apply_rop(rep->set, &ops[o][rep->seen[o]]);
				rep->seen[o]++;
				progress = true;
			}
	}
	/* The definition: a value is in when one of its add tags was never
	 * named by a remove. */
	for (unsigned v = 0; v < NVAL; v++) {
		expect[v] = false;
		for (unsigned o = 0; o < NREP; o++)
			for (unsigned i = 0; i < nops[o]; i++) {
				bool removed = false;

				if (!ops[o][i].is_add || ops[o][i].value != v)
					continue;
				for (unsigned p = 0; p < NREP; p++)
					for (unsigned j = 0; j < nops[p]; j++)
						for (size_t k = 0;
						     k < ops[p][j].ntags; k++)
							if (strcmp(ops[p][j].tags[k],
								   ops[o][i].tag) == 0)
								removed = true;
				if (!removed)
					expect[v] = true;
			}
	}
	for (unsigned r = 0; r < NREP; r++) {
		for (unsigned o = 0; o < NREP; o++)
			CU_ASSERT_EQUAL(reps[r].seen[o], nops[o]);
		for (unsigned v = 0; v < NVAL; v++)
			CU_ASSERT_EQUAL(orset_lookup(reps[r].set, val_name(v),
						     val_len(v)), expect[v]);
		CU_ASSERT_EQUAL(orset_serialize(reps[r].set, &out[r]), 0);
	}
	for (unsigned r = 1; r < NREP; r++) {
		CU_ASSERT_EQUAL(out[r].len, out[0].len);
		if (out[r].len == out[0].len)
			CU_ASSERT_EQUAL(memcmp(out[r].data, out[0].data,
					       out[0].len), 0);
	}
	for (unsigned r = 0; r < NREP; r++) {
		orset_free(&reps[r].set);
		buf_free(&out[r]);
		for (unsigned i = 0; i < nops[r]; i++)
			orset_tag_list_free(&ops[r][i].tags, ops[r][i].ntags);
	}
}

static void test_random_convergence(void)
{
	for (uint64_t seed = 1; seed <= 200; seed++)
		run_convergence(seed);
}

static CU_TestInfo tests[] = {
	{ "tag syntax", test_tag_valid },
	{ "tag minting", test_mint },
	{ "local add and remove", test_add_remove_local },
	{ "add wins over a concurrent remove", test_add_wins },
	{ "idempotent and commuting downstream", test_idempotent_and_commuting },
	{ "bad input is refused", test_bad_input },
	{ "binary-safe values, iteration", test_binary_values },
	{ "twenty thousand values", test_many },
	{ "canonical serialisation", test_serialize },
	{ "random causal deliveries converge", test_random_convergence },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("orset", tests);
}
