/*
 * config.c - reads, defaults and validates the cluster configuration.
 *
 * This is the only file that talks to iniparser.  The schema is a set of
 * tables: one per kind of section, one row per key, naming the key as the
 * operator writes it (iniparser lower-cases everything, so we match without
 * case and print the canonical spelling), its type, its range and its
 * default.  Defaults go through the same parsers as the file's values, so a
 * default can never be something the file could not say.
 *
 * Loading never stops at the first problem: an operator fixing a file wants
 * the whole list, so every check appends one line to an error buffer and
 * carries on, and cross-section checks (user ranges, listening addresses)
 * only look at values that parsed.  Nothing here exits or aborts; the
 * caller decides what an invalid configuration means.
 *
 * Locking: iniparser reports syntax errors through a process-wide callback,
 * so the iniparser_load() call is serialised by ini_lock, which guards
 * ini_ctx.  Nothing else is shared.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef HAVE_INIPARSER_INIPARSER_H
#include <iniparser/iniparser.h>
#else
#include <iniparser.h>
#endif

#include "buf.h"
#include "config.h"

/* How a value is parsed and where it goes. */
enum key_type {
	KEY_STRING,	/* char *: non-empty text without control bytes */
	KEY_IP,		/* char *: an IPv4 or IPv6 address literal */
	KEY_UINT,	/* unsigned integer field of 2, 4 or 8 bytes */
	KEY_BOOL,	/* bool */
	KEY_BYTE,	/* char: exactly one byte */
	KEY_FILE,	/* char *: path, resolved, opened for reading */
	KEY_DIR,	/* char *: path, resolved, created by the node */
	KEY_LOGLEVEL,	/* enum log_level */
	KEY_ADAPTER,	/* enum config_auth_adapter */
	KEY_USER,	/* char *: a system user name */
	KEY_GREETING,	/* char *: text sent in the IMAP greeting */
	KEY_HIERSEP,	/* char: the IMAP hierarchy separator */
};

#define KEY_REQUIRED	0x1	/* missing is an error */
#define KEY_SECRET	0x2	/* never echo the value */
#define KEY_EMPTY_OK	0x4	/* "" is a valid string */

struct key_spec {
	const char *name;	/* canonical spelling */
	enum key_type type;
	unsigned flags;
	const char *def;	/* default, parsed like a value; NULL: none */
	uint64_t min, max;	/* KEY_UINT only */
	size_t offset;		/* of the field in the section's struct */
	size_t size;		/* of that field */
};

#define FIELD(type, field) offsetof(type, field), sizeof(((type *)0)->field)

#define REQ(name, kt, type, field) \
	{ name, kt, KEY_REQUIRED, NULL, 0, 0, FIELD(type, field) }
#define OPT(name, kt, def, type, field) \
	{ name, kt, 0, def, 0, 0, FIELD(type, field) }
#define NUM(name, flags, def, min, max, type, field) \
	{ name, KEY_UINT, flags, def, min, max, FIELD(type, field) }
#define KEY_END { NULL, KEY_STRING, 0, NULL, 0, 0, 0, 0 }

static const struct key_spec pluto_keys[] = {
	REQ("RootCertLoc", KEY_FILE, struct pluto_config, root_cert_loc),
	NUM("IntlConnTimeout", 0, "2000", 1, 600000,
	    struct pluto_config, intl_conn_timeout_ms),
	NUM("IntlConnRetry", 0, "3", 0, 100,
	    struct pluto_config, intl_conn_retry),
	OPT("LogLevel", KEY_LOGLEVEL, "info", struct pluto_config, log_level),
	OPT("Syslog", KEY_BOOL, "false", struct pluto_config, log_syslog),
	OPT("User", KEY_USER, NULL, struct pluto_config, run_as_user),
	KEY_END
};

static const struct key_spec imap_keys[] = {
	OPT("Greeting", KEY_GREETING, "Pluto ready.",
	    struct pluto_config, greeting),
	OPT("HierarchySeparator", KEY_HIERSEP, ".",
	    struct pluto_config, hierarchy_separator),
	KEY_END
};

static const struct key_spec limits_keys[] = {
	NUM("MaxLineLength", 0, "65536", 1024, 16777216,
	    struct config_limits, max_line_length),
	/* RFC 3501 sizes are 32-bit numbers. */
	NUM("MaxLiteralSize", 0, "67108864", 1, 4294967295u,
	    struct config_limits, max_literal_size),
	NUM("MaxConnections", 0, "10000", 1, 1000000,
	    struct config_limits, max_connections),
	NUM("MaxConnectionsPerIP", 0, "100", 1, 1000000,
	    struct config_limits, max_connections_per_ip),
	/* RFC 3501 5.4 asks for at least 30 minutes; we allow an operator
	 * to go lower, but not so low that IDLE becomes useless. */
	NUM("IdleTimeout", 0, "1800", 60, 86400,
	    struct config_limits, idle_timeout_s),
	NUM("PreAuthTimeout", 0, "60", 1, 3600,
	    struct config_limits, pre_auth_timeout_s),
	KEY_END
};

static const struct key_spec distributor_keys[] = {
	REQ("PublicIP", KEY_IP, struct config_distributor, public_ip),
	REQ("ListenIP", KEY_IP, struct config_distributor, listen_ip),
	NUM("Port", KEY_REQUIRED, NULL, 1, 65535,
	    struct config_distributor, port),
	NUM("StartTLSPort", 0, "0", 0, 65535,
	    struct config_distributor, starttls_port),
	OPT("AllowPlaintextLoopback", KEY_BOOL, "false",
	    struct config_distributor, allow_plaintext_loopback),
	REQ("AuthAdapter", KEY_ADAPTER, struct config_distributor,
	    auth_adapter),
	KEY_END
};

static const struct key_spec tls_keys[] = {
	REQ("CertLoc", KEY_FILE, struct config_tls_files, cert_loc),
	REQ("KeyLoc", KEY_FILE, struct config_tls_files, key_loc),
	KEY_END
};

