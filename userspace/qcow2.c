// SPDX-License-Identifier: GPL-2.0
/*
 * A qcow2 version 3 image, written in one pass (QEMU's docs/interop/qcow2.txt
 * is the format). The file is laid out as it fills:
 *
 *   cluster 0             the header, header extensions, backing file name:
 *                         written last, by qcow2_finish()
 *   then, as writes come  data clusters, each L2 table appended as soon as
 *                         the writes have passed the guest range it maps
 *                         (writes come in increasing order, so it is final)
 *   qcow2_finish()        the last L2 table, the L1 table, the refcount
 *                         blocks, the refcount table
 *
 * Nothing is ever freed or rewritten, so every cluster of the file is in use
 * exactly once: all refcounts are 1, from cluster 0 to the last, and the
 * refcount blocks only have to count up to the end of the file, themselves
 * and the refcount table included.
 *
 * Memory: the L1 table, one L2 table and one spare cluster.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fullio.h"
#include "qcow2.h"

#define QCOW_MAGIC		0x514649fbU	/* "QFI\xfb" */
#define QCOW_VERSION		3
/* v3 header through compression_type (byte 104), padded to 8 bytes. */
#define QCOW_HEADER_LENGTH	112
#define QCOW_REFCOUNT_ORDER	4		/* 16-bit refcounts */
#define QCOW_EXT_END		0x00000000U
#define QCOW_EXT_BACKING_FMT	0xe2792acaU
/* qemu keeps the backing format in a char[16]. */
#define QCOW_MAX_BACKING_FMT	15

/* L1 and L2 entries: the refcount of what it points to is exactly one. */
#define QCOW_OFLAG_COPIED	(1ULL << 63)
/* Standard cluster descriptor, v3: the cluster reads as zeroes. */
#define QCOW_OFLAG_ZERO		1ULL

/* qemu's limits on the tables it reads (QCOW_MAX_L1_SIZE, ..._REFTABLE_SIZE). */
#define QCOW_MAX_L1_BYTES	(32ULL << 20)
#define QCOW_MAX_REFTABLE_BYTES	(8ULL << 20)

#define NO_L2			UINT64_MAX

struct qcow2 {
	int fd;
	int err;			/* sticky: a write to the file failed */
	unsigned int cluster_bits;
	unsigned int l2_bits;		/* log2 of entries per L2 table */
	uint64_t cluster_size;
	uint64_t size;			/* virtual, bytes */
	uint64_t next;			/* the lowest guest offset still writable */
	uint64_t end;			/* the file's next free cluster, bytes */
	uint64_t *l1;			/* big-endian, as on disk */
	uint64_t l1_size;		/* entries */
	uint64_t *l2;			/* the L2 table being filled, big-endian */
	uint64_t l2_index;		/* its L1 index, or NO_L2 */
	int l2_used;			/* it has an entry: write it out */
	unsigned char *buf;		/* one cluster: padding, refcounts, header */
	const char *backing;		/* caller's strings, copied */
	const char *backing_fmt;
	char *strings;
};

/* Data clusters to append, contiguous in the caller's buffer and the file. */
struct run {
	const unsigned char *p;
	size_t len;
	uint64_t host;
};

static uint64_t div_round_up(uint64_t n, uint64_t d)
{
	return n / d + !!(n % d);
}

static void put_be16(unsigned char *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, sizeof(v));
}

static void put_be32(unsigned char *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, sizeof(v));
}

static void put_be64(unsigned char *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, sizeof(v));
}

/* Bytes of cluster 0 the header needs for these backing strings. */
static size_t header_bytes(const char *backing, const char *backing_fmt)
{
	size_t n = QCOW_HEADER_LENGTH + 8;	/* + the end extension */

	if (backing)
		n += 8 + ((strlen(backing_fmt) + 7) & ~(size_t)7) + strlen(backing);
	return n;
}

