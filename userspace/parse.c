// SPDX-License-Identifier: GPL-2.0
/*
 * Tables and status lines of fleece-origin and fleece: parsing, building.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parse.h"
#include "util.h"

/* Enough for the longest origin status: 4 + 3 words per bitmap. */
#define MAX_WORDS 64

/*
 * Split a copy of @s at spaces into at most MAX_WORDS words. The words point
 * into @copy, which the caller frees. Returns the number of words, or -1.
 */
static int split(const char *s, char **copy, char *words[MAX_WORDS])
{
	char *p, *save = NULL;
	int n = 0;

	*copy = strdup(s ? s : "");
	if (!*copy)
		return -1;
	for (p = strtok_r(*copy, " \t\n", &save); p;
	     p = strtok_r(NULL, " \t\n", &save)) {
		if (n == MAX_WORDS)
			return -1;
		words[n++] = p;
	}
	return n;
}

static int copy_word(char *dst, size_t len, const char *src)
{
	if (strlen(src) >= len)
		return -EINVAL;
	strcpy(dst, src);
	return 0;
}

static int parse_uint(const char *s, unsigned int *out)
{
	uint64_t v;

	if (parse_u64(s, &v) || v > UINT32_MAX)
		return -EINVAL;
	*out = (unsigned int)v;
	return 0;
}

int parse_origin_table(const char *params, struct origin_table *t)
{
	char *copy, *w[MAX_WORDS];
	int n = split(params, &copy, w), r = -EINVAL, i;

	memset(t, 0, sizeof(*t));
	if (n < 3)
		goto out;
	if (copy_word(t->origin, sizeof(t->origin), w[0]) ||
	    copy_word(t->meta, sizeof(t->meta), w[1]) ||
	    parse_u64(w[2], &t->chunk_sectors) ||
	    !is_power_of_two(t->chunk_sectors))
		goto out;
	if (n > 3 && (parse_uint(w[3], &t->nr_features) ||
		      t->nr_features != (unsigned int)(n - 4)))
		goto out;
	/* Features of later kernels are skipped: the table is someone's. */
	for (i = 4; i < n; i++) {
		if (!strcasecmp(w[i], "no_gap"))
			t->no_gap = 1;
		else if (!strcasecmp(w[i], "origin_id") && i + 1 < n &&
			 !copy_word(t->origin_id, sizeof(t->origin_id), w[i + 1]))
			i++;
	}
	r = 0;
out:
	free(copy);
	return r;
}

/* <ok|lost|gap> <#bitmaps> [<name> <dirty> <frozen_sets>]... */
static int parse_bitmaps(char **w, int n, struct origin_status *s)
{
	struct bitmap_status *b;
	unsigned int i;

	s->lost = strcmp(w[0], "ok") != 0;
	s->gap = !strcmp(w[0], "gap");
	if (parse_uint(w[1], &s->nr_bitmaps) || s->nr_bitmaps > MAX_BITMAPS ||
	    n < 2 + 3 * (int)s->nr_bitmaps)
		return -EINVAL;
	for (i = 0; i < s->nr_bitmaps; i++) {
		b = &s->bitmaps[i];
		if (copy_word(b->name, sizeof(b->name), w[2 + 3 * i]) ||
		    parse_u64(w[3 + 3 * i], &b->dirty) ||
		    parse_uint(w[4 + 3 * i], &b->frozen_sets))
			return -EINVAL;
	}
	s->have_tracking = 1;
	return 0;
}

int parse_origin_status(const char *params, struct origin_status *s)
{
	char *copy, *w[MAX_WORDS];
	int n = split(params, &copy, w), r = -EINVAL;

	memset(s, 0, sizeof(*s));
	if (n < 2)
		goto out;
	if (!strcmp(w[0], "persistent"))
		s->persistent = 1;
	else if (strcmp(w[0], "volatile"))
		goto out;
	if (parse_uint(w[1], &s->sessions))
		goto out;
	r = 0;
	/* Kernels before changed-block bitmaps stop here. */
	if (n < 4 || (strcmp(w[2], "ok") && strcmp(w[2], "lost") && strcmp(w[2], "gap")))
		goto out;
	r = parse_bitmaps(w + 2, n - 2, s);
out:
	free(copy);
	return r;
}

int parse_view_table(const char *params, struct view_table *t)
{
	char *copy, *w[MAX_WORDS];
	int n = split(params, &copy, w), r = -EINVAL, i;
	unsigned int nopt;

	memset(t, 0, sizeof(*t));
	if (n < 2)
		goto out;
	if (copy_word(t->origin, sizeof(t->origin), w[0]) ||
	    copy_word(t->scratch, sizeof(t->scratch), w[1]))
		goto out;
	if (n == 2) {
		r = 0;
		goto out;
	}
	if (parse_uint(w[2], &nopt) || nopt != (unsigned int)(n - 3))
		goto out;
	for (i = 3; i < n; i++) {
		if (!strcasecmp(w[i], "writable")) {
			t->writable = 1;
		} else if (!strcasecmp(w[i], "on_full") && i + 1 < n) {
			i++;
			if (!strcasecmp(w[i], "invalidate"))
				t->on_full = ON_FULL_INVALIDATE;
			else if (!strcasecmp(w[i], "fail_writes"))
				t->on_full = ON_FULL_FAIL_WRITES;
			else
				goto out;
		} else if (!strcasecmp(w[i], "low_water") && i + 1 < n) {
			if (parse_u64(w[++i], &t->low_water))
				goto out;
		} else if (!strcasecmp(w[i], "bitmap") && i + 1 < n) {
			if (copy_word(t->bitmap, sizeof(t->bitmap), w[++i]))
				goto out;
		} else if (!strcasecmp(w[i], "full")) {
			t->full = 1;
		} else {
			t->nr_unknown++;
		}
	}
	r = 0;
out:
	free(copy);
	return r;
}

