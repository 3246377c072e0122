// SPDX-License-Identifier: GPL-2.0
/*
 * The listening socket of an NBD export, and a probe that tells when the
 * server behind it answers.
 *
 * The socket is made here and handed to the server (socket activation)
 * rather than by the server itself, for two reasons: qemu-nbd removes an
 * existing unix socket before it binds its own, so it would silently steal
 * the path of a server that is running; and a socket that exists before
 * the server starts needs no polling for the path to appear.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbdsock.h"

/* Percent-encode what a URI query must not hold raw. */
static void uri_escape(const char *s, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *s && o + 4 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-._~/", c)) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

/* Is a server listening on the unix socket @path? 1 yes, 0 no, -errno. */
static int unix_listening(const char *path)
{
	struct sockaddr_un sa;
	int fd, r;

	if (unix_addr(path, &sa))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	r = !r ? 1 : errno == ECONNREFUSED ? 0 : -errno;
	close(fd);
	return r;
}

int nbd_listen_unix(struct nbd_listen *l, const char *path, char *why, size_t len)
{
	char abs[sizeof(l->path)], cwd[sizeof(l->path)], esc[384];
	struct sockaddr_un sa;
	struct stat st;
	mode_t old;
	int r;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	l->is_unix = 1;
	/* The URI must name the socket from anywhere: make the path absolute. */
	if (path[0] == '/') {
		r = snprintf(abs, sizeof(abs), "%s", path);
	} else {
		if (!getcwd(cwd, sizeof(cwd))) {
			snprintf(why, len, "the current directory: %s", strerror(errno));
			return -1;
		}
		r = snprintf(abs, sizeof(abs), "%s/%s", cwd, path);
	}
	if (r < 0 || (size_t)r >= sizeof(abs) || unix_addr(abs, &sa)) {
		snprintf(why, len, "socket path %s is too long (at most %zu bytes)", path,
			 sizeof(sa.sun_path) - 1);
		return -1;
	}
	if (!lstat(abs, &st)) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(why, len, "%s exists and is not a socket", abs);
			return -1;
		}
		r = unix_listening(abs);
		if (r > 0) {
			snprintf(why, len, "socket %s is busy: a server listens on it", abs);
			return -1;
		}
		if (r < 0) {
			snprintf(why, len, "socket %s: %s", abs, strerror(-r));
			return -1;
		}
		/* Nobody listens: left behind by a server that was killed. */
		if (unlink(abs) && errno != ENOENT) {
			snprintf(why, len, "cannot remove the stale socket %s: %s", abs,
				 strerror(errno));
			return -1;
		}
	} else if (errno != ENOENT) {
		snprintf(why, len, "%s: %s", abs, strerror(errno));
		return -1;
	}

	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		snprintf(why, len, "socket: %s", strerror(errno));
		return -1;
	}
	/* The socket gives the disk's data to whoever connects: root only. */
	old = umask(0177);
	r = bind(l->fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r || listen(l->fd, 64) || stat(abs, &st)) {
		snprintf(why, len, "cannot listen on %s: %s%s", abs, strerror(errno),
			 errno == EADDRINUSE ? " (busy: another server made it just now)" : "");
		close(l->fd);
		l->fd = -1;
		return -1;
	}
	strcpy(l->path, abs);
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	memcpy(&l->addr, &sa, sizeof(sa));
	l->addrlen = sizeof(sa);
	uri_escape(abs, esc, sizeof(esc));
	snprintf(l->uri, sizeof(l->uri), "nbd+unix:///?socket=%s", esc);
	return 0;
}

int nbd_listen_tcp(struct nbd_listen *l, const char *bind_addr, unsigned int port,
		   char *why, size_t len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)&l->addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&l->addr;
	int one = 1, v6 = 0;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	if (inet_pton(AF_INET, bind_addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		l->addrlen = sizeof(*in4);
	} else if (inet_pton(AF_INET6, bind_addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		l->addrlen = sizeof(*in6);
		v6 = 1;
	} else {
		snprintf(why, len, "--bind %s: not a numeric IPv4 or IPv6 address", bind_addr);
		return -1;
	}
	l->fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		snprintf(why, len, "socket: %s", strerror(errno));
		return -1;
	}
	/* A port in TIME_WAIT is free; one with a listener is not. */
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->fd, (struct sockaddr *)&l->addr, l->addrlen) || listen(l->fd, 64)) {
		if (errno == EADDRINUSE)
			snprintf(why, len, "port %u on %s is busy: something listens on it",
				 port, bind_addr);
		else if (errno == EADDRNOTAVAIL)
			snprintf(why, len, "%s is not an address of this machine", bind_addr);
		else
			snprintf(why, len, "cannot listen on %s port %u: %s", bind_addr, port,
				 strerror(errno));
		close(l->fd);
		l->fd = -1;
		return -1;
	}
	snprintf(l->uri, sizeof(l->uri), v6 ? "nbd://[%s]:%u/" : "nbd://%s:%u/",
		 bind_addr, port);
	return 0;
}

