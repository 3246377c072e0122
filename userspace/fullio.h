/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Whole reads and writes: short transfers and EINTR are retried, so a
 * caller sees all of its bytes moved or an error.
 */
#ifndef FLEECECTL_FULLIO_H
#define FLEECECTL_FULLIO_H

#include <stddef.h>
#include <stdint.h>

/* Returns 0, -errno, or -ENODATA at the end of the file or device. */
int pread_full(int fd, void *buf, size_t len, uint64_t off);
/* Returns 0 or -errno (-ENOSPC when nothing more is taken). */
int pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* At the descriptor's position (a pipe): returns 0 or -errno. */
int write_full(int fd, const void *buf, size_t len);
/* 1 if all @len bytes (@len >= 1) are zero. */
int is_zero(const unsigned char *p, size_t len);

#endif
