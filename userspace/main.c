// SPDX-License-Identifier: GPL-2.0
/*
 * fleecectl: manage dm-fleece origins and views through libdevmapper.
 *
 * main.c holds the command table and the global options; each command is in
 * its own file (origin.c, attach.c, snapshot.c, status.c, backup.c,
 * verify.c, export.c, up.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dm.h"
#include "fleecectl.h"
#include "json.h"
#include "signals.h"
#include "util.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *args;
	const char *help;
	int json;		/* takes --json */
};

static const struct command commands[] = {
	{ "create", cmd_create, "NAME ORIGIN_DEV [--meta DEV] [--chunk-size SIZE] [--no-gap]",
	  "put fleece-origin on an unused device, as /dev/mapper/NAME", 0 },
	{ "remove", cmd_remove, "NAME",
	  "remove a fleece-origin device that has no views", 0 },
	{ "attach", cmd_attach, "DMDEV [--meta DEV] [--chunk-size SIZE] [--no-gap]",
	  "put fleece-origin under a device-mapper device, even in use", 0 },
	{ "detach", cmd_detach, "DMDEV",
	  "undo attach: DMDEV gets its own table back", 0 },
	{ "snapshot", cmd_snapshot,
	  "NAME... --scratch DEV... [--bitmap BITMAP [--full]]\n"
	  "                    [--on-full invalidate|fail-writes] [--low-water N]\n"
	  "                    [--writable] [--view VNAME...] [--nolockfs] [--force]",
	  "start a session: a point-in-time view of NAME (of each, at one point in time)", 0 },
	{ "release", cmd_release, "VIEW [--commit|--abort]",
	  "end a session: remove the view (--commit: its backup succeeded)", 0 },
	{ "bitmap", cmd_bitmap,
	  "add|remove|clear NAME BITMAP | merge NAME DST SRC | list NAME [--json]",
	  "manage the changed-block bitmaps of a fleece-origin device", 1 },
	{ "changes", cmd_changes, "NAME BITMAP | VIEW [--json]",
	  "list changed byte ranges (a live bitmap, or a view's backup)", 1 },
	{ "status", cmd_status, "[NAME] [--json]",
	  "show fleece-origin devices and their views", 1 },
	{ "backup", cmd_backup,
	  "VIEW --to FILE|DEV|- [--full | --changed BITMAP [--base IMAGE]]\n"
	  "                    [--resume] [--release|--no-release] [--commit|--no-commit]\n"
	  "                    [--verify] [--format raw|qcow2] [--manifest FILE | --no-manifest]\n"
	  "                    [--jobs N] [--ioprio idle|best-effort|inherit]\n"
	  "                    [--batch SIZE] [--rate-limit RATE] [--force] [--quiet]",
	  "copy a view, releasing what has been copied", 0 },
	{ "verify", cmd_verify, "IMAGE [--manifest FILE] [--jobs N]",
	  "check an image against the manifest its backup wrote", 0 },
	{ "up", cmd_up, "[NAME...] [--tab FILE] [--dry-run] [--no-vouch]",
	  "set up the origins /etc/fleecetab lists (what boot runs)", 0 },
	{ "down", cmd_down, "[NAME...] [--tab FILE] [--dry-run] [--force] [--shutdown]",
	  "undo up: detach or remove the origins /etc/fleecetab lists", 0 },
	{ "tab", cmd_tab, "[NAME...] [--tab FILE] [--no-vouch]",
	  "check /etc/fleecetab and show what 'up' would do", 0 },
	{ "export", cmd_export,
	  "VIEW [--bitmap BITMAP] (--socket PATH | --port N [--bind ADDR])\n"
	  "                    [--name NAME] [--tls-creds DIR [--tls-authz DN]]\n"
	  "                    [--daemon] [--pid-file PATH]",
	  "serve a view read-only over NBD (qemu-nbd), for a client to pull", 0 },
};

#define NR_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	unsigned int i;

	fprintf(f,
		"usage: fleecectl [-h|--help] [-V|--version] [-v|--verbose] COMMAND [ARGS]\n"
		"       (-v|--verbose also after COMMAND)\n"
		"\n"
		"commands:\n");
	for (i = 0; i < NR_COMMANDS; i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
	fprintf(f,
		"\n"
		"'fleecectl COMMAND --help' shows a command's arguments; man fleecectl\n"
		"tells more. Exit status: 0 success, 1 failure, 2 usage error, 3 no such\n"
		"device (or not one of dm-fleece's), 4 busy, 5 invalid session or\n"
		"metadata, 6 I/O error, 7 interrupted by a signal.\n");
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

/* --json (or -j) among a command's options, before any "--". */
static int wants_json(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--json") || !strcmp(argv[i], "-j"))
			return 1;
	return 0;
}

/* A failed command's error on stdout: {"error": {"code": N, "message": ...}}. */
static void json_error_doc(int rc)
{
	struct json j;

	json_init(&j, stdout);
	json_obj_begin(&j, NULL);
	json_error(&j, rc);
	json_obj_end(&j);
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
	/* Before the command parses: its usage errors are JSON too. */
	if (commands[i].json)
		json_mode = wants_json(argc, argv);
	fdm_init();
	rc = commands[i].fn(argc, argv);
	fdm_exit();
	if (rc == EXIT_ERR && sig_caught())
		rc = EXIT_INTR;
	rc = msg_exit_code(rc);
	if (rc != EXIT_OK && json_mode && !json_error_written())
		json_error_doc(rc);
	if (fflush(stdout) && rc == EXIT_OK) {
		perror("fleecectl: writing output");
		rc = EXIT_ERR;
	}
	return rc;
}
