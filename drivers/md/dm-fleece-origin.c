// SPDX-License-Identifier: GPL-2.0
/*
 * fleece-origin: the target applications write through.
 *
 * Without a session it is a plain remap onto the origin device. With
 * sessions, writes that change chunks a session still needs go through
 * copy-before-write (dm-fleece-cbw.c) first.
 */
#include <linux/blkdev.h>
#include <linux/module.h>

#include "dm-fleece.h"

struct fleece_origin {
	struct dm_dev *origin_dev;
	struct dm_dev *meta_dev;	/* NULL when "-": bitmaps in memory */
	sector_t chunk_sectors;
	struct fleece_dev *fd;
	struct fleece_table_line table;
};

/*
 * Constructor helpers: each sets ti->error for its own fault, and puts
 * what it got before failing.
 */

static int parse_origin_dev(struct dm_target *ti, struct dm_arg_set *as,
			    struct fleece_origin *o)
{
	int r;

	r = dm_get_device(ti, dm_shift_arg(as), dm_table_get_mode(ti->table),
			  &o->origin_dev);
	if (r) {
		ti->error = "Cannot open origin device";
		return r;
	}
	if (ti->len > bdev_nr_sectors(o->origin_dev->bdev)) {
		ti->error = "Origin device is smaller than the target";
		dm_put_device(ti, o->origin_dev);
		return -EINVAL;
	}
	return 0;
}

static int parse_meta_dev(struct dm_target *ti, struct dm_arg_set *as,
			  struct fleece_origin *o)
{
	dev_t origin = o->origin_dev->bdev->bd_dev;
	const char *path = dm_shift_arg(as);
	int r;

	if (!strcmp(path, "-"))
		return 0;

	r = dm_get_device(ti, path, FLEECE_MODE_RW, &o->meta_dev);
	if (r) {
		ti->error = "Cannot open metadata device";
		return r;
	}
	if (o->meta_dev->bdev->bd_dev == origin) {
		ti->error = "Metadata device must not be the origin device";
		/*
		 * Getting a device again in a wider mode (a read-only table)
		 * reopens it: the origin's dm_dev is gone, both references
		 * are to this one.
		 */
		o->origin_dev = o->meta_dev;
		dm_put_device(ti, o->meta_dev);
		o->meta_dev = NULL;
		return -EINVAL;
	}
	return 0;
}

/*
 * Construct a fleece-origin device:
 *
 *   <origin_dev> <metadata_dev|-> <chunk_sectors> [<#feature_args> <arg>...]
 *
 * Feature arguments: no_gap (nothing wrote the origin since its bitmaps
 * last recorded: keep them trusted), origin_id <id> (metadata of another
 * origin is refused).
 */
static int origin_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct dm_arg_set as = { .argc = argc, .argv = argv };
	struct fleece_attach_opts opts;
	struct fleece_origin *o;
	int r;

	if (argc < 3) {
		ti->error = "Not enough arguments: <origin_dev> <metadata_dev|-> <chunk_sectors>";
		return -EINVAL;
	}

	o = kzalloc(sizeof(*o), GFP_KERNEL);
	if (!o) {
		ti->error = "Cannot allocate fleece-origin context";
		return -ENOMEM;
	}

	r = parse_origin_dev(ti, &as, o);
	if (r)
		goto out_free;
	r = parse_meta_dev(ti, &as, o);
	if (r)
		goto out_put_origin;
	r = fleece_parse_chunk_sectors(ti, dm_shift_arg(&as), &o->chunk_sectors);
	if (r)
		goto out_put_meta;
	r = fleece_parse_origin_features(ti, &as, &opts);
	if (r)
		goto out_put_meta;

	r = fleece_table_save(&o->table, argc, argv);
	if (r) {
		ti->error = "Cannot allocate memory for the table line";
		goto out_put_meta;
	}

	if (DIV_ROUND_UP_SECTOR_T(ti->len, o->chunk_sectors) > UINT_MAX) {
		ti->error = "Origin has too many chunks: use a larger chunk size";
		r = -EINVAL;
		goto out_table;
	}

	o->fd = fleece_dev_get_origin(ti, o->origin_dev->bdev, o->chunk_sectors,
				      &ti->error);
	if (IS_ERR(o->fd)) {
		r = PTR_ERR(o->fd);
		goto out_table;
	}
	r = fleece_dev_attach_tracker(o->fd, o->meta_dev ? o->meta_dev->bdev : NULL,
				      ti->len, &opts, &ti->error);
	if (r)
		goto out_put_fd;

	ti->num_flush_bios = 1;
	ti->flush_supported = true;
	ti->num_discard_bios = 1;
	ti->discards_supported = true;
	ti->num_write_zeroes_bios = 1;
	ti->per_io_data_size = sizeof(struct fleece_io);
	ti->private = o;
	return 0;

out_put_fd:
	fleece_dev_put_origin(o->fd, ti);
out_table:
	fleece_table_free(&o->table);
out_put_meta:
	if (o->meta_dev)
		dm_put_device(ti, o->meta_dev);
out_put_origin:
	dm_put_device(ti, o->origin_dev);
out_free:
	kfree(o);
	return r;
}

