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
 * Buffered copies (the copy buffer, dm-fleece-cbuf.c): step 2 reads the old
 * data into the buffer, and the write is submitted as soon as every copy it
 * waits for has been read; each copy then writes to the sessions' slots on
 * its own. The chunks are settled once read (later origin writes to them go
 * straight on) but stay locked until the last of those writes is done (the
 * lock is handed from the write to a struct fleece_hold, as the write may
 * complete first), so view reads, which always take the lock, still find
 * them either not copied and unchanged, or done. A slow scratch then slows
 * the origin only once the buffer is full: a copy then waits in line for
 * pages, which come back as soon as the oldest buffered copy lands (not
 * behind all of them, as a kcopyd copy queued at the scratch device would).
 *
 * Copies of neighbouring chunks meet in the block layer: origin writes
 * waiting for copies are queued on the device and started by one work item
 * under one plug, and so are the scratch writes of buffered copies once
 * read, so that a sequential writer's copies reach the disks merged into
 * large requests (a work item per bio would send each chunk on its own).
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
#include <linux/wait_bit.h>

#include "dm-fleece.h"

/* Entries a work item takes per run (see take_run()). */
#define FLEECE_RUN_MAX 64

/**
 * struct fleece_copy - one kcopyd job: a run of chunks to every session
 * that needs them, or zeroes to one session's slots; or the same through
 * the copy buffer.
 * @io: the bio waiting for it; NULL once a buffered copy has let it go.
 * @fd: the origin state.
 * @chunk: first chunk.
 * @count: chunks in the run.
 * @n: sessions.
 * @zero: write zeroes instead of copying (released chunks a view writes).
 * @s: the sessions, each pinned by its inflight count.
 * @slot: first slot of the run in each session's scratch.
 * @retry_end: 0, or, after a run failed to read, one past its last chunk:
 *	the job copies the run again one chunk at a time.
 * @retry: starts the next of those copies; for a buffered copy, its end
 *	once written, on the workqueue.
 * @hold: a buffered copy: keeps the chunks locked until it is written.
 * @rbio: a buffered copy: its read, whose pages hold the old data.
 * @status: a buffered copy: the read's status.
 * @wpending: a buffered copy: its writes in flight, plus one.
 * @write_err: a buffered copy: bit i set when the write to @s[i] failed.
 * @wait: a buffered copy: its request for pages of the buffer.
 * @node: a buffered copy, read: on fleece_dev.reads_done, then on
 *	fleece_dev.to_scratch.
 */
struct fleece_copy {
	struct fleece_io *io;
	struct fleece_dev *fd;
	u64 chunk;
	u64 count;
	unsigned int n;
	bool zero;
	struct fleece_session *s[FLEECE_MAX_SESSIONS];
	u32 slot[FLEECE_MAX_SESSIONS];
	u64 retry_end;
	struct work_struct retry;
	struct fleece_hold *hold;
	struct bio *rbio;
	blk_status_t status;
	atomic_t wpending;
	unsigned long write_err;
	struct fleece_cbuf_wait wait;
	struct llist_node node;
};

/**
 * struct fleece_cwrite - a buffered copy's write to one session's scratch,
 * around its bio (the front pad of fleece_dev.cws).
 * @c: the copy.
 * @i: the session's index in @c.
 * @bio: the write; last, as the bio_set needs.
 *
 * The index says whose write failed. The bio's device cannot: a driver
 * under the scratch device may point the bio at its own lower device before
 * completing it (md linear and raid0, NVMe multipath do).
 */
