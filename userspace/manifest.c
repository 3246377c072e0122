// SPDX-License-Identifier: GPL-2.0
/* manifest: an image's block digests and what it is a backup of. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copier.h"
#include "fullio.h"
#include "manifest.h"
#include "util.h"

#define MANIFEST_MAGIC "fleece-manifest 1"

int manifest_init(struct manifest *m, uint64_t size, uint64_t block)
{
	memset(m, 0, sizeof(*m));
	m->size = size;
	m->block = block ? block : MANIFEST_BLOCK;
	m->nblocks = (size + m->block - 1) / m->block;
	m->digest = calloc(m->nblocks ? m->nblocks : 1, sizeof(*m->digest));
	m->have = calloc(m->nblocks ? m->nblocks : 1, 1);
	m->cur = m->nblocks;
	strcpy(m->kind, "-");
	strcpy(m->view, "-");
	strcpy(m->origin, "-");
	strcpy(m->bitmap, "-");
	strcpy(m->base, "-");
	strcpy(m->started, "-");
	if (!m->digest || !m->have) {
		manifest_free(m);
		return -ENOMEM;
	}
	return 0;
}

static void drop_cur(struct manifest *m)
{
	unsigned char dummy[SHA256_DIGEST_SIZE];

	if (m->cur < m->nblocks)
		sha256_final(&m->cur_ctx, dummy);
	m->cur = m->nblocks;
}

void manifest_free(struct manifest *m)
{
	drop_cur(m);
	free(m->digest);
	free(m->have);
	m->digest = NULL;
	m->have = NULL;
}

void manifest_piece(struct manifest *m, uint64_t off, uint64_t len,
		    const unsigned char digest[SHA256_DIGEST_SIZE])
{
	uint64_t b = off / m->block, end = (b + 1) * m->block;

	if (end > m->size)
		end = m->size;
	/* Only whole pieces, as verify reads them. */
	if (off % MANIFEST_PIECE || (len != MANIFEST_PIECE && off + len != end) ||
	    off + len > end) {
		drop_cur(m);
		return;
	}
	if (b != m->cur || off != m->cur_next) {
		drop_cur(m);
		if (off != b * m->block)
			return;		/* not from its start: manifest_fill() */
		m->cur = b;
		sha256_init(&m->cur_ctx);
	}
	sha256_update(&m->cur_ctx, digest, SHA256_DIGEST_SIZE);
	m->cur_next = off + len;
	if (m->cur_next == end) {
		m->have[b] = !sha256_final(&m->cur_ctx, m->digest[b]);
		m->cur = m->nblocks;
	}
}

void manifest_inherit(struct manifest *m, const struct manifest *base,
		      const unsigned char *touched)
{
	uint64_t b;

	if (base->size != m->size || base->block != m->block)
		return;
	for (b = 0; b < m->nblocks; b++) {
		if (m->have[b] || touched[b] || !base->have[b])
			continue;
		memcpy(m->digest[b], base->digest[b], SHA256_DIGEST_SIZE);
		m->have[b] = 1;
	}
}

