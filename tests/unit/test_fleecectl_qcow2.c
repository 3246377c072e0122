// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for userspace/qcow2.c (qcow2 backup images), judged by qemu:
 * each image is checked with "qemu-img check" (no errors, no leaks), and
 * "qemu-img compare" and "qemu-img convert -O raw" + SHA-256 must give the
 * bytes the test expects. Chains of three (full <- incr1 <- incr2) with
 * zero clusters over backing data and a partial last cluster, at 512 B,
 * 4 KiB and 64 KiB clusters; 8 GiB sparse images (L1 of several entries,
 * and of several clusters); argument and I/O errors.
 *
 * Needs qemu-img on PATH (make deps installs it); without it the cases
 * that need it are skipped, saying so.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "fullio.h"
#include "qcow2.h"
#include "sha256.h"

#define GIB (1ULL << 30)

static char dir[256];
static int have_qemu_img;
static uint64_t rnd_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* Random bytes, never a whole zero cluster (the first byte is not 0). */
static void fill_random(unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (unsigned char)rnd();
	p[0] |= 1;
}

static const char *in_dir(const char *name)
{
	static char bufs[4][PATH_MAX];
	static int n;
	char *b = bufs[n++ % 4];

	snprintf(b, PATH_MAX, "%s/%s", dir, name);
	return b;
}

/* Run a shell command, showing it; its exit status, or -1. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[4 * PATH_MAX];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	printf("$ %s\n", cmd);
	fflush(stdout);
	st = system(cmd);
	fflush(stdout);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static void need_qemu_img(void)
{
	if (!have_qemu_img) {
		printf("qemu-img not found on PATH: skipped (make deps installs it)\n");
		skip();
	}
}

static int setup(void **state)
{
	const char *tmp = getenv("TMPDIR");

	(void)state;
	snprintf(dir, sizeof(dir), "%s/fleece-qcow2.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	have_qemu_img = !system("command -v qemu-img >/dev/null 2>&1");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return run("rm -rf '%s'", dir) ? -1 : 0;
}

static int new_file(const char *name)
{
	int fd = open(in_dir(name), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	return fd;
}

static uint64_t file_size(const char *name)
{
	struct stat st;

	assert_int_equal(stat(in_dir(name), &st), 0);
	return (uint64_t)st.st_size;
}

static void sha256_file(const char *name, char hex[65])
{
	static unsigned char buf[1 << 20];
	unsigned char d[SHA256_DIGEST_SIZE];
	struct sha256 c;
	ssize_t n;
	int fd = open(in_dir(name), O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	sha256_init(&c);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		sha256_update(&c, buf, (size_t)n);
	assert_int_equal(n, 0);
	close(fd);
	sha256_final(&c, d);
	sha256_hex(d, hex);
}

/* The fields of a qcow2 header the tests look at. */
struct header {
	uint32_t l1_size;
	uint64_t l1_offset;
	uint64_t reftable_offset;
	uint32_t reftable_clusters;
	uint64_t refblocks;		/* non-zero refcount table entries */
};

static uint32_t be32_at(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return be32toh(v);
}

static uint64_t be64_at(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return be64toh(v);
}

static void read_header(const char *name, unsigned int cluster_bits, struct header *h)
{
	unsigned char b[112], e[8];
	uint64_t i, n;
	int fd = open(in_dir(name), O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread_full(fd, b, sizeof(b), 0), 0);
	assert_memory_equal(b, "QFI\xfb\0\0\0\3", 8);
	assert_int_equal(be32_at(b + 20), cluster_bits);
	assert_int_equal(be32_at(b + 96), 4);		/* refcount_order */
	assert_int_equal(be32_at(b + 100), 112);	/* header_length */
	h->l1_size = be32_at(b + 36);
	h->l1_offset = be64_at(b + 40);
	h->reftable_offset = be64_at(b + 48);
	h->reftable_clusters = be32_at(b + 56);
	h->refblocks = 0;
	n = ((uint64_t)h->reftable_clusters << cluster_bits) / 8;
	for (i = 0; i < n; i++) {
		assert_int_equal(pread_full(fd, e, 8, h->reftable_offset + 8 * i), 0);
		h->refblocks += !!be64_at(e);
	}
	close(fd);
}

