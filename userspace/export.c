// SPDX-License-Identifier: GPL-2.0
/*
 * export: serve a view read-only over NBD, for a backup server that pulls.
 *
 * fleecectl does not speak NBD itself: qemu-nbd (Debian's qemu-utils)
 * serves, fleecectl checks, prepares and supervises. It makes the listening
 * socket (nbdsock.c), and with --bitmap turns the view's changed ranges into
 * a QEMU dirty bitmap that the client reads as the metadata context
 * "qemu:dirty-bitmap:BITMAP" (nbdbitmap.c). qemu-nbd's command line (export
 * name, TLS, O_DIRECT) is nbdserver.c's. The server runs until a signal
 * (Ctrl-C, SIGTERM) stops it; with --daemon, in the background.
 *
 * Nothing is released and nothing is committed: the server cannot know
 * whether the client's copy succeeded. The client says so afterwards with
 * "fleecectl release VIEW --commit".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blockdev.h"
#include "cli.h"
#include "discover.h"
#include "fleecectl.h"
#include "nbdbitmap.h"
#include "nbdserver.h"
#include "nbdsock.h"
#include "parse.h"
#include "signals.h"
#include "spawn.h"
#include "util.h"

/* Private files (the bitmap's overlay, the daemon's server log) go here. */
#define RUN_DIR "/run/fleecectl"
/* A server that has not answered by then is not going to. */
#define START_TIMEOUT_S 60
/* After SIGTERM, the server gets this long before SIGKILL. */
#define STOP_TIMEOUT_S 10

struct export {
	const char *view;		/* dm name */
	const char *bitmap;		/* --bitmap */
	const char *pid_file;
	const char *name;		/* --name; NULL: the empty name */
	const char *tls_creds;		/* --tls-creds as given */
	const char *tls_authz;		/* --tls-authz */
	int daemon;
	int direct;			/* the view takes O_DIRECT */
	char tls_dir[PATH_MAX];		/* --tls-creds, absolute; "" without */
	char uri[sizeof(((struct nbd_listen *)0)->uri) + 3 * NBD_NAME_MAX + 8];
	char view_path[PATH_MAX];
	char qemu_nbd[PATH_MAX], qemu_img[PATH_MAX], qemu_io[PATH_MAX];
	char dir[PATH_MAX];		/* private directory; "" until made */
	char log[PATH_MAX + 16];	/* the daemon's server log */
	struct nbd_listen sock;
	struct nbd_bitmap map;
	struct nbd_server srv;		/* qemu-nbd's command line */
	pid_t server;
	int pid_written;
};

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* The programs must be there before anything is made. */
static int find_programs(struct export *e)
{
	struct {
		const char *name;
		char *path;
		int needed;
	} progs[] = {
		{ "qemu-nbd", e->qemu_nbd, 1 },
		{ "qemu-img", e->qemu_img, e->bitmap != NULL },
		{ "qemu-io", e->qemu_io, e->bitmap != NULL },
	};
	unsigned int i;

	for (i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
		if (!progs[i].needed)
			continue;
		if (find_program(progs[i].name, progs[i].path, PATH_MAX)) {
			msg_err("export %s: %s not found in PATH (it is in Debian's "
				"qemu-utils package): cannot serve NBD", e->view,
				progs[i].name);
			return -1;
		}
	}
	return 0;
}

/* Same as backup: /dev/mapper/NAME if it is this device, else /dev/block. */
static void find_view_path(struct export *e, const struct fl_view *v)
{
	struct stat st;

	snprintf(e->view_path, sizeof(e->view_path), "/dev/mapper/%s", v->name);
	if (stat(e->view_path, &st) || !S_ISBLK(st.st_mode) || st.st_rdev != v->devt)
		bdev_path(v->devt, e->view_path, sizeof(e->view_path));
}

/*
 * O_DIRECT (nbdserver.c says why); a device that refuses it is still served,
 * through the page cache.
 */
