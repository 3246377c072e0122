// SPDX-License-Identifier: GPL-2.0
/*
 * The state fleece-origin targets and views of one origin device share,
 * found by the device's dev_t. Keeping it apart from any one target lets a
 * fleece-origin table be reloaded (new ctr before old dtr) under live views.
 */
#include <linux/blkdev.h>
#include <linux/dm-kcopyd.h>
#include <linux/log2.h>
#include <linux/slab.h>

#include "dm-fleece.h"

/* Only ctr and dtr paths take this; the IO path never does. */
static DEFINE_MUTEX(fleece_devs_lock);
static LIST_HEAD(fleece_devs);

/* Buckets of the range lock: enough that unrelated regions rarely share. */
#define FLEECE_RL_BUCKETS 1024

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

	fd->kc = dm_kcopyd_client_create(NULL);
	if (IS_ERR(fd->kc)) {
		*error = "Cannot allocate kcopyd client";
		r = PTR_ERR(fd->kc);
		goto out_wq;
	}

	r = fleece_copy_pool_init(&fd->copy_pool);
	if (r) {
		*error = "Cannot allocate copy pool";
		goto out_kc;
	}
	return fd;

out_kc:
	dm_kcopyd_client_destroy(fd->kc);
out_wq:
	destroy_workqueue(fd->wq);
out_rl:
	fleece_rl_exit(&fd->rl);
out_free:
	kfree(fd);
	return ERR_PTR(r);
}

static void release(struct kref *kref)
{
	struct fleece_dev *fd = container_of(kref, struct fleece_dev, kref);

	lockdep_assert_held(&fleece_devs_lock);
	list_del(&fd->list);
	WARN_ON(!list_empty(&fd->sessions));
	WARN_ON(fd->trk);
	mempool_exit(&fd->copy_pool);
	dm_kcopyd_client_destroy(fd->kc);
	destroy_workqueue(fd->wq);
	fleece_rl_exit(&fd->rl);
	kfree(fd);
}

struct fleece_dev *fleece_dev_get_origin(struct dm_target *ti,
					 struct block_device *bdev,
					 sector_t chunk_sectors, char **error)
{
	struct fleece_dev *fd;

	mutex_lock(&fleece_devs_lock);
	fd = lookup(bdev->bd_dev);
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
		fd = create(bdev, chunk_sectors, error);
		if (IS_ERR(fd))
			goto out;
		list_add(&fd->list, &fleece_devs);
	}
	fd->origin_ti[fd->nr_origins++] = ti;
out:
	mutex_unlock(&fleece_devs_lock);
	return fd;
}

