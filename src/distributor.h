/*
 * distributor.h - the public front door (DESIGN section 6) and the
 * failover pass-through node.
 *
 * The distributor listens for IMAP clients on [Distributor] Port
 * (implicit TLS) and, when StartTLSPort is set, on a plain port offering
 * STARTTLS.  Before authentication it answers CAPABILITY, NOOP, ID,
 * LOGOUT, STARTTLS, LOGIN and AUTHENTICATE PLAIN itself; a login checked
 * by the configured adapter (auth.h) is routed to the worker whose
 * UserStart..UserEnd holds the user's id, or, when that worker cannot be
 * reached after IntlConnRetry retries, to storage on the worker's behalf.
 * From then on it relays the session (relay.h).
 *
 * The failover node (`pluto --worker NAME --failover`) listens on the
 * worker's MailPort with the worker's internal certificate, accepts
 * sessions from the distributor only, and forwards each to storage
 * naming NAME.  It never opens the worker's Maildir or journal.
 *
 * Both roles are used through struct role_ops (role.h); the helpers
 * below are the pure parts, exposed for the unit tests.
 */
#ifndef PLUTO_DISTRIBUTOR_H
#define PLUTO_DISTRIBUTOR_H

#include <stdbool.h>
#include <stddef.h>

#include "role.h"

extern const struct role_ops distributor_role_ops;
extern const struct role_ops failover_role_ops;

/* Failed logins a connection may make before it is closed. */
#define DISTRIBUTOR_MAX_AUTH_FAILURES 3
/* Before authentication: longest command line, and longest literal. */
#define DISTRIBUTOR_PREAUTH_LINE_MAX 8192

/*
 * Splits a decoded SASL PLAIN message (RFC 4616: authzid NUL authcid
 * NUL passwd) of len bytes.  On success returns 0 and points *user_r and
 * *pass_r into msg with their lengths (neither holds a NUL; the password
 * may be empty, the user may not).  Returns -1 with *error_r (static
 * text) when the message is malformed, and -2 when an authorization
 * identity is given that differs from the authentication identity (we do
 * not let one user act as another).
 */
int distributor_sasl_plain(const void *msg, size_t len, const char **user_r,
			   size_t *user_len_r, const void **pass_r,
			   size_t *pass_len_r, const char **error_r);

/* True when ip (an address without port, as struct server_conn's
 * peer_ip) is a loopback address: 127.0.0.0/8, ::1 or ::ffff:127.x. */
bool distributor_is_loopback(const char *ip);

#endif
