/*
 * sync.c - replication links: one sender thread per peer (plus a small
 * thread reading that link's acknowledgements), one receiving thread per
 * incoming link, and the SyncPort listener that starts the latter.
 *
 * The journal is both logs.  A sender reads it with its own reader and
 * ships what the user store selects for its peer; the receiver hands each
 * operation to user_store_receive(), which appends it to the same journal
 * durably before we acknowledge.  Resumption needs no state of ours: the
 * peer's HELLO says how far it holds our journal, and we read on from
 * there.  The acknowledged positions we keep on disk serve reporting and
 * trimming only, so they are written without fsync: a value that a crash
 * loses or garbles reads back lower (or as 0), which is always safe.
 *
 * Threads per peer:
 *   sync-tx   connect, HELLO, ship; owns the outgoing conn and its reader;
 *   sync-ack  reads ACK frames of the outgoing conn (one reader and one
 *             writer on a conn is what tls.h allows);
 *   sync-rx   one per incoming link (server.c thread), owns its conn.
 * A link ends when either tx or ack fails: the one that fails sets
 * peer->link_down, wakes the conn (and journal_wait_type), and tx joins
 * ack before closing the conn.
 *
 * Lock order: sync->sleep_lock and peer->lock are never held together
 * and never during I/O; peer->lock guards the conn pointers that other
 * threads may wake (tx_conn, rx_conn, rx_active).  Counters are atomics.
 */
#include "autoconfig.h"

#include "sync.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jrec.h"
#include "journal.h"
#include "log.h"
#include "net.h"
#include "server.h"
#include "sync_msg.h"
#include "vclock.h"

#define SYNC_LISTEN_BACKLOG 64
/* How often a caught-up sender wakes when nothing happens, and how soon
 * it writes a changed acknowledged position. */
#define SYNC_IDLE_WAIT_MS 1000
#define SYNC_PERSIST_MS 100
/* At most this many OPS frames already here share one fdatasync and
 * one ACK. */
#define SYNC_RX_COALESCE 64
/* Writes to a peer that reads nothing fail after this long. */
#define SYNC_WRITE_TIMEOUT_MIN_MS 10000

struct sync_peer {
	struct sync *sync;
	char name[VCLOCK_NAME_MAX + 1];
	char ip[64];
	uint16_t port;
	char *acked_path;

	pthread_t tx_thread;
	bool tx_started;

	/* The stop flag of the current outgoing link (journal_wait_type
	 * reads it under the journal lock). */
	atomic_bool link_down;

	/* Guards the three fields below. */
	pthread_mutex_t lock;
	pthread_cond_t rx_cond;		/* rx_active dropped */
	struct conn *tx_conn;
	struct conn *rx_conn;
	bool rx_active;

	atomic_bool connected;
	_Atomic uint64_t acked;		/* written by sync-ack (and tx) */
	_Atomic uint64_t sent;		/* written by sync-tx */
	_Atomic uint64_t safe;		/* written by sync-tx */
	_Atomic int64_t ack_progress_ms;/* last time acked moved or sent */
	_Atomic uint64_t links_up;

	/* sync-tx only (and sync_stop after joining it). */
	uint64_t acked_seen;		/* highest ACK of any earlier link */
	uint64_t persisted;
	int64_t persisted_ms;
};

struct sync {
	const struct pluto_config *config;
	char node_name[VCLOCK_NAME_MAX + 1];
	struct user_store *store;
	struct journal *journal;
	struct tls_creds *creds;
	struct sync_tuning tuning;
	unsigned timeout_ms;
	unsigned write_timeout_ms;
	char *state_dir;

	struct server *server;
	pthread_t trim_thread;
	bool trim_started;
	const char **accept_names;	/* NULL-terminated, borrowed names */
	struct sync_peer *peers;
	size_t peer_count;

	atomic_bool stopping;
	pthread_mutex_t sleep_lock;
	pthread_cond_t sleep_cond;	/* broadcast by sync_stop */

	_Atomic uint64_t frames_sent, ops_sent, links_accepted,
		links_rejected, protocol_errors, ops_stored, ops_duplicate,
		acks_sent;
};

static const char *set_error(const char *fmt, ...) PLUTO_PRINTF(1, 2);

static const char *set_error(const char *fmt, ...)
{
	static _Thread_local char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return buf;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sync_tuning_defaults(struct sync_tuning *t)
{
	memset(t, 0, sizeof(*t));
	t->backoff_min_ms = 50;
	t->backoff_max_ms = 5000;
	t->report_interval_ms = 60000;
	t->stall_timeout_ms = 30000;
	t->batch_budget = SYNC_MSG_BATCH_BUDGET_DEFAULT;
	t->trim_interval_ms = 60000;
}

/* Small frames must leave at once (replication lag), and a peer whose
 * host vanished must eventually show as a dead socket. */
static void tune_socket(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
#ifdef TCP_KEEPIDLE
	{
		int idle = 60, intvl = 10, cnt = 6;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle,
				 sizeof(idle));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
				 sizeof(intvl));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt,
				 sizeof(cnt));
	}
#endif
}

static struct sync_peer *find_peer(struct sync *sync, const char *name)
{
	for (size_t i = 0; i < sync->peer_count; i++) {
		if (strcmp(sync->peers[i].name, name) == 0)
			return &sync->peers[i];
	}
	return NULL;
}

/*
 * Frames on a conn.
 */

/*
 * Reads one whole frame into in (reset first) and parses it into *frame
 * (clear it before the next call: entries point into in).  The header is
 * checked byte by byte as it arrives, so garbage is refused before any
 * length is believed.  When may_retime is set (the caller is the conn's
 * only user), the wait for the first byte has no timeout and the rest of
 * the frame must keep coming within mid_ms per wait.  Returns 1 for a
 * frame, 0 when the conn ended cleanly between frames (EOF, woken), -1
 * with *error_r otherwise.
 */
