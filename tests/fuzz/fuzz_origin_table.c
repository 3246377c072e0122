// SPDX-License-Identifier: GPL-2.0
/*
 * Fuzz target: the parameters of a fleece-origin table line,
 *
 *   <origin_dev> <metadata_dev|-> <chunk_sectors> [<#feature_args> <arg>...]
 *   feature args: no_gap, origin_id <id>
 *
 * parsed as origin_ctr() parses them (the devices are not opened: that is
 * the only part of the ctr not in dm-fleece-args.c), checked against the
 * documented grammar and errors, and the kept table line against the words.
 */
#include "fuzz.h"

/* An origin_id: 1 to 127 printable ASCII characters, no blanks. */
static int ref_origin_id(const char *s)
{
	size_t n = strlen(s), i;

	if (!n || n > 127)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] > '~')
			return 0;
	return 1;
}

static const char *ref_origin(const struct fuzz_words *w, int *no_gap,
			      const char **origin_id)
{
	unsigned int n, i, end;
	uint64_t chunk;
	const char *a;

	if (w->argc < 3)
		return "Not enough arguments: <origin_dev> <metadata_dev|-> <chunk_sectors>";
	if (!ref_number(w->argv[2], UINT32_MAX, &chunk))
		return "Invalid chunk size: not a number";
	if (!chunk || (chunk & (chunk - 1)))
		return "Invalid chunk size: not a power of two";
	if (chunk < 8)
		return "Invalid chunk size: under 8 sectors";
	if (chunk > 2097152)
		return "Invalid chunk size: over 2097152 sectors";
	if (w->argc == 3)
		return NULL;
	if (!ref_count(w->argv[3], 3, &n) || n > w->argc - 4)
		return "Invalid number of feature arguments";
	/* origin_id's value is the next word of the group, else missing. */
	for (i = 4, end = 4 + n; i < end; ) {
		a = w->argv[i++];
		if (ref_word_is(a, "no_gap")) {
			*no_gap = 1;
		} else if (ref_word_is(a, "origin_id")) {
			a = i < end ? w->argv[i++] : "";
			if (!ref_origin_id(a))
				return "Invalid origin_id: 1 to 127 printable ASCII characters";
			*origin_id = a;
		} else {
			return "Unknown feature argument";
		}
	}
	if (w->argc > end)
		return "Too many arguments";
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dm_target ti = { .error = NULL };
	struct fleece_attach_opts opts;
	const char *want_id = NULL;
	int want_no_gap = 0;
	struct fleece_table_line line = { NULL };
	struct dm_arg_set as;
	struct fuzz_words w;
	const char *want;
	sector_t chunk = 0;
	size_t i, len = 0;
	char *p;
	int r;

	if (size > FUZZ_MAX_INPUT)
		return -1;
	fuzz_split(&w, data, size);
	want = ref_origin(&w, &want_no_gap, &want_id);

	/* origin_ctr(), in its order. */
	as.argc = w.argc;
	as.argv = w.argv;
	if (w.argc < 3) {
		ti.error = "Not enough arguments: <origin_dev> <metadata_dev|-> <chunk_sectors>";
		r = -EINVAL;
		goto out;
	}
	dm_shift_arg(&as);	/* origin_dev: opened by the ctr */
	dm_shift_arg(&as);	/* metadata_dev or "-" */
	r = fleece_parse_chunk_sectors(&ti, dm_shift_arg(&as), &chunk);
	if (r)
		goto out;
	r = fleece_parse_origin_features(&ti, &as, &opts);
	if (r)
		goto out;
	fuzz_check(opts.no_gap == want_no_gap, "no_gap %d", opts.no_gap);
	fuzz_check(!opts.origin_id == !want_id &&
		   (!want_id || !strcmp(opts.origin_id, want_id)), "origin_id %s",
		   opts.origin_id ? opts.origin_id : "(none)");
	fuzz_check(chunk >= 8 && chunk <= 2097152 && !(chunk & (chunk - 1)),
		   "chunk %llu accepted", (unsigned long long)chunk);

	r = fleece_table_save(&line, w.argc, w.argv);
	fuzz_check(!r && line.text, "table_save: %d", r);
	/* The words joined by one space each, nothing else. */
	for (i = 0; i < w.argc; i++)
		len += strlen(w.argv[i]) + 1;
	fuzz_check(strlen(line.text) == (len ? len - 1 : 0), "kept line length");
	for (i = 0, p = line.text; i < w.argc; i++) {
		size_t n = strlen(w.argv[i]);

		fuzz_check(!memcmp(p, w.argv[i], n), "kept word %zu", i);
		p += n;
		fuzz_check(*p == (i + 1 < w.argc ? ' ' : '\0'), "separator %zu", i);
		p++;
	}
	fleece_table_free(&line);
	fuzz_check(!line.text, "table_free left the text");
out:
	if (want) {
		fuzz_check(r == -EINVAL, "refused with %d, expected -EINVAL (%s)", r, want);
		fuzz_check(ti.error && !strcmp(ti.error, want),
			   "error '%s', expected '%s'", ti.error ? ti.error : "(none)", want);
	} else {
		fuzz_check(!r, "refused (%d: %s), the documentation allows it", r,
			   ti.error ? ti.error : "(no error)");
	}
	fuzz_words_free(&w);
	return 0;
}
