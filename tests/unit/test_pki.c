/*
 * test_pki.c - the internal CA: certificates carry what tls.c checks
 * (CN, DNS and IP subjectAltNames, CA flags, both TLS purposes), verify
 * against their CA and only against it, and files are written with the
 * right mode and never overwritten by accident.
 */
#include "autoconfig.h"

#include "cu_run.h"
#include "pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct pki_key_params ecdsa = { PKI_KEY_ECDSA_P256, 0 };

static gnutls_x509_crt_t parse_crt(const char *pem)
{
	gnutls_datum_t d = { (unsigned char *)(uintptr_t)pem,
			     (unsigned)strlen(pem) };
	gnutls_x509_crt_t crt = NULL;

	CU_ASSERT_FATAL(gnutls_x509_crt_init(&crt) == 0);
	CU_ASSERT_FATAL(gnutls_x509_crt_import(crt, &d,
					       GNUTLS_X509_FMT_PEM) == 0);
	return crt;
}

/* Verifies crt against ca alone; returns the status bits. */
static unsigned verify(gnutls_x509_crt_t crt, gnutls_x509_crt_t ca)
{
	gnutls_x509_trust_list_t tl;
	unsigned status = 0xffff;

	CU_ASSERT_FATAL(gnutls_x509_trust_list_init(&tl, 0) == 0);
	CU_ASSERT(gnutls_x509_trust_list_add_cas(tl, &ca, 1,
						 GNUTLS_TL_NO_DUPLICATES) == 1);
	CU_ASSERT(gnutls_x509_trust_list_verify_crt(tl, &crt, 1, 0, &status,
						    NULL) == 0);
	/* The list owns ca now; deinit with all = 1 frees it. */
	gnutls_x509_trust_list_deinit(tl, 1);
	return status;
}

static void test_ca(void)
{
	struct pki_ca *ca = NULL, *again = NULL;
	struct pki_pem_pair pair;
	const char *error = NULL;
	gnutls_x509_crt_t crt;
	unsigned is_ca = 0, critical = 0, usage = 0;
	char cn[64];
	size_t cn_len = sizeof(cn);

	CU_ASSERT_FATAL(pki_ca_generate(&ecdsa, "pluto test CA", 30, &ca,
					&error) == 0);
	CU_ASSERT_FATAL(pki_ca_export(ca, &pair, &error) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(pair.cert_pem, "BEGIN CERTIFICATE"));
	CU_ASSERT_PTR_NOT_NULL(strstr(pair.key_pem, "BEGIN PRIVATE KEY"));
	crt = parse_crt(pair.cert_pem);
	CU_ASSERT(gnutls_x509_crt_get_basic_constraints(crt, &critical,
							&is_ca, NULL) >= 0);
	CU_ASSERT_EQUAL(is_ca, 1);
	CU_ASSERT(gnutls_x509_crt_get_key_usage(crt, &usage, &critical) >= 0);
	CU_ASSERT((usage & GNUTLS_KEY_KEY_CERT_SIGN) != 0);
	CU_ASSERT(gnutls_x509_crt_get_dn_by_oid(crt,
						GNUTLS_OID_X520_COMMON_NAME, 0,
						0, cn, &cn_len) == 0);
	CU_ASSERT_STRING_EQUAL(cn, "pluto test CA");
	CU_ASSERT(gnutls_x509_crt_get_pk_algorithm(crt, NULL) ==
		  GNUTLS_PK_ECDSA);
	CU_ASSERT(gnutls_x509_crt_get_expiration_time(crt) >
		  time(NULL) + 29 * 86400);
	gnutls_x509_crt_deinit(crt);

	/* Round trip through PEM, as pluto-pki would reload it. */
	CU_ASSERT(pki_ca_import(pair.cert_pem, pair.key_pem, &again,
				&error) == 0);
	pki_ca_free(&again);
	CU_ASSERT_PTR_NULL(again);
	pki_pem_pair_free(&pair);
	CU_ASSERT_PTR_NULL(pair.key_pem);
	pki_ca_free(&ca);
}

