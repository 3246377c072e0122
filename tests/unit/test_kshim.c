// SPDX-License-Identifier: GPL-2.0
/*
 * Tests of the shim itself, where the other tests rely on it behaving like
 * the kernel: kstrtouint() (lib/kstrtox.c), the list helpers and WARN
 * counting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <linux/bug.h>
#include <linux/hash.h>
#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/log2.h>

static void test_kstrtouint(void **state)
{
	static const struct {
		const char *s;
		int ret;
		unsigned int v;
	} cases[] = {
		{ "0", 0, 0 },
		{ "8", 0, 8 },
		{ "+8", 0, 8 },
		{ "8\n", 0, 8 },
		{ "007", 0, 7 },
		{ "4294967295", 0, 4294967295U },
		{ "4294967296", -ERANGE, 0 },
		{ "18446744073709551615", -ERANGE, 0 },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "99999999999999999999", -ERANGE, 0 },
		{ "99999999999999999999x", -ERANGE, 0 },
		{ "", -EINVAL, 0 },
		{ "\n", -EINVAL, 0 },
		{ "+", -EINVAL, 0 },
		{ "-8", -EINVAL, 0 },
		{ "-0", -EINVAL, 0 },
		{ "++8", -EINVAL, 0 },
		{ " 8", -EINVAL, 0 },
		{ "8 ", -EINVAL, 0 },
		{ "8\n\n", -EINVAL, 0 },
		{ "8x", -EINVAL, 0 },
		{ "0x10", -EINVAL, 0 },
		{ "abc", -EINVAL, 0 },
	};
	unsigned int i, v;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		int ret;

		v = 12345;
		ret = kstrtouint(cases[i].s, 10, &v);
		if (ret != cases[i].ret)
			fail_msg("\"%s\": %d, want %d", cases[i].s, ret,
				 cases[i].ret);
		/* On error the result is left alone. */
		assert_int_equal(v, ret ? 12345 : cases[i].v);
	}
	assert_int_equal(kstrtouint("0x1f", 16, &v), 0);
	assert_int_equal(v, 31);
	assert_int_equal(kstrtouint("017", 0, &v), 0);
	assert_int_equal(v, 15);
}

struct item {
	int v;
	struct list_head node;
};

static void check_list(struct list_head *head, const int *want, int n)
{
	struct item *it;
	int i = 0;

	list_for_each_entry(it, head, node) {
		assert_true(i < n);
		assert_int_equal(it->v, want[i++]);
	}
	assert_int_equal(i, n);
	assert_int_equal(list_empty(head), n == 0);
}

static void test_list(void **state)
{
	struct item it[4] = { { .v = 0 }, { .v = 1 }, { .v = 2 }, { .v = 3 } };
	struct item *p, *n;
	LIST_HEAD(a);
	LIST_HEAD(b);

	(void)state;
	atomic_store(&kshim_warn_count, 0);
	check_list(&a, NULL, 0);
	list_add_tail(&it[1].node, &a);
	list_add_tail(&it[2].node, &a);
	list_add(&it[0].node, &a);
	check_list(&a, (int[]){ 0, 1, 2 }, 3);
	assert_ptr_equal(list_first_entry(&a, struct item, node), &it[0]);
	assert_ptr_equal(list_last_entry(&a, struct item, node), &it[2]);

	list_move_tail(&it[0].node, &a);
	check_list(&a, (int[]){ 1, 2, 0 }, 3);
	list_move_tail(&it[2].node, &b);
	check_list(&a, (int[]){ 1, 0 }, 2);
	check_list(&b, (int[]){ 2 }, 1);
	assert_true(list_is_singular(&b));

	list_del_init(&it[2].node);
	assert_true(list_empty(&it[2].node));
	check_list(&b, NULL, 0);

	list_add_tail(&it[3].node, &b);
	list_splice_init(&b, &a);
	check_list(&a, (int[]){ 3, 1, 0 }, 3);
	check_list(&b, NULL, 0);

	list_for_each_entry_safe(p, n, &a, node)
		if (p->v != 1)
			list_del(&p->node);
	check_list(&a, (int[]){ 1 }, 1);
	assert_ptr_equal(it[3].node.next, LIST_POISON1);
	assert_int_equal(atomic_load(&kshim_warn_count), 0);

	/* Deleting twice is caught, not followed into the poison. */
	print_message("expect a kshim WARNING here\n");
	list_del(&it[3].node);
	assert_int_equal(atomic_load(&kshim_warn_count), 1);
	atomic_store(&kshim_warn_count, 0);
}

static void test_warn_and_log2(void **state)
{
	int i;

	(void)state;
	atomic_store(&kshim_warn_count, 0);
	assert_false(WARN_ON(0));
	assert_false(WARN_ON_ONCE(0));
	assert_int_equal(atomic_load(&kshim_warn_count), 0);
	print_message("expect two kshim WARNINGs here\n");
	assert_true(WARN_ON(1));
	for (i = 0; i < 3; i++)
		assert_true(WARN_ON_ONCE(i >= 0));	/* counts all, prints once */
	assert_int_equal(atomic_load(&kshim_warn_count), 4);
	atomic_store(&kshim_warn_count, 0);

	assert_true(is_power_of_2(1) && is_power_of_2(1UL << 63));
	assert_false(is_power_of_2(0) || is_power_of_2(24));
	assert_int_equal(roundup_pow_of_two(1), 1);
	assert_int_equal(roundup_pow_of_two(3), 4);
	assert_int_equal(roundup_pow_of_two(4), 4);
	assert_int_equal(ilog2(1), 0);
	assert_int_equal(ilog2(1024), 10);
	assert_true(hash_64(12345, 6) < 64);
	/* The kernel's multiplicative hash: top bits of val * GOLDEN_RATIO_64. */
	assert_int_equal(hash_64(1, 8), 0x61);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kstrtouint),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_warn_and_log2),
	};

	return cmocka_run_group_tests_name("kshim", tests, NULL, NULL);
}
