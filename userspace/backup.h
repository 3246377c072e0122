/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The reference backup agent's parts: backup.c (the command and the copy),
 * backup-out.c (the image file, device or stream written), backup-resume.c
 * (what an interrupted backup leaves to continue from).
 */
#ifndef FLEECECTL_BACKUP_H
#define FLEECECTL_BACKUP_H

#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>

#include "copier.h"
#include "discover.h"
#include "manifest.h"
#include "progress.h"
#include "throttle.h"

#define IO_SIZE (1024 * 1024)		/* one read of the view */
#define PARTIAL_SUFFIX ".fleece-partial"	/* an image being written */

struct backup {
	const char *view;		/* dm name */
	const char *to;			/* --to; "-" for standard output */
	const char *changed;		/* --changed BITMAP */
	const char *base;		/* --base IMAGE */
	int release, verify, quiet, commit;
	int force;			/* --force */
	int resume;			/* --resume */
	int locked_out;			/* another backup's lock refused it: touch nothing */
	int forced_zeroes;		/* --force over released chunks: never committed */
	int overwrite;			/* an existing image is updated */
	uint64_t batch;
	unsigned int jobs;		/* --jobs: reads in flight */
	int ioprio;			/* the readers' ioprio; -1: inherit */

	int view_fd;
	int out_fd;
	int verify_fd;
	int verify_cached;		/* verify_fd is not O_DIRECT */
	int out_is_dev;
	int out_is_pipe;		/* --to -: in order, every byte, no sync */
	int qcow2;			/* --format qcow2 (backup-qcow2.c) */
	struct qcow2 *q;		/* its writer, until finished */
	const char *out;		/* the file written: partial, or the device */
	char final[PATH_MAX];		/* an image file's name once complete */
	char partial[PATH_MAX];		/* final + PARTIAL_SUFFIX */
	const char *from;		/* copied in first: --base, or final */
	int partial_ours;		/* created and locked: ours to remove */
	int renamed;			/* partial is final now */
	int final_existed;		/* and is replaced only when complete */
	struct stat out_st;		/* what was opened as the output */
	uint64_t size;
	uint64_t chunk;			/* bytes */
	unsigned char *vbuf;		/* for reading back */
	struct backup_batches *batches;	/* during the copy (backup-batch.c) */

	uint64_t skipped;		/* bytes a resumed backup did not copy again */
	uint64_t done;			/* bytes read from the view */
	uint64_t written;
	uint64_t holes;
	unsigned int verified;		/* batches */
	uint64_t released;		/* bytes discarded */
	int discard_broken;
	struct progress prog;
	struct throttle limit;		/* --rate-limit */

	/* The manifest (manifest.h): beside an image file, or --manifest. */
	int want_manifest;
	const char *manifest_opt;	/* --manifest FILE */
	char manifest_path[PATH_MAX];
	struct manifest man;
	unsigned char *touched;		/* per manifest block: written here */
};

/* backup-out.c */

/*
 * backup_open_output() - check and open what b->to names (a device, an image
 * file written as its partial name, or standard output), copy the previous
 * image in first when there is one, open it for reading back with --verify.
 * With b->resume, the partial image is taken as it is. Returns 0 or -1
 * (printed).
 */
int backup_open_output(struct backup *b, const struct fl_view *v);
/* Write a piece: to a pipe or device every byte, to a file all but zeroes. */
int backup_write(struct backup *b, const unsigned char *p, size_t len, uint64_t off);
/* Make what was written durable (not for a pipe). Returns 0 or -errno. */
int backup_sync(struct backup *b);
/* Read back @len <= IO_SIZE bytes at @off of the output into b->vbuf. */
int backup_read_raw(struct backup *b, uint64_t off, size_t len);
/*
 * backup_finish_output() - the output is complete: durable, and an image
 * file renamed to its final name with its directory durable; then its
 * manifest (an older one is removed before the rename: a crash in between
 * leaves an image without a manifest, never with another image's).
 * Returns 0 or -1 (printed).
 */
int backup_finish_output(struct backup *b);
/* After a failure: remove a partial image, unless @keep; say what is left. */
void backup_abandon_output(struct backup *b, int keep);

/* backup-batch.c */

/*
 * backup_batches_start() - start the thread that ends batches (syncs,
 * reads back with --verify, releases), one at a time, in order.
 * Returns 0 or -errno.
 */
int backup_batches_start(struct backup *b);
/* The writer wrote @p: it belongs to the batch being filled. 0 or -1 (ENOMEM). */
int backup_batches_add(struct backup *b, const struct copier_piece *p);
/* Bytes in the batch being filled. */
uint64_t backup_batches_filled(const struct backup *b);
/*
 * backup_batches_end() - hand the batch being filled over to be ended,
 * once the batch before it is. Returns 0, or -1 when a batch could not be
 * ended (printed; no later batch is released).
 */
int backup_batches_end(struct backup *b);
/*
 * backup_batches_stop() - hand over the last batch if @finish, wait until
 * every batch handed over is ended, stop the thread. 0 or -1 (printed).
 */
int backup_batches_stop(struct backup *b, int finish);

/* backup-qcow2.c */

/*
 * backup_qcow2_open() - start a qcow2 image in the (empty) partial file:
 * over --base as its backing file, if given, in clusters of the chunk size
 * up to 64 KiB. Returns 0 or -1 (printed).
 */
int backup_qcow2_open(struct backup *b);
/* The tables and the header, before the image is synced. 0 or -1 (printed). */
int backup_qcow2_finish(struct backup *b);

/* backup-resume.c */

/*
 * backup_resume_save() - record where this backup writes, so that
 * "--resume" can tell its partial image from another. Durable before the
 * first release. Returns 0 or -1 (printed).
 */
int backup_resume_save(struct backup *b);
/* Whether a record of an interrupted backup of b->view exists. */
int backup_resume_exists(const struct backup *b);
/*
 * backup_resume_check() - the record must be this backup's: same output,
 * same kind, same geometry; once the output is open (b->out_fd), the very
 * file or device written then. Returns 0 or -1 (printed).
 */
int backup_resume_check(struct backup *b);
/* The backup completed, or nothing of it needs keeping. */
void backup_resume_forget(const struct backup *b);
/* The view is released (or gone): its record goes (release calls it). */
void backup_resume_drop(const char *view);
/*
 * backup_resume_point() - what the view released, in the order the backup
 * releases it: the bytes of @e already durable in the output. The extents
 * are cut to what remains. Returns 0 or -1 (printed).
 */
int backup_resume_point(struct backup *b, uint64_t released_chunks,
			struct copier_extent *e, unsigned int *n);

#endif
