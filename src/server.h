/*
 * server.h - accept loop and thread-per-connection management.
 *
 * A server owns one listening socket and an accept thread.  Every accepted
 * connection runs handler() on a thread of its own with an explicit stack
 * size (SERVER_THREAD_STACK), so thousands of idle sessions fit in memory.
 * Connections beyond the node's or one address's limit are refused by
 * calling reject() on the accept thread, which may write a short
 * answer and must not block for long.
 *
 * server_stop() stops accepting, wakes every connection's blocked reader
 * with shutdown(fd, SHUT_RD) (its writer keeps working, so a session can
 * finish its command and say BYE), and waits until every handler returned.
 */
#ifndef PLUTO_SERVER_H
#define PLUTO_SERVER_H

#include <stdbool.h>
#include <pthread.h>
#include <stddef.h>

#define SERVER_THREAD_STACK (256 * 1024)

struct server;

struct server_conn {
	int fd;			/* owned by the handler: it closes it */
	char peer[64];		/* "ip:port" or "[ip6]:port" */
	char peer_ip[48];	/* the address alone */
	struct server *server;
};

struct server_ops {
	/* Runs on the connection's thread; must close conn->fd. */
	void (*handle)(struct server_conn *conn, void *ctx);
	/* Called on the accept thread when a limit refuses the connection;
	 * may be NULL.  The fd is closed afterwards. */
	void (*reject)(int fd, const char *reason, void *ctx);
};

/* Takes ownership of listen_fd.  name labels the threads ("imap", "sync"). */
struct server *server_new(const char *name, int listen_fd,
			  const struct server_ops *ops, void *ctx,
			  unsigned max_conns, unsigned max_per_ip);
int server_start(struct server *srv);
/* Safe to call from any thread but a connection's own. */
void server_stop(struct server *srv);
void server_free(struct server **srv);

/* True once server_stop() began: long-running handlers check it between
 * commands. */
bool server_stopping(const struct server *srv);
unsigned server_active(struct server *srv);

/* Starts a thread with the explicit stack size and the stop signals
 * blocked; detached when joinable is false. */
int server_thread_start(pthread_t *thread_r, bool joinable,
			void *(*fn)(void *), void *arg);

#endif
