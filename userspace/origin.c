// SPDX-License-Identifier: GPL-2.0
/*
 * create and remove: a fleece-origin device over a block device nobody uses.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "blockdev.h"
#include "cli.h"
#include "discover.h"
#include "dm.h"
#include "fleecectl.h"
#include "lock.h"
#include "origin.h"
#include "parse.h"
#include "util.h"

int origin_meta_arg(const char *cmd, const char *name, const char *meta,
		    dev_t origin_devt, struct origin_table *t)
{
	char why[512];
	dev_t devt;
	int r;

	if (!meta) {
		strcpy(t->meta, "-");
		return 0;
	}
	r = bdev_devt(meta, &devt);
	if (r) {
		msg_fail(errno_exit_code(r), "%s %s: metadata device %s: %s", cmd, name, meta,
			 r == -ENOTBLK ? "not a block device" : strerror(-r));
		return -1;
	}
	if (devt == origin_devt) {
		msg_err("%s %s: the metadata device %s must not be the origin device",
			cmd, name, meta);
		return -1;
	}
	r = bdev_check_unused(meta, devt, why, sizeof(why));
	if (r) {
		msg_fail(errno_exit_code(r), "%s %s: metadata device %s is %s", cmd, name, meta,
			 r == -EBUSY ? why : strerror(-r));
		return -1;
	}
	snprintf(t->meta, sizeof(t->meta), "%u:%u", major(devt), minor(devt));
	return 0;
}

void origin_id_arg(const char *cmd, const char *name, dev_t devt, struct origin_table *t)
{
	if (!strcmp(t->meta, "-"))
		return;
	if (bdev_origin_id(devt, t->origin_id, sizeof(t->origin_id)))
		msg_warn("%s %s: %u:%u has no stable name (no device-mapper UUID, no "
			 "/dev/disk/by-id link): its metadata cannot be bound to it",
			 cmd, name, major(devt), minor(devt));
}

int origin_clean_detach(const char *cmd, const char *name, const struct fl_origin *o,
			int clean)
{
	if (!o->have_status || !o->status.persistent)
		return 0;
	if (!fdm_message(name, 0, clean ? "clean_detach" : "clean_detach cancel", NULL))
		return 0;
	if (clean)
		msg_err("%s %s: cannot declare the detach clean (%s); not detached",
			cmd, name, fdm_error());
	else
		msg_warn("%s %s: cannot take back the clean detach (%s): a later detach "
			 "will count as clean", cmd, name, fdm_error());
	return -1;
}

/* "<start> <length> fleece-origin <params>", as dmsetup table prints it. */
void origin_table_line(char *table, size_t len, uint64_t sectors, const char *params)
{
	if (table)
		snprintf(table, len, "0 %llu %s %s", (unsigned long long)sectors,
			 TARGET_ORIGIN, params);
}

int origin_create(const char *name, const char *dev, const struct origin_opts *opts,
		  char *table, size_t len)
{
	struct origin_table t = { .chunk_sectors = opts->chunk_sectors,
				  .no_gap = opts->no_gap };
	char params[2 * PATH_MAX + 64], reason[512], uuid[UUID_LEN];
	struct fdm_table tbl;
	uint32_t cookie = 0;
	uint64_t bytes;
	dev_t devt;
	int r;

	if (check_new_name("create", name))
		return -1;
	if (fdm_exists(name)) {
		msg_fail(EXIT_BUSY, "create %s: a device-mapper device of that name exists", name);
		return -1;
	}
	dm_uuid(UUID_ORIGIN, name, uuid, sizeof(uuid));
	if (check_new_uuid("create", name, uuid))
		return -1;
	r = bdev_devt(dev, &devt);
	if (r) {
		msg_fail(errno_exit_code(r), "create %s: origin device %s: %s", name, dev,
			 r == -ENOTBLK ? "not a block device" : strerror(-r));
		return -1;
	}
	r = bdev_size(dev, &bytes);
	if (r || bytes < 512) {
		msg_err("create %s: origin device %s: %s", name, dev,
			r ? strerror(-r) : "empty device");
		return -1;
	}
	r = bdev_check_unused(dev, devt, reason, sizeof(reason));
	if (r) {
		msg_fail(errno_exit_code(r), "create %s: origin device %s is %s%s", name, dev,
			 r == -EBUSY ? reason : strerror(-r),
			 r == -EBUSY ? "; to put fleece-origin under a device-mapper "
				       "device that is in use, use 'fleecectl attach'" : "");
		return -1;
	}
	if (origin_meta_arg("create", name, opts->meta, devt, &t))
		return -1;
	origin_id_arg("create", name, devt, &t);
	snprintf(t.origin, sizeof(t.origin), "%u:%u", major(devt), minor(devt));
	if (build_origin_table(&t, params, sizeof(params))) {
		msg_err("create %s: table line too long", name);
		return -1;
	}
	origin_table_line(table, len, bytes >> 9, params);
	if (opts->dry_run)
		return 0;
	if (fdm_table_one(&tbl, bytes >> 9, TARGET_ORIGIN, params)) {
		msg_err("create %s: out of memory", name);
		return -1;
	}
	r = fdm_create(name, uuid, &tbl, 0, &cookie, 0);
	fdm_udev_wait(&cookie);
	fdm_table_free(&tbl);
	if (r) {
		msg_fail(dm_exit_code(), "create %s: cannot create the %s device on %s: %s",
			 name, TARGET_ORIGIN, dev, fdm_error());
		return -1;
	}
	return 0;
}

