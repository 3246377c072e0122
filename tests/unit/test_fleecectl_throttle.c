// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for userspace/throttle.c, the backup's --rate-limit: the reads
 * are paced at the rate after a short burst, no limit means no wait, and a
 * termination signal ends a wait. Only lower bounds on time are exact (a
 * sleep is never short); the upper bounds are loose, for a busy host.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "signals.h"
#include "throttle.h"
#include "util.h"

/* Seconds that accounting @mib reads of 1 MiB took. */
static double read_mib(struct throttle *t, int mib)
{
	double t0 = now_seconds();
	int i;

	for (i = 0; i < mib; i++)
		assert_int_equal(throttle_account(t, 1 << 20), 0);
	return now_seconds() - t0;
}

static void test_no_limit(void **state)
{
	struct throttle t;

	(void)state;
	throttle_init(&t, 0);
	assert_true(read_mib(&t, 1000) < 1.0);
}

/* 6 MiB at 8 MiB/s: 0.75 s, less the 0.25 s of credit a fresh start has. */
static void test_paced(void **state)
{
	struct throttle t;
	double el;

	(void)state;
	throttle_init(&t, 8 << 20);
	el = read_mib(&t, 6);
	assert_true(el >= 0.5 - 0.01);
	assert_true(el < 5.0);
}

/* Idle time earns at most the burst: 1 s idle, then 4 MiB at 4 MiB/s. */
static void test_burst_bounded(void **state)
{
	struct throttle t;
	double el;

	(void)state;
	throttle_init(&t, 4 << 20);
	usleep(1000 * 1000);
	el = read_mib(&t, 4);
	assert_true(el >= 0.75 - 0.01);
	assert_true(el < 5.0);
}

/* A SIGTERM caught 0.3 s into a 100 s wait ends it with -EINTR. */
static void test_signal(void **state)
{
	struct throttle t;
	double t0, el;
	pid_t pid;

	(void)state;
	sig_catch();
	throttle_init(&t, 64 * 1024);
	t0 = now_seconds();
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		usleep(300 * 1000);
		kill(getppid(), SIGTERM);
		_exit(0);
	}
	assert_int_equal(throttle_account(&t, (uint64_t)100 * 64 * 1024), -EINTR);
	el = now_seconds() - t0;
	assert_int_equal(sig_caught(), SIGTERM);
	assert_true(el >= 0.29 && el < 5.0);
	waitpid(pid, NULL, 0);
	sig_restore();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_limit),
		cmocka_unit_test(test_paced),
		cmocka_unit_test(test_burst_bounded),
		cmocka_unit_test(test_signal),
	};

	return cmocka_run_group_tests_name("fleecectl_throttle", tests, NULL, NULL);
}