void fleece_dev_put_origin(struct fleece_dev *fd, struct dm_target *ti)
{
	struct fleece_session *s;
	unsigned int i;

	mutex_lock(&fleece_devs_lock);
	for (i = 0; i < fd->nr_origins; i++)
		if (fd->origin_ti[i] == ti)
			break;
	if (!WARN_ON(i == fd->nr_origins))
		fd->origin_ti[i] = fd->origin_ti[fd->nr_origins - 1];
	if (!--fd->nr_origins) {
		/*
		 * Writes no longer pass through here. Open transactions stay
		 * frozen on disk and are merged back at the next activation.
		 */
		mutex_lock(&fd->sessions_lock);
		list_for_each_entry(s, &fd->sessions, list) {
			fleece_session_invalidate(s, "fleece-origin removed");
			s->frozen = NULL;
			RCU_INIT_POINTER(s->after, NULL);
		}
		mutex_unlock(&fd->sessions_lock);
		/* View reads completing now may still look at the bitmaps. */
		synchronize_rcu();
		if (fd->trk)
			fleece_track_destroy(fd->trk);
		fd->trk = NULL;
	}
	kref_put(&fd->kref, release);
	mutex_unlock(&fleece_devs_lock);
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

bool fleece_dev_origin_suspended(struct fleece_dev *fd)
{
	bool suspended = true;
	unsigned int i;

	mutex_lock(&fleece_devs_lock);
	for (i = 0; i < fd->nr_origins; i++)
		suspended &= !!dm_suspended(fd->origin_ti[i]);
	mutex_unlock(&fleece_devs_lock);
	return suspended;
}

char *fleece_dev_scratch_conflict(struct fleece_dev *fd,
				  struct block_device *scratch)
{
	char *why = NULL;
	struct fleece_session *s;
	struct fleece_dev *other;

	if (bdev_whole(scratch) == bdev_whole(fd->bdev))
		return "Scratch device must not be on the origin's disk";

	mutex_lock(&fleece_devs_lock);
	list_for_each_entry(other, &fleece_devs, list) {
		if (other->bd_dev == scratch->bd_dev) {
			why = "Scratch device is the origin of a fleece-origin";
			break;
		}
		if (other->trk && other->trk->meta &&
		    other->trk->meta->bd_dev == scratch->bd_dev) {
			why = "Scratch device is the metadata device of a fleece-origin";
			break;
		}
		mutex_lock(&other->sessions_lock);
		list_for_each_entry(s, &other->sessions, list)
			if (s->scratch_dev->bdev->bd_dev == scratch->bd_dev)
				why = "Scratch device is in use by another session";
		mutex_unlock(&other->sessions_lock);
		if (why)
			break;
	}
	mutex_unlock(&fleece_devs_lock);
	return why;
}

int fleece_dev_attach_tracker(struct fleece_dev *fd, struct block_device *meta,
			      sector_t origin_sectors, char **error)
{
	struct fleece_tracker *t;
	int r = 0;

	mutex_lock(&fleece_devs_lock);
	if (fd->trk) {
		if (fd->trk->meta != meta) {
			*error = "Metadata device differs from the one in use on this origin";
			r = -EINVAL;
		} else if (fd->trk->origin_sectors != origin_sectors) {
			*error = "Length differs from the fleece-origin already on this device";
			r = -EINVAL;
		}
		goto out;
	}
	t = fleece_track_create(meta, origin_sectors, fd->chunk_sectors, fd->wq,
				fleece_origin_resume_bio, fd, error);
	if (IS_ERR(t))
		r = PTR_ERR(t);
	else
		fd->trk = t;
out:
	mutex_unlock(&fleece_devs_lock);
	return r;
}

int fleece_dev_begin_transaction(struct fleece_dev *fd,
				 struct fleece_session *s, char **error)
{
	struct fleece_bitmap *frozen, *live;
	int r = -ENODEV;

	if (!s->full) {
		s->unprotected = kvcalloc(BITS_TO_LONGS(s->nr_chunks),
					  sizeof(unsigned long), GFP_KERNEL);
		if (!s->unprotected) {
			*error = "Cannot allocate session bitmaps";
			return -ENOMEM;
		}
	}
	mutex_lock(&fleece_devs_lock);
	if (!fd->trk) {
		*error = "No fleece-origin device on this origin";
	} else {
		r = fleece_track_freeze(fd->trk, s->bitmap_name, &frozen, &live,
					s->full, error);
	}
	if (!r) {
		/*
		 * Only what changed since the last backup is copied. The rest
		 * is read from the origin and checked against what was
		 * written since (see view_end_io()).
		 */
		if (!s->full) {
			bitmap_complement(s->done, frozen->bits, s->nr_chunks);
			bitmap_complement(s->unprotected, frozen->bits,
					  s->nr_chunks);
		}
		s->frozen = frozen;
		rcu_assign_pointer(s->after, live);
	}
	mutex_unlock(&fleece_devs_lock);
	return r;
}

int fleece_dev_end_transaction(struct fleece_dev *fd, struct fleece_session *s,
			       bool commit)
{
	int r = -ENOENT;

	mutex_lock(&fleece_devs_lock);
	if (!fd->trk || !s->frozen)
		goto out;
	if (commit) {
		r = s->committed ? -EALREADY : fleece_track_commit(fd->trk, s->frozen);
		if (!r)
			s->committed = true;
		goto out;
	}
	/* The session is over: no view IO is in flight any more. */
	RCU_INIT_POINTER(s->after, NULL);
	r = fleece_track_release(fd->trk, s->frozen);
	s->frozen = NULL;
out:
	mutex_unlock(&fleece_devs_lock);
	return r;
}

int fleece_dev_emit_changes(struct fleece_dev *fd, struct fleece_session *s,
			    u64 start, u64 max, char *result,
			    unsigned int maxlen)
{
	int r = -ENOENT;

	mutex_lock(&fleece_devs_lock);
	if (fd->trk && s->frozen) {
		/* A full backup reads everything: its done bits are all clear. */
		fleece_track_emit_ranges(s->full ? NULL : s->frozen->bits,
					 s->nr_chunks, start, max, result, maxlen);
		r = 1;
	}
	mutex_unlock(&fleece_devs_lock);
	return r;
}

sector_t fleece_dev_origin_sectors(struct fleece_dev *fd)
{
	sector_t len = 0;

	mutex_lock(&fleece_devs_lock);
	if (fd->trk)
		len = fd->trk->origin_sectors;
	mutex_unlock(&fleece_devs_lock);
	return len;
}
