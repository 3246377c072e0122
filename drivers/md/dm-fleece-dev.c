// SPDX-License-Identifier: GPL-2.0
/*
 * The state fleece-origin targets and views of one origin device share,
 * found by the device's dev_t. Keeping it apart from any one target lets a
 * fleece-origin table be reloaded (new ctr before old dtr) under live views.
 */
#include <linux/blkdev.h>
#include <linux/dm-kcopyd.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/wait_bit.h>

#include "dm-fleece.h"

/*
 * The list of origin devices, and each one's tables and sessions as other
 * devices see them. Never held over IO, and the IO path never takes it.
 */
static DEFINE_MUTEX(fleece_devs_lock);
static LIST_HEAD(fleece_devs);

/* Buckets of the range lock: enough that unrelated regions rarely share. */
#define FLEECE_RL_BUCKETS 1024

/*
 * The copy buffer of each origin device, set up with its first
 * fleece-origin: origin writes wait for old data to be read into it, not
 * for it to reach scratch. 0 turns it off.
 */
static unsigned int copy_buffer_kb = 8192;
module_param(copy_buffer_kb, uint, 0644);
MODULE_PARM_DESC(copy_buffer_kb,
		 "KiB per origin device for copies on their way to scratch (default 8192; 0: none)");

/* Buffered copies in flight: a read, and a write per session, each. */
#define FLEECE_CBUF_BIOS 64

static struct fleece_dev *lookup(dev_t bd_dev)
{
	struct fleece_dev *fd;

	lockdep_assert_held(&fleece_devs_lock);
	list_for_each_entry(fd, &fleece_devs, list)
		if (fd->bd_dev == bd_dev)
			return fd;
	return NULL;
}

static struct fleece_dev *create(struct block_device *bdev,
				 sector_t chunk_sectors, char **error)
{
	struct fleece_dev *fd;
	unsigned int region_shift;
	int r;

	fd = kzalloc(sizeof(*fd), GFP_KERNEL);
	if (!fd) {
		*error = "Cannot allocate origin state";
		return ERR_PTR(-ENOMEM);
	}
	kref_init(&fd->kref);
	fd->bd_dev = bdev->bd_dev;
	fd->bdev = bdev;
	fd->chunk_sectors = chunk_sectors;
	fd->chunk_shift = ilog2(chunk_sectors);
	fd->region_sectors = max_t(sector_t, chunk_sectors, FLEECE_REGION_SECTORS);
	mutex_init(&fd->sessions_lock);
	INIT_LIST_HEAD(&fd->sessions);
	mutex_init(&fd->attach_lock);
	mutex_init(&fd->start_lock);
	fleece_cbw_dev_init(fd);

	/* The lock counts chunks; a region is region_sectors of them. */
	region_shift = ilog2(fd->region_sectors) - fd->chunk_shift;
	r = fleece_rl_init(&fd->rl, region_shift, FLEECE_RL_BUCKETS);
	if (r) {
		*error = "Cannot allocate range lock";
		goto out_free;
	}

	fd->wq = alloc_workqueue("kfleeced", WQ_MEM_RECLAIM, 0);
	if (!fd->wq) {
		*error = "Cannot allocate workqueue";
		r = -ENOMEM;
		goto out_rl;
	}

	fd->commit_wq = alloc_workqueue("kfleece_commit", WQ_MEM_RECLAIM | WQ_UNBOUND, 0);
	if (!fd->commit_wq) {
		*error = "Cannot allocate commit workqueue";
		r = -ENOMEM;
		goto out_wq;
	}

	fd->done_wq = alloc_workqueue("kfleece_done", WQ_MEM_RECLAIM, 0);
	if (!fd->done_wq) {
		*error = "Cannot allocate copy completion workqueue";
		r = -ENOMEM;
		goto out_commit_wq;
	}

	fd->kc = dm_kcopyd_client_create(NULL);
	if (IS_ERR(fd->kc)) {
		*error = "Cannot allocate kcopyd client";
		r = PTR_ERR(fd->kc);
		goto out_done_wq;
	}

	r = fleece_copy_pool_init(&fd->copy_pool);
	if (r) {
		*error = "Cannot allocate copy pool";
		goto out_kc;
	}
	r = fleece_cbuf_init(&fd->cbuf, (u64)READ_ONCE(copy_buffer_kb) * SZ_1K >> PAGE_SHIFT,
			     fd->done_wq);
	if (r) {
		*error = "Cannot allocate copy buffer (copy_buffer_kb)";
		goto out_copy_pool;
	}
	r = bioset_init(&fd->cbs, FLEECE_CBUF_BIOS, 0, BIOSET_NEED_BVECS);
	if (r) {
		*error = "Cannot allocate copy buffer bioset";
		goto out_cbuf;
	}
	r = bioset_init(&fd->cws, FLEECE_CBUF_BIOS,
			fleece_cbw_write_pad(), BIOSET_NEED_BVECS);
	if (r) {
		*error = "Cannot allocate copy buffer write bioset";
		goto out_cbs;
	}
	r = mempool_init_kmalloc_pool(&fd->hold_pool, 16, sizeof(struct fleece_hold));
	if (r) {
		*error = "Cannot allocate copy buffer pool";
		goto out_cws;
	}
	return fd;

out_cws:
	bioset_exit(&fd->cws);
out_cbs:
	bioset_exit(&fd->cbs);
out_cbuf:
	fleece_cbuf_exit(&fd->cbuf);
out_copy_pool:
	mempool_exit(&fd->copy_pool);
out_kc:
	dm_kcopyd_client_destroy(fd->kc);
out_done_wq:
	destroy_workqueue(fd->done_wq);
out_commit_wq:
	destroy_workqueue(fd->commit_wq);
out_wq:
	destroy_workqueue(fd->wq);
out_rl:
	fleece_rl_exit(&fd->rl);
out_free:
	kfree(fd);
	return ERR_PTR(r);
}

