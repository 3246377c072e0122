// SPDX-License-Identifier: GPL-2.0
/*
 * Changed-block bitmaps of a fleece-origin.
 *
 * Crash safety follows dm-era and md's write-intent bitmap: the first write
 * to a chunk in a bitmap's generation waits until the block holding the
 * chunk's bit is on disk (written to its older copy, then a flush); only
 * then does the write go on. Later writes to the chunk find the bit durable
 * and pass at once. Writes arriving while a round of block writes is under
 * way are batched into the next round (or go with that round, when it
 * writes their bits: in_open_round()), so the cost is one metadata write
 * per dirty block per round, not per write.
 *
 * Backup transactions (QEMU's successor/abdicate/reclaim): a view created
 * with "bitmap <name>" freezes what the bitmap held; the bitmap starts again
 * empty. A commit drops the frozen set; any other ending merges it back.
 */
#include <linux/bitmap.h>
#include <linux/slab.h>

#include "dm-fleece.h"
#include "dm-fleece-meta.h"

u64 fleece_count_bits(const unsigned long *bits, u64 nr)
{
	u64 i, n = 0, words = nr / BITS_PER_LONG;

	for (i = 0; i < words; i++)
		n += hweight_long(bits[i]);
	if (nr % BITS_PER_LONG)
		n += hweight_long(bits[words] & BITMAP_LAST_WORD_MASK(nr));
	return n;
}

/*
 * A reserved bitmap notes where it records, one bit per 2^WATCH_SHIFT
 * chunks (8 KiB at 2^31 chunks), so that the freeze redoes only those
 * regions of the complement the view made beforehand.
 */
#define WATCH_SHIFT	15

static u64 watch_bits(struct fleece_tracker *t)
{
	return DIV_ROUND_UP_ULL(t->nr_chunks, BIT_ULL(WATCH_SHIFT));
}

static unsigned long *zalloc_bits(u64 nr)
{
	return kvcalloc(BITS_TO_LONGS(nr), sizeof(unsigned long), GFP_KERNEL);
}

static void bitmap_free_now(struct fleece_bitmap *bm)
{
	kvfree(bm->recorded);
	kvfree(bm->durable);
	kvfree(bm->dirty);
	kvfree(bm->copy);
	kvfree(bm->watch);
	kfree(bm);
}

static void trash_work(struct work_struct *work)
{
	struct fleece_tracker *t = container_of(work, struct fleece_tracker, trash_work);
	void *trash[ARRAY_SIZE(t->trash)];
	unsigned int i, n;

	spin_lock(&t->trash_lock);
	n = t->nr_trash;
	memcpy(trash, t->trash, n * sizeof(trash[0]));
	t->nr_trash = 0;
	spin_unlock(&t->trash_lock);
	for (i = 0; i < n; i++)
		kvfree(trash[i]);
}

/* Free @p soon, on the workqueue; at once if the trash is full. */
static void trash_later(struct fleece_tracker *t, void *p)
{
	bool queued = false;

	if (!p)
		return;
	spin_lock(&t->trash_lock);
	if (t->nr_trash < ARRAY_SIZE(t->trash)) {
		t->trash[t->nr_trash++] = p;
		queued = true;
	}
	spin_unlock(&t->trash_lock);
	if (queued)
		queue_work(t->wq, &t->trash_work);
	else
		kvfree(p);
}

static void bitmap_free_rcu(struct rcu_head *rcu)
{
	bitmap_free_now(container_of(rcu, struct fleece_bitmap, rcu));
}

struct fleece_bitmap *fleece_bitmap_alloc(struct fleece_tracker *t,
					  const char *name, unsigned int slot,
					  bool frozen)
{
	struct fleece_bitmap *bm;

	bm = kzalloc(sizeof(*bm), GFP_KERNEL);
	if (!bm)
		return NULL;
	strscpy(bm->name, name, sizeof(bm->name));
	bm->slot = slot;
	bm->frozen = frozen;
	bm->recorded = zalloc_bits(t->nr_chunks);
	if (!bm->recorded)
		goto fail;
	if (t->meta) {
		bm->copy = kvzalloc(t->nr_blocks, GFP_KERNEL);
		if (!bm->copy)
			goto fail;
		memset(bm->copy, 1, t->nr_blocks);
		if (!frozen) {
			bm->durable = zalloc_bits(t->nr_chunks);
			bm->dirty = zalloc_bits(t->nr_blocks);
			if (!bm->durable || !bm->dirty)
				goto fail;
		}
	}
	return bm;
fail:
	bitmap_free_now(bm);
	return NULL;
}

static struct fleece_bitmap *find_live(struct fleece_tracker *t,
				       const char *name)
{
	unsigned int i;

	for (i = 0; i < FLEECE_META_SLOTS; i++)
		if (t->slot[i] && !t->slot[i]->frozen &&
		    !strcmp(t->slot[i]->name, name))
			return t->slot[i];
	return NULL;
}

static unsigned int count_bitmaps(struct fleece_tracker *t, const char *name,
				  bool frozen)
{
	unsigned int i, n = 0;

	for (i = 0; i < FLEECE_META_SLOTS; i++)
		if (t->slot[i] && t->slot[i]->frozen == frozen &&
		    (!name || !strcmp(t->slot[i]->name, name)))
			n++;
	return n;
}

/*
 * Views holding a bitmap's backup: its frozen sets, and views loaded but
 * not resumed yet that reserved it. Under @lock or @pend_lock.
 */
static unsigned int count_held(struct fleece_tracker *t, const char *name)
{
	unsigned int i, n = count_bitmaps(t, name, true);

	for (i = 0; i < FLEECE_META_SLOTS; i++)
		if (t->reserved[i] && !strcmp(t->reserved[i]->name, name))
			n++;
	return n;
}

