/*
 * test_vclock.c - vector clock operations, the causal delivery rule
 * (tables, plus a simulated out-of-order link that must still deliver in
 * causal order), and the strict encoding.
 */
#include "autoconfig.h"

#include "vclock.h"
#include "cu_run.h"

#include <stdlib.h>
#include <string.h>

static const char *err;

/* A clock from "a=1,b=2" ("" is empty).  Test input only. */
static struct vclock *vc(const char *spec)
{
	struct vclock *c = vclock_new();
	char *copy = strdup(spec), *save = NULL;

	CU_ASSERT_FATAL(c != NULL && copy != NULL);
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		CU_ASSERT_FATAL(eq != NULL);
		*eq = '\0';
		CU_ASSERT_FATAL(vclock_set(c, tok, strtoull(eq + 1, NULL, 10),
					   &err) == 0);
	}
	free(copy);
	return c;
}

/* The clock's readable form, for comparing with expectations. */
static char *fmt(const struct vclock *c)
{
	struct buf b = BUF_INIT;

	CU_ASSERT_FATAL(vclock_format(c, &b) == 0 && buf_cstr(&b) != NULL);
	return (char *)buf_steal(&b, NULL);
}

static void assert_fmt(const struct vclock *c, const char *want)
{
	char *got = fmt(c);

	CU_ASSERT_STRING_EQUAL(got, want);
	free(got);
}

