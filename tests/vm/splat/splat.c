// SPDX-License-Identifier: GPL-2.0
/*
 * Harness self-test: loading this module logs a kernel WARNING, which
 * tests/vm/run must turn into a non-zero exit. It never stays loaded.
 */
#include <linux/bug.h>
#include <linux/module.h>

static int __init splat_init(void)
{
	WARN(1, "dm-fleece VM harness self-test warning\n");
	return -ECANCELED;
}
module_init(splat_init);

MODULE_DESCRIPTION("dm-fleece VM harness self-test");
MODULE_LICENSE("GPL");
