// SPDX-License-Identifier: GPL-2.0
/*
 * Signals turned into a flag while a device is suspended.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "signals.h"
#include "util.h"

static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
#define NR_SIGS (sizeof(sigs) / sizeof(sigs[0]))

static volatile sig_atomic_t caught;
static struct sigaction saved[NR_SIGS];
static int installed;

static void handler(int sig)
{
	caught = sig;
}

void sig_catch(void)
{
	struct sigaction sa;
	unsigned int i;

	if (installed)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < NR_SIGS; i++)
		sigaddset(&sa.sa_mask, sigs[i]);
	sa.sa_flags = 0;
	for (i = 0; i < NR_SIGS; i++)
		sigaction(sigs[i], &sa, &saved[i]);
	installed = 1;
}

void sig_restore(void)
{
	unsigned int i;

	if (!installed)
		return;
	for (i = 0; i < NR_SIGS; i++)
		sigaction(sigs[i], &saved[i], NULL);
	installed = 0;
}

int sig_caught(void)
{
	return caught;
}

/* Sleep in steps no longer than this, to see a caught signal promptly. */
#define STEP 0.05

int sig_sleep_until(double when)
{
	struct timespec ts;
	double left;

	for (;;) {
		if (caught)
			return -EINTR;
		left = when - now_seconds();
		if (left <= 0)
			return 0;
		if (left > STEP)
			left = STEP;
		ts.tv_sec = (time_t)left;
		ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
		nanosleep(&ts, NULL);
	}
}

/*
 * Only a build for the tests obeys it (userspace/Makefile, TEST_HOOKS=1, the
 * developer build): an installed fleecectl must never hold an origin
 * suspended, its writers blocked, because of its environment.
 */
void test_pause_after_suspend(const char *dev)
{
	const char *env = getenv("FLEECECTL_TEST_PAUSE_AFTER_SUSPEND");

	if (!env || !*env)
		return;
#ifdef FLEECECTL_TEST_HOOKS
	/* Past msg_hold(): the tests wait for this line to act. */
	fprintf(stderr, "fleecectl: test: %s suspended; pausing %s s "
		"(FLEECECTL_TEST_PAUSE_AFTER_SUSPEND)\n", dev, env);
	fflush(stderr);
	sig_sleep_until(now_seconds() + atof(env));
#else
	msg_warn("%s suspended: FLEECECTL_TEST_PAUSE_AFTER_SUSPEND ignored, this "
		 "fleecectl was not built for tests (make -C userspace TEST_HOOKS=1)",
		 dev);
#endif
}
