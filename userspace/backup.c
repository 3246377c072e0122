// SPDX-License-Identifier: GPL-2.0
/*
 * backup: the reference backup agent. Copies a view into an image file,
 * onto a device or to standard output, and releases what it has safely
 * copied.
 *
 * The view is read in order by several threads at once (copier.c, --jobs),
 * with large O_DIRECT reads at idle I/O priority (--ioprio): the
 * applications on the origin come first. Pieces are written in order as
 * they come. Each batch (64 MiB by default, whole chunks) is made durable
 * with fdatasync(), optionally read back and compared byte for byte with
 * what was read from the view (--verify), and only then discarded
 * on the view (BLKDISCARD): its chunks are released, their scratch space is
 * freed and later origin writes to them are not copied any more. A batch
 * that was not durably written and verified is never released, so what
 * the view released is the point an interrupted backup resumes from
 * (backup-resume.c).
 *
 * What to copy comes as a list of extents. A full backup is one extent, the
 * whole view; an incremental backup (--changed, a view with a bitmap) copies
 * the ranges the view's "changes" message lists, into a copy of the previous
 * image (--base) or into that image itself. There every byte of a range is
 * written, zeroes too (as holes punched in files): the old data must go.
 *
 * When the whole backup is written (and verified), a view with a backup
 * transaction is committed: its bitmap forgets the changes this image holds.
 * A stream (--to -) is neither released nor committed unless asked: bytes
 * in a pipe are not stored anywhere yet.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "bitmap.h"
#include "blockdev.h"
#include "cli.h"
#include "dm.h"
#include "fleecectl.h"
#include "parse.h"
#include "signals.h"
#include "util.h"

#define DEFAULT_BATCH (64ULL << 20)	/* written, synced, verified, released */
#define DEFAULT_JOBS 4			/* reads of the view in flight */
#define IOPRIO_CLASS_SHIFT 13
#define IOPRIO_CLASS_BE 2
#define IOPRIO_CLASS_IDLE 3

/* Why a view read failed: the session may have been invalidated. */
static void explain_read_error(struct backup *b, uint64_t off, int r)
{
	struct fl_view v;
	char what[256];
	int known = !get_view(b->view, &v, what, sizeof(what)) && v.have_status;

	if (known && !v.status.active)
		msg_fail(EXIT_INVALID, "backup %s: read at byte %llu failed: the session was invalidated "
			"(scratch full, or a scratch write error: see the kernel log); "
			"the backup cannot be completed, take a new snapshot",
			b->view, (unsigned long long)off);
	else if (known && v.status.unreadable)
		msg_fail(EXIT_IO, "backup %s: read at byte %llu failed: the view lost %llu chunk(s): "
			"the origin could not be read when they were overwritten (bad "
			"sectors, see the kernel log); this backup cannot be complete",
			b->view, (unsigned long long)off,
			(unsigned long long)v.status.unreadable);
	else
		msg_fail(EXIT_IO, "backup %s: read at byte %llu failed: %s", b->view,
			(unsigned long long)off, strerror(-r));
}

/*
 * Copy the extents: the copier reads ahead, this thread writes in order and
 * hands a batch over to be ended (backup-batch.c) once it holds b->batch
 * bytes and ends on a chunk boundary. Returns 0, -EINTR on a signal (the
 * batch being written is not released), or -1 with the error printed.
 */
