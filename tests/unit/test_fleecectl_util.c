// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for userspace/util.c: numbers, sizes, chunk sizes, device
 * numbers and size formatting of fleecectl.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fleecectl.h"
#include "util.h"

static void test_parse_u64(void **state)
{
	uint64_t v = 7;

	(void)state;
	assert_int_equal(parse_u64("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_u64("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(parse_u64("18446744073709551616", &v), -ERANGE);
	assert_int_equal(parse_u64("", &v), -EINVAL);
	assert_int_equal(parse_u64("-1", &v), -EINVAL);
	assert_int_equal(parse_u64("+1", &v), -EINVAL);
	assert_int_equal(parse_u64(" 1", &v), -EINVAL);
	assert_int_equal(parse_u64("1 ", &v), -EINVAL);
	assert_int_equal(parse_u64("0x10", &v), -EINVAL);
	assert_int_equal(parse_u64(NULL, &v), -EINVAL);
}

struct size_case {
	const char *in;
	int r;
	uint64_t bytes;
};

static void test_parse_size(void **state)
{
	static const struct size_case cases[] = {
		{ "0", 0, 0 },
		{ "65536", 0, 65536 },
		{ "512b", 0, 512 },
		{ "512B", 0, 512 },
		{ "8s", 0, 4096 },
		{ "8S", 0, 4096 },
		{ "64K", 0, 65536 },
		{ "64k", 0, 65536 },
		{ "64KiB", 0, 65536 },
		{ "64kib", 0, 65536 },
		{ "64KB", 0, 65536 },
		{ "1M", 0, 1048576 },
		{ "1G", 0, 1ULL << 30 },
		{ "2T", 0, 2ULL << 40 },
		{ "1P", 0, 1ULL << 50 },
		{ "16383P", 0, 16383ULL << 50 },
		{ "16384P", -ERANGE, 0 },
		{ "99999999999999999999", -ERANGE, 0 },
		{ "", -EINVAL, 0 },
		{ "K", -EINVAL, 0 },
		{ "1.5M", -EINVAL, 0 },
		{ "1X", -EINVAL, 0 },
		{ "1Ki", -EINVAL, 0 },
		{ "1KiBs", -EINVAL, 0 },
		{ "-1K", -EINVAL, 0 },
		{ "1 K", -EINVAL, 0 },
		{ "1sB", -EINVAL, 0 },
	};
	unsigned int i;
	uint64_t b;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		b = 12345;
		if (parse_size(cases[i].in, &b) != cases[i].r)
			fail_msg("parse_size(\"%s\") != %d", cases[i].in, cases[i].r);
		if (!cases[i].r && b != cases[i].bytes)
			fail_msg("parse_size(\"%s\") = %llu", cases[i].in,
				 (unsigned long long)b);
	}
}

static void test_chunk_size(void **state)
{
	static const char *const bad[] = {
		"3K", "24K", "0", "2K", "4095", "2G", "1025M", "abc", "", "1.5M",
		"99999999999999999999",
	};
	const char *why = NULL;
	uint64_t s = 0;
	unsigned int i;

	(void)state;
	assert_int_equal(parse_chunk_size("4K", &s, &why), 0);
	assert_int_equal(s, 8);
	assert_int_equal(parse_chunk_size("64K", &s, &why), 0);
	assert_int_equal(s, 128);
	assert_int_equal(parse_chunk_size("1G", &s, &why), 0);
	assert_int_equal(s, 2097152);
	assert_int_equal(parse_chunk_size("256s", &s, &why), 0);
	assert_int_equal(s, 256);
	assert_int_equal(parse_chunk_size("65536", &s, &why), 0);
	assert_int_equal(s, 128);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		if (parse_chunk_size(bad[i], &s, &why) != -EINVAL || !why || !*why)
			fail_msg("chunk size \"%s\" accepted", bad[i]);
	}
	parse_chunk_size("3K", &s, &why);
	assert_string_equal(why, "not a power of two");
	parse_chunk_size("2K", &s, &why);
	assert_string_equal(why, "smaller than 4 KiB");
	parse_chunk_size("2G", &s, &why);
	assert_string_equal(why, "larger than 1 GiB");
}

static void test_parse_devt(void **state)
{
	dev_t d;

	(void)state;
	assert_int_equal(parse_devt("254:16", &d), 0);
	assert_int_equal(major(d), 254);
	assert_int_equal(minor(d), 16);
	assert_int_equal(parse_devt("8:0", &d), 0);
	assert_int_equal(parse_devt("/dev/sda", &d), -EINVAL);
	assert_int_equal(parse_devt("8:", &d), -EINVAL);
	assert_int_equal(parse_devt(":8", &d), -EINVAL);
	assert_int_equal(parse_devt("8:1:2", &d), -EINVAL);
	assert_int_equal(parse_devt("a:b", &d), -EINVAL);
	assert_int_equal(parse_devt("4096:0", &d), -EINVAL);
}

