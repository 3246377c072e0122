// SPDX-License-Identifier: GPL-2.0
/*
 * The metadata device of fleece-origin: superblock and bitmap blocks, their
 * validation, formatting and IO. Layout and guarantees: dm-fleece-track.h.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/crc32.h>
#include <linux/slab.h>
#include <linux/uuid.h>

#include "dm-fleece.h"
#include "dm-fleece-meta.h"

#define CSUM_SEED 0xf1eece5U

static u32 block_csum(const void *block)
{
	return crc32_le(CSUM_SEED, block + 4, FLEECE_META_BLOCK - 4);
}

sector_t fleece_meta_sectors_needed(u64 nr_blocks)
{
	return (2 + (sector_t)FLEECE_META_SLOTS * 2 * nr_blocks) *
	       FLEECE_META_BLOCK_SECTORS;
}

static sector_t block_sector(struct fleece_tracker *t, unsigned int slot,
			     u64 index, unsigned int copy)
{
	u64 block = 2 + (u64)slot * 2 * t->nr_blocks + 2 * index + copy;

	return block * FLEECE_META_BLOCK_SECTORS;
}

/* Synchronous IO of one block; @op adds e.g. REQ_PREFLUSH | REQ_FUA. */
static int meta_io(struct fleece_tracker *t, sector_t sector, void *buf,
		   blk_opf_t op)
{
	struct bio *bio;
	int r;

	bio = bio_alloc_bioset(t->meta, 1, op | REQ_SYNC | REQ_META, GFP_NOIO,
			       &t->bs);
	bio->bi_iter.bi_sector = sector;
	__bio_add_page(bio, virt_to_page(buf), FLEECE_META_BLOCK,
		       offset_in_page(buf));
	r = submit_bio_wait(bio);
	bio_put(bio);
	return r;
}

enum block_kind {
	KIND_ZERO,	/* never written */
	KIND_VALID,
	KIND_CORRUPT,	/* ours by its magic, but the checksum fails */
	KIND_FOREIGN,	/* not ours */
};

static bool all_zero(const void *buf, size_t len)
{
	return !memchr_inv(buf, 0, len);
}

static enum block_kind classify(const void *buf, u32 magic)
{
	const __le32 *w = buf;

	if (all_zero(buf, FLEECE_META_BLOCK))
		return KIND_ZERO;
	if (le32_to_cpu(w[1]) != magic)
		return KIND_FOREIGN;
	if (le32_to_cpu(w[0]) != block_csum(buf))
		return KIND_CORRUPT;
	return KIND_VALID;
}

/*
 * @flush: flush the device first, so that what the new superblock points
 * at is on disk before it (not for fleece_meta_lost()). The flush is a bio
 * of its own: device-mapper (6.1) drops the error of the flush it splits
 * off a REQ_PREFLUSH write with data, and the metadata device is often a
 * dm device (an LV).
 */
static int write_sb_once(struct fleece_tracker *t, bool flush)
{
	struct fleece_disk_sb *sb = t->sb;
	u64 seq = le64_to_cpu(sb->seq) + 1;
	int r;

	if (flush) {
		r = blkdev_issue_flush(t->meta);
		if (r)
			return r;
	}
	sb->seq = cpu_to_le64(seq);
	sb->csum = cpu_to_le32(block_csum(sb));
	r = meta_io(t, (seq & 1) * FLEECE_META_BLOCK_SECTORS, sb, REQ_OP_WRITE | REQ_FUA);
	if (r) {
		/* Retry into the same, damaged copy: never the good one. */
		sb->seq = cpu_to_le64(seq - 1);
		return r;
	}
	memcpy(t->sb_written, sb, FLEECE_META_BLOCK);
	/* Once lost, every superblock carries the untrusted marks. */
	if (t->lost)
		t->lost_on_disk = true;
	return 0;
}

/* Every bitmap is untrusted, in memory and in the superblock image. */
static void mark_untrusted(struct fleece_tracker *t)
{
	unsigned int i;

	for (i = 0; i < FLEECE_META_SLOTS; i++) {
		if (t->slot[i]) {
			t->slot[i]->untrusted = true;
			t->slot[i]->gap = false;
		}
		if (le32_to_cpu(t->sb->slots[i].state) != FLEECE_SLOT_FREE)
			t->sb->slots[i].flags = cpu_to_le32(FLEECE_SLOT_UNTRUSTED);
	}
}

