// SPDX-License-Identifier: GPL-2.0
/*
 * handoff: a slot for one job, a thread that empties it. One mutex and one
 * condition variable: there are two threads, and each wait is for a whole
 * job (a batch of megabytes) to be run or handed over.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "handoff.h"

struct handoff {
	handoff_fn fn;
	void *arg;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* Under lock: */
	void *job;			/* handed over, not yet done */
	int failed;			/* the first failed job's value */
	int stop;
};

static void *run(void *arg)
{
	struct handoff *h = arg;
	void *job;
	int r;

	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (!h->job && !h->stop)
			pthread_cond_wait(&h->cond, &h->lock);
		if (!h->job)
			break;
		job = h->job;
		pthread_mutex_unlock(&h->lock);

		r = h->fn(job, h->arg);

		pthread_mutex_lock(&h->lock);
		if (r && !h->failed)
			h->failed = r;
		h->job = NULL;
		pthread_cond_broadcast(&h->cond);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int handoff_start(struct handoff **hp, const char *name, handoff_fn fn, void *arg)
{
	struct handoff *h;
	sigset_t all, old;
	int r;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->fn = fn;
	h->arg = arg;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	/* Signals go to the caller, which decides what they stop. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = -pthread_create(&h->thread, NULL, run, h);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		pthread_mutex_destroy(&h->lock);
		pthread_cond_destroy(&h->cond);
		free(h);
		return r;
	}
	pthread_setname_np(h->thread, name);
	*hp = h;
	return 0;
}

/* Under lock: wait until the slot is empty; the first failure, or 0. */
static int wait_idle(struct handoff *h)
{
	while (h->job)
		pthread_cond_wait(&h->cond, &h->lock);
	return h->failed;
}

int handoff_submit(struct handoff *h, void *job)
{
	int r;

	pthread_mutex_lock(&h->lock);
	r = wait_idle(h);
	if (!r) {
		h->job = job;
		pthread_cond_broadcast(&h->cond);
	}
	pthread_mutex_unlock(&h->lock);
	return r;
}

int handoff_wait(struct handoff *h)
{
	int r;

	pthread_mutex_lock(&h->lock);
	r = wait_idle(h);
	pthread_mutex_unlock(&h->lock);
	return r;
}

void handoff_stop(struct handoff *h)
{
	pthread_mutex_lock(&h->lock);
	wait_idle(h);
	h->stop = 1;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h);
}