static int copy_extents(struct backup *b, const struct copier_extent *e, unsigned int n)
{
	struct copier_opts o = { .fd = b->view_fd, .jobs = b->jobs, .piece = IO_SIZE,
				 .hash = b->want_manifest, .ioprio = b->ioprio };
	struct copier_piece *p;
	struct copier *c;
	uint64_t end;
	unsigned int i = 0;
	int r, at_ext_end;

	r = backup_batches_start(b);
	if (!r) {
		r = copier_start(&c, &o, e, n);
		if (r)
			backup_batches_stop(b, 0);
	}
	if (r) {
		msg_err("backup %s: cannot start reading: %s", b->view, strerror(-r));
		return -1;
	}
	while ((r = copier_next(c, &p)) > 0) {
		if (sig_caught()) {
			r = -EINTR;
			break;
		}
		if (p->err) {
			explain_read_error(b, p->off, p->err);
			r = -1;
			break;
		}
		if (throttle_account(&b->limit, p->len)) {
			r = -EINTR;
			break;
		}
		r = backup_write(b, p->buf, p->len, p->off);
		if (r) {
			msg_fail(EXIT_IO, "backup %s: writing %s at byte %llu failed: %s", b->view,
				b->out, (unsigned long long)p->off, strerror(-r));
			r = -1;
			break;
		}
		if (b->want_manifest)
			manifest_piece(&b->man, p->off, p->len, p->digest);
		if (backup_batches_add(b, p)) {
			msg_err("backup %s: out of memory", b->view);
			r = -1;
			break;
		}
		b->done += p->len;
		progress_update(&b->prog, b->done);
		end = p->off + p->len;
		copier_put(c, p);
		for (at_ext_end = 0; i < n && end >= e[i].off + e[i].len; i++)
			at_ext_end = end == e[i].off + e[i].len;
		/* Released ranges are whole chunks: end where a chunk does. */
		if (backup_batches_filled(b) >= b->batch && (!(end % b->chunk) || at_ext_end)) {
			r = backup_batches_end(b);
			if (r)
				break;
		}
	}
	/* The batch being ended completes either way; the last only when all went well. */
	if (backup_batches_stop(b, !r) && !r)
		r = -1;
	if (copier_stop(c) == -EPERM && !r)
		msg_verbose("backup %s: the readers keep their I/O priority: not "
			    "permitted", b->view);
	return r;
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
	/*
	 * Two backups of one view would each release chunks the other has not
	 * read yet, and the slower would copy zeroes into its image. The lock
	 * lives as long as the open file, until this backup ends.
	 */
	if (flock(b->view_fd, LOCK_EX | LOCK_NB)) {
		/* The resume record is the running backup's: leave it be. */
		b->locked_out = 1;
		msg_fail(errno == EWOULDBLOCK ? EXIT_BUSY : EXIT_ERR, "backup %s: %s", b->view,
			 errno == EWOULDBLOCK ? "another fleecectl backup of this view is "
			 "running" : strerror(errno));
		return -1;
	}
	if (bdev_size_fd(b->view_fd, &b->size)) {
		msg_err("backup %s: cannot get its size: %s", b->view, strerror(errno));
		return -1;
	}
	return 0;
}

/* The extents of an incremental backup: the view's changed ranges. */
struct extents {
	struct copier_extent *e;
	unsigned int n, cap;
};

