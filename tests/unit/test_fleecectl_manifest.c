// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for userspace/manifest.c: a manifest written and read back is
 * the same; an edited, cut or foreign one is refused, saying why; digests
 * from pieces passed in order equal those read from the file; blocks a
 * backup did not pass are filled from the file or inherited; verify's
 * reading finds a changed byte in the right block.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "manifest.h"

#define SIZE (3 * MANIFEST_BLOCK + 5 * MANIFEST_PIECE + 8192)

static char dir[] = "/tmp/manifest-test.XXXXXX";

static int image(unsigned char **data, char *path, size_t len)
{
	unsigned char *d = malloc(SIZE);
	uint32_t x = 7;
	size_t i;
	FILE *f;

	assert_non_null(d);
	for (i = 0; i < SIZE; i++) {
		x = x * 1103515245 + 12345;
		d[i] = (unsigned char)(x >> 16);
	}
	snprintf(path, len, "%s/img", dir);
	f = fopen(path, "w+");
	assert_non_null(f);
	assert_int_equal(fwrite(d, 1, SIZE, f), SIZE);
	fclose(f);
	*data = d;
	return 0;
}

static void pieces(struct manifest *m, const unsigned char *d, uint64_t from, uint64_t to)
{
	unsigned char dg[SHA256_DIGEST_SIZE];
	uint64_t off, len;

	for (off = from; off < to; off += len) {
		len = to - off < MANIFEST_PIECE ? to - off : MANIFEST_PIECE;
		assert_int_equal(sha256_buf(d + off, len, dg), 0);
		manifest_piece(m, off, len, dg);
	}
}

static int open_ro(const char *path)
{
	FILE *f = fopen(path, "r");

	assert_non_null(f);
	return fileno(f);
}

static void test_round_trip_and_fill(void **state)
{
	struct manifest a, b, c, r;
	char path[256], mpath[300];
	unsigned char *d, touched[8] = { 0 };
	const char *why;
	uint64_t i;
	int fd;

	(void)state;
	image(&d, path, sizeof(path));
	snprintf(mpath, sizeof(mpath), "%s%s", path, MANIFEST_SUFFIX);

	/* Pieces in order: every block known. */
	assert_int_equal(manifest_init(&a, SIZE, 0), 0);
	assert_int_equal(a.nblocks, 4);
	pieces(&a, d, 0, SIZE);
	for (i = 0; i < a.nblocks; i++)
		assert_true(a.have[i]);
	strcpy(a.kind, "full");
	strcpy(a.view, "v1");
	assert_int_equal(manifest_write(&a, mpath), 0);

	/* The same digests read from the file by 3 threads. */
	assert_int_equal(manifest_init(&b, SIZE, 0), 0);
	fd = open_ro(path);
	assert_int_equal(manifest_fill(&b, fd, 3), 0);
	assert_memory_equal(a.digest, b.digest, a.nblocks * SHA256_DIGEST_SIZE);

	/* Read back: equal. */
	assert_int_equal(manifest_read(&r, mpath, &why), 0);
	assert_int_equal(r.size, SIZE);
	assert_int_equal(r.nblocks, 4);
	assert_string_equal(r.kind, "full");
	assert_string_equal(r.view, "v1");
	assert_memory_equal(a.digest, r.digest, a.nblocks * SHA256_DIGEST_SIZE);

	/*
	 * An incremental: pieces from the middle of block 1 (not from its
	 * start) and all of block 2; block 0 and 3 untouched, inherited.
	 */
	assert_int_equal(manifest_init(&c, SIZE, 0), 0);
	pieces(&c, d, MANIFEST_BLOCK + MANIFEST_PIECE, MANIFEST_BLOCK + 3 * MANIFEST_PIECE);
	pieces(&c, d, 2 * MANIFEST_BLOCK, 3 * MANIFEST_BLOCK);
	assert_false(c.have[1]);
	assert_true(c.have[2]);
	touched[1] = touched[2] = 1;
	manifest_inherit(&c, &r, touched);
	assert_true(c.have[0] && c.have[3]);
	assert_false(c.have[1]);
	assert_int_equal(manifest_fill(&c, fd, 2), 0);
	assert_memory_equal(a.digest, c.digest, a.nblocks * SHA256_DIGEST_SIZE);

	manifest_free(&a);
	manifest_free(&b);
	manifest_free(&c);
	manifest_free(&r);
	close(fd);
	free(d);
}

