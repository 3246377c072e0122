// SPDX-License-Identifier: GPL-2.0
/*
 * Scratch space of a session: chunk-sized slots handed out on demand and
 * returned when the reader releases what it has read.
 */
#include <linux/bitmap.h>

#include "dm-fleece.h"

int fleece_scratch_alloc(struct fleece_session *s, u64 want, u64 *slot)
{
	bool raise = false;
	u64 found;

	spin_lock(&s->alloc_lock);
	if (want < s->nr_slots && !test_bit(want, s->slots)) {
		found = want;
	} else {
		found = find_next_zero_bit(s->slots, s->nr_slots, s->alloc_hint);
		if (found >= s->nr_slots)
			found = find_first_zero_bit(s->slots, s->nr_slots);
		if (found >= s->nr_slots) {
			spin_unlock(&s->alloc_lock);
			return -ENOSPC;
		}
	}
	__set_bit(found, s->slots);
	s->slots_used++;
	s->alloc_hint = found + 1;
	if (s->low_water && s->nr_slots - s->slots_used < s->low_water &&
	    !test_and_set_bit(FLEECE_SESSION_LOW_WATER_HIT, &s->flags))
		raise = true;
	spin_unlock(&s->alloc_lock);

	if (raise)
		queue_work(system_wq, &s->event_work);
	*slot = found;
	return 0;
}

void fleece_scratch_free(struct fleece_session *s, u64 slot)
{
	spin_lock(&s->alloc_lock);
	if (!WARN_ON_ONCE(!test_bit(slot, s->slots))) {
		__clear_bit(slot, s->slots);
		s->slots_used--;
	}
	/* Re-arm the low-water event once there is room above the mark. */
	if (s->nr_slots - s->slots_used >= s->low_water)
		clear_bit(FLEECE_SESSION_LOW_WATER_HIT, &s->flags);
	spin_unlock(&s->alloc_lock);
}
