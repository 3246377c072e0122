/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Tables and status lines of the two targets: parsing and building.
 * Pure string handling, no libdevmapper: unit-tested on the host.
 *
 * Status lines are parsed by position and later fields are ignored, as the
 * target documentation asks (fields may be appended in later versions).
 */
#ifndef FLEECECTL_PARSE_H
#define FLEECECTL_PARSE_H

#include <limits.h>
#include <stdint.h>
#include <stddef.h>

/* fleece-origin <origin_dev> <metadata_dev|-> <chunk_sectors> [<#f> <arg>...] */
struct origin_table {
	char origin[PATH_MAX];
	char meta[PATH_MAX];		/* "-" when none */
	uint64_t chunk_sectors;
	unsigned int nr_features;
};

/* <volatile|persistent> <#sessions> ... */
struct origin_status {
	int persistent;
	unsigned int sessions;
};

enum on_full {
	ON_FULL_INVALIDATE,
	ON_FULL_FAIL_WRITES,
};

/* fleece <origin_dev> <scratch_dev> [<#opt_args> <arg>...] */
struct view_table {
	char origin[PATH_MAX];
	char scratch[PATH_MAX];
	enum on_full on_full;
	uint64_t low_water;		/* chunks; 0: off */
	int writable;
	/*
	 * Optional words this version does not know (e.g. a newer kernel's):
	 * counted, not interpreted.
	 */
	unsigned int nr_unknown;
};

/*
 * <Active|Invalid> <chunk_sectors> <used>/<total> <preserved> <copied>
 * <released> <skipped> <reads_scratch> <reads_origin> <copies_inflight> ...
 */
struct view_status {
	int active;			/* 0: Invalid */
	uint64_t chunk_sectors;
	uint64_t scratch_used;
	uint64_t scratch_total;
	uint64_t preserved;
	uint64_t copied;
	uint64_t released;
	uint64_t skipped;
	uint64_t reads_scratch;		/* sectors */
	uint64_t reads_origin;		/* sectors */
	uint64_t copies_inflight;
};

/* Each returns 0, or -EINVAL when the line does not have the format. */
int parse_origin_table(const char *params, struct origin_table *t);
int parse_origin_status(const char *params, struct origin_status *s);
int parse_view_table(const char *params, struct view_table *t);
int parse_view_status(const char *params, struct view_status *s);

/*
 * Table lines (the target's parameters, without start, length and type).
 * Return 0, or -ENOSPC when buf is too small.
 */
int build_origin_table(const struct origin_table *t, char *buf, size_t len);
int build_view_table(const struct view_table *t, char *buf, size_t len);

/* "invalidate" / "fail_writes" */
const char *on_full_name(enum on_full f);

/* Scratch use in percent, 0 when the total is 0. */
double scratch_used_percent(const struct view_status *s);

#endif
