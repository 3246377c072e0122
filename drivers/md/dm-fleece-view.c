// SPDX-License-Identifier: GPL-2.0
/*
 * fleece: a point-in-time view of a fleece-origin device (a session).
 *
 * Every view bio takes its chunks in the origin's range lock: reads shared,
 * discards (releases) and writes exclusive. Holding the range freezes the
 * state of its chunks, since only exclusive holders change it, so a read
 * decides per chunk, once, where the data is: scratch (copied), the origin
 * (not copied yet: no write can overwrite it while we hold the range),
 * nowhere (released: zeroes), or lost (the origin could not be read when a
 * write needed the copy: the read fails). A bio is split only where that
 * answer changes.
 */
#include <linux/blkdev.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "dm-fleece.h"

enum view_source {
	SRC_ORIGIN,
	SRC_SCRATCH,
	SRC_ZERO,
	SRC_UNPROTECTED,	/* origin, checked when the read completes */
	SRC_LOST,		/* could not be preserved: EIO */
};

/* Caller holds @chunk in the range lock. */
static enum view_source chunk_source(struct fleece_session *s, u64 chunk,
				     u64 *slot)
{
	bool unreadable;
	u32 found;

	if (!test_bit(chunk, s->settled))
		return SRC_ORIGIN;
	if (!fleece_slotmap_find(&s->slots, chunk, &found, &unreadable))
		return s->txn.unprotected && test_bit(chunk, s->txn.unprotected) ?
		       SRC_UNPROTECTED : SRC_ZERO;
	*slot = found;
	return unreadable ? SRC_LOST : SRC_SCRATCH;
}

/*
 * Send a locked read where its data is, split into pieces where the source
 * changes. Returns what map should return when @in_map, else submits all.
 */
static int view_read_issue(struct fleece_io *io, struct bio *bio, bool in_map)
{
	struct fleece_session *s = io->session;
	unsigned int shift = s->fd->chunk_shift;
	sector_t chunk_mask = s->fd->chunk_sectors - 1;

	if (test_bit(FLEECE_SESSION_INVALID, &s->flags)) {
		bio->bi_status = BLK_STS_IOERR;
		bio_endio(bio);
		return DM_MAPIO_SUBMITTED;
	}

	for (;;) {
		sector_t sector = bio->bi_iter.bi_sector;
		sector_t bio_end = bio_end_sector(bio);
		sector_t run_end = min((sector | chunk_mask) + 1, bio_end);
		u64 chunk = sector >> shift, slot = 0, slot2 = 0;
		enum view_source src = chunk_source(s, chunk, &slot);
		struct bio *piece = bio;

		while (run_end < bio_end) {
			u64 c2 = run_end >> shift;

			if (chunk_source(s, c2, &slot2) != src ||
			    (src == SRC_SCRATCH && slot2 != slot + (c2 - chunk)))
				break;
			run_end = min(run_end + s->fd->chunk_sectors, bio_end);
		}

		if (run_end < bio_end) {
			/*
			 * device-mapper polls only the bio it mapped: a piece
			 * on another device's poll queue would never complete.
			 */
			bio_clear_polled(bio);
			piece = bio_split(bio, run_end - sector, GFP_NOIO, &s->bs);
			if (IS_ERR_OR_NULL(piece)) {
				bio->bi_status = BLK_STS_RESOURCE;
				bio_endio(bio);
				return DM_MAPIO_SUBMITTED;
			}
			bio_chain(piece, bio);
		}

		switch (src) {
		case SRC_UNPROTECTED:
			io->checked = true;
			fallthrough;
		case SRC_ORIGIN:
			bio_set_dev(piece, s->origin_dev->bdev);
			atomic64_add(run_end - sector, &s->reads_origin);
			break;
		case SRC_SCRATCH:
			bio_set_dev(piece, s->scratch_dev->bdev);
			piece->bi_iter.bi_sector = (slot << shift) + (sector & chunk_mask);
			atomic64_add(run_end - sector, &s->reads_scratch);
			break;
		case SRC_ZERO:
			zero_fill_bio(piece);
			bio_endio(piece);
			if (piece == bio)
				return DM_MAPIO_SUBMITTED;
			continue;
		case SRC_LOST:
			DMERR_LIMIT("%s: chunk %llu lost to an origin read error: read failed",
				    dm_table_device_name(s->ti->table), chunk);
			bio_io_error(piece);
			if (piece == bio)
				return DM_MAPIO_SUBMITTED;
			continue;
		}

		if (piece != bio) {
			submit_bio_noacct(piece);
			continue;
		}
		if (in_map)
			return DM_MAPIO_REMAPPED;
		submit_bio_noacct(bio);
		return DM_MAPIO_SUBMITTED;
	}
}

