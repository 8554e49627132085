/*
 * test_config.c - the configuration loader against whole files.
 *
 * Every case writes a complete INI file into a fresh temporary directory
 * that also holds dummy certificate, key and users files, so the loader's
 * real file checks run.  A base cluster (distributor, two workers,
 * storage) is valid; each error case patches a few keys of it and names
 * the exact error lines it expects, so a wrong section or key name in a
 * message fails the test.
 */
#include "autoconfig.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "cu_run.h"

struct base_section {
	const char *name;
	const char *lines[12];
};

/* The valid cluster every case starts from. */
static const struct base_section base[] = {
	{ "Pluto", { "RootCertLoc = pki/internal-ca.pem", NULL } },
	{ "Distributor", { "PublicIP = 127.0.0.1", "ListenIP = 127.0.0.1",
			   "Port = 1993", "AuthAdapter = AuthFile", NULL } },
	{ "Distributor.PublicTLS", { "CertLoc = pki/public.pem",
				     "KeyLoc = pki/public.key", NULL } },
	{ "Distributor.InternalTLS", { "CertLoc = pki/distributor.pem",
				       "KeyLoc = pki/distributor.key",
				       NULL } },
	{ "Distributor.AuthFile", { "File = users.txt", NULL } },
	{ "Workers.worker-1", { "PublicIP = 127.0.0.1",
				"ListenIP = 127.0.0.1", "MailPort = 20001",
				"SyncPort = 20002", "UserStart = 1",
				"UserEnd = 10",
				"MaildirRoot = data/worker-1/maildir",
				"CRDTLayerRoot = data/worker-1/crdt", NULL } },
	{ "Workers.worker-1.TLS", { "CertLoc = pki/worker-1.pem",
				    "KeyLoc = pki/worker-1.key", NULL } },
	{ "Workers.worker-2", { "PublicIP = 127.0.0.1",
				"ListenIP = 127.0.0.1", "MailPort = 20011",
				"SyncPort = 20012", "UserStart = 11",
				"UserEnd = 20",
				"MaildirRoot = data/worker-2/maildir",
				"CRDTLayerRoot = /var/lib/pluto/crdt2", NULL } },
	{ "Workers.worker-2.TLS", { "CertLoc = pki/worker-2.pem",
				    "KeyLoc = pki/worker-2.key", NULL } },
	{ "Storage", { "PublicIP = 127.0.0.1", "ListenIP = 127.0.0.1",
		       "MailPort = 21001", "SyncPort = 21002",
		       "MaildirRoot = data/storage/maildir",
		       "CRDTLayerRoot = data/storage/crdt", NULL } },
	{ "Storage.TLS", { "CertLoc = pki/storage.pem",
			   "KeyLoc = pki/storage.key", NULL } },
};

static const char *const dummy_files[] = {
	"pki/internal-ca.pem", "pki/public.pem", "pki/public.key",
	"pki/distributor.pem", "pki/distributor.key", "pki/worker-1.pem",
	"pki/worker-1.key", "pki/worker-2.pem", "pki/worker-2.key",
	"pki/storage.pem", "pki/storage.key", "users.txt",
};

/* A change to the base file: set section/key to value, drop the key
 * (value NULL) or, with key NULL, drop the whole section.  A section or
 * key the base lacks is appended. */
struct patch {
	const char *section;
	const char *key;
	const char *value;
};

#define MAX_PATCHES 6
#define MAX_EXPECT 6

struct error_case {
	const char *what;
	struct patch patches[MAX_PATCHES];
	const char *expect[MAX_EXPECT];	/* whole error lines */
	const char *prefix;		/* raw text before the first section */
	const char *extra;		/* raw text appended to the file */
};

static void write_file(const char *dir, const char *rel, const char *text)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	CU_ASSERT_EQUAL(fclose(f), 0);
}

/* A temp directory with the dummy files the base config names. */
static char *make_cluster_dir(void)
{
	char *dir = cu_tempdir("test_config");
	char path[PATH_MAX];

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	snprintf(path, sizeof(path), "%s/pki", dir);
	CU_ASSERT_EQUAL_FATAL(mkdir(path, 0700), 0);
	for (size_t i = 0; i < sizeof(dummy_files) / sizeof(dummy_files[0]);
	     i++)
		write_file(dir, dummy_files[i], "dummy\n");
	return dir;
}

static size_t key_len(const char *line)
{
	return strcspn(line, " =");
}

static const struct patch *find_patch(const struct patch *patches,
				      const char *section, const char *key,
				      size_t klen)
{
	for (size_t i = 0; i < MAX_PATCHES && patches[i].section != NULL;
	     i++) {
		const struct patch *p = &patches[i];

		if (strcmp(p->section, section) != 0)
			continue;
		if (key == NULL && p->key == NULL)
			return p;
		if (key != NULL && p->key != NULL &&
		    strlen(p->key) == klen && strncmp(p->key, key, klen) == 0)
			return p;
	}
	return NULL;
}

