// SPDX-License-Identifier: GPL-2.0
/*
 * status: fleece-origin devices and their views (sessions), as tables for
 * people or as JSON for programs.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "bitmap.h"
#include "blockdev.h"
#include "cli.h"
#include "discover.h"
#include "dm.h"
#include "fleecectl.h"
#include "json.h"
#include "parse.h"
#include "util.h"

/* Which devices to show: all, or one origin and its views, or one view. */
struct filter {
	int origin;		/* index, -1: all */
	int view;		/* index, -1: all views of the origins shown */
};

static int origin_shown(const struct filter *f, unsigned int i)
{
	return f->origin < 0 || f->origin == (int)i;
}

static int view_shown(const struct fl_scan *s, const struct filter *f, unsigned int i)
{
	if (f->view >= 0)
		return f->view == (int)i;
	if (f->origin >= 0)
		return s->views[i].origin == f->origin;
	return 1;
}

static void devt_str(dev_t d, char *buf, size_t len)
{
	snprintf(buf, len, "%u:%u", major(d), minor(d));
}

/* Human tables: rows of cells, columns as wide as their widest cell. */
#define MAX_COLS 10
/* Room for the longest: /dev/mapper/ and a device-mapper name (127). */
#define CELL (NAME_LEN + 64)

struct table {
	unsigned int cols, rows;
	char (*cell)[MAX_COLS][CELL];
};

static int table_row(struct table *t, const char *const *cells)
{
	char (*nc)[MAX_COLS][CELL] = realloc(t->cell, (t->rows + 1) * sizeof(*nc));
	unsigned int i;

	if (!nc)
		return -1;
	t->cell = nc;
	for (i = 0; i < t->cols; i++)
		snprintf(nc[t->rows][i], CELL, "%s", cells[i] ? cells[i] : "-");
	t->rows++;
	return 0;
}

static void table_print(struct table *t)
{
	size_t w[MAX_COLS] = { 0 }, l;
	unsigned int r, c;

	for (r = 0; r < t->rows; r++)
		for (c = 0; c < t->cols; c++) {
			l = strlen(t->cell[r][c]);
			if (l > w[c])
				w[c] = l;
		}
	for (r = 0; r < t->rows; r++) {
		for (c = 0; c < t->cols; c++) {
			if (c + 1 == t->cols)
				printf("%s\n", t->cell[r][c]);
			else
				printf("%-*s  ", (int)w[c], t->cell[r][c]);
		}
	}
	free(t->cell);
	t->cell = NULL;
	t->rows = 0;
}

/* One row per bitmap of the origins shown. */
static void print_bitmaps(const struct fl_scan *s, const struct filter *f)
{
	struct table t = { .cols = 5 };
	const char *h[] = { "BITMAP", "ORIGIN", "DIRTY", "SIZE", "BACKUPS" };
	char dirty[CELL], size[CELL], frozen[CELL];
	const char *row[5];
	unsigned int i, k;

	table_row(&t, h);
	for (i = 0; i < s->nr_origins; i++) {
		const struct fl_origin *o = &s->origins[i];

		if (!origin_shown(f, i) || !o->have_status)
			continue;
		for (k = 0; k < o->status.nr_bitmaps; k++) {
			const struct bitmap_status *b = &o->status.bitmaps[k];

			snprintf(dirty, sizeof(dirty), "%llu", (unsigned long long)b->dirty);
			format_size_short(bitmap_bytes(o, b->dirty), size, sizeof(size));
			snprintf(frozen, sizeof(frozen), "%u", b->frozen_sets);
			row[0] = b->name;
			row[1] = o->name;
			row[2] = dirty;
			row[3] = size;
			row[4] = frozen;
			table_row(&t, row);
		}
	}
	if (t.rows > 1) {
		printf("\n");
		table_print(&t);
	} else {
		free(t.cell);
	}
}