static void view_read_work(struct work_struct *work)
{
	struct fleece_io *io = container_of(work, struct fleece_io, work);

	view_read_issue(io, dm_bio_from_per_bio_data(io, sizeof(*io)), false);
}

/*
 * A discard on the view: the reader is done with these chunks. Whole chunks
 * only; their scratch slots are freed and later origin writes skip them.
 */
static void view_discard_work(struct work_struct *work)
{
	struct fleece_io *io = container_of(work, struct fleece_io, work);
	struct bio *bio = dm_bio_from_per_bio_data(io, sizeof(*io));
	struct fleece_session *s = io->session;
	sector_t mask = s->fd->chunk_sectors - 1;
	u64 chunk = (bio->bi_iter.bi_sector + mask) >> s->fd->chunk_shift;
	u64 end = bio_end_sector(bio) >> s->fd->chunk_shift;

	/* The view's last chunk may be short: a discard to the end covers it. */
	if (bio_end_sector(bio) >= s->ti->len)
		end = s->nr_chunks;

	for (end = min(end, s->nr_chunks); chunk < end; chunk++) {
		bool unreadable = false;
		u32 slot;

		if (s->txn.unprotected && test_and_clear_bit(chunk, s->txn.unprotected)) {
			atomic64_inc(&s->released);
			continue;
		}
		if (!test_bit(chunk, s->settled)) {
			set_bit(chunk, s->settled);
			atomic64_inc(&s->skipped);
		} else {
			if (!fleece_slotmap_find(&s->slots, chunk, &slot, &unreadable))
				continue;	/* released before */
			fleece_scratch_drop(s, chunk);
			if (!unreadable)
				atomic64_dec(&s->preserved);
		}
		atomic64_inc(&s->released);
	}
	bio_endio(bio);
}

/* The chunks of a view write have their own slots: write into them. */
static void view_write_ready(struct fleece_io *io)
{
	struct bio *bio = dm_bio_from_per_bio_data(io, sizeof(*io));
	struct fleece_session *s = io->session;
	unsigned int shift = s->fd->chunk_shift;
	sector_t mask = s->fd->chunk_sectors - 1;
	struct bio *piece;

	if (io->status) {
		bio->bi_status = io->status;
		bio_endio(bio);
		return;
	}
	do {
		sector_t sector = bio->bi_iter.bi_sector;
		sector_t run_end = min((sector | mask) + 1, bio_end_sector(bio));
		bool found, unreadable;
		u32 slot;

		found = fleece_slotmap_find(&s->slots, sector >> shift, &slot,
					    &unreadable);

		piece = bio;
		if (run_end < bio_end_sector(bio)) {
			bio_clear_polled(bio);	/* as in view_read_issue() */
			piece = bio_split(bio, run_end - sector, GFP_NOIO, &s->bs);
			if (IS_ERR_OR_NULL(piece)) {
				bio->bi_status = BLK_STS_RESOURCE;
				bio_endio(bio);
				return;
			}
			bio_chain(piece, bio);
		}
		/* fleece_view_prepare_write() failed such chunks already. */
		if (WARN_ON_ONCE(!found || unreadable)) {
			bio_io_error(piece);
			continue;
		}
		bio_set_dev(piece, s->scratch_dev->bdev);
		piece->bi_iter.bi_sector = ((sector_t)slot << shift) +
					   (sector & mask);
		submit_bio_noacct(piece);
	} while (piece != bio);
}

static void view_write_work(struct work_struct *work)
{
	struct fleece_io *io = container_of(work, struct fleece_io, work);

	fleece_view_prepare_write(io, io->req.start, io->req.end,
				  view_write_ready);
}

