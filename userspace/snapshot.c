// SPDX-License-Identifier: GPL-2.0
/*
 * snapshot and release: start and end a session (a fleece view).
 *
 * snapshot loads the view, suspends the fleece-origin device (which drains
 * its writes and freezes a mounted filesystem), resumes the view (its point
 * in time) and resumes the origin. Whatever fails or whatever signal
 * arrives in between, the origin is resumed and no view is left behind.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "backup.h"
#include "blockdev.h"
#include "cli.h"
#include "discover.h"
#include "dm.h"
#include "fleecectl.h"
#include "lock.h"
#include "parse.h"
#include "signals.h"
#include "util.h"

struct snap_opts {
	const char *scratch;
	const char *bitmap;
	int full;
	const char *view;
	const char *low_water;
	enum on_full on_full;
	int writable;
	int lockfs;
	int force;	/* --force: a scratch device holding data is used anyway */
};

/* --low-water: a number of chunks, or a size (64M) turned into chunks. */
static int parse_low_water(const char *s, uint64_t chunk_sectors, uint64_t *chunks)
{
	uint64_t bytes, chunk = chunk_sectors << 9;

	if (!parse_u64(s, chunks))
		return 0;
	if (parse_size(s, &bytes))
		return -EINVAL;
	*chunks = bytes / chunk + !!(bytes % chunk);
	return 0;
}

/* The scratch device: a block device nobody uses, not the origin. */
static int check_scratch(const char *name, const struct fl_origin *o,
			 const char *scratch, int force, dev_t *devt)
{
	char why[512];
	uint64_t bytes;
	int r;

	r = bdev_devt(scratch, devt);
	if (r) {
		msg_fail(errno_exit_code(r), "snapshot %s: scratch device %s: %s", name, scratch,
			 r == -ENOTBLK ? "not a block device" : strerror(-r));
		return -1;
	}
	if (*devt == o->devt || *devt == o->origin_devt ||
	    (o->meta_devt && *devt == o->meta_devt)) {
		msg_err("snapshot %s: scratch device %s is the %s", name, scratch,
			*devt == o->devt ? "fleece-origin device itself" :
			*devt == o->origin_devt ? "origin device" : "metadata device");
		return -1;
	}
	r = bdev_check_unused(scratch, *devt, why, sizeof(why));
	if (r) {
		msg_fail(errno_exit_code(r), "snapshot %s: scratch device %s is %s; its contents "
			 "would be overwritten", name, scratch, r == -EBUSY ? why : strerror(-r));
		return -1;
	}
	/* Unused is not empty: what mkfs and wipefs would find is data. */
	r = bdev_probe_contents(scratch, why, sizeof(why));
	if (r < 0) {
		msg_err("snapshot %s: scratch device %s cannot be probed: %s", name, scratch,
			strerror(-r));
		return -1;
	}
	if (r && !force) {
		msg_err("snapshot %s: scratch device %s holds %s; it would be overwritten "
			"(use --force to use it anyway)", name, scratch, why);
		return -1;
	}
	r = bdev_size(scratch, &bytes);
	if (r) {
		msg_err("snapshot %s: scratch device %s: %s", name, scratch, strerror(-r));
		return -1;
	}
	if (bytes < (o->table.chunk_sectors << 9)) {
		char sz[32];

		format_size(o->table.chunk_sectors << 9, sz, sizeof(sz));
		msg_err("snapshot %s: scratch device %s is smaller than one chunk (%s)",
			name, scratch, sz);
		return -1;
	}
	return 0;
}

/* The name of the view holding @bitmap's transaction on @o, if it is found. */
static void bitmap_holder(const struct fl_origin *o, const char *bitmap,
			  char *holder, size_t len)
{
	struct fl_scan s;
	unsigned int i;

	if (scan_all(&s))
		return;
	for (i = 0; i < s.nr_views; i++) {
		const struct fl_view *v = &s.views[i];

		/* TXN_NONE with the bitmap: loaded, not resumed yet. */
		if (v->origin_devt == o->origin_devt && v->have_status &&
		    !strcmp(v->status.bitmap, bitmap) && v->status.txn != TXN_ENDED) {
			str_copy(holder, len, v->name);
			break;
		}
	}
	scan_free(&s);
}

