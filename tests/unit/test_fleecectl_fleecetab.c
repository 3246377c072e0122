// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for userspace/fleecetab.c: /etc/fleecetab lines and files.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <fcntl.h>
#include <unistd.h>

#include "fleecetab.h"

/*
 * fleecetab_read() prints each error, as fleecectl must: keep the refused
 * files' messages out of the test's output (cmocka's own go to stderr too,
 * so only around the reads).
 */
static int saved_stderr = -1;

static void quiet(int on)
{
	int fd;

	fflush(stderr);
	if (on) {
		saved_stderr = dup(2);
		fd = open("/dev/null", O_WRONLY);
		dup2(fd, 2);
		close(fd);
	} else if (saved_stderr >= 0) {
		dup2(saved_stderr, 2);
		close(saved_stderr);
		saved_stderr = -1;
	}
}

/* Parse a copy of @s; returns what fleecetab_parse_line() did. */
static int parse(const char *s, struct tab_entry *e, char *why, size_t len)
{
	char buf[8192];

	snprintf(buf, sizeof(buf), "%s", s);
	why[0] = '\0';
	return fleecetab_parse_line(buf, e, why, len);
}

static void test_good_lines(void **state)
{
	struct tab_entry e;
	char why[256];

	(void)state;
	assert_int_equal(parse("", &e, why, sizeof(why)), 0);
	assert_int_equal(parse("   \t \n", &e, why, sizeof(why)), 0);
	assert_int_equal(parse("# data /dev/x - mode=create", &e, why, sizeof(why)), 0);
	assert_int_equal(parse("  #x", &e, why, sizeof(why)), 0);

	assert_int_equal(parse("data /dev/vg/data /dev/disk/by-id/m mode=attach,bitmaps=nightly+weekly # c",
			       &e, why, sizeof(why)), 1);
	assert_string_equal(e.name, "data");
	assert_string_equal(e.device, "/dev/vg/data");
	assert_string_equal(e.meta, "/dev/disk/by-id/m");
	assert_int_equal(e.mode, TAB_ATTACH);
	assert_int_equal(e.chunk_sectors, 128);
	assert_int_equal(e.nr_bitmaps, 2);
	assert_string_equal(e.bitmaps[0], "nightly");
	assert_string_equal(e.bitmaps[1], "weekly");
	assert_int_equal(e.noauto, 0);

	assert_int_equal(parse("d.1+x_y-z\t/dev/sdb\t-\tnoauto,chunk-size=1M,mode=create\r\n",
			       &e, why, sizeof(why)), 1);
	assert_string_equal(e.name, "d.1+x_y-z");
	assert_string_equal(e.meta, "");
	assert_int_equal(e.mode, TAB_CREATE);
	assert_int_equal(e.chunk_sectors, 2048);
	assert_int_equal(e.nr_bitmaps, 0);
	assert_int_equal(e.noauto, 1);
	/* '#' inside a word is not a comment. */
	assert_int_equal(parse("a /dev/x#1 - mode=create", &e, why, sizeof(why)), 1);
	assert_string_equal(e.device, "/dev/x#1");
}

static void expect_bad(const char *line, const char *reason)
{
	struct tab_entry e;
	char why[256];

	assert_int_equal(parse(line, &e, why, sizeof(why)), -1);
	if (!strstr(why, reason))
		fail_msg("'%s': reason '%s', expected '%s'", line, why, reason);
}

static void test_bad_lines(void **state)
{
	char big[400];

	(void)state;
	expect_bad("a", "1 field, expected 4");
	expect_bad("a /dev/x -", "3 fields, expected 4");
	expect_bad("a /dev/x - mode=create more", "more than 4 fields");
	expect_bad("a /dev/x - bitmaps=n", "no mode= option");
	expect_bad("-a /dev/x - mode=create", "start with '-'");
	expect_bad(".. /dev/x - mode=create", "must not be '.', '..'");
	expect_bad("a/b /dev/x - mode=create", "the character '/'");
	expect_bad("a%b /dev/x - mode=create", "the character '%'");
	expect_bad("a dev/x - mode=create", "DEVICE 'dev/x' is not an absolute path");
	expect_bad("a /dev/x meta mode=create", "META 'meta' is not an absolute path");
	expect_bad("a /dev/x /dev/x mode=create", "META is DEVICE");
	expect_bad("a /dev/x - mode=create,", "an empty option");
	expect_bad("a /dev/x - ,mode=create", "an empty option");
	expect_bad("a /dev/x - mode=", "neither 'create' nor 'attach'");
	expect_bad("a /dev/x - mode", "needs a value");
	expect_bad("a /dev/x - mode=create,mode=attach", "'mode' given twice");
	expect_bad("a /dev/x - mode=create,noauto=yes", "takes no value");
	expect_bad("a /dev/x - mode=create,chunk-size=3K", "not a power of two");
	expect_bad("a /dev/x - mode=create,chunk-size=2G", "larger than 1 GiB");
	expect_bad("a /dev/x - mode=create,chunk-size=x", "not a size");
	expect_bad("a /dev/x - mode=create,bitmaps=", "names no bitmap");
	expect_bad("a /dev/x - mode=create,bitmaps=+", "names no bitmap");
	expect_bad("a /dev/x - mode=create,bitmaps=a+a", "'a' named twice");
	expect_bad("a /dev/x - mode=create,bitmaps=a/b", "not a valid bitmap name");
	expect_bad("a /dev/x - mode=create,bitmaps=1+2+3+4+5+6+7+8+9", "more than 8 bitmaps");
	expect_bad("a /dev/x - mode=create,Mode=attach", "unknown option 'Mode'");
	memset(big, 'n', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big + 300, " /dev/x - mode=create", 21);
	expect_bad(big, "longer than 127");
}

