// SPDX-License-Identifier: GPL-2.0
/*
 * libdevmapper wrappers: every ioctl fleecectl issues goes through here.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "dm.h"
#include "kmsg.h"
#include "util.h"

/* libdevmapper's log levels (libdevmapper.h does not export them). */
#define LOG_LEVEL_MASK 7
#define LOG_LEVEL_ERR 3

static char lib_msg[512];	/* libdevmapper's first error of the operation */
static int lib_errno;
static char error_text[1024];
static int error_errno;

static void logger(int level, const char *file, int line, int dm_errno_or_class,
		   const char *f, ...)
{
	int saved = errno;
	int lvl = level & LOG_LEVEL_MASK;
	char buf[1024];
	va_list ap;

	(void)file;
	(void)line;
	(void)dm_errno_or_class;
	va_start(ap, f);
	vsnprintf(buf, sizeof(buf), f, ap);
	va_end(ap);
	if (lvl <= LOG_LEVEL_ERR && !lib_msg[0]) {
		str_copy(lib_msg, sizeof(lib_msg), buf);
		lib_errno = saved;
	}
	/* fleecectl says what failed itself; the library's words with -v. */
	if (verbose && lvl <= 4 + verbose && strcmp(buf, "<backtrace>"))
		msg_info("libdevmapper: %s", buf);
	errno = saved;
}

void fdm_init(void)
{
	dm_log_with_errno_init(logger);
}

void fdm_exit(void)
{
	dm_lib_release();
}

const char *fdm_error(void)
{
	return error_text[0] ? error_text : "unknown error";
}

int fdm_errno(void)
{
	return error_errno;
}

static void set_error(int e, int kfd)
{
	char reason[512];
	int n;

	error_errno = e;
	if (e)
		n = snprintf(error_text, sizeof(error_text), "%s", strerror(e));
	else
		n = snprintf(error_text, sizeof(error_text), "%s",
			     lib_msg[0] ? lib_msg : "device-mapper error");
	if (!kmsg_reason(kfd, reason, sizeof(reason)) || n <= 0 ||
	    (size_t)n >= sizeof(error_text))
		return;
	/*
	 * The kernel asked modprobe for dm-fleece-origin or dm-fleece and got
	 * nothing: say what is missing, not only what the kernel saw.
	 */
	if (strstr(reason, "fleece") && strstr(reason, "unknown target type"))
		snprintf(error_text + n, sizeof(error_text) - (size_t)n,
			 " (kernel: %s: the dm-fleece module is not loaded and could not be "
			 "loaded; is it installed for this kernel? make install, or the "
			 "dm-fleece-dkms package)", reason);
	else
		snprintf(error_text + n, sizeof(error_text) - (size_t)n,
			 " (kernel: %s)", reason);
}

/*
 * Run a task. With @why_kmsg, a refusal is explained from the kernel log.
 */
static int run(struct dm_task *dmt, int why_kmsg)
{
	int kfd = why_kmsg ? kmsg_open() : -1;
	int e;

	lib_msg[0] = '\0';
	lib_errno = 0;
	if (dm_task_run(dmt)) {
		if (kfd >= 0)
			close(kfd);
		return 0;
	}
	e = dm_task_get_errno(dmt);
	set_error(e ? e : lib_errno, kfd);
	return -1;
}

static struct dm_task *task(int type, const char *name)
{
	struct dm_task *dmt;

	lib_msg[0] = '\0';
	lib_errno = 0;
	dmt = dm_task_create(type);
	if (!dmt) {
		/* E.g. no /dev/mapper/control: libdevmapper logged why. */
		set_error(lib_errno ? lib_errno : ENOMEM, -1);
		return NULL;
	}
	if (name && !dm_task_set_name(dmt, name)) {
		set_error(EINVAL, -1);
		dm_task_destroy(dmt);
		return NULL;
	}
	return dmt;
}

int fdm_info(const char *name, struct dm_info *info)
{
	struct dm_task *dmt = task(DM_DEVICE_INFO, name);
	int r = -1;

	memset(info, 0, sizeof(*info));
	if (!dmt)
		return -1;
	if (!run(dmt, 0)) {
		if (dm_task_get_info(dmt, info))
			r = 0;
		else
			set_error(EIO, -1);
	}
	dm_task_destroy(dmt);
	return r;
}

int fdm_exists(const char *name)
{
	struct dm_info info;

	return !fdm_info(name, &info) && info.exists;
}

int fdm_name_of_uuid(const char *uuid, char *name, size_t len)
{
	struct dm_task *dmt = task(DM_DEVICE_INFO, NULL);
	struct dm_info info;
	int r = -1;

	if (!dmt)
		return -1;
	if (!dm_task_set_uuid(dmt, uuid))
		set_error(EINVAL, -1);
	else if (run(dmt, 0))
		;	/* set_error() done */
	else if (!dm_task_get_info(dmt, &info))
		set_error(EIO, -1);
	else if (!info.exists)
		set_error(ENOENT, -1);
	else
		r = 0;
	if (!r)
		str_copy(name, len, dm_task_get_name(dmt));
	dm_task_destroy(dmt);
	return r;
}