static int read_frame(struct conn *c, struct buf *in,
		      struct sync_msg_frame *frame, bool may_retime,
		      unsigned mid_ms, unsigned write_ms, const char **error_r)
{
	unsigned char hdr[SYNC_MSG_HEADER_SIZE];
	size_t have = 0, n = 0, frame_len = 0, consumed = 0;
	const char *why = NULL;
	int st, ret;

	buf_reset(in);
	memset(frame, 0, sizeof(*frame));
	if (may_retime)
		(void)conn_set_timeouts(c, 0, write_ms);
	for (;;) {
		st = conn_read_some(c, hdr + have, sizeof(hdr) - have, &n,
				    &why);
		if (st != CONN_OK) {
			if (have == 0 && (st == CONN_EOF || st == CONN_WOKEN))
				return 0;
			*error_r = set_error("reading a frame: %s%s%s",
					     conn_status_str(st),
					     st == CONN_ERROR ? ": " : "",
					     st == CONN_ERROR ? why : "");
			return -1;
		}
		if (have == 0 && may_retime)
			(void)conn_set_timeouts(c, mid_ms, write_ms);
		have += n;
		ret = sync_msg_peek(hdr, have, &frame_len, &why);
		if (ret < 0) {
			*error_r = set_error("bad frame header: %s", why);
			return -1;
		}
		if (ret == 1)
			break;
	}
	if (frame_len < sizeof(hdr) || frame_len > SYNC_MSG_FRAME_MAX ||
	    buf_reserve(in, frame_len) < 0) {
		*error_r = "cannot buffer the frame";
		return -1;
	}
	memcpy(in->data, hdr, sizeof(hdr));
	st = conn_read_exact(c, in->data + sizeof(hdr),
			     frame_len - sizeof(hdr), &why);
	if (st != CONN_OK) {
		*error_r = set_error("truncated frame: %s%s%s",
				     conn_status_str(st),
				     st == CONN_ERROR ? ": " : "",
				     st == CONN_ERROR ? why : "");
		return -1;
	}
	in->len = frame_len;
	ret = sync_msg_parse(in->data, in->len, frame, &consumed, &why);
	if (ret < 0) {
		*error_r = set_error("malformed frame: %s", why);
		return -1;
	}
	if (ret == 0 || consumed != frame_len) {
		sync_msg_frame_clear(frame);
		*error_r = "frame length disagrees with its header";
		return -1;
	}
	return 1;
}

static int write_all(struct conn *c, const struct buf *out,
		     const char **error_r)
{
	const char *why = NULL;
	int st = conn_write(c, out->data, out->len, &why);

	if (st != CONN_OK) {
		*error_r = set_error("writing: %s%s%s", conn_status_str(st),
				     st == CONN_ERROR ? ": " : "",
				     st == CONN_ERROR ? why : "");
		return -1;
	}
	return 0;
}

/* Sends our HELLO: our name, how far we hold peer's journal, our clock. */
static int send_hello(struct sync *sync, struct conn *c, const char *peer,
		      const char **error_r)
{
	struct buf out = BUF_INIT;
	struct vclock *clock = user_store_link_clock(sync->store, peer);
	const char *why = NULL;
	int ret = -1;

	if (clock == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (sync_msg_encode_hello(&out, sync->node_name,
				  user_store_received_lsn(sync->store, peer),
				  clock, &why) < 0)
		*error_r = set_error("cannot encode HELLO: %s", why);
	else
		ret = write_all(c, &out, error_r);
	vclock_free(&clock);
	buf_free(&out);
	return ret;
}

/* Reads the peer's HELLO and checks that it names the TLS peer. */
static int recv_hello(struct sync *sync, struct conn *c, const char *peer,
		      struct buf *in, uint64_t *lsn_r, const char **error_r)
{
	struct sync_msg_frame frame;
	int ret;

	ret = read_frame(c, in, &frame, false, 0, sync->write_timeout_ms,
			 error_r);
	if (ret == 0) {
		*error_r = "closed before HELLO";
		return -1;
	}
	if (ret < 0)
		return -1;
	ret = -1;
	if (frame.type != SYNC_MSG_HELLO)
		*error_r = set_error("%s frame before HELLO",
				     sync_msg_type_name(frame.type));
	else if (strcmp(frame.sender, peer) != 0)
		*error_r = set_error("HELLO names %s, the certificate %s",
				     frame.sender, peer);
	else {
		*lsn_r = frame.lsn;
		ret = 0;
	}
	sync_msg_frame_clear(&frame);
	return ret;
}

/*
 * Acknowledged positions on disk.
 */

static uint64_t acked_read(const char *path)
{
	char text[32];
	ssize_t n;
	char *end;
	unsigned long long v;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\n') {
		log_warnx("ignoring unreadable %s", path);
		return 0;
	}
	return (uint64_t)v;
}

/* Replaces the file atomically; no fsync (see the top of the file). */
static void acked_write(struct sync_peer *peer, uint64_t lsn)
{
	char tmp[4096], text[32];
	int fd, len;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", peer->acked_path) >=
	    (int)sizeof(tmp))
		return;
	len = snprintf(text, sizeof(text), "%" PRIu64 "\n", lsn);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_warn("cannot write %s", tmp);
		return;
	}
	if (write(fd, text, (size_t)len) != len) {
		log_warn("cannot write %s", tmp);
		close(fd);
		unlink(tmp);
		return;
	}
	close(fd);
	if (rename(tmp, peer->acked_path) < 0) {
		log_warn("cannot rename %s", tmp);
		unlink(tmp);
		return;
	}
	peer->persisted = lsn;
}

