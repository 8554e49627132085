/*
 * pki.c - the internal CA of a pluto cluster, with GnuTLS's x509 API.
 *
 * pluto-pki calls these functions to make one CA and one certificate per
 * node; the unit tests call them to make throw-away PKIs.  Certificates
 * follow what tls.c checks: a node's name is its CN and its only DNS
 * subjectAltName (so gnutls_x509_crt_check_hostname2 finds it), its
 * addresses are IP subjectAltNames, and every node certificate allows
 * both TLS server and TLS client use, since nodes dial each other as well
 * as accept.  The CA may sign end-entity certificates only (pathlen 0).
 *
 * Writing files is the other half: a private key must never exist on
 * disk with a wider mode than 0600, not even between open() and chmod(),
 * so files are created afresh with O_EXCL and their final mode.
 */
#include "autoconfig.h"

#include "pki.h"
#include "buf.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef O_NOFOLLOW
#define O_NOFOLLOW 0
#endif

/* X.520 ub-common-name. */
#define PKI_CN_MAX 64
/* Certificates start an hour in the past so that a peer whose clock is
 * a little behind still accepts them. */
#define PKI_BACKDATE_S 3600

struct pki_ca {
	gnutls_x509_crt_t crt;
	gnutls_x509_privkey_t key;
};

static _Thread_local char pki_errbuf[512];

static const char *pki_error(const char *fmt, ...) PLUTO_PRINTF(1, 2);

static const char *pki_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pki_errbuf, sizeof(pki_errbuf), fmt, ap);
	va_end(ap);
	return pki_errbuf;
}

/* Copies a GnuTLS datum into a malloc'd C string and releases the datum
 * (wiping it first when it held a secret). */
static char *datum_take(gnutls_datum_t *d, bool secret)
{
	char *s = malloc((size_t)d->size + 1);

	if (s != NULL) {
		memcpy(s, d->data, d->size);
		s[d->size] = '\0';
	}
	if (secret)
		buf_wipe(d->data, d->size);
	gnutls_free(d->data);
	d->data = NULL;
	d->size = 0;
	return s;
}

void pki_pem_free_secret(char **pem)
{
	if (*pem == NULL)
		return;
	buf_wipe(*pem, strlen(*pem));
	free(*pem);
	*pem = NULL;
}

void pki_pem_pair_free(struct pki_pem_pair *pair)
{
	free(pair->cert_pem);
	pair->cert_pem = NULL;
	pki_pem_free_secret(&pair->key_pem);
}

int pki_key_params_check(const struct pki_key_params *kp,
			 const char **error_r)
{
	switch (kp->type) {
	case PKI_KEY_ECDSA_P256:
		return 0;
	case PKI_KEY_RSA:
		if (kp->rsa_bits < PKI_RSA_MIN_BITS ||
		    kp->rsa_bits > PKI_RSA_MAX_BITS) {
			*error_r = pki_error("RSA key size %u outside %u..%u",
					     kp->rsa_bits, PKI_RSA_MIN_BITS,
					     PKI_RSA_MAX_BITS);
			return -1;
		}
		return 0;
	}
	*error_r = "unknown key type";
	return -1;
}

static int key_generate(const struct pki_key_params *kp,
			gnutls_x509_privkey_t *key_r, const char **error_r)
{
	gnutls_x509_privkey_t key;
	int ret;

	if (pki_key_params_check(kp, error_r) < 0)
		return -1;
	ret = gnutls_x509_privkey_init(&key);
	if (ret < 0) {
		*error_r = pki_error("key: %s", gnutls_strerror(ret));
		return -1;
	}
	if (kp->type == PKI_KEY_RSA)
		ret = gnutls_x509_privkey_generate(key, GNUTLS_PK_RSA,
						   kp->rsa_bits, 0);
	else
		ret = gnutls_x509_privkey_generate(
			key, GNUTLS_PK_ECDSA,
			GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
	if (ret < 0) {
		gnutls_x509_privkey_deinit(key);
		*error_r = pki_error("generating a key: %s",
				     gnutls_strerror(ret));
		return -1;
	}
	*key_r = key;
	return 0;
}

/* A CN is printable ASCII; one that is also a DNS SAN (allow_space
 * false) has no spaces either. */
static int check_cn(const char *cn, bool allow_space, const char **error_r)
{
	size_t len = cn == NULL ? 0 : strlen(cn);

	if (len == 0 || len > PKI_CN_MAX) {
		*error_r = pki_error("common name must be 1..%d bytes",
				     PKI_CN_MAX);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)cn[i];

		if (ch < 0x20 || ch > 0x7e || (ch == ' ' && !allow_space)) {
			*error_r = "common name holds a space, control or "
				   "non-ASCII byte";
			return -1;
		}
	}
	return 0;
}

