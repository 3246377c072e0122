// SPDX-License-Identifier: GPL-2.0
/*
 * up, down and tab: apply /etc/fleecetab (fleecetab.h), undo it, or show
 * what applying it would do.
 *
 * up is what boot runs (systemd/fleecetab-generator), before anything
 * mounts the devices. It is idempotent: an origin already set up as the tab
 * says is left alone and reported, and only the missing bitmaps are added.
 * One that is set up differently is an error, never changed: fleecectl
 * cannot tell which of the two the admin wants.
 *
 * At boot, up vouches for the gap between the last shutdown and now
 * (struct origin_opts.no_gap): nothing could have written the device
 * through another path, so the kernel may keep the bitmaps trusted. down
 * keeps that true: it does not detach a device that is still open, and
 * only with --shutdown (the units' ExecStop) does it declare the detach
 * clean; any other detach leaves the bitmaps untrusted at the next attach,
 * since whatever is written after it would be in no bitmap.
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
#include "fleecetab.h"
#include "lock.h"
#include "origin.h"
#include "util.h"

struct tab_args {
	const char *cmd;	/* "up", "down", "tab" */
	const char *tab;	/* --tab FILE, or NULL */
	int dry_run;
	int no_vouch;
	int force;
	int shutdown;	/* down --shutdown: the system goes down: a clean detach */
};

/* A device as a table names it, for messages: "8:16" or the path. */
static const char *meta_word(const struct fl_origin *o)
{
	return o->table.meta[0] ? o->table.meta : "-";
}

/* The tab's META and chunk size must be what @o has; else say so. */
static int same_setup(const struct tab_entry *e, const char *dm, const struct fl_origin *o)
{
	dev_t mdevt;
	int r;

	if (!e->meta[0] && strcmp(meta_word(o), "-")) {
		msg_err("up %s: %s is up with the metadata device %s, but the tab gives none; "
			"'fleecectl down %s' first to change it", e->name, dm, meta_word(o),
			e->name);
		return -1;
	}
	if (e->meta[0]) {
		r = bdev_devt(e->meta, &mdevt);
		if (r) {
			msg_err("up %s: metadata device %s: %s", e->name, e->meta,
				r == -ENOTBLK ? "not a block device" : strerror(-r));
			return -1;
		}
		if (!o->meta_devt || o->meta_devt != mdevt) {
			msg_err("up %s: %s is up with the metadata device %s, not %s (%u:%u); "
				"'fleecectl down %s' first to change it", e->name, dm,
				meta_word(o), e->meta, major(mdevt), minor(mdevt), e->name);
			return -1;
		}
	}
	if (o->table.chunk_sectors != e->chunk_sectors) {
		msg_err("up %s: %s is up with %llu KiB chunks, not %llu KiB; "
			"'fleecectl down %s' first to change it", e->name, dm,
			(unsigned long long)o->table.chunk_sectors / 2,
			(unsigned long long)e->chunk_sectors / 2, e->name);
		return -1;
	}
	return 0;
}

/*
 * Is @e up already? 1: yes, as the tab says (*o describes it); 0: not
 * up; -1: something else is in the way (printed). @dm gets the name of
 * the device that is (or will be) the fleece-origin.
 */
