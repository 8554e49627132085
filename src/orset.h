/*
 * orset.h - an operation-based observed-remove set (OR-Set) of byte strings.
 *
 * Pure data structure: no locks (the caller serialises access, e.g. with the
 * per-user mutex), no I/O except reading the system's random source when a
 * tag is minted.
 *
 * Semantics (as in the pluto prototype and Shapiro et al.'s OR-Set):
 *
 *  - add(e), at the source, mints a globally unique tag t and ships (e, t);
 *    downstream, apply_add(e, t) records t as a tag of e.
 *  - remove(e), at the source, ships exactly the tags of e this replica has
 *    observed; downstream, apply_remove(e, tags) drops those tags.
 *  - e is in the set while it has at least one tag.  A tag the remover had
 *    not observed survives, so a concurrent add wins over a remove.
 *
 * Downstream effects are idempotent and commute with each other: every
 * removed tag is remembered as a tombstone, so a duplicate apply_add that
 * arrives after the remove (or a remove that overtakes its add) cannot bring
 * the element back.  Tombstones grow with removes; orset_tombstones_purge()
 * drops them once the caller knows no operation naming them can still
 * arrive (every replica has applied everything up to now).
 *
 * Tags are 1..ORSET_TAG_MAX characters of [A-Za-z0-9_-]; minted tags are 128
 * random bits in 32 lower-case hex digits.  Values are binary-safe byte
 * strings of at most ORSET_VALUE_MAX bytes.  Every operation costs O(1)
 * expected time plus the length of the strings and the number of tags it
 * names; nothing walks the whole set except iteration and serialisation.
 */
#ifndef PLUTO_ORSET_H
#define PLUTO_ORSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define ORSET_TAG_MAX 64
/* Room for the longest tag and its NUL. */
#define ORSET_TAG_BUFSIZE (ORSET_TAG_MAX + 1)
/* Length of the tags orset_tag_mint() produces. */
#define ORSET_TAG_MINT_LEN 32
#define ORSET_VALUE_MAX 4096
/* Bounds what orset_deserialize accepts, against allocation bombs. */
#define ORSET_SERIAL_VERSION 1

struct orset;

/* Returns true when tag[0..len) is a well-formed tag. */
bool orset_tag_valid(const char *tag, size_t len);
/* Writes a fresh NUL-terminated tag of ORSET_TAG_MINT_LEN hex digits from
 * 128 bits of system randomness (getentropy(3)).  Returns 0, or -1 with
 * *error_r set when the system has no randomness to give. */
int orset_tag_mint(char tag_r[ORSET_TAG_BUFSIZE], const char **error_r);
/* The same encoding from caller-supplied random bytes (tests, or callers
 * with their own generator). */
void orset_tag_from_random(char tag_r[ORSET_TAG_BUFSIZE],
			   const unsigned char random[16]);

/* Returns a new empty set, or NULL when out of memory. */
struct orset *orset_new(void);
/* Frees the set and everything in it; *set becomes NULL.  NULL is fine. */
void orset_free(struct orset **set);

/* Whether value is in the set (has at least one live tag). */
bool orset_lookup(const struct orset *set, const void *value, size_t len);
/* The live tags of value, in no particular order: *count_r is set and the
 * returned array (NULL when there are none) is borrowed until the set is
 * next modified. */
const char *const *orset_tags(const struct orset *set, const void *value,
			      size_t len, size_t *count_r);
/* Number of values in the set. */
size_t orset_count(const struct orset *set);
/* Number of remembered removed tags. */
size_t orset_tombstone_count(const struct orset *set);
/* Whether tag has been removed (and not purged since). */
bool orset_tag_removed(const struct orset *set, const char *tag);

/* Iterates over the values in no particular order.  Start with
 * ORSET_ITER_INIT; the set must not be modified during the walk.  Returns
 * false at the end.  The value is borrowed. */
struct orset_iter {
	size_t bucket;
	const void *node;
};
#define ORSET_ITER_INIT { 0, NULL }
bool orset_iter_next(const struct orset *set, struct orset_iter *iter,
		     const void **value_r, size_t *len_r);

/*
 * Source steps: change the local replica and say what to ship.
 */

/* Mints a tag for value and applies the add locally.  The tag to ship is
 * written to tag_r.  Returns 0, or -1 with *error_r (bad value, no
 * randomness, out of memory) and the set unchanged. */
int orset_add(struct orset *set, const void *value, size_t len,
	      char tag_r[ORSET_TAG_BUFSIZE], const char **error_r);
/* Removes value locally.  *tags_r receives a copy of the tags that were
 * observed, to ship (caller frees it with orset_tag_list_free); *count_r is
 * 0 and *tags_r NULL when value was not in the set.  Returns 0, or -1 when
 * out of memory (set unchanged). */
int orset_remove(struct orset *set, const void *value, size_t len,
		 char ***tags_r, size_t *count_r, const char **error_r);
/* Frees a tag list returned by orset_remove (and sets *tags to NULL). */
void orset_tag_list_free(char ***tags, size_t count);

/*
 * Downstream steps: apply what a replica (this one or another) shipped.
 * Both return 1 when the set changed, 0 when the operation had no further
 * effect (duplicate, or overtaken by a remove), -1 with *error_r when the
 * input is invalid or memory ran out; on -1 the set is unchanged.
 */

/* Records tag as a tag of value, unless tag was removed before.  A tag that
 * is already bound to a different value is an error (tags are unique). */
int orset_apply_add(struct orset *set, const void *value, size_t len,
		    const char *tag, const char **error_r);
/* Drops each of tags from value and remembers it as removed.  A tag that is
 * live under a different value is left alone (a remove only names tags of
 * its own value); an unknown tag is remembered so that its add, should it
 * arrive later, has no effect. */
int orset_apply_remove(struct orset *set, const void *value, size_t len,
		       const char *const *tags, size_t count,
		       const char **error_r);

/* Forgets every tombstone.  Only safe once no operation that adds one of
 * those tags can still be delivered. */
void orset_tombstones_purge(struct orset *set);

/* Appends a canonical encoding (values and tags sorted, so two replicas in
 * the same state produce the same bytes) to out.  Returns 0 or -1 when out
 * of memory (out may hold a partial encoding). */
int orset_serialize(const struct orset *set, struct buf *out);
/* Reads what orset_serialize wrote, consuming it from r.  Strict: bad
 * version, tags, lengths or duplicates are errors.  Returns the set or NULL
 * with *error_r. */
struct orset *orset_deserialize(struct buf_reader *r, const char **error_r);

#endif
