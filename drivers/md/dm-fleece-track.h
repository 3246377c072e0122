/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Changed-block tracking: named bitmaps on a fleece-origin, one bit per
 * chunk, kept in memory and (with a metadata device) on disk so that after
 * a power cut every chunk written since a bitmap was cleared still has its
 * bit set.
 *
 * On-disk layout, in 4 KiB blocks:
 *   0, 1        superblock, two copies; the valid one with the higher seq
 *               wins, writes alternate between them
 *   2 ...       FLEECE_META_SLOTS slot areas of 2 * nr_blocks blocks each;
 *               block i of a slot has two copies (2i, 2i + 1), written
 *               alternately, the valid one of the slot's current
 *               generation with the higher seq wins
 * A torn write damages at most the copy being written; the other still
 * holds the state from before, which is all that was promised durable.
 * A slot's generation lives in the superblock: bumping it clears the slot
 * without touching its blocks (blocks of an older generation read as zero).
 */
#ifndef DM_FLEECE_TRACK_H
#define DM_FLEECE_TRACK_H

#include <linux/bio.h>
#include <linux/mempool.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/workqueue.h>

#define FLEECE_MAX_BITMAPS	8	/* live bitmaps per origin */
#define FLEECE_META_SLOTS	16	/* live bitmaps + frozen sets */
#define FLEECE_NAME_MAX		31	/* + NUL: 32 bytes on disk */
#define FLEECE_ORIGIN_ID_MAX	127	/* + NUL: 128 bytes on disk */

#define FLEECE_META_BLOCK	4096
#define FLEECE_META_BLOCK_SECTORS (FLEECE_META_BLOCK >> SECTOR_SHIFT)
#define FLEECE_BLOCK_HEADER	64
#define FLEECE_BITS_PER_BLOCK	((FLEECE_META_BLOCK - FLEECE_BLOCK_HEADER) * 8)

#define FLEECE_SB_MAGIC		0x6365656cU	/* "leec" */
#define FLEECE_BLOCK_MAGIC	0x7469626cU	/* "lbit" */
#define FLEECE_META_VERSION	1

enum fleece_slot_state {
	FLEECE_SLOT_FREE = 0,
	FLEECE_SLOT_LIVE = 1,	/* a named bitmap recording writes */
	FLEECE_SLOT_FROZEN = 2,	/* a bitmap's content frozen by a session */
};

/*
 * Slot flags. UNTRUSTED: tracking was lost while the bitmap recorded (a
 * metadata write failed), so it may miss writes until it starts again
 * (bitmap_clear, or the commit of a "full" backup that froze it).
 */
#define FLEECE_SLOT_UNTRUSTED	BIT(0)
/*
 * GAP (with UNTRUSTED only): the reason is not a failed write but an attach
 * after a time in which writes could pass the fleece-origin (see
 * FLEECE_SB_ATTACHED).
 */
#define FLEECE_SLOT_GAP		BIT(1)
#define FLEECE_SLOT_FLAGS	(FLEECE_SLOT_UNTRUSTED | FLEECE_SLOT_GAP)

/*
 * Superblock flags: whether writes to the origin could have passed the
 * fleece-origin since its bitmaps last recorded.
 *
 * ATTACHED: set by every attach (the first fleece-origin table on the
 * origin), cleared when the last one goes. Found set by an attach: the last
 * one ended in a crash or a power cut, not in a detach.
 * BYPASS: set when the last table goes while the system runs on (any
 * detach: dmsetup remove, fleecectl detach, or a table swapped in by LVM's
 * lvextend), unless the "clean_detach" message said first that the system
 * is going down. Writes may pass the bitmaps from then on, so the next
 * attach distrusts them even if its table vouches for no gap.
 *
 * Neither proves that nothing wrote in between: only whoever attaches can
 * know (the no_gap feature argument, given by the boot units that attach
 * before anything mounts the origin). Without it every attach of existing
 * metadata marks the bitmaps untrusted (FLEECE_SLOT_GAP).
 */