/* Tear down what create() made: @fd is on no list, nothing uses it. */
static void free_dev(struct fleece_dev *fd)
{
	WARN_ON(!list_empty(&fd->sessions));
	WARN_ON(fd->trk);
	WARN_ON(!llist_empty(&fd->writes) || fd->writes_left ||
		!llist_empty(&fd->reads_done) || fd->reads_left ||
		!llist_empty(&fd->to_scratch) || fd->to_scratch_left);
	/*
	 * What still runs after the last copy unpinned its sessions (kcopyd's
	 * completions, work items) ends before the pools it may touch go.
	 */
	dm_kcopyd_client_destroy(fd->kc);
	destroy_workqueue(fd->commit_wq);
	destroy_workqueue(fd->wq);
	destroy_workqueue(fd->done_wq);
	mempool_exit(&fd->hold_pool);
	bioset_exit(&fd->cws);
	bioset_exit(&fd->cbs);
	fleece_cbuf_exit(&fd->cbuf);
	mempool_exit(&fd->copy_pool);
	fleece_rl_exit(&fd->rl);
	kfree(fd);
}

static void release(struct kref *kref)
{
	struct fleece_dev *fd = container_of(kref, struct fleece_dev, kref);

	lockdep_assert_held(&fleece_devs_lock);
	list_del(&fd->list);
	free_dev(fd);
}

