// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel's reason for refusing a table, from /dev/kmsg.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kmsg.h"

int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (lseek(fd, 0, SEEK_END) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* "254:3: fleece: why" -> "fleece: why" */
static const char *skip_devnum(const char *s)
{
	const char *p = s;

	while ((*p >= '0' && *p <= '9') || *p == ':')
		p++;
	if (p > s && p[-1] == ':' && *p == ' ')
		return p + 1;
	return s;
}

int kmsg_reason(int fd, char *buf, size_t len)
{
	static const char table[] = "device-mapper: table: ";
	static const char target[] = "device-mapper: fleece: ";
	char rec[8192];
	const char *msg, *hit;
	char *nl;
	ssize_t n;
	int found = 0;

	if (fd < 0)
		return 0;
	for (;;) {
		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;	/* records were overwritten: go on */
		if (n <= 0)
			break;
		rec[n] = '\0';
		msg = strchr(rec, ';');
		if (!msg)
			continue;
		msg++;
		nl = strchr(msg, '\n');
		if (nl)
			*nl = '\0';
		hit = strstr(msg, table);
		if (hit) {
			snprintf(buf, len, "%s", skip_devnum(hit + sizeof(table) - 1));
			found = 1;
			continue;
		}
		/* A refused message: "device-mapper: fleece: 254:3: commit: ..." */
		hit = strstr(msg, target);
		if (!hit)
			continue;
		snprintf(buf, len, "%s", skip_devnum(hit + sizeof(target) - 1));
		found = 1;
	}
	close(fd);
	return found;
}