/* The bitmap a view is to take must exist, be free and be trustworthy. */
static int check_bitmap(const char *name, const struct fl_origin *o, const char *bitmap,
			int full)
{
	unsigned int i;

	if (!o->have_status || !o->status.have_tracking) {
		msg_err("snapshot %s: its status has no bitmaps (kernel module too old?)", name);
		return -1;
	}
	for (i = 0; i < o->status.nr_bitmaps; i++)
		if (!strcmp(o->status.bitmaps[i].name, bitmap))
			break;
	if (i == o->status.nr_bitmaps) {
		msg_err("snapshot %s: no bitmap '%s' on it (add one with 'fleecectl bitmap "
			"add %s %s', then take a full backup)", name, bitmap, name, bitmap);
		return -1;
	}
	if (o->status.bitmaps[i].frozen_sets) {
		char holder[NAME_LEN] = "";

		bitmap_holder(o, bitmap, holder, sizeof(holder));
		msg_fail(EXIT_BUSY, "snapshot %s: bitmap '%s' has a backup in progress%s%s%s: one "
			 "backup per bitmap at a time; release that view first", name, bitmap,
			 *holder ? " (view " : "", holder, *holder ? ")" : "");
		return -1;
	}
	if (o->status.lost && !full) {
		if (o->status.gap)
			msg_fail(EXIT_INVALID, "snapshot %s: attached after a time in which "
				 "writes could pass it (not attached at boot, or detached): "
				 "bitmap '%s' may miss changes; take a --full backup", name, bitmap);
		else
			msg_fail(EXIT_INVALID, "snapshot %s: tracking is lost (a metadata write "
				 "failed): bitmap '%s' may miss changes; take a --full backup",
				 name, bitmap);
		return -1;
	}
	return 0;
}

/* Another fleece-origin device on the same origin device, if any. */
static int other_origin(const struct fl_origin *o, char *other, size_t len)
{
	struct fl_scan s;
	unsigned int i;
	int found = 0;

	if (scan_all(&s))
		return 0;
	for (i = 0; i < s.nr_origins; i++)
		if (s.origins[i].origin_devt == o->origin_devt &&
		    strcmp(s.origins[i].name, o->name)) {
			snprintf(other, len, "%s", s.origins[i].name);
			found = 1;
			break;
		}
	scan_free(&s);
	return found;
}

/* Whether a view may be named @vname: no device has that name or its UUID. */
static int view_name_free(const char *vname)
{
	char uuid[UUID_LEN], other[NAME_LEN];

	dm_uuid(UUID_VIEW, vname, uuid, sizeof(uuid));
	return !fdm_exists(vname) && fdm_name_of_uuid(uuid, other, sizeof(other));
}

static int pick_view_name(const char *name, const char *given, char *out, size_t len,
			  char *uuid, size_t ulen)
{
	unsigned int n;

	if (given) {
		if (check_new_name("snapshot", given))
			return -1;
		if (fdm_exists(given)) {
			msg_fail(EXIT_BUSY, "snapshot %s: a device named %s exists already", name,
				 given);
			return -1;
		}
		dm_uuid(UUID_VIEW, given, uuid, ulen);
		if (check_new_uuid("snapshot", given, uuid))
			return -1;
		snprintf(out, len, "%s", given);
		return 0;
	}
	for (n = 0; n < 1000; n++) {
		if ((size_t)snprintf(out, len, "%s%s%u", name, SNAP_SUFFIX, n) >= len ||
		    strlen(out) >= NAME_LEN) {
			msg_err("snapshot %s: name too long for a view name; give one with --view",
				name);
			return -1;
		}
		if (view_name_free(out)) {
			dm_uuid(UUID_VIEW, out, uuid, ulen);
			return 0;
		}
	}
	msg_err("snapshot %s: no free view name %s%s0..999; give one with --view",
		name, name, SNAP_SUFFIX);
	return -1;
}

