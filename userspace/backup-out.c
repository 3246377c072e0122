// SPDX-License-Identifier: GPL-2.0
/*
 * backup-out: what a backup writes. An image file is written under a
 * temporary name in its directory, NAME.fleece-partial (locked with flock()
 * while a backup writes it), and renamed to NAME only when it is complete
 * and fsync'ed; the directory is fsync'ed too, and only then may the
 * transaction be committed. A crash, a signal or an error never leaves a
 * partial image under NAME, nor a commit for an image that is not durable.
 * An incremental backup without --base updates NAME through a copy too (a
 * clone where the filesystem shares blocks): NAME keeps the previous image
 * until the new one replaces it. A device is written in place, and
 * fsync'ed before the commit. Standard output (--to -) gets the whole
 * image in order: a stream to compress or send, never read back.
 *
 * Image files are sparse: blocks of zeroes are not written. Devices and
 * streams get every byte.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup.h"
#include "blockdev.h"
#include "fleecectl.h"
#include "fullio.h"
#include "qcow2.h"
#include "sha256.h"
#include "signals.h"
#include "util.h"

#define ZERO_BLOCK 4096			/* granularity of holes in images */

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

int backup_write(struct backup *b, const unsigned char *p, size_t len, uint64_t off)
{
	size_t i = 0, run;
	int r;

	if (b->out_is_pipe) {
		b->written += len;
		return write_full(b->out_fd, p, len);
	}
	if (b->q) {
		b->written += len;
		return qcow2_write(b->q, off, p, len);
	}
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

int backup_sync(struct backup *b)
{
	if (b->out_is_pipe)
		return 0;
	return fdatasync(b->out_fd) ? -errno : 0;
}

int backup_read_raw(struct backup *b, uint64_t off, size_t len)
{
	if (b->verify_cached)
		posix_fadvise(b->verify_fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
	return pread_full(b->verify_fd, b->vbuf, len, off);
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
	if (!(b->changed && !b->base) && !b->resume) {
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
	b->out_st = *st;
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
			r = pread_full(in, b->vbuf, n, pos);
			if (r)
				return r;
			r = pwrite_full(b->out_fd, b->vbuf, n, pos);
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
		/* A resumed backup continues its partial image, never a new one. */
		b->out_fd = open(b->partial, O_WRONLY | O_NOFOLLOW | O_CLOEXEC |
				 (b->resume ? 0 : O_CREAT), 0600);
		if (b->out_fd < 0 && b->resume && errno == ENOENT) {
			msg_err("backup %s: --resume: %s is gone; the backup cannot be "
				"continued: take a new snapshot", b->view, b->partial);
			return -1;
		}
		if (b->out_fd < 0) {
			msg_err("backup %s: cannot create %s: %s", b->view, b->partial,
				strerror(errno));
			return -1;
		}
		if (flock(b->out_fd, LOCK_EX | LOCK_NB)) {
			/* Its partial image and resume record are the other's. */
			b->locked_out = 1;
			msg_fail(errno == EWOULDBLOCK ? EXIT_BUSY : EXIT_ERR,
				 "backup %s: %s is %s", b->view, b->partial,
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
	b->out_st = fst;
	if (b->resume) {
		/* backup_resume_check() tells whether it is the one recorded. */
		if ((uint64_t)fst.st_size != b->size) {
			msg_err("backup %s: %s has %llu bytes, the view %llu: it cannot "
				"be resumed", b->view, b->partial,
				(unsigned long long)fst.st_size, (unsigned long long)b->size);
			return -1;
		}
		return 0;
	}
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
static int write_manifest(struct backup *b)
{
	int r;

	if (!b->want_manifest)
		return 0;
	r = manifest_write(&b->man, b->manifest_path);
	if (r)
		msg_err("backup %s: %s is complete, but writing its manifest %s failed: "
			"%s; not committed", b->view, b->out_is_dev || b->out_is_pipe ?
			b->to : b->final, b->manifest_path, strerror(-r));
	return r ? -1 : 0;
}

/* Remove the manifest at @path, if any: 0, or -1 said. */
static int remove_old_manifest(const struct backup *b, const char *path)
{
	if (!path[0] || !unlink(path) || errno == ENOENT)
		return 0;
	msg_err("backup %s: cannot remove the old manifest %s: %s", b->view, path,
		strerror(errno));
	return -1;
}

int backup_finish_output(struct backup *b)
{
	char dir[PATH_MAX], path[PATH_MAX];
	int dfd, r = 0;

	if (b->out_is_pipe) {
		b->out_fd = -1;		/* standard output: closed at exit */
		return write_manifest(b);
	}
	if (b->q && backup_qcow2_finish(b))
		return -1;
	if (fsync(b->out_fd)) {
		msg_err("backup %s: syncing %s failed: %s", b->view, b->out, strerror(errno));
		return -1;
	}
	if (b->out_is_dev) {
		r = write_manifest(b);
		goto out;
	}
	/*
	 * The old image's manifest must not be taken for the new one's: the
	 * one at --manifest, and the one beside the image, which verify and
	 * the next incremental look for when given none.
	 */
	if (remove_old_manifest(b, b->manifest_path))
		return -1;
	if (snprintf(path, sizeof(path), "%s%s", b->final, MANIFEST_SUFFIX) <
	    (int)sizeof(path) && strcmp(path, b->manifest_path) &&
	    remove_old_manifest(b, path))
		return -1;
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
	if (!r)
		r = write_manifest(b);
out:
	if (close(b->out_fd) && !r) {
		msg_err("backup %s: closing %s failed: %s", b->view, b->out, strerror(errno));
		r = -1;
	}
	b->out_fd = -1;
	return r;
}

int backup_open_output(struct backup *b, const struct fl_view *v)
{
	struct stat st, bst;
	int exists, in = -1, r = -1;

	if (!strcmp(b->to, "-")) {
		if (isatty(STDOUT_FILENO)) {
			msg_err("backup %s: --to -: standard output is a terminal; "
				"redirect it or pipe it", b->view);
			return -1;
		}
		/* A reader that goes away is an error (EPIPE), not a death. */
		signal(SIGPIPE, SIG_IGN);
		b->out_is_pipe = 1;
		b->out = "standard output";
		b->out_fd = STDOUT_FILENO;
		return 0;
	}
	exists = !stat(b->to, &st);

	/* Before anything is written: the base must not be the output. */
	if (b->base && exists && !stat(b->base, &bst) &&
	    ((S_ISBLK(st.st_mode) && S_ISBLK(bst.st_mode) && st.st_rdev == bst.st_rdev) ||
	     (st.st_dev == bst.st_dev && st.st_ino == bst.st_ino))) {
		msg_err("backup %s: the base image %s is the output itself; to update "
			"an image in place, leave out --base", b->view, b->base);
		return -1;
	}
	/* A qcow2 incremental refers to its base; a raw one starts as a copy. */
	b->from = b->qcow2 ? NULL : b->base;

	if (exists && S_ISBLK(st.st_mode) && b->qcow2) {
		msg_err("backup %s: %s is a block device: a qcow2 image is a file",
			b->view, b->to);
		return -1;
	} else if (exists && S_ISBLK(st.st_mode)) {
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
	if (b->from && !b->resume) {
		in = open_from(b);
		if (in < 0)
			return -1;
	}
	b->final_existed = exists;
	if (!b->out_is_dev && open_partial(b, exists ? &st : NULL))
		goto out;
	b->overwrite = b->changed != NULL && !b->qcow2;
	if (b->qcow2 && backup_qcow2_open(b))
		goto out;
	if (b->from && !b->resume && start_from_base(b, in))
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

void backup_abandon_output(struct backup *b, int keep)
{
	if (b->q)
		qcow2_abort(b->q);
	b->q = NULL;
	if (b->out_fd >= 0 && !b->out_is_pipe)
		close(b->out_fd);
	b->out_fd = -1;
	if (b->verify_fd >= 0)
		close(b->verify_fd);
	b->verify_fd = -1;
	if (b->partial_ours && !b->renamed && keep) {
		msg_err("backup %s: kept the incomplete image %s: what is in it was "
			"released from the view; continue with 'fleecectl backup %s "
			"--to %s --resume'", b->view, b->partial, b->view, b->to);
	} else if (b->partial_ours && !b->renamed) {
		if (!unlink(b->partial))
			msg_err("backup %s: removed the incomplete image %s; %s %s",
				b->view, b->partial, b->final, b->final_existed ?
				"is as it was" : "was not created");
		else
			msg_err("backup %s: cannot remove the incomplete image %s: %s",
				b->view, b->partial, strerror(errno));
	} else if (b->out_is_dev && b->overwrite && (b->done || b->base)) {
		msg_err("backup %s: %s is partly updated: it is not a complete "
			"image any more%s", b->view, b->to, keep ?
			"; continue with --resume" : "");
	} else if (b->out_is_dev && b->done) {
		msg_err("backup %s: %s holds an incomplete image%s", b->view, b->to,
			keep ? "; continue with --resume" : "");
	} else if (b->out_is_pipe && b->done) {
		msg_err("backup %s: the stream on standard output is incomplete", b->view);
	}
}
