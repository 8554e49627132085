/*
 * config.h - the configuration of a pluto cluster (DESIGN section 7).
 *
 * config.c is the only user of iniparser.  config_load() reads the INI
 * file, applies defaults to every optional key, validates everything and
 * reports every problem at once, each naming its section and key.
 *
 * Relative paths in the file (certificates, keys, Maildir and CRDT roots,
 * the AuthFile) are resolved against the directory holding the config
 * file, so a self-contained cluster directory can be moved around.
 */
#ifndef PLUTO_CONFIG_H
#define PLUTO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CONFIG_DEFAULT_PATH SYSCONFDIR "/pluto/pluto.ini"

struct config_tls_files {
	char *cert_loc;		/* PEM certificate chain, absolute path */
	char *key_loc;		/* PEM private key, absolute path */
};

enum config_auth_adapter {
	CONFIG_AUTH_FILE = 0,
	CONFIG_AUTH_POSTGRES,
};

struct config_auth_file {
	char *file;		/* absolute path */
	char separator;		/* single byte, default ':' */
};

struct config_auth_postgres {
	char *ip;
	uint16_t port;		/* default 5432 */
	char *database;
	char *user;
	char *password;		/* never logged */
	bool use_tls;
};

struct config_distributor {
	char *public_ip;	/* the address clients use */
	char *listen_ip;	/* the address bound */
	uint16_t port;		/* implicit TLS (993 style) */
	uint16_t starttls_port;	/* plain + STARTTLS; 0 = not offered */
	/* LOGIN/AUTHENTICATE over plaintext on the STARTTLS port, allowed
	 * only for loopback peers and only for tests. */
	bool allow_plaintext_loopback;
	enum config_auth_adapter auth_adapter;
	struct config_tls_files public_tls;
	struct config_tls_files internal_tls;
	struct config_auth_file auth_file;
	struct config_auth_postgres auth_postgres;
};

/* A worker and the storage node have the same shape; storage has no user
 * range (it holds every user). */
struct config_node {
	char *name;		/* "storage" or the worker's section name */
	char *public_ip;
	char *listen_ip;
	uint16_t mail_port;	/* internal IMAP sessions from the distributor */
	uint16_t sync_port;	/* replication links */
	uint32_t user_start;	/* inclusive; workers only */
	uint32_t user_end;	/* inclusive; workers only */
	char *maildir_root;	/* absolute path */
	char *crdt_root;	/* absolute path (CRDTLayerRoot) */
	struct config_tls_files tls;
};

struct config_limits {
	size_t max_line_length;		/* bytes of one command line */
	uint64_t max_literal_size;	/* bytes, default 64 MiB */
	unsigned max_connections;	/* per node */
	unsigned max_connections_per_ip;/* per client address */
	unsigned idle_timeout_s;	/* autologout, RFC 3501: >= 30 min */
	unsigned pre_auth_timeout_s;	/* before LOGIN, shorter */
};

struct pluto_config {
	char *path;		/* absolute path of the file read */
	char *dir;		/* its directory */

	/* [Pluto] */
	char *root_cert_loc;	/* internal CA certificate */
	unsigned intl_conn_timeout_ms;
	unsigned intl_conn_retry;
	enum log_level log_level;
	bool log_syslog;
	char *run_as_user;	/* NULL: keep the user that started us */

	/* [IMAP] */
	char *greeting;
	char hierarchy_separator;

	struct config_limits limits;	/* [Limits] */

	struct config_distributor distributor;
	struct config_node *workers;
	size_t n_workers;
	struct config_node storage;
};

/* Reads and validates path.  On success returns 0 and a config the caller
 * frees with config_free().  On failure returns -1 and *errors_r holds
 * every problem found, one per line ("[Section] Key: what is wrong"),
 * which the caller frees. */
int config_load(const char *path, struct pluto_config **config_r,
		char **errors_r);
/* Like config_load(), but checks only the certificate, key and AuthFile
 * files that node_name ("distributor", "storage" or a worker's name) opens
 * itself, plus RootCertLoc, so that a host need not hold every other
 * node's private key.  node_name NULL checks every file, which is what
 * config_load() and --check-config do.  An unknown node_name is one more
 * error.  Everything else is validated in full either way. */
int config_load_node(const char *path, const char *node_name,
		     struct pluto_config **config_r, char **errors_r);
/* node_name for config_load_node() that checks no file at all: for
 * pluto-pki, which creates the certificates and keys the file names. */
extern const char config_node_none[];
#define CONFIG_NODE_NONE config_node_none
void config_free(struct pluto_config **config);

/* True when name is usable as a node name: 1 to CONFIG_NODE_NAME_MAX
 * letters, digits, '-', '_' or '.'.  It says nothing about the reserved
 * names "distributor" and "storage". */
#define CONFIG_NODE_NAME_MAX 63
bool config_node_name_valid(const char *name);

/* The worker named name, or NULL. */
const struct config_node *config_worker(const struct pluto_config *config,
					const char *name);
/* The worker whose UserStart..UserEnd holds user_id, or NULL. */
const struct config_node *
config_worker_for_user(const struct pluto_config *config, uint32_t user_id);

/* True when name is a node of this config: "distributor", "storage" or a
 * worker's name. */
bool config_is_node_name(const struct pluto_config *config, const char *name);

#endif
