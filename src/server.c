/*
 * server.c - one accept thread per listener, one detached thread per
 * connection.
 *
 * Lock order: server.lock only; it guards the connection list, the
 * per-address counts and the stopping flag.  No I/O is done under it
 * except shutdown(2) of connection sockets, which does not block.
 */
#include "autoconfig.h"

#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

struct server_entry {
	struct server_conn conn;
	struct server_entry *prev, *next;
};

struct server {
	char name[16];
	int listen_fd;
	const struct server_ops *ops;
	void *ctx;
	unsigned max_conns;
	unsigned max_per_ip;

	pthread_t accept_thread;
	bool accept_started;
	int wake_pipe[2];		/* written by server_stop */

	pthread_mutex_t lock;
	pthread_cond_t idle;		/* signalled when active drops */
	struct server_entry *conns;	/* to modify: hold lock */
	unsigned active;
	bool stopping;
	unsigned long next_id;
};

int server_thread_start(pthread_t *thread_r, bool joinable,
			void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	sigset_t block, old;
	int err;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, SERVER_THREAD_STACK);
	pthread_attr_setdetachstate(&attr, joinable ? PTHREAD_CREATE_JOINABLE
						    : PTHREAD_CREATE_DETACHED);
	/* The main thread alone takes SIGTERM/SIGINT with sigwait. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	err = pthread_create(thread_r, &attr, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}

struct server *server_new(const char *name, int listen_fd,
			  const struct server_ops *ops, void *ctx,
			  unsigned max_conns, unsigned max_per_ip)
{
	struct server *srv = calloc(1, sizeof(*srv));

	if (srv == NULL)
		return NULL;
	snprintf(srv->name, sizeof(srv->name), "%s", name);
	srv->listen_fd = listen_fd;
	srv->ops = ops;
	srv->ctx = ctx;
	srv->max_conns = max_conns;
	srv->max_per_ip = max_per_ip;
	if (pipe(srv->wake_pipe) < 0) {
		free(srv);
		return NULL;
	}
	/* Non-blocking, so that a connection reset between poll and accept
	 * cannot block the accept thread. */
	fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
	fcntl(srv->wake_pipe[0], F_SETFD, FD_CLOEXEC);
	fcntl(srv->wake_pipe[1], F_SETFD, FD_CLOEXEC);
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->idle, NULL);
	return srv;
}

static void format_peer(const struct sockaddr_storage *ss,
			struct server_conn *conn)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		port = ntohs(sin->sin_port);
		snprintf(conn->peer, sizeof(conn->peer), "%s:%u", ip, port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		port = ntohs(sin6->sin6_port);
		snprintf(conn->peer, sizeof(conn->peer), "[%s]:%u", ip, port);
	} else {
		snprintf(conn->peer, sizeof(conn->peer), "local");
	}
	snprintf(conn->peer_ip, sizeof(conn->peer_ip), "%s", ip);
}

/* Connections from peer_ip; the caller holds srv->lock. */
static unsigned count_from_locked(struct server *srv, const char *peer_ip)
{
	unsigned n = 0;

	for (struct server_entry *e = srv->conns; e != NULL; e = e->next) {
		if (strcmp(e->conn.peer_ip, peer_ip) == 0)
			n++;
	}
	return n;
}

static void unlink_locked(struct server *srv, struct server_entry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		srv->conns = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
}

static void *conn_main(void *arg)
{
	struct server_entry *e = arg;
	struct server *srv = e->conn.server;
	char tname[16];

	snprintf(tname, sizeof(tname), "%.6s-%lu", srv->name,
		 (unsigned long)(e->conn.fd));
	log_thread_name(tname);
	log_context_set("peer", e->conn.peer);
	srv->ops->handle(&e->conn, srv->ctx);
	log_context_clear();

	pthread_mutex_lock(&srv->lock);
	unlink_locked(srv, e);
	srv->active--;
	pthread_cond_broadcast(&srv->idle);
	pthread_mutex_unlock(&srv->lock);
	free(e);
	return NULL;
}

static void refuse(struct server *srv, int fd, const char *reason)
{
	if (srv->ops->reject != NULL)
		srv->ops->reject(fd, reason, srv->ctx);
	close(fd);
}

