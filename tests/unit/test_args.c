// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for drivers/md/dm-fleece-args.c: the kept table line and the
 * chunk size parser.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dm-fleece.h"

static int reset_warns(void **state)
{
	(void)state;
	atomic_store(&kshim_warn_count, 0);
	return 0;
}

/* Save copies of @args, check the kept text is @want, free it. */
static void check_save(const char *want, unsigned int argc,
		       const char * const *args)
{
	struct fleece_table_line line = { NULL };
	char *argv[8];
	unsigned int i;

	assert_true(argc <= ARRAY_SIZE(argv));
	for (i = 0; i < argc; i++)
		assert_non_null(argv[i] = strdup(args[i]));
	assert_int_equal(fleece_table_save(&line, argc, argv), 0);
	for (i = 0; i < argc; i++)
		free(argv[i]);
	assert_non_null(line.text);
	assert_string_equal(line.text, want);
	fleece_table_free(&line);
	assert_null(line.text);
	assert_int_equal(atomic_load(&kshim_warn_count), 0);
}

static void test_save_no_args(void **state)
{
	(void)state;
	check_save("", 0, NULL);
}

static void test_save_one_arg(void **state)
{
	static const char * const args[] = { "/dev/vdb" };

	(void)state;
	check_save("/dev/vdb", 1, args);
}

static void test_save_many_args(void **state)
{
	static const char * const args[] = { "/dev/vdb", "-", "128", "x" };
	static const char * const empty[] = { "a", "", "b" };

	(void)state;
	check_save("/dev/vdb - 128 x", 4, args);
	/* One space per separator, even around an empty argument. */
	check_save("a  b", 3, empty);
}

/* The line is kept apart from argv, which the ctr's caller frees. */
static void test_save_is_a_copy(void **state)
{
	struct fleece_table_line line = { NULL };
	char a[] = "origin", b[] = "8";
	char *argv[2];

	(void)state;
	argv[0] = a;
	argv[1] = b;
	assert_int_equal(fleece_table_save(&line, 2, argv), 0);
	a[0] = 'X';
	b[0] = '9';
	assert_string_equal(line.text, "origin 8");
	fleece_table_free(&line);
	/* Freeing twice, or an empty line, is harmless. */
	fleece_table_free(&line);
	assert_null(line.text);
}

static void test_chunk_accepts_powers_of_two(void **state)
{
	unsigned int v, n = 0;

	(void)state;
	for (v = FLEECE_MIN_CHUNK_SECTORS; v <= FLEECE_MAX_CHUNK_SECTORS;
	     v <<= 1) {
		struct dm_target ti = { NULL, NULL };
		sector_t out = 0;
		char arg[16];

		snprintf(arg, sizeof(arg), "%u", v);
		assert_int_equal(fleece_parse_chunk_sectors(&ti, arg, &out),
				 0);
		assert_int_equal(out, v);
		assert_null(ti.error);
		n++;
	}
	/* 8, 16, ..., 2097152 */
	assert_int_equal(n, 19);
}

struct reject {
	const char *arg;
	const char *error;
};

static const struct reject rejects[] = {
	{ "abc", "Invalid chunk size: not a number" },
	{ "", "Invalid chunk size: not a number" },
	{ "-8", "Invalid chunk size: not a number" },
	{ "8x", "Invalid chunk size: not a number" },
	{ "24", "Invalid chunk size: not a power of two" },
	{ "0", "Invalid chunk size: not a power of two" },
	{ "4", "Invalid chunk size: under 8 sectors" },
	{ "4194304", "Invalid chunk size: over 2097152 sectors" },
	{ "99999999999999999999", "Invalid chunk size: not a number" },
};

static void test_chunk_rejects(void **state)
{
	const struct reject *r = *state;
	struct dm_target ti = { NULL, NULL };
	sector_t out = 12345;

	assert_int_equal(fleece_parse_chunk_sectors(&ti, r->arg, &out),
			 -EINVAL);
	assert_non_null(ti.error);
	assert_string_equal(ti.error, r->error);
	assert_int_equal(out, 12345);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_save_no_args),
		cmocka_unit_test(test_save_one_arg),
		cmocka_unit_test(test_save_many_args),
		cmocka_unit_test(test_save_is_a_copy),
		cmocka_unit_test(test_chunk_accepts_powers_of_two),
		{ "chunk_rejects abc", test_chunk_rejects, NULL, NULL,
		  (void *)&rejects[0] },
		{ "chunk_rejects empty", test_chunk_rejects, NULL, NULL,
		  (void *)&rejects[1] },
		{ "chunk_rejects -8", test_chunk_rejects, NULL, NULL,
		  (void *)&rejects[2] },
		{ "chunk_rejects 8x", test_chunk_rejects, NULL, NULL,
		  (void *)&rejects[3] },
		{ "chunk_rejects 24", test_chunk_rejects, NULL, NULL,
		  (void *)&rejects[4] },
		{ "chunk_rejects 0", test_chunk_rejects, NULL, NULL,
		  (void *)&rejects[5] },
		{ "chunk_rejects 4", test_chunk_rejects, NULL, NULL,
		  (void *)&rejects[6] },
		{ "chunk_rejects 4194304", test_chunk_rejects, NULL, NULL,
		  (void *)&rejects[7] },
		{ "chunk_rejects 99999999999999999999", test_chunk_rejects,
		  NULL, NULL, (void *)&rejects[8] },
	};

	BUILD_BUG_ON(ARRAY_SIZE(rejects) != 9);
	return cmocka_run_group_tests_name("args", tests, reset_warns, NULL);
}
