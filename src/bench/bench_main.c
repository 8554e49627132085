/*
 * bench_main.c - pluto-bench: options, the client threads, the progress
 * line, the summary and the CSV file.
 *
 * One thread per simulated client, each with an explicitly sized stack.
 * The main thread starts them all, opens the start gate once every
 * client is logged in (or has failed), shows progress on stderr while
 * they run, joins them and reports.  SIGINT and SIGTERM end the run
 * early but cleanly: clients finish their current command and log out.
 *
 * Lock order: only run.lock exists (the start gate); nothing else is
 * taken while it is held.
 */
#include "autoconfig.h"

#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_MAX_CLIENTS 10000u
#define BENCH_MAX_MSG_SIZE ((size_t)256 * 1024 * 1024)
#define BENCH_STACK_SIZE ((size_t)512 * 1024)

static struct bench_run *signal_run;

static void on_signal(int sig)
{
	(void)sig;
	/* Lock-free atomics are safe in a signal handler. */
	if (signal_run != NULL)
		atomic_store(&signal_run->stop, true);
}

static void usage(FILE *out)
{
	fprintf(out,
"usage: pluto-bench [options]\n"
"  -H, --host HOST          server (default localhost)\n"
"  -p, --port PORT          port (default 993 with implicit TLS, else 143)\n"
"      --tls MODE           implicit, starttls or plain (default implicit)\n"
"      --insecure           do not verify the server certificate\n"
"      --cafile FILE        trust these CAs instead of the system's\n"
"  -u, --user PATTERN       user name, %%d = client id (default user%%d)\n"
"  -P, --password PATTERN   password, %%d = client id (default password%%d)\n"
"      --user-range A-B     ids used: client i gets A + i mod (B-A+1)\n"
"                           (default 1-CLIENTS)\n"
"  -c, --clients N          concurrent clients, one thread each (default 1)\n"
"  -n, --runs N             workload iterations per client (default 100)\n"
"  -d, --duration SECONDS   run for this long instead of --runs\n"
"  -s, --msg-size BYTES     size of appended messages (default 1024)\n"
"  -w, --workload NAME      append, createdelete, store, select, fetch,\n"
"                           mixed or lag (default append)\n"
"      --csv FILE           one row per request\n"
"      --seed N             seed of the mixed workload (default 1)\n"
"      --literal-plus       use {n+} literals if the server has LITERAL+\n"
"      --timeout SECONDS    per connect, read and write (default 30)\n"
"      --lag-host HOST      lag workload: where to look (default --host)\n"
"      --lag-port PORT      lag workload: its port (default --port)\n"
"      --lag-tls MODE       lag workload: its TLS mode (default --tls)\n"
"      --lag-noop           lag workload: poll with NOOP, not SELECT\n"
"      --lag-poll-us N      lag workload: pause between polls (default "
"1000)\n"
"  -q, --quiet              no progress line\n"
"  -h, --help               this text\n"
"  -V, --version            the version\n");
}

/* Parses a decimal number in [min, max]. */
static bool parse_number(const char *s, unsigned long long min,
			 unsigned long long max, unsigned long long *n_r)
{
	unsigned long long n;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || n < min || n > max)
		return false;
	*n_r = n;
	return true;
}