static int parse_i64_nonneg(const char *s, uint64_t *out)
{
	/* The kernel prints its atomic64 counters signed. */
	if (*s == '-')
		return -EINVAL;
	return parse_u64(s, out);
}

int parse_view_status(const char *params, struct view_status *s)
{
	char *copy, *w[MAX_WORDS], *slash;
	int n = split(params, &copy, w), r = -EINVAL;
	uint64_t *fields[] = { &s->preserved, &s->copied, &s->released,
			       &s->skipped, &s->reads_scratch, &s->reads_origin,
			       &s->copies_inflight };
	unsigned int i;

	memset(s, 0, sizeof(*s));
	if (n < 10)
		goto out;
	if (!strcmp(w[0], "Active"))
		s->active = 1;
	else if (strcmp(w[0], "Invalid"))
		goto out;
	if (parse_u64(w[1], &s->chunk_sectors))
		goto out;
	slash = strchr(w[2], '/');
	if (!slash)
		goto out;
	*slash = '\0';
	if (parse_u64(w[2], &s->scratch_used) ||
	    parse_u64(slash + 1, &s->scratch_total))
		goto out;
	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (parse_i64_nonneg(w[3 + i], fields[i]))
			goto out;
	/* <bitmap|-> <open|committed|ended|->, absent before bitmaps. */
	if (n >= 12 && strcmp(w[11], "-")) {
		if (copy_word(s->bitmap, sizeof(s->bitmap), w[10]))
			goto out;
		if (!strcmp(w[11], "open"))
			s->txn = TXN_OPEN;
		else if (!strcmp(w[11], "committed"))
			s->txn = TXN_COMMITTED;
		else if (!strcmp(w[11], "ended"))
			s->txn = TXN_ENDED;
		else
			goto out;
	}
	/* <unreadable>, since 0.5.0. */
	if (n >= 13 && parse_i64_nonneg(w[12], &s->unreadable))
		goto out;
	r = 0;
out:
	free(copy);
	return r;
}

int build_origin_table(const struct origin_table *t, char *buf, size_t len)
{
	int n;

	n = snprintf(buf, len, "%s %s %llu", t->origin,
		     t->meta[0] ? t->meta : "-",
		     (unsigned long long)t->chunk_sectors);
	if (n >= 0 && (size_t)n < len && (t->no_gap || t->origin_id[0]))
		n += snprintf(buf + n, len - n, " %d%s%s%s",
			      !!t->no_gap + (t->origin_id[0] ? 2 : 0),
			      t->no_gap ? " no_gap" : "",
			      t->origin_id[0] ? " origin_id " : "", t->origin_id);
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int build_view_table(const struct view_table *t, char *buf, size_t len)
{
	char opts[128] = "";
	unsigned int words = 0;
	size_t o = 0;
	int n;

	if (t->on_full == ON_FULL_FAIL_WRITES) {
		o += (size_t)snprintf(opts + o, sizeof(opts) - o, " on_full fail_writes");
		words += 2;
	}
	if (t->low_water) {
		o += (size_t)snprintf(opts + o, sizeof(opts) - o, " low_water %llu",
				      (unsigned long long)t->low_water);
		words += 2;
	}
	if (t->writable) {
		o += (size_t)snprintf(opts + o, sizeof(opts) - o, " writable");
		words++;
	}
	if (t->bitmap[0]) {
		o += (size_t)snprintf(opts + o, sizeof(opts) - o, " bitmap %s", t->bitmap);
		words += 2;
		if (t->full) {
			o += (size_t)snprintf(opts + o, sizeof(opts) - o, " full");
			words++;
		}
	}
	if (words)
		n = snprintf(buf, len, "%s %s %u%s", t->origin, t->scratch, words, opts);
	else
		n = snprintf(buf, len, "%s %s", t->origin, t->scratch);
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

const char *on_full_name(enum on_full f)
{
	return f == ON_FULL_FAIL_WRITES ? "fail_writes" : "invalidate";
}

double scratch_used_percent(const struct view_status *s)
{
	if (!s->scratch_total)
		return 0.0;
	return 100.0 * (double)s->scratch_used / (double)s->scratch_total;
}

int parse_changes_page(const char *resp, uint64_t from, uint64_t *next,
		       int (*fn)(uint64_t first, uint64_t count, void *arg),
		       void *arg)
{
	const char *p = resp ? resp : "";
	uint64_t first, count, pos = from;
	char word[48];
	int r, len;

	if (sscanf(p, " %47s%n", word, &len) != 1)
		return -EINVAL;
	p += len;
	if (!strcmp(word, "end"))
		*next = UINT64_MAX;
	else if (parse_u64(word, next) || *next <= from)
		return -EINVAL;
	while (sscanf(p, " %47s%n", word, &len) == 1) {
		char *plus = strchr(word, '+');

		p += len;
		if (!plus)
			return -EINVAL;
		*plus = '\0';
		if (parse_u64(word, &first) || parse_u64(plus + 1, &count) ||
		    !count || first < pos || first + count < first)
			return -EINVAL;
		if (*next != UINT64_MAX && first + count > *next)
			return -EINVAL;
		pos = first + count;
		r = fn(first, count, arg);
		if (r)
			return r;
	}
	return 0;
}

int valid_bitmap_name(const char *s)
{
	size_t i, n = strlen(s);

	if (!n || n > BITMAP_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
			return 0;
	return 1;
}

const char *txn_name(enum txn_state t)
{
	switch (t) {
	case TXN_OPEN:
		return "open";
	case TXN_COMMITTED:
		return "committed";
	case TXN_ENDED:
		return "ended";
	default:
		return "-";
	}
}