struct fleece_dev *fleece_dev_get_origin(struct dm_target *ti,
					 struct block_device *bdev,
					 sector_t chunk_sectors, char **error)
{
	struct fleece_dev *fd, *fresh = NULL;

	/*
	 * The first table of a device makes its state (workqueues, a kcopyd
	 * client, the copy buffer) before the module's lock is taken: every
	 * origin's and view's resume needs that lock, and reclaim may wait
	 * for writes to a suspended origin. Two first tables at once: one
	 * state is kept, the other freed.
	 */
	mutex_lock(&fleece_devs_lock);
	fd = lookup(bdev->bd_dev);
	if (!fd) {
		mutex_unlock(&fleece_devs_lock);
		fresh = create(bdev, chunk_sectors, error);
		if (IS_ERR(fresh))
			return fresh;
		mutex_lock(&fleece_devs_lock);
		fd = lookup(bdev->bd_dev);
	}
	if (fd) {
		if (fd->nr_origins == FLEECE_MAX_ORIGINS) {
			*error = "Too many fleece-origin tables on this device";
			fd = ERR_PTR(-EBUSY);
			goto out;
		}
		if (fd->chunk_sectors != chunk_sectors) {
			*error = "Chunk size differs from the one already in use on this device";
			fd = ERR_PTR(-EINVAL);
			goto out;
		}
		kref_get(&fd->kref);
	} else {
		fd = fresh;
		fresh = NULL;
		list_add(&fd->list, &fleece_devs);
	}
	fd->origin_running[fd->nr_origins] = false;
	fd->origin_ti[fd->nr_origins++] = ti;
out:
	mutex_unlock(&fleece_devs_lock);
	if (fresh)
		free_dev(fresh);
	return fd;
}

/*
 * The tracker is going: it takes back the bitmaps it lent to views' backup
 * transactions. The frozen sets stay on disk (persistent) and are merged
 * back at the next activation; a committed one was dropped already, and
 * its view still says so.
 */
static void txn_revoke(struct fleece_session *s)
{
	lockdep_assert_held(&fleece_devs_lock);
	/* Not resumed yet: the reservation goes with the tracker. */
	s->txn.fresh = NULL;
	if (!s->txn.frozen)
		return;
	RCU_INIT_POINTER(s->txn.after, NULL);
	s->txn.frozen = NULL;
	if (s->txn.state == FLEECE_TXN_OPEN)
		WRITE_ONCE(s->txn.state, FLEECE_TXN_ENDED);
}

void fleece_dev_put_origin(struct fleece_dev *fd, struct dm_target *ti)
{
	struct fleece_tracker *trk = NULL;
	struct fleece_session *s;
	unsigned int i;

	/*
	 * An attach waits until the detach is on disk: one tracker at a time.
	 * A view's start, which holds only start_lock, sees the tracker and
	 * its reservation either still there or gone.
	 */
	mutex_lock(&fd->attach_lock);
	mutex_lock(&fd->start_lock);
	mutex_lock(&fleece_devs_lock);
	for (i = 0; i < fd->nr_origins; i++)
		if (fd->origin_ti[i] == ti)
			break;
	if (!WARN_ON(i == fd->nr_origins)) {
		fd->origin_ti[i] = fd->origin_ti[fd->nr_origins - 1];
		fd->origin_running[i] = fd->origin_running[fd->nr_origins - 1];
	}
	if (!--fd->nr_origins) {
		/*
		 * Writes no longer pass through here: no session can be kept
		 * right. No new one can start (fleece_dev_add_session() checks
		 * nr_origins under this lock).
		 */
		mutex_lock(&fd->sessions_lock);
		list_for_each_entry(s, &fd->sessions, list) {
			fleece_session_invalidate(s, "fleece-origin removed");
			txn_revoke(s);
		}
		mutex_unlock(&fd->sessions_lock);
		trk = fd->trk;
		fd->trk = NULL;
	}
	mutex_unlock(&fleece_devs_lock);
	mutex_unlock(&fd->start_lock);

	/* The detach writes the superblock: not under the module's lock. */
	if (trk) {
		/* View reads completing now may still look at the bitmaps. */
		synchronize_rcu();
		fleece_track_destroy(trk);
		mutex_lock(&fleece_devs_lock);
		fd->meta = NULL;
		mutex_unlock(&fleece_devs_lock);
	}
	mutex_unlock(&fd->attach_lock);
	fleece_dev_put(fd);
}

struct fleece_dev *fleece_dev_find(dev_t bd_dev)
{
	struct fleece_dev *fd;

	mutex_lock(&fleece_devs_lock);
	fd = lookup(bd_dev);
	if (fd && fd->nr_origins)
		kref_get(&fd->kref);
	else
		fd = NULL;
	mutex_unlock(&fleece_devs_lock);
	return fd;
}