static int probe(const struct tab_entry *e, char *dm, size_t len, struct fl_origin *o)
{
	char what[256], cmd[TAB_NAME_MAX + 8];
	dev_t devt;
	int r;

	if (e->mode == TAB_CREATE) {
		str_copy(dm, len, e->name);
		r = get_origin(dm, o, what, sizeof(what));
		if (r == -ENOENT)
			return 0;
		if (r == -EMEDIUMTYPE) {
			msg_err("up %s: /dev/mapper/%s exists and is not a %s device (%s)",
				e->name, dm, TARGET_ORIGIN, what);
			return -1;
		}
		if (r) {
			msg_err("up %s: %s", e->name, fdm_error());
			return -1;
		}
		if (o->attached) {
			msg_err("up %s: /dev/mapper/%s is attached over %s, but the tab says "
				"mode=create", e->name, dm, o->real_name);
			return -1;
		}
		r = bdev_devt(e->device, &devt);
		if (r) {
			msg_err("up %s: device %s: %s", e->name, e->device,
				r == -ENOTBLK ? "not a block device" : strerror(-r));
			return -1;
		}
		if (devt != o->origin_devt) {
			msg_err("up %s: /dev/mapper/%s is a %s device over %s, not over %s "
				"(%u:%u); 'fleecectl down %s' first", e->name, dm, TARGET_ORIGIN,
				o->table.origin, e->device, major(devt), minor(devt), e->name);
			return -1;
		}
	} else {
		snprintf(cmd, sizeof(cmd), "up %s:", e->name);
		if (resolve_dm_arg(cmd, e->device, dm, len, &devt))
			return -1;
		r = get_origin(dm, o, what, sizeof(what));
		if (r == -EMEDIUMTYPE)
			return 0;
		if (r) {
			msg_err("up %s: %s: %s", e->name, dm,
				r == -ENOENT ? "no such device" : fdm_error());
			return -1;
		}
		if (!o->attached) {
			msg_err("up %s: %s is a %s device over %s, not attached by fleecectl; "
				"the tab says mode=attach", e->name, dm, TARGET_ORIGIN,
				o->table.origin);
			return -1;
		}
	}
	return same_setup(e, dm, o) ? -1 : 1;
}

/*
 * The tab's bitmaps that @dm lacks: added (or, dry, listed). @fresh: the
 * origin is not made yet (dry run), so it has none.
 */
static int bitmaps_up(const struct tab_entry *e, const char *dm, int fresh, int dry)
{
	struct fl_origin o;
	char what[256];
	unsigned int i, j;
	int have, rc = 0;

	if (!e->nr_bitmaps)
		return 0;
	if (!fresh) {
		if (get_origin(dm, &o, what, sizeof(what)) || !o.have_status ||
		    !o.status.have_tracking) {
			msg_err("up %s: cannot read the bitmaps of %s: %s", e->name, dm,
				fdm_error());
			return -1;
		}
		if (o.status.gap)
			msg_warn("up %s: the bitmaps of %s are untrusted (gap: attached after "
				 "a time in which writes could pass it): take a full backup",
				 e->name, dm);
		else if (o.status.lost)
			msg_warn("up %s: tracking is lost on %s (a metadata write failed): "
				 "take a full backup", e->name, dm);
	}
	for (i = 0; i < e->nr_bitmaps; i++) {
		have = 0;
		for (j = 0; !fresh && j < o.status.nr_bitmaps; j++)
			if (!strcmp(o.status.bitmaps[j].name, e->bitmaps[i]))
				have = 1;
		if (have) {
			printf("%s: bitmap %s exists\n", e->name, e->bitmaps[i]);
		} else if (dry) {
			printf("%s: would add bitmap %s\n", e->name, e->bitmaps[i]);
		} else if (bitmap_add(dm, e->bitmaps[i])) {
			rc = -1;
		} else {
			printf("%s: added bitmap %s\n", e->name, e->bitmaps[i]);
		}
	}
	return rc;
}

static int entry_up(const struct tab_entry *e, const struct tab_args *a)
{
	struct origin_opts opts = {
		.meta = e->meta[0] ? e->meta : NULL,
		.chunk_sectors = e->chunk_sectors,
		.no_gap = !a->no_vouch,
		.dry_run = a->dry_run,
	};
	char dm[NAME_LEN], params[2 * PATH_MAX + 64], table[ORIGIN_TABLE_LEN];
	struct fl_origin o;
	int up;

	up = probe(e, dm, sizeof(dm), &o);
	if (up < 0)
		return -1;
	if (up) {
		if (build_origin_table(&o.table, params, sizeof(params)))
			str_copy(params, sizeof(params), "?");
		origin_table_line(table, sizeof(table), o.sectors, params);
		printf("%s: up already, left alone: %s: %s\n", e->name, dm, table);
	} else if (e->mode == TAB_CREATE) {
		if (origin_create(e->name, e->device, &opts, table, sizeof(table)))
			return -1;
		printf("%s: %s /dev/mapper/%s over %s: %s\n", e->name,
		       a->dry_run ? "would create" : "created", e->name, e->device, table);
	} else {
		if (origin_attach(dm, &opts, table, sizeof(table)))
			return -1;
		printf("%s: %s %s (%s): %s\n", e->name,
		       a->dry_run ? "would attach under" : "attached under", dm, e->device,
		       table);
	}
	return bitmaps_up(e, dm, !up && a->dry_run, a->dry_run);
}

