// SPDX-License-Identifier: GPL-2.0
/*
 * A session's scratch slots and the chunks they hold; dm-fleece-slotmap.h
 * says what it promises.
 *
 * Nothing here touches a device, so tests/unit builds this file in userspace.
 */
#include <linux/bitmap.h>
#include <linux/errno.h>
#include <linux/hash.h>
#include <linux/log2.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

#include "dm-fleece-slotmap.h"

#define NONE U32_MAX

/*
 * Sizes that can legitimately be too big for the machine: fail quietly,
 * and rather than have the OOM killer make room for a backup's view.
 */
#define BIG_GFP (GFP_KERNEL | __GFP_NOWARN | __GFP_RETRY_MAYFAIL)

static void *zalloc_array(size_t n, size_t size)
{
	return kvcalloc(n, size, BIG_GFP);
}

/* Arrays every entry of which is written before it is read. */
static void *alloc_array(size_t n, size_t size)
{
	return kvmalloc_array(n, size, BIG_GFP);
}

int fleece_slotmap_init(struct fleece_slotmap *m, u64 nr_slots)
{
	u32 nr_buckets;

	memset(m, 0, sizeof(*m));
	if (!nr_slots || nr_slots > FLEECE_SLOTMAP_MAX_SLOTS)
		return -EINVAL;
	spin_lock_init(&m->lock);
	m->nr_slots = nr_slots;
	/* Between half and one bucket per slot: chains of two when full. */
	nr_buckets = rounddown_pow_of_two(m->nr_slots);
	m->hash_bits = ilog2(nr_buckets);

	m->in_use = zalloc_array(BITS_TO_LONGS(m->nr_slots), sizeof(long));
	m->unreadable = zalloc_array(BITS_TO_LONGS(m->nr_slots), sizeof(long));
	m->chunk = alloc_array(m->nr_slots, sizeof(u32));
	m->next = alloc_array(m->nr_slots, sizeof(u32));
	m->head = alloc_array(nr_buckets, sizeof(u32));
	if (!m->in_use || !m->unreadable || !m->chunk || !m->next || !m->head) {
		fleece_slotmap_exit(m);
		return -ENOMEM;
	}
	memset(m->head, 0xff, nr_buckets * sizeof(u32));
	return 0;
}

void fleece_slotmap_exit(struct fleece_slotmap *m)
{
	kvfree(m->head);
	kvfree(m->next);
	kvfree(m->chunk);
	kvfree(m->unreadable);
	kvfree(m->in_use);
	memset(m, 0, sizeof(*m));
}

static u32 *bucket(struct fleece_slotmap *m, u32 chunk)
{
	/* hash_32() of 0 bits would shift a u32 by 32. */
	return &m->head[m->hash_bits ? hash_32(chunk, m->hash_bits) : 0];
}

/* The link that points at @chunk's slot, or at NONE at the chain's end. */
static u32 *find_link(struct fleece_slotmap *m, u32 chunk)
{
	u32 *link = bucket(m, chunk);

	lockdep_assert_held(&m->lock);
	while (*link != NONE && m->chunk[*link] != chunk)
		link = &m->next[*link];
	return link;
}

int fleece_slotmap_take(struct fleece_slotmap *m, u32 chunk, u32 want,
			u32 *slot, u32 *used)
{
	u32 *head;
	u32 s;

	spin_lock(&m->lock);
	if (want < m->nr_slots && !test_bit(want, m->in_use)) {
		s = want;
	} else {
		s = find_next_zero_bit(m->in_use, m->nr_slots, m->hint);
		if (s >= m->nr_slots)
			s = find_first_zero_bit(m->in_use, m->nr_slots);
		if (s >= m->nr_slots) {
			spin_unlock(&m->lock);
			return -ENOSPC;
		}
	}
	WARN_ON_ONCE(*find_link(m, chunk) != NONE);
	__set_bit(s, m->in_use);
	__clear_bit(s, m->unreadable);
	head = bucket(m, chunk);
	m->chunk[s] = chunk;
	m->next[s] = *head;
	*head = s;
	m->used++;
	m->hint = s + 1;
	*used = m->used;
	spin_unlock(&m->lock);
	*slot = s;
	return 0;
}

bool fleece_slotmap_find(struct fleece_slotmap *m, u32 chunk, u32 *slot,
			 bool *unreadable)
{
	bool found;
	u32 s;

	spin_lock(&m->lock);
	s = *find_link(m, chunk);
	found = s != NONE;
	if (found) {
		*slot = s;
		if (unreadable)
			*unreadable = test_bit(s, m->unreadable);
	}
	spin_unlock(&m->lock);
	return found;
}

bool fleece_slotmap_drop(struct fleece_slotmap *m, u32 chunk)
{
	u32 *link, s;

	spin_lock(&m->lock);
	link = find_link(m, chunk);
	s = *link;
	if (s != NONE) {
		*link = m->next[s];
		__clear_bit(s, m->in_use);
		m->used--;
	}
	spin_unlock(&m->lock);
	return s != NONE;
}

void fleece_slotmap_mark_unreadable(struct fleece_slotmap *m, u32 chunk)
{
	u32 s;

	spin_lock(&m->lock);
	s = *find_link(m, chunk);
	if (!WARN_ON_ONCE(s == NONE))
		__set_bit(s, m->unreadable);
	spin_unlock(&m->lock);
}

u32 fleece_slotmap_used(struct fleece_slotmap *m)
{
	u32 used;

	spin_lock(&m->lock);
	used = m->used;
	spin_unlock(&m->lock);
	return used;
}
