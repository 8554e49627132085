/*
 * vclock.h - vector clocks keyed by node name, and the causal delivery
 * rule of replication (DESIGN.md section 5).
 *
 * A clock maps node names to counters; a name that is not present counts
 * as 0, and an entry is never stored with the value 0, so two clocks that
 * mean the same thing have the same entries and the same encoding.  The
 * entries are kept sorted by name (byte order), which makes comparison and
 * merging linear.  A clock holds at most VCLOCK_ENTRIES_MAX names: a node
 * only ever talks to a few peers, and the bound keeps a forged clock from
 * costing more than a few kilobytes.
 *
 * Node names follow the configuration's rule (config_node_name_valid):
 * 1 to VCLOCK_NAME_MAX letters, digits, '.', '_' or '-'.
 *
 * Encoding (integers big-endian), used inside replication frames and by
 * whoever persists a clock next to the state it describes:
 *
 *   u16 count, then count times { u8 name length, name, u64 value }
 *
 * names strictly ascending, every value at least 1.  The decoder accepts
 * nothing else, so a decoded clock always re-encodes to the same bytes.
 *
 * Not thread-safe: a clock belongs to one thread at a time (the caller's
 * lock protects it).
 */
#ifndef PLUTO_VCLOCK_H
#define PLUTO_VCLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define VCLOCK_NAME_MAX 63
#define VCLOCK_ENTRIES_MAX 256
/* The smallest encoding of one entry: a one-byte name and its value. */
#define VCLOCK_ENTRY_MIN_SIZE (1 + 1 + 8)

struct vclock;

enum vclock_order {
	VCLOCK_EQUAL,		/* the same counters */
	VCLOCK_BEFORE,		/* a happened before b: a <= b, a != b */
	VCLOCK_AFTER,		/* b happened before a */
	VCLOCK_CONCURRENT,	/* neither */
};

/* Whether name is a valid node name (see above). */
bool vclock_name_valid(const char *name);

/* An empty clock (every counter 0), or NULL when out of memory. */
struct vclock *vclock_new(void);
/* A deep copy, or NULL when out of memory. */
struct vclock *vclock_copy(const struct vclock *vc);
/* Makes dst equal to src.  Returns 0, or -1 (ENOMEM) leaving dst as it
 * was. */
int vclock_assign(struct vclock *dst, const struct vclock *src);
/* Frees the clock; *vc becomes NULL.  Accepts NULL and *vc == NULL. */
void vclock_free(struct vclock **vc);

/* The counter of name (0 when absent, including for invalid names). */
uint64_t vclock_get(const struct vclock *vc, const char *name);
/* Sets the counter of name; 0 removes the entry.  Returns 0, or -1 with
 * *error_r (invalid name, more than VCLOCK_ENTRIES_MAX names, out of
 * memory), leaving the clock as it was. */
int vclock_set(struct vclock *vc, const char *name, uint64_t value,
	       const char **error_r);
/* Adds one to the counter of name and stores the new value in *value_r
 * (may be NULL).  Fails like vclock_set, and when the counter is already
 * UINT64_MAX. */
int vclock_increment(struct vclock *vc, const char *name, uint64_t *value_r,
		     const char **error_r);

/* Number of names with a non-zero counter. */
size_t vclock_count(const struct vclock *vc);
/* The i-th entry in name order, i < vclock_count(vc).  The name is
 * borrowed until the clock is next modified or freed. */
void vclock_entry(const struct vclock *vc, size_t i, const char **name_r,
		  uint64_t *value_r);

/* How a relates to b. */
enum vclock_order vclock_compare(const struct vclock *a,
				 const struct vclock *b);
/* Pointwise maximum: dst[k] = max(dst[k], src[k]) for every k.  Returns 0,
 * or -1 with *error_r (too many names, out of memory) leaving dst as it
 * was. */
int vclock_merge(struct vclock *dst, const struct vclock *src,
		 const char **error_r);

/*
 * The causal delivery rule: an operation that sender stamped with msg may
 * be applied on a replica whose clock is local exactly when it is the next
 * one from sender (msg[sender] == local[sender] + 1) and it depends on
 * nothing the replica has not applied yet (msg[k] <= local[k] for every
 * other k).  An invalid sender name is never deliverable.
 */
bool vclock_deliverable(const struct vclock *local, const struct vclock *msg,
			const char *sender);
/*
 * Whether the operation was already applied: msg[sender] <= local[sender].
 * Such a message is acknowledged and dropped.  A message that is neither
 * deliverable nor a duplicate must wait (or, if nothing it waits for can
 * ever arrive, it reveals a gap in the sender's log).
 */
bool vclock_is_duplicate(const struct vclock *local, const struct vclock *msg,
			 const char *sender);

/* Appends the encoding to out.  Returns 0, or -1 (ENOMEM) with out as it
 * was. */
int vclock_encode(const struct vclock *vc, struct buf *out);
/* Decodes one clock from r, consuming exactly its bytes.  Rejects a
 * truncated clock, a count over VCLOCK_ENTRIES_MAX or over what the bytes
 * left could hold (checked before allocating), invalid, unsorted or
 * repeated names and zero values.  Returns 0 and a new clock (caller
 * frees), or -1 with *error_r; r is then left at an unspecified position. */
int vclock_read(struct buf_reader *r, struct vclock **vc_r,
		const char **error_r);
/* Decodes exactly len bytes (a persisted clock): vclock_read plus no
 * trailing bytes. */
int vclock_decode(const void *data, size_t len, struct vclock **vc_r,
		  const char **error_r);

/* Appends a readable form for logs, "{a=1, b=7}", to out.  Returns 0 or
 * -1 (ENOMEM). */
int vclock_format(const struct vclock *vc, struct buf *out);

#endif