static void test_ca_import_mismatch(void)
{
	struct pki_ca *a = NULL, *b = NULL, *c = NULL;
	struct pki_pem_pair pa, pb, node;
	const char *error = NULL;
	const struct pki_subject s = { "storage", NULL, 0 };

	CU_ASSERT_FATAL(pki_ca_generate(&ecdsa, "A", 1, &a, &error) == 0);
	CU_ASSERT_FATAL(pki_ca_generate(&ecdsa, "B", 1, &b, &error) == 0);
	CU_ASSERT_FATAL(pki_ca_export(a, &pa, &error) == 0);
	CU_ASSERT_FATAL(pki_ca_export(b, &pb, &error) == 0);
	CU_ASSERT_FATAL(pki_issue_node(a, &ecdsa, &s, 1, &node, &error) == 0);
	/* A's certificate with B's key. */
	CU_ASSERT_EQUAL(pki_ca_import(pa.cert_pem, pb.key_pem, &c, &error),
			-1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "does not belong"));
	/* An end-entity certificate is no CA. */
	CU_ASSERT_EQUAL(pki_ca_import(node.cert_pem, node.key_pem, &c,
				      &error), -1);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "not a CA"));
	CU_ASSERT_EQUAL(pki_ca_import("garbage", pa.key_pem, &c, &error), -1);
	CU_ASSERT_PTR_NULL(c);
	pki_pem_pair_free(&pa);
	pki_pem_pair_free(&pb);
	pki_pem_pair_free(&node);
	pki_ca_free(&a);
	pki_ca_free(&b);
}

static int count_ip_sans(gnutls_x509_crt_t crt, const char *want_ip,
			 unsigned *n_dns_r)
{
	int found = 0;

	*n_dns_r = 0;
	for (unsigned i = 0;; i++) {
		unsigned char data[256];
		size_t size = sizeof(data);
		unsigned char addr[16];
		int type = gnutls_x509_crt_get_subject_alt_name(crt, i, data,
								&size, NULL);

		if (type < 0)
			break;
		if (type == GNUTLS_SAN_DNSNAME)
			(*n_dns_r)++;
		if (type != GNUTLS_SAN_IPADDRESS)
			continue;
		if ((size == 4 && inet_pton(AF_INET, want_ip, addr) == 1 &&
		     memcmp(addr, data, 4) == 0) ||
		    (size == 16 && inet_pton(AF_INET6, want_ip, addr) == 1 &&
		     memcmp(addr, data, 16) == 0))
			found++;
	}
	return found;
}