/* Does a bitmap have a backup in progress? */
static bool in_backup(struct fleece_tracker *t, const char *name)
{
	lockdep_assert_held(&t->lock);
	return count_held(t, name);
}

static int free_slot(struct fleece_tracker *t)
{
	unsigned int i;

	for (i = 0; i < FLEECE_META_SLOTS; i++)
		if (!t->slot[i] && !t->reserved[i])
			return i;
	return -ENOSPC;
}

/* Record a bitmap's slot in the superblock image (not yet written). */
static void sb_set_slot(struct fleece_tracker *t, struct fleece_bitmap *bm,
			enum fleece_slot_state state)
{
	struct fleece_disk_slot *ds;

	if (!t->meta)
		return;
	ds = &t->sb->slots[bm->slot];
	memset(ds, 0, sizeof(*ds));
	if (state != FLEECE_SLOT_FREE)
		memcpy(ds->name, bm->name, strlen(bm->name));
	ds->state = cpu_to_le32(state);
	if (state != FLEECE_SLOT_FREE && bm->untrusted)
		ds->flags = cpu_to_le32(FLEECE_SLOT_UNTRUSTED |
					(bm->gap ? FLEECE_SLOT_GAP : 0));
	ds->gen = cpu_to_le64(bm->gen);
}

static int sb_write(struct fleece_tracker *t)
{
	return t->meta ? fleece_meta_write_sb(t) : 0;
}

/* A new generation of a slot: its old blocks now read as zero. */
static void new_generation(struct fleece_tracker *t, struct fleece_bitmap *bm)
{
	if (t->meta)
		bm->gen = le64_to_cpu(t->sb->slots[bm->slot].gen) + 1;
}

/*
 * Slots change under @lock and @pend_lock both: status reads them under
 * @pend_lock alone, without waiting for a commit round.
 */
static void set_slot(struct fleece_tracker *t, unsigned int i,
		     struct fleece_bitmap *bm)
{
	lockdep_assert_held(&t->lock);
	spin_lock_irq(&t->pend_lock);
	t->slot[i] = bm;
	spin_unlock_irq(&t->pend_lock);
}

/*
 * Drop @lock, then let go the writes the rounds made durable meanwhile:
 * resuming one may do IO or wait, which must not hold up the next round
 * (or a message) behind it.
 */
static void unlock_and_resume(struct fleece_tracker *t)
{
	struct bio_list bios;
	struct blk_plug plug;
	struct bio *bio;

	spin_lock_irq(&t->pend_lock);
	bio_list_init(&bios);
	bio_list_merge(&bios, &t->ready);
	bio_list_init(&t->ready);
	spin_unlock_irq(&t->pend_lock);
	mutex_unlock(&t->lock);

	/* A round lets many writes go at once: they reach the disk together. */
	blk_start_plug(&plug);
	while ((bio = bio_list_pop(&bios)))
		t->resume(t->resume_ctx, bio);
	blk_finish_plug(&plug);
}

/*
 * Passes over a whole bitmap (clear, merge) go a piece of PASS_CHUNKS
 * chunks at a time: @pend_lock, which first writes take with interrupts
 * off, is then held over a few words, never over the whole bitmap (512 MiB
 * at 2^32 chunks). A multiple of BITS_PER_LONG: pieces start on a word.
 */
#define PASS_CHUNKS	1024

/* The next piece of a pass from @p0: [@p0, return value). */
static u64 pass_end(struct fleece_tracker *t, u64 p0)
{
	return min_t(u64, p0 + PASS_CHUNKS, t->nr_chunks);
}

/*
 * @dst |= @src over chunks [@p0, @p1), @p0 on a word, counting the new bits
 * in the same pass over the words.
 */
static void or_counting(struct fleece_tracker *t, struct fleece_bitmap *dst,
			const struct fleece_bitmap *src, u64 p0, u64 p1)
{
	u64 i, n = 0, words = BITS_TO_LONGS(t->nr_chunks);

	lockdep_assert_held(&t->pend_lock);
	for (i = p0 / BITS_PER_LONG; i < BITS_TO_LONGS(p1); i++) {
		unsigned long add = src->recorded[i] & ~dst->recorded[i];

		/* Whatever lies past the last chunk is not counted. */
		if (i == words - 1 && t->nr_chunks % BITS_PER_LONG)
			add &= BITMAP_LAST_WORD_MASK(t->nr_chunks);
		n += hweight_long(add);
		dst->recorded[i] |= src->recorded[i];
	}
	WRITE_ONCE(dst->nr_recorded, dst->nr_recorded + n);
}

/*
 * Record chunks [first, end) in @bm, counting the new bits: a bio spans
 * a region at most, so this costs a few words, and status none.
 */
static void record_range(struct fleece_tracker *t, struct fleece_bitmap *bm,
			 u64 first, u64 end)
{
	u64 i = first, j, n = 0;

	lockdep_assert_held(&t->pend_lock);
	while ((i = find_next_zero_bit(bm->recorded, end, i)) < end) {
		j = find_next_bit(bm->recorded, end, i);
		n += j - i;
		i = j;
	}
	WRITE_ONCE(bm->nr_recorded, bm->nr_recorded + n);
	bitmap_set(bm->recorded, first, end - first);
	if (unlikely(bm->watch))
		bitmap_set(bm->watch, first >> WATCH_SHIFT,
			   ((end - 1) >> WATCH_SHIFT) - (first >> WATCH_SHIFT) + 1);
}

/*
 * Commit rounds
 */

