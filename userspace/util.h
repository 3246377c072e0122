/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Messages, number and size parsing, size formatting, clocks. No
 * libdevmapper here: the unit tests link this file alone.
 */
#ifndef FLEECECTL_UTIL_H
#define FLEECECTL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

extern int verbose;

/* "fleecectl: " + message + newline, on stderr. */
void msg_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * msg_err for a failure of a class a script tells apart: @code is its exit
 * code (EXIT_NODEV, EXIT_BUSY, ... in fleecectl.h).
 */
void msg_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Only note a failure (its message printed otherwise), as msg_fail would. */
void msg_note(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * The failure the messages so far reported. Of msg_err's and msg_fail's,
 * the first classed one (a code other than EXIT_ERR), else the first:
 * what went wrong rather than what was undone after it.
 *   msg_exit_code(rc): @rc, except that EXIT_ERR becomes that failure's
 *   code (a class from EXIT_NODEV up; EXIT_USAGE is never made up here);
 *   msg_failure(): its message, without "fleecectl: "; "" if none.
 */
int msg_exit_code(int rc);
const char *msg_failure(void);
/*
 * The exit code for a failure with errno @e: EXIT_NODEV (ENOENT, ENXIO,
 * ENODEV, ENOTBLK, EMEDIUMTYPE), EXIT_BUSY (EBUSY, EEXIST), EXIT_IO (EIO),
 * else EXIT_ERR. @e may be negative.
 */
int errno_exit_code(int e);
/* "fleecectl: warning: " + message + newline, on stderr. */
void msg_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Like msg_err, only with -v. */
void msg_verbose(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "fleecectl: " + message + newline, on stderr; no failure noted. */
void msg_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/*
 * While devices are suspended: every msg_* line is kept in memory until
 * msg_release() (the last, if nested) prints them. stderr may be a file on
 * the filesystem a suspend froze, or a pipe whose reader is gone: a write
 * there would block, or kill fleecectl, with the device left suspended.
 * Failures and warnings always have room; what does not fit is counted.
 * @stuck: a device could not be resumed; the lines go to the kernel log
 * (/dev/kmsg) first, as stderr may block on its frozen file system.
 */
void msg_hold(void);
void msg_release(int stuck);

/*
 * A decimal number without sign, suffix or surrounding space.
 * Returns 0, or -EINVAL (not a number) / -ERANGE (too large).
 */
int parse_u64(const char *s, uint64_t *out);

/*
 * A size in bytes: a decimal number with an optional unit, case-insensitive:
 *   (none) or B        bytes
 *   S                  512-byte sectors
 *   K, M, G, T, P      binary multiples (KiB ...), optionally followed by
 *                      "iB" or "B": 64K = 64k = 64KiB = 64KB = 65536
 * Returns 0, -EINVAL (not a size) or -ERANGE (does not fit in 64 bits).
 */
int parse_size(const char *s, uint64_t *bytes);

/*
 * A chunk size for fleece-origin: a size (see parse_size) that is a power
 * of two from 4 KiB to 1 GiB. Gives it in 512-byte sectors. On error
 * returns -EINVAL and points *why at the reason.
 */
int parse_chunk_size(const char *s, uint64_t *sectors, const char **why);

/* "major:minor" in decimal. Returns 0 or -EINVAL. */
int parse_devt(const char *s, dev_t *out);

/*
 * Human size with a binary unit: 0 B, 512 B, 64 KiB, 1.5 MiB, 1.0 GiB.
 * Whole multiples print without a decimal ("64 KiB"), others with one.
 */
void format_size(uint64_t bytes, char *buf, size_t len);

/* The same, compact as in a table: 64K, 1.5M, 1G, 512B. */
void format_size_short(uint64_t bytes, char *buf, size_t len);

/* Seconds as "1:02:03" or "2:03". */
void format_duration(double seconds, char *buf, size_t len);

/* Copy a string, cut to fit (always terminated when len > 0). */
void str_copy(char *dst, size_t len, const char *src);

/* Monotonic time in seconds. */
double now_seconds(void);

/*
 * udev opens a device-mapper device for a moment to probe it, after a
 * resume and after a close that followed a write (under a slow VM, most of
 * a second). An open is taken for a user's only if it lasts through
 * BRIEF_OPEN_ROUNDS looks, BRIEF_OPEN_PAUSE_NS apart: about 2 s.
 */
#define BRIEF_OPEN_ROUNDS 20
#define BRIEF_OPEN_PAUSE_NS (100 * 1000 * 1000L)

/* 1 if v is a power of two (and not 0). */
int is_power_of_two(uint64_t v);

#endif
