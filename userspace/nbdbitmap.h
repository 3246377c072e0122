/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A view's changed ranges as a QEMU dirty bitmap, for an NBD client to read
 * as the metadata context "qemu:dirty-bitmap:NAME".
 */
#ifndef FLEECECTL_NBDBITMAP_H
#define FLEECECTL_NBDBITMAP_H

#include <stddef.h>
#include <stdint.h>

struct nbd_bitmap {
	/* In: */
	const char *qemu_img;		/* full paths (find_program) */
	const char *qemu_io;
	const char *dir;		/* private, empty directory */
	const char *view;		/* dm name (its changes message) */
	const char *view_path;		/* the device, the image's backing file */
	const char *bitmap;		/* name of the bitmap in the image */
	uint64_t chunk;			/* bytes: the bitmap's granularity */
	uint64_t size;			/* bytes of the view */
	/* Out: */
	char image[4096];		/* dir/view.qcow2 */
	uint64_t ranges;
	uint64_t bytes;
};

/*
 * Make b->image: an empty qcow2 overlay over the view (every read goes to
 * the view) that carries a persistent dirty bitmap named b->bitmap with
 * exactly the view's changed chunks set. qemu-nbd -B exports it. Returns
 * 0, or -1 with the reason in @why.
 */
int nbd_bitmap_make(struct nbd_bitmap *b, char *why, size_t len);

/* Remove what nbd_bitmap_make put in b->dir. */
void nbd_bitmap_remove(const struct nbd_bitmap *b);

#endif