int qcow2_create(struct qcow2 **qp, int fd, uint64_t size, unsigned int cluster_bits,
		 const char *backing, const char *backing_fmt)
{
	struct qcow2 *q;
	struct stat st;
	uint64_t clusters;
	size_t blen = 0, flen = 0;

	*qp = NULL;
	if (cluster_bits < QCOW2_MIN_CLUSTER_BITS || cluster_bits > QCOW2_MAX_CLUSTER_BITS ||
	    size % 512 || !backing != !backing_fmt)
		return -EINVAL;
	if (backing) {
		blen = strlen(backing);
		flen = strlen(backing_fmt);
		if (!blen || !flen || flen > QCOW_MAX_BACKING_FMT)
			return -EINVAL;
		if (blen > QCOW2_MAX_BACKING ||
		    header_bytes(backing, backing_fmt) > 1ULL << cluster_bits)
			return -ENAMETOOLONG;
	}
	if (fstat(fd, &st))
		return -errno;
	if (!S_ISREG(st.st_mode) || st.st_size)
		return -EINVAL;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->fd = fd;
	q->cluster_bits = cluster_bits;
	q->l2_bits = cluster_bits - 3;
	q->cluster_size = 1ULL << cluster_bits;
	q->size = size;
	q->next = 0;
	q->end = q->cluster_size;
	q->l2_index = NO_L2;
	clusters = div_round_up(size, q->cluster_size);
	q->l1_size = div_round_up(clusters, 1ULL << q->l2_bits);
	if (q->l1_size * 8 > QCOW_MAX_L1_BYTES) {
		free(q);
		return -EFBIG;
	}
	q->l1 = calloc(q->l1_size ? q->l1_size : 1, sizeof(*q->l1));
	q->l2 = calloc(1, q->cluster_size);
	q->buf = malloc(q->cluster_size);
	if (backing) {
		q->strings = malloc(blen + 1 + flen + 1);
		if (q->strings) {
			memcpy(q->strings, backing, blen + 1);
			memcpy(q->strings + blen + 1, backing_fmt, flen + 1);
			q->backing = q->strings;
			q->backing_fmt = q->strings + blen + 1;
		}
	}
	if (!q->l1 || !q->l2 || !q->buf || (backing && !q->strings)) {
		qcow2_abort(q);
		return -ENOMEM;
	}
	*qp = q;
	return 0;
}

/* Write out the data clusters gathered in @run. */
static int flush_run(struct qcow2 *q, struct run *run)
{
	int r;

	if (!run->len)
		return 0;
	r = pwrite_full(q->fd, run->p, run->len, run->host);
	run->len = 0;
	return r;
}

/* Append the L2 table being filled (if it maps anything) and start afresh. */
static int put_l2(struct qcow2 *q)
{
	int r;

	if (q->l2_index == NO_L2 || !q->l2_used)
		return 0;
	r = pwrite_full(q->fd, q->l2, q->cluster_size, q->end);
	if (r)
		return r;
	q->l1[q->l2_index] = htobe64(q->end | QCOW_OFLAG_COPIED);
	q->end += q->cluster_size;
	memset(q->l2, 0, q->cluster_size);
	q->l2_used = 0;
	return 0;
}

/* Map the guest clusters of one write; the caller flushes @run after. */
static int map_clusters(struct qcow2 *q, uint64_t off, const unsigned char *p, size_t len,
			struct run *run)
{
	uint64_t cs = q->cluster_size, idx, l1i, *e;
	size_t i, n;
	int r;

	for (i = 0; i < len; i += n) {
		n = len - i < cs ? len - i : cs;
		idx = (off + i) >> q->cluster_bits;
		l1i = idx >> q->l2_bits;
		if (l1i != q->l2_index) {
			r = flush_run(q, run);
			if (!r)
				r = put_l2(q);
			if (r)
				return r;
			q->l2_index = l1i;
		}
		e = &q->l2[idx & ((1ULL << q->l2_bits) - 1)];

		if (is_zero(p + i, n)) {
			/* Over a backing file, zero must hide what is there. */
			if (q->backing) {
				*e = htobe64(QCOW_OFLAG_ZERO);
				q->l2_used = 1;
			}
			/* The next data is not contiguous in @p with the run. */
			r = flush_run(q, run);
			if (r)
				return r;
			continue;
		}
		if (n < cs) {
			/* The image's last cluster, partial: pad it. */
			r = flush_run(q, run);
			if (r)
				return r;
			memcpy(q->buf, p + i, n);
			memset(q->buf + n, 0, cs - n);
			r = pwrite_full(q->fd, q->buf, cs, q->end);
			if (r)
				return r;
		} else {
			if (!run->len) {
				run->p = p + i;
				run->host = q->end;
			}
			run->len += cs;
		}
		*e = htobe64(q->end | QCOW_OFLAG_COPIED);
		q->l2_used = 1;
		q->end += cs;
	}
	return 0;
}

int qcow2_write(struct qcow2 *q, uint64_t off, const void *buf, size_t len)
{
	struct run run = { 0 };
	int r;

	if (q->err)
		return q->err;
	if (off & (q->cluster_size - 1) || off < q->next || off > q->size ||
	    len > q->size - off)
		return -EINVAL;
	if (len & (q->cluster_size - 1) && off + len != q->size)
		return -EINVAL;
	if (!len)
		return 0;

	r = map_clusters(q, off, buf, len, &run);
	if (!r)
		r = flush_run(q, &run);
	if (r) {
		q->err = r;
		return r;
	}
	q->next = off + len;
	return 0;
}

/*
 * Append the refcount blocks and the refcount table: every cluster from 0 to
 * the new end of the file, these included, has refcount 1. Sets *@table and
 * *@table_clusters for the header.
 */
