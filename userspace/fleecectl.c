// SPDX-License-Identifier: GPL-2.0
/*
 * fleecectl: manage dm-fleece origins and views through libdevmapper.
 */
#include <getopt.h>
#include <libdevmapper.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleecectl.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fleecectl [-h|--help] [-V|--version] COMMAND [ARGS]\n"
		"\n"
		"commands:\n"
		"  status [NAME]   show fleece-origin and fleece devices\n");
}

/* Print every target line of one device whose type is a fleece target. */
static int status_one(const char *name, int *found)
{
	struct dm_task *dmt;
	uint64_t start, length;
	char *type, *params;
	void *next = NULL;
	int ok = 0;

	dmt = dm_task_create(DM_DEVICE_STATUS);
	if (!dmt)
		return 0;
	if (!dm_task_set_name(dmt, name) || !dm_task_run(dmt)) {
		fprintf(stderr, "fleecectl: %s: cannot read status\n", name);
		goto out;
	}
	do {
		next = dm_get_next_target(dmt, next, &start, &length, &type, &params);
		if (type && !strncmp(type, "fleece", 6)) {
			printf("%s: %llu %llu %s %s\n", name,
			       (unsigned long long)start,
			       (unsigned long long)length, type, params ? params : "");
			(*found)++;
		}
	} while (next);
	ok = 1;
out:
	dm_task_destroy(dmt);
	return ok;
}

static int cmd_status(int argc, char **argv)
{
	struct dm_task *dmt;
	struct dm_names *names;
	unsigned int next = 0;
	int found = 0, ok = 1;

	if (argc > 1)
		return status_one(argv[1], &found) ? EXIT_OK : EXIT_ERR;

	dmt = dm_task_create(DM_DEVICE_LIST);
	if (!dmt || !dm_task_run(dmt)) {
		fprintf(stderr, "fleecectl: cannot list device-mapper devices (is dm-mod loaded?)\n");
		if (dmt)
			dm_task_destroy(dmt);
		return EXIT_ERR;
	}
	names = dm_task_get_names(dmt);
	if (names && names->dev) {
		do {
			names = (struct dm_names *)((char *)names + next);
			ok &= status_one(names->name, &found);
			next = names->next;
		} while (next);
	}
	dm_task_destroy(dmt);
	if (!found)
		printf("no fleece devices\n");
	return ok ? EXIT_OK : EXIT_ERR;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			printf("fleecectl %s\n", FLEECECTL_VERSION);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[0], "status"))
		return cmd_status(argc, argv);
	fprintf(stderr, "fleecectl: unknown command '%s'\n", argv[0]);
	usage(stderr);
	return EXIT_USAGE;
}
