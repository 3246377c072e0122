// SPDX-License-Identifier: GPL-2.0
/*
 * backup-batch: what ends a batch of the backup, on a thread of its own
 * (handoff.c): fdatasync(), the read-back with --verify, and the release
 * of the batch's chunks on the view.
 *
 * The writer fills one batch while the one before is being ended, so the
 * view is read and the output written meanwhile; batches are ended one at
 * a time and in order, so what the view released is still a prefix of the
 * backup that is durable (and verified), the point --resume starts from.
 * With --verify each batch keeps its bytes to compare: two batches of
 * memory (2 x --batch).
 */
#include <errno.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "backup.h"
#include "fleecectl.h"
#include "handoff.h"
#include "sha256.h"
#include "util.h"

/*
 * The pieces of one batch, as read: for releasing, and with --verify their
 * bytes too, compared with what is read back (memcmp: exact, and no hash
 * to compute twice).
 */
struct batch {
	struct {
		uint64_t off;
		size_t len;
	} *p;
	unsigned int n, cap;
	uint64_t bytes;
	unsigned char *data;		/* --verify: the batch's bytes, in order */
	size_t data_cap;
};

struct backup_batches {
	struct handoff *h;
	struct batch t[2];
	unsigned int filling;		/* t[filling] is the writer's */
};

/* Release [off, off + len) on the view: its whole chunks. */
static int release_range(struct backup *b, uint64_t off, uint64_t len)
{
	uint64_t range[2] = { off, len };

	if (b->discard_broken || !len)
		return 0;
	if (!ioctl(b->view_fd, BLKDISCARD, range)) {
		b->released += len;
		return 0;
	}
	if (errno == EOPNOTSUPP) {
		msg_warn("backup %s: the view does not accept discards; "
			 "nothing will be released", b->view);
		b->discard_broken = 1;
		return 0;
	}
	return -errno;
}

/* Read the batch back and compare. Returns 0 or -1 (printed). */
static int verify_batch(struct backup *b, const struct batch *t)
{
	unsigned char hw[SHA256_DIGEST_SIZE], hg[SHA256_DIGEST_SIZE];
	char xw[65], xg[65];
	size_t at = 0;
	unsigned int i;
	int r;

	for (i = 0; i < t->n; at += t->p[i++].len) {
		r = backup_read_raw(b, t->p[i].off, t->p[i].len);
		if (r) {
			msg_fail(EXIT_IO, "backup %s: reading %s back at byte %llu failed: %s", b->view,
				 b->out, (unsigned long long)t->p[i].off, strerror(-r));
			return -1;
		}
		if (memcmp(t->data + at, b->vbuf, t->p[i].len)) {
			sha256_buf(t->data + at, t->p[i].len, hw);
			sha256_buf(b->vbuf, t->p[i].len, hg);
			sha256_hex(hw, xw);
			sha256_hex(hg, xg);
			msg_fail(EXIT_IO, "backup %s: verify failed: bytes %llu-%llu of %s differ from "
				 "the view (sha256 %s, view %s); not released", b->view,
				 (unsigned long long)t->p[i].off,
				 (unsigned long long)(t->p[i].off + t->p[i].len - 1), b->out, xg, xw);
			return -1;
		}
	}
	b->verified++;
	return 0;
}

/*
 * The handoff's job: the batch is written; make it durable, read it back
 * and compare (--verify), release it. Returns 0 or -1 (printed).
 */
static int end_batch(void *job, void *arg)
{
	struct backup *b = arg;
	struct batch *t = job;
	uint64_t off, len;
	unsigned int i, j;
	int r;

	r = backup_sync(b);
	if (r) {
		msg_fail(EXIT_IO, "backup %s: syncing %s failed: %s", b->view, b->out,
			 strerror(-r));
		return -1;
	}
	if (b->verify && verify_batch(b, t))
		return -1;
	/* Contiguous pieces go as one discard, in order. */
	for (i = 0; b->release && i < t->n; i = j) {
		off = t->p[i].off;
		len = t->p[i].len;
		for (j = i + 1; j < t->n && t->p[j].off == off + len; j++)
			len += t->p[j].len;
		r = release_range(b, off, len);
		if (r) {
			msg_err("backup %s: releasing bytes %llu-%llu failed: %s", b->view,
				(unsigned long long)off, (unsigned long long)(off + len - 1),
				strerror(-r));
			return -1;
		}
	}
	t->n = 0;
	t->bytes = 0;
	return 0;
}

int backup_batches_start(struct backup *b)
{
	struct backup_batches *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	r = handoff_start(&s->h, "fleece-batch", end_batch, b);
	if (r) {
		free(s);
		return r;
	}
	b->batches = s;
	return 0;
}

int backup_batches_add(struct backup *b, const struct copier_piece *p)
{
	struct batch *t = &b->batches->t[b->batches->filling];
	void *np;

	if (b->verify && t->bytes + p->len > t->data_cap) {
		np = realloc(t->data, t->bytes + p->len + IO_SIZE);
		if (!np)
			return -1;
		t->data = np;
		t->data_cap = t->bytes + p->len + IO_SIZE;
	}
	if (b->verify)
		memcpy(t->data + t->bytes, p->buf, p->len);
	if (t->n == t->cap) {
		np = realloc(t->p, (t->cap ? 2 * t->cap : 64) * sizeof(*t->p));
		if (!np)
			return -1;
		t->p = np;
		t->cap = t->cap ? 2 * t->cap : 64;
	}
	t->p[t->n].off = p->off;
	t->p[t->n].len = p->len;
	t->n++;
	t->bytes += p->len;
	return 0;
}

uint64_t backup_batches_filled(const struct backup *b)
{
	return b->batches->t[b->batches->filling].bytes;
}

int backup_batches_end(struct backup *b)
{
	struct backup_batches *s = b->batches;

	if (!s->t[s->filling].n)
		return 0;
	/* Waits for the batch before, which used the other buffer. */
	if (handoff_submit(s->h, &s->t[s->filling]))
		return -1;
	s->filling ^= 1;
	return 0;
}

int backup_batches_stop(struct backup *b, int finish)
{
	struct backup_batches *s = b->batches;
	int r = 0;

	if (!s)
		return 0;
	if (finish)
		r = backup_batches_end(b);
	if (handoff_wait(s->h))
		r = -1;
	handoff_stop(s->h);
	free(s->t[0].p);
	free(s->t[0].data);
	free(s->t[1].p);
	free(s->t[1].data);
	free(s);
	b->batches = NULL;
	return r;
}
