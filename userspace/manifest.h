/* SPDX-License-Identifier: GPL-2.0 */
/*
 * manifest: what an image is, beside it (IMAGE.fleece-manifest), so that
 * "fleecectl verify" can tell months later whether the image still holds
 * what was backed up.
 *
 * A text file: a header line, "key value" lines (the size, the point in
 * time, the view, bitmap, chunk size, the base it was applied to), the
 * digest of each block of the image in order, and an "end" line with the
 * SHA-256 of everything before it (a truncated or edited manifest is told
 * from a damaged image).
 *
 * A block's digest is the SHA-256 of the SHA-256s of its 1 MiB pieces, in
 * order (the last piece and block may be short): the backup's reader
 * threads hash pieces in parallel as they read them, and verify does the
 * same, so neither hashes a block in one sequential pass.
 */
#ifndef FLEECECTL_MANIFEST_H
#define FLEECECTL_MANIFEST_H

#include <limits.h>
#include <stdint.h>

#include "sha256.h"

#define MANIFEST_SUFFIX ".fleece-manifest"
#define MANIFEST_PIECE (1024 * 1024)
#define MANIFEST_BLOCK (16 * 1024 * 1024)

struct manifest {
	uint64_t size;			/* of the image */
	uint64_t block;			/* bytes per digest */
	uint64_t nblocks;
	unsigned char (*digest)[SHA256_DIGEST_SIZE];
	unsigned char *have;		/* per block: digest known (building) */
	/* What it is a backup of ("-" where not known). */
	char kind[16];			/* full, incremental */
	char view[128];
	char origin[32];		/* major:minor of the origin device */
	char bitmap[128];
	char base[PATH_MAX];		/* the image an incremental was applied to */
	char started[32];		/* UTC, when the backup started */
	uint64_t chunk;

	/* Building: the block whose pieces arrive in order. */
	uint64_t cur;			/* block index; nblocks: none */
	uint64_t cur_next;		/* the next piece's offset for it */
	struct sha256 cur_ctx;
};

/*
 * manifest_init() - empty, for an image of @size bytes in blocks of @block
 * (0: MANIFEST_BLOCK; a multiple of MANIFEST_PIECE). Returns 0 or -ENOMEM.
 */
int manifest_init(struct manifest *m, uint64_t size, uint64_t block);
void manifest_free(struct manifest *m);

/*
 * manifest_piece() - a piece of the image was written at @off with the
 * SHA-256 @digest. Pieces of a block that arrive from its start, whole and
 * in order, give its digest; a block any other way is left to
 * manifest_fill().
 */
void manifest_piece(struct manifest *m, uint64_t off, uint64_t len,
		    const unsigned char digest[SHA256_DIGEST_SIZE]);

/* manifest_inherit() - blocks this backup left alone keep @base's digests. */
void manifest_inherit(struct manifest *m, const struct manifest *base,
		      const unsigned char *touched);

/*
 * manifest_fill() - the blocks whose digest is not known yet, read from
 * @fd (the image written; for verify, all of it) by @jobs threads.
 * Returns 0 or -errno (-ENODATA: @fd is shorter than the image).
 */
int manifest_fill(struct manifest *m, int fd, unsigned int jobs);

/*
 * manifest_write() - to @path durably: through PATH.new, renamed, and the
 * directory synced. Returns 0 or -errno.
 */
int manifest_write(const struct manifest *m, const char *path);

/*
 * manifest_read() - parse @path. Returns 0, -errno, or -EBADMSG (not a
 * manifest, or damaged: @why says how).
 */
int manifest_read(struct manifest *m, const char *path, const char **why);

#endif
