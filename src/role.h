/*
 * role.h - what main.c needs of a node role.
 *
 * start() brings the role up (binds its ports, starts its threads) and
 * returns 0, or logs why it cannot and returns -1.  The main thread then
 * waits for SIGTERM/SIGINT and calls stop(), which stops accepting, lets
 * in-flight commands finish, joins every thread and returns the process
 * exit status (0 on a clean stop).
 */
#ifndef PLUTO_ROLE_H
#define PLUTO_ROLE_H

#include "config.h"

struct role_ops {
	int (*start)(const struct pluto_config *config, const char *name);
	int (*stop)(void);
};

const struct role_ops *role_distributor(void);
const struct role_ops *role_worker(void);
const struct role_ops *role_failover(void);
const struct role_ops *role_storage(void);

#endif