/* Record chunks [first, end) in @bm and mark their blocks dirty. */
static void mark_pending(struct fleece_tracker *t, struct fleece_bitmap *bm,
			 u64 first, u64 end)
{
	u64 b0 = first / FLEECE_BITS_PER_BLOCK;
	u64 b1 = (end - 1) / FLEECE_BITS_PER_BLOCK;

	lockdep_assert_held(&t->pend_lock);
	record_range(t, bm, first, end);
	bitmap_set(bm->dirty, b0, b1 - b0 + 1);
}

static int write_batch(struct fleece_tracker *t, struct fleece_block_write *w,
		       unsigned int n)
{
	unsigned int i;
	int r;

	r = fleece_meta_write_blocks(t, w, n);
	for (i = 0; i < n; i++) {
		if (!r)
			fleece_meta_apply_block(t, w[i].bm, w[i].index,
						page_address(w[i].page));
		mempool_free(w[i].page, &t->page_pool);
	}
	return r;
}

/*
 * Write every dirty block; the writes that waited for them are then ready
 * to go (unlock_and_resume()), with those that arrived meanwhile for
 * blocks the round had taken (@in_round). Other writes that arrive
 * meanwhile wait for the next round.
 */
static void commit_round(struct fleece_tracker *t)
{
	struct fleece_block_write *w = t->round;
	struct bio_list bios;
	unsigned int i, n = 0;

	lockdep_assert_held(&t->lock);
	/* In memory only: nothing is ever written or waiting. */
	if (!t->meta)
		return;
	bio_list_init(&bios);
	spin_lock_irq(&t->pend_lock);
	bio_list_merge(&bios, &t->waiting);
	bio_list_init(&t->waiting);
	t->round_open = true;
	spin_unlock_irq(&t->pend_lock);

	for (i = 0; i < FLEECE_META_SLOTS && !t->lost; i++) {
		struct fleece_bitmap *bm = t->slot[i];
		u64 b = 0;

		if (!bm || bm->frozen)
			continue;
		for (;;) {
			spin_lock_irq(&t->pend_lock);
			b = find_next_bit(bm->dirty, t->nr_blocks, b);
			if (b < t->nr_blocks)
				__clear_bit(b, bm->dirty);
			spin_unlock_irq(&t->pend_lock);
			if (b >= t->nr_blocks)
				break;

			w[n].bm = bm;
			w[n].index = b;
			w[n].page = mempool_alloc(&t->page_pool, GFP_NOIO);
			fleece_meta_fill_block(t, bm, b, page_address(w[n].page));
			if (++n == FLEECE_ROUND_BLOCKS) {
				write_batch(t, w, n);
				n = 0;
			}
			b++;
		}
	}
	if (n)
		write_batch(t, w, n);

	/* Durable, or tracking is lost and says so: either way, go on. */
	spin_lock_irq(&t->pend_lock);
	bio_list_merge(&t->ready, &bios);
	bio_list_merge(&t->ready, &t->in_round);
	bio_list_init(&t->in_round);
	t->round_open = false;
	spin_unlock_irq(&t->pend_lock);
}

static void commit_work(struct work_struct *work)
{
	struct fleece_tracker *t = container_of(work, struct fleece_tracker,
						commit_work);

	mutex_lock(&t->lock);
	commit_round(t);
	unlock_and_resume(t);
}

/*
 * Whether the round under way makes durable every bit of chunks [@first,
 * @end) that is not already: each is recorded and its block is not dirty.
 * Then the round took the block after the bit was set (a bit set later
 * marks its block dirty again; a block taken by an earlier round is
 * durable since) and writes it with the bit. A sequential writer's next
 * writes to a chunk whose bit is being written wait for that write, not
 * for a round of their own after it.
 */
static bool in_open_round(struct fleece_tracker *t, u64 first, u64 end)
{
	u64 b0 = first / FLEECE_BITS_PER_BLOCK;
	u64 b1 = (end - 1) / FLEECE_BITS_PER_BLOCK;
	struct fleece_bitmap *bm;
	unsigned int i;

	lockdep_assert_held(&t->pend_lock);
	if (!t->round_open)
		return false;
	for (i = 0; i < FLEECE_META_SLOTS; i++) {
		bm = rcu_dereference(t->live[i]);
		if (!bm || find_next_zero_bit(bm->durable, end, first) >= end)
			continue;
		if (find_next_zero_bit(bm->recorded, end, first) < end ||
		    find_next_bit(bm->dirty, b1 + 1, b0) <= b1)
			return false;
	}
	return true;
}

/* Chunks a write may go on for at once: durable, or merely recorded. */
static const unsigned long *no_wait_bits(struct fleece_bitmap *bm)
{
	return bm->durable ?: bm->recorded;
}

bool fleece_track_write(struct fleece_tracker *t, struct bio *bio)
{
	u64 first = bio->bi_iter.bi_sector >> t->chunk_shift;
	u64 end = ((bio_end_sector(bio) - 1) >> t->chunk_shift) + 1;
	struct fleece_bitmap *bm;
	bool need = false, defer;
	unsigned long flags;
	unsigned int i;

	if (first >= t->nr_chunks)
		return true;
	end = min(end, t->nr_chunks);

	rcu_read_lock();
	for (i = 0; i < FLEECE_META_SLOTS && !need; i++) {
		bm = rcu_dereference(t->live[i]);
		need = bm && find_next_zero_bit(no_wait_bits(bm), end, first) < end;
	}
	if (!need) {
		rcu_read_unlock();
		return true;
	}

	/* In memory only (or tracking lost): recording is all there is. */
	defer = t->meta && !READ_ONCE(t->lost);
	spin_lock_irqsave(&t->pend_lock, flags);
	if (defer && in_open_round(t, first, end)) {
		bio_list_add(&t->in_round, bio);
		spin_unlock_irqrestore(&t->pend_lock, flags);
		rcu_read_unlock();
		return false;
	}
	for (i = 0; i < FLEECE_META_SLOTS; i++) {
		bm = rcu_dereference(t->live[i]);
		if (!bm || find_next_zero_bit(no_wait_bits(bm), end, first) >= end)
			continue;
		if (defer) {
			mark_pending(t, bm, first, end);
			continue;
		}
		record_range(t, bm, first, end);
		/* Lost tracking: nothing is made durable, nothing waits. */
		if (bm->durable)
			bitmap_set(bm->durable, first, end - first);
	}
	if (defer)
		bio_list_add(&t->waiting, bio);
	spin_unlock_irqrestore(&t->pend_lock, flags);
	rcu_read_unlock();

	if (defer)
		queue_work(t->wq, &t->commit_work);
	return !defer;
}

