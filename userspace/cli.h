/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the command files share about the command line: usage texts, usage
 * errors, and turning a device argument into a device-mapper name.
 */
#ifndef FLEECECTL_CLI_H
#define FLEECECTL_CLI_H

#include <getopt.h>
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
 * Short options mean one thing in every command that has them (fleecectl(8),
 * OPTIONS): -b --bitmap, -c --chunk-size, -f --full, -j --json, -l
 * --low-water, -m --meta, -n --dry-run, -p --port, -q --quiet, -s
 * --scratch, -t --to, -w --writable; -h --help, -v --verbose everywhere.
 * Other long options have none; their getopt values are not short options.
 *
 * getopt_long for a command's options: the same, plus -v/--verbose, which
 * it takes itself (verbose++), so that they also work after the command
 * ("fleecectl status -v"). @shortopts and @longopts are the command's own;
 * a long option of the command may use 'v' as its value (it is told from
 * -v by getopt's index). Returns as getopt_long does.
 */
int cmd_getopt(int argc, char **argv, const char *shortopts,
	       const struct option *longopts);

/*
 * --json given: a failure is also written on stdout as JSON (main()).
 * Set by main() before the command runs, by simple_options() too.
 */
extern int json_mode;

struct json;

/*
 * The failure so far (msg_failure()) as the member "error" of the object
 * @j is writing: {"code": N, "message": "..."}, N being @rc as main() will
 * exit with it (msg_exit_code()). Then main() writes no error object of its
 * own. For a command that has begun its JSON output when it fails.
 */
void json_error(struct json *j, int rc);
/* Whether json_error() has written the failure. */
int json_error_written(void);

/*
 * The device-mapper UUID of a device fleecectl makes: "FLEECE-" KIND "-"
 * NAME, or, when that is longer than a UUID may be, "FLEECE-" KIND
 * "-sha256-" and the SHA-256 of NAME in hex (names are unique, and so are
 * their hashes).
 */
void dm_uuid(const char *kind, const char *name, char *uuid, size_t len);
#define UUID_LEN 129			/* DM_UUID_LEN */

/*
 * Whether @uuid is free for the new device CMD NAME; else prints which
 * device has it (one renamed after fleecectl made it) and returns -1.
 */
int check_new_uuid(const char *cmd, const char *name, const char *uuid);

/*
 * What a command returns for an option getopt_long gave it and it does not
 * handle itself: -h/--help prints the synopsis on stdout (EXIT_OK),
 * anything else (getopt already said what) on stderr (EXIT_USAGE).
 */
int option_end(int c, const char *cmd);

/*
 * The options of a command that has only -h/--help and, when @json is not
 * NULL, --json (which sets *json). Returns -1 when the command goes on
 * (optind is at its first argument), else the exit code to return.
 */
int simple_options(int argc, char **argv, int *json);

/*
 * A device-mapper device named on the command line (NAME, /dev/mapper/NAME,
 * /dev/dm-N, /dev/vg/lv): its dm name. On failure prints
 * "fleecectl: CMD ARG: why" and returns -1.
 */
int resolve_dm_arg(const char *cmd, const char *arg, char *name, size_t len,
		   dev_t *devt);

struct fl_origin;
struct fl_view;

/*
 * The fleece-origin device (or the view) named on the command line, read
 * with get_origin() (get_view()). On failure prints "fleecectl: CMD NAME:
 * why" (no such device, not that kind of device) and returns -1.
 */
int lookup_origin(const char *cmd, const char *arg, struct fl_origin *o);
int lookup_view(const char *cmd, const char *arg, struct fl_view *v);

/*
 * The exit code of the device-mapper operation that just failed
 * (fdm_error()): EXIT_INVALID when the kernel refused the metadata, EXIT_IO
 * when it could not read or write it, else by its errno (errno_exit_code()).
 */
int dm_exit_code(void);

/* Whether NAME is usable as a new device-mapper name; else prints why. */
int check_new_name(const char *cmd, const char *name);

#endif
