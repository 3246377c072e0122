// SPDX-License-Identifier: GPL-2.0
/*
 * /etc/fleecetab: parsing and checking (the format is in fleecetab.h and
 * Documentation/fleecetab.5).
 *
 * A tab with any error is refused as a whole: 'fleecectl up' at boot then
 * changes nothing rather than set up some origins from a file it may have
 * misread. Every error is reported, not only the first, so one edit fixes
 * them all.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleecectl.h"
#include "fleecetab.h"
#include "util.h"

#define BLANKS " \t\r\v\f\n"

static int why_set(char *why, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int why_set(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Names become /dev/mapper names, unit names (fleece@NAME.service) and
 * command-line arguments: keep to characters that are safe in all three.
 */
static int check_name(const char *s, char *why, size_t len)
{
	size_t i, n = strlen(s);

	if (n > TAB_NAME_MAX)
		return why_set(why, len, "NAME '%.32s...' is longer than %d characters",
			       s, TAB_NAME_MAX);
	if (s[0] == '-' || !strcmp(s, ".") || !strcmp(s, ".."))
		return why_set(why, len, "NAME '%s' must not be '.', '..' or start with '-'", s);
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_.+-", s[i]))
			return why_set(why, len, "NAME '%s' has the character '%c' (use A-Z a-z "
				       "0-9 _ . + -)", s, isprint((unsigned char)s[i]) ? s[i] : '?');
	return 0;
}

static int copy_path(char *dst, size_t dlen, const char *field, const char *s,
		     char *why, size_t len)
{
	if (s[0] != '/')
		return why_set(why, len, "%s '%s' is not an absolute path", field, s);
	if (strlen(s) >= dlen)
		return why_set(why, len, "%s is too long", field);
	strcpy(dst, s);
	return 0;
}

/* bitmaps=a+b+c */
static int parse_bitmaps(char *v, struct tab_entry *e, char *why, size_t len)
{
	char *b, *save = NULL;
	unsigned int i;

	if (!*v)
		return why_set(why, len, "bitmaps= names no bitmap");
	for (b = strtok_r(v, "+", &save); b; b = strtok_r(NULL, "+", &save)) {
		if (!valid_bitmap_name(b))
			return why_set(why, len, "'%s' is not a valid bitmap name: 1 to %d of "
				       "A-Z a-z 0-9 _ . -", b, BITMAP_NAME_MAX);
		for (i = 0; i < e->nr_bitmaps; i++)
			if (!strcmp(e->bitmaps[i], b))
				return why_set(why, len, "bitmap '%s' named twice", b);
		if (e->nr_bitmaps == MAX_BITMAPS)
			return why_set(why, len, "more than %d bitmaps", MAX_BITMAPS);
		strcpy(e->bitmaps[e->nr_bitmaps++], b);
	}
	if (!e->nr_bitmaps)
		return why_set(why, len, "bitmaps= names no bitmap");
	return 0;
}

/* mode=create|attach,chunk-size=SIZE,bitmaps=a+b,noauto; mode= is required. */
static int parse_options(char *opts, struct tab_entry *e, char *why, size_t len)
{
	enum { O_MODE, O_CHUNK, O_BITMAPS, O_NOAUTO, NR_OPTS };
	static const char *const names[NR_OPTS] = { "mode", "chunk-size", "bitmaps", "noauto" };
	int seen[NR_OPTS] = { 0 };
	char *item, *val, *p = opts;
	const char *reason;
	int o;

	/* strtok would take ",," for one comma: split by hand. */
	for (item = p; item; item = p) {
		p = strchr(item, ',');
		if (p)
			*p++ = '\0';
		if (!*item)
			return why_set(why, len, "an empty option (a comma too many?)");
		val = strchr(item, '=');
		if (val)
			*val++ = '\0';
		for (o = 0; o < NR_OPTS; o++)
			if (!strcmp(item, names[o]))
				break;
		if (o == NR_OPTS)
			return why_set(why, len, "unknown option '%s' (known: mode=, chunk-size=, "
				       "bitmaps=, noauto)", item);
		if (seen[o]++)
			return why_set(why, len, "option '%s' given twice", item);
		if ((o == O_NOAUTO) != !val)
			return why_set(why, len, o == O_NOAUTO ? "option '%s' takes no value" :
				       "option '%s' needs a value ('%s=...')", item, item);
		switch (o) {
		case O_MODE:
			if (!strcmp(val, "create"))
				e->mode = TAB_CREATE;
			else if (!strcmp(val, "attach"))
				e->mode = TAB_ATTACH;
			else
				return why_set(why, len, "mode '%s' is neither 'create' nor 'attach'",
					       val);
			break;
		case O_CHUNK:
			if (parse_chunk_size(val, &e->chunk_sectors, &reason))
				return why_set(why, len, "chunk-size '%s': %s", val, reason);
			break;
		case O_BITMAPS:
			if (parse_bitmaps(val, e, why, len))
				return -1;
			break;
		case O_NOAUTO:
			e->noauto = 1;
			break;
		}
	}
	/*
	 * No default mode: create over an LV that fstab mounts by its own path
	 * would leave every write untracked, attach over a disk fails. Say it.
	 */
	if (!seen[O_MODE])
		return why_set(why, len, "no mode= option (mode=create for a disk or "
			       "partition, mode=attach for a device-mapper device such as an LV)");
	return 0;
}