static void test_format(void **state)
{
	char b[32];

	(void)state;
	format_size(0, b, sizeof(b));
	assert_string_equal(b, "0 B");
	format_size(512, b, sizeof(b));
	assert_string_equal(b, "512 B");
	format_size(65536, b, sizeof(b));
	assert_string_equal(b, "64 KiB");
	format_size(1536 * 1024, b, sizeof(b));
	assert_string_equal(b, "1.5 MiB");
	format_size(1ULL << 30, b, sizeof(b));
	assert_string_equal(b, "1 GiB");
	format_size_short(1ULL << 30, b, sizeof(b));
	assert_string_equal(b, "1G");
	format_size_short(65536, b, sizeof(b));
	assert_string_equal(b, "64K");
	format_size_short(768ULL << 20, b, sizeof(b));
	assert_string_equal(b, "768M");
	format_size_short(1000, b, sizeof(b));
	assert_string_equal(b, "1000B");
	format_size_short(1536, b, sizeof(b));
	assert_string_equal(b, "1.5K");
	format_duration(0, b, sizeof(b));
	assert_string_equal(b, "0:00");
	format_duration(125.4, b, sizeof(b));
	assert_string_equal(b, "2:05");
	format_duration(3725, b, sizeof(b));
	assert_string_equal(b, "1:02:05");
	str_copy(b, 4, "abcdef");
	assert_string_equal(b, "abc");
}

/*
 * The exit code and the message of a failure: the first classed failure
 * wins over unclassed ones, the first of a kind over later ones; a code
 * other than EXIT_ERR is kept. (One test: the record is per process.)
 */
static void test_failure_record(void **state)
{
	(void)state;
	assert_int_equal(msg_exit_code(EXIT_ERR), EXIT_ERR);
	assert_string_equal(msg_failure(), "");
	msg_err("first %d", 1);
	assert_int_equal(msg_exit_code(EXIT_ERR), EXIT_ERR);
	assert_string_equal(msg_failure(), "first 1");
	msg_err("second");
	assert_string_equal(msg_failure(), "first 1");
	msg_fail(EXIT_BUSY, "busy %s", "x");
	assert_int_equal(msg_exit_code(EXIT_ERR), EXIT_BUSY);
	assert_string_equal(msg_failure(), "busy x");
	msg_fail(EXIT_NODEV, "gone");
	msg_err("undone");
	assert_int_equal(msg_exit_code(EXIT_ERR), EXIT_BUSY);
	assert_string_equal(msg_failure(), "busy x");
	assert_int_equal(msg_exit_code(EXIT_OK), EXIT_OK);
	assert_int_equal(msg_exit_code(EXIT_USAGE), EXIT_USAGE);
	assert_int_equal(msg_exit_code(EXIT_INTR), EXIT_INTR);
}

static void test_errno_exit_code(void **state)
{
	(void)state;
	assert_int_equal(errno_exit_code(-ENOENT), EXIT_NODEV);
	assert_int_equal(errno_exit_code(ENXIO), EXIT_NODEV);
	assert_int_equal(errno_exit_code(-ENOTBLK), EXIT_NODEV);
	assert_int_equal(errno_exit_code(EBUSY), EXIT_BUSY);
	assert_int_equal(errno_exit_code(-EEXIST), EXIT_BUSY);
	assert_int_equal(errno_exit_code(-EIO), EXIT_IO);
	assert_int_equal(errno_exit_code(EINVAL), EXIT_ERR);
	assert_int_equal(errno_exit_code(0), EXIT_ERR);
}

/*
 * While devices are suspended nothing reaches stderr; afterwards every held
 * line does, and a failure said after the verbose lines filled the buffer
 * is printed all the same.
 */
static void test_msg_hold(void **state)
{
	char path[] = "/tmp/fleecectl-hold.XXXXXX", buf[4096];
	int fd = mkstemp(path), saved = dup(2), i;
	long before, after;
	FILE *f;

	(void)state;
	assert_true(fd >= 0 && saved >= 0);
	assert_int_equal(dup2(fd, 2), 2);
	verbose = 1;
	msg_hold();
	msg_hold();		/* nested: only the last release prints */
	for (i = 0; i < 2000; i++)
		msg_verbose("libdevmapper: debug line %d of a long window", i);
	msg_err("resume failed: run 'dmsetup resume t0'");
	msg_warn("a warning kept too");
	fflush(stderr);
	before = lseek(fd, 0, SEEK_END);
	msg_release(0);
	fflush(stderr);
	after = lseek(fd, 0, SEEK_END);
	assert_int_equal(before, 0);
	assert_int_equal(after, 0);
	msg_release(0);
	fflush(stderr);
	verbose = 0;
	dup2(saved, 2);
	close(saved);
	f = fopen(path, "r");
	assert_non_null(f);
	i = 0;
	while (fgets(buf, sizeof(buf), f)) {
		if (strstr(buf, "fleecectl: resume failed: run 'dmsetup resume t0'"))
			i |= 1;
		if (strstr(buf, "fleecectl: warning: a warning kept too"))
			i |= 2;
		if (strstr(buf, "more messages did not fit"))
			i |= 4;
		if (strstr(buf, "debug line 0 of"))
			i |= 8;
	}
	fclose(f);
	close(fd);
	unlink(path);
	assert_int_equal(i, 15);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_u64),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_chunk_size),
		cmocka_unit_test(test_parse_devt),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_failure_record),
		cmocka_unit_test(test_errno_exit_code),
		cmocka_unit_test(test_msg_hold),
	};

	return cmocka_run_group_tests_name("fleecectl_util", tests, NULL, NULL);
}
