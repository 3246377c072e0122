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
 * whole view; an incremental backup (--changed, a view with a bitmap) copies
 * the ranges the view's "changes" message lists, into a copy of the previous
 * image (--base) or into that image itself. There every byte of a range is
 * written, zeroes too (as holes punched in files): the old data must go.
 *
 * When the whole backup is written (and verified), a view with a backup
 * transaction is committed: its bitmap forgets the changes this image holds.
 *
 * An image file is written under a temporary name in its directory,
 * NAME.fleece-partial (locked with flock() while a backup writes it), and
 * renamed to NAME only when it is complete and fsync'ed; the directory is
 * fsync'ed too, and only then is the transaction committed. A crash, a
 * signal or an error never leaves a partial image under NAME, nor a commit
 * for an image that is not durable. An incremental backup without --base
 * updates NAME through a copy too (a clone where the filesystem shares
 * blocks): NAME keeps the previous image until the new one replaces it.
 * A device is written in place, and fsync'ed before the commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <getopt.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bitmap.h"
#include "blockdev.h"
#include "cli.h"
#include "discover.h"
#include "dm.h"
#include "fleecectl.h"
#include "parse.h"
#include "progress.h"
#include "sha256.h"
#include "signals.h"
#include "throttle.h"
#include "util.h"

#define IO_SIZE (1024 * 1024)		/* one read of the view */
#define DEFAULT_BATCH (64ULL << 20)	/* written, synced, verified, released */
#define ZERO_BLOCK 4096			/* granularity of holes in images */
#define PARTIAL_SUFFIX ".fleece-partial"	/* an image being written */

struct extent {
	uint64_t off;
	uint64_t len;
};

struct backup {
	const char *view;		/* dm name */
	const char *to;
	const char *changed;		/* --changed BITMAP */
	const char *base;		/* --base IMAGE */
	int release, verify, quiet, commit;
	int force;			/* --force */
	int overwrite;			/* an existing image is updated */
	uint64_t batch;

