// SPDX-License-Identifier: GPL-2.0
/*
 * Helper programs: find, run, start in the background.
 *
 * fork + exec rather than system(): arguments (device paths, socket paths)
 * never go through a shell.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn.h"

int find_program(const char *program, char *buf, size_t len)
{
	const char *path = getenv("PATH"), *p, *end;
	struct stat st;
	size_t n;

	if (!path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (p = path; *p; p = *end ? end + 1 : end) {
		end = strchrnul(p, ':');
		n = (size_t)(end - p);
		/* An empty element means the current directory: not for root. */
		if (!n || (size_t)snprintf(buf, len, "%.*s/%s", (int)n, p, program) >= len)
			continue;
		if (!stat(buf, &st) && S_ISREG(st.st_mode) && !access(buf, X_OK))
			return 0;
	}
	return -ENOENT;
}

/* In the child: fd @fd becomes @target (a no-op dup2 keeps FD_CLOEXEC). */
static int move_fd(int fd, int target)
{
	if (fd == target)
		return fcntl(fd, F_SETFD, 0);
	return dup2(fd, target) < 0 ? -1 : 0;
}

static int open_or_null(const char *path, int flags)
{
	return open(path ? path : "/dev/null", flags, 0600);
}

int run_wait(char *const argv[], const char *in_path, const char *out_path)
{
	int status, in, out;
	pid_t pid;

	in = open_or_null(in_path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	out = open_or_null(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC);
	if (out < 0) {
		status = -errno;
		close(in);
		return status;
	}
	pid = fork();
	if (pid < 0) {
		status = -errno;
		close(in);
		close(out);
		return status;
	}
	if (!pid) {
		if (move_fd(in, 0) || move_fd(out, 1) || dup2(1, 2) < 0)
			_exit(127);
		execv(argv[0], argv);
		_exit(127);
	}
	close(in);
	close(out);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

pid_t spawn_server(char *const argv[], const struct spawn_opts *o)
{
	pid_t parent = getpid(), pid;
	char num[32];
	int null;

	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		pid = -errno;
		close(null);
		return pid;
	}
	if (pid) {
		close(null);
		return pid;
	}

	/* The child. Nothing here may return. */
	if (o->new_pgrp)
		setpgid(0, 0);
	/* Never outlive fleecectl: an orphaned server would keep the view open. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(127);
	if (move_fd(null, 0))
		_exit(127);
	if (o->log_fd >= 0 && (move_fd(o->log_fd, 1) || dup2(1, 2) < 0))
		_exit(127);
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	if (o->listen_fd >= 0) {
		if (move_fd(o->listen_fd, 3))
			_exit(127);
		snprintf(num, sizeof(num), "%ld", (long)getpid());
		setenv("LISTEN_PID", num, 1);
		setenv("LISTEN_FDS", "1", 1);
	}
	execv(argv[0], argv);
	fprintf(stderr, "fleecectl: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

void describe_status(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
}
