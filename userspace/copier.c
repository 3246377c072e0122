// SPDX-License-Identifier: GPL-2.0
/*
 * copier: a ring of read buffers filled by reader threads, emptied in order
 * by one consumer. One mutex and one condition variable: the threads are
 * few and each wait is for a whole piece (a megabyte) to be read or used.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "copier.h"
#include "fullio.h"

#define IOPRIO_WHO_PROCESS 1	/* with who 0: the calling thread */

struct copier {
	struct copier_opts o;
	struct copier_extent *ext;
	unsigned int n_ext;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Under lock: */
	unsigned int cur_ext;		/* the next piece to read */
	uint64_t cur_pos;
	uint64_t issued;		/* pieces given to readers */
	uint64_t consumed;		/* pieces handed back by the consumer */
	int exhausted;			/* every piece was given to a reader */
	int stop;
	int ioprio_err;

	unsigned int nslots;
	struct copier_piece *slots;
	unsigned int nthreads;
	pthread_t threads[COPIER_MAX_JOBS];
};

/* Under lock: the next piece's place, or 0 when all were given out. */
static int take_piece(struct copier *c, uint64_t *off, size_t *len)
{
	const struct copier_extent *e;
	uint64_t end, next;

	while (c->cur_ext < c->n_ext) {
		e = &c->ext[c->cur_ext];
		end = e->off + e->len;
		if (c->cur_pos < e->off)
			c->cur_pos = e->off;
		if (c->cur_pos >= end) {
			c->cur_ext++;
			continue;
		}
		next = (c->cur_pos / c->o.piece + 1) * c->o.piece;
		if (next > end)
			next = end;
		*off = c->cur_pos;
		*len = (size_t)(next - c->cur_pos);
		c->cur_pos = next;
		return 1;
	}
	c->exhausted = 1;
	return 0;
}

static void *reader(void *arg)
{
	struct copier *c = arg;
	struct copier_piece *p;
	uint64_t off;
	size_t len;
	int err;

	if (c->o.ioprio >= 0 &&
	    syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, c->o.ioprio)) {
		pthread_mutex_lock(&c->lock);
		c->ioprio_err = -errno;
		pthread_mutex_unlock(&c->lock);
	}
	pthread_mutex_lock(&c->lock);
	for (;;) {
		/* A slot is free once the consumer handed back its last piece. */
		while (!c->stop && c->issued >= c->consumed + c->nslots)
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->stop)
			break;
		if (!take_piece(c, &off, &len)) {
			pthread_cond_broadcast(&c->cond);	/* the consumer may be done */
			break;
		}
		p = &c->slots[c->issued % c->nslots];
		p->seq = c->issued++;
		p->off = off;
		p->len = len;
		p->full = 0;
		pthread_mutex_unlock(&c->lock);

		err = pread_full(c->o.fd, p->buf, len, off);
		if (!err && c->o.hash && sha256_buf(p->buf, len, p->digest))
			err = -ENOMEM;

		pthread_mutex_lock(&c->lock);
		p->err = err;
		p->full = 1;
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void copier_free(struct copier *c)
{
	unsigned int i;

	if (c->slots)
		for (i = 0; i < c->nslots; i++)
			free(c->slots[i].buf);
	free(c->slots);
	free(c->ext);
	free(c);
}

int copier_start(struct copier **cp, const struct copier_opts *o,
		 const struct copier_extent *e, unsigned int n)
{
	struct copier *c;
	sigset_t all, old;
	unsigned int i;
	int r = 0;

	if (!o->jobs || o->jobs > COPIER_MAX_JOBS || !o->piece || o->piece % 4096)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->o = *o;
	c->nslots = 2 * o->jobs;
	c->ext = calloc(n ? n : 1, sizeof(*e));
	c->slots = calloc(c->nslots, sizeof(*c->slots));
	if (!c->ext || !c->slots) {
		r = -ENOMEM;
		goto fail;
	}
	memcpy(c->ext, e, n * sizeof(*e));
	c->n_ext = n;
	for (i = 0; i < c->nslots; i++) {
		if (posix_memalign((void **)&c->slots[i].buf, 4096, o->piece)) {
			r = -ENOMEM;
			goto fail;
		}
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);

	/* Signals go to the consumer, which decides what they stop. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 0; i < o->jobs; i++) {
		r = -pthread_create(&c->threads[i], NULL, reader, c);
		if (r)
			break;
		/* Told apart in top -H and by their I/O priority (test 077). */
		pthread_setname_np(c->threads[i], "fleece-read");
		c->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!c->nthreads) {
		pthread_mutex_destroy(&c->lock);
		pthread_cond_destroy(&c->cond);
		goto fail;
	}
	/* Fewer threads than asked read as well, only less at once. */
	*cp = c;
	return 0;
fail:
	copier_free(c);
	return r;
}

int copier_next(struct copier *c, struct copier_piece **p)
{
	struct copier_piece *s;
	int more;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		s = &c->slots[c->consumed % c->nslots];
		if (c->consumed < c->issued && s->seq == c->consumed && s->full) {
			*p = s;
			more = 1;
			break;
		}
		if (c->consumed == c->issued && c->exhausted) {
			more = 0;
			break;
		}
		pthread_cond_wait(&c->cond, &c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return more;
}

void copier_put(struct copier *c, struct copier_piece *p)
{
	pthread_mutex_lock(&c->lock);
	p->full = 0;
	c->consumed++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

int copier_stop(struct copier *c)
{
	unsigned int i;
	int r;

	pthread_mutex_lock(&c->lock);
	c->stop = 1;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	for (i = 0; i < c->nthreads; i++)
		pthread_join(c->threads[i], NULL);
	r = c->ioprio_err;
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	copier_free(c);
	return r;
}
