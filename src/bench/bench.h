/*
 * bench.h - what pluto-bench's parts share: the options, the commands it
 * measures, the per-request samples and one simulated client.
 *
 * Each client thread owns its struct bench_client and appends samples
 * only to it; the main thread reads them after joining the thread, so
 * samples need no lock.  The few counters the progress line shows while
 * threads run are C11 atomics in struct bench_run.
 */
#ifndef PLUTO_BENCH_H
#define PLUTO_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bench_conn.h"

enum bench_workload {
	BENCH_WL_APPEND,
	BENCH_WL_CREATEDELETE,
	BENCH_WL_STORE,
	BENCH_WL_SELECT,
	BENCH_WL_FETCH,
	BENCH_WL_MIXED,
	BENCH_WL_LAG,
};

/* What is measured; LAG is not an IMAP command but the time from an
 * APPEND's OK on one connection until the message shows on another. */
enum bench_cmd {
	BENCH_CMD_LOGIN,
	BENCH_CMD_SELECT,
	BENCH_CMD_APPEND,
	BENCH_CMD_CREATE,
	BENCH_CMD_DELETE,
	BENCH_CMD_STORE,
	BENCH_CMD_FETCH,
	BENCH_CMD_LIST,
	BENCH_CMD_LAG,
	BENCH_CMD_LOGOUT,
	BENCH_CMD_COUNT
};

const char *bench_cmd_name(enum bench_cmd cmd);
const char *bench_workload_name(enum bench_workload wl);
/* Returns false for an unknown name. */
bool bench_workload_parse(const char *name, enum bench_workload *wl_r);

struct bench_opts {
	const char *host;
	const char *port;		/* NULL: 993, or 143 unless implicit */
	enum bench_tls_mode tls_mode;
	bool insecure;
	const char *cafile;
	const char *user_pattern;	/* "%d" is replaced by the id */
	const char *password_pattern;
	unsigned int id_first, id_count;
	unsigned int clients;
	unsigned int runs;		/* per client; 0 with duration */
	unsigned int duration_s;	/* 0: use runs */
	size_t msg_size;
	enum bench_workload workload;
	const char *csv_path;
	uint64_t seed;
	bool quiet;
	bool literal_plus;
	int timeout_ms;
	/* --workload lag: where the message is looked for. */
	const char *lag_host;
	const char *lag_port;
	enum bench_tls_mode lag_tls_mode;
	bool lag_noop;			/* poll with NOOP instead of SELECT */
	unsigned int lag_poll_us;
};

/* One measured request. */
struct bench_sample {
	uint64_t start_us;		/* since the run's epoch */
	uint64_t latency_us;
	uint8_t cmd;			/* enum bench_cmd */
	uint8_t status;			/* enum bench_status */
};

struct bench_samples {
	struct bench_sample *v;
	size_t count, cap;
};

/* Adds a sample; returns -1 when out of memory (the sample is lost). */
int bench_samples_add(struct bench_samples *s, const struct bench_sample *x);
void bench_samples_free(struct bench_samples *s);

/* Shared by all client threads during a run. */
struct bench_run {
	const struct bench_opts *opts;
	const struct bench_tls *tls;	/* NULL for plain connections */
	uint64_t epoch_us;		/* bench_now_us() at start */
	/* The start gate: each client counts itself ready, then waits for
	 * go, so the workload starts at once everywhere.  Protected by
	 * lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int ready;
	bool go;
	uint64_t deadline_us;		/* 0: none (runs mode) */
	/* Set for the rest of the run by the main thread (SIGINT). */
	atomic_bool stop;
	atomic_uint_fast64_t done;	/* commands completed */
	atomic_uint_fast64_t errors;	/* of which not OK */
	atomic_uint active;		/* clients still working */
	/* Unique mailbox names across runs and processes. */
	char run_id[32];
};

struct bench_client {
	unsigned int index;
	unsigned int id;		/* the number put in user/password */
	struct bench_run *run;
	struct bench_samples samples;
	bool connected;
	bool logged_in;
	bool failed;			/* stopped early; see error */
	char error[256];
	uint64_t end_us;		/* when its workload ended */
	uint64_t rng;
};

/* The body of one client thread: connect, log in, run the workload, log
 * out.  Never exits the process; failures end up in c->error. */
void bench_client_run(struct bench_client *c);

/* Expands pattern, replacing each "%d" by id and "%%" by "%".  Any other
 * '%' sequence is refused.  Returns 0, or -1 when the pattern is invalid
 * or the result does not fit in size bytes. */
int bench_expand_pattern(const char *pattern, unsigned int id, char *out,
			 size_t size);

/* Builds a message of exactly size bytes (or just the header block, about
 * 250 bytes, when size is smaller) with CRLF lines, in a newly allocated
 * buffer the caller frees.  Returns NULL when out of memory. */
char *bench_make_message(size_t size, unsigned int client, uint64_t seq,
			 size_t *len_r);

/* Report and CSV output (bench_stats.c).  elapsed_us is the wall-clock
 * time the workload ran. */
void bench_report(FILE *out, struct bench_client *clients,
		  unsigned int nclients, uint64_t elapsed_us);
int bench_write_csv(const char *path, struct bench_client *clients,
		    unsigned int nclients, const char **error_r);

/* The value at percentile pct (0 < pct <= 100) of sorted[0..n-1] by the
 * nearest-rank method; n must be > 0. */
uint64_t bench_percentile(const uint64_t *sorted, size_t n, unsigned int pct);

#endif
