/* SPDX-License-Identifier: GPL-2.0 */
/*
 * handoff: one background thread that runs jobs in the order they are
 * handed over, one at a time, while the caller prepares the next.
 *
 * A backup ends each batch with work that does not need the thread that
 * writes: fdatasync(), reading the batch back (--verify), releasing it on
 * the view. Done in line, the writer waits for all of it and the view's
 * reads stop once the copier's ring is full. Handed off, the next batch is
 * written meanwhile; jobs still complete in order, so what is released is
 * still a durable prefix. At most one job waits while one runs: the caller
 * needs two buffers, never more.
 */
#ifndef FLEECECTL_HANDOFF_H
#define FLEECECTL_HANDOFF_H

/* A job: 0, or non-zero to fail it and refuse every later one. */
typedef int (*handoff_fn)(void *job, void *arg);

struct handoff;

/*
 * handoff_start() - start the thread that runs @fn(job, @arg) for each job,
 * named @name (at most 15 bytes: top -H, /proc/PID/task/TID/comm). Signals
 * are blocked in it. Returns 0 with *@h set, or -errno.
 */
int handoff_start(struct handoff **h, const char *name, handoff_fn fn, void *arg);

/*
 * handoff_submit() - wait until the job handed over before is done, then
 * hand over @job. Returns 0, or the first failed job's value (then @job is
 * not run, and neither is any later one).
 */
int handoff_submit(struct handoff *h, void *job);

/* handoff_wait() - wait until no job runs. Returns 0, or the first failure. */
int handoff_wait(struct handoff *h);

/* handoff_stop() - wait for the job that runs, stop the thread, free @h. */
void handoff_stop(struct handoff *h);

#endif
