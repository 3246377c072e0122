// SPDX-License-Identifier: GPL-2.0
/*
 * Fair shared/exclusive range lock for the IO path; dm-fleece-rangelock.h
 * says what it promises.
 *
 * Nothing here touches a device, so tests/unit builds this file in userspace.
 */
#include <linux/bug.h>
#include <linux/cache.h>
#include <linux/errno.h>
#include <linux/hash.h>
#include <linux/list.h>
#include <linux/log2.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

#include "dm-fleece-rangelock.h"

/*
 * Buckets are taken by many CPUs at IO rate; one cache line each keeps a
 * bucket's traffic from slowing down its neighbours.
 */
struct fleece_rl_bucket {
	spinlock_t lock;		/* guards the lists and their reqs' state */
	struct list_head holders;	/* granted requests, in no order */
	struct list_head waiters;	/* queued requests, oldest first */
} ____cacheline_aligned_in_smp;

static bool rl_conflict(const struct fleece_rl_req *a,
			const struct fleece_rl_req *b)
{
	return (a->exclusive || b->exclusive) &&
	       a->start < b->end && b->start < a->end;
}

/* Does @req conflict with a request on @list before @stop (NULL: any)? */
static bool rl_conflict_before(const struct fleece_rl_req *req,
			       const struct list_head *list,
			       const struct fleece_rl_req *stop)
{
	const struct fleece_rl_req *other;

	list_for_each_entry(other, list, node) {
		if (other == stop)
			break;
		if (rl_conflict(req, other))
			return true;
	}
	return false;
}

static bool rl_req_valid(const struct fleece_rl *rl,
			 const struct fleece_rl_req *req)
{
	return req->start < req->end &&
	       req->start >> rl->region_shift ==
	       (req->end - 1) >> rl->region_shift;
}

/* The bucket of @req's region: that of its first unit. */
static struct fleece_rl_bucket *rl_bucket(const struct fleece_rl *rl,
					  const struct fleece_rl_req *req)
{
	u64 region = req->start >> rl->region_shift;

	/* hash_64() of 0 bits would shift a u64 by 64. */
	if (!rl->hash_bits)
		return rl->buckets;
	return &rl->buckets[hash_64(region, rl->hash_bits)];
}

int fleece_rl_init(struct fleece_rl *rl, unsigned int region_shift,
		   unsigned int nr_buckets)
{
	unsigned int i;

	if (region_shift >= 64 || !nr_buckets ||
	    nr_buckets > FLEECE_RL_MAX_BUCKETS)
		return -EINVAL;
	nr_buckets = roundup_pow_of_two(nr_buckets);

	rl->buckets = kvcalloc(nr_buckets, sizeof(*rl->buckets), GFP_KERNEL);
	if (!rl->buckets)
		return -ENOMEM;
	for (i = 0; i < nr_buckets; i++) {
		spin_lock_init(&rl->buckets[i].lock);
		INIT_LIST_HEAD(&rl->buckets[i].holders);
		INIT_LIST_HEAD(&rl->buckets[i].waiters);
	}
	rl->region_shift = region_shift;
	rl->nr_buckets = nr_buckets;
	rl->hash_bits = ilog2(nr_buckets);
	return 0;
}

void fleece_rl_exit(struct fleece_rl *rl)
{
	WARN_ON(!fleece_rl_idle(rl));
	kvfree(rl->buckets);
	rl->buckets = NULL;
}

void fleece_rl_req_init(struct fleece_rl_req *req, u64 start, u64 end,
			bool exclusive,
			void (*granted)(struct fleece_rl_req *req))
{
	INIT_LIST_HEAD(&req->node);
	req->next_granted = NULL;
	req->state = FLEECE_RL_IDLE;
	req->start = start;
	req->end = end;
	req->exclusive = exclusive;
	req->granted = granted;
}

