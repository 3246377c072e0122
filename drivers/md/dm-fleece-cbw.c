// SPDX-License-Identifier: GPL-2.0
/*
 * Copy-before-write: before a write changes chunks a session still needs,
 * their old contents are copied to the session's scratch device.
 *
 * Ordering, which is the whole point-in-time guarantee:
 *  1. the write takes its chunks EXCLUSIVE in the range lock, so it waits
 *     for view reads of those chunks that are reading the origin;
 *  2. under that lock, each needed chunk gets a scratch slot (recorded in
 *     the session's map) and kcopyd copies origin -> every session's slot;
 *  3. when the copies are done the chunks are marked done, the lock is
 *     released (view reads queued behind it now find the chunks done and
 *     read scratch), and only then is the write submitted.
 * Later writes find the chunks settled and go straight through, without
 * the lock.
 *
 * A copy that cannot read the origin (a bad sector) does not fail the
 * application's write: a backup must never do that, and a rewrite is how a
 * bad sector gets repaired. The chunk's old data is lost to the views that
 * needed it instead: their reads of it fail, a dm event tells the agent,
 * and the write goes on. A run of chunks that fails is copied again one
 * chunk at a time, so only the chunks that cannot be read are lost.
 */
#include <linux/blkdev.h>
#include <linux/dm-kcopyd.h>
#include <linux/slab.h>

#include "dm-fleece.h"

/**
 * struct fleece_copy - one kcopyd job: a run of chunks to every session
 * that needs them, or zeroes to one session's slots.
 * @io: the bio waiting for it.
 * @chunk: first chunk.
 * @count: chunks in the run.
 * @n: sessions.
 * @zero: write zeroes instead of copying (released chunks a view writes).
 * @s: the sessions, each pinned by its inflight count.
 * @slot: first slot of the run in each session's scratch.
 * @retry_end: 0, or, after a run failed to read, one past its last chunk:
 *	the job copies the run again one chunk at a time.
 * @retry: starts the next of those copies.
 */
struct fleece_copy {
	struct fleece_io *io;
	u64 chunk;
	u64 count;
	unsigned int n;
	bool zero;
	struct fleece_session *s[FLEECE_MAX_SESSIONS];
	u32 slot[FLEECE_MAX_SESSIONS];
	u64 retry_end;
	struct work_struct retry;
};

static struct kmem_cache *copy_cache;

int fleece_cbw_init(void)
{
	copy_cache = KMEM_CACHE(fleece_copy, 0);
	return copy_cache ? 0 : -ENOMEM;
}

void fleece_cbw_exit(void)
{
	kmem_cache_destroy(copy_cache);
}

int fleece_copy_pool_init(mempool_t *pool)
{
	return mempool_init_slab_pool(pool, 16, copy_cache);
}

static void session_unpin(struct fleece_session *s)
{
	if (atomic_dec_and_test(&s->inflight))
		wake_up(&s->inflight_wait);
}

static void io_set_error(struct fleece_io *io, blk_status_t status)
{
	cmpxchg(&io->status, BLK_STS_OK, status);
}

/* One pending copy of @io is over; the last one runs io->copies_done. */
static void io_put(struct fleece_io *io)
{
	if (atomic_dec_and_test(&io->pending))
		io->copies_done(io);
}

static void forget_slots(struct fleece_session *s, u64 chunk, u64 count)
{
	u64 k;

	for (k = 0; k < count; k++)
		fleece_scratch_drop(s, chunk + k);
}

static void copy_complete(int read_err, unsigned long write_err, void *context);

