/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Changed-block bitmaps, for the commands that use them (bitmap, changes,
 * snapshot, backup).
 */
#ifndef FLEECECTL_BITMAP_H
#define FLEECECTL_BITMAP_H

#include <stdint.h>

struct fl_origin;

/*
 * Walk the changed byte ranges, in increasing order: those of the live
 * bitmap @bitmap of the fleece-origin device @dm_name, or with @bitmap NULL
 * those of the backup transaction of the view @dm_name. Chunks are turned
 * into bytes (the last range is cut at @size). Stops at the first non-zero
 * return of @fn and returns it. Returns 0, or -errno of the message
 * (-ENOENT: no such bitmap / no transaction), or -EBADMSG when the kernel's
 * answer has not the documented format.
 */
int changes_foreach(const char *dm_name, const char *bitmap, uint64_t chunk_bytes,
		    uint64_t size, int (*fn)(uint64_t off, uint64_t len, void *arg),
		    void *arg);

/*
 * Add the empty bitmap @bitmap to the fleece-origin device @origin (its dm
 * name), as 'fleecectl bitmap add' does; the caller holds the lock. Prints
 * "fleecectl: bitmap add ORIGIN: BITMAP: reason" and returns -1 if refused.
 */
int bitmap_add(const char *origin, const char *bitmap);

/* Bytes of @chunks chunks of the origin, at most its size. */
uint64_t bitmap_bytes(const struct fl_origin *o, uint64_t chunks);

#endif
