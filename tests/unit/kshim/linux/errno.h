/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Userspace stand-in; see kshim.h. Unlike the other stand-ins this one does
 * not include kshim.h: glibc's <errno.h> itself includes <linux/errno.h>,
 * which then finds this file first, and kshim.h must not be pulled into the
 * middle of <errno.h>. The uapi header has the kernel's E* values.
 */
#include_next <linux/errno.h>