#define FLEECE_SB_ATTACHED	BIT(0)
#define FLEECE_SB_BYPASS	BIT(1)
#define FLEECE_SB_FLAGS		(FLEECE_SB_ATTACHED | FLEECE_SB_BYPASS)

struct fleece_disk_slot {
	__u8 name[FLEECE_NAME_MAX + 1];	/* NUL-padded */
	__le32 state;
	__le32 flags;		/* FLEECE_SLOT_* flags; was reserved (0) */
	__le64 gen;
} __packed;

struct fleece_disk_sb {
	__le32 csum;		/* crc32 (le) of the block from offset 4 */
	__le32 magic;
	__le32 version;
	__le32 block_size;
	__le64 seq;
	__u8 uuid[16];
	__le64 origin_sectors;
	__le32 chunk_sectors;
	__le32 nr_slots;
	__le64 nr_chunks;
	__le32 bits_per_block;
	__le32 flags;		/* FLEECE_SB_* flags; was reserved (0) */
	struct fleece_disk_slot slots[FLEECE_META_SLOTS];
	/*
	 * What the origin is (fleece-origin's origin_id), NUL-padded; all
	 * zero: not known (older metadata, or tables without one).
	 */
	__u8 origin_id[FLEECE_ORIGIN_ID_MAX + 1];
} __packed;

struct fleece_disk_block {
	__le32 csum;		/* crc32 (le) of the block from offset 4 */
	__le32 magic;
	__le64 seq;
	__le64 gen;		/* the slot generation it was written in */
	__le32 slot;
	__le32 index;
	__u8 pad[FLEECE_BLOCK_HEADER - 32];
	__le64 bits[];
} __packed;

/**
 * struct fleece_bitmap - one slot's bitmap in memory.
 * @rcu: frees it after the IO path has stopped looking.
 * @name: NUL-terminated name.
 * @slot: its on-disk slot.
 * @frozen: a frozen set owned by a session, no longer recording.
 * @committed: (frozen) the backup succeeded; the set is gone from disk and
 *	stays in memory only until its session ends.
 * @untrusted: may miss writes: tracking was lost while it recorded
 *	(FLEECE_SLOT_UNTRUSTED on disk).
 * @gap: (with @untrusted) the reason is an attach after a possible gap,
 *	not a failed metadata write (FLEECE_SLOT_GAP).
 * @gen: the slot's generation (persistent only).
 * @nr_recorded: set bits of @recorded, kept as they are set, under
 *	fleece_tracker.pend_lock, so that status is O(1) at any size.
 * @recorded: one bit per chunk. A live bitmap sets a chunk's bit before any
 *	write to the chunk is issued, and keeps it until the bitmap is cleared
 *	or frozen; a frozen set's bits are the set. Allocated with the bitmap
 *	and never replaced: whoever may use the bitmap may use this.
 * @durable: persistent live bitmaps only, else NULL: the chunks of
 *	@recorded whose bits are on disk; a write to them goes on at once.
 *	Once tracking is lost nothing is waited for any more, and it follows
 *	@recorded.
 * @dirty: persistent live bitmaps only, else NULL: metadata blocks of
 *	@recorded to write in the next commit round.
 * @copy: persistent only: per metadata block, which copy holds the newest
 *	write.
 * @watch: while an incremental backup of the bitmap is reserved, else
 *	NULL: the regions of 2^15 chunks it recorded in since the
 *	reservation, set with @recorded under fleece_tracker.pend_lock.
 *
 * Ownership: the tracker owns every bitmap (fleece_tracker.slot). The IO
 * path reaches live bitmaps through fleece_tracker.live under RCU. A view's
 * backup transaction borrows two (struct fleece_txn): its frozen set, and
 * the live bitmap of the same name that records writes since the view's
 * point in time. Only one transaction per name exists at a time, and while
 * it does the tracker does not clear, remove, merge into or freeze that live
 * bitmap, so both stay valid until the transaction ends.
 */