static const struct key_spec auth_file_keys[] = {
	REQ("File", KEY_FILE, struct config_auth_file, file),
	OPT("Separator", KEY_BYTE, ":", struct config_auth_file, separator),
	KEY_END
};

static const struct key_spec auth_postgres_keys[] = {
	REQ("IP", KEY_IP, struct config_auth_postgres, ip),
	NUM("Port", 0, "5432", 1, 65535, struct config_auth_postgres, port),
	REQ("Database", KEY_STRING, struct config_auth_postgres, database),
	REQ("User", KEY_STRING, struct config_auth_postgres, user),
	{ "Password", KEY_STRING, KEY_SECRET | KEY_EMPTY_OK, "", 0, 0,
	  FIELD(struct config_auth_postgres, password) },
	OPT("UseTLS", KEY_BOOL, "false", struct config_auth_postgres, use_tls),
	KEY_END
};

static const struct key_spec worker_keys[] = {
	REQ("PublicIP", KEY_IP, struct config_node, public_ip),
	REQ("ListenIP", KEY_IP, struct config_node, listen_ip),
	NUM("MailPort", KEY_REQUIRED, NULL, 1, 65535,
	    struct config_node, mail_port),
	NUM("SyncPort", KEY_REQUIRED, NULL, 1, 65535,
	    struct config_node, sync_port),
	NUM("UserStart", KEY_REQUIRED, NULL, 1, UINT32_MAX,
	    struct config_node, user_start),
	NUM("UserEnd", KEY_REQUIRED, NULL, 1, UINT32_MAX,
	    struct config_node, user_end),
	REQ("MaildirRoot", KEY_DIR, struct config_node, maildir_root),
	REQ("CRDTLayerRoot", KEY_DIR, struct config_node, crdt_root),
	KEY_END
};

static const struct key_spec storage_keys[] = {
	REQ("PublicIP", KEY_IP, struct config_node, public_ip),
	REQ("ListenIP", KEY_IP, struct config_node, listen_ip),
	NUM("MailPort", KEY_REQUIRED, NULL, 1, 65535,
	    struct config_node, mail_port),
	NUM("SyncPort", KEY_REQUIRED, NULL, 1, 65535,
	    struct config_node, sync_port),
	REQ("MaildirRoot", KEY_DIR, struct config_node, maildir_root),
	REQ("CRDTLayerRoot", KEY_DIR, struct config_node, crdt_root),
	KEY_END
};

enum section_kind {
	SECT_PLUTO = 0,
	SECT_IMAP,
	SECT_LIMITS,
	SECT_DISTRIBUTOR,
	SECT_DIST_PUBLIC_TLS,
	SECT_DIST_INTERNAL_TLS,
	SECT_DIST_AUTH_FILE,
	SECT_DIST_AUTH_POSTGRES,
	SECT_STORAGE,
	SECT_STORAGE_TLS,
	SECT_FIXED_COUNT,	/* the sections above have fixed names */
	SECT_WORKER = SECT_FIXED_COUNT,
	SECT_WORKER_TLS,
	SECT_UNKNOWN,
};

struct section_spec {
	const char *name;	/* canonical; workers: "Workers" */
	const struct key_spec *keys;
	bool required;
	const char *node;	/* whose files these are; NULL: every node's */
};

static const struct section_spec section_specs[] = {
	[SECT_PLUTO] = { "Pluto", pluto_keys, true, NULL },
	[SECT_IMAP] = { "IMAP", imap_keys, false, NULL },
	[SECT_LIMITS] = { "Limits", limits_keys, false, NULL },
	[SECT_DISTRIBUTOR] = { "Distributor", distributor_keys, true,
			       "distributor" },
	[SECT_DIST_PUBLIC_TLS] = { "Distributor.PublicTLS", tls_keys, true,
				   "distributor" },
	[SECT_DIST_INTERNAL_TLS] = { "Distributor.InternalTLS", tls_keys,
				     true, "distributor" },
	/* Required or not depending on AuthAdapter. */
	[SECT_DIST_AUTH_FILE] = { "Distributor.AuthFile", auth_file_keys,
				  false, "distributor" },
	[SECT_DIST_AUTH_POSTGRES] = { "Distributor.AuthPostgres",
				      auth_postgres_keys, false,
				      "distributor" },
	[SECT_STORAGE] = { "Storage", storage_keys, true, "storage" },
	[SECT_STORAGE_TLS] = { "Storage.TLS", tls_keys, true, "storage" },
	[SECT_WORKER] = { "Workers", worker_keys, false, NULL },
	[SECT_WORKER_TLS] = { "Workers", tls_keys, false, NULL },
};

/* One section as found in the file. */
struct section {
	const char *key;	/* lower-case name, borrowed from the dict */
	enum section_kind kind;
	char *display;		/* canonical name for messages */
	size_t worker;		/* SECT_WORKER(_TLS): index in workers */
	bool ignored;		/* already reported, skip its keys */
	uint32_t ok;		/* bit i: key i has a valid value */
};

struct load_ctx {
	dictionary *dict;
	struct pluto_config *config;
	const char *only_node;	/* check only this node's files */
	struct section *sections;
	size_t n_sections;
	struct section *fixed[SECT_FIXED_COUNT];	/* NULL if absent */
	uint32_t fixed_ok[SECT_FIXED_COUNT];
	struct buf errors;
	unsigned n_errors;
	bool oom;
};

static pthread_mutex_t ini_lock = PTHREAD_MUTEX_INITIALIZER;
static struct load_ctx *ini_ctx;	/* guarded by ini_lock */

static void err_vadd(struct load_ctx *ctx, const char *section,
		     const char *key, const char *fmt, va_list ap)
	PLUTO_PRINTF(4, 0);

static void err_vadd(struct load_ctx *ctx, const char *section,
		     const char *key, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	ctx->n_errors++;
	if (section == NULL) {
		if (buf_printf(&ctx->errors, "%s\n", msg) < 0)
			ctx->oom = true;
	} else if (key == NULL) {
		if (buf_printf(&ctx->errors, "[%s]: %s\n", section, msg) < 0)
			ctx->oom = true;
	} else if (buf_printf(&ctx->errors, "[%s] %s: %s\n", section, key,
			      msg) < 0) {
		ctx->oom = true;
	}
}

