// SPDX-License-Identifier: GPL-2.0
/*
 * The copy buffer: pages set aside when an origin device is first set up,
 * into which copy-before-write reads old chunks, so that the origin write
 * can go on before the copy reaches a slow scratch device. Allocated up
 * front so that the IO path never allocates pages.
 *
 * When the buffer is in use, a copy waits in line for pages, first come
 * first served, rather than going through kcopyd: a kcopyd copy would reach
 * a slow scratch behind every buffered copy before it, while pages free up
 * as soon as the first of those lands.
 */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/mm.h>
#include <linux/slab.h>

#include "dm-fleece.h"

static void cbuf_work(struct work_struct *work);

int fleece_cbuf_init(struct fleece_cbuf *cb, unsigned int nr,
		     struct workqueue_struct *wq)
{
	spin_lock_init(&cb->lock);
	INIT_LIST_HEAD(&cb->waiters);
	INIT_WORK(&cb->work, cbuf_work);
	cb->wq = wq;
	cb->nr = 0;
	cb->nr_free = 0;
	cb->pages = NULL;
	if (!nr)
		return 0;
	cb->pages = kvcalloc(nr, sizeof(*cb->pages), GFP_KERNEL);
	if (!cb->pages)
		return -ENOMEM;
	for (cb->nr = 0; cb->nr < nr; cb->nr++) {
		cb->pages[cb->nr] = alloc_page(GFP_KERNEL);
		if (!cb->pages[cb->nr]) {
			cb->nr_free = cb->nr;
			fleece_cbuf_exit(cb);
			return -ENOMEM;
		}
	}
	cb->nr_free = cb->nr;
	return 0;
}

void fleece_cbuf_exit(struct fleece_cbuf *cb)
{
	unsigned int i;

	cancel_work_sync(&cb->work);
	WARN_ON(cb->nr_free != cb->nr || !list_empty(&cb->waiters));
	for (i = 0; i < cb->nr_free; i++)
		__free_page(cb->pages[i]);
	kvfree(cb->pages);
	cb->pages = NULL;
	cb->nr = 0;
	cb->nr_free = 0;
}

static unsigned int pages_for(unsigned int len)
{
	return DIV_ROUND_UP(len, PAGE_SIZE);
}

/* Give @w's bio its pages; under the lock, with enough free. */
static void give_pages(struct fleece_cbuf *cb, struct fleece_cbuf_wait *w)
{
	unsigned int n = pages_for(w->len), i;

	lockdep_assert_held(&cb->lock);
	for (i = 0; i < n; i++) {
		unsigned int part = min_t(unsigned int, w->len - i * PAGE_SIZE, PAGE_SIZE);

		__bio_add_page(w->bio, cb->pages[--cb->nr_free], part, 0);
	}
}

bool fleece_cbuf_fits(struct fleece_cbuf *cb, unsigned int len)
{
	return cb->nr && pages_for(len) <= cb->nr;
}

bool fleece_cbuf_take(struct fleece_cbuf *cb, struct fleece_cbuf_wait *w)
{
	unsigned long flags;
	bool now;

	spin_lock_irqsave(&cb->lock, flags);
	/* Nobody overtakes a copy already waiting. */
	now = list_empty(&cb->waiters) && cb->nr_free >= pages_for(w->len);
	if (now)
		give_pages(cb, w);
	else
		list_add_tail(&w->node, &cb->waiters);
	spin_unlock_irqrestore(&cb->lock, flags);
	return now;
}

void fleece_cbuf_put(struct fleece_cbuf *cb, struct bio *bio)
{
	unsigned long flags;
	unsigned int i;
	bool kick;

	spin_lock_irqsave(&cb->lock, flags);
	for (i = 0; i < bio->bi_vcnt; i++)
		cb->pages[cb->nr_free++] = bio->bi_io_vec[i].bv_page;
	kick = !list_empty(&cb->waiters);
	spin_unlock_irqrestore(&cb->lock, flags);
	if (kick)
		queue_work(cb->wq, &cb->work);
}

/* Start the waiting copies the free pages are enough for, in order. */
static void cbuf_work(struct work_struct *work)
{
	struct fleece_cbuf *cb = container_of(work, struct fleece_cbuf, work);
	struct fleece_cbuf_wait *w;
	struct blk_plug plug;

	/* The reads of neighbouring chunks merge. */
	blk_start_plug(&plug);
	for (;;) {
		spin_lock_irq(&cb->lock);
		w = list_first_entry_or_null(&cb->waiters, struct fleece_cbuf_wait, node);
		if (!w || cb->nr_free < pages_for(w->len)) {
			spin_unlock_irq(&cb->lock);
			break;
		}
		list_del_init(&w->node);
		give_pages(cb, w);
		spin_unlock_irq(&cb->lock);
		w->ready(w);
	}
	blk_finish_plug(&plug);
}
