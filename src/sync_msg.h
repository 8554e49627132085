/*
 * sync_msg.h - the frames of a replication link (DESIGN.md section 5;
 * doc/replication-wire.md describes the bytes).
 *
 * A link is a long-lived mutual-TLS connection between a worker and
 * storage.  Each side first sends HELLO (its name, how far it has durably
 * received the other side's journal, its vector clock), then streams OPS
 * frames (batches of journal entries: LSN, vector clock, opaque operation
 * payload as defined in op.h) and answers the other side's OPS with ACK
 * frames (the highest LSN it has durably stored).
 *
 * Every frame is
 *
 *   magic u32 "PSY1" | version u8 | type u8 | reserved u16 (0) |
 *   payload length u32 | payload | CRC-32C u32 of everything before it
 *
 * integers big-endian.  This module is pure: it builds frames into a
 * struct buf and parses them from bytes; reading, writing, TLS and the
 * meaning of LSNs and clocks belong to the sender and receiver threads.
 * Nothing here is shared between threads.
 */
#ifndef PLUTO_SYNC_MSG_H
#define PLUTO_SYNC_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "vclock.h"

#define SYNC_MSG_MAGIC 0x50535931u	/* "PSY1" */
#define SYNC_MSG_VERSION 1
#define SYNC_MSG_HEADER_SIZE 12
#define SYNC_MSG_TRAILER_SIZE 4
#define SYNC_MSG_OVERHEAD (SYNC_MSG_HEADER_SIZE + SYNC_MSG_TRAILER_SIZE)

/* Largest operation payload a frame carries: an APPEND with a body at the
 * 64 MiB literal limit (OP_BODY_MAX) plus 16 MiB for its other fields. */
#define SYNC_MSG_OP_MAX ((size_t)80 * 1024 * 1024)
/* Largest frame payload: room for one largest operation with its entry
 * header and a full vector clock, so that every operation fits some
 * frame.  A receiver never buffers more than this plus the overhead. */
#define SYNC_MSG_PAYLOAD_MAX (SYNC_MSG_OP_MAX + (size_t)1024 * 1024)
#define SYNC_MSG_FRAME_MAX (SYNC_MSG_PAYLOAD_MAX + SYNC_MSG_OVERHEAD)
/* Most entries in one OPS frame. */
#define SYNC_MSG_BATCH_MAX 65536
/* A sensible soft size for a batch (see sync_msg_batch_begin). */
#define SYNC_MSG_BATCH_BUDGET_DEFAULT ((size_t)4 * 1024 * 1024)

enum sync_msg_type {
	SYNC_MSG_HELLO = 1,
	SYNC_MSG_OPS = 2,
	SYNC_MSG_ACK = 3,
};

/* One journal entry of an OPS frame. */
struct sync_msg_entry {
	/* The LSN of the entry in the sender's journal, >= 1. */
	uint64_t lsn;
	/* The operation's vector clock; its entry for the frame's sender
	 * is at least 1.  Owned by the frame. */
	struct vclock *clock;
	/* The operation payload (op.h), never empty, borrowed from the
	 * bytes given to sync_msg_parse: they must outlive the frame's use
	 * (op_decode borrows the APPEND body from here in turn). */
	const unsigned char *payload;
	size_t payload_len;
};

/* A decoded frame.  Fields a type does not use are zero/NULL. */
struct sync_msg_frame {
	enum sync_msg_type type;
	/* HELLO, OPS: the sending node's name. */
	char sender[VCLOCK_NAME_MAX + 1];
	/* HELLO: the highest LSN of the receiver's journal that the sender
	 * has durably stored (0: none yet), i.e. where to resume sending.
	 * ACK: the highest LSN of the receiver's journal that the sender of
	 * the ACK has durably stored, >= 1. */
	uint64_t lsn;
	/* HELLO: the sender's vector clock.  Owned by the frame. */
	struct vclock *clock;
	/* OPS: 1..SYNC_MSG_BATCH_MAX entries, LSNs strictly ascending.
	 * Owned by the frame. */
	struct sync_msg_entry *entries;
	size_t entry_count;
};

/* "hello", "ops", "ack" or "unknown". */
const char *sync_msg_type_name(enum sync_msg_type type);

/* Appends a HELLO frame to out.  received_lsn may be 0.  Returns 0, or -1
 * with *error_r (invalid sender name, out of memory), out as it was. */
