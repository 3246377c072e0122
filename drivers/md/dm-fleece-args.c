// SPDX-License-Identifier: GPL-2.0
/*
 * Argument parsing of both targets: constructor arguments and messages,
 * and the kept table line that STATUSTYPE_TABLE prints back exactly as it
 * was given.
 *
 * Nothing here touches a device or a target's state, so tests/unit and
 * tests/fuzz build this file in userspace.
 */
#include <linux/ctype.h>
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-fleece.h"

int fleece_table_save(struct fleece_table_line *line, unsigned int argc,
		      char **argv)
{
	size_t len = 0;
	unsigned int i;
	char *p;

	for (i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;

	line->text = kmalloc(len ? len : 1, GFP_KERNEL);
	if (!line->text)
		return -ENOMEM;

	p = line->text;
	*p = '\0';
	for (i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]);

		memcpy(p, argv[i], n);
		p += n;
		*p++ = (i + 1 < argc) ? ' ' : '\0';
	}
	return 0;
}

void fleece_table_free(struct fleece_table_line *line)
{
	kfree(line->text);
	line->text = NULL;
}

int fleece_parse_chunk_sectors(struct dm_target *ti, const char *arg,
			       sector_t *out)
{
	unsigned int v;

	if (kstrtouint(arg, 10, &v)) {
		ti->error = "Invalid chunk size: not a number";
		return -EINVAL;
	}
	if (!is_power_of_2(v)) {
		ti->error = "Invalid chunk size: not a power of two";
		return -EINVAL;
	}
	if (v < FLEECE_MIN_CHUNK_SECTORS) {
		ti->error = "Invalid chunk size: under 8 sectors";
		return -EINVAL;
	}
	if (v > FLEECE_MAX_CHUNK_SECTORS) {
		ti->error = "Invalid chunk size: over 2097152 sectors";
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/*
 * The count of an argument group: plain decimal digits, at most UINT_MAX.
 * dm_read_arg_group() would do, but its sscanf() skips leading blanks and
 * wraps around silently, so "4294967297" would count as 1.
 */
static int read_count(struct dm_target *ti, const struct dm_arg *arg,
		      struct dm_arg_set *as, unsigned int *value)
{
	const char *s = dm_shift_arg(as);
	size_t i;

	for (i = 0; s && s[i]; i++)
		if (!isdigit(s[i]))
			break;
	if (!s || s[i] || kstrtouint(s, 10, value) || *value < arg->min ||
	    *value > arg->max || *value > as->argc) {
		ti->error = arg->error;
		return -EINVAL;
	}
	return 0;
}

int fleece_parse_origin_features(struct dm_target *ti, struct dm_arg_set *as,
				 struct fleece_attach_opts *opts)
{
	static const struct dm_arg _args[] = {
		{0, 3, "Invalid number of feature arguments"},
	};
	unsigned int argc;
	const char *arg;
	int r;

	memset(opts, 0, sizeof(*opts));
	if (!as->argc)
		return 0;
	r = read_count(ti, _args, as, &argc);
	if (r)
		return r;
	while (argc) {
		arg = dm_shift_arg(as);
		argc--;
		if (!strcasecmp(arg, "no_gap")) {
			opts->no_gap = true;
		} else if (!strcasecmp(arg, "origin_id")) {
			arg = argc ? dm_shift_arg(as) : "";
			argc -= !!argc;
			if (!fleece_valid_origin_id(arg)) {
				ti->error =
				"Invalid origin_id: 1 to 127 printable ASCII characters";
				return -EINVAL;
			}
			opts->origin_id = arg;
		} else {
			ti->error = "Unknown feature argument";
			return -EINVAL;
		}
	}
	if (as->argc) {
		ti->error = "Too many arguments";
		return -EINVAL;
	}
	return 0;
}

static int parse_view_opt_args(struct dm_target *ti, struct dm_arg_set *as,
			       struct fleece_view_opts *o)
{
	static const struct dm_arg _args[] = {
		{0, 8, "Invalid number of optional arguments"},
	};
	unsigned int argc;
	const char *arg;
	int r;

	if (!as->argc)
		return 0;
	r = read_count(ti, _args, as, &argc);
	if (r)
		return r;

	while (argc) {
		arg = dm_shift_arg(as);
		argc--;
		if (!strcasecmp(arg, "writable")) {
			o->writable = true;
		} else if (!strcasecmp(arg, "full")) {
			o->full = true;
		} else if (!strcasecmp(arg, "on_full")) {
			arg = argc ? dm_shift_arg(as) : "";
			argc -= !!argc;
			if (!strcasecmp(arg, "invalidate")) {
				o->on_full = FLEECE_ON_FULL_INVALIDATE;
			} else if (!strcasecmp(arg, "fail_writes")) {
				o->on_full = FLEECE_ON_FULL_FAIL_WRITES;
			} else {
				ti->error = "Invalid on_full policy";
				return -EINVAL;
			}
		} else if (!strcasecmp(arg, "bitmap")) {
			arg = argc ? dm_shift_arg(as) : "";
			argc -= !!argc;
			if (!fleece_valid_bitmap_name(arg)) {
				ti->error = "Invalid bitmap name";
				return -EINVAL;
			}
			kfree(o->bitmap_name);
			o->bitmap_name = kstrdup(arg, GFP_KERNEL);
			if (!o->bitmap_name) {
				ti->error = "Cannot allocate bitmap name";
				return -ENOMEM;
			}
		} else if (!strcasecmp(arg, "low_water")) {
			arg = argc ? dm_shift_arg(as) : "";
			argc -= !!argc;
			if (kstrtou64(arg, 10, &o->low_water)) {
				ti->error = "Invalid low_water";
				return -EINVAL;
			}
		} else {
			ti->error = "Unknown optional argument";
			return -EINVAL;
		}
	}
	if (as->argc) {
		ti->error = "Too many arguments";
		return -EINVAL;
	}
	return 0;
}

int fleece_parse_view_opts(struct dm_target *ti, struct dm_arg_set *as,
			   struct fleece_view_opts *o)
{
	int r;

	memset(o, 0, sizeof(*o));
	r = parse_view_opt_args(ti, as, o);
	if (!r && o->full && !o->bitmap_name) {
		ti->error = "Option full needs a bitmap";
		r = -EINVAL;
	}
	/* Unprotected chunks have no point-in-time copy to write over. */
	if (!r && o->writable && o->bitmap_name && !o->full) {
		ti->error = "Writable incremental views are not supported";
		r = -EINVAL;
	}
	if (r) {
		kfree(o->bitmap_name);
		o->bitmap_name = NULL;
	}
	return r;
}

/*
 * The arguments of both "changes" messages: [<start> [<max>]], decimal,
 * <max> not 0. Only read: the caller has set the defaults.
 */
static int parse_changes_args(unsigned int argc, char **argv, u64 *start,
			      u64 *max)
{
	if ((argc > 0 && kstrtou64(argv[0], 10, start)) ||
	    (argc > 1 && (kstrtou64(argv[1], 10, max) || !*max)))
		return -EINVAL;
	return 0;
}

int fleece_parse_view_message(unsigned int argc, char **argv,
			      struct fleece_view_msg *m)
{
	m->cmd = FLEECE_VIEW_MSG_UNKNOWN;
	m->start = 0;
	m->max = 65536;
	if (argc == 1 && !strcasecmp(argv[0], "commit")) {
		m->cmd = FLEECE_VIEW_MSG_COMMIT;
	} else if (argc >= 1 && argc <= 3 && !strcasecmp(argv[0], "changes")) {
		if (parse_changes_args(argc - 1, argv + 1, &m->start, &m->max))
			return -EINVAL;
		m->cmd = FLEECE_VIEW_MSG_CHANGES;
	}
	return 0;
}

bool fleece_valid_origin_id(const char *id)
{
	size_t n = strnlen(id, FLEECE_ORIGIN_ID_MAX + 1);
	size_t i;

	if (!n || n > FLEECE_ORIGIN_ID_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (id[i] <= ' ' || id[i] > '~')
			return false;
	return true;
}

bool fleece_valid_bitmap_name(const char *name)
{
	size_t n = strnlen(name, FLEECE_NAME_MAX + 1);
	size_t i;

	if (!n || n > FLEECE_NAME_MAX)
		return false;
	/* The kernel's isalnum() also takes Latin-1 letters: ASCII only. */
	for (i = 0; i < n; i++)
		if (!isascii(name[i]) ||
		    (!isalnum(name[i]) && !strchr("_.-", name[i])))
			return false;
	return true;
}

int fleece_parse_bitmap_message(unsigned int argc, char **argv,
				struct fleece_bitmap_msg *m)
{
	const char *cmd = argv[0];

	memset(m, 0, sizeof(*m));
	m->cmd = FLEECE_BM_MSG_UNKNOWN;
	m->max = 65536;
	if (strncmp(cmd, "bitmap_", 7))
		return -EOPNOTSUPP;
	if (!strcmp(cmd, "bitmap_list")) {
		m->cmd = FLEECE_BM_MSG_LIST;
		return argc == 1 ? 0 : -EINVAL;
	}
	if (argc < 2) {
		DMWARN("%s: needs a bitmap name", cmd);
		return -EINVAL;
	}
	if (!fleece_valid_bitmap_name(argv[1])) {
		DMWARN("%s: invalid bitmap name '%s': 1-%d of A-Z a-z 0-9 _ . -",
		       cmd, argv[1], FLEECE_NAME_MAX);
		return -EINVAL;
	}
	m->name = argv[1];
	if (!strcmp(cmd, "bitmap_add")) {
		m->cmd = FLEECE_BM_MSG_ADD;
		return argc == 2 ? 0 : -EINVAL;
	}

	/* Faults from here on are reported only once the bitmap is found. */
	if (!strcmp(cmd, "bitmap_remove") && argc == 2) {
		m->cmd = FLEECE_BM_MSG_REMOVE;
	} else if (!strcmp(cmd, "bitmap_clear") && argc == 2) {
		m->cmd = FLEECE_BM_MSG_CLEAR;
	} else if (!strcmp(cmd, "bitmap_merge") && argc == 3) {
		m->cmd = FLEECE_BM_MSG_MERGE;
		m->src = argv[2];
	} else if (!strcmp(cmd, "bitmap_changes") && argc >= 2 && argc <= 4) {
		if (parse_changes_args(argc - 2, argv + 2, &m->start, &m->max))
			m->cmd = FLEECE_BM_MSG_BAD_ARGS;
		else
			m->cmd = FLEECE_BM_MSG_CHANGES;
	}
	return 0;
}