/* A whole file through a memory stream. */
static int read_str(const char *s, struct fleecetab *t)
{
	FILE *f = fmemopen((void *)s, strlen(s), "r");
	int r;

	assert_non_null(f);
	quiet(1);
	r = fleecetab_read(f, "test.tab", t);
	quiet(0);
	fclose(f);
	return r;
}

static void test_files(void **state)
{
	struct fleecetab t;

	(void)state;
	assert_int_equal(read_str("", &t), 0);
	assert_int_equal(t.n, 0);
	assert_int_equal(read_str("# only\n\na /dev/a /dev/m mode=create\n"
				  "b /dev/vg/b - mode=attach,bitmaps=x\n", &t), 0);
	assert_int_equal(t.n, 2);
	assert_int_equal(t.e[0].line, 3);
	assert_int_equal(t.e[1].line, 4);
	assert_non_null(fleecetab_find(&t, "b"));
	assert_null(fleecetab_find(&t, "c"));
	assert_string_equal(t.path, "test.tab");
	fleecetab_free(&t);
	/* No newline at the end. */
	assert_int_equal(read_str("a /dev/a - mode=create", &t), 0);
	assert_int_equal(t.n, 1);
	fleecetab_free(&t);

	/* One bad line refuses the whole file. */
	assert_int_equal(read_str("a /dev/a - mode=create\nb\n", &t), -1);
	assert_int_equal(t.n, 0);
	assert_null(t.e);
	/* Names, devices and metadata devices are given once. */
	assert_int_equal(read_str("a /dev/a - mode=create\na /dev/b - mode=create\n", &t), -1);
	assert_int_equal(read_str("a /dev/a - mode=create\nb /dev/a - mode=create\n", &t), -1);
	assert_int_equal(read_str("a /dev/a /dev/m mode=create\nb /dev/b /dev/m mode=create\n", &t), -1);
	assert_int_equal(read_str("a /dev/a /dev/m mode=create\nb /dev/m - mode=create\n", &t), -1);
	assert_int_equal(read_str("a /dev/a - mode=create\nb /dev/b /dev/a mode=create\n", &t), -1);
	/* "-" is not a device, twice is fine. */
	assert_int_equal(read_str("a /dev/a - mode=create\nb /dev/b - mode=create\n", &t), 0);
	fleecetab_free(&t);
}

static void test_hostile_bytes(void **state)
{
	struct fleecetab t;
	char buf[6000];
	unsigned int i, round;
	static const char alphabet[] = "ab/-# \t\n,=+.\r\0\xff" "mode=create";

	(void)state;
	/* A NUL in a line, an overlong line: refused, no crash. */
	assert_int_equal(read_str("a /dev/a - mode=create\n", &t), 0);
	fleecetab_free(&t);
	memset(buf, 'x', sizeof(buf) - 1);
	buf[sizeof(buf) - 1] = '\0';
	assert_int_equal(read_str(buf, &t), -1);

	/* Random bytes: whatever comes out, nothing crashes (ASan, UBSan). */
	srand(1);
	for (round = 0; round < 2000; round++) {
		size_t n = (size_t)(rand() % 300);
		FILE *f;

		for (i = 0; i < n; i++)
			buf[i] = alphabet[rand() % (sizeof(alphabet) - 1)];
		f = fmemopen(buf, n ? n : 1, "r");
		assert_non_null(f);
		quiet(1);
		if (!fleecetab_read(f, "fuzz", &t))
			fleecetab_free(&t);
		quiet(0);
		fclose(f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_lines),
		cmocka_unit_test(test_bad_lines),
		cmocka_unit_test(test_files),
		cmocka_unit_test(test_hostile_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