int fleecetab_parse_line(char *line, struct tab_entry *e, char *why, size_t len)
{
	char *f[5], *w, *save = NULL;
	int n = 0;

	memset(e, 0, sizeof(*e));
	e->chunk_sectors = DEFAULT_CHUNK_BYTES >> 9;
	for (w = strtok_r(line, BLANKS, &save); w && w[0] != '#';
	     w = strtok_r(NULL, BLANKS, &save)) {
		if (n == 4)
			return why_set(why, len, "more than 4 fields (NAME DEVICE META OPTIONS; "
				       "options are one comma-separated field)");
		f[n++] = w;
	}
	if (!n)
		return 0;
	if (n < 4)
		return why_set(why, len, "%d field%s, expected 4: NAME DEVICE META OPTIONS",
			       n, n == 1 ? "" : "s");
	if (check_name(f[0], why, len))
		return -1;
	strcpy(e->name, f[0]);
	if (copy_path(e->device, sizeof(e->device), "DEVICE", f[1], why, len))
		return -1;
	if (strcmp(f[2], "-") &&
	    copy_path(e->meta, sizeof(e->meta), "META", f[2], why, len))
		return -1;
	if (!strcmp(e->device, e->meta))
		return why_set(why, len, "META is DEVICE (%s)", e->device);
	return parse_options(f[3], e, why, len) ? -1 : 1;
}

/* Another entry names what @e names: the reason, or 0. */
static int check_unique(const struct fleecetab *t, const struct tab_entry *e,
			char *why, size_t len)
{
	const struct tab_entry *o;
	unsigned int i;

	for (i = 0; i < t->n; i++) {
		o = &t->e[i];
		if (!strcmp(o->name, e->name))
			return why_set(why, len, "NAME '%s' is on line %u already", e->name,
				       o->line);
		if (!strcmp(o->device, e->device))
			return why_set(why, len, "DEVICE %s is on line %u already", e->device,
				       o->line);
		/* A metadata device holds the bitmaps of one origin. */
		if (e->meta[0] && (!strcmp(o->meta, e->meta) || !strcmp(o->device, e->meta)))
			return why_set(why, len, "META %s is on line %u already", e->meta,
				       o->line);
		if (o->meta[0] && !strcmp(o->meta, e->device))
			return why_set(why, len, "DEVICE %s is the META of line %u", e->device,
				       o->line);
	}
	return 0;
}

void fleecetab_free(struct fleecetab *t)
{
	free(t->e);
	t->e = NULL;
	t->n = 0;
}

int fleecetab_read(FILE *f, const char *path, struct fleecetab *t)
{
	struct tab_entry e, *ne;
	char *line = NULL, why[512];
	unsigned int nr = 0, errors = 0;
	size_t cap = 0;
	ssize_t got;
	int r;

	memset(t, 0, sizeof(*t));
	str_copy(t->path, sizeof(t->path), path);
	while ((got = getline(&line, &cap, f)) >= 0) {
		nr++;
		if (got > TAB_LINE_MAX) {
			msg_err("%s:%u: line longer than %d bytes", path, nr, TAB_LINE_MAX);
			errors++;
			continue;
		}
		if (strlen(line) != (size_t)got) {
			msg_err("%s:%u: a NUL byte in the line", path, nr);
			errors++;
			continue;
		}
		r = fleecetab_parse_line(line, &e, why, sizeof(why));
		if (r > 0) {
			e.line = nr;
			r = check_unique(t, &e, why, sizeof(why)) ? -1 : 1;
		}
		if (r < 0) {
			msg_err("%s:%u: %s", path, nr, why);
			errors++;
			continue;
		}
		if (!r)
			continue;
		ne = realloc(t->e, (t->n + 1) * sizeof(*ne));
		if (!ne) {
			msg_err("%s: out of memory", path);
			errors++;
			break;
		}
		t->e = ne;
		t->e[t->n++] = e;
	}
	if (ferror(f)) {
		msg_err("%s: read error after line %u", path, nr);
		errors++;
	}
	free(line);
	if (errors) {
		msg_err("%s: %u error%s; nothing done", path, errors, errors == 1 ? "" : "s");
		fleecetab_free(t);
		return -1;
	}
	return 0;
}

int fleecetab_load(const char *path, struct fleecetab *t)
{
	FILE *f = fopen(path, "re");
	int r;

	memset(t, 0, sizeof(*t));
	if (!f) {
		msg_err("%s: %s", path, strerror(errno));
		return -1;
	}
	r = fleecetab_read(f, path, t);
	fclose(f);
	return r;
}

const char *fleecetab_path(const char *opt)
{
	const char *env = getenv(FLEECETAB_ENV);

	if (opt)
		return opt;
	return env && *env ? env : FLEECETAB_DEFAULT;
}

const struct tab_entry *fleecetab_find(const struct fleecetab *t, const char *name)
{
	unsigned int i;

	for (i = 0; i < t->n; i++)
		if (!strcmp(t->e[i].name, name))
			return &t->e[i];
	return NULL;
}

const char *tab_mode_name(enum tab_mode m)
{
	return m == TAB_ATTACH ? "attach" : "create";
}
