/*
 * orset.c - the operation-based OR-Set behind every replicated collection.
 *
 * Three chained hash tables make every operation O(1) expected: values to
 * their element (which holds an array of its live tags), live tags to the
 * element they belong to (so a remove finds a tag, and an add detects a
 * duplicate, without scanning), and removed tags (tombstones).  A live tag
 * also remembers its index in its element's array, so dropping it is a swap
 * with the last entry rather than a search.
 *
 * Hashing is seeded per set so that the bucket of a client-chosen string is
 * not predictable across processes.  Canonical serialisation sorts, which is
 * O(n log n), but it only runs for snapshots.
 */
#include "autoconfig.h"

#include "orset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A hash node sits first in each entry. */
struct hnode {
	struct hnode *next;
	uint64_t hash;
};

struct htab {
	struct hnode **buckets;
	size_t nbuckets;	/* 0 or a power of two */
	size_t count;
};

struct elem {
	struct hnode node;
	char **tags;		/* point into struct tagent.tag */
	size_t ntags, cap;
	size_t len;
	unsigned char value[];
};

struct tagent {
	struct hnode node;
	struct elem *elem;
	size_t idx;		/* position in elem->tags */
	char tag[];
};

struct tomb {
	struct hnode node;
	char tag[];
};

struct orset {
	struct htab elems, tags, tombs;
	uint64_t seed;
};

static const char hexdigits[] = "0123456789abcdef";

