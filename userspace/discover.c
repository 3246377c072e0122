// SPDX-License-Identifier: GPL-2.0
/*
 * Finding fleece-origin devices and views, and matching them up.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "blockdev.h"
#include "discover.h"
#include "dm.h"
#include "fleecectl.h"

/* "its table is linear", "its table has 3 targets", "it has no table" */
static void describe(const struct fdm_table *t, char *what, size_t len)
{
	if (!t->n)
		snprintf(what, len, "it has no table");
	else if (t->n == 1)
		snprintf(what, len, "its table is %s", t->t[0].type);
	else
		snprintf(what, len, "its table has %u targets (%s, ...)", t->n,
			 t->t[0].type);
}

static int find_target(const struct fdm_table *t, const char *type)
{
	unsigned int i;

	for (i = 0; i < t->n; i++)
		if (!strcmp(t->t[i].type, type))
			return (int)i;
	return -1;
}

/* The fleece-origin part of a device whose table has one. */
static int fill_origin(const char *name, const struct dm_info *info,
		       const struct fdm_table *t, int idx, struct fl_origin *o)
{
	struct fdm_table st;
	char real[NAME_LEN];
	int si;

	memset(o, 0, sizeof(*o));
	snprintf(o->name, sizeof(o->name), "%s", name);
	o->devt = makedev(info->major, info->minor);
	o->suspended = info->suspended;
	o->open_count = info->open_count;
	o->sectors = t->t[idx].len;
	o->single = t->n == 1 && t->t[0].start == 0;
	if (parse_origin_table(t->t[idx].params, &o->table))
		return -EINVAL;
	if (bdev_resolve_arg(o->table.origin, &o->origin_devt))
		o->origin_devt = 0;
	if (strcmp(o->table.meta, "-") &&
	    bdev_resolve_arg(o->table.meta, &o->meta_devt))
		o->meta_devt = 0;

	if (!fdm_table_get(name, &st, 1, 0)) {
		si = find_target(&st, TARGET_ORIGIN);
		if (si >= 0 && !parse_origin_status(st.t[si].params, &o->status))
			o->have_status = 1;
		fdm_table_free(&st);
	}

	if (o->origin_devt && !fdm_name_of(o->origin_devt, real, sizeof(real)) &&
	    strlen(name) + strlen(REAL_SUFFIX) < sizeof(real)) {
		char want[NAME_LEN];

		snprintf(want, sizeof(want), "%s%s", name, REAL_SUFFIX);
		if (!strcmp(want, real)) {
			o->attached = 1;
			snprintf(o->real_name, sizeof(o->real_name), "%s", real);
		}
	}
	return 0;
}

static int fill_view(const char *name, const struct dm_info *info,
		     const struct fdm_table *t, int idx, struct fl_view *v)
{
	struct fdm_table st;
	int si;

	memset(v, 0, sizeof(*v));
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->devt = makedev(info->major, info->minor);
	v->open_count = info->open_count;
	v->sectors = t->t[idx].len;
	v->single = t->n == 1 && t->t[0].start == 0;
	v->origin = -1;
	if (parse_view_table(t->t[idx].params, &v->table))
		return -EINVAL;
	if (bdev_resolve_arg(v->table.origin, &v->origin_devt))
		v->origin_devt = 0;
	if (bdev_resolve_arg(v->table.scratch, &v->scratch_devt))
		v->scratch_devt = 0;
	if (!fdm_table_get(name, &st, 1, 0)) {
		si = find_target(&st, TARGET_VIEW);
		if (si >= 0 && !parse_view_status(st.t[si].params, &v->status))
			v->have_status = 1;
		fdm_table_free(&st);
	}
	return 0;
}

/* Read one device's info and table. Returns 0, -ENOENT or -EIO. */
static int read_device(const char *name, struct dm_info *info, struct fdm_table *t)
{
	if (fdm_info(name, info))
		return -EIO;
	if (!info->exists)
		return -ENOENT;
	if (!info->live_table) {
		memset(t, 0, sizeof(*t));
		return 0;
	}
	if (fdm_table_get(name, t, 0, FDM_SECURE))
		return -EIO;
	return 0;
}

int get_origin(const char *name, struct fl_origin *o, char *what, size_t len)
{
	struct dm_info info;
	struct fdm_table t;
	int r, idx;

	r = read_device(name, &info, &t);
	if (r)
		return r;
	idx = find_target(&t, TARGET_ORIGIN);
	if (idx < 0) {
		describe(&t, what, len);
		r = -EMEDIUMTYPE;
	} else if (fill_origin(name, &info, &t, idx, o)) {
		snprintf(what, len, "its %s table cannot be parsed", TARGET_ORIGIN);
		r = -EMEDIUMTYPE;
	}
	fdm_table_free(&t);
	return r;
}

int get_view(const char *name, struct fl_view *v, char *what, size_t len)
{
	struct dm_info info;
	struct fdm_table t;
	int r, idx;

	r = read_device(name, &info, &t);
	if (r)
		return r;
	idx = find_target(&t, TARGET_VIEW);
	if (idx < 0) {
		describe(&t, what, len);
		r = -EMEDIUMTYPE;
	} else if (fill_view(name, &info, &t, idx, v)) {
		snprintf(what, len, "its %s table cannot be parsed", TARGET_VIEW);
		r = -EMEDIUMTYPE;
	}
	fdm_table_free(&t);
	return r;
}

void scan_free(struct fl_scan *s)
{
	free(s->origins);
	free(s->views);
	memset(s, 0, sizeof(*s));
}

int scan_all(struct fl_scan *s)
{
	struct fl_origin o, *no;
	struct fl_view v, *nv;
	struct dm_info info;
	struct fdm_table t;
	unsigned int n, i, j;
	char **names;
	int idx;

	memset(s, 0, sizeof(*s));
	if (fdm_list(&names, &n))
		return -1;
	for (i = 0; i < n; i++) {
		/* A device removed meanwhile is simply not listed. */
		if (read_device(names[i], &info, &t))
			continue;
		idx = find_target(&t, TARGET_ORIGIN);
		if (idx >= 0 && !fill_origin(names[i], &info, &t, idx, &o)) {
			no = realloc(s->origins, (s->nr_origins + 1) * sizeof(*no));
			if (!no)
				goto nomem;
			s->origins = no;
			no[s->nr_origins++] = o;
		}
		idx = find_target(&t, TARGET_VIEW);
		if (idx >= 0 && !fill_view(names[i], &info, &t, idx, &v)) {
			nv = realloc(s->views, (s->nr_views + 1) * sizeof(*nv));
			if (!nv)
				goto nomem;
			s->views = nv;
			nv[s->nr_views++] = v;
		}
		fdm_table_free(&t);
	}
	fdm_list_free(names, n);

	for (i = 0; i < s->nr_views; i++)
		for (j = 0; j < s->nr_origins; j++)
			if (s->views[i].origin_devt &&
			    s->views[i].origin_devt == s->origins[j].origin_devt) {
				s->views[i].origin = (int)j;
				break;
			}
	return 0;
nomem:
	fdm_table_free(&t);
	fdm_list_free(names, n);
	scan_free(s);
	errno = ENOMEM;
	return -1;
}

void views_on(const struct fl_scan *s, dev_t origin_devt, char *buf, size_t len)
{
	unsigned int i;
	size_t o = 0;

	buf[0] = '\0';
	for (i = 0; i < s->nr_views && o < len; i++)
		if (s->views[i].origin_devt == origin_devt)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ", " : "",
					      s->views[i].name);
}