static bool parse_range(const char *s, unsigned int *first_r,
			unsigned int *count_r)
{
	unsigned long long a, b;
	char buf[64], *dash;

	if (strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	dash = strchr(buf, '-');
	if (dash == NULL)
		return false;
	*dash = '\0';
	if (!parse_number(buf, 0, UINT_MAX, &a) ||
	    !parse_number(dash + 1, a, UINT_MAX, &b) || b - a >= UINT_MAX)
		return false;
	*first_r = (unsigned int)a;
	*count_r = (unsigned int)(b - a + 1);
	return true;
}

/* Checks a user or password pattern by expanding it once. */
static bool pattern_ok(const char *pattern)
{
	char out[256];

	return bench_expand_pattern(pattern, UINT_MAX, out, sizeof(out)) == 0;
}

static bool parse_tls_mode(const char *s, enum bench_tls_mode *mode_r)
{
	if (strcmp(s, "implicit") == 0)
		*mode_r = BENCH_TLS_IMPLICIT;
	else if (strcmp(s, "starttls") == 0)
		*mode_r = BENCH_TLS_STARTTLS;
	else if (strcmp(s, "plain") == 0)
		*mode_r = BENCH_TLS_PLAIN;
	else
		return false;
	return true;
}

enum {
	OPT_TLS = 256,
	OPT_INSECURE,
	OPT_CAFILE,
	OPT_USER_RANGE,
	OPT_CSV,
	OPT_SEED,
	OPT_LITERAL_PLUS,
	OPT_TIMEOUT,
	OPT_LAG_HOST,
	OPT_LAG_PORT,
	OPT_LAG_TLS,
	OPT_LAG_NOOP,
	OPT_LAG_POLL,
};

static const struct option long_options[] = {
	{ "host", required_argument, NULL, 'H' },
	{ "port", required_argument, NULL, 'p' },
	{ "tls", required_argument, NULL, OPT_TLS },
	{ "insecure", no_argument, NULL, OPT_INSECURE },
	{ "cafile", required_argument, NULL, OPT_CAFILE },
	{ "user", required_argument, NULL, 'u' },
	{ "password", required_argument, NULL, 'P' },
	{ "user-range", required_argument, NULL, OPT_USER_RANGE },
	{ "clients", required_argument, NULL, 'c' },
	{ "runs", required_argument, NULL, 'n' },
	{ "duration", required_argument, NULL, 'd' },
	{ "msg-size", required_argument, NULL, 's' },
	{ "workload", required_argument, NULL, 'w' },
	{ "csv", required_argument, NULL, OPT_CSV },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "literal-plus", no_argument, NULL, OPT_LITERAL_PLUS },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "lag-host", required_argument, NULL, OPT_LAG_HOST },
	{ "lag-port", required_argument, NULL, OPT_LAG_PORT },
	{ "lag-tls", required_argument, NULL, OPT_LAG_TLS },
	{ "lag-noop", no_argument, NULL, OPT_LAG_NOOP },
	{ "lag-poll-us", required_argument, NULL, OPT_LAG_POLL },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static int bad_value(const char *option, const char *value)
{
	fprintf(stderr, "pluto-bench: invalid value for %s: %s\n", option,
		value);
	return -1;
}

/* Fills o from argv.  Returns 1 to run, 0 after --help/--version, -1 on
 * a usage error (already reported). */