static void check_direct(struct export *e)
{
	e->direct = nbd_direct_ok(e->view_path);
	if (!e->direct)
		msg_warn("export %s: %s cannot be opened with O_DIRECT (%s): served "
			 "through the page cache", e->view, e->view_path, strerror(errno));
}

/* What backup refuses, export refuses: a pull must get the point in time. */
static int check_view(struct export *e, const struct fl_view *v)
{
	const struct view_status *st = &v->status;

	if (!v->single || !v->have_status) {
		msg_err("export %s: %s", v->name, !v->single ?
			"its table has more than the view target" : "cannot read its status");
		return -1;
	}
	if (!st->active) {
		msg_fail(EXIT_INVALID, "export %s: the session is invalid (scratch was full, "
			 "or a device failed); take a new snapshot", v->name);
		return -1;
	}
	if (st->released) {
		msg_fail(EXIT_INVALID, "export %s: %llu chunks were released already (by a "
			 "backup?) and read as zeroes: a pull would not get the point in time; "
			 "take a new snapshot", v->name, (unsigned long long)st->released);
		return -1;
	}
	if (!e->bitmap)
		return 0;
	if (st->txn == TXN_NONE) {
		msg_err("export %s: --bitmap %s: the view has no bitmap (take the snapshot "
			"with --bitmap %s)", v->name, e->bitmap, e->bitmap);
		return -1;
	}
	if (strcmp(st->bitmap, e->bitmap)) {
		msg_err("export %s: --bitmap %s: the view's bitmap is '%s'", v->name,
			e->bitmap, st->bitmap);
		return -1;
	}
	if (st->txn != TXN_OPEN) {
		msg_fail(EXIT_INVALID, "export %s: its backup transaction is %s already: %s",
			 v->name, txn_name(st->txn), st->txn == TXN_COMMITTED ?
			 "this backup was done; release the view" :
			 "the changes went back to the bitmap; take a new snapshot");
		return -1;
	}
	return 0;
}

static int make_dir(struct export *e)
{
	const char *base = RUN_DIR;

	if (mkdir(base, 0700) && errno != EEXIST)
		base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(e->dir, sizeof(e->dir), "%s/export-%.100s.XXXXXX", base, e->view);
	if (!mkdtemp(e->dir)) {
		msg_err("export %s: cannot make a directory for its files in %s: %s",
			e->view, base, strerror(errno));
		e->dir[0] = '\0';
		return -1;
	}
	return 0;
}

/* Undo everything export made; the view itself is never touched. */
static void cleanup(struct export *e)
{
	char buf[32];
	int fd;
	ssize_t n;

	nbd_listen_close(&e->sock, 1);
	if (e->pid_written) {
		/* Only our own pid file: someone may have started another since. */
		fd = open(e->pid_file, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (n > 0 && (buf[n] = '\0', atol(buf) == (long)getpid()))
				unlink(e->pid_file);
		}
	}
	if (e->dir[0]) {
		if (e->map.dir)
			nbd_bitmap_remove(&e->map);
		if (e->log[0])
			unlink(e->log);
		rmdir(e->dir);
	}
}

static int write_pid_file(struct export *e)
{
	FILE *f;

	if (!e->pid_file)
		return 0;
	f = fopen(e->pid_file, "we");
	if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f)) {
		msg_err("export %s: cannot write the pid file %s: %s", e->view, e->pid_file,
			strerror(errno));
		return -1;
	}
	e->pid_written = 1;
	return 0;
}

/* The daemon's server log, in an error message. */
static void show_log(const struct export *e)
{
	char line[512];
	FILE *f;

	if (!e->log[0] || !(f = fopen(e->log, "r")))
		return;
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "  qemu-nbd: %s", line);
	fclose(f);
}

