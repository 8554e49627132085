/*
 * journal.h - the node's durable operation journal, which is also its
 * outgoing replication log (DESIGN.md sections 4 and 5).
 *
 * Records are opaque payloads chosen by the caller, each with a one-byte
 * type, tagged with a log sequence number (LSN) that the journal assigns:
 * the first record ever is LSN 1 and every record is one more than the
 * previous, with no gaps.  A record is "durable" once it and every record
 * before it are on stable storage; nothing may be acknowledged before that.
 *
 * On disk, DIR holds segment files named by the LSN of their first record
 * (%020llu.log, zero-padded so they sort by name) and a LOCK file.  One
 * record is:
 *
 *   magic u32 "PJR1" | payload length u32 | LSN u64 | type u8 |
 *   3 zero bytes | payload | CRC-32C u32
 *
 * integers big-endian; the CRC covers the payload followed by the 20 header
 * bytes (payload first, so that the long part can be summed before the
 * journal lock is taken and the LSN is known).
 *
 * Threads: every function may be called from any thread, concurrently,
 * except journal_open and journal_free.  Appends from many threads share
 * fdatasync calls (group commit).  Readers (replay, sync senders) read the
 * files through their own descriptors and only up to the durable end, so
 * they never see a record that could still vanish in a crash.
 *
 * Failure policy.  A failed write (ENOSPC, EIO, EFBIG...) truncates the
 * segment back to the end of the last whole record and fails only that
 * append: its LSN is not consumed and later appends continue the dense
 * sequence.  If that truncation fails, or an fdatasync fails (after which
 * the kernel may have dropped the dirty pages, so the file's contents are
 * unknown), the journal is marked failed: every later append and durable
 * wait returns -1 until the journal is reopened, whose recovery decides
 * what really reached the disk.
 */
#ifndef PLUTO_JOURNAL_H
#define PLUTO_JOURNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct journal;
struct journal_reader;

#define JOURNAL_SEGMENT_SIZE_DEFAULT (64ULL * 1024 * 1024)
/* Largest payload of one record; the length field could say more, but no
 * operation (a message body is bounded by the literal limit) needs it. */
#define JOURNAL_RECORD_MAX (1024U * 1024 * 1024)
/* Most payload parts journal_append accepts. */
#define JOURNAL_PARTS_MAX 16
/* Bytes the frame adds to each payload. */
#define JOURNAL_RECORD_OVERHEAD 24

struct journal_options {
	/* A new segment is started before a record once the current one has
	 * reached this many bytes (records are never split, so a segment may
	 * be larger by one record).  0 means JOURNAL_SEGMENT_SIZE_DEFAULT. */
	uint64_t segment_size;
};

/* One piece of a record payload; the payload is the concatenation. */
struct journal_part {
	const void *data;
	size_t len;
};

struct journal_record {
	uint64_t lsn;
	uint8_t type;
	/* Borrowed from the reader until its next call or until it is
	 * freed; NULL when len is 0. */
	const unsigned char *payload;
	size_t len;
};

struct journal_stats {
	uint64_t appends;	/* records written */
	uint64_t syncs;		/* fdatasync calls on segment files */
	uint64_t dir_syncs;	/* fsync calls on the directory */
	uint64_t rotations;	/* segments started after the first */
	uint64_t write_errors;	/* appends failed by a write error */
	uint64_t bytes;		/* bytes written, frames included */
};

/* Opens (creating dir, mode 0700, if it does not exist) and recovers the
 * journal in dir; opts may be NULL for the defaults.  Recovery reads every
 * segment and checks every record (framing, dense LSNs, CRC):
 *   - an incomplete or corrupt record in the last segment is a torn write
 *     from a crash (it was never acknowledged, since acknowledgement waits
 *     for fdatasync): it and everything after it are truncated away, with
 *     a warning logged;
 *   - a bad record in any older segment, or a gap between segments, is
 *     an error: those bytes were durable once, and silently dropping
 *     acknowledged operations is worse than refusing to start.
 * Files in dir that are not named like segments are logged and ignored.
 * The directory is locked (flock) against a second opener, in this or
 * another process.  Returns 0 and *j_r, or -1 with *error_r set (a static
 * or thread-local string valid until the next journal call of this thread).
 * Cost: O(journal size) once, at start-up. */
int journal_open(const char *dir, const struct journal_options *opts,
		 struct journal **j_r, const char **error_r);

/* Syncs what was written (best effort), closes files and frees.  No other
 * thread may be using the journal or a reader of it.  Sets *j to NULL. */
void journal_free(struct journal **j);

