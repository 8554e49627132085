/*
 * pluto_pki.c - pluto-pki, which makes the internal PKI of a cluster
 * (DESIGN section 8, pluto-pki(1)).
 *
 * From the configuration it makes a CA and one certificate per node
 * (distributor, storage, every worker), each naming the node in its CN
 * and DNS subjectAltName and carrying its PublicIP and ListenIP as IP
 * subjectAltNames; optionally a self-signed certificate for the public
 * listener, for tests.  The CA certificate goes to RootCertLoc, its key to
 * --ca-key or, by default, RootCertLoc with .pem/.crt/.cert replaced by
 * .key (pki_ca_key_path).
 *
 * Everything is generated in memory and every target is checked before
 * the first file is written, so a refusal ("exists, use --force") leaves
 * the disk exactly as it was and names every file in the way at once.
 */
#include "autoconfig.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "pki.h"

#define CA_CN "pluto internal CA"
#define PUBLIC_TEST_CN "localhost"

struct options {
	const char *config_path;
	const char *ca_key_path;
	bool force;
	bool public_selfsigned;
	unsigned days;
	struct pki_key_params kp;
};

/* One file to write. */
struct target {
	const char *what;	/* for messages: "worker-1 key" */
	char *path;		/* borrowed from the config, or owned */
	bool owned;
	bool secret;
	char *pem;		/* owned */
};

struct plan {
	struct target *targets;
	size_t n, cap;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: pluto-pki [-c FILE] [--force] [--rsa-bits N] [--days N]\n"
		"                 [--ca-key FILE] [--public-selfsigned]\n"
		"\n"
		"  -c, --config FILE      configuration (default %s)\n"
		"  -f, --force            replace existing certificates and keys\n"
		"      --rsa-bits N       RSA keys of N bits (%u..%u) instead of"
		" ECDSA P-256\n"
		"      --days N           validity in days (default %u)\n"
		"      --ca-key FILE      CA key (default: RootCertLoc with"
		" .key)\n"
		"      --public-selfsigned\n"
		"                         also a self-signed test certificate for"
		" the\n"
		"                         public listener ([Distributor.PublicTLS])\n"
		"  -V, --version          print the version and exit\n"
		"  -h, --help             print this help and exit\n",
		CONFIG_DEFAULT_PATH, PKI_RSA_MIN_BITS, PKI_RSA_MAX_BITS,
		PKI_DEFAULT_DAYS);
}

static bool parse_unsigned(const char *s, unsigned min, unsigned max,
			   unsigned *v_r)
{
	unsigned long v;
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*v_r = (unsigned)v;
	return true;
}

