// SPDX-License-Identifier: GPL-2.0
/*
 * dm-fleece module entry: registers the fleece-origin and fleece targets.
 */
#include <linux/module.h>
#include <linux/rcupdate.h>

#include "dm-fleece.h"

static int __init dm_fleece_init(void)
{
	int r;

	r = fleece_cbw_init();
	if (r)
		return r;

	r = dm_register_target(&fleece_origin_target);
	if (r < 0) {
		DMERR("register of fleece-origin failed %d", r);
		fleece_cbw_exit();
		return r;
	}

	r = dm_register_target(&fleece_view_target);
	if (r < 0) {
		DMERR("register of fleece failed %d", r);
		dm_unregister_target(&fleece_origin_target);
		fleece_cbw_exit();
		return r;
	}
	return 0;
}

static void __exit dm_fleece_exit(void)
{
	dm_unregister_target(&fleece_view_target);
	dm_unregister_target(&fleece_origin_target);
	/* Removed bitmaps are freed by RCU callbacks in this module. */
	rcu_barrier();
	fleece_cbw_exit();
}

module_init(dm_fleece_init);
module_exit(dm_fleece_exit);

/*
 * Device-mapper asks modprobe for "dm-<target type>" when a table names a
 * target it does not know: "dm-fleece" finds this module by its name, and
 * the other target needs an alias.
 */
MODULE_ALIAS("dm-fleece-origin");
MODULE_DESCRIPTION(DM_NAME " copy-before-write point-in-time views and change tracking");
MODULE_AUTHOR("dm-fleece developers");
MODULE_LICENSE("GPL");