/* Writes one record (type, payload = the parts concatenated, at most
 * JOURNAL_PARTS_MAX parts and JOURNAL_RECORD_MAX bytes) and returns its LSN
 * without waiting for it to become durable; use journal_wait_durable
 * afterwards, e.g. after fsyncing a message file in parallel.  Returns -1
 * with *error_r on a write error (see the failure policy above), on a
 * failed journal or for an oversized record. */
int journal_append_async(struct journal *j, uint8_t type,
			 const struct journal_part *parts, unsigned int nparts,
			 uint64_t *lsn_r, const char **error_r);

/* Blocks until every record up to lsn is on stable storage.  The first
 * waiting thread that finds no sync running becomes the leader and calls
 * fdatasync for everyone whose record was written before the sync began;
 * the others wait on a condition variable, so N concurrent appenders cost
 * far fewer than N syncs.  Returns 0, or -1 with *error_r when the journal
 * has failed or lsn was never assigned. */
int journal_wait_durable(struct journal *j, uint64_t lsn,
			 const char **error_r);

/* journal_append_async + journal_wait_durable: returns 0 only once the
 * record is durable. */
int journal_append(struct journal *j, uint8_t type,
		   const struct journal_part *parts, unsigned int nparts,
		   uint64_t *lsn_r, const char **error_r);

/* The LSN of the newest durable record (0 when none), the next LSN to be
 * assigned, and the oldest LSN still held (journal_trim moves it). */
uint64_t journal_durable_lsn(struct journal *j);
uint64_t journal_next_lsn(struct journal *j);
uint64_t journal_first_lsn(struct journal *j);

/* Sleeps until a record after after_lsn is durable, *stop (may be NULL)
 * is true, journal_shutdown was called, or timeout_ms passed (negative:
 * no timeout).  Returns 1 when a newer durable record exists, 0 otherwise;
 * *durable_r (may be NULL) gets the durable LSN either way.  To stop one
 * waiting thread without a lost wake-up, set its stop flag, then call
 * journal_wake: the flag is re-read under the journal lock. */
int journal_wait_new(struct journal *j, uint64_t after_lsn,
		     const atomic_bool *stop, int timeout_ms,
		     uint64_t *durable_r);
/* journal_wait_new for a thread that acts only on records of one type
 * (a sync sender on JREC_LOCAL): sleeps until a record of that type after
 * after_lsn is durable, so that records of other types do not wake it
 * one sync at a time; it reads those in bulk when one of its type comes
 * or at its timeout.  Same returns as journal_wait_new: 1 when any newer
 * durable record exists. */
int journal_wait_type(struct journal *j, uint8_t type, uint64_t after_lsn,
		      const atomic_bool *stop, int timeout_ms);
/* Wakes every thread in journal_wait_new or journal_wait_type so that it
 * re-checks. */
void journal_wake(struct journal *j);
/* Makes every current and later journal_wait_new return 0 at once (for
 * shutdown); appends keep working. */
void journal_shutdown(struct journal *j);

/* Deletes the segments all of whose records are below upto_lsn, never the
 * newest segment; the caller passes min(acknowledged by every peer,
 * covered by snapshots) + 1.  Readers already inside a deleted segment
 * finish it; new readers from below journal_first_lsn() fail.  Returns the
 * number of segments deleted, or -1 with *error_r (a file could not be
 * removed; the journal stays consistent, a later trim retries). */
int journal_trim(struct journal *j, uint64_t upto_lsn, const char **error_r);

void journal_get_stats(struct journal *j, struct journal_stats *stats_r);

/* A cursor over durable records starting at from_lsn (>= 1; it may be
 * beyond the current end, the reader then waits for it to be written).
 * Finding the start scans record headers of one segment; reading on is
 * O(1) per record.  Returns NULL with *error_r when from_lsn was trimmed. */
struct journal_reader *journal_reader_new(struct journal *j, uint64_t from_lsn,
					  const char **error_r);
/* 1 = *rec_r holds the next record (payload verified against its CRC),
 * 0 = no further durable record yet (call again later, e.g. after
 * journal_wait_new), -1 = error with *error_r (corruption, a segment
 * trimmed under the reader, I/O); after -1 the reader is unusable. */
int journal_reader_next(struct journal_reader *r,
			struct journal_record *rec_r, const char **error_r);
/* The LSN the next journal_reader_next call will return. */
uint64_t journal_reader_position(const struct journal_reader *r);
void journal_reader_free(struct journal_reader **r);

/* Calls cb for every durable record from from_lsn up to the durable end as
 * of the call, in order (replay at start-up).  cb returns 0 to go on or -1
 * to stop, which makes journal_read_from return -1 with cb's *error_r.
 * Returns 0 when done. */
typedef int journal_record_cb(const struct journal_record *rec, void *ctx,
			      const char **error_r);
int journal_read_from(struct journal *j, uint64_t from_lsn,
		      journal_record_cb *cb, void *ctx, const char **error_r);

#endif