void fleece_dev_put(struct fleece_dev *fd)
{
	mutex_lock(&fleece_devs_lock);
	kref_put(&fd->kref, release);
	mutex_unlock(&fleece_devs_lock);
}

/* The dev_t of the mapped device a target belongs to. */
static dev_t target_devt(struct dm_target *ti)
{
	return disk_devt(dm_disk(dm_table_get_md(ti->table)));
}

/* Do @a and @b share sectors: the same device, or a disk and its partition? */
static bool overlaps(struct block_device *a, dev_t b_dev, struct block_device *b)
{
	if (a->bd_dev == b_dev)
		return true;
	return b && bdev_whole(a) == bdev_whole(b) &&
	       bdev_is_partition(a) != bdev_is_partition(b);
}

/* What a block device already is to dm-fleece: device_user(). */
enum fleece_user {
	USER_NONE,
	USER_ORIGIN,		/* the origin of a fleece-origin */
	USER_META,		/* the metadata device of a fleece-origin */
	USER_ORIGIN_TARGET,	/* a device with a fleece-origin table */
	USER_SCRATCH,		/* the scratch device of a session */
	USER_VIEW,		/* a device with a fleece table */
	NR_USERS
};

/*
 * What @bdev is already used as, of the kinds in @kinds (BIT(USER_*)):
 * the first found, or USER_NONE. The origin and metadata of @self do not
 * count: a tracker attaching checks its devices against the others'.
 */
static enum fleece_user device_user(struct block_device *bdev,
				    struct fleece_dev *self, unsigned int kinds)
{
	enum fleece_user user = USER_NONE;
	struct fleece_session *s;
	struct fleece_dev *other;
	unsigned int i;

	lockdep_assert_held(&fleece_devs_lock);
	list_for_each_entry(other, &fleece_devs, list) {
		if (other != self && (kinds & BIT(USER_ORIGIN)) &&
		    overlaps(bdev, other->bd_dev, other->bdev))
			return USER_ORIGIN;
		if (other != self && (kinds & BIT(USER_META)) && other->meta &&
		    overlaps(bdev, other->meta->bd_dev, other->meta))
			return USER_META;
		for (i = 0; i < other->nr_origins; i++) {
			if ((kinds & BIT(USER_ORIGIN_TARGET)) &&
			    bdev->bd_dev == target_devt(other->origin_ti[i]))
				return USER_ORIGIN_TARGET;
		}
		if (!(kinds & (BIT(USER_SCRATCH) | BIT(USER_VIEW))))
			continue;
		mutex_lock(&other->sessions_lock);
		list_for_each_entry(s, &other->sessions, list) {
			struct block_device *sb = s->scratch_dev->bdev;

			if ((kinds & BIT(USER_SCRATCH)) &&
			    overlaps(bdev, sb->bd_dev, sb))
				user = USER_SCRATCH;
			else if ((kinds & BIT(USER_VIEW)) &&
				 bdev->bd_dev == target_devt(s->ti))
				user = USER_VIEW;
			if (user != USER_NONE)
				break;
		}
		mutex_unlock(&other->sessions_lock);
		if (user != USER_NONE)
			break;
	}
	return user;
}

/*
 * Why @scratch cannot be a session's scratch device, or NULL. Two users of
 * the same sectors would overwrite each other's data; a dm-fleece device
 * as scratch would send the copies through dm-fleece again.
 */
static char *scratch_conflict(struct fleece_dev *fd, struct block_device *scratch)
{
	static char * const why[NR_USERS] = {
		[USER_ORIGIN] = "Scratch device is the origin of a fleece-origin",
		[USER_META] = "Scratch device is the metadata device of a fleece-origin",
		[USER_ORIGIN_TARGET] = "Scratch device is a fleece-origin device",
		[USER_SCRATCH] = "Scratch device is in use by another session",
		[USER_VIEW] = "Scratch device is a fleece view",
	};

	if (bdev_whole(scratch) == bdev_whole(fd->bdev))
		return "Scratch device must not be on the origin's disk";
	return why[device_user(scratch, NULL, ~0U)];
}

