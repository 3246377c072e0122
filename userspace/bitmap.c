// SPDX-License-Identifier: GPL-2.0
/*
 * bitmap and changes: the changed-block bitmaps of a fleece-origin device,
 * and the changed byte ranges a bitmap or an incremental view lists.
 *
 * Everything here is a target message. The kernel answers a refused one
 * with an errno and logs why; the errno is turned into words here so that a
 * script sees the same reason whatever the kernel's wording.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "cli.h"
#include "discover.h"
#include "dm.h"
#include "fleecectl.h"
#include "json.h"
#include "lock.h"
#include "parse.h"
#include "util.h"

/* Ranges asked for per page: a page then fits libdevmapper's buffer. */
#define PAGE_RANGES 1000

/* Why a bitmap message failed, in words. */
static const char *bitmap_reason(const char *verb, int e)
{
	switch (e) {
	case EEXIST:
		return "a bitmap of that name exists";
	case ENOENT:
		return "no such bitmap";
	case EBUSY:
		return !strcmp(verb, "merge") ?
		       "the destination has a backup in progress (a view with this bitmap "
		       "exists; release it first)" :
		       "a backup is in progress on it (a view with this bitmap exists; "
		       "release it first)";
	case ENOSPC:
		return "no free slot (8 bitmaps, or 16 slots of bitmaps and open backups)";
	case EIO:
		return !strcmp(verb, "add") || !strcmp(verb, "merge") ?
		       "tracking is lost (a metadata write failed): take a full backup" :
		       "a metadata write failed; tracking is lost";
	default:
		return fdm_error();
	}
}

static int send_bitmap_msg(const char *origin, const char *verb, const char *msg,
			   const char *what)
{
	int e, code = EXIT_ERR;

	if (!fdm_message(origin, 0, msg, NULL))
		return 0;
	e = fdm_errno();
	if (e == EEXIST || e == EBUSY)
		code = EXIT_BUSY;
	else if (e == EIO)
		code = !strcmp(verb, "add") || !strcmp(verb, "merge") ? EXIT_INVALID : EXIT_IO;
	msg_fail(code, "bitmap %s %s: %s: %s", verb, origin, what, bitmap_reason(verb, e));
	return -1;
}

static int check_name(const char *verb, const char *origin, const char *b)
{
	if (valid_bitmap_name(b))
		return 0;
	msg_err("bitmap %s %s: '%s' is not a valid bitmap name: 1 to %d of A-Z a-z 0-9 _ . -",
		verb, origin, b, BITMAP_NAME_MAX);
	return -1;
}

int bitmap_add(const char *origin, const char *bitmap)
{
	char msg[64];

	if (check_name("add", origin, bitmap))
		return -1;
	snprintf(msg, sizeof(msg), "bitmap_add %s", bitmap);
	return send_bitmap_msg(origin, "add", msg, bitmap);
}

static int bitmap_list(const struct fl_origin *o, int json)
{
	const struct origin_status *st = &o->status;
	uint64_t chunk = o->table.chunk_sectors << 9, bytes;
	char sz[32];
	struct json j;
	unsigned int i;

	if (!o->have_status || !st->have_tracking) {
		msg_err("bitmap list %s: its status has no bitmaps (kernel module too old?)",
			o->name);
		return EXIT_ERR;
	}
	if (json) {
		json_init(&j, stdout);
		json_obj_begin(&j, NULL);
		json_str(&j, "origin", o->name);
		json_str(&j, "metadata", st->persistent ? "persistent" : "volatile");
		json_str(&j, "tracking", st->gap ? "gap" : st->lost ? "lost" : "ok");
		json_u64(&j, "chunk_bytes", chunk);
		json_arr_begin(&j, "bitmaps");
		for (i = 0; i < st->nr_bitmaps; i++) {
			json_obj_begin(&j, NULL);
			json_str(&j, "name", st->bitmaps[i].name);
			json_u64(&j, "dirty_chunks", st->bitmaps[i].dirty);
			json_u64(&j, "dirty_bytes", bitmap_bytes(o, st->bitmaps[i].dirty));
			json_u64(&j, "backups_in_progress", st->bitmaps[i].frozen_sets);
			json_obj_end(&j);
		}
		json_arr_end(&j);
		json_obj_end(&j);
		return EXIT_OK;
	}
	if (st->gap)
		printf("warning: %s was attached after a time in which writes could "
		       "pass it (not attached at boot, or detached): the bitmaps may miss "
		       "changes; take a full backup\n", o->name);
	else if (st->lost)
		printf("warning: tracking on %s is lost (a metadata write failed): "
		       "the bitmaps may miss changes; take a full backup\n", o->name);
	if (!st->nr_bitmaps) {
		printf("%s has no bitmaps\n", o->name);
		return EXIT_OK;
	}
	printf("%-31s  %12s  %10s  %s\n", "BITMAP", "DIRTY", "SIZE", "BACKUPS");
	for (i = 0; i < st->nr_bitmaps; i++) {
		bytes = bitmap_bytes(o, st->bitmaps[i].dirty);
		format_size_short(bytes, sz, sizeof(sz));
		printf("%-31s  %12llu  %10s  %u\n", st->bitmaps[i].name,
		       (unsigned long long)st->bitmaps[i].dirty, sz,
		       st->bitmaps[i].frozen_sets);
	}
	return EXIT_OK;
}