/*
 * Setup and teardown
 */

/* A frozen set left by a session that did not end: merge it back. */
static void merge_frozen_into(struct fleece_tracker *t,
			      struct fleece_bitmap *frozen,
			      struct fleece_bitmap *live)
{
	u64 p0, p1, b, lo, hi;

	/*
	 * A piece at a time: writes that set bits in between are counted by
	 * whoever sets a bit first, and an OR keeps them.
	 */
	for (p0 = 0; p0 < t->nr_chunks; p0 = p1) {
		p1 = pass_end(t, p0);
		spin_lock_irq(&t->pend_lock);
		or_counting(t, live, frozen, p0, p1);
		/* Only blocks the frozen set has bits in need writing. */
		for (b = p0 / FLEECE_BITS_PER_BLOCK; live->dirty &&
		     b <= (p1 - 1) / FLEECE_BITS_PER_BLOCK; b++) {
			lo = max(p0, b * FLEECE_BITS_PER_BLOCK);
			hi = min(p1, (b + 1) * FLEECE_BITS_PER_BLOCK);
			if (find_next_bit(frozen->recorded, hi, lo) < hi)
				__set_bit(b, live->dirty);
		}
		spin_unlock_irq(&t->pend_lock);
		cond_resched();
	}
}

#define GAP_ERROR "Bitmap untrusted since the origin was attached after a possible gap: use full"
#define LOST_ERROR "Bitmap untrusted since tracking was lost: use full"

static int reclaim_frozen(struct fleece_tracker *t, struct fleece_bitmap *frozen)
{
	struct fleece_bitmap *live = find_live(t, frozen->name);

	if (frozen->committed) {
		set_slot(t, frozen->slot, NULL);
		bitmap_free_now(frozen);
		return 0;
	}
	if (live) {
		merge_frozen_into(t, frozen, live);
		if (t->meta)
			commit_round(t);
		if (t->lost)
			return -EIO;
		/* What the set may miss, the bitmap now may miss too. */
		if (frozen->untrusted && !live->untrusted) {
			WRITE_ONCE(live->untrusted, true);
			WRITE_ONCE(live->gap, frozen->gap);
			sb_set_slot(t, live, FLEECE_SLOT_LIVE);
		}
	}
	/* Merged (or its bitmap is gone): the slot is free again. */
	set_slot(t, frozen->slot, NULL);
	sb_set_slot(t, frozen, FLEECE_SLOT_FREE);
	bitmap_free_now(frozen);
	return sb_write(t);
}

struct fleece_tracker *fleece_track_create(struct block_device *meta,
					   u64 origin_sectors,
					   unsigned int chunk_sectors,
					   const struct fleece_attach_opts *opts,
					   struct workqueue_struct *wq,
					   void (*resume)(void *, struct bio *),
					   void *resume_ctx, char **error)
{
	struct fleece_tracker *t;
	unsigned int i;
	int r;

	t = kzalloc(sizeof(*t), GFP_KERNEL);
	if (!t) {
		*error = "Cannot allocate tracker";
		return ERR_PTR(-ENOMEM);
	}
	t->meta = meta;
	t->origin_sectors = origin_sectors;
	t->chunk_shift = ilog2(chunk_sectors);
	t->nr_chunks = DIV_ROUND_UP_ULL(origin_sectors, chunk_sectors);
	t->nr_blocks = DIV_ROUND_UP_ULL(t->nr_chunks, FLEECE_BITS_PER_BLOCK);
	t->wq = wq;
	t->resume = resume;
	t->resume_ctx = resume_ctx;
	mutex_init(&t->lock);
	spin_lock_init(&t->pend_lock);
	bio_list_init(&t->waiting);
	bio_list_init(&t->in_round);
	bio_list_init(&t->ready);
	INIT_WORK(&t->commit_work, commit_work);
	spin_lock_init(&t->trash_lock);
	INIT_WORK(&t->trash_work, trash_work);

	if (!meta)
		return t;

	r = mempool_init_page_pool(&t->page_pool, FLEECE_ROUND_BLOCKS, 0);
	if (r) {
		*error = "Cannot allocate metadata page pool";
		goto out_free;
	}
	/* A round's writes are all in flight at once. */
	r = bioset_init(&t->bs, FLEECE_ROUND_BLOCKS, 0, BIOSET_NEED_BVECS);
	if (r) {
		*error = "Cannot allocate metadata bioset";
		goto out_pool;
	}
	t->sb = kzalloc(FLEECE_META_BLOCK, GFP_KERNEL);
	t->sb_written = kzalloc(FLEECE_META_BLOCK, GFP_KERNEL);
	t->round = kcalloc(FLEECE_ROUND_BLOCKS, sizeof(*t->round), GFP_KERNEL);
	if (!t->sb || !t->sb_written || !t->round) {
		*error = "Cannot allocate superblock";
		r = -ENOMEM;
		goto out_sb;
	}
	r = fleece_meta_load(t, chunk_sectors, opts, error);
	if (r)
		goto out_slots;

	/* Not published yet: counted without holding off interrupts. */
	for (i = 0; i < FLEECE_META_SLOTS; i++)
		if (t->slot[i])
			t->slot[i]->nr_recorded = fleece_count_bits(t->slot[i]->recorded,
								    t->nr_chunks);
	mutex_lock(&t->lock);
	for (i = 0; i < FLEECE_META_SLOTS && !r; i++)
		if (t->slot[i] && t->slot[i]->frozen)
			r = reclaim_frozen(t, t->slot[i]);
	unlock_and_resume(t);
	if (r) {
		*error = "Cannot merge back the frozen bitmaps of an unfinished backup";
		goto out_slots;
	}
	for (i = 0; i < FLEECE_META_SLOTS; i++)
		RCU_INIT_POINTER(t->live[i], t->slot[i]);
	return t;

out_slots:
	for (i = 0; i < FLEECE_META_SLOTS; i++)
		if (t->slot[i])
			bitmap_free_now(t->slot[i]);
out_sb:
	kfree(t->round);
	kfree(t->sb_written);
	kfree(t->sb);
	bioset_exit(&t->bs);
out_pool:
	mempool_exit(&t->page_pool);
out_free:
	kfree(t);
	return ERR_PTR(r);
}