struct fleece_cwrite {
	struct fleece_copy *c;
	unsigned int i;
	struct bio bio;
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

/* The front pad of fleece_dev.cws: struct fleece_cwrite. */
unsigned int fleece_cbw_write_pad(void)
{
	return offsetof(struct fleece_cwrite, bio);
}

int fleece_copy_pool_init(mempool_t *pool)
{
	return mempool_init_slab_pool(pool, 16, copy_cache);
}

/* The session may be freed as soon as its count drops to zero. */
static void session_unpin(struct fleece_session *s)
{
	if (atomic_dec_and_test(&s->inflight))
		wake_up_var(&s->inflight);
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

/* The origin sectors of @c's run. */
static void copy_extent(struct fleece_copy *c, sector_t *start, sector_t *len)
{
	struct fleece_dev *fd = c->fd;
	sector_t dev_size = bdev_nr_sectors(fd->bdev);

	*start = c->chunk << fd->chunk_shift;
	*len = c->count << fd->chunk_shift;
	/* The last chunk of the origin may be short. */
	if (*start + *len > dev_size)
		*len = dev_size - *start;
}

/* Start the kcopyd job of @c; its completion is copy_complete(). */
static void start_copy(struct fleece_copy *c)
{
	struct fleece_dev *fd = c->fd;
	struct dm_io_region from, to[FLEECE_MAX_SESSIONS];
	sector_t start, len;
	unsigned int i;

	copy_extent(c, &start, &len);

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

/*
 * Buffered copies
 */

static void hold_put(struct fleece_hold *hold)
{
	struct fleece_dev *fd = hold->fd;

	if (!atomic_dec_and_test(&hold->refs))
		return;
	fleece_rl_release(&fd->rl, &hold->req);
	mempool_free(hold, &fd->hold_pool);
}

static void hold_never_granted(struct fleece_rl_req *req)
{
	/* Only ever handed a held range, never queued. */
	WARN_ON_ONCE(1);
}

/* The pages back to the buffer, the read freed. */
static void buffered_free(struct fleece_copy *c)
{
	fleece_cbuf_put(&c->fd->cbuf, c->rbio);
	bio_put(c->rbio);
	c->rbio = NULL;
}

static void buffered_write_done(struct work_struct *work)
{
	struct fleece_copy *c = container_of(work, struct fleece_copy, retry);

	buffered_free(c);
	copy_complete(0, READ_ONCE(c->write_err), c);
}

static void buffered_write_put(struct fleece_copy *c)
{
	if (!atomic_dec_and_test(&c->wpending))
		return;
	/* copy_complete() frees slots and queues events: not from irq. */
	INIT_WORK(&c->retry, buffered_write_done);
	queue_work(c->fd->done_wq, &c->retry);
}

static void buffered_write_endio(struct bio *bio)
{
	struct fleece_cwrite *w = container_of(bio, struct fleece_cwrite, bio);
	struct fleece_copy *c = w->c;

	if (bio->bi_status)
		set_bit(w->i, &c->write_err);
	bio_put(bio);
	buffered_write_put(c);
}

/* Write the read data to the slot of session @si of @c. */
static void buffered_write(struct fleece_copy *c, unsigned int si)
{
	struct bio *rbio = c->rbio, *bio;
	struct fleece_cwrite *w;
	unsigned int i;

	bio = bio_alloc_bioset(c->s[si]->scratch_dev->bdev, rbio->bi_vcnt,
			       REQ_OP_WRITE, GFP_NOIO, &c->fd->cws);
	w = container_of(bio, struct fleece_cwrite, bio);
	w->c = c;
	w->i = si;
	bio->bi_iter.bi_sector = (sector_t)c->slot[si] << c->fd->chunk_shift;
	for (i = 0; i < rbio->bi_vcnt; i++)
		__bio_add_page(bio, rbio->bi_io_vec[i].bv_page,
			       rbio->bi_io_vec[i].bv_len,
			       rbio->bi_io_vec[i].bv_offset);
	bio->bi_end_io = buffered_write_endio;
	submit_bio_noacct(bio);
}

/*
 * A run of at most FLEECE_RUN_MAX entries of @head, oldest first, those
 * left over from the last run before any newer; what is left now stays in
 * *@left, and @work runs again while anything is left or newer. Bounded
 * so that one device's work item does not hold up the others on its CPU.
 * Only @work calls this, and a work item never runs twice at once.
 */
static struct llist_node *take_run(struct workqueue_struct *wq, struct llist_head *head,
				   struct llist_node **left, struct work_struct *work)
{
	struct llist_node *first, *n;
	unsigned int i;

	if (!*left)
		*left = llist_reverse_order(llist_del_all(head));
	first = *left;
	for (n = first, i = 1; n && n->next && i < FLEECE_RUN_MAX; i++)
		n = n->next;
	*left = n ? n->next : NULL;
	if (n)
		n->next = NULL;
	/*
	 * Newer entries may wait on @head too: the add that found it empty
	 * queued the work while it was pending, which counted for nothing.
	 */
	if (*left || !llist_empty(head))
		queue_work(wq, work);
	return first;
}

/*
 * The old data of a run of copies is in the buffer: let the origin writes
 * go as far as these copies are concerned, and hand the copies to
 * to_scratch_work(). Copies that failed to read go through kcopyd instead,
 * which copies each run again chunk by chunk and loses only what cannot be
 * read.
 *
 * The scratch writes are not submitted here: submitting can sleep until
 * the scratch device has a free request, which a slow scratch makes the
 * common case once the buffer holds more copies than its queue does. Here,
 * that sleep would hold up every origin write whose copy is read after,
 * however much room the buffer still has.
 */
static void reads_done_work(struct work_struct *work)
{
	struct fleece_dev *fd = container_of(work, struct fleece_dev, reads_done_work);
	struct llist_node *run = take_run(fd->done_wq, &fd->reads_done, &fd->reads_left,
					 work);
	struct llist_node *ok = NULL, *ok_last = NULL;
	struct fleece_copy *c, *next;
	struct blk_plug plug;
	struct fleece_io *io;
	unsigned int i;
	u64 k;

	blk_start_plug(&plug);
	llist_for_each_entry_safe(c, next, run, node) {
		if (c->status) {
			buffered_free(c);
			hold_put(c->hold);
			c->hold = NULL;
			start_copy(c);
			continue;
		}
		/*
		 * The old data is held: later origin writes to these chunks
		 * need no copy and may go straight on, rather than wait behind
		 * the scratch device's queue for the lock. View reads,
		 * releases and view writes still wait for it, which keeps
		 * them off scratch until it is written.
		 */
		for (i = 0; i < c->n; i++)
			for (k = 0; k < c->count; k++)
				set_bit(c->chunk + k, c->s[i]->settled);
		c->write_err = 0;
		/* Plus one: @c stays until to_scratch_work() is done with it. */
		atomic_set(&c->wpending, c->n + 1);
		/* Newest first, as llist_add() would have left them. */
		c->node.next = ok;
		ok = &c->node;
		if (!ok_last)
			ok_last = ok;
		/* The write may complete, and @io go, before the copy's writes do. */
		io = c->io;
		c->io = NULL;
		io_put(io);
	}
	blk_finish_plug(&plug);
	if (ok && llist_add_batch(ok, ok_last, &fd->to_scratch))
		queue_work(fd->done_wq, &fd->to_scratch_work);
}

/*
 * Write a run of buffered copies to every session's slot. In passes, one
 * per session, so that each scratch device's requests are neighbours in
 * the plug, where the block layer merges them. May sleep for the scratch
 * devices' requests: only the copies behind these wait for that, and the
 * buffer's pages (which come back as these land) bound how many there are.
 */
static void to_scratch_work(struct work_struct *work)
{
	struct fleece_dev *fd = container_of(work, struct fleece_dev, to_scratch_work);
	struct llist_node *run = take_run(fd->done_wq, &fd->to_scratch,
					 &fd->to_scratch_left, work);
	struct fleece_copy *c, *next;
	struct blk_plug plug;
	unsigned int i, most = 0;

	llist_for_each_entry(c, run, node)
		most = max(most, c->n);
	blk_start_plug(&plug);
	for (i = 0; i < most; i++)
		llist_for_each_entry(c, run, node)
			if (i < c->n)
				buffered_write(c, i);
	llist_for_each_entry_safe(c, next, run, node)
		buffered_write_put(c);
	blk_finish_plug(&plug);
}

static void buffered_read_endio(struct bio *bio)
{
	struct fleece_copy *c = bio->bi_private;
	struct fleece_dev *fd = c->fd;

	c->status = bio->bi_status;
	/* The first on an empty list queues the work, which takes them all. */
	if (llist_add(&c->node, &fd->reads_done))
		queue_work(fd->done_wq, &fd->reads_done_work);
}

/* A copy that waited for pages of the buffer has them: read. */
static void buffered_ready(struct fleece_cbuf_wait *w)
{
	submit_bio_noacct(container_of(w, struct fleece_copy, wait)->rbio);
}

/*
 * Read @c's run into the copy buffer, now or when pages are free, if the
 * copy is one an origin write waits for and the buffer can ever hold it.
 * Returns false to copy through kcopyd instead.
 */
static bool start_buffered(struct fleece_io *io, struct fleece_copy *c)
{
	struct fleece_dev *fd = io->fd;
	struct fleece_hold *hold;
	sector_t start, len;
	struct bio *bio;

	if (c->zero || io->session)
		return false;
	copy_extent(c, &start, &len);
	if (DIV_ROUND_UP(len, PAGE_SECTORS) > BIO_MAX_VECS ||
	    !fleece_cbuf_fits(&fd->cbuf, len << SECTOR_SHIFT))
		return false;
	bio = bio_alloc_bioset(fd->bdev, DIV_ROUND_UP(len, PAGE_SECTORS),
			       REQ_OP_READ, GFP_NOIO, &fd->cbs);
	hold = io->hold;
	if (!hold) {
		hold = mempool_alloc(&fd->hold_pool, GFP_NOIO);
		hold->fd = fd;
		atomic_set(&hold->refs, 1);
		fleece_rl_req_init(&hold->req, io->req.start, io->req.end, true,
				   hold_never_granted);
		io->hold = hold;
	}
	atomic_inc(&hold->refs);
	c->hold = hold;
	c->rbio = bio;
	bio->bi_iter.bi_sector = start;
	bio->bi_end_io = buffered_read_endio;
	bio->bi_private = c;
	/* All set up first: once in line, it may start on another CPU. */
	c->wait.bio = bio;
	c->wait.len = len << SECTOR_SHIFT;
	c->wait.ready = buffered_ready;
	if (fleece_cbuf_take(&fd->cbuf, &c->wait))
		submit_bio_noacct(bio);
	return true;
}

static void submit_copy(struct fleece_io *io, struct fleece_copy *c)
{
	atomic_inc(&io->pending);
	if (!start_buffered(io, c))
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
	queue_work(c->fd->done_wq, &c->retry);
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
 * kcopyd's completion, in its worker, or a buffered copy's in done_wq
 * (buffered_write_done()): process context either way. It may allocate
 * with GFP_NOIO and submit bios, as @io's copies_done does once the last
 * copy is in (a view write's pieces go out from here), but must never wait
 * for another copy of this client: the same worker completes those. A run
 * that fails to read is copied again chunk by chunk with the same job, one
 * after the other (an error path: no allocation, and the sessions stay
 * pinned), so that only the chunks that cannot be read are lost.
 */
static void copy_complete(int read_err, unsigned long write_err, void *context)
{
	struct fleece_copy *c = context;
	struct fleece_io *io = c->io;
	struct fleece_dev *fd = c->fd;
	struct fleece_hold *hold = c->hold;
	/* Buffered copies are an origin write's, and read without error. */
	bool view_write = !hold && io->session;
	struct fleece_session *ss[FLEECE_MAX_SESSIONS];
	unsigned int i, n;
	u64 k;

	if (read_err && c->count > 1) {
		c->retry_end = c->chunk + c->count;
		retry_chunk(c, c->chunk);
		return;
	}
	for (i = 0; i < c->n; i++) {
		struct fleece_session *s = c->s[i];

		if (read_err && view_write) {
			/* A writable view's own write: it fails, nothing is lost. */
			forget_slots(s, c->chunk, c->count);
		} else if (read_err) {
			chunk_lost(s, c->chunk);
		} else if (write_err & BIT(i)) {
			forget_slots(s, c->chunk, c->count);
			/*
			 * A writable view's own write fails instead: its chunks
			 * are as they were (not copied, or released), and an
			 * origin write copies them again when it needs to.
			 */
			if (!view_write)
				fleece_session_invalidate(s, "scratch write error");
		} else {
			for (k = 0; k < c->count; k++)
				set_bit(c->chunk + k, s->settled);
			atomic64_add(c->count, &s->preserved);
			if (!c->zero)
				atomic64_add(c->count, &s->copied);
		}
	}
	if (read_err && view_write) {
		DMERR_LIMIT("%pg: origin read error preserving chunk %llu: view write failed",
			    fd->bdev, c->chunk);
		io_set_error(io, BLK_STS_IOERR);
	} else if (read_err) {
		DMERR_LIMIT("%pg: chunk %llu unreadable, lost to %u view(s); the write goes on",
			    fd->bdev, c->chunk, c->n);
	} else if (write_err && view_write) {
		DMERR_LIMIT("%pg: scratch write error preparing chunk %llu: view write failed",
			    fd->bdev, c->chunk);
		io_set_error(io, BLK_STS_IOERR);
	}
	if (c->retry_end && c->chunk + 1 < c->retry_end) {
		retry_chunk(c, c->chunk + 1);
		return;
	}
	/*
	 * The sessions last: once unpinned, a view's dtr may go on and drop
	 * the last reference to @fd, whose pools these use.
	 */
	n = c->n;
	memcpy(ss, c->s, n * sizeof(ss[0]));
	mempool_free(c, &fd->copy_pool);
	/* A buffered copy let its write go when it was read. */
	if (hold)
		hold_put(hold);
	else
		io_put(io);
	for (i = 0; i < n; i++)
		session_unpin(ss[i]);
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
		cur->fd = fd;
		cur->hold = NULL;
		cur->rbio = NULL;
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

/*
 * Copies done, or read into the buffer: let the origin write go, or fail
 * it. Buffered copies still on their way to scratch keep the chunks locked.
 */
static void origin_copies_done(struct fleece_io *io)
{
	struct bio *bio = dm_bio_from_per_bio_data(io, sizeof(*io));
	struct fleece_hold *hold = io->hold;

	if (hold) {
		fleece_rl_transfer(&io->fd->rl, &io->req, &hold->req);
		io->hold = NULL;
		/*
		 * The write's own reference, taken at the start, before the
		 * write goes: once it has, the origin and every view may be
		 * gone, and @fd with them. If it is the last, the copies are
		 * on scratch and the chunks settled: the range may go first,
		 * as it does without a buffer.
		 */
		hold_put(hold);
	} else {
		fleece_rl_release(&io->fd->rl, &io->req);
	}
	io->locked = false;
	if (io->status) {
		bio->bi_status = io->status;
		bio_endio(bio);
	} else {
		submit_bio_noacct(bio);
	}
}

static void origin_write_start(struct fleece_io *io)
{
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

/*
 * Every origin write queued since the last run, in the order queued: their
 * copies' reads go out under one plug, where the reads of neighbouring
 * chunks merge.
 */
static void writes_work(struct work_struct *work)
{
	struct fleece_dev *fd = container_of(work, struct fleece_dev, writes_work);
	struct llist_node *run = take_run(fd->wq, &fd->writes, &fd->writes_left, work);
	struct fleece_io *io, *next;
	struct blk_plug plug;

	blk_start_plug(&plug);
	llist_for_each_entry_safe(io, next, run, wnode)
		origin_write_start(io);
	blk_finish_plug(&plug);
}

/* Copies allocate and may sleep: they always start on the workqueue. */
static void queue_origin_write(struct fleece_io *io)
{
	struct fleece_dev *fd = io->fd;

	if (llist_add(&io->wnode, &fd->writes))
		queue_work(fd->wq, &fd->writes_work);
}

static void io_granted(struct fleece_rl_req *req)
{
	queue_origin_write(container_of(req, struct fleece_io, req));
}

void fleece_cbw_dev_init(struct fleece_dev *fd)
{
	init_llist_head(&fd->writes);
	fd->writes_left = NULL;
	INIT_WORK(&fd->writes_work, writes_work);
	init_llist_head(&fd->reads_done);
	fd->reads_left = NULL;
	INIT_WORK(&fd->reads_done_work, reads_done_work);
	init_llist_head(&fd->to_scratch);
	fd->to_scratch_left = NULL;
	INIT_WORK(&fd->to_scratch_work, to_scratch_work);
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
	io->hold = NULL;
	io->locked = true;
	fleece_rl_req_init(&io->req, first, end, true, io_granted);
	if (fleece_rl_acquire(&fd->rl, &io->req))
		queue_origin_write(io);
	return DM_MAPIO_SUBMITTED;
}

void fleece_view_prepare_write(struct fleece_io *io, u64 first, u64 end,
			       void (*done)(struct fleece_io *io))
{
	struct fleece_session *s = io->session;

	atomic_set(&io->pending, 1);
	io->status = BLK_STS_OK;
	io->hold = NULL;
	io->copies_done = done;
	if (test_bit(FLEECE_SESSION_INVALID, &s->flags))
		io_set_error(io, BLK_STS_IOERR);
	else
		plan_copies(io, &s, 1, first, min(end, s->nr_chunks),
			    view_write_need);
	io_put(io);
}