static void view_granted(struct fleece_rl_req *req)
{
	struct fleece_io *io = container_of(req, struct fleece_io, req);

	queue_work(io->fd->wq, &io->work);
}

static int view_map(struct dm_target *ti, struct bio *bio)
{
	struct fleece_session *s = ti->private;
	struct fleece_dev *fd = s->fd;
	struct fleece_io *io = dm_per_bio_data(bio, sizeof(*io));
	sector_t sector, boundary;
	bool exclusive = true;
	u64 first, end;

	io->locked = false;
	io->checked = false;
	io->session = s;
	io->fd = fd;

	if (!bio_sectors(bio)) {
		/* An empty flush: what a writable view wrote is on scratch. */
		bio_set_dev(bio, s->scratch_dev->bdev);
		return DM_MAPIO_REMAPPED;
	}
	if (test_bit(FLEECE_SESSION_INVALID, &s->flags))
		return DM_MAPIO_KILL;

	sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
	bio->bi_iter.bi_sector = sector;
	/* Reads and writes respect max_io_len; discards may not. */
	boundary = fd->region_sectors - (sector & (fd->region_sectors - 1));
	if (bio_sectors(bio) > boundary)
		dm_accept_partial_bio(bio, boundary);

	switch (bio_op(bio)) {
	case REQ_OP_READ:
		INIT_WORK(&io->work, view_read_work);
		exclusive = false;
		break;
	case REQ_OP_DISCARD:
		INIT_WORK(&io->work, view_discard_work);
		break;
	case REQ_OP_WRITE:
		/*
		 * The device itself stays writable unless loaded read-only,
		 * because BLKDISCARD (release) needs a writable device.
		 */
		if (!s->writable) {
			DMERR_LIMIT("%s: write to a view without \"writable\" refused",
				    dm_table_device_name(ti->table));
			return DM_MAPIO_KILL;
		}
		INIT_WORK(&io->work, view_write_work);
		break;
	default:
		return DM_MAPIO_KILL;
	}

	fleece_chunk_range(fd, sector, bio_sectors(bio), &first, &end);
	fleece_rl_req_init(&io->req, first, end, exclusive, view_granted);
	io->locked = true;
	if (!fleece_rl_acquire(&fd->rl, &io->req))
		return DM_MAPIO_SUBMITTED;
	if (!exclusive)
		return view_read_issue(io, bio, true);
	queue_work(fd->wq, &io->work);
	return DM_MAPIO_SUBMITTED;
}

/*
 * An incremental view reads chunks outside its frozen set from the origin
 * without copying them first: they had not changed since the last backup.
 * The bitmap recording writes since the point in time sets a chunk's bit
 * before any write to it is issued, so if the bit is still clear once the
 * read has completed, no write could have changed what the read returned.
 * If it is set, the data may be newer than the point in time: the read
 * fails instead of returning it.
 */
static bool unprotected_still_valid(struct fleece_session *s,
				    struct fleece_io *io)
{
	const unsigned long *written;
	struct fleece_bitmap *after;
	bool valid = true;
	u64 chunk;

	/* The data read is complete before the bits are looked at. */
	smp_rmb();
	rcu_read_lock();
	after = rcu_dereference(s->txn.after);
	if (!after) {
		valid = false;
		goto out;
	}
	written = after->recorded;
	for (chunk = io->req.start; chunk < io->req.end && valid; chunk++)
		valid = !(test_bit(chunk, s->txn.unprotected) &&
			  test_bit(chunk, written));
out:
	rcu_read_unlock();
	if (!valid)
		DMERR_LIMIT("%s: chunk outside the backup's set was overwritten: read failed",
			    dm_table_device_name(s->ti->table));
	return valid;
}

