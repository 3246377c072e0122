// SPDX-License-Identifier: GPL-2.0
/*
 * Scratch space of a session: chunk-sized slots handed out on demand and
 * returned when the reader releases what it has read, with the low-water
 * event on top of the slot map (dm-fleece-slotmap.c).
 */
#include "dm-fleece.h"

int fleece_scratch_take(struct fleece_session *s, u64 chunk, u32 want,
			u32 *slot)
{
	u32 used;
	int r;

	r = fleece_slotmap_take(&s->slots, chunk, want, slot, &used);
	if (r)
		return r;
	if (s->low_water && s->slots.nr_slots - used < s->low_water &&
	    !test_and_set_bit(FLEECE_SESSION_LOW_WATER_HIT, &s->flags))
		queue_work(system_wq, &s->event_work);
	return 0;
}

bool fleece_scratch_drop(struct fleece_session *s, u64 chunk)
{
	if (!fleece_slotmap_drop(&s->slots, chunk))
		return false;
	/* Re-arm the low-water event once there is room above the mark. */
	if (s->slots.nr_slots - fleece_slotmap_used(&s->slots) >= s->low_water)
		clear_bit(FLEECE_SESSION_LOW_WATER_HIT, &s->flags);
	return true;
}