int manifest_fill(struct manifest *m, int fd, unsigned int jobs)
{
	struct copier_opts o = { .fd = fd, .jobs = jobs, .piece = MANIFEST_PIECE,
				 .hash = 1, .ioprio = -1 };
	struct copier_extent *e;
	struct copier_piece *p;
	struct copier *c;
	unsigned int n = 0;
	uint64_t b;
	int r;

	drop_cur(m);
	e = calloc(m->nblocks ? m->nblocks : 1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	for (b = 0; b < m->nblocks; b++) {
		if (m->have[b])
			continue;
		if (n && e[n - 1].off + e[n - 1].len == b * m->block) {
			e[n - 1].len += m->block;
		} else {
			e[n].off = b * m->block;
			e[n].len = m->block;
			n++;
		}
		if (e[n - 1].off + e[n - 1].len > m->size)
			e[n - 1].len = m->size - e[n - 1].off;
	}
	r = n ? copier_start(&c, &o, e, n) : 0;
	free(e);
	if (r || !n)
		return r;
	while ((r = copier_next(c, &p)) > 0) {
		if (p->err) {
			r = p->err;
			break;
		}
		manifest_piece(m, p->off, p->len, p->digest);
		copier_put(c, p);
	}
	copier_stop(c);
	for (b = 0; !r && b < m->nblocks; b++)
		if (!m->have[b])
			r = -EIO;
	return r;
}

/* The manifest's text up to its "end" line; NULL when out of memory. */
static char *format(const struct manifest *m, size_t *len)
{
	char hex[65], *buf;
	size_t cap = 1024 + PATH_MAX + m->nblocks * 66, n;
	uint64_t b;

	buf = malloc(cap);
	if (!buf)
		return NULL;
	n = (size_t)snprintf(buf, cap,
			     "%s\nsize %" PRIu64 "\nblock %" PRIu64 "\npiece %d\n"
			     "hash sha256-of-piece-sha256\nkind %s\nview %s\norigin %s\n"
			     "bitmap %s\nchunk %" PRIu64 "\nbase %s\nstarted %s\n"
			     "digests %" PRIu64 "\n", MANIFEST_MAGIC, m->size, m->block,
			     MANIFEST_PIECE, m->kind, m->view, m->origin, m->bitmap,
			     m->chunk, m->base, m->started, m->nblocks);
	for (b = 0; b < m->nblocks && n < cap; b++) {
		sha256_hex(m->digest[b], hex);
		n += (size_t)snprintf(buf + n, cap - n, "%s\n", hex);
	}
	if (n >= cap) {
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

int manifest_write(const struct manifest *m, const char *path)
{
	unsigned char d[SHA256_DIGEST_SIZE];
	char tmp[PATH_MAX], hex[65], end[80];
	size_t len;
	char *text;
	int fd, r = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.new", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	text = format(m, &len);
	if (!text || sha256_buf(text, len, d)) {
		free(text);
		return -ENOMEM;
	}
	sha256_hex(d, hex);
	snprintf(end, sizeof(end), "end %s\n", hex);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		free(text);
		return -errno;
	}
	r = write_full(fd, text, len);
	if (!r)
		r = write_full(fd, end, strlen(end));
	if (!r && fsync(fd))
		r = -errno;
	if (close(fd) && !r)
		r = -errno;
	if (!r && rename(tmp, path))
		r = -errno;
	if (r)
		unlink(tmp);
	free(text);
	if (!r) {
		str_copy(tmp, sizeof(tmp), path);
		fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || fsync(fd))
			r = -errno;
		if (fd >= 0)
			close(fd);
	}
	return r;
}

/* "key value": the value into @dst, if the line is that key. */
static int field(const char *line, const char *key, char *dst, size_t len)
{
	size_t k = strlen(key);

	if (strncmp(line, key, k) || line[k] != ' ')
		return 0;
	str_copy(dst, len, line + k + 1);
	return 1;
}

static int parse(struct manifest *m, char *text, size_t len, const char **why)
{
	char *line = text, *nl, v[64];
	uint64_t size = 0, block = 0, piece = 0, count = 0, b = 0;
	unsigned char d[SHA256_DIGEST_SIZE];
	int in_digests = 0;

	memset(m, 0, sizeof(*m));
	*why = "it does not start with '" MANIFEST_MAGIC "'";
	if (strncmp(text, MANIFEST_MAGIC "\n", strlen(MANIFEST_MAGIC) + 1))
		return -EBADMSG;
	for (line = text; (size_t)(line - text) < len; line = nl + 1) {
		nl = memchr(line, '\n', len - (size_t)(line - text));
		*why = "it is cut short (no 'end' line)";
		if (!nl)
			goto bad;
		*nl = '\0';
		if (!strncmp(line, "end ", 4)) {
			*why = "its 'end' line does not match its contents (edited or damaged)";
			if (sha256_unhex(line + 4, d))
				goto bad;
			{
				unsigned char got[SHA256_DIGEST_SIZE];

				if (sha256_buf(text, (size_t)(line - text), got) ||
				    memcmp(got, d, sizeof(d)))
					goto bad;
			}
			*why = "it lists fewer digests than its size needs";
			if (!in_digests || b != m->nblocks)
				goto bad;
			return 0;
		}
		if (in_digests) {
			*why = "a digest line is not 64 hex digits";
			if (b >= m->nblocks || sha256_unhex(line, m->digest[b]))
				goto bad;
			m->have[b++] = 1;
		} else if (field(line, "size", v, sizeof(v))) {
			if (parse_u64(v, &size))
				goto badnum;
		} else if (field(line, "block", v, sizeof(v))) {
			if (parse_u64(v, &block))
				goto badnum;
		} else if (field(line, "piece", v, sizeof(v))) {
			if (parse_u64(v, &piece))
				goto badnum;
		} else if (field(line, "chunk", v, sizeof(v))) {
			if (parse_u64(v, &m->chunk))
				goto badnum;
		} else if (field(line, "digests", v, sizeof(v))) {
			if (parse_u64(v, &count))
				goto badnum;
			*why = "its size, block size or piece size is not this version's";
			if (piece != MANIFEST_PIECE || !block || block % MANIFEST_PIECE ||
			    count != (size + block - 1) / block || count > (1ULL << 32))
				goto bad;
			m->size = size;
			m->block = block;
			m->nblocks = count;
			m->cur = count;
			m->digest = calloc(count ? count : 1, sizeof(*m->digest));
			m->have = calloc(count ? count : 1, 1);
			*why = "out of memory";
			if (!m->digest || !m->have)
				goto bad;
			in_digests = 1;
		} else {
			field(line, "kind", m->kind, sizeof(m->kind));
			field(line, "view", m->view, sizeof(m->view));
			field(line, "origin", m->origin, sizeof(m->origin));
			field(line, "bitmap", m->bitmap, sizeof(m->bitmap));
			field(line, "base", m->base, sizeof(m->base));
			field(line, "started", m->started, sizeof(m->started));
		}
		*nl = '\n';
	}
	*why = "it is cut short (no 'end' line)";
	goto bad;
badnum:
	*why = "a number in it does not parse";
bad:
	free(m->digest);
	free(m->have);
	m->digest = NULL;
	m->have = NULL;
	return -EBADMSG;
}

int manifest_read(struct manifest *m, const char *path, const char **why)
{
	struct stat st;
	char *text;
	int fd, r;

	*why = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || st.st_size > (1LL << 40)) {
		r = errno ? -errno : -EFBIG;
		close(fd);
		return r;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		close(fd);
		return -ENOMEM;
	}
	r = pread_full(fd, text, (size_t)st.st_size, 0);
	close(fd);
	if (!r) {
		text[st.st_size] = '\0';
		r = parse(m, text, (size_t)st.st_size, why);
	}
	free(text);
	return r;
}
