/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fleecectl: what every command file shares: exit codes, the command
 * table's entry points and the names fleecectl gives the devices it makes.
 */
#ifndef FLEECECTL_H
#define FLEECECTL_H

#define FLEECECTL_VERSION "0.4.0"

/* Exit codes, as dmsetup and thin-provisioning-tools use them. */
#define EXIT_OK 0
#define EXIT_ERR 1
#define EXIT_USAGE 2

/* Target names in device-mapper tables. */
#define TARGET_ORIGIN "fleece-origin"
#define TARGET_VIEW "fleece"

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