static bool base_has(const char *section, const char *key)
{
	for (size_t s = 0; s < sizeof(base) / sizeof(base[0]); s++) {
		if (strcmp(base[s].name, section) != 0)
			continue;
		if (key == NULL)
			return true;
		for (size_t l = 0; base[s].lines[l] != NULL; l++) {
			const char *line = base[s].lines[l];

			if (key_len(line) == strlen(key) &&
			    strncmp(line, key, strlen(key)) == 0)
				return true;
		}
	}
	return false;
}

/* Writes base + patches + extra to dir/pluto.ini and returns the path
 * (static storage). */
static const char *write_config(const char *dir, const struct patch *patches,
				const char *prefix, const char *extra)
{
	static char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/pluto.ini", dir);
	f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fprintf(f, "; generated by test_config\n");
	if (prefix != NULL)
		fputs(prefix, f);
	for (size_t s = 0; s < sizeof(base) / sizeof(base[0]); s++) {
		const struct base_section *b = &base[s];

		if (find_patch(patches, b->name, NULL, 0) != NULL)
			continue;
		fprintf(f, "\n[%s]\n", b->name);
		for (size_t l = 0; b->lines[l] != NULL; l++) {
			const struct patch *p = find_patch(
				patches, b->name, b->lines[l],
				key_len(b->lines[l]));

			if (p == NULL)
				fprintf(f, "%s\n", b->lines[l]);
			else if (p->value != NULL)
				fprintf(f, "%s = %s\n", p->key, p->value);
		}
		for (size_t i = 0; i < MAX_PATCHES &&
				   patches[i].section != NULL; i++) {
			const struct patch *p = &patches[i];

			if (strcmp(p->section, b->name) == 0 &&
			    p->key != NULL && p->value != NULL &&
			    !base_has(p->section, p->key))
				fprintf(f, "%s = %s\n", p->key, p->value);
		}
	}
	/* Sections the base does not have. */
	for (size_t i = 0; i < MAX_PATCHES && patches[i].section != NULL;
	     i++) {
		const struct patch *p = &patches[i];
		bool first = true;

		if (base_has(p->section, NULL) || p->key == NULL)
			continue;
		for (size_t j = 0; j < i; j++) {
			if (strcmp(patches[j].section, p->section) == 0)
				first = false;
		}
		if (first)
			fprintf(f, "\n[%s]\n", p->section);
		if (p->value != NULL)
			fprintf(f, "%s = %s\n", p->key, p->value);
	}
	if (extra != NULL)
		fputs(extra, f);
	CU_ASSERT_EQUAL(fclose(f), 0);
	return path;
}

static unsigned count_lines(const char *s)
{
	unsigned n = 0;

	for (; *s != '\0'; s++) {
		if (*s == '\n')
			n++;
	}
	return n;
}

static bool has_line(const char *errors, const char *line)
{
	size_t len = strlen(line);

	for (const char *p = errors; p != NULL && *p != '\0';) {
		const char *nl = strchr(p, '\n');
		size_t n = nl == NULL ? strlen(p) : (size_t)(nl - p);

		if (n == len && strncmp(p, line, len) == 0)
			return true;
		p = nl == NULL ? NULL : nl + 1;
	}
	return false;
}

