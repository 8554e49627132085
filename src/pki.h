/*
 * pki.h - the internal certificate authority of a pluto cluster
 * (DESIGN section 8): key generation, a self-signed CA, node certificates
 * signed by it, a self-signed public test certificate, and the careful
 * writing of the resulting PEM files.
 *
 * Everything is made in memory first, so pluto-pki can check every target
 * file before it writes any of them.  PEM strings are malloc'd and
 * NUL-terminated; the caller frees them, private keys with
 * pki_pem_free_secret() which wipes them first.
 *
 * Functions that can fail return 0 or -1 with *error_r pointing to a
 * message in a thread-local buffer valid until the next failing pki_*()
 * call of the same thread.
 */
#ifndef PLUTO_PKI_H
#define PLUTO_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PKI_DEFAULT_DAYS 825
#define PKI_MAX_DAYS 36500
#define PKI_RSA_MIN_BITS 2048
#define PKI_RSA_MAX_BITS 16384

enum pki_key_type {
	PKI_KEY_ECDSA_P256 = 0,	/* the default */
	PKI_KEY_RSA,
};

struct pki_key_params {
	enum pki_key_type type;
	unsigned rsa_bits;	/* PKI_KEY_RSA only */
};

/* A certificate and its private key, as PEM. */
struct pki_pem_pair {
	char *cert_pem;
	char *key_pem;		/* PKCS#8, unencrypted: secret */
};

/* What goes into a node certificate.  ips are IPv4 or IPv6 literals; the
 * unspecified addresses ("0.0.0.0", "::") and repeats are skipped, since
 * no peer can connect to them. */
struct pki_subject {
	const char *cn;			/* also the (only) DNS SAN */
	const char *const *ips;
	size_t n_ips;
};

/* A CA held in memory, ready to sign. */
struct pki_ca;

/* Checks key parameters: RSA bits within PKI_RSA_MIN_BITS..MAX_BITS. */
int pki_key_params_check(const struct pki_key_params *kp,
			 const char **error_r);

/* Makes a new CA key and a self-signed CA certificate named cn, valid
 * for days days (1..PKI_MAX_DAYS), allowed to sign end-entity
 * certificates only (pathlen 0). */
int pki_ca_generate(const struct pki_key_params *kp, const char *cn,
		    unsigned days, struct pki_ca **ca_r, const char **error_r);
/* Loads a CA from PEM text (its certificate and its key). */
int pki_ca_import(const char *cert_pem, const char *key_pem,
		  struct pki_ca **ca_r, const char **error_r);
/* The CA's certificate and key as PEM (caller frees). */
int pki_ca_export(const struct pki_ca *ca, struct pki_pem_pair *pair_r,
		  const char **error_r);
void pki_ca_free(struct pki_ca **ca);

/* Issues a certificate for a node with a fresh key: the CN and DNS SAN
 * are subject->cn, the IP SANs subject->ips; usable for both TLS server
 * and TLS client authentication (nodes are both).  Fails on an IP that
 * is not a literal. */
int pki_issue_node(const struct pki_ca *ca, const struct pki_key_params *kp,
		   const struct pki_subject *subject, unsigned days,
		   struct pki_pem_pair *pair_r, const char **error_r);

/* A self-signed server certificate for testing the public listener. */
int pki_self_signed(const struct pki_key_params *kp,
		    const struct pki_subject *subject, unsigned days,
		    struct pki_pem_pair *pair_r, const char **error_r);

/* Frees both strings of a pair (wiping the key) and NULLs them. */
void pki_pem_pair_free(struct pki_pem_pair *pair);
void pki_pem_free_secret(char **pem);

/* The CA key's path when --ca-key is not given: RootCertLoc with a
 * trailing ".pem", ".crt" or ".cert" replaced by ".key", or with ".key"
 * appended otherwise ("/etc/pluto/ca.pem" -> "/etc/pluto/ca.key").
 * Returns a malloc'd string, or NULL when out of memory. */
char *pki_ca_key_path(const char *root_cert_loc);

/* 0 when path does not exist or force is set; otherwise -1 with an error
 * naming the file.  (Also -1 when path exists but is not a regular file,
 * even with force.) */
int pki_check_target(const char *path, bool force, const char **error_r);

/* Writes len bytes to path with the given mode, creating missing parent
 * directories (0755).  The file is always created afresh with
 * O_CREAT|O_EXCL and its final mode (0600 for keys), so a key is never
 * readable by others, not even for a moment; with force an existing file
 * is unlinked first, without force it is an error naming the file.  The
 * data is fsync'ed before the function returns 0. */
int pki_write_file(const char *path, const void *data, size_t len,
		   mode_t mode, bool force, const char **error_r);

#endif
