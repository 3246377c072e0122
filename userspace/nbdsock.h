/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The socket an NBD export listens on: fleecectl makes it itself (then
 * hands it to the server), so that a busy socket or port is refused before
 * anything starts, and so that the socket is ready when the server is.
 */
#ifndef FLEECECTL_NBDSOCK_H
#define FLEECECTL_NBDSOCK_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct nbd_listen {
	int fd;				/* listening; -1: none */
	int is_unix;
	char path[108];			/* unix: the socket's path */
	dev_t dev;			/* ... and its inode, to remove only ours */
	ino_t ino;
	struct sockaddr_storage addr;	/* tcp: where it listens */
	socklen_t addrlen;
	char uri[416];			/* nbd+unix:///?socket=... or nbd://... */
};

/*
 * Listen on a unix socket at @path. An existing socket nobody listens on
 * (left by a killed server) is replaced; a socket a server listens on, or
 * a file that is not a socket, is refused. Returns 0, or -1 with the
 * reason in @why.
 */
int nbd_listen_unix(struct nbd_listen *l, const char *path, char *why, size_t len);

/*
 * Listen on TCP port @port of the numeric address @bind (IPv4 or IPv6).
 * Returns 0, or -1 with the reason in @why ("port 10809 on 127.0.0.1 is
 * in use").
 */
int nbd_listen_tcp(struct nbd_listen *l, const char *bind, unsigned int port,
		   char *why, size_t len);

/* Longest export name (--name); NBD allows 4096 bytes, URIs want fewer. */
#define NBD_NAME_MAX 255

/*
 * The URI a client connects with: @l->uri with the export @name (NULL:
 * the empty name, as @l->uri has it) and, with @tls, the scheme nbds.
 */
void nbd_listen_uri(const struct nbd_listen *l, const char *name, int tls, char *buf,
		    size_t len);

/* Whether a TCP listener is on a loopback address only. */
int nbd_listen_is_loopback(const struct nbd_listen *l);

/*
 * Close the listening socket; with @remove, also remove a unix socket's
 * path if it is still the one we made.
 */
void nbd_listen_close(struct nbd_listen *l, int remove);

/*
 * Whether an NBD server answers on @l, in two steps so that the caller can
 * watch the server process in between: nbd_probe_start() connects (the
 * connection waits in the socket's backlog until the server accepts it),
 * nbd_probe_wait() waits up to @timeout_ms for the newstyle greeting and
 * then ends the session politely (NBD_OPT_ABORT). nbd_probe_wait returns
 * 1 when the server answered, 0 when not yet, -1 when it cannot (closed,
 * wrong greeting) with the reason in @why; the probe is closed unless 0.
 */
struct nbd_probe {
	int fd;
	unsigned char greeting[18];	/* NBDMAGIC IHAVEOPT flags */
	size_t got;
};

int nbd_probe_start(struct nbd_probe *p, const struct nbd_listen *l, char *why,
		    size_t len);
int nbd_probe_wait(struct nbd_probe *p, int timeout_ms, char *why, size_t len);
void nbd_probe_close(struct nbd_probe *p);

#endif