static void test_valid_full(void)
{
	static const struct patch patches[] = {
		{ "Pluto", "LogLevel", "debug" },
		{ "Pluto", "User", "_pluto" },
		{ "IMAP", "Greeting", "\"Hello; there\"" },
		{ "Distributor", "StartTLSPort", "1143" },
		{ "Limits", "MaxLiteralSize", "1048576" },
		{ NULL, NULL, NULL },
	};
	char *dir = make_cluster_dir();
	const char *path = write_config(dir, patches, NULL, NULL);
	struct pluto_config *c = NULL;
	char *errors = NULL;
	char want[PATH_MAX];

	CU_ASSERT_EQUAL_FATAL(config_load(path, &c, &errors), 0);
	CU_ASSERT_PTR_NULL(errors);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_STRING_EQUAL(c->path, path);
	CU_ASSERT_STRING_EQUAL(c->dir, dir);
	snprintf(want, sizeof(want), "%s/pki/internal-ca.pem", dir);
	CU_ASSERT_STRING_EQUAL(c->root_cert_loc, want);
	CU_ASSERT_EQUAL(c->intl_conn_timeout_ms, 2000);
	CU_ASSERT_EQUAL(c->intl_conn_retry, 3);
	CU_ASSERT_EQUAL(c->log_level, LOG_LEVEL_DEBUG);
	CU_ASSERT_FALSE(c->log_syslog);
	CU_ASSERT_STRING_EQUAL(c->run_as_user, "_pluto");
	CU_ASSERT_STRING_EQUAL(c->greeting, "Hello; there");
	CU_ASSERT_EQUAL(c->hierarchy_separator, '.');
	CU_ASSERT_EQUAL(c->limits.max_line_length, 65536);
	CU_ASSERT_EQUAL(c->limits.max_literal_size, 1048576);
	CU_ASSERT_EQUAL(c->limits.max_connections, 10000);
	CU_ASSERT_EQUAL(c->limits.max_connections_per_ip, 100);
	CU_ASSERT_EQUAL(c->limits.idle_timeout_s, 1800);
	CU_ASSERT_EQUAL(c->limits.pre_auth_timeout_s, 60);

	CU_ASSERT_STRING_EQUAL(c->distributor.public_ip, "127.0.0.1");
	CU_ASSERT_EQUAL(c->distributor.port, 1993);
	CU_ASSERT_EQUAL(c->distributor.starttls_port, 1143);
	CU_ASSERT_FALSE(c->distributor.allow_plaintext_loopback);
	CU_ASSERT_EQUAL(c->distributor.auth_adapter, CONFIG_AUTH_FILE);
	snprintf(want, sizeof(want), "%s/users.txt", dir);
	CU_ASSERT_STRING_EQUAL(c->distributor.auth_file.file, want);
	CU_ASSERT_EQUAL(c->distributor.auth_file.separator, ':');
	snprintf(want, sizeof(want), "%s/pki/public.key", dir);
	CU_ASSERT_STRING_EQUAL(c->distributor.public_tls.key_loc, want);
	/* Absent AuthPostgres still has its defaults. */
	CU_ASSERT_EQUAL(c->distributor.auth_postgres.port, 5432);
	CU_ASSERT_FALSE(c->distributor.auth_postgres.use_tls);

	CU_ASSERT_EQUAL_FATAL(c->n_workers, 2);
	CU_ASSERT_STRING_EQUAL(c->workers[0].name, "worker-1");
	CU_ASSERT_EQUAL(c->workers[0].mail_port, 20001);
	CU_ASSERT_EQUAL(c->workers[0].sync_port, 20002);
	CU_ASSERT_EQUAL(c->workers[0].user_start, 1);
	CU_ASSERT_EQUAL(c->workers[0].user_end, 10);
	snprintf(want, sizeof(want), "%s/data/worker-1/maildir", dir);
	CU_ASSERT_STRING_EQUAL(c->workers[0].maildir_root, want);
	snprintf(want, sizeof(want), "%s/pki/worker-2.pem", dir);
	CU_ASSERT_STRING_EQUAL(c->workers[1].tls.cert_loc, want);
	/* Absolute paths are kept. */
	CU_ASSERT_STRING_EQUAL(c->workers[1].crdt_root,
			       "/var/lib/pluto/crdt2");
	CU_ASSERT_STRING_EQUAL(c->storage.name, "storage");
	CU_ASSERT_EQUAL(c->storage.mail_port, 21001);
	snprintf(want, sizeof(want), "%s/data/storage/crdt", dir);
	CU_ASSERT_STRING_EQUAL(c->storage.crdt_root, want);

	CU_ASSERT_PTR_EQUAL(config_worker(c, "worker-2"), &c->workers[1]);
	CU_ASSERT_PTR_EQUAL(config_worker(c, "Worker-2"), &c->workers[1]);
	CU_ASSERT_PTR_NULL(config_worker(c, "worker-3"));
	CU_ASSERT_PTR_NULL(config_worker(c, "storage"));
	CU_ASSERT_TRUE(config_is_node_name(c, "distributor"));
	CU_ASSERT_TRUE(config_is_node_name(c, "storage"));
	CU_ASSERT_TRUE(config_is_node_name(c, "worker-1"));
	CU_ASSERT_FALSE(config_is_node_name(c, "worker-3"));
	CU_ASSERT_FALSE(config_is_node_name(c, ""));
	config_free(&c);
	CU_ASSERT_PTR_NULL(c);
	config_free(&c);
	cu_rmtree(dir);
	free(dir);
}