static void test_node_cert(void)
{
	static const char *const ips[] = { "192.0.2.7", "10.0.0.7",
					   "2001:db8::7", "0.0.0.0", "::",
					   "192.0.2.7" };
	const struct pki_subject subject = { "worker-1", ips, 6 };
	struct pki_ca *ca = NULL, *other = NULL;
	struct pki_pem_pair ca_pair, other_pair, node;
	const char *error = NULL;
	gnutls_x509_crt_t crt, ca_crt, other_crt;
	unsigned is_ca = 1, critical, n_dns;
	char cn[64];
	size_t cn_len = sizeof(cn);
	char oid[64];
	size_t oid_len;
	bool server = false, client = false;

	CU_ASSERT_FATAL(pki_ca_generate(&ecdsa, "CA", 10, &ca, &error) == 0);
	CU_ASSERT_FATAL(pki_ca_generate(&ecdsa, "CA", 10, &other,
					&error) == 0);
	CU_ASSERT_FATAL(pki_ca_export(ca, &ca_pair, &error) == 0);
	CU_ASSERT_FATAL(pki_ca_export(other, &other_pair, &error) == 0);
	CU_ASSERT_FATAL(pki_issue_node(ca, &ecdsa, &subject, 10, &node,
				       &error) == 0);
	crt = parse_crt(node.cert_pem);
	ca_crt = parse_crt(ca_pair.cert_pem);
	other_crt = parse_crt(other_pair.cert_pem);

	CU_ASSERT(gnutls_x509_crt_get_dn_by_oid(crt,
						GNUTLS_OID_X520_COMMON_NAME, 0,
						0, cn, &cn_len) == 0);
	CU_ASSERT_STRING_EQUAL(cn, "worker-1");
	CU_ASSERT(gnutls_x509_crt_check_hostname2(crt, "worker-1", 0) != 0);
	CU_ASSERT(gnutls_x509_crt_check_hostname2(crt, "worker-2", 0) == 0);
	CU_ASSERT(gnutls_x509_crt_check_hostname2(crt, "192.0.2.7", 0) != 0);
	CU_ASSERT(gnutls_x509_crt_check_hostname2(crt, "2001:db8::7", 0) !=
		  0);
	CU_ASSERT(gnutls_x509_crt_check_hostname2(crt, "192.0.2.8", 0) == 0);
	/* Duplicates and unspecified addresses are dropped. */
	CU_ASSERT_EQUAL(count_ip_sans(crt, "192.0.2.7", &n_dns), 1);
	CU_ASSERT_EQUAL(count_ip_sans(crt, "0.0.0.0", &n_dns), 0);
	CU_ASSERT_EQUAL(count_ip_sans(crt, "::", &n_dns), 0);
	CU_ASSERT_EQUAL(n_dns, 1);
	CU_ASSERT(gnutls_x509_crt_get_basic_constraints(crt, &critical,
							&is_ca, NULL) >= 0);
	CU_ASSERT_EQUAL(is_ca, 0);
	for (unsigned i = 0;; i++) {
		oid_len = sizeof(oid);
		if (gnutls_x509_crt_get_key_purpose_oid(crt, i, oid, &oid_len,
							NULL) < 0)
			break;
		server = server || strcmp(oid, GNUTLS_KP_TLS_WWW_SERVER) == 0;
		client = client || strcmp(oid, GNUTLS_KP_TLS_WWW_CLIENT) == 0;
	}
	CU_ASSERT_TRUE(server);
	CU_ASSERT_TRUE(client);

	CU_ASSERT_EQUAL(verify(crt, ca_crt), 0);
	CU_ASSERT_NOT_EQUAL(verify(crt, other_crt), 0);

	gnutls_x509_crt_deinit(crt);
	pki_pem_pair_free(&node);
	pki_pem_pair_free(&ca_pair);
	pki_pem_pair_free(&other_pair);
	pki_ca_free(&ca);
	pki_ca_free(&other);
}

static void test_rsa(void)
{
	static const struct pki_key_params rsa = { PKI_KEY_RSA, 2048 };
	static const struct pki_key_params tiny = { PKI_KEY_RSA, 1024 };
	static const struct pki_key_params huge = { PKI_KEY_RSA, 65536 };
	static const char *const ips[] = { "127.0.0.1" };
	const struct pki_subject subject = { "storage", ips, 1 };
	struct pki_ca *ca = NULL;
	struct pki_pem_pair ca_pair, node;
	const char *error = NULL;
	gnutls_x509_crt_t crt, ca_crt;
	unsigned bits = 0;

	CU_ASSERT_EQUAL(pki_key_params_check(&tiny, &error), -1);
	CU_ASSERT_EQUAL(pki_key_params_check(&huge, &error), -1);
	CU_ASSERT_EQUAL(pki_ca_generate(&tiny, "CA", 1, &ca, &error), -1);
	CU_ASSERT_PTR_NULL(ca);
	CU_ASSERT_FATAL(pki_ca_generate(&rsa, "CA", 1, &ca, &error) == 0);
	CU_ASSERT_FATAL(pki_ca_export(ca, &ca_pair, &error) == 0);
	CU_ASSERT_FATAL(pki_issue_node(ca, &rsa, &subject, 1, &node,
				       &error) == 0);
	crt = parse_crt(node.cert_pem);
	ca_crt = parse_crt(ca_pair.cert_pem);
	CU_ASSERT(gnutls_x509_crt_get_pk_algorithm(crt, &bits) ==
		  GNUTLS_PK_RSA);
	CU_ASSERT_EQUAL(bits, 2048);
	CU_ASSERT_EQUAL(verify(crt, ca_crt), 0);
	gnutls_x509_crt_deinit(crt);
	pki_pem_pair_free(&node);
	pki_pem_pair_free(&ca_pair);
	pki_ca_free(&ca);
}