/*
 * Why @fd's first tracker cannot have @meta as its metadata device (NULL:
 * in memory), nor @fd's origin be where it is, or NULL. Two writers of the
 * same sectors would overwrite each other: two trackers' superblocks and
 * bitmap blocks, a tracker's blocks and a session's copies, or writes to
 * an origin that are another origin's metadata.
 */
static char *tracker_conflict(struct fleece_dev *fd, struct block_device *meta)
{
	static char * const origin_why[NR_USERS] = {
		[USER_META] = "Origin device is the metadata device of another fleece-origin",
		[USER_SCRATCH] = "Origin device is the scratch device of a session",
	};
	static char * const meta_why[NR_USERS] = {
		[USER_ORIGIN] = "Metadata device is the origin of another fleece-origin",
		[USER_META] = "Metadata device is in use by another fleece-origin",
		[USER_ORIGIN_TARGET] = "Metadata device is a fleece-origin device",
		[USER_SCRATCH] = "Metadata device is the scratch device of a session",
	};
	char *why;

	if (meta && overlaps(meta, fd->bd_dev, fd->bdev))
		return "Metadata device must not be on the origin device";
	why = origin_why[device_user(fd->bdev, fd,
				     BIT(USER_META) | BIT(USER_SCRATCH))];
	if (why || !meta)
		return why;
	return meta_why[device_user(meta, fd, BIT(USER_ORIGIN) | BIT(USER_META) |
				    BIT(USER_ORIGIN_TARGET) | BIT(USER_SCRATCH))];
}

/* May a reloaded table share the tracker in use? */
static int same_tracker(struct fleece_tracker *t, struct block_device *meta,
			sector_t origin_sectors, const struct fleece_attach_opts *opts,
			char **error)
{
	if (t->meta != meta) {
		*error = "Metadata device differs from the one in use on this origin";
		return -EINVAL;
	}
	if (t->origin_sectors != origin_sectors) {
		*error = "Length differs from the fleece-origin already on this device";
		return -EINVAL;
	}
	if (!fleece_track_same_origin(t, opts->origin_id)) {
		*error = "Metadata belongs to another origin (its origin_id differs)";
		return -EINVAL;
	}
	return 0;
}

/*
 * Loading the metadata reads it all (a fresh device's zero check, every
 * bitmap): only this device's attach_lock is held over it, so other
 * origins and views come and go meanwhile. A second table of this device
 * waits for the first's load, then shares its tracker; a removal waits for
 * it too (the loading table counts in nr_origins, so it destroys nothing).
 * Views find no tracker until it is installed, as before the table came.
 */
int fleece_dev_attach_tracker(struct fleece_dev *fd, struct block_device *meta,
			      sector_t origin_sectors,
			      const struct fleece_attach_opts *opts, char **error)
{
	struct fleece_tracker *t;
	int r = 0;

	mutex_lock(&fd->attach_lock);
	mutex_lock(&fleece_devs_lock);
	t = fd->trk;
	if (!t) {
		*error = tracker_conflict(fd, meta);
		if (*error) {
			mutex_unlock(&fleece_devs_lock);
			r = -EBUSY;
			goto out;
		}
		fd->meta = meta;
	}
	mutex_unlock(&fleece_devs_lock);
	/* Its lock may be held over a commit round: not under the module's. */
	if (t) {
		r = same_tracker(t, meta, origin_sectors, opts, error);
		goto out;
	}

	t = fleece_track_create(meta, origin_sectors, fd->chunk_sectors, opts, fd->commit_wq,
				fleece_origin_resume_bio, fd, error);
	mutex_lock(&fleece_devs_lock);
	if (IS_ERR(t)) {
		r = PTR_ERR(t);
		fd->meta = NULL;
	} else {
		fd->trk = t;
	}
	mutex_unlock(&fleece_devs_lock);
out:
	mutex_unlock(&fd->attach_lock);
	return r;
}

/*
 * Under the device's start_lock too: a view's start holds it from its
 * check that every origin is suspended until its point in time is taken,
 * over the freeze's metadata IO, and no origin may resume meanwhile.
 */
