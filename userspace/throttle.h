/* SPDX-License-Identifier: GPL-2.0 */
#ifndef FLEECECTL_THROTTLE_H
#define FLEECECTL_THROTTLE_H

#include <stdint.h>

/*
 * A byte-rate limit for a backup's reads of the view. The backup shares
 * the origin's disk with the applications; unthrottled 1 MiB reads can take
 * most of its bandwidth for the whole backup window.
 */
struct throttle {
	uint64_t rate;		/* bytes per second; 0: no limit */
	double paid;		/* when what was read so far is paid for */
};

void throttle_init(struct throttle *t, uint64_t rate);

/*
 * throttle_account() - account @bytes just read and wait until they are
 * paid for at the limit's rate.
 * Returns 0, or -EINTR when a termination signal arrived while waiting.
 */
int throttle_account(struct throttle *t, uint64_t bytes);

#endif
