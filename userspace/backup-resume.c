// SPDX-License-Identifier: GPL-2.0
/*
 * backup-resume: an interrupted backup (a signal, a crash of the agent, a
 * full or vanished target) continues where its view says it stopped.
 *
 * A backup releases what it copied in extent order, and only after that
 * part of the output is durable (and verified). So the view's count of
 * released chunks, walked along the same extents, is exactly the prefix
 * that is safe in the output: everything after it is still readable from
 * the view and is copied again. The count comes from the kernel, not from
 * a file that could be older or newer than the view.
 *
 * What the count cannot say is which output holds that prefix. A record in
 * /run/fleecectl (gone at reboot, like the view itself) names it: the
 * image's partial file (device and inode) or the device, and what kind of
 * backup wrote it. It is made durable before the first release, and
 * "--resume" goes on only with a matching record and output.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup.h"
#include "util.h"

#define RESUME_DIR "/run/fleecectl"
#define RESUME_MAGIC "fleecectl-backup-resume 1"

struct record {
	char view[256];
	char out[PATH_MAX];
	char changed[256];
	char base[PATH_MAX];
	unsigned long long dev, ino, rdev, size, chunk;
};

static void record_path(const char *view, char *path, size_t len)
{
	snprintf(path, len, "%s/backup-%s.resume", RESUME_DIR, view);
}

/* The output's name, the same however it was spelled: absolute, no links. */
static void canonical(const char *to, char *out, size_t len)
{
	char d[PATH_MAX], f[PATH_MAX], dir[PATH_MAX];

	if (realpath(to, dir)) {
		str_copy(out, len, dir);
		return;
	}
	str_copy(d, sizeof(d), to);
	str_copy(f, sizeof(f), to);
	if (!realpath(dirname(d), dir)) {
		str_copy(out, len, to);
		return;
	}
	if (snprintf(out, len, "%s/%s", dir, basename(f)) >= (int)len)
		str_copy(out, len, to);
}

/* What this backup would record; its output's identity once opened. */
static void record_of(const struct backup *b, struct record *r)
{
	memset(r, 0, sizeof(*r));
	str_copy(r->view, sizeof(r->view), b->view);
	canonical(b->to, r->out, sizeof(r->out));
	str_copy(r->changed, sizeof(r->changed), b->changed ? b->changed : "-");
	str_copy(r->base, sizeof(r->base), b->base ? b->base : "-");
	if (b->out_fd < 0) {
		;
	} else if (b->out_is_dev) {
		r->rdev = b->out_st.st_rdev;
	} else {
		r->dev = b->out_st.st_dev;
		r->ino = b->out_st.st_ino;
	}
	r->size = b->size;
	r->chunk = b->chunk;
}

