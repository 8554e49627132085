/*
 * test_server.c - accept loop, per-address limit, and a stop that wakes
 * handlers blocked in read.
 */
#include "autoconfig.h"

#include "cu_run.h"
#include "server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_loopback(unsigned short *port_r)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
		return -1;
	*port_r = ntohs(sin.sin_port);
	return fd;
}

static int connect_loopback(unsigned short port)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Greets, then echoes until EOF; counts handlers that saw EOF. */
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static int handlers_done;

static void echo_handle(struct server_conn *conn, void *ctx)
{
	char buf[256];
	ssize_t n;

	(void)ctx;
	if (write(conn->fd, "hi\n", 3) != 3)
		CU_FAIL("greeting");
	while ((n = read(conn->fd, buf, sizeof(buf))) > 0) {
		if (write(conn->fd, buf, (size_t)n) != n)
			break;
	}
	close(conn->fd);
	pthread_mutex_lock(&count_lock);
	handlers_done++;
	pthread_mutex_unlock(&count_lock);
}

static void echo_reject(int fd, const char *reason, void *ctx)
{
	(void)ctx;
	if (write(fd, "no\n", 3) != 3)
		return;
	(void)reason;
}

static const struct server_ops echo_ops = { echo_handle, echo_reject };

static void read_exact(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
}

static void test_echo_limit_and_stop(void)
{
	unsigned short port;
	int lfd = listen_loopback(&port);
	struct server *srv;
	int c[3];
	char buf[16];

	CU_ASSERT_FATAL(lfd >= 0);
	handlers_done = 0;
	srv = server_new("test", lfd, &echo_ops, NULL, 100, 2);
	CU_ASSERT_FATAL(srv != NULL);
	CU_ASSERT_EQUAL_FATAL(server_start(srv), 0);

	for (int i = 0; i < 3; i++) {
		c[i] = connect_loopback(port);
		CU_ASSERT_FATAL(c[i] >= 0);
		read_exact(c[i], buf, 3);
		/* The third connection from 127.0.0.1 is over the limit. */
		CU_ASSERT_STRING_EQUAL(buf, i < 2 ? "hi\n" : "no\n");
	}
	CU_ASSERT_EQUAL(write(c[0], "ping", 4), 4);
	read_exact(c[0], buf, 4);
	CU_ASSERT_STRING_EQUAL(buf, "ping");
	CU_ASSERT_EQUAL(server_active(srv), 2);

	/* Both handlers are blocked in read(); stop must wake them. */
	server_stop(srv);
	CU_ASSERT_EQUAL(handlers_done, 2);
	CU_ASSERT_EQUAL(server_active(srv), 0);
	CU_ASSERT_TRUE(server_stopping(srv));
	server_free(&srv);
	CU_ASSERT_PTR_NULL(srv);
	for (int i = 0; i < 3; i++)
		close(c[i]);
}

static void test_stop_without_connections(void)
{
	unsigned short port;
	int lfd = listen_loopback(&port);
	struct server *srv = server_new("idle", lfd, &echo_ops, NULL, 1, 1);

	CU_ASSERT_FATAL(srv != NULL);
	CU_ASSERT_EQUAL(server_start(srv), 0);
	server_free(&srv);
	/* The port is closed: nothing accepts any more. */
	CU_ASSERT_EQUAL(connect_loopback(port), -1);
}

static CU_TestInfo tests[] = {
	{ "echo, per-address limit and stop", test_echo_limit_and_stop },
	{ "stop without connections", test_stop_without_connections },
	CU_TEST_INFO_NULL,
};

int main(void)
{
	return cu_run("server", tests);
}
