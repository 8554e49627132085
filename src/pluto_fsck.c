/*
 * pluto_fsck.c - pluto-fsck, the convergence checker (pluto-fsck(1)):
 * compares the mail state and Maildir of users on two stopped nodes of a
 * cluster and prints every difference.
 *
 * Exit status: 0 when the nodes agree, 1 when they differ (or a journal
 * record could not be applied while loading), 2 on an error.
 */
#include "autoconfig.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fsck.h"
#include "log.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: pluto-fsck [-c FILE] (--user NAME | --all-users) "
		"NODE_A NODE_B\n"
		"\n"
		"  -c, --config FILE   configuration (default %s)\n"
		"  -u, --user NAME     compare this user\n"
		"  -a, --all-users     compare every user either node holds\n"
		"  -q, --quiet         print only the number of differences\n"
		"  -h, --help          print this help and exit\n"
		"\n"
		"NODE is \"storage\" or a worker's name.  Both nodes must be\n"
		"stopped.  Exit status: 0 identical, 1 different, 2 error.\n",
		CONFIG_DEFAULT_PATH);
}

static const struct config_node *node_of(const struct pluto_config *cfg,
					 const char *name)
{
	if (strcmp(name, "storage") == 0)
		return &cfg->storage;
	return config_worker(cfg, name);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "user", required_argument, NULL, 'u' },
		{ "all-users", no_argument, NULL, 'a' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = CONFIG_DEFAULT_PATH, *user = NULL;
	bool all = false, quiet = false;
	struct pluto_config *cfg = NULL;
	const struct config_node *na, *nb;
	struct fsck_node *a = NULL, *b = NULL;
	char *errors = NULL;
	const char *error = NULL;
	size_t diffs = 0;
	FILE *out;
	int c, status = 2;

	while ((c = getopt_long(argc, argv, "c:u:aqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'a':
			all = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 2 || (user == NULL) == !all) {
		usage(stderr);
		return 2;
	}
	log_init("pluto-fsck", LOG_LEVEL_WARN, false);
	if (config_load_node(config_path, CONFIG_NODE_NONE, &cfg, &errors) <
	    0) {
		fprintf(stderr, "pluto-fsck: %s:\n%s", config_path,
			errors != NULL ? errors : "cannot load\n");
		free(errors);
		return 2;
	}
	na = node_of(cfg, argv[optind]);
	nb = node_of(cfg, argv[optind + 1]);
	if (na == NULL || nb == NULL || na == nb) {
		fprintf(stderr, "pluto-fsck: need two different nodes of %s "
			"(storage or a worker's name)\n",
			config_path);
		goto out;
	}
	if (fsck_node_load(na->name, na->crdt_root, na->maildir_root, user, &a,
			   &error) < 0 ||
	    fsck_node_load(nb->name, nb->crdt_root, nb->maildir_root, user, &b,
			   &error) < 0) {
		fprintf(stderr, "pluto-fsck: %s\n", error);
		goto out;
	}
	out = quiet ? fopen("/dev/null", "w") : stdout;
	if (out == NULL) {
		perror("pluto-fsck: /dev/null");
		goto out;
	}
	if ((all ? fsck_compare_all(a, b, out, &diffs, &error)
		 : fsck_compare_user(a, b, user, out, &diffs, &error)) < 0) {
		fprintf(stderr, "pluto-fsck: %s\n", error);
	} else {
		size_t bad = fsck_node_apply_errors(a) +
			     fsck_node_apply_errors(b);

		printf("%zu difference%s between %s and %s\n", diffs,
		       diffs == 1 ? "" : "s", na->name, nb->name);
		status = diffs == 0 && bad == 0 ? 0 : 1;
	}
	if (quiet)
		fclose(out);
out:
	fsck_node_free(&a);
	fsck_node_free(&b);
	config_free(&cfg);
	return status;
}
