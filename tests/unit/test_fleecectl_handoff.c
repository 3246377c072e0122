// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for userspace/handoff.c, the thread that ends a backup's
 * batches: jobs run one at a time and in the order handed over; a job is
 * handed over only once the one before is done (the writer reuses its
 * buffer); after a failure no later job runs; stopping waits for the job
 * that runs. Each job yields the CPU several times, so that the threads
 * interleave; nothing here depends on how long anything takes.
 */
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <cmocka.h>

#include "handoff.h"

#define JOBS 2000

struct log {
	atomic_int running;		/* jobs running now */
	atomic_int done;		/* jobs completed */
	int order[JOBS];		/* the ids, in the order run */
	int fail_at;			/* the id that fails, or -1 */
};

struct job {
	int id;
};

static int run_job(void *arg_job, void *arg)
{
	struct job *j = arg_job;
	struct log *l = arg;
	int i, n;

	assert_int_equal(atomic_fetch_add(&l->running, 1), 0);
	for (i = 0; i < 1 + j->id % 5; i++)
		sched_yield();
	n = atomic_load(&l->done);
	l->order[n] = j->id;
	assert_int_equal(atomic_fetch_sub(&l->running, 1), 1);
	atomic_fetch_add(&l->done, 1);
	return j->id == l->fail_at ? -7 : 0;
}

/* Two jobs alternate, as the backup's two batches do. */
static void test_in_order(void **state)
{
	static struct log l = { .fail_at = -1 };
	struct job j[2];
	struct handoff *h;
	int i;

	(void)state;
	assert_int_equal(handoff_start(&h, "test", run_job, &l), 0);
	for (i = 0; i < JOBS; i++) {
		j[i % 2].id = i;
		assert_int_equal(handoff_submit(h, &j[i % 2]), 0);
		/* The job before used the other buffer: it is done. */
		assert_true(atomic_load(&l.done) >= i);
	}
	assert_int_equal(handoff_wait(h), 0);
	assert_int_equal(atomic_load(&l.done), JOBS);
	for (i = 0; i < JOBS; i++)
		assert_int_equal(l.order[i], i);
	handoff_stop(h);
}

static void test_failure_stops_later_jobs(void **state)
{
	static struct log l = { .fail_at = 5 };
	struct job j[2];
	struct handoff *h;
	int i, r = 0;

	(void)state;
	assert_int_equal(handoff_start(&h, "test", run_job, &l), 0);
	for (i = 0; i < 20 && !r; i++) {
		j[i % 2].id = i;
		r = handoff_submit(h, &j[i % 2]);
	}
	/* Job 6 was refused: it waited for job 5, which failed. */
	assert_int_equal(r, -7);
	assert_int_equal(i, 7);
	assert_int_equal(handoff_wait(h), -7);
	assert_int_equal(handoff_submit(h, &j[0]), -7);
	assert_int_equal(handoff_wait(h), -7);
	assert_int_equal(atomic_load(&l.done), 6);
	handoff_stop(h);
}

/* Stopping right after a hand-over: the job still runs, whole. */
static void test_stop_waits(void **state)
{
	static struct log l = { .fail_at = -1 };
	struct job j = { .id = 4 };
	struct handoff *h;
	int round;

	(void)state;
	for (round = 0; round < 200; round++) {
		assert_int_equal(handoff_start(&h, "test", run_job, &l), 0);
		assert_int_equal(handoff_submit(h, &j), 0);
		handoff_stop(h);
		assert_int_equal(atomic_load(&l.done), round + 1);
		assert_int_equal(atomic_load(&l.running), 0);
	}
}

/* Nothing handed over: the thread stops at once. */
static void test_idle_stop(void **state)
{
	static struct log l = { .fail_at = -1 };
	struct handoff *h;

	(void)state;
	assert_int_equal(handoff_start(&h, "test", run_job, &l), 0);
	assert_int_equal(handoff_wait(h), 0);
	handoff_stop(h);
	assert_int_equal(atomic_load(&l.done), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order),
		cmocka_unit_test(test_failure_stops_later_jobs),
		cmocka_unit_test(test_stop_waits),
		cmocka_unit_test(test_idle_stop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