/* A certificate with what every certificate here shares: version 3, a
 * random positive 128-bit serial, validity, CN, public key and subject
 * key identifier. */
static int crt_start(gnutls_x509_privkey_t key, const char *cn, unsigned days,
		     gnutls_x509_crt_t *crt_r, const char **error_r)
{
	gnutls_x509_crt_t crt;
	unsigned char serial[16];
	unsigned char keyid[64];
	size_t keyid_len = sizeof(keyid);
	time_t now = time(NULL);
	int ret;

	if (days == 0 || days > PKI_MAX_DAYS) {
		*error_r = pki_error("validity must be 1..%d days",
				     PKI_MAX_DAYS);
		return -1;
	}
	/* days * 86400 < 2^32: fits, but not necessarily a 32-bit time_t
	 * past 2038. */
	long long end = (long long)now + (long long)days * 86400;
	if ((long long)(time_t)end != end) {
		*error_r = "expiry date beyond this system's time_t";
		return -1;
	}
	if (check_cn(cn, true, error_r) < 0)
		return -1;
	ret = gnutls_x509_crt_init(&crt);
	if (ret < 0) {
		*error_r = pki_error("certificate: %s", gnutls_strerror(ret));
		return -1;
	}
	ret = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));
	if (ret < 0)
		goto fail;
	serial[0] &= 0x7f;	/* positive */
	serial[0] |= 0x40;	/* and no leading zero byte to strip */
	ret = gnutls_x509_crt_set_version(crt, 3);
	if (ret == 0)
		ret = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
	if (ret == 0)
		ret = gnutls_x509_crt_set_activation_time(
			crt, now - PKI_BACKDATE_S);
	if (ret == 0)
		ret = gnutls_x509_crt_set_expiration_time(crt, (time_t)end);
	if (ret == 0)
		ret = gnutls_x509_crt_set_dn_by_oid(
			crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn,
			(unsigned)strlen(cn));
	if (ret == 0)
		ret = gnutls_x509_crt_set_key(crt, key);
	if (ret == 0)
		ret = gnutls_x509_privkey_get_key_id(key, 0, keyid,
						     &keyid_len);
	if (ret == 0)
		ret = gnutls_x509_crt_set_subject_key_id(crt, keyid,
							 keyid_len);
	if (ret < 0)
		goto fail;
	*crt_r = crt;
	return 0;
fail:
	gnutls_x509_crt_deinit(crt);
	*error_r = pki_error("building the certificate: %s",
			     gnutls_strerror(ret));
	return -1;
}

/* Extensions of an end-entity certificate for a TLS peer, with its SANs.
 * Returns 0 or a GnuTLS error; *bad_ip_r names an IP that is not a
 * literal. */