/*
 * qemu's verdict on @img: check finds nothing, it reads the same as the
 * raw file @expect, and converts to the same bytes.
 */
static void verify(const char *img, const char *expect, int sha)
{
	char a[65], b[65];

	assert_int_equal(run("qemu-img check -f qcow2 '%s'", in_dir(img)), 0);
	assert_int_equal(run("qemu-img compare -f qcow2 -F raw '%s' '%s'", in_dir(img),
			     in_dir(expect)), 0);
	assert_int_equal(run("qemu-img convert -f qcow2 -O raw '%s' '%s'", in_dir(img),
			     in_dir("out.raw")), 0);
	if (sha) {
		sha256_file("out.raw", a);
		sha256_file(expect, b);
		printf("sha256 %s: %s, expected %s\n", img, a, b);
		assert_string_equal(a, b);
	} else {
		assert_int_equal(run("qemu-img compare -f raw -F raw '%s' '%s'",
				     in_dir("out.raw"), in_dir(expect)), 0);
	}
	unlink(in_dir("out.raw"));
}

/* ---- chains of three images, whole contents kept in memory ---- */

struct chain {
	unsigned int cluster_bits;
	uint64_t cs, clusters, size;	/* clusters: whole ones, before the tail */
	unsigned char *expect;		/* what the top image reads as */
	unsigned char *piece;
};

/* A change of an incremental: @n clusters from cluster @idx, data or zero. */
struct change {
	uint64_t idx, n;
	int zero;
};

static void write_expect(struct chain *c)
{
	int fd = new_file("expect.raw");

	assert_int_equal(pwrite_full(fd, c->expect, c->size, 0), 0);
	close(fd);
}

/* 1 if full cluster @idx of the full image is left zero. */
static int full_zero(uint64_t idx)
{
	return idx % 7 == 6 || (idx >= 20 && idx < 24);
}

/*
 * The full image: random data but for zero clusters, the tail (a partial
 * cluster where the cluster size allows one) random, written in pieces of
 * 1 to 5 clusters.
 */
static void make_full(struct chain *c)
{
	struct qcow2 *q;
	uint64_t i, off, len, k = 0;
	int fd = new_file("full.qcow2");

	fill_random(c->expect, c->size);
	for (i = 0; i < c->clusters; i++)
		if (full_zero(i))
			memset(c->expect + i * c->cs, 0, c->cs);
	assert_int_equal(qcow2_create(&q, fd, c->size, c->cluster_bits, NULL, NULL), 0);
	for (off = 0; off < c->size; off += len) {
		len = (k++ % 5 + 1) * c->cs;
		if (len > c->size - off)
			len = c->size - off;
		assert_int_equal(qcow2_write(q, off, c->expect + off, len), 0);
	}
	assert_int_equal(qcow2_finish(q), 0);
	close(fd);
	write_expect(c);
}

/*
 * An incremental over @backing: only the @changes (in increasing order); an
 * index past the whole clusters means the last (partial) cluster. Its file
 * holds the changed data clusters and little more.
 */