void fleece_track_destroy(struct fleece_tracker *t)
{
	unsigned int i;

	flush_work(&t->commit_work);
	cancel_work_sync(&t->trash_work);
	trash_work(&t->trash_work);
	WARN_ON(!bio_list_empty(&t->waiting) || !bio_list_empty(&t->in_round) ||
		!bio_list_empty(&t->ready));
	/* A last chance for a device that failed the marks before. */
	if (t->meta) {
		fleece_meta_lost_retry(t);
		fleece_meta_detach(t);
	}
	for (i = 0; i < FLEECE_META_SLOTS; i++) {
		if (t->slot[i])
			bitmap_free_now(t->slot[i]);
		/* Views not resumed yet: their loans were revoked. */
		if (t->reserved[i])
			bitmap_free_now(t->reserved[i]);
	}
	kfree(t->round);
	kfree(t->sb_written);
	kfree(t->sb);
	if (t->meta) {
		bioset_exit(&t->bs);
		mempool_exit(&t->page_pool);
	}
	kfree(t);
}

/*
 * Messages
 */

/*
 * May a bitmap @name be added? Checked before the bitmap is allocated, so
 * that a refusal is not reported as a lack of memory (nor costs a GiB of
 * it), and again once it is (the lock was dropped in between).
 */
static int add_allowed(struct fleece_tracker *t, const char *name)
{
	int r = 0;

	lockdep_assert_held(&t->lock);
	if (find_live(t, name)) {
		DMWARN("bitmap_add: bitmap '%s' exists", name);
		r = -EEXIST;
	} else if (t->lost) {
		/*
		 * Its slot would say trusted on disk, but no round writes its
		 * blocks any more: a later activation would vouch for an empty
		 * bitmap that missed every write since.
		 */
		DMWARN("bitmap_add: tracking is lost until the origin is attached again");
		r = -EIO;
	} else if (count_bitmaps(t, NULL, false) >= FLEECE_MAX_BITMAPS ||
		   free_slot(t) < 0) {
		DMWARN("bitmap_add: too many bitmaps (at most %d)",
		       FLEECE_MAX_BITMAPS);
		r = -ENOSPC;
	}
	return r;
}

/*
 * @bm was allocated before @t->lock was taken (see fleece_track_message());
 * it is @t's from here on when this returns 0, and still the caller's to
 * free otherwise.
 */
static int msg_add(struct fleece_tracker *t, struct fleece_bitmap *bm)
{
	int slot, r;

	r = add_allowed(t, bm->name);
	if (r)
		return r;
	slot = free_slot(t);
	bm->slot = slot;
	new_generation(t, bm);
	sb_set_slot(t, bm, FLEECE_SLOT_LIVE);
	r = sb_write(t);
	if (r) {
		sb_set_slot(t, bm, FLEECE_SLOT_FREE);
		return r;
	}
	/* Records every write from here on. */
	set_slot(t, slot, bm);
	rcu_assign_pointer(t->live[slot], bm);
	return 0;
}

static int msg_remove(struct fleece_tracker *t, struct fleece_bitmap *bm)
{
	int r;

	/* A session still needs it to merge its frozen set back into. */
	if (in_backup(t, bm->name))
		return -EBUSY;
	sb_set_slot(t, bm, FLEECE_SLOT_FREE);
	r = sb_write(t);
	if (r)
		return r;
	RCU_INIT_POINTER(t->live[bm->slot], NULL);
	set_slot(t, bm->slot, NULL);
	/* Writes waiting for its blocks are let go by the next round. */
	call_rcu(&bm->rcu, bitmap_free_rcu);
	return 0;
}