static int view_end_io(struct dm_target *ti, struct bio *bio,
		       blk_status_t *error)
{
	struct fleece_session *s = ti->private;
	struct fleece_io *io = dm_per_bio_data(bio, sizeof(*io));

	/*
	 * An origin read that was in flight when the session became invalid
	 * may have raced with a write that no longer copied: fail it. Pairs
	 * with smp_mb__after_atomic() in fleece_session_invalidate().
	 */
	smp_mb__before_atomic();
	if (bio_op(bio) == REQ_OP_READ && !*error &&
	    test_bit(FLEECE_SESSION_INVALID, &s->flags))
		*error = BLK_STS_IOERR;
	/*
	 * Before the lock goes: a discard waiting for it clears the chunks'
	 * unprotected bits, after which the check would pass whatever the
	 * read returned.
	 */
	if (io->checked && !*error && !unprotected_still_valid(s, io))
		*error = BLK_STS_IOERR;
	if (io->locked) {
		fleece_rl_release(&s->fd->rl, &io->req);
		io->locked = false;
	}
	return DM_ENDIO_DONE;
}

/*
 * Constructor and destructor
 */

static unsigned long *alloc_bits(u64 nr)
{
	return kvcalloc(BITS_TO_LONGS(nr), sizeof(unsigned long), GFP_KERNEL);
}

/*
 * Construct a view, while the origin runs; its point in time is its first
 * resume (view_preresume(), with the fleece-origin device suspended):
 *
 *   <origin_dev> <scratch_dev> [<#opt_args> <arg>...]
 *
 *   opt args: on_full invalidate|fail_writes, low_water <chunks>, writable,
 *             bitmap <name>, full
 */
static int view_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct dm_arg_set as = { .argc = argc, .argv = argv };
	struct fleece_view_opts opts;
	struct fleece_session *s;
	struct block_device *obdev;
	u64 nr_slots;
	int r;

	if (argc < 2) {
		ti->error = "Not enough arguments: <origin_dev> <scratch_dev> [<#opt_args> ...]";
		return -EINVAL;
	}
	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s) {
		ti->error = "Cannot allocate session";
		return -ENOMEM;
	}
	s->ti = ti;
	INIT_LIST_HEAD(&s->list);
	INIT_WORK(&s->event_work, fleece_session_event);

	/*
	 * Only read, but opened in the table's mode: another target of the
	 * table getting the device in a wider mode would reopen it, and
	 * leave s->origin_dev pointing at the dm_dev it replaced.
	 */
	r = dm_get_device(ti, dm_shift_arg(&as), dm_table_get_mode(ti->table),
			  &s->origin_dev);
	if (r) {
		ti->error = "Cannot open origin device";
		goto out_free;
	}
	obdev = s->origin_dev->bdev;
	s->fd = fleece_dev_find(obdev->bd_dev);
	if (!s->fd) {
		ti->error = "No fleece-origin device on this origin";
		r = -ENODEV;
		goto out_put_origin;
	}

	r = dm_get_device(ti, dm_shift_arg(&as), FLEECE_MODE_RW, &s->scratch_dev);
	if (r) {
		ti->error = "Cannot open scratch device";
		goto out_put_fd;
	}
	if (s->scratch_dev->bdev->bd_dev == obdev->bd_dev) {
		ti->error = "Scratch device must not be the origin device";
		/*
		 * Getting a device again in a wider mode reopens it: the
		 * origin's dm_dev is gone, both references are to this one.
		 */
		s->origin_dev = s->scratch_dev;
		r = -EINVAL;
		goto out_put_scratch;
	}
	nr_slots = bdev_nr_sectors(s->scratch_dev->bdev) >> s->fd->chunk_shift;
	if (!nr_slots) {
		ti->error = "Scratch device is smaller than one chunk";
		r = -EINVAL;
		goto out_put_scratch;
	}
	/* Beyond it, the map would cost more memory than any machine has. */
	nr_slots = min_t(u64, nr_slots, FLEECE_SLOTMAP_MAX_SLOTS);
	/*
	 * A backup's view must not make the machine swap or kill: its map,
	 * allocated up front, takes at most a quarter of the memory.
	 */
	if (fleece_slotmap_bytes(nr_slots) > (u64)totalram_pages() * PAGE_SIZE / 4) {
		ti->error = "Scratch map would take over a quarter of the memory";
		r = -ENOMEM;
		goto out_put_scratch;
	}

	r = fleece_parse_view_opts(ti, &as, &opts);
	if (r)
		goto out_put_scratch;
	s->on_full = opts.on_full;
	s->writable = opts.writable;
	s->low_water = opts.low_water;
	s->txn.name = opts.bitmap_name;
	s->txn.full = opts.full;

	if (ti->len > bdev_nr_sectors(obdev)) {
		ti->error = "View is larger than the origin device";
		r = -EINVAL;
		goto out_put_scratch;
	}
	s->nr_chunks = DIV_ROUND_UP_SECTOR_T(ti->len, s->fd->chunk_sectors);

	r = -ENOMEM;
	s->settled = alloc_bits(s->nr_chunks);
	if (s->txn.name && !s->txn.full)
		s->txn.unprotected = alloc_bits(s->nr_chunks);
	if (!s->settled || (s->txn.name && !s->txn.full && !s->txn.unprotected)) {
		ti->error = "Cannot allocate session bitmaps";
		goto out_bits;
	}
	r = fleece_slotmap_init(&s->slots, nr_slots);
	if (r) {
		ti->error = "Cannot allocate scratch map";
		goto out_bits;
	}
	r = bioset_init(&s->bs, BIO_POOL_SIZE, 0, BIOSET_NEED_RESCUER);
	if (r) {
		ti->error = "Cannot allocate bioset";
		goto out_bits;
	}
	r = fleece_table_save(&s->table, argc, argv);
	if (r) {
		ti->error = "Cannot allocate memory for the table line";
		goto out_bioset;
	}

	ti->per_io_data_size = sizeof(struct fleece_io);
	ti->num_flush_bios = 1;
	ti->flush_supported = true;
	ti->num_discard_bios = 1;
	ti->discards_supported = true;
	r = dm_set_target_max_io_len(ti, s->fd->region_sectors);
	if (r)
		goto out_table;
	ti->private = s;

	/* Last; origin writes copy for the session once the view resumes. */
	r = fleece_dev_add_session(s->fd, s, &ti->error);
	if (r)
		goto out_table;
	return 0;