bool fleece_rl_acquire(struct fleece_rl *rl, struct fleece_rl_req *req)
{
	struct fleece_rl_bucket *b;
	unsigned long flags;
	bool granted;

	/*
	 * A request over two regions is locked against its first region
	 * only, which can let it overlap a conflicting holder: a caller bug,
	 * but one that must not take the machine down.
	 */
	WARN_ON_ONCE(!rl_req_valid(rl, req));

	b = rl_bucket(rl, req);
	spin_lock_irqsave(&b->lock, flags);
	if (WARN_ON_ONCE(req->state != FLEECE_RL_IDLE)) {
		/* Acquired twice: leave the lists alone and report its state. */
		granted = req->state == FLEECE_RL_HELD;
	} else if (rl_conflict_before(req, &b->holders, NULL) ||
		   rl_conflict_before(req, &b->waiters, NULL)) {
		/*
		 * Queue behind a conflicting waiter even when no holder is in
		 * the way: letting requests pass would starve the waiter.
		 */
		req->state = FLEECE_RL_WAITING;
		list_add_tail(&req->node, &b->waiters);
		granted = false;
	} else {
		req->state = FLEECE_RL_HELD;
		list_add(&req->node, &b->holders);
		granted = true;
	}
	spin_unlock_irqrestore(&b->lock, flags);
	return granted;
}

void fleece_rl_transfer(struct fleece_rl *rl, struct fleece_rl_req *from,
			struct fleece_rl_req *to)
{
	struct fleece_rl_bucket *b = rl_bucket(rl, from);
	unsigned long flags;

	spin_lock_irqsave(&b->lock, flags);
	if (WARN_ON_ONCE(from->state != FLEECE_RL_HELD ||
			 to->state != FLEECE_RL_IDLE)) {
		spin_unlock_irqrestore(&b->lock, flags);
		return;
	}
	to->start = from->start;
	to->end = from->end;
	to->exclusive = from->exclusive;
	/* Same place among the holders: no waiter's verdict changes. */
	list_replace_init(&from->node, &to->node);
	to->state = FLEECE_RL_HELD;
	from->state = FLEECE_RL_IDLE;
	spin_unlock_irqrestore(&b->lock, flags);
}

void fleece_rl_release(struct fleece_rl *rl, struct fleece_rl_req *req)
{
	struct fleece_rl_bucket *b = rl_bucket(rl, req);
	struct fleece_rl_req *w, *tmp, *first = NULL, **tail = &first;
	unsigned long flags;

	spin_lock_irqsave(&b->lock, flags);
	if (WARN_ON_ONCE(req->state != FLEECE_RL_HELD)) {
		spin_unlock_irqrestore(&b->lock, flags);
		return;
	}
	list_del_init(&req->node);
	req->state = FLEECE_RL_IDLE;

	list_for_each_entry_safe(w, tmp, &b->waiters, node) {
		/*
		 * Every waiter conflicts with a holder or an earlier waiter,
		 * else it would hold already. A waiter granted here becomes a
		 * holder and so still blocks whatever it blocked; the only
		 * blocker that can be gone is @req. Waiters that don't
		 * conflict with @req therefore stay, without a scan.
		 */
		if (!rl_conflict(w, req))
			continue;
		if (rl_conflict_before(w, &b->holders, NULL) ||
		    rl_conflict_before(w, &b->waiters, w))
			continue;
		list_move_tail(&w->node, &b->holders);
		w->state = FLEECE_RL_HELD;
		w->next_granted = NULL;
		*tail = w;
		tail = &w->next_granted;
	}
	spin_unlock_irqrestore(&b->lock, flags);

	/*
	 * Callbacks run unlocked so they may take this lock again, e.g. to
	 * release at once. Fetch the link first: once its callback has run,
	 * a request belongs to its owner again and may be gone.
	 */
	while (first) {
		w = first;
		first = w->next_granted;
		if (!WARN_ON_ONCE(!w->granted))
			w->granted(w);
	}
}

bool fleece_rl_idle(struct fleece_rl *rl)
{
	unsigned long flags;
	unsigned int i;
	bool idle = true;

	for (i = 0; i < rl->nr_buckets && idle; i++) {
		struct fleece_rl_bucket *b = &rl->buckets[i];

		spin_lock_irqsave(&b->lock, flags);
		idle = list_empty(&b->holders) && list_empty(&b->waiters);
		spin_unlock_irqrestore(&b->lock, flags);
	}
	return idle;
}
