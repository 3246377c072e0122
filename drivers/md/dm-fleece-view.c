// SPDX-License-Identifier: GPL-2.0
/*
 * fleece: a point-in-time view of a fleece-origin device (a session).
 *
 * Every view bio takes its chunks in the origin's range lock: reads shared,
 * discards (releases) and writes exclusive. Holding the range freezes the
 * state of its chunks, since only exclusive holders change it, so a read
 * decides per chunk, once, where the data is: scratch (copied), the origin
 * (not copied yet: no write can overwrite it while we hold the range), or
 * nowhere (released: zeroes). A bio is split only where that answer changes.
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
};

/* Caller holds @chunk in the range lock. */
static enum view_source chunk_source(struct fleece_session *s, u64 chunk,
				     u64 *slot)
{
	void *entry;

	if (!test_bit(chunk, s->done))
		return SRC_ORIGIN;
	entry = xa_load(&s->map, chunk);
	if (!entry)
		return s->unprotected && test_bit(chunk, s->unprotected) ?
		       SRC_UNPROTECTED : SRC_ZERO;
	*slot = xa_to_value(entry);
	return SRC_SCRATCH;
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
	void *entry;

	/* The view's last chunk may be short: a discard to the end covers it. */
	if (bio_end_sector(bio) >= s->ti->len)
		end = s->nr_chunks;

	for (end = min(end, s->nr_chunks); chunk < end; chunk++) {
		if (s->unprotected && test_and_clear_bit(chunk, s->unprotected)) {
			atomic64_inc(&s->released);
			continue;
		}
		if (!test_bit(chunk, s->done)) {
			set_bit(chunk, s->done);
			atomic64_inc(&s->skipped);
		} else {
			entry = xa_erase(&s->map, chunk);
			if (!entry)
				continue;	/* released before */
			fleece_scratch_free(s, xa_to_value(entry));
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
		void *entry = xa_load(&s->map, sector >> shift);

		piece = bio;
		if (run_end < bio_end_sector(bio)) {
			piece = bio_split(bio, run_end - sector, GFP_NOIO, &s->bs);
			if (IS_ERR_OR_NULL(piece)) {
				bio->bi_status = BLK_STS_RESOURCE;
				bio_endio(bio);
				return;
			}
			bio_chain(piece, bio);
		}
		if (WARN_ON_ONCE(!entry)) {
			bio_io_error(piece);
			continue;
		}
		bio_set_dev(piece, s->scratch_dev->bdev);
		piece->bi_iter.bi_sector = (xa_to_value(entry) << shift) +
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
	after = rcu_dereference(s->after);
	if (!after) {
		valid = false;
		goto out;
	}
	written = fleece_bitmap_recorded(after);
	for (chunk = io->req.start; chunk < io->req.end && valid; chunk++)
		valid = !(test_bit(chunk, s->unprotected) &&
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

	if (io->locked) {
		fleece_rl_release(&s->fd->rl, &io->req);
		io->locked = false;
	}
	/*
	 * An origin read that was in flight when the session became invalid
	 * may have raced with a write that no longer copied: fail it. Pairs
	 * with smp_mb__after_atomic() in fleece_session_invalidate().
	 */
	smp_mb__before_atomic();
	if (bio_op(bio) == REQ_OP_READ && !*error &&
	    test_bit(FLEECE_SESSION_INVALID, &s->flags))
		*error = BLK_STS_IOERR;
	if (io->checked && !*error && !unprotected_still_valid(s, io))
		*error = BLK_STS_IOERR;
	return DM_ENDIO_DONE;
}

/*
 * Constructor and destructor
 */

static unsigned long *alloc_bits(u64 nr)
{
	return kvcalloc(BITS_TO_LONGS(nr), sizeof(unsigned long), GFP_KERNEL);
}

static int register_session(struct dm_target *ti, struct fleece_session *s)
{
	struct fleece_dev *fd = s->fd;
	int r = 0;

	mutex_lock(&fd->sessions_lock);
	if (fd->nr_sessions >= FLEECE_MAX_SESSIONS) {
		ti->error = "Too many sessions on this origin";
		r = -EBUSY;
	} else {
		list_add_tail_rcu(&s->list, &fd->sessions);
		WRITE_ONCE(fd->nr_sessions, fd->nr_sessions + 1);
	}
	mutex_unlock(&fd->sessions_lock);
	return r;
}

/*
 * Construct a view; its point in time is the moment it registers with the
 * origin (suspend the fleece-origin device around this for a consistent
 * image):
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
	xa_init(&s->map);
	spin_lock_init(&s->alloc_lock);
	init_waitqueue_head(&s->inflight_wait);
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
	ti->error = fleece_dev_scratch_conflict(s->fd, s->scratch_dev->bdev);
	if (ti->error) {
		r = -EBUSY;
		goto out_put_scratch;
	}
	s->nr_slots = bdev_nr_sectors(s->scratch_dev->bdev) >> s->fd->chunk_shift;
	if (!s->nr_slots) {
		ti->error = "Scratch device is smaller than one chunk";
		r = -EINVAL;
		goto out_put_scratch;
	}

	r = fleece_parse_view_opts(ti, &as, &opts);
	if (r)
		goto out_put_scratch;
	s->on_full = opts.on_full;
	s->writable = opts.writable;
	s->full = opts.full;
	s->low_water = opts.low_water;
	s->bitmap_name = opts.bitmap_name;

	if (ti->len > bdev_nr_sectors(obdev)) {
		ti->error = "View is larger than the origin device";
		r = -EINVAL;
		goto out_put_scratch;
	}
	/* Writes beyond the fleece-origin table would not be copied. */
	if (ti->len > fleece_dev_origin_sectors(s->fd)) {
		ti->error = "View is larger than the fleece-origin device";
		r = -EINVAL;
		goto out_put_scratch;
	}
	/*
	 * Writes in flight on an active origin could land on either side of
	 * the point in time: refuse rather than give a torn image.
	 */
	if (!fleece_dev_origin_suspended(s->fd)) {
		ti->error = "Suspend the fleece-origin device before creating a view";
		r = -EBUSY;
		goto out_put_scratch;
	}
	s->nr_chunks = DIV_ROUND_UP_SECTOR_T(ti->len, s->fd->chunk_sectors);

	r = -ENOMEM;
	s->done = alloc_bits(s->nr_chunks);
	s->slots = alloc_bits(s->nr_slots);
	if (!s->done || !s->slots) {
		ti->error = "Cannot allocate session bitmaps";
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

	if (s->bitmap_name) {
		r = fleece_dev_begin_transaction(s->fd, s, &ti->error);
		if (r)
			goto out_table;
	}
	/* Last: from here on origin writes copy for this session. */
	r = register_session(ti, s);
	if (r)
		goto out_transaction;
	return 0;

out_transaction:
	fleece_dev_end_transaction(s->fd, s, false);
out_table:
	fleece_table_free(&s->table);
out_bioset:
	bioset_exit(&s->bs);
out_bits:
	kvfree(s->slots);
	kvfree(s->done);
out_put_scratch:
	dm_put_device(ti, s->scratch_dev);
out_put_fd:
	fleece_dev_put(s->fd);
out_put_origin:
	dm_put_device(ti, s->origin_dev);
out_free:
	kvfree(s->unprotected);
	kfree(s->bitmap_name);
	kfree(s);
	return r;
}

static void view_dtr(struct dm_target *ti)
{
	struct fleece_session *s = ti->private;
	struct fleece_dev *fd = s->fd;

	mutex_lock(&fd->sessions_lock);
	list_del_rcu(&s->list);
	WRITE_ONCE(fd->nr_sessions, fd->nr_sessions - 1);
	mutex_unlock(&fd->sessions_lock);

	/* Origin writes that saw the session have pinned it by now. */
	synchronize_rcu();
	wait_event(s->inflight_wait, !atomic_read(&s->inflight));
	cancel_work_sync(&s->event_work);

	/* Not committed: the next incremental must still cover it. */
	fleece_dev_end_transaction(fd, s, false);
	kvfree(s->unprotected);
	kfree(s->bitmap_name);

	fleece_table_free(&s->table);
	bioset_exit(&s->bs);
	xa_destroy(&s->map);
	kvfree(s->slots);
	kvfree(s->done);
	dm_put_device(ti, s->scratch_dev);
	fleece_dev_put(fd);
	dm_put_device(ti, s->origin_dev);
	kfree(s);
}

/*
 * Status:
 *   INFO:  <Active|Invalid> <chunk_sectors> <scratch_used>/<scratch_total>
 *          <preserved> <copied> <released> <skipped> <reads_scratch>
 *          <reads_origin> <copies_inflight> <bitmap|-> <open|committed|ended|->
 *   TABLE: the table line, exactly as given.
 */
static void view_status(struct dm_target *ti, status_type_t type,
			unsigned int status_flags, char *result,
			unsigned int maxlen)
{
	struct fleece_session *s = ti->private;
	unsigned int sz = 0;
	u64 used;

	switch (type) {
	case STATUSTYPE_INFO:
		spin_lock(&s->alloc_lock);
		used = s->slots_used;
		spin_unlock(&s->alloc_lock);
		DMEMIT("%s %llu %llu/%llu %lld %lld %lld %lld %lld %lld %d",
		       test_bit(FLEECE_SESSION_INVALID, &s->flags) ? "Invalid" : "Active",
		       (unsigned long long)s->fd->chunk_sectors, used, s->nr_slots,
		       atomic64_read(&s->preserved), atomic64_read(&s->copied),
		       atomic64_read(&s->released), atomic64_read(&s->skipped),
		       atomic64_read(&s->reads_scratch),
		       atomic64_read(&s->reads_origin),
		       atomic_read(&s->inflight));
		if (!s->bitmap_name)
			DMEMIT(" - -");
		else
			DMEMIT(" %s %s", s->bitmap_name, s->committed ? "committed" :
			       s->frozen ? "open" : "ended");
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
		r = fleece_dev_end_transaction(s->fd, s, true);
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
	.version = {0, 4, 0},
	.module = THIS_MODULE,
	.ctr = view_ctr,
	.dtr = view_dtr,
	.map = view_map,
	.end_io = view_end_io,
	.status = view_status,
	.message = view_message,
	.iterate_devices = view_iterate_devices,
	.io_hints = view_io_hints,
};