/* Every kind of error, each with the exact lines it must produce. */
static const struct error_case error_cases[] = {
	{ "missing required key",
	  { { "Storage", "MailPort", NULL } },
	  { "[Storage] MailPort: missing (required)" }, NULL, NULL },
	{ "port with trailing garbage",
	  { { "Workers.worker-1", "MailPort", "12abc" } },
	  { "[Workers.worker-1] MailPort: \"12abc\" is not a whole number "
	    "from 1 to 65535" }, NULL, NULL },
	{ "empty port",
	  { { "Storage", "SyncPort", "" } },
	  { "[Storage] SyncPort: empty value" }, NULL, NULL },
	{ "negative port",
	  { { "Distributor", "Port", "-1" } },
	  { "[Distributor] Port: \"-1\" is not a whole number from 1 to "
	    "65535" }, NULL, NULL },
	{ "huge port",
	  { { "Distributor", "Port", "99999999999" } },
	  { "[Distributor] Port: \"99999999999\" is not a whole number "
	    "from 1 to 65535" }, NULL, NULL },
	{ "port past 2^64",
	  { { "Storage", "MailPort", "184467440737095516160" } },
	  { "[Storage] MailPort: \"184467440737095516160\" is not a whole "
	    "number from 1 to 65535" }, NULL, NULL },
	{ "port 0 where 0 is not allowed",
	  { { "Storage", "MailPort", "0" } },
	  { "[Storage] MailPort: \"0\" is not a whole number from 1 to "
	    "65535" }, NULL, NULL },
	{ "hex is not decimal",
	  { { "Limits", "MaxConnections", "0x10" } },
	  { "[Limits] MaxConnections: \"0x10\" is not a whole number from 1 "
	    "to 1000000" }, NULL, NULL },
	{ "plus sign",
	  { { "Pluto", "IntlConnRetry", "+3" } },
	  { "[Pluto] IntlConnRetry: \"+3\" is not a whole number from 0 to "
	    "100" }, NULL, NULL },
	{ "idle timeout below the floor",
	  { { "Limits", "IdleTimeout", "59" } },
	  { "[Limits] IdleTimeout: \"59\" is not a whole number from 60 to "
	    "86400" }, NULL, NULL },
	{ "user id 0",
	  { { "Workers.worker-1", "UserStart", "0" } },
	  { "[Workers.worker-1] UserStart: \"0\" is not a whole number from "
	    "1 to 4294967295" }, NULL, NULL },
	{ "bad boolean",
	  { { "Pluto", "Syslog", "maybe" } },
	  { "[Pluto] Syslog: \"maybe\" is not a boolean (true/false, yes/no,"
	    " on/off, 1/0)" }, NULL, NULL },
	{ "bad log level",
	  { { "Pluto", "LogLevel", "loud" } },
	  { "[Pluto] LogLevel: \"loud\" is not one of debug, info, warn, "
	    "error" }, NULL, NULL },
	{ "bad IP",
	  { { "Workers.worker-2", "ListenIP", "localhost" } },
	  { "[Workers.worker-2] ListenIP: \"localhost\" is not an IPv4 or "
	    "IPv6 address" }, NULL, NULL },
	{ "bad auth adapter",
	  { { "Distributor", "AuthAdapter", "AuthLDAP" } },
	  { "[Distributor] AuthAdapter: \"AuthLDAP\" is not AuthFile or "
	    "AuthPostgres" }, NULL, NULL },
	{ "adapter section missing",
	  { { "Distributor", "AuthAdapter", "AuthPostgres" } },
	  { "[Distributor.AuthPostgres]: missing section (AuthAdapter is "
	    "AuthPostgres)" }, NULL, NULL },
	{ "postgres section incomplete",
	  { { "Distributor", "AuthAdapter", "authpostgres" },
	    { "Distributor.AuthPostgres", "IP", "10.0.0.5" },
	    { "Distributor.AuthPostgres", "Port", "70000" },
	    { "Distributor.AuthPostgres", "UseTLS", "yes" } },
	  { "[Distributor.AuthPostgres] Port: \"70000\" is not a whole "
	    "number from 1 to 65535",
	    "[Distributor.AuthPostgres] Database: missing (required)",
	    "[Distributor.AuthPostgres] User: missing (required)" }, NULL, NULL },
	{ "separator of two bytes",
	  { { "Distributor.AuthFile", "Separator", "::" } },
	  { "[Distributor.AuthFile] Separator: \"::\" is not exactly one "
	    "printable byte" }, NULL, NULL },
	{ "hierarchy separator not allowed",
	  { { "IMAP", "HierarchySeparator", "*" } },
	  { "[IMAP] HierarchySeparator: \"*\" is not one punctuation "
	    "character (and not one of \" \\ * % ( ) { } [ ])" }, NULL, NULL },
	{ "missing auth file",
	  { { "Distributor.AuthFile", "File", "nope.txt" } },
	  { "@[Distributor.AuthFile] File: cannot read @/nope.txt: No such "
	    "file or directory" }, NULL, NULL },
	{ "missing root cert",
	  { { "Pluto", "RootCertLoc", "pki/missing-ca.pem" } },
	  { "@[Pluto] RootCertLoc: cannot read @/pki/missing-ca.pem: No such "
	    "file or directory" }, NULL, NULL },
	{ "key is a directory",
	  { { "Storage.TLS", "KeyLoc", "pki" } },
	  { "@[Storage.TLS] KeyLoc: cannot read @/pki: not a regular "
	    "file" }, NULL, NULL },
	{ "unknown key",
	  { { "Workers.worker-1", "MailPrt", "20003" } },
	  { "[Workers.worker-1] mailprt: unknown key" }, NULL, NULL },
	{ "unknown section",
	  { { "Distributer", "Port", "1" } },
	  { "[distributer]: unknown section" }, NULL, NULL },
	{ "bare Workers section",
	  { { "Workers", "UserStart", "1" } },
	  { "[workers]: unknown section (workers are [Workers.<name>])" },
	  NULL, NULL },
	{ "key before any section",
	  { { NULL, NULL, NULL } },
	  { "stray: key outside any section" },
	  "stray = 1\n", NULL },
	{ "missing required section",
	  { { "Storage", NULL, NULL } },
	  { "[Storage]: missing section" }, NULL, NULL },
	{ "missing distributor",
	  { { "Distributor", NULL, NULL } },
	  { "[Distributor]: missing section" }, NULL, NULL },
	{ "missing worker TLS",
	  { { "Workers.worker-2.TLS", NULL, NULL } },
	  { "[Workers.worker-2.TLS]: missing section" }, NULL, NULL },
	{ "orphan worker TLS",
	  { { "Workers.worker-3.TLS", "CertLoc", "pki/worker-1.pem" },
	    { "Workers.worker-3.TLS", "KeyLoc", "pki/worker-1.key" } },
	  { "[workers.worker-3.tls]: no matching [Workers.worker-3] "
	    "section" }, NULL, NULL },
	{ "no workers at all",
	  { { "Workers.worker-1", NULL, NULL },
	    { "Workers.worker-1.TLS", NULL, NULL },
	    { "Workers.worker-2", NULL, NULL },
	    { "Workers.worker-2.TLS", NULL, NULL } },
	  { "[Workers.<name>]: no worker configured; a cluster needs at "
	    "least one" }, NULL, NULL },
	{ "reserved worker name",
	  { { "Workers.storage", "PublicIP", "127.0.0.1" } },
	  { "[workers.storage]: \"storage\" is reserved and cannot name a "
	    "worker" }, NULL, NULL },
	{ "invalid worker name",
	  { { "Workers.bad!name", "PublicIP", "127.0.0.1" } },
	  { "[workers.bad!name]: invalid worker name: use 1 to 63 letters, "
	    "digits, '-', '_' or '.'" }, NULL, NULL },
	{ "worker name too long",
	  { { "Workers.a234567890123456789012345678901234567890123456789"
	      "012345678901234", "PublicIP", "127.0.0.1" } },
	  { "[workers.a234567890123456789012345678901234567890123456789"
	    "012345678901234]: invalid worker name: use 1 to 63 letters, "
	    "digits, '-', '_' or '.'" }, NULL, NULL },
	{ "start after end",
	  { { "Workers.worker-2", "UserStart", "30" } },
	  { "[Workers.worker-2] UserStart: 30 is greater than UserEnd 20" },
	  NULL, NULL },
	{ "overlapping ranges",
	  { { "Workers.worker-2", "UserStart", "10" } },
	  { "[Workers.worker-2] UserStart: users 10-20 overlap "
	    "[Workers.worker-1] users 1-10" }, NULL, NULL },
	{ "same address twice",
	  { { "Storage", "SyncPort", "20001" } },
	  { "[Storage] SyncPort: 127.0.0.1 port 20001 is already used by "
	    "[Workers.worker-1] MailPort (127.0.0.1)" }, NULL, NULL },
	{ "wildcard clashes with a specific address",
	  { { "Storage", "ListenIP", "0.0.0.0" },
	    { "Storage", "MailPort", "1993" } },
	  { "[Storage] MailPort: 0.0.0.0 port 1993 is already used by "
	    "[Distributor] Port (127.0.0.1)" }, NULL, NULL },
	{ "STARTTLS port equal to the TLS port",
	  { { "Distributor", "StartTLSPort", "1993" } },
	  { "[Distributor] StartTLSPort: 127.0.0.1 port 1993 is already "
	    "used by [Distributor] Port (127.0.0.1)" }, NULL, NULL },
	{ "a node's two ports equal",
	  { { "Workers.worker-1", "SyncPort", "20001" } },
	  { "[Workers.worker-1] SyncPort: 127.0.0.1 port 20001 is already "
	    "used by [Workers.worker-1] MailPort (127.0.0.1)" }, NULL, NULL },
	{ "greeting with a control byte",
	  { { "IMAP", "Greeting", "\"a\tb\"" } },
	  { "[IMAP] Greeting: must be at most 200 bytes without control "
	    "characters" }, NULL, NULL },
	{ "bad user name",
	  { { "Pluto", "User", "-root" } },
	  { "[Pluto] User: \"-root\" is not a valid user name" }, NULL, NULL },
	{ "several errors in one run",
	  { { "Storage", "MailPort", "12abc" },
	    { "Workers.worker-1", "MailPort", "" },
	    { "Pluto", "Colour", "blue" },
	    { "Workers.worker-2", "UserEnd", NULL },
	    { "Distributor.InternalTLS", "KeyLoc", "pki/none.key" },
	    { "Limits", "PreAuthTimeout", "0" } },
	  { "[Storage] MailPort: \"12abc\" is not a whole number from 1 to "
	    "65535",
	    "[Workers.worker-1] MailPort: empty value",
	    "[Pluto] colour: unknown key",
	    "[Workers.worker-2] UserEnd: missing (required)",
	    "@[Distributor.InternalTLS] KeyLoc: cannot read "
	    "@/pki/none.key: No such file or directory",
	    "[Limits] PreAuthTimeout: \"0\" is not a whole number from 1 to "
	    "3600" }, NULL, NULL },
};