int origin_options(int argc, char **argv, struct origin_opts *o)
{
	static const struct option opts[] = {
		{ "meta", required_argument, NULL, 'm' },
		{ "chunk-size", required_argument, NULL, 'c' },
		{ "no-gap", no_argument, NULL, 'G' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *why;
	int c;

	memset(o, 0, sizeof(*o));
	o->chunk_sectors = DEFAULT_CHUNK_BYTES >> 9;
	optind = 0;
	while ((c = cmd_getopt(argc, argv, "m:c:h", opts)) != -1) {
		switch (c) {
		case 'm':
			o->meta = optarg;
			break;
		case 'c':
			if (parse_chunk_size(optarg, &o->chunk_sectors, &why))
				return usage_error(argv[0], "invalid --chunk-size '%s': %s",
						   optarg, why);
			break;
		case 'G':
			o->no_gap = 1;
			break;
		default:
			return option_end(c, argv[0]);
		}
	}
	return -1;
}

int cmd_create(int argc, char **argv)
{
	struct origin_opts o;
	int c;

	c = origin_options(argc, argv, &o);
	if (c >= 0)
		return c;
	if (argc - optind != 2)
		return usage_error(argv[0], "needs NAME and ORIGIN_DEV");
	if (check_new_name(argv[0], argv[optind]))
		return EXIT_USAGE;

	lock_take();
	if (origin_create(argv[optind], argv[optind + 1], &o, NULL, 0))
		return EXIT_ERR;
	printf("/dev/mapper/%s\n", argv[optind]);
	return EXIT_OK;
}

int origin_remove(const char *arg, int dry_run, int shutdown)
{
	char views[1024];
	const char *name;
	struct fl_origin o;
	struct fl_scan s;
	uint32_t cookie = 0;
	int r;

	if (lookup_origin("remove", arg, &o))
		return -1;
	name = o.name;
	if (!o.single) {
		msg_err("remove %s: its table has more than one target; "
			"fleecectl only removes devices it creates", name);
		return -1;
	}
	if (o.attached) {
		msg_err("remove %s: attached over %s; use 'fleecectl detach %s'",
			name, o.real_name, name);
		return -1;
	}
	if (!o.have_status) {
		msg_err("remove %s: cannot read its status: %s", name, fdm_error());
		return -1;
	}
	if (o.status.sessions) {
		views[0] = '\0';
		if (!scan_all(&s)) {
			views_on(&s, o.origin_devt, views, sizeof(views));
			scan_free(&s);
		}
		msg_fail(EXIT_BUSY, "remove %s: %u session%s still use%s it%s%s%s; release %s first",
			 name, o.status.sessions, o.status.sessions == 1 ? "" : "s",
			 o.status.sessions == 1 ? "s" : "",
			 views[0] ? " (views: " : "", views, views[0] ? ")" : "",
			 o.status.sessions == 1 ? "it" : "them");
		return -1;
	}
	if (o.open_count)
		o.open_count = fdm_open_count_settled(name, 0);
	if (o.open_count < 0) {
		msg_err("remove %s: %s", name, fdm_error());
		return -1;
	}
	if (o.open_count) {
		msg_fail(EXIT_BUSY, "remove %s: in use (open %d time%s: mounted, or a program "
			 "has it open)", name, o.open_count, o.open_count == 1 ? "" : "s");
		return -1;
	}
	if (dry_run)
		return 0;
	if (shutdown && origin_clean_detach("remove", name, &o, 1))
		return -1;
	r = fdm_remove(name, &cookie);
	fdm_udev_wait(&cookie);
	if (r) {
		msg_fail(dm_exit_code(), "remove %s: %s", name, fdm_error());
		if (shutdown)
			origin_clean_detach("remove", name, &o, 0);
		return -1;
	}
	return 0;
}

int cmd_remove(int argc, char **argv)
{
	int c;

	c = simple_options(argc, argv, NULL);
	if (c >= 0)
		return c;
	if (argc - optind != 1)
		return usage_error(argv[0], "needs NAME");

	lock_take();
	return origin_remove(argv[optind], 0, 0) ? EXIT_ERR : EXIT_OK;
}
