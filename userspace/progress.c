// SPDX-License-Identifier: GPL-2.0
/*
 * Progress bar / periodic progress lines.
 */
#include <stdio.h>
#include <unistd.h>

#include "progress.h"
#include "util.h"

#define BAR 30
#define TTY_INTERVAL 0.2
#define LINE_INTERVAL 5.0

void progress_init(struct progress *p, const char *label, uint64_t total, int quiet)
{
	p->label = label;
	p->total = total;
	p->start = now_seconds();
	p->last = p->start;
	p->tty = isatty(STDERR_FILENO);
	p->quiet = quiet;
	p->drawn = 0;
}

static void draw(struct progress *p, uint64_t done, double now)
{
	double el = now - p->start, rate = el > 0 ? (double)done / el : 0;
	double pct = p->total ? 100.0 * (double)done / (double)p->total : 100.0;
	char eta[32], sz[32], tot[32], bar[BAR + 1];
	unsigned int i, fill = (unsigned int)(pct / 100.0 * BAR);

	if (rate > 0 && done < p->total)
		format_duration((double)(p->total - done) / rate, eta, sizeof(eta));
	else
		snprintf(eta, sizeof(eta), done >= p->total ? "0:00" : "--:--");
	if (p->tty) {
		for (i = 0; i < BAR; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[BAR] = '\0';
		fprintf(stderr, "\r%s [%s] %5.1f%% %8.1f MiB/s  ETA %s ", p->label, bar,
			pct, rate / 1048576.0, eta);
	} else {
		format_size(done, sz, sizeof(sz));
		format_size(p->total, tot, sizeof(tot));
		fprintf(stderr, "%s: %.1f%% (%s of %s), %.1f MiB/s, ETA %s\n", p->label,
			pct, sz, tot, rate / 1048576.0, eta);
	}
	fflush(stderr);
	p->drawn = 1;
	p->last = now;
}

void progress_update(struct progress *p, uint64_t done)
{
	double now;

	if (p->quiet)
		return;
	now = now_seconds();
	if (now - p->last < (p->tty ? TTY_INTERVAL : LINE_INTERVAL))
		return;
	draw(p, done, now);
}

void progress_finish(struct progress *p, uint64_t done)
{
	if (p->quiet)
		return;
	if (p->tty) {
		draw(p, done, now_seconds());
		fputc('\n', stderr);
	} else if (p->drawn) {
		draw(p, done, now_seconds());
	}
}