static int crt_end_entity(gnutls_x509_crt_t crt,
			  const struct pki_key_params *kp,
			  const struct pki_subject *subject,
			  const char **bad_ip_r)
{
	unsigned usage = GNUTLS_KEY_DIGITAL_SIGNATURE;
	unsigned char seen[16][16];
	size_t seen_len[16], n_seen = 0;
	int ret;

	/* RSA key exchange (TLS 1.2 clients of the public port) encrypts
	 * to the key. */
	if (kp->type == PKI_KEY_RSA)
		usage |= GNUTLS_KEY_KEY_ENCIPHERMENT;
	ret = gnutls_x509_crt_set_basic_constraints(crt, 0, -1);
	if (ret == 0)
		ret = gnutls_x509_crt_set_key_usage(crt, usage);
	if (ret == 0)
		ret = gnutls_x509_crt_set_key_purpose_oid(
			crt, GNUTLS_KP_TLS_WWW_SERVER, 0);
	if (ret == 0)
		ret = gnutls_x509_crt_set_key_purpose_oid(
			crt, GNUTLS_KP_TLS_WWW_CLIENT, 0);
	if (ret == 0)
		ret = gnutls_x509_crt_set_subject_alt_name(
			crt, GNUTLS_SAN_DNSNAME, subject->cn,
			(unsigned)strlen(subject->cn), GNUTLS_FSAN_APPEND);
	for (size_t i = 0; ret == 0 && i < subject->n_ips; i++) {
		static const unsigned char zero[16];
		unsigned char addr[16];
		size_t len;
		bool dup = false;

		if (inet_pton(AF_INET, subject->ips[i], addr) == 1) {
			len = 4;
		} else if (inet_pton(AF_INET6, subject->ips[i], addr) == 1) {
			len = 16;
		} else {
			*bad_ip_r = subject->ips[i];
			return GNUTLS_E_INVALID_REQUEST;
		}
		if (memcmp(addr, zero, len) == 0)
			continue;
		for (size_t j = 0; j < n_seen; j++)
			dup = dup || (seen_len[j] == len &&
				      memcmp(seen[j], addr, len) == 0);
		if (dup)
			continue;
		if (n_seen < sizeof(seen) / sizeof(seen[0])) {
			memcpy(seen[n_seen], addr, len);
			seen_len[n_seen++] = len;
		}
		ret = gnutls_x509_crt_set_subject_alt_name(
			crt, GNUTLS_SAN_IPADDRESS, addr, (unsigned)len,
			GNUTLS_FSAN_APPEND);
	}
	return ret;
}

static int export_pair(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key,
		       struct pki_pem_pair *pair_r, const char **error_r)
{
	gnutls_datum_t d = { NULL, 0 };
	int ret;

	pair_r->cert_pem = pair_r->key_pem = NULL;
	ret = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d);
	if (ret < 0)
		goto fail;
	pair_r->cert_pem = datum_take(&d, false);
	ret = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL,
						GNUTLS_PKCS_PLAIN, &d);
	if (ret < 0)
		goto fail;
	pair_r->key_pem = datum_take(&d, true);
	if (pair_r->cert_pem == NULL || pair_r->key_pem == NULL) {
		pki_pem_pair_free(pair_r);
		*error_r = "out of memory";
		return -1;
	}
	return 0;
fail:
	pki_pem_pair_free(pair_r);
	*error_r = pki_error("exporting PEM: %s", gnutls_strerror(ret));
	return -1;
}

