// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for userspace/parse.c: fleece-origin and fleece tables and
 * status lines, as fleecectl reads and writes them.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "parse.h"

static void test_origin_table(void **state)
{
	struct origin_table t;
	char buf[128];

	(void)state;
	assert_int_equal(parse_origin_table("254:0 - 128", &t), 0);
	assert_string_equal(t.origin, "254:0");
	assert_string_equal(t.meta, "-");
	assert_int_equal(t.chunk_sectors, 128);
	assert_int_equal(t.nr_features, 0);
	assert_int_equal(parse_origin_table("/dev/sdb /dev/sdc 8 0", &t), 0);
	assert_string_equal(t.meta, "/dev/sdc");
	assert_int_equal(t.chunk_sectors, 8);
	assert_int_equal(parse_origin_table("/dev/sdb - 8 1 somefeature", &t), 0);
	assert_int_equal(t.nr_features, 1);
	assert_int_equal(t.no_gap, 0);
	assert_int_equal(parse_origin_table("254:0 254:1 128 1 no_gap", &t), 0);
	assert_int_equal(t.no_gap, 1);
	assert_string_equal(t.origin_id, "");
	assert_int_equal(parse_origin_table("254:0 254:1 128 3 origin_id dm-uuid-LVM-x NO_GAP", &t),
			 0);
	assert_int_equal(t.no_gap, 1);
	assert_string_equal(t.origin_id, "dm-uuid-LVM-x");

	assert_int_equal(parse_origin_table("", &t), -EINVAL);
	assert_int_equal(parse_origin_table("254:0 -", &t), -EINVAL);
	assert_int_equal(parse_origin_table("254:0 - 24", &t), -EINVAL);
	assert_int_equal(parse_origin_table("254:0 - x", &t), -EINVAL);
	assert_int_equal(parse_origin_table("254:0 - 8 2 a", &t), -EINVAL);
	assert_int_equal(parse_origin_table("254:0 - 8 x", &t), -EINVAL);

	memset(&t, 0, sizeof(t));
	strcpy(t.origin, "8:16");
	strcpy(t.meta, "-");
	t.chunk_sectors = 2048;
	assert_int_equal(build_origin_table(&t, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "8:16 - 2048");
	assert_int_equal(build_origin_table(&t, buf, 6), -ENOSPC);
	t.no_gap = 1;
	strcpy(t.meta, "8:32");
	assert_int_equal(build_origin_table(&t, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "8:16 8:32 2048 1 no_gap");
	assert_int_equal(build_origin_table(&t, buf, 16), -ENOSPC);
	strcpy(t.origin_id, "virtio-origin");
	assert_int_equal(build_origin_table(&t, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "8:16 8:32 2048 3 no_gap origin_id virtio-origin");
	t.no_gap = 0;
	assert_int_equal(build_origin_table(&t, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "8:16 8:32 2048 2 origin_id virtio-origin");
	assert_int_equal(build_origin_table(&t, buf, 30), -ENOSPC);
}

static void test_origin_status(void **state)
{
	struct origin_status s;

	(void)state;
	assert_int_equal(parse_origin_status("volatile 0", &s), 0);
	assert_int_equal(s.persistent, 0);
	assert_int_equal(s.sessions, 0);
	assert_int_equal(parse_origin_status("persistent 3", &s), 0);
	assert_int_equal(s.persistent, 1);
	assert_int_equal(s.sessions, 3);
	assert_int_equal(s.have_tracking, 0);
	/* Fields appended by later versions are ignored. */
	assert_int_equal(parse_origin_status("volatile 2 17 foo bar", &s), 0);
	assert_int_equal(s.sessions, 2);
	assert_int_equal(s.have_tracking, 0);

	/* Changed-block bitmaps. */
	assert_int_equal(parse_origin_status("persistent 1 ok 0", &s), 0);
	assert_int_equal(s.have_tracking, 1);
	assert_int_equal(s.lost, 0);
	assert_int_equal(s.nr_bitmaps, 0);
	assert_int_equal(parse_origin_status("persistent 1 lost 2 nightly 520 1 h.2-x 0 0 more", &s), 0);
	assert_int_equal(s.lost, 1);
	assert_int_equal(s.nr_bitmaps, 2);
	assert_string_equal(s.bitmaps[0].name, "nightly");
	assert_int_equal(s.bitmaps[0].dirty, 520);
	assert_int_equal(s.bitmaps[0].frozen_sets, 1);
	assert_string_equal(s.bitmaps[1].name, "h.2-x");
	assert_int_equal(s.bitmaps[1].dirty, 0);
	assert_int_equal(parse_origin_status("persistent 1 ok 2 nightly 520 1", &s), -EINVAL);
	assert_int_equal(parse_origin_status("persistent 1 ok 9 a 1 1 b 1 1 c 1 1 d 1 1 e 1 1 "
					     "f 1 1 g 1 1 h 1 1 i 1 1", &s), -EINVAL);
	assert_int_equal(parse_origin_status("persistent 1 ok 1 a x 1", &s), -EINVAL);

	assert_int_equal(parse_origin_status("", &s), -EINVAL);
	assert_int_equal(parse_origin_status("volatile", &s), -EINVAL);
	assert_int_equal(parse_origin_status("sometimes 1", &s), -EINVAL);
	assert_int_equal(parse_origin_status("volatile -1", &s), -EINVAL);
}

static void test_view_table(void **state)
{
	struct view_table t;
	char buf[256];

	(void)state;
	assert_int_equal(parse_view_table("254:0 254:16", &t), 0);
	assert_string_equal(t.origin, "254:0");
	assert_string_equal(t.scratch, "254:16");
	assert_int_equal(t.on_full, ON_FULL_INVALIDATE);
	assert_int_equal(t.low_water, 0);
	assert_int_equal(t.writable, 0);

	assert_int_equal(parse_view_table("/dev/a /dev/b 5 on_full fail_writes low_water 16 writable",
					  &t), 0);
	assert_int_equal(t.on_full, ON_FULL_FAIL_WRITES);
	assert_int_equal(t.low_water, 16);
	assert_int_equal(t.writable, 1);
	assert_int_equal(t.nr_unknown, 0);
	/* Keywords are case-insensitive, as in the kernel. */
	assert_int_equal(parse_view_table("a b 3 WRITABLE On_Full Invalidate", &t), 0);
	assert_int_equal(t.writable, 1);
	assert_int_equal(t.on_full, ON_FULL_INVALIDATE);
	/* Options a newer kernel may have are counted, not refused. */
	assert_int_equal(parse_view_table("a b 2 snapshot_of x", &t), 0);
	assert_int_equal(t.nr_unknown, 2);

	assert_int_equal(parse_view_table("a", &t), -EINVAL);
	assert_int_equal(parse_view_table("a b 2 writable", &t), -EINVAL);
	assert_int_equal(parse_view_table("a b 2 on_full maybe", &t), -EINVAL);
	assert_int_equal(parse_view_table("a b 2 low_water x", &t), -EINVAL);

	memset(&t, 0, sizeof(t));
	strcpy(t.origin, "254:0");
	strcpy(t.scratch, "254:16");
	assert_int_equal(build_view_table(&t, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "254:0 254:16");
	t.on_full = ON_FULL_FAIL_WRITES;
	t.low_water = 16;
	t.writable = 1;
	assert_int_equal(build_view_table(&t, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "254:0 254:16 5 on_full fail_writes low_water 16 writable");
	t.on_full = ON_FULL_INVALIDATE;
	t.low_water = 0;
	assert_int_equal(build_view_table(&t, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "254:0 254:16 1 writable");
	assert_int_equal(build_view_table(&t, buf, 10), -ENOSPC);

	/* What build writes, parse reads back. */
	t.on_full = ON_FULL_FAIL_WRITES;
	t.low_water = 99;
	assert_int_equal(build_view_table(&t, buf, sizeof(buf)), 0);
	{
		struct view_table u;

		assert_int_equal(parse_view_table(buf, &u), 0);
		assert_string_equal(u.origin, t.origin);
		assert_string_equal(u.scratch, t.scratch);
		assert_int_equal(u.on_full, t.on_full);
		assert_int_equal(u.low_water, t.low_water);
		assert_int_equal(u.writable, t.writable);
	}
}

static void test_view_status(void **state)
{
	struct view_status s;

	(void)state;
	assert_int_equal(parse_view_status("Active 128 2048/8192 2048 2048 0 0 0 0 0", &s), 0);
	assert_int_equal(s.active, 1);
	assert_int_equal(s.chunk_sectors, 128);
	assert_int_equal(s.scratch_used, 2048);
	assert_int_equal(s.scratch_total, 8192);
	assert_int_equal(s.preserved, 2048);
	assert_int_equal(s.copied, 2048);
	assert_true(scratch_used_percent(&s) == 25.0);

	assert_int_equal(parse_view_status("Invalid 128 0/8192 0 2048 16384 14336 262144 1835008 3 - - 7 extra 9",
					   &s), 0);
	assert_int_equal(s.unreadable, 7);
	assert_int_equal(s.active, 0);
	assert_int_equal(s.released, 16384);
	assert_int_equal(s.skipped, 14336);
	assert_int_equal(s.reads_scratch, 262144);
	assert_int_equal(s.reads_origin, 1835008);
	assert_int_equal(s.copies_inflight, 3);
	assert_string_equal(s.bitmap, "");
	assert_int_equal(s.txn, TXN_NONE);

	/* The backup transaction of a view with a bitmap. */
	assert_int_equal(parse_view_status("Active 8 0/10 0 0 0 0 0 0 0 nightly open", &s), 0);
	assert_string_equal(s.bitmap, "nightly");
	assert_int_equal(s.txn, TXN_OPEN);
	assert_string_equal(txn_name(s.txn), "open");
	assert_int_equal(parse_view_status("Active 8 0/10 0 0 0 0 0 0 0 a.b-c committed 0 x", &s), 0);
	assert_int_equal(s.txn, TXN_COMMITTED);
	assert_int_equal(parse_view_status("Active 8 0/10 0 0 0 0 0 0 0 n ended", &s), 0);
	assert_int_equal(s.txn, TXN_ENDED);
	assert_int_equal(parse_view_status("Active 8 0/10 0 0 0 0 0 0 0 n closed", &s), -EINVAL);
	assert_int_equal(parse_view_status("Active 8 0/10 0 0 0 0 0 0 0 "
					   "a23456789012345678901234567890123 open", &s), -EINVAL);
	/* Old kernels: no transaction fields, no unreadable count. */
	assert_int_equal(parse_view_status("Active 8 0/10 0 0 0 0 0 0 0 x", &s), 0);
	assert_int_equal(s.txn, TXN_NONE);
	assert_int_equal(s.unreadable, 0);
	assert_int_equal(parse_view_status("Active 8 0/10 0 0 0 0 0 0 0 n open x", &s), -EINVAL);

	assert_int_equal(parse_view_status("Active 128 2048/8192 2048 2048 0 0 0 0", &s), -EINVAL);
	assert_int_equal(parse_view_status("Busy 128 0/1 0 0 0 0 0 0 0", &s), -EINVAL);
	assert_int_equal(parse_view_status("Active 128 0-1 0 0 0 0 0 0 0", &s), -EINVAL);
	assert_int_equal(parse_view_status("Active 128 0/1 -1 0 0 0 0 0 0", &s), -EINVAL);
	assert_int_equal(parse_view_status("", &s), -EINVAL);

	memset(&s, 0, sizeof(s));
	assert_true(scratch_used_percent(&s) == 0.0);
	assert_string_equal(on_full_name(ON_FULL_FAIL_WRITES), "fail_writes");
	assert_string_equal(on_full_name(ON_FULL_INVALIDATE), "invalidate");
}

struct ranges {
	unsigned int n;
	uint64_t first[8], count[8];
};

static int collect(uint64_t first, uint64_t count, void *arg)
{
	struct ranges *r = arg;

	if (r->n == 8)
		return -E2BIG;
	r->first[r->n] = first;
	r->count[r->n++] = count;
	return 0;
}

static void test_changes_page(void **state)
{
	struct ranges r = { 0 };
	uint64_t next;

	(void)state;
	assert_int_equal(parse_changes_page("end 0+1 520+3 16384+256", 0, &next, collect, &r), 0);
	assert_true(next == UINT64_MAX);
	assert_int_equal(r.n, 3);
	assert_true(r.first[1] == 520 && r.count[1] == 3);
	assert_true(r.first[2] == 16384 && r.count[2] == 256);

	r.n = 0;
	assert_int_equal(parse_changes_page("12 5+7", 4, &next, collect, &r), 0);
	assert_true(next == 12);
	assert_int_equal(r.n, 1);
	r.n = 0;
	assert_int_equal(parse_changes_page("end", 0, &next, collect, &r), 0);
	assert_int_equal(r.n, 0);

	/* Not the format: each is refused. */
	assert_int_equal(parse_changes_page("", 0, &next, collect, &r), -EINVAL);
	assert_int_equal(parse_changes_page(NULL, 0, &next, collect, &r), -EINVAL);
	assert_int_equal(parse_changes_page("more 1+1", 0, &next, collect, &r), -EINVAL);
	assert_int_equal(parse_changes_page("4 1+1", 4, &next, collect, &r), -EINVAL);
	assert_int_equal(parse_changes_page("10 1+20", 0, &next, collect, &r), -EINVAL);
	assert_int_equal(parse_changes_page("end 1+0", 0, &next, collect, &r), -EINVAL);
	assert_int_equal(parse_changes_page("end 5+1 3+1", 0, &next, collect, &r), -EINVAL);
	assert_int_equal(parse_changes_page("end 3+1", 5, &next, collect, &r), -EINVAL);
	assert_int_equal(parse_changes_page("end 1-1", 0, &next, collect, &r), -EINVAL);
	assert_int_equal(parse_changes_page("end 18446744073709551615+2", 0, &next, collect, &r),
			 -EINVAL);
	/* The callback's error stops the walk. */
	r.n = 8;
	assert_int_equal(parse_changes_page("end 1+1", 0, &next, collect, &r), -E2BIG);
}

static void test_bitmap_names(void **state)
{
	struct view_table t;
	char buf[256];

	(void)state;
	assert_true(valid_bitmap_name("nightly"));
	assert_true(valid_bitmap_name("A.b-c_9"));
	assert_true(valid_bitmap_name("1234567890123456789012345678901"));
	assert_false(valid_bitmap_name("12345678901234567890123456789012"));
	assert_false(valid_bitmap_name(""));
	assert_false(valid_bitmap_name("a b"));
	assert_false(valid_bitmap_name("a/b"));
	assert_false(valid_bitmap_name("\xc3\xa9"));

	/* Views with a bitmap: built and parsed back. */
	memset(&t, 0, sizeof(t));
	strcpy(t.origin, "8:0");
	strcpy(t.scratch, "8:16");
	strcpy(t.bitmap, "nightly");
	t.full = 1;
	assert_int_equal(build_view_table(&t, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "8:0 8:16 3 bitmap nightly full");
	assert_int_equal(parse_view_table(buf, &t), 0);
	assert_string_equal(t.bitmap, "nightly");
	assert_int_equal(t.full, 1);
	assert_int_equal(t.nr_unknown, 0);
	t.full = 0;
	t.on_full = ON_FULL_FAIL_WRITES;
	assert_int_equal(build_view_table(&t, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "8:0 8:16 4 on_full fail_writes bitmap nightly");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_origin_table),
		cmocka_unit_test(test_origin_status),
		cmocka_unit_test(test_view_table),
		cmocka_unit_test(test_view_status),
		cmocka_unit_test(test_changes_page),
		cmocka_unit_test(test_bitmap_names),
	};

	return cmocka_run_group_tests_name("fleecectl_parse", tests, NULL, NULL);
}