static void test_names(void)
{
	static const struct {
		const char *name;
		bool valid;
	} cases[] = {
		{ "storage", true },
		{ "worker-1", true },
		{ "w_2.example", true },
		{ "A", true },
		{ "0123456789012345678901234567890123456789"
		  "01234567890123456789012", true },
		{ "0123456789012345678901234567890123456789"
		  "012345678901234567890123", false },
		{ "", false },
		{ "a b", false },
		{ "a/b", false },
		{ "a:b", false },
		{ "\xc3\xa9", false },
		{ "tab\t", false },
		{ "a=b", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CU_ASSERT_EQUAL(vclock_name_valid(cases[i].name),
				cases[i].valid);
}

static void test_set_get(void)
{
	struct vclock *c = vclock_new(), *copy;
	const char *name;
	uint64_t v;

	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT_EQUAL(vclock_count(c), 0);
	CU_ASSERT_EQUAL(vclock_get(c, "storage"), 0);
	CU_ASSERT_EQUAL(vclock_set(c, "worker-2", 5, &err), 0);
	CU_ASSERT_EQUAL(vclock_set(c, "storage", 7, &err), 0);
	CU_ASSERT_EQUAL(vclock_set(c, "worker-1", 1, &err), 0);
	CU_ASSERT_EQUAL(vclock_count(c), 3);
	assert_fmt(c, "{storage=7, worker-1=1, worker-2=5}");
	vclock_entry(c, 1, &name, &v);
	CU_ASSERT_STRING_EQUAL(name, "worker-1");
	CU_ASSERT_EQUAL(v, 1);

	CU_ASSERT_EQUAL(vclock_increment(c, "worker-1", &v, &err), 0);
	CU_ASSERT_EQUAL(v, 2);
	CU_ASSERT_EQUAL(vclock_increment(c, "new", NULL, &err), 0);
	CU_ASSERT_EQUAL(vclock_get(c, "new"), 1);
	assert_fmt(c, "{new=1, storage=7, worker-1=2, worker-2=5}");

	/* 0 removes; removing an absent name is a no-op. */
	CU_ASSERT_EQUAL(vclock_set(c, "storage", 0, &err), 0);
	CU_ASSERT_EQUAL(vclock_set(c, "absent", 0, &err), 0);
	assert_fmt(c, "{new=1, worker-1=2, worker-2=5}");

	/* Failures leave the clock as it was. */
	CU_ASSERT_EQUAL(vclock_set(c, "bad name", 1, &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "invalid node name");
	CU_ASSERT_EQUAL(vclock_get(c, "bad name"), 0);
	CU_ASSERT_EQUAL(vclock_set(c, "max", UINT64_MAX, &err), 0);
	CU_ASSERT_EQUAL(vclock_increment(c, "max", &v, &err), -1);
	CU_ASSERT_EQUAL(vclock_get(c, "max"), UINT64_MAX);
	assert_fmt(c, "{max=18446744073709551615, new=1, worker-1=2, "
		   "worker-2=5}");

	copy = vclock_copy(c);
	CU_ASSERT_FATAL(copy != NULL);
	CU_ASSERT_EQUAL(vclock_compare(c, copy), VCLOCK_EQUAL);
	CU_ASSERT_EQUAL(vclock_increment(copy, "new", NULL, &err), 0);
	CU_ASSERT_EQUAL(vclock_get(c, "new"), 1);
	CU_ASSERT_EQUAL(vclock_assign(c, copy), 0);
	CU_ASSERT_EQUAL(vclock_get(c, "new"), 2);

	vclock_free(&copy);
	vclock_free(&c);
	CU_ASSERT_PTR_NULL(c);
	vclock_free(&c);
}

static void test_entry_limit(void)
{
	struct vclock *c = vclock_new(), *other = vc("zz=1");
	char name[16];

	for (unsigned i = 0; i < VCLOCK_ENTRIES_MAX; i++) {
		snprintf(name, sizeof(name), "n%03u", VCLOCK_ENTRIES_MAX - i);
		CU_ASSERT_EQUAL_FATAL(vclock_set(c, name, i + 1, &err), 0);
	}
	CU_ASSERT_EQUAL(vclock_count(c), VCLOCK_ENTRIES_MAX);
	CU_ASSERT_EQUAL(vclock_set(c, "one-more", 1, &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "too many nodes in vector clock");
	/* Updating an existing name still works at the limit. */
	CU_ASSERT_EQUAL(vclock_set(c, "n001", 9, &err), 0);
	CU_ASSERT_EQUAL(vclock_get(c, "n001"), 9);
	/* A merge that would pass the limit fails and changes nothing. */
	CU_ASSERT_EQUAL(vclock_merge(c, other, &err), -1);
	CU_ASSERT_EQUAL(vclock_count(c), VCLOCK_ENTRIES_MAX);
	CU_ASSERT_EQUAL(vclock_get(c, "zz"), 0);
	/* Sorted order survived insertion in descending order. */
	for (size_t i = 1; i < vclock_count(c); i++) {
		const char *a, *b;
		uint64_t v;

		vclock_entry(c, i - 1, &a, &v);
		vclock_entry(c, i, &b, &v);
		CU_ASSERT(strcmp(a, b) < 0);
	}
	vclock_free(&other);
	vclock_free(&c);
}

static void test_compare_merge(void)
{
	static const struct {
		const char *a, *b;
		enum vclock_order order;
		const char *merged;
	} cases[] = {
		{ "", "", VCLOCK_EQUAL, "{}" },
		{ "a=1", "a=1", VCLOCK_EQUAL, "{a=1}" },
		{ "", "a=1", VCLOCK_BEFORE, "{a=1}" },
		{ "a=1", "", VCLOCK_AFTER, "{a=1}" },
		{ "a=1,b=2", "a=2,b=2", VCLOCK_BEFORE, "{a=2, b=2}" },
		{ "a=3,b=2", "a=2,b=2", VCLOCK_AFTER, "{a=3, b=2}" },
		{ "a=1", "a=1,b=1", VCLOCK_BEFORE, "{a=1, b=1}" },
		{ "a=2", "b=1", VCLOCK_CONCURRENT, "{a=2, b=1}" },
		{ "a=2,b=1", "a=1,b=2", VCLOCK_CONCURRENT, "{a=2, b=2}" },
		{ "a=1,c=1", "b=1", VCLOCK_CONCURRENT, "{a=1, b=1, c=1}" },
		{ "b=5", "a=1,b=5,c=1", VCLOCK_BEFORE, "{a=1, b=5, c=1}" },
		{ "a=1,b=5,c=1", "b=4", VCLOCK_AFTER, "{a=1, b=5, c=1}" },
		{ "a=1,b=5,c=1", "b=6", VCLOCK_CONCURRENT, "{a=1, b=6, c=1}" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vclock *a = vc(cases[i].a), *b = vc(cases[i].b);
		enum vclock_order rev = cases[i].order;

		if (rev == VCLOCK_BEFORE)
			rev = VCLOCK_AFTER;
		else if (rev == VCLOCK_AFTER)
			rev = VCLOCK_BEFORE;
		CU_ASSERT_EQUAL(vclock_compare(a, b), cases[i].order);
		CU_ASSERT_EQUAL(vclock_compare(b, a), rev);
		CU_ASSERT_EQUAL(vclock_merge(a, b, &err), 0);
		assert_fmt(a, cases[i].merged);
		/* The merge is after or equal to both inputs. */
		CU_ASSERT(vclock_compare(a, b) == VCLOCK_AFTER ||
			  vclock_compare(a, b) == VCLOCK_EQUAL);
		CU_ASSERT_EQUAL(vclock_merge(a, a, &err), 0);
		assert_fmt(a, cases[i].merged);
		vclock_free(&a);
		vclock_free(&b);
	}
}

static void test_delivery_table(void)
{
	static const struct {
		const char *local, *msg, *sender;
		bool deliverable, duplicate;
	} cases[] = {
		/* The first operation from a sender. */
		{ "", "w=1", "w", true, false },
		/* The next one, others unchanged. */
		{ "w=3,s=2", "w=4,s=2", "w", true, false },
		/* We know more of others than the sender did: fine. */
		{ "w=3,s=9,x=4", "w=4,s=2", "w", true, false },
		/* Gap: w=4 is missing. */
		{ "w=3", "w=5", "w", false, false },
		/* Out of order: the second arrives before the first. */
		{ "", "w=2", "w", false, false },
		/* Already applied. */
		{ "w=3", "w=3", "w", false, true },
		{ "w=3", "w=1", "w", false, true },
		{ "w=3,s=1", "w=2,s=5", "w", false, true },
		/* Depends on another node's op that we have not applied. */
		{ "w=3,s=1", "w=4,s=2", "w", false, false },
		{ "w=3", "w=4,x=1", "w", false, false },
		/* Concurrent with a third node's op we have: deliverable. */
		{ "w=3,x=1", "w=4", "w", true, false },
		/* Stamped without the sender's entry: never new. */
		{ "w=3", "s=1", "w", false, true },
		{ "", "", "w", false, true },
		/* Invalid sender. */
		{ "", "w=1", "w w", false, true },
		/* A counter at the end of its range. */
		{ "w=18446744073709551615", "w=18446744073709551615", "w",
		  false, true },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vclock *l = vc(cases[i].local), *m = vc(cases[i].msg);

		CU_ASSERT_EQUAL(vclock_deliverable(l, m, cases[i].sender),
				cases[i].deliverable);
		CU_ASSERT_EQUAL(vclock_is_duplicate(l, m, cases[i].sender),
				cases[i].duplicate);
		vclock_free(&l);
		vclock_free(&m);
	}
}

/*
 * Two origins w and x produce operations, x having seen some of w's;
 * a receiver gets all of them in a scrambled order and applies, from a
 * pending set, whatever is deliverable, merging clocks.  Everything must
 * be delivered, each exactly once (duplicates injected on the way), and
 * never before an operation it depends on.
 */
#define SIM_OPS 60

static void test_delivery_simulation(void)
{
	struct vclock *w = vclock_new(), *x = vclock_new(), *local;
	struct vclock *ops[SIM_OPS];
	const char *origin[SIM_OPS];
	int order[SIM_OPS * 2], applied_at[SIM_OPS];
	size_t n_order = 0, step = 0;
	unsigned seed = 12345;

	for (int i = 0; i < SIM_OPS; i++) {
		struct vclock *c = i % 3 == 2 ? x : w;

		origin[i] = i % 3 == 2 ? "x" : "w";
		/* x learns w's state every fourth op. */
		if (c == x && i % 4 == 0)
			CU_ASSERT(vclock_merge(x, w, &err) == 0);
		CU_ASSERT(vclock_increment(c, origin[i], NULL, &err) == 0);
		ops[i] = vclock_copy(c);
		applied_at[i] = -1;
		order[n_order++] = i;
		if (i % 5 == 0)
			order[n_order++] = i;	/* a duplicate */
	}
	for (size_t i = n_order - 1; i > 0; i--) {
		size_t j;
		int t;

		seed = seed * 1103515245u + 12345u;
		j = (seed >> 8) % (i + 1);
		t = order[i];
		order[i] = order[j];
		order[j] = t;
	}

	local = vclock_new();
	/* Arrivals one by one; after each, drain what became deliverable. */
	for (size_t a = 0; a < n_order; a++) {
		bool progress = true;

		while (progress) {
			progress = false;
			for (size_t k = 0; k <= a; k++) {
				int op = order[k];

				if (order[k] < 0)
					continue;
				if (vclock_is_duplicate(local, ops[op],
							origin[op])) {
					order[k] = -1;	/* ack and drop */
					continue;
				}
				if (!vclock_deliverable(local, ops[op],
							origin[op]))
					continue;
				CU_ASSERT(applied_at[op] == -1);
				applied_at[op] = (int)step++;
				CU_ASSERT(vclock_merge(local, ops[op],
						       &err) == 0);
				order[k] = -1;
				progress = true;
			}
		}
	}
	CU_ASSERT_EQUAL(step, SIM_OPS);
	CU_ASSERT_EQUAL(vclock_compare(local, w) == VCLOCK_AFTER ||
			vclock_compare(local, w) == VCLOCK_EQUAL, true);
	for (int i = 0; i < SIM_OPS; i++) {
		CU_ASSERT(applied_at[i] >= 0);
		/* Causality: anything an op depends on came first. */
		for (int j = 0; j < SIM_OPS; j++)
			if (vclock_compare(ops[j], ops[i]) == VCLOCK_BEFORE)
				CU_ASSERT(applied_at[j] < applied_at[i]);
	}
	for (int i = 0; i < SIM_OPS; i++)
		vclock_free(&ops[i]);
	vclock_free(&local);
	vclock_free(&w);
	vclock_free(&x);
}

static void test_encode(void)
{
	static const unsigned char want[] = {
		0x00, 0x02,
		0x01, 'a', 0, 0, 0, 0, 0, 0, 0, 0x01,
		0x07, 's', 't', 'o', 'r', 'a', 'g', 'e',
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	};
	struct vclock *c = vc("storage=72623859790382856,a=1"), *d;
	struct buf b = BUF_INIT;

	CU_ASSERT_EQUAL(vclock_encode(c, &b), 0);
	CU_ASSERT_EQUAL_FATAL(b.len, sizeof(want));
	CU_ASSERT(memcmp(b.data, want, sizeof(want)) == 0);
	CU_ASSERT_EQUAL(vclock_decode(b.data, b.len, &d, &err), 0);
	CU_ASSERT_EQUAL(vclock_compare(c, d), VCLOCK_EQUAL);
	vclock_free(&d);

	/* Every proper prefix is truncated; nothing crashes. */
	for (size_t n = 0; n < b.len; n++) {
		d = NULL;
		CU_ASSERT_EQUAL(vclock_decode(b.data, n, &d, &err), -1);
		CU_ASSERT_PTR_NULL(d);
	}
	/* Trailing bytes. */
	CU_ASSERT_EQUAL(buf_put_u8(&b, 0), 0);
	CU_ASSERT_EQUAL(vclock_decode(b.data, b.len, &d, &err), -1);
	CU_ASSERT_STRING_EQUAL(err, "trailing bytes after vector clock");

	/* The empty clock is two zero bytes. */
	vclock_free(&c);
	c = vclock_new();
	buf_reset(&b);
	CU_ASSERT_EQUAL(vclock_encode(c, &b), 0);
	CU_ASSERT_EQUAL(b.len, 2);
	CU_ASSERT_EQUAL(vclock_decode(b.data, b.len, &d, &err), 0);
	CU_ASSERT_EQUAL(vclock_count(d), 0);
	vclock_free(&d);
	vclock_free(&c);
	buf_free(&b);
}

static void test_encode_full(void)
{
	struct vclock *c = vclock_new(), *d;
	struct buf b = BUF_INIT, b2 = BUF_INIT;
	char name[VCLOCK_NAME_MAX + 1];

	for (unsigned i = 0; i < VCLOCK_ENTRIES_MAX; i++) {
		/* Longest names, so this is the largest encoding. */
		snprintf(name, sizeof(name), "%03u", i);
		memset(name + 3, 'x', VCLOCK_NAME_MAX - 3);
		name[VCLOCK_NAME_MAX] = '\0';
		CU_ASSERT_FATAL(vclock_set(c, name, (uint64_t)i << 40 | (i + 1),
					   &err) == 0);
	}
	CU_ASSERT_EQUAL(vclock_encode(c, &b), 0);
	CU_ASSERT_EQUAL(b.len, 2 + VCLOCK_ENTRIES_MAX * (1 + 63 + 8));
	CU_ASSERT_EQUAL(vclock_decode(b.data, b.len, &d, &err), 0);
	CU_ASSERT_EQUAL(vclock_compare(c, d), VCLOCK_EQUAL);
	CU_ASSERT_EQUAL(vclock_encode(d, &b2), 0);
	CU_ASSERT_EQUAL(b.len, b2.len);
	CU_ASSERT(memcmp(b.data, b2.data, b.len) == 0);
	vclock_free(&d);
	vclock_free(&c);
	buf_free(&b);
	buf_free(&b2);
}

static void test_decode_rejects(void)
{
	static const struct {
		const char *what;
		unsigned char data[32];
		size_t len;
		const char *error;
	} cases[] = {
		{ "no count", { 0 }, 1, "truncated vector clock" },
		{ "count over limit", { 0x01, 0x01 }, 2,
		  "too many nodes in vector clock" },
		{ "count over bytes", { 0x00, 0x02, 1, 'a', 0, 0, 0, 0, 0, 0,
					0, 1 }, 12, "truncated vector clock" },
		{ "empty name", { 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0 },
		  12, "invalid node name in vector clock" },
		{ "name with space", { 0x00, 0x01, 2, 'a', ' ', 0, 0, 0, 0, 0,
				       0, 0, 1 }, 13,
		  "invalid node name in vector clock" },
		{ "name with NUL", { 0x00, 0x01, 2, 'a', 0, 0, 0, 0, 0, 0,
				     0, 0, 1 }, 13,
		  "invalid node name in vector clock" },
		{ "zero value", { 0x00, 0x01, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0 },
		  12, "zero counter in vector clock" },
		{ "unsorted", { 0x00, 0x02, 1, 'b', 0, 0, 0, 0, 0, 0, 0, 1,
				1, 'a', 0, 0, 0, 0, 0, 0, 0, 1 }, 22,
		  "vector clock names not sorted and unique" },
		{ "repeated", { 0x00, 0x02, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 1,
				1, 'a', 0, 0, 0, 0, 0, 0, 0, 2 }, 22,
		  "vector clock names not sorted and unique" },
		{ "name length past end", { 0x00, 0x01, 0xff, 'a', 0, 0, 0, 0,
					    0, 0, 0, 1 }, 12,
		  "truncated vector clock" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vclock *d = NULL;

		err = NULL;
		CU_ASSERT_EQUAL(vclock_decode(cases[i].data, cases[i].len, &d,
					      &err), -1);
		CU_ASSERT_PTR_NULL(d);
		CU_ASSERT_PTR_NOT_NULL_FATAL(err);
		if (strcmp(err, cases[i].error) != 0)
			fprintf(stderr, "%s: got \"%s\"\n", cases[i].what, err);
		CU_ASSERT_STRING_EQUAL(err, cases[i].error);
	}

	/* A 64-byte name (one over the limit), well-formed otherwise. */
	{
		unsigned char data[2 + 1 + 64 + 8];
		struct vclock *d = NULL;

		memset(data, 'n', sizeof(data));
		data[0] = 0;
		data[1] = 1;
		data[2] = 64;
		memset(data + 67, 0, 8);
		data[74] = 1;
		CU_ASSERT_EQUAL(vclock_decode(data, sizeof(data), &d, &err),
				-1);
		CU_ASSERT_STRING_EQUAL(err,
				       "invalid node name in vector clock");
		/* With 63 it is fine. */
		data[2] = 63;
		CU_ASSERT_EQUAL(vclock_decode(data, sizeof(data) - 1, &d,
					      &err), 0);
		CU_ASSERT_EQUAL(vclock_count(d), 1);
		vclock_free(&d);
	}
}

static CU_TestInfo tests[] = {
	{ "node names", test_names },
	{ "set, get, increment, copy", test_set_get },
	{ "entry limit", test_entry_limit },
	{ "compare and merge table", test_compare_merge },
	{ "delivery and duplicate table", test_delivery_table },
	{ "scrambled arrival delivers causally", test_delivery_simulation },
	{ "encoding bytes and truncation", test_encode },
	{ "full clock round trip", test_encode_full },
	{ "decoder rejects", test_decode_rejects },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("vclock", tests);
}