uint64_t bitmap_bytes(const struct fl_origin *o, uint64_t chunks)
{
	uint64_t chunk = o->table.chunk_sectors << 9, size = o->sectors << 9;

	/* The last chunk may be short; a count cannot tell: bound it. */
	return chunks * chunk > size ? size : chunks * chunk;
}

int cmd_bitmap(int argc, char **argv)
{
	static const struct {
		const char *verb;
		int nargs;		/* after VERB NAME */
		const char *msg;
	} verbs[] = {
		{ "add", 1, "bitmap_add" },
		{ "remove", 1, "bitmap_remove" },
		{ "clear", 1, "bitmap_clear" },
		{ "merge", 2, "bitmap_merge" },
		{ "list", 0, NULL },
	};
	char msg[128], what[128];
	struct fl_origin o;
	unsigned int v;
	int c, json = 0, nargs;
	const char *verb;

	c = simple_options(argc, argv, &json);
	if (c >= 0)
		return c;
	if (argc - optind < 2)
		return usage_error(argv[0], "needs a verb (add, remove, clear, merge, list) "
				   "and NAME, the fleece-origin device");
	verb = argv[optind];
	for (v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++)
		if (!strcmp(verb, verbs[v].verb))
			break;
	if (v == sizeof(verbs) / sizeof(verbs[0]))
		return usage_error(argv[0], "unknown verb '%s': use add, remove, clear, "
				   "merge or list", verb);
	nargs = argc - optind - 2;
	if (nargs != verbs[v].nargs)
		return usage_error(argv[0], "%s takes NAME%s", verb,
				   verbs[v].nargs == 2 ? " DST SRC" :
				   verbs[v].nargs == 1 ? " BITMAP" : "");
	if (json && verbs[v].msg)
		return usage_error(argv[0], "--json goes with list only");

	lock_take();
	snprintf(what, sizeof(what), "bitmap %s", verb);
	if (lookup_origin(what, argv[optind + 1], &o))
		return EXIT_ERR;
	if (!verbs[v].msg)
		return bitmap_list(&o, json);

	if (check_name(verb, o.name, argv[optind + 2]) ||
	    (nargs == 2 && check_name(verb, o.name, argv[optind + 3])))
		return EXIT_ERR;
	if (nargs == 2) {
		snprintf(msg, sizeof(msg), "%s %s %s", verbs[v].msg, argv[optind + 2],
			 argv[optind + 3]);
		snprintf(what, sizeof(what), "%s into %s", argv[optind + 3],
			 argv[optind + 2]);
	} else {
		snprintf(msg, sizeof(msg), "%s %s", verbs[v].msg, argv[optind + 2]);
		snprintf(what, sizeof(what), "%s", argv[optind + 2]);
	}
	return send_bitmap_msg(o.name, verb, msg, what) ? EXIT_ERR : EXIT_OK;
}

/* Ranges of a page, in bytes, to the caller's function. */
struct page_ctx {
	uint64_t chunk;
	uint64_t size;
	int (*fn)(uint64_t off, uint64_t len, void *arg);
	void *arg;
};

static int page_range(uint64_t first, uint64_t count, void *arg)
{
	struct page_ctx *p = arg;
	uint64_t off = first * p->chunk, len = count * p->chunk;

	if (off >= p->size)
		return -ERANGE;
	if (len > p->size - off)
		len = p->size - off;
	return p->fn(off, len, p->arg);
}

int changes_foreach(const char *dm_name, const char *bitmap, uint64_t chunk_bytes,
		    uint64_t size, int (*fn)(uint64_t off, uint64_t len, void *arg),
		    void *arg)
{
	struct page_ctx p = { chunk_bytes, size, fn, arg };
	uint64_t start = 0, next;
	char msg[96], *resp;
	int r;

	while (start != UINT64_MAX) {
		if (bitmap)
			snprintf(msg, sizeof(msg), "bitmap_changes %s %llu %d", bitmap,
				 (unsigned long long)start, PAGE_RANGES);
		else
			snprintf(msg, sizeof(msg), "changes %llu %d",
				 (unsigned long long)start, PAGE_RANGES);
		if (fdm_message(dm_name, 0, msg, &resp))
			return fdm_errno() ? -fdm_errno() : -EIO;
		r = parse_changes_page(resp, start, &next, page_range, &p);
		free(resp);
		if (r)
			return r == -EINVAL ? -EBADMSG : r;
		start = next;
	}
	return 0;
}