/* Resume the origin, once more if the first try fails. */
static int resume_origin(const char *name, uint32_t *cookie)
{
	if (!fdm_resume(name, 0, cookie))
		return 0;
	msg_err("snapshot %s: resume failed (%s); trying again", name, fdm_error());
	if (!fdm_resume(name, 0, cookie))
		return 0;
	msg_err("snapshot %s: cannot resume %s: %s; it is still suspended: "
		"run 'dmsetup resume %s'", name, name, fdm_error(), name);
	return -1;
}

/* One origin of a snapshot: several make a consistency group. */
struct snap_one {
	const char *arg;		/* NAME as given */
	const char *scratch;		/* its --scratch */
	const char *view;		/* its --view, or NULL */
	struct fl_origin o;
	char vname[NAME_LEN];
	char uuid[UUID_LEN];		/* the view's device-mapper UUID */
	dev_t sdevt;
	struct fdm_table tbl;
	int have_tbl;
	int suspended;
	int created;
};

/* The most origins one snapshot takes at one point in time. */
#define MAX_GROUP 16

/*
 * Check one origin, its scratch device and its view's name, and build the
 * view's table. Prints the error and returns an exit code on failure.
 */
static int prepare_one(const struct snap_opts *so, struct snap_one *one)
{
	char other[NAME_LEN], params[2 * PATH_MAX + 128];
	struct fl_origin *o = &one->o;
	const char *name;
	struct view_table vt;

	if (lookup_origin("snapshot", one->arg, o))
		return EXIT_ERR;
	name = o->name;
	if (!o->single) {
		msg_err("snapshot %s: its table has more than the %s target; "
			"fleecectl snapshots single-target %s devices", name,
			TARGET_ORIGIN, TARGET_ORIGIN);
		return EXIT_ERR;
	}
	if (!o->origin_devt) {
		msg_err("snapshot %s: cannot find its origin device '%s'", name, o->table.origin);
		return EXIT_ERR;
	}
	if (o->suspended) {
		msg_fail(EXIT_BUSY, "snapshot %s: already suspended (by another program?); "
			 "it must be active to take a snapshot", name);
		return EXIT_ERR;
	}
	if (o->have_status && o->status.sessions >= MAX_SESSIONS) {
		msg_fail(EXIT_BUSY, "snapshot %s: already has %u sessions, the most an origin "
			 "can have", name, o->status.sessions);
		return EXIT_ERR;
	}
	if (so->bitmap && check_bitmap(name, o, so->bitmap, so->full))
		return EXIT_ERR;
	if (other_origin(o, other, sizeof(other))) {
		msg_err("snapshot %s: %s is another %s on the same origin device; "
			"fleecectl snapshots origins that have one", name, other, TARGET_ORIGIN);
		return EXIT_ERR;
	}

	memset(&vt, 0, sizeof(vt));
	vt.on_full = so->on_full;
	vt.writable = so->writable;
	if (so->bitmap) {
		str_copy(vt.bitmap, sizeof(vt.bitmap), so->bitmap);
		vt.full = so->full;
	}
	if (so->low_water && parse_low_water(so->low_water, o->table.chunk_sectors,
					     &vt.low_water)) {
		msg_err("snapshot: invalid --low-water '%s': a number of chunks or a size",
			so->low_water);
		return EXIT_USAGE;
	}
	if (check_scratch(name, o, one->scratch, so->force, &one->sdevt))
		return EXIT_ERR;
	if (pick_view_name(name, one->view, one->vname, sizeof(one->vname), one->uuid,
			   sizeof(one->uuid)))
		return EXIT_ERR;

	snprintf(vt.origin, sizeof(vt.origin), "%u:%u", major(o->origin_devt),
		 minor(o->origin_devt));
	snprintf(vt.scratch, sizeof(vt.scratch), "%u:%u", major(one->sdevt),
		 minor(one->sdevt));
	if (build_view_table(&vt, params, sizeof(params)) ||
	    fdm_table_one(&one->tbl, o->sectors, TARGET_VIEW, params)) {
		msg_err("snapshot %s: out of memory", name);
		return EXIT_ERR;
	}
	one->have_tbl = 1;
	return EXIT_OK;
}