static int parse_options(int argc, char **argv, struct bench_opts *o)
{
	unsigned long long n;
	bool have_range = false, have_runs = false, have_lag_tls = false;
	int ch;

	memset(o, 0, sizeof(*o));
	o->host = "localhost";
	o->tls_mode = BENCH_TLS_IMPLICIT;
	o->user_pattern = "user%d";
	o->password_pattern = "password%d";
	o->clients = 1;
	o->runs = 100;
	o->msg_size = 1024;
	o->workload = BENCH_WL_APPEND;
	o->seed = 1;
	o->timeout_ms = 30000;
	o->lag_poll_us = 1000;

	while ((ch = getopt_long(argc, argv, "H:p:u:P:c:n:d:s:w:qhV",
				 long_options, NULL)) != -1) {
		switch (ch) {
		case 'H':
			o->host = optarg;
			break;
		case 'p':
			if (!parse_number(optarg, 1, 65535, &n))
				return bad_value("--port", optarg);
			o->port = optarg;
			break;
		case OPT_TLS:
			if (!parse_tls_mode(optarg, &o->tls_mode))
				return bad_value("--tls", optarg);
			break;
		case OPT_LAG_TLS:
			if (!parse_tls_mode(optarg, &o->lag_tls_mode))
				return bad_value("--lag-tls", optarg);
			have_lag_tls = true;
			break;
		case OPT_INSECURE:
			o->insecure = true;
			break;
		case OPT_CAFILE:
			o->cafile = optarg;
			break;
		case 'u':
			if (!pattern_ok(optarg))
				return bad_value("--user", optarg);
			o->user_pattern = optarg;
			break;
		case 'P':
			/* The value is a secret: do not echo it. */
			if (!pattern_ok(optarg))
				return bad_value("--password", "(hidden)");
			o->password_pattern = optarg;
			break;
		case OPT_USER_RANGE:
			if (!parse_range(optarg, &o->id_first, &o->id_count))
				return bad_value("--user-range", optarg);
			have_range = true;
			break;
		case 'c':
			if (!parse_number(optarg, 1, BENCH_MAX_CLIENTS, &n))
				return bad_value("--clients", optarg);
			o->clients = (unsigned int)n;
			break;
		case 'n':
			if (!parse_number(optarg, 0, UINT_MAX, &n))
				return bad_value("--runs", optarg);
			o->runs = (unsigned int)n;
			have_runs = true;
			break;
		case 'd':
			if (!parse_number(optarg, 1, 7 * 24 * 3600, &n))
				return bad_value("--duration", optarg);
			o->duration_s = (unsigned int)n;
			break;
		case 's':
			if (!parse_number(optarg, 0, BENCH_MAX_MSG_SIZE, &n))
				return bad_value("--msg-size", optarg);
			o->msg_size = (size_t)n;
			break;
		case 'w':
			if (!bench_workload_parse(optarg, &o->workload))
				return bad_value("--workload", optarg);
			break;
		case OPT_CSV:
			o->csv_path = optarg;
			break;
		case OPT_SEED:
			if (!parse_number(optarg, 0, UINT64_MAX, &n))
				return bad_value("--seed", optarg);
			o->seed = n;
			break;
		case OPT_LITERAL_PLUS:
			o->literal_plus = true;
			break;
		case OPT_TIMEOUT:
			if (!parse_number(optarg, 1, 3600, &n))
				return bad_value("--timeout", optarg);
			o->timeout_ms = (int)n * 1000;
			break;
		case OPT_LAG_HOST:
			o->lag_host = optarg;
			break;
		case OPT_LAG_PORT:
			if (!parse_number(optarg, 1, 65535, &n))
				return bad_value("--lag-port", optarg);
			o->lag_port = optarg;
			break;
		case OPT_LAG_NOOP:
			o->lag_noop = true;
			break;
		case OPT_LAG_POLL:
			if (!parse_number(optarg, 0, 10000000, &n))
				return bad_value("--lag-poll-us", optarg);
			o->lag_poll_us = (unsigned int)n;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("pluto-bench %s\n", PACKAGE_VERSION);
			return 0;
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "pluto-bench: unexpected argument: %s\n",
			argv[optind]);
		return -1;
	}
	if (have_runs && o->duration_s > 0) {
		fprintf(stderr, "pluto-bench: --runs and --duration exclude "
			"each other\n");
		return -1;
	}
	if (o->port == NULL)
		o->port = o->tls_mode == BENCH_TLS_IMPLICIT ? "993" : "143";
	if (o->lag_host == NULL)
		o->lag_host = o->host;
	if (o->lag_port == NULL)
		o->lag_port = o->port;
	if (!have_lag_tls)
		o->lag_tls_mode = o->tls_mode;
	if (!have_range) {
		o->id_first = 1;
		o->id_count = o->clients;
	}
	if (o->workload == BENCH_WL_LAG && o->id_count < o->clients)
		fprintf(stderr, "pluto-bench: warning: with fewer users than "
			"clients, lag sees other clients' messages too\n");
	return 1;
}

