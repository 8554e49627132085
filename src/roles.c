/*
 * roles.c - the roles pluto can run, for main.c.
 */
#include "autoconfig.h"

#include <stddef.h>

#include "distributor.h"
#include "imapd.h"
#include "role.h"

const struct role_ops *role_distributor(void)
{
	return &distributor_role_ops;
}

const struct role_ops *role_worker(void)
{
	return imapd_worker_role();
}

const struct role_ops *role_failover(void)
{
	return &failover_role_ops;
}

const struct role_ops *role_storage(void)
{
	return imapd_storage_role();
}
