// SPDX-License-Identifier: GPL-2.0
/*
 * backup: the reference backup agent. Copies a view into an image file or
 * onto a device and releases what it has safely copied.
 *
 * The view is read in order with large O_DIRECT reads. Each batch (64 MiB
 * by default, whole chunks) is written out, made durable with fdatasync(),
 * optionally read back and compared (sha256) with what was read from the
 * view, and only then discarded on the view (BLKDISCARD): its chunks are
 * released, their scratch space is freed and later origin writes to them
 * are not copied any more. A batch that was not durably written and
 * verified is never released.
 *
 * Image files are sparse: blocks of zeroes are not written. Devices get
 * every byte.
 *
 * What to copy comes as a list of extents. A full backup is one extent, the
 * whole view; an incremental backup (changed-block bitmaps, --changed) will
 * give only the changed chunks.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev.h"
#include "cli.h"
#include "discover.h"
#include "dm.h"
#include "fleecectl.h"
#include "parse.h"
#include "progress.h"
#include "sha256.h"
#include "signals.h"
#include "util.h"

#define IO_SIZE (1024 * 1024)		/* one read of the view */
#define DEFAULT_BATCH (64ULL << 20)	/* written, synced, verified, released */
#define ZERO_BLOCK 4096			/* granularity of holes in images */

struct extent {
	uint64_t off;
	uint64_t len;
};

struct backup {
	const char *view;		/* dm name */
	const char *to;
	int release, verify, quiet;
	uint64_t batch;

	int view_fd;
	int out_fd;
	int verify_fd;
	int verify_cached;		/* verify_fd is not O_DIRECT */
	int out_is_dev;
	int created;			/* the image file is ours to remove */
	uint64_t size;
	uint64_t chunk;			/* bytes */
	unsigned char *buf;
	unsigned char *vbuf;

	uint64_t done;			/* bytes read from the view */
	uint64_t written;
	uint64_t holes;
	unsigned int verified;		/* batches */
	uint64_t released;		/* bytes discarded */
	int discard_broken;
	struct progress prog;
};

static int is_zero(const unsigned char *p, size_t len)
{
	return !p[0] && !memcmp(p, p + 1, len - 1);
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			return -ENODATA;
		got += (size_t)n;
	}
	return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t put = 0;
	ssize_t n;

	while (put < len) {
		n = pwrite(fd, (const char *)buf + put, len - put, (off_t)(off + put));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			return -ENOSPC;
		put += (size_t)n;
	}
	return 0;
}

/* Write one buffer: all of it to a device; to a file, all but zero blocks. */
static int write_out(struct backup *b, const unsigned char *p, size_t len, uint64_t off)
{
	size_t i = 0, run;
	int r;

	if (b->out_is_dev) {
		b->written += len;
		return pwrite_full(b->out_fd, p, len, off);
	}
	while (i < len) {
		run = len - i < ZERO_BLOCK ? len - i : ZERO_BLOCK;
		if (is_zero(p + i, run)) {
			b->holes += run;
			i += run;
			continue;
		}
		/* A run of blocks with data, written at once. */
		while (i + run < len) {
			size_t nb = len - i - run < ZERO_BLOCK ? len - i - run : ZERO_BLOCK;

			if (is_zero(p + i + run, nb))
				break;
			run += nb;
		}
		r = pwrite_full(b->out_fd, p + i, run, off + i);
		if (r)
			return r;
		b->written += run;
		i += run;
	}
	return 0;
}

