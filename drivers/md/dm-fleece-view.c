// SPDX-License-Identifier: GPL-2.0
/*
 * fleece: a point-in-time view of a fleece-origin device.
 */
#include <linux/module.h>

#include "dm-fleece.h"

static int view_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	ti->error = "Sessions are not implemented in this version";
	return -EOPNOTSUPP;
}

static void view_dtr(struct dm_target *ti)
{
}

static int view_map(struct dm_target *ti, struct bio *bio)
{
	return DM_MAPIO_KILL;
}

struct target_type fleece_view_target = {
	.name = "fleece",
	.version = {0, 1, 0},
	.module = THIS_MODULE,
	.ctr = view_ctr,
	.dtr = view_dtr,
	.map = view_map,
};