int fdm_name_of(dev_t devt, char *name, size_t len)
{
	struct dm_task *dmt;
	struct dm_info info;
	int r = -1;

	if (!dm_is_dm_major(major(devt))) {
		set_error(ENODEV, -1);
		return -1;
	}
	dmt = task(DM_DEVICE_INFO, NULL);
	if (!dmt)
		return -1;
	if (!dm_task_set_major_minor(dmt, (int)major(devt), (int)minor(devt), 0)) {
		set_error(EINVAL, -1);
		goto out;
	}
	if (run(dmt, 0))
		goto out;
	if (!dm_task_get_info(dmt, &info) || !info.exists) {
		set_error(ENOENT, -1);
		goto out;
	}
	snprintf(name, len, "%s", dm_task_get_name(dmt));
	r = 0;
out:
	dm_task_destroy(dmt);
	return r;
}

int fdm_resolve(const char *arg, char *name, size_t len, dev_t *devt)
{
	struct dm_info info;
	struct stat st;

	if (!strchr(arg, '/')) {
		if (fdm_info(arg, &info))
			return -EIO;
		if (!info.exists)
			return -ENOENT;
		snprintf(name, len, "%s", arg);
		*devt = makedev(info.major, info.minor);
		return 0;
	}
	if (stat(arg, &st))
		return -errno;
	if (!S_ISBLK(st.st_mode))
		return -ENOTBLK;
	if (!dm_is_dm_major(major(st.st_rdev)))
		return -ENODEV;
	if (fdm_name_of(st.st_rdev, name, len))
		return -ENOENT;
	*devt = st.st_rdev;
	return 0;
}

void fdm_table_free(struct fdm_table *t)
{
	unsigned int i;

	for (i = 0; i < t->n; i++) {
		if (t->secure && t->t[i].params)
			explicit_bzero(t->t[i].params, strlen(t->t[i].params));
		free(t->t[i].type);
		free(t->t[i].params);
	}
	free(t->t);
	t->t = NULL;
	t->n = 0;
}

static int table_add(struct fdm_table *t, uint64_t start, uint64_t len,
		     const char *type, const char *params)
{
	struct fdm_target *nt = realloc(t->t, (t->n + 1) * sizeof(*nt));

	if (!nt)
		return -1;
	t->t = nt;
	nt[t->n].start = start;
	nt[t->n].len = len;
	nt[t->n].type = strdup(type ? type : "");
	nt[t->n].params = strdup(params ? params : "");
	t->n++;
	if (!nt[t->n - 1].type || !nt[t->n - 1].params)
		return -1;
	return 0;
}

int fdm_table_one(struct fdm_table *t, uint64_t len, const char *type,
		  const char *params)
{
	memset(t, 0, sizeof(*t));
	if (table_add(t, 0, len, type, params)) {
		fdm_table_free(t);
		set_error(ENOMEM, -1);
		return -1;
	}
	return 0;
}

int fdm_table_get(const char *name, struct fdm_table *t, int status,
		  unsigned int flags)
{
	struct dm_task *dmt;
	uint64_t start, length;
	char *type, *params;
	void *next = NULL;
	int r = -1;

	memset(t, 0, sizeof(*t));
	t->secure = !!(flags & FDM_SECURE);
	dmt = task(status ? DM_DEVICE_STATUS : DM_DEVICE_TABLE, name);
	if (!dmt)
		return -1;
	if (t->secure && !dm_task_secure_data(dmt))
		goto out;
	if (!dm_task_no_open_count(dmt) || run(dmt, 0))
		goto out;
	do {
		next = dm_get_next_target(dmt, next, &start, &length, &type, &params);
		if (!type)
			break;
		if (table_add(t, start, length, type, params)) {
			set_error(ENOMEM, -1);
			fdm_table_free(t);
			goto out;
		}
	} while (next);
	r = 0;
out:
	dm_task_destroy(dmt);
	return r;
}

uint64_t fdm_table_sectors(const struct fdm_table *t)
{
	uint64_t end = 0;
	unsigned int i;

	for (i = 0; i < t->n; i++)
		if (t->t[i].start + t->t[i].len > end)
			end = t->t[i].start + t->t[i].len;
	return end;
}

static int add_targets(struct dm_task *dmt, const struct fdm_table *t,
		       unsigned int flags)
{
	unsigned int i;

	if ((flags & FDM_SECURE) && !dm_task_secure_data(dmt))
		return -1;
	if ((flags & FDM_READONLY) && !dm_task_set_ro(dmt))
		return -1;
	for (i = 0; i < t->n; i++)
		if (!dm_task_add_target(dmt, t->t[i].start, t->t[i].len,
					t->t[i].type, t->t[i].params))
			return -1;
	return 0;
}