int backup_resume_save(struct backup *b)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	struct record r;
	FILE *f;
	int fd, ok;

	if (b->out_is_pipe)
		return 0;	/* a stream cannot be continued */
	record_of(b, &r);
	if (strchr(r.out, '\n') || strchr(r.base, '\n')) {
		msg_warn("backup %s: the output's name has a newline: this backup "
			 "cannot be resumed if interrupted", b->view);
		return 0;
	}
	if (mkdir(RESUME_DIR, 0700) && errno != EEXIST) {
		msg_err("backup %s: cannot make %s: %s", b->view, RESUME_DIR, strerror(errno));
		return -1;
	}
	record_path(b->view, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	f = fd < 0 ? NULL : fdopen(fd, "w");
	if (!f) {
		msg_err("backup %s: cannot write %s: %s", b->view, tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	fprintf(f, "%s\nview %s\nout %s\nchanged %s\nbase %s\n"
		"dev %llu\nino %llu\nrdev %llu\nsize %llu\nchunk %llu\n", RESUME_MAGIC,
		r.view, r.out, r.changed, r.base, r.dev, r.ino, r.rdev, r.size, r.chunk);
	ok = !fflush(f) && !fsync(fd);
	if (fclose(f) || !ok || rename(tmp, path)) {
		msg_err("backup %s: cannot write %s: %s", b->view, path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	/* Durable with its directory: it outlives a crash of the agent. */
	fd = open(RESUME_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

int backup_resume_exists(const struct backup *b)
{
	char path[PATH_MAX];

	record_path(b->view, path, sizeof(path));
	return !access(path, F_OK);
}

void backup_resume_drop(const char *view)
{
	char path[PATH_MAX];

	record_path(view, path, sizeof(path));
	if (unlink(path) && errno != ENOENT)
		msg_warn("%s: cannot remove %s: %s", view, path, strerror(errno));
}

void backup_resume_forget(const struct backup *b)
{
	backup_resume_drop(b->view);
}

/* "key value" lines; values run to the end of the line. */
static int record_load(const char *path, struct record *r)
{
	char line[PATH_MAX + 64], *v;
	int n = 0, magic = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return -errno;
	memset(r, 0, sizeof(*r));
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!strcmp(line, RESUME_MAGIC)) {
			magic = 1;
			continue;
		}
		v = strchr(line, ' ');
		if (!v)
			continue;
		*v++ = '\0';
		n++;
		if (!strcmp(line, "view"))
			str_copy(r->view, sizeof(r->view), v);
		else if (!strcmp(line, "out"))
			str_copy(r->out, sizeof(r->out), v);
		else if (!strcmp(line, "changed"))
			str_copy(r->changed, sizeof(r->changed), v);
		else if (!strcmp(line, "base"))
			str_copy(r->base, sizeof(r->base), v);
		else if (!strcmp(line, "dev"))
			r->dev = strtoull(v, NULL, 10);
		else if (!strcmp(line, "ino"))
			r->ino = strtoull(v, NULL, 10);
		else if (!strcmp(line, "rdev"))
			r->rdev = strtoull(v, NULL, 10);
		else if (!strcmp(line, "size"))
			r->size = strtoull(v, NULL, 10);
		else if (!strcmp(line, "chunk"))
			r->chunk = strtoull(v, NULL, 10);
		else
			n--;
	}
	fclose(f);
	return magic && n == 9 ? 0 : -EBADMSG;
}

int backup_resume_check(struct backup *b)
{
	char path[PATH_MAX];
	struct record want, got;
	const char *why = NULL;
	int r;

	record_path(b->view, path, sizeof(path));
	r = record_load(path, &got);
	if (r) {
		msg_err("backup %s: --resume: %s %s", b->view, path, r == -ENOENT ?
			"does not exist: no interrupted backup of this view to continue "
			"(take a new snapshot)" : r == -EBADMSG ?
			"is not a record of an interrupted backup" : strerror(-r));
		return -1;
	}
	record_of(b, &want);
	if (strcmp(want.view, got.view))
		why = "of another view";
	else if (strcmp(want.out, got.out))
		why = "to another output";
	else if (strcmp(want.changed, got.changed))
		why = "of another kind (--changed differs)";
	else if (strcmp(want.base, got.base))
		why = "from another base (--base differs)";
	else if (want.size != got.size || want.chunk != got.chunk)
		why = "of a view of another size or chunk size";
	else if (b->out_fd >= 0 &&
		 (want.dev != got.dev || want.ino != got.ino || want.rdev != got.rdev))
		why = "to an output that was replaced since";
	if (why) {
		msg_err("backup %s: --resume: the interrupted backup was %s (%s: %s); "
			"it cannot be continued", b->view, why, path, got.out);
		return -1;
	}
	return 0;
}

int backup_resume_point(struct backup *b, uint64_t released_chunks,
			struct copier_extent *e, unsigned int *n)
{
	uint64_t left = released_chunks, chunks, cut;
	unsigned int i, j;

	for (i = 0; i < *n && left; i++) {
		chunks = (e[i].len + b->chunk - 1) / b->chunk;
		if (chunks > left)
			break;
		left -= chunks;
		b->skipped += e[i].len;
	}
	if (i == *n && left) {
		msg_err("backup %s: --resume: the view released %llu chunks, more than "
			"this backup copies: released by something else; take a new "
			"snapshot", b->view, (unsigned long long)released_chunks);
		return -1;
	}
	if (i < *n && left) {
		cut = left * b->chunk;
		e[i].off += cut;
		e[i].len -= cut;
		b->skipped += cut;
	}
	for (j = 0; i < *n; i++, j++)
		e[j] = e[i];
	*n = j;
	return 0;
}
