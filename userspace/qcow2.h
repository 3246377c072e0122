/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A qcow2 (version 3) image writer for backups: one pass, clusters in
 * increasing order, appended to an empty file; the tables and the header
 * are written last, so an image cut short has no header and is not taken
 * for a valid one. Made for full images and for incrementals over a backing
 * file (full.qcow2 <- incr1.qcow2 <- ...), each holding only what changed.
 *
 * No qemu needed. Not a general qcow2 library: it cannot open, read or
 * update an image, nor write compressed clusters, snapshots or bitmaps.
 */
#ifndef FLEECECTL_QCOW2_H
#define FLEECECTL_QCOW2_H

#include <stddef.h>
#include <stdint.h>

/* cluster_bits qcow2 allows (qemu: 512 B to 2 MiB). */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21

/* The longest backing file name qcow2 allows, in bytes. */
#define QCOW2_MAX_BACKING 1023

struct qcow2;

/**
 * qcow2_create() - start an image
 * @q: set to the new writer on success
 * @fd: an empty regular file open O_RDWR; the caller names, fsyncs, renames
 *	and closes it
 * @size: virtual size in bytes, a multiple of 512 (qemu's rule)
 * @cluster_bits: log2 of the cluster size, QCOW2_MIN_CLUSTER_BITS to
 *	QCOW2_MAX_CLUSTER_BITS. For a backup of an origin, use
 *	min(chunk size, 64 KiB): a changed chunk is then whole clusters, and
 *	64 KiB is qemu's default.
 * @backing: NULL for a full image; else the backing file's name, stored as
 *	given (a relative name is relative to this image's directory, as qemu
 *	reads it), 1 to QCOW2_MAX_BACKING bytes
 * @backing_fmt: with @backing, its format ("qcow2" or "raw"), stored as the
 *	backing format header extension so that qemu does not probe; NULL
 *	without @backing
 *
 * Memory: the L1 table (8 bytes per 2^(2 * cluster_bits - 3) bytes of
 * @size: 256 KiB for 16 TiB with 64 KiB clusters) and a few clusters.
 *
 * Return: 0, -EINVAL (bad argument, or @fd not an empty regular file),
 * -EFBIG (@size needs an L1 table larger than qemu reads, 32 MiB),
 * -ENAMETOOLONG (@backing does not fit), -ENOMEM, or -errno of fstat.
 */
int qcow2_create(struct qcow2 **q, int fd, uint64_t size, unsigned int cluster_bits,
		 const char *backing, const char *backing_fmt);

/**
 * qcow2_write() - add guest data to the image
 * @q: the writer
 * @off: guest offset, a multiple of the cluster size, at or after the end of
 *	the previous write
 * @buf: the bytes
 * @len: a multiple of the cluster size, except that a write ending at the
 *	image's size may end inside its last cluster (the rest reads as zero)
 *
 * Each cluster of data is appended to the file. An all-zero cluster takes
 * no space: in a full image it stays unallocated (reads as zero); in an
 * image with a backing file it becomes a zero cluster (reads as zero, hides
 * the backing file's data). Guest ranges never written read from the
 * backing file, or as zero without one.
 *
 * After an error the image is unusable: every later call returns the
 * same error; qcow2_abort() it.
 *
 * Return: 0, -EINVAL (misaligned, out of order, or past the end), or the
 * -errno of a write to the file.
 */
int qcow2_write(struct qcow2 *q, uint64_t off, const void *buf, size_t len);

/**
 * qcow2_finish() - write the tables and the header, and free the writer
 * @q: the writer; freed whatever the result
 *
 * Appends the last L2 table, the L1 table, the refcount blocks and table,
 * then writes the header into the first cluster. Does not fsync.
 *
 * Return: 0, -EFBIG (the refcount table would be larger than qemu reads),
 * an earlier error of qcow2_write(), or the -errno of a write.
 */
int qcow2_finish(struct qcow2 *q);

/* Free the writer without finishing the image (which stays headerless). */
void qcow2_abort(struct qcow2 *q);

/**
 * qcow2_probe() - is @fd a qcow2 image, and of which virtual size
 * @fd: an open file
 * @size: set to the image's virtual size when it is one
 *
 * Return: 1 (qcow2), 0 (not: too short, or another magic), or -errno.
 */
int qcow2_probe(int fd, uint64_t *size);

#endif