static int put_refcounts(struct qcow2 *q, uint64_t *table, uint64_t *table_clusters)
{
	uint64_t cs = q->cluster_size, per_block = cs * 8 / (1U << QCOW_REFCOUNT_ORDER);
	uint64_t used = q->end >> q->cluster_bits, blocks = 0, tclusters = 0, total;
	uint64_t b, i, n, first_block;
	int r;

	/* Blocks and table count themselves: grow both until they cover all. */
	for (;;) {
		uint64_t nb, nt;

		total = used + blocks + tclusters;
		nb = div_round_up(total, per_block);
		nt = div_round_up(nb * 8, cs);
		if (nb == blocks && nt == tclusters)
			break;
		blocks = nb;
		tclusters = nt;
	}
	if (tclusters * cs > QCOW_MAX_REFTABLE_BYTES)
		return -EFBIG;

	first_block = q->end;
	for (b = 0; b < blocks; b++) {
		n = total - b * per_block < per_block ? total - b * per_block : per_block;
		memset(q->buf, 0, cs);
		for (i = 0; i < n; i++)
			put_be16(q->buf + 2 * i, 1);
		r = pwrite_full(q->fd, q->buf, cs, q->end);
		if (r)
			return r;
		q->end += cs;
	}

	*table = q->end;
	*table_clusters = tclusters;
	for (b = 0; b < blocks; b += cs / 8) {
		memset(q->buf, 0, cs);
		for (i = 0; i < cs / 8 && b + i < blocks; i++)
			put_be64(q->buf + 8 * i, first_block + (b + i) * cs);
		r = pwrite_full(q->fd, q->buf, cs, q->end);
		if (r)
			return r;
		q->end += cs;
	}
	return 0;
}

/* Cluster 0: header, header extensions, backing file name. */
static int put_header(struct qcow2 *q, uint64_t l1, uint64_t table, uint64_t table_clusters)
{
	unsigned char *h = q->buf;
	size_t pos = QCOW_HEADER_LENGTH, len;

	memset(h, 0, q->cluster_size);
	put_be32(h + 0, QCOW_MAGIC);
	put_be32(h + 4, QCOW_VERSION);
	/* 8: backing_file_offset, 16: backing_file_size, below */
	put_be32(h + 20, q->cluster_bits);
	put_be64(h + 24, q->size);
	/* 32: crypt_method 0 */
	put_be32(h + 36, (uint32_t)q->l1_size);
	put_be64(h + 40, l1);
	put_be64(h + 48, table);
	put_be32(h + 56, (uint32_t)table_clusters);
	/* 60: nb_snapshots, 64: snapshots_offset, 72-95: features: all 0 */
	put_be32(h + 96, QCOW_REFCOUNT_ORDER);
	put_be32(h + 100, QCOW_HEADER_LENGTH);
	/* 104: compression_type 0 (zlib), then padding */

	if (q->backing) {
		len = strlen(q->backing_fmt);
		put_be32(h + pos, QCOW_EXT_BACKING_FMT);
		put_be32(h + pos + 4, (uint32_t)len);
		memcpy(h + pos + 8, q->backing_fmt, len);
		pos += 8 + ((len + 7) & ~(size_t)7);
	}
	put_be32(h + pos, QCOW_EXT_END);
	put_be32(h + pos + 4, 0);
	pos += 8;
	if (q->backing) {
		/* Room checked by qcow2_create(). */
		len = strlen(q->backing);
		memcpy(h + pos, q->backing, len);
		put_be64(h + 8, pos);
		put_be32(h + 16, (uint32_t)len);
	}
	return pwrite_full(q->fd, h, q->cluster_size, 0);
}

int qcow2_finish(struct qcow2 *q)
{
	uint64_t l1, l1_bytes, table, table_clusters;
	int r;

	r = q->err;
	if (!r)
		r = put_l2(q);
	if (r)
		goto out;

	l1 = q->end;
	l1_bytes = q->l1_size * 8;
	r = pwrite_full(q->fd, q->l1, l1_bytes, l1);
	if (r)
		goto out;
	q->end += div_round_up(l1_bytes, q->cluster_size) * q->cluster_size;

	r = put_refcounts(q, &table, &table_clusters);
	if (!r)
		r = put_header(q, l1, table, table_clusters);
out:
	qcow2_abort(q);
	return r;
}

void qcow2_abort(struct qcow2 *q)
{
	if (!q)
		return;
	free(q->l1);
	free(q->l2);
	free(q->buf);
	free(q->strings);
	free(q);
}

int qcow2_probe(int fd, uint64_t *size)
{
	unsigned char h[32];
	uint32_t magic;
	uint64_t v;
	int r = pread_full(fd, h, sizeof(h), 0);

	if (r == -ENODATA)
		return 0;
	if (r)
		return r;
	memcpy(&magic, h, sizeof(magic));
	if (be32toh(magic) != QCOW_MAGIC)
		return 0;
	memcpy(&v, h + 24, sizeof(v));
	*size = be64toh(v);
	return 1;
}