struct fleece_bitmap {
	struct rcu_head rcu;
	char name[FLEECE_NAME_MAX + 1];
	unsigned int slot;
	bool frozen;
	bool committed;
	bool untrusted;
	bool gap;
	u64 gen;
	u64 nr_recorded;
	unsigned long *recorded;
	unsigned long *durable;
	unsigned long *dirty;
	u8 *copy;
	unsigned long *watch;
};

/**
 * struct fleece_tracker - the bitmaps of one origin device.
 * @meta: metadata device; NULL keeps bitmaps in memory only.
 * @origin_sectors: origin length the metadata describes.
 * @chunk_shift: log2 of the chunk size in sectors.
 * @nr_chunks: bits per bitmap.
 * @nr_blocks: metadata blocks per bitmap copy.
 * @lock: serializes messages, superblock writes and commit rounds.
 * @pend_lock: protects the bitmaps' @recorded, @nr_recorded and @dirty,
 *	@waiting, @in_round, @round_open and @ready (taken on the IO path),
 *	and changes of @slot, so that status can read them without waiting
 *	for @lock (which is held over metadata IO).
 * @live: live bitmaps by slot, RCU-read by the IO path.
 * @slot: every bitmap by slot, under @lock.
 * @reserved: by slot, the bitmaps allocated for views that will freeze a
 *	bitmap when they are resumed (fleece_track_reserve()); changed under
 *	@lock and @pend_lock.
 *	Their slots are taken, and their names have a backup in progress.
 * @waiting: writes waiting for their bits to be durable.
 * @in_round: writes whose bits the commit round under way makes durable
 *	(in_open_round()): let go at its end, not one round later.
 * @round_open: a commit round has taken @waiting and not yet ended.
 * @ready: writes whose bits are durable, to be let go once @lock is
 *	dropped: what they do next must not wait behind a commit round.
 * @commit_work: writes dirty blocks, then lets @waiting and @in_round go.
 * @trash: memory a freeze gave up (a frozen set's write-side bitmaps: a
 *	quarter of a GiB at 2^31 chunks), freed by @trash_work rather than
 *	while the origin is suspended; under @trash_lock.
 * @nr_trash: entries in @trash.
 * @trash_lock: protects @trash and @nr_trash.
 * @trash_work: frees @trash.
 * @wq: where @commit_work and @trash_work run.
 * @page_pool: pages for block writes.
 * @round: the blocks of a commit round's batch (under @lock).
 * @bs: bios for metadata IO: a stacked driver does not take them from the
 *	file systems' pool.
 * @sb: the superblock image: as last written, plus the changes of the
 *	operation under way (under @lock).
 * @sb_written: the superblock as last written or read.
 * @block_seq: seq of the last block written.
 * @lost: a metadata write failed: the bitmaps can no longer be trusted.
 * @lost_on_disk: a superblock marking them untrusted has been written.
 * @clean_detach: the "clean_detach" message: the system is going down, and
 *	the detach that follows leaves no gap (no FLEECE_SB_BYPASS).
 * @resume: continues a write once its bits are durable.
 * @resume_ctx: argument of @resume.
 */
struct fleece_tracker {
	struct block_device *meta;
	u64 origin_sectors;
	unsigned int chunk_shift;
	u64 nr_chunks;
	u64 nr_blocks;

	struct mutex lock;		/* see above */
	spinlock_t pend_lock;		/* see above */
	struct fleece_bitmap __rcu *live[FLEECE_META_SLOTS];
	struct fleece_bitmap *slot[FLEECE_META_SLOTS];
	struct fleece_bitmap *reserved[FLEECE_META_SLOTS];
	struct bio_list waiting;
	struct bio_list in_round;
	bool round_open;
	struct bio_list ready;
	struct work_struct commit_work;
	void *trash[2 * FLEECE_META_SLOTS];
	unsigned int nr_trash;
	spinlock_t trash_lock;	/* @trash, @nr_trash */
	struct work_struct trash_work;
	struct workqueue_struct *wq;
	mempool_t page_pool;
	struct fleece_block_write *round;
	struct bio_set bs;