/* Two origins of a group may not share an origin, a view or a scratch. */
static int check_group(const struct snap_one *s, unsigned int n)
{
	unsigned int i, j;

	for (i = 0; i < n; i++)
		for (j = 0; j < i; j++) {
			if (s[i].o.origin_devt == s[j].o.origin_devt) {
				msg_err("snapshot %s: %s is on the same origin device",
					s[i].o.name, s[j].o.name);
				return -1;
			}
			if (!strcmp(s[i].vname, s[j].vname)) {
				msg_err("snapshot %s: the view name %s is given twice",
					s[i].o.name, s[i].vname);
				return -1;
			}
			if (s[i].sdevt == s[j].sdevt) {
				msg_err("snapshot %s: scratch device %s is %s's too",
					s[i].o.name, s[i].scratch, s[j].o.name);
				return -1;
			}
		}
	return 0;
}

/*
 * Undo take_views(): remove the views made, resume the origins suspended.
 * Returns how many views could not be removed (each said).
 */
static unsigned int rollback(struct snap_one *s, unsigned int n, uint32_t *cookie)
{
	unsigned int i, left = 0;

	for (i = 0; i < n; i++) {
		if (!s[i].created)
			continue;
		if (!fdm_remove(s[i].vname, cookie)) {
			s[i].created = 0;
			continue;
		}
		msg_err("snapshot %s: cannot remove the view %s again: %s; remove it with "
			"'dmsetup remove %s'", s[i].o.name, s[i].vname, fdm_error(), s[i].vname);
		left++;
	}
	for (i = 0; i < n; i++)
		if (s[i].suspended && !resume_origin(s[i].o.name, cookie))
			s[i].suspended = 0;
	return left;
}

/*
 * Create the view device and load its table while the origin runs: the
 * kernel allocates the view's maps and checks everything here, so that the
 * origin is suspended only for the point in time (the view's resume).
 */
static int load_view(struct snap_one *one, uint32_t *cookie)
{
	char err[1024];
	int code;

	if (fdm_create(one->vname, one->uuid, NULL, FDM_UDEV_VIEW, cookie, 0)) {
		msg_fail(dm_exit_code(), "snapshot %s: cannot create the view %s: %s",
			 one->o.name, one->vname, fdm_error());
		return -1;
	}
	one->created = 1;
	if (!fdm_load(one->vname, &one->tbl, 0))
		return 0;
	code = dm_exit_code();
	snprintf(err, sizeof(err), "%s", fdm_error());
	msg_fail(code, "snapshot %s: cannot create the view %s: %s", one->o.name,
		 one->vname, err);
	return -1;
}

