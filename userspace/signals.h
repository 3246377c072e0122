/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Signals during operations that must not stop half-way.
 *
 * Between suspending a device and resuming it, SIGINT, SIGTERM, SIGHUP and
 * SIGQUIT must not kill fleecectl: a suspended origin blocks every writer
 * and a frozen filesystem stays frozen. sig_catch() makes them set a flag
 * instead; the operation checks sig_caught() at each step, rolls back what
 * it did if it has not finished, and resumes the device.
 */
#ifndef FLEECECTL_SIGNALS_H
#define FLEECECTL_SIGNALS_H

/* Catch the signals above (no SA_RESTART: sleeps end early). */
void sig_catch(void);
/* Back to the actions they had before sig_catch(). */
void sig_restore(void);
/* The signal caught since sig_catch(), or 0. */
int sig_caught(void);
/*
 * Sleep until now_seconds() reaches @when, or until a signal is caught.
 * Returns 0, or -EINTR when a signal was caught (before or during it).
 */
int sig_sleep_until(double when);

/*
 * Tests only: with FLEECECTL_TEST_PAUSE_AFTER_SUSPEND=SECONDS in the
 * environment, sleep that long right after suspending @dev (ending early
 * when a signal is caught), so that a test can signal fleecectl while the
 * device is suspended. Only in a build with FLEECECTL_TEST_HOOKS defined
 * (userspace/Makefile TEST_HOOKS=1, the default there; make install and the
 * Debian package build with TEST_HOOKS=0): other builds ignore it, with a
 * warning.
 */
void test_pause_after_suspend(const char *dev);

#endif
