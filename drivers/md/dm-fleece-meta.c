// SPDX-License-Identifier: GPL-2.0
/*
 * The metadata device of fleece-origin: superblock and bitmap blocks, their
 * validation, formatting and IO. Layout and guarantees: dm-fleece-track.h.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/crc32.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/sizes.h>
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

/*
 * Activation reads whole areas of the metadata device: the zero check of a
 * fresh device and the bitmaps of existing metadata. One 4 KiB read at a
 * time made that take minutes for a large origin; these reads are large
 * and several are in flight, and the data is looked at in device order.
 */
#define SCAN_READ_BYTES		SZ_1M
#define SCAN_READS		8
#define SCAN_READ_SECTORS	(SCAN_READ_BYTES >> SECTOR_SHIFT)

/* One read of a scan and its buffer. */
struct scan_read {
	struct completion done;
	blk_status_t status;
	void *buf;
	unsigned int len;	/* bytes being read, 0 when idle */
};

static void scan_endio(struct bio *bio)
{
	struct scan_read *rd = bio->bi_private;

	rd->status = bio->bi_status;
	bio_put(bio);
	complete(&rd->done);
}

/* The page of a buffer from kvmalloc(): vmalloc memory is not linear. */
static struct page *buf_page(void *p)
{
	return is_vmalloc_addr(p) ? vmalloc_to_page(p) : virt_to_page(p);
}

static int scan_submit(struct fleece_tracker *t, struct scan_read *rd,
		       sector_t sector, unsigned int len)
{
	unsigned int off, n;
	struct bio *bio;

	/* 1 MiB is BIO_MAX_VECS pages: kvmalloc() gives it page-aligned. */
	BUILD_BUG_ON(SCAN_READ_BYTES / PAGE_SIZE > BIO_MAX_VECS);
	bio = bio_alloc_bioset(t->meta,
			       DIV_ROUND_UP(offset_in_page(rd->buf) + len, PAGE_SIZE),
			       REQ_OP_READ | REQ_META, GFP_KERNEL, &t->bs);
	if (!bio)
		return -ENOMEM;
	bio->bi_iter.bi_sector = sector;
	bio->bi_end_io = scan_endio;
	bio->bi_private = rd;
	for (off = 0; off < len; off += n) {
		n = min_t(unsigned int, len - off, PAGE_SIZE - offset_in_page(rd->buf + off));
		if (bio_add_page(bio, buf_page(rd->buf + off), n,
				 offset_in_page(rd->buf + off)) != n) {
			bio_put(bio);
			return -EIO;
		}
	}
	if (is_vmalloc_addr(rd->buf))
		flush_kernel_vmap_range(rd->buf, len);
	reinit_completion(&rd->done);
	rd->len = len;
	submit_bio(bio);
	return 0;
}

/* Wait for @rd's read; it is idle after. */
static int scan_wait(struct scan_read *rd)
{
	wait_for_completion_io(&rd->done);
	if (is_vmalloc_addr(rd->buf))
		invalidate_kernel_vmap_range(rd->buf, rd->len);
	rd->len = 0;
	return blk_status_to_errno(rd->status);
}

/*
 * What a scan does with each piece it read, in device order: @buf holds
 * @len bytes from @sector (SCAN_READ_BYTES, less for the last piece).
 * Nonzero ends the scan and is its result.
 */
typedef int (*scan_fn)(struct fleece_tracker *t, sector_t sector,
		       const void *buf, unsigned int len, void *ctx);

/* Start the next read of a scan into @rd, if the area has more. */
static int scan_next(struct fleece_tracker *t, struct scan_read *rd,
		     sector_t *next, sector_t end, char **error)
{
	unsigned int len;
	int r;

	if (*next >= end)
		return 0;
	len = min_t(sector_t, end - *next, SCAN_READ_SECTORS) << SECTOR_SHIFT;
	r = scan_submit(t, rd, *next, len);
	if (r) {
		*error = "Cannot allocate metadata buffers";
		return r;
	}
	*next += len >> SECTOR_SHIFT;
	return 0;
}