int pki_ca_generate(const struct pki_key_params *kp, const char *cn,
		    unsigned days, struct pki_ca **ca_r, const char **error_r)
{
	struct pki_ca *ca;
	int ret;

	ca = calloc(1, sizeof(*ca));
	if (ca == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (key_generate(kp, &ca->key, error_r) < 0) {
		free(ca);
		return -1;
	}
	if (crt_start(ca->key, cn, days, &ca->crt, error_r) < 0) {
		gnutls_x509_privkey_deinit(ca->key);
		free(ca);
		return -1;
	}
	ret = gnutls_x509_crt_set_basic_constraints(ca->crt, 1, 0);
	if (ret == 0)
		ret = gnutls_x509_crt_set_key_usage(
			ca->crt, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN);
	if (ret == 0)
		ret = gnutls_x509_crt_sign2(ca->crt, ca->crt, ca->key,
					    GNUTLS_DIG_SHA256, 0);
	if (ret < 0) {
		pki_ca_free(&ca);
		*error_r = pki_error("making the CA certificate: %s",
				     gnutls_strerror(ret));
		return -1;
	}
	*ca_r = ca;
	return 0;
}

int pki_ca_import(const char *cert_pem, const char *key_pem,
		  struct pki_ca **ca_r, const char **error_r)
{
	gnutls_datum_t cd = { (unsigned char *)(uintptr_t)cert_pem,
			      (unsigned)strlen(cert_pem) };
	gnutls_datum_t kd = { (unsigned char *)(uintptr_t)key_pem,
			      (unsigned)strlen(key_pem) };
	unsigned char id1[64], id2[64];
	size_t id1_len = sizeof(id1), id2_len = sizeof(id2);
	unsigned ca_flag = 0;
	struct pki_ca *ca;
	int ret;

	ca = calloc(1, sizeof(*ca));
	if (ca == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (gnutls_x509_crt_init(&ca->crt) < 0 ||
	    gnutls_x509_privkey_init(&ca->key) < 0) {
		pki_ca_free(&ca);
		*error_r = "out of memory";
		return -1;
	}
	ret = gnutls_x509_crt_import(ca->crt, &cd, GNUTLS_X509_FMT_PEM);
	if (ret < 0) {
		pki_ca_free(&ca);
		*error_r = pki_error("CA certificate: %s",
				     gnutls_strerror(ret));
		return -1;
	}
	ret = gnutls_x509_privkey_import2(ca->key, &kd, GNUTLS_X509_FMT_PEM,
					  NULL, GNUTLS_PKCS_PLAIN);
	if (ret < 0) {
		pki_ca_free(&ca);
		*error_r = pki_error("CA key: %s", gnutls_strerror(ret));
		return -1;
	}
	if (gnutls_x509_crt_get_basic_constraints(ca->crt, NULL, &ca_flag,
						  NULL) < 0 ||
	    ca_flag == 0) {
		pki_ca_free(&ca);
		*error_r = "the CA certificate is not a CA";
		return -1;
	}
	if (gnutls_x509_crt_get_key_id(ca->crt, 0, id1, &id1_len) < 0 ||
	    gnutls_x509_privkey_get_key_id(ca->key, 0, id2, &id2_len) < 0 ||
	    id1_len != id2_len || memcmp(id1, id2, id1_len) != 0) {
		pki_ca_free(&ca);
		*error_r = "the CA key does not belong to the CA certificate";
		return -1;
	}
	*ca_r = ca;
	return 0;
}

int pki_ca_export(const struct pki_ca *ca, struct pki_pem_pair *pair_r,
		  const char **error_r)
{
	return export_pair(ca->crt, ca->key, pair_r, error_r);
}

void pki_ca_free(struct pki_ca **ca)
{
	if (*ca == NULL)
		return;
	if ((*ca)->crt != NULL)
		gnutls_x509_crt_deinit((*ca)->crt);
	if ((*ca)->key != NULL)
		gnutls_x509_privkey_deinit((*ca)->key);
	free(*ca);
	*ca = NULL;
}

/* Issues subject's certificate signed by (issuer_crt, issuer_key), or
 * self-signed when they are NULL. */
static int issue(gnutls_x509_crt_t issuer_crt,
		 gnutls_x509_privkey_t issuer_key,
		 const struct pki_key_params *kp,
		 const struct pki_subject *subject, unsigned days,
		 struct pki_pem_pair *pair_r, const char **error_r)
{
	gnutls_x509_privkey_t key;
	gnutls_x509_crt_t crt;
	const char *bad_ip = NULL;
	int ret;

	if (check_cn(subject->cn, false, error_r) < 0 ||
	    key_generate(kp, &key, error_r) < 0)
		return -1;
	if (crt_start(key, subject->cn, days, &crt, error_r) < 0) {
		gnutls_x509_privkey_deinit(key);
		return -1;
	}
	ret = crt_end_entity(crt, kp, subject, &bad_ip);
	if (ret == 0 && issuer_crt != NULL) {
		unsigned char akid[64];
		size_t akid_len = sizeof(akid);
		unsigned critical;

		/* Lets verifiers pick the right CA key when the CA has
		 * been renewed. */
		if (gnutls_x509_crt_get_subject_key_id(issuer_crt, akid,
						       &akid_len,
						       &critical) == 0)
			ret = gnutls_x509_crt_set_authority_key_id(
				crt, akid, akid_len);
	}
	if (ret == 0)
		ret = gnutls_x509_crt_sign2(crt,
					    issuer_crt == NULL ? crt :
								 issuer_crt,
					    issuer_key == NULL ? key :
								 issuer_key,
					    GNUTLS_DIG_SHA256, 0);
	if (ret < 0) {
		if (bad_ip != NULL) {
			char quoted[96];

			log_quote(quoted, sizeof(quoted), bad_ip);
			*error_r = pki_error("%s: not an IP address", quoted);
		} else {
			*error_r = pki_error("issuing the certificate of %s: %s",
					     subject->cn,
					     gnutls_strerror(ret));
		}
	} else {
		ret = export_pair(crt, key, pair_r, error_r);
	}
	gnutls_x509_crt_deinit(crt);
	gnutls_x509_privkey_deinit(key);
	return ret < 0 ? -1 : 0;
}

int pki_issue_node(const struct pki_ca *ca, const struct pki_key_params *kp,
		   const struct pki_subject *subject, unsigned days,
		   struct pki_pem_pair *pair_r, const char **error_r)
{
	return issue(ca->crt, ca->key, kp, subject, days, pair_r, error_r);
}

int pki_self_signed(const struct pki_key_params *kp,
		    const struct pki_subject *subject, unsigned days,
		    struct pki_pem_pair *pair_r, const char **error_r)
{
	return issue(NULL, NULL, kp, subject, days, pair_r, error_r);
}

char *pki_ca_key_path(const char *root_cert_loc)
{
	static const char *const suffixes[] = { ".pem", ".crt", ".cert" };
	size_t len = strlen(root_cert_loc);
	const char *slash = strrchr(root_cert_loc, '/');
	size_t base_start = slash == NULL ? 0 :
			    (size_t)(slash - root_cert_loc) + 1;
	char *path;

	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		size_t slen = strlen(suffixes[i]);

		/* Only a real suffix: "dir/.pem" keeps its name. */
		if (len > base_start + slen &&
		    strcmp(root_cert_loc + len - slen, suffixes[i]) == 0) {
			len -= slen;
			break;
		}
	}
	if (len > SIZE_MAX - 5)
		return NULL;
	path = malloc(len + 5);
	if (path == NULL)
		return NULL;
	memcpy(path, root_cert_loc, len);
	memcpy(path + len, ".key", 5);
	return path;
}

int pki_check_target(const char *path, bool force, const char **error_r)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		*error_r = pki_error("%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		*error_r = pki_error("%s exists and is not a regular file",
				     path);
		return -1;
	}
	if (!force) {
		*error_r = pki_error("%s exists (use --force to overwrite)",
				     path);
		return -1;
	}
	return 0;
}