static void expand_dir(char *out, size_t size, const char *line,
		       const char *dir)
{
	/* '@' at the start marks a line holding the temp dir: the first
	 * '@' after it is replaced by dir. */
	const char *at;

	if (line[0] != '@') {
		snprintf(out, size, "%s", line);
		return;
	}
	line++;
	at = strchr(line, '@');
	if (at == NULL) {
		snprintf(out, size, "%s", line);
		return;
	}
	snprintf(out, size, "%.*s%s%s", (int)(at - line), line, dir, at + 1);
}

static void test_error_table(void)
{
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]);
	     i++) {
		const struct error_case *c = &error_cases[i];
		char *dir = make_cluster_dir();
		struct pluto_config *config = NULL;
		char *errors = NULL;
		const char *path;
		unsigned n_expect = 0;
		bool ok = true;

		path = write_config(dir, c->patches, c->prefix, c->extra);
		CU_ASSERT_EQUAL(config_load(path, &config, &errors), -1);
		CU_ASSERT_PTR_NULL(config);
		CU_ASSERT_PTR_NOT_NULL_FATAL(errors);
		for (size_t e = 0; e < MAX_EXPECT && c->expect[e] != NULL;
		     e++) {
			char want[1024];

			expand_dir(want, sizeof(want), c->expect[e], dir);
			n_expect++;
			if (!has_line(errors, want)) {
				ok = false;
				fprintf(stderr, "\ncase \"%s\": missing line"
					"\n  %s\n", c->what, want);
			}
		}
		/* Exactly the expected errors, nothing more. */
		if (count_lines(errors) != n_expect)
			ok = false;
		if (!ok)
			fprintf(stderr, "\ncase \"%s\" got:\n%s", c->what,
				errors);
		CU_ASSERT_TRUE(ok);
		free(errors);
		cu_rmtree(dir);
		free(dir);
	}
}

