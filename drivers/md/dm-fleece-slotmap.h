/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-fleece slot map: a session's scratch device cut into chunk-sized slots,
 * and which origin chunk each slot preserves.
 *
 * Every byte it will ever need is allocated when the view is constructed:
 * taking a slot on the copy path (an origin write waiting for its copy)
 * allocates nothing, so neither memory pressure nor reclaim that needs IO
 * through the origin can stop a copy or invalidate a view. The price is a
 * fixed cost per scratch slot, about 11 bytes (FLEECE_SLOTMAP_BYTES_PER_SLOT
 * gives the upper bound), whether the slot is used or not.
 *
 * Lookups by chunk go through a hash table whose chains are threaded
 * through the slots themselves. One spinlock covers the map: a lookup walks
 * a chain other chunks share, which a concurrent insert or remove of one of
 * those chunks could change under it.
 */
#ifndef DM_FLEECE_SLOTMAP_H
#define DM_FLEECE_SLOTMAP_H

#include <linux/bits.h>
#include <linux/spinlock.h>
#include <linux/types.h>

/* Most slots a map holds: each array stays under 1 GiB (kvmalloc's limit is 2 GiB). */
#define FLEECE_SLOTMAP_MAX_SLOTS	BIT(28)

/* Memory per slot, at most: chunk, chain link, bucket head, two bits. */
#define FLEECE_SLOTMAP_BYTES_PER_SLOT	13

/**
 * struct fleece_slotmap - chunk-sized scratch slots and their chunks.
 * @lock: protects everything below.
 * @nr_slots: slots; scratch capacity in chunks.
 * @used: slots taken.
 * @hint: where the next search for a free slot starts.
 * @in_use: one bit per slot, set while taken.
 * @unreadable: one bit per slot, set when the chunk it was taken for could
 *	not be read from the origin: the chunk is lost to the view.
 * @chunk: per slot in use, the chunk it holds.
 * @next: per slot in use, the next slot in its hash chain, or U32_MAX.
 * @head: per bucket, the first slot of its chain, or U32_MAX.
 * @hash_bits: log2 of the number of buckets.
 */
struct fleece_slotmap {
	spinlock_t lock;		/* everything below */
	u32 nr_slots;
	u32 used;
	u32 hint;
	unsigned long *in_use;
	unsigned long *unreadable;
	u32 *chunk;
	u32 *next;
	u32 *head;
	unsigned int hash_bits;
};

/**
 * fleece_slotmap_bytes() - memory a map of @nr_slots takes, at most.
 * @nr_slots: the map's slots.
 */
static inline u64 fleece_slotmap_bytes(u64 nr_slots)
{
	return nr_slots * FLEECE_SLOTMAP_BYTES_PER_SLOT;
}

/**
 * fleece_slotmap_init() - allocate an empty map.
 * @m: the map.
 * @nr_slots: 1 to FLEECE_SLOTMAP_MAX_SLOTS.
 *
 * Context: process context, may sleep.
 * Return: 0, -EINVAL for a bad @nr_slots, or -ENOMEM.
 */
int fleece_slotmap_init(struct fleece_slotmap *m, u64 nr_slots);

/**
 * fleece_slotmap_exit() - free a map's memory.
 * @m: the map; may be one whose init failed, or all zero.
 */
void fleece_slotmap_exit(struct fleece_slotmap *m);

/**
 * fleece_slotmap_take() - give @chunk a slot.
 * @m: the map.
 * @chunk: a chunk that has no slot.
 * @want: the slot to try first (so that runs of chunks land in runs of
 *	slots); U32_MAX or any taken slot for no preference.
 * @slot: the slot on success.
 * @used: on success, the slots taken now, counting this one.
 *
 * Context: any but hard irq; doesn't sleep or allocate.
 * Return: 0, or -ENOSPC when every slot is taken.
 */
int fleece_slotmap_take(struct fleece_slotmap *m, u32 chunk, u32 want,
			u32 *slot, u32 *used);

/**
 * fleece_slotmap_find() - the slot of a chunk.
 * @m: the map.
 * @chunk: the chunk.
 * @slot: its slot, when it has one.
 * @unreadable: set to whether the slot was marked unreadable; may be NULL.
 *
 * Context: any but hard irq; doesn't sleep.
 * Return: true if @chunk has a slot.
 */
bool fleece_slotmap_find(struct fleece_slotmap *m, u32 chunk, u32 *slot,
			 bool *unreadable);

/**
 * fleece_slotmap_drop() - free the slot of a chunk, if it has one.
 * @m: the map.
 * @chunk: the chunk.
 *
 * Context: any but hard irq; doesn't sleep.
 * Return: true if @chunk had a slot.
 */
bool fleece_slotmap_drop(struct fleece_slotmap *m, u32 chunk);

/**
 * fleece_slotmap_mark_unreadable() - the old data of a chunk is lost.
 * @m: the map.
 * @chunk: a chunk with a slot.
 *
 * The slot stays taken (and counts in @used) until the chunk is dropped,
 * so marking costs no memory; reads of the chunk fail.
 *
 * Context: any but hard irq; doesn't sleep.
 */
void fleece_slotmap_mark_unreadable(struct fleece_slotmap *m, u32 chunk);

/**
 * fleece_slotmap_used() - slots taken now.
 * @m: the map.
 */
u32 fleece_slotmap_used(struct fleece_slotmap *m);

#endif /* DM_FLEECE_SLOTMAP_H */