int sync_msg_encode_hello(struct buf *out, const char *sender,
			  uint64_t received_lsn, const struct vclock *clock,
			  const char **error_r);
/* Appends an ACK frame for lsn (>= 1).  Returns 0, or -1 with *error_r,
 * out as it was. */
int sync_msg_encode_ack(struct buf *out, uint64_t lsn, const char **error_r);

/*
 * Builds one OPS frame in place at the end of a buffer, entry by entry,
 * so that a sender with a backlog packs many operations into one write:
 *
 *   sync_msg_batch_begin(&b, out, name, budget, &error);
 *   while ((ret = sync_msg_batch_add(&b, lsn, clock, p, n, &error)) == 1)
 *           next entry;
 *   (ret == 0: the entry did not fit; send this frame, add it to the next)
 *   sync_msg_batch_finish(&b, &error);
 *
 * The fields are private, except count and last_lsn, which may be read.
 * Nothing else may be appended to out between begin and finish/abort.
 */
struct sync_msg_batch {
	struct buf *out;
	size_t start;		/* offset of the frame in out */
	size_t budget;
	uint32_t count;		/* entries added */
	uint64_t last_lsn;	/* LSN of the last entry added, 0 if none */
	char sender[VCLOCK_NAME_MAX + 1];
};

/* Starts a frame for sender at the end of out.  budget is a soft bound on
 * the frame's payload: an entry that would take it past budget is refused
 * unless the frame is still empty (a single large operation always gets
 * its own frame); 0 means SYNC_MSG_BATCH_BUDGET_DEFAULT and values over
 * SYNC_MSG_PAYLOAD_MAX are lowered to it.  Returns 0, or -1 with *error_r
 * (invalid name, out of memory), out as it was. */
int sync_msg_batch_begin(struct sync_msg_batch *b, struct buf *out,
			 const char *sender, size_t budget,
			 const char **error_r);
/* Adds one entry (payload copied).  Returns 1 when added; 0 when the frame
 * is full (budget or SYNC_MSG_BATCH_MAX reached: finish it and add the
 * entry to a new one), out unchanged; -1 with *error_r when the entry can
 * never be sent (lsn 0 or not above the previous one, empty payload or
 * longer than SYNC_MSG_OP_MAX, clock without the sender) or memory ran
 * out, the batch being as before the call. */
int sync_msg_batch_add(struct sync_msg_batch *b, uint64_t lsn,
		       const struct vclock *clock, const void *payload,
		       size_t payload_len, const char **error_r);
/* Completes the frame (count, length, checksum).  Returns 0, or -1 with
 * *error_r when the batch is empty or memory ran out; the caller then
 * calls sync_msg_batch_abort. */
int sync_msg_batch_finish(struct sync_msg_batch *b, const char **error_r);
/* Removes the unfinished frame from out. */
void sync_msg_batch_abort(struct sync_msg_batch *b);

/*
 * Looks at the start of a frame.  Returns 1 and the whole frame's size in
 * *frame_len_r once the 12 header bytes are there and valid; 0 when fewer
 * bytes are there and those are consistent with a valid header; -1 with
 * *error_r as soon as they cannot be (bad magic, unsupported version,
 * unknown type, reserved bits set, payload length over
 * SYNC_MSG_PAYLOAD_MAX or too short for the type).  A reader uses it to
 * learn how many bytes to wait for.
 */
int sync_msg_peek(const void *data, size_t len, size_t *frame_len_r,
		  const char **error_r);

/*
 * Parses the frame at the start of data[0..len).  Returns
 *    1: a complete, valid frame: *frame_r is filled, *consumed_r is its
 *       size (the next frame starts there);
 *    0: data is a valid beginning, more bytes are needed;
 *   -1: malformed (everything sync_msg_peek rejects, a bad checksum, and
 *       in the payload: truncation, trailing bytes, an invalid node name
 *       or clock, a zero, repeated or descending LSN, an empty or
 *       oversized operation, an entry count of 0 or over the limit),
 *       with *error_r.  The link should be logged and closed.
 * *frame_r is always initialised, so sync_msg_frame_clear() may be called
 * on it whatever the result; on 1 the caller must.  Entry payloads point
 * into data.  Allocation is bounded by what len bytes can hold.
 */
int sync_msg_parse(const void *data, size_t len,
		   struct sync_msg_frame *frame_r, size_t *consumed_r,
		   const char **error_r);
/* Frees what the frame owns and zeroes it. */
void sync_msg_frame_clear(struct sync_msg_frame *frame);

#endif
