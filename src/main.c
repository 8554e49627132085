/*
 * main.c - the pluto program: options, configuration, role dispatch and
 * signals.
 *
 * pluto runs in the foreground and logs to stderr, as service managers
 * expect.  SIGTERM and SIGINT are blocked in every thread and taken by the
 * main thread with sigwait(), which then asks the running role to stop
 * gracefully: stop accepting, finish in-flight commands, flush, exit 0.
 */
#include "autoconfig.h"

#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "role.h"

enum pluto_role {
	ROLE_NONE = 0,
	ROLE_DISTRIBUTOR,
	ROLE_WORKER,
	ROLE_STORAGE,
};

struct options {
	const char *config_path;
	enum pluto_role role;
	const char *worker_name;
	bool failover;
	bool check_config;
	const char *loglevel;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: pluto [-c FILE] --distributor | --worker NAME [--failover]"
		" | --storage\n"
		"       pluto [-c FILE] --check-config\n"
		"\n"
		"  -c, --config FILE     configuration (default %s)\n"
		"      --distributor     run the public front door\n"
		"      --worker NAME     run the worker of section [Workers.NAME]\n"
		"      --failover        with --worker: forward NAME's sessions"
		" to storage\n"
		"      --storage         run the storage node\n"
		"      --check-config    validate the configuration and exit\n"
		"      --loglevel LEVEL  debug, info, warn or error\n"
		"  -V, --version         print the version and exit\n"
		"  -h, --help            print this help and exit\n",
		CONFIG_DEFAULT_PATH);
}

static bool set_role(struct options *opts, enum pluto_role role)
{
	if (opts->role != ROLE_NONE && opts->role != role) {
		fprintf(stderr, "pluto: choose one of --distributor, --worker,"
				" --storage\n");
		return false;
	}
	opts->role = role;
	return true;
}

/* Returns 0 to go on, or an exit status + 1 (so 1 means exit 0). */
static int parse_options(int argc, char **argv, struct options *opts)
{
	enum { OPT_DISTRIBUTOR = 256, OPT_WORKER, OPT_FAILOVER, OPT_STORAGE,
	       OPT_CHECK, OPT_LOGLEVEL };
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "distributor", no_argument, NULL, OPT_DISTRIBUTOR },
		{ "worker", required_argument, NULL, OPT_WORKER },
		{ "failover", no_argument, NULL, OPT_FAILOVER },
		{ "storage", no_argument, NULL, OPT_STORAGE },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "loglevel", required_argument, NULL, OPT_LOGLEVEL },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	opts->config_path = CONFIG_DEFAULT_PATH;
	while ((ch = getopt_long(argc, argv, "c:Vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			opts->config_path = optarg;
			break;
		case OPT_DISTRIBUTOR:
			if (!set_role(opts, ROLE_DISTRIBUTOR))
				return 3;
			break;
		case OPT_WORKER:
			if (!set_role(opts, ROLE_WORKER))
				return 3;
			opts->worker_name = optarg;
			break;
		case OPT_FAILOVER:
			opts->failover = true;
			break;
		case OPT_STORAGE:
			if (!set_role(opts, ROLE_STORAGE))
				return 3;
			break;
		case OPT_CHECK:
			opts->check_config = true;
			break;
		case OPT_LOGLEVEL:
			opts->loglevel = optarg;
			break;
		case 'V':
			printf("pluto %s\n", PACKAGE_VERSION);
			return 1;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 3;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pluto: unexpected argument '%s'\n",
			argv[optind]);
		return 3;
	}
	if (opts->failover && opts->role != ROLE_WORKER) {
		fprintf(stderr, "pluto: --failover needs --worker NAME\n");
		return 3;
	}
	if (opts->role == ROLE_NONE && !opts->check_config) {
		usage(stderr);
		return 3;
	}
	return 0;
}

static const char *node_name(const struct options *opts)
{
	switch (opts->role) {
	case ROLE_DISTRIBUTOR:
		return "distributor";
	case ROLE_WORKER:
		return opts->worker_name;
	case ROLE_STORAGE:
		return "storage";
	case ROLE_NONE:
		break;
	}
	return "pluto";
}

/* Blocks the stop signals in this thread and, through inheritance, in
 * every thread created later, so that only sigwait() sees them. */
static void block_stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	/* A peer closing a socket mid-write must not kill the node. */
	signal(SIGPIPE, SIG_IGN);
}

/* Ports are bound and keys read by now: switch to the configured user
 * (glibc applies set*id to every thread of the process). */
static int drop_privileges(const char *user)
{
	struct passwd *pw;

	if (user == NULL)
		return 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		log_error("[Pluto] User: no such user '%s'", user);
		return -1;
	}
	if (geteuid() == pw->pw_uid)
		return 0;
	if (geteuid() != 0) {
		log_error("[Pluto] User: only root can switch to '%s'", user);
		return -1;
	}
	if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		log_warn("cannot switch to user '%s'", user);
		return -1;
	}
	log_info("running as user %s", user);
	return 0;
}

static int run_role(const struct options *opts,
		    const struct pluto_config *config)
{
	const struct role_ops *ops;
	sigset_t set;
	int sig = 0;
	int status;

	switch (opts->role) {
	case ROLE_DISTRIBUTOR:
		ops = role_distributor();
		break;
	case ROLE_WORKER:
		ops = opts->failover ? role_failover() : role_worker();
		break;
	case ROLE_STORAGE:
		ops = role_storage();
		break;
	default:
		return 2;
	}
	block_stop_signals(&set);
	if (ops->start(config, opts->worker_name) < 0)
		return 1;
	if (drop_privileges(config->run_as_user) < 0) {
		ops->stop();
		return 1;
	}
	log_info("pluto %s running as %s", PACKAGE_VERSION, node_name(opts));
	do {
		if (sigwait(&set, &sig) != 0)
			sig = 0;
	} while (sig != SIGTERM && sig != SIGINT);
	log_info("signal %d received, stopping", sig);
	status = ops->stop();
	log_info("stopped");
	return status;
}

int main(int argc, char **argv)
{
	struct options opts;
	struct pluto_config *config = NULL;
	enum log_level level = LOG_LEVEL_INFO;
	char *errors = NULL;
	int status;

	memset(&opts, 0, sizeof(opts));
	status = parse_options(argc, argv, &opts);
	if (status != 0)
		return status - 1;
	if (opts.loglevel != NULL && !log_level_parse(opts.loglevel, &level)) {
		fprintf(stderr, "pluto: unknown log level '%s'\n",
			opts.loglevel);
		return 2;
	}
	log_init(node_name(&opts), level, false);
	/* --check-config checks every node's files; a role checks only the
	 * files it opens, so a host needs no other node's private key. */
	if ((opts.check_config
		     ? config_load(opts.config_path, &config, &errors)
		     : config_load_node(opts.config_path, node_name(&opts),
					&config, &errors)) < 0) {
		fprintf(stderr, "pluto: %s: configuration errors:\n%s",
			opts.config_path, errors);
		free(errors);
		return 1;
	}
	if (opts.check_config) {
		printf("%s: configuration OK\n", config->path);
		config_free(&config);
		return 0;
	}
	if (opts.role == ROLE_WORKER &&
	    config_worker(config, opts.worker_name) == NULL) {
		log_error("no [Workers.%s] section in %s", opts.worker_name,
			  config->path);
		config_free(&config);
		return 1;
	}
	if (opts.loglevel == NULL)
		level = config->log_level;
	log_init(node_name(&opts), level, config->log_syslog);
	status = run_role(&opts, config);
	config_free(&config);
	return status;
}