static int add_extent(uint64_t off, uint64_t len, void *arg)
{
	struct extents *x = arg;
	struct copier_extent *ne;

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
	/* A stream owns standard output. */
	FILE *o = b->out_is_pipe ? stderr : stdout;
	char sz[32], wr[32], ho[32], rt[32];
	struct fl_view v;
	char what[256];

	format_size(b->done, sz, sizeof(sz));
	format_size(b->written, wr, sizeof(wr));
	format_size(b->holes, ho, sizeof(ho));
	fprintf(o, "backup %s: %llu bytes (%s) to %s in %.1f s, %.1f MiB/s\n", b->view,
	       (unsigned long long)b->done, sz, b->to, secs,
	       secs > 0 ? (double)b->done / secs / 1048576.0 : 0.0);
	if (b->limit.rate) {
		format_size(b->limit.rate, rt, sizeof(rt));
		fprintf(o, "  limited:  reads paced at %s/s (--rate-limit)\n", rt);
	}
	if (b->changed)
		fprintf(o, "  changes:  %u range%s of bitmap '%s'%s%s\n", nr_extents,
		       nr_extents == 1 ? "" : "s", b->changed, b->base ? ", onto a copy of " : "",
		       b->base ? b->base : "");
	if (b->skipped) {
		format_size(b->skipped, rt, sizeof(rt));
		fprintf(o, "  resumed:  %s were in the image already (--resume)\n", rt);
	}
	if (b->out_is_dev || b->out_is_pipe)
		fprintf(o, "  written:  %s\n", wr);
	else
		fprintf(o, "  written:  %s; %s of zeroes left as holes\n", wr, ho);
	if (b->verify)
		fprintf(o, "  verified: %u batch%s read back, equal to the view\n", b->verified,
		       b->verified == 1 ? "" : "es");
	if (b->want_manifest)
		fprintf(o, "  manifest: %s (%llu block digests)\n", b->manifest_path,
			(unsigned long long)b->man.nblocks);
	if (!b->release)
		fprintf(o, "  released: nothing (%s)\n", b->out_is_pipe ?
			"a stream: --release to release" : "--no-release");
	else if (b->discard_broken)
		fprintf(o, "  released: nothing (the view does not accept discards)\n");
	else if (!get_view(b->view, &v, what, sizeof(what)) && v.have_status)
		fprintf(o, "  released: %llu chunks of %llu in the view; scratch in use: %llu of %llu chunks\n",
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
		msg_fail(EXIT_INVALID, "backup %s: its backup transaction has ended (the %s was removed): "
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
		msg_fail(EXIT_INVALID, "backup %s: its backup transaction is %s already: %s", b->view,
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
	msg_fail(fdm_errno() == EIO ? EXIT_INVALID : EXIT_ERR,
		 "backup %s: the image is complete, but the commit failed: %s; the "
		 "changes stay in bitmap '%s' and the next backup copies them again",
		 b->view, fdm_errno() == EIO ? "the session is invalid, or a metadata "
		 "write failed" : fdm_error(), b->changed);
	return -1;
}

/*
 * The manifest of this image: where it goes, what it says, and which of its
 * blocks the backup writes (all of them, or the changed ranges' - before a
 * --resume cuts them: the part written before the interruption counts).
 */
static int manifest_start(struct backup *b, const struct fl_view *v,
			  const struct extents *x)
{
	uint64_t blk, end;
	unsigned int i;
	time_t now = time(NULL);
	struct tm tm;

	/* Beside an image file, even with --no-manifest: an old one goes. */
	if (b->manifest_opt)
		str_copy(b->manifest_path, sizeof(b->manifest_path), b->manifest_opt);
	else if (!b->out_is_dev && !b->out_is_pipe &&
		 snprintf(b->manifest_path, sizeof(b->manifest_path), "%s%s", b->final,
			  MANIFEST_SUFFIX) >= (int)sizeof(b->manifest_path))
		b->manifest_path[0] = '\0';
	if (!b->manifest_path[0])
		b->want_manifest = 0;
	if (!b->want_manifest)
		return 0;
	if (manifest_init(&b->man, b->size, 0))
		goto nomem;
	str_copy(b->man.kind, sizeof(b->man.kind), b->changed ? "incremental" : "full");
	str_copy(b->man.view, sizeof(b->man.view), v->name);
	snprintf(b->man.origin, sizeof(b->man.origin), "%u:%u", major(v->origin_devt),
		 minor(v->origin_devt));
	if (v->status.txn != TXN_NONE)
		str_copy(b->man.bitmap, sizeof(b->man.bitmap), v->status.bitmap);
	if (b->from)
		str_copy(b->man.base, sizeof(b->man.base), b->from);
	b->man.chunk = b->chunk;
	gmtime_r(&now, &tm);
	strftime(b->man.started, sizeof(b->man.started), "%Y-%m-%dT%H:%M:%SZ", &tm);
	b->touched = calloc(b->man.nblocks ? b->man.nblocks : 1, 1);
	if (!b->touched)
		goto nomem;
	for (i = 0; i < x->n; i++) {
		end = x->e[i].off + x->e[i].len;
		for (blk = x->e[i].off / b->man.block; blk * b->man.block < end; blk++)
			b->touched[blk] = 1;
	}
	return 0;
nomem:
	msg_err("backup %s: out of memory for its manifest", b->view);
	return -1;
}

/*
 * The copy is done: the digests of blocks it did not pass in whole (a
 * resumed prefix, blocks an incremental changed in part) are read from
 * the output; blocks it left alone keep the previous image's, from its
 * manifest, when it has one.
 */
static int manifest_complete(struct backup *b)
{
	char path[PATH_MAX];
	struct manifest base;
	const char *why;
	uint64_t i;
	int fd, r;

	if (!b->want_manifest)
		return 0;
	if (b->from && snprintf(path, sizeof(path), "%s%s", b->from, MANIFEST_SUFFIX) <
	    (int)sizeof(path)) {
		r = manifest_read(&base, path, &why);
		if (!r) {
			manifest_inherit(&b->man, &base, b->touched);
			manifest_free(&base);
		} else {
			msg_verbose("backup %s: no usable manifest for %s (%s): its "
				    "blocks are read again", b->view, b->from,
				    r == -EBADMSG ? why : strerror(-r));
		}
	}
	if (b->out_is_pipe) {
		/* A full image in order: every block was passed in whole. */
		for (i = 0, r = 0; i < b->man.nblocks; i++)
			if (!b->man.have[i])
				r = -EIO;
		goto out;
	}
	fd = open(b->out, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	r = manifest_fill(&b->man, fd, b->jobs);
	close(fd);
out:
	if (r)
		msg_err("backup %s: cannot complete the manifest of %s: %s", b->view,
			b->out, strerror(-r));
	return r ? -1 : 0;
}

/* --ioprio: idle (the default), best-effort, or inherit. */
static int parse_ioprio(const char *arg, int *prio)
{
	if (!strcmp(arg, "idle"))
		*prio = IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT;
	else if (!strcmp(arg, "best-effort") || !strcmp(arg, "be"))
		*prio = IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT | 4;
	else if (!strcmp(arg, "inherit"))
		*prio = -1;
	else
		return -EINVAL;
	return 0;
}

/* Which ranges a --resume leaves: the view's released prefix is done. */
static int resume_plan(struct backup *b, const struct fl_view *v, struct extents *x)
{
	if (backup_resume_check(b))
		return -1;
	return backup_resume_point(b, v->status.released, x->e, &x->n);
}

/* Before anything is opened: is there a backup of this view to continue? */
static int resume_start(struct backup *b, const struct fl_view *v)
{
	/* Nothing released: starting again is the same, and safe. */
	if (!v->status.released) {
		b->resume = 0;
		return 0;
	}
	return backup_resume_check(b);
}

int cmd_backup(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "full", no_argument, NULL, 'f' },
		{ "changed", required_argument, NULL, 'c' },
		{ "base", required_argument, NULL, 'B' },
		{ "release", no_argument, NULL, 'R' },
		{ "no-release", no_argument, NULL, 'N' },
		{ "commit", no_argument, NULL, 'M' },
		{ "no-commit", no_argument, NULL, 'C' },
		{ "verify", no_argument, NULL, 'v' },
		{ "resume", no_argument, NULL, 'U' },
		{ "batch", required_argument, NULL, 'b' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "ioprio", required_argument, NULL, 'P' },
		{ "format", required_argument, NULL, 'o' },
		{ "manifest", required_argument, NULL, 'm' },
		{ "no-manifest", no_argument, NULL, 'n' },
		{ "rate-limit", required_argument, NULL, 'r' },
		{ "force", no_argument, NULL, 'F' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct backup b = { .batch = DEFAULT_BATCH, .jobs = DEFAULT_JOBS,
			    .ioprio = IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
			    .view_fd = -1, .out_fd = -1, .verify_fd = -1 };
	struct extents x = { 0 };
	uint64_t unit, rate = 0, total = 0, jobs;
	struct fl_view v;
	unsigned int i;
	double t0;
	int c, r, full = 0, release = -1, do_commit = -1, manifest = -1, keep = 0;
	int rc = EXIT_ERR;

	optind = 0;
	while ((c = cmd_getopt(argc, argv, "t:fqh", opts)) != -1) {
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
		case 'R':
		case 'N':
			release = c == 'R';
			break;
		case 'M':
		case 'C':
			do_commit = c == 'M';
			break;
		case 'v':
			b.verify = 1;
			break;
		case 'U':
			b.resume = 1;
			break;
		case 'b':
			if (parse_size(optarg, &b.batch) || b.batch < IO_SIZE)
				return usage_error(argv[0], "invalid --batch '%s': a size of "
						   "at least 1M", optarg);
			break;
		case 'j':
			if (parse_u64(optarg, &jobs) || !jobs || jobs > COPIER_MAX_JOBS)
				return usage_error(argv[0], "invalid --jobs '%s': 1 to %d reads "
						   "in flight", optarg, COPIER_MAX_JOBS);
			b.jobs = (unsigned int)jobs;
			break;
		case 'P':
			if (parse_ioprio(optarg, &b.ioprio))
				return usage_error(argv[0], "invalid --ioprio '%s': idle, "
						   "best-effort or inherit", optarg);
			break;
		case 'r':
			if (parse_rate(optarg, &rate))
				return usage_error(argv[0], "invalid --rate-limit '%s': a rate "
						   "of at least 64K per second, e.g. 40M", optarg);
			break;
		case 'o':
			if (strcmp(optarg, "raw") && strcmp(optarg, "qcow2"))
				return usage_error(argv[0], "invalid --format '%s': raw or "
						   "qcow2", optarg);
			b.qcow2 = !strcmp(optarg, "qcow2");
			break;
		case 'm':
			b.manifest_opt = optarg;
			manifest = 1;
			break;
		case 'n':
			manifest = 0;
			break;
		case 'F':
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
		return usage_error(argv[0], "--to FILE|DEV|- is required");
	if (full && b.changed)
		return usage_error(argv[0], "--full and --changed exclude each other");
	if (b.base && !b.changed)
		return usage_error(argv[0], "--base goes with --changed: an incremental "
				   "backup starts from the previous image");
	if (b.changed && !valid_bitmap_name(b.changed))
		return usage_error(argv[0], "invalid --changed '%s': not a bitmap name",
				   b.changed);
	b.out_is_pipe = !strcmp(b.to, "-");
	if (b.out_is_pipe && b.changed)
		return usage_error(argv[0], "--to - streams a full image: an incremental "
				   "backup updates an image file or device");
	if (b.out_is_pipe && (b.verify || b.resume))
		return usage_error(argv[0], "--to -: a stream cannot be %s",
				   b.verify ? "read back (--verify)" : "resumed (--resume)");
	if (b.qcow2 && (b.out_is_pipe || b.verify || b.resume || b.manifest_opt))
		return usage_error(argv[0], "--format qcow2: %s", b.out_is_pipe ?
				   "an image file, not a stream" : b.verify ?
				   "not read back (--verify): check it with qemu-img compare" :
				   b.resume ? "an interrupted qcow2 backup cannot be resumed" :
				   "no manifest: check it with qemu-img check and compare");
	if (b.qcow2 && b.changed && !b.base)
		return usage_error(argv[0], "--format qcow2: an incremental image goes "
				   "over the previous one: --base IMAGE");
	/* A stream is stored nowhere yet: release and commit only when asked. */
	b.release = release >= 0 ? release : !b.out_is_pipe;
	b.commit = do_commit >= 0 ? do_commit : !b.out_is_pipe;
	/* Beside an image file by default; a device or a stream: --manifest. */
	if (!manifest && b.manifest_opt)
		return usage_error(argv[0], "--manifest and --no-manifest exclude each other");
	if (manifest < 0) {
		struct stat st;

		manifest = !b.out_is_pipe && !b.qcow2 &&
			   !(!stat(b.to, &st) && S_ISBLK(st.st_mode));
	}
	b.want_manifest = manifest;

	if (lookup_view("backup", argv[optind], &v))
		return EXIT_ERR;
	b.view = v.name;
	/*
	 * The view's lock first (one backup at a time), then its status again:
	 * what the checks below read must not change under another backup.
	 */
	if (open_view(&b, &v) || lookup_view("backup", argv[optind], &v))
		return EXIT_ERR;
	if (!v.single || !v.have_status) {
		msg_err("backup %s: %s", v.name, !v.single ?
			"its table has more than the view target" : "cannot read its status");
		return EXIT_ERR;
	}
	if (!v.status.active) {
		msg_fail(EXIT_INVALID, "backup %s: the session is invalid (scratch was full, or a "
			"device failed); take a new snapshot", v.name);
		return EXIT_ERR;
	}
	if (v.status.released && !b.force && !b.resume) {
		msg_fail(EXIT_INVALID, "backup %s: %llu chunks were released already (by an earlier "
			"backup?) and read as zeroes: the image would not be the point in "
			"time; %s", v.name, (unsigned long long)v.status.released,
			backup_resume_exists(&b) ? "continue the interrupted backup with "
			"--resume" : "take a new snapshot, or use --force");
		return EXIT_ERR;
	}
	if (v.status.released && b.force && !b.resume) {
		/* What the view released is only in the interrupted backup's image. */
		if (backup_resume_exists(&b)) {
			msg_fail(EXIT_INVALID, "backup %s: --force: an interrupted backup of this "
				 "view holds what it released; continue it with --resume", v.name);
			return EXIT_ERR;
		}
		/* The image has zeroes where the view had data: not a backup to vouch for. */
		msg_err("backup %s: --force: %llu chunks released earlier read as zeroes; "
			"the bitmap is not committed", v.name,
			(unsigned long long)v.status.released);
		b.commit = 0;
		b.forced_zeroes = 1;
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
	if (posix_memalign((void **)&b.vbuf, 4096, IO_SIZE)) {
		msg_err("backup %s: out of memory", v.name);
		goto out;
	}
	if (plan(&b, &v, &x) ||
	    (b.resume && resume_start(&b, &v)) || backup_open_output(&b, &v))
		goto out;
	if (manifest_start(&b, &v, &x) ||
	    (b.resume ? resume_plan(&b, &v, &x) :
	     b.release && !b.qcow2 && backup_resume_save(&b)))
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
			(unsigned long long)(b.skipped + b.done));
		goto out;
	}
	if (r || manifest_complete(&b) || backup_finish_output(&b))
		goto out;
	if (b.release)
		backup_resume_forget(&b);
	summary(&b, now_seconds() - t0, x.n);
	/* An open transaction is covered by a full or a --changed backup. */
	if (b.commit && v.status.txn == TXN_OPEN) {
		if (commit(&b))
			goto out_kept;
		fprintf(b.out_is_pipe ? stderr : stdout, "  committed: bitmap '%s' now "
			"holds only changes after this backup's point in time\n",
			v.status.bitmap);
	} else if (v.status.txn == TXN_OPEN && b.forced_zeroes) {
		fprintf(b.out_is_pipe ? stderr : stdout, "  not committed: released chunks "
			"read as zeroes; do not commit bitmap '%s' for this image\n",
			v.status.bitmap);
	} else if (v.status.txn == TXN_OPEN) {
		fprintf(b.out_is_pipe ? stderr : stdout, "  not committed (%s): bitmap "
			"'%s' keeps the changes until 'fleecectl release %s --commit'\n",
			b.out_is_pipe ? "a stream: --commit to commit" : "--no-commit",
			v.status.bitmap, v.name);
	}
	rc = EXIT_OK;
	goto out;
out_kept:
	/* The image is good; only the bitmap was not told. */
	b.to = NULL;
out:
	sig_restore();
	if (rc && b.to && !b.locked_out) {
		/* What the view released is only in the output: keep it to resume. */
		keep = (b.released || (b.resume && v.status.released)) && !b.out_is_pipe &&
		       !b.qcow2;
		backup_abandon_output(&b, keep);
		if (!keep)
			backup_resume_forget(&b);
		if (b.released && (b.out_is_pipe || b.qcow2))
			msg_err("backup %s: %llu bytes of the view were released already; "
				"a new backup needs a new snapshot", v.name,
				(unsigned long long)b.released);
	}
	if (b.verify_fd >= 0)
		close(b.verify_fd);
	if (b.out_fd >= 0 && !b.out_is_pipe)
		close(b.out_fd);
	if (b.view_fd >= 0)
		close(b.view_fd);
	if (b.want_manifest)
		manifest_free(&b.man);
	free(b.touched);
	free(x.e);
	free(b.vbuf);
	return rc;
}