static void persist_if_due(struct sync_peer *peer, bool force)
{
	uint64_t safe = atomic_load(&peer->safe);
	int64_t now = now_ms();

	if (safe == peer->persisted)
		return;
	if (!force && now - peer->persisted_ms < SYNC_PERSIST_MS)
		return;
	peer->persisted_ms = now;
	acked_write(peer, safe);
}

/*
 * The acknowledgement reader of an outgoing link.
 */

struct ack_ctx {
	struct sync_peer *peer;
	struct conn *conn;
};

static void end_link(struct sync_peer *peer, struct conn *c)
{
	atomic_store(&peer->link_down, true);
	conn_wake(c);
	journal_wake(peer->sync->journal);
}

static void *ack_main(void *arg)
{
	struct ack_ctx *ctx = arg;
	struct sync_peer *peer = ctx->peer;
	struct buf in = BUF_INIT;
	struct sync_msg_frame frame;
	const char *why = NULL;

	log_thread_name("sync-ack");
	log_context_set("peer", peer->name);
	for (;;) {
		int ret = read_frame(ctx->conn, &in, &frame, false, 0, 0, &why);

		if (ret == 0) {
			if (!atomic_load(&peer->link_down))
				log_info("sync: %s closed the link",
					 peer->name);
			break;
		}
		if (ret < 0) {
			if (!atomic_load(&peer->link_down))
				log_warnx("sync: link to %s: %s", peer->name,
					  why);
			break;
		}
		if (frame.type != SYNC_MSG_ACK) {
			log_warnx("sync: unexpected %s frame from %s on its "
				  "acknowledgement stream; closing",
				  sync_msg_type_name(frame.type), peer->name);
			sync_msg_frame_clear(&frame);
			break;
		}
		if (frame.lsn > atomic_load(&peer->sent)) {
			log_warnx("sync: %s acknowledges record %" PRIu64
				  " that was never sent; closing",
				  peer->name, frame.lsn);
			sync_msg_frame_clear(&frame);
			break;
		}
		if (frame.lsn > atomic_load(&peer->acked)) {
			atomic_store(&peer->acked, frame.lsn);
			atomic_store(&peer->ack_progress_ms, now_ms());
		}
		sync_msg_frame_clear(&frame);
	}
	buf_free(&in);
	end_link(peer, ctx->conn);
	log_context_clear();
	return NULL;
}

/*
 * The sender.
 */

/* The position below which everything meant for the peer is
 * acknowledged: once the peer acknowledged the last record we shipped,
 * every record we scanned (shipped or skipped) is covered. */
static void update_safe(struct sync_peer *peer, uint64_t scanned)
{
	uint64_t acked = atomic_load(&peer->acked);
	uint64_t safe = acked >= atomic_load(&peer->sent) ? scanned : acked;

	if (safe > atomic_load(&peer->safe))
		atomic_store(&peer->safe, safe);
}

static int send_batch(struct sync_peer *peer, struct conn *c,
		      struct sync_msg_batch *b, struct buf *out,
		      const char **error_r)
{
	struct sync *sync = peer->sync;
	const char *why = NULL;
	uint32_t count = b->count;

	if (sync_msg_batch_finish(b, &why) < 0) {
		sync_msg_batch_abort(b);
		*error_r = set_error("cannot finish a batch: %s", why);
		return -1;
	}
	if (write_all(c, out, error_r) < 0)
		return -1;
	buf_reset(out);
	atomic_fetch_add(&sync->frames_sent, 1);
	atomic_fetch_add(&sync->ops_sent, count);
	return 0;
}

/*
 * Ships the journal from after resume until the link fails or we stop.
 * Returns when the link is to be closed (the reason is logged).
 */
static void ship(struct sync_peer *peer, struct conn *c,
		 struct journal_reader *reader, uint64_t resume)
{
	struct sync *sync = peer->sync;
	struct buf out = BUF_INIT;
	struct sync_msg_batch batch;
	struct journal_record rec;
	bool open = false;
	uint64_t scanned = resume;
	const char *why = NULL;