static const char *tls_mode_name(enum bench_tls_mode mode)
{
	switch (mode) {
	case BENCH_TLS_IMPLICIT:
		return "implicit";
	case BENCH_TLS_STARTTLS:
		return "starttls";
	case BENCH_TLS_PLAIN:
		break;
	}
	return "plain";
}

static void *client_thread(void *arg)
{
	struct bench_client *c = arg;

#ifdef HAVE_PTHREAD_SETNAME_NP
	char name[16];

	snprintf(name, sizeof(name), "bench-%u", c->index);
	(void)pthread_setname_np(pthread_self(), name);
#endif
	bench_client_run(c);
	return NULL;
}

/* Shows progress on stderr until every client is done: a line rewritten
 * in place on a terminal, a line every ten seconds otherwise, nothing in
 * the first two seconds so that short runs stay quiet. */
static void progress_loop(struct bench_run *run, unsigned int nclients,
			  uint64_t start_us)
{
	struct timespec pause = { 0, 100 * 1000 * 1000 };
	bool tty = isatty(STDERR_FILENO) != 0, shown = false;
	uint64_t now, last = 0, every = tty ? 1000000u : 10000000u;
	uint64_t done, errors;
	double secs;

	while (atomic_load(&run->active) > 0) {
		nanosleep(&pause, NULL);
		now = bench_now_us();
		if (run->opts->quiet || now - start_us < 2000000u ||
		    now - last < every)
			continue;
		last = now;
		done = atomic_load(&run->done);
		errors = atomic_load(&run->errors);
		secs = (double)(now - start_us) / 1e6;
		fprintf(stderr, "%spluto-bench: %.0fs %" PRIu64 " requests "
			"(%.0f/s) %" PRIu64 " errors, %u/%u clients "
			"active%s", tty ? "\r" : "", secs, done,
			(double)done / secs, errors,
			atomic_load(&run->active), nclients,
			tty ? "  " : "\n");
		shown = true;
	}
	if (shown && tty)
		fputc('\n', stderr);
}