static void make_incr(struct chain *c, const char *name, const char *backing,
		      const struct change *changes, size_t nchanges)
{
	uint64_t off, len, data = 0, l2s = 0, last_l2 = UINT64_MAX, max_size, j;
	uint64_t l2_entries = c->cs / 8, l1_entries, l1_clusters;
	struct qcow2 *q;
	struct header h;
	size_t i;
	int fd = new_file(name);

	assert_int_equal(qcow2_create(&q, fd, c->size, c->cluster_bits, backing, "qcow2"), 0);
	for (i = 0; i < nchanges; i++) {
		off = changes[i].idx * c->cs;
		len = changes[i].n * c->cs;
		if (off + len > c->size)
			len = c->size - off;
		if (changes[i].zero)
			memset(c->piece, 0, len);
		else
			fill_random(c->piece, len);
		memcpy(c->expect + off, c->piece, len);
		assert_int_equal(qcow2_write(q, off, c->piece, len), 0);
		for (j = changes[i].idx; j < changes[i].idx + changes[i].n; j++) {
			data += !changes[i].zero;
			if (j / l2_entries != last_l2) {
				l2s++;
				last_l2 = j / l2_entries;
			}
		}
	}
	assert_int_equal(qcow2_finish(q), 0);
	close(fd);
	write_expect(c);

	/* header, data, L2 tables, L1 table, one refcount block and table */
	l1_entries = ((c->size + c->cs - 1) / c->cs + l2_entries - 1) / l2_entries;
	l1_clusters = (l1_entries * 8 + c->cs - 1) / c->cs;
	max_size = (1 + data + l2s + l1_clusters + 2) * c->cs;
	printf("%s: %llu bytes for %llu data clusters (at most %llu), full.qcow2 %llu\n",
	       name, (unsigned long long)file_size(name), (unsigned long long)data,
	       (unsigned long long)max_size, (unsigned long long)file_size("full.qcow2"));
	assert_true(file_size(name) <= max_size);
	assert_true(file_size(name) < file_size("full.qcow2") / 4);
	read_header(name, c->cluster_bits, &h);
	assert_int_equal(h.refblocks, 1);
}

static void chain_of_three(unsigned int cluster_bits, uint64_t clusters)
{
	struct chain c = { .cluster_bits = cluster_bits, .clusters = clusters };
	uint64_t last, mid = clusters / 2 + 3;
	struct header h;

	need_qemu_img();
	c.cs = 1ULL << cluster_bits;
	/* qcow2 sizes are whole sectors: a half cluster tail when it is one. */
	c.size = clusters * c.cs + (c.cs > 512 ? c.cs / 2 : 0);
	last = (c.size - 1) / c.cs;
	c.expect = malloc(c.size);
	c.piece = malloc(4 * c.cs);
	assert_non_null(c.expect);
	assert_non_null(c.piece);

	make_full(&c);
	read_header("full.qcow2", cluster_bits, &h);
	printf("full.qcow2: %llu bytes, L1 %u entries, %llu refcount blocks, refcount table %u clusters\n",
	       (unsigned long long)file_size("full.qcow2"), h.l1_size,
	       (unsigned long long)h.refblocks, h.reftable_clusters);
	verify("full.qcow2", "expect.raw", 1);

	{
		/* cluster 5 has data in full: zero hides it; mid is in a later L2 */
		const struct change incr1[] = {
			{ 2, 1, 0 }, { 3, 2, 0 }, { 5, 1, 1 }, { mid, 1, 0 }, { last, 1, 0 },
		};

		make_incr(&c, "incr1.qcow2", "full.qcow2", incr1, 5);
		verify("incr1.qcow2", "expect.raw", 1);
	}
	{
		/* 5: data over incr1's zero; 7: zero over full's data; 13: data over zero */
		const struct change incr2[] = {
			{ 1, 1, 0 }, { 5, 1, 0 }, { 6, 2, 1 }, { 13, 1, 0 }, { last, 1, 1 },
		};

		make_incr(&c, "incr2.qcow2", "incr1.qcow2", incr2, 5);
		verify("incr2.qcow2", "expect.raw", 1);
	}
	assert_int_equal(run("qemu-img info --backing-chain '%s' | grep -E '^(image|backing file)'",
			     in_dir("incr2.qcow2")), 0);
	free(c.expect);
	free(c.piece);
}

/* 64 KiB clusters (qemu's default, fleece's default chunk). */
static void test_chain_64k(void **state)
{
	(void)state;
	chain_of_three(16, 200);
}

/* 4 KiB clusters (the smallest chunk): two L2 tables. */
static void test_chain_4k(void **state)
{
	(void)state;
	chain_of_three(12, 600);
}

/*
 * 512 B clusters, 10 MiB: many L2 tables, an L1 table of 5 clusters, 71
 * refcount blocks in a refcount table of 2 clusters.
 */
