/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fleecectl: what every command file shares: exit codes, the command
 * table's entry points and the names fleecectl gives the devices it makes.
 */
#ifndef FLEECECTL_H
#define FLEECECTL_H

#define FLEECECTL_VERSION "0.4.0"

/*
 * Exit codes (fleecectl(8), EXIT STATUS). 0, 1 and 2 as dmsetup and
 * thin-provisioning-tools use them; 3 to 7 name the failures a script must
 * tell apart. A command returns EXIT_ERR and reports the failure with
 * msg_fail(); main() turns EXIT_ERR into the class of the first classed
 * failure (util.h, msg_exit_code()).
 */
#define EXIT_OK 0
#define EXIT_ERR 1		/* any other failure */
#define EXIT_USAGE 2		/* command line: unknown option, bad value */
#define EXIT_NODEV 3		/* no such device, or not the kind needed */
#define EXIT_BUSY 4		/* in use, taken, or a session/backup in the way */
#define EXIT_INVALID 5		/* session invalid, bitmap untrusted, metadata refused */
#define EXIT_IO 6		/* an I/O error on a device or file */
#define EXIT_INTR 7		/* interrupted by a signal (rolled back) */

/* Target names in device-mapper tables. */
#define TARGET_ORIGIN "fleece-origin"
#define TARGET_VIEW "fleece"

/*
 * Device-mapper UUIDs of the devices create and snapshot make, so that
 * lsblk, lvm and udev rules can tell them: UUID_PREFIX + kind + "-" + name
 * (dm_uuid() in cli.c). attach gives none: the device it swaps the table of
 * keeps its own (an LVM LV's), and its -fleece-real gets none.
 */
#define UUID_PREFIX "FLEECE-"
#define UUID_ORIGIN "ORIGIN"
#define UUID_VIEW "VIEW"

/* attach puts DMDEV's old table into a device named DMDEV + this suffix. */
#define REAL_SUFFIX "-fleece-real"
/* snapshot names a view NAME + this + the first free number. */
#define SNAP_SUFFIX "-snap"

/* Defaults. */
#define DEFAULT_CHUNK_BYTES (64 * 1024)
/* An origin device takes at most this many sessions (kernel limit). */
#define MAX_SESSIONS 8

/* Commands: argv[0] is the command name; return an exit code. */
int cmd_create(int argc, char **argv);
int cmd_remove(int argc, char **argv);
int cmd_attach(int argc, char **argv);
int cmd_detach(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_release(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_bitmap(int argc, char **argv);
int cmd_changes(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_up(int argc, char **argv);
int cmd_down(int argc, char **argv);
int cmd_tab(int argc, char **argv);

#endif
