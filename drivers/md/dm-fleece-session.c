// SPDX-License-Identifier: GPL-2.0
/*
 * Session state changes that both the copy engine and the targets make.
 */
#include "dm-fleece.h"

void fleece_session_event(struct work_struct *work)
{
	struct fleece_session *s = container_of(work, struct fleece_session,
						event_work);

	dm_table_event(s->ti->table);
}

void fleece_session_invalidate(struct fleece_session *s, const char *why)
{
	if (test_and_set_bit(FLEECE_SESSION_INVALID, &s->flags))
		return;
	/* Pairs with the test in view_end_io(): a read that may have seen
	 * post-invalidation writes must see the flag when it completes.
	 */
	smp_mb__after_atomic();
	DMERR_LIMIT("%s: session invalidated: %s",
		    dm_table_device_name(s->ti->table), why);
	queue_work(system_wq, &s->event_work);
}
