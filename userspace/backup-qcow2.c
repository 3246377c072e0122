// SPDX-License-Identifier: GPL-2.0
/*
 * backup-qcow2: a backup written as a qcow2 image (--format qcow2): a full
 * backup as a standalone image, an incremental as an image over the
 * previous one (--base, its backing file) that holds only the changed
 * clusters, so that full.qcow2 <- incr1.qcow2 <- ... is a chain qemu-img
 * and QEMU read as the point-in-time image of its top.
 *
 * The image is written by qcow2.c in one pass, its tables at the end: it
 * is complete only when the backup is, so it cannot be resumed, and it is
 * not read back (--verify) nor given a manifest: qemu-img check and
 * compare are the tools for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backup.h"
#include "qcow2.h"
#include "util.h"

#define QCOW2_MAX_CLUSTER (64 * 1024)	/* qemu's default */

/* The virtual size of a qcow2 image, or the size of a raw one. */
static int base_size(struct backup *b, int fd, const char **fmt, uint64_t *size)
{
	struct stat st;
	int r;

	if (fstat(fd, &st))
		return -errno;
	if (!S_ISREG(st.st_mode)) {
		msg_err("backup %s: the base %s of a qcow2 image must be an image file",
			b->view, b->base);
		return -1;
	}
	r = qcow2_probe(fd, size);
	if (r < 0)
		return r;
	*fmt = r ? "qcow2" : "raw";
	if (!r)
		*size = (uint64_t)st.st_size;
	return 0;
}

/*
 * The backing file's name as the image stores it: relative to the image's
 * directory when it is in the same one (the pair can be moved together),
 * else absolute.
 */
static int backing_name(struct backup *b, char *out, size_t len)
{
	char base[PATH_MAX], dir[PATH_MAX], d2[PATH_MAX], img[PATH_MAX];

	if (!realpath(b->base, base)) {
		msg_err("backup %s: cannot resolve the base %s: %s", b->view, b->base,
			strerror(errno));
		return -1;
	}
	str_copy(img, sizeof(img), b->final);
	if (!realpath(dirname(img), dir))
		dir[0] = '\0';
	str_copy(d2, sizeof(d2), base);
	if (dir[0] && !strcmp(dirname(d2), dir))
		str_copy(out, len, base + strlen(dir) + 1);
	else
		str_copy(out, len, base);
	return strlen(out) > QCOW2_MAX_BACKING ? -1 : 0;
}

int backup_qcow2_open(struct backup *b)
{
	char backing[PATH_MAX];
	const char *fmt = NULL;
	unsigned int bits = 9;
	uint64_t size = 0, cluster;
	int fd, r;

	cluster = b->chunk < QCOW2_MAX_CLUSTER ? b->chunk : QCOW2_MAX_CLUSTER;
	while ((1ULL << bits) < cluster)
		bits++;
	if (b->base) {
		fd = open(b->base, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			msg_err("backup %s: cannot open the base image %s: %s", b->view,
				b->base, strerror(errno));
			return -1;
		}
		r = base_size(b, fd, &fmt, &size);
		close(fd);
		if (r) {
			if (r != -1)
				msg_err("backup %s: cannot read the base image %s: %s",
					b->view, b->base, strerror(-r));
			return -1;
		}
		if (size != b->size) {
			msg_err("backup %s: the base image %s (%s) has %llu bytes, the view "
				"%llu: not an image of this origin", b->view, b->base, fmt,
				(unsigned long long)size, (unsigned long long)b->size);
			return -1;
		}
		if (backing_name(b, backing, sizeof(backing))) {
			msg_err("backup %s: the base image's name %s is too long for qcow2",
				b->view, b->base);
			return -1;
		}
	}
	if (ftruncate(b->out_fd, 0)) {
		msg_err("backup %s: cannot empty %s: %s", b->view, b->out, strerror(errno));
		return -1;
	}
	r = qcow2_create(&b->q, b->out_fd, b->size, bits, b->base ? backing : NULL, fmt);
	if (r) {
		msg_err("backup %s: cannot start the qcow2 image %s: %s", b->view, b->out,
			r == -EINVAL ? "the view's size is not a multiple of 512 bytes" :
			strerror(-r));
		return -1;
	}
	return 0;
}

int backup_qcow2_finish(struct backup *b)
{
	int r = qcow2_finish(b->q);

	b->q = NULL;
	if (r)
		msg_err("backup %s: finishing the qcow2 image %s failed: %s", b->view,
			b->out, strerror(-r));
	return r ? -1 : 0;
}