void fleece_dev_origin_running(struct fleece_dev *fd, struct dm_target *ti,
			       bool running)
{
	unsigned int i;

	mutex_lock(&fd->start_lock);
	mutex_lock(&fleece_devs_lock);
	for (i = 0; i < fd->nr_origins; i++)
		if (fd->origin_ti[i] == ti)
			fd->origin_running[i] = running;
	mutex_unlock(&fleece_devs_lock);
	mutex_unlock(&fd->start_lock);
}

/*
 * Is no fleece-origin target of the device passing IO? At least one
 * exists. A table loaded but never resumed passes none.
 */
static bool origins_suspended(struct fleece_dev *fd)
{
	unsigned int i;

	lockdep_assert_held(&fleece_devs_lock);
	for (i = 0; i < fd->nr_origins; i++)
		if (fd->origin_running[i])
			return false;
	return fd->nr_origins;
}

/*
 * An incremental view copies only what changed since the last backup: the
 * other chunks start settled, and unprotected (read from the origin and
 * checked against what was written since, see view_end_io()).
 */
static struct fleece_unrecorded session_unrecorded(struct fleece_session *s)
{
	return (struct fleece_unrecorded) {
		.bits = { s->settled, s->txn.unprotected },
		.nr = s->nr_chunks,
	};
}

/*
 * Can @s be a session of @fd, as things are? Under the module's lock, with
 * the registration that relies on it.
 */
static int check_session(struct fleece_dev *fd, struct fleece_session *s,
			 char **error)
{
	lockdep_assert_held(&fleece_devs_lock);
	if (!fd->nr_origins || !fd->trk) {
		*error = "No fleece-origin device on this origin";
		return -ENODEV;
	}
	/* Writes beyond the fleece-origin table would not be copied. */
	if (s->ti->len > fd->trk->origin_sectors) {
		*error = "View is larger than the fleece-origin device";
		return -EINVAL;
	}
	/* Its commit forgets the whole bitmap's changes, not only the view's. */
	if (s->txn.name && s->ti->len < fd->trk->origin_sectors) {
		*error = "View with bitmap is shorter than the fleece-origin device";
		return -EINVAL;
	}
	*error = scratch_conflict(fd, s->scratch_dev->bdev);
	if (*error)
		return -EBUSY;
	if (fd->nr_sessions >= FLEECE_MAX_SESSIONS) {
		*error = "Too many sessions on this origin";
		return -EBUSY;
	}
	return 0;
}

/*
 * A view with a transaction reserves its bitmap, which makes what the
 * bitmap recorded so far durable (a commit round), and makes the
 * complement of the bitmap it will freeze, so that the start redoes only
 * what the bitmap records meanwhile (two passes over a bit per chunk).
 * Neither under the module's lock: the device's attach_lock keeps the
 * tracker from being destroyed meanwhile. If the tracker goes before the
 * start, the reservation goes with it, and the view cannot start.
 */
static int session_reserve(struct fleece_dev *fd, struct fleece_session *s,
			   struct fleece_tracker **trkp, char **error)
{
	struct fleece_unrecorded u = session_unrecorded(s);
	struct fleece_tracker *trk;
	int r;

	lockdep_assert_held(&fd->attach_lock);
	mutex_lock(&fleece_devs_lock);
	r = check_session(fd, s, error);
	trk = fd->trk;
	mutex_unlock(&fleece_devs_lock);
	if (r)
		return r;
	r = fleece_track_reserve(trk, s->txn.name, s->txn.full, &s->txn.fresh,
				 error);
	if (r)
		return r;
	if (!s->txn.full)
		fleece_track_unrecorded(trk, s->txn.fresh, &u);
	*trkp = trk;
	return 0;
}

