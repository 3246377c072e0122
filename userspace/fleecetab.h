/* SPDX-License-Identifier: GPL-2.0 */
/*
 * /etc/fleecetab: the fleece-origin devices 'fleecectl up' sets up at boot
 * (Documentation/fleecetab.5). One origin per line, four fields separated
 * by blanks; a word that starts with '#' starts a comment:
 *
 *   NAME  DEVICE  META  OPTIONS
 *   data  /dev/vg/data  /dev/disk/by-id/wwn-0x5000c500a1b2c3d4  mode=attach,bitmaps=nightly
 *
 * Pure string handling, no libdevmapper: unit-tested on the host. Devices
 * are not looked at here (at boot they may not exist yet).
 */
#ifndef FLEECECTL_FLEECETAB_H
#define FLEECECTL_FLEECETAB_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "parse.h"

#define FLEECETAB_DEFAULT "/etc/fleecetab"
/* The environment variable that overrides it (tests), below --tab. */
#define FLEECETAB_ENV "FLEECETAB"

/* A NAME is 1 to 127 of [A-Za-z0-9_.+-], not starting with '-'. */
#define TAB_NAME_MAX 127
/* Longer lines are refused rather than cut. */
#define TAB_LINE_MAX 4096

enum tab_mode {
	TAB_CREATE,	/* /dev/mapper/NAME over DEVICE, which nothing uses */
	TAB_ATTACH,	/* under DEVICE, a device-mapper device (an LVM LV) */
};

struct tab_entry {
	unsigned int line;
	char name[TAB_NAME_MAX + 1];
	char device[PATH_MAX];
	char meta[PATH_MAX];		/* "" for "-": volatile bitmaps */
	enum tab_mode mode;
	uint64_t chunk_sectors;
	unsigned int nr_bitmaps;
	char bitmaps[MAX_BITMAPS][BITMAP_NAME_MAX + 1];
	int noauto;			/* only 'up NAME' sets it up, not boot */
};

struct fleecetab {
	char path[PATH_MAX];
	struct tab_entry *e;
	unsigned int n;
};

/*
 * Parse one line, which is changed in place. Returns 1 with *e filled in
 * (but e->line), 0 for a blank or comment line, -1 with the reason in @why.
 */
int fleecetab_parse_line(char *line, struct tab_entry *e, char *why, size_t len);

/*
 * Read a whole tab from @f (@path names it in messages), checking each line
 * and that no NAME, DEVICE or META is given twice. Every error is printed,
 * "fleecectl: PATH:LINE: reason". Returns 0, or -1 when anything was wrong
 * (then *t is empty).
 */
int fleecetab_read(FILE *f, const char *path, struct fleecetab *t);

/* Open and read @path (see fleecetab_read); an open error is printed too. */
int fleecetab_load(const char *path, struct fleecetab *t);

void fleecetab_free(struct fleecetab *t);

/* Which tab to read: @opt (--tab) if not NULL, else $FLEECETAB, else the default. */
const char *fleecetab_path(const char *opt);

/* The entry named @name, or NULL. */
const struct tab_entry *fleecetab_find(const struct fleecetab *t, const char *name);

/* "create" / "attach" */
const char *tab_mode_name(enum tab_mode m);

#endif
