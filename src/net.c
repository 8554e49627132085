/*
 * net.c - listeners, accept, connect with a timeout, address formatting.
 *
 * Thin wrappers around the socket calls that every role repeats, so that
 * close-on-exec, SO_REUSEADDR, IPV6_V6ONLY, EINTR and the non-blocking
 * connect dance are done once.  Nothing here knows about TLS; tls.c builds
 * connections on top of the descriptors made here.  No locks.
 */
#include "autoconfig.h"

#include "net.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char net_errbuf[256];

/* Formats a message plus strerror(errno) into the thread's error buffer,
 * keeping errno for the caller. */
static const char *net_error(const char *fmt, ...) PLUTO_PRINTF(1, 2);

static const char *net_error(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	size_t len;

	va_start(ap, fmt);
	vsnprintf(net_errbuf, sizeof(net_errbuf), fmt, ap);
	va_end(ap);
	len = strlen(net_errbuf);
	snprintf(net_errbuf + len, sizeof(net_errbuf) - len, ": %s",
		 strerror(saved));
	errno = saved;
	return net_errbuf;
}

bool net_parse_addr(const char *ip, uint16_t port,
		    struct sockaddr_storage *ss_r, socklen_t *len_r)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss_r;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss_r;

	memset(ss_r, 0, sizeof(*ss_r));
	if (ip == NULL)
		return false;
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len_r = sizeof(*sin);
		return true;
	}
	if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len_r = sizeof(*sin6);
		return true;
	}
	return false;
}

/* Closes fd on a failure path, keeping the failure's errno; returns -1. */
static int close_failed(int fd)
{
	int saved = errno;

	close(fd);
	errno = saved;
	return -1;
}

#ifndef SOCK_CLOEXEC
static int set_cloexec(int fd)
{
	int flags = fcntl(fd, F_GETFD);

	if (flags < 0)
		return -1;
	return fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}
#endif

static int socket_cloexec(int family)
{
	int fd;

#ifdef SOCK_CLOEXEC
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
#else
	fd = socket(family, SOCK_STREAM, 0);
	if (fd >= 0 && set_cloexec(fd) < 0)
		return close_failed(fd);
#endif
	return fd;
}

/* The start of net_listen and net_connect: parses ip and port into *ss
 * and *len_r and opens a close-on-exec stream socket of that family.
 * Returns the socket, or -1 with *error_r ("VERB ip:port: not an IP
 * address", or why the socket failed) and errno set. */
static int socket_for(const char *verb, const char *ip, uint16_t port,
		      struct sockaddr_storage *ss, socklen_t *len_r,
		      const char **error_r)
{
	int fd;

	if (!net_parse_addr(ip, port, ss, len_r)) {
		errno = EINVAL;
		*error_r = net_error("%s %s:%u: not an IP address", verb,
				     ip == NULL ? "(null)" : ip, port);
		return -1;
	}
	fd = socket_cloexec(ss->ss_family);
	if (fd < 0)
		*error_r = net_error("socket for %s", ip);
	return fd;
}

int net_listen(const char *ip, uint16_t port, int backlog,
	       const char **error_r)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	fd = socket_for("listen on", ip, port, &ss, &len, error_r);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)) {
		*error_r = net_error("setsockopt on %s", ip);
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		*error_r = net_error("bind %s port %u", ip, port);
		goto fail;
	}
	if (listen(fd, backlog) < 0) {
		*error_r = net_error("listen on %s port %u", ip, port);
		goto fail;
	}
	return fd;
fail:
	return close_failed(fd);
}

uint16_t net_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

int net_accept(int listen_fd, int timeout_ms, char *addr_r)
{
	struct pollfd pfd = { .fd = listen_fd, .events = POLLIN };
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd, ret;

	ret = poll(&pfd, 1, timeout_ms < 0 ? -1 : timeout_ms);
	if (ret < 0)
		return -1;
	if (ret == 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	if ((pfd.revents & POLLNVAL) != 0) {
		errno = EBADF;
		return -1;
	}
#ifdef SOCK_CLOEXEC
	fd = accept4(listen_fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
#else
	fd = accept(listen_fd, (struct sockaddr *)&ss, &len);
	if (fd >= 0 && set_cloexec(fd) < 0)
		return close_failed(fd);
#endif
	if (fd < 0)
		return -1;
	if (addr_r != NULL)
		net_format_addr((struct sockaddr *)&ss, len, addr_r,
				NET_ADDR_STRLEN);
	return fd;
}

static long long monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for a non-blocking connect to finish.  Returns 0 when connected,
 * -1 with errno otherwise. */
static int connect_wait(int fd, unsigned timeout_ms)
{
	long long deadline = monotonic_ms() + timeout_ms;
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	socklen_t len = sizeof(int);
	int ret, err = 0;

	for (;;) {
		long long left = timeout_ms == 0 ? -1 :
				 deadline - monotonic_ms();

		if (timeout_ms != 0 && left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		ret = poll(&pfd, 1, left > 1000000 ? 1000000 : (int)left);
		if (ret > 0)
			break;
		if (ret < 0 && errno != EINTR)
			return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -1;
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}

int net_connect(const char *ip, uint16_t port, unsigned timeout_ms,
		const char **error_r)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, flags;

	fd = socket_for("connect to", ip, port, &ss, &len, error_r);
	if (fd < 0)
		return -1;
	/* Non-blocking only for the connect itself, so that the timeout
	 * does not depend on the kernel's SYN retries. */
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		*error_r = net_error("fcntl");
		goto fail;
	}
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		if (errno != EINPROGRESS && errno != EINTR) {
			*error_r = net_error("connect to %s port %u", ip, port);
			goto fail;
		}
		if (connect_wait(fd, timeout_ms) < 0) {
			*error_r = net_error("connect to %s port %u", ip, port);
			goto fail;
		}
	}
	if (fcntl(fd, F_SETFL, flags) < 0) {
		*error_r = net_error("fcntl");
		goto fail;
	}
	return fd;
fail:
	return close_failed(fd);
}

void net_format_addr(const struct sockaddr *sa, socklen_t len, char *buf,
		     size_t size)
{
	char ip[INET6_ADDRSTRLEN];

	if (size == 0)
		return;
	if (sa->sa_family == AF_INET &&
	    len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		if (inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip)) != NULL) {
			snprintf(buf, size, "%s:%u", ip, ntohs(sin->sin_port));
			return;
		}
	} else if (sa->sa_family == AF_INET6 &&
		   len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 =
			(const struct sockaddr_in6 *)sa;

		if (inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip)) !=
		    NULL) {
			snprintf(buf, size, "[%s]:%u", ip,
				 ntohs(sin6->sin6_port));
			return;
		}
	} else if (sa->sa_family == AF_UNIX) {
		snprintf(buf, size, "unix");
		return;
	}
	snprintf(buf, size, "?");
}

void net_peer_addr(int fd, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
		if (size > 0)
			snprintf(buf, size, "?");
		return;
	}
	net_format_addr((struct sockaddr *)&ss, len, buf, size);
}