static double elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1e3 + (t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/*
 * Load every view, suspend every origin (draining its writes, freezing a
 * mounted filesystem), resume every view (each takes its point in time),
 * then resume the origins: the views share one point in time, as a
 * database spread over several volumes needs. A write issued after another
 * one completed is in the views only if that one is. On any failure or
 * signal: no view, every origin resumed. Returns an exit code.
 */
static int take_views(struct snap_one *s, unsigned int n, int lockfs)
{
	const char *first = s[0].o.name;
	uint32_t cookie = 0;
	struct timespec t0;
	struct dm_info info;
	unsigned int i, left;
	char err[1024];
	int sig, stuck, failed = 0;

	sig_catch();
	msg_hold();
	sig = sig_caught();
	if (sig) {
		sig_restore();
		msg_release(0);
		msg_fail(EXIT_INTR, "snapshot %s: interrupted by signal %d (%s) before "
			 "suspending; nothing done", first, sig, strsignal(sig));
		return EXIT_ERR;
	}
	for (i = 0; i < n && !failed; i++)
		failed = load_view(&s[i], &cookie) || sig_caught();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n && !failed; i++) {
		const char *name = s[i].o.name;

		if (fdm_suspend(name, lockfs)) {
			snprintf(err, sizeof(err), "%s", fdm_error());
			/* A suspend interrupted half-way is undone by the kernel; check. */
			if (!fdm_info(name, &info) && info.suspended)
				s[i].suspended = 1;
			msg_fail(errno_exit_code(fdm_errno()), "snapshot %s: cannot suspend %s: %s",
				 name, name, err);
			failed = 1;
			break;
		}
		s[i].suspended = 1;
		test_pause_after_suspend(name);
		failed = !!sig_caught();
	}
	for (i = 0; i < n && !failed; i++) {
		if (fdm_resume(s[i].vname, FDM_UDEV_VIEW, &cookie)) {
			msg_fail(dm_exit_code(), "snapshot %s: cannot start the view %s: %s "
				 "(the kernel log says why)", s[i].o.name, s[i].vname,
				 fdm_error());
			failed = 1;
			break;
		}
		failed = !!sig_caught();
	}
	for (i = 0; i < n && !failed; i++)
		if (resume_origin(s[i].o.name, &cookie))
			failed = 1;
		else
			s[i].suspended = 0;
	if (failed) {
		/* Never leave a view whose origin we could not bring back. */
		sig = sig_caught();
		left = rollback(s, n, &cookie);
		fdm_udev_wait(&cookie);
		sig_restore();
		for (i = 0, stuck = 0; i < n; i++)
			stuck |= s[i].suspended;
		msg_release(stuck);
		if (sig)
			msg_fail(EXIT_INTR, "snapshot %s: interrupted by signal %d (%s); %s "
				 "resumed, %s", first, sig, strsignal(sig),
				 n == 1 ? first : "every origin",
				 left ? "but a view made is still there (said above)" :
					"no view created");
		return EXIT_ERR;
	}
	msg_verbose("snapshot %s: %s suspended for %.1f ms", first,
		    n == 1 ? "origin" : "origins", elapsed_ms(&t0));
	/* Done: a signal from now on comes after a complete snapshot. */
	fdm_udev_wait(&cookie);
	sig_restore();
	msg_release(0);
	for (i = 0; i < n; i++)
		printf("/dev/mapper/%s\n", s[i].vname);
	return EXIT_OK;
}

