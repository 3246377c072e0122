// SPDX-License-Identifier: GPL-2.0
/*
 * The lock that serialises fleecectl commands that change devices.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "lock.h"
#include "util.h"

int lock_take(void)
{
	static int held;
	int fd;

	/*
	 * flock() locks belong to an open file: a second open in this process
	 * would wait for our own lock forever (up calls several commands).
	 */
	if (held)
		return 0;
	held = 1;
	fd = open(LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		msg_verbose("cannot open %s: %s; going on without the lock",
			    LOCK_FILE, strerror(errno));
		return 0;
	}
	if (!flock(fd, LOCK_EX | LOCK_NB))
		return 0;	/* fd stays open: the lock lives until exit */
	msg_verbose("waiting for another fleecectl (%s)", LOCK_FILE);
	while (flock(fd, LOCK_EX) && errno == EINTR)
		;
	return 0;
}
