/*
 * mailstate.c - a user's mailboxes, messages and flags as op-based CRDTs.
 *
 * Layout: the structure OR-Set (orset.c) says which names are live; one
 * record per name ever seen, in an array sorted by name, carries the
 * UIDVALIDITY/UIDNEXT registers and the messages whose current placement
 * is that name, in an array sorted by (UID, tag) so that sequence numbers
 * are indexes and UID lookups are binary searches.  An open-addressing hash
 * maps every message tag to its message (ops name messages by tag), and a
 * second one holds tombstones.
 *
 * Local changes go through the same apply functions as remote ones: the
 * source step only decides what the op says.  Everything that decides a
 * value (which placement wins, UIDNEXT, UIDVALIDITY) is a function of the
 * set of ops applied, never of their order, and the canonical
 * serialisation is what the tests compare between replicas.
 *
 * Costs: append O(log n) plus a memmove when a UID arrives out of order;
 * expunge and renumber O(log n) search plus memmove per message; store
 * O(flags) per message; create/delete/rename O(mailboxes + messages
 * concerned).  No lock here: the caller holds the per-user mutex.
 */
#include "autoconfig.h"

#include "mailstate.h"
#include "orset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Placements pile up only through concurrent renames; a bound keeps a
 * misbehaving peer from growing a message without limit. */
#define MAILSTATE_PLACES_MAX (OP_PLACEMENTS_MAX * 4)

struct mailstate_flag_tag {
	unsigned sys;		/* OP_FLAG_* bit, or 0 for a keyword */
	char *keyword;		/* keyword only */
	char *tag;
};

struct mailstate_place {
	char *tag;
	struct mailstate_mailbox *box;
};

struct mailstate_mailbox {
	char *name;
	uint32_t uidvalidity;
	uint64_t uidnext;	/* the register; see mailstate_mailbox_uidnext */
	struct mailstate_msg **msgs;
	size_t count, cap;
	bool conflict;		/* may hold two messages with one UID */
};

/* String-keyed open-addressing hash (linear probing, backward-shift
 * deletion).  Keys are borrowed from the value, or owned for tombstones. */
struct tslot {
	const char *key;
	void *value;
	uint64_t hash;
};

struct tmap {
	struct tslot *slots;
	size_t cap, count;	/* cap 0 or a power of two */
};

struct mailstate {
	char *user;
	struct orset *structure;
	struct mailstate_mailbox **boxes;	/* every record, by name */
	size_t nboxes, boxes_cap;
	struct tmap index;	/* message tag -> message */
	struct tmap tombs;	/* removed tag -> NULL, key owned */
	uint32_t max_uidvalidity;
	uint64_t seed;
};

/*
 * Hash map.
 */

static uint64_t hash_str(uint64_t seed, const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ seed;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static struct tslot *tmap_find(const struct tmap *m, uint64_t hash,
			       const char *key)
{
	if (m->cap == 0)
		return NULL;
	for (size_t i = (size_t)hash & (m->cap - 1);; i = (i + 1) &
	     (m->cap - 1)) {
		struct tslot *s = &m->slots[i];

		if (s->key == NULL)
			return NULL;
		if (s->hash == hash && strcmp(s->key, key) == 0)
			return s;
	}
}

static void tmap_place(struct tmap *m, const struct tslot *src)
{
	size_t i = (size_t)src->hash & (m->cap - 1);

	while (m->slots[i].key != NULL)
		i = (i + 1) & (m->cap - 1);
	m->slots[i] = *src;
	m->count++;
}

/* Room for one more at load <= 1/2. */
static int tmap_reserve(struct tmap *m, size_t extra)
{
	size_t want = m->cap == 0 ? 16 : m->cap;
	struct tslot *old = m->slots, *slots;
	size_t old_cap = m->cap;

	if (extra > SIZE_MAX / 4 - m->count)
		return -1;
	while (want / 2 < m->count + extra)
		want *= 2;
	if (want == m->cap)
		return 0;
	if (want > SIZE_MAX / sizeof(*slots))
		return -1;
	slots = calloc(want, sizeof(*slots));
	if (slots == NULL)
		return -1;
	m->slots = slots;
	m->cap = want;
	m->count = 0;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].key != NULL)
			tmap_place(m, &old[i]);
	free(old);
	return 0;
}

/* The key must not be present; tmap_reserve must have succeeded. */
static void tmap_insert(struct tmap *m, uint64_t hash, const char *key,
			void *value)
{
	struct tslot s = { key, value, hash };

	tmap_place(m, &s);
}

static void tmap_delete(struct tmap *m, struct tslot *s)
{
	size_t i = (size_t)(s - m->slots), j = i;

	m->slots[i].key = NULL;
	m->count--;
	/* Shift back followers whose home is at or before the hole. */
	for (;;) {
		size_t home;

		j = (j + 1) & (m->cap - 1);
		if (m->slots[j].key == NULL)
			return;
		home = (size_t)m->slots[j].hash & (m->cap - 1);
		if (((j - home) & (m->cap - 1)) >= ((j - i) & (m->cap - 1))) {
			m->slots[i] = m->slots[j];
			m->slots[j].key = NULL;
			i = j;
		}
	}
}

static void tmap_free(struct tmap *m, bool free_keys)
{
	if (free_keys)
		for (size_t i = 0; i < m->cap; i++)
			free((char *)m->slots[i].key);
	free(m->slots);
	m->slots = NULL;
	m->cap = 0;
	m->count = 0;
}

static bool tombstoned(const struct mailstate *state, const char *tag)
{
	return tmap_find(&state->tombs, hash_str(state->seed, tag), tag) !=
	       NULL;
}

static int tombstone(struct mailstate *state, const char *tag)
{
	uint64_t h = hash_str(state->seed, tag);
	char *copy;

	if (tmap_find(&state->tombs, h, tag) != NULL)
		return 0;
	copy = strdup(tag);
	if (copy == NULL || tmap_reserve(&state->tombs, 1) < 0) {
		free(copy);
		return -1;
	}
	tmap_insert(&state->tombs, h, copy, NULL);
	return 0;
}

static struct mailstate_msg *msg_lookup(const struct mailstate *state,
					const char *tag)
{
	struct tslot *s = tmap_find(&state->index,
				    hash_str(state->seed, tag), tag);

	return s == NULL ? NULL : s->value;
}

/*
 * Mailbox records.
 */