	struct fleece_disk_sb *sb;
	struct fleece_disk_sb *sb_written;
	u64 block_seq;
	bool lost;
	bool lost_on_disk;
	bool clean_detach;

	void (*resume)(void *ctx, struct bio *bio);
	void *resume_ctx;
};

/**
 * struct fleece_attach_opts - what the table of an attach says.
 * @no_gap: the admin vouches that nothing wrote the origin since its
 *	bitmaps last recorded: keep them trusted (unless the metadata says it
 *	was detached for maintenance, FLEECE_SB_BYPASS).
 * @origin_id: what the origin is (a stable device id), or NULL: metadata
 *	made for another origin is refused. Only valid during the ctr.
 */
struct fleece_attach_opts {
	bool no_gap;
	const char *origin_id;
};

/**
 * fleece_track_create() - set up tracking for an origin, loading (or, on an
 * all-zero device, formatting) its metadata.
 * @meta: metadata device, or NULL for bitmaps in memory only.
 * @origin_sectors: origin length (the fleece-origin target's length).
 * @chunk_sectors: chunk size.
 * @opts: the table's no_gap and origin_id.
 * @wq: workqueue for @commit_work and @trash_work (WQ_MEM_RECLAIM:
 *	origin writes wait for commit rounds).
 * @resume: called with each write whose bits became durable.
 * @resume_ctx: its first argument.
 * @error: set to a reason for ti->error on failure.
 *
 * Metadata that is not valid dm-fleece metadata for this origin is refused
 * and left untouched. Frozen sets found on disk (a session that did not end
 * cleanly) are merged back into their bitmaps. Unless @opts vouches for no
 * gap, existing bitmaps are marked untrusted (FLEECE_SB_ATTACHED).
 *
 * Context: process context (ctr), may sleep and do IO.
 * Return: the tracker, or an ERR_PTR.
 */
struct fleece_tracker *fleece_track_create(struct block_device *meta,
					   u64 origin_sectors,
					   unsigned int chunk_sectors,
					   const struct fleece_attach_opts *opts,
					   struct workqueue_struct *wq,
					   void (*resume)(void *, struct bio *),
					   void *resume_ctx, char **error);

/**
 * fleece_track_destroy() - free a tracker; nothing may be waiting.
 * @t: the tracker.
 *
 * The origin is detached: the superblock says so (clears
 * FLEECE_SB_ATTACHED, sets FLEECE_SB_BYPASS unless "clean_detach").
 *
 * Context: process context, may sleep.
 */
void fleece_track_destroy(struct fleece_tracker *t);

/**
 * fleece_track_write() - record a write, discard or write-zeroes.
 * @t: the tracker.
 * @bio: the remapped bio.
 *
 * Return: true if @bio may go on now; false if it waits for its bits to be
 * durable, after which @t->resume is called with it.
 *
 * Context: map function; doesn't sleep.
 */
bool fleece_track_write(struct fleece_tracker *t, struct bio *bio);

/**
 * fleece_track_same_origin() - does a reloaded table's origin_id match?
 * @t: the tracker in use.
 * @origin_id: the new table's, or NULL.
 *
 * Return: false if both the metadata and the table name an origin, and not
 * the same one.
 */
bool fleece_track_same_origin(struct fleece_tracker *t, const char *origin_id);

/**
 * fleece_track_resumed() - a fleece-origin table of the origin resumed.
 * @t: the tracker.
 *
 * Takes back a "clean_detach": it declared the removal that was to follow,
 * and the origin runs on instead (a reload, a suspend and resume). A
 * detach much later must not count as clean on its word.
 *
 * Context: process context (preresume), may sleep.
 */
void fleece_track_resumed(struct fleece_tracker *t);

