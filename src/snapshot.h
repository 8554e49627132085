/*
 * snapshot.h - per-user state snapshots, written atomically and read back
 * with checksum verification.
 *
 * A snapshot is the caller's encoded state of one user plus the journal
 * LSN it covers (every operation up to and including that LSN is in it).
 * Start-up loads the snapshot and replays the journal from LSN + 1; a
 * missing or corrupt snapshot is reported, never guessed at, so the caller
 * can fall back to replaying the whole journal.
 *
 * File DIR/NAME.snap:
 *
 *   magic u32 "PSN1" | LSN u64 | data length u64 | data | CRC-32C u32
 *
 * big-endian, the CRC over everything before it.  It is written to a
 * temporary file (".tmp-NAME-XXXXXX", which no valid NAME can collide
 * with), fsynced, renamed over the old snapshot and the directory fsynced:
 * after a crash either the old or the new snapshot is there, whole.
 *
 * Scheduling is the caller's: a background thread decides when a user's
 * snapshot is due (e.g. every N operations or at idle), encodes the state
 * under the user's lock, then calls snapshot_write without holding it.
 * Writing the same NAME from two threads at once is not supported (the
 * caller serialises per user); different names are independent.
 */
#ifndef PLUTO_SNAPSHOT_H
#define PLUTO_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Largest data a snapshot may hold. */
#define SNAPSHOT_DATA_MAX ((size_t)1 << 30)
/* Longest NAME. */
#define SNAPSHOT_NAME_MAX 200

/* A NAME is 1 to SNAPSHOT_NAME_MAX bytes of [A-Za-z0-9._@+=,-], not
 * starting with '.'.  Callers whose user names may hold anything else
 * should name snapshots by user id (or an encoding of the name). */
bool snapshot_name_valid(const char *name);

/* Room for a NAME and its NUL. */
#define SNAPSHOT_NAME_BUFSIZE (SNAPSHOT_NAME_MAX + 1)

/* The NAME of a user whose name may hold any byte, as the user store
 * names the user's snapshot and its other per-user files and fsck looks
 * them up: the user name with every byte outside [A-Za-z0-9._@+,-] (and
 * a leading '.') written as '=' and two upper-case hex digits.  Files on
 * disk are named this way, so the mapping must never change.  Writes a
 * snapshot_name_valid NAME into out and returns 0, or returns -1 for an
 * empty user name or one whose NAME would exceed SNAPSHOT_NAME_MAX. */
int snapshot_name_for_user(const char *user, char out[SNAPSHOT_NAME_BUFSIZE]);

/* The inverse, for listing snapshots: decodes every "=XX" (upper-case hex)
 * of name and copies the other bytes.  Writes the user name into out
 * (size bytes) and returns 0, or returns -1 for a bad escape, an escaped
 * NUL, an empty result or one that does not fit. */
int snapshot_user_for_name(const char *name, char *out, size_t size);

/* Atomically replaces DIR/NAME.snap (DIR must exist) with data and lsn.
 * Returns 0 once the snapshot is durable, or -1 with *error_r (a
 * thread-local string valid until this thread's next snapshot call), in
 * which case the old snapshot, if any, is untouched and no temporary file
 * is left behind. */
int snapshot_write(const char *dir, const char *name, uint64_t lsn,
		   const void *data, size_t len, const char **error_r);

/* Reads DIR/NAME.snap into data_r (reset first, then filled; the caller
 * owns and frees it) and *lsn_r.  Returns 1 when read and verified, 0 when
 * there is no snapshot, -1 with *error_r when it cannot be used (corrupt,
 * truncated, too large, I/O error); on 0 and -1 data_r is empty. */
int snapshot_read(const char *dir, const char *name, uint64_t *lsn_r,
		  struct buf *data_r, const char **error_r);

/* Removes DIR/NAME.snap (a missing one is fine) and syncs DIR. */
int snapshot_remove(const char *dir, const char *name, const char **error_r);

/* Removes temporary files a crash left in DIR; call at start-up before any
 * snapshot_write.  Returns how many were removed, or -1 with *error_r. */
int snapshot_clean_tmp(const char *dir, const char **error_r);

#endif
