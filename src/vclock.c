/*
 * vclock.c - vector clocks as sorted arrays of (name, counter).
 *
 * A node replicates with one or two peers, so a clock has a handful of
 * entries: a sorted array with names stored inline (no allocation per
 * entry) beats any map, and lets compare, merge and the delivery test walk
 * two clocks side by side in one pass.  Every modifying function either
 * succeeds or leaves the clock untouched, so a caller that fails half-way
 * through applying an operation never has to repair its clock.  Clocks
 * arrive from peers inside frames and are decoded here with every count
 * checked against the bytes that could back it before anything is
 * allocated.
 */
#include "autoconfig.h"

#include "vclock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct vclock_slot {
	char name[VCLOCK_NAME_MAX + 1];
	uint64_t value;
};

struct vclock {
	struct vclock_slot *slots;	/* sorted by name, values >= 1 */
	size_t count;
	size_t cap;
};

static bool name_char_valid(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static bool name_valid_len(const char *name, size_t len)
{
	if (len == 0 || len > VCLOCK_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!name_char_valid((unsigned char)name[i]))
			return false;
	return true;
}

bool vclock_name_valid(const char *name)
{
	/* strnlen: do not walk a long string past what could be valid. */
	size_t len = strnlen(name, VCLOCK_NAME_MAX + 1);

	return name_valid_len(name, len);
}

struct vclock *vclock_new(void)
{
	return calloc(1, sizeof(struct vclock));
}

static int reserve(struct vclock *vc, size_t want)
{
	struct vclock_slot *slots;
	size_t cap;

	if (want <= vc->cap)
		return 0;
	if (want > VCLOCK_ENTRIES_MAX) {
		errno = EOVERFLOW;
		return -1;
	}
	cap = vc->cap < 4 ? 4 : vc->cap;
	while (cap < want)
		cap *= 2;
	if (cap > VCLOCK_ENTRIES_MAX)
		cap = VCLOCK_ENTRIES_MAX;
	slots = realloc(vc->slots, cap * sizeof(*slots));
	if (slots == NULL)
		return -1;
	vc->slots = slots;
	vc->cap = cap;
	return 0;
}

struct vclock *vclock_copy(const struct vclock *vc)
{
	struct vclock *copy = vclock_new();

	if (copy == NULL)
		return NULL;
	if (vclock_assign(copy, vc) < 0) {
		vclock_free(&copy);
		return NULL;
	}
	return copy;
}

int vclock_assign(struct vclock *dst, const struct vclock *src)
{
	if (dst == src)
		return 0;
	if (reserve(dst, src->count) < 0)
		return -1;
	if (src->count > 0)
		memcpy(dst->slots, src->slots,
		       src->count * sizeof(*src->slots));
	dst->count = src->count;
	return 0;
}

void vclock_free(struct vclock **vc)
{
	if (vc == NULL || *vc == NULL)
		return;
	free((*vc)->slots);
	free(*vc);
	*vc = NULL;
}

/* Binary search: returns true and the index of name, or false and the
 * index where it would be inserted. */
static bool find(const struct vclock *vc, const char *name, size_t *idx_r)
{
	size_t lo = 0, hi = vc->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(vc->slots[mid].name, name);

		if (cmp == 0) {
			*idx_r = mid;
			return true;
		}
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*idx_r = lo;
	return false;
}

uint64_t vclock_get(const struct vclock *vc, const char *name)
{
	size_t i;

	if (!vclock_name_valid(name) || !find(vc, name, &i))
		return 0;
	return vc->slots[i].value;
}

int vclock_set(struct vclock *vc, const char *name, uint64_t value,
	       const char **error_r)
{
	size_t i;

	if (!vclock_name_valid(name)) {
		*error_r = "invalid node name";
		return -1;
	}
	if (find(vc, name, &i)) {
		if (value != 0) {
			vc->slots[i].value = value;
		} else {
			memmove(&vc->slots[i], &vc->slots[i + 1],
				(vc->count - i - 1) * sizeof(*vc->slots));
			vc->count--;
		}
		return 0;
	}
	if (value == 0)
		return 0;
	if (vc->count >= VCLOCK_ENTRIES_MAX) {
		*error_r = "too many nodes in vector clock";
		return -1;
	}
	if (reserve(vc, vc->count + 1) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	memmove(&vc->slots[i + 1], &vc->slots[i],
		(vc->count - i) * sizeof(*vc->slots));
	memset(vc->slots[i].name, 0, sizeof(vc->slots[i].name));
	memcpy(vc->slots[i].name, name, strlen(name));
	vc->slots[i].value = value;
	vc->count++;
	return 0;
}

int vclock_increment(struct vclock *vc, const char *name, uint64_t *value_r,
		     const char **error_r)
{
	uint64_t v = vclock_get(vc, name);

	if (v == UINT64_MAX) {
		*error_r = "vector clock counter overflow";
		return -1;
	}
	if (vclock_set(vc, name, v + 1, error_r) < 0)
		return -1;
	if (value_r != NULL)
		*value_r = v + 1;
	return 0;
}

size_t vclock_count(const struct vclock *vc)
{
	return vc->count;
}

void vclock_entry(const struct vclock *vc, size_t i, const char **name_r,
		  uint64_t *value_r)
{
	*name_r = vc->slots[i].name;
	*value_r = vc->slots[i].value;
}

enum vclock_order vclock_compare(const struct vclock *a,
				 const struct vclock *b)
{
	bool a_ahead = false, b_ahead = false;
	size_t i = 0, j = 0;

	/* A name missing on one side counts as 0 there, and every stored
	 * value is at least 1, so an unmatched entry puts its side ahead. */
	while (i < a->count || j < b->count) {
		int cmp;

		if (i == a->count)
			cmp = 1;
		else if (j == b->count)
			cmp = -1;
		else
			cmp = strcmp(a->slots[i].name, b->slots[j].name);
		if (cmp < 0) {
			a_ahead = true;
			i++;
		} else if (cmp > 0) {
			b_ahead = true;
			j++;
		} else {
			if (a->slots[i].value > b->slots[j].value)
				a_ahead = true;
			else if (a->slots[i].value < b->slots[j].value)
				b_ahead = true;
			i++;
			j++;
		}
	}
	if (a_ahead && b_ahead)
		return VCLOCK_CONCURRENT;
	if (a_ahead)
		return VCLOCK_AFTER;
	if (b_ahead)
		return VCLOCK_BEFORE;
	return VCLOCK_EQUAL;
}

int vclock_merge(struct vclock *dst, const struct vclock *src,
		 const char **error_r)
{
	struct vclock_slot *out;
	size_t i = 0, j = 0, n = 0, total;

	if (dst == src)
		return 0;
	/* Count the union first so that the bound is checked before any
	 * change is made. */
	total = dst->count;
	while (j < src->count) {
		int cmp = i < dst->count ?
			strcmp(dst->slots[i].name, src->slots[j].name) : 1;

		if (cmp < 0) {
			i++;
		} else if (cmp > 0) {
			total++;
			j++;
		} else {
			i++;
			j++;
		}
	}
	if (total > VCLOCK_ENTRIES_MAX) {
		*error_r = "too many nodes in vector clock";
		return -1;
	}
	if (total == 0)
		return 0;
	out = malloc(total * sizeof(*out));
	if (out == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	i = j = 0;
	while (i < dst->count || j < src->count) {
		int cmp;

		if (i == dst->count)
			cmp = 1;
		else if (j == src->count)
			cmp = -1;
		else
			cmp = strcmp(dst->slots[i].name, src->slots[j].name);
		if (cmp < 0) {
			out[n++] = dst->slots[i++];
		} else if (cmp > 0) {
			out[n++] = src->slots[j++];
		} else {
			out[n] = dst->slots[i];
			if (src->slots[j].value > out[n].value)
				out[n].value = src->slots[j].value;
			n++;
			i++;
			j++;
		}
	}
	free(dst->slots);
	dst->slots = out;
	dst->count = n;
	dst->cap = total;
	return 0;
}

bool vclock_deliverable(const struct vclock *local, const struct vclock *msg,
			const char *sender)
{
	uint64_t mine;
	size_t j;

	if (!vclock_name_valid(sender))
		return false;
	mine = vclock_get(local, sender);
	if (mine == UINT64_MAX || vclock_get(msg, sender) != mine + 1)
		return false;
	/* Entries of local that msg lacks are 0 in msg and cannot be ahead,
	 * so only msg's entries need checking. */
	for (j = 0; j < msg->count; j++) {
		const struct vclock_slot *s = &msg->slots[j];

		if (strcmp(s->name, sender) == 0)
			continue;
		if (s->value > vclock_get(local, s->name))
			return false;
	}
	return true;
}

bool vclock_is_duplicate(const struct vclock *local, const struct vclock *msg,
			 const char *sender)
{
	return vclock_get(msg, sender) <= vclock_get(local, sender);
}

int vclock_encode(const struct vclock *vc, struct buf *out)
{
	size_t start = out->len;

	if (buf_put_u16(out, (uint16_t)vc->count) < 0)
		return -1;
	for (size_t i = 0; i < vc->count; i++) {
		const struct vclock_slot *s = &vc->slots[i];
		size_t len = strlen(s->name);

		if (buf_put_u8(out, (uint8_t)len) < 0 ||
		    buf_append(out, s->name, len) < 0 ||
		    buf_put_u64(out, s->value) < 0) {
			out->len = start;
			return -1;
		}
	}
	return 0;
}

int vclock_read(struct buf_reader *r, struct vclock **vc_r,
		const char **error_r)
{
	struct vclock *vc;
	uint16_t count;

	if (!buf_get_u16(r, &count)) {
		*error_r = "truncated vector clock";
		return -1;
	}
	if (count > VCLOCK_ENTRIES_MAX) {
		*error_r = "too many nodes in vector clock";
		return -1;
	}
	if (count > r->left / VCLOCK_ENTRY_MIN_SIZE) {
		*error_r = "truncated vector clock";
		return -1;
	}
	vc = vclock_new();
	if (vc == NULL || reserve(vc, count) < 0) {
		vclock_free(&vc);
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		struct vclock_slot *s = &vc->slots[i];
		const unsigned char *name;
		uint8_t len;

		if (!buf_get_u8(r, &len) ||
		    !buf_get_bytes(r, len, &name) ||
		    !buf_get_u64(r, &s->value)) {
			*error_r = "truncated vector clock";
			goto fail;
		}
		if (!name_valid_len((const char *)name, len)) {
			*error_r = "invalid node name in vector clock";
			goto fail;
		}
		memset(s->name, 0, sizeof(s->name));
		memcpy(s->name, name, len);
		if (s->value == 0) {
			*error_r = "zero counter in vector clock";
			goto fail;
		}
		if (i > 0 && strcmp(vc->slots[i - 1].name, s->name) >= 0) {
			*error_r = "vector clock names not sorted and unique";
			goto fail;
		}
		vc->count = i + 1;
	}
	*vc_r = vc;
	return 0;
fail:
	vclock_free(&vc);
	return -1;
}

int vclock_decode(const void *data, size_t len, struct vclock **vc_r,
		  const char **error_r)
{
	struct buf_reader r;
	struct vclock *vc;

	buf_reader_init(&r, data, len);
	if (vclock_read(&r, &vc, error_r) < 0)
		return -1;
	if (r.left != 0) {
		vclock_free(&vc);
		*error_r = "trailing bytes after vector clock";
		return -1;
	}
	*vc_r = vc;
	return 0;
}

int vclock_format(const struct vclock *vc, struct buf *out)
{
	size_t start = out->len;

	if (buf_append_str(out, "{") < 0)
		return -1;
	for (size_t i = 0; i < vc->count; i++) {
		if (buf_printf(out, "%s%s=%llu", i > 0 ? ", " : "",
			       vc->slots[i].name,
			       (unsigned long long)vc->slots[i].value) < 0) {
			out->len = start;
			return -1;
		}
	}
	if (buf_append_str(out, "}") < 0) {
		out->len = start;
		return -1;
	}
	return 0;
}