static void test_bad_subjects(void)
{
	static const char *const bad_ips[] = { "127.0.0.1", "localhost" };
	static const struct {
		const char *cn;
		unsigned days;
		const char *const *ips;
		size_t n_ips;
	} cases[] = {
		{ "", 1, NULL, 0 },
		{ "two words", 1, NULL, 0 },
		{ "x\nInjected", 1, NULL, 0 },
		{ "a-name-that-is-far-too-long-for-a-common-name-as-x520-"
		  "limits-it-by-far", 1, NULL, 0 },
		{ "storage", 0, NULL, 0 },
		{ "storage", PKI_MAX_DAYS + 1, NULL, 0 },
		{ "storage", 1, bad_ips, 2 },
	};
	struct pki_ca *ca = NULL;
	const char *error = NULL;

	CU_ASSERT_FATAL(pki_ca_generate(&ecdsa, "CA", 1, &ca, &error) == 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pki_subject s = { cases[i].cn, cases[i].ips,
					       cases[i].n_ips };
		struct pki_pem_pair pair = { NULL, NULL };

		error = NULL;
		CU_ASSERT_EQUAL(pki_issue_node(ca, &ecdsa, &s, cases[i].days,
					       &pair, &error), -1);
		CU_ASSERT_PTR_NOT_NULL(error);
		CU_ASSERT_PTR_NULL(pair.cert_pem);
	}
	CU_ASSERT_PTR_NOT_NULL(strstr(error, "localhost"));
	pki_ca_free(&ca);
}

static void test_self_signed(void)
{
	static const char *const ips[] = { "127.0.0.1", "::1" };
	const struct pki_subject s = { "localhost", ips, 2 };
	struct pki_pem_pair pair;
	const char *error = NULL;
	gnutls_x509_crt_t crt;

	CU_ASSERT_FATAL(pki_self_signed(&ecdsa, &s, 5, &pair, &error) == 0);
	crt = parse_crt(pair.cert_pem);
	CU_ASSERT(gnutls_x509_crt_check_hostname2(crt, "localhost", 0) != 0);
	CU_ASSERT(gnutls_x509_crt_check_hostname2(crt, "::1", 0) != 0);
	/* Self-signed: it is its own issuer and verifies against itself. */
	CU_ASSERT(gnutls_x509_crt_check_issuer(crt, crt) != 0);
	gnutls_x509_crt_deinit(crt);
	pki_pem_pair_free(&pair);
}

static void test_ca_key_path(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "/etc/pluto/ca.pem", "/etc/pluto/ca.key" },
		{ "/etc/pluto/ca.crt", "/etc/pluto/ca.key" },
		{ "/etc/pluto/ca.cert", "/etc/pluto/ca.key" },
		{ "/etc/pluto/root", "/etc/pluto/root.key" },
		{ "ca.pem", "ca.key" },
		{ "/etc/pluto/.pem", "/etc/pluto/.pem.key" },
		{ "/etc/pluto.pem/ca", "/etc/pluto.pem/ca.key" },
		{ "/etc/pluto/ca.PEM", "/etc/pluto/ca.PEM.key" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *path = pki_ca_key_path(cases[i].in);

		CU_ASSERT_PTR_NOT_NULL_FATAL(path);
		CU_ASSERT_STRING_EQUAL(path, cases[i].out);
		free(path);
	}
}

static char *join(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *p = malloc(len);

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	snprintf(p, len, "%s/%s", dir, name);
	return p;
}

static mode_t file_mode(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return (mode_t)-1;
	return st.st_mode & 07777;
}