static size_t box_search(const struct mailstate *state, const char *name,
			 bool *found_r)
{
	size_t lo = 0, hi = state->nboxes;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(state->boxes[mid]->name, name);

		if (c == 0) {
			*found_r = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found_r = false;
	return lo;
}

static struct mailstate_mailbox *box_record(const struct mailstate *state,
					    const char *name)
{
	bool found;
	size_t i = box_search(state, name, &found);

	return found ? state->boxes[i] : NULL;
}

static struct mailstate_mailbox *box_get(struct mailstate *state,
					 const char *name)
{
	bool found;
	size_t i = box_search(state, name, &found);
	struct mailstate_mailbox *box;

	if (found)
		return state->boxes[i];
	if (state->nboxes == state->boxes_cap) {
		size_t cap = state->boxes_cap == 0 ? 8 :
			     state->boxes_cap * 2;
		struct mailstate_mailbox **nb;

		if (cap > SIZE_MAX / sizeof(*nb))
			return NULL;
		nb = realloc(state->boxes, cap * sizeof(*nb));
		if (nb == NULL)
			return NULL;
		state->boxes = nb;
		state->boxes_cap = cap;
	}
	box = calloc(1, sizeof(*box));
	if (box == NULL)
		return NULL;
	box->name = strdup(name);
	if (box->name == NULL) {
		free(box);
		return NULL;
	}
	box->uidnext = 1;
	memmove(&state->boxes[i + 1], &state->boxes[i],
		(state->nboxes - i) * sizeof(*state->boxes));
	state->boxes[i] = box;
	state->nboxes++;
	return box;
}

static bool box_live(const struct mailstate *state,
		     const struct mailstate_mailbox *box)
{
	return orset_lookup(state->structure, box->name, strlen(box->name));
}

static int cmp_uid_tag(uint32_t uid, const char *tag,
		       const struct mailstate_msg *m)
{
	if (uid != m->uid)
		return uid < m->uid ? -1 : 1;
	return strcmp(tag, m->tag);
}

/* Position of (uid, tag) in box: where it is, or where it would go. */
static size_t box_msg_search(const struct mailstate_mailbox *box,
			     uint32_t uid, const char *tag, bool *found_r)
{
	size_t lo = 0, hi = box->count;

	/* Appends arrive in UID order: check the end first. */
	if (box->count > 0 &&
	    cmp_uid_tag(uid, tag, box->msgs[box->count - 1]) > 0) {
		*found_r = false;
		return box->count;
	}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_uid_tag(uid, tag, box->msgs[mid]);

		if (c == 0) {
			*found_r = true;
			return mid;
		}
		if (c > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found_r = false;
	return lo;
}

static int box_reserve(struct mailstate_mailbox *box)
{
	size_t cap;
	struct mailstate_msg **nm;

	if (box->count < box->cap)
		return 0;
	cap = box->cap == 0 ? 16 : box->cap * 2;
	if (cap > SIZE_MAX / sizeof(*nm))
		return -1;
	nm = realloc(box->msgs, cap * sizeof(*nm));
	if (nm == NULL)
		return -1;
	box->msgs = nm;
	box->cap = cap;
	return 0;
}

/* box_reserve must have succeeded. */
static void box_insert(struct mailstate_mailbox *box, struct mailstate_msg *m)
{
	bool found;
	size_t i = box_msg_search(box, m->uid, m->tag, &found);

	memmove(&box->msgs[i + 1], &box->msgs[i],
		(box->count - i) * sizeof(*box->msgs));
	box->msgs[i] = m;
	box->count++;
	m->mailbox = box;
	if ((i > 0 && box->msgs[i - 1]->uid == m->uid) ||
	    (i + 1 < box->count && box->msgs[i + 1]->uid == m->uid))
		box->conflict = true;
}

static void box_unlink(struct mailstate_mailbox *box,
		       const struct mailstate_msg *m)
{
	bool found;
	size_t i = box_msg_search(box, m->uid, m->tag, &found);

	if (!found)
		return;
	memmove(&box->msgs[i], &box->msgs[i + 1],
		(box->count - i - 1) * sizeof(*box->msgs));
	box->count--;
}

static void box_free(struct mailstate_mailbox *box)
{
	free(box->name);
	free(box->msgs);
	free(box);
}

/*
 * Messages.
 */

static const char *ftag_name(const struct mailstate_flag_tag *f)
{
	return f->sys != 0 ? op_flag_name(f->sys) : f->keyword;
}

static int ftag_cmp(const char *name, const char *tag,
		    const struct mailstate_flag_tag *f)
{
	int c = strcmp(name, ftag_name(f));

	return c != 0 ? c : strcmp(tag, f->tag);
}

static void msg_free(struct mailstate_msg *m)
{
	for (size_t i = 0; i < m->ftag_count; i++) {
		free(m->ftags[i].keyword);
		free(m->ftags[i].tag);
	}
	free(m->ftags);
	for (size_t i = 0; i < m->place_count; i++)
		free(m->places[i].tag);
	free(m->places);
	free(m->tag);
	free(m);
}

static void msg_recompute_flags(struct mailstate_msg *m)
{
	m->flags = 0;
	for (size_t i = 0; i < m->ftag_count; i++)
		m->flags |= m->ftags[i].sys;
}

/* Adds the flag instance (name, tag) unless present.  name is a canonical
 * system flag name or a keyword.  Returns 0 or -1 when out of memory. */
static int msg_add_ftag(struct mailstate_msg *m, const char *name,
			const char *tag)
{
	size_t lo = 0, hi = m->ftag_count;
	struct mailstate_flag_tag f = { 0, NULL, NULL }, *nf;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = ftag_cmp(name, tag, &m->ftags[mid]);

		if (c == 0)
			return 0;
		if (c > 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (m->ftag_count >= MAILSTATE_FLAG_TAGS_MAX)
		return 0;
	f.sys = name[0] == '\\' ? op_flag_from_name(name) : 0;
	if (f.sys == 0 && (f.keyword = strdup(name)) == NULL)
		return -1;
	f.tag = strdup(tag);
	nf = realloc(m->ftags, (m->ftag_count + 1) * sizeof(*nf));
	if (f.tag == NULL || nf == NULL) {
		if (nf != NULL)
			m->ftags = nf;
		free(f.keyword);
		free(f.tag);
		return -1;
	}
	m->ftags = nf;
	memmove(&nf[lo + 1], &nf[lo], (m->ftag_count - lo) * sizeof(*nf));
	nf[lo] = f;
	m->ftag_count++;
	msg_recompute_flags(m);
	return 0;
}

static void msg_remove_ftag(struct mailstate_msg *m, const char *name,
			    const char *tag)
{
	for (size_t i = 0; i < m->ftag_count; i++) {
		if (ftag_cmp(name, tag, &m->ftags[i]) != 0)
			continue;
		free(m->ftags[i].keyword);
		free(m->ftags[i].tag);
		memmove(&m->ftags[i], &m->ftags[i + 1],
			(m->ftag_count - i - 1) * sizeof(*m->ftags));
		m->ftag_count--;
		msg_recompute_flags(m);
		return;
	}
}

static bool msg_has_flag_name(const struct mailstate_msg *m, const char *name)
{
	unsigned bit = name[0] == '\\' ? op_flag_from_name(name) : 0;

	if (bit != 0)
		return (m->flags & bit) != 0;
	for (size_t i = 0; i < m->ftag_count; i++)
		if (m->ftags[i].sys == 0 &&
		    strcasecmp(m->ftags[i].keyword, name) == 0)
			return true;
	return false;
}

/* Adds placement (tag, box), keeping places sorted by tag. */
static int msg_add_place(struct mailstate_msg *m, const char *tag,
			 struct mailstate_mailbox *box)
{
	size_t i = 0;
	struct mailstate_place *np;
	char *copy;

	while (i < m->place_count && strcmp(m->places[i].tag, tag) < 0)
		i++;
	if (i < m->place_count && strcmp(m->places[i].tag, tag) == 0)
		return 0;
	if (m->place_count >= MAILSTATE_PLACES_MAX)
		return 0;
	copy = strdup(tag);
	np = copy == NULL ? NULL :
	     realloc(m->places, (m->place_count + 1) * sizeof(*np));
	if (np == NULL) {
		free(copy);
		return -1;
	}
	m->places = np;
	memmove(&np[i + 1], &np[i], (m->place_count - i) * sizeof(*np));
	np[i].tag = copy;
	np[i].box = box;
	m->place_count++;
	return 0;
}

static void msg_remove_place(struct mailstate_msg *m, const char *tag)
{
	for (size_t i = 0; i < m->place_count; i++) {
		if (strcmp(m->places[i].tag, tag) != 0)
			continue;
		free(m->places[i].tag);
		memmove(&m->places[i], &m->places[i + 1],
			(m->place_count - i - 1) * sizeof(*m->places));
		m->place_count--;
		return;
	}
}

/* Removes a message from its mailbox and the index and frees it. */
static void msg_destroy(struct mailstate *state, struct mailstate_msg *m)
{
	struct tslot *s = tmap_find(&state->index,
				    hash_str(state->seed, m->tag), m->tag);

	box_unlink(m->mailbox, m);
	if (s != NULL)
		tmap_delete(&state->index, s);
	msg_free(m);
}

/* Puts m where its winning placement says, if that changed. */
static int msg_settle(struct mailstate_msg *m)
{
	struct mailstate_mailbox *want;

	if (m->place_count == 0)
		return 0;
	want = m->places[m->place_count - 1].box;
	if (want == m->mailbox)
		return 0;
	if (box_reserve(want) < 0)
		return -1;
	box_unlink(m->mailbox, m);
	box_insert(want, m);
	return 0;
}

/*
 * Life cycle and reading.
 */

struct mailstate *mailstate_new(const char *user)
{
	struct mailstate *state;

	if (!op_user_valid(user))
		return NULL;
	state = calloc(1, sizeof(*state));
	if (state == NULL)
		return NULL;
	state->user = strdup(user);
	state->structure = orset_new();
	if (getentropy(&state->seed, sizeof(state->seed)) < 0)
		state->seed = (uint64_t)(uintptr_t)state ^
			      (uint64_t)time(NULL);
	if (state->user == NULL || state->structure == NULL)
		mailstate_free(&state);
	return state;
}

void mailstate_free(struct mailstate **statep)
{
	struct mailstate *state = *statep;

	if (state == NULL)
		return;
	for (size_t i = 0; i < state->nboxes; i++) {
		struct mailstate_mailbox *box = state->boxes[i];

		for (size_t j = 0; j < box->count; j++)
			msg_free(box->msgs[j]);
		box_free(box);
	}
	free(state->boxes);
	tmap_free(&state->index, false);
	tmap_free(&state->tombs, true);
	orset_free(&state->structure);
	free(state->user);
	free(state);
	*statep = NULL;
}

const char *mailstate_user(const struct mailstate *state)
{
	return state->user;
}

struct mailstate_mailbox *mailstate_mailbox_find(struct mailstate *state,
						 const char *name)
{
	struct mailstate_mailbox *box = box_record(state, name);

	return box != NULL && box_live(state, box) ? box : NULL;
}

int mailstate_mailbox_list(const struct mailstate *state,
			   const char ***names_r, size_t *count_r)
{
	const char **names;
	size_t n = 0;

	*names_r = NULL;
	*count_r = 0;
	if (state->nboxes == 0)
		return 0;
	names = calloc(state->nboxes, sizeof(*names));
	if (names == NULL)
		return -1;
	for (size_t i = 0; i < state->nboxes; i++)
		if (box_live(state, state->boxes[i]))
			names[n++] = state->boxes[i]->name;
	*names_r = names;
	*count_r = n;
	return 0;
}

const char *mailstate_mailbox_name(const struct mailstate_mailbox *box)
{
	return box->name;
}

uint32_t mailstate_mailbox_uidvalidity(const struct mailstate_mailbox *box)
{
	return box->uidvalidity;
}

uint64_t mailstate_mailbox_uidnext(const struct mailstate_mailbox *box)
{
	uint64_t next = box->uidnext;

	if (box->count > 0 && box->msgs[box->count - 1]->uid >= next)
		next = (uint64_t)box->msgs[box->count - 1]->uid + 1;
	return next;
}

size_t mailstate_mailbox_count(const struct mailstate_mailbox *box)
{
	return box->count;
}

const struct mailstate_msg *
mailstate_mailbox_msg_at(const struct mailstate_mailbox *box, size_t index)
{
	return index < box->count ? box->msgs[index] : NULL;
}

size_t mailstate_mailbox_uid_lower_bound(const struct mailstate_mailbox *box,
					 uint32_t uid)
{
	size_t lo = 0, hi = box->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (box->msgs[mid]->uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool mailstate_mailbox_uid_find(const struct mailstate_mailbox *box,
				uint32_t uid, size_t *index_r)
{
	size_t i = mailstate_mailbox_uid_lower_bound(box, uid);

	if (i == box->count || box->msgs[i]->uid != uid)
		return false;
	*index_r = i;
	return true;
}

const struct mailstate_msg *mailstate_msg_find(const struct mailstate *state,
					       const char *tag)
{
	return msg_lookup(state, tag);
}

size_t mailstate_msg_keywords(const struct mailstate_msg *msg,
			      const char **kw_r, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < msg->ftag_count; i++) {
		const char *kw = msg->ftags[i].keyword;
		bool dup = false;

		if (kw == NULL)
			continue;
		/* Same keyword under several tags or spellings: once. */
		for (size_t j = 0; j < i && !dup; j++)
			dup = msg->ftags[j].keyword != NULL &&
			      strcasecmp(msg->ftags[j].keyword, kw) == 0;
		if (dup)
			continue;
		if (n < max)
			kw_r[n] = kw;
		n++;
	}
	return n;
}

bool mailstate_msg_has_keyword(const struct mailstate_msg *msg,
			       const char *keyword)
{
	return keyword[0] != '\\' && msg_has_flag_name(msg, keyword);
}

size_t mailstate_tombstone_count(const struct mailstate *state)
{
	return state->tombs.count + orset_tombstone_count(state->structure);
}

void mailstate_purge_tombstones(struct mailstate *state)
{
	tmap_free(&state->tombs, true);
	orset_tombstones_purge(state->structure);
}

/*
 * Downstream: one function per op type.  Each only raises registers and
 * adds/removes tagged things, so any two commute.
 */

static void raise_uidvalidity(struct mailstate *state,
			      struct mailstate_mailbox *box, uint32_t uv)
{
	if (uv > box->uidvalidity)
		box->uidvalidity = uv;
	if (uv > state->max_uidvalidity)
		state->max_uidvalidity = uv;
}

static void raise_uidnext(struct mailstate_mailbox *box, uint64_t next)
{
	if (next > box->uidnext)
		box->uidnext = next;
}

static int structure_remove(struct mailstate *state, const char *name,
			    char **tags, size_t count, const char **error_r)
{
	return orset_apply_remove(state->structure, name, strlen(name),
				  (const char *const *)tags, count,
				  error_r) < 0 ? -1 : 0;
}

static int structure_add(struct mailstate *state, const char *name,
			 const char *tag, const char **error_r)
{
	return orset_apply_add(state->structure, name, strlen(name), tag,
			       error_r) < 0 ? -1 : 0;
}

static int apply_create(struct mailstate *state, const struct op *op,
			const char **error_r)
{
	struct mailstate_mailbox *box = box_get(state, op->mailbox);

	if (box == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	raise_uidvalidity(state, box, op->uidvalidity);
	return structure_add(state, op->mailbox, op->tag, error_r);
}

static int remove_msgs(struct mailstate *state, char **tags, size_t count,
		       const char **error_r)
{
	for (size_t i = 0; i < count; i++) {
		struct mailstate_msg *m = msg_lookup(state, tags[i]);

		if (tombstone(state, tags[i]) < 0) {
			*error_r = "out of memory";
			return -1;
		}
		if (m != NULL)
			msg_destroy(state, m);
	}
	return 0;
}

static int apply_delete(struct mailstate *state, const struct op *op,
			const char **error_r)
{
	if (structure_remove(state, op->mailbox, op->tags, op->tag_count,
			     error_r) < 0)
		return -1;
	return remove_msgs(state, op->msg_tags, op->msg_tag_count, error_r);
}

static int apply_rename(struct mailstate *state, const struct op *op,
			const char **error_r)
{
	struct mailstate_mailbox *to = box_get(state, op->new_mailbox);

	if (to == NULL || box_get(state, op->mailbox) == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	raise_uidvalidity(state, to, op->uidvalidity);
	raise_uidnext(to, op->uidnext);
	if (structure_remove(state, op->mailbox, op->tags, op->tag_count,
			     error_r) < 0 ||
	    structure_add(state, op->new_mailbox, op->tag, error_r) < 0)
		return -1;
	for (size_t i = 0; i < op->move_count; i++) {
		const struct op_move *mv = &op->moves[i];
		struct mailstate_msg *m = msg_lookup(state, mv->msg_tag);

		for (size_t j = 0; j < mv->placement_count; j++) {
			if (tombstone(state, mv->placements[j]) < 0)
				goto nomem;
			if (m != NULL)
				msg_remove_place(m, mv->placements[j]);
		}
		if (m == NULL)
			continue;
		if (!tombstoned(state, op->tag) &&
		    msg_add_place(m, op->tag, to) < 0)
			goto nomem;
		if (msg_settle(m) < 0)
			goto nomem;
	}
	return 0;
nomem:
	*error_r = "out of memory";
	return -1;
}

static struct mailstate_msg *msg_new(const struct op *op,
				     struct mailstate_mailbox *box)
{
	struct mailstate_msg *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->tag = strdup(op->tag);
	m->uid = op->uid;
	m->internal_date = op->internal_date;
	m->size = op->body_len;
	m->mailbox = box;
	if (m->tag == NULL || msg_add_place(m, op->tag, box) < 0)
		goto fail;
	for (unsigned bit = 1; bit <= OP_FLAG_DRAFT; bit <<= 1)
		if ((op->flags & bit) != 0 &&
		    msg_add_ftag(m, op_flag_name(bit), op->tag) < 0)
			goto fail;
	for (size_t i = 0; i < op->keyword_count; i++)
		if (msg_add_ftag(m, op->keywords[i], op->tag) < 0)
			goto fail;
	return m;
fail:
	msg_free(m);
	return NULL;
}

static int apply_append(struct mailstate *state, const struct op *op,
			const char **error_r)
{
	struct mailstate_mailbox *box = box_get(state, op->mailbox);
	struct mailstate_msg *m;
	uint64_t h;

	if (box == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	raise_uidvalidity(state, box, op->uidvalidity);
	raise_uidnext(box, (uint64_t)op->uid + 1);
	if (structure_remove(state, op->mailbox, op->tags, op->tag_count,
			     error_r) < 0 ||
	    structure_add(state, op->mailbox, op->tag, error_r) < 0)
		return -1;
	h = hash_str(state->seed, op->tag);
	if (tmap_find(&state->index, h, op->tag) != NULL ||
	    tombstoned(state, op->tag))
		return 0;
	m = msg_new(op, box);
	if (m == NULL || box_reserve(box) < 0 ||
	    tmap_reserve(&state->index, 1) < 0) {
		if (m != NULL)
			msg_free(m);
		*error_r = "out of memory";
		return -1;
	}
	box_insert(box, m);
	tmap_insert(&state->index, h, m->tag, m);
	return 0;
}

static int apply_expunge(struct mailstate *state, const struct op *op,
			 const char **error_r)
{
	struct mailstate_mailbox *box = box_get(state, op->mailbox);

	if (box == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	raise_uidnext(box, op->uidnext);
	return remove_msgs(state, op->msg_tags, op->msg_tag_count, error_r);
}

static int apply_store(struct mailstate *state, const struct op *op,
		       const char **error_r)
{
	bool adds = !tombstoned(state, op->tag);

	for (size_t i = 0; i < op->entry_count; i++) {
		const struct op_store_entry *e = &op->entries[i];
		struct mailstate_msg *m = msg_lookup(state, e->msg_tag);

		for (size_t j = 0; j < e->remove_count; j++) {
			if (tombstone(state, e->removes[j].tag) < 0)
				goto nomem;
			if (m != NULL)
				msg_remove_ftag(m, e->removes[j].flag,
						e->removes[j].tag);
		}
		if (m == NULL || !adds)
			continue;
		for (unsigned bit = 1; bit <= OP_FLAG_DRAFT; bit <<= 1)
			if ((e->add_flags & bit) != 0 &&
			    msg_add_ftag(m, op_flag_name(bit), op->tag) < 0)
				goto nomem;
		for (size_t j = 0; j < e->add_keyword_count; j++)
			if (msg_add_ftag(m, e->add_keywords[j], op->tag) < 0)
				goto nomem;
	}
	return 0;
nomem:
	*error_r = "out of memory";
	return -1;
}

static int apply_renumber(struct mailstate *state, const struct op *op,
			  const char **error_r)
{
	struct mailstate_mailbox *box = box_get(state, op->mailbox);

	if (box == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < op->renumber_count; i++) {
		const struct op_renumber *r = &op->renumbers[i];
		struct mailstate_msg *m = msg_lookup(state, r->msg_tag);

		raise_uidnext(box, (uint64_t)r->new_uid + 1);
		if (m == NULL || m->uid >= r->new_uid)
			continue;
		/* Same array, so there is room: unlink, then re-insert. */
		box_unlink(m->mailbox, m);
		m->uid = r->new_uid;
		box_insert(m->mailbox, m);
	}
	return 0;
}

int mailstate_apply(struct mailstate *state, const struct op *op,
		    const char **error_r)
{
	if (op_validate(op, error_r) < 0)
		return -1;
	if (strcmp(op->user, state->user) != 0) {
		*error_r = "operation for another user";
		return -1;
	}
	switch (op->type) {
	case OP_CREATE:
		return apply_create(state, op, error_r);
	case OP_DELETE:
		return apply_delete(state, op, error_r);
	case OP_RENAME:
		return apply_rename(state, op, error_r);
	case OP_APPEND:
		return apply_append(state, op, error_r);
	case OP_EXPUNGE:
		return apply_expunge(state, op, error_r);
	case OP_STORE:
		return apply_store(state, op, error_r);
	case OP_UID_RENUMBER:
		return apply_renumber(state, op, error_r);
	}
	*error_r = "unknown operation type";
	return -1;
}

/*
 * Source steps.
 */

/* Copies of strings into a new array; NULL for n == 0 is not an error. */
static int copy_strs(const char *const *src, size_t n, char ***dst_r)
{
	char **dst;

	*dst_r = NULL;
	if (n == 0)
		return 0;
	dst = calloc(n, sizeof(*dst));
	if (dst == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		dst[i] = strdup(src[i]);
		if (dst[i] == NULL) {
			for (size_t j = 0; j < i; j++)
				free(dst[j]);
			free(dst);
			return -1;
		}
	}
	*dst_r = dst;
	return 0;
}

static int structure_tags(const struct mailstate *state, const char *name,
			  char ***tags_r, size_t *count_r)
{
	const char *const *tags = orset_tags(state->structure, name,
					     strlen(name), count_r);

	return copy_strs(tags, *count_r, tags_r);
}

static int new_tag(char **tag_r, const char **error_r)
{
	char tag[ORSET_TAG_BUFSIZE];

	if (orset_tag_mint(tag, error_r) < 0)
		return -1;
	*tag_r = strdup(tag);
	if (*tag_r == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}

/* A UIDVALIDITY above every one this user has had, and normally the
 * current time, as RFC 3501 suggests. */
static int new_uidvalidity(const struct mailstate *state, uint32_t *uv_r,
			   const char **error_r)
{
	time_t now = time(NULL);
	uint32_t uv = now > 0 && (uint64_t)now <= UINT32_MAX ?
		      (uint32_t)now : 1;

	if (state->max_uidvalidity == UINT32_MAX) {
		*error_r = "UIDVALIDITY space exhausted";
		return -1;
	}
	if (uv <= state->max_uidvalidity)
		uv = state->max_uidvalidity + 1;
	*uv_r = uv;
	return 0;
}

/* Applies a freshly built local op and hands it over, or frees it. */
static int finish(struct mailstate *state, struct op *op, struct op **op_r,
		  const char **error_r)
{
	if (mailstate_apply(state, op, error_r) < 0) {
		op_free(&op);
		return -1;
	}
	*op_r = op;
	return 0;
}

static size_t live_count(const struct mailstate *state)
{
	return orset_count(state->structure);
}

int mailstate_create(struct mailstate *state, const char *name,
		     struct op **op_r, const char **error_r)
{
	struct op *op;
	uint32_t uv;

	*op_r = NULL;
	if (!op_mailbox_valid(name)) {
		*error_r = "invalid mailbox name";
		return -1;
	}
	if (mailstate_mailbox_find(state, name) != NULL) {
		*error_r = "mailbox already exists";
		return -1;
	}
	if (live_count(state) >= MAILSTATE_MAILBOXES_MAX) {
		*error_r = "too many mailboxes";
		return -1;
	}
	if (new_uidvalidity(state, &uv, error_r) < 0)
		return -1;
	op = op_new(OP_CREATE, state->user, name);
	if (op == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	op->uidvalidity = uv;
	if (new_tag(&op->tag, error_r) < 0) {
		op_free(&op);
		return -1;
	}
	return finish(state, op, op_r, error_r);
}

static int msg_tags_of(const struct mailstate_mailbox *box, char ***tags_r,
		       size_t *count_r)
{
	char **tags;

	*tags_r = NULL;
	*count_r = 0;
	if (box->count == 0)
		return 0;
	tags = calloc(box->count, sizeof(*tags));
	if (tags == NULL)
		return -1;
	*tags_r = tags;
	for (size_t i = 0; i < box->count; i++) {
		tags[i] = strdup(box->msgs[i]->tag);
		if (tags[i] == NULL)
			return -1;
		(*count_r)++;
	}
	return 0;
}

int mailstate_delete(struct mailstate *state, const char *name,
		     struct op **op_r, const char **error_r)
{
	struct mailstate_mailbox *box = mailstate_mailbox_find(state, name);
	struct op *op;

	*op_r = NULL;
	if (box == NULL) {
		*error_r = "no such mailbox";
		return -1;
	}
	op = op_new(OP_DELETE, state->user, name);
	if (op == NULL ||
	    structure_tags(state, name, &op->tags, &op->tag_count) < 0 ||
	    msg_tags_of(box, &op->msg_tags, &op->msg_tag_count) < 0) {
		op_free(&op);
		*error_r = "out of memory";
		return -1;
	}
	return finish(state, op, op_r, error_r);
}

int mailstate_rename(struct mailstate *state, const char *old_name,
		     const char *new_name, struct op **op_r,
		     const char **error_r)
{
	struct mailstate_mailbox *box = mailstate_mailbox_find(state,
							       old_name);
	struct op *op;

	*op_r = NULL;
	if (box == NULL) {
		*error_r = "no such mailbox";
		return -1;
	}
	if (!op_mailbox_valid(new_name) || strcmp(old_name, new_name) == 0) {
		*error_r = "invalid mailbox name";
		return -1;
	}
	if (mailstate_mailbox_find(state, new_name) != NULL) {
		*error_r = "mailbox already exists";
		return -1;
	}
	op = op_new(OP_RENAME, state->user, old_name);
	if (op == NULL)
		goto nomem;
	op->new_mailbox = strdup(new_name);
	op->uidnext = mailstate_mailbox_uidnext(box);
	if (new_uidvalidity(state, &op->uidvalidity, error_r) < 0 ||
	    new_tag(&op->tag, error_r) < 0) {
		op_free(&op);
		return -1;
	}
	if (op->new_mailbox == NULL ||
	    structure_tags(state, old_name, &op->tags, &op->tag_count) < 0)
		goto nomem;
	if (box->count > 0) {
		op->moves = calloc(box->count, sizeof(*op->moves));
		if (op->moves == NULL)
			goto nomem;
	}
	for (size_t i = 0; i < box->count; i++) {
		const struct mailstate_msg *m = box->msgs[i];
		struct op_move *mv = &op->moves[i];
		const char *places[OP_PLACEMENTS_MAX];
		size_t n = 0;

		op->move_count++;
		/* Ship at most the newest placements; older ones only
		 * linger after concurrent renames and lose anyway. */
		for (size_t j = m->place_count > OP_PLACEMENTS_MAX ?
			 m->place_count - OP_PLACEMENTS_MAX : 0;
		     j < m->place_count; j++)
			places[n++] = m->places[j].tag;
		mv->msg_tag = strdup(m->tag);
		if (mv->msg_tag == NULL ||
		    copy_strs(places, n, &mv->placements) < 0)
			goto nomem;
		mv->placement_count = n;
	}
	return finish(state, op, op_r, error_r);
nomem:
	op_free(&op);
	*error_r = "out of memory";
	return -1;
}

/* Drops keywords that repeat (case-insensitively) and checks them. */
static int dedup_keywords(const char *const *kw, size_t n,
			  const char **out, size_t *out_n,
			  const char **error_r)
{
	*out_n = 0;
	for (size_t i = 0; i < n; i++) {
		bool dup = false;

		if (!op_keyword_valid(kw[i])) {
			*error_r = "invalid keyword";
			return -1;
		}
		for (size_t j = 0; j < *out_n && !dup; j++)
			dup = strcasecmp(out[j], kw[i]) == 0;
		if (dup)
			continue;
		if (*out_n == MAILSTATE_KEYWORDS_MAX) {
			*error_r = "too many keywords";
			return -1;
		}
		out[(*out_n)++] = kw[i];
	}
	return 0;
}

int mailstate_append(struct mailstate *state, const char *name,
		     const void *body, size_t body_len, int64_t internal_date,
		     unsigned flags, const char *const *keywords,
		     size_t keyword_count, struct op **op_r,
		     const char **error_r)
{
	struct mailstate_mailbox *box = mailstate_mailbox_find(state, name);
	const char *kw[MAILSTATE_KEYWORDS_MAX];
	size_t nkw;
	uint64_t uid;
	struct op *op;

	*op_r = NULL;
	if (box == NULL) {
		*error_r = "no such mailbox";
		return -1;
	}
	if ((flags & ~OP_FLAGS_ALL) != 0) {
		*error_r = "unknown flags";
		return -1;
	}
	if (body_len > OP_BODY_MAX || (body == NULL && body_len > 0)) {
		*error_r = "message too large";
		return -1;
	}
	if (dedup_keywords(keywords, keyword_count, kw, &nkw, error_r) < 0)
		return -1;
	uid = mailstate_mailbox_uidnext(box);
	if (uid > UINT32_MAX) {
		*error_r = "UID space exhausted";
		return -1;
	}
	op = op_new(OP_APPEND, state->user, name);
	if (op == NULL)
		goto nomem;
	op->uidvalidity = box->uidvalidity;
	op->uid = (uint32_t)uid;
	op->internal_date = internal_date;
	op->flags = flags;
	op->body = body;
	op->body_len = body_len;
	if (new_tag(&op->tag, error_r) < 0) {
		op_free(&op);
		return -1;
	}
	if (copy_strs(kw, nkw, &op->keywords) < 0)
		goto nomem;
	op->keyword_count = nkw;
	if (structure_tags(state, name, &op->tags, &op->tag_count) < 0)
		goto nomem;
	return finish(state, op, op_r, error_r);
nomem:
	op_free(&op);
	*error_r = "out of memory";
	return -1;
}

int mailstate_expunge(struct mailstate *state, struct mailstate_mailbox *box,
		      const struct mailstate_msg *const *msgs, size_t count,
		      struct op **op_r, const char **error_r)
{
	struct op *op;

	*op_r = NULL;
	for (size_t i = 0; i < count; i++) {
		if (msgs[i]->mailbox != box) {
			*error_r = "message not in this mailbox";
			return -1;
		}
	}
	if (count == 0)
		return 0;
	op = op_new(OP_EXPUNGE, state->user, box->name);
	if (op == NULL)
		goto nomem;
	op->uidnext = mailstate_mailbox_uidnext(box);
	op->msg_tags = calloc(count, sizeof(*op->msg_tags));
	if (op->msg_tags == NULL)
		goto nomem;
	for (size_t i = 0; i < count; i++) {
		op->msg_tags[i] = strdup(msgs[i]->tag);
		if (op->msg_tags[i] == NULL)
			goto nomem;
		op->msg_tag_count++;
	}
	return finish(state, op, op_r, error_r);
nomem:
	op_free(&op);
	*error_r = "out of memory";
	return -1;
}

int mailstate_expunge_deleted(struct mailstate *state,
			      struct mailstate_mailbox *box, struct op **op_r,
			      const char **error_r)
{
	const struct mailstate_msg **msgs;
	size_t n = 0;
	int ret;

	*op_r = NULL;
	if (box->count == 0)
		return 0;
	msgs = calloc(box->count, sizeof(*msgs));
	if (msgs == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < box->count; i++)
		if ((box->msgs[i]->flags & OP_FLAG_DELETED) != 0)
			msgs[n++] = box->msgs[i];
	ret = mailstate_expunge(state, box, msgs, n, op_r, error_r);
	free(msgs);
	return ret;
}

/* Works out one message's STORE entry; returns 0 (e->msg_tag NULL when
 * nothing changes) or -1 when out of memory. */
static int store_entry(const struct mailstate_msg *m,
		       enum mailstate_store_mode mode, unsigned flags,
		       const char *const *kw, size_t nkw,
		       struct op_store_entry *e)
{
	size_t nrm = 0;

	memset(e, 0, sizeof(*e));
	if (mode != MAILSTATE_STORE_REMOVE) {
		e->add_flags = flags & ~m->flags;
		if (nkw > 0) {
			e->add_keywords = calloc(nkw, sizeof(char *));
			if (e->add_keywords == NULL)
				return -1;
		}
		for (size_t i = 0; i < nkw; i++) {
			if (msg_has_flag_name(m, kw[i]))
				continue;
			e->add_keywords[e->add_keyword_count] = strdup(kw[i]);
			if (e->add_keywords[e->add_keyword_count] == NULL)
				return -1;
			e->add_keyword_count++;
		}
	}
	if (mode != MAILSTATE_STORE_ADD && m->ftag_count > 0) {
		e->removes = calloc(m->ftag_count, sizeof(*e->removes));
		if (e->removes == NULL)
			return -1;
	}
	for (size_t i = 0; mode != MAILSTATE_STORE_ADD &&
	     i < m->ftag_count; i++) {
		const struct mailstate_flag_tag *f = &m->ftags[i];
		bool listed = f->sys != 0 ? (flags & f->sys) != 0 : false;

		for (size_t j = 0; f->sys == 0 && j < nkw && !listed; j++)
			listed = strcasecmp(kw[j], f->keyword) == 0;
		/* REMOVE drops what is listed, REPLACE what is not. */
		if (listed != (mode == MAILSTATE_STORE_REMOVE))
			continue;
		if (nrm == OP_REMOVES_MAX)
			break;
		e->removes[nrm].flag = strdup(ftag_name(f));
		e->removes[nrm].tag = strdup(f->tag);
		e->remove_count = ++nrm;
		if (e->removes[nrm - 1].flag == NULL ||
		    e->removes[nrm - 1].tag == NULL)
			return -1;
	}
	if (e->add_flags != 0 || e->add_keyword_count > 0 ||
	    e->remove_count > 0) {
		e->msg_tag = strdup(m->tag);
		if (e->msg_tag == NULL)
			return -1;
	}
	return 0;
}

static size_t distinct_keywords_after(const struct mailstate_msg *m,
				      const struct op_store_entry *e)
{
	size_t n = mailstate_msg_keywords(m, NULL, 0);

	/* Adds only ever name keywords the message lacks. */
	return n + e->add_keyword_count;
}

int mailstate_store(struct mailstate *state, struct mailstate_mailbox *box,
		    const struct mailstate_msg *const *msgs, size_t count,
		    enum mailstate_store_mode mode, unsigned flags,
		    const char *const *keywords, size_t keyword_count,
		    struct op **op_r, const char **error_r)
{
	const char *kw[MAILSTATE_KEYWORDS_MAX];
	size_t nkw;
	struct op *op;

	*op_r = NULL;
	if ((flags & ~OP_FLAGS_ALL) != 0) {
		*error_r = "unknown flags";
		return -1;
	}
	if (dedup_keywords(keywords, keyword_count, kw, &nkw, error_r) < 0)
		return -1;
	for (size_t i = 0; i < count; i++) {
		if (msgs[i]->mailbox != box) {
			*error_r = "message not in this mailbox";
			return -1;
		}
	}
	if (count == 0)
		return 0;
	op = op_new(OP_STORE, state->user, box->name);
	if (op == NULL)
		goto nomem;
	if (new_tag(&op->tag, error_r) < 0) {
		op_free(&op);
		return -1;
	}
	op->entries = calloc(count, sizeof(*op->entries));
	if (op->entries == NULL)
		goto nomem;
	for (size_t i = 0; i < count; i++) {
		struct op_store_entry *e = &op->entries[op->entry_count];
		int ret = store_entry(msgs[i], mode, flags, kw, nkw, e);

		/* Count it even when empty or failed, so op_free sees it. */
		op->entry_count++;
		if (ret < 0)
			goto nomem;
		if (e->msg_tag != NULL &&
		    distinct_keywords_after(msgs[i], e) >
		    MAILSTATE_KEYWORDS_MAX) {
			op_free(&op);
			*error_r = "too many keywords on a message";
			return -1;
		}
		if (e->msg_tag == NULL) {
			/* Nothing changes for this one: drop the entry. */
			op->entry_count--;
			for (size_t j = 0; j < e->add_keyword_count; j++)
				free(e->add_keywords[j]);
			free(e->add_keywords);
			free(e->removes);
		}
	}
	if (op->entry_count == 0) {
		op_free(&op);
		return 0;
	}
	return finish(state, op, op_r, error_r);
nomem:
	op_free(&op);
	*error_r = "out of memory";
	return -1;
}

static int resolve_box(struct mailstate *state, struct mailstate_mailbox *box,
		       struct op **op_r, const char **error_r)
{
	uint64_t next = mailstate_mailbox_uidnext(box);
	size_t n = 0;
	struct op *op;

	*op_r = NULL;
	for (size_t i = 1; i < box->count; i++)
		if (box->msgs[i]->uid == box->msgs[i - 1]->uid)
			n++;
	if (n == 0)
		return 0;
	if (next + n - 1 > UINT32_MAX) {
		*error_r = "UID space exhausted";
		return -1;
	}
	op = op_new(OP_UID_RENUMBER, state->user, box->name);
	if (op == NULL)
		goto nomem;
	op->renumbers = calloc(n, sizeof(*op->renumbers));
	if (op->renumbers == NULL)
		goto nomem;
	/* Sorted by (UID, tag): in each run of one UID the first keeps it. */
	for (size_t i = 1; i < box->count; i++) {
		struct op_renumber *r = &op->renumbers[op->renumber_count];

		if (box->msgs[i]->uid != box->msgs[i - 1]->uid)
			continue;
		op->renumber_count++;
		r->msg_tag = strdup(box->msgs[i]->tag);
		if (r->msg_tag == NULL)
			goto nomem;
		r->old_uid = box->msgs[i]->uid;
		r->new_uid = (uint32_t)next++;
	}
	return finish(state, op, op_r, error_r);
nomem:
	op_free(&op);
	*error_r = "out of memory";
	return -1;
}

int mailstate_resolve_uid_conflicts(struct mailstate *state,
				    struct op ***ops_r, size_t *count_r,
				    const char **error_r)
{
	struct op **ops = NULL;
	size_t n = 0;

	*ops_r = NULL;
	*count_r = 0;
	for (size_t i = 0; i < state->nboxes; i++) {
		struct mailstate_mailbox *box = state->boxes[i];
		struct op *op, **grown;

		if (!box->conflict)
			continue;
		if (resolve_box(state, box, &op, error_r) < 0)
			goto fail;
		box->conflict = false;
		if (op == NULL)
			continue;
		grown = realloc(ops, (n + 1) * sizeof(*ops));
		if (grown == NULL) {
			/* Applied but not shippable: hand back what is
			 * shippable and let a later call find no conflict. */
			op_free(&op);
			*error_r = "out of memory";
			goto fail;
		}
		ops = grown;
		ops[n++] = op;
	}
	*ops_r = ops;
	*count_r = n;
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		op_free(&ops[i]);
	free(ops);
	return -1;
}

/*
 * Snapshots.  Layout (str = u16 length + bytes):
 *   u8 version, str user, u32 max UIDVALIDITY, the structure OR-Set,
 *   u32 records * { str name, u32 uidvalidity, u64 uidnext },
 *   u32 messages * { str tag, u32 uid, u64 internal date, u64 size,
 *                    u32 n * { str flag, str tag },
 *                    u32 n * { str placement tag, str mailbox } },
 *   u32 tombstones * str tag.
 * Records by name, messages by (mailbox, UID, tag), flag and placement
 * lists and tombstones sorted: equal states give equal bytes.
 */

static int put_str(struct buf *out, const char *s)
{
	size_t len = strlen(s);

	if (len > UINT16_MAX || buf_put_u16(out, (uint16_t)len) < 0)
		return -1;
	return buf_append(out, s, len);
}

static int cmp_cstr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int put_msg(struct buf *out, const struct mailstate_msg *m)
{
	if (put_str(out, m->tag) < 0 || buf_put_u32(out, m->uid) < 0 ||
	    buf_put_u64(out, (uint64_t)m->internal_date) < 0 ||
	    buf_put_u64(out, m->size) < 0 ||
	    buf_put_u32(out, (uint32_t)m->ftag_count) < 0)
		return -1;
	for (size_t i = 0; i < m->ftag_count; i++)
		if (put_str(out, ftag_name(&m->ftags[i])) < 0 ||
		    put_str(out, m->ftags[i].tag) < 0)
			return -1;
	if (buf_put_u32(out, (uint32_t)m->place_count) < 0)
		return -1;
	for (size_t i = 0; i < m->place_count; i++)
		if (put_str(out, m->places[i].tag) < 0 ||
		    put_str(out, m->places[i].box->name) < 0)
			return -1;
	return 0;
}

int mailstate_serialize(const struct mailstate *state, struct buf *out)
{
	size_t nmsgs = 0;
	const char **tombs = NULL;
	size_t n = 0;
	int ret = -1;

	for (size_t i = 0; i < state->nboxes; i++)
		nmsgs += state->boxes[i]->count;
	if (nmsgs > UINT32_MAX || state->nboxes > UINT32_MAX ||
	    state->tombs.count > UINT32_MAX)
		return -1;
	if (buf_put_u8(out, MAILSTATE_SERIAL_VERSION) < 0 ||
	    put_str(out, state->user) < 0 ||
	    buf_put_u32(out, state->max_uidvalidity) < 0 ||
	    orset_serialize(state->structure, out) < 0 ||
	    buf_put_u32(out, (uint32_t)state->nboxes) < 0)
		return -1;
	for (size_t i = 0; i < state->nboxes; i++) {
		const struct mailstate_mailbox *box = state->boxes[i];

		if (put_str(out, box->name) < 0 ||
		    buf_put_u32(out, box->uidvalidity) < 0 ||
		    buf_put_u64(out, box->uidnext) < 0)
			return -1;
	}
	if (buf_put_u32(out, (uint32_t)nmsgs) < 0)
		return -1;
	for (size_t i = 0; i < state->nboxes; i++)
		for (size_t j = 0; j < state->boxes[i]->count; j++)
			if (put_msg(out, state->boxes[i]->msgs[j]) < 0)
				return -1;
	if (state->tombs.count > 0) {
		tombs = malloc(state->tombs.count * sizeof(*tombs));
		if (tombs == NULL)
			return -1;
	}
	for (size_t i = 0; i < state->tombs.cap; i++)
		if (state->tombs.slots[i].key != NULL)
			tombs[n++] = state->tombs.slots[i].key;
	if (n > 0)
		qsort(tombs, n, sizeof(*tombs), cmp_cstr);
	if (buf_put_u32(out, (uint32_t)n) < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (put_str(out, tombs[i]) < 0)
			goto out;
	ret = 0;
out:
	free(tombs);
	return ret;
}

static bool get_str(struct buf_reader *r, size_t max, char *s, size_t size)
{
	uint16_t len;
	const unsigned char *p;

	if (!buf_get_u16(r, &len) || len == 0 || len > max || len >= size ||
	    !buf_get_bytes(r, len, &p) || memchr(p, '\0', len) != NULL)
		return false;
	memcpy(s, p, len);
	s[len] = '\0';
	return true;
}

static bool get_tag(struct buf_reader *r, char tag[ORSET_TAG_BUFSIZE])
{
	return get_str(r, ORSET_TAG_MAX, tag, ORSET_TAG_BUFSIZE) &&
	       orset_tag_valid(tag, strlen(tag));
}

/* Loads one message; *prev is the one loaded before (NULL at first), to
 * check the canonical order, and becomes this one. */
static const char *load_msg(struct mailstate *state, struct buf_reader *r,
			    const struct mailstate_msg **prev_r)
{
	const struct mailstate_msg *prev = *prev_r;
	char tag[ORSET_TAG_BUFSIZE], ftag[ORSET_TAG_BUFSIZE];
	char flag[OP_KEYWORD_MAX + 1], name[OP_MAILBOX_MAX + 1];
	struct mailstate_msg *m = calloc(1, sizeof(*m));
	uint64_t date;
	uint32_t n;
	struct mailstate_mailbox *box;
	uint64_t h;

	if (m == NULL)
		return "out of memory";
	if (!get_tag(r, tag) || !buf_get_u32(r, &m->uid) || m->uid == 0 ||
	    !buf_get_u64(r, &date) || !buf_get_u64(r, &m->size) ||
	    m->size > OP_BODY_MAX || !buf_get_u32(r, &n) ||
	    n > MAILSTATE_FLAG_TAGS_MAX)
		goto bad;
	m->internal_date = date <= INT64_MAX ? (int64_t)date :
			   -(int64_t)(~date) - 1;
	m->tag = strdup(tag);
	if (m->tag == NULL)
		goto nomem;
	for (uint32_t i = 0; i < n; i++) {
		if (!get_str(r, OP_KEYWORD_MAX, flag, sizeof(flag)) ||
		    !get_tag(r, ftag))
			goto bad;
		if (flag[0] == '\\' ? op_flag_from_name(flag) == 0 ||
				      strcmp(flag, op_flag_name(
					op_flag_from_name(flag))) != 0 :
				      !op_keyword_valid(flag))
			goto bad;
		/* Strictly ascending: no duplicates, canonical order. */
		if (m->ftag_count > 0 &&
		    ftag_cmp(flag, ftag, &m->ftags[m->ftag_count - 1]) <= 0)
			goto bad;
		if (msg_add_ftag(m, flag, ftag) < 0)
			goto nomem;
	}
	if (!buf_get_u32(r, &n) || n == 0 || n > MAILSTATE_PLACES_MAX)
		goto bad;
	for (uint32_t i = 0; i < n; i++) {
		if (!get_tag(r, ftag) ||
		    !get_str(r, OP_MAILBOX_MAX, name, sizeof(name)))
			goto bad;
		box = box_record(state, name);
		if (box == NULL || (m->place_count > 0 &&
		    strcmp(m->places[m->place_count - 1].tag, ftag) >= 0))
			goto bad;
		if (msg_add_place(m, ftag, box) < 0)
			goto nomem;
	}
	box = m->places[m->place_count - 1].box;
	/* Canonical order: by mailbox record, then (UID, tag). */
	if (prev != NULL && (strcmp(prev->mailbox->name, box->name) > 0 ||
	    (prev->mailbox == box &&
	     cmp_uid_tag(m->uid, m->tag, prev) <= 0)))
		goto bad;
	h = hash_str(state->seed, m->tag);
	if (tmap_find(&state->index, h, m->tag) != NULL)
		goto bad;
	if (box_reserve(box) < 0 || tmap_reserve(&state->index, 1) < 0)
		goto nomem;
	box_insert(box, m);
	tmap_insert(&state->index, h, m->tag, m);
	*prev_r = m;
	return NULL;
bad:
	msg_free(m);
	return "malformed message in snapshot";
nomem:
	msg_free(m);
	return "out of memory";
}

struct mailstate *mailstate_deserialize(const void *data, size_t len,
					const char **error_r)
{
	struct buf_reader r;
	char user[OP_USER_MAX + 1], name[OP_MAILBOX_MAX + 1];
	char tag[ORSET_TAG_BUFSIZE], prev_tomb[ORSET_TAG_BUFSIZE];
	struct mailstate *state;
	const struct mailstate_msg *prev = NULL;
	uint8_t version;
	uint32_t n;

	buf_reader_init(&r, data, len);
	if (!buf_get_u8(&r, &version) || version != MAILSTATE_SERIAL_VERSION) {
		*error_r = "unknown snapshot version";
		return NULL;
	}
	if (!get_str(&r, OP_USER_MAX, user, sizeof(user)) ||
	    !op_user_valid(user)) {
		*error_r = "bad user in snapshot";
		return NULL;
	}
	state = mailstate_new(user);
	if (state == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	orset_free(&state->structure);
	if (!buf_get_u32(&r, &state->max_uidvalidity)) {
		*error_r = "truncated snapshot";
		goto fail;
	}
	state->structure = orset_deserialize(&r, error_r);
	if (state->structure == NULL)
		goto fail;
	*error_r = "malformed mailbox in snapshot";
	/* Each record takes at least 15 bytes. */
	if (!buf_get_u32(&r, &n) || n > r.left / 15)
		goto fail;
	for (uint32_t i = 0; i < n; i++) {
		struct mailstate_mailbox *box;
		uint32_t uv;
		uint64_t next;

		if (!get_str(&r, OP_MAILBOX_MAX, name, sizeof(name)) ||
		    !op_mailbox_valid(name) || !buf_get_u32(&r, &uv) ||
		    !buf_get_u64(&r, &next) || next == 0 ||
		    next > OP_UIDNEXT_MAX || uv > state->max_uidvalidity ||
		    (state->nboxes > 0 &&
		     strcmp(state->boxes[state->nboxes - 1]->name, name) >= 0))
			goto fail;
		box = box_get(state, name);
		if (box == NULL) {
			*error_r = "out of memory";
			goto fail;
		}
		box->uidvalidity = uv;
		box->uidnext = next;
	}
	/* Every live name must have its record. */
	for (struct orset_iter it = ORSET_ITER_INIT;;) {
		const void *v;
		size_t vlen;

		if (!orset_iter_next(state->structure, &it, &v, &vlen))
			break;
		if (vlen == 0 || vlen > OP_MAILBOX_MAX ||
		    memchr(v, '\0', vlen) != NULL)
			goto fail;
		memcpy(name, v, vlen);
		name[vlen] = '\0';
		if (box_record(state, name) == NULL)
			goto fail;
	}
	/* Each message takes at least 36 bytes. */
	if (!buf_get_u32(&r, &n) || n > r.left / 36)
		goto fail;
	for (uint32_t i = 0; i < n; i++) {
		const char *err = load_msg(state, &r, &prev);

		if (err != NULL) {
			*error_r = err;
			goto fail;
		}
	}
	*error_r = "malformed tombstones in snapshot";
	if (!buf_get_u32(&r, &n) || n > r.left / 3)
		goto fail;
	for (uint32_t i = 0; i < n; i++) {
		if (!get_tag(&r, tag) || (i > 0 && strcmp(prev_tomb, tag) >= 0))
			goto fail;
		memcpy(prev_tomb, tag, sizeof(tag));
		if (tombstone(state, tag) < 0) {
			*error_r = "out of memory";
			goto fail;
		}
	}
	if (r.left != 0) {
		*error_r = "trailing bytes after snapshot";
		goto fail;
	}
	return state;
fail:
	mailstate_free(&state);
	return NULL;
}