static void print_human(const struct fl_scan *s, const struct filter *f)
{
	struct table t = { .cols = 7 };
	char size[CELL], chunk[CELL], dev[CELL], sess[CELL], used[CELL];
	char copied[CELL], released[CELL], skipped[CELL], scratch[CELL], bm[CELL];
	char state[CELL];
	unsigned int i, nv = 0;

	{
		const char *h[] = { "ORIGIN", "SIZE", "CHUNK", "DEVICE", "METADATA", "SESSIONS",
				    "TRACKING" };

		table_row(&t, h);
	}
	for (i = 0; i < s->nr_origins; i++) {
		const struct fl_origin *o = &s->origins[i];
		const char *row[7];

		if (!origin_shown(f, i))
			continue;
		format_size_short(o->sectors << 9, size, sizeof(size));
		format_size_short(o->table.chunk_sectors << 9, chunk, sizeof(chunk));
		if (o->origin_devt)
			bdev_display(o->origin_devt, dev, sizeof(dev));
		else
			str_copy(dev, sizeof(dev), o->table.origin);
		if (o->have_status)
			snprintf(sess, sizeof(sess), "%u", o->status.sessions);
		else
			snprintf(sess, sizeof(sess), "?");
		row[0] = o->name;
		row[1] = size;
		row[2] = chunk;
		row[3] = dev;
		row[4] = !o->have_status ? "?" : o->status.persistent ? "persistent" : "volatile";
		row[5] = sess;
		row[6] = !o->have_status || !o->status.have_tracking ? "-" :
			 o->status.gap ? "GAP" : o->status.lost ? "LOST" : "ok";
		table_row(&t, row);
	}
	if (t.rows == 1 && f->view < 0) {
		free(t.cell);
		printf("no %s devices\n", TARGET_ORIGIN);
	} else if (t.rows > 1) {
		table_print(&t);
	} else {
		free(t.cell);
	}
	t.rows = 0;
	t.cell = NULL;
	print_bitmaps(s, f);

	t.cols = 9;
	{
		const char *h[] = { "VIEW", "ORIGIN", "STATE", "SCRATCH", "USED",
				    "COPIED", "RELEASED", "SKIPPED", "BITMAP" };

		table_row(&t, h);
	}
	for (i = 0; i < s->nr_views; i++) {
		const struct fl_view *v = &s->views[i];
		const struct view_status *st = &v->status;
		const char *row[9];

		if (!view_shown(s, f, i))
			continue;
		nv++;
		if (v->scratch_devt)
			bdev_display(v->scratch_devt, scratch, sizeof(scratch));
		else
			str_copy(scratch, sizeof(scratch), v->table.scratch);
		if (v->have_status) {
			snprintf(used, sizeof(used), "%.1f%% (%llu/%llu)",
				 scratch_used_percent(st),
				 (unsigned long long)st->scratch_used,
				 (unsigned long long)st->scratch_total);
			snprintf(copied, sizeof(copied), "%llu", (unsigned long long)st->copied);
			snprintf(released, sizeof(released), "%llu",
				 (unsigned long long)st->released);
			snprintf(skipped, sizeof(skipped), "%llu", (unsigned long long)st->skipped);
		}
		row[0] = v->name;
		row[1] = v->origin >= 0 ? s->origins[v->origin].name : "(none)";
		if (v->have_status && st->unreadable)
			snprintf(state, sizeof(state), "%s, %llu lost", st->active ?
				 "Active" : "Invalid", (unsigned long long)st->unreadable);
		else
			str_copy(state, sizeof(state), !v->have_status ? "?" :
				 st->active ? "Active" : "Invalid");
		row[2] = state;
		row[3] = scratch;
		row[4] = v->have_status ? used : "?";
		row[5] = v->have_status ? copied : "?";
		row[6] = v->have_status ? released : "?";
		row[7] = v->have_status ? skipped : "?";
		if (v->have_status && st->bitmap[0])
			snprintf(bm, sizeof(bm), "%s (%s%s)", st->bitmap,
				 v->table.full ? "full, " : "", txn_name(st->txn));
		else
			snprintf(bm, sizeof(bm), "-");
		row[8] = bm;
		table_row(&t, row);
	}
	if (nv) {
		printf("\n");
		table_print(&t);
	} else {
		free(t.cell);
	}
}