/* Stop the server: SIGTERM, then SIGKILL if it does not go. */
static int stop_server(struct export *e)
{
	int status, i;

	kill(e->server, SIGTERM);
	for (i = 0; i < STOP_TIMEOUT_S * 10; i++) {
		if (waitpid(e->server, &status, WNOHANG) == e->server)
			return status;
		sleep_ms(100);
	}
	msg_warn("export %s: qemu-nbd did not stop within %d s; killing it", e->view,
		 STOP_TIMEOUT_S);
	kill(e->server, SIGKILL);
	while (waitpid(e->server, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

/* Start qemu-nbd on our socket and wait until it answers. */
static int start_server(struct export *e)
{
	char desc[NAME_LEN + 32], why[512], st[128];
	struct spawn_opts o = { .listen_fd = e->sock.fd, .log_fd = -1, .new_pgrp = 1 };
	struct nbd_probe p;
	double deadline;
	int status, r, log_fd = -1;

	snprintf(desc, sizeof(desc), "dm-fleece view %s", e->view);
	e->srv = (struct nbd_server){ .qemu_nbd = e->qemu_nbd, .view_path = e->view_path,
		.image = e->bitmap ? e->map.image : NULL, .bitmap = e->bitmap,
		.name = e->name, .description = desc,
		.tls_dir = e->tls_dir[0] ? e->tls_dir : NULL, .tls_authz = e->tls_authz,
		.direct = e->direct };
	if (nbd_server_argv(&e->srv)) {
		msg_err("export %s: qemu-nbd's options are too long", e->view);
		return -1;
	}
	if (e->daemon) {
		snprintf(e->log, sizeof(e->log), "%s/qemu-nbd.log", e->dir);
		log_fd = open(e->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (log_fd < 0) {
			msg_err("export %s: cannot create %s: %s", e->view, e->log,
				strerror(errno));
			return -1;
		}
		o.log_fd = log_fd;
	}
	e->server = spawn_server(e->srv.argv, &o);
	if (log_fd >= 0)
		close(log_fd);
	if (e->server < 0) {
		msg_err("export %s: cannot start qemu-nbd: %s", e->view,
			strerror((int)-e->server));
		e->server = 0;
		return -1;
	}
	/*
	 * The server has the socket now. Ours goes, so that if the server dies
	 * nobody holds it and the probe below learns so at once.
	 */
	close(e->sock.fd);
	e->sock.fd = -1;

	deadline = now_seconds() + START_TIMEOUT_S;
	if (nbd_probe_start(&p, &e->sock, why, sizeof(why)))
		goto failed;
	for (;;) {
		r = nbd_probe_wait(&p, 200, why, sizeof(why));
		if (r > 0)
			return 0;
		if (waitpid(e->server, &status, WNOHANG) == e->server) {
			nbd_probe_close(&p);
			describe_status(status, st, sizeof(st));
			msg_err("export %s: qemu-nbd %s before it served %s", e->view, st,
				e->view_path);
			show_log(e);
			e->server = 0;
			return -1;
		}
		if (r < 0)
			goto failed;
		if (sig_caught()) {
			nbd_probe_close(&p);
			msg_fail(EXIT_INTR, "export %s: interrupted by signal %d while qemu-nbd "
				 "started", e->view, sig_caught());
			return -1;
		}
		if (now_seconds() > deadline) {
			nbd_probe_close(&p);
			snprintf(why, sizeof(why), "no answer within %d s", START_TIMEOUT_S);
			goto failed;
		}
	}
failed:
	msg_err("export %s: qemu-nbd does not answer on %s: %s", e->view, e->sock.uri, why);
	show_log(e);
	return -1;
}

static void print_ready(const struct export *e, const struct fl_view *v)
{
	printf("export %s: serving %s read-only over NBD (%" PRIu64 " bytes)\n", e->view,
	       e->view_path, v->sectors << 9);
	printf("  uri:      %s\n", e->uri);
	printf("  name:     '%s'%s\n", e->name ? e->name : "",
	       e->name ? "" : " (the default export name: empty)");
	if (e->tls_dir[0])
		printf("  tls:      x509 from %s; clients show a certificate its CA signed%s%s\n",
		       e->tls_dir, e->tls_authz ? ", with the name " : "",
		       e->tls_authz ? e->tls_authz : "");
	if (e->bitmap)
		printf("  changes:  meta context qemu:dirty-bitmap:%s, %" PRIu64 " range%s, %"
		       PRIu64 " bytes\n", e->bitmap, e->map.ranges,
		       e->map.ranges == 1 ? "" : "s", e->map.bytes);
	else if (v->status.txn == TXN_OPEN)
		printf("  changes:  not exported (--bitmap %s exports them)\n",
		       v->status.bitmap);
	printf("  stop:     %skill -TERM %ld; then 'fleecectl release %s --commit' "
	       "once the copy is safe\n", e->daemon ? "" : "Ctrl-C or ",
	       (long)getpid(), e->view);
	fflush(stdout);
}

/* Until a signal, or until the server ends by itself (an error). */
static int supervise(struct export *e)
{
	char st[128];
	int status, sig;

	for (;;) {
		if ((sig = sig_caught())) {
			status = stop_server(e);
			e->server = 0;
			if (!e->daemon)
				printf("export %s: stopped (signal %d, %s)\n", e->view, sig,
				       strsignal(sig));
			return EXIT_OK;
		}
		if (waitpid(e->server, &status, WNOHANG) == e->server) {
			e->server = 0;
			describe_status(status, st, sizeof(st));
			msg_err("export %s: qemu-nbd %s; the export has ended", e->view, st);
			show_log(e);
			return EXIT_ERR;
		}
		sleep_ms(200);
	}
}

/*
 * --daemon: the parent returns once the child has the server answering
 * (exit 0) or has failed (exit 1, the child said why on our stderr).
 * Returns -1 in the child, else the parent's exit code.
 */
static int daemonize(int *ready_fd, int listen_fd)
{
	int fds[2];
	ssize_t n;
	char c = 0;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC)) {
		msg_err("export: pipe: %s", strerror(errno));
		return EXIT_ERR;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		msg_err("export: fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return EXIT_ERR;
	}
	if (!pid) {
		/* Every path it uses is absolute: hold no mount busy. */
		close(fds[0]);
		setsid();
		if (chdir("/"))
			msg_warn("export: chdir /: %s", strerror(errno));
		*ready_fd = fds[1];
		return -1;
	}
	/* The socket is the child's: if its server dies, nobody may hold it. */
	close(listen_fd);
	close(fds[1]);
	do
		n = read(fds[0], &c, 1);
	while (n < 0 && errno == EINTR);
	close(fds[0]);
	/* Nothing read: the child failed (and said why) or died. */
	return n == 1 && c == 'R' ? EXIT_OK : EXIT_ERR;
}

/* The daemon is ready: tell the parent, let go of the terminal. */
static void detach_stdio(int ready_fd)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	fflush(NULL);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		close(null);
	}
	if (write(ready_fd, "R", 1) != 1)
		_exit(EXIT_ERR);
	close(ready_fd);
}

static int parse_port(const char *s, unsigned int *port)
{
	uint64_t v;

	if (parse_u64(s, &v) || !v || v > 65535)
		return -1;
	*port = (unsigned int)v;
	return 0;
}

int cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bitmap", required_argument, NULL, 'b' },
		{ "socket", required_argument, NULL, 's' },
		{ "port", required_argument, NULL, 'p' },
		{ "bind", required_argument, NULL, 'a' },
		{ "daemon", no_argument, NULL, 'd' },
		{ "pid-file", required_argument, NULL, 'P' },
		{ "name", required_argument, NULL, 'n' },
		{ "tls-creds", required_argument, NULL, 'T' },
		{ "tls-authz", required_argument, NULL, 'Z' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct export e = { .sock.fd = -1 };
	const char *socket_path = NULL, *bind_addr = NULL;
	unsigned int port = 0;
	char why[512];
	struct fl_view v;
	int c, rc = EXIT_ERR, ready_fd = -1;

	optind = 0;
	while ((c = cmd_getopt(argc, argv, "b:p:h", opts)) != -1) {
		switch (c) {
		case 'b':
			e.bitmap = optarg;
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'p':
			if (parse_port(optarg, &port))
				return usage_error(argv[0], "invalid --port '%s': 1 to 65535",
						   optarg);
			break;
		case 'a':
			bind_addr = optarg;
			break;
		case 'd':
			e.daemon = 1;
			break;
		case 'P':
			e.pid_file = optarg;
			break;
		case 'n':
			e.name = optarg;
			break;
		case 'T':
			e.tls_creds = optarg;
			break;
		case 'Z':
			e.tls_authz = optarg;
			break;
		default:
			return option_end(c, argv[0]);
		}
	}
	if (argc - optind != 1)
		return usage_error(argv[0], "needs VIEW");
	if (!socket_path == !port)
		return usage_error(argv[0], "needs --socket PATH or --port N (one of them)");
	if (bind_addr && !port)
		return usage_error(argv[0], "--bind goes with --port");
	if (e.bitmap && !valid_bitmap_name(e.bitmap))
		return usage_error(argv[0], "invalid --bitmap '%s': not a bitmap name",
				   e.bitmap);
	if (e.pid_file && e.pid_file[0] != '/')
		return usage_error(argv[0], "--pid-file needs an absolute path");
	if (e.name && nbd_name_check(e.name, why, sizeof(why)))
		return usage_error(argv[0], "invalid --name '%s': %s", e.name, why);
	if (e.tls_authz && !e.tls_creds)
		return usage_error(argv[0], "--tls-authz goes with --tls-creds");
	if (e.tls_authz && !*e.tls_authz)
		return usage_error(argv[0], "--tls-authz needs a distinguished name");

	if (lookup_view("export", argv[optind], &v))
		return EXIT_ERR;
	e.view = v.name;
	if (check_view(&e, &v) || find_programs(&e))
		return EXIT_ERR;
	if (e.tls_creds && nbd_tls_check(e.tls_creds, e.tls_dir, why, sizeof(why))) {
		msg_err("export %s: --tls-creds %s", e.view, why);
		return EXIT_ERR;
	}
	find_view_path(&e, &v);
	check_direct(&e);

	/* From here on, whatever was made is removed on the way out. */
	sig_catch();
	if (socket_path ? nbd_listen_unix(&e.sock, socket_path, why, sizeof(why)) :
	    nbd_listen_tcp(&e.sock, bind_addr ? bind_addr : "127.0.0.1", port, why,
			   sizeof(why))) {
		msg_err("export %s: %s", e.view, why);
		goto out;
	}
	nbd_listen_uri(&e.sock, e.name, e.tls_dir[0] != '\0', e.uri, sizeof(e.uri));
	if (!nbd_listen_is_loopback(&e.sock) && !e.tls_dir[0])
		msg_warn("export %s: %s is not a loopback address: without --tls-creds "
			 "NBD has no authentication, whoever reaches it reads the disk",
			 e.view, bind_addr);
	if (make_dir(&e))
		goto out;
	if (e.bitmap) {
		e.map = (struct nbd_bitmap){ .qemu_img = e.qemu_img, .qemu_io = e.qemu_io,
			.dir = e.dir, .view = e.view, .view_path = e.view_path,
			.bitmap = e.bitmap, .chunk = v.status.chunk_sectors << 9,
			.size = v.sectors << 9 };
		if (!e.map.chunk) {
			msg_err("export %s: its status gives no chunk size", e.view);
			goto out;
		}
		if (nbd_bitmap_make(&e.map, why, sizeof(why))) {
			msg_err("export %s: --bitmap %s: %s", e.view, e.bitmap, why);
			goto out;
		}
	}
	if (e.daemon) {
		rc = daemonize(&ready_fd, e.sock.fd);
		if (rc >= 0)
			return rc;	/* the parent: the child owns it all now */
		rc = EXIT_ERR;
	}
	if (start_server(&e) || write_pid_file(&e))
		goto out;
	print_ready(&e, &v);
	if (e.daemon)
		detach_stdio(ready_fd);
	rc = supervise(&e);
out:
	if (e.server > 0)
		stop_server(&e);
	cleanup(&e);
	sig_restore();
	return rc;
}
