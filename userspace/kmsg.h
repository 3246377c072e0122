/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel says why it refused a table only in its log
 * ("device-mapper: table: 254:3: fleece: Cannot open scratch device").
 * kmsg_open() marks the end of the log before an ioctl; kmsg_reason()
 * finds that line among what was logged since.
 */
#ifndef FLEECECTL_KMSG_H
#define FLEECECTL_KMSG_H

#include <stddef.h>

/* A descriptor positioned at the end of the kernel log, or -1. */
int kmsg_open(void);

/*
 * The last "device-mapper: table:" or "device-mapper: fleece:" message
 * logged since kmsg_open(), without that prefix and the device number
 * ("fleece: Cannot open scratch device (-16)", "bitmap_add: bitmap 'x'
 * exists"), in buf. Returns 1 when found, else 0. Closes fd.
 */
int kmsg_reason(int fd, char *buf, size_t len);

#endif