static void json_view(struct json *j, const struct fl_view *v)
{
	char buf[PATH_MAX];
	const struct view_status *st = &v->status;

	json_obj_begin(j, NULL);
	json_str(j, "name", v->name);
	snprintf(buf, sizeof(buf), "/dev/mapper/%s", v->name);
	json_str(j, "path", buf);
	devt_str(v->devt, buf, sizeof(buf));
	json_str(j, "dev", buf);
	json_u64(j, "size_bytes", v->sectors << 9);
	if (v->origin_devt) {
		devt_str(v->origin_devt, buf, sizeof(buf));
		json_str(j, "origin_dev", buf);
	} else {
		json_str(j, "origin_dev", NULL);
	}
	if (v->scratch_devt) {
		devt_str(v->scratch_devt, buf, sizeof(buf));
		json_str(j, "scratch_dev", buf);
		bdev_display(v->scratch_devt, buf, sizeof(buf));
		json_str(j, "scratch_path", buf);
	} else {
		json_str(j, "scratch_dev", NULL);
		json_str(j, "scratch_path", v->table.scratch);
	}
	json_bool(j, "writable", v->table.writable);
	json_str(j, "on_full", on_full_name(v->table.on_full));
	json_u64(j, "low_water", v->table.low_water);
	json_u64(j, "open_count", (uint64_t)(v->open_count > 0 ? v->open_count : 0));
	if (v->have_status) {
		json_str(j, "state", st->active ? "Active" : "Invalid");
		json_u64(j, "chunk_sectors", st->chunk_sectors);
		json_u64(j, "scratch_used", st->scratch_used);
		json_u64(j, "scratch_total", st->scratch_total);
		json_double(j, "scratch_used_percent", scratch_used_percent(st));
		json_u64(j, "preserved", st->preserved);
		json_u64(j, "copied", st->copied);
		json_u64(j, "released", st->released);
		json_u64(j, "skipped", st->skipped);
		json_u64(j, "reads_scratch_sectors", st->reads_scratch);
		json_u64(j, "reads_origin_sectors", st->reads_origin);
		json_u64(j, "copies_inflight", st->copies_inflight);
		json_str(j, "bitmap", st->bitmap[0] ? st->bitmap : NULL);
		json_str(j, "transaction", st->txn == TXN_NONE ? NULL : txn_name(st->txn));
		json_bool(j, "full", v->table.full);
		json_u64(j, "unreadable", st->unreadable);
	} else {
		json_str(j, "state", NULL);
	}
	json_obj_end(j);
}

