/* SPDX-License-Identifier: GPL-2.0 */
/*
 * libdevmapper, wrapped: one function per device-mapper operation.
 *
 * Every function returns 0 on success and -1 on failure; fdm_error() then
 * says why, in words: the errno, and the kernel's reason for a refused table
 * when its log has one. Operations that make udev events (create, resume,
 * remove) take a udev cookie: pass the same cookie to several of them, then
 * fdm_udev_wait() once, when /dev/mapper must be up to date.
 */
#ifndef FLEECECTL_DM_H
#define FLEECECTL_DM_H

#include <libdevmapper.h>
#include <stdint.h>
#include <sys/types.h>

struct fdm_target {
	uint64_t start;		/* sectors */
	uint64_t len;		/* sectors */
	char *type;
	char *params;
};

struct fdm_table {
	unsigned int n;
	struct fdm_target *t;
	int secure;		/* wipe params when freed (dm-crypt keys) */
};

/* Flags of fdm_table_get, fdm_create, fdm_load. */
#define FDM_SECURE	0x1	/* the table may hold keys: wipe buffers */
#define FDM_READONLY	0x2	/* create/load the table read-only */

/* udev flags for the devices fleecectl makes (see libdevmapper.h). */
#define FDM_UDEV_HIDDEN (DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG | \
			 DM_UDEV_DISABLE_DISK_RULES_FLAG | \
			 DM_UDEV_DISABLE_OTHER_RULES_FLAG)
#define FDM_UDEV_VIEW DM_UDEV_LOW_PRIORITY_FLAG

/* Set up logging (libdevmapper's own messages only with -v). */
void fdm_init(void);
/* Release the library (pending node operations). */
void fdm_exit(void);

/* Why the last failed operation failed: "Device or resource busy". */
const char *fdm_error(void);
/* The errno of the last failed operation, 0 if unknown. */
int fdm_errno(void);

/* Device info by name; info->exists is 0 for no such device. */
int fdm_info(const char *name, struct dm_info *info);
/* Whether a device of that name exists (0 also on error). */
int fdm_exists(const char *name);
/*
 * The open count of NAME once it is at most @allowed, or what it still is
 * after BRIEF_OPEN_ROUNDS looks (util.h: udev's probes last a moment and
 * must not make a remove or detach refuse); -1 on error.
 */
int fdm_open_count_settled(const char *name, int allowed);

/*
 * A device-mapper device given as NAME, /dev/mapper/NAME, /dev/dm-N or any
 * path to it (e.g. /dev/vg/lv): its name and device number. Returns 0;
 * -ENOENT: no such device; -ENODEV: exists but is not device-mapper;
 * -ENOTBLK: not a block device; other -errno from stat.
 */
int fdm_resolve(const char *arg, char *name, size_t len, dev_t *devt);

/*
 * The name of the device whose UUID is @uuid: 0, or -1 with fdm_errno()
 * ENOENT when there is none (else why device-mapper failed).
 */
int fdm_name_of_uuid(const char *uuid, char *name, size_t len);

/* The dm name of a device number, if it is a device-mapper device. */
int fdm_name_of(dev_t devt, char *name, size_t len);

/* The live table (or status, with @status) of a device. */
int fdm_table_get(const char *name, struct fdm_table *t, int status,
		  unsigned int flags);
void fdm_table_free(struct fdm_table *t);
/* Length of the device the table describes, in sectors. */
uint64_t fdm_table_sectors(const struct fdm_table *t);
/* A one-target table (params copied). Returns 0 or -1 (no memory). */
int fdm_table_one(struct fdm_table *t, uint64_t len, const char *type,
		  const char *params);

/*
 * Create NAME (UUID @uuid, NULL: none) with table @t and make it live; with
 * @t NULL, an empty device to load a table into (fdm_load(), fdm_resume()).
 */
int fdm_create(const char *name, const char *uuid, const struct fdm_table *t,
	       uint16_t udev_flags, uint32_t *cookie, unsigned int flags);
/* Load @t as NAME's inactive table. */
int fdm_load(const char *name, const struct fdm_table *t, unsigned int flags);
/* Drop NAME's inactive table. */
int fdm_clear(const char *name);
/* Suspend: flush IO in flight and, with @lockfs, freeze a mounted fs. */
int fdm_suspend(const char *name, int lockfs);
/* Resume (makes a loaded inactive table live). */
int fdm_resume(const char *name, uint16_t udev_flags, uint32_t *cookie);
/* Remove NAME (retrying while udev still has it open). */
int fdm_remove(const char *name, uint32_t *cookie);
/* Wait for udev to process the events of the cookie; zero it. */
void fdm_udev_wait(uint32_t *cookie);

/*
 * Send a target message to the target at @sector of NAME. *response gets
 * the target's answer (malloc'ed, may be NULL) when response is not NULL.
 */
int fdm_message(const char *name, uint64_t sector, const char *msg,
		char **response);

/* Names of all device-mapper devices (malloc'ed array of malloc'ed). */
int fdm_list(char ***names, unsigned int *n);
void fdm_list_free(char **names, unsigned int n);

#endif