int cmd_snapshot(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "scratch", required_argument, NULL, 's' },
		{ "bitmap", required_argument, NULL, 'b' },
		{ "full", no_argument, NULL, 'F' },
		{ "on-full", required_argument, NULL, 'f' },
		{ "low-water", required_argument, NULL, 'l' },
		{ "writable", no_argument, NULL, 'w' },
		{ "view", required_argument, NULL, 'n' },
		{ "nolockfs", no_argument, NULL, 'L' },
		{ "force", no_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct snap_opts so = { .on_full = ON_FULL_INVALIDATE, .lockfs = 1 };
	const char *scratch[MAX_GROUP], *view[MAX_GROUP];
	unsigned int nscratch = 0, nview = 0, n, i;
	struct snap_one *s;
	int c, rc;

	optind = 0;
	while ((c = cmd_getopt(argc, argv, "s:b:l:wh", opts)) != -1) {
		switch (c) {
		case 's':
			if (nscratch == MAX_GROUP)
				return usage_error(argv[0], "at most %d --scratch", MAX_GROUP);
			scratch[nscratch++] = optarg;
			break;
		case 'b':
			so.bitmap = optarg;
			break;
		case 'F':
			so.full = 1;
			break;
		case 'f':
			if (!strcasecmp(optarg, "invalidate"))
				so.on_full = ON_FULL_INVALIDATE;
			else if (!strcasecmp(optarg, "fail-writes") ||
				 !strcasecmp(optarg, "fail_writes"))
				so.on_full = ON_FULL_FAIL_WRITES;
			else
				return usage_error(argv[0], "invalid --on-full '%s': "
						   "use invalidate or fail-writes", optarg);
			break;
		case 'l':
			so.low_water = optarg;
			break;
		case 'w':
			so.writable = 1;
			break;
		case 'n':
			if (nview == MAX_GROUP)
				return usage_error(argv[0], "at most %d --view", MAX_GROUP);
			view[nview++] = optarg;
			break;
		case 'X':
			so.force = 1;
			break;
		case 'L':
			so.lockfs = 0;
			break;
		default:
			return option_end(c, argv[0]);
		}
	}
	n = argc - optind;
	if (!n)
		return usage_error(argv[0], "needs NAME, the fleece-origin device");
	if (n > MAX_GROUP)
		return usage_error(argv[0], "at most %d origins at one point in time", MAX_GROUP);
	if (!nscratch)
		return usage_error(argv[0], "--scratch DEV is required: the device that "
				   "keeps the view's preserved chunks");
	if (nscratch != n)
		return usage_error(argv[0], "%u origins need %u --scratch, one each in "
				   "the same order (got %u)", n, n, nscratch);
	if (nview && nview != n)
		return usage_error(argv[0], "%u origins need %u --view, one each in the "
				   "same order, or none (got %u)", n, n, nview);
	if (so.full && !so.bitmap)
		return usage_error(argv[0], "--full goes with --bitmap: it starts a chain "
				   "of incremental backups");
	if (so.bitmap && so.writable)
		return usage_error(argv[0], "--writable and --bitmap exclude each other: "
				   "an incremental backup must not change");
	if (so.bitmap && !valid_bitmap_name(so.bitmap))
		return usage_error(argv[0], "invalid --bitmap '%s': 1 to %d of A-Z a-z 0-9 _ . -",
				   so.bitmap, BITMAP_NAME_MAX);

	s = calloc(n, sizeof(*s));
	if (!s) {
		msg_err("snapshot: out of memory");
		return EXIT_ERR;
	}
	for (i = 0; i < n; i++) {
		s[i].arg = argv[optind + i];
		s[i].scratch = scratch[i];
		s[i].view = nview ? view[i] : NULL;
	}

	lock_take();
	rc = EXIT_OK;
	for (i = 0; i < n && rc == EXIT_OK; i++)
		rc = prepare_one(&so, &s[i]);
	if (rc == EXIT_OK && check_group(s, n))
		rc = EXIT_ERR;
	if (rc == EXIT_OK)
		rc = take_views(s, n, so.lockfs);
	for (i = 0; i < n; i++)
		if (s[i].have_tbl)
			fdm_table_free(&s[i].tbl);
	free(s);
	return rc;
}

/*
 * How a session ends. A view with a bitmap holds a backup transaction:
 * --commit tells the kernel the backup succeeded (the changes it covered are
 * forgotten) before the view is removed; without it (or with --abort) they
 * are merged back into the bitmap for the next backup.
 */
enum release_mode {
	RELEASE_DEFAULT,
	RELEASE_COMMIT,
	RELEASE_ABORT,
};

/* --commit: returns 0 when the transaction is committed (now or before). */
static int commit_view(const struct fl_view *v)
{
	if (!v->have_status) {
		msg_err("release %s: cannot read its status; not removed", v->name);
		return -1;
	}
	switch (v->status.txn) {
	case TXN_NONE:
		msg_err("release %s: --commit: the view has no bitmap (a snapshot without "
			"--bitmap), there is nothing to commit; not removed", v->name);
		return -1;
	case TXN_ENDED:
		msg_fail(EXIT_INVALID, "release %s: --commit: its backup transaction ended when "
			 "its %s was removed; the changes were kept for the next backup; not "
			 "removed", v->name, TARGET_ORIGIN);
		return -1;
	case TXN_COMMITTED:
		return 0;
	case TXN_OPEN:
		break;
	}
	if (!v->status.active) {
		msg_fail(EXIT_INVALID, "release %s: --commit: the session is invalid, its reads "
			 "cannot count as a backup; not removed (release it without --commit)",
			 v->name);
		return -1;
	}
	if (fdm_message(v->name, 0, "commit", NULL) && fdm_errno() != EALREADY) {
		msg_fail(fdm_errno() == EIO ? EXIT_INVALID : dm_exit_code(),
			 "release %s: --commit failed: %s; not removed", v->name,
			 fdm_errno() == EIO ? "the session is invalid, or a metadata write "
			 "failed" : fdm_error());
		return -1;
	}
	return 0;
}