int fdm_create(const char *name, const char *uuid, const struct fdm_table *t,
	       uint16_t udev_flags, uint32_t *cookie, unsigned int flags)
{
	struct dm_task *dmt = task(DM_DEVICE_CREATE, name);
	int r = -1;

	if (!dmt)
		return -1;
	if (uuid && !dm_task_set_uuid(dmt, uuid)) {
		set_error(EINVAL, -1);
		goto out;
	}
	/*
	 * Without a table the kernel sends no event for the cookie to
	 * count: udev is told at the resume instead.
	 */
	if ((t && add_targets(dmt, t, flags)) ||
	    (t && !dm_task_set_cookie(dmt, cookie, udev_flags))) {
		set_error(ENOMEM, -1);
		goto out;
	}
	r = run(dmt, 1);
out:
	dm_task_destroy(dmt);
	return r;
}

int fdm_load(const char *name, const struct fdm_table *t, unsigned int flags)
{
	struct dm_task *dmt = task(DM_DEVICE_RELOAD, name);
	int r = -1;

	if (!dmt)
		return -1;
	if (add_targets(dmt, t, flags)) {
		set_error(ENOMEM, -1);
		goto out;
	}
	r = run(dmt, 1);
out:
	dm_task_destroy(dmt);
	return r;
}

static int simple(int type, const char *name)
{
	struct dm_task *dmt = task(type, name);
	int r;

	if (!dmt)
		return -1;
	r = run(dmt, 0);
	dm_task_destroy(dmt);
	return r;
}

int fdm_clear(const char *name)
{
	return simple(DM_DEVICE_CLEAR, name);
}

int fdm_suspend(const char *name, int lockfs)
{
	struct dm_task *dmt = task(DM_DEVICE_SUSPEND, name);
	int r = -1;

	if (!dmt)
		return -1;
	if (!lockfs && !dm_task_skip_lockfs(dmt)) {
		set_error(ENOMEM, -1);
		goto out;
	}
	r = run(dmt, 0);
out:
	dm_task_destroy(dmt);
	return r;
}

int fdm_resume(const char *name, uint16_t udev_flags, uint32_t *cookie)
{
	struct dm_task *dmt = task(DM_DEVICE_RESUME, name);
	int r = -1;

	if (!dmt)
		return -1;
	if (!dm_task_set_cookie(dmt, cookie, udev_flags)) {
		set_error(ENOMEM, -1);
		goto out;
	}
	r = run(dmt, 1);
out:
	dm_task_destroy(dmt);
	return r;
}

int fdm_open_count_settled(const char *name, int allowed)
{
	const struct timespec pause = { 0, BRIEF_OPEN_PAUSE_NS };
	struct dm_info info;
	int round;

	for (round = 0;; round++) {
		if (fdm_info(name, &info))
			return -1;
		if (info.open_count <= allowed || round == BRIEF_OPEN_ROUNDS)
			return info.open_count;
		nanosleep(&pause, NULL);
	}
}

int fdm_remove(const char *name, uint32_t *cookie)
{
	struct dm_task *dmt = task(DM_DEVICE_REMOVE, name);
	int r = -1;

	if (!dmt)
		return -1;
	if (!dm_task_retry_remove(dmt) || !dm_task_set_cookie(dmt, cookie, 0)) {
		set_error(ENOMEM, -1);
		goto out;
	}
	r = run(dmt, 0);
out:
	dm_task_destroy(dmt);
	return r;
}

void fdm_udev_wait(uint32_t *cookie)
{
	if (*cookie)
		(void)dm_udev_wait(*cookie);
	*cookie = 0;
}

int fdm_message(const char *name, uint64_t sector, const char *msg,
		char **response)
{
	struct dm_task *dmt = task(DM_DEVICE_TARGET_MSG, name);
	const char *resp;
	int r = -1;

	if (response)
		*response = NULL;
	if (!dmt)
		return -1;
	if (!dm_task_set_sector(dmt, sector) || !dm_task_set_message(dmt, msg)) {
		set_error(ENOMEM, -1);
		goto out;
	}
	r = run(dmt, 1);
	if (!r && response) {
		resp = dm_task_get_message_response(dmt);
		if (resp && *resp)
			*response = strdup(resp);
	}
out:
	dm_task_destroy(dmt);
	return r;
}

void fdm_list_free(char **names, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int fdm_list(char ***names_out, unsigned int *n_out)
{
	struct dm_task *dmt = task(DM_DEVICE_LIST, NULL);
	struct dm_names *names;
	unsigned int next = 0, n = 0;
	char **v = NULL, **nv;
	int r = -1;

	*names_out = NULL;
	*n_out = 0;
	if (!dmt)
		return -1;
	if (run(dmt, 0))
		goto out;
	names = dm_task_get_names(dmt);
	if (names && names->dev) {
		do {
			names = (struct dm_names *)((char *)names + next);
			nv = realloc(v, (n + 1) * sizeof(*v));
			if (nv)
				v = nv;
			if (nv)
				v[n] = strdup(names->name);
			if (!nv || !v[n]) {
				fdm_list_free(v, n);
				set_error(ENOMEM, -1);
				goto out;
			}
			n++;
			next = names->next;
		} while (next);
	}
	*names_out = v;
	*n_out = n;
	r = 0;
out:
	dm_task_destroy(dmt);
	return r;
}