static int entry_down(const struct tab_entry *e, const struct tab_args *a)
{
	char dm[NAME_LEN], what[256], cmd[TAB_NAME_MAX + 8];
	struct fl_origin o;
	dev_t devt;
	int r, open;

	if (e->mode == TAB_CREATE) {
		r = get_origin(e->name, &o, what, sizeof(what));
		if (r == -ENOENT) {
			printf("%s: not up (no /dev/mapper/%s)\n", e->name, e->name);
			return 0;
		}
		if (r) {
			msg_err("down %s: /dev/mapper/%s: %s; not removing it", e->name, e->name,
				r == -EMEDIUMTYPE ? what : fdm_error());
			return -1;
		}
		/* The device may be gone: systemd stops the unit when it is unplugged. */
		if (!bdev_devt(e->device, &devt) && devt != o.origin_devt) {
			msg_err("down %s: /dev/mapper/%s is over %s, not over %s; not removing it",
				e->name, e->name, o.table.origin, e->device);
			return -1;
		}
		if (origin_remove(e->name, a->dry_run, a->shutdown))
			return -1;
		printf("%s: %s /dev/mapper/%s\n", e->name,
		       a->dry_run ? "would remove" : "removed", e->name);
		return 0;
	}

	r = fdm_resolve(e->device, dm, sizeof(dm), &devt);
	if (r == -ENOENT) {
		printf("%s: not up (no %s)\n", e->name, e->device);
		return 0;
	}
	snprintf(cmd, sizeof(cmd), "down %s:", e->name);
	if (r && resolve_dm_arg(cmd, e->device, dm, sizeof(dm), &devt))
		return -1;
	r = get_origin(dm, &o, what, sizeof(what));
	if (r == -EMEDIUMTYPE || r == -ENOENT) {
		printf("%s: not up (%s is no %s device)\n", e->name, dm, TARGET_ORIGIN);
		return 0;
	}
	if (r) {
		msg_err("down %s: %s: %s", e->name, dm, fdm_error());
		return -1;
	}
	if (!o.attached) {
		msg_err("down %s: %s is a %s device not attached by fleecectl; not detaching it",
			e->name, dm, TARGET_ORIGIN);
		return -1;
	}
	open = o.open_count ? fdm_open_count_settled(dm, 0) : 0;
	if (open < 0) {
		msg_err("down %s: %s: %s", e->name, dm, fdm_error());
		return -1;
	}
	if (open && !a->force) {
		msg_fail(EXIT_BUSY, "down %s: %s is in use (open %d time%s: mounted?): what is "
			 "written after a detach goes into no bitmap, and the next 'fleecectl up' "
			 "vouches that nothing was; unmount it first, or give --force", e->name,
			 dm, open, open == 1 ? "" : "s");
		return -1;
	}
	/*
	 * Forced while open: writes may go on after the detach, into no
	 * bitmap. Not a clean detach then, whatever --shutdown says: the next
	 * up must not vouch for the bitmaps.
	 */
	if (open && a->shutdown)
		msg_warn("down %s: %s is open (--force): not declared a clean detach; "
			 "take a full backup after the next up", e->name, dm);
	if (origin_detach(dm, a->dry_run, a->shutdown && !open))
		return -1;
	printf("%s: %s %s\n", e->name, a->dry_run ? "would detach" : "detached", dm);
	return 0;
}