/* Strict numbers, accepted and refused, on one port. */
static void test_number_table(void)
{
	static const struct {
		const char *value;
		bool ok;
		unsigned expect;
	} cases[] = {
		{ "1", true, 1 }, { "65535", true, 65535 },
		{ "007", true, 7 }, { "21001", true, 21001 },
		{ "0", false, 0 }, { "65536", false, 0 }, { "-1", false, 0 },
		{ "+1", false, 0 }, { "1.0", false, 0 }, { "1e3", false, 0 },
		{ "12abc", false, 0 }, { "99999999999", false, 0 },
		{ "\"\"", false, 0 }, { "\" 1\"", false, 0 },
		{ "\"1 \"", false, 0 }, { "one", false, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct patch patches[2] = {
			{ "Storage", "MailPort", cases[i].value },
			{ NULL, NULL, NULL },
		};
		char *dir = make_cluster_dir();
		const char *path = write_config(dir, patches, NULL, NULL);
		struct pluto_config *c = NULL;
		char *errors = NULL;
		int ret = config_load(path, &c, &errors);

		if (cases[i].ok) {
			CU_ASSERT_EQUAL(ret, 0);
			if (c != NULL)
				CU_ASSERT_EQUAL(c->storage.mail_port,
						cases[i].expect);
		} else {
			CU_ASSERT_EQUAL(ret, -1);
			CU_ASSERT_PTR_NOT_NULL(errors);
			if (errors != NULL)
				CU_ASSERT_EQUAL(strncmp(errors,
						"[Storage] MailPort: ", 20), 0);
		}
		if (ret == 0 && !cases[i].ok)
			fprintf(stderr, "\naccepted \"%s\"\n", cases[i].value);
		config_free(&c);
		free(errors);
		cu_rmtree(dir);
		free(dir);
	}
}

static void test_booleans(void)
{
	static const struct {
		const char *value;
		bool expect;
	} cases[] = {
		{ "true", true }, { "TRUE", true }, { "yes", true },
		{ "on", true }, { "1", true }, { "false", false },
		{ "No", false }, { "off", false }, { "0", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct patch patches[3] = {
			{ "Pluto", "Syslog", cases[i].value },
			{ "Distributor", "AllowPlaintextLoopback",
			  cases[i].value },
			{ NULL, NULL, NULL },
		};
		char *dir = make_cluster_dir();
		const char *path = write_config(dir, patches, NULL, NULL);
		struct pluto_config *c = NULL;
		char *errors = NULL;

		CU_ASSERT_EQUAL(config_load(path, &c, &errors), 0);
		if (c != NULL) {
			CU_ASSERT_EQUAL(c->log_syslog, cases[i].expect);
			CU_ASSERT_EQUAL(c->distributor.allow_plaintext_loopback,
					cases[i].expect);
		}
		config_free(&c);
		free(errors);
		cu_rmtree(dir);
		free(dir);
	}
}

static void test_relative_paths(void)
{
	static const struct patch patches[] = {
		{ "Storage.TLS", "CertLoc", "./pki//storage.pem" },
		{ "Storage", "MaildirRoot", "../elsewhere/maildir" },
		{ NULL, NULL, NULL },
	};
	char *dir = make_cluster_dir();
	char *cwd = getcwd(NULL, 0);
	char real[PATH_MAX], want[PATH_MAX + 64];
	struct pluto_config *c = NULL;
	char *errors = NULL;

	CU_ASSERT_PTR_NOT_NULL_FATAL(cwd);
	write_config(dir, patches, NULL, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(realpath(dir, real));
	CU_ASSERT_EQUAL_FATAL(chdir(dir), 0);
	/* A relative config path is made absolute from the cwd. */
	CU_ASSERT_EQUAL(config_load("./pluto.ini", &c, &errors), 0);
	CU_ASSERT_EQUAL(chdir(cwd), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	snprintf(want, sizeof(want), "%s/pluto.ini", real);
	CU_ASSERT_STRING_EQUAL(c->path, want);
	CU_ASSERT_STRING_EQUAL(c->dir, real);
	snprintf(want, sizeof(want), "%s/pki/storage.pem", real);
	CU_ASSERT_STRING_EQUAL(c->storage.tls.cert_loc, want);
	snprintf(want, sizeof(want), "%s/../elsewhere/maildir", real);
	CU_ASSERT_STRING_EQUAL(c->storage.maildir_root, want);
	config_free(&c);

	/* Loading from another directory resolves against the file's
	 * directory, not the cwd. */
	snprintf(want, sizeof(want), "%s/pluto.ini", dir);
	CU_ASSERT_EQUAL(config_load(want, &c, &errors), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	snprintf(want, sizeof(want), "%s/pki/storage.pem", dir);
	CU_ASSERT_STRING_EQUAL(c->storage.tls.cert_loc, want);
	config_free(&c);
	free(errors);
	free(cwd);
	cu_rmtree(dir);
	free(dir);
}

static void test_worker_for_user(void)
{
	static const struct patch patches[] = {
		{ "Workers.worker-2", "UserStart", "12" },
		{ "Workers.worker-2", "UserEnd", "4294967295" },
		{ NULL, NULL, NULL },
	};
	static const struct {
		uint32_t id;
		const char *worker;
	} cases[] = {
		{ 0, NULL }, { 1, "worker-1" }, { 2, "worker-1" },
		{ 10, "worker-1" }, { 11, NULL }, { 12, "worker-2" },
		{ 4294967294u, "worker-2" }, { 4294967295u, "worker-2" },
	};
	char *dir = make_cluster_dir();
	const char *path = write_config(dir, patches, NULL, NULL);
	struct pluto_config *c = NULL;
	char *errors = NULL;

	CU_ASSERT_EQUAL_FATAL(config_load(path, &c, &errors), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct config_node *w =
			config_worker_for_user(c, cases[i].id);

		if (cases[i].worker == NULL) {
			CU_ASSERT_PTR_NULL(w);
		} else {
			CU_ASSERT_PTR_NOT_NULL(w);
			if (w != NULL)
				CU_ASSERT_STRING_EQUAL(w->name,
						       cases[i].worker);
		}
	}
	config_free(&c);
	cu_rmtree(dir);
	free(dir);
}

/* config_load_node() checks only the files the node itself opens. */
static void test_load_node(void)
{
	char *dir = make_cluster_dir();
	const char *path = write_config(dir, (const struct patch[]){
		{ NULL, NULL, NULL } }, NULL, NULL);
	struct pluto_config *c = NULL;
	char *errors = NULL;
	char file[PATH_MAX];

	snprintf(file, sizeof(file), "%s/pki/distributor.key", dir);
	CU_ASSERT_EQUAL(unlink(file), 0);
	CU_ASSERT_EQUAL(config_load_node(path, "worker-1", &c, &errors), 0);
	config_free(&c);
	CU_ASSERT_EQUAL(config_load_node(path, "Storage", &c, &errors), 0);
	config_free(&c);
	CU_ASSERT_EQUAL(config_load_node(path, "distributor", &c, &errors),
			-1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(errors);
	CU_ASSERT_EQUAL(count_lines(errors), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(errors, "[Distributor.InternalTLS] "
					      "KeyLoc: cannot read"));
	free(errors);
	errors = NULL;
	CU_ASSERT_EQUAL(config_load_node(path, "worker-9", &c, &errors), -1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(errors);
	CU_ASSERT_TRUE(has_line(errors,
				"no node named \"worker-9\" in this file"));
	free(errors);
	errors = NULL;
	/* The root CA is every node's business. */
	snprintf(file, sizeof(file), "%s/pki/internal-ca.pem", dir);
	CU_ASSERT_EQUAL(unlink(file), 0);
	CU_ASSERT_EQUAL(config_load_node(path, "worker-1", &c, &errors), -1);
	free(errors);
	cu_rmtree(dir);
	free(dir);
}

static void test_unreadable_and_syntax(void)
{
	char *dir = make_cluster_dir();
	struct pluto_config *c = NULL;
	char *errors = NULL;
	char path[PATH_MAX], want[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/absent.ini", dir);
	CU_ASSERT_EQUAL(config_load(path, &c, &errors), -1);
	CU_ASSERT_PTR_NULL(c);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	CU_ASSERT_TRUE(errors != NULL && has_line(errors, want));
	free(errors);

	write_file(dir, "syntax.ini", "[Pluto]\nthis line has no equals\n");
	snprintf(path, sizeof(path), "%s/syntax.ini", dir);
	errors = NULL;
	CU_ASSERT_EQUAL(config_load(path, &c, &errors), -1);
	CU_ASSERT_PTR_NULL(c);
	CU_ASSERT_TRUE(errors != NULL && strstr(errors, "syntax error") !=
			       NULL && strstr(errors, "(2)") != NULL);
	free(errors);

	if (geteuid() != 0) {
		write_file(dir, "secret.ini", "[Pluto]\n");
		snprintf(path, sizeof(path), "%s/secret.ini", dir);
		CU_ASSERT_EQUAL(chmod(path, 0), 0);
		errors = NULL;
		CU_ASSERT_EQUAL(config_load(path, &c, &errors), -1);
		CU_ASSERT_TRUE(errors != NULL &&
			       strstr(errors, "Permission denied") != NULL);
		free(errors);
	}
	cu_rmtree(dir);
	free(dir);
}

/* The shipped example must be valid once its files exist: copy it into a
 * temp directory with dummy certificates and load it. */
static void test_example(void)
{
	static const char *const example_files[] = {
		"pki/internal-ca.pem", "pki/public.pem", "pki/public.key",
		"pki/distributor.pem", "pki/distributor.key",
		"pki/worker-1.pem", "pki/worker-1.key", "pki/worker-2.pem",
		"pki/worker-2.key", "pki/storage.pem", "pki/storage.key",
		"users.txt",
	};
	char *dir = make_cluster_dir();
	char src[PATH_MAX], path[PATH_MAX];
	struct pluto_config *c = NULL;
	char *errors = NULL;
	FILE *in, *out;
	char chunk[4096];
	size_t n;

	snprintf(src, sizeof(src), "%s/conf/pluto.ini.example", TOP_SRCDIR);
	snprintf(path, sizeof(path), "%s/pluto.ini", dir);
	in = fopen(src, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(in);
	out = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	while ((n = fread(chunk, 1, sizeof(chunk), in)) > 0)
		CU_ASSERT_EQUAL(fwrite(chunk, 1, n, out), n);
	fclose(in);
	CU_ASSERT_EQUAL(fclose(out), 0);
	for (size_t i = 0;
	     i < sizeof(example_files) / sizeof(example_files[0]); i++)
		write_file(dir, example_files[i], "dummy\n");
	CU_ASSERT_EQUAL(config_load(path, &c, &errors), 0);
	if (errors != NULL)
		fprintf(stderr, "\nexample:\n%s", errors);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	CU_ASSERT_EQUAL(c->n_workers, 2);
	CU_ASSERT_PTR_NOT_NULL(config_worker_for_user(c, 1));
	config_free(&c);
	free(errors);
	cu_rmtree(dir);
	free(dir);
}

static CU_TestInfo tests[] = {
	{ "a full valid config loads with values and defaults",
	  test_valid_full },
	{ "each kind of error is reported by section and key",
	  test_error_table },
	{ "numbers are parsed strictly", test_number_table },
	{ "booleans accept the usual spellings", test_booleans },
	{ "relative paths resolve against the file's directory",
	  test_relative_paths },
	{ "config_worker_for_user honours range boundaries",
	  test_worker_for_user },
	{ "config_load_node checks only its node's files", test_load_node },
	{ "unreadable files and syntax errors are reported",
	  test_unreadable_and_syntax },
	{ "the shipped example is valid", test_example },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("config", tests);
}