/* Records "[section] key: message"; key NULL leaves it out, section NULL
 * records the bare message. */
static void err_add(struct load_ctx *ctx, const char *section,
		    const char *key, const char *fmt, ...) PLUTO_PRINTF(4, 5);

static void err_add(struct load_ctx *ctx, const char *section,
		    const char *key, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err_vadd(ctx, section, key, fmt, ap);
	va_end(ap);
}

/* iniparser's messages span lines ("...(3):\n-> bad line\n").  Keep the
 * first: the line number is enough, and the echoed line could be a
 * password someone forgot the '=' of. */
static int ini_error_cb(const char *fmt, ...) PLUTO_PRINTF(1, 2);

static int ini_error_cb(const char *fmt, ...)
{
	char line[600];
	const char *msg = line;
	va_list ap;
	size_t len;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	line[strcspn(line, "\n")] = '\0';
	for (char *p = line; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	}
	len = strlen(line);
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == ':'))
		line[--len] = '\0';
	if (strncmp(msg, "iniparser: ", 11) == 0)
		msg += 11;
	if (ini_ctx != NULL)
		err_add(ini_ctx, NULL, NULL, "%s", msg);
	return 0;
}

/* Writes v for an error message: printable ASCII as is, other bytes as
 * \xNN, truncated, so a stray byte cannot break the one-line format. */
static const char *show(char *out, size_t size, const char *v)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	assert(size >= 8);
	for (; *v != '\0'; v++) {
		unsigned char c = (unsigned char)*v;

		if (o + 8 > size) {
			memcpy(out + o, "...", 4);
			return out;
		}
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 0xf];
		}
	}
	out[o] = '\0';
	return out;
}

bool config_node_name_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > CONFIG_NODE_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!(isascii(c) && isalnum(c)) && c != '-' && c != '_' &&
		    c != '.')
			return false;
	}
	return true;
}

/* Joins a and b with one '/', dropping empty and "." components (".."
 * stays: folding it lexically would be wrong across symlinks). */
static char *path_join_clean(const char *a, const char *b)
{
	struct buf out = BUF_INIT;
	const char *parts[2] = { a, b };
	char *res;

	for (size_t i = 0; i < 2; i++) {
		const char *p = parts[i];

		while (p != NULL && *p != '\0') {
			size_t n = strcspn(p, "/");

			if (n > 0 && !(n == 1 && p[0] == '.')) {
				if (buf_append(&out, "/", 1) < 0 ||
				    buf_append(&out, p, n) < 0)
					goto fail;
			}
			p += n;
			if (*p == '/')
				p++;
		}
	}
	if (out.len == 0 && buf_append(&out, "/", 1) < 0)
		goto fail;
	if (buf_cstr(&out) == NULL)
		goto fail;
	res = (char *)buf_steal(&out, NULL);
	return res;
fail:
	buf_free(&out);
	return NULL;
}

/* The absolute form of path, relative to the working directory. */
static char *path_absolute(const char *path, const char **error_r)
{
	char *cwd = NULL;
	char *res;
	size_t size = 256;

	if (path[0] == '/') {
		res = path_join_clean(path, NULL);
		if (res == NULL)
			*error_r = "out of memory";
		return res;
	}
	for (;;) {
		char *n = realloc(cwd, size);

		if (n == NULL) {
			*error_r = "out of memory";
			free(cwd);
			return NULL;
		}
		cwd = n;
		if (getcwd(cwd, size) != NULL)
			break;
		if (errno != ERANGE || size > 65536) {
			*error_r = strerror(errno);
			free(cwd);
			return NULL;
		}
		size *= 2;
	}
	res = path_join_clean(cwd, path);
	free(cwd);
	if (res == NULL)
		*error_r = "out of memory";
	return res;
}

const char config_node_none[] = "";

static bool section_checks_files(const struct load_ctx *ctx,
				 const struct section *sec)
{
	const char *node;

	if (ctx->only_node == NULL)
		return true;
	if (ctx->only_node == config_node_none)
		return false;
	if (sec->kind == SECT_WORKER || sec->kind == SECT_WORKER_TLS)
		node = ctx->config->workers[sec->worker].name;
	else
		node = section_specs[sec->kind].node;
	return node == NULL || strcasecmp(node, ctx->only_node) == 0;
}

/* Opens path for reading, as the node will, and insists on a regular
 * file: a directory opens fine but is no certificate. */
static const char *check_readable(const char *path)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return strerror(errno);
	if (fstat(fd, &st) < 0) {
		int e = errno;

		close(fd);
		return strerror(e);
	}
	close(fd);
	if (!S_ISREG(st.st_mode))
		return "not a regular file";
	return NULL;
}

/* Strict decimal: digits only (no sign, space, or base prefix), checked
 * for overflow and range. */
static bool parse_number(const char *v, uint64_t min, uint64_t max,
			 uint64_t *n_r)
{
	unsigned long long n;
	char *end;

	if (!isdigit((unsigned char)v[0]))
		return false;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < min || n > max)
		return false;
	*n_r = n;
	return true;
}

static bool parse_bool(const char *v, bool *b_r)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*b_r = true;
			return true;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*b_r = false;
			return true;
		}
	}
	return false;
}

static bool has_control(const char *v)
{
	for (; *v != '\0'; v++) {
		unsigned char c = (unsigned char)*v;

		if (c < 0x20 || c == 0x7f)
			return true;
	}
	return false;
}

/* POSIX portable user names, as useradd accepts them. */
static bool user_name_valid(const char *v)
{
	size_t len = strlen(v);

	if (len == 0 || len > 32 || v[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];

		if (!(isascii(c) && isalnum(c)) && c != '-' && c != '_' &&
		    c != '.')
			return false;
	}
	return true;
}

/* A separator has to survive LIST responses unquoted-ambiguity free and
 * never be a wildcard or an IMAP special. */
