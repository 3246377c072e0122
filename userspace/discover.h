/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Which device-mapper devices are fleece-origins and which are views, and
 * which view belongs to which origin.
 *
 * A view's table names the device *under* its fleece-origin (the origin
 * device, as the fleece-origin table names it). Tables give devices as
 * paths or major:minor, so both are resolved to device numbers and matched
 * on those.
 */
#ifndef FLEECECTL_DISCOVER_H
#define FLEECECTL_DISCOVER_H

#include <libdevmapper.h>
#include <sys/types.h>

#include "parse.h"

#define NAME_LEN 128			/* DM_NAME_LEN */

struct fl_origin {
	char name[NAME_LEN];
	dev_t devt;			/* the fleece-origin device itself */
	uint64_t sectors;		/* length of its fleece-origin target */
	int single;			/* the table is that one target, at 0 */
	int suspended;
	int open_count;
	struct origin_table table;
	dev_t origin_devt;		/* the device under it; 0: unresolved */
	dev_t meta_devt;		/* 0: none ("-") or unresolved */
	int have_status;
	struct origin_status status;
	/* Put there by attach: the origin is the dm device NAME-fleece-real. */
	int attached;
	char real_name[NAME_LEN];
};

struct fl_view {
	char name[NAME_LEN];
	dev_t devt;
	uint64_t sectors;
	int single;
	int open_count;
	struct view_table table;
	dev_t origin_devt;		/* 0: unresolved */
	dev_t scratch_devt;
	int have_status;
	struct view_status status;
	int origin;			/* index in fl_scan.origins, -1: none */
};

struct fl_scan {
	struct fl_origin *origins;
	unsigned int nr_origins;
	struct fl_view *views;
	unsigned int nr_views;
};

/* Every fleece device on the system. Returns 0, or -1 (see fdm_error()). */
int scan_all(struct fl_scan *s);
void scan_free(struct fl_scan *s);

/*
 * One device by name. Returns 0; -ENOENT: no such device; -EMEDIUMTYPE:
 * not that kind of fleece device, @what then says what it is ("its table
 * is linear"); -EIO: device-mapper failed (see fdm_error()).
 */
int get_origin(const char *name, struct fl_origin *o, char *what, size_t len);
int get_view(const char *name, struct fl_view *v, char *what, size_t len);

/* Names of the views whose origin device is @origin_devt, comma-separated. */
void views_on(const struct fl_scan *s, dev_t origin_devt, char *buf, size_t len);

#endif