/* Read back [off, off + len) of the output; its sha256 into @digest. */
static int read_back(struct backup *b, uint64_t off, uint64_t len,
		     unsigned char digest[SHA256_DIGEST_SIZE])
{
	struct sha256 c;
	uint64_t pos;
	size_t n;
	int r;

	if (b->verify_cached)
		posix_fadvise(b->verify_fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
	sha256_init(&c);
	for (pos = off; pos < off + len; pos += n) {
		n = off + len - pos < IO_SIZE ? (size_t)(off + len - pos) : IO_SIZE;
		r = pread_full(b->verify_fd, b->vbuf, n, pos);
		if (r)
			return r;
		sha256_update(&c, b->vbuf, n);
	}
	sha256_final(&c, digest);
	return 0;
}

/* Release [off, off + len) on the view: its whole chunks. */
static int release_range(struct backup *b, uint64_t off, uint64_t len)
{
	uint64_t range[2] = { off, len };

	if (b->discard_broken || !len)
		return 0;
	if (!ioctl(b->view_fd, BLKDISCARD, range)) {
		b->released += len;
		return 0;
	}
	if (errno == EOPNOTSUPP) {
		msg_warn("backup %s: the view does not accept discards; "
			 "nothing will be released", b->view);
		b->discard_broken = 1;
		return 0;
	}
	return -errno;
}

/* Why a view read failed: the session may have been invalidated. */
static void explain_read_error(struct backup *b, uint64_t off, int r)
{
	struct fl_view v;
	char what[256];

	if (!get_view(b->view, &v, what, sizeof(what)) && v.have_status &&
	    !v.status.active)
		msg_err("backup %s: read at byte %llu failed: the session was invalidated "
			"(scratch full, or a scratch write error: see the kernel log); "
			"the backup cannot be completed, take a new snapshot",
			b->view, (unsigned long long)off);
	else
		msg_err("backup %s: read at byte %llu failed: %s", b->view,
			(unsigned long long)off, strerror(-r));
}

/*
 * Copy one batch: read, write, sync, verify, release. Returns 0, -EINTR on
 * a signal (the batch is not released), or -1 with the error printed.
 */
static int copy_batch(struct backup *b, uint64_t off, uint64_t len)
{
	unsigned char want[SHA256_DIGEST_SIZE], got[SHA256_DIGEST_SIZE];
	char hw[65], hg[65];
	struct sha256 c;
	uint64_t pos;
	size_t n;
	int r;

	sha256_init(&c);
	for (pos = off; pos < off + len; pos += n) {
		if (sig_caught())
			return -EINTR;
		n = off + len - pos < IO_SIZE ? (size_t)(off + len - pos) : IO_SIZE;
		r = pread_full(b->view_fd, b->buf, n, pos);
		if (r) {
			explain_read_error(b, pos, r);
			return -1;
		}
		if (b->verify)
			sha256_update(&c, b->buf, n);
		r = write_out(b, b->buf, n, pos);
		if (r) {
			msg_err("backup %s: writing %s at byte %llu failed: %s", b->view,
				b->to, (unsigned long long)pos, strerror(-r));
			return -1;
		}
		b->done += n;
		progress_update(&b->prog, b->done);
	}
	if (fdatasync(b->out_fd)) {
		msg_err("backup %s: syncing %s failed: %s", b->view, b->to, strerror(errno));
		return -1;
	}
	if (b->verify) {
		sha256_final(&c, want);
		r = read_back(b, off, len, got);
		if (r) {
			msg_err("backup %s: reading %s back at byte %llu failed: %s", b->view,
				b->to, (unsigned long long)off, strerror(-r));
			return -1;
		}
		if (memcmp(want, got, sizeof(want))) {
			sha256_hex(want, hw);
			sha256_hex(got, hg);
			msg_err("backup %s: verify failed: bytes %llu-%llu of %s differ from "
				"the view (sha256 %s, view %s); not released", b->view,
				(unsigned long long)off, (unsigned long long)(off + len - 1),
				b->to, hg, hw);
			return -1;
		}
		b->verified++;
	}
	if (b->release) {
		r = release_range(b, off, len);
		if (r) {
			msg_err("backup %s: releasing bytes %llu-%llu failed: %s", b->view,
				(unsigned long long)off, (unsigned long long)(off + len - 1),
				strerror(-r));
			return -1;
		}
	}
	return 0;
}

/* Batches of an extent end on multiples of the batch size. */
static int copy_extents(struct backup *b, const struct extent *e, unsigned int n)
{
	uint64_t pos, end, next;
	unsigned int i;
	int r;

	for (i = 0; i < n; i++) {
		end = e[i].off + e[i].len;
		for (pos = e[i].off; pos < end; pos = next) {
			next = (pos / b->batch + 1) * b->batch;
			if (next > end)
				next = end;
			r = copy_batch(b, pos, next - pos);
			if (r)
				return r;
		}
	}
	return 0;
}

static int open_view(struct backup *b, const struct fl_view *v)
{
	char path[PATH_MAX];
	struct stat st;
	int flags = (b->release ? O_RDWR : O_RDONLY) | O_DIRECT | O_CLOEXEC;

	snprintf(path, sizeof(path), "/dev/mapper/%s", v->name);
	b->view_fd = open(path, flags);
	if (b->view_fd < 0 || fstat(b->view_fd, &st) || st.st_rdev != v->devt) {
		if (b->view_fd >= 0)
			close(b->view_fd);
		bdev_path(v->devt, path, sizeof(path));
		b->view_fd = open(path, flags);
	}
	if (b->view_fd < 0) {
		msg_err("backup %s: cannot open %s: %s", b->view, path, strerror(errno));
		return -1;
	}
	if (bdev_size_fd(b->view_fd, &b->size)) {
		msg_err("backup %s: cannot get its size: %s", b->view, strerror(errno));
		return -1;
	}
	return 0;
}

static int open_output(struct backup *b, const struct fl_view *v)
{
	struct stat st;
	uint64_t size;
	int r;

	if (!stat(b->to, &st) && S_ISBLK(st.st_mode)) {
		if (st.st_rdev == v->devt || st.st_rdev == v->origin_devt ||
		    st.st_rdev == v->scratch_devt) {
			msg_err("backup %s: %s is the view's own %s", b->view, b->to,
				st.st_rdev == v->devt ? "device" :
				st.st_rdev == v->origin_devt ? "origin device" :
				"scratch device");
			return -1;
		}
		b->out_is_dev = 1;
		b->out_fd = open(b->to, O_WRONLY | O_EXCL | O_DIRECT | O_CLOEXEC);
		if (b->out_fd < 0) {
			msg_err("backup %s: cannot open %s%s: %s", b->view, b->to,
				errno == EBUSY ? " (mounted or in use?)" : "", strerror(errno));
			return -1;
		}
		r = bdev_size_fd(b->out_fd, &size);
		if (r || size < b->size) {
			msg_err("backup %s: %s is %s than the view (%llu bytes)", b->view,
				b->to, r ? "cannot be sized, or smaller" : "smaller",
				(unsigned long long)b->size);
			return -1;
		}
	} else if (!stat(b->to, &st) && !S_ISREG(st.st_mode)) {
		msg_err("backup %s: %s is neither a regular file nor a block device",
			b->view, b->to);
		return -1;
	} else {
		b->created = stat(b->to, &st) != 0;
		b->out_fd = open(b->to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (b->out_fd < 0) {
			msg_err("backup %s: cannot create %s: %s", b->view, b->to,
				strerror(errno));
			return -1;
		}
		if (ftruncate(b->out_fd, (off_t)b->size)) {
			msg_err("backup %s: cannot size %s to %llu bytes: %s", b->view, b->to,
				(unsigned long long)b->size, strerror(errno));
			return -1;
		}
	}
	if (b->verify) {
		b->verify_fd = open(b->to, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (b->verify_fd < 0 && errno == EINVAL) {
			/* No O_DIRECT here (tmpfs): drop the cache before reading. */
			b->verify_fd = open(b->to, O_RDONLY | O_CLOEXEC);
			b->verify_cached = 1;
		}
		if (b->verify_fd < 0) {
			msg_err("backup %s: cannot open %s to verify it: %s", b->view, b->to,
				strerror(errno));
			return -1;
		}
	}
	return 0;
}

static void summary(struct backup *b, double secs)
{
	char sz[32], wr[32], ho[32];
	struct fl_view v;
	char what[256];

	format_size(b->done, sz, sizeof(sz));
	format_size(b->written, wr, sizeof(wr));
	format_size(b->holes, ho, sizeof(ho));
	printf("backup %s: %llu bytes (%s) to %s in %.1f s, %.1f MiB/s\n", b->view,
	       (unsigned long long)b->done, sz, b->to, secs,
	       secs > 0 ? (double)b->done / secs / 1048576.0 : 0.0);
	if (b->out_is_dev)
		printf("  written:  %s\n", wr);
	else
		printf("  written:  %s; %s of zeroes left as holes\n", wr, ho);
	if (b->verify)
		printf("  verified: %u batch%s read back, sha256 equal\n", b->verified,
		       b->verified == 1 ? "" : "es");
	if (!b->release)
		printf("  released: nothing (--no-release)\n");
	else if (b->discard_broken)
		printf("  released: nothing (the view does not accept discards)\n");
	else if (!get_view(b->view, &v, what, sizeof(what)) && v.have_status)
		printf("  released: %llu chunks of %llu in the view; scratch in use: %llu of %llu chunks\n",
		       (unsigned long long)v.status.released,
		       (unsigned long long)((b->size + b->chunk - 1) / b->chunk),
		       (unsigned long long)v.status.scratch_used,
		       (unsigned long long)v.status.scratch_total);
}

int cmd_backup(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "full", no_argument, NULL, 'f' },
		{ "no-release", no_argument, NULL, 'N' },
		{ "verify", no_argument, NULL, 'v' },
		{ "batch", required_argument, NULL, 'b' },
		{ "force", no_argument, NULL, 'F' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct backup b = { .release = 1, .batch = DEFAULT_BATCH, .view_fd = -1,
			    .out_fd = -1, .verify_fd = -1 };
	char name[NAME_LEN], what[256];
	struct extent full;
	struct fl_view v;
	uint64_t unit;
	double t0;
	dev_t devt;
	int c, r, force = 0, rc = EXIT_ERR;

	optind = 0;
	while ((c = getopt_long(argc, argv, "t:fqh", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			b.to = optarg;
			break;
		case 'f':
			/* The only kind of backup until changed-block bitmaps. */
			break;
		case 'N':
			b.release = 0;
			break;
		case 'v':
			b.verify = 1;
			break;
		case 'b':
			if (parse_size(optarg, &b.batch) || b.batch < IO_SIZE)
				return usage_error(argv[0], "invalid --batch '%s': a size of "
						   "at least 1M", optarg);
			break;
		case 'F':
			force = 1;
			break;
		case 'q':
			b.quiet = 1;
			break;
		case 'h':
			command_usage(argv[0], stdout);
			return EXIT_OK;
		default:
			command_usage(argv[0], stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != 1)
		return usage_error(argv[0], "needs VIEW");
	if (!b.to)
		return usage_error(argv[0], "--to FILE|DEV is required");

	if (resolve_dm_arg("backup", argv[optind], name, sizeof(name), &devt))
		return EXIT_ERR;
	b.view = name;
	r = get_view(name, &v, what, sizeof(what));
	if (r) {
		if (r == -EMEDIUMTYPE)
			msg_err("backup %s: not a %s view (%s)", name, TARGET_VIEW, what);
		else
			msg_err("backup %s: %s", name, r == -ENOENT ? "no such device" : fdm_error());
		return EXIT_ERR;
	}
	if (!v.single || !v.have_status) {
		msg_err("backup %s: %s", name, !v.single ?
			"its table has more than the view target" : "cannot read its status");
		return EXIT_ERR;
	}
	if (!v.status.active) {
		msg_err("backup %s: the session is invalid (scratch was full, or a "
			"device failed); take a new snapshot", name);
		return EXIT_ERR;
	}
	if (v.status.released && !force) {
		msg_err("backup %s: %llu chunks were released already (by an earlier "
			"backup?) and read as zeroes: the image would not be the point in "
			"time; take a new snapshot, or use --force", name,
			(unsigned long long)v.status.released);
		return EXIT_ERR;
	}
	b.chunk = v.status.chunk_sectors << 9;
	if (!b.chunk) {
		msg_err("backup %s: its status gives no chunk size", name);
		return EXIT_ERR;
	}
	/* Batches are whole chunks and whole reads. */
	unit = b.chunk > IO_SIZE ? b.chunk : IO_SIZE;
	b.batch = (b.batch + unit - 1) / unit * unit;

	/* A signal from here on stops the copy cleanly (and removes the image). */
	sig_catch();
	if (open_view(&b, &v) || open_output(&b, &v))
		goto out;
	if (posix_memalign((void **)&b.buf, 4096, IO_SIZE) ||
	    posix_memalign((void **)&b.vbuf, 4096, IO_SIZE)) {
		msg_err("backup %s: out of memory", name);
		goto out;
	}

	progress_init(&b.prog, name, b.size, b.quiet);
	t0 = now_seconds();
	full.off = 0;
	full.len = b.size;
	r = copy_extents(&b, &full, 1);
	progress_finish(&b.prog, b.done);
	if (r == -EINTR) {
		msg_err("backup %s: interrupted by signal %d (%s) at byte %llu",
			name, sig_caught(), strsignal(sig_caught()),
			(unsigned long long)b.done);
		goto out;
	}
	if (r)
		goto out;
	if (close(b.out_fd)) {
		b.out_fd = -1;
		msg_err("backup %s: closing %s failed: %s", name, b.to, strerror(errno));
		goto out;
	}
	b.out_fd = -1;
	summary(&b, now_seconds() - t0);
	rc = EXIT_OK;
out:
	sig_restore();
	if (b.out_fd >= 0)
		close(b.out_fd);
	if (b.verify_fd >= 0)
		close(b.verify_fd);
	if (b.view_fd >= 0)
		close(b.view_fd);
	if (rc && b.to) {
		if (b.created && !unlink(b.to))
			msg_err("backup %s: removed the incomplete image %s", name, b.to);
		else if (b.done)
			msg_err("backup %s: %s holds an incomplete image", name, b.to);
		if (b.released)
			msg_err("backup %s: %llu bytes of the view were released already; "
				"a new backup needs a new snapshot", name,
				(unsigned long long)b.released);
	}
	free(b.buf);
	free(b.vbuf);
	return rc;
}
