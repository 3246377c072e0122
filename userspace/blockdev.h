/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Block devices: what they are, how big, and whether anything uses them.
 */
#ifndef FLEECECTL_BLOCKDEV_H
#define FLEECECTL_BLOCKDEV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The device number of a block device path. -errno, -ENOTBLK. */
int bdev_devt(const char *path, dev_t *devt);

/*
 * A device as a table names it: a path or "major:minor". Returns 0 or
 * -errno.
 */
int bdev_resolve_arg(const char *arg, dev_t *devt);

/* Size in bytes of an open block device or of a path. -errno. */
int bdev_size_fd(int fd, uint64_t *bytes);
int bdev_size(const char *path, uint64_t *bytes);

/*
 * A path that opens the device: /dev/block/M:m if it exists, else
 * /dev/KERNELNAME.
 */
void bdev_path(dev_t devt, char *buf, size_t len);

/* For people: /dev/mapper/NAME for dm devices, /dev/vdb otherwise. */
void bdev_display(dev_t devt, char *buf, size_t len);

/*
 * Is the device unused? It must open with O_EXCL (not mounted, not part of
 * a dm/md device, not claimed by a program) and no other process may keep
 * it open. Returns 0 if unused; -EBUSY with the reason in @why (e.g.
 * "mounted on /mnt", "held by device-mapper device data",
 * "open in process 123 (dd)"); another -errno if it cannot be opened.
 */
int bdev_check_unused(const char *path, dev_t devt, char *why, size_t len);

/*
 * What a device holds, as mkfs and wipefs would see it: a file system, a
 * RAID or LVM member, a LUKS header, a partition table (libblkid), or
 * dm-fleece metadata. Returns 1 with @what describing it ("an ext4 file
 * system labelled 'data'"), 0 if nothing is recognised, -errno.
 */
int bdev_probe_contents(const char *path, char *what, size_t len);

/*
 * Erase every signature bdev_probe_contents() would find (as wipefs -a
 * does: the magic bytes only). Returns 0 or -errno.
 */
int bdev_wipe_signatures(const char *path);

/*
 * A stable name of the device, to bind metadata to it: "dm-uuid-UUID" (an
 * LVM LV, a LUKS device), "dm-name-NAME" (a dm device without a UUID), else
 * its /dev/disk/by-id name (wwn- first). Returns 0, or -ENOENT if it has
 * none.
 */
int bdev_origin_id(dev_t devt, char *id, size_t len);

#endif
