// SPDX-License-Identifier: GPL-2.0
/*
 * Messages, number and size parsing, size formatting, clocks.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "fleecectl.h"
#include "util.h"

int verbose;

/* The failure msg_exit_code() and msg_failure() report. */
static int fail_code;
static char fail_text[1024];
/* A backup ends its batches on a thread of its own (backup-batch.c). */
static pthread_mutex_t msg_lock = PTHREAD_MUTEX_INITIALIZER;

static void note(int code, const char *fmt, va_list ap)
{
	pthread_mutex_lock(&msg_lock);
	if (!fail_text[0] || (fail_code == EXIT_ERR && code != EXIT_ERR)) {
		vsnprintf(fail_text, sizeof(fail_text), fmt, ap);
		fail_code = code;
	}
	pthread_mutex_unlock(&msg_lock);
}

/*
 * Lines said while msg_hold() holds them: printed by msg_release(). A
 * window of a few device-mapper calls says little, but -v -v -v makes
 * libdevmapper say a lot: what does not fit is counted, and a failure or
 * a warning always has the room kept for it (those tell the admin what to
 * do, such as resuming a device by hand).
 */
#define HELD_BYTES 32768
#define HELD_KEPT 8192		/* for failures and warnings only */
static char held[HELD_BYTES];
static size_t held_len;
static unsigned int held_lost;
static int holding;

static void hold_line(int important, const char *prefix, const char *fmt, va_list ap)
{
	size_t room = sizeof(held) - held_len - (important ? 0 : HELD_KEPT);
	int n;

	if (held_len + (important ? 0 : HELD_KEPT) >= sizeof(held)) {
		held_lost++;
		return;
	}
	n = snprintf(held + held_len, room, "fleecectl: %s", prefix);
	if (n >= 0 && (size_t)n < room)
		n += vsnprintf(held + held_len + n, room - n, fmt, ap);
	if (n >= 0 && (size_t)n + 1 < room) {
		held_len += n;
		held[held_len++] = '\n';
	} else {
		held[held_len] = '\0';
		held_lost++;
	}
}

/* One line, whole, however many threads print. */
static void vmsg(int important, const char *prefix, const char *fmt, va_list ap)
{
	pthread_mutex_lock(&msg_lock);
	if (holding) {
		hold_line(important, prefix, fmt, ap);
	} else {
		fflush(stdout);
		fprintf(stderr, "fleecectl: %s", prefix);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	pthread_mutex_unlock(&msg_lock);
}

void msg_hold(void)
{
	pthread_mutex_lock(&msg_lock);
	holding++;
	pthread_mutex_unlock(&msg_lock);
}

void msg_release(int stuck)
{
	FILE *kmsg;

	pthread_mutex_lock(&msg_lock);
	if (holding && !--holding) {
		/*
		 * A device left suspended may be the one whose frozen file
		 * system holds stderr: the kernel log gets the lines first.
		 */
		if (stuck && held_len && (kmsg = fopen("/dev/kmsg", "we"))) {
			fwrite(held, 1, held_len, kmsg);
			fclose(kmsg);
		}
		fwrite(held, 1, held_len, stderr);
		if (held_lost)
			fprintf(stderr, "fleecectl: %u more message%s did not fit while devices "
				"were suspended\n", held_lost, held_lost == 1 ? "" : "s");
		fflush(stderr);
		held_len = 0;
		held_lost = 0;
	}
	pthread_mutex_unlock(&msg_lock);
}

void msg_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(0, "", fmt, ap);
	va_end(ap);
}

/* A failure of class @code: noted, and printed. */
static void vfail(int code, const char *fmt, va_list ap)
{
	va_list aq;

	va_copy(aq, ap);
	note(code, fmt, aq);
	va_end(aq);
	vmsg(1, "", fmt, ap);
}

void msg_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(EXIT_ERR, fmt, ap);
	va_end(ap);
}

void msg_fail(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(code, fmt, ap);
	va_end(ap);
}

void msg_note(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	note(code, fmt, ap);
	va_end(ap);
}

int msg_exit_code(int rc)
{
	if (rc != EXIT_ERR || !fail_text[0] || fail_code <= EXIT_USAGE)
		return rc;
	return fail_code;
}

const char *msg_failure(void)
{
	return fail_text;
}

int errno_exit_code(int e)
{
	switch (e < 0 ? -e : e) {
	case ENOENT:
	case ENXIO:
	case ENODEV:
	case ENOTBLK:
	case EMEDIUMTYPE:
		return EXIT_NODEV;
	case EBUSY:
	case EEXIST:
		return EXIT_BUSY;
	case EIO:
		return EXIT_IO;
	default:
		return EXIT_ERR;
	}
}