static int msg_clear(struct fleece_tracker *t, struct fleece_bitmap *bm)
{
	u64 p0, p1, w, n;
	struct bio *bio;

	/* A view checks its reads against what the bitmap recorded. */
	if (in_backup(t, bm->name))
		return -EBUSY;

	/*
	 * A piece at a time. A write between two pieces counts as before
	 * the clear if its chunks are cleared after it, as one that came
	 * before the whole pass would; the others are recorded.
	 */
	for (p0 = 0; p0 < t->nr_chunks; p0 = p1) {
		p1 = pass_end(t, p0);
		w = p0 / BITS_PER_LONG;
		spin_lock_irq(&t->pend_lock);
		n = bitmap_weight(bm->recorded + w, p1 - p0);
		bitmap_zero(bm->recorded + w, p1 - p0);
		WRITE_ONCE(bm->nr_recorded, bm->nr_recorded - n);
		if (bm->durable)
			bitmap_zero(bm->durable + w, p1 - p0);
		spin_unlock_irq(&t->pend_lock);
		cond_resched();
	}
	spin_lock_irq(&t->pend_lock);
	if (bm->durable) {
		bitmap_zero(bm->dirty, t->nr_blocks);
		/*
		 * Writes still waiting (no round runs before the clear ends)
		 * have not gone to disk: they count as after it. Some were
		 * recorded before their piece was cleared, so all are recorded
		 * again (a bit already set is not counted twice).
		 */
		bio_list_for_each(bio, &t->waiting) {
			u64 first = bio->bi_iter.bi_sector >> t->chunk_shift;
			u64 end = ((bio_end_sector(bio) - 1) >> t->chunk_shift) + 1;

			if (first < t->nr_chunks)
				mark_pending(t, bm, first, min(end, t->nr_chunks));
		}
	}
	spin_unlock_irq(&t->pend_lock);
	new_generation(t, bm);
	/* Empty, recording from now on: nothing it could have missed. */
	if (!t->lost) {
		WRITE_ONCE(bm->untrusted, false);
		WRITE_ONCE(bm->gap, false);
	}
	sb_set_slot(t, bm, FLEECE_SLOT_LIVE);
	return sb_write(t);
}

static int msg_merge(struct fleece_tracker *t, struct fleece_bitmap *dst,
		     struct fleece_bitmap *src)
{
	if (dst == src)
		return 0;
	/* Also what src has recorded but not yet made durable. */
	merge_frozen_into(t, src, dst);
	if (t->meta)
		commit_round(t);
	if (t->lost)
		return -EIO;
	if (src->untrusted && !dst->untrusted) {
		WRITE_ONCE(dst->untrusted, true);
		WRITE_ONCE(dst->gap, src->gap);
		sb_set_slot(t, dst, FLEECE_SLOT_LIVE);
		return sb_write(t);
	}
	return 0;
}

void fleece_track_emit_ranges(const unsigned long *bits, u64 nr_chunks,
			      u64 start, u64 max_ranges, char *result,
			      unsigned int maxlen)
{
	/*
	 * One pass (a live bitmap may gain bits meanwhile): the ranges go
	 * after room kept for the cursor, which is then written in front.
	 */
	const unsigned int gap = 24;
	unsigned int len = 0, n, c;
	u64 first = start, end, count = 0;
	char *body = result + gap;

	if (maxlen < 2 * gap) {
		*result = '\0';
		return;
	}
	while (count < max_ranges) {
		/* No bitmap: every chunk. */
		if (bits) {
			first = find_next_bit(bits, nr_chunks, first);
			end = find_next_zero_bit(bits, nr_chunks, first);
		} else {
			end = nr_chunks;
		}
		if (first >= nr_chunks)
			break;
		n = snprintf(body + len, maxlen - gap - len, " %llu+%llu",
			     first, end - first);
		if (len + n >= maxlen - gap) {
			body[len] = '\0';	/* did not fit: next page */
			break;
		}
		len += n;
		count++;
		first = end;
	}
	if (first >= nr_chunks)
		c = scnprintf(result, gap, "end");
	else
		c = scnprintf(result, gap, "%llu", first);
	memmove(result + c, body, len);
	result[c + len] = '\0';
}

static int msg_list(struct fleece_tracker *t, char *result,
		    unsigned int maxlen)
{
	unsigned int sz = 0, i;

	for (i = 0; i < FLEECE_META_SLOTS; i++) {
		struct fleece_bitmap *bm = t->slot[i];

		if (!bm || bm->frozen)
			continue;
		DMEMIT("%s %llu %s %u\n", bm->name, READ_ONCE(bm->nr_recorded),
		       t->meta ? "persistent" : "volatile",
		       count_held(t, bm->name));
	}
	return 1;
}

bool fleece_track_same_origin(struct fleece_tracker *t, const char *origin_id)
{
	bool same;

	if (!t->meta || !origin_id)
		return true;
	mutex_lock(&t->lock);
	same = !t->sb->origin_id[0] || !strcmp(t->sb->origin_id, origin_id);
	mutex_unlock(&t->lock);
	return same;
}

void fleece_track_resumed(struct fleece_tracker *t)
{
	mutex_lock(&t->lock);
	if (t->clean_detach && t->meta)
		DMINFO("%pg: clean_detach taken back: the origin was resumed",
		       t->meta);
	t->clean_detach = false;
	mutex_unlock(&t->lock);
}