void nbd_listen_uri(const struct nbd_listen *l, const char *name, int tls, char *buf,
		    size_t len)
{
	/* The export name is the path: right after the first '/' past "://". */
	const char *host = strstr(l->uri, "://") + 3;
	size_t at = (size_t)(strchr(host, '/') + 1 - l->uri);
	char esc[3 * NBD_NAME_MAX + 1];	/* each byte may become %XX */

	uri_escape(name ? name : "", esc, sizeof(esc));
	/* nbd:// becomes nbds://, nbd+unix:// nbds+unix://. */
	snprintf(buf, len, "nbd%s%.*s%s%s", tls ? "s" : "", (int)(at - 3), l->uri + 3,
		 esc, l->uri + at);
}

int nbd_listen_is_loopback(const struct nbd_listen *l)
{
	const struct sockaddr_in *in4 = (const struct sockaddr_in *)&l->addr;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&l->addr;

	if (l->is_unix)
		return 1;
	if (l->addr.ss_family == AF_INET)
		return (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
}

void nbd_listen_close(struct nbd_listen *l, int remove)
{
	struct stat st;

	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	if (remove && l->is_unix && l->path[0] && !lstat(l->path, &st) &&
	    st.st_dev == l->dev && st.st_ino == l->ino)
		unlink(l->path);
}

int nbd_probe_start(struct nbd_probe *p, const struct nbd_listen *l, char *why,
		    size_t len)
{
	struct sockaddr_storage to = l->addr;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&to;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&to;

	memset(p, 0, sizeof(*p));
	/* A server on every address answers on loopback too. */
	if (to.ss_family == AF_INET && in4->sin_addr.s_addr == htonl(INADDR_ANY))
		in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (to.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
		in6->sin6_addr = in6addr_loopback;
	p->fd = socket(to.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->fd < 0 || connect(p->fd, (struct sockaddr *)&to, l->addrlen)) {
		snprintf(why, len, "cannot connect to %s: %s", l->uri, strerror(errno));
		nbd_probe_close(p);
		return -1;
	}
	return 0;
}

int nbd_probe_wait(struct nbd_probe *p, int timeout_ms, char *why, size_t len)
{
	/* Client flags: fixed newstyle, no zeroes; then option ABORT, length 0. */
	static const unsigned char bye[] = { 0, 0, 0, 3,
		'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 0, 0, 2, 0, 0, 0, 0 };
	struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
	ssize_t n;

	while (p->got < sizeof(p->greeting)) {
		n = poll(&pfd, 1, timeout_ms);
		if (n < 0 && errno == EINTR)
			return 0;
		if (!n)
			return 0;
		n = read(p->fd, p->greeting + p->got, sizeof(p->greeting) - p->got);
		if (n <= 0) {
			snprintf(why, len, "the server closed the connection%s%s",
				 n ? ": " : "", n ? strerror(errno) : "");
			nbd_probe_close(p);
			return -1;
		}
		p->got += (size_t)n;
	}
	if (memcmp(p->greeting, "NBDMAGICIHAVEOPT", 16)) {
		snprintf(why, len, "the server's greeting is not NBD newstyle");
		nbd_probe_close(p);
		return -1;
	}
	/* Best effort: the server is up whatever it makes of the goodbye. */
	if (write(p->fd, bye, sizeof(bye)) == (ssize_t)sizeof(bye)) {
		pfd.events = POLLIN;
		/* Wait for the server's reply so that it sees an orderly end. */
		if (poll(&pfd, 1, 1000) > 0) {
			unsigned char reply[64];
			ssize_t ignored = read(p->fd, reply, sizeof(reply));

			(void)ignored;
		}
	}
	nbd_probe_close(p);
	return 1;
}

void nbd_probe_close(struct nbd_probe *p)
{
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}