void fleece_meta_lost(struct fleece_tracker *t)
{
	t->lost = true;
	mark_untrusted(t);
	if (t->lost_on_disk)
		return;
	/*
	 * Writes go on unrecorded from now on. If the device takes this one
	 * write, the next activation says "lost" too instead of trusting
	 * bitmaps that miss them. No flush first: the marks are all that
	 * matters here, whatever else is on disk, and a device that fails
	 * flushes may still take a FUA write.
	 */
	if (write_sb_once(t, false))
		DMERR_LIMIT("%pg: cannot mark the bitmaps untrusted on disk yet: will retry",
			    t->meta);
}

void fleece_meta_lost_retry(struct fleece_tracker *t)
{
	if (t->lost && !t->lost_on_disk && !write_sb_once(t, false))
		DMERR("%pg: bitmaps marked untrusted on disk at last", t->meta);
}

int fleece_meta_write_sb(struct fleece_tracker *t)
{
	int r = write_sb_once(t, true);

	if (r) {
		DMERR_LIMIT("%pg: superblock write failed: %d", t->meta, r);
		/*
		 * The change that failed did not happen: mark what is on disk
		 * untrusted, not the change (a bitmap_add that failed must not
		 * leave a slot that never recorded anything).
		 */
		memcpy(t->sb, t->sb_written, FLEECE_META_BLOCK);
		fleece_meta_lost(t);
	}
	return r;
}

/* Is the whole area we would use zero? Only then is it ours to format. */
static int area_is_zero(struct fleece_tracker *t, void *buf, bool *zero)
{
	sector_t end = fleece_meta_sectors_needed(t->nr_blocks), s;
	int r;

	*zero = false;
	for (s = 0; s < end; s += FLEECE_META_BLOCK_SECTORS) {
		r = meta_io(t, s, buf, REQ_OP_READ);
		if (r)
			return r;
		if (!all_zero(buf, FLEECE_META_BLOCK))
			return 0;
		cond_resched();
	}
	*zero = true;
	return 0;
}

static int format(struct fleece_tracker *t, unsigned int chunk_sectors,
		  const struct fleece_attach_opts *opts)
{
	struct fleece_disk_sb *sb = t->sb;

	memset(sb, 0, FLEECE_META_BLOCK);
	sb->magic = cpu_to_le32(FLEECE_SB_MAGIC);
	sb->version = cpu_to_le32(FLEECE_META_VERSION);
	sb->block_size = cpu_to_le32(FLEECE_META_BLOCK);
	generate_random_uuid(sb->uuid);
	sb->origin_sectors = cpu_to_le64(t->origin_sectors);
	sb->chunk_sectors = cpu_to_le32(chunk_sectors);
	sb->nr_slots = cpu_to_le32(FLEECE_META_SLOTS);
	sb->nr_chunks = cpu_to_le64(t->nr_chunks);
	sb->bits_per_block = cpu_to_le32(FLEECE_BITS_PER_BLOCK);
	sb->flags = cpu_to_le32(FLEECE_SB_ATTACHED);
	if (opts->origin_id)
		strscpy(sb->origin_id, opts->origin_id, sizeof(sb->origin_id));
	/* Nothing is on disk to fall back to: a failure fails the ctr. */
	return write_sb_once(t, true);
}