int fleece_dev_add_session(struct fleece_dev *fd, struct fleece_session *s,
			   char **error)
{
	struct fleece_tracker *trk = NULL;
	int r;

	/*
	 * Checked first without waiting for the device's lock, so that a
	 * view of an origin whose metadata is still loading is refused at
	 * once, not after the load, and a view refused for another reason
	 * reserves nothing; checked again when it is registered, in one step
	 * with the registration, as things may have changed meanwhile.
	 */
	mutex_lock(&fleece_devs_lock);
	r = check_session(fd, s, error);
	mutex_unlock(&fleece_devs_lock);
	if (r)
		return r;

	if (s->txn.name) {
		mutex_lock(&fd->attach_lock);
		r = session_reserve(fd, s, &trk, error);
		if (r)
			goto out_attach;
	}

	mutex_lock(&fleece_devs_lock);
	r = check_session(fd, s, error);
	if (!r) {
		/*
		 * Listed, so that other views see its scratch device and the
		 * count, but origin writes ignore it until
		 * fleece_dev_start_session().
		 */
		mutex_lock(&fd->sessions_lock);
		list_add_tail_rcu(&s->list, &fd->sessions);
		WRITE_ONCE(fd->nr_sessions, fd->nr_sessions + 1);
		mutex_unlock(&fd->sessions_lock);
	}
	mutex_unlock(&fleece_devs_lock);
	if (r && s->txn.fresh) {
		fleece_track_unreserve(trk, s->txn.fresh);
		s->txn.fresh = NULL;
	}
out_attach:
	if (s->txn.name)
		mutex_unlock(&fd->attach_lock);
	return r;
}

/*
 * The device's start_lock, not the module's lock, is held over the
 * freeze's metadata IO: it keeps the tracker and the reservation (taken
 * back only under it, see fleece_dev_put_origin()), and every origin
 * suspended (an origin's resume waits for it, see
 * fleece_dev_origin_running()). Not attach_lock, which other views' ctrs
 * and removals hold over longer work while this origin is suspended: the
 * tracker's own lock orders the freeze against them.
 */
int fleece_dev_start_session(struct fleece_dev *fd, struct fleece_session *s)
{
	const char *name = dm_table_device_name(s->ti->table);
	struct fleece_unrecorded u = session_unrecorded(s);
	struct fleece_bitmap *frozen = NULL, *live = NULL;
	struct fleece_txn *txn = &s->txn;
	struct fleece_tracker *trk;
	char *error = NULL;
	int r = 0;

	/* Set only here, under the locks, and never cleared. */
	if (test_bit(FLEECE_SESSION_STARTED, &s->flags))
		return 0;
	mutex_lock(&fd->start_lock);
	mutex_lock(&fleece_devs_lock);
	trk = fd->trk;
	if (!fd->nr_origins || !trk) {
		error = "No fleece-origin device on this origin";
		r = -ENODEV;
		goto out;
	}
	/*
	 * The fleece-origin went away after the view was loaded (and maybe
	 * another came): what it reserved went with it.
	 */
	if (test_bit(FLEECE_SESSION_INVALID, &s->flags) ||
	    (txn->name && !txn->fresh)) {
		error = "The fleece-origin was removed after the view was loaded";
		r = -ENODEV;
		goto out;
	}
	/*
	 * Writes in flight on an active origin could land on either side of
	 * the point in time: refuse rather than give a torn image.
	 */
	if (!origins_suspended(fd)) {
		error = "Suspend the fleece-origin device before creating a view";
		r = -EBUSY;
		goto out;
	}
	mutex_unlock(&fleece_devs_lock);

	/* Freeze the session's bitmap: its transaction begins. */
	if (txn->name) {
		r = fleece_track_freeze(trk, txn->fresh, &frozen, &live, txn->full,
					txn->full ? NULL : &u, &error);
		if (r)
			goto out_start;
	}

	mutex_lock(&fleece_devs_lock);
	if (txn->name) {
		txn->fresh = NULL;
		/* Read under attach_lock alone: fleece_dev_emit_changes(). */
		smp_store_release(&txn->frozen, frozen);
		rcu_assign_pointer(txn->after, live);
		WRITE_ONCE(txn->state, FLEECE_TXN_OPEN);
	}
	/* The point in time: from here on origin writes copy for it. */
	set_bit(FLEECE_SESSION_STARTED, &s->flags);
out:
	mutex_unlock(&fleece_devs_lock);
out_start:
	mutex_unlock(&fd->start_lock);
	if (error)
		DMERR("%s: cannot resume: %s", name, error);
	return r;
}