/* A byte changed in the image: only its block's digest differs. */
static void test_damage_found(void **state)
{
	struct manifest a, b;
	char path[256];
	unsigned char *d, x = 0;
	uint64_t i, at = 2 * MANIFEST_BLOCK + 12345;
	FILE *f;
	int fd;

	(void)state;
	image(&d, path, sizeof(path));
	assert_int_equal(manifest_init(&a, SIZE, 0), 0);
	pieces(&a, d, 0, SIZE);
	f = fopen(path, "r+");
	assert_non_null(f);
	fseek(f, (long)at, SEEK_SET);
	x = (unsigned char)(d[at] ^ 1);
	fwrite(&x, 1, 1, f);
	fclose(f);
	assert_int_equal(manifest_init(&b, SIZE, 0), 0);
	fd = open_ro(path);
	assert_int_equal(manifest_fill(&b, fd, 4), 0);
	for (i = 0; i < a.nblocks; i++)
		assert_int_equal(!memcmp(a.digest[i], b.digest[i], SHA256_DIGEST_SIZE), i != 2);
	/* A file shorter than the image: an error, not a digest. */
	manifest_free(&b);
	assert_int_equal(truncate(path, SIZE - 4096), 0);
	assert_int_equal(manifest_init(&b, SIZE, 0), 0);
	assert_int_equal(manifest_fill(&b, fd, 4), -ENODATA);
	manifest_free(&a);
	manifest_free(&b);
	close(fd);
	free(d);
}

static void rewrite(const char *path, const char *from, const char *to)
{
	char buf[1 << 16], *p;
	size_t n;
	FILE *f = fopen(path, "r");

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strstr(buf, from);
	assert_non_null(p);
	assert_int_equal(strlen(from), strlen(to));
	memcpy(p, to, strlen(to));
	f = fopen(path, "w");
	fwrite(buf, 1, n, f);
	fclose(f);
}

static void test_refused(void **state)
{
	struct manifest a, r;
	char path[300];
	const char *why;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/m", dir);
	assert_int_equal(manifest_init(&a, 5 * MANIFEST_BLOCK, 0), 0);
	memset(a.have, 1, a.nblocks);
	assert_int_equal(manifest_write(&a, path), 0);
	assert_int_equal(manifest_read(&r, path, &why), 0);
	manifest_free(&r);

	/* Edited: the end line does not match. */
	rewrite(path, "kind -", "kind +");
	assert_int_equal(manifest_read(&r, path, &why), -EBADMSG);
	assert_non_null(strstr(why, "does not match"));
	/* Cut short. */
	assert_int_equal(manifest_write(&a, path), 0);
	assert_int_equal(truncate(path, 300), 0);
	assert_int_equal(manifest_read(&r, path, &why), -EBADMSG);
	/* Not a manifest at all. */
	f = fopen(path, "w");
	fputs("hello\n", f);
	fclose(f);
	assert_int_equal(manifest_read(&r, path, &why), -EBADMSG);
	assert_non_null(strstr(why, "does not start"));
	/* Absent. */
	unlink(path);
	assert_int_equal(manifest_read(&r, path, &why), -ENOENT);
	manifest_free(&a);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) ? -1 : 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_and_fill),
		cmocka_unit_test(test_damage_found),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests_name("fleecectl_manifest", tests, setup, teardown);
}