out_table:
	fleece_table_free(&s->table);
out_bioset:
	bioset_exit(&s->bs);
out_bits:
	fleece_slotmap_exit(&s->slots);
	kvfree(s->txn.unprotected);
	kvfree(s->settled);
out_put_scratch:
	dm_put_device(ti, s->scratch_dev);
out_put_fd:
	fleece_dev_put(s->fd);
out_put_origin:
	dm_put_device(ti, s->origin_dev);
out_free:
	kfree(s->txn.name);
	kfree(s);
	return r;
}

static void view_dtr(struct dm_target *ti)
{
	struct fleece_session *s = ti->private;
	struct fleece_dev *fd = s->fd;

	fleece_dev_remove_session(fd, s);
	cancel_work_sync(&s->event_work);

	kvfree(s->txn.unprotected);
	kfree(s->txn.name);
	fleece_table_free(&s->table);
	bioset_exit(&s->bs);
	fleece_slotmap_exit(&s->slots);
	kvfree(s->settled);
	dm_put_device(ti, s->scratch_dev);
	fleece_dev_put(fd);
	dm_put_device(ti, s->origin_dev);
	kfree(s);
}

/*
 * The first resume takes the view's point in time: the ctr allocated all
 * it needs while the origin ran, so the origin is suspended for the freeze
 * alone, as dm-snapshot activates a snapshot at its resume.
 */
static int view_preresume(struct dm_target *ti)
{
	struct fleece_session *s = ti->private;

	return fleece_dev_start_session(s->fd, s);
}

static const char *txn_state_name(enum fleece_txn_state state)
{
	switch (state) {
	case FLEECE_TXN_OPEN:
		return "open";
	case FLEECE_TXN_COMMITTED:
		return "committed";
	case FLEECE_TXN_ENDED:
		return "ended";
	default:
		return "-";
	}
}

/*
 * Status:
 *   INFO:  <Active|Invalid> <chunk_sectors> <scratch_used>/<scratch_total>
 *          <preserved> <copied> <released> <skipped> <reads_scratch>
 *          <reads_origin> <copies_inflight> <bitmap|-> <open|committed|ended|->
 *          <unreadable>
 *   TABLE: the table line, exactly as given.
 */