/**
 * fleece_track_message() - bitmap_* and clean_detach messages of fleece-origin.
 * @t: the tracker.
 * @argc: word count.
 * @argv: the words.
 * @result: response buffer.
 * @maxlen: its size.
 *
 * Context: process context, may sleep and do IO.
 * Return: as a dm message function: 1 when @result holds a response, 0,
 * or a negative errno; -EOPNOTSUPP for a message that is not ours.
 */
int fleece_track_message(struct fleece_tracker *t, unsigned int argc,
			 char **argv, char *result, unsigned int maxlen);

/**
 * fleece_track_reserve() - prepare a backup transaction on a bitmap.
 * @t: the tracker.
 * @name: the bitmap.
 * @full: the backup reads every chunk, not only the frozen set.
 * @fresh: on success, the empty bitmap that will record from the freeze
 *	on, owned by the tracker (@t->reserved) and lent to the caller until
 *	fleece_track_freeze() or fleece_track_unreserve().
 * @error: set to a reason for ti->error on failure.
 *
 * Everything that may fail slowly or allocate is done here, while the
 * origin still runs: the freeze itself then happens in the short window
 * the origin is suspended for. From here on the bitmap counts as having a
 * backup in progress. A bitmap has one backup at a time: while a frozen set
 * of it exists (until fleece_track_release(), even after a commit) or it is
 * reserved, it cannot be reserved again. An untrusted bitmap (tracking was
 * lost while it recorded) can only start a @full backup: its frozen set may
 * miss writes.
 *
 * Context: process context (view ctr), may sleep and do IO (a commit round).
 * Return: 0, -EBUSY with a backup in progress, or a negative errno.
 */
int fleece_track_reserve(struct fleece_tracker *t, const char *name, bool full,
			 struct fleece_bitmap **fresh, char **error);

/**
 * fleece_track_unreserve() - give back a bitmap that was never frozen.
 * @t: the tracker.
 * @fresh: from fleece_track_reserve().
 *
 * Context: process context (view dtr), may sleep.
 */
void fleece_track_unreserve(struct fleece_tracker *t,
			    struct fleece_bitmap *fresh);

/**
 * struct fleece_unrecorded - where an incremental view keeps the chunks
 *	outside its frozen set.
 * @bits: two bitmaps the view owns, one bit per chunk of the view, each set
 *	where the bitmap being frozen has not recorded the chunk.
 * @nr: bits in each: the view's chunks, at most the tracker's.
 */
struct fleece_unrecorded {
	unsigned long *bits[2];
	u64 nr;
};

/**
 * fleece_track_unrecorded() - what an incremental backup will not copy.
 * @t: the tracker.
 * @fresh: from fleece_track_reserve() without @full.
 * @u: gets the chunks the bitmap @fresh will replace has not recorded (so
 *	far).
 *
 * Two passes over one bit per chunk cost tens of milliseconds at 2^28
 * chunks: they are made here, while the origin runs, and
 * fleece_track_freeze() redoes only the regions written since.
 *
 * Context: process context (view ctr), may sleep. The caller keeps @t from
 * being destroyed.
 */
void fleece_track_unrecorded(struct fleece_tracker *t,
			     struct fleece_bitmap *fresh,
			     const struct fleece_unrecorded *u);

/**
 * fleece_track_freeze() - start a reserved backup transaction.
 * @t: the tracker.
 * @fresh: from fleece_track_reserve(); on success it becomes @live, else it
 *	stays reserved.
 * @frozen: the frozen set on success: what the bitmap held until now.
 * @live: the bitmap recording from now on (@fresh). Until
 *	fleece_track_release() of @frozen it is neither cleared, removed,
 *	merged into nor frozen again.
 * @full: as for fleece_track_reserve().
 * @unrec: NULL, or (without @full) what fleece_track_unrecorded() filled,
 *	brought up to date on success: the complement of @frozen.
 * @error: set to a reason to log on failure.
 *
 * The bitmap starts again empty, recording what happens from now on. The
 * origin must be suspended: this is what it is suspended for, so it does
 * no allocation, and no IO but a superblock write (and the blocks of bits
 * recorded since the last commit round, normally none once the origin's
 * writes have drained). The bitmap's trust is checked again: tracking may
 * have been lost since the reservation.
 *
 * Context: process context (view preresume), may sleep and do IO.
 * Return: 0 or a negative errno.
 */
