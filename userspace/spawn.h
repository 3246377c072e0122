/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Running the helper programs fleecectl does not reimplement (qemu-nbd,
 * qemu-img, qemu-io): finding them in PATH, running one to completion,
 * and starting a long-lived one.
 */
#ifndef FLEECECTL_SPAWN_H
#define FLEECECTL_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

/*
 * The full path of PROGRAM found in $PATH (an executable file), into @buf.
 * Returns 0, or -ENOENT.
 */
int find_program(const char *program, char *buf, size_t len);

/*
 * Run argv[0] (a full path) with stdin from @in_path (NULL: /dev/null),
 * stdout and stderr into @out_path (NULL: /dev/null), and wait for it.
 * Returns its exit status (0-255), 128 + signal if it was killed, or
 * -errno if it could not be started.
 */
int run_wait(char *const argv[], const char *in_path, const char *out_path);

/* What a long-lived child gets (spawn_server). */
struct spawn_opts {
	int listen_fd;		/* passed as fd 3 by socket activation; -1: none */
	int log_fd;		/* its stdout/stderr; -1: inherit ours */
	int new_pgrp;		/* own process group: a terminal's ^C is ours */
};

/*
 * Start argv[0] (a full path) in the background with stdin on /dev/null.
 * With a listen_fd it gets it as fd 3 with LISTEN_FDS=1 and LISTEN_PID set
 * (systemd socket activation, which qemu-nbd understands), so the socket
 * exists and is ours before the server starts. The child is killed with
 * SIGTERM if fleecectl dies first. Returns its pid, or -errno.
 */
pid_t spawn_server(char *const argv[], const struct spawn_opts *o);

/* "exited with status 1" / "was killed by signal 9" for a wait status. */
void describe_status(int status, char *buf, size_t len);

#endif