	int view_fd;
	int out_fd;
	int verify_fd;
	int verify_cached;		/* verify_fd is not O_DIRECT */
	int out_is_dev;
	const char *out;		/* the file written: partial, or the device */
	char final[PATH_MAX];		/* an image file's name once complete */
	char partial[PATH_MAX];		/* final + PARTIAL_SUFFIX */
	const char *from;		/* copied in first: --base, or final */
	int partial_ours;		/* created and locked: ours to remove */
	int renamed;			/* partial is final now */
	int final_existed;		/* and is replaced only when complete */
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
	struct throttle limit;		/* --rate-limit */
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

/* Make [off, off + len) of an existing image file read as zeroes. */
static int zero_out(struct backup *b, uint64_t off, size_t len)
{
	static const unsigned char zeroes[ZERO_BLOCK];

	if (!fallocate(b->out_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		       (off_t)off, (off_t)len))
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	return pwrite_full(b->out_fd, zeroes, len, off);
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
			/* An updated image may hold old data there. */
			if (b->overwrite) {
				r = zero_out(b, off + i, run);
				if (r)
					return r;
			}
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
	int known = !get_view(b->view, &v, what, sizeof(what)) && v.have_status;

	if (known && !v.status.active)
		msg_err("backup %s: read at byte %llu failed: the session was invalidated "
			"(scratch full, or a scratch write error: see the kernel log); "
			"the backup cannot be completed, take a new snapshot",
			b->view, (unsigned long long)off);
	else if (known && v.status.unreadable)
		msg_err("backup %s: read at byte %llu failed: the view lost %llu chunk(s): "
			"the origin could not be read when they were overwritten (bad "
			"sectors, see the kernel log); this backup cannot be complete",
			b->view, (unsigned long long)off,
			(unsigned long long)v.status.unreadable);
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
		if (throttle_account(&b->limit, n))
			return -EINTR;
		if (b->verify)
			sha256_update(&c, b->buf, n);
		r = write_out(b, b->buf, n, pos);
		if (r) {
			msg_err("backup %s: writing %s at byte %llu failed: %s", b->view,
				b->out, (unsigned long long)pos, strerror(-r));
			return -1;
		}
		b->done += n;
		progress_update(&b->prog, b->done);
	}
	if (fdatasync(b->out_fd)) {
		msg_err("backup %s: syncing %s failed: %s", b->view, b->out, strerror(errno));
		return -1;
	}
	if (b->verify) {
		sha256_final(&c, want);
		r = read_back(b, off, len, got);
		if (r) {
			msg_err("backup %s: reading %s back at byte %llu failed: %s", b->view,
				b->out, (unsigned long long)off, strerror(-r));
			return -1;
		}
		if (memcmp(want, got, sizeof(want))) {
			sha256_hex(want, hw);
			sha256_hex(got, hg);
			msg_err("backup %s: verify failed: bytes %llu-%llu of %s differ from "
				"the view (sha256 %s, view %s); not released", b->view,
				(unsigned long long)off, (unsigned long long)(off + len - 1),
				b->out, hg, hw);
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

/* The output is a block device: check it and open it. */
static int open_output_dev(struct backup *b, const struct fl_view *v, const struct stat *st)
{
	uint64_t size;
	int r;

	if (st->st_rdev == v->devt || st->st_rdev == v->origin_devt ||
	    st->st_rdev == v->scratch_devt) {
		msg_err("backup %s: %s is the view's own %s", b->view, b->to,
			st->st_rdev == v->devt ? "device" :
			st->st_rdev == v->origin_devt ? "origin device" : "scratch device");
		return -1;
	}
	/*
	 * A device that holds data (what mkfs and wipefs would find) is not
	 * overwritten by mistake. An incremental backup updates the previous
	 * image in place, which holds the origin's data: no question there.
	 */
	if (!(b->changed && !b->base)) {
		char what[256];

		r = bdev_probe_contents(b->to, what, sizeof(what));
		if (r < 0) {
			msg_err("backup %s: %s cannot be probed: %s", b->view, b->to,
				strerror(-r));
			return -1;
		}
		if (r && !b->force) {
			msg_err("backup %s: %s holds %s; it would be overwritten (use --force "
				"to write the backup over it anyway)", b->view, b->to, what);
			return -1;
		}
	}
	b->out_is_dev = 1;
	b->out = b->to;
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
	return 0;
}

/*
 * Copy the base image into the output (opened, sized): a clone where the
 * filesystem shares blocks, else its data ranges only (holes stay holes).
 * A device gets every byte.
 */
static int copy_base(struct backup *b, int in)
{
	off_t data, hole, end = (off_t)b->size;
	uint64_t pos, n;
	ssize_t got;
	int r;

	if (!b->out_is_dev && !ioctl(b->out_fd, FICLONE, in))
		return 0;
	for (data = 0; data < end; data = hole) {
		if (b->out_is_dev) {
			hole = end;
		} else {
			data = lseek(in, data, SEEK_DATA);
			if (data < 0)
				return errno == ENXIO ? 0 : -errno;
			hole = lseek(in, data, SEEK_HOLE);
			if (hole < 0)
				return -errno;
			if (hole > end)
				hole = end;
		}
		for (pos = (uint64_t)data; pos < (uint64_t)hole; pos += n) {
			if (sig_caught())
				return -EINTR;
			n = (uint64_t)hole - pos < IO_SIZE ? (uint64_t)hole - pos : IO_SIZE;
			if (!b->out_is_dev) {
				loff_t io = (loff_t)pos, oo = (loff_t)pos;

				got = copy_file_range(in, &io, b->out_fd, &oo, n, 0);
				if (got > 0) {
					n = (uint64_t)got;
					continue;
				}
				if (got < 0 && errno != EXDEV && errno != EINVAL &&
				    errno != EOPNOTSUPP && errno != ENOSYS)
					return -errno;
			}
			r = pread_full(in, b->buf, n, pos);
			if (r)
				return r;
			r = pwrite_full(b->out_fd, b->buf, n, pos);
			if (r)
				return r;
		}
	}
	return 0;
}

/*
 * The output starts as a copy of the previous image: --base, or the image
 * an incremental backup without --base updates (b->from is then final).
 * Opened and checked before the output is: its descriptor, or -1.
 */
static int open_from(struct backup *b)
{
	struct stat st;
	uint64_t bsize;
	int in;

	in = open(b->from, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		msg_err("backup %s: cannot open the %s image %s: %s", b->view,
			b->base ? "base" : "previous", b->from, strerror(errno));
		return -1;
	}
	if (fstat(in, &st)) {
		msg_err("backup %s: cannot stat %s: %s", b->view, b->from, strerror(errno));
		close(in);
		return -1;
	}
	if (!S_ISBLK(st.st_mode))
		bsize = (uint64_t)st.st_size;
	else if (bdev_size_fd(in, &bsize))
		bsize = 0;
	if (bsize != b->size) {
		msg_err("backup %s: the %s image %s has %llu bytes, the view %llu: "
			"not an image of this origin", b->view, b->base ? "base" : "previous",
			b->from, (unsigned long long)bsize, (unsigned long long)b->size);
		close(in);
		return -1;
	}
	return in;
}

static int start_from_base(struct backup *b, int in)
{
	int r = copy_base(b, in);

	/* Durable before any commit, even when no range changed. */
	if (!r && fdatasync(b->out_fd))
		r = -errno;
	if (r == -EINTR) {
		msg_err("backup %s: interrupted by signal %d (%s) while copying %s to %s",
			b->view, sig_caught(), strsignal(sig_caught()), b->from, b->out);
		return -1;
	}
	if (r) {
		msg_err("backup %s: copying the %s image %s to %s failed: %s", b->view,
			b->base ? "base" : "previous", b->from, b->out, strerror(-r));
		return -1;
	}
	return 0;
}

/*
 * An image file is written as final + PARTIAL_SUFFIX, locked: a second
 * backup to the same image is refused while this one runs. One left by a
 * backup that was killed (or a crash) is not locked: it is started again.
 * @old: the final image's stat, when it exists (its mode and owner are kept).
 */
static int open_partial(struct backup *b, const struct stat *old)
{
	struct stat fst, pst;
	int tries;

	if (snprintf(b->partial, sizeof(b->partial), "%s%s", b->final,
		     PARTIAL_SUFFIX) >= (int)sizeof(b->partial)) {
		msg_err("backup %s: %s: name too long", b->view, b->final);
		return -1;
	}
	b->out = b->partial;
	for (tries = 0;; tries++) {
		b->out_fd = open(b->partial, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (b->out_fd < 0) {
			msg_err("backup %s: cannot create %s: %s", b->view, b->partial,
				strerror(errno));
			return -1;
		}
		if (flock(b->out_fd, LOCK_EX | LOCK_NB)) {
			msg_err("backup %s: %s is %s", b->view, b->partial,
				errno == EWOULDBLOCK ? "locked: another backup is writing "
				"this image" : "cannot be locked");
			return -1;
		}
		if (fstat(b->out_fd, &fst)) {
			msg_err("backup %s: cannot stat %s: %s", b->view, b->partial,
				strerror(errno));
			return -1;
		}
		/* Locked, but renamed or removed by the backup that held it? */
		if (!stat(b->partial, &pst) && pst.st_dev == fst.st_dev &&
		    pst.st_ino == fst.st_ino)
			break;
		close(b->out_fd);
		b->out_fd = -1;
		if (tries == 10) {
			msg_err("backup %s: %s keeps being replaced", b->view, b->partial);
			return -1;
		}
	}
	if (!S_ISREG(fst.st_mode)) {
		msg_err("backup %s: %s is not a regular file", b->view, b->partial);
		return -1;
	}
	b->partial_ours = 1;
	if (fst.st_size)
		msg_warn("backup %s: %s was left by an interrupted backup; writing it "
			 "again", b->view, b->partial);
	if (ftruncate(b->out_fd, 0) || ftruncate(b->out_fd, (off_t)b->size)) {
		msg_err("backup %s: cannot size %s to %llu bytes: %s", b->view, b->partial,
			(unsigned long long)b->size, strerror(errno));
		return -1;
	}
	/* The image that replaces another keeps its mode and owner. */
	if (old) {
		if (fchown(b->out_fd, old->st_uid, old->st_gid))
			msg_verbose("backup %s: cannot give %s the owner of %s: %s", b->view,
				    b->partial, b->final, strerror(errno));
		if (fchmod(b->out_fd, old->st_mode & 0777))
			msg_verbose("backup %s: cannot give %s the mode of %s: %s", b->view,
				    b->partial, b->final, strerror(errno));
	}
	return 0;
}

/*
 * The output is complete: make it durable, and an image file's partial
 * name final (with its directory durable) - all before any commit.
 */
static int finish_output(struct backup *b)
{
	char dir[PATH_MAX];
	int dfd, r = 0;

	if (fsync(b->out_fd)) {
		msg_err("backup %s: syncing %s failed: %s", b->view, b->out, strerror(errno));
		return -1;
	}
	if (!b->out_is_dev) {
		/* Renamed while locked: no other backup takes the new image for a partial. */
		if (rename(b->partial, b->final)) {
			msg_err("backup %s: renaming %s to %s failed: %s", b->view, b->partial,
				b->final, strerror(errno));
			return -1;
		}
		b->renamed = 1;
		snprintf(dir, sizeof(dir), "%s", b->final);
		dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd)) {
			msg_err("backup %s: %s is complete, but syncing its directory failed: "
				"%s; not committed", b->view, b->final, strerror(errno));
			r = -1;
		}
		if (dfd >= 0)
			close(dfd);
	}
	if (close(b->out_fd) && !r) {
		msg_err("backup %s: closing %s failed: %s", b->view, b->out, strerror(errno));
		r = -1;
	}
	b->out_fd = -1;
	return r;
}

static int open_output(struct backup *b, const struct fl_view *v)
{
	struct stat st, bst;
	int exists = !stat(b->to, &st);
	int in = -1, r = -1;

	/* Before anything is written: the base must not be the output. */
	if (b->base && exists && !stat(b->base, &bst) &&
	    ((S_ISBLK(st.st_mode) && S_ISBLK(bst.st_mode) && st.st_rdev == bst.st_rdev) ||
	     (st.st_dev == bst.st_dev && st.st_ino == bst.st_ino))) {
		msg_err("backup %s: the base image %s is the output itself; to update "
			"an image in place, leave out --base", b->view, b->base);
		return -1;
	}
	b->from = b->base;

	if (exists && S_ISBLK(st.st_mode)) {
		if (open_output_dev(b, v, &st))
			return -1;
	} else if (exists && !S_ISREG(st.st_mode)) {
		msg_err("backup %s: %s is neither a regular file nor a block device",
			b->view, b->to);
		return -1;
	} else {
		/* The image replaced is the file a symbolic link names. */
		if (exists && realpath(b->to, b->final)) {
			;
		} else if (snprintf(b->final, sizeof(b->final), "%s", b->to) >=
			   (int)sizeof(b->final)) {
			msg_err("backup %s: %s: name too long", b->view, b->to);
			return -1;
		}
		if (b->changed && !b->base) {
			/* Update the previous image: it must be there. */
			if (!exists) {
				msg_err("backup %s: %s does not exist: an incremental backup "
					"updates the previous image, or a copy of it with "
					"--base IMAGE", b->view, b->to);
				return -1;
			}
			if ((uint64_t)st.st_size != b->size) {
				msg_err("backup %s: %s has %llu bytes, the view %llu: not an "
					"image of this origin", b->view, b->to,
					(unsigned long long)st.st_size,
					(unsigned long long)b->size);
				return -1;
			}
			b->from = b->final;
		}
	}
	if (b->from) {
		in = open_from(b);
		if (in < 0)
			return -1;
	}
	b->final_existed = exists;
	if (!b->out_is_dev && open_partial(b, exists ? &st : NULL))
		goto out;
	b->overwrite = b->changed != NULL;
	if (b->from && start_from_base(b, in))
		goto out;
	if (b->verify) {
		b->verify_fd = open(b->out, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (b->verify_fd < 0 && errno == EINVAL) {
			/* No O_DIRECT here (tmpfs): drop the cache before reading. */
			b->verify_fd = open(b->out, O_RDONLY | O_CLOEXEC);
			b->verify_cached = 1;
		}
		if (b->verify_fd < 0) {
			msg_err("backup %s: cannot open %s to verify it: %s", b->view, b->out,
				strerror(errno));
			goto out;
		}
	}
	r = 0;
out:
	if (in >= 0)
		close(in);
	return r;
}

/* The extents of an incremental backup: the view's changed ranges. */
struct extents {
	struct extent *e;
	unsigned int n, cap;
};

static int add_extent(uint64_t off, uint64_t len, void *arg)
{
	struct extents *x = arg;
	struct extent *ne;

	if (x->n && x->e[x->n - 1].off + x->e[x->n - 1].len == off) {
		x->e[x->n - 1].len += len;
		return 0;
	}
	if (x->n == x->cap) {
		if (x->cap >= UINT_MAX / 2)
			return -ENOMEM;
		x->cap = x->cap ? 2 * x->cap : 64;
		ne = realloc(x->e, x->cap * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		x->e = ne;
	}
	x->e[x->n].off = off;
	x->e[x->n].len = len;
	x->n++;
	return 0;
}

static void summary(struct backup *b, double secs, unsigned int nr_extents)
{
	char sz[32], wr[32], ho[32], rt[32];
	struct fl_view v;
	char what[256];

	format_size(b->done, sz, sizeof(sz));
	format_size(b->written, wr, sizeof(wr));
	format_size(b->holes, ho, sizeof(ho));
	printf("backup %s: %llu bytes (%s) to %s in %.1f s, %.1f MiB/s\n", b->view,
	       (unsigned long long)b->done, sz, b->to, secs,
	       secs > 0 ? (double)b->done / secs / 1048576.0 : 0.0);
	if (b->limit.rate) {
		format_size(b->limit.rate, rt, sizeof(rt));
		printf("  limited:  reads paced at %s/s (--rate-limit)\n", rt);
	}
	if (b->changed)
		printf("  changes:  %u range%s of bitmap '%s'%s%s\n", nr_extents,
		       nr_extents == 1 ? "" : "s", b->changed, b->base ? ", onto a copy of " : "",
		       b->base ? b->base : "");
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

/* Which ranges to copy: the whole view, or its backup transaction's. */
static int plan(struct backup *b, const struct fl_view *v, struct extents *x)
{
	int r;

	if (!b->changed)
		return add_extent(0, b->size, x) ? -1 : 0;
	r = changes_foreach(v->name, NULL, b->chunk, b->size, add_extent, x);
	if (!r)
		return 0;
	if (r == -ENOENT)
		msg_err("backup %s: its backup transaction has ended (the %s was removed): "
			"take a new snapshot", b->view, TARGET_ORIGIN);
	else
		msg_err("backup %s: cannot list its changes: %s", b->view,
			r == -EBADMSG ? "the kernel's answer is not understood" : strerror(-r));
	return -1;
}

/* A view with a bitmap: its transaction must be open and be --changed's. */
static int check_transaction(struct backup *b, const struct fl_view *v)
{
	const struct view_status *st = &v->status;

	if (b->changed && st->txn == TXN_NONE) {
		msg_err("backup %s: --changed %s: the view has no bitmap (take the snapshot "
			"with --bitmap %s)", b->view, b->changed, b->changed);
		return -1;
	}
	if (b->changed && strcmp(st->bitmap, b->changed)) {
		msg_err("backup %s: --changed %s: the view's bitmap is '%s'", b->view,
			b->changed, st->bitmap);
		return -1;
	}
	if (b->changed && st->txn != TXN_OPEN) {
		msg_err("backup %s: its backup transaction is %s already: %s", b->view,
			txn_name(st->txn), st->txn == TXN_COMMITTED ?
			"this backup was done; release the view" :
			"the changes went back to the bitmap; take a new snapshot");
		return -1;
	}
	return 0;
}

/* --rate-limit: a size per second, "40M" or "40M/s"; at least 64 KiB/s. */
static int parse_rate(const char *arg, uint64_t *rate)
{
	char s[64];
	size_t n = strlen(arg);

	if (n >= sizeof(s))
		return -EINVAL;
	memcpy(s, arg, n + 1);
	if (n > 2 && !strcmp(s + n - 2, "/s"))
		s[n - 2] = '\0';
	if (parse_size(s, rate) || *rate < 64 * 1024)
		return -EINVAL;
	return 0;
}

/* The backup is complete: the bitmap may forget what it holds. */
static int commit(struct backup *b)
{
	if (!fdm_message(b->view, 0, "commit", NULL) || fdm_errno() == EALREADY)
		return 0;
	msg_err("backup %s: the image is complete, but the commit failed: %s; the "
		"changes stay in bitmap '%s' and the next backup copies them again",
		b->view, fdm_errno() == EIO ? "the session is invalid, or a metadata "
		"write failed" : fdm_error(), b->changed);
	return -1;
}

int cmd_backup(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "full", no_argument, NULL, 'f' },
		{ "changed", required_argument, NULL, 'c' },
		{ "base", required_argument, NULL, 'B' },
		{ "no-release", no_argument, NULL, 'N' },
		{ "no-commit", no_argument, NULL, 'C' },
		{ "verify", no_argument, NULL, 'v' },
		{ "batch", required_argument, NULL, 'b' },
		{ "rate-limit", required_argument, NULL, 'r' },
		{ "force", no_argument, NULL, 'F' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct backup b = { .release = 1, .commit = 1, .batch = DEFAULT_BATCH,
			    .view_fd = -1, .out_fd = -1, .verify_fd = -1 };
	struct extents x = { 0 };
	uint64_t unit, rate = 0, total = 0;
	struct fl_view v;
	unsigned int i;
	double t0;
	int c, r, force = 0, full = 0, complete = 0, rc = EXIT_ERR;

	optind = 0;
	while ((c = getopt_long(argc, argv, "t:fc:qh", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			b.to = optarg;
			break;
		case 'f':
			full = 1;
			break;
		case 'c':
			b.changed = optarg;
			break;
		case 'B':
			b.base = optarg;
			break;
		case 'N':
			b.release = 0;
			break;
		case 'C':
			b.commit = 0;
			break;
		case 'v':
			b.verify = 1;
			break;
		case 'b':
			if (parse_size(optarg, &b.batch) || b.batch < IO_SIZE)
				return usage_error(argv[0], "invalid --batch '%s': a size of "
						   "at least 1M", optarg);
			break;
		case 'r':
			if (parse_rate(optarg, &rate))
				return usage_error(argv[0], "invalid --rate-limit '%s': a rate "
						   "of at least 64K per second, e.g. 40M", optarg);
			break;
		case 'F':
			force = 1;
			b.force = 1;
			break;
		case 'q':
			b.quiet = 1;
			break;
		default:
			return option_end(c, argv[0]);
		}
	}
	if (argc - optind != 1)
		return usage_error(argv[0], "needs VIEW");
	if (!b.to)
		return usage_error(argv[0], "--to FILE|DEV is required");
	if (full && b.changed)
		return usage_error(argv[0], "--full and --changed exclude each other");
	if (b.base && !b.changed)
		return usage_error(argv[0], "--base goes with --changed: an incremental "
				   "backup starts from the previous image");
	if (b.changed && !valid_bitmap_name(b.changed))
		return usage_error(argv[0], "invalid --changed '%s': not a bitmap name",
				   b.changed);

	if (lookup_view("backup", argv[optind], &v))
		return EXIT_ERR;
	b.view = v.name;
	if (!v.single || !v.have_status) {
		msg_err("backup %s: %s", v.name, !v.single ?
			"its table has more than the view target" : "cannot read its status");
		return EXIT_ERR;
	}
	if (!v.status.active) {
		msg_err("backup %s: the session is invalid (scratch was full, or a "
			"device failed); take a new snapshot", v.name);
		return EXIT_ERR;
	}
	if (v.status.released && !force) {
		msg_err("backup %s: %llu chunks were released already (by an earlier "
			"backup?) and read as zeroes: the image would not be the point in "
			"time; take a new snapshot, or use --force", v.name,
			(unsigned long long)v.status.released);
		return EXIT_ERR;
	}
	if (check_transaction(&b, &v))
		return EXIT_ERR;
	b.chunk = v.status.chunk_sectors << 9;
	if (!b.chunk) {
		msg_err("backup %s: its status gives no chunk size", v.name);
		return EXIT_ERR;
	}
	/* Batches are whole chunks and whole reads. */
	unit = b.chunk > IO_SIZE ? b.chunk : IO_SIZE;
	b.batch = (b.batch + unit - 1) / unit * unit;

	/* A signal from here on stops the copy cleanly (and removes the image). */
	sig_catch();
	if (posix_memalign((void **)&b.buf, 4096, IO_SIZE) ||
	    posix_memalign((void **)&b.vbuf, 4096, IO_SIZE)) {
		msg_err("backup %s: out of memory", v.name);
		goto out;
	}
	if (open_view(&b, &v) || plan(&b, &v, &x) || open_output(&b, &v))
		goto out;

	for (i = 0; i < x.n; i++)
		total += x.e[i].len;
	progress_init(&b.prog, v.name, total, b.quiet);
	throttle_init(&b.limit, rate);
	t0 = now_seconds();
	r = copy_extents(&b, x.e, x.n);
	progress_finish(&b.prog, b.done);
	if (r == -EINTR) {
		msg_err("backup %s: interrupted by signal %d (%s) at byte %llu",
			v.name, sig_caught(), strsignal(sig_caught()),
			(unsigned long long)b.done);
		goto out;
	}
	if (r || finish_output(&b))
		goto out;
	summary(&b, now_seconds() - t0, x.n);
	/* An open transaction is covered by a full or a --changed backup. */
	if (b.commit && v.status.txn == TXN_OPEN) {
		if (commit(&b))
			goto out_kept;
		printf("  committed: bitmap '%s' now holds only changes after this "
		       "backup's point in time\n", v.status.bitmap);
	} else if (v.status.txn == TXN_OPEN) {
		printf("  not committed (--no-commit): bitmap '%s' keeps the changes "
		       "until 'fleecectl release %s --commit'\n", v.status.bitmap, v.name);
	}
	rc = EXIT_OK;
	goto out;
out_kept:
	/* The image is good; only the bitmap was not told. */
	complete = 1;
out:
	sig_restore();
	if (b.out_fd >= 0)
		close(b.out_fd);
	if (b.verify_fd >= 0)
		close(b.verify_fd);
	if (b.view_fd >= 0)
		close(b.view_fd);
	if (rc && b.to && !complete) {
		/* The final image file is as it was (or absent), or complete. */
		if (b.partial_ours && !b.renamed) {
			if (!unlink(b.partial))
				msg_err("backup %s: removed the incomplete image %s; %s %s",
					v.name, b.partial, b.final, b.final_existed ?
					"is as it was" : "was not created");
			else
				msg_err("backup %s: cannot remove the incomplete image %s: %s",
					v.name, b.partial, strerror(errno));
		} else if (b.out_is_dev && b.overwrite && (b.done || b.base)) {
			msg_err("backup %s: %s is partly updated: it is not a complete "
				"image any more", v.name, b.to);
		} else if (b.out_is_dev && b.done) {
			msg_err("backup %s: %s holds an incomplete image", v.name, b.to);
		}
		if (b.released)
			msg_err("backup %s: %llu bytes of the view were released already; "
				"a new backup needs a new snapshot", v.name,
				(unsigned long long)b.released);
	}
	free(x.e);
	free(b.buf);
	free(b.vbuf);
	return rc;
}
