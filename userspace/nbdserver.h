/* SPDX-License-Identifier: GPL-2.0 */
/*
 * qemu-nbd's command line for an export: what it serves (the view, or the
 * bitmap's overlay over it), how it reads the view (O_DIRECT, native AIO),
 * the export name and TLS.
 */
#ifndef FLEECECTL_NBDSERVER_H
#define FLEECECTL_NBDSERVER_H

#include <limits.h>
#include <stddef.h>

struct nbd_server {
	/* In: */
	const char *qemu_nbd;		/* full path (find_program) */
	const char *view_path;		/* the device */
	const char *image;		/* the bitmap's overlay; NULL: the view */
	const char *bitmap;		/* with image: the bitmap it exports */
	const char *name;		/* export name; NULL: "" (qemu-nbd's default) */
	const char *description;
	const char *tls_dir;		/* absolute (nbd_tls_check); NULL: no TLS */
	const char *tls_authz;		/* client certificate's DN; NULL: any */
	int direct;			/* read the view with O_DIRECT, native AIO */
	/* Out (nbd_server_argv): */
	char *argv[32];
	char strings[4][PATH_MAX + 4096];
};

/*
 * Whether the export name @name is usable: 1 to NBD_NAME_MAX (nbdsock.h)
 * bytes, no control characters. Returns 0, or -1 with the reason in @why.
 */
int nbd_name_check(const char *name, char *why, size_t len);

/*
 * The --tls-creds directory @dir: it must be a directory holding readable
 * ca-cert.pem, server-cert.pem and server-key.pem (qemu's tls-creds-x509
 * names). Its absolute path goes into @abs (PATH_MAX bytes): the server may
 * start after a chdir. Returns 0, or -1 with the reason, naming the path,
 * in @why.
 */
int nbd_tls_check(const char *dir, char *abs, char *why, size_t len);

/*
 * Whether @path can be opened with O_DIRECT (a dm device can; a device
 * that cannot is read through the page cache instead). Returns 1 or 0.
 */
int nbd_direct_ok(const char *path);

/*
 * Fill s->argv: qemu-nbd read-only, persistent, any number of clients,
 * serving @view_path (raw) or @image (qcow2, exporting @bitmap). Returns 0,
 * or -1 when a path does not fit.
 */
int nbd_server_argv(struct nbd_server *s);

#endif