bool orset_tag_valid(const char *tag, size_t len)
{
	if (tag == NULL || len == 0 || len > ORSET_TAG_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = tag[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return true;
}

void orset_tag_from_random(char tag_r[ORSET_TAG_BUFSIZE],
			   const unsigned char random[16])
{
	for (size_t i = 0; i < 16; i++) {
		tag_r[2 * i] = hexdigits[random[i] >> 4];
		tag_r[2 * i + 1] = hexdigits[random[i] & 0xf];
	}
	tag_r[ORSET_TAG_MINT_LEN] = '\0';
}

int orset_tag_mint(char tag_r[ORSET_TAG_BUFSIZE], const char **error_r)
{
	unsigned char rnd[16];

	/* Uniqueness across replicas rests on these 128 bits alone, so a
	 * weaker fallback (time, pid) would be worse than failing. */
	if (getentropy(rnd, sizeof(rnd)) < 0) {
		*error_r = "no system randomness for a tag";
		return -1;
	}
	orset_tag_from_random(tag_r, rnd);
	return 0;
}

/* FNV-1a over the seed and the bytes, then a final avalanche so that the
 * low bits used for the bucket depend on every input bit. */
static uint64_t hash_bytes(uint64_t seed, const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ULL ^ seed;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* Makes room for extra more entries at load factor 1.  Growing is best
 * effort once there are buckets (chains just get longer); -1 only when the
 * table has none at all. */
static int htab_reserve(struct htab *t, size_t extra)
{
	size_t want = t->nbuckets == 0 ? 16 : t->nbuckets;
	struct hnode **nb;

	if (extra > SIZE_MAX - t->count)
		return t->nbuckets == 0 ? -1 : 0;
	while (want < t->count + extra && want <= SIZE_MAX / 2 /
	       sizeof(*nb))
		want *= 2;
	if (want == t->nbuckets)
		return 0;
	nb = calloc(want, sizeof(*nb));
	if (nb == NULL)
		return t->nbuckets == 0 ? -1 : 0;
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct hnode *n = t->buckets[i], *next;

		for (; n != NULL; n = next) {
			size_t b = (size_t)n->hash & (want - 1);

			next = n->next;
			n->next = nb[b];
			nb[b] = n;
		}
	}
	free(t->buckets);
	t->buckets = nb;
	t->nbuckets = want;
	return 0;
}

/* The table must have buckets (htab_reserve succeeded). */
static void htab_insert(struct htab *t, struct hnode *n)
{
	size_t b = (size_t)n->hash & (t->nbuckets - 1);

	n->next = t->buckets[b];
	t->buckets[b] = n;
	t->count++;
}

static void htab_unlink(struct htab *t, struct hnode *n)
{
	struct hnode **pp = &t->buckets[(size_t)n->hash & (t->nbuckets - 1)];

	while (*pp != n)
		pp = &(*pp)->next;
	*pp = n->next;
	t->count--;
}

static struct hnode *htab_first(const struct htab *t, uint64_t hash)
{
	if (t->nbuckets == 0)
		return NULL;
	return t->buckets[(size_t)hash & (t->nbuckets - 1)];
}

static void htab_free(struct htab *t)
{
	for (size_t i = 0; i < t->nbuckets; i++) {
		struct hnode *n = t->buckets[i], *next;

		for (; n != NULL; n = next) {
			next = n->next;
			free(n);
		}
	}
	free(t->buckets);
	t->buckets = NULL;
	t->nbuckets = 0;
	t->count = 0;
}

static struct elem *elem_find(const struct orset *set, const void *value,
			      size_t len, uint64_t hash)
{
	struct hnode *n;

	for (n = htab_first(&set->elems, hash); n != NULL; n = n->next) {
		struct elem *e = (struct elem *)n;

		if (n->hash == hash && e->len == len &&
		    (len == 0 || memcmp(e->value, value, len) == 0))
			return e;
	}
	return NULL;
}

static struct hnode *tag_find(const struct htab *t, const char *tag,
			      size_t taglen, uint64_t hash, size_t off)
{
	struct hnode *n;

	for (n = htab_first(t, hash); n != NULL; n = n->next) {
		const char *s = (const char *)n + off;

		if (n->hash == hash && strncmp(s, tag, taglen) == 0 &&
		    s[taglen] == '\0')
			return n;
	}
	return NULL;
}

static struct tagent *tagent_find(const struct orset *set, const char *tag,
				  size_t taglen, uint64_t hash)
{
	return (struct tagent *)tag_find(&set->tags, tag, taglen, hash,
					 offsetof(struct tagent, tag));
}

static struct tomb *tomb_find(const struct orset *set, const char *tag,
			      size_t taglen, uint64_t hash)
{
	return (struct tomb *)tag_find(&set->tombs, tag, taglen, hash,
				       offsetof(struct tomb, tag));
}

struct orset *orset_new(void)
{
	struct orset *set = calloc(1, sizeof(*set));
	uint64_t seed;

	if (set == NULL)
		return NULL;
	/* The seed only spreads buckets; any value is correct. */
	if (getentropy(&seed, sizeof(seed)) < 0)
		seed = (uint64_t)(uintptr_t)set ^ (uint64_t)time(NULL);
	set->seed = seed;
	return set;
}

void orset_free(struct orset **setp)
{
	struct orset *set = *setp;

	if (set == NULL)
		return;
	for (size_t i = 0; i < set->elems.nbuckets; i++) {
		struct hnode *n = set->elems.buckets[i];

		for (; n != NULL; n = n->next)
			free(((struct elem *)n)->tags);
	}
	htab_free(&set->elems);
	htab_free(&set->tags);
	htab_free(&set->tombs);
	free(set);
	*setp = NULL;
}

bool orset_lookup(const struct orset *set, const void *value, size_t len)
{
	return elem_find(set, value, len,
			 hash_bytes(set->seed, value, len)) != NULL;
}

const char *const *orset_tags(const struct orset *set, const void *value,
			      size_t len, size_t *count_r)
{
	struct elem *e = elem_find(set, value, len,
				   hash_bytes(set->seed, value, len));

	if (e == NULL) {
		*count_r = 0;
		return NULL;
	}
	*count_r = e->ntags;
	return (const char *const *)e->tags;
}

size_t orset_count(const struct orset *set)
{
	return set->elems.count;
}

size_t orset_tombstone_count(const struct orset *set)
{
	return set->tombs.count;
}

bool orset_tag_removed(const struct orset *set, const char *tag)
{
	size_t len = strlen(tag);

	return tomb_find(set, tag, len, hash_bytes(set->seed, tag, len)) !=
	       NULL;
}

bool orset_iter_next(const struct orset *set, struct orset_iter *iter,
		     const void **value_r, size_t *len_r)
{
	const struct hnode *n = iter->node;

	if (n != NULL)
		n = n->next;
	while (n == NULL && iter->bucket < set->elems.nbuckets)
		n = set->elems.buckets[iter->bucket++];
	iter->node = n;
	if (n == NULL)
		return false;
	*value_r = ((const struct elem *)n)->value;
	*len_r = ((const struct elem *)n)->len;
	return true;
}

int orset_apply_add(struct orset *set, const void *value, size_t len,
		    const char *tag, const char **error_r)
{
	size_t taglen = tag == NULL ? 0 : strlen(tag);
	uint64_t vh, th;
	struct elem *e, *new_elem = NULL;
	struct tagent *te;

	if (len > ORSET_VALUE_MAX || (value == NULL && len > 0)) {
		*error_r = "OR-Set value too long";
		return -1;
	}
	if (!orset_tag_valid(tag, taglen)) {
		*error_r = "invalid OR-Set tag";
		return -1;
	}
	th = hash_bytes(set->seed, tag, taglen);
	te = tagent_find(set, tag, taglen, th);
	vh = hash_bytes(set->seed, value, len);
	if (te != NULL) {
		if (te->elem->len != len ||
		    (len > 0 && memcmp(te->elem->value, value, len) != 0)) {
			*error_r = "OR-Set tag reused for another value";
			return -1;
		}
		return 0;
	}
	if (tomb_find(set, tag, taglen, th) != NULL)
		return 0;

	/* Allocate everything first so that failure leaves no trace. */
	te = malloc(sizeof(*te) + taglen + 1);
	if (te == NULL)
		goto nomem;
	memcpy(te->tag, tag, taglen + 1);
	te->node.hash = th;
	e = elem_find(set, value, len, vh);
	if (e == NULL) {
		new_elem = calloc(1, sizeof(*new_elem) + len);
		if (new_elem == NULL)
			goto nomem;
		if (len > 0)
			memcpy(new_elem->value, value, len);
		new_elem->len = len;
		new_elem->node.hash = vh;
		e = new_elem;
	}
	if (e->ntags == e->cap) {
		size_t cap = e->cap == 0 ? 1 : e->cap * 2;
		char **tags;

		if (cap > SIZE_MAX / sizeof(*tags))
			goto nomem;
		tags = realloc(e->tags, cap * sizeof(*tags));
		if (tags == NULL)
			goto nomem;
		e->tags = tags;
		e->cap = cap;
	}
	if (htab_reserve(&set->tags, 1) < 0 ||
	    (new_elem != NULL && htab_reserve(&set->elems, 1) < 0))
		goto nomem;

	te->elem = e;
	te->idx = e->ntags;
	e->tags[e->ntags++] = te->tag;
	htab_insert(&set->tags, &te->node);
	if (new_elem != NULL)
		htab_insert(&set->elems, &new_elem->node);
	return 1;
nomem:
	if (new_elem != NULL)
		free(new_elem->tags);
	free(new_elem);
	free(te);
	*error_r = "out of memory";
	return -1;
}

/* Drops a live tag from its element, and the element when it was the
 * last; the caller has already looked it up. */
static void tagent_drop(struct orset *set, struct tagent *te)
{
	struct elem *e = te->elem;
	size_t last = e->ntags - 1;

	if (te->idx != last) {
		char *moved = e->tags[last];
		struct tagent *mte = (struct tagent *)(void *)(moved -
				offsetof(struct tagent, tag));

		e->tags[te->idx] = moved;
		mte->idx = te->idx;
	}
	e->ntags--;
	htab_unlink(&set->tags, &te->node);
	free(te);
	if (e->ntags == 0) {
		htab_unlink(&set->elems, &e->node);
		free(e->tags);
		free(e);
	}
}

int orset_apply_remove(struct orset *set, const void *value, size_t len,
		       const char *const *tags, size_t count,
		       const char **error_r)
{
	struct tomb **tombs;
	size_t ntombs = 0;
	int changed = 0;

	if (len > ORSET_VALUE_MAX || (value == NULL && len > 0)) {
		*error_r = "OR-Set value too long";
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		if (!orset_tag_valid(tags[i], strlen(tags[i]))) {
			*error_r = "invalid OR-Set tag";
			return -1;
		}
	}
	if (count == 0)
		return 0;
	/* Phase one allocates and files every new tombstone (undoing them all
	 * if memory runs out), so that phase two cannot fail half way.  Filing
	 * them at once also makes a tag named twice in one remove a no-op. */
	if (count > SIZE_MAX / sizeof(*tombs)) {
		*error_r = "out of memory";
		return -1;
	}
	tombs = calloc(count, sizeof(*tombs));
	if (tombs == NULL || htab_reserve(&set->tombs, count) < 0)
		goto nomem;
	for (size_t i = 0; i < count; i++) {
		size_t taglen = strlen(tags[i]);
		uint64_t th = hash_bytes(set->seed, tags[i], taglen);
		struct tagent *te = tagent_find(set, tags[i], taglen, th);

		if (te != NULL && (te->elem->len != len ||
		    (len > 0 && memcmp(te->elem->value, value, len) != 0)))
			continue;
		if (tomb_find(set, tags[i], taglen, th) != NULL)
			continue;
		tombs[ntombs] = malloc(sizeof(**tombs) + taglen + 1);
		if (tombs[ntombs] == NULL)
			goto nomem;
		memcpy(tombs[ntombs]->tag, tags[i], taglen + 1);
		tombs[ntombs]->node.hash = th;
		htab_insert(&set->tombs, &tombs[ntombs]->node);
		ntombs++;
	}
	for (size_t i = 0; i < ntombs; i++) {
		size_t taglen = strlen(tombs[i]->tag);
		struct tagent *te = tagent_find(set, tombs[i]->tag, taglen,
						tombs[i]->node.hash);

		if (te != NULL)
			tagent_drop(set, te);
		changed = 1;
	}
	free(tombs);
	return changed;
nomem:
	for (size_t i = 0; i < ntombs; i++) {
		htab_unlink(&set->tombs, &tombs[i]->node);
		free(tombs[i]);
	}
	free(tombs);
	*error_r = "out of memory";
	return -1;
}

int orset_add(struct orset *set, const void *value, size_t len,
	      char tag_r[ORSET_TAG_BUFSIZE], const char **error_r)
{
	if (orset_tag_mint(tag_r, error_r) < 0)
		return -1;
	return orset_apply_add(set, value, len, tag_r, error_r) < 0 ? -1 : 0;
}

void orset_tag_list_free(char ***tagsp, size_t count)
{
	char **tags = *tagsp;

	if (tags == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		free(tags[i]);
	free(tags);
	*tagsp = NULL;
}

int orset_remove(struct orset *set, const void *value, size_t len,
		 char ***tags_r, size_t *count_r, const char **error_r)
{
	size_t count;
	const char *const *live = orset_tags(set, value, len, &count);
	char **copy;

	*tags_r = NULL;
	*count_r = 0;
	if (count == 0)
		return 0;
	copy = calloc(count, sizeof(*copy));
	if (copy == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		copy[i] = strdup(live[i]);
		if (copy[i] == NULL) {
			orset_tag_list_free(&copy, count);
			*error_r = "out of memory";
			return -1;
		}
	}
	if (orset_apply_remove(set, value, len, (const char *const *)copy,
			       count, error_r) < 0) {
		orset_tag_list_free(&copy, count);
		return -1;
	}
	*tags_r = copy;
	*count_r = count;
	return 0;
}

void orset_tombstones_purge(struct orset *set)
{
	htab_free(&set->tombs);
}

/*
 * Serialisation: u8 version, u32 number of values, then per value a blob
 * and a u32 count of tags each as a u8-length string, then u32 number of
 * tombstones each as a u8-length string.  Values sort by bytes (shorter
 * first on a common prefix), tags by strcmp.
 */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_elem(const void *a, const void *b)
{
	const struct elem *x = *(const struct elem *const *)a;
	const struct elem *y = *(const struct elem *const *)b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = n == 0 ? 0 : memcmp(x->value, y->value, n);

	if (c != 0)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

static int put_tag(struct buf *out, const char *tag)
{
	size_t len = strlen(tag);

	if (buf_put_u8(out, (uint8_t)len) < 0)
		return -1;
	return buf_append(out, tag, len);
}

static int put_sorted_tags(struct buf *out, char **tags, size_t count)
{
	char **sorted;
	int ret = 0;

	if (buf_put_u32(out, (uint32_t)count) < 0)
		return -1;
	if (count == 0)
		return 0;
	sorted = malloc(count * sizeof(*sorted));
	if (sorted == NULL)
		return -1;
	memcpy(sorted, tags, count * sizeof(*sorted));
	qsort(sorted, count, sizeof(*sorted), cmp_str);
	for (size_t i = 0; i < count && ret == 0; i++)
		ret = put_tag(out, sorted[i]);
	free(sorted);
	return ret;
}

int orset_serialize(const struct orset *set, struct buf *out)
{
	struct elem **elems = NULL;
	char **tombs = NULL;
	size_t n = 0;
	int ret = -1;

	/* Counts are bounded by memory; u32 is plenty but check anyway. */
	if (set->elems.count > UINT32_MAX || set->tombs.count > UINT32_MAX)
		return -1;
	if (set->elems.count > 0) {
		elems = malloc(set->elems.count * sizeof(*elems));
		if (elems == NULL)
			return -1;
	}
	for (size_t i = 0; i < set->elems.nbuckets; i++) {
		struct hnode *h = set->elems.buckets[i];

		for (; h != NULL; h = h->next)
			elems[n++] = (struct elem *)h;
	}
	if (n > 0)
		qsort(elems, n, sizeof(*elems), cmp_elem);
	if (buf_put_u8(out, ORSET_SERIAL_VERSION) < 0 ||
	    buf_put_u32(out, (uint32_t)n) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (buf_put_blob(out, elems[i]->value, elems[i]->len) < 0 ||
		    put_sorted_tags(out, elems[i]->tags, elems[i]->ntags) < 0)
			goto out;
	}
	n = 0;
	if (set->tombs.count > 0) {
		tombs = malloc(set->tombs.count * sizeof(*tombs));
		if (tombs == NULL)
			goto out;
	}
	for (size_t i = 0; i < set->tombs.nbuckets; i++) {
		struct hnode *h = set->tombs.buckets[i];

		for (; h != NULL; h = h->next)
			tombs[n++] = ((struct tomb *)h)->tag;
	}
	ret = put_sorted_tags(out, tombs, n);
out:
	free(elems);
	free(tombs);
	return ret;
}

static bool get_tag(struct buf_reader *r, char tag_r[ORSET_TAG_BUFSIZE])
{
	uint8_t len;
	const unsigned char *p;

	if (!buf_get_u8(r, &len) || len == 0 || len > ORSET_TAG_MAX ||
	    !buf_get_bytes(r, len, &p))
		return false;
	memcpy(tag_r, p, len);
	tag_r[len] = '\0';
	return orset_tag_valid(tag_r, len);
}

struct orset *orset_deserialize(struct buf_reader *r, const char **error_r)
{
	struct orset *set = orset_new();
	char tag[ORSET_TAG_BUFSIZE];
	uint8_t version;
	uint32_t nvalues, ntags, ntombs;

	if (set == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	if (!buf_get_u8(r, &version) || version != ORSET_SERIAL_VERSION) {
		*error_r = "unknown OR-Set encoding version";
		goto fail;
	}
	/* Each value takes at least 8 bytes, each tag at least 2. */
	if (!buf_get_u32(r, &nvalues) || nvalues > r->left / 8) {
		*error_r = "bad OR-Set value count";
		goto fail;
	}
	for (uint32_t i = 0; i < nvalues; i++) {
		const unsigned char *value;
		size_t len;

		if (!buf_get_blob(r, ORSET_VALUE_MAX, &value, &len) ||
		    !buf_get_u32(r, &ntags) || ntags == 0 ||
		    ntags > r->left / 2) {
			*error_r = "bad OR-Set value";
			goto fail;
		}
		if (orset_lookup(set, value, len)) {
			*error_r = "duplicate OR-Set value";
			goto fail;
		}
		for (uint32_t j = 0; j < ntags; j++) {
			if (!get_tag(r, tag)) {
				*error_r = "bad OR-Set tag";
				goto fail;
			}
			int ret = orset_apply_add(set, value, len, tag,
						  error_r);

			if (ret == 0)
				*error_r = "duplicate OR-Set tag";
			if (ret != 1)
				goto fail;
		}
	}
	if (!buf_get_u32(r, &ntombs) || ntombs > r->left / 2) {
		*error_r = "bad OR-Set tombstone count";
		goto fail;
	}
	for (uint32_t i = 0; i < ntombs; i++) {
		const char *one = tag;
		size_t taglen;

		if (!get_tag(r, tag)) {
			*error_r = "bad OR-Set tombstone";
			goto fail;
		}
		taglen = strlen(tag);
		if (tagent_find(set, tag, taglen,
				hash_bytes(set->seed, tag, taglen)) != NULL ||
		    tomb_find(set, tag, taglen,
			      hash_bytes(set->seed, tag, taglen)) != NULL) {
			*error_r = "duplicate OR-Set tombstone";
			goto fail;
		}
		if (orset_apply_remove(set, NULL, 0, &one, 1, error_r) < 0)
			goto fail;
	}
	return set;
fail:
	orset_free(&set);
	return NULL;
}
