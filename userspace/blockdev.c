// SPDX-License-Identifier: GPL-2.0
/*
 * Block devices: device numbers, sizes, and who uses them.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <blkid/blkid.h>

#include "blockdev.h"
#include "dm.h"
#include "util.h"

int bdev_devt(const char *path, dev_t *devt)
{
	struct stat st;

	if (stat(path, &st))
		return -errno;
	if (!S_ISBLK(st.st_mode))
		return -ENOTBLK;
	*devt = st.st_rdev;
	return 0;
}

int bdev_resolve_arg(const char *arg, dev_t *devt)
{
	if (!parse_devt(arg, devt))
		return 0;
	return bdev_devt(arg, devt);
}

int bdev_size_fd(int fd, uint64_t *bytes)
{
	if (ioctl(fd, BLKGETSIZE64, bytes))
		return -errno;
	return 0;
}

int bdev_size(const char *path, uint64_t *bytes)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return -errno;
	r = bdev_size_fd(fd, bytes);
	close(fd);
	return r;
}

/* The kernel's name of a device ("vdb", "dm-3") from sysfs. */
static int kernel_name(dev_t devt, char *buf, size_t len)
{
	char link[64], target[512];
	const char *base;
	ssize_t n;

	snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(devt), minor(devt));
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	base = strrchr(target, '/');
	str_copy(buf, len, base ? base + 1 : target);
	return 0;
}

void bdev_path(dev_t devt, char *buf, size_t len)
{
	char kname[256];
	struct stat st;

	snprintf(buf, len, "/dev/block/%u:%u", major(devt), minor(devt));
	if (!stat(buf, &st) && S_ISBLK(st.st_mode) && st.st_rdev == devt)
		return;
	if (!kernel_name(devt, kname, sizeof(kname)))
		snprintf(buf, len, "/dev/%s", kname);
}

void bdev_display(dev_t devt, char *buf, size_t len)
{
	char name[256];

	if (dm_is_dm_major(major(devt)) && !fdm_name_of(devt, name, sizeof(name)))
		snprintf(buf, len, "/dev/mapper/%s", name);
	else if (!kernel_name(devt, name, sizeof(name)))
		snprintf(buf, len, "/dev/%s", name);
	else
		snprintf(buf, len, "%u:%u", major(devt), minor(devt));
}

/* Where the device is mounted, from /proc/self/mountinfo. */
static int find_mount(dev_t devt, char *where, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096], mnt[4096];
	unsigned int ma, mi;
	int found = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &ma, &mi, mnt) == 3 &&
		    makedev(ma, mi) == devt) {
			snprintf(where, len, "%s", mnt);
			found = 1;
			break;
		}
	}
	fclose(f);
	return found;
}

/* The first device stacked on this one (sysfs holders/), for people. */
static int find_holder(dev_t devt, char *who, size_t len)
{
	char dir[64], namefile[512], name[256];
	struct dirent *de;
	DIR *d;
	FILE *f;
	int found = 0;

	snprintf(dir, sizeof(dir), "/sys/dev/block/%u:%u/holders", major(devt), minor(devt));
	d = opendir(dir);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(namefile, sizeof(namefile), "/sys/class/block/%s/dm/name", de->d_name);
		f = fopen(namefile, "re");
		if (f && fgets(name, sizeof(name), f)) {
			name[strcspn(name, "\n")] = '\0';
			snprintf(who, len, "device-mapper device %s", name);
		} else {
			snprintf(who, len, "%s", de->d_name);
		}
		if (f)
			fclose(f);
		found = 1;
		break;
	}
	closedir(d);
	return found;
}

#define MAX_OPENERS 16