struct print_ctx {
	struct json *j;
	uint64_t ranges;
	uint64_t bytes;
};

static int print_range(uint64_t off, uint64_t len, void *arg)
{
	struct print_ctx *p = arg;

	p->ranges++;
	p->bytes += len;
	if (p->j) {
		json_obj_begin(p->j, NULL);
		json_u64(p->j, "offset", off);
		json_u64(p->j, "length", len);
		json_obj_end(p->j);
	} else {
		printf("%llu %llu\n", (unsigned long long)off, (unsigned long long)len);
	}
	return 0;
}

int cmd_changes(int argc, char **argv)
{
	char name[NAME_LEN], what[256];
	const char *bitmap = NULL;
	struct print_ctx pc = { 0 };
	uint64_t chunk, size;
	struct fl_origin o;
	struct fl_view v;
	struct json j;
	int c, r, json = 0;
	dev_t devt;

	c = simple_options(argc, argv, &json);
	if (c >= 0)
		return c;
	if (argc - optind < 1 || argc - optind > 2)
		return usage_error(argv[0], "needs NAME BITMAP (a fleece-origin device and "
				   "one of its bitmaps) or VIEW (an incremental view)");
	if (resolve_dm_arg("changes", argv[optind], name, sizeof(name), &devt))
		return EXIT_ERR;

	if (!get_view(name, &v, what, sizeof(what))) {
		if (argc - optind == 2 && (!v.have_status ||
					   strcmp(argv[optind + 1], v.status.bitmap))) {
			msg_err("changes %s: the view's bitmap is '%s', not '%s'", name,
				v.have_status && v.status.bitmap[0] ? v.status.bitmap : "-",
				argv[optind + 1]);
			return EXIT_ERR;
		}
		if (!v.have_status || v.status.txn == TXN_NONE) {
			msg_err("changes %s: the view has no bitmap (a snapshot without "
				"--bitmap): every byte is part of its backup", name);
			return EXIT_ERR;
		}
		chunk = v.status.chunk_sectors << 9;
		size = v.sectors << 9;
	} else if (!get_origin(name, &o, what, sizeof(what))) {
		if (argc - optind != 2)
			return usage_error(argv[0], "%s is a %s device: name one of its bitmaps",
					   name, TARGET_ORIGIN);
		bitmap = argv[optind + 1];
		if (!valid_bitmap_name(bitmap)) {
			msg_err("changes %s: '%s' is not a valid bitmap name", name, bitmap);
			return EXIT_ERR;
		}
		chunk = o.table.chunk_sectors << 9;
		size = o.sectors << 9;
	} else {
		msg_fail(EXIT_NODEV, "changes %s: not a %s device or a %s view", name,
			 TARGET_ORIGIN, TARGET_VIEW);
		return EXIT_ERR;
	}

	if (json) {
		json_init(&j, stdout);
		json_obj_begin(&j, NULL);
		json_str(&j, "device", name);
		json_str(&j, "bitmap", bitmap ? bitmap : v.status.bitmap);
		json_str(&j, "kind", bitmap ? "live bitmap" : "backup transaction");
		json_u64(&j, "chunk_bytes", chunk);
		json_u64(&j, "size_bytes", size);
		json_arr_begin(&j, "ranges");
		pc.j = &j;
	}
	r = changes_foreach(name, bitmap, chunk, size, print_range, &pc);
	if (r) {
		fflush(stdout);
		if (r == -ENOENT && bitmap)
			msg_err("changes %s: no bitmap '%s'", name, bitmap);
		else if (r == -ENOENT)
			msg_fail(EXIT_INVALID, "changes %s: the view's backup transaction has "
				 "ended (its %s was removed)", name, TARGET_ORIGIN);
		else if (r == -EBADMSG || r == -ERANGE)
			msg_err("changes %s: the kernel's answer is not understood", name);
		else
			msg_fail(errno_exit_code(r), "changes %s: %s", name, strerror(-r));
	}
	if (json) {
		json_arr_end(&j);
		json_u64(&j, "nr_ranges", pc.ranges);
		json_u64(&j, "changed_bytes", pc.bytes);
		/* The ranges listed before the failure, and why they stop. */
		if (r)
			json_error(&j, msg_exit_code(EXIT_ERR));
		json_obj_end(&j);
	}
	return r ? EXIT_ERR : EXIT_OK;
}
