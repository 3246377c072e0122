/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the libFuzzer targets in tests/fuzz: the input as the kernel
 * hands it to a target (a C string split into words by dm_split_args()),
 * and reference checks written from Documentation/, independent of
 * drivers/md, that each target compares the kernel code against.
 *
 * Every target aborts (so libFuzzer reports a crash and saves the input)
 * when the kernel code and the reference disagree: a table or message
 * accepted that the documentation does not allow, or refused with an error
 * other than the documented one.
 */
#ifndef FLEECE_FUZZ_H
#define FLEECE_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dm-fleece.h"

/* The largest input worth trying: a table line is at most a page or so. */
#define FUZZ_MAX_INPUT 4096

#define fuzz_check(cond, ...) do {					\
	if (!(cond)) {							\
		fprintf(stderr, "fuzz: %s:%d: check failed: %s: ",	\
			__FILE__, __LINE__, #cond);			\
		fprintf(stderr, __VA_ARGS__);				\
		fprintf(stderr, "\n");					\
		abort();						\
	}								\
} while (0)

/**
 * struct fuzz_words - an input split as the kernel splits it.
 * @text: the input up to its first NUL, split in place.
 * @argv: exactly @argc word pointers into @text (NULL if none).
 * @argc: word count.
 */
struct fuzz_words {
	char *text;
	char **argv;
	unsigned int argc;
};

/*
 * dm_split_args() of drivers/md/dm-table.c: words end at the kernel's
 * isspace() (which includes 0xa0), a backslash quotes any character but
 * NUL. Buffers are allocated to the byte, so AddressSanitizer sees any
 * read past a word or past argv.
 */
static inline void fuzz_split(struct fuzz_words *w, const uint8_t *data,
			      size_t size)
{
	size_t len = strnlen((const char *)data, size), cap = 0;
	char *start, *end, *out;

	w->text = malloc(len + 1);
	memcpy(w->text, data, len);
	w->text[len] = '\0';
	w->argv = NULL;
	w->argc = 0;

	/* Count first, so argv is exactly as long as needed. */
	for (end = w->text; ; ) {
		while (*end && isspace(*end))
			end++;
		if (!*end)
			break;
		cap++;
		while (*end && !isspace(*end))
			end += (*end == '\\' && end[1]) ? 2 : 1;
	}
	if (cap)
		w->argv = malloc(cap * sizeof(char *));

	for (end = w->text; ; ) {
		start = end;
		while (*start && isspace(*start))
			start++;
		if (!*start)
			break;
		end = out = start;
		while (*end) {
			if (*end == '\\' && end[1]) {
				*out++ = end[1];
				end += 2;
				continue;
			}
			if (isspace(*end))
				break;
			*out++ = *end++;
		}
		if (*end)
			end++;
		*out = '\0';
		fuzz_check(w->argc < cap, "split: more words than counted");
		w->argv[w->argc++] = start;
	}
	fuzz_check(w->argc == cap, "split: %u words, counted %zu", w->argc, cap);
}

static inline void fuzz_words_free(struct fuzz_words *w)
{
	free(w->argv);
	free(w->text);
}

/* ---- reference checks, from Documentation/ ---- */

static inline int ref_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * A number as the kernel's kstrtou64(s, 10) takes it: an optional '+',
 * decimal digits, an optional final newline, nothing else; at most
 * @limit. Documented as "a decimal number".
 */
static inline int ref_number(const char *s, uint64_t limit, uint64_t *v)
{
	uint64_t n = 0;
	const char *p = s;

	if (*p == '+')
		p++;
	if (!ref_is_digit(*p))
		return 0;
	for (; ref_is_digit(*p); p++) {
		unsigned int d = *p - '0';

		if (n > (UINT64_MAX - d) / 10)
			return 0;
		n = n * 10 + d;
	}
	if (*p == '\n')
		p++;
	if (*p || n > limit)
		return 0;
	*v = n;
	return 1;
}

/* The count of an argument group: decimal digits only, at most @max. */
static inline int ref_count(const char *s, unsigned int max, unsigned int *v)
{
	uint64_t n = 0;
	const char *p = s;

	if (!*p)
		return 0;
	for (; *p; p++) {
		if (!ref_is_digit(*p))
			return 0;
		n = n * 10 + (*p - '0');
		if (n > max)
			return 0;
	}
	*v = n;
	return 1;
}

/* A bitmap name: 1 to 31 of A-Z a-z 0-9 _ . - (fleece-origin.rst). */
static inline int ref_valid_name(const char *s)
{
	size_t n = 0;

	for (; *s; s++, n++) {
		char c = *s;

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      ref_is_digit(c) || c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return n >= 1 && n <= 31;
}

static inline int ref_word_is(const char *s, const char *keyword)
{
	return !strcasecmp(s, keyword);
}

/* Every target: DMWARN() and friends format their text, to /dev/null. */
static inline void fuzz_init_log(void)
{
	if (!getenv("FUZZ_VERBOSE"))
		kshim_log = fopen("/dev/null", "w");
}

/* Every target is one file including this one: libFuzzer's start-up hook. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_init_log();
	return 0;
}

#endif /* FLEECE_FUZZ_H */