int cmd_release(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "commit", no_argument, NULL, 'c' },
		{ "abort", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum release_mode mode = RELEASE_DEFAULT;
	struct fl_view v;
	uint32_t cookie = 0;
	int c, r;

	optind = 0;
	while ((c = cmd_getopt(argc, argv, "h", opts)) != -1) {
		switch (c) {
		case 'c':
		case 'a':
			if (mode != RELEASE_DEFAULT)
				return usage_error(argv[0], "--commit and --abort exclude each other");
			mode = c == 'c' ? RELEASE_COMMIT : RELEASE_ABORT;
			break;
		default:
			return option_end(c, argv[0]);
		}
	}
	if (argc - optind != 1)
		return usage_error(argv[0], "needs VIEW");

	lock_take();
	if (lookup_view("release", argv[optind], &v))
		return EXIT_ERR;
	if (!v.single) {
		msg_err("release %s: its table has more than the %s target; "
			"fleecectl releases the views it creates", v.name, TARGET_VIEW);
		return EXIT_ERR;
	}
	/*
	 * A program still reading the view (an export's client mid-pull)
	 * may yet fail: commit only what nobody is reading any more.
	 */
	if (mode == RELEASE_COMMIT && v.open_count) {
		int open = fdm_open_count_settled(v.name, 0);

		if (open < 0) {
			msg_fail(dm_exit_code(), "release %s: %s", v.name, fdm_error());
			return EXIT_ERR;
		}
		if (open) {
			msg_fail(EXIT_BUSY, "release %s: in use (open %d time%s: an export, a "
				 "backup, a mount?); not committed, the session goes on",
				 v.name, open, open == 1 ? "" : "s");
			return EXIT_ERR;
		}
	}
	if (mode == RELEASE_COMMIT && commit_view(&v))
		return EXIT_ERR;
	if (mode == RELEASE_ABORT && v.have_status && v.status.txn == TXN_COMMITTED)
		msg_warn("release %s: --abort: the backup was committed already; its "
			 "changes are not merged back", v.name);

	r = fdm_remove(v.name, &cookie);
	fdm_udev_wait(&cookie);
	if (r) {
		if (fdm_errno() == EBUSY)
			msg_fail(EXIT_BUSY, "release %s: in use (mounted, or a program has it "
				 "open); the session goes on%s", v.name, mode == RELEASE_COMMIT ?
				 " (its backup is committed)" : "");
		else
			msg_fail(dm_exit_code(), "release %s: %s", v.name, fdm_error());
		return EXIT_ERR;
	}
	if (v.have_status && v.status.txn == TXN_OPEN && mode != RELEASE_COMMIT)
		printf("release %s: changes since the last committed backup kept in bitmap '%s'\n",
		       v.name, v.status.bitmap);
	/* An interrupted backup of the view cannot be resumed any more. */
	backup_resume_drop(v.name);
	/*
	 * Scratch now holds copies of origin chunks, its first one maybe a
	 * file system's superblock: erase what a probe would find, so that
	 * the next snapshot takes it without --force.
	 */
	if (v.scratch_devt) {
		char path[PATH_MAX];

		bdev_path(v.scratch_devt, path, sizeof(path));
		if (bdev_wipe_signatures(path))
			msg_warn("release %s: cannot erase the signatures on scratch device %s: "
				 "the next snapshot on it needs --force", v.name, path);
	}
	return EXIT_OK;
}
