// SPDX-License-Identifier: GPL-2.0
/*
 * Fuzz target: the parameters of a fleece (view) table line,
 *
 *   <origin_dev> <scratch_dev> [<#opt_args> <arg>...]
 *   opt args: on_full invalidate|fail_writes, low_water <chunks>, writable,
 *             bitmap <name>, full
 *
 * parsed as view_ctr() parses them (devices aside), checked against the
 * grammar and errors of Documentation/fleece.rst: what is accepted, what
 * each option sets, and no leak of the bitmap name on any path.
 */
#include "fuzz.h"

struct ref_opts {
	const char *error;
	int on_full_fail_writes;
	int writable;
	int full;
	uint64_t low_water;
	const char *bitmap;
};

static void ref_view(const struct fuzz_words *w, struct ref_opts *o)
{
	unsigned int i, n, end;
	const char *a, *v;

	memset(o, 0, sizeof(*o));
	if (w->argc < 2) {
		o->error = "Not enough arguments: <origin_dev> <scratch_dev> [<#opt_args> ...]";
		return;
	}
	if (w->argc == 2)
		return;
	if (!ref_count(w->argv[2], 8, &n) || n > w->argc - 3) {
		o->error = "Invalid number of optional arguments";
		return;
	}
	/* An option's value is the next word of the group, else missing. */
	for (i = 3, end = 3 + n; i < end; ) {
		a = w->argv[i++];
		if (ref_word_is(a, "writable")) {
			o->writable = 1;
			continue;
		}
		if (ref_word_is(a, "full")) {
			o->full = 1;
			continue;
		}
		v = i < end ? w->argv[i++] : "";
		if (ref_word_is(a, "on_full")) {
			if (ref_word_is(v, "invalidate")) {
				o->on_full_fail_writes = 0;
			} else if (ref_word_is(v, "fail_writes")) {
				o->on_full_fail_writes = 1;
			} else {
				o->error = "Invalid on_full policy";
				return;
			}
		} else if (ref_word_is(a, "bitmap")) {
			if (!ref_valid_name(v)) {
				o->error = "Invalid bitmap name";
				return;
			}
			o->bitmap = v;
		} else if (ref_word_is(a, "low_water")) {
			if (!ref_number(v, UINT64_MAX, &o->low_water)) {
				o->error = "Invalid low_water";
				return;
			}
		} else {
			o->error = "Unknown optional argument";
			return;
		}
	}
	if (end < w->argc)
		o->error = "Too many arguments";
	else if (o->full && !o->bitmap)
		o->error = "Option full needs a bitmap";
	else if (o->writable && o->bitmap && !o->full)
		o->error = "Writable incremental views are not supported";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dm_target ti = { .error = NULL };
	struct fleece_view_opts o;
	struct ref_opts want;
	struct dm_arg_set as;
	struct fuzz_words w;
	int r;

	if (size > FUZZ_MAX_INPUT)
		return -1;
	fuzz_split(&w, data, size);
	ref_view(&w, &want);

	memset(&o, 0xa5, sizeof(o));	/* the parser must set every field */
	if (w.argc < 2) {
		ti.error = "Not enough arguments: <origin_dev> <scratch_dev> [<#opt_args> ...]";
		r = -EINVAL;
		goto out;
	}
	as.argc = w.argc - 2;	/* after <origin_dev> <scratch_dev> */
	as.argv = w.argv + 2;
	r = fleece_parse_view_opts(&ti, &as, &o);
	if (r) {
		fuzz_check(!o.bitmap_name, "bitmap name left allocated on error %d", r);
		goto out;
	}
	fuzz_check(!want.error, "accepted, expected '%s'", want.error);
	fuzz_check(o.writable == want.writable, "writable %d", o.writable);
	fuzz_check(o.full == want.full, "full %d", o.full);
	fuzz_check(o.on_full == (want.on_full_fail_writes ?
				 FLEECE_ON_FULL_FAIL_WRITES : FLEECE_ON_FULL_INVALIDATE),
		   "on_full %d", o.on_full);
	fuzz_check(o.low_water == want.low_water, "low_water %llu, expected %llu",
		   (unsigned long long)o.low_water,
		   (unsigned long long)want.low_water);
	if (want.bitmap)
		fuzz_check(o.bitmap_name && !strcmp(o.bitmap_name, want.bitmap),
			   "bitmap '%s', expected '%s'",
			   o.bitmap_name ? o.bitmap_name : "(none)", want.bitmap);
	else
		fuzz_check(!o.bitmap_name, "bitmap '%s', expected none", o.bitmap_name);
	kfree(o.bitmap_name);
out:
	if (want.error) {
		fuzz_check(r == -EINVAL, "refused with %d, expected -EINVAL (%s)", r,
			   want.error);
		fuzz_check(ti.error && !strcmp(ti.error, want.error),
			   "error '%s', expected '%s'", ti.error ? ti.error : "(none)",
			   want.error);
	} else {
		fuzz_check(!r, "refused (%d: %s), the documentation allows it", r,
			   ti.error ? ti.error : "(no error)");
	}
	fuzz_words_free(&w);
	return 0;
}