	while (!atomic_load(&peer->link_down) &&
	       !atomic_load(&sync->stopping)) {
		struct jrec jrec;
		int ret = journal_reader_next(reader, &rec, &why);

		if (ret < 0) {
			log_error("sync: cannot read the journal for %s: %s",
				  peer->name, why);
			break;
		}
		if (ret == 0) {
			int64_t idle;
			bool pending;

			if (open) {
				open = false;
				if (send_batch(peer, c, &batch, &out, &why) <
				    0) {
					log_warnx("sync: link to %s: %s",
						  peer->name, why);
					break;
				}
			}
			update_safe(peer, scanned);
			persist_if_due(peer, false);
			idle = now_ms() - atomic_load(&peer->ack_progress_ms);
			if (atomic_load(&peer->acked) <
				    atomic_load(&peer->sent) &&
			    idle > (int64_t)sync->tuning.stall_timeout_ms) {
				log_warnx("sync: %s acknowledged nothing for "
					  "%" PRId64 " ms; reconnecting",
					  peer->name, idle);
				break;
			}
			pending = atomic_load(&peer->safe) != peer->persisted ||
				  atomic_load(&peer->acked) <
					  atomic_load(&peer->sent);
			/* Only our own ops are shipped: received ones,
			 * storage's bulk, are scanned in one go when an op
			 * of ours comes or at the timeout. */
			journal_wait_type(sync->journal, JREC_LOCAL,
					  journal_reader_position(reader) - 1,
					  &peer->link_down,
					  pending ? SYNC_PERSIST_MS
						  : SYNC_IDLE_WAIT_MS);
			continue;
		}
		if (rec.type != JREC_LOCAL) {
			scanned = rec.lsn;
			continue;
		}
		if (jrec_decode(&rec, &jrec, &why) < 0) {
			/* The store could not have replayed it either. */
			log_error("sync: journal record %" PRIu64
				  " is unreadable (%s); not shipped",
				  rec.lsn, why);
			scanned = rec.lsn;
			continue;
		}
		if (!user_store_record_for_peer(sync->store, &jrec,
						peer->name)) {
			jrec_clear(&jrec);
			scanned = rec.lsn;
			continue;
		}
		for (int attempt = 0; attempt < 2; attempt++) {
			if (!open) {
				if (sync_msg_batch_begin(
					    &batch, &out, sync->node_name,
					    sync->tuning.batch_budget,
					    &why) < 0) {
					ret = -1;
					break;
				}
				open = true;
			}
			ret = sync_msg_batch_add(&batch, rec.lsn, jrec.clock,
						 jrec.op, jrec.op_len, &why);
			if (ret != 0)
				break;
			/* Full: send it and start the next with this one. */
			open = false;
			if (send_batch(peer, c, &batch, &out, &why) < 0) {
				ret = -2;
				break;
			}
		}
		jrec_clear(&jrec);
		if (ret == -2) {
			log_warnx("sync: link to %s: %s", peer->name, why);
			break;
		}
		if (ret != 1) {
			/* Only a bug makes a record unsendable; shipping the
			 * rest keeps the peer as close as it can get. */
			log_error("sync: journal record %" PRIu64
				  " cannot be sent to %s: %s",
				  rec.lsn, peer->name, why);
			scanned = rec.lsn;
			continue;
		}
		if (atomic_load(&peer->acked) >= atomic_load(&peer->sent))
			atomic_store(&peer->ack_progress_ms, now_ms());
		atomic_store(&peer->sent, rec.lsn);
		scanned = rec.lsn;
	}
	if (open)
		sync_msg_batch_abort(&batch);
	buf_free(&out);
	update_safe(peer, scanned);
}

/* Publishes or withdraws the outgoing conn so sync_stop can wake it.
 * Returns false (nothing published) when stopping. */
static bool publish_tx(struct sync_peer *peer, struct conn *c)
{
	bool ok = true;

	pthread_mutex_lock(&peer->lock);
	if (c != NULL && atomic_load(&peer->sync->stopping))
		ok = false;
	else
		peer->tx_conn = c;
	pthread_mutex_unlock(&peer->lock);
	return ok;
}

/*
 * One outgoing link, from connect to close.  *up_r tells whether it got
 * past HELLO (the backoff is then reset).  quiet: the peer was already
 * failing, so connection failures are logged at debug level only.
 */
static void sender_link(struct sync_peer *peer, bool quiet, bool *up_r)
{
	struct sync *sync = peer->sync;
	struct journal_reader *reader = NULL;
	struct conn *c;
	struct buf in = BUF_INIT;
	struct ack_ctx actx;
	pthread_t ack_thread;
	uint64_t resume = 0, durable;
	const char *why = NULL;
	int fd;

	*up_r = false;
	atomic_store(&peer->link_down, false);
	if (atomic_load(&sync->stopping))
		return;
	fd = net_connect(peer->ip, peer->port, sync->timeout_ms, &why);
	if (fd < 0) {
		if (quiet)
			log_debug("sync: cannot connect to %s: %s", peer->name,
				  why);
		else
			log_warnx("sync: cannot connect to %s: %s",
				  peer->name, why);
		return;
	}
	tune_socket(fd);
	c = conn_new(fd);
	if (c == NULL)
		return;
	if (!publish_tx(peer, c)) {
		conn_close(&c);
		return;
	}
	if (conn_set_timeouts(c, sync->timeout_ms, sync->write_timeout_ms) <
		    0 ||
	    conn_tls_client(c, sync->creds, peer->name, sync->timeout_ms,
			    &why) < 0) {
		log_warnx("sync: TLS with %s at %s port %u failed: %s",
			  peer->name, peer->ip, (unsigned)peer->port,
			  why != NULL ? why : "cannot set timeouts");
		goto out;
	}
	if (send_hello(sync, c, peer->name, &why) < 0 ||
	    recv_hello(sync, c, peer->name, &in, &resume, &why) < 0) {
		log_warnx("sync: handshake with %s failed: %s", peer->name,
			  why);
		goto out;
	}
	durable = journal_durable_lsn(sync->journal);
	if (resume > durable) {
		/* Resuming would skip records we have not written yet, and
		 * the peer would never see them under those numbers. */
		log_error("sync: %s claims to hold our journal up to record "
			  "%" PRIu64 ", but it ends at %" PRIu64 " (was this "
			  "node's data replaced?); not replicating to it",
			  peer->name, resume, durable);
		goto out;
	}
	if (resume < peer->acked_seen)
		log_warnx("sync: %s resumes after record %" PRIu64
			  ", below the %" PRIu64 " it acknowledged before "
			  "(its data was restored?); sending again",
			  peer->name, resume, peer->acked_seen);
	/* Records below the journal's start were trimmed only once every
	 * peer had acknowledged all of them meant for it (its HELLO counts
	 * only records it received, so it may name an earlier position
	 * when the rest were not for it): resume at the start. */
	if (resume + 1 < journal_first_lsn(sync->journal))
		resume = journal_first_lsn(sync->journal) - 1;
	reader = journal_reader_new(sync->journal, resume + 1, &why);
	if (reader == NULL) {
		log_error("sync: cannot resume %s after record %" PRIu64
			  ": %s",
			  peer->name, resume, why);
		goto out;
	}
	atomic_store(&peer->acked, resume);
	atomic_store(&peer->sent, resume);
	atomic_store(&peer->safe, resume);
	atomic_store(&peer->ack_progress_ms, now_ms());
	/* From now on the ack reader owns reading: no read timeout (an
	 * idle link is quiet), writes stay bounded. */
	if (conn_set_timeouts(c, 0, sync->write_timeout_ms) < 0)
		goto out;
	actx.peer = peer;
	actx.conn = c;
	if (server_thread_start(&ack_thread, true, ack_main, &actx) < 0) {
		log_warn("sync: cannot start the acknowledgement reader");
		goto out;
	}
	*up_r = true;
	atomic_store(&peer->connected, true);
	atomic_fetch_add(&peer->links_up, 1);
	log_info("sync: link to %s up, resuming after record %" PRIu64,
		 peer->name, resume);
	ship(peer, c, reader, resume);
	end_link(peer, c);
	pthread_join(ack_thread, NULL);
	if (atomic_load(&peer->acked) > peer->acked_seen)
		peer->acked_seen = atomic_load(&peer->acked);
	atomic_store(&peer->connected, false);
	log_info("sync: link to %s down (acknowledged up to %" PRIu64 ")",
		 peer->name, atomic_load(&peer->acked));
out:
	publish_tx(peer, NULL);
	conn_close(&c);
	journal_reader_free(&reader);
	buf_free(&in);
	persist_if_due(peer, true);
}

