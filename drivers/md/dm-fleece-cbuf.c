// SPDX-License-Identifier: GPL-2.0
/*
 * The copy buffer: pages set aside when an origin device is first set up,
 * into which copy-before-write reads old chunks, so that the origin write
 * can go on before the copy reaches a slow scratch device. Allocated up
 * front so that the IO path never allocates pages; when the budget is in
 * use, copies go through kcopyd and writes wait for them, as without it.
 */
#include <linux/bio.h>
#include <linux/mm.h>
#include <linux/slab.h>

#include "dm-fleece.h"

int fleece_cbuf_init(struct fleece_cbuf *cb, unsigned int nr)
{
	spin_lock_init(&cb->lock);
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

	WARN_ON(cb->nr_free != cb->nr);
	for (i = 0; i < cb->nr_free; i++)
		__free_page(cb->pages[i]);
	kvfree(cb->pages);
	cb->pages = NULL;
	cb->nr = 0;
	cb->nr_free = 0;
}

bool fleece_cbuf_take(struct fleece_cbuf *cb, struct bio *bio, unsigned int len)
{
	unsigned int n = DIV_ROUND_UP(len, PAGE_SIZE), i;
	unsigned long flags;

	spin_lock_irqsave(&cb->lock, flags);
	if (cb->nr_free < n) {
		spin_unlock_irqrestore(&cb->lock, flags);
		return false;
	}
	for (i = 0; i < n; i++) {
		unsigned int part = min_t(unsigned int, len - i * PAGE_SIZE, PAGE_SIZE);

		__bio_add_page(bio, cb->pages[--cb->nr_free], part, 0);
	}
	spin_unlock_irqrestore(&cb->lock, flags);
	return true;
}

void fleece_cbuf_put(struct fleece_cbuf *cb, struct bio *bio)
{
	unsigned long flags;
	unsigned int i;

	spin_lock_irqsave(&cb->lock, flags);
	for (i = 0; i < bio->bi_vcnt; i++)
		cb->pages[cb->nr_free++] = bio->bi_io_vec[i].bv_page;
	spin_unlock_irqrestore(&cb->lock, flags);
}
