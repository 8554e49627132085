/*
 * bench_stats.c - pluto-bench's samples, exact percentiles, the summary
 * table and the per-request CSV file.
 *
 * Percentiles are exact: every successful latency of a command is kept,
 * sorted and read by the nearest-rank method, so p99 of 100 samples is
 * the 99th smallest, not an interpolation.  Failed requests (NO, BAD, or
 * no tagged answer) are counted as errors and left out of the latency
 * columns, so a fast refusal cannot make a server look quick.  Runs after
 * all client threads are joined: no locks.
 */
#include "autoconfig.h"

#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const cmd_names[BENCH_CMD_COUNT] = {
	[BENCH_CMD_LOGIN] = "LOGIN",
	[BENCH_CMD_SELECT] = "SELECT",
	[BENCH_CMD_APPEND] = "APPEND",
	[BENCH_CMD_CREATE] = "CREATE",
	[BENCH_CMD_DELETE] = "DELETE",
	[BENCH_CMD_STORE] = "STORE",
	[BENCH_CMD_FETCH] = "FETCH",
	[BENCH_CMD_LIST] = "LIST",
	[BENCH_CMD_LAG] = "LAG",
	[BENCH_CMD_LOGOUT] = "LOGOUT",
};

static const char *const workload_names[] = {
	[BENCH_WL_APPEND] = "append",
	[BENCH_WL_CREATEDELETE] = "createdelete",
	[BENCH_WL_STORE] = "store",
	[BENCH_WL_SELECT] = "select",
	[BENCH_WL_FETCH] = "fetch",
	[BENCH_WL_MIXED] = "mixed",
	[BENCH_WL_LAG] = "lag",
};

#define N_WORKLOADS (sizeof(workload_names) / sizeof(workload_names[0]))

const char *bench_cmd_name(enum bench_cmd cmd)
{
	if ((unsigned int)cmd >= BENCH_CMD_COUNT)
		return "?";
	return cmd_names[cmd];
}

const char *bench_workload_name(enum bench_workload wl)
{
	if ((size_t)wl >= N_WORKLOADS)
		return "?";
	return workload_names[wl];
}

bool bench_workload_parse(const char *name, enum bench_workload *wl_r)
{
	size_t i;

	for (i = 0; i < N_WORKLOADS; i++) {
		if (strcasecmp(name, workload_names[i]) == 0) {
			*wl_r = (enum bench_workload)i;
			return true;
		}
	}
	return false;
}

int bench_samples_add(struct bench_samples *s, const struct bench_sample *x)
{
	struct bench_sample *v;
	size_t cap;

	if (s->count == s->cap) {
		if (s->cap == 0) {
			cap = 256;
		} else if (s->cap > SIZE_MAX / 2 / sizeof(*v)) {
			errno = ENOMEM;
			return -1;
		} else {
			cap = s->cap * 2;
		}
		v = realloc(s->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->count++] = *x;
	return 0;
}

void bench_samples_free(struct bench_samples *s)
{
	free(s->v);
	s->v = NULL;
	s->count = 0;
	s->cap = 0;
}

uint64_t bench_percentile(const uint64_t *sorted, size_t n, unsigned int pct)
{
	/* Nearest rank: the smallest value with at least pct% of the
	 * samples at or below it, rank = ceil(pct * n / 100). */
	size_t rank;

	if (pct > 100)
		pct = 100;
	if (n > SIZE_MAX / 100)
		rank = n / 100 * pct + ((n % 100) * pct + 99) / 100;
	else
		rank = (n * pct + 99) / 100;
	if (rank == 0)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void print_ms(FILE *out, uint64_t us)
{
	fprintf(out, " %9.3f", (double)us / 1000.0);
}

void bench_report(FILE *out, struct bench_client *clients,
		  unsigned int nclients, uint64_t elapsed_us)
{
	size_t count[BENCH_CMD_COUNT] = { 0 }, errs[BENCH_CMD_COUNT] = { 0 };
	size_t total = 0, total_errs = 0, total_ok = 0, ok, i, j, n;
	double secs = (double)elapsed_us / 1e6;
	uint64_t *lat;
	unsigned int c, k;

	for (c = 0; c < nclients; c++) {
		for (i = 0; i < clients[c].samples.count; i++) {
			const struct bench_sample *s = &clients[c].samples.v[i];

			count[s->cmd]++;
			if (s->status != BENCH_STATUS_OK)
				errs[s->cmd]++;
		}
	}
	fprintf(out, "%-8s %9s %7s %9s %9s %9s %9s %9s %10s\n", "command",
		"count", "errors", "min_ms", "p50_ms", "p90_ms", "p99_ms",
		"max_ms", "ok/s");
	for (k = 0; k < BENCH_CMD_COUNT; k++) {
		if (count[k] == 0)
			continue;
		ok = count[k] - errs[k];
		total += count[k];
		total_errs += errs[k];
		/* Logins happen before the clock starts: no rate for them. */
		if (k != BENCH_CMD_LOGIN)
			total_ok += ok;
		fprintf(out, "%-8s %9zu %7zu", bench_cmd_name(k), count[k],
			errs[k]);
		lat = ok > 0 ? malloc(ok * sizeof(*lat)) : NULL;
		if (lat == NULL) {
			fprintf(out, " %9s %9s %9s %9s %9s", "-", "-", "-",
				"-", "-");
		} else {
			n = 0;
			for (c = 0; c < nclients; c++) {
				for (j = 0; j < clients[c].samples.count; j++) {
					const struct bench_sample *s =
						&clients[c].samples.v[j];

					if (s->cmd == k &&
					    s->status == BENCH_STATUS_OK)
						lat[n++] = s->latency_us;
				}
			}
			qsort(lat, n, sizeof(*lat), cmp_u64);
			print_ms(out, lat[0]);
			print_ms(out, bench_percentile(lat, n, 50));
			print_ms(out, bench_percentile(lat, n, 90));
			print_ms(out, bench_percentile(lat, n, 99));
			print_ms(out, lat[n - 1]);
			free(lat);
		}
		if (k == BENCH_CMD_LOGIN)
			fprintf(out, " %10s\n", "-");
		else
			fprintf(out, " %10.1f\n",
				secs > 0 ? (double)ok / secs : 0.0);
	}
	fprintf(out, "%-8s %9zu %7zu %49s %10.1f\n", "total", total,
		total_errs, "", secs > 0 ? (double)total_ok / secs : 0.0);
}

int bench_write_csv(const char *path, struct bench_client *clients,
		    unsigned int nclients, const char **error_r)
{
	static char err[512];
	unsigned int c;
	bool bad;
	size_t i;
	FILE *f;

	f = fopen(path, "w");
	if (f == NULL) {
		snprintf(err, sizeof(err), "%s: %s", path, strerror(errno));
		*error_r = err;
		return -1;
	}
	fprintf(f, "client,command,start_us,latency_us,status\n");
	for (c = 0; c < nclients; c++) {
		for (i = 0; i < clients[c].samples.count; i++) {
			const struct bench_sample *s = &clients[c].samples.v[i];

			fprintf(f, "%u,%s,%llu,%llu,%s\n", clients[c].index,
				bench_cmd_name(s->cmd),
				(unsigned long long)s->start_us,
				(unsigned long long)s->latency_us,
				bench_status_name(s->status));
		}
	}
	bad = ferror(f) != 0;
	if (fclose(f) != 0)
		bad = true;
	if (bad) {
		snprintf(err, sizeof(err), "%s: write failed: %s", path,
			 strerror(errno));
		*error_r = err;
		return -1;
	}
	return 0;
}