void fleece_dev_remove_session(struct fleece_dev *fd, struct fleece_session *s)
{
	struct fleece_txn *txn = &s->txn;
	struct fleece_bitmap *fresh, *frozen;
	struct fleece_tracker *trk;

	/*
	 * The transaction first, while the session is still on the list
	 * fleece_dev_put_origin() revokes loans from. The device's
	 * attach_lock, not the module's lock, is held over the release's
	 * superblock write: a tracker is only destroyed under it, after
	 * taking the loans back. No view IO is in flight: nothing looks at
	 * @after. Not committed: the next incremental must still cover the
	 * set.
	 */
	mutex_lock(&fd->attach_lock);
	mutex_lock(&fleece_devs_lock);
	trk = fd->trk;
	fresh = txn->fresh;
	frozen = txn->frozen;
	txn->fresh = NULL;
	if (frozen) {
		RCU_INIT_POINTER(txn->after, NULL);
		txn->frozen = NULL;
		if (txn->state == FLEECE_TXN_OPEN)
			WRITE_ONCE(txn->state, FLEECE_TXN_ENDED);
	}
	mutex_unlock(&fleece_devs_lock);
	if (fresh)
		fleece_track_unreserve(trk, fresh);
	if (frozen)
		fleece_track_release(trk, frozen);
	mutex_unlock(&fd->attach_lock);

	mutex_lock(&fd->sessions_lock);
	list_del_rcu(&s->list);
	WRITE_ONCE(fd->nr_sessions, fd->nr_sessions - 1);
	mutex_unlock(&fd->sessions_lock);

	/* Origin writes that saw the session have pinned it by now. */
	synchronize_rcu();
	wait_var_event(&s->inflight, !atomic_read(&s->inflight));
}

int fleece_dev_commit(struct fleece_dev *fd, struct fleece_session *s)
{
	struct fleece_txn *txn = &s->txn;
	struct fleece_bitmap *frozen = NULL;
	struct fleece_tracker *trk;
	int r = 0;

	/*
	 * The device's attach_lock keeps the tracker and the loan (revoked
	 * only under it) over the superblock write, and serializes commits;
	 * the module's lock is not held over the IO.
	 */
	mutex_lock(&fd->attach_lock);
	mutex_lock(&fleece_devs_lock);
	trk = fd->trk;
	if (txn->state == FLEECE_TXN_COMMITTED)
		r = -EALREADY;
	else if (txn->state != FLEECE_TXN_OPEN || !txn->frozen)
		r = -ENOENT;
	else
		frozen = txn->frozen;
	mutex_unlock(&fleece_devs_lock);
	if (frozen) {
		r = fleece_track_commit(trk, frozen);
		if (!r)
			WRITE_ONCE(txn->state, FLEECE_TXN_COMMITTED);
	}
	mutex_unlock(&fd->attach_lock);
	return r;
}

int fleece_dev_emit_changes(struct fleece_dev *fd, struct fleece_session *s,
			    u64 start, u64 max, char *result,
			    unsigned int maxlen)
{
	struct fleece_txn *txn = &s->txn;
	struct fleece_bitmap *frozen;
	int r = -ENOENT;

	/*
	 * The scan can take long on a sparse set of 2^32 chunks: not under
	 * the module's lock, which every origin's suspend and resume take.
	 * attach_lock is enough: the set is taken back (txn_revoke(),
	 * fleece_dev_remove_session()) and freed only under it, and its bits
	 * no longer change once frozen. fleece_dev_start_session() publishes
	 * it without attach_lock.
	 */
	mutex_lock(&fd->attach_lock);
	/* Pairs with the release there: the set's bits before the pointer. */
	frozen = smp_load_acquire(&txn->frozen);
	if (frozen) {
		/* A full backup reads everything. */
		fleece_track_emit_ranges(txn->full ? NULL : frozen->recorded,
					 s->nr_chunks, start, max, result, maxlen);
		r = 1;
	}
	mutex_unlock(&fd->attach_lock);
	return r;
}
