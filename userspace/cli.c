// SPDX-License-Identifier: GPL-2.0
/*
 * Command-line helpers shared by the commands.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "discover.h"
#include "dm.h"
#include "fleecectl.h"
#include "json.h"
#include "sha256.h"
#include "util.h"

int json_mode;
static int json_written;
/* What was wrong with the option cmd_getopt() refused last. */
static char bad_option[160];

const char *command_name(const char *argv0)
{
	static const char prefix[] = "fleecectl ";

	if (!strncmp(argv0, prefix, sizeof(prefix) - 1))
		return argv0 + sizeof(prefix) - 1;
	return argv0;
}

int usage_error(const char *cmd, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	cmd = command_name(cmd);
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	msg_note(EXIT_USAGE, "%s: %s", cmd, text);
	fflush(stdout);
	fprintf(stderr, "fleecectl: %s: %s\n", cmd, text);
	command_usage(cmd, stderr);
	return EXIT_USAGE;
}

int option_end(int c, const char *cmd)
{
	if (c == 'h') {
		command_usage(cmd, stdout);
		return EXIT_OK;
	}
	/* getopt_long said why on stderr; this is for --json. */
	msg_note(EXIT_USAGE, "%s: %s", command_name(cmd),
		 bad_option[0] ? bad_option : "invalid option");
	command_usage(cmd, stderr);
	return EXIT_USAGE;
}

/* The most long options a command has, -v/--verbose and the end included. */
#define MAX_LONGOPTS 32
/* getopt_long's value for --verbose: no character, so no command's. */
#define OPT_VERBOSE 0x100

int cmd_getopt(int argc, char **argv, const char *shortopts,
	       const struct option *longopts)
{
	static struct option opts[MAX_LONGOPTS];
	char sopts[64];
	int c, n = 0, idx;

	snprintf(sopts, sizeof(sopts), "%sv", shortopts);
	while (longopts[n].name && n < MAX_LONGOPTS - 2) {
		opts[n] = longopts[n];
		n++;
	}
	opts[n++] = (struct option){ "verbose", no_argument, NULL, OPT_VERBOSE };
	opts[n] = (struct option){ NULL, 0, NULL, 0 };
	for (;;) {
		idx = -1;
		c = getopt_long(argc, argv, sopts, opts, &idx);
		if (c == OPT_VERBOSE || (c == 'v' && idx < 0)) {
			verbose++;
			continue;
		}
		if (c == '?') {
			/* A long option as given, else the short option's letter. */
			const char *w = optind > 0 && optind <= argc ? argv[optind - 1] : "";

			if (!strncmp(w, "--", 2) || optopt <= 0 || optopt >= 0x100)
				snprintf(bad_option, sizeof(bad_option),
					 "invalid option, or no argument given: %s", w);
			else
				snprintf(bad_option, sizeof(bad_option),
					 "invalid option, or no argument given: -%c", optopt);
		}
		return c;
	}
}

void json_error(struct json *j, int rc)
{
	const char *m = msg_failure();

	json_obj_begin(j, "error");
	json_u64(j, "code", (uint64_t)rc);
	json_str(j, "message", *m ? m : rc == EXIT_USAGE ? "usage error" : "failed");
	json_obj_end(j);
	json_written = 1;
}

int json_error_written(void)
{
	return json_written;
}

void dm_uuid(const char *kind, const char *name, char *uuid, size_t len)
{
	unsigned char d[SHA256_DIGEST_SIZE];
	struct sha256 c;
	char hex[65];

	if ((size_t)snprintf(uuid, len, "%s%s-%s", UUID_PREFIX, kind, name) < len)
		return;
	sha256_init(&c);
	sha256_update(&c, name, strlen(name));
	sha256_final(&c, d);
	sha256_hex(d, hex);
	snprintf(uuid, len, "%s%s-sha256-%s", UUID_PREFIX, kind, hex);
}

int simple_options(int argc, char **argv, int *json)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 0;
	while ((c = cmd_getopt(argc, argv, json ? "jh" : "h", json ? opts : opts + 1)) != -1) {
		if (c != 'j')
			return option_end(c, argv[0]);
		*json = 1;
		json_mode = 1;
	}
	return -1;
}

int resolve_dm_arg(const char *cmd, const char *arg, char *name, size_t len,
		   dev_t *devt)
{
	int r = fdm_resolve(arg, name, len, devt);

	switch (r) {
	case 0:
		return 0;
	case -ENOENT:
		msg_fail(EXIT_NODEV, "%s %s: no such device-mapper device", cmd, arg);
		break;
	case -ENODEV:
		msg_fail(EXIT_NODEV, "%s %s: not a device-mapper device", cmd, arg);
		break;
	case -ENOTBLK:
		msg_fail(EXIT_NODEV, "%s %s: not a block device", cmd, arg);
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

int dm_exit_code(void)
{
	const char *e = fdm_error();

	/* dm-fleece-origin's ctr errors about metadata (the kernel's words). */
	if (strstr(e, "Cannot read metadata") || strstr(e, "Cannot write metadata"))
		return EXIT_IO;
	if (strstr(e, ": Metadata "))
		return EXIT_INVALID;
	return errno_exit_code(fdm_errno());
}

int check_new_uuid(const char *cmd, const char *name, const char *uuid)
{
	char other[NAME_LEN];

	if (fdm_name_of_uuid(uuid, other, sizeof(other)))
		return 0;	/* none; a real failure shows at the create */
	msg_fail(EXIT_BUSY, "%s %s: the device-mapper UUID %s is taken by %s (renamed "
		 "from %s?)", cmd, name, uuid, other, name);
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

int lookup_origin(const char *cmd, const char *arg, struct fl_origin *o)
{
	char name[NAME_LEN], what[256];
	dev_t devt;
	int r;

	if (resolve_dm_arg(cmd, arg, name, sizeof(name), &devt))
		return -1;
	r = get_origin(name, o, what, sizeof(what));
	if (r == -EMEDIUMTYPE)
		msg_fail(EXIT_NODEV, "%s %s: not a %s device (%s)", cmd, name, TARGET_ORIGIN,
			 what);
	else if (r == -ENOENT)
		msg_fail(EXIT_NODEV, "%s %s: no such device", cmd, name);
	else if (r)
		msg_err("%s %s: %s", cmd, name, fdm_error());
	return r ? -1 : 0;
}

int lookup_view(const char *cmd, const char *arg, struct fl_view *v)
{
	char name[NAME_LEN], what[256];
	dev_t devt;
	int r;

	if (resolve_dm_arg(cmd, arg, name, sizeof(name), &devt))
		return -1;
	r = get_view(name, v, what, sizeof(what));
	if (r == -EMEDIUMTYPE)
		msg_fail(EXIT_NODEV, "%s %s: not a %s view (%s)", cmd, name, TARGET_VIEW, what);
	else if (r == -ENOENT)
		msg_fail(EXIT_NODEV, "%s %s: no such device", cmd, name);
	else if (r)
		msg_err("%s %s: %s", cmd, name, fdm_error());
	return r ? -1 : 0;
}