static int tab_options(int argc, char **argv, struct tab_args *a)
{
	static const struct option opts[] = {
		{ "tab", required_argument, NULL, 't' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "no-vouch", no_argument, NULL, 'N' },
		{ "force", no_argument, NULL, 'f' },
		{ "shutdown", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c, down = !strcmp(a->cmd, "down");

	optind = 0;
	while ((c = cmd_getopt(argc, argv, "nh", opts)) != -1) {
		switch (c) {
		case 't':
			a->tab = optarg;
			break;
		case 'n':
			a->dry_run = 1;
			break;
		case 'N':
			if (down)
				return usage_error(argv[0], "--no-vouch goes with up and tab");
			a->no_vouch = 1;
			break;
		case 'f':
			if (!down)
				return usage_error(argv[0], "--force goes with down only");
			a->force = 1;
			break;
		case 'S':
			if (!down)
				return usage_error(argv[0], "--shutdown goes with down only");
			a->shutdown = 1;
			break;
		default:
			return option_end(c, argv[0]);
		}
	}
	return -1;
}

/*
 * The entries named on the command line (each must be in the tab), or with
 * none all of them but, for up, those marked noauto. Returns a malloc'ed
 * array of flags, one per entry, or NULL (printed).
 */
static char *select_entries(const struct fleecetab *t, const struct tab_args *a,
			    int argc, char **argv)
{
	const struct tab_entry *e;
	char *sel = calloc(t->n + 1, 1);
	unsigned int i;
	int k, bad = 0;

	if (!sel) {
		msg_err("%s: out of memory", a->cmd);
		return NULL;
	}
	for (k = optind; k < argc; k++) {
		e = fleecetab_find(t, argv[k]);
		if (!e) {
			msg_err("%s %s: not in %s", a->cmd, argv[k], t->path);
			bad = 1;
			continue;
		}
		sel[e - t->e] = 1;
	}
	if (bad) {
		free(sel);
		return NULL;
	}
	if (optind < argc)
		return sel;
	for (i = 0; i < t->n; i++) {
		/* down undoes whatever is up, noauto or not. */
		sel[i] = !strcmp(a->cmd, "down") || !t->e[i].noauto;
		if (!sel[i])
			printf("%s: noauto: skipped ('fleecectl up %s' sets it up)\n",
			       t->e[i].name, t->e[i].name);
	}
	return sel;
}

static int run_tab(int argc, char **argv, struct tab_args *a)
{
	struct fleecetab t;
	unsigned int i, k, failed = 0;
	int down = !strcmp(a->cmd, "down"), c;
	char *sel;

	c = tab_options(argc, argv, a);
	if (c >= 0)
		return c;
	/* tab is 'up --dry-run': what a boot would do. */
	if (!strcmp(a->cmd, "tab"))
		a->dry_run = 1;
	if (fleecetab_load(fleecetab_path(a->tab), &t))
		return EXIT_ERR;
	sel = select_entries(&t, a, argc, argv);
	if (!sel) {
		fleecetab_free(&t);
		return EXIT_ERR;
	}
	if (!t.n)
		printf("%s: no origins\n", t.path);
	if (!a->dry_run)
		lock_take();
	/* down undoes in the reverse order. */
	for (k = 0; k < t.n; k++) {
		i = down ? t.n - 1 - k : k;
		if (!sel[i])
			continue;
		if (down ? entry_down(&t.e[i], a) : entry_up(&t.e[i], a))
			failed++;
	}
	free(sel);
	fleecetab_free(&t);
	return failed ? EXIT_ERR : EXIT_OK;
}

int cmd_up(int argc, char **argv)
{
	struct tab_args a = { .cmd = "up" };

	return run_tab(argc, argv, &a);
}

int cmd_down(int argc, char **argv)
{
	struct tab_args a = { .cmd = "down" };

	return run_tab(argc, argv, &a);
}

int cmd_tab(int argc, char **argv)
{
	struct tab_args a = { .cmd = "tab" };

	return run_tab(argc, argv, &a);
}
