// SPDX-License-Identifier: GPL-2.0
/*
 * attach and detach: put fleece-origin under a device-mapper device that is
 * in use (an LVM logical volume, a dm-crypt or linear device, even with a
 * mounted filesystem) without changing the device applications use.
 *
 * attach DMDEV:
 *   1. create DMDEV-fleece-real with DMDEV's current table (it maps the
 *      same sectors of the same devices);
 *   2. load "fleece-origin DMDEV-fleece-real ..." as DMDEV's inactive table;
 *   3. suspend DMDEV (IO in flight drains, new IO waits);
 *   4. resume DMDEV: the new table goes live, IO continues through
 *      fleece-origin onto DMDEV-fleece-real.
 * detach DMDEV reverses it: DMDEV-fleece-real's table goes back into DMDEV,
 * and DMDEV-fleece-real is removed.
 *
 * Each step that fails undoes the ones before it: the inactive table is
 * cleared, DMDEV resumed with its old table, DMDEV-fleece-real removed.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "cli.h"
#include "discover.h"
#include "dm.h"
#include "fleecectl.h"
#include "lock.h"
#include "origin.h"
#include "parse.h"
#include "signals.h"
#include "util.h"

/* Is @name left suspended (a swap that could not resume either table)? */
static int still_suspended(const char *name)
{
	struct dm_info info;

	return !fdm_info(name, &info) && info.exists && info.suspended;
}

/*
 * Make @new_table DMDEV's live table: load, suspend (no freeze: nothing
 * needs a consistent filesystem here), resume. On failure or a signal before
 * the resume, DMDEV is left with its old table, active, and no inactive
 * table. The caller catches signals (sig_catch()). Returns 0 or -1 with the
 * error printed.
 */
static int swap_table(const char *cmd, const char *name,
		      const struct fdm_table *new_table, unsigned int flags,
		      uint32_t *cookie)
{
	char err[1024];
	int sig;

	if (sig_caught())
		goto interrupted_early;
	if (fdm_load(name, new_table, flags)) {
		msg_fail(dm_exit_code(), "%s %s: cannot load the new table: %s", cmd, name,
			 fdm_error());
		return -1;
	}
	if (sig_caught())
		goto interrupted;
	if (fdm_suspend(name, 0)) {
		struct dm_info info;

		snprintf(err, sizeof(err), "%s", fdm_error());
		fdm_clear(name);
		msg_fail(errno_exit_code(fdm_errno()), "%s %s: cannot suspend %s: %s", cmd, name,
			 name, err);
		/* A suspend interrupted half-way: the old table resumes. */
		if (!fdm_info(name, &info) && info.suspended && fdm_resume(name, 0, cookie))
			msg_err("%s %s: cannot resume %s: %s; run 'dmsetup resume %s'",
				cmd, name, name, fdm_error(), name);
		return -1;
	}
	test_pause_after_suspend(name);
	if (sig_caught())
		goto interrupted;
	if (fdm_resume(name, 0, cookie)) {
		/* The swap failed: the old table is still there, suspended. */
		snprintf(err, sizeof(err), "%s", fdm_error());
		fdm_clear(name);
		if (fdm_resume(name, 0, cookie))
			msg_err("%s %s: cannot resume %s with its old table either: %s; "
				"run 'dmsetup resume %s'", cmd, name, name, fdm_error(), name);
		msg_err("%s %s: cannot make the new table live: %s", cmd, name, err);
		return -1;
	}
	return 0;

interrupted:
	fdm_clear(name);
	if (fdm_resume(name, 0, cookie))
		msg_err("%s %s: cannot resume %s: %s; run 'dmsetup resume %s'",
			cmd, name, name, fdm_error(), name);
interrupted_early:
	sig = sig_caught();
	msg_fail(EXIT_INTR, "%s %s: interrupted by signal %d (%s); %s keeps its old table",
		cmd, name, sig, strsignal(sig), name);
	return -1;
}

static int device_table_checks(const char *cmd, const char *name,
			       const struct dm_info *info)
{
	if (!info->live_table) {
		msg_err("%s %s: has no live table", cmd, name);
		return -1;
	}
	if (info->inactive_table) {
		msg_fail(EXIT_BUSY, "%s %s: has an inactive table loaded by another program "
			 "('dmsetup clear %s' drops it)", cmd, name, name);
		return -1;
	}
	if (info->suspended) {
		msg_fail(EXIT_BUSY, "%s %s: is suspended; resume it first", cmd, name);
		return -1;
	}
	return 0;
}