/*
 * Read @nr sectors from @start, in SCAN_READ_BYTES reads with up to
 * SCAN_READS in flight, and hand them to @fn in order. A failed read sets
 * *@error to @read_error; @fn sets its own.
 * Return: 0, @fn's first nonzero result, or a negative errno.
 */
static int meta_scan(struct fleece_tracker *t, sector_t start, sector_t nr,
		     scan_fn fn, void *ctx, char *read_error, char **error)
{
	unsigned int nbufs = min_t(sector_t, SCAN_READS,
				   DIV_ROUND_UP_SECTOR_T(nr, SCAN_READ_SECTORS));
	unsigned int size = min_t(sector_t, nr, SCAN_READ_SECTORS) << SECTOR_SHIFT;
	struct scan_read rd[SCAN_READS] = {};
	sector_t next = start, pos = start, end = start + nr;
	unsigned int i, len;
	int r = 0;

	for (i = 0; i < nbufs; i++) {
		init_completion(&rd[i].done);
		rd[i].buf = kvmalloc(size, GFP_KERNEL);
		if (!rd[i].buf) {
			*error = "Cannot allocate metadata buffers";
			r = -ENOMEM;
			goto out;
		}
	}
	for (i = 0; i < nbufs && !r; i++)
		r = scan_next(t, &rd[i], &next, end, error);
	/* Reads complete in any order; look at them in the order issued. */
	for (i = 0; !r && pos < end; i = (i + 1) % nbufs) {
		len = rd[i].len;
		r = scan_wait(&rd[i]);
		if (r) {
			DMERR_LIMIT("%pg: metadata read at sector %llu failed: %d",
				    t->meta, (unsigned long long)pos, r);
			*error = read_error;
			break;
		}
		r = fn(t, pos, rd[i].buf, len, ctx);
		if (r)
			break;
		pos += len >> SECTOR_SHIFT;
		r = scan_next(t, &rd[i], &next, end, error);
		cond_resched();
	}
out:
	/* No buffer is freed under a read still in flight. */
	for (i = 0; i < nbufs; i++) {
		if (rd[i].len)
			scan_wait(&rd[i]);
		kvfree(rd[i].buf);
	}
	return r;
}

enum block_kind {
	KIND_ZERO,	/* never written */
	KIND_VALID,
	KIND_CORRUPT,	/* ours by its magic, but the checksum fails */
	KIND_FOREIGN,	/* not ours */
};

/*
 * The zero check of a fresh device looks at every byte of an area that is
 * a GiB at 16 TiB: OR eight words at a time, one test per 64 bytes, where
 * memchr_inv() tests and branches per word.
 */
static bool all_zero(const void *buf, size_t len)
{
	const unsigned long *w = buf;
	unsigned long acc = 0;
	size_t i, n;

	if (!IS_ALIGNED((unsigned long)buf | len, 8 * sizeof(long)))
		return !memchr_inv(buf, 0, len);
	n = len / sizeof(long);
	for (i = 0; i < n; i += 8) {
		acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] |
		       w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
		if (acc)
			return false;
	}
	return true;
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
	bool on_disk = t->lost_on_disk;

	mark_untrusted(t);
	/*
	 * Writes go on unrecorded once t->lost is set. If the device takes
	 * this one write, the next activation says "lost" too instead of
	 * trusting bitmaps that miss them. No flush first: the marks are all
	 * that matters here, whatever else is on disk, and a device that fails
	 * flushes may still take a FUA write.
	 */
	on_disk = on_disk || !write_sb_once(t, false);
	if (!on_disk)
		DMERR_LIMIT("%pg: cannot mark the bitmaps untrusted on disk yet: will retry",
			    t->meta);
	/*
	 * Only now, with the marks on disk (or tried): a write let go before
	 * could complete, and a power cut then leave neither its bit nor the
	 * marks. Writes meanwhile wait for a round, which finds tracking lost
	 * and lets them go. The IO path reads it unlocked.
	 */
	t->lost_on_disk = on_disk;
	WRITE_ONCE(t->lost, true);
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

