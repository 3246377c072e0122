/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Progress of a long copy on stderr: a bar redrawn in place on a terminal
 * (percent, MiB/s, ETA), a plain line every few seconds otherwise.
 */
#ifndef FLEECECTL_PROGRESS_H
#define FLEECECTL_PROGRESS_H

#include <stdint.h>

struct progress {
	const char *label;
	uint64_t total;
	double start;
	double last;
	int tty;
	int quiet;
	int drawn;
};

void progress_init(struct progress *p, const char *label, uint64_t total, int quiet);
/* Report @done bytes; draws at most every 0.2 s (tty) or 5 s (not a tty). */
void progress_update(struct progress *p, uint64_t done);
/* Final state: the bar at its last value, then a newline. */
void progress_finish(struct progress *p, uint64_t done);

#endif