int origin_attach(const char *dmdev, const struct origin_opts *opts,
		  char *table, size_t len)
{
	struct origin_table ot = { .chunk_sectors = opts->chunk_sectors,
				   .no_gap = opts->no_gap };
	char name[NAME_LEN], real[NAME_LEN], params[2 * PATH_MAX + 64];
	struct fdm_table cur, ft;
	struct dm_info info, rinfo;
	unsigned int i, flags;
	uint32_t cookie = 0;
	uint64_t sectors;
	dev_t devt, rdevt;
	int c, rc = -1;

	if (resolve_dm_arg("attach", dmdev, name, sizeof(name), &devt))
		return -1;
	if (fdm_info(name, &info)) {
		msg_err("attach %s: %s", name, fdm_error());
		return -1;
	}
	if (device_table_checks("attach", name, &info))
		return -1;
	if (strlen(name) + strlen(REAL_SUFFIX) >= NAME_LEN) {
		msg_err("attach %s: name too long to add '%s' for the device under it",
			name, REAL_SUFFIX);
		return -1;
	}
	snprintf(real, sizeof(real), "%s%s", name, REAL_SUFFIX);

	/* The table may hold a dm-crypt key: keep it out of freed memory. */
	if (fdm_table_get(name, &cur, 0, FDM_SECURE)) {
		msg_err("attach %s: cannot read its table: %s", name, fdm_error());
		return -1;
	}
	for (i = 0; i < cur.n; i++) {
		if (!strcmp(cur.t[i].type, TARGET_ORIGIN)) {
			msg_fail(EXIT_BUSY, "attach %s: already a %s device (attached, or made by "
				 "'fleecectl create')", name, TARGET_ORIGIN);
			goto out_cur;
		}
		if (!strcmp(cur.t[i].type, TARGET_VIEW)) {
			msg_fail(EXIT_NODEV, "attach %s: is a %s view; views cannot have views",
				 name, TARGET_VIEW);
			goto out_cur;
		}
	}
	if (!cur.n) {
		msg_err("attach %s: has an empty table", name);
		goto out_cur;
	}
	if (fdm_exists(real)) {
		msg_fail(EXIT_BUSY, "attach %s: %s exists already (left over from an earlier "
			 "attach? if nothing uses it, 'dmsetup remove %s')", name, real, real);
		goto out_cur;
	}
	sectors = fdm_table_sectors(&cur);
	flags = FDM_SECURE | (info.read_only ? FDM_READONLY : 0);

	/*
	 * A dry run checks the metadata device against DMDEV itself: the
	 * device it will really be compared with does not exist yet.
	 */
	if (opts->dry_run) {
		if (origin_meta_arg("attach", name, opts->meta, devt, &ot))
			goto out_cur;
		origin_id_arg("attach", name, devt, &ot);
		snprintf(ot.origin, sizeof(ot.origin), "<%s>", real);
		if (build_origin_table(&ot, params, sizeof(params))) {
			msg_err("attach %s: table line too long", name);
			goto out_cur;
		}
		origin_table_line(table, len, sectors, params);
		rc = 0;
		goto out_cur;
	}

	/* From here on a signal rolls back instead of killing fleecectl. */
	sig_catch();
	msg_hold();

	/* 1. The device under fleece-origin: DMDEV's table, under a new name. */
	if (fdm_create(real, NULL, &cur, FDM_UDEV_HIDDEN, &cookie, flags)) {
		msg_err("attach %s: cannot create %s with %s's table: %s", name, real,
			name, fdm_error());
		if (fdm_exists(real))
			fdm_remove(real, &cookie);
		fdm_udev_wait(&cookie);
		goto out_cur;
	}
	fdm_udev_wait(&cookie);
	if (fdm_info(real, &rinfo) || !rinfo.exists) {
		msg_err("attach %s: %s vanished after its creation", name, real);
		goto out_real;
	}
	rdevt = makedev(rinfo.major, rinfo.minor);

	/* 2.-4. fleece-origin over it, swapped in. */
	if (origin_meta_arg("attach", name, opts->meta, rdevt, &ot))
		goto out_real;
	origin_id_arg("attach", name, devt, &ot);
	snprintf(ot.origin, sizeof(ot.origin), "%u:%u", major(rdevt), minor(rdevt));
	if (build_origin_table(&ot, params, sizeof(params)) ||
	    fdm_table_one(&ft, sectors, TARGET_ORIGIN, params)) {
		msg_err("attach %s: out of memory", name);
		goto out_real;
	}
	origin_table_line(table, len, sectors, params);
	c = swap_table("attach", name, &ft, info.read_only ? FDM_READONLY : 0, &cookie);
	fdm_table_free(&ft);
	fdm_udev_wait(&cookie);
	if (c)
		goto out_real;
	rc = 0;
	goto out_cur;

out_real:
	if (fdm_remove(real, &cookie))
		msg_err("attach %s: cannot remove %s again: %s", name, real, fdm_error());
	fdm_udev_wait(&cookie);
out_cur:
	sig_restore();
	msg_release(still_suspended(name));
	fdm_table_free(&cur);
	return rc;
}

