/* SPDX-License-Identifier: GPL-2.0 */
/*
 * copier: reads extents of a device with several reads in flight and hands
 * the pieces to one consumer, in order.
 *
 * A backup's time goes into reading the view; one synchronous read at a
 * time leaves the disk idle between requests, and the write of one piece
 * waits for the read of the next. Here @jobs threads read (and hash) ahead
 * into a ring of buffers, up to two per thread, while the consumer writes
 * what they read, in extent order: the output may be a pipe, and a backup
 * releases only a prefix that is durable.
 */
#ifndef FLEECECTL_COPIER_H
#define FLEECECTL_COPIER_H

#include <stddef.h>
#include <stdint.h>

#include "sha256.h"

#define COPIER_MAX_JOBS 64

struct copier_extent {
	uint64_t off;
	uint64_t len;
};

struct copier_piece {
	uint64_t off;			/* in the device */
	size_t len;
	unsigned char *buf;		/* 4 KiB aligned (O_DIRECT) */
	int err;			/* 0, or the read's -errno */
	unsigned char digest[SHA256_DIGEST_SIZE];	/* with .hash */
	/* The copier's own. */
	uint64_t seq;
	int full;
};

struct copier_opts {
	int fd;				/* read from (the view) */
	unsigned int jobs;		/* reader threads, 1..COPIER_MAX_JOBS */
	size_t piece;			/* bytes per read; a multiple of 4 KiB */
	int hash;			/* sha256 of each piece, by its reader */
	int ioprio;			/* the readers' ioprio_set() value; -1: inherit */
};

struct copier;

/*
 * copier_start() - start reading @n extents (in that order; each is read in
 * pieces that end at multiples of @o->piece or at the extent's end).
 * The extents are copied; signals are blocked in the reader threads.
 * Returns 0 with *@cp set, or -errno.
 */
int copier_start(struct copier **cp, const struct copier_opts *o,
		 const struct copier_extent *e, unsigned int n);

/*
 * copier_next() - wait for the next piece in order.
 * Returns 1 with *@p set (hand it back with copier_put()), 0 when every
 * piece was handed out. A piece whose read failed has ->err set.
 */
int copier_next(struct copier *c, struct copier_piece **p);

/* copier_put() - the consumer is done with @p: its buffer reads ahead again. */
void copier_put(struct copier *c, struct copier_piece *p);

/*
 * copier_stop() - stop reading (pieces not handed out are dropped), wait for
 * the readers and free @c. Always called, after the last piece or not.
 * Returns 0, or -errno when the readers could not be given @o->ioprio.
 */
int copier_stop(struct copier *c);

#endif
