// SPDX-License-Identifier: GPL-2.0
/*
 * fleecectl: manage dm-fleece origins and views through libdevmapper.
 *
 * main.c holds the command table and the global options; each command is in
 * its own file (origin.c, attach.c, snapshot.c, status.c, backup.c,
 * export.c, up.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dm.h"
#include "fleecectl.h"
#include "util.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *args;
	const char *help;
};

static const struct command commands[] = {
	{ "create", cmd_create, "NAME ORIGIN_DEV [--meta DEV] [--chunk-size SIZE] [--no-gap]",
	  "put fleece-origin on an unused device, as /dev/mapper/NAME" },
	{ "remove", cmd_remove, "NAME",
	  "remove a fleece-origin device that has no views" },
	{ "attach", cmd_attach, "DMDEV [--meta DEV] [--chunk-size SIZE] [--no-gap]",
	  "put fleece-origin under a device-mapper device, even in use" },
	{ "detach", cmd_detach, "DMDEV",
	  "undo attach: DMDEV gets its own table back" },
	{ "snapshot", cmd_snapshot,
	  "NAME... --scratch DEV... [--bitmap BITMAP [--full]]\n"
	  "                    [--on-full invalidate|fail-writes] [--low-water N]\n"
	  "                    [--writable] [--view VNAME...] [--nolockfs] [--force]",
	  "start a session: a point-in-time view of NAME (of each, at one point in time)" },
	{ "release", cmd_release, "VIEW [--commit|--abort]",
	  "end a session: remove the view (--commit: its backup succeeded)" },
	{ "bitmap", cmd_bitmap,
	  "add|remove|clear NAME BITMAP | merge NAME DST SRC | list NAME [--json]",
	  "manage the changed-block bitmaps of a fleece-origin device" },
	{ "changes", cmd_changes, "NAME BITMAP | VIEW [--json]",
	  "list changed byte ranges (a live bitmap, or a view's backup)" },
	{ "status", cmd_status, "[NAME] [--json]",
	  "show fleece-origin devices and their views" },
	{ "backup", cmd_backup,
	  "VIEW --to FILE|DEV [--full | --changed BITMAP [--base IMAGE]]\n"
	  "                    [--no-release] [--no-commit] [--verify]\n"
	  "                    [--batch SIZE] [--rate-limit RATE] [--force] [--quiet]",
	  "copy a view, releasing what has been copied" },
	{ "up", cmd_up, "[NAME...] [--tab FILE] [--dry-run] [--no-vouch]",
	  "set up the origins /etc/fleecetab lists (what boot runs)" },
	{ "down", cmd_down, "[NAME...] [--tab FILE] [--dry-run] [--force] [--shutdown]",
	  "undo up: detach or remove the origins /etc/fleecetab lists" },
	{ "tab", cmd_tab, "[NAME...] [--tab FILE] [--no-vouch]",
	  "check /etc/fleecetab and show what 'up' would do" },
	{ "export", cmd_export,
	  "VIEW [--bitmap BITMAP] (--socket PATH | --port N [--bind ADDR])\n"
	  "                    [--name NAME] [--tls-creds DIR [--tls-authz DN]]\n"
	  "                    [--daemon] [--pid-file PATH]",
	  "serve a view read-only over NBD (qemu-nbd), for a client to pull" },
};

#define NR_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	unsigned int i;

	fprintf(f,
		"usage: fleecectl [-h|--help] [-V|--version] [-v|--verbose] COMMAND [ARGS]\n"
		"\n"
		"commands:\n");
	for (i = 0; i < NR_COMMANDS; i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
	fprintf(f,
		"\n"
		"'fleecectl COMMAND --help' shows a command's arguments; man fleecectl\n"
		"tells more. Exit status: 0 success, 1 failure, 2 usage error.\n");
}

void command_usage(const char *cmd, FILE *f)
{
	unsigned int i;

	cmd = command_name(cmd);
	for (i = 0; i < NR_COMMANDS; i++)
		if (!strcmp(commands[i].name, cmd)) {
			fprintf(f, "usage: fleecectl %s %s\n", cmd, commands[i].args);
			if (f == stdout)
				fprintf(f, "%s.\n", commands[i].help);
			return;
		}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	char prog[64];
	unsigned int i;
	int c, rc;

	while ((c = getopt_long(argc, argv, "+hVv", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("fleecectl %s\n", FLEECECTL_VERSION);
			return EXIT_OK;
		case 'v':
			verbose++;
			break;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		fprintf(stderr, "fleecectl: no command given\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	for (i = 0; i < NR_COMMANDS; i++)
		if (!strcmp(argv[0], commands[i].name))
			break;
	if (i == NR_COMMANDS) {
		fprintf(stderr, "fleecectl: unknown command '%s'\n", argv[0]);
		usage(stderr);
		return EXIT_USAGE;
	}
	/* getopt's own messages then say "fleecectl create: ...". */
	snprintf(prog, sizeof(prog), "fleecectl %s", commands[i].name);
	argv[0] = prog;
	fdm_init();
	rc = commands[i].fn(argc, argv);
	fdm_exit();
	if (fflush(stdout) && rc == EXIT_OK) {
		perror("fleecectl: writing output");
		rc = EXIT_ERR;
	}
	return rc;
}
