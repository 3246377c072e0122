// SPDX-License-Identifier: GPL-2.0
/*
 * The slot map (drivers/md/dm-fleece-slotmap.c) against a plain model: a
 * chunk -> slot array and a slot -> chunk array, driven by long random
 * sequences of take, drop, find and mark; plus the edges (full map, the
 * preferred slot, bad sizes) and threads working on disjoint chunks, as
 * sessions do under the range lock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dm-fleece-slotmap.h"

#define NONE UINT32_MAX

static int reset_warns(void **state)
{
	(void)state;
	kshim_warn_count = 0;
	return 0;
}

static void test_init_sizes(void **state)
{
	struct fleece_slotmap m;

	(void)state;
	assert_int_equal(fleece_slotmap_init(&m, 0), -EINVAL);
	fleece_slotmap_exit(&m);
	assert_int_equal(fleece_slotmap_init(&m, (u64)FLEECE_SLOTMAP_MAX_SLOTS + 1), -EINVAL);
	fleece_slotmap_exit(&m);
	assert_int_equal(fleece_slotmap_init(&m, 1ULL << 40), -EINVAL);
	fleece_slotmap_exit(&m);
	assert_int_equal(fleece_slotmap_init(&m, 1), 0);
	assert_int_equal(m.nr_slots, 1);
	fleece_slotmap_exit(&m);
	/* exit twice, and on a zeroed map, is harmless. */
	fleece_slotmap_exit(&m);
	assert_int_equal(kshim_warn_count, 0);
}

static void test_full_and_want(void **state)
{
	struct fleece_slotmap m;
	u32 slot, used, s2;
	bool bad;
	u32 i;

	(void)state;
	assert_int_equal(fleece_slotmap_init(&m, 5), 0);
	/* The preferred slot when free. */
	assert_int_equal(fleece_slotmap_take(&m, 1000, 3, &slot, &used), 0);
	assert_int_equal(slot, 3);
	assert_int_equal(used, 1);
	/* Taken: any other. */
	assert_int_equal(fleece_slotmap_take(&m, 1001, 3, &slot, &used), 0);
	assert_int_not_equal(slot, 3);
	for (i = 0; i < 3; i++)
		assert_int_equal(fleece_slotmap_take(&m, 2000 + i, NONE, &slot, &used), 0);
	assert_int_equal(used, 5);
	assert_int_equal(fleece_slotmap_take(&m, 3000, NONE, &slot, &used), -ENOSPC);
	assert_int_equal(fleece_slotmap_used(&m), 5);
	assert_false(fleece_slotmap_find(&m, 3000, &slot, &bad));
	/* A drop makes room; dropping twice finds nothing. */
	assert_true(fleece_slotmap_find(&m, 1000, &slot, &bad));
	assert_int_equal(slot, 3);
	assert_false(bad);
	assert_true(fleece_slotmap_drop(&m, 1000));
	assert_false(fleece_slotmap_drop(&m, 1000));
	assert_int_equal(fleece_slotmap_take(&m, 3000, NONE, &s2, &used), 0);
	assert_int_equal(s2, 3);
	/* Unreadable stays with the slot until the chunk is dropped. */
	fleece_slotmap_mark_unreadable(&m, 3000);
	assert_true(fleece_slotmap_find(&m, 3000, &slot, &bad));
	assert_true(bad);
	assert_int_equal(fleece_slotmap_used(&m), 5);
	assert_true(fleece_slotmap_drop(&m, 3000));
	assert_int_equal(fleece_slotmap_take(&m, 4000, 3, &slot, &used), 0);
	assert_int_equal(slot, 3);
	assert_true(fleece_slotmap_find(&m, 4000, &slot, &bad));
	assert_false(bad);
	assert_int_equal(kshim_warn_count, 0);
	/* Misuse warns instead of corrupting the map. */
	fleece_slotmap_mark_unreadable(&m, 5555);
	assert_int_equal(kshim_warn_count, 1);
	fleece_slotmap_exit(&m);
}

