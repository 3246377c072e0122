// SPDX-License-Identifier: GPL-2.0
/*
 * Command-line helpers shared by the commands.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "discover.h"
#include "dm.h"
#include "fleecectl.h"
#include "util.h"

const char *command_name(const char *argv0)
{
	static const char prefix[] = "fleecectl ";

	if (!strncmp(argv0, prefix, sizeof(prefix) - 1))
		return argv0 + sizeof(prefix) - 1;
	return argv0;
}

int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	cmd = command_name(cmd);
	fflush(stdout);
	fprintf(stderr, "fleecectl: %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	command_usage(cmd, stderr);
	return EXIT_USAGE;
}

int resolve_dm_arg(const char *cmd, const char *arg, char *name, size_t len,
		   dev_t *devt)
{
	int r = fdm_resolve(arg, name, len, devt);

	switch (r) {
	case 0:
		return 0;
	case -ENOENT:
		msg_err("%s %s: no such device-mapper device", cmd, arg);
		break;
	case -ENODEV:
		msg_err("%s %s: not a device-mapper device", cmd, arg);
		break;
	case -ENOTBLK:
		msg_err("%s %s: not a block device", cmd, arg);
		break;
	case -EIO:
		msg_err("%s %s: cannot query device-mapper: %s", cmd, arg, fdm_error());
		break;
	default:
		msg_err("%s %s: %s", cmd, arg, strerror(-r));
		break;
	}
	return -1;
}

int check_new_name(const char *cmd, const char *name)
{
	if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) {
		msg_err("%s %s: not a valid device-mapper name (no '/', not empty)",
			cmd, name);
		return -1;
	}
	if (strlen(name) >= NAME_LEN) {
		msg_err("%s %s: name too long (device-mapper names have at most %d characters)",
			cmd, name, NAME_LEN - 1);
		return -1;
	}
	return 0;
}