void msg_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(1, "warning: ", fmt, ap);
	va_end(ap);
}

void msg_verbose(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	vmsg(0, "", fmt, ap);
	va_end(ap);
}

int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

int parse_size(const char *s, uint64_t *bytes)
{
	static const char units[] = "KMGTP";
	char num[32];
	const char *p, *u;
	uint64_t v;
	unsigned int shift = 0;
	size_t n;
	int r;

	if (!s)
		return -EINVAL;
	for (p = s; *p >= '0' && *p <= '9'; p++)
		;
	n = (size_t)(p - s);
	if (!n || n >= sizeof(num))
		return n ? -ERANGE : -EINVAL;
	memcpy(num, s, n);
	num[n] = '\0';
	r = parse_u64(num, &v);
	if (r)
		return r;

	if (!*p || !strcasecmp(p, "b")) {
		shift = 0;
	} else if (!strcasecmp(p, "s")) {
		shift = 9;
	} else {
		u = strchr(units, toupper((unsigned char)*p));
		if (!u || !*u)
			return -EINVAL;
		shift = 10 * (unsigned int)(u - units + 1);
		p++;
		if (*p && strcasecmp(p, "b") && strcasecmp(p, "ib"))
			return -EINVAL;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*bytes = v << shift;
	return 0;
}

int is_power_of_two(uint64_t v)
{
	return v && !(v & (v - 1));
}

int parse_chunk_size(const char *s, uint64_t *sectors, const char **why)
{
	uint64_t bytes;
	int r;

	r = parse_size(s, &bytes);
	if (r) {
		*why = r == -ERANGE ? "too large" :
			"not a size (use e.g. 64K, 1M; K, M, G are binary units)";
		return -EINVAL;
	}
	if (!is_power_of_two(bytes)) {
		*why = "not a power of two";
		return -EINVAL;
	}
	if (bytes < 4096) {
		*why = "smaller than 4 KiB";
		return -EINVAL;
	}
	if (bytes > (1ULL << 30)) {
		*why = "larger than 1 GiB";
		return -EINVAL;
	}
	*sectors = bytes >> 9;
	return 0;
}

int parse_devt(const char *s, dev_t *out)
{
	char buf[32];
	const char *colon = strchr(s, ':');
	uint64_t ma, mi;
	size_t n;

	if (!colon)
		return -EINVAL;
	n = (size_t)(colon - s);
	if (!n || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (parse_u64(buf, &ma) || parse_u64(colon + 1, &mi))
		return -EINVAL;
	if (ma > 0xfff || mi > 0xfffff)
		return -EINVAL;
	*out = makedev((unsigned int)ma, (unsigned int)mi);
	return 0;
}

static const char *const unit_names[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };

/* The largest unit <= bytes; its index. */
static unsigned int unit_of(uint64_t bytes)
{
	unsigned int i = 0;

	while (i < 6 && bytes >= (1ULL << (10 * (i + 1))))
		i++;
	return i;
}

void format_size(uint64_t bytes, char *buf, size_t len)
{
	unsigned int i = unit_of(bytes);
	uint64_t unit = 1ULL << (10 * i);

	if (bytes % unit == 0)
		snprintf(buf, len, "%llu %s", (unsigned long long)(bytes / unit),
			 unit_names[i]);
	else
		snprintf(buf, len, "%.1f %s", (double)bytes / (double)unit,
			 unit_names[i]);
}

void format_size_short(uint64_t bytes, char *buf, size_t len)
{
	unsigned int i = unit_of(bytes);
	uint64_t unit = 1ULL << (10 * i);
	char u = i ? "BKMGTPE"[i] : 'B';

	if (bytes % unit == 0)
		snprintf(buf, len, "%llu%c", (unsigned long long)(bytes / unit), u);
	else
		snprintf(buf, len, "%.1f%c", (double)bytes / (double)unit, u);
}

void format_duration(double seconds, char *buf, size_t len)
{
	unsigned long s = seconds < 0 ? 0 : (unsigned long)(seconds + 0.5);

	if (s >= 3600)
		snprintf(buf, len, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(buf, len, "%lu:%02lu", s / 60, s % 60);
}

void str_copy(char *dst, size_t len, const char *src)
{
	size_t n = strlen(src);

	if (!len)
		return;
	if (n >= len)
		n = len - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