/* Returns -1 to go on, or the exit status. */
static int parse_options(int argc, char **argv, struct options *opts)
{
	enum { OPT_RSA = 256, OPT_DAYS, OPT_PUBLIC, OPT_CA_KEY };
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "force", no_argument, NULL, 'f' },
		{ "rsa-bits", required_argument, NULL, OPT_RSA },
		{ "days", required_argument, NULL, OPT_DAYS },
		{ "ca-key", required_argument, NULL, OPT_CA_KEY },
		{ "public-selfsigned", no_argument, NULL, OPT_PUBLIC },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	memset(opts, 0, sizeof(*opts));
	opts->config_path = CONFIG_DEFAULT_PATH;
	opts->days = PKI_DEFAULT_DAYS;
	opts->kp.type = PKI_KEY_ECDSA_P256;
	while ((ch = getopt_long(argc, argv, "c:fVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			opts->config_path = optarg;
			break;
		case 'f':
			opts->force = true;
			break;
		case OPT_RSA:
			if (!parse_unsigned(optarg, PKI_RSA_MIN_BITS,
					    PKI_RSA_MAX_BITS,
					    &opts->kp.rsa_bits)) {
				fprintf(stderr, "pluto-pki: --rsa-bits: want a "
						"number from %u to %u\n",
					PKI_RSA_MIN_BITS, PKI_RSA_MAX_BITS);
				return 2;
			}
			opts->kp.type = PKI_KEY_RSA;
			break;
		case OPT_DAYS:
			if (!parse_unsigned(optarg, 1, PKI_MAX_DAYS,
					    &opts->days)) {
				fprintf(stderr, "pluto-pki: --days: want a "
						"number from 1 to %u\n",
					PKI_MAX_DAYS);
				return 2;
			}
			break;
		case OPT_CA_KEY:
			opts->ca_key_path = optarg;
			break;
		case OPT_PUBLIC:
			opts->public_selfsigned = true;
			break;
		case 'V':
			printf("pluto-pki %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pluto-pki: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	return -1;
}

static struct target *plan_add(struct plan *plan, const char *what,
			       const char *path, bool secret)
{
	struct target *t;

	if (plan->n == plan->cap) {
		size_t cap = plan->cap == 0 ? 16 : plan->cap * 2;
		struct target *p;

		if (cap > SIZE_MAX / sizeof(*p))
			return NULL;
		p = realloc(plan->targets, cap * sizeof(*p));
		if (p == NULL)
			return NULL;
		plan->targets = p;
		plan->cap = cap;
	}
	t = &plan->targets[plan->n++];
	memset(t, 0, sizeof(*t));
	t->what = what;
	t->path = (char *)(uintptr_t)path;
	t->secret = secret;
	return t;
}

static void plan_free(struct plan *plan)
{
	for (size_t i = 0; i < plan->n; i++) {
		struct target *t = &plan->targets[i];

		if (t->secret)
			pki_pem_free_secret(&t->pem);
		else
			free(t->pem);
		if (t->owned)
			free(t->path);
	}
	free(plan->targets);
}

/* Moves a pair's PEM strings into the two targets cert, key. */
static void plan_take(struct target *cert, struct target *key,
		      struct pki_pem_pair *pair)
{
	cert->pem = pair->cert_pem;
	key->pem = pair->key_pem;
	pair->cert_pem = NULL;
	pair->key_pem = NULL;
}

/* A node's certificate: what it is and where it goes. */
struct node {
	const char *name;
	const char *ips[2];
	const struct config_tls_files *tls;
	char what_cert[96], what_key[96];
};

/* Checks that no two targets share a path and none exists (unless
 * forced); reports every problem.  Returns the number of problems. */
static unsigned plan_check(const struct plan *plan, bool force)
{
	unsigned problems = 0;
	const char *error = NULL;

	for (size_t i = 0; i < plan->n; i++) {
		const struct target *t = &plan->targets[i];

		if (t->path == NULL) {
			fprintf(stderr, "pluto-pki: no path configured for "
					"the %s\n", t->what);
			problems++;
			continue;
		}
		for (size_t j = 0; j < i; j++) {
			if (plan->targets[j].path != NULL &&
			    strcmp(plan->targets[j].path, t->path) == 0) {
				fprintf(stderr, "pluto-pki: %s: both the %s "
						"and the %s would go there\n",
					t->path, plan->targets[j].what,
					t->what);
				problems++;
			}
		}
		if (pki_check_target(t->path, force, &error) < 0) {
			fprintf(stderr, "pluto-pki: %s\n", error);
			problems++;
		}
	}
	return problems;
}

static int run(const struct options *opts, const struct pluto_config *cfg)
{
	struct plan plan = { NULL, 0, 0 };
	struct pki_ca *ca = NULL;
	struct pki_pem_pair pair = { NULL, NULL };
	struct node *nodes = NULL;
	size_t n_nodes;
	const char *error = NULL;
	char *ca_key;
	int status = 1;

	ca_key = opts->ca_key_path != NULL ? strdup(opts->ca_key_path) :
					     pki_ca_key_path(cfg->root_cert_loc);
	if (cfg->n_workers > SIZE_MAX / sizeof(*nodes) - 2)
		goto oom;
	n_nodes = cfg->n_workers + 2;
	nodes = calloc(n_nodes, sizeof(*nodes));
	if (ca_key == NULL || nodes == NULL)
		goto oom;
	nodes[0] = (struct node){ "distributor",
				  { cfg->distributor.public_ip,
				    cfg->distributor.listen_ip },
				  &cfg->distributor.internal_tls, "", "" };
	nodes[1] = (struct node){ "storage",
				  { cfg->storage.public_ip,
				    cfg->storage.listen_ip },
				  &cfg->storage.tls, "", "" };
	for (size_t i = 0; i < cfg->n_workers; i++) {
		const struct config_node *w = &cfg->workers[i];

		nodes[i + 2] = (struct node){ w->name,
					      { w->public_ip, w->listen_ip },
					      &w->tls, "", "" };
	}

	/* Targets: CA key, CA cert, then per node cert and key, and the
	 * public pair last.  Indices below depend on this order. */
	struct target *t_ca_cert, *t_ca_key;

	t_ca_key = plan_add(&plan, "CA key", ca_key, true);
	if (t_ca_key == NULL)
		goto oom;
	t_ca_key->owned = true;
	ca_key = NULL;
	t_ca_cert = plan_add(&plan, "CA certificate (RootCertLoc)",
			     cfg->root_cert_loc, false);
	if (t_ca_cert == NULL)
		goto oom;
	for (size_t i = 0; i < n_nodes; i++) {
		struct node *n = &nodes[i];

		snprintf(n->what_cert, sizeof(n->what_cert),
			 "%s certificate", n->name);
		snprintf(n->what_key, sizeof(n->what_key), "%s key", n->name);
		if (plan_add(&plan, n->what_cert, n->tls->cert_loc, false) ==
			    NULL ||
		    plan_add(&plan, n->what_key, n->tls->key_loc, true) ==
			    NULL)
			goto oom;
	}
	if (opts->public_selfsigned &&
	    (plan_add(&plan, "public test certificate",
		      cfg->distributor.public_tls.cert_loc, false) == NULL ||
	     plan_add(&plan, "public test key",
		      cfg->distributor.public_tls.key_loc, true) == NULL))
		goto oom;
	if (plan_check(&plan, opts->force) > 0) {
		if (!opts->force)
			fprintf(stderr, "pluto-pki: nothing written\n");
		goto out;
	}

	/* Generate everything before writing anything. */
	if (pki_ca_generate(&opts->kp, CA_CN, opts->days, &ca, &error) < 0 ||
	    pki_ca_export(ca, &pair, &error) < 0)
		goto failed;
	plan_take(&plan.targets[1], &plan.targets[0], &pair);
	for (size_t i = 0; i < n_nodes; i++) {
		const struct pki_subject subject = { nodes[i].name,
						     nodes[i].ips, 2 };

		if (pki_issue_node(ca, &opts->kp, &subject, opts->days, &pair,
				   &error) < 0)
			goto failed;
		plan_take(&plan.targets[2 + 2 * i], &plan.targets[3 + 2 * i],
			  &pair);
	}
	if (opts->public_selfsigned) {
		const struct pki_subject subject = {
			PUBLIC_TEST_CN,
			nodes[0].ips, 2
		};

		if (pki_self_signed(&opts->kp, &subject, opts->days, &pair,
				    &error) < 0)
			goto failed;
		plan_take(&plan.targets[plan.n - 2], &plan.targets[plan.n - 1],
			  &pair);
	}

	for (size_t i = 0; i < plan.n; i++) {
		const struct target *t = &plan.targets[i];

		if (pki_write_file(t->path, t->pem, strlen(t->pem),
				   t->secret ? 0600 : 0644, opts->force,
				   &error) < 0) {
			fprintf(stderr, "pluto-pki: %s\n", error);
			if (i > 0)
				fprintf(stderr, "pluto-pki: the files "
						"written before are "
						"incomplete: rerun with "
						"--force\n");
			goto out;
		}
		printf("%s: %s\n", t->what, t->path);
	}
	status = 0;
	goto out;
failed:
	fprintf(stderr, "pluto-pki: %s\n", error);
	goto out;
oom:
	fprintf(stderr, "pluto-pki: out of memory\n");
out:
	pki_pem_pair_free(&pair);
	pki_ca_free(&ca);
	plan_free(&plan);
	free(ca_key);
	free(nodes);
	return status;
}

int main(int argc, char **argv)
{
	struct options opts;
	struct pluto_config *cfg = NULL;
	char *errors = NULL;
	int status;

	status = parse_options(argc, argv, &opts);
	if (status >= 0)
		return status;
	/* Keys are written 0600 whatever the umask; certificates and
	 * directories should be readable by the nodes' user. */
	umask(022);
	if (config_load_node(opts.config_path, CONFIG_NODE_NONE, &cfg,
			     &errors) < 0) {
		fprintf(stderr, "pluto-pki: %s:\n%s", opts.config_path,
			errors != NULL ? errors : "cannot load\n");
		free(errors);
		return 1;
	}
	status = run(&opts, cfg);
	config_free(&cfg);
	return status;
}