/* Registers and starts the connection, or refuses it for a limit. */
static void admit(struct server *srv, int fd,
		  const struct sockaddr_storage *ss)
{
	struct server_entry *e = calloc(1, sizeof(*e));
	const char *limit = NULL;
	pthread_t thread;

	if (e == NULL) {
		refuse(srv, fd, "out of memory");
		return;
	}
	e->conn.fd = fd;
	e->conn.server = srv;
	format_peer(ss, &e->conn);

	pthread_mutex_lock(&srv->lock);
	if (srv->active >= srv->max_conns)
		limit = "too many connections";
	else if (count_from_locked(srv, e->conn.peer_ip) >= srv->max_per_ip)
		limit = "too many connections from your address";
	if (limit == NULL) {
		e->next = srv->conns;
		if (srv->conns != NULL)
			srv->conns->prev = e;
		srv->conns = e;
		srv->active++;
	}
	pthread_mutex_unlock(&srv->lock);

	if (limit != NULL) {
		log_warnx("refusing connection from %s: %s", e->conn.peer,
			  limit);
		refuse(srv, fd, limit);
		free(e);
		return;
	}
	if (server_thread_start(&thread, false, conn_main, e) < 0) {
		log_warn("cannot start a thread for %s", e->conn.peer);
		pthread_mutex_lock(&srv->lock);
		unlink_locked(srv, e);
		srv->active--;
		pthread_cond_broadcast(&srv->idle);
		pthread_mutex_unlock(&srv->lock);
		refuse(srv, fd, "out of resources");
		free(e);
	}
}

static void *accept_main(void *arg)
{
	struct server *srv = arg;
	char tname[16];

	snprintf(tname, sizeof(tname), "%.8s-accept", srv->name);
	log_thread_name(tname);
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = srv->listen_fd, .events = POLLIN },
			{ .fd = srv->wake_pipe[0], .events = POLLIN },
		};
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd;

		/* Polling the wake pipe too is what lets server_stop end
		 * this thread on every system: a blocked accept(2) is not
		 * woken by close() and only on Linux by shutdown(). */
		if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
			log_warn("poll on listener failed");
			usleep(100 * 1000);
			continue;
		}
		if (server_stopping(srv))
			break;
		if ((pfd[0].revents & POLLIN) == 0)
			continue;
		fd = accept(srv->listen_fd, (struct sockaddr *)&ss, &len);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED ||
			    errno == EPROTO || errno == EAGAIN ||
			    errno == EWOULDBLOCK)
				continue;
			/* EMFILE and friends: back off instead of spinning. */
			log_warn("accept failed");
			usleep(100 * 1000);
			continue;
		}
		/* The BSDs pass O_NONBLOCK on to accepted sockets; sessions
		 * do blocking I/O. */
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		admit(srv, fd, &ss);
	}
	return NULL;
}

int server_start(struct server *srv)
{
	if (server_thread_start(&srv->accept_thread, true, accept_main, srv) <
	    0)
		return -1;
	srv->accept_started = true;
	return 0;
}

bool server_stopping(const struct server *srv)
{
	bool stopping;

	pthread_mutex_lock((pthread_mutex_t *)&srv->lock);
	stopping = srv->stopping;
	pthread_mutex_unlock((pthread_mutex_t *)&srv->lock);
	return stopping;
}

unsigned server_active(struct server *srv)
{
	unsigned n;

	pthread_mutex_lock(&srv->lock);
	n = srv->active;
	pthread_mutex_unlock(&srv->lock);
	return n;
}

void server_stop(struct server *srv)
{
	pthread_mutex_lock(&srv->lock);
	if (srv->stopping) {
		pthread_mutex_unlock(&srv->lock);
		return;
	}
	srv->stopping = true;
	pthread_mutex_unlock(&srv->lock);

	if (write(srv->wake_pipe[1], "x", 1) < 0)
		log_warn("cannot wake the accept thread");
	if (srv->accept_started)
		pthread_join(srv->accept_thread, NULL);
	srv->accept_started = false;

	pthread_mutex_lock(&srv->lock);
	for (struct server_entry *e = srv->conns; e != NULL; e = e->next)
		shutdown(e->conn.fd, SHUT_RD);
	while (srv->active > 0)
		pthread_cond_wait(&srv->idle, &srv->lock);
	pthread_mutex_unlock(&srv->lock);
}

void server_free(struct server **srvp)
{
	struct server *srv = *srvp;

	if (srv == NULL)
		return;
	server_stop(srv);
	close(srv->listen_fd);
	close(srv->wake_pipe[0]);
	close(srv->wake_pipe[1]);
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->idle);
	free(srv);
	*srvp = NULL;
}