/* Sleeps up to ms, or until sync_stop. */
static void nap(struct sync *sync, unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&sync->sleep_lock);
	while (!atomic_load(&sync->stopping)) {
		if (pthread_cond_timedwait(&sync->sleep_cond, &sync->sleep_lock,
					   &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&sync->sleep_lock);
}

/* The journal may lose what every peer has acknowledged (and, which
 * user_store_trim sees to, what snapshots cover).  A peer that never
 * connected holds everything: safe stays 0. */
static void *trim_main(void *arg)
{
	struct sync *sync = arg;

	log_thread_name("sync-trim");
	for (;;) {
		uint64_t safe = UINT64_MAX;
		const char *why = NULL;

		nap(sync, sync->tuning.trim_interval_ms);
		if (atomic_load(&sync->stopping))
			break;
		for (size_t i = 0; i < sync->peer_count; i++) {
			uint64_t s = atomic_load(&sync->peers[i].safe);
			if (s < safe)
				safe = s;
		}
		if (safe == UINT64_MAX || safe == 0)
			continue;
		if (user_store_trim(sync->store, safe, &why) < 0)
			log_warnx("sync: %s", why);
	}
	return NULL;
}

/* What an unreachable peer has not acknowledged yet: counted with a
 * reader of our own that only ever reads what is new since the last
 * report, so a report costs what was written since the one before. */
struct backlog {
	struct journal_reader *reader;
	uint64_t base;		/* counted from base + 1 */
	uint64_t ops, bytes;
};

static void backlog_report(struct sync_peer *peer, struct backlog *bl,
			   int64_t down_ms)
{
	struct sync *sync = peer->sync;
	struct journal_record rec;
	const char *why = NULL;
	uint64_t safe = atomic_load(&peer->safe);
	int ret;

	if (bl->reader == NULL || bl->base != safe) {
		journal_reader_free(&bl->reader);
		bl->base = safe;
		bl->ops = bl->bytes = 0;
		bl->reader = journal_reader_new(sync->journal, safe + 1, &why);
		if (bl->reader == NULL) {
			log_warnx("sync: %s unreachable for %" PRId64 " s; "
				  "cannot measure its backlog: %s",
				  peer->name, down_ms / 1000, why);
			return;
		}
	}
	while ((ret = journal_reader_next(bl->reader, &rec, &why)) == 1) {
		struct jrec jrec;

		if (jrec_decode(&rec, &jrec, &why) < 0)
			continue;
		if (user_store_record_for_peer(sync->store, &jrec,
					       peer->name)) {
			bl->ops++;
			bl->bytes += jrec.op_len;
		}
		jrec_clear(&jrec);
	}
	if (ret < 0) {
		journal_reader_free(&bl->reader);
		log_warnx("sync: %s unreachable for %" PRId64 " s; "
			  "cannot measure its backlog: %s",
			  peer->name, down_ms / 1000, why);
		return;
	}
	log_warnx("sync: %s unreachable for %" PRId64 " s; backlog %" PRIu64
		  " operations, %" PRIu64 " bytes (journal after record "
		  "%" PRIu64 ")",
		  peer->name, down_ms / 1000, bl->ops, bl->bytes, safe);
}

static void *sender_main(void *arg)
{
	struct sync_peer *peer = arg;
	struct sync *sync = peer->sync;
	struct backlog bl = { NULL, 0, 0, 0 };
	unsigned backoff = sync->tuning.backoff_min_ms;
	int64_t down_since = now_ms(), last_report = down_since;
	bool failing = false;

	log_thread_name("sync-tx");
	log_context_set("peer", peer->name);
	while (!atomic_load(&sync->stopping)) {
		bool up = false;
		int64_t now;

		sender_link(peer, failing, &up);
		if (atomic_load(&sync->stopping))
			break;
		now = now_ms();
		if (up) {
			backoff = sync->tuning.backoff_min_ms;
			down_since = last_report = now;
			failing = false;
			journal_reader_free(&bl.reader);
		} else {
			failing = true;
			if (now - last_report >=
			    (int64_t)sync->tuning.report_interval_ms) {
				backlog_report(peer, &bl, now - down_since);
				last_report = now;
			}
		}
		nap(sync, backoff);
		if (!up) {
			backoff = backoff > sync->tuning.backoff_max_ms / 2
					  ? sync->tuning.backoff_max_ms
					  : backoff * 2;
		}
	}
	journal_reader_free(&bl.reader);
	log_context_clear();
	return NULL;
}

/*
 * The receiver.
 */

/* Makes c the peer's only receiving link, closing an older one first. */
static bool claim_rx(struct sync_peer *peer, struct conn *c)
{
	bool ok;

	pthread_mutex_lock(&peer->lock);
	while (peer->rx_active) {
		if (peer->rx_conn != NULL) {
			log_info("sync: %s opened a new link; closing the "
				 "old one",
				 peer->name);
			conn_wake(peer->rx_conn);
			peer->rx_conn = NULL;
		}
		pthread_cond_wait(&peer->rx_cond, &peer->lock);
	}
	ok = !atomic_load(&peer->sync->stopping);
	if (ok) {
		peer->rx_active = true;
		peer->rx_conn = c;
	}
	pthread_mutex_unlock(&peer->lock);
	return ok;
}

static void release_rx(struct sync_peer *peer)
{
	pthread_mutex_lock(&peer->lock);
	peer->rx_active = false;
	peer->rx_conn = NULL;
	pthread_cond_broadcast(&peer->rx_cond);
	pthread_mutex_unlock(&peer->lock);
}

/* Writes one OPS frame's entries to the journal without waiting for
 * them; *written_r (untouched if nothing new) gets the journal position
 * to wait for.  Returns the highest LSN to acknowledge once that is
 * durable, or 0 after logging why the link must close. */
static uint64_t receive_ops(struct sync *sync, struct sync_peer *peer,
			    const struct sync_msg_frame *frame,
			    uint64_t *written_r)
{
	uint64_t highest = 0;

	for (size_t i = 0; i < frame->entry_count; i++) {
		const struct sync_msg_entry *e = &frame->entries[i];
		const char *why = NULL;
		uint64_t lsn = 0;
		int ret = user_store_receive_async(sync->store, peer->name,
						   e->lsn, e->clock,
						   e->payload, e->payload_len,
						   &lsn, &why);

		if (ret < 0) {
			log_warnx("sync: operation %" PRIu64 " from %s "
				  "refused: %s; closing the link",
				  e->lsn, peer->name, why);
			return 0;
		}
		if (ret == 0) {
			atomic_fetch_add(&sync->ops_duplicate, 1);
		} else {
			atomic_fetch_add(&sync->ops_stored, 1);
			*written_r = lsn;
		}
		highest = e->lsn;
	}
	return highest;
}

/* Waits until the journal holds *written durably (0: nothing to wait
 * for); false after logging when the journal failed. */
static bool received_durable(struct sync *sync, struct sync_peer *peer,
			     uint64_t *written)
{
	const char *why = NULL;

	if (*written == 0)
		return true;
	if (journal_wait_durable(sync->journal, *written, &why) < 0) {
		log_error("sync: cannot store what %s sent: %s", peer->name,
			  why);
		return false;
	}
	*written = 0;
	return true;
}

/* Reads OPS frames and acknowledges them once durable.  Frames already
 * here (a sender with a backlog) are written before the wait, so that
 * one fdatasync and one ACK cover them all. */
static void receive_loop(struct sync *sync, struct sync_peer *peer,
			 struct conn *c, struct buf *in)
{
	struct buf out = BUF_INIT;
	struct sync_msg_frame frame;
	const char *why = NULL;
	uint64_t written = 0, ack = 0;
	unsigned unacked_frames = 0;

	for (;;) {
		uint64_t highest;
		int ret = read_frame(c, in, &frame, true,
				     sync->tuning.stall_timeout_ms,
				     sync->write_timeout_ms, &why);

		if (ret == 0) {
			log_info("sync: link from %s closed", peer->name);
			break;
		}
		if (ret < 0) {
			if (conn_is_woken(c)) {
				log_info("sync: link from %s closed",
					 peer->name);
			} else {
				log_warnx("sync: link from %s: %s; closing",
					  peer->name, why);
				atomic_fetch_add(&sync->protocol_errors, 1);
			}
			break;
		}
		if (frame.type != SYNC_MSG_OPS) {
			log_warnx("sync: unexpected %s frame from %s; closing",
				  sync_msg_type_name(frame.type), peer->name);
			atomic_fetch_add(&sync->protocol_errors, 1);
			sync_msg_frame_clear(&frame);
			break;
		}
		if (strcmp(frame.sender, peer->name) != 0) {
			log_warnx("sync: OPS frame from %s names %s; closing",
				  peer->name, frame.sender);
			atomic_fetch_add(&sync->protocol_errors, 1);
			sync_msg_frame_clear(&frame);
			break;
		}
		highest = receive_ops(sync, peer, &frame, &written);
		sync_msg_frame_clear(&frame);
		if (highest == 0) {
			atomic_fetch_add(&sync->protocol_errors, 1);
			break;
		}
		if (highest > ack)
			ack = highest;
		if (conn_pending(c) && ++unacked_frames < SYNC_RX_COALESCE)
			continue;
		unacked_frames = 0;
		if (!received_durable(sync, peer, &written))
			break;
		buf_reset(&out);
		if (sync_msg_encode_ack(&out, ack, &why) < 0 ||
		    write_all(c, &out, &why) < 0) {
			log_warnx("sync: cannot acknowledge %s: %s",
				  peer->name, why);
			break;
		}
		atomic_fetch_add(&sync->acks_sent, 1);
	}
	/* HELLO on the next link tells the peer where to resume: what we
	 * wrote must be durable by then. */
	(void)received_durable(sync, peer, &written);
	buf_free(&out);
}

static void receiver_handle(struct server_conn *sc, void *ctx)
{
	struct sync *sync = ctx;
	struct sync_peer *peer;
	struct conn *c;
	struct buf in = BUF_INIT;
	const char *why = NULL;
	uint64_t ignored;

	log_thread_name("sync-rx");
	tune_socket(sc->fd);
	c = conn_new(sc->fd);
	if (c == NULL)
		return;
	if (conn_set_timeouts(c, sync->timeout_ms, sync->write_timeout_ms) <
		    0 ||
	    conn_tls_server(c, sync->creds, sync->accept_names,
			    sync->timeout_ms, &why) < 0) {
		log_warnx("sync: rejected a link from %s: %s", sc->peer,
			  why != NULL ? why : "cannot set timeouts");
		atomic_fetch_add(&sync->links_rejected, 1);
		conn_close(&c);
		return;
	}
	peer = find_peer(sync, conn_peer_name(c));
	if (peer == NULL) {
		/* accept_names holds only our peers: cannot happen. */
		log_warnx("sync: rejected a link from %s: not a peer",
			  sc->peer);
		atomic_fetch_add(&sync->links_rejected, 1);
		conn_close(&c);
		return;
	}
	log_context_set("peer", peer->name);
	if (!claim_rx(peer, c)) {
		conn_close(&c);
		return;
	}
	if (send_hello(sync, c, peer->name, &why) < 0 ||
	    recv_hello(sync, c, peer->name, &in, &ignored, &why) < 0) {
		log_warnx("sync: handshake with %s from %s failed: %s",
			  peer->name, sc->peer, why);
		atomic_fetch_add(&sync->links_rejected, 1);
	} else {
		atomic_fetch_add(&sync->links_accepted, 1);
		log_info("sync: link from %s up (%s)", peer->name, sc->peer);
		receive_loop(sync, peer, c, &in);
	}
	release_rx(peer);
	conn_close(&c);
	buf_free(&in);
}

static const struct server_ops receiver_ops = {
	receiver_handle,
	NULL,
};

/*
 * Start and stop.
 */

static int add_peer(struct sync *sync, const struct config_node *node,
		    const char **error_r)
{
	struct sync_peer *peer = &sync->peers[sync->peer_count];
	size_t len;

	if (!vclock_name_valid(node->name) ||
	    strlen(node->public_ip) >= sizeof(peer->ip)) {
		*error_r = set_error("peer %s: invalid name or address",
				     node->name);
		return -1;
	}
	memset(peer, 0, sizeof(*peer));
	peer->sync = sync;
	snprintf(peer->name, sizeof(peer->name), "%s", node->name);
	snprintf(peer->ip, sizeof(peer->ip), "%s", node->public_ip);
	peer->port = node->sync_port;
	len = strlen(sync->state_dir) + strlen(node->name) + 8;
	peer->acked_path = malloc(len);
	if (peer->acked_path == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	snprintf(peer->acked_path, len, "%s/%s.acked", sync->state_dir,
		 node->name);
	pthread_mutex_init(&peer->lock, NULL);
	pthread_cond_init(&peer->rx_cond, NULL);
	peer->persisted = acked_read(peer->acked_path);
	atomic_store(&peer->safe, peer->persisted);
	atomic_store(&peer->acked, peer->persisted);
	atomic_store(&peer->sent, peer->persisted);
	sync->accept_names[sync->peer_count] = peer->name;
	sync->peer_count++;
	return 0;
}

static void sync_free_all(struct sync *sync)
{
	for (size_t i = 0; i < sync->peer_count; i++) {
		pthread_mutex_destroy(&sync->peers[i].lock);
		pthread_cond_destroy(&sync->peers[i].rx_cond);
		free(sync->peers[i].acked_path);
	}
	pthread_mutex_destroy(&sync->sleep_lock);
	pthread_cond_destroy(&sync->sleep_cond);
	free(sync->peers);
	free(sync->accept_names);
	free(sync->state_dir);
	free(sync);
}

int sync_start(const struct pluto_config *config, const char *node_name,
	       struct user_store *store, struct tls_creds *internal_creds,
	       struct sync **sync_r, const char **error_r)
{
	return sync_start_tuned(config, node_name, store, internal_creds, NULL,
				sync_r, error_r);
}

int sync_start_tuned(const struct pluto_config *config, const char *node_name,
		     struct user_store *store,
		     struct tls_creds *internal_creds,
		     const struct sync_tuning *tuning, struct sync **sync_r,
		     const char **error_r)
{
	const struct config_node *node;
	struct sync *sync;
	size_t npeers, len;
	const char *why = NULL;
	int fd;

	*sync_r = NULL;
	if (node_name == NULL || !vclock_name_valid(node_name)) {
		*error_r = "invalid node name";
		return -1;
	}
	node = strcmp(node_name, "storage") == 0
		       ? &config->storage
		       : config_worker(config, node_name);
	if (node == NULL) {
		*error_r = set_error("no node named %s", node_name);
		return -1;
	}
	npeers = node == &config->storage ? config->n_workers : 1;
	sync = calloc(1, sizeof(*sync));
	if (sync == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	pthread_mutex_init(&sync->sleep_lock, NULL);
	pthread_cond_init(&sync->sleep_cond, NULL);
	sync->config = config;
	snprintf(sync->node_name, sizeof(sync->node_name), "%s", node_name);
	sync->store = store;
	sync->journal = user_store_journal(store);
	sync->creds = internal_creds;
	if (tuning != NULL)
		sync->tuning = *tuning;
	else
		sync_tuning_defaults(&sync->tuning);
	if (sync->tuning.backoff_min_ms == 0)
		sync->tuning.backoff_min_ms = 1;
	if (sync->tuning.backoff_max_ms < sync->tuning.backoff_min_ms)
		sync->tuning.backoff_max_ms = sync->tuning.backoff_min_ms;
	sync->timeout_ms = config->intl_conn_timeout_ms;
	sync->write_timeout_ms = sync->tuning.stall_timeout_ms >
					 SYNC_WRITE_TIMEOUT_MIN_MS
				 ? sync->tuning.stall_timeout_ms
				 : SYNC_WRITE_TIMEOUT_MIN_MS;
	len = strlen(node->crdt_root) + sizeof("/sync");
	sync->state_dir = malloc(len);
	sync->peers = calloc(npeers + 1, sizeof(*sync->peers));
	sync->accept_names = calloc(npeers + 1, sizeof(*sync->accept_names));
	if (sync->state_dir == NULL || sync->peers == NULL ||
	    sync->accept_names == NULL) {
		*error_r = "out of memory";
		goto fail;
	}
	snprintf(sync->state_dir, len, "%s/sync", node->crdt_root);
	if (mkdir(sync->state_dir, 0700) < 0 && errno != EEXIST) {
		*error_r = set_error("cannot create %s: %s", sync->state_dir,
				     strerror(errno));
		goto fail;
	}
	if (node == &config->storage) {
		for (size_t i = 0; i < config->n_workers; i++) {
			if (add_peer(sync, &config->workers[i], error_r) < 0)
				goto fail;
		}
	} else if (add_peer(sync, &config->storage, error_r) < 0) {
		goto fail;
	}

	fd = net_listen(node->listen_ip, node->sync_port, SYNC_LISTEN_BACKLOG,
			&why);
	if (fd < 0) {
		*error_r = set_error("cannot listen on %s port %u: %s",
				     node->listen_ip, (unsigned)node->sync_port,
				     why);
		goto fail;
	}
	sync->server = server_new("sync", fd, &receiver_ops, sync,
				  (unsigned)(2 * npeers + 16),
				  (unsigned)(2 * npeers + 16));
	if (sync->server == NULL) {
		close(fd);
		*error_r = "cannot create the sync listener";
		goto fail;
	}
	/* Last before the threads, so that a failure above leaves no
	 * applier running (it stops only with the store). */
	if (user_store_start_applier(store, &why) < 0) {
		*error_r = set_error("%s", why);
		goto fail;
	}
	if (server_start(sync->server) < 0) {
		*error_r = "cannot start the sync listener";
		goto fail;
	}
	for (size_t i = 0; i < sync->peer_count; i++) {
		struct sync_peer *peer = &sync->peers[i];

		if (server_thread_start(&peer->tx_thread, true, sender_main,
					peer) < 0) {
			*error_r = set_error("cannot start a sender thread: %s",
					     strerror(errno));
			goto fail_running;
		}
		peer->tx_started = true;
	}
	if (sync->tuning.trim_interval_ms > 0) {
		if (server_thread_start(&sync->trim_thread, true, trim_main,
					sync) < 0) {
			*error_r = set_error("cannot start the trim thread: %s",
					     strerror(errno));
			goto fail_running;
		}
		sync->trim_started = true;
	}
	log_info("sync: listening on %s port %u for %zu peer%s",
		 node->listen_ip, (unsigned)node->sync_port, sync->peer_count,
		 sync->peer_count == 1 ? "" : "s");
	*sync_r = sync;
	return 0;
fail_running:
	sync_stop(&sync);
	return -1;
fail:
	if (sync->server != NULL)
		server_free(&sync->server);
	sync_free_all(sync);
	return -1;
}

void sync_break_links(struct sync *sync)
{
	for (size_t i = 0; i < sync->peer_count; i++) {
		struct sync_peer *peer = &sync->peers[i];

		atomic_store(&peer->link_down, true);
		pthread_mutex_lock(&peer->lock);
		if (peer->tx_conn != NULL)
			conn_wake(peer->tx_conn);
		if (peer->rx_conn != NULL)
			conn_wake(peer->rx_conn);
		pthread_mutex_unlock(&peer->lock);
	}
	journal_wake(sync->journal);
}

void sync_stop(struct sync **syncp)
{
	struct sync *sync = *syncp;

	if (sync == NULL)
		return;
	*syncp = NULL;
	atomic_store(&sync->stopping, true);
	pthread_mutex_lock(&sync->sleep_lock);
	pthread_cond_broadcast(&sync->sleep_cond);
	pthread_mutex_unlock(&sync->sleep_lock);
	sync_break_links(sync);
	if (sync->trim_started)
		pthread_join(sync->trim_thread, NULL);
	sync->trim_started = false;
	if (sync->server != NULL)
		server_free(&sync->server);
	for (size_t i = 0; i < sync->peer_count; i++) {
		struct sync_peer *peer = &sync->peers[i];

		if (peer->tx_started)
			pthread_join(peer->tx_thread, NULL);
		peer->tx_started = false;
		persist_if_due(peer, true);
	}
	sync_free_all(sync);
}

int sync_peer_status(struct sync *sync, const char *name,
		     struct sync_peer_status *st)
{
	struct sync_peer *peer = find_peer(sync, name);

	memset(st, 0, sizeof(*st));
	if (peer == NULL)
		return -1;
	st->connected = atomic_load(&peer->connected);
	pthread_mutex_lock(&peer->lock);
	st->receiving = peer->rx_active;
	pthread_mutex_unlock(&peer->lock);
	st->acked_lsn = atomic_load(&peer->acked);
	st->safe_lsn = atomic_load(&peer->safe);
	st->sent_lsn = atomic_load(&peer->sent);
	st->links_up = atomic_load(&peer->links_up);
	return 0;
}

void sync_get_stats(struct sync *sync, struct sync_stats *s)
{
	s->frames_sent = atomic_load(&sync->frames_sent);
	s->ops_sent = atomic_load(&sync->ops_sent);
	s->links_accepted = atomic_load(&sync->links_accepted);
	s->links_rejected = atomic_load(&sync->links_rejected);
	s->protocol_errors = atomic_load(&sync->protocol_errors);
	s->ops_stored = atomic_load(&sync->ops_stored);
	s->ops_duplicate = atomic_load(&sync->ops_duplicate);
	s->acks_sent = atomic_load(&sync->acks_sent);
}