/* mkdir -p of path's parent directories. */
static int make_parents(const char *path, const char **error_r)
{
	char *copy = strdup(path);

	if (copy == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (char *p = copy + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0755) < 0 && errno != EEXIST) {
			*error_r = pki_error("creating directory %s: %s", copy,
					     strerror(errno));
			free(copy);
			return -1;
		}
		*p = '/';
	}
	free(copy);
	return 0;
}

int pki_write_file(const char *path, const void *data, size_t len,
		   mode_t mode, bool force, const char **error_r)
{
	const unsigned char *p = data;
	int fd;

	if (pki_check_target(path, force, error_r) < 0 ||
	    make_parents(path, error_r) < 0)
		return -1;
	if (force && unlink(path) < 0 && errno != ENOENT) {
		*error_r = pki_error("removing %s: %s", path, strerror(errno));
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  mode);
	if (fd < 0) {
		*error_r = pki_error("creating %s: %s", path, strerror(errno));
		return -1;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*error_r = pki_error("writing %s: %s", path,
					     n < 0 ? strerror(errno) :
						     "no progress");
			goto fail;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0) {
		*error_r = pki_error("fsync %s: %s", path, strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		*error_r = pki_error("closing %s: %s", path, strerror(errno));
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	(void)unlink(path);
	return -1;
}