static bool hierarchy_separator_valid(char c)
{
	unsigned char u = (unsigned char)c;

	if (u <= 0x20 || u >= 0x7f || isalnum(u))
		return false;
	return strchr("\"\\*%(){}[]", c) == NULL;
}

static void store_uint(void *field, size_t size, uint64_t n)
{
	switch (size) {
	case 2: {
		uint16_t v = (uint16_t)n;

		memcpy(field, &v, sizeof(v));
		break;
	}
	case 4: {
		uint32_t v = (uint32_t)n;

		memcpy(field, &v, sizeof(v));
		break;
	}
	case 8:
		memcpy(field, &n, sizeof(n));
		break;
	default:
		assert(!"unsupported integer width");
	}
}

static bool store_string(struct load_ctx *ctx, void *field, const char *v)
{
	char **p = field;
	char *copy = strdup(v);

	if (copy == NULL) {
		ctx->oom = true;
		return false;
	}
	free(*p);
	*p = copy;
	return true;
}

/* Parses v as key k of section sec into base.  Returns true when it is
 * valid and stored; otherwise records why and returns false. */
static bool parse_value(struct load_ctx *ctx, const struct section *sec,
			const char *display, const struct key_spec *k,
			void *base, const char *v)
{
	unsigned char *field = (unsigned char *)base + k->offset;
	char shown[80];
	uint64_t n;
	bool b;
	const char *why;
	char *path;

	if (v[0] == '\0' && !(k->flags & KEY_EMPTY_OK)) {
		err_add(ctx, display, k->name, "empty value");
		return false;
	}
	switch (k->type) {
	case KEY_STRING:
		if (has_control(v)) {
			err_add(ctx, display, k->name,
				"control characters are not allowed");
			return false;
		}
		return store_string(ctx, field, v);
	case KEY_IP: {
		unsigned char addr[16];

		if (inet_pton(AF_INET, v, addr) != 1 &&
		    inet_pton(AF_INET6, v, addr) != 1) {
			err_add(ctx, display, k->name,
				"\"%s\" is not an IPv4 or IPv6 address",
				show(shown, sizeof(shown), v));
			return false;
		}
		return store_string(ctx, field, v);
	}
	case KEY_UINT:
		if (!parse_number(v, k->min, k->max, &n)) {
			err_add(ctx, display, k->name,
				"\"%s\" is not a whole number from %llu to "
				"%llu", show(shown, sizeof(shown), v),
				(unsigned long long)k->min,
				(unsigned long long)k->max);
			return false;
		}
		store_uint(field, k->size, n);
		return true;
	case KEY_BOOL:
		if (!parse_bool(v, &b)) {
			err_add(ctx, display, k->name,
				"\"%s\" is not a boolean (true/false, yes/no,"
				" on/off, 1/0)",
				show(shown, sizeof(shown), v));
			return false;
		}
		memcpy(field, &b, sizeof(b));
		return true;
	case KEY_BYTE:
		if (strlen(v) != 1 || has_control(v)) {
			err_add(ctx, display, k->name,
				"\"%s\" is not exactly one printable byte",
				show(shown, sizeof(shown), v));
			return false;
		}
		*(char *)field = v[0];
		return true;
	case KEY_HIERSEP:
		if (strlen(v) != 1 || !hierarchy_separator_valid(v[0])) {
			err_add(ctx, display, k->name,
				"\"%s\" is not one punctuation character "
				"(and not one of \" \\ * %% ( ) { } [ ])",
				show(shown, sizeof(shown), v));
			return false;
		}
		*(char *)field = v[0];
		return true;
	case KEY_FILE:
	case KEY_DIR:
		if (has_control(v)) {
			err_add(ctx, display, k->name,
				"control characters are not allowed");
			return false;
		}
		path = path_join_clean(v[0] == '/' ? NULL : ctx->config->dir,
				       v);
		if (path == NULL) {
			ctx->oom = true;
			return false;
		}
		if (k->type == KEY_FILE && section_checks_files(ctx, sec)) {
			why = check_readable(path);
			if (why != NULL) {
				char long_shown[1024];

				err_add(ctx, display, k->name,
					"cannot read %s: %s",
					show(long_shown, sizeof(long_shown),
					     path), why);
				free(path);
				return false;
			}
		}
		free(*(char **)field);
		*(char **)field = path;
		return true;
	case KEY_LOGLEVEL: {
		enum log_level level;

		if (!log_level_parse(v, &level)) {
			err_add(ctx, display, k->name,
				"\"%s\" is not one of debug, info, warn, "
				"error", show(shown, sizeof(shown), v));
			return false;
		}
		memcpy(field, &level, sizeof(level));
		return true;
	}
	case KEY_ADAPTER: {
		enum config_auth_adapter a;

		if (strcasecmp(v, "AuthFile") == 0) {
			a = CONFIG_AUTH_FILE;
		} else if (strcasecmp(v, "AuthPostgres") == 0) {
			a = CONFIG_AUTH_POSTGRES;
		} else {
			err_add(ctx, display, k->name,
				"\"%s\" is not AuthFile or AuthPostgres",
				show(shown, sizeof(shown), v));
			return false;
		}
		memcpy(field, &a, sizeof(a));
		return true;
	}
	case KEY_USER:
		if (!user_name_valid(v)) {
			err_add(ctx, display, k->name,
				"\"%s\" is not a valid user name",
				show(shown, sizeof(shown), v));
			return false;
		}
		return store_string(ctx, field, v);
	case KEY_GREETING:
		if (strlen(v) > 200 || has_control(v)) {
			err_add(ctx, display, k->name,
				"must be at most 200 bytes without control "
				"characters");
			return false;
		}
		return store_string(ctx, field, v);
	}
	return false;
}

/* The value of key name in section secname, or NULL when absent. */
static const char *dict_value(struct load_ctx *ctx, const char *secname,
			      const char *name)
{
	struct buf full = BUF_INIT;
	const char *v;

	if (secname == NULL)
		return NULL;
	if (buf_printf(&full, "%s:%s", secname, name) < 0 ||
	    buf_cstr(&full) == NULL) {
		ctx->oom = true;
		buf_free(&full);
		return NULL;
	}
	/* iniparser lower-cases the lookup key itself. */
	v = iniparser_getstring(ctx->dict, (const char *)full.data, NULL);
	buf_free(&full);
	return v;
}