static void test_chain_512(void **state)
{
	struct header h;

	(void)state;
	chain_of_three(9, 20480);
	read_header("full.qcow2", 9, &h);
	assert_true(h.l1_size * 8 > 512);
	assert_true(h.refblocks > 1);
	assert_true(h.reftable_clusters > 1);
}

/* ---- 8 GiB sparse images, expected contents in sparse raw files ---- */

static void sparse_put(struct qcow2 *q, int raw, uint64_t off, size_t len, int zero)
{
	unsigned char *p = malloc(len);

	assert_non_null(p);
	if (zero)
		memset(p, 0, len);
	else
		fill_random(p, len);
	assert_int_equal(qcow2_write(q, off, p, len), 0);
	assert_int_equal(pwrite_full(raw, p, len, off), 0);
	free(p);
}

static void large_sparse(unsigned int cluster_bits, uint32_t want_l1)
{
	const uint64_t size = 8 * GIB, cs = 1ULL << cluster_bits;
	struct qcow2 *q;
	struct header h;
	int fd, raw;

	need_qemu_img();
	fd = new_file("big.qcow2");
	raw = new_file("big.raw");
	assert_int_equal(ftruncate(raw, (off_t)size), 0);
	assert_int_equal(qcow2_create(&q, fd, size, cluster_bits, NULL, NULL), 0);
	sparse_put(q, raw, 0, 2 * cs, 0);
	sparse_put(q, raw, GIB + cs, cs, 0);
	sparse_put(q, raw, 4 * GIB - cs, 3 * cs, 0);	/* across an L2 boundary */
	sparse_put(q, raw, 5 * GIB, cs, 0);
	sparse_put(q, raw, size - cs, cs, 0);
	assert_int_equal(qcow2_finish(q), 0);
	close(fd);
	read_header("big.qcow2", cluster_bits, &h);
	printf("big.qcow2: %llu bytes, L1 %u entries\n",
	       (unsigned long long)file_size("big.qcow2"), h.l1_size);
	assert_int_equal(h.l1_size, want_l1);
	verify("big.qcow2", "big.raw", 0);

	/* An incremental over it: zero over data at 5 GiB, data at 3 GiB. */
	fd = new_file("bigincr.qcow2");
	assert_int_equal(qcow2_create(&q, fd, size, cluster_bits, "big.qcow2", "qcow2"), 0);
	sparse_put(q, raw, 3 * GIB, cs, 0);
	sparse_put(q, raw, 5 * GIB, cs, 1);
	sparse_put(q, raw, size - cs, cs, 0);
	assert_int_equal(qcow2_finish(q), 0);
	close(fd);
	close(raw);
	printf("bigincr.qcow2: %llu bytes\n", (unsigned long long)file_size("bigincr.qcow2"));
	verify("bigincr.qcow2", "big.raw", 0);
	unlink(in_dir("big.raw"));
}

static void test_large_64k(void **state)
{
	(void)state;
	large_sparse(16, 16);
}

/* 4096 L1 entries: an L1 table of 8 clusters. */
static void test_large_4k(void **state)
{
	(void)state;
	large_sparse(12, 4096);
}

/* ---- edges and errors ---- */