static char *slurp(const char *path)
{
	static char buf[256];
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_write_file(void)
{
	char *dir = cu_tempdir("test_pki");
	char *key, *cert, *deep, *sub;
	const char *error = NULL;
	mode_t old_umask = umask(022);

	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	key = join(dir, "node.key");
	cert = join(dir, "node.pem");
	deep = join(dir, "a/b/c/deep.key");
	sub = join(dir, "a");

	CU_ASSERT_EQUAL(pki_check_target(key, false, &error), 0);
	CU_ASSERT_EQUAL(pki_write_file(key, "secret1", 7, 0600, false,
				       &error), 0);
	CU_ASSERT_EQUAL(file_mode(key), 0600);
	CU_ASSERT_STRING_EQUAL(slurp(key), "secret1");
	CU_ASSERT_EQUAL(pki_write_file(cert, "cert", 4, 0644, false, &error),
			0);
	CU_ASSERT_EQUAL(file_mode(cert), 0644);

	/* Refused without force, naming the file, content untouched. */
	error = NULL;
	CU_ASSERT_EQUAL(pki_check_target(key, false, &error), -1);
	CU_ASSERT_PTR_NOT_NULL(error);
	CU_ASSERT_PTR_NOT_NULL(strstr(error, key));
	error = NULL;
	CU_ASSERT_EQUAL(pki_write_file(key, "secret2", 7, 0600, false,
				       &error), -1);
	CU_ASSERT_PTR_NOT_NULL(error != NULL ? strstr(error, key) : NULL);
	CU_ASSERT_PTR_NOT_NULL(error != NULL ? strstr(error, "--force") :
					       NULL);
	CU_ASSERT_STRING_EQUAL(slurp(key), "secret1");

	/* With force, a world-readable old file is replaced by a 0600 one:
	 * the mode comes from creation, not from the old file. */
	CU_ASSERT_EQUAL(chmod(key, 0644), 0);
	CU_ASSERT_EQUAL(pki_check_target(key, true, &error), 0);
	CU_ASSERT_EQUAL(pki_write_file(key, "secret3", 7, 0600, true,
				       &error), 0);
	CU_ASSERT_EQUAL(file_mode(key), 0600);
	CU_ASSERT_STRING_EQUAL(slurp(key), "secret3");

	/* Missing parents are created. */
	CU_ASSERT_EQUAL(pki_write_file(deep, "k", 1, 0600, false, &error), 0);
	CU_ASSERT_EQUAL(file_mode(deep), 0600);

	/* A directory in the way is refused even with force. */
	CU_ASSERT_EQUAL(pki_check_target(sub, true, &error), -1);
	CU_ASSERT_EQUAL(pki_write_file(sub, "x", 1, 0600, true, &error), -1);

	/* A symlink planted where the key goes is replaced, never
	 * followed. */
	char *target = join(dir, "victim");
	char *link = join(dir, "link.key");

	CU_ASSERT_EQUAL(pki_write_file(target, "victim", 6, 0644, false,
				       &error), 0);
	CU_ASSERT_EQUAL(symlink(target, link), 0);
	CU_ASSERT_EQUAL(pki_write_file(link, "k", 1, 0600, false, &error),
			-1);
	CU_ASSERT_EQUAL(pki_write_file(link, "k", 1, 0600, true, &error), -1);
	CU_ASSERT_STRING_EQUAL(slurp(target), "victim");

	umask(old_umask);
	free(target);
	free(link);
	free(key);
	free(cert);
	free(deep);
	free(sub);
	cu_rmtree(dir);
	free(dir);
}

static CU_TestInfo tests[] = {
	{ "CA certificate and key", test_ca },
	{ "CA import refuses mismatches", test_ca_import_mismatch },
	{ "node certificate names and chain", test_node_cert },
	{ "RSA keys and their size limits", test_rsa },
	{ "bad subjects refused", test_bad_subjects },
	{ "self-signed public certificate", test_self_signed },
	{ "CA key path rule", test_ca_key_path },
	{ "key files 0600, no overwrite without force", test_write_file },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("pki", tests);
}