/* Start the kcopyd job of @c; its completion is copy_complete(). */
static void start_copy(struct fleece_copy *c)
{
	struct fleece_dev *fd = c->io->fd;
	struct dm_io_region from, to[FLEECE_MAX_SESSIONS];
	sector_t start = c->chunk << fd->chunk_shift;
	sector_t len = c->count << fd->chunk_shift;
	sector_t dev_size = bdev_nr_sectors(fd->bdev);
	unsigned int i;

	/* The last chunk of the origin may be short. */
	if (start + len > dev_size)
		len = dev_size - start;

	for (i = 0; i < c->n; i++) {
		to[i].bdev = c->s[i]->scratch_dev->bdev;
		to[i].sector = (sector_t)c->slot[i] << fd->chunk_shift;
		to[i].count = len;
	}
	if (c->zero) {
		dm_kcopyd_zero(fd->kc, c->n, to, 0, copy_complete, c);
	} else {
		from.bdev = fd->bdev;
		from.sector = start;
		from.count = len;
		dm_kcopyd_copy(fd->kc, &from, c->n, to, 0, copy_complete, c);
	}
}

static void submit_copy(struct fleece_io *io, struct fleece_copy *c)
{
	atomic_inc(&io->pending);
	start_copy(c);
}

static void copy_retry_work(struct work_struct *work)
{
	start_copy(container_of(work, struct fleece_copy, retry));
}

/* Copy chunk @chunk of a failed run next, on the workqueue. */
static void retry_chunk(struct fleece_copy *c, u64 chunk)
{
	unsigned int i;

	for (i = 0; i < c->n; i++)
		c->slot[i] += chunk - c->chunk;
	c->chunk = chunk;
	c->count = 1;
	INIT_WORK(&c->retry, copy_retry_work);
	queue_work(c->io->fd->wq, &c->retry);
}

/*
 * The chunk's old data cannot be read: it is lost to the session, which
 * keeps the slot marked so that reads of the chunk fail.
 */
static void chunk_lost(struct fleece_session *s, u64 chunk)
{
	fleece_slotmap_mark_unreadable(&s->slots, chunk);
	set_bit(chunk, s->settled);
	atomic64_inc(&s->unreadable);
	queue_work(system_wq, &s->event_work);
}

/*
 * kcopyd's completion, in its thread: may take spinlocks, not sleep. A run
 * that fails to read is copied again chunk by chunk with the same job, one
 * after the other (an error path: no allocation, and the sessions stay
 * pinned), so that only the chunks that cannot be read are lost.
 */
static void copy_complete(int read_err, unsigned long write_err, void *context)
{
	struct fleece_copy *c = context;
	struct fleece_io *io = c->io;
	struct fleece_dev *fd = io->fd;
	unsigned int i;
	u64 k;

	if (read_err && c->count > 1) {
		c->retry_end = c->chunk + c->count;
		retry_chunk(c, c->chunk);
		return;
	}
	for (i = 0; i < c->n; i++) {
		struct fleece_session *s = c->s[i];

		if (read_err && io->session) {
			/* A writable view's own write: it fails, nothing is lost. */
			forget_slots(s, c->chunk, c->count);
		} else if (read_err) {
			chunk_lost(s, c->chunk);
		} else if (write_err & BIT(i)) {
			forget_slots(s, c->chunk, c->count);
			fleece_session_invalidate(s, "scratch write error");
		} else {
			for (k = 0; k < c->count; k++)
				set_bit(c->chunk + k, s->settled);
			atomic64_add(c->count, &s->preserved);
			if (!c->zero)
				atomic64_add(c->count, &s->copied);
		}
	}
	if (read_err && io->session) {
		DMERR_LIMIT("%pg: origin read error preserving chunk %llu: view write failed",
			    fd->bdev, c->chunk);
		io_set_error(io, BLK_STS_IOERR);
	} else if (read_err) {
		DMERR_LIMIT("%pg: chunk %llu unreadable, lost to %u view(s); the write goes on",
			    fd->bdev, c->chunk, c->n);
	}
	if (c->retry_end && c->chunk + 1 < c->retry_end) {
		retry_chunk(c, c->chunk + 1);
		return;
	}
	for (i = 0; i < c->n; i++)
		session_unpin(c->s[i]);
	mempool_free(c, &fd->copy_pool);
	io_put(io);
}