int fleece_track_freeze(struct fleece_tracker *t, struct fleece_bitmap *fresh,
			struct fleece_bitmap **frozen, struct fleece_bitmap **live,
			bool full, const struct fleece_unrecorded *unrec,
			char **error);

/**
 * fleece_track_commit() - the backup of a frozen set succeeded.
 * @t: the tracker.
 * @frozen: from fleece_track_freeze().
 *
 * The set is dropped from disk; in memory it stays, with its bitmap, until
 * fleece_track_release(), because the view still uses both.
 *
 * Context: process context, may sleep and do IO.
 * Return: 0 or a negative errno.
 */
int fleece_track_commit(struct fleece_tracker *t, struct fleece_bitmap *frozen);

/**
 * fleece_track_release() - the session of a frozen set ended.
 * @t: the tracker.
 * @frozen: from fleece_track_freeze().
 *
 * Not committed: the set is merged back into its bitmap, so the next backup
 * still covers it. Either way it is freed.
 *
 * Context: process context, may sleep and do IO.
 * Return: 0 or a negative errno (the set then stays on disk and is merged
 * back at the next activation).
 */
int fleece_track_release(struct fleece_tracker *t, struct fleece_bitmap *frozen);

/**
 * fleece_track_emit_ranges() - page through the set chunks of a bitmap.
 * @bits: the bitmap; NULL stands for one with every bit set.
 * @nr_chunks: its length.
 * @start: first chunk to look at.
 * @max_ranges: most ranges to return.
 * @result: response buffer.
 * @maxlen: its size.
 *
 * Emits "<next|end> <first>+<count> ...": @next is where the following page
 * starts, "end" when there is none. A page holds at most @max_ranges ranges
 * and never overflows @maxlen.
 *
 * Context: any; doesn't sleep.
 */
void fleece_track_emit_ranges(const unsigned long *bits, u64 nr_chunks,
			      u64 start, u64 max_ranges, char *result,
			      unsigned int maxlen);

/**
 * fleece_track_status() - per-bitmap status fields.
 * @t: the tracker.
 * @result: status buffer.
 * @maxlen: its size.
 * @sz: its fill, updated.
 *
 * Emits " <ok|lost|gap> <#bitmaps> [<name> <dirty_chunks> <frozen_sets>]...":
 * "lost" when tracking was lost (now, or before and a bitmap is still
 * untrusted for it), "gap" when bitmaps are untrusted only because the
 * origin was attached after a possible gap. O(1) in the origin's size, and
 * never waits for a commit round (takes @t->pend_lock, not @t->lock).
 *
 * Context: process context.
 */
void fleece_track_status(struct fleece_tracker *t, char *result,
			 unsigned int maxlen, unsigned int *sz);

/**
 * fleece_valid_origin_id() - 1 to FLEECE_ORIGIN_ID_MAX printable ASCII
 * characters, no blanks.
 * @id: the id.
 */
bool fleece_valid_origin_id(const char *id);

/**
 * fleece_valid_bitmap_name() - 1 to FLEECE_NAME_MAX of [A-Za-z0-9_.-].
 * @name: the name.
 */
bool fleece_valid_bitmap_name(const char *name);

/**
 * fleece_count_bits() - set bits of a bitmap of any length.
 * @bits: the bitmap.
 * @nr: its length in bits.
 */
u64 fleece_count_bits(const unsigned long *bits, u64 nr);

#endif /* DM_FLEECE_TRACK_H */
