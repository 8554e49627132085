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
	/* Declared in distributor.h; declared here so that only this
	 * body changes (see distributor.h). */
	extern const struct role_ops distributor_role_ops;

	return &distributor_role_ops;
}

const struct role_ops *role_worker(void)
{
	return imapd_worker_role();
}

const struct role_ops *role_failover(void)
{
	/* Declared in distributor.h, like distributor_role_ops. */
	extern const struct role_ops failover_role_ops;

	return &failover_role_ops;
}

const struct role_ops *role_storage(void)
{
	return imapd_storage_role();
}