int fleece_track_message(struct fleece_tracker *t, unsigned int argc,
			 char **argv, char *result, unsigned int maxlen)
{
	struct fleece_bitmap *bm, *src;
	struct fleece_bitmap_msg m;
	const char *cmd = argv[0];
	int r;

	/*
	 * "clean_detach": the system is going down, nothing will write the
	 * origin until it is attached again; "clean_detach cancel": it is not
	 * (the removal that was to follow failed).
	 */
	if (!strcmp(cmd, "clean_detach")) {
		if (argc > 2 || (argc == 2 && strcmp(argv[1], "cancel")))
			return -EINVAL;
		mutex_lock(&t->lock);
		t->clean_detach = argc == 1;
		mutex_unlock(&t->lock);
		return 0;
	}
	r = fleece_parse_bitmap_message(argc, argv, &m);
	if (r)
		return r;

	/*
	 * A new bitmap is allocated before the lock: commit rounds, which
	 * first writes wait for, need it, and reclaim may wait for writes to
	 * this origin. At 2^32 chunks it is more than 1 GiB.
	 */
	if (m.cmd == FLEECE_BM_MSG_ADD) {
		mutex_lock(&t->lock);
		r = add_allowed(t, m.name);
		mutex_unlock(&t->lock);
		if (r)
			return r;
		bm = fleece_bitmap_alloc(t, m.name, 0, false);
		if (!bm)
			return -ENOMEM;
		mutex_lock(&t->lock);
		r = msg_add(t, bm);
		unlock_and_resume(t);
		/* Freed unlocked: vfree of a GiB would hold up commit rounds. */
		if (r)
			bitmap_free_now(bm);
		return r;
	}

	mutex_lock(&t->lock);
	if (m.cmd == FLEECE_BM_MSG_LIST) {
		r = msg_list(t, result, maxlen);
		goto out;
	}

	bm = find_live(t, m.name);
	if (!bm) {
		DMWARN("%s: no bitmap '%s'", cmd, m.name);
		r = -ENOENT;
		goto out;
	}
	switch (m.cmd) {
	case FLEECE_BM_MSG_REMOVE:
		r = msg_remove(t, bm);
		if (r == -EBUSY)
			DMWARN("bitmap_remove: '%s' has a backup in progress",
			       bm->name);
		break;
	case FLEECE_BM_MSG_CLEAR:
		r = msg_clear(t, bm);
		if (r == -EBUSY)
			DMWARN("bitmap_clear: '%s' has a backup in progress",
			       bm->name);
		break;
	case FLEECE_BM_MSG_MERGE:
		src = find_live(t, m.src);
		if (!src) {
			DMWARN("%s: no bitmap '%s'", cmd, m.src);
			r = -ENOENT;
		} else if (src != bm && in_backup(t, bm->name)) {
			/*
			 * The view of a backup in progress checks its reads
			 * against this bitmap: merged bits would fail them.
			 */
			DMWARN("bitmap_merge: '%s' has a backup in progress",
			       bm->name);
			r = -EBUSY;
		} else {
			r = msg_merge(t, bm, src);
		}
		break;
	case FLEECE_BM_MSG_CHANGES:
		fleece_track_emit_ranges(bm->recorded, t->nr_chunks,
					 m.start, m.max, result, maxlen);
		r = 1;
		break;
	case FLEECE_BM_MSG_BAD_ARGS:
		r = -EINVAL;
		break;
	default:
		DMWARN("unknown message or wrong argument count: %s", cmd);
		r = -EINVAL;
	}
out:
	unlock_and_resume(t);
	return r;
}

/*
 * Backup transactions
 */

int fleece_track_reserve(struct fleece_tracker *t, const char *name, bool full,
			 struct fleece_bitmap **fresh, char **error)
{
	struct fleece_bitmap *old, *bm;
	unsigned long *watch = NULL;
	int slot, r = 0;

	/*
	 * Allocated before the lock: commit rounds, which first writes wait
	 * for, need it, and reclaim may wait for writes to this origin.
	 */
	bm = fleece_bitmap_alloc(t, name, 0, false);
	if (bm && !full)
		watch = zalloc_bits(watch_bits(t));
	if (!bm || (!full && !watch)) {
		*error = "Cannot allocate bitmap";
		r = -ENOMEM;
		goto out_free;
	}
	mutex_lock(&t->lock);
	old = find_live(t, name);
	if (!old) {
		*error = "No such bitmap on this origin";
		r = -ENOENT;
		goto out;
	}
	/*
	 * One backup per bitmap at a time, as QEMU does: the view that holds
	 * the bitmap's transaction checks its reads against this live bitmap,
	 * and the next backup of the chain can only start from a finished one.
	 */
	if (in_backup(t, name)) {
		*error = "Bitmap has a backup in progress: remove its view first";
		r = -EBUSY;
		goto out;
	}
	if (old->untrusted && !full) {
		*error = old->gap ? GAP_ERROR : LOST_ERROR;
		r = -EINVAL;
		goto out;
	}
	slot = free_slot(t);
	if (slot < 0) {
		*error = "No free bitmap slot to freeze into";
		r = -ENOSPC;
		goto out;
	}
	bm->slot = slot;
	spin_lock_irq(&t->pend_lock);
	t->reserved[slot] = bm;
	/* From here on, where @old records is noted for the freeze. */
	old->watch = watch;
	spin_unlock_irq(&t->pend_lock);
	*fresh = bm;
	bm = NULL;
	watch = NULL;
	/*
	 * Make what is recorded so far durable now: the round at the freeze
	 * then has only what the last writes before the suspend added.
	 */
	if (t->meta)
		commit_round(t);
out:
	unlock_and_resume(t);
out_free:
	kvfree(watch);
	if (bm)
		bitmap_free_now(bm);
	return r;
}

/* @u's bitmaps = ~@src over words [first, end), within @u. */
static void complement_words(const struct fleece_unrecorded *u,
			     const unsigned long *src, u64 first, u64 end)
{
	u64 i;

	end = min_t(u64, end, BITS_TO_LONGS(u->nr));
	/* @src may be recording: a torn word is in a watched region. */
	for (i = first; i < end; i++) {
		unsigned long w = ~READ_ONCE(src[i]);

		u->bits[0][i] = w;
		u->bits[1][i] = w;
		/* 32 MiB a pass at 16 TiB: let others run. */
		if (!(i % 4096))
			cond_resched();
	}
}

void fleece_track_unrecorded(struct fleece_tracker *t,
			     struct fleece_bitmap *fresh,
			     const struct fleece_unrecorded *u)
{
	struct fleece_bitmap *old;
	bool ok;

	mutex_lock(&t->lock);
	old = find_live(t, fresh->name);
	ok = !WARN_ON(!old || !old->watch || t->reserved[fresh->slot] != fresh);
	mutex_unlock(&t->lock);
	/*
	 * The reservation keeps @old live and watched until the freeze:
	 * read without the lock, or first writes would wait for this pass.
	 */
	if (ok && !WARN_ON(u->nr > t->nr_chunks))
		complement_words(u, old->recorded, 0, BITS_TO_LONGS(u->nr));
}