static void view_status(struct dm_target *ti, status_type_t type,
			unsigned int status_flags, char *result,
			unsigned int maxlen)
{
	struct fleece_session *s = ti->private;
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		DMEMIT("%s %llu %u/%u %lld %lld %lld %lld %lld %lld %d",
		       test_bit(FLEECE_SESSION_INVALID, &s->flags) ? "Invalid" : "Active",
		       (unsigned long long)s->fd->chunk_sectors,
		       fleece_slotmap_used(&s->slots), s->slots.nr_slots,
		       atomic64_read(&s->preserved), atomic64_read(&s->copied),
		       atomic64_read(&s->released), atomic64_read(&s->skipped),
		       atomic64_read(&s->reads_scratch),
		       atomic64_read(&s->reads_origin),
		       atomic_read(&s->inflight));
		if (!s->txn.name)
			DMEMIT(" - -");
		else
			DMEMIT(" %s %s", s->txn.name, txn_state_name(READ_ONCE(s->txn.state)));
		DMEMIT(" %lld", atomic64_read(&s->unreadable));
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s", s->table.text);
		break;
	case STATUSTYPE_IMA:
		DMEMIT("fleece,writable=%c,on_full=%s;", s->writable ? 'y' : 'n',
		       s->on_full == FLEECE_ON_FULL_FAIL_WRITES ? "fail_writes" : "invalidate");
		break;
	}
}

/*
 * Messages:
 *   commit                        the backup succeeded: drop the frozen set
 *   changes [<start> [<max>]]     the chunks this incremental backup must
 *                                 read, as "<next|end> <chunk>+<count>..."
 */
static int view_message(struct dm_target *ti, unsigned int argc, char **argv,
			char *result, unsigned int maxlen)
{
	struct fleece_session *s = ti->private;
	struct fleece_view_msg m;
	int r;

	r = fleece_parse_view_message(argc, argv, &m);
	if (r)
		return r;
	if (m.cmd == FLEECE_VIEW_MSG_COMMIT) {
		/* What an invalid view served cannot count as backed up. */
		if (test_bit(FLEECE_SESSION_INVALID, &s->flags)) {
			DMWARN("%s: commit: the view is invalid",
			       dm_table_device_name(ti->table));
			return -EIO;
		}
		r = fleece_dev_commit(s->fd, s);
		if (r == -ENOENT)
			DMWARN("%s: commit: no bitmap transaction",
			       dm_table_device_name(ti->table));
		else if (r == -EALREADY)
			DMWARN("%s: commit: already committed",
			       dm_table_device_name(ti->table));
		return r;
	}
	if (m.cmd == FLEECE_VIEW_MSG_CHANGES) {
		r = fleece_dev_emit_changes(s->fd, s, m.start, m.max, result,
					    maxlen);
		if (r == -ENOENT)
			DMWARN("%s: changes: no open bitmap transaction",
			       dm_table_device_name(ti->table));
		return r;
	}
	DMWARN("%s: unknown message or wrong argument count",
	       dm_table_device_name(ti->table));
	return -EINVAL;
}

static int view_iterate_devices(struct dm_target *ti,
				iterate_devices_callout_fn fn, void *data)
{
	struct fleece_session *s = ti->private;
	int r;

	r = fn(ti, s->origin_dev, 0, ti->len, data);
	if (!r)
		r = fn(ti, s->scratch_dev, 0,
		       bdev_nr_sectors(s->scratch_dev->bdev), data);
	return r;
}

static void view_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	struct fleece_session *s = ti->private;

	/*
	 * Discards release whole chunks only, and are ours to handle whatever
	 * the origin and scratch devices support.
	 */
	limits->discard_granularity = s->fd->chunk_sectors << SECTOR_SHIFT;
	limits->max_hw_discard_sectors = s->fd->region_sectors;
	limits->max_discard_sectors = s->fd->region_sectors;
}

struct target_type fleece_view_target = {
	.name = "fleece",
	.version = {0, 6, 1},
	.module = THIS_MODULE,
	.ctr = view_ctr,
	.dtr = view_dtr,
	.preresume = view_preresume,
	.map = view_map,
	.end_io = view_end_io,
	.status = view_status,
	.message = view_message,
	.iterate_devices = view_iterate_devices,
	.io_hints = view_io_hints,
};
