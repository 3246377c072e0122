// SPDX-License-Identifier: GPL-2.0
/*
 * qemu-nbd's command line for an export.
 *
 * The view is read with O_DIRECT and native AIO (--cache=none --aio=native;
 * QEMU takes aio=native only with O_DIRECT): a backup reads every byte once,
 * and through the page cache it would push the machine's working set out
 * for data nobody reads again. With --bitmap the server opens a qcow2
 * overlay in a private directory (tmpfs, /run, which refuses O_DIRECT) with
 * the view as backing file, so the two settings go to the view's node only,
 * through --image-opts.
 *
 * TLS is qemu's: a tls-creds-x509 object over a directory of PEM files,
 * endpoint=server, and its default verify-peer=on, so a client must show a
 * certificate the same CA signed. --tls-authz narrows that to one
 * distinguished name (an authz-simple object).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbdserver.h"
#include "nbdsock.h"

int nbd_name_check(const char *name, char *why, size_t len)
{
	const unsigned char *p;

	if (!*name || strlen(name) > NBD_NAME_MAX) {
		snprintf(why, len, "an export name is 1 to %d bytes", NBD_NAME_MAX);
		return -1;
	}
	for (p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f) {
			snprintf(why, len, "an export name has no control characters");
			return -1;
		}
	return 0;
}

int nbd_tls_check(const char *dir, char *abs, char *why, size_t len)
{
	static const char *const files[] = { "ca-cert.pem", "server-cert.pem",
					     "server-key.pem" };
	char path[PATH_MAX + 32];
	struct stat st;
	unsigned int i;

	if (!realpath(dir, abs) || stat(abs, &st)) {
		snprintf(why, len, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, len, "%s is not a directory", dir);
		return -1;
	}
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", abs, files[i]);
		if (stat(path, &st) || access(path, R_OK)) {
			snprintf(why, len, "%s: %s (the directory needs ca-cert.pem, "
				 "server-cert.pem and server-key.pem)", path, strerror(errno));
			return -1;
		}
		if (!S_ISREG(st.st_mode)) {
			snprintf(why, len, "%s is not a file", path);
			return -1;
		}
	}
	return 0;
}

int nbd_direct_ok(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);

	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

/* Append @val to @buf (at *@o) with qemu's option escape: ',' is ",,". */
static int put_escaped(char *buf, size_t len, size_t *o, const char *val)
{
	for (; *val; val++) {
		if (*o + 3 > len)
			return -1;
		if (*val == ',')
			buf[(*o)++] = ',';
		buf[(*o)++] = *val;
	}
	buf[*o] = '\0';
	return 0;
}

/* @buf = @fmt's literal parts around each "%s" replaced by escaped @vals. */
static int opts_string(char *buf, size_t len, const char *fmt, const char *const vals[])
{
	size_t o = 0, n;
	const char *p;

	buf[0] = '\0';
	while ((p = strstr(fmt, "%s"))) {
		n = (size_t)(p - fmt);
		if (o + n + 1 > len)
			return -1;
		memcpy(buf + o, fmt, n);
		o += n;
		if (put_escaped(buf, len, &o, *vals++))
			return -1;
		fmt = p + 2;
	}
	n = strlen(fmt);
	if (o + n + 1 > len)
		return -1;
	memcpy(buf + o, fmt, n + 1);
	return 0;
}

int nbd_server_argv(struct nbd_server *s)
{
	char **a = s->argv;
	const char *vals[2];

	*a++ = (char *)s->qemu_nbd;
	*a++ = "--read-only";
	*a++ = "--persistent";
	/* Any number of clients: a backup server may pull in parallel. */
	*a++ = "--shared=0";
	*a++ = "--description";
	*a++ = (char *)s->description;
	if (s->name) {
		*a++ = "--export-name";
		*a++ = (char *)s->name;
	}
	if (s->tls_dir) {
		vals[0] = s->tls_dir;
		if (opts_string(s->strings[1], sizeof(s->strings[1]),
				"tls-creds-x509,id=tls0,endpoint=server,dir=%s", vals))
			return -1;
		*a++ = "--object";
		*a++ = s->strings[1];
		*a++ = "--tls-creds=tls0";
	}
	if (s->tls_authz) {
		vals[0] = s->tls_authz;
		if (opts_string(s->strings[2], sizeof(s->strings[2]),
				"authz-simple,id=authz0,identity=%s", vals))
			return -1;
		*a++ = "--object";
		*a++ = s->strings[2];
		*a++ = "--tls-authz=authz0";
	}
	if (!s->image) {
		*a++ = "--format=raw";
		if (s->direct) {
			*a++ = "--cache=none";
			*a++ = "--aio=native";
		}
		*a++ = (char *)s->view_path;
	} else {
		vals[0] = s->image;
		vals[1] = s->view_path;
		if (opts_string(s->strings[0], sizeof(s->strings[0]), s->direct ?
				"driver=qcow2,file.driver=file,file.filename=%s,"
				"backing.driver=raw,backing.file.filename=%s,"
				"backing.cache.direct=on,backing.file.aio=native" :
				"driver=qcow2,file.driver=file,file.filename=%s,"
				"backing.driver=raw,backing.file.filename=%s", vals))
			return -1;
		*a++ = "--bitmap";
		*a++ = (char *)s->bitmap;
		*a++ = "--image-opts";
		*a++ = s->strings[0];
	}
	*a = NULL;
	return 0;
}
