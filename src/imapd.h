/*
 * imapd.h - the worker and storage roles: IMAP serving of internal
 * sessions (doc/protocol.md) on a node's MailPort.
 *
 * start() opens the node's user store (journal replay included), loads
 * the internal TLS credentials, binds MailPort and starts accepting.  Each
 * accepted connection must complete a mutual TLS handshake with a peer
 * the role accepts (worker: the distributor; storage: the distributor and
 * every configured worker, for failover) and send a valid opening line
 * before any IMAP is read.  stop() stops accepting, lets every session
 * finish its current command and say BYE, and closes the store.
 *
 * One role runs per process.
 */
#ifndef PLUTO_IMAPD_H
#define PLUTO_IMAPD_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "role.h"

const struct role_ops *imapd_worker_role(void);
const struct role_ops *imapd_storage_role(void);

/* The opening line, split and validated (exposed for tests). */
struct imapd_opening {
	char user[256];
	char client[96];
	char worker[CONFIG_NODE_NAME_MAX + 1];	/* "" when not given */
};

/* Parses "PLUTO-SESSION 1 <user> <client-address> [<worker>]" (without
 * its line terminator; len bytes, may hold NUL).  Checks the syntax only;
 * which worker names are acceptable is the caller's business.  Returns 0,
 * or -1 with a static *error_r fit for a BYE. */
int imapd_parse_opening(const char *line, size_t len,
			struct imapd_opening *out, const char **error_r);

#endif