int main(int argc, char **argv)
{
	struct bench_opts opts;
	struct bench_run run;
	struct bench_tls tls;
	struct bench_client *clients;
	struct sigaction sa;
	pthread_attr_t attr;
	pthread_t *threads;
	unsigned int i, created = 0, logged_in = 0, failed = 0, shown = 0;
	uint64_t start_us, end_us = 0;
	const char *error;
	int ret, status = 0;
	bool use_tls;

	ret = parse_options(argc, argv, &opts);
	if (ret <= 0)
		return ret == 0 ? 0 : 2;

	signal(SIGPIPE, SIG_IGN);
	memset(&tls, 0, sizeof(tls));
	use_tls = opts.tls_mode != BENCH_TLS_PLAIN ||
		(opts.workload == BENCH_WL_LAG &&
		 opts.lag_tls_mode != BENCH_TLS_PLAIN);
	if (use_tls && bench_tls_init(&tls, opts.cafile, opts.insecure, &error) < 0) {
		fprintf(stderr, "pluto-bench: %s\n", error);
		return 1;
	}

	memset(&run, 0, sizeof(run));
	run.opts = &opts;
	run.tls = use_tls ? &tls : NULL;
	run.epoch_us = bench_now_us();
	atomic_init(&run.stop, false);
	atomic_init(&run.done, 0);
	atomic_init(&run.errors, 0);
	atomic_init(&run.active, 0);
	snprintf(run.run_id, sizeof(run.run_id), "%lx%llx",
		 (unsigned long)getpid(),
		 (unsigned long long)(time(NULL) & 0xffffff));
	if (pthread_mutex_init(&run.lock, NULL) != 0 ||
	    pthread_cond_init(&run.cond, NULL) != 0) {
		fprintf(stderr, "pluto-bench: cannot create the start gate\n");
		return 1;
	}

	clients = calloc(opts.clients, sizeof(*clients));
	threads = calloc(opts.clients, sizeof(*threads));
	if (clients == NULL || threads == NULL) {
		fprintf(stderr, "pluto-bench: out of memory\n");
		free(clients);
		free(threads);
		return 1;
	}

	signal_run = &run;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	if (pthread_attr_init(&attr) != 0 ||
	    pthread_attr_setstacksize(&attr, BENCH_STACK_SIZE) != 0) {
		fprintf(stderr, "pluto-bench: cannot set the stack size\n");
		free(clients);
		free(threads);
		return 1;
	}
	for (i = 0; i < opts.clients; i++) {
		struct bench_client *c = &clients[i];

		c->index = i;
		c->id = opts.id_first + i % opts.id_count;
		c->run = &run;
		c->rng = (opts.seed ^ ((uint64_t)(i + 1) *
				       UINT64_C(0x9e3779b97f4a7c15))) | 1u;
		atomic_fetch_add(&run.active, 1);
		ret = pthread_create(&threads[i], &attr, client_thread, c);
		if (ret != 0) {
			atomic_fetch_sub(&run.active, 1);
			fprintf(stderr, "pluto-bench: cannot start client %u: "
				"%s\n", i, strerror(ret));
			break;
		}
		created++;
	}
	pthread_attr_destroy(&attr);

	/* Open the gate once every started client is ready. */
	pthread_mutex_lock(&run.lock);
	while (run.ready < created)
		pthread_cond_wait(&run.cond, &run.lock);
	start_us = bench_now_us();
	if (opts.duration_s > 0)
		run.deadline_us = start_us +
			(uint64_t)opts.duration_s * 1000000u;
	run.go = true;
	pthread_cond_broadcast(&run.cond);
	pthread_mutex_unlock(&run.lock);

	progress_loop(&run, created, start_us);
	for (i = 0; i < created; i++)
		pthread_join(threads[i], NULL);
	signal_run = NULL;

	for (i = 0; i < created; i++) {
		if (clients[i].logged_in)
			logged_in++;
		if (clients[i].failed || clients[i].error[0] != '\0')
			failed++;
		if (clients[i].logged_in && clients[i].end_us > end_us)
			end_us = clients[i].end_us;
		if (clients[i].error[0] != '\0' && shown < 10) {
			fprintf(stderr, "pluto-bench: client %u (id %u): %s\n",
				i, clients[i].id, clients[i].error);
			shown++;
		}
	}
	if (failed > shown)
		fprintf(stderr, "pluto-bench: ... and %u more clients with "
			"errors\n", failed - shown);

	printf("pluto-bench: workload %s, %s:%s, tls %s, %u clients, ",
	       bench_workload_name(opts.workload), opts.host, opts.port,
	       tls_mode_name(opts.tls_mode), opts.clients);
	if (opts.duration_s > 0)
		printf("%u s", opts.duration_s);
	else
		printf("%u runs each", opts.runs);
	printf(", msg-size %zu\n", opts.msg_size);
	printf("clients: %u started, %u logged in, %u with errors; "
	       "elapsed %.3f s\n", created, logged_in, failed,
	       end_us > start_us ? (double)(end_us - start_us) / 1e6 : 0.0);
	bench_report(stdout, clients, created,
		     end_us > start_us ? end_us - start_us : 0);
	fflush(stdout);

	if (opts.csv_path != NULL &&
	    bench_write_csv(opts.csv_path, clients, created, &error) < 0) {
		fprintf(stderr, "pluto-bench: %s\n", error);
		status = 1;
	}
	if (logged_in == 0) {
		fprintf(stderr, "pluto-bench: no client could connect and "
			"log in\n");
		status = 1;
	}

	for (i = 0; i < opts.clients; i++)
		bench_samples_free(&clients[i].samples);
	free(clients);
	free(threads);
	pthread_cond_destroy(&run.cond);
	pthread_mutex_destroy(&run.lock);
	if (use_tls)
		bench_tls_deinit(&tls);
	return status;
}