/* A raw backing file; no writes at all: an incremental reads as its backing. */
static void test_raw_backing_and_empty(void **state)
{
	static unsigned char data[8 * 4096];
	struct qcow2 *q;
	int fd;

	(void)state;
	need_qemu_img();
	fill_random(data, sizeof(data));
	fd = new_file("base.raw");
	assert_int_equal(pwrite_full(fd, data, sizeof(data), 0), 0);
	close(fd);

	fd = new_file("over.qcow2");
	assert_int_equal(qcow2_create(&q, fd, sizeof(data), 12, "base.raw", "raw"), 0);
	assert_int_equal(qcow2_finish(q), 0);
	close(fd);
	verify("over.qcow2", "base.raw", 1);

	/* A zero cluster over raw data. */
	fd = new_file("over.qcow2");
	assert_int_equal(qcow2_create(&q, fd, sizeof(data), 12, "base.raw", "raw"), 0);
	memset(data + 4096, 0, 4096);
	assert_int_equal(qcow2_write(q, 4096, data + 4096, 4096), 0);
	assert_int_equal(qcow2_finish(q), 0);
	close(fd);
	fd = new_file("expect.raw");
	assert_int_equal(pwrite_full(fd, data, sizeof(data), 0), 0);
	close(fd);
	verify("over.qcow2", "expect.raw", 1);

	/* A full image never written, and one of size 0. */
	fd = new_file("empty.qcow2");
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 16, NULL, NULL), 0);
	assert_int_equal(qcow2_finish(q), 0);
	close(fd);
	fd = new_file("expect.raw");
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	verify("empty.qcow2", "expect.raw", 1);
	fd = new_file("zero.qcow2");
	assert_int_equal(qcow2_create(&q, fd, 0, 16, NULL, NULL), 0);
	assert_int_equal(qcow2_finish(q), 0);
	close(fd);
	close(new_file("expect.raw"));
	verify("zero.qcow2", "expect.raw", 1);
}

/* qcow2_probe(): an image's virtual size; a raw or short file is not one. */
static void test_probe(void **state)
{
	static unsigned char data[3 * 4096];
	uint64_t size = 0;
	struct qcow2 *q;
	int fd;

	(void)state;
	fill_random(data, sizeof(data));
	fd = new_file("probe.qcow2");
	assert_int_equal(qcow2_create(&q, fd, 8ULL << 30, 12, NULL, NULL), 0);
	assert_int_equal(qcow2_write(q, 0, data, sizeof(data)), 0);
	assert_int_equal(qcow2_finish(q), 0);
	assert_int_equal(qcow2_probe(fd, &size), 1);
	assert_int_equal(size, 8ULL << 30);
	close(fd);
	fd = new_file("probe.raw");
	assert_int_equal(pwrite_full(fd, data, sizeof(data), 0), 0);
	size = 7;
	assert_int_equal(qcow2_probe(fd, &size), 0);
	assert_int_equal(size, 7);
	assert_int_equal(ftruncate(fd, 5), 0);
	assert_int_equal(qcow2_probe(fd, &size), 0);
	close(fd);
}

static void test_bad_create(void **state)
{
	char name[1100];
	struct qcow2 *q;
	int fd;

	(void)state;
	fd = new_file("bad.qcow2");
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 8, NULL, NULL), -EINVAL);
	assert_null(q);
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 22, NULL, NULL), -EINVAL);
	assert_int_equal(qcow2_create(&q, fd, (1 << 20) + 100, 16, NULL, NULL), -EINVAL);
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 16, "b.qcow2", NULL), -EINVAL);
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 16, NULL, "qcow2"), -EINVAL);
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 16, "", "qcow2"), -EINVAL);
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 16, "b", "a-format-name-too-long"),
			 -EINVAL);
	memset(name, 'a', sizeof(name));
	name[1024] = 0;
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 16, name, "qcow2"), -ENAMETOOLONG);
	name[1023] = 0;
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 16, name, "qcow2"), 0);
	qcow2_abort(q);
	/* 512 B clusters: the name must fit in the header's cluster. */
	name[400] = 0;
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 9, name, "qcow2"), -ENAMETOOLONG);
	name[300] = 0;
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 9, name, "qcow2"), 0);
	qcow2_abort(q);
	/* qemu reads L1 tables up to 32 MiB: 2^22 entries of 32 KiB at 512 B clusters. */
	assert_int_equal(qcow2_create(&q, fd, 1ULL << 37, 9, NULL, NULL), 0);
	qcow2_abort(q);
	assert_int_equal(qcow2_create(&q, fd, (1ULL << 37) + 512, 9, NULL, NULL), -EFBIG);

	/* Not empty; not a regular file. */
	assert_int_equal(pwrite_full(fd, "x", 1, 0), 0);
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 16, NULL, NULL), -EINVAL);
	close(fd);
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	assert_int_equal(qcow2_create(&q, fd, 1 << 20, 16, NULL, NULL), -EINVAL);
	close(fd);
	assert_int_equal(qcow2_create(&q, -1, 1 << 20, 16, NULL, NULL), -EBADF);
}

