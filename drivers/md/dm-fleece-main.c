// SPDX-License-Identifier: GPL-2.0
/*
 * dm-fleece module entry: registers the fleece-origin and fleece targets.
 */
#include <linux/module.h>

#include "dm-fleece.h"

static int __init dm_fleece_init(void)
{
	int r;

	r = dm_register_target(&fleece_origin_target);
	if (r < 0) {
		DMERR("register of fleece-origin failed %d", r);
		return r;
	}

	r = dm_register_target(&fleece_view_target);
	if (r < 0) {
		DMERR("register of fleece failed %d", r);
		dm_unregister_target(&fleece_origin_target);
		return r;
	}
	return 0;
}

static void __exit dm_fleece_exit(void)
{
	dm_unregister_target(&fleece_view_target);
	dm_unregister_target(&fleece_origin_target);
}

module_init(dm_fleece_init);
module_exit(dm_fleece_exit);

MODULE_DESCRIPTION(DM_NAME " copy-before-write point-in-time views and change tracking");
MODULE_AUTHOR("dm-fleece developers");
MODULE_LICENSE("GPL");
