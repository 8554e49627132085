/*
 * jrec.h - what a pluto journal record holds.
 *
 * The journal (journal.h) stores opaque payloads with a type byte.  A
 * worker's or storage's journal holds two kinds, and is at once its
 * durable state, its outgoing replication log and its receive log:
 *
 *   JREC_LOCAL   an op this node accepted from a client
 *                  str home | clock | op
 *   JREC_REMOTE  an op received from a peer, durable before it is
 *                acknowledged and applied
 *                  str origin | u64 origin_lsn | clock | op
 *
 * str is a u8 length and that many bytes (a node name, or "" for home on
 * a worker); clock is vclock_encode() output, the sender's clock stamped
 * on the op; op is op_encode() output, an APPEND's body last.
 *
 * home (storage only): the worker whose user the op concerns, so that
 * storage ships each worker only its own users' ops.  origin_lsn: the
 * LSN of the op in the origin's journal, which acknowledgements and
 * resumption count in.
 */
#ifndef PLUTO_JREC_H
#define PLUTO_JREC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "journal.h"
#include "vclock.h"

enum jrec_type {
	JREC_LOCAL = 1,
	JREC_REMOTE = 2,
};

struct jrec {
	enum jrec_type type;
	char name[VCLOCK_NAME_MAX + 1];	/* home or origin; may be "" */
	uint64_t origin_lsn;		/* JREC_REMOTE only */
	struct vclock *clock;		/* owned */
	const unsigned char *op;	/* borrowed from the record */
	size_t op_len;
};

/* Appends the part of a record before the op. */
int jrec_encode_prefix(struct buf *out, enum jrec_type type, const char *name,
		       uint64_t origin_lsn, const struct vclock *clock,
		       const char **error_r);

/* Splits a journal record.  Returns 0 and fills *jrec_r (free its clock
 * with jrec_clear), or -1 with *error_r for an unknown type or malformed
 * prefix (the op itself is decoded by op_decode). */
int jrec_decode(const struct journal_record *rec, struct jrec *jrec_r,
		const char **error_r);
void jrec_clear(struct jrec *jrec);

#endif
