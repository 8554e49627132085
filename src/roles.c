/*
 * roles.c - the table of roles this build can run.
 *
 * Each role's module replaces its NULL here when it lands; until then main
 * refuses to start that role.
 */
#include "autoconfig.h"

#include <stddef.h>

#include "imapd.h"
#include "role.h"

const struct role_ops *role_distributor(void)
{
	return NULL;
}

const struct role_ops *role_worker(void)
{
	return imapd_worker_role();
}

const struct role_ops *role_failover(void)
{
	return NULL;
}

const struct role_ops *role_storage(void)
{
	return imapd_storage_role();
}
