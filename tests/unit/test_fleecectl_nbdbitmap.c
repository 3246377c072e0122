// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for userspace/nbdbitmap.c, export --bitmap's QEMU dirty bitmap,
 * on the host: the view is a plain file and changes_foreach() a stub, so
 * only qemu-img and qemu-io (Debian's qemu-utils) are needed. That the bits
 * are the view's changes is checked over NBD in the VM (047-nbd-export).
 *
 * FLEECE_NBDBITMAP_RANGES=N makes the big case N ranges (default 20000) and
 * prints how long the fill took: issue 15 measured it at 200,000.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "bitmap.h"
#include "nbdbitmap.h"
#include "spawn.h"
#include "util.h"

#define CHUNK 65536ULL

/* What the stub "kernel" answers. */
static struct {
	uint64_t ranges;	/* every other chunk from 0 */
	uint64_t big;		/* then one range of this many bytes; 0: none */
	int error;		/* -errno instead of ranges */
} kernel;

int changes_foreach(const char *dm_name, const char *bitmap, uint64_t chunk_bytes,
		    uint64_t size, int (*fn)(uint64_t off, uint64_t len, void *arg),
		    void *arg)
{
	uint64_t i, off = 0;
	int r;

	(void)dm_name;
	(void)bitmap;
	(void)size;
	if (kernel.error)
		return kernel.error;
	for (i = 0; i < kernel.ranges; i++, off += 2 * chunk_bytes)
		if ((r = fn(off, chunk_bytes, arg)))
			return r;
	return kernel.big ? fn(off, kernel.big, arg) : 0;
}

struct fixture {
	char dir[64], view[96], qemu_img[4096], qemu_io[4096];
	struct nbd_bitmap b;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int fd;

	if (!f || find_program("qemu-img", f->qemu_img, sizeof(f->qemu_img)) ||
	    find_program("qemu-io", f->qemu_io, sizeof(f->qemu_io))) {
		fprintf(stderr, "qemu-img and qemu-io (qemu-utils) are needed\n");
		free(f);
		return -1;
	}
	strcpy(f->dir, "/tmp/nbdbitmap.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	/* The view: a sparse file, its size the stub's largest need. */
	snprintf(f->view, sizeof(f->view), "%s.view", f->dir);
	fd = open(f->view, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 64LL << 30) || close(fd))
		return -1;
	f->b = (struct nbd_bitmap){ .qemu_img = f->qemu_img, .qemu_io = f->qemu_io,
		.dir = f->dir, .view = "t-view", .view_path = f->view,
		.bitmap = "nightly", .chunk = CHUNK, .size = 64ULL << 30 };
	memset(&kernel, 0, sizeof(kernel));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	nbd_bitmap_remove(&f->b);
	rmdir(f->dir);
	unlink(f->view);
	free(f);
	return 0;
}

/* What is left in the directory besides the overlay: nothing. */
static void assert_only_overlay(const struct fixture *f)
{
	static const char *const gone[] = { "changes.qcow2", "changes.qemu-io", "qemu.log" };
	char path[256];
	struct stat st;
	unsigned int i;

	for (i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", f->dir, gone[i]);
		assert_int_equal(stat(path, &st), -1);
	}
	assert_int_equal(stat(f->b.image, &st), 0);
}

/*
 * Many ranges, and one of 3 GiB that qemu-io gets as three writes: the
 * counts are the stub's, the overlay is there, the helpers' files are gone.
 */
static void test_many_ranges(void **state)
{
	struct fixture *f = *state;
	const char *env = getenv("FLEECE_NBDBITMAP_RANGES");
	char why[512] = "";
	double t0, t;

	kernel.ranges = env ? strtoull(env, NULL, 10) : 20000;
	kernel.big = 3ULL << 30;
	/* The ranges and the big one must fit in the view. */
	assert_true(kernel.ranges * 2 * CHUNK + kernel.big <= f->b.size);
	t0 = now_seconds();
	if (nbd_bitmap_make(&f->b, why, sizeof(why)))
		fail_msg("nbd_bitmap_make: %s", why);
	t = now_seconds() - t0;
	printf("nbd_bitmap_make: %" PRIu64 " ranges in %.2f s\n", f->b.ranges, t);
	assert_int_equal(f->b.ranges, kernel.ranges + 1);
	assert_int_equal(f->b.bytes, kernel.ranges * CHUNK + kernel.big);
	assert_only_overlay(f);
}

/* A write qemu-io refuses (past the end) is an error, said in @why. */
static void test_qemu_io_error(void **state)
{
	struct fixture *f = *state;
	char why[512] = "";

	f->b.size = 4 * CHUNK;
	kernel.ranges = 3;	/* the third starts at 4 chunks: past the end */
	assert_int_equal(nbd_bitmap_make(&f->b, why, sizeof(why)), -1);
	/* Whether or not qemu-io's exit status says so. */
	assert_true(!strncmp(why, "marking the changed ranges", 26));
	assert_non_null(strstr(why, "qemu-io"));
	assert_non_null(strstr(why, ": write failed: "));
}

static void test_no_transaction(void **state)
{
	struct fixture *f = *state;
	char why[512] = "";

	kernel.error = -ENOENT;
	assert_int_equal(nbd_bitmap_make(&f->b, why, sizeof(why)), -1);
	assert_string_equal(why, "cannot list its changes: its backup transaction has ended");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_many_ranges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qemu_io_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_transaction, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