/* Random take/drop/find/mark against the model, on maps of many sizes. */
static void run_model(u32 nr_slots, u32 nr_chunks, unsigned int steps,
		      unsigned int seed)
{
	struct fleece_slotmap m;
	u32 *slot_of = malloc(nr_chunks * sizeof(u32));
	u32 *chunk_of = malloc(nr_slots * sizeof(u32));
	bool *bad_of = calloc(nr_chunks, sizeof(bool));
	u32 used = 0, slot, got_used, c;
	unsigned int i;
	bool bad;

	assert_non_null(slot_of);
	assert_non_null(chunk_of);
	assert_non_null(bad_of);
	memset(slot_of, 0xff, nr_chunks * sizeof(u32));
	memset(chunk_of, 0xff, nr_slots * sizeof(u32));
	srandom(seed);
	assert_int_equal(fleece_slotmap_init(&m, nr_slots), 0);
	for (i = 0; i < steps; i++) {
		c = random() % nr_chunks;
		switch (random() % 5) {
		case 0:
		case 1:
			if (slot_of[c] != NONE)
				break;
			{
				u32 want = random() % 3 ? random() % (nr_slots + 2) : NONE;
				int r = fleece_slotmap_take(&m, c, want, &slot, &got_used);

				if (used == nr_slots) {
					assert_int_equal(r, -ENOSPC);
					break;
				}
				assert_int_equal(r, 0);
				assert_true(slot < nr_slots);
				assert_int_equal(chunk_of[slot], NONE);
				if (want < nr_slots && chunk_of[want] == NONE)
					assert_int_equal(slot, want);
				slot_of[c] = slot;
				chunk_of[slot] = c;
				bad_of[c] = false;
				used++;
				assert_int_equal(got_used, used);
			}
			break;
		case 2:
			assert_int_equal(fleece_slotmap_drop(&m, c), slot_of[c] != NONE);
			if (slot_of[c] != NONE) {
				chunk_of[slot_of[c]] = NONE;
				slot_of[c] = NONE;
				used--;
			}
			break;
		case 3:
			if (slot_of[c] != NONE && random() % 4 == 0) {
				fleece_slotmap_mark_unreadable(&m, c);
				bad_of[c] = true;
			}
			break;
		default:
			break;
		}
		/* Every step: a lookup of a random chunk, and the count. */
		c = random() % nr_chunks;
		assert_int_equal(fleece_slotmap_find(&m, c, &slot, &bad), slot_of[c] != NONE);
		if (slot_of[c] != NONE) {
			assert_int_equal(slot, slot_of[c]);
			assert_int_equal(bad, bad_of[c]);
		}
		assert_int_equal(fleece_slotmap_used(&m), used);
	}
	/* At the end every chunk is where the model says. */
	for (c = 0; c < nr_chunks; c++) {
		assert_int_equal(fleece_slotmap_find(&m, c, &slot, NULL), slot_of[c] != NONE);
		if (slot_of[c] != NONE)
			assert_int_equal(slot, slot_of[c]);
	}
	fleece_slotmap_exit(&m);
	free(slot_of);
	free(chunk_of);
	free(bad_of);
	assert_int_equal(kshim_warn_count, 0);
}

static void test_model(void **state)
{
	static const u32 sizes[][2] = {
		{ 1, 4 }, { 2, 10 }, { 3, 3 }, { 7, 100 }, { 64, 64 },
		{ 100, 1000 }, { 1000, 300 }, { 4096, 100000 },
	};
	unsigned int i;

	(void)state;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		run_model(sizes[i][0], sizes[i][1], 20000, 1000 + i);
}

/*
 * Threads take, find and drop disjoint sets of chunks at once, as sessions
 * do under the range lock: the chains they share must never lose one.
 */
#define THREADS 4
#define PER_THREAD 2000

struct thread_arg {
	struct fleece_slotmap *m;
	u32 base;
	int failures;
};

static void *worker(void *p)
{
	struct thread_arg *a = p;
	u32 slots[PER_THREAD], slot, used;
	unsigned int round, i;
	bool bad;

	for (round = 0; round < 20; round++) {
		for (i = 0; i < PER_THREAD; i++)
			if (fleece_slotmap_take(a->m, a->base + i * THREADS, NONE,
						&slots[i], &used))
				a->failures++;
		for (i = 0; i < PER_THREAD; i++)
			if (!fleece_slotmap_find(a->m, a->base + i * THREADS, &slot, &bad) ||
			    slot != slots[i] || bad)
				a->failures++;
		for (i = 0; i < PER_THREAD; i++)
			if (!fleece_slotmap_drop(a->m, a->base + i * THREADS))
				a->failures++;
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct thread_arg args[THREADS];
	pthread_t th[THREADS];
	struct fleece_slotmap m;
	unsigned int i;

	(void)state;
	assert_int_equal(fleece_slotmap_init(&m, THREADS * PER_THREAD), 0);
	for (i = 0; i < THREADS; i++) {
		args[i] = (struct thread_arg){ .m = &m, .base = i };
		assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
	}
	for (i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].failures, 0);
	}
	assert_int_equal(fleece_slotmap_used(&m), 0);
	fleece_slotmap_exit(&m);
	assert_int_equal(kshim_warn_count, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_init_sizes, reset_warns),
		cmocka_unit_test_setup(test_full_and_want, reset_warns),
		cmocka_unit_test_setup(test_model, reset_warns),
		cmocka_unit_test_setup(test_threads, reset_warns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