/*
 * Bring the complement fleece_track_unrecorded() made up to date: only the
 * regions @old recorded in since then. @old records no more.
 */
static void unrecorded_patch(struct fleece_tracker *t, struct fleece_bitmap *old,
			     const struct fleece_unrecorded *u)
{
	u64 per = BIT(WATCH_SHIFT) / BITS_PER_LONG;
	unsigned long b;

	for_each_set_bit(b, old->watch, watch_bits(t))
		complement_words(u, old->recorded, b * per, (b + 1) * per);
}

void fleece_track_unreserve(struct fleece_tracker *t, struct fleece_bitmap *fresh)
{
	struct fleece_bitmap *old;
	unsigned long *watch = NULL;

	mutex_lock(&t->lock);
	WARN_ON(t->reserved[fresh->slot] != fresh);
	old = find_live(t, fresh->name);
	spin_lock_irq(&t->pend_lock);
	t->reserved[fresh->slot] = NULL;
	if (old) {
		watch = old->watch;
		old->watch = NULL;
	}
	spin_unlock_irq(&t->pend_lock);
	mutex_unlock(&t->lock);
	kvfree(watch);
	bitmap_free_now(fresh);
}

int fleece_track_freeze(struct fleece_tracker *t, struct fleece_bitmap *fresh,
			struct fleece_bitmap **frozen, struct fleece_bitmap **live,
			bool full, const struct fleece_unrecorded *unrec,
			char **error)
{
	unsigned int slot = fresh->slot;
	struct fleece_bitmap *old;
	int r;

	mutex_lock(&t->lock);
	/* The reservation kept it from being removed, and its name busy. */
	old = find_live(t, fresh->name);
	if (WARN_ON(!old || t->reserved[slot] != fresh)) {
		*error = "Reserved bitmap went away";
		r = -EINVAL;
		goto out;
	}
	if (old->untrusted && !full) {
		*error = old->gap ? GAP_ERROR : LOST_ERROR;
		r = -EINVAL;
		goto out;
	}
	/* Everything recorded so far becomes durable, then changes hands. */
	if (t->meta)
		commit_round(t);
	new_generation(t, fresh);
	sb_set_slot(t, fresh, FLEECE_SLOT_LIVE);
	sb_set_slot(t, old, FLEECE_SLOT_FROZEN);
	r = sb_write(t);
	if (r || t->lost) {
		sb_set_slot(t, old, FLEECE_SLOT_LIVE);
		sb_set_slot(t, fresh, FLEECE_SLOT_FREE);
		*error = "Cannot write metadata";
		r = r ?: -EIO;
		goto out;
	}

	/* One step for status: never two live bitmaps of one name. */
	spin_lock_irq(&t->pend_lock);
	t->reserved[slot] = NULL;
	t->slot[slot] = fresh;
	old->frozen = true;
	spin_unlock_irq(&t->pend_lock);
	rcu_assign_pointer(t->live[slot], fresh);
	RCU_INIT_POINTER(t->live[old->slot], NULL);
	/*
	 * Expedited: the origin is suspended for this (a normal grace period
	 * was most of the window), as dm swaps tables.
	 */
	synchronize_rcu_expedited();
	/*
	 * The frozen set no longer records: drop its write-side state. No
	 * write can reach it any more, and nothing else looks at these.
	 */
	trash_later(t, old->durable);
	trash_later(t, old->dirty);
	old->durable = NULL;
	old->dirty = NULL;
	if (old->watch) {
		if (unrec)
			unrecorded_patch(t, old, unrec);
		kvfree(old->watch);
		old->watch = NULL;
	}
	*frozen = old;
	*live = fresh;
out:
	unlock_and_resume(t);
	return r;
}

int fleece_track_commit(struct fleece_tracker *t, struct fleece_bitmap *frozen)
{
	int r;

	mutex_lock(&t->lock);
	sb_set_slot(t, frozen, FLEECE_SLOT_FREE);
	r = sb_write(t);
	if (!r)
		frozen->committed = true;
	else
		sb_set_slot(t, frozen, FLEECE_SLOT_FROZEN);
	unlock_and_resume(t);
	return r;
}

int fleece_track_release(struct fleece_tracker *t, struct fleece_bitmap *frozen)
{
	int r;

	mutex_lock(&t->lock);
	r = reclaim_frozen(t, frozen);
	unlock_and_resume(t);
	return r;
}

void fleece_track_status(struct fleece_tracker *t, char *result,
			 unsigned int maxlen, unsigned int *szp)
{
	unsigned int sz = *szp, i;
	bool lost, gap = false;

	/*
	 * Counts kept as bits are set, and @pend_lock rather than @lock:
	 * status costs the same at any size and never waits for a commit
	 * round, nor holds one up.
	 */
	spin_lock_irq(&t->pend_lock);
	/*
	 * Lost now, or before and some bitmap has not started again since;
	 * else untrusted only for a gap before the attach.
	 */
	lost = READ_ONCE(t->lost);
	for (i = 0; i < FLEECE_META_SLOTS; i++) {
		struct fleece_bitmap *bm = t->slot[i];

		if (bm && !bm->frozen && READ_ONCE(bm->untrusted)) {
			if (READ_ONCE(bm->gap))
				gap = true;
			else
				lost = true;
		}
	}
	DMEMIT(" %s %u", lost ? "lost" : gap ? "gap" : "ok",
	       count_bitmaps(t, NULL, false));
	for (i = 0; i < FLEECE_META_SLOTS; i++) {
		struct fleece_bitmap *bm = t->slot[i];

		if (!bm || bm->frozen)
			continue;
		DMEMIT(" %s %llu %u", bm->name, bm->nr_recorded,
		       count_held(t, bm->name));
	}
	spin_unlock_irq(&t->pend_lock);
	*szp = sz;
}