/* Parses every key of spec from section sec (NULL: absent, defaults
 * only) into base.  Returns the mask of keys holding a valid value. */
static uint32_t parse_section(struct load_ctx *ctx, struct section *sec,
			      enum section_kind kind, const char *display,
			      void *base)
{
	const struct key_spec *keys = section_specs[kind].keys;
	struct section absent;
	uint32_t ok = 0;

	if (sec == NULL) {
		memset(&absent, 0, sizeof(absent));
		absent.kind = kind;
		sec = &absent;
	}
	for (unsigned i = 0; keys[i].name != NULL; i++) {
		const struct key_spec *k = &keys[i];
		const char *v = dict_value(ctx, sec->key, k->name);

		assert(i < 32);
		if (v == NULL) {
			if (k->def == NULL && (k->flags & KEY_REQUIRED)) {
				if (sec->key != NULL)
					err_add(ctx, display, k->name,
						"missing (required)");
				continue;
			}
			if (k->def == NULL) {
				ok |= 1u << i;	/* optional, stays unset */
				continue;
			}
			v = k->def;
		}
		if (parse_value(ctx, sec, display, k, base, v))
			ok |= 1u << i;
	}
	sec->ok = ok;
	return ok;
}

static bool key_ok(enum section_kind kind, uint32_t ok, const char *name)
{
	const struct key_spec *keys = section_specs[kind].keys;

	for (unsigned i = 0; keys[i].name != NULL; i++) {
		if (strcmp(keys[i].name, name) == 0)
			return (ok & (1u << i)) != 0;
	}
	assert(!"no such key");
	return false;
}

static char *str_concat3(const char *a, const char *b, const char *c)
{
	struct buf out = BUF_INIT;

	if (buf_printf(&out, "%s%s%s", a, b, c) < 0 ||
	    buf_cstr(&out) == NULL) {
		buf_free(&out);
		return NULL;
	}
	return (char *)buf_steal(&out, NULL);
}

static size_t find_worker(const struct pluto_config *config,
			  const char *name)
{
	for (size_t i = 0; i < config->n_workers; i++) {
		if (strcasecmp(config->workers[i].name, name) == 0)
			return i;
	}
	return SIZE_MAX;
}

/* Sorts the file's sections into kinds, reports unknown ones and bad
 * worker names, and creates the workers.  Returns -1 only when out of
 * memory. */
static int classify_sections(struct load_ctx *ctx)
{
	dictionary *d = ctx->dict;
	size_t n = 0, n_workers = 0;
	char shown[80], shown2[80];

	for (ssize_t i = 0; i < d->size; i++) {
		if (d->key[i] != NULL && strchr(d->key[i], ':') == NULL)
			n++;
	}
	ctx->sections = calloc(n == 0 ? 1 : n, sizeof(*ctx->sections));
	if (ctx->sections == NULL)
		return -1;
	for (ssize_t i = 0; i < d->size; i++) {
		struct section *sec;
		const char *name = d->key[i];
		size_t len;

		if (name == NULL || strchr(name, ':') != NULL)
			continue;
		sec = &ctx->sections[ctx->n_sections++];
		sec->key = name;
		sec->kind = SECT_UNKNOWN;
		for (unsigned k = 0; k < SECT_FIXED_COUNT; k++) {
			if (strcasecmp(name, section_specs[k].name) == 0) {
				sec->kind = (enum section_kind)k;
				ctx->fixed[k] = sec;
				break;
			}
		}
		if (sec->kind != SECT_UNKNOWN ||
		    strncmp(name, "workers.", 8) != 0)
			continue;
		len = strlen(name + 8);
		if (len > 4 && strcmp(name + 8 + len - 4, ".tls") == 0)
			sec->kind = SECT_WORKER_TLS;
		else
			sec->kind = SECT_WORKER;
		if (sec->kind == SECT_WORKER &&
		    config_node_name_valid(name + 8) &&
		    strcmp(name + 8, "distributor") != 0 &&
		    strcmp(name + 8, "storage") != 0)
			n_workers++;
	}

	ctx->config->workers = calloc(n_workers == 0 ? 1 : n_workers,
				      sizeof(*ctx->config->workers));
	if (ctx->config->workers == NULL)
		return -1;
	/* Workers first, so TLS sections can find theirs. */
	for (size_t i = 0; i < ctx->n_sections; i++) {
		struct section *sec = &ctx->sections[i];
		const char *wname = sec->key + 8;
		struct config_node *w;

		if (sec->kind == SECT_UNKNOWN) {
			sec->ignored = true;
			err_add(ctx, show(shown, sizeof(shown), sec->key), NULL,
				"unknown section%s",
				strcasecmp(sec->key, "workers") == 0 ?
				" (workers are [Workers.<name>])" : "");
			continue;
		}
		if (sec->kind != SECT_WORKER)
			continue;
		if (!config_node_name_valid(wname)) {
			sec->ignored = true;
			err_add(ctx, show(shown, sizeof(shown), sec->key), NULL,
				"invalid worker name: use 1 to %d letters, "
				"digits, '-', '_' or '.'",
				CONFIG_NODE_NAME_MAX);
			continue;
		}
		if (strcmp(wname, "distributor") == 0 ||
		    strcmp(wname, "storage") == 0) {
			sec->ignored = true;
			err_add(ctx, sec->key, NULL,
				"\"%s\" is reserved and cannot name a worker",
				wname);
			continue;
		}
		sec->worker = ctx->config->n_workers++;
		w = &ctx->config->workers[sec->worker];
		w->name = strdup(wname);
		sec->display = str_concat3("Workers.", wname, "");
		if (w->name == NULL || sec->display == NULL)
			return -1;
	}
	for (size_t i = 0; i < ctx->n_sections; i++) {
		struct section *sec = &ctx->sections[i];
		char *wname, *parent;
		size_t w;

		if (sec->kind != SECT_WORKER_TLS)
			continue;
		wname = strndup(sec->key + 8, strlen(sec->key + 8) - 4);
		if (wname == NULL)
			return -1;
		w = find_worker(ctx->config, wname);
		if (w != SIZE_MAX) {
			sec->worker = w;
			sec->display = str_concat3("Workers.", wname, ".TLS");
			free(wname);
			if (sec->display == NULL)
				return -1;
			continue;
		}
		sec->ignored = true;
		/* A worker section with a bad or reserved name has been
		 * reported already; only an orphan needs a word. */
		parent = str_concat3("workers.", wname, "");
		if (parent == NULL) {
			free(wname);
			return -1;
		}
		if (iniparser_find_entry(ctx->dict, parent) == 0)
			err_add(ctx, show(shown, sizeof(shown), sec->key),
				NULL, "no matching [Workers.%s] section",
				show(shown2, sizeof(shown2), wname));
		free(parent);
		free(wname);
	}
	return 0;
}

