// SPDX-License-Identifier: GPL-2.0
/*
 * Rate limit for backup reads: a token bucket that holds at most BURST
 * seconds of credit. Time the backup spent elsewhere (an fdatasync, a
 * verify pass, a slow image) earns that much credit and no more, so the
 * reads never come in a burst longer than BURST at full speed: it is the
 * origin's applications the limit protects.
 */
#include <errno.h>
#include <time.h>

#include "signals.h"
#include "throttle.h"
#include "util.h"

#define BURST 0.25	/* seconds of credit */
#define SLICE 0.1	/* longest sleep between checks for a signal */

void throttle_init(struct throttle *t, uint64_t rate)
{
	t->rate = rate;
	t->paid = now_seconds();
}

int throttle_account(struct throttle *t, uint64_t bytes)
{
	double now, left;
	struct timespec ts;

	if (!t->rate)
		return 0;
	now = now_seconds();
	if (t->paid < now - BURST)
		t->paid = now - BURST;
	t->paid += (double)bytes / (double)t->rate;
	for (;;) {
		if (sig_caught())
			return -EINTR;
		left = t->paid - now_seconds();
		if (left <= 0)
			return 0;
		if (left > SLICE)
			left = SLICE;
		ts.tv_sec = (time_t)left;
		ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
		/* EINTR is fine: sig_caught() decides */
		nanosleep(&ts, NULL);
	}
}