/* Processes other than this one with the device open. */
static int find_openers(dev_t devt, pid_t *pids, int max)
{
	char fddir[64], fdpath[320];
	struct dirent *pe, *fe;
	pid_t self = getpid(), pid;
	DIR *proc, *fds;
	struct stat st;
	int n = 0;

	proc = opendir("/proc");
	if (!proc)
		return 0;
	while (n < max && (pe = readdir(proc))) {
		if (!isdigit((unsigned char)pe->d_name[0]))
			continue;
		pid = (pid_t)atoi(pe->d_name);
		if (pid == self)
			continue;
		snprintf(fddir, sizeof(fddir), "/proc/%d/fd", pid);
		fds = opendir(fddir);
		if (!fds)
			continue;
		while ((fe = readdir(fds))) {
			if (fe->d_name[0] == '.')
				continue;
			snprintf(fdpath, sizeof(fdpath), "%s/%s", fddir, fe->d_name);
			if (!stat(fdpath, &st) && S_ISBLK(st.st_mode) && st.st_rdev == devt) {
				pids[n++] = pid;
				break;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	return n;
}

static void comm_of(pid_t pid, char *buf, size_t len)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	snprintf(buf, len, "?");
	f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

int bdev_check_unused(const char *path, dev_t devt, char *why, size_t len)
{
	pid_t seen[MAX_OPENERS], now[MAX_OPENERS];
	const struct timespec pause = { 0, BRIEF_OPEN_PAUSE_NS };
	char where[4096], comm[64];
	int fd, nseen, nnow, i, j, k, round;

	fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC);
	if (fd < 0) {
		if (errno != EBUSY)
			return -errno;
		if (find_mount(devt, where, sizeof(where)))
			snprintf(why, len, "mounted on %s", where);
		else if (find_holder(devt, where, sizeof(where)))
			snprintf(why, len, "in use by %s", where);
		else
			snprintf(why, len, "in use: mounted, part of another device, "
				 "or opened exclusively by a program");
		return -EBUSY;
	}
	close(fd);

	/*
	 * A program that opened the device without O_EXCL (dd, a database)
	 * would have its data overwritten. udev's probes open devices for a
	 * moment: only a process that keeps it open in every round counts.
	 */
	nseen = find_openers(devt, seen, MAX_OPENERS);
	for (round = 0; round < BRIEF_OPEN_ROUNDS && nseen; round++) {
		nanosleep(&pause, NULL);
		nnow = find_openers(devt, now, MAX_OPENERS);
		for (i = 0, k = 0; i < nseen; i++)
			for (j = 0; j < nnow; j++)
				if (seen[i] == now[j]) {
					seen[k++] = seen[i];
					break;
				}
		nseen = k;
	}
	if (nseen) {
		comm_of(seen[0], comm, sizeof(comm));
		snprintf(why, len, "open in process %d (%s)%s", (int)seen[0], comm,
			 nseen > 1 ? " and others" : "");
		return -EBUSY;
	}
	return 0;
}

/*
 * dm-fleece's own metadata: blkid does not know it. Superblock copies are
 * the first two 4 KiB blocks, with the magic "leec" at byte 4.
 */
#define FLEECE_MAGIC "leec"
static off_t fleece_magic_at(unsigned int copy)
{
	return (off_t)copy * 4096 + 4;
}

/* Does superblock copy @copy of @fd hold dm-fleece's magic? */
static int fleece_magic(int fd, unsigned int copy)
{
	char magic[4];

	return pread(fd, magic, 4, fleece_magic_at(copy)) == 4 &&
	       !memcmp(magic, FLEECE_MAGIC, 4);
}

static int fleece_metadata(const char *path)
{
	int fd, found;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	found = fleece_magic(fd, 0) || fleece_magic(fd, 1);
	close(fd);
	return found;
}

int bdev_probe_contents(const char *path, char *what, size_t len)
{
	const char *type = NULL, *label = NULL, *pttype = NULL, *usage = NULL;
	blkid_probe pr;
	int r;

	r = fleece_metadata(path);
	if (r) {
		if (r > 0)
			snprintf(what, len, "dm-fleece metadata (a fleece-origin's bitmaps)");
		return r;
	}
	pr = blkid_new_probe_from_filename(path);
	if (!pr)
		return errno ? -errno : -EIO;
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL |
					  BLKID_SUBLKS_USAGE);
	blkid_probe_enable_partitions(pr, 1);
	blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
	/* Like wipefs: everything that is there, even if it looks ambiguous. */
	r = blkid_do_fullprobe(pr);
	if (r < 0) {
		blkid_free_probe(pr);
		return -EIO;
	}
	if (r == 0) {
		blkid_probe_lookup_value(pr, "TYPE", &type, NULL);
		blkid_probe_lookup_value(pr, "LABEL", &label, NULL);
		blkid_probe_lookup_value(pr, "USAGE", &usage, NULL);
		blkid_probe_lookup_value(pr, "PTTYPE", &pttype, NULL);
	}
	r = 1;
	if (type) {
		const char *kind = !usage ? "a signature" :
				   !strcmp(usage, "filesystem") ? "a file system" :
				   !strcmp(usage, "raid") ? "a RAID or LVM member" :
				   !strcmp(usage, "crypto") ? "an encrypted volume" :
				   "a signature";

		snprintf(what, len, "%s (%s)%s%s%s", type, kind, label ? " labelled '" : "",
			 label ? label : "", label ? "'" : "");
	} else if (pttype) {
		snprintf(what, len, "a partition table (%s)", pttype);
	} else {
		r = 0;
	}
	blkid_free_probe(pr);
	return r;
}

int bdev_wipe_signatures(const char *path)
{
	static const unsigned char zero[8];
	blkid_probe pr;
	unsigned int c;
	int fd, r = 0;

	/* udev may be probing the device a moment after the view went. */
	const struct timespec pause = { 0, BRIEF_OPEN_PAUSE_NS };
	unsigned int round = 0;

	while ((fd = open(path, O_RDWR | O_EXCL | O_CLOEXEC)) < 0 && errno == EBUSY &&
	       ++round < BRIEF_OPEN_ROUNDS)
		nanosleep(&pause, NULL);
	if (fd < 0)
		return -errno;
	/* dm-fleece metadata: the magic of both superblock copies. */
	for (c = 0; c < 2 && !r; c++)
		if (fleece_magic(fd, c) && pwrite(fd, zero, 4, fleece_magic_at(c)) != 4)
			r = -errno;
	pr = r ? NULL : blkid_new_probe();
	if (!r && (!pr || blkid_probe_set_device(pr, fd, 0, 0))) {
		r = -EIO;
	} else if (!r) {
		blkid_probe_enable_superblocks(pr, 1);
		blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_MAGIC);
		blkid_probe_enable_partitions(pr, 1);
		blkid_probe_set_partitions_flags(pr, BLKID_PARTS_MAGIC);
		while (blkid_do_probe(pr) == 0)
			if (blkid_do_wipe(pr, 0)) {
				r = -EIO;
				break;
			}
	}
	if (pr)
		blkid_free_probe(pr);
	if (!r && fsync(fd))
		r = -errno;
	close(fd);
	return r;
}