/* The section owning a "section:key" entry: the longest section name
 * that prefixes it. */
static struct section *owner_of(struct load_ctx *ctx, const char *key,
				const char **name_r)
{
	struct section *best = NULL;
	size_t best_len = 0;

	for (size_t i = 0; i < ctx->n_sections; i++) {
		struct section *sec = &ctx->sections[i];
		size_t len = strlen(sec->key);

		if (len >= best_len && strncmp(key, sec->key, len) == 0 &&
		    key[len] == ':') {
			best = sec;
			best_len = len;
		}
	}
	*name_r = best == NULL ? key : key + best_len + 1;
	return best;
}

static const char *section_display(const struct section *sec)
{
	return sec->display != NULL ? sec->display :
	       section_specs[sec->kind].name;
}

/* Every key the schema does not know is an error: a typo must not be
 * silently ignored. */
static void check_unknown_keys(struct load_ctx *ctx)
{
	dictionary *d = ctx->dict;
	char shown[80];

	for (ssize_t i = 0; i < d->size; i++) {
		const char *key = d->key[i];
		const struct key_spec *keys;
		struct section *sec;
		const char *name;
		bool known = false;

		if (key == NULL || strchr(key, ':') == NULL)
			continue;
		sec = owner_of(ctx, key, &name);
		if (sec == NULL) {
			err_add(ctx, NULL, NULL,
				"%s: key outside any section",
				show(shown, sizeof(shown),
				     key[0] == ':' ? key + 1 : key));
			continue;
		}
		if (sec->ignored)
			continue;
		keys = section_specs[sec->kind].keys;
		for (unsigned k = 0; keys[k].name != NULL; k++) {
			if (strcasecmp(keys[k].name, name) == 0)
				known = true;
		}
		if (!known)
			err_add(ctx, section_display(sec),
				show(shown, sizeof(shown), name),
				"unknown key");
	}
}

static void parse_fixed(struct load_ctx *ctx, enum section_kind kind,
			void *base, bool required)
{
	struct section *sec = ctx->fixed[kind];
	const char *name = section_specs[kind].name;

	if (sec == NULL && required) {
		err_add(ctx, name, NULL, "missing section");
		return;
	}
	ctx->fixed_ok[kind] = parse_section(ctx, sec, kind, name, base);
}

static void parse_workers(struct load_ctx *ctx)
{
	struct pluto_config *config = ctx->config;
	bool *has_tls;

	if (config->n_workers == 0) {
		err_add(ctx, "Workers.<name>", NULL,
			"no worker configured; a cluster needs at least one");
		return;
	}
	has_tls = calloc(config->n_workers, sizeof(*has_tls));
	if (has_tls == NULL) {
		ctx->oom = true;
		return;
	}
	for (size_t i = 0; i < ctx->n_sections; i++) {
		struct section *sec = &ctx->sections[i];
		struct config_node *w;

		if (sec->ignored || (sec->kind != SECT_WORKER &&
				     sec->kind != SECT_WORKER_TLS))
			continue;
		w = &config->workers[sec->worker];
		if (sec->kind == SECT_WORKER) {
			parse_section(ctx, sec, SECT_WORKER, sec->display, w);
		} else {
			has_tls[sec->worker] = true;
			parse_section(ctx, sec, SECT_WORKER_TLS, sec->display,
				      &w->tls);
		}
	}
	for (size_t i = 0; i < config->n_workers; i++) {
		if (!has_tls[i])
			err_add(ctx, NULL, NULL,
				"[Workers.%s.TLS]: missing section",
				config->workers[i].name);
	}
	free(has_tls);
}

static const struct section *worker_section(const struct load_ctx *ctx,
					    size_t worker)
{
	for (size_t i = 0; i < ctx->n_sections; i++) {
		const struct section *sec = &ctx->sections[i];

		if (sec->kind == SECT_WORKER && !sec->ignored &&
		    sec->worker == worker)
			return sec;
	}
	return NULL;
}

/* UserStart <= UserEnd, and no user id served by two workers. */
static void check_user_ranges(struct load_ctx *ctx)
{
	const struct pluto_config *config = ctx->config;
	bool *valid = calloc(config->n_workers + 1, sizeof(*valid));

	if (valid == NULL) {
		ctx->oom = true;
		return;
	}
	for (size_t i = 0; i < config->n_workers; i++) {
		const struct config_node *w = &config->workers[i];
		const struct section *sec = worker_section(ctx, i);

		if (sec == NULL || !key_ok(SECT_WORKER, sec->ok, "UserStart") ||
		    !key_ok(SECT_WORKER, sec->ok, "UserEnd"))
			continue;
		if (w->user_start > w->user_end) {
			err_add(ctx, sec->display, "UserStart",
				"%u is greater than UserEnd %u",
				w->user_start, w->user_end);
			continue;
		}
		valid[i] = true;
		for (size_t j = 0; j < i; j++) {
			const struct config_node *o = &config->workers[j];

			if (!valid[j] || w->user_start > o->user_end ||
			    o->user_start > w->user_end)
				continue;
			err_add(ctx, sec->display, "UserStart",
				"users %u-%u overlap [Workers.%s] users %u-%u",
				w->user_start, w->user_end, o->name,
				o->user_start, o->user_end);
		}
	}
	free(valid);
}

