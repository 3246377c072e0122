/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel APIs dm-fleece uses that differ between the kernel series it
 * supports (Debian 12: 6.1 and 6.12). Everything version-dependent lives
 * here, so the rest of the code reads as it would upstream.
 */
#ifndef DM_FLEECE_COMPAT_H
#define DM_FLEECE_COMPAT_H

#include <linux/blkdev.h>
#include <linux/version.h>

/* dm_get_device() takes fmode_t before 6.5 and blk_mode_t after. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
#define FLEECE_MODE_RW (BLK_OPEN_READ | BLK_OPEN_WRITE)
#define FLEECE_MODE_RO BLK_OPEN_READ
#else
#define FLEECE_MODE_RW (FMODE_READ | FMODE_WRITE)
#define FLEECE_MODE_RO FMODE_READ
#endif

#endif /* DM_FLEECE_COMPAT_H */
