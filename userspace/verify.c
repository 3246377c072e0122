// SPDX-License-Identifier: GPL-2.0
/*
 * verify: does an image still hold what was backed up? Reads the image
 * (several reads in flight, as backup does) and compares each block's
 * digest with its manifest's (manifest.h). Nothing is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev.h"
#include "cli.h"
#include "copier.h"
#include "fleecectl.h"
#include "manifest.h"
#include "util.h"

#define DEFAULT_JOBS 4

int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "manifest", required_argument, NULL, 'm' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char mpath[PATH_MAX], hw[65], hg[65];
	struct manifest want, got;
	const char *image, *manifest = NULL, *why;
	uint64_t size, jobs = DEFAULT_JOBS, b, bad = 0, first = 0;
	struct stat st;
	double t0;
	int c, fd, r;

	optind = 0;
	while ((c = cmd_getopt(argc, argv, "h", opts)) != -1) {
		switch (c) {
		case 'm':
			manifest = optarg;
			break;
		case 'j':
			if (parse_u64(optarg, &jobs) || !jobs || jobs > COPIER_MAX_JOBS)
				return usage_error(argv[0], "invalid --jobs '%s': 1 to %d",
						   optarg, COPIER_MAX_JOBS);
			break;
		default:
			return option_end(c, argv[0]);
		}
	}
	if (argc - optind != 1)
		return usage_error(argv[0], "needs IMAGE");
	image = argv[optind];
	if (!manifest) {
		if (snprintf(mpath, sizeof(mpath), "%s%s", image, MANIFEST_SUFFIX) >=
		    (int)sizeof(mpath)) {
			msg_err("verify %s: name too long", image);
			return EXIT_ERR;
		}
		manifest = mpath;
	}
	r = manifest_read(&want, manifest, &why);
	if (r) {
		msg_err("verify %s: manifest %s: %s", image, manifest,
			r == -EBADMSG ? why : strerror(-r));
		return EXIT_ERR;
	}
	fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		msg_err("verify %s: cannot open it: %s", image, strerror(errno));
		goto fail;
	}
	if (S_ISBLK(st.st_mode) ? bdev_size_fd(fd, &size) : (size = (uint64_t)st.st_size, 0)) {
		msg_err("verify %s: cannot get its size: %s", image, strerror(errno));
		goto fail;
	}
	/* A device may be larger than the image it holds. */
	if (size < want.size || (!S_ISBLK(st.st_mode) && size != want.size)) {
		msg_err("verify %s: it has %llu bytes, its manifest says %llu", image,
			(unsigned long long)size, (unsigned long long)want.size);
		goto fail;
	}
	if (manifest_init(&got, want.size, want.block)) {
		msg_err("verify %s: out of memory", image);
		goto fail;
	}
	t0 = now_seconds();
	r = manifest_fill(&got, fd, (unsigned int)jobs);
	if (r) {
		msg_err("verify %s: reading it failed: %s", image, strerror(-r));
		manifest_free(&got);
		goto fail;
	}
	for (b = 0; b < want.nblocks; b++) {
		if (!memcmp(want.digest[b], got.digest[b], SHA256_DIGEST_SIZE))
			continue;
		if (!bad++)
			first = b;
		if (bad <= 10) {
			sha256_hex(want.digest[b], hw);
			sha256_hex(got.digest[b], hg);
			msg_err("verify %s: bytes %llu-%llu differ from the backup (block "
				"digest %.16s..., manifest %.16s...)", image,
				(unsigned long long)(b * want.block),
				(unsigned long long)((b + 1) * want.block > want.size ?
						     want.size - 1 : (b + 1) * want.block - 1),
				hg, hw);
		}
	}
	printf("verify %s: %llu bytes, %llu block%s of %llu MiB, %.1f s\n", image,
	       (unsigned long long)want.size, (unsigned long long)want.nblocks,
	       want.nblocks == 1 ? "" : "s", (unsigned long long)(want.block >> 20),
	       now_seconds() - t0);
	printf("  backup:   %s of view %s (origin %s), bitmap %s, started %s\n",
	       want.kind, want.view, want.origin, want.bitmap, want.started);
	if (strcmp(want.base, "-"))
		printf("  base:     %s\n", want.base);
	manifest_free(&got);
	manifest_free(&want);
	close(fd);
	if (bad) {
		printf("  result:   %llu block%s differ, the first at byte %llu: the image is "
		       "damaged\n", (unsigned long long)bad, bad == 1 ? "" : "s",
		       (unsigned long long)(first * want.block));
		return EXIT_ERR;
	}
	printf("  result:   every block equal to the backup\n");
	return EXIT_OK;
fail:
	if (fd >= 0)
		close(fd);
	manifest_free(&want);
	return EXIT_ERR;
}