struct listener {
	const char *section;
	const char *key;
	const char *ip_text;
	int family;
	unsigned char addr[16];
	bool wildcard;
	uint16_t port;
};

static bool listener_fill(struct listener *l, const char *section,
			  const char *key, const char *ip, uint16_t port)
{
	static const unsigned char zero[16];

	memset(l, 0, sizeof(*l));
	l->section = section;
	l->key = key;
	l->ip_text = ip;
	l->port = port;
	if (inet_pton(AF_INET, ip, l->addr) == 1) {
		l->family = AF_INET;
		l->wildcard = memcmp(l->addr, zero, 4) == 0;
	} else if (inet_pton(AF_INET6, ip, l->addr) == 1) {
		l->family = AF_INET6;
		l->wildcard = memcmp(l->addr, zero, 16) == 0;
	} else {
		return false;
	}
	return true;
}

/* Two listeners clash on the same port when either is a wildcard (on
 * Linux, :: also takes IPv4) or they name the same address.  pluto cannot
 * know which nodes share a host, so it assumes they all might. */
static bool listeners_clash(const struct listener *a, const struct listener *b)
{
	if (a->port != b->port)
		return false;
	if (a->wildcard || b->wildcard)
		return true;
	return a->family == b->family &&
	       memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

static void check_listeners(struct load_ctx *ctx)
{
	const struct pluto_config *config = ctx->config;
	const struct config_distributor *dist = &config->distributor;
	struct listener *ls;
	size_t n = 0, max;
	uint32_t ok;

	if (config->n_workers > (SIZE_MAX / sizeof(*ls) - 4) / 2) {
		ctx->oom = true;
		return;
	}
	max = 2 * config->n_workers + 4;
	ls = calloc(max, sizeof(*ls));
	if (ls == NULL) {
		ctx->oom = true;
		return;
	}
	ok = ctx->fixed_ok[SECT_DISTRIBUTOR];
	if (ctx->fixed[SECT_DISTRIBUTOR] != NULL &&
	    key_ok(SECT_DISTRIBUTOR, ok, "ListenIP")) {
		if (key_ok(SECT_DISTRIBUTOR, ok, "Port") &&
		    listener_fill(&ls[n], "Distributor", "Port",
				  dist->listen_ip, dist->port))
			n++;
		if (key_ok(SECT_DISTRIBUTOR, ok, "StartTLSPort") &&
		    dist->starttls_port != 0 &&
		    listener_fill(&ls[n], "Distributor", "StartTLSPort",
				  dist->listen_ip, dist->starttls_port))
			n++;
	}
	for (size_t i = 0; i < config->n_workers; i++) {
		const struct config_node *w = &config->workers[i];
		const struct section *sec = worker_section(ctx, i);

		if (sec == NULL || !key_ok(SECT_WORKER, sec->ok, "ListenIP"))
			continue;
		if (key_ok(SECT_WORKER, sec->ok, "MailPort") &&
		    listener_fill(&ls[n], sec->display, "MailPort",
				  w->listen_ip, w->mail_port))
			n++;
		if (key_ok(SECT_WORKER, sec->ok, "SyncPort") &&
		    listener_fill(&ls[n], sec->display, "SyncPort",
				  w->listen_ip, w->sync_port))
			n++;
	}
	ok = ctx->fixed_ok[SECT_STORAGE];
	if (ctx->fixed[SECT_STORAGE] != NULL &&
	    key_ok(SECT_STORAGE, ok, "ListenIP")) {
		if (key_ok(SECT_STORAGE, ok, "MailPort") &&
		    listener_fill(&ls[n], "Storage", "MailPort",
				  config->storage.listen_ip,
				  config->storage.mail_port))
			n++;
		if (key_ok(SECT_STORAGE, ok, "SyncPort") &&
		    listener_fill(&ls[n], "Storage", "SyncPort",
				  config->storage.listen_ip,
				  config->storage.sync_port))
			n++;
	}
	assert(n <= max);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < i; j++) {
			if (!listeners_clash(&ls[i], &ls[j]))
				continue;
			err_add(ctx, ls[i].section, ls[i].key,
				"%s port %u is already used by [%s] %s (%s)",
				ls[i].ip_text, ls[i].port, ls[j].section,
				ls[j].key, ls[j].ip_text);
			break;
		}
	}
	free(ls);
}

static void check_auth(struct load_ctx *ctx)
{
	const struct config_distributor *dist = &ctx->config->distributor;
	enum section_kind need;

	if (ctx->fixed[SECT_DISTRIBUTOR] == NULL ||
	    !key_ok(SECT_DISTRIBUTOR, ctx->fixed_ok[SECT_DISTRIBUTOR],
		    "AuthAdapter"))
		return;
	need = dist->auth_adapter == CONFIG_AUTH_FILE ?
	       SECT_DIST_AUTH_FILE : SECT_DIST_AUTH_POSTGRES;
	if (ctx->fixed[need] == NULL)
		err_add(ctx, section_specs[need].name, NULL,
			"missing section (AuthAdapter is %s)",
			need == SECT_DIST_AUTH_FILE ? "AuthFile" :
			"AuthPostgres");
}