/* What one chunk needs in one session. */
enum fleece_need {
	NEED_NOTHING,
	NEED_COPY,
	NEED_ZERO,
	NEED_FAIL,
};

typedef enum fleece_need (*need_fn)(struct fleece_session *s, u64 chunk);

static enum fleece_need origin_need(struct fleece_session *s, u64 chunk)
{
	if (test_bit(FLEECE_SESSION_INVALID, &s->flags) ||
	    chunk >= s->nr_chunks || test_bit(chunk, s->settled))
		return NEED_NOTHING;
	return NEED_COPY;
}

/*
 * A writable view's chunk needs a slot of its own before it is written,
 * filled with its point-in-time data (zeroes once released). A chunk lost
 * to an unreadable origin has nothing to write over: the write fails.
 */
static enum fleece_need view_write_need(struct fleece_session *s, u64 chunk)
{
	bool unreadable;
	u32 slot;

	if (!test_bit(chunk, s->settled))
		return NEED_COPY;
	if (!fleece_slotmap_find(&s->slots, chunk, &slot, &unreadable))
		return NEED_ZERO;
	return unreadable ? NEED_FAIL : NEED_NOTHING;
}

/*
 * Returns false when the write must fail instead (fail_writes policy);
 * with invalidate, the session is dropped and the copy goes on without it.
 */
static bool scratch_full(struct fleece_io *io, struct fleece_session *s)
{
	/* io->session: a writable view's own write fails, the view stays. */
	if (io->session || s->on_full == FLEECE_ON_FULL_FAIL_WRITES) {
		io_set_error(io, BLK_STS_NOSPC);
		return false;
	}
	fleece_session_invalidate(s, "scratch device full");
	return true;
}

/*
 * Plan and start the copies chunks [first, end) need in sessions @ss, all
 * pinned by the caller. Consecutive chunks with the same needs whose slots
 * come out consecutive in every session share one kcopyd job.
 */
static void plan_copies(struct fleece_io *io, struct fleece_session **ss,
			unsigned int nr, u64 first, u64 end, need_fn need)
{
	struct fleece_dev *fd = io->fd;
	struct fleece_copy *cur = NULL;
	u32 slots[FLEECE_MAX_SESSIONS];
	u64 chunk;

	for (chunk = first; chunk < end && !io->status; chunk++) {
		struct fleece_session *who[FLEECE_MAX_SESSIONS];
		unsigned int i, n = 0;
		bool zero = false, extend;

		for (i = 0; i < nr; i++) {
			enum fleece_need what = need(ss[i], chunk);

			if (what == NEED_FAIL)
				io_set_error(io, BLK_STS_IOERR);
			if (what != NEED_COPY && what != NEED_ZERO)
				continue;
			zero = what == NEED_ZERO;
			who[n++] = ss[i];
		}
		if (io->status || !n)
			continue;

		extend = cur && cur->n == n && cur->zero == zero &&
			 cur->chunk + cur->count == chunk &&
			 !memcmp(cur->s, who, n * sizeof(who[0]));
		for (i = 0; i < n; i++) {
			u32 want = extend ? cur->slot[i] + cur->count : U32_MAX;

			if (fleece_scratch_take(who[i], chunk, want, &slots[i])) {
				if (!scratch_full(io, who[i]))
					break;
				/* Dropped: forget it for this chunk. */
				memmove(&who[i], &who[i + 1], (n - i - 1) * sizeof(who[0]));
				n--;
				i--;
				extend = false;
				continue;
			}
			if (slots[i] != want)
				extend = false;
		}
		if (io->status) {
			/* Undo what this chunk took; earlier runs still go. */
			while (i--)
				forget_slots(who[i], chunk, 1);
			break;
		}
		if (!n)
			continue;

		if (extend && cur->n == n) {
			cur->count++;
			continue;
		}
		if (cur)
			submit_copy(io, cur);
		cur = mempool_alloc(&fd->copy_pool, GFP_NOIO);
		cur->io = io;
		cur->chunk = chunk;
		cur->count = 1;
		cur->n = n;
		cur->zero = zero;
		cur->retry_end = 0;
		for (i = 0; i < n; i++) {
			cur->s[i] = who[i];
			cur->slot[i] = slots[i];
			atomic_inc(&who[i]->inflight);
		}
	}
	if (cur)
		submit_copy(io, cur);
}