/* A line of a sysfs file, without its newline; "" if absent. */
static void sysfs_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");

	buf[0] = '\0';
	if (!f)
		return;
	if (fgets(buf, len, f))
		buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

/* One word of printable ASCII: what the kernel takes as an origin_id. */
static int id_word(const char *s)
{
	for (; *s; s++)
		if (*s <= ' ' || *s > '~')
			return 0;
	return 1;
}

/* Does a better by-id name than @best come first: wwn- names first, then
 * the lowest in byte order, so the choice never depends on readdir(). */
static int better_id(const char *name, const char *best)
{
	int w = !strncmp(name, "wwn-", 4), bw = !strncmp(best, "wwn-", 4);

	if (!best[0] || w != bw)
		return !best[0] || w;
	return strcmp(name, best) < 0;
}

int bdev_origin_id(dev_t devt, char *id, size_t len)
{
	char path[128], val[256], best[256] = "";
	struct dirent *de;
	struct stat st;
	DIR *d;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/dm/uuid", major(devt), minor(devt));
	sysfs_line(path, val, sizeof(val));
	if (val[0] && strlen(val) + 8 < len && id_word(val)) {
		snprintf(id, len, "dm-uuid-%s", val);
		return 0;
	}
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/dm/name", major(devt), minor(devt));
	sysfs_line(path, val, sizeof(val));
	if (val[0] && strlen(val) + 8 < len && id_word(val)) {
		snprintf(id, len, "dm-name-%s", val);
		return 0;
	}
	d = opendir("/dev/disk/by-id");
	if (!d)
		return -ENOENT;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || strlen(de->d_name) >= len || !id_word(de->d_name) ||
		    fstatat(dirfd(d), de->d_name, &st, 0) || !S_ISBLK(st.st_mode) ||
		    st.st_rdev != devt)
			continue;
		if (better_id(de->d_name, best))
			str_copy(best, sizeof(best), de->d_name);
	}
	closedir(d);
	if (!best[0])
		return -ENOENT;
	str_copy(id, len, best);
	return 0;
}