static void load_dict(struct load_ctx *ctx)
{
	struct pluto_config *config = ctx->config;
	struct config_distributor *dist = &config->distributor;

	if (classify_sections(ctx) < 0) {
		ctx->oom = true;
		return;
	}
	check_unknown_keys(ctx);
	parse_fixed(ctx, SECT_PLUTO, config, true);
	parse_fixed(ctx, SECT_IMAP, config, false);
	parse_fixed(ctx, SECT_LIMITS, &config->limits, false);
	parse_fixed(ctx, SECT_DISTRIBUTOR, dist, true);
	parse_fixed(ctx, SECT_DIST_PUBLIC_TLS, &dist->public_tls, true);
	parse_fixed(ctx, SECT_DIST_INTERNAL_TLS, &dist->internal_tls, true);
	/* Present auth sections are checked whichever adapter is chosen;
	 * absent ones still get their defaults. */
	parse_fixed(ctx, SECT_DIST_AUTH_FILE, &dist->auth_file, false);
	parse_fixed(ctx, SECT_DIST_AUTH_POSTGRES, &dist->auth_postgres,
		    false);
	check_auth(ctx);
	parse_workers(ctx);
	config->storage.name = strdup("storage");
	if (config->storage.name == NULL)
		ctx->oom = true;
	parse_fixed(ctx, SECT_STORAGE, &config->storage, true);
	parse_fixed(ctx, SECT_STORAGE_TLS, &config->storage.tls, true);
	check_user_ranges(ctx);
	check_listeners(ctx);
	if (ctx->only_node != NULL && ctx->only_node != config_node_none &&
	    !config_is_node_name(config, ctx->only_node))
		err_add(ctx, NULL, NULL, "no node named \"%s\" in this file",
			ctx->only_node);
}

/* Reads the file under ini_lock, collecting iniparser's own complaints. */
static dictionary *load_ini(struct load_ctx *ctx, const char *path)
{
	dictionary *d;

	pthread_mutex_lock(&ini_lock);
	ini_ctx = ctx;
	iniparser_set_error_callback(ini_error_cb);
	d = iniparser_load(path);
	iniparser_set_error_callback(NULL);
	ini_ctx = NULL;
	pthread_mutex_unlock(&ini_lock);
	return d;
}

int config_load_node(const char *path, const char *node_name,
		     struct pluto_config **config_r, char **errors_r)
{
	struct load_ctx ctx;
	struct pluto_config *config;
	const char *why = NULL;
	char shown[80];
	char *slash;

	*config_r = NULL;
	*errors_r = NULL;
	memset(&ctx, 0, sizeof(ctx));
	buf_init(&ctx.errors);
	ctx.only_node = node_name;
	config = calloc(1, sizeof(*config));
	if (config == NULL) {
		ctx.oom = true;
		goto done;
	}
	ctx.config = config;
	config->path = path_absolute(path, &why);
	if (config->path == NULL) {
		err_add(&ctx, NULL, NULL, "%s: %s",
			show(shown, sizeof(shown), path), why);
		goto done;
	}
	config->dir = strdup(config->path);
	if (config->dir == NULL) {
		ctx.oom = true;
		goto done;
	}
	slash = strrchr(config->dir, '/');
	assert(slash != NULL);
	slash[slash == config->dir ? 1 : 0] = '\0';

	why = check_readable(config->path);
	if (why != NULL) {
		err_add(&ctx, NULL, NULL, "%s: %s",
			show(shown, sizeof(shown), config->path), why);
		goto done;
	}
	ctx.dict = load_ini(&ctx, config->path);
	if (ctx.dict == NULL) {
		if (ctx.n_errors == 0)
			err_add(&ctx, NULL, NULL, "%s: cannot be parsed",
				show(shown, sizeof(shown), config->path));
		goto done;
	}
	load_dict(&ctx);
done:
	if (ctx.dict != NULL)
		iniparser_freedict(ctx.dict);
	for (size_t i = 0; i < ctx.n_sections; i++)
		free(ctx.sections[i].display);
	free(ctx.sections);
	if (ctx.n_errors == 0 && !ctx.oom) {
		buf_free(&ctx.errors);
		*config_r = config;
		return 0;
	}
	config_free(&config);
	if (ctx.oom)
		buf_free(&ctx.errors);
	if (ctx.oom || buf_cstr(&ctx.errors) == NULL) {
		buf_free(&ctx.errors);
		*errors_r = strdup("out of memory while reading the "
				   "configuration\n");
	} else {
		*errors_r = (char *)buf_steal(&ctx.errors, NULL);
	}
	return -1;
}

int config_load(const char *path, struct pluto_config **config_r,
		char **errors_r)
{
	return config_load_node(path, NULL, config_r, errors_r);
}

static void node_free(struct config_node *node)
{
	free(node->name);
	free(node->public_ip);
	free(node->listen_ip);
	free(node->maildir_root);
	free(node->crdt_root);
	free(node->tls.cert_loc);
	free(node->tls.key_loc);
}

void config_free(struct pluto_config **config_p)
{
	struct pluto_config *config = *config_p;
	struct config_distributor *dist;

	if (config == NULL)
		return;
	*config_p = NULL;
	dist = &config->distributor;
	free(config->path);
	free(config->dir);
	free(config->root_cert_loc);
	free(config->run_as_user);
	free(config->greeting);
	free(dist->public_ip);
	free(dist->listen_ip);
	free(dist->public_tls.cert_loc);
	free(dist->public_tls.key_loc);
	free(dist->internal_tls.cert_loc);
	free(dist->internal_tls.key_loc);
	free(dist->auth_file.file);
	free(dist->auth_postgres.ip);
	free(dist->auth_postgres.database);
	free(dist->auth_postgres.user);
	if (dist->auth_postgres.password != NULL) {
		/* Not a secret worth a guaranteed wipe, but no need to leave
		 * it lying in freed memory either. */
		memset(dist->auth_postgres.password, 0,
		       strlen(dist->auth_postgres.password));
		free(dist->auth_postgres.password);
	}
	for (size_t i = 0; i < config->n_workers; i++)
		node_free(&config->workers[i]);
	free(config->workers);
	node_free(&config->storage);
	free(config);
}

const struct config_node *config_worker(const struct pluto_config *config,
					const char *name)
{
	size_t i = find_worker(config, name);

	return i == SIZE_MAX ? NULL : &config->workers[i];
}

const struct config_node *
config_worker_for_user(const struct pluto_config *config, uint32_t user_id)
{
	for (size_t i = 0; i < config->n_workers; i++) {
		const struct config_node *w = &config->workers[i];

		if (user_id >= w->user_start && user_id <= w->user_end)
			return w;
	}
	return NULL;
}

bool config_is_node_name(const struct pluto_config *config, const char *name)
{
	return strcasecmp(name, "distributor") == 0 ||
	       strcasecmp(name, "storage") == 0 ||
	       config_worker(config, name) != NULL;
}
