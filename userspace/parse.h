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
/* The kernel's limit on origin_id (dm-fleece-track.h). */
#define ORIGIN_ID_MAX 127

struct origin_table {
	char origin[PATH_MAX];
	char meta[PATH_MAX];		/* "-" when none */
	uint64_t chunk_sectors;
	unsigned int nr_features;
	/*
	 * The feature "no_gap": the admin vouches that nothing wrote the origin
	 * since its bitmaps last tracked it, so a re-attach of existing metadata
	 * keeps them trusted. Parsed and built with origin_id.
	 */
	int no_gap;
	/* The feature "origin_id <id>": what the origin is; "" when none. */
	char origin_id[ORIGIN_ID_MAX + 1];
};

/* Changed-block bitmaps: the kernel's limits (dm-fleece-track.h). */
#define BITMAP_NAME_MAX 31
#define MAX_BITMAPS 8

struct bitmap_status {
	char name[BITMAP_NAME_MAX + 1];
	uint64_t dirty;			/* chunks set */
	unsigned int frozen_sets;	/* views with "bitmap <name>" */
};

/*
 * <volatile|persistent> <#sessions> <ok|lost|gap> <#bitmaps>
 * [<name> <dirty_chunks> <frozen_sets>]...
 */
struct origin_status {
	int persistent;
	unsigned int sessions;
	int have_tracking;		/* the kernel printed the fields below */
	int lost;			/* bitmaps untrustworthy: "lost" or "gap" */
	int gap;			/* for a gap before the attach only */
	unsigned int nr_bitmaps;
	struct bitmap_status bitmaps[MAX_BITMAPS];
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
	char bitmap[BITMAP_NAME_MAX + 1];	/* "": none */
	int full;			/* with bitmap: every chunk is backed up */
	/*
	 * Optional words this version does not know (e.g. a newer kernel's):
	 * counted, not interpreted.
	 */
	unsigned int nr_unknown;
};

/* A view's backup transaction on its bitmap. */
enum txn_state {
	TXN_NONE,			/* no bitmap, or an old kernel */
	TXN_OPEN,
	TXN_COMMITTED,
	TXN_ENDED,			/* the fleece-origin was removed */
};

/*
 * <Active|Invalid> <chunk_sectors> <used>/<total> <preserved> <copied>
 * <released> <skipped> <reads_scratch> <reads_origin> <copies_inflight>
 * <bitmap|-> <open|committed|ended|-> <unreadable> ...
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
	char bitmap[BITMAP_NAME_MAX + 1];	/* "": none */
	enum txn_state txn;
	uint64_t unreadable;		/* chunks lost; 0 before 0.5.0 */
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

/*
 * One page of a "changes" or "bitmap_changes" answer:
 *   <next|end> <first>+<count> ...
 * Calls @fn for each range (in chunks); *next gets the chunk to ask from for
 * the next page, or UINT64_MAX after "end". Returns 0, -EINVAL when the
 * answer does not have the format (ranges must increase and not overlap
 * @from), or what @fn returned when not 0.
 */
int parse_changes_page(const char *resp, uint64_t from, uint64_t *next,
		       int (*fn)(uint64_t first, uint64_t count, void *arg),
		       void *arg);

/* 1 if @s is a valid bitmap name: 1 to 31 of [A-Za-z0-9_.-]. */
int valid_bitmap_name(const char *s);

/* "open", "committed", "ended", "-" */
const char *txn_name(enum txn_state t);

/* "invalidate" / "fail_writes" */
const char *on_full_name(enum on_full f);

/* Scratch use in percent, 0 when the total is 0. */
double scratch_used_percent(const struct view_status *s);

#endif
