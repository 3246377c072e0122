/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the command files share about the command line: usage texts, usage
 * errors, and turning a device argument into a device-mapper name.
 */
#ifndef FLEECECTL_CLI_H
#define FLEECECTL_CLI_H

#include <stdio.h>
#include <sys/types.h>

/* "create" for "fleecectl create" (argv[0] of a command), else as is. */
const char *command_name(const char *argv0);

/* The synopsis of one command (from the command table in main.c). */
void command_usage(const char *cmd, FILE *f);

/*
 * "fleecectl: CMD: message", then the command's synopsis, on stderr.
 * Returns EXIT_USAGE.
 */
int usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * A device-mapper device named on the command line (NAME, /dev/mapper/NAME,
 * /dev/dm-N, /dev/vg/lv): its dm name. On failure prints
 * "fleecectl: CMD ARG: why" and returns -1.
 */
int resolve_dm_arg(const char *cmd, const char *arg, char *name, size_t len,
		   dev_t *devt);

/* Whether NAME is usable as a new device-mapper name; else prints why. */
int check_new_name(const char *cmd, const char *name);

#endif
