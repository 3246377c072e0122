// SPDX-License-Identifier: GPL-2.0
/*
 * The changed ranges of an incremental view, exported over NBD the way QEMU
 * exports its own: as a persistent dirty bitmap of a qcow2 image, which
 * qemu-nbd -B offers as the metadata context "qemu:dirty-bitmap:NAME".
 * Backup servers that pull incremental backups from QEMU/libvirt already
 * read that context, and nbdinfo --map lists it.
 *
 * qemu-img can add, merge and remove bitmaps but not set bits, and fleecectl
 * does not write qcow2 itself. So the bits are set the way QEMU sets them,
 * by writes: a scratch image with an enabled bitmap gets a zero write (no
 * data, only metadata) over each changed range; its bitmap is then merged
 * into a disabled bitmap of the overlay the server exports. The overlay is
 * empty and has the view as its raw backing file, so every byte read is the
 * view's and base:allocation stays truthful (all data): a client that does
 * not ask for the bitmap makes a correct full copy.
 *
 * The bitmap's granularity is the view's chunk size, so its dirty ranges
 * are exactly the ranges "fleecectl changes VIEW" prints.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "nbdbitmap.h"
#include "spawn.h"

/* qemu-io refuses writes of 2 GiB or more: split the ranges. */
#define MAX_WRITE (1ULL << 30)

struct plan {
	FILE *f;
	uint64_t ranges, bytes, writes;
};

static int plan_range(uint64_t off, uint64_t len, void *arg)
{
	struct plan *p = arg;
	uint64_t n;

	p->ranges++;
	p->bytes += len;
	for (; len; off += n, len -= n) {
		n = len < MAX_WRITE ? len : MAX_WRITE;
		if (fprintf(p->f, "write -z %" PRIu64 " %" PRIu64 "\n", off, n) < 0)
			return -EIO;
		p->writes++;
	}
	return 0;
}

static void path_in(const struct nbd_bitmap *b, const char *file, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", b->dir, file);
}

/* The first line of a helper's output, for an error message. */
static void first_line(const char *log, char *buf, size_t len)
{
	FILE *f = fopen(log, "r");

	buf[0] = '\0';
	if (!f)
		return;
	if (fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

/* Run a helper; on failure say which step failed and what it said. */
static int step(const struct nbd_bitmap *b, char *const argv[], const char *in,
		const char *what, char *why, size_t len)
{
	char log[4096], said[512];
	int r;

	path_in(b, "qemu.log", log, sizeof(log));
	r = run_wait(argv, in, log);
	if (!r)
		return 0;
	first_line(log, said, sizeof(said));
	if (r < 0)
		snprintf(why, len, "%s: cannot run %s: %s", what, argv[0], strerror(-r));
	else
		snprintf(why, len, "%s: %s failed (status %d)%s%s", what, argv[0], r,
			 said[0] ? ": " : "", said);
	return -1;
}

/* Lines of qemu-io's output that report a write done. */
static uint64_t count_writes(const char *log)
{
	char line[512];
	uint64_t n = 0;
	FILE *f = fopen(log, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "wrote "))
			n++;
	fclose(f);
	return n;
}

int nbd_bitmap_make(struct nbd_bitmap *b, char *why, size_t len)
{
	char scratch[4096], cmds[4096], log[4096], size[32], gran[32];
	char *bitmap = (char *)b->bitmap;
	struct plan p = { 0 };
	int r;

	path_in(b, "changes.qcow2", scratch, sizeof(scratch));
	path_in(b, "changes.qemu-io", cmds, sizeof(cmds));
	path_in(b, "qemu.log", log, sizeof(log));
	path_in(b, "view.qcow2", b->image, sizeof(b->image));
	snprintf(size, sizeof(size), "%" PRIu64, b->size);
	snprintf(gran, sizeof(gran), "%" PRIu64, b->chunk);

	/* The ranges, as qemu-io commands. */
	p.f = fopen(cmds, "we");
	if (!p.f) {
		snprintf(why, len, "cannot create %s: %s", cmds, strerror(errno));
		return -1;
	}
	r = changes_foreach(b->view, NULL, b->chunk, b->size, plan_range, &p);
	if (fclose(p.f) && !r)
		r = -EIO;
	if (r) {
		snprintf(why, len, "cannot list its changes: %s", r == -ENOENT ?
			 "its backup transaction has ended" : r == -EBADMSG ?
			 "the kernel's answer is not understood" : strerror(-r));
		return -1;
	}
	b->ranges = p.ranges;
	b->bytes = p.bytes;

	{
		char *create[] = { (char *)b->qemu_img, "create", "-q", "-f", "qcow2",
				   scratch, size, NULL };
		char *add[] = { (char *)b->qemu_img, "bitmap", "--add", "-g", gran,
				scratch, bitmap, NULL };
		char *io[] = { (char *)b->qemu_io, "-f", "qcow2", scratch, NULL };
		char *overlay[] = { (char *)b->qemu_img, "create", "-q", "-f", "qcow2",
				    "-b", (char *)b->view_path, "-F", "raw", b->image,
				    size, NULL };
		char *merge[] = { (char *)b->qemu_img, "bitmap", "--add", "-g", gran,
				  "--disable", "--merge", bitmap, "-b", scratch, "-F",
				  "qcow2", b->image, bitmap, NULL };

		if (step(b, create, NULL, "creating the changes image", why, len) ||
		    step(b, add, NULL, "adding its bitmap", why, len) ||
		    step(b, io, cmds, "marking the changed ranges", why, len))
			return -1;
		/* qemu-io reports a failed command but still exits 0. */
		if (count_writes(log) != p.writes) {
			char said[512];

			first_line(log, said, sizeof(said));
			snprintf(why, len, "marking the changed ranges: qemu-io did %" PRIu64
				 " of %" PRIu64 " writes (%s)", count_writes(log), p.writes,
				 said);
			return -1;
		}
		if (step(b, overlay, NULL, "creating the overlay over the view", why, len) ||
		    step(b, merge, NULL, "copying the bitmap into the overlay", why, len))
			return -1;
	}
	unlink(scratch);
	unlink(cmds);
	unlink(log);
	return 0;
}

void nbd_bitmap_remove(const struct nbd_bitmap *b)
{
	static const char *const files[] = { "changes.qcow2", "changes.qemu-io",
					     "qemu.log", "view.qcow2" };
	char path[4096];
	unsigned int i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		path_in(b, files[i], path, sizeof(path));
		unlink(path);
	}
}
