// SPDX-License-Identifier: GPL-2.0
/*
 * Rate limit for backup reads: a token bucket that holds at most BURST
 * seconds of credit. Time the backup spent elsewhere (an fdatasync, a
 * verify pass, a slow image) earns that much credit and no more, so the
 * reads never come in a burst longer than BURST at full speed: it is the
 * origin's applications the limit protects.
 */
#include "signals.h"
#include "throttle.h"
#include "util.h"

#define BURST 0.25	/* seconds of credit */

void throttle_init(struct throttle *t, uint64_t rate)
{
	t->rate = rate;
	t->paid = now_seconds();
}

int throttle_account(struct throttle *t, uint64_t bytes)
{
	double now;

	if (!t->rate)
		return 0;
	now = now_seconds();
	if (t->paid < now - BURST)
		t->paid = now - BURST;
	t->paid += (double)bytes / (double)t->rate;
	return sig_sleep_until(t->paid);
}