static void origin_dtr(struct dm_target *ti)
{
	struct fleece_origin *o = ti->private;

	fleece_dev_put_origin(o->fd, ti);
	fleece_table_free(&o->table);
	if (o->meta_dev)
		dm_put_device(ti, o->meta_dev);
	dm_put_device(ti, o->origin_dev);
	kfree(o);
}

static int origin_map(struct dm_target *ti, struct bio *bio)
{
	struct fleece_origin *o = ti->private;
	struct fleece_dev *fd = o->fd;
	sector_t sector, boundary;
	unsigned int sessions;

	bio_set_dev(bio, o->origin_dev->bdev);
	if (!bio_sectors(bio))
		return DM_MAPIO_REMAPPED;
	sector = dm_target_offset(ti, bio->bi_iter.bi_sector);
	bio->bi_iter.bi_sector = sector;

	switch (bio_op(bio)) {
	case REQ_OP_WRITE:
	case REQ_OP_DISCARD:
	case REQ_OP_WRITE_ZEROES:
		break;
	default:
		return DM_MAPIO_REMAPPED;
	}
	/*
	 * Sessions start only while this device is suspended, so none that
	 * needs a copy appears between here and the copy-before-write below.
	 */
	sessions = READ_ONCE(fd->nr_sessions);
	if (sessions) {
		/* The range lock works within a region: cut bios that cross. */
		boundary = fd->region_sectors - (sector & (fd->region_sectors - 1));
		if (bio_sectors(bio) > boundary)
			dm_accept_partial_bio(bio, boundary);
	}
	/* First the bits recording the write, durable; then the copies. */
	if (!fleece_track_write(fd->trk, bio))
		return DM_MAPIO_SUBMITTED;
	if (!sessions)
		return DM_MAPIO_REMAPPED;
	return fleece_origin_write(fd, bio);
}

void fleece_origin_resume_bio(void *ctx, struct bio *bio)
{
	struct fleece_dev *fd = ctx;

	if (READ_ONCE(fd->nr_sessions) &&
	    fleece_origin_write(fd, bio) == DM_MAPIO_SUBMITTED)
		return;
	submit_bio_noacct(bio);
}

/*
 * Whether the target passes IO, for views starting: preresume comes before
 * dm lets IO through again, postsuspend after it drained.
 */
static int origin_preresume(struct dm_target *ti)
{
	struct fleece_origin *o = ti->private;

	fleece_dev_origin_running(o->fd, ti, true);
	fleece_track_resumed(o->fd->trk);
	return 0;
}

static void origin_postsuspend(struct dm_target *ti)
{
	struct fleece_origin *o = ti->private;

	fleece_dev_origin_running(o->fd, ti, false);
}

/*
 * Messages: clean_detach [cancel] (before the removal at shutdown),
 * bitmap_add <name>, bitmap_remove <name>, bitmap_clear <name>,
 * bitmap_merge <dst> <src>, bitmap_list, bitmap_changes <name> [<start>
 * [<max_ranges>]]. See Documentation/fleece-origin.rst.
 */
static int origin_message(struct dm_target *ti, unsigned int argc, char **argv,
			  char *result, unsigned int maxlen)
{
	struct fleece_origin *o = ti->private;
	int r;

	if (!argc)
		return -EINVAL;
	r = fleece_track_message(o->fd->trk, argc, argv, result, maxlen);
	if (r == -EOPNOTSUPP) {
		DMWARN("%s: unknown message %s", dm_table_device_name(ti->table),
		       argv[0]);
		r = -EINVAL;
	}
	return r;
}

/*
 * Status:
 *   INFO:  <metadata_mode> <#sessions> <ok|lost|gap> <#bitmaps>
 *          [<name> <dirty_chunks> <frozen_sets>]...
 *          metadata_mode is "volatile" with "-", else "persistent";
 *          "lost" when a metadata write failed, "gap" when attached after
 *          a possible gap (bitmaps not trustworthy until a full backup).
 *   TABLE: the table line, exactly as given.
 */
static void origin_status(struct dm_target *ti, status_type_t type,
			  unsigned int status_flags, char *result,
			  unsigned int maxlen)
{
	struct fleece_origin *o = ti->private;
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		DMEMIT("%s %u", o->meta_dev ? "persistent" : "volatile",
		       READ_ONCE(o->fd->nr_sessions));
		fleece_track_status(o->fd->trk, result, maxlen, &sz);
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s", o->table.text);
		break;
	case STATUSTYPE_IMA:
		DMEMIT("fleece-origin,chunk_sectors=%llu;",
		       (unsigned long long)o->chunk_sectors);
		break;
	}
}

static int origin_iterate_devices(struct dm_target *ti,
				  iterate_devices_callout_fn fn, void *data)
{
	struct fleece_origin *o = ti->private;

	return fn(ti, o->origin_dev, 0, ti->len, data);
}

struct target_type fleece_origin_target = {
	.name = "fleece-origin",
	.version = {0, 6, 2},
	.module = THIS_MODULE,
	.ctr = origin_ctr,
	.dtr = origin_dtr,
	.map = origin_map,
	.status = origin_status,
	.message = origin_message,
	.preresume = origin_preresume,
	.postsuspend = origin_postsuspend,
	.iterate_devices = origin_iterate_devices,
};