int cmd_attach(int argc, char **argv)
{
	struct origin_opts o;
	int c;

	c = origin_options(argc, argv, &o);
	if (c >= 0)
		return c;
	if (argc - optind != 1)
		return usage_error(argv[0], "needs DMDEV, a device-mapper device");

	lock_take();
	return origin_attach(argv[optind], &o, NULL, 0) ? EXIT_ERR : EXIT_OK;
}

int origin_detach(const char *dmdev, int dry_run, int shutdown)
{
	char name[NAME_LEN], what[256], views[1024];
	struct fdm_table rt;
	struct fl_origin o;
	struct dm_info info, rinfo;
	struct fl_scan s;
	uint32_t cookie = 0;
	dev_t devt;
	int r;

	if (resolve_dm_arg("detach", dmdev, name, sizeof(name), &devt))
		return -1;
	r = get_origin(name, &o, what, sizeof(what));
	if (r) {
		if (r == -EMEDIUMTYPE)
			msg_fail(EXIT_NODEV, "detach %s: not attached (%s)", name, what);
		else if (r == -ENOENT)
			msg_fail(EXIT_NODEV, "detach %s: no such device", name);
		else
			msg_err("detach %s: %s", name, fdm_error());
		return -1;
	}
	if (!o.attached || !o.single) {
		msg_fail(EXIT_NODEV, "detach %s: not attached by fleecectl (its %s is on %s, "
			 "not on %s%s); use 'fleecectl remove' for devices made by "
			 "'fleecectl create'", name, TARGET_ORIGIN, o.table.origin, name,
			 REAL_SUFFIX);
		return -1;
	}
	if (!o.have_status) {
		msg_err("detach %s: cannot read its status: %s", name, fdm_error());
		return -1;
	}
	if (o.status.sessions) {
		views[0] = '\0';
		if (!scan_all(&s)) {
			views_on(&s, o.origin_devt, views, sizeof(views));
			scan_free(&s);
		}
		msg_fail(EXIT_BUSY, "detach %s: %u session%s still use%s it%s%s%s; release %s first",
			 name, o.status.sessions, o.status.sessions == 1 ? "" : "s",
			 o.status.sessions == 1 ? "s" : "",
			 views[0] ? " (views: " : "", views, views[0] ? ")" : "",
			 o.status.sessions == 1 ? "it" : "them");
		return -1;
	}
	if (fdm_info(name, &info) || fdm_info(o.real_name, &rinfo)) {
		msg_err("detach %s: %s", name, fdm_error());
		return -1;
	}
	if (device_table_checks("detach", name, &info))
		return -1;
	if (rinfo.open_count > 1)
		rinfo.open_count = fdm_open_count_settled(o.real_name, 1);
	if (rinfo.open_count < 0) {
		msg_err("detach %s: %s", name, fdm_error());
		return -1;
	}
	if (rinfo.open_count > 1) {
		msg_fail(EXIT_BUSY, "detach %s: %s is open %d times; only %s should use it", name,
			 o.real_name, rinfo.open_count, name);
		return -1;
	}
	if (fdm_table_get(o.real_name, &rt, 0, FDM_SECURE)) {
		msg_err("detach %s: cannot read the table of %s: %s", name, o.real_name,
			fdm_error());
		return -1;
	}
	if (fdm_table_sectors(&rt) != o.sectors) {
		msg_err("detach %s: %s is %llu sectors, %s %llu; not detaching", name,
			o.real_name, (unsigned long long)fdm_table_sectors(&rt), name,
			(unsigned long long)o.sectors);
		fdm_table_free(&rt);
		return -1;
	}
	if (dry_run) {
		fdm_table_free(&rt);
		return 0;
	}
	if (shutdown && origin_clean_detach("detach", name, &o, 1))
		return -1;
	sig_catch();
	msg_hold();
	r = swap_table("detach", name, &rt, FDM_SECURE | (info.read_only ? FDM_READONLY : 0),
		       &cookie);
	fdm_table_free(&rt);
	fdm_udev_wait(&cookie);
	if (r) {
		sig_restore();
		msg_release(still_suspended(name));
		if (shutdown)
			origin_clean_detach("detach", name, &o, 0);
		return -1;
	}
	r = fdm_remove(o.real_name, &cookie);
	fdm_udev_wait(&cookie);
	sig_restore();
	msg_release(0);
	if (r) {
		msg_err("detach %s: %s has its own table again, but %s cannot be removed: %s",
			name, name, o.real_name, fdm_error());
		return -1;
	}
	return 0;
}

int cmd_detach(int argc, char **argv)
{
	int c;

	c = simple_options(argc, argv, NULL);
	if (c >= 0)
		return c;
	if (argc - optind != 1)
		return usage_error(argv[0], "needs DMDEV");

	lock_take();
	return origin_detach(argv[optind], 0, 0) ? EXIT_ERR : EXIT_OK;
}
