// SPDX-License-Identifier: GPL-2.0
/*
 * dm-failnth: a linear mapping that fails chosen bios, counted exactly.
 * A test device for dm-fleece's fault tests; never shipped.
 *
 * dm-flakey fails IO by time (up and down intervals) and dm-dust fails only
 * reads; a test that must fail exactly the one superblock write of a
 * message, and let the next write through, needs a count instead:
 *
 *   table:    <dev> <offset>
 *   message:  fail <kind> <skip> <count>
 *             let <skip> bios of <kind> through, fail the next <count>
 *             (then let all through again); <kind> is one of
 *               read    reads
 *               write   writes with data (with or without flush/FUA)
 *               fua     writes with REQ_FUA and data
 *               flush   empty flushes (REQ_PREFLUSH without data)
 *             "fail <kind> 0 0" disarms.
 *   status:   <kind> <skip left> <count left> <bios failed so far>
 */
#include <linux/device-mapper.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

#define DM_MSG_PREFIX "failnth"

enum kind { K_NONE, K_READ, K_WRITE, K_FUA, K_FLUSH };
static const char *const kind_names[] = { "none", "read", "write", "fua", "flush" };

struct failnth {
	struct dm_dev *dev;
	sector_t start;
	spinlock_t lock;	/* the counters below */
	enum kind kind;
	u64 skip;
	u64 count;
	u64 failed;
};

static bool bio_kind_matches(struct bio *bio, enum kind k)
{
	switch (k) {
	case K_READ:
		return bio_op(bio) == REQ_OP_READ;
	case K_WRITE:
		return bio_op(bio) == REQ_OP_WRITE && bio_sectors(bio);
	case K_FUA:
		/* Not the empty flush dm splits off a flush with data. */
		return bio_op(bio) == REQ_OP_WRITE && (bio->bi_opf & REQ_FUA) &&
		       bio_sectors(bio);
	case K_FLUSH:
		return (bio->bi_opf & REQ_PREFLUSH) && !bio_sectors(bio);
	default:
		return false;
	}
}

static int failnth_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct failnth *f;
	unsigned long long start;
	char dummy;
	int r;

	if (argc != 2) {
		ti->error = "Need <dev> <offset>";
		return -EINVAL;
	}
	if (sscanf(argv[1], "%llu%c", &start, &dummy) != 1) {
		ti->error = "Invalid offset";
		return -EINVAL;
	}
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f) {
		ti->error = "Cannot allocate context";
		return -ENOMEM;
	}
	r = dm_get_device(ti, argv[0], dm_table_get_mode(ti->table), &f->dev);
	if (r) {
		ti->error = "Cannot open device";
		kfree(f);
		return r;
	}
	f->start = start;
	spin_lock_init(&f->lock);
	ti->num_flush_bios = 1;
	ti->num_discard_bios = 1;
	ti->num_write_zeroes_bios = 1;
	ti->private = f;
	return 0;
}

static void failnth_dtr(struct dm_target *ti)
{
	struct failnth *f = ti->private;

	dm_put_device(ti, f->dev);
	kfree(f);
}

static int failnth_map(struct dm_target *ti, struct bio *bio)
{
	struct failnth *f = ti->private;
	unsigned long flags;
	bool fail = false;

	spin_lock_irqsave(&f->lock, flags);
	if (f->count && bio_kind_matches(bio, f->kind)) {
		if (f->skip) {
			f->skip--;
		} else {
			f->count--;
			f->failed++;
			fail = true;
		}
	}
	spin_unlock_irqrestore(&f->lock, flags);
	if (fail) {
		/* Tests read this to see what failed. */
		DMINFO("%s: failing %s bio, opf %#x, sector %llu, %u sectors",
		       dm_table_device_name(ti->table), kind_names[f->kind],
		       bio->bi_opf, (unsigned long long)bio->bi_iter.bi_sector,
		       bio_sectors(bio));
		return DM_MAPIO_KILL;
	}

	bio_set_dev(bio, f->dev->bdev);
	if (bio_sectors(bio) || op_is_zone_mgmt(bio_op(bio)))
		bio->bi_iter.bi_sector = f->start + dm_target_offset(ti, bio->bi_iter.bi_sector);
	return DM_MAPIO_REMAPPED;
}

static int failnth_message(struct dm_target *ti, unsigned int argc, char **argv,
			   char *result, unsigned int maxlen)
{
	struct failnth *f = ti->private;
	unsigned long long skip, count;
	enum kind k;
	char dummy;

	if (argc != 4 || strcasecmp(argv[0], "fail"))
		return -EINVAL;
	for (k = K_READ; k <= K_FLUSH; k++)
		if (!strcasecmp(argv[1], kind_names[k]))
			break;
	if (k > K_FLUSH || sscanf(argv[2], "%llu%c", &skip, &dummy) != 1 ||
	    sscanf(argv[3], "%llu%c", &count, &dummy) != 1)
		return -EINVAL;
	spin_lock_irq(&f->lock);
	f->kind = k;
	f->skip = skip;
	f->count = count;
	spin_unlock_irq(&f->lock);
	return 0;
}

static void failnth_status(struct dm_target *ti, status_type_t type,
			   unsigned int status_flags, char *result,
			   unsigned int maxlen)
{
	struct failnth *f = ti->private;
	unsigned int sz = 0;

	switch (type) {
	case STATUSTYPE_INFO:
		spin_lock_irq(&f->lock);
		DMEMIT("%s %llu %llu %llu", kind_names[f->kind], f->skip, f->count,
		       f->failed);
		spin_unlock_irq(&f->lock);
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s %llu", f->dev->name, (unsigned long long)f->start);
		break;
	default:
		break;
	}
}

static int failnth_iterate_devices(struct dm_target *ti,
				   iterate_devices_callout_fn fn, void *data)
{
	struct failnth *f = ti->private;

	return fn(ti, f->dev, f->start, ti->len, data);
}

static struct target_type failnth_target = {
	.name = "failnth",
	.version = {1, 0, 0},
	.module = THIS_MODULE,
	.ctr = failnth_ctr,
	.dtr = failnth_dtr,
	.map = failnth_map,
	.message = failnth_message,
	.status = failnth_status,
	.iterate_devices = failnth_iterate_devices,
};

static int __init failnth_init(void)
{
	return dm_register_target(&failnth_target);
}

static void __exit failnth_exit(void)
{
	dm_unregister_target(&failnth_target);
}

module_init(failnth_init);
module_exit(failnth_exit);

MODULE_DESCRIPTION(DM_NAME " target failing counted bios (dm-fleece tests)");
MODULE_LICENSE("GPL");
