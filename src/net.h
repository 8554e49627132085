/*
 * net.h - sockets: listeners, accept, connect with a timeout, and the
 * printable form of a peer's address.
 *
 * Every descriptor made here is close-on-exec and blocking.  Addresses are
 * IP literals only (IPv4 "192.0.2.1" or IPv6 "2001:db8::1", without
 * brackets): pluto's configuration names addresses, not host names, so no
 * resolver is ever consulted.
 *
 * Functions that can fail return -1 and, when they take error_r, point
 * *error_r at a message in a thread-local buffer that stays valid until the
 * next failing net_*() call of the same thread.  errno is preserved from
 * the failing system call, so callers may also test it.
 */
#ifndef PLUTO_NET_H
#define PLUTO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Room for "[ffff:...:ffff%scope]:65535" and for "unix". */
#define NET_ADDR_STRLEN 80

/* Parses an IPv4 or IPv6 literal and a port into *ss.  Returns false when
 * ip is not a literal. */
bool net_parse_addr(const char *ip, uint16_t port,
		    struct sockaddr_storage *ss_r, socklen_t *len_r);

/* A listening TCP socket bound to ip:port with SO_REUSEADDR (and, for an
 * IPv6 address, IPV6_V6ONLY, so "::" and "0.0.0.0" can be bound side by
 * side).  Port 0 lets the kernel choose; net_local_port() tells which.
 * Returns the descriptor, or -1. */
int net_listen(const char *ip, uint16_t port, int backlog,
	       const char **error_r);

/* The local port a socket is bound to, or 0 on error. */
uint16_t net_local_port(int fd);

/* Waits up to timeout_ms (negative: forever) for a connection on
 * listen_fd and accepts it.  Returns the new close-on-exec descriptor and
 * fills addr_r (NET_ADDR_STRLEN bytes, may be NULL) with the peer's
 * address, or returns -1 with errno:
 *   ETIMEDOUT     nothing arrived in time (poll again);
 *   EINTR, ECONNABORTED, EPROTO
 *                 transient: call again;
 *   EMFILE, ENFILE, ENOBUFS, ENOMEM
 *                 resource shortage: back off a little, then call again;
 *   EINVAL or EBADF
 *                 the listener was shut down or closed: stop accepting.
 * On Linux, shutdown(listen_fd, SHUT_RDWR) from another thread makes a
 * blocked net_accept() return EINVAL; portable acceptor loops use a finite
 * timeout and test a stop flag between calls. */
int net_accept(int listen_fd, int timeout_ms, char *addr_r);

/* Connects to ip:port, giving up after timeout_ms (0: the system's own
 * limit).  Returns a blocking, close-on-exec descriptor, or -1 with errno
 * ETIMEDOUT on timeout (or the connect error, e.g. ECONNREFUSED).  Makes
 * exactly one attempt: callers loop IntlConnRetry times. */
int net_connect(const char *ip, uint16_t port, unsigned timeout_ms,
		const char **error_r);

/* Formats an address as "192.0.2.1:993", "[2001:db8::1]:993" or, for a
 * Unix domain socket, "unix".  Always NUL-terminates buf. */
void net_format_addr(const struct sockaddr *sa, socklen_t len, char *buf,
		     size_t size);

/* The peer address of a connected socket, formatted as above, or "?" when
 * the socket has none. */
void net_peer_addr(int fd, char *buf, size_t size);

#endif