static int nonzero_piece(struct fleece_tracker *t, sector_t sector,
			 const void *buf, unsigned int len, void *ctx)
{
	return !all_zero(buf, len);
}

/* Is the whole area we would use zero? Only then is it ours to format. */
static int area_is_zero(struct fleece_tracker *t, bool *zero, char **error)
{
	int r;

	r = meta_scan(t, 0, fleece_meta_sectors_needed(t->nr_blocks),
		      nonzero_piece, NULL, "Cannot read metadata device", error);
	*zero = !r;
	return r < 0 ? r : 0;
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
 * Loading a slot: its bitmap (for a free slot, a stand-in without
 * @recorded: see load_free_slot()), and the blocks to rewrite once all of
 * the metadata is loaded (repair_slots()): @repair[0], those with a damaged
 * copy; @repair[1], (free slots only) those with both copies damaged, whose
 * second copy is rewritten after the first.
 */
struct load_ctx {
	struct fleece_bitmap *bm;
	unsigned long *repair[2];
	u64 nr_repair;
	char **error;
};

/*
 * Block @i of a slot from its two copies (@pair: copy 0, then copy 1) into
 * @lc->bm->recorded: the valid copy of the slot's generation with the
 * higher seq; nothing valid means never written in this generation (zero).
 * Two damaged copies cannot come from a torn write (only one copy is ever
 * being written), so they are refused, but in a free slot, which holds
 * nothing. A damaged copy is noted for repair.
 */
static int load_block(struct fleece_tracker *t, struct load_ctx *lc, u64 i,
		      const void *pair)
{
	struct fleece_bitmap *bm = lc->bm;
	unsigned int words = FLEECE_BITS_PER_BLOCK / 64;
	const struct fleece_disk_block *b;
	int c, best = -1, corrupt = 0, damaged = -1;
	u64 w, best_seq = 0;

	for (c = 0; c < 2; c++) {
		b = pair + c * FLEECE_META_BLOCK;
		switch (classify(b, FLEECE_BLOCK_MAGIC)) {
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
	if (corrupt == 2 && bm->recorded) {
		*lc->error = "Metadata bitmap block checksum mismatch";
		return -EILSEQ;
	}
	/*
	 * No damaged copy outlives the load that finds it. Until it is
	 * rewritten the other copy is the only intact one, and a new
	 * generation of the slot (bitmap_remove and bitmap_add) does not
	 * know that: its first write of the block may go to the intact copy,
	 * and a torn write there would leave no copy intact.
	 */
	if (corrupt) {
		__set_bit(i, lc->repair[0]);
		lc->nr_repair++;
	}
	if (corrupt == 2)
		__set_bit(i, lc->repair[1]);
	/*
	 * The next write (the repair's, with a copy damaged) goes to the
	 * copy not holding the newest data; with none of this generation, to
	 * a damaged copy, so the intact one survives another torn write.
	 */
	if (best >= 0)
		bm->copy[i] = best;
	else
		bm->copy[i] = damaged >= 0 ? !damaged : 1;
	/* A free slot's content is not kept. */
	if (best < 0 || !bm->recorded)
		return 0;
	b = pair + best * FLEECE_META_BLOCK;
	for (w = 0; w < words; w++) {
		u64 bit = i * FLEECE_BITS_PER_BLOCK + w * 64;
		u64 v = le64_to_cpu(b->bits[w]);
		unsigned int k;

		for (k = 0; v && k < 64; k++, v >>= 1)
			if ((v & 1) && bit + k < t->nr_chunks)
				__set_bit(bit + k, bm->recorded);
	}
	return 0;
}

/* Both copies of a block are next to each other, and a piece holds pairs. */
static int load_piece(struct fleece_tracker *t, sector_t sector,
		      const void *buf, unsigned int len, void *ctx)
{
	struct load_ctx *lc = ctx;
	u64 i = (sector - block_sector(t, lc->bm->slot, 0, 0)) /
		(2 * FLEECE_META_BLOCK_SECTORS);
	unsigned int off;
	int r;

	for (off = 0; off < len; off += 2 * FLEECE_META_BLOCK, i++) {
		r = load_block(t, lc, i, buf + off);
		if (r)
			return r;
		cond_resched();
	}
	return 0;
}

/* Read a slot's blocks into @lc->bm->recorded (load_block()). */
static int load_slot(struct fleece_tracker *t, struct load_ctx *lc)
{
	int i;

	/* A piece never splits a pair: both are a whole number of blocks. */
	BUILD_BUG_ON(SCAN_READ_BYTES % (2 * FLEECE_META_BLOCK));
	for (i = 0; i < 2; i++) {
		lc->repair[i] = kvcalloc(BITS_TO_LONGS(t->nr_blocks),
					 sizeof(unsigned long), GFP_KERNEL);
		if (!lc->repair[i]) {
			*lc->error = "Cannot allocate metadata buffers";
			return -ENOMEM;
		}
	}
	return meta_scan(t, block_sector(t, lc->bm->slot, 0, 0),
			 2 * t->nr_blocks * FLEECE_META_BLOCK_SECTORS, load_piece,
			 lc, "Cannot read metadata bitmap block", lc->error);
}

/*
 * A free slot that was used before may hold a damaged copy too: a block
 * write that failed (tracking is then lost, but bitmap_remove still frees
 * the slot), or a torn one that an older module did not repair. Its next
 * user takes a new generation without reading it, as the slot's blocks of
 * older generations read as zero; so it is loaded like a slot in use,
 * through a stand-in that keeps no bits, and a damaged copy is rewritten
 * empty, of the slot's generation. A slot never used (generation 0) holds
 * zeroes: the format found them, and no block write has gone there since.
 */
static int load_free_slot(struct fleece_tracker *t, struct load_ctx *lc,
			  unsigned int slot, u64 gen)
{
	struct fleece_bitmap *bm;

	if (!gen)
		return 0;
	bm = kzalloc(sizeof(*bm), GFP_KERNEL);
	if (!bm)
		goto nomem;
	lc->bm = bm;
	bm->slot = slot;
	bm->gen = gen;
	bm->copy = kvzalloc(t->nr_blocks, GFP_KERNEL);
	if (!bm->copy)
		goto nomem;
	return load_slot(t, lc);
nomem:
	*lc->error = "Cannot allocate metadata buffers";
	return -ENOMEM;
}

static int write_blocks(struct fleece_tracker *t, struct fleece_block_write *w,
			unsigned int n);

static int repair_batch(struct fleece_tracker *t, struct fleece_block_write *w,
			unsigned int n)
{
	unsigned int i;
	int r;

	r = write_blocks(t, w, n);
	for (i = 0; i < n; i++)
		mempool_free(w[i].page, &t->page_pool);
	return r;
}

/*
 * Rewrite the damaged copies the load found (load_block()), before the
 * attach is written and the origin takes writes: each with its block's
 * content in the slot's generation (the bits just loaded, none if no copy
 * was of it) and a new seq, as a commit round writes it. load_block()
 * pointed bm->copy[] at the other copy, so the write goes to the damaged
 * one, which then holds the newest data. A torn repair damages only the
 * copy that was damaged already: the next load repairs it again. The
 * second copy of a free slot's block with both damaged goes in a second
 * pass, to the copy the first one did not write.
 */
static int repair_slots(struct fleece_tracker *t, struct load_ctx *lc,
			char **error)
{
	struct fleece_block_write *w = t->round;
	unsigned int pass, s, n = 0;
	int r = 0;
	u64 b;

	for (pass = 0; pass < 2 && !r; pass++) {
		for (s = 0; s < FLEECE_META_SLOTS && !r; s++) {
			if (!lc[s].nr_repair)
				continue;
			for (b = find_next_bit(lc[s].repair[pass], t->nr_blocks, 0);
			     b < t->nr_blocks && !r;
			     b = find_next_bit(lc[s].repair[pass], t->nr_blocks, b + 1)) {
				w[n].bm = lc[s].bm;
				w[n].index = b;
				w[n].page = mempool_alloc(&t->page_pool, GFP_NOIO);
				fleece_meta_fill_block(t, w[n].bm, b,
						       page_address(w[n].page));
				if (++n == FLEECE_ROUND_BLOCKS) {
					r = repair_batch(t, w, n);
					n = 0;
				}
			}
		}
		if (n && !r)
			r = repair_batch(t, w, n);
		n = 0;
	}
	if (r) {
		*error = "Cannot repair a damaged metadata bitmap block";
		return r;
	}
	for (s = 0; s < FLEECE_META_SLOTS; s++) {
		struct fleece_bitmap *bm = lc[s].bm;
		char what[48];

		if (!lc[s].nr_repair)
			continue;
		if (!bm->recorded)
			snprintf(what, sizeof(what), "free slot %u", s);
		else
			snprintf(what, sizeof(what), "%s '%s'",
				 bm->frozen ? "frozen set of" : "bitmap", bm->name);
		DMINFO("%pg: %s: %llu metadata block(s) had a damaged copy: rewritten",
		       t->meta, what, lc[s].nr_repair);
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
	struct load_ctx *lc = NULL;
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

	buf = kmalloc(FLEECE_META_BLOCK * 2, GFP_KERNEL);
	if (!buf) {
		*error = "Cannot allocate metadata buffers";
		return -ENOMEM;
	}
	sb[0] = buf;
	sb[1] = buf + FLEECE_META_BLOCK;
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
		r = area_is_zero(t, &zero, error);
		if (r)
			goto out;
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

	lc = kcalloc(FLEECE_META_SLOTS, sizeof(*lc), GFP_KERNEL);
	if (!lc) {
		*error = "Cannot allocate metadata buffers";
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < FLEECE_META_SLOTS; i++) {
		struct fleece_disk_slot *ds = &t->sb->slots[i];
		u32 state = le32_to_cpu(ds->state);
		struct fleece_bitmap *bm;

		lc[i].error = error;
		if (state == FLEECE_SLOT_FREE) {
			r = load_free_slot(t, &lc[i], i, le64_to_cpu(ds->gen));
			/*
			 * It holds nothing: a read error there is no reason
			 * to refuse the origin. Left unchecked, a damaged
			 * copy in it may meet a torn write of its next user,
			 * and the load then refuses the metadata, as it did
			 * before free slots were read at all.
			 */
			if (r && r != -ENOMEM) {
				DMWARN("%pg: free slot %u could not be read (%d): %s",
				       t->meta, i, r, "not checked for damaged copies");
				lc[i].nr_repair = 0;
				r = 0;
			}
			if (r)
				goto out;
			continue;
		}
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
		lc[i].bm = bm;
		r = load_slot(t, &lc[i]);
		if (r)
			goto out;
		/*
		 * Not bitmap_copy(): its unsigned int size rounds up to zero
		 * words past 2^32 - 64 chunks, which the ctr allows.
		 */
		if (bm->durable)
			memcpy(bm->durable, bm->recorded,
			       BITS_TO_LONGS(t->nr_chunks) * sizeof(unsigned long));
	}
	/* Only now: metadata that is refused is never written. */
	r = repair_slots(t, lc, error);
	if (r)
		goto out;
	r = attach(t, opts, error);
out:
	for (i = 0; lc && i < FLEECE_META_SLOTS; i++) {
		kvfree(lc[i].repair[0]);
		kvfree(lc[i].repair[1]);
		/* A free slot's stand-in (the slot's bitmaps are @t's). */
		if (lc[i].bm && !lc[i].bm->recorded) {
			kvfree(lc[i].bm->copy);
			kfree(lc[i].bm);
		}
	}
	kfree(lc);
	kfree(buf);
	return r;
}

/*
 * A block's bits are 64-bit words from a chunk that is a multiple of 64:
 * whole words of the bitmap in memory, moved a word at a time (a commit
 * round fills and applies every block it writes; bit by bit that was most
 * of a round's time). Chunks from @nr on are never set, nor read.
 */
static u64 read_bits64(const unsigned long *map, u64 bit, u64 nr)
{
	u64 v = 0;
	unsigned int i;

	if (bit >= nr)
		return 0;
	/* The map may be recording: each word is read once. */
	for (i = 0; i < 64 / BITS_PER_LONG; i++)
		if (bit + i * BITS_PER_LONG < nr)
			v |= (u64)READ_ONCE(map[bit / BITS_PER_LONG + i]) << (i * BITS_PER_LONG);
	if (nr - bit < 64)
		v &= GENMASK_ULL(nr - bit - 1, 0);
	return v;
}

static void or_bits64(unsigned long *map, u64 bit, u64 nr, u64 v)
{
	unsigned int i;

	if (bit >= nr)
		return;
	if (nr - bit < 64)
		v &= GENMASK_ULL(nr - bit - 1, 0);
	for (i = 0; i < 64 / BITS_PER_LONG; i++) {
		unsigned long part = v >> (i * BITS_PER_LONG);

		if (part)
			atomic_long_or(part, (atomic_long_t *)&map[bit / BITS_PER_LONG + i]);
	}
}

void fleece_meta_fill_block(struct fleece_tracker *t, struct fleece_bitmap *bm,
			    u64 index, void *page)
{
	unsigned int words = FLEECE_BITS_PER_BLOCK / 64, w;
	struct fleece_disk_block *b = page;
	u64 first = index * FLEECE_BITS_PER_BLOCK;

	BUILD_BUG_ON(FLEECE_BITS_PER_BLOCK % 64);
	memset(page, 0, FLEECE_BLOCK_HEADER);
	b->magic = cpu_to_le32(FLEECE_BLOCK_MAGIC);
	b->seq = cpu_to_le64(++t->block_seq);
	b->gen = cpu_to_le64(bm->gen);
	b->slot = cpu_to_le32(bm->slot);
	b->index = cpu_to_le32(index);
	/* A free slot's stand-in at load (load_free_slot()) has no bits. */
	for (w = 0; w < words; w++)
		b->bits[w] = bm->recorded ?
			cpu_to_le64(read_bits64(bm->recorded, first + (u64)w * 64,
						t->nr_chunks)) : 0;
	b->csum = cpu_to_le32(block_csum(page));
}

/* OR the bits a written block holds into @bm->durable. */
void fleece_meta_apply_block(struct fleece_tracker *t, struct fleece_bitmap *bm,
			     u64 index, const void *page)
{
	unsigned int words = FLEECE_BITS_PER_BLOCK / 64, w;
	const struct fleece_disk_block *b = page;
	u64 first = index * FLEECE_BITS_PER_BLOCK;

	for (w = 0; w < words; w++)
		or_bits64(bm->durable, first + (u64)w * 64, t->nr_chunks,
			  le64_to_cpu(b->bits[w]));
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

/*
 * Write each of @w's blocks to its copy that does not hold its newest data,
 * then flush. Only once all are on disk does the next write of each go to
 * its other copy; a failure changes nothing in memory, and is the caller's
 * to handle.
 */
static int write_blocks(struct fleece_tracker *t, struct fleece_block_write *w,
			unsigned int n)
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
	if (r)
		return r;
	/* Written: the next write of each block goes to its other copy. */
	for (i = 0; i < n; i++)
		w[i].bm->copy[w[i].index] ^= 1;
	return 0;
}

int fleece_meta_write_blocks(struct fleece_tracker *t,
			     struct fleece_block_write *w, unsigned int n)
{
	int r = write_blocks(t, w, n);

	if (r) {
		DMERR_LIMIT("%pg: bitmap block write failed: %d", t->meta, r);
		fleece_meta_lost(t);
	}
	return r;
}
