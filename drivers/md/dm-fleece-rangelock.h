/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-fleece range lock: a fair shared/exclusive lock over ranges of units
 * (chunks), usable from the block IO path.
 *
 * View reads hold a range shared while they read the origin; copy-before-write
 * and view discards hold a range exclusive. Nothing here sleeps or allocates
 * after fleece_rl_init(): a request lives in the caller's per-bio data, and a
 * request that cannot be granted at once is queued and granted later through
 * its callback, from whatever context releases the blocking holder.
 *
 * The unit space is cut into regions of (1 << region_shift) units and every
 * request lies inside one region, so each region needs only its own bucket's
 * spinlock. Regions hash into a power-of-two array of buckets; two regions
 * sharing a bucket never conflict because their ranges cannot overlap.
 *
 * Fairness is FIFO per bucket: a request that conflicts with any holder or
 * any queued request waits at the tail, and a waiter is granted only once it
 * conflicts with no holder and no earlier waiter, so nothing starves.
 */
#ifndef DM_FLEECE_RANGELOCK_H
#define DM_FLEECE_RANGELOCK_H

#include <linux/bits.h>
#include <linux/list.h>
#include <linux/types.h>

/* Most buckets fleece_rl_init() accepts, after rounding up. */
#define FLEECE_RL_MAX_BUCKETS BIT(20)

struct fleece_rl_bucket;

/**
 * struct fleece_rl_req - one range lock request, embedded by its owner.
 * @node: private: on its bucket's holders or waiters list.
 * @next_granted: private: links requests granted by one release, so their
 *	callbacks can run after the bucket lock is dropped.
 * @state: private: FLEECE_RL_IDLE, FLEECE_RL_WAITING or FLEECE_RL_HELD.
 * @start: first unit of the range.
 * @end: one past the last unit; the range is [@start, @end).
 * @exclusive: true for an exclusive request, false for a shared one.
 * @granted: called once when a queued request is granted; see
 *	fleece_rl_acquire().
 *
 * Set up with fleece_rl_req_init(). A request may be acquired again after it
 * has been released; @start, @end and @exclusive may be changed only while
 * the request is neither held nor queued.
 */
struct fleece_rl_req {
	struct list_head node;
	struct fleece_rl_req *next_granted;
	unsigned int state;
	u64 start, end;
	bool exclusive;
	void (*granted)(struct fleece_rl_req *req);
};

/* Values of fleece_rl_req.state. */
enum {
	FLEECE_RL_IDLE,
	FLEECE_RL_WAITING,
	FLEECE_RL_HELD,
};

/**
 * struct fleece_rl - a range lock.
 * @region_shift: a region is (1 << @region_shift) units.
 * @nr_buckets: number of buckets, a power of two.
 * @hash_bits: log2(@nr_buckets).
 * @buckets: the buckets.
 */
struct fleece_rl {
	unsigned int region_shift;
	unsigned int nr_buckets;
	unsigned int hash_bits;
	struct fleece_rl_bucket *buckets;
};

/**
 * fleece_rl_init() - set up an idle range lock.
 * @rl: the lock.
 * @region_shift: log2 of the region size in units; below 64.
 * @nr_buckets: bucket count, rounded up to a power of two; 1 to
 *	FLEECE_RL_MAX_BUCKETS.
 *
 * Context: process context, may sleep (allocates with GFP_KERNEL).
 * Return: 0, -EINVAL for a bad argument or -ENOMEM.
 */
int fleece_rl_init(struct fleece_rl *rl, unsigned int region_shift,
		   unsigned int nr_buckets);

/**
 * fleece_rl_exit() - free a range lock's buckets.
 * @rl: the lock, set up by fleece_rl_init().
 *
 * Warns if a request is still held or queued; such requests are forgotten.
 *
 * Context: process context.
 */
void fleece_rl_exit(struct fleece_rl *rl);

/**
 * fleece_rl_req_init() - prepare a request for fleece_rl_acquire().
 * @req: the request.
 * @start: first unit of the range.
 * @end: one past the last unit; @start < @end, and both ends must lie in one
 *	region: (@start >> region_shift) == ((@end - 1) >> region_shift).
 * @exclusive: true for exclusive, false for shared.
 * @granted: called when the request, once queued, is granted; not NULL.
 *
 * Context: any; doesn't sleep, safe from interrupt context.
 */
void fleece_rl_req_init(struct fleece_rl_req *req, u64 start, u64 end,
			bool exclusive,
			void (*granted)(struct fleece_rl_req *req));

/**
 * fleece_rl_acquire() - take a range, or queue for it.
 * @rl: the lock.
 * @req: an idle request set up by fleece_rl_req_init().
 *
 * The request is granted at once if it conflicts with no holder and no
 * queued request of its bucket; two requests conflict when their ranges
 * overlap and at least one is exclusive. Otherwise it is queued behind the
 * requests already waiting.
 *
 * A queued request is granted by a later fleece_rl_release(), which then
 * calls @req->granted(@req) in the releaser's context (possibly hard irq),
 * with no lock of @rl held. That may happen on another CPU before this
 * function returns false, so the caller must be ready for it beforehand.
 *
 * A request crossing a region boundary is a bug: it warns once and is then
 * locked against its first region only.
 *
 * Context: any; doesn't sleep, safe from interrupt context.
 * Return: true if granted now (@req->granted is not called), false if queued
 * (@req->granted will be called exactly once).
 */
bool fleece_rl_acquire(struct fleece_rl *rl, struct fleece_rl_req *req);

/**
 * fleece_rl_transfer() - hand a held range over to another request.
 * @rl: the lock.
 * @from: a held request; idle afterwards.
 * @to: an idle request; it holds @from's range (same bounds and mode) on
 *	return, and is released with fleece_rl_release() like any other.
 *
 * Nobody else can take the range in between: waiters stay queued. For a
 * holder whose own memory goes away before the range may be released (a
 * bio completing while what it locked is still being written elsewhere).
 *
 * Context: any; doesn't sleep, safe from interrupt context.
 */
void fleece_rl_transfer(struct fleece_rl *rl, struct fleece_rl_req *from,
			struct fleece_rl_req *to);

/**
 * fleece_rl_release() - drop a held range and grant the waiters it blocked.
 * @rl: the lock.
 * @req: a request that holds its range.
 *
 * Waiters of @req's bucket are granted in queue order, each one that
 * conflicts with no holder and no earlier waiter still queued. Their
 * callbacks run before this function returns, after the bucket lock is
 * dropped. Afterwards @req is idle and may be acquired again.
 *
 * Releasing a request that does not hold its range warns once and does
 * nothing.
 *
 * Context: any; doesn't sleep, safe from interrupt context.
 */
void fleece_rl_release(struct fleece_rl *rl, struct fleece_rl_req *req);

/**
 * fleece_rl_idle() - check that nothing is held or queued.
 * @rl: the lock.
 *
 * Only a snapshot: each bucket is checked under its own lock in turn. Meant
 * for teardown and tests.
 *
 * Context: any; doesn't sleep, safe from interrupt context.
 * Return: true if no request is held or queued in any bucket.
 */
bool fleece_rl_idle(struct fleece_rl *rl);

#endif /* DM_FLEECE_RANGELOCK_H */