static int check_sb(struct fleece_tracker *t, struct fleece_disk_sb *sb,
		    unsigned int chunk_sectors, char **error)
{
	unsigned int i;

	if (le32_to_cpu(sb->version) != FLEECE_META_VERSION ||
	    le32_to_cpu(sb->block_size) != FLEECE_META_BLOCK ||
	    le32_to_cpu(sb->nr_slots) != FLEECE_META_SLOTS ||
	    le32_to_cpu(sb->bits_per_block) != FLEECE_BITS_PER_BLOCK) {
		*error = "Metadata has an unsupported version or layout";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->chunk_sectors) != chunk_sectors) {
		*error = "Metadata is for another chunk size";
		return -EINVAL;
	}
	if (le64_to_cpu(sb->origin_sectors) != t->origin_sectors ||
	    le64_to_cpu(sb->nr_chunks) != t->nr_chunks) {
		*error = "Metadata is for an origin of another size";
		return -EINVAL;
	}
	if ((le32_to_cpu(sb->flags) & ~FLEECE_SB_FLAGS) ||
	    !memchr(sb->origin_id, 0, sizeof(sb->origin_id)) ||
	    (sb->origin_id[0] && !fleece_valid_origin_id(sb->origin_id))) {
		*error = "Metadata superblock has invalid flags or origin_id";
		return -EINVAL;
	}
	for (i = 0; i < FLEECE_META_SLOTS; i++) {
		struct fleece_disk_slot *ds = &sb->slots[i];
		u32 state = le32_to_cpu(ds->state);

		if (state > FLEECE_SLOT_FROZEN ||
		    (le32_to_cpu(ds->flags) & ~FLEECE_SLOT_FLAGS) ||
		    (state && (!memchr(ds->name, 0, sizeof(ds->name)) ||
			       !fleece_valid_bitmap_name(ds->name)))) {
			*error = "Metadata superblock has an invalid bitmap slot";
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * Read a slot's blocks into @bm->recorded: per block, the valid copy of the
 * slot's generation with the higher seq; nothing valid means never written
 * in this generation (zero). Two damaged copies cannot come from a torn
 * write (only one copy is ever being written), so they are refused.
 */
static int load_slot(struct fleece_tracker *t, struct fleece_bitmap *bm,
		     void *buf, char **error)
{
	unsigned int words = FLEECE_BITS_PER_BLOCK / 64;
	struct fleece_disk_block *b = buf;
	u64 i, w, best_seq;
	int r, c, best, corrupt, damaged;

	for (i = 0; i < t->nr_blocks; i++) {
		best = -1;
		best_seq = 0;
		corrupt = 0;
		damaged = -1;
		for (c = 0; c < 2; c++) {
			r = meta_io(t, block_sector(t, bm->slot, i, c), buf,
				    REQ_OP_READ);
			if (r) {
				*error = "Cannot read metadata bitmap block";
				return r;
			}
			switch (classify(buf, FLEECE_BLOCK_MAGIC)) {
			case KIND_VALID:
				if (le32_to_cpu(b->slot) != bm->slot ||
				    le32_to_cpu(b->index) != i) {
					corrupt++;
					damaged = c;
					break;
				}
				if (le64_to_cpu(b->gen) == bm->gen &&
				    (best < 0 || le64_to_cpu(b->seq) > best_seq)) {
					best = c;
					best_seq = le64_to_cpu(b->seq);
				}
				t->block_seq = max(t->block_seq, le64_to_cpu(b->seq));
				break;
			case KIND_ZERO:
				break;
			default:
				corrupt++;
				damaged = c;
			}
		}
		if (corrupt == 2) {
			*error = "Metadata bitmap block checksum mismatch";
			return -EILSEQ;
		}
		/*
		 * The next write goes to the copy not holding the newest
		 * data; with none of this generation, to a damaged copy, so
		 * the intact one survives another torn write.
		 */
		if (best >= 0)
			bm->copy[i] = best;
		else
			bm->copy[i] = damaged >= 0 ? !damaged : 1;
		if (best < 0)
			continue;
		if (best != 1) {
			r = meta_io(t, block_sector(t, bm->slot, i, best),
				    buf, REQ_OP_READ);
			if (r) {
				*error = "Cannot read metadata bitmap block";
				return r;
			}
		}
		for (w = 0; w < words; w++) {
			u64 bit = i * FLEECE_BITS_PER_BLOCK + w * 64;
			u64 v = le64_to_cpu(b->bits[w]);
			unsigned int k;

			for (k = 0; v && k < 64; k++, v >>= 1)
				if ((v & 1) && bit + k < t->nr_chunks)
					__set_bit(bit + k, bm->recorded);
		}
		cond_resched();
	}
	return 0;
}

/*
 * The origin is attached: say so on disk before any write can reach it, and
 * distrust the bitmaps if writes could have passed them since they last
 * recorded (FLEECE_SB_ATTACHED, FLEECE_SB_BYPASS).
 */
static int attach(struct fleece_tracker *t, const struct fleece_attach_opts *opts,
		  char **error)
{
	struct fleece_disk_sb *sb = t->sb;
	u32 flags = le32_to_cpu(sb->flags);
	bool gap = !opts->no_gap || (flags & FLEECE_SB_BYPASS);
	unsigned int i, marked = 0;
	int r;

	if (flags & FLEECE_SB_ATTACHED)
		DMINFO("%pg: the origin was not detached cleanly (a crash or a power cut)%s",
		       t->meta, gap ? "" : "; no_gap: bitmaps kept, they are crash-safe");
	for (i = 0; gap && i < FLEECE_META_SLOTS; i++) {
		struct fleece_bitmap *bm = t->slot[i];

		if (!bm || bm->untrusted)
			continue;
		bm->untrusted = true;
		bm->gap = true;
		sb->slots[i].flags = cpu_to_le32(FLEECE_SLOT_UNTRUSTED | FLEECE_SLOT_GAP);
		marked++;
	}
	if (marked)
		DMWARN("%pg: %u bitmap(s) untrusted until a full backup: %s", t->meta, marked,
		       flags & FLEECE_SB_BYPASS ?
		       "the origin was detached while the system ran (no clean_detach)" :
		       "attached without no_gap, writes may have passed them while detached");
	if (opts->origin_id && !sb->origin_id[0])
		strscpy(sb->origin_id, opts->origin_id, sizeof(sb->origin_id));
	sb->flags = cpu_to_le32(FLEECE_SB_ATTACHED);
	r = fleece_meta_write_sb(t);
	if (r)
		*error = "Cannot write metadata superblock";
	return r;
}

void fleece_meta_detach(struct fleece_tracker *t)
{
	__le32 flags = t->sb->flags;

	t->sb->flags = t->clean_detach ? 0 : cpu_to_le32(FLEECE_SB_BYPASS);
	if (write_sb_once(t, true)) {
		t->sb->flags = flags;
		DMERR("%pg: cannot record the detach: the next attach takes it for a crash",
		      t->meta);
	}
}

int fleece_meta_load(struct fleece_tracker *t, unsigned int chunk_sectors,
		     const struct fleece_attach_opts *opts, char **error)
{
	struct fleece_disk_sb *sb[2];
	enum block_kind kind[2];
	bool zero;
	void *buf;
	int r, c, best = -1;
	unsigned int i;

	if (bdev_nr_sectors(t->meta) < fleece_meta_sectors_needed(t->nr_blocks)) {
		*error = "Metadata device is too small for this origin";
		return -ENOSPC;
	}

	buf = kmalloc(FLEECE_META_BLOCK * 3, GFP_KERNEL);
	if (!buf) {
		*error = "Cannot allocate metadata buffers";
		return -ENOMEM;
	}
	sb[0] = buf + FLEECE_META_BLOCK;
	sb[1] = buf + 2 * FLEECE_META_BLOCK;
	for (c = 0; c < 2; c++) {
		r = meta_io(t, c * FLEECE_META_BLOCK_SECTORS, sb[c],
			    REQ_OP_READ);
		if (r) {
			*error = "Cannot read metadata superblock";
			goto out;
		}
		kind[c] = classify(sb[c], FLEECE_SB_MAGIC);
		if (kind[c] == KIND_VALID &&
		    (best < 0 || le64_to_cpu(sb[c]->seq) > le64_to_cpu(sb[best]->seq)))
			best = c;
	}

	if (best < 0) {
		if (kind[0] == KIND_CORRUPT || kind[1] == KIND_CORRUPT) {
			*error = "Metadata superblock checksum mismatch";
			r = -EILSEQ;
			goto out;
		}
		if (kind[0] == KIND_FOREIGN || kind[1] == KIND_FOREIGN) {
			*error = "Metadata device holds something else: refusing to overwrite it";
			r = -EINVAL;
			goto out;
		}
		r = area_is_zero(t, buf, &zero);
		if (r) {
			*error = "Cannot read metadata device";
			goto out;
		}
		if (!zero) {
			*error = "Metadata device holds something else: refusing to overwrite it";
			r = -EINVAL;
			goto out;
		}
		r = format(t, chunk_sectors, opts);
		if (r)
			*error = "Cannot write metadata superblock";
		goto out;
	}

	r = check_sb(t, sb[best], chunk_sectors, error);
	if (r)
		goto out;
	if (opts->origin_id && sb[best]->origin_id[0] &&
	    strcmp(sb[best]->origin_id, opts->origin_id)) {
		*error = "Metadata belongs to another origin (its origin_id differs)";
		r = -EINVAL;
		goto out;
	}
	memcpy(t->sb, sb[best], FLEECE_META_BLOCK);
	memcpy(t->sb_written, sb[best], FLEECE_META_BLOCK);

	for (i = 0; i < FLEECE_META_SLOTS; i++) {
		struct fleece_disk_slot *ds = &t->sb->slots[i];
		u32 state = le32_to_cpu(ds->state);
		struct fleece_bitmap *bm;

		if (state == FLEECE_SLOT_FREE)
			continue;
		bm = fleece_bitmap_alloc(t, ds->name, i,
					 state == FLEECE_SLOT_FROZEN);
		if (!bm) {
			*error = "Cannot allocate bitmap";
			r = -ENOMEM;
			goto out;
		}
		bm->gen = le64_to_cpu(ds->gen);
		bm->untrusted = le32_to_cpu(ds->flags) & FLEECE_SLOT_UNTRUSTED;
		bm->gap = bm->untrusted && (le32_to_cpu(ds->flags) & FLEECE_SLOT_GAP);
		t->slot[i] = bm;
		r = load_slot(t, bm, buf, error);
		if (r)
			goto out;
		if (bm->durable)
			bitmap_copy(bm->durable, bm->recorded, t->nr_chunks);
	}
	r = attach(t, opts, error);
out:
	kfree(buf);
	return r;
}

void fleece_meta_fill_block(struct fleece_tracker *t, struct fleece_bitmap *bm,
			    u64 index, void *page)
{
	unsigned int words = FLEECE_BITS_PER_BLOCK / 64, w, k;
	struct fleece_disk_block *b = page;
	u64 first = index * FLEECE_BITS_PER_BLOCK;

	memset(page, 0, FLEECE_BLOCK_HEADER);
	b->magic = cpu_to_le32(FLEECE_BLOCK_MAGIC);
	b->seq = cpu_to_le64(++t->block_seq);
	b->gen = cpu_to_le64(bm->gen);
	b->slot = cpu_to_le32(bm->slot);
	b->index = cpu_to_le32(index);
	for (w = 0; w < words; w++) {
		u64 v = 0, bit = first + (u64)w * 64;

		for (k = 0; k < 64 && bit + k < t->nr_chunks; k++)
			if (test_bit(bit + k, bm->recorded))
				v |= BIT_ULL(k);
		b->bits[w] = cpu_to_le64(v);
	}
	b->csum = cpu_to_le32(block_csum(page));
}

/* OR the bits a written block holds into @bm->durable. */
void fleece_meta_apply_block(struct fleece_tracker *t, struct fleece_bitmap *bm,
			     u64 index, const void *page)
{
	unsigned int words = FLEECE_BITS_PER_BLOCK / 64, w, k;
	const struct fleece_disk_block *b = page;
	u64 first = index * FLEECE_BITS_PER_BLOCK;

	for (w = 0; w < words; w++) {
		u64 v = le64_to_cpu(b->bits[w]), bit = first + (u64)w * 64;

		for (k = 0; v && k < 64; k++, v >>= 1)
			if (v & 1)
				set_bit(bit + k, bm->durable);
	}
}

struct write_batch {
	atomic_t pending;
	int error;
	struct completion done;
};

static void block_endio(struct bio *bio)
{
	struct write_batch *wb = bio->bi_private;

	if (bio->bi_status)
		wb->error = blk_status_to_errno(bio->bi_status);
	bio_put(bio);
	if (atomic_dec_and_test(&wb->pending))
		complete(&wb->done);
}

int fleece_meta_write_blocks(struct fleece_tracker *t,
			     struct fleece_block_write *w, unsigned int n)
{
	struct write_batch wb = { .error = 0 };
	unsigned int i;
	int r;

	atomic_set(&wb.pending, 1);
	init_completion(&wb.done);
	for (i = 0; i < n; i++) {
		unsigned int copy = !w[i].bm->copy[w[i].index];
		struct bio *bio;

		bio = bio_alloc_bioset(t->meta, 1,
				       REQ_OP_WRITE | REQ_SYNC | REQ_META,
				       GFP_NOIO, &t->bs);
		bio->bi_iter.bi_sector = block_sector(t, w[i].bm->slot,
						      w[i].index, copy);
		__bio_add_page(bio, w[i].page, FLEECE_META_BLOCK, 0);
		bio->bi_end_io = block_endio;
		bio->bi_private = &wb;
		atomic_inc(&wb.pending);
		submit_bio(bio);
	}
	if (!atomic_dec_and_test(&wb.pending))
		wait_for_completion_io(&wb.done);

	r = wb.error;
	if (!r)
		r = blkdev_issue_flush(t->meta);
	if (r) {
		DMERR_LIMIT("%pg: bitmap block write failed: %d", t->meta, r);
		fleece_meta_lost(t);
		return r;
	}
	/* Written: the next write of each block goes to its other copy. */
	for (i = 0; i < n; i++)
		w[i].bm->copy[w[i].index] ^= 1;
	return 0;
}
