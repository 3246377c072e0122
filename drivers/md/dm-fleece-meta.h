/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Metadata IO between dm-fleece-meta.c and dm-fleece-track.c.
 */
#ifndef DM_FLEECE_META_H
#define DM_FLEECE_META_H

#include "dm-fleece-track.h"

/*
 * Blocks written per batch of a commit round (pages from the pool), each
 * batch followed by one flush: a round of first writes to far-apart chunks
 * touches a block per bitmap per write, so 32 writes in flight with eight
 * bitmaps are one batch, not eight. 1 MiB of pages per persistent origin.
 * Also the most blocks fleece_meta_write_blocks() is given at once.
 */
#define FLEECE_ROUND_BLOCKS 256

/**
 * struct fleece_block_write - one bitmap block to write.
 * @bm: the bitmap.
 * @index: the block.
 * @page: its new content (fleece_meta_fill_block()).
 */
struct fleece_block_write {
	struct fleece_bitmap *bm;
	u64 index;
	struct page *page;
};

/**
 * fleece_meta_sectors_needed() - metadata device size for a bitmap size.
 * @nr_blocks: blocks per bitmap copy.
 */
sector_t fleece_meta_sectors_needed(u64 nr_blocks);

/**
 * fleece_meta_load() - read (or format) the metadata into @t.
 * @t: tracker with meta, origin_sectors, nr_chunks and nr_blocks set.
 * @chunk_sectors: the origin's chunk size.
 * @opts: the table's no_gap and origin_id.
 * @error: reason for ti->error on failure.
 *
 * Fills @t->sb and @t->slot[] (live and frozen bitmaps), refusing metadata
 * of another origin. Writes nothing to a device that is not all zero where
 * the metadata would go (format) or valid metadata of this origin. Rewrites
 * each bitmap block copy found damaged (a torn write) with its block's
 * content, so that no damaged copy outlives the load. Records the attach
 * (FLEECE_SB_ATTACHED), distrusting the bitmaps unless @opts vouches for
 * no gap.
 *
 * Context: process context, may sleep and do IO.
 * Return: 0 or a negative errno.
 */
int fleece_meta_load(struct fleece_tracker *t, unsigned int chunk_sectors,
		     const struct fleece_attach_opts *opts, char **error);

/**
 * fleece_meta_detach() - record the detach: FLEECE_SB_ATTACHED clear, and
 * FLEECE_SB_BYPASS unless @t->clean_detach.
 * @t: the tracker, going away; nothing writes any more.
 *
 * A failure is only logged: the next attach then takes it for a crash.
 *
 * Context: process context; may do IO.
 */
void fleece_meta_detach(struct fleece_tracker *t);

/**
 * fleece_meta_lost() - a metadata write failed: tracking is lost.
 * @t: the tracker.
 *
 * Every bitmap is marked untrusted, in memory and, if the device takes a
 * superblock write now or later (every one carries the marks), on disk, so
 * that a later activation says so too. Writes are no longer made durable
 * before they go on.
 *
 * Context: process context, under @t->lock; may do IO.
 */
void fleece_meta_lost(struct fleece_tracker *t);

/**
 * fleece_meta_lost_retry() - mark untrusted bitmaps on disk, if not yet.
 * @t: the tracker, going away.
 *
 * Context: process context; may do IO.
 */
void fleece_meta_lost_retry(struct fleece_tracker *t);

/**
 * fleece_meta_write_sb() - write @t->sb to its older copy, after a flush.
 * @t: the tracker, @t->lock held.
 *
 * On failure the image goes back to what was last written, and tracking is
 * lost (fleece_meta_lost()): the caller undoes its other changes.
 *
 * Context: process context, may sleep and do IO.
 * Return: 0, or a negative errno (and @t->lost is set).
 */
int fleece_meta_write_sb(struct fleece_tracker *t);

/**
 * fleece_meta_fill_block() - the on-disk image of a block of @bm->recorded.
 * @t: the tracker, @t->lock held.
 * @bm: a live bitmap.
 * @index: the block.
 * @page: FLEECE_META_BLOCK bytes to fill.
 */
void fleece_meta_fill_block(struct fleece_tracker *t, struct fleece_bitmap *bm,
			    u64 index, void *page);

/**
 * fleece_meta_apply_block() - mark the bits of a written block durable.
 * @t: the tracker.
 * @bm: the bitmap.
 * @index: the block.
 * @page: what was written.
 */
void fleece_meta_apply_block(struct fleece_tracker *t, struct fleece_bitmap *bm,
			     u64 index, const void *page);

/**
 * fleece_meta_write_blocks() - write blocks to their older copies and flush.
 * @t: the tracker, @t->lock held.
 * @w: the blocks.
 * @n: how many (at most FLEECE_ROUND_BLOCKS).
 *
 * Context: process context, may sleep and do IO.
 * Return: 0, or a negative errno (and @t->lost is set).
 */
int fleece_meta_write_blocks(struct fleece_tracker *t,
			     struct fleece_block_write *w, unsigned int n);

/**
 * fleece_bitmap_alloc() - a zeroed in-memory bitmap for a slot.
 * @t: the tracker.
 * @name: its name.
 * @slot: its slot.
 * @frozen: a frozen set (no @durable, @dirty).
 *
 * Context: process context, may sleep.
 * Return: the bitmap or NULL.
 */
struct fleece_bitmap *fleece_bitmap_alloc(struct fleece_tracker *t,
					  const char *name, unsigned int slot,
					  bool frozen);

#endif /* DM_FLEECE_META_H */
