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
 *
 * qemu-io reads its commands from a file, one line a range, so a view with
 * any number of ranges needs one qemu-io and a bounded argv. Its default
 * cache mode is writethrough: a flush after every write, 200,000 flushes
 * for 200,000 ranges (148 s with the image on a disk). The scratch image is
 * thrown away if anything fails, so it runs with -t writeback and one
 * "flush" at the end; "write -q" keeps its output to the prompts, so that
 * any other line is an error.
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
		if (fprintf(p->f, "write -q -z %" PRIu64 " %" PRIu64 "\n", off, n) < 0)
			return -EIO;
		p->writes++;
	}
	return 0;
}

static void path_in(const struct nbd_bitmap *b, const char *file, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", b->dir, file);
}

/*
 * The first thing a helper said in @log, into @said, for an error message;
 * returns whether it said anything. qemu-io's prompts ("qemu-io> ", with no
 * newline, before each command) are not counted: its quiet commands print
 * nothing else unless they fail.
 */
static int helper_said(const char *log, char *said, size_t len)
{
	static const char prompt[] = "qemu-io> ";
	char *line = NULL, *p;
	size_t cap = 0;
	FILE *f = fopen(log, "r");
	int found = 0;

	said[0] = '\0';
	if (!f) {
		snprintf(said, len, "cannot read its output: %s", strerror(errno));
		return 1;
	}
	/* getline: the prompts of a silent run are one line, megabytes long. */
	while (!found && getline(&line, &cap, f) >= 0) {
		for (p = line; !strncmp(p, prompt, sizeof(prompt) - 1); )
			p += sizeof(prompt) - 1;
		p[strcspn(p, "\n")] = '\0';
		if (*p) {
			snprintf(said, len, "%s", p);
			found = 1;
		}
	}
	free(line);
	fclose(f);
	return found;
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
	helper_said(log, said, sizeof(said));
	if (r < 0)
		snprintf(why, len, "%s: cannot run %s: %s", what, argv[0], strerror(-r));
	else
		snprintf(why, len, "%s: %s failed (status %d)%s%s", what, argv[0], r,
			 said[0] ? ": " : "", said);
	return -1;
}

int nbd_bitmap_make(struct nbd_bitmap *b, char *why, size_t len)
{
	char scratch[4096], cmds[4096], log[4096], size[32], gran[32], said[512];
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
	/* The one flush; it fails loudly if the bits cannot be stored. */
	if (!r && fprintf(p.f, "flush\n") < 0)
		r = -EIO;
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
		char *io[] = { (char *)b->qemu_io, "-t", "writeback", "-f", "qcow2",
			       scratch, NULL };
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
		/* qemu-io reports a failed command but may still exit 0. */
		if (helper_said(log, said, sizeof(said))) {
			snprintf(why, len, "marking the changed ranges (%" PRIu64
				 " writes): qemu-io: %s", p.writes, said);
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