static void print_json(const struct fl_scan *s, const struct filter *f)
{
	char buf[PATH_MAX];
	struct json j;
	unsigned int i, k;

	json_init(&j, stdout);
	json_obj_begin(&j, NULL);
	json_str(&j, "fleecectl_version", FLEECECTL_VERSION);
	json_arr_begin(&j, "origins");
	for (i = 0; i < s->nr_origins; i++) {
		const struct fl_origin *o = &s->origins[i];

		if (!origin_shown(f, i))
			continue;
		json_obj_begin(&j, NULL);
		json_str(&j, "name", o->name);
		snprintf(buf, sizeof(buf), "/dev/mapper/%s", o->name);
		json_str(&j, "path", buf);
		devt_str(o->devt, buf, sizeof(buf));
		json_str(&j, "dev", buf);
		json_u64(&j, "size_bytes", o->sectors << 9);
		json_u64(&j, "chunk_sectors", o->table.chunk_sectors);
		json_u64(&j, "chunk_bytes", o->table.chunk_sectors << 9);
		if (o->origin_devt) {
			devt_str(o->origin_devt, buf, sizeof(buf));
			json_str(&j, "origin_dev", buf);
			bdev_display(o->origin_devt, buf, sizeof(buf));
			json_str(&j, "origin_path", buf);
		} else {
			json_str(&j, "origin_dev", NULL);
			json_str(&j, "origin_path", o->table.origin);
		}
		json_str(&j, "metadata", !o->have_status ? NULL :
			 o->status.persistent ? "persistent" : "volatile");
		if (o->meta_devt) {
			devt_str(o->meta_devt, buf, sizeof(buf));
			json_str(&j, "metadata_dev", buf);
		} else {
			json_str(&j, "metadata_dev", NULL);
		}
		json_bool(&j, "attached", o->attached);
		json_str(&j, "real_device", o->attached ? o->real_name : NULL);
		json_bool(&j, "suspended", o->suspended);
		if (o->have_status)
			json_u64(&j, "sessions", o->status.sessions);
		else
			json_str(&j, "sessions", NULL);
		json_str(&j, "tracking", !o->have_status || !o->status.have_tracking ? NULL :
			 o->status.gap ? "gap" : o->status.lost ? "lost" : "ok");
		json_arr_begin(&j, "bitmaps");
		for (k = 0; o->have_status && k < o->status.nr_bitmaps; k++) {
			const struct bitmap_status *b = &o->status.bitmaps[k];

			json_obj_begin(&j, NULL);
			json_str(&j, "name", b->name);
			json_u64(&j, "dirty_chunks", b->dirty);
			json_u64(&j, "dirty_bytes", bitmap_bytes(o, b->dirty));
			json_u64(&j, "backups_in_progress", b->frozen_sets);
			json_obj_end(&j);
		}
		json_arr_end(&j);
		json_arr_begin(&j, "views");
		for (k = 0; k < s->nr_views; k++)
			if (s->views[k].origin == (int)i && view_shown(s, f, k))
				json_view(&j, &s->views[k]);
		json_arr_end(&j);
		json_obj_end(&j);
	}
	json_arr_end(&j);
	/* Views whose fleece-origin is gone (their sessions are invalid). */
	json_arr_begin(&j, "orphan_views");
	for (k = 0; k < s->nr_views; k++)
		if (s->views[k].origin < 0 && view_shown(s, f, k))
			json_view(&j, &s->views[k]);
	json_arr_end(&j);
	json_obj_end(&j);
}

int cmd_status(int argc, char **argv)
{
	struct filter f = { -1, -1 };
	char name[NAME_LEN];
	struct fl_scan s;
	unsigned int i;
	int c, json = 0;
	dev_t devt;

	c = simple_options(argc, argv, &json);
	if (c >= 0)
		return c;
	if (argc - optind > 1)
		return usage_error(argv[0], "takes at most one NAME");
	if (argc - optind == 1 &&
	    resolve_dm_arg("status", argv[optind], name, sizeof(name), &devt))
		return EXIT_ERR;

	if (scan_all(&s)) {
		msg_err("status: cannot list device-mapper devices (is dm-mod loaded?): %s",
			fdm_error());
		return EXIT_ERR;
	}
	if (argc - optind == 1) {
		for (i = 0; i < s.nr_origins; i++)
			if (!strcmp(s.origins[i].name, name))
				f.origin = (int)i;
		for (i = 0; f.origin < 0 && i < s.nr_views; i++)
			if (!strcmp(s.views[i].name, name)) {
				f.view = (int)i;
				f.origin = s.views[i].origin >= 0 ? s.views[i].origin : -2;
			}
		if (f.origin == -1 && f.view < 0) {
			msg_fail(EXIT_NODEV, "status %s: not a %s device or a %s view", name,
				 TARGET_ORIGIN, TARGET_VIEW);
			scan_free(&s);
			return EXIT_ERR;
		}
	}
	if (json)
		print_json(&s, &f);
	else
		print_human(&s, &f);
	scan_free(&s);
	return EXIT_OK;
}