/* Copies done: let the origin write go, or fail it. */
static void origin_copies_done(struct fleece_io *io)
{
	struct bio *bio = dm_bio_from_per_bio_data(io, sizeof(*io));

	fleece_rl_release(&io->fd->rl, &io->req);
	io->locked = false;
	if (io->status) {
		bio->bi_status = io->status;
		bio_endio(bio);
		return;
	}
	submit_bio_noacct(bio);
}

static void origin_write_work(struct work_struct *work)
{
	struct fleece_io *io = container_of(work, struct fleece_io, work);
	struct bio *bio = dm_bio_from_per_bio_data(io, sizeof(*io));
	struct fleece_session *ss[FLEECE_MAX_SESSIONS], *s;
	struct fleece_dev *fd = io->fd;
	unsigned int nr = 0, i;
	u64 first, end;

	fleece_chunk_range(fd, bio->bi_iter.bi_sector, bio_sectors(bio),
			   &first, &end);

	/* Pin the sessions: the view dtr waits for them to be unpinned. */
	rcu_read_lock();
	list_for_each_entry_rcu(s, &fd->sessions, list) {
		if (nr == FLEECE_MAX_SESSIONS)
			break;
		if (!fleece_session_needs_copy(s, first, end))
			continue;
		atomic_inc(&s->inflight);
		ss[nr++] = s;
	}
	rcu_read_unlock();

	atomic_set(&io->pending, 1);
	io->status = BLK_STS_OK;
	io->copies_done = origin_copies_done;
	plan_copies(io, ss, nr, first, end, origin_need);
	for (i = 0; i < nr; i++)
		session_unpin(ss[i]);
	io_put(io);
}

static void io_granted(struct fleece_rl_req *req)
{
	struct fleece_io *io = container_of(req, struct fleece_io, req);

	queue_work(io->fd->wq, &io->work);
}

int fleece_origin_write(struct fleece_dev *fd, struct bio *bio)
{
	struct fleece_io *io = dm_per_bio_data(bio, sizeof(*io));
	struct fleece_session *s;
	bool need = false;
	u64 first, end;

	fleece_chunk_range(fd, bio->bi_iter.bi_sector, bio_sectors(bio),
			   &first, &end);
	rcu_read_lock();
	list_for_each_entry_rcu(s, &fd->sessions, list) {
		if (fleece_session_needs_copy(s, first, end)) {
			need = true;
			break;
		}
	}
	rcu_read_unlock();
	if (!need)
		return DM_MAPIO_REMAPPED;

	io->fd = fd;
	io->session = NULL;
	io->locked = true;
	INIT_WORK(&io->work, origin_write_work);
	fleece_rl_req_init(&io->req, first, end, true, io_granted);
	/* Copies allocate and may sleep: they always run on the workqueue. */
	if (fleece_rl_acquire(&fd->rl, &io->req))
		queue_work(fd->wq, &io->work);
	return DM_MAPIO_SUBMITTED;
}

void fleece_view_prepare_write(struct fleece_io *io, u64 first, u64 end,
			       void (*done)(struct fleece_io *io))
{
	struct fleece_session *s = io->session;

	atomic_set(&io->pending, 1);
	io->status = BLK_STS_OK;
	io->copies_done = done;
	if (test_bit(FLEECE_SESSION_INVALID, &s->flags))
		io_set_error(io, BLK_STS_IOERR);
	else
		plan_copies(io, &s, 1, first, min(end, s->nr_chunks),
			    view_write_need);
	io_put(io);
}