/* Rejected writes leave the writer as it was: the image still comes out right. */
static void test_bad_write(void **state)
{
	const size_t cs = 4096, size = 10 * cs + 1024;
	static unsigned char data[10 * 4096 + 1024], junk[2 * 4096];
	struct qcow2 *q;
	int fd;

	(void)state;
	fill_random(data, sizeof(data));
	fill_random(junk, sizeof(junk));
	fd = new_file("w.qcow2");
	assert_int_equal(qcow2_create(&q, fd, size, 12, NULL, NULL), 0);
	assert_int_equal(qcow2_write(q, 512, junk, cs), -EINVAL);	/* misaligned */
	assert_int_equal(qcow2_write(q, 0, junk, cs + 512), -EINVAL);	/* partial, not last */
	assert_int_equal(qcow2_write(q, 0, data, 3 * cs), 0);
	assert_int_equal(qcow2_write(q, 2 * cs, junk, cs), -EINVAL);	/* overlaps */
	assert_int_equal(qcow2_write(q, cs, junk, cs), -EINVAL);	/* goes back */
	assert_int_equal(qcow2_write(q, 4 * cs, data + 4 * cs, 4 * cs), 0);
	assert_int_equal(qcow2_write(q, 9 * cs, junk, 2 * cs), -EINVAL);	/* past the end */
	assert_int_equal(qcow2_write(q, 11 * cs, junk, cs), -EINVAL);	/* all past it */
	assert_int_equal(qcow2_write(q, 8 * cs, data + 8 * cs, 0), 0);	/* nothing */
	assert_int_equal(qcow2_write(q, 9 * cs, data + 9 * cs, cs + 1024), 0);
	assert_int_equal(qcow2_finish(q), 0);
	close(fd);
	memset(data + 3 * cs, 0, cs);		/* never written */
	memset(data + 8 * cs, 0, cs);
	fd = new_file("expect.raw");
	assert_int_equal(pwrite_full(fd, data, sizeof(data), 0), 0);
	close(fd);
	if (have_qemu_img)
		verify("w.qcow2", "expect.raw", 1);

	/* Aborted: freed (ASan would tell), no header written. */
	fd = new_file("a.qcow2");
	assert_int_equal(qcow2_create(&q, fd, size, 12, "w.qcow2", "qcow2"), 0);
	assert_int_equal(qcow2_write(q, 0, data, 2 * cs), 0);
	qcow2_abort(q);
	qcow2_abort(NULL);
	close(fd);
	assert_int_equal(file_size("a.qcow2"), 3 * cs);
}

/* A failed write to the file sticks: later calls return it, finish too. */
static void test_io_error(void **state)
{
	static unsigned char data[2 * 4096];
	struct qcow2 *q;
	int fd;

	(void)state;
	close(new_file("ro.qcow2"));
	fd = open(in_dir("ro.qcow2"), O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	fill_random(data, sizeof(data));
	assert_int_equal(qcow2_create(&q, fd, sizeof(data), 12, NULL, NULL), 0);
	assert_int_equal(qcow2_write(q, 0, data, 4096), -EBADF);
	assert_int_equal(qcow2_write(q, 4096, data, 4096), -EBADF);
	assert_int_equal(qcow2_finish(q), -EBADF);
	/* Nothing to write but the tables: finish itself fails. */
	assert_int_equal(qcow2_create(&q, fd, sizeof(data), 12, NULL, NULL), 0);
	assert_int_equal(qcow2_finish(q), -EBADF);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chain_64k),
		cmocka_unit_test(test_chain_4k),
		cmocka_unit_test(test_chain_512),
		cmocka_unit_test(test_large_64k),
		cmocka_unit_test(test_large_4k),
		cmocka_unit_test(test_raw_backing_and_empty),
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_bad_create),
		cmocka_unit_test(test_bad_write),
		cmocka_unit_test(test_io_error),
	};

	return cmocka_run_group_tests_name("fleecectl_qcow2", tests, setup, teardown);
}
