// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for userspace/copier.c (backup's reads in flight) and the
 * resume point of backup-resume.c: pieces come in extent order, whole, with
 * the right bytes and digests, however many readers race; a read error is
 * the piece's; stopping early leaves nothing running; a resume skips
 * exactly the released chunks.
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

#include "backup.h"
#include "copier.h"

#define FILE_SIZE (9 * 1024 * 1024 + 4096 * 3)

static int make_file(unsigned char **data)
{
	char path[] = "/tmp/copier-test.XXXXXX";
	unsigned char *d = malloc(FILE_SIZE);
	uint32_t x = 12345;
	int fd = mkstemp(path);
	size_t i;

	assert_non_null(d);
	assert_true(fd >= 0);
	unlink(path);
	for (i = 0; i < FILE_SIZE; i++) {
		x = x * 1103515245 + 12345;
		d[i] = (unsigned char)(x >> 16);
	}
	assert_int_equal(write(fd, d, FILE_SIZE), FILE_SIZE);
	*data = d;
	return fd;
}

/* Read @e with @jobs readers; check every piece; count them. */
static unsigned int run(int fd, const unsigned char *d, unsigned int jobs, size_t piece,
			const struct copier_extent *e, unsigned int n)
{
	struct copier_opts o = { .fd = fd, .jobs = jobs, .piece = piece, .hash = 1,
				 .ioprio = -1 };
	unsigned char dg[SHA256_DIGEST_SIZE];
	struct copier_piece *p;
	struct copier *c;
	unsigned int i = 0, count = 0;
	uint64_t pos = e[0].off;

	assert_int_equal(copier_start(&c, &o, e, n), 0);
	while (copier_next(c, &p) > 0) {
		while (i < n && pos >= e[i].off + e[i].len)
			pos = ++i < n ? e[i].off : pos;
		assert_true(i < n);
		assert_int_equal(p->err, 0);
		assert_int_equal(p->off, pos);
		assert_true(p->len <= piece);
		assert_true(p->off + p->len <= e[i].off + e[i].len);
		/* A piece ends at a multiple of the piece size or its extent's end. */
		assert_true((p->off + p->len) % piece == 0 ||
			    p->off + p->len == e[i].off + e[i].len);
		assert_memory_equal(p->buf, d + p->off, p->len);
		assert_int_equal(sha256_buf(d + p->off, p->len, dg), 0);
		assert_memory_equal(p->digest, dg, sizeof(dg));
		pos += p->len;
		count++;
		copier_put(c, p);
	}
	assert_int_equal(pos, e[n - 1].off + e[n - 1].len);
	assert_int_equal(copier_stop(c), 0);
	return count;
}

static void test_order(void **state)
{
	static const struct copier_extent e[] = {
		{ 0, 4096 }, { 8192, 3 * 1048576 + 4096 }, { 5 * 1048576, 1048576 },
		{ 6 * 1048576 + 4096, FILE_SIZE - 6 * 1048576 - 4096 },
	};
	static const struct copier_extent whole = { 0, FILE_SIZE };
	unsigned char *d;
	unsigned int jobs;
	int fd = make_file(&d);

	(void)state;
	for (jobs = 1; jobs <= 16; jobs *= 2) {
		run(fd, d, jobs, 1048576, e, 4);
		assert_int_equal(run(fd, d, jobs, 1048576, &whole, 1), 10);
		run(fd, d, jobs, 4096, e, 4);
	}
	close(fd);
	free(d);
}

/* A read past the end fails in its piece only; the consumer decides. */
static void test_error_and_stop(void **state)
{
	struct copier_extent e[] = { { 0, 2 * 1048576 }, { FILE_SIZE + 4096, 4096 } };
	struct copier_opts o = { .jobs = 4, .piece = 1048576, .ioprio = -1 };
	struct copier_piece *p;
	struct copier *c;
	unsigned char *d;
	int got = 0;

	(void)state;
	o.fd = make_file(&d);
	assert_int_equal(copier_start(&c, &o, e, 2), 0);
	while (copier_next(c, &p) > 0) {
		if (p->off > FILE_SIZE)
			assert_int_equal(p->err, -ENODATA);
		else
			assert_int_equal(p->err, 0);
		got++;
		copier_put(c, p);
	}
	assert_int_equal(got, 3);
	assert_int_equal(copier_stop(c), 0);

	/* Stopped after one piece of many: the readers end, nothing leaks. */
	e[1].off = 0;
	e[1].len = FILE_SIZE;
	assert_int_equal(copier_start(&c, &o, e + 1, 1), 0);
	assert_int_equal(copier_next(c, &p), 1);
	assert_int_equal(copier_stop(c), 0);
	/* Nothing to read at all. */
	assert_int_equal(copier_start(&c, &o, e, 0), 0);
	assert_int_equal(copier_next(c, &p), 0);
	assert_int_equal(copier_stop(c), 0);
	close(o.fd);
	free(d);
}

static void test_resume_point(void **state)
{
	struct copier_extent e[4];
	struct backup b = { .view = "v", .chunk = 65536 };
	unsigned int n;

	(void)state;
	/* A full backup of a view whose last chunk is short. */
	e[0] = (struct copier_extent){ 0, 10 * 65536 + 512 };
	n = 1;
	assert_int_equal(backup_resume_point(&b, 3, e, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(e[0].off, 3 * 65536);
	assert_int_equal(e[0].len, 7 * 65536 + 512);
	assert_int_equal(b.skipped, 3 * 65536);
	/* Every chunk released: nothing left, the short one counted once. */
	e[0] = (struct copier_extent){ 0, 10 * 65536 + 512 };
	n = 1;
	b.skipped = 0;
	assert_int_equal(backup_resume_point(&b, 11, e, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(b.skipped, 10 * 65536 + 512);
	/* Changed ranges: whole extents skipped, the next one cut. */
	e[0] = (struct copier_extent){ 0, 2 * 65536 };
	e[1] = (struct copier_extent){ 10 * 65536, 65536 };
	e[2] = (struct copier_extent){ 20 * 65536, 4 * 65536 };
	n = 3;
	b.skipped = 0;
	assert_int_equal(backup_resume_point(&b, 4, e, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(e[0].off, 21 * 65536);
	assert_int_equal(e[0].len, 3 * 65536);
	assert_int_equal(b.skipped, 4 * 65536);
	/* Nothing released: everything stays. */
	e[0] = (struct copier_extent){ 0, 65536 };
	n = 1;
	assert_int_equal(backup_resume_point(&b, 0, e, &n), 0);
	assert_int_equal(n, 1);
	/* More released than the backup covers: someone else did. */
	assert_int_equal(backup_resume_point(&b, 2, e, &n), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_error_and_stop),
		cmocka_unit_test(test_resume_point),
	};

	return cmocka_run_group_tests_name("fleecectl_copier", tests, NULL, NULL);
}
