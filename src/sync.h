/*
 * sync.h - the replication links of a worker or of storage (DESIGN.md
 * section 5; doc/replication.md describes the protocol, and
 * doc/replication-wire.md the bytes).
 *
 * Topology.  A worker has one peer, "storage"; storage has one peer per
 * configured worker.  Every node listens on its SyncPort for internal
 * mutual TLS from its peers only, and runs one sender thread per peer
 * that connects to the peer's PublicIP:SyncPort.  Each direction of
 * replication is therefore its own TCP connection: on it the sender is
 * the TLS client and ships OPS frames, the receiver is the TLS server and
 * answers with ACK frames.
 *
 * Sender (one thread per peer, "sync-tx").  Connects, checks that the
 * server's certificate names the peer, exchanges HELLO, and resumes from
 * the position the peer's HELLO says it holds durably: it reads this
 * node's journal (the send log) from there, keeps the records
 * user_store_record_for_peer() selects, packs them into OPS frames (many
 * per write when there is a backlog) and, once caught up, sleeps in
 * journal_wait_new() until the next record is durable.  A second, small
 * thread per link ("sync-ack") reads the peer's ACK frames, so that
 * acknowledgements never wait behind a large write; either thread ends
 * the link for both.  A broken link is retried with bounded exponential
 * backoff (50 ms doubling to 5 s, reset once a link comes up), forever:
 * a peer that is down only accumulates backlog, which is logged with its
 * size every minute.  The position every peer acknowledged is kept in
 * CRDTLayerRoot/sync/<peer>.acked (rewritten atomically at most every
 * 100 ms) for reporting and for trimming the journal.
 *
 * Receiver (one thread per incoming link, from the SyncPort listener).
 * Accepts only a client certificate of the internal CA naming a
 * configured peer; the HELLO and every OPS frame must carry that same
 * name.  Each operation is made durable in the journal (the receive log)
 * by user_store_receive() before the batch is acknowledged with the
 * highest LSN of the frame; duplicates are acknowledged and dropped.  The
 * applier thread (user_store_start_applier) applies them in causal order.
 * A malformed or unexpected frame, or an operation the store refuses, is
 * logged and the link closed; the sender then reconnects and resumes
 * from what was durably received.  When a peer opens a new link while an
 * old one still looks alive (its host vanished without a FIN), the old
 * one is closed first, so a peer has at most one receiving thread.
 *
 * Nothing a peer sends can make the node exit.
 *
 * Threads and locks: see the top of sync.c.
 */
#ifndef PLUTO_SYNC_H
#define PLUTO_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "tls.h"
#include "user_store.h"

struct sync;

/* Knobs with sane defaults, exposed for tests. */
struct sync_tuning {
	unsigned backoff_min_ms;	/* first retry delay: 50 */
	unsigned backoff_max_ms;	/* cap of the doubling: 5000 */
	/* How often the backlog of an unreachable peer is logged: 60000. */
	unsigned report_interval_ms;
	/* A link whose peer acknowledges nothing (or stalls inside a frame)
	 * for this long is closed and reopened: 30000. */
	unsigned stall_timeout_ms;
	/* Soft payload size of one OPS frame: SYNC_MSG_BATCH_BUDGET_DEFAULT. */
	size_t batch_budget;
	/* How often the journal is trimmed below what every peer has
	 * acknowledged (user_store_trim): 60000; 0 never trims. */
	unsigned trim_interval_ms;
};

void sync_tuning_defaults(struct sync_tuning *tuning_r);

/*
 * Starts replication for node_name ("storage" or a worker's name) of
 * config: binds its SyncPort (ListenIP), starts the sender threads and
 * the store's applier thread (user_store_start_applier; call it nowhere
 * else).  IntlConnTimeout bounds every connect and handshake.  config,
 * store and internal_creds (tls_creds_internal with this node's
 * certificate) are borrowed until sync_stop.  Returns 0 and *sync_r, or
 * -1 with *error_r (thread-local, valid until the next failing sync call
 * of this thread), with nothing left running.
 */
int sync_start(const struct pluto_config *config, const char *node_name,
	       struct user_store *store, struct tls_creds *internal_creds,
	       struct sync **sync_r, const char **error_r);
/* sync_start with explicit knobs (tuning may be NULL for the defaults). */
int sync_start_tuned(const struct pluto_config *config, const char *node_name,
		     struct user_store *store,
		     struct tls_creds *internal_creds,
		     const struct sync_tuning *tuning, struct sync **sync_r,
		     const char **error_r);

/* Stops the listener, closes every link, wakes and joins every thread,
 * writes the acknowledged positions and frees.  The applier keeps running
 * until user_store_free.  NULL-safe; sets *sync to NULL.  Call it before
 * user_store_free and tls_creds_free. */
void sync_stop(struct sync **sync);

/* Closes every current link (both directions); the senders reconnect
 * after their backoff.  For operators' tooling and tests. */
void sync_break_links(struct sync *sync);

struct sync_peer_status {
	bool connected;		/* the sending link is up (past HELLO) */
	bool receiving;		/* a receiving link from the peer is up */
	/* Highest LSN of this node's journal the peer acknowledged. */
	uint64_t acked_lsn;
	/* Every record for the peer up to here is acknowledged (skipped
	 * records count): what trimming may use. */
	uint64_t safe_lsn;
	uint64_t sent_lsn;	/* highest LSN shipped on the current link */
	uint64_t links_up;	/* sending links established so far */
};

/* The status of peer; returns -1 when peer is not one of ours. */
int sync_peer_status(struct sync *sync, const char *peer,
		     struct sync_peer_status *status_r);

/* Counters since sync_start, all nodes' links together. */
struct sync_stats {
	uint64_t frames_sent;		/* OPS frames */
	uint64_t ops_sent;
	uint64_t links_accepted;	/* receiving links past HELLO */
	uint64_t links_rejected;	/* failed TLS or peer checks */
	uint64_t protocol_errors;	/* links closed for a bad frame/op */
	uint64_t ops_stored;		/* received and made durable */
	uint64_t ops_duplicate;		/* received again, dropped */
	uint64_t acks_sent;
};

void sync_get_stats(struct sync *sync, struct sync_stats *stats_r);

#endif
