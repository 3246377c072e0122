/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-fleece: copy-before-write point-in-time views of a live block device,
 * with change tracking for incremental backups.
 *
 * Two targets share this module:
 *   fleece-origin  sits on the origin device that applications use;
 *   fleece         a point-in-time view of that origin (a "session").
 *
 * Both refer to the same underlying origin block device. Their shared state
 * (sessions, range lock, copy engine) lives in a struct fleece_dev found by
 * that device's dev_t, so a fleece-origin table can be reloaded while views
 * exist without losing them.
 */
#ifndef DM_FLEECE_H
#define DM_FLEECE_H

#include <linux/device-mapper.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/types.h>

#define DM_MSG_PREFIX "fleece"

/* Smallest chunk: one 4 KiB page. Largest: 1 GiB. */
#define FLEECE_MIN_CHUNK_SECTORS 8
#define FLEECE_MAX_CHUNK_SECTORS (1U << 21)

/**
 * struct fleece_table_line - a target's table line, kept verbatim.
 * @text: the arguments joined by single spaces.
 */
struct fleece_table_line {
	char *text;
};

/**
 * fleece_table_save() - keep a copy of a target's arguments.
 * @line: where to keep them.
 * @argc: argument count.
 * @argv: arguments as given to the ctr.
 *
 * Context: process context (ctr), may sleep.
 * Return: 0 or -ENOMEM.
 */
int fleece_table_save(struct fleece_table_line *line, unsigned int argc,
		      char **argv);

/**
 * fleece_table_free() - release what fleece_table_save() kept.
 * @line: the kept line; may be empty.
 */
void fleece_table_free(struct fleece_table_line *line);

/**
 * fleece_parse_chunk_sectors() - read and check a chunk size in sectors.
 * @ti: target whose ti->error is set on failure.
 * @arg: the argument text.
 * @out: the chunk size on success.
 *
 * A chunk is a power of two between FLEECE_MIN_CHUNK_SECTORS and
 * FLEECE_MAX_CHUNK_SECTORS.
 *
 * Return: 0, or -EINVAL with ti->error naming the fault.
 */
int fleece_parse_chunk_sectors(struct dm_target *ti, const char *arg,
			       sector_t *out);

extern struct target_type fleece_origin_target;
extern struct target_type fleece_view_target;

#endif /* DM_FLEECE_H */
