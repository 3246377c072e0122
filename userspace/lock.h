/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One fleecectl at a time changes devices: a lock file serialises create,
 * remove, attach, detach, snapshot and release, so that two of them cannot
 * interleave their suspends, loads and checks (e.g. a snapshot racing a
 * detach). status and backup do not take it.
 */
#ifndef FLEECECTL_LOCK_H
#define FLEECECTL_LOCK_H

#define LOCK_FILE "/run/lock/fleecectl.lock"

/*
 * Take the lock, waiting for another fleecectl to finish. Held until exit.
 * Returns 0; if the lock file cannot be opened (no /run/lock), warns with
 * -v and returns 0 as well: the lock protects against mistakes, not against
 * dmsetup. A second call in the same process returns at once.
 */
int lock_take(void);

#endif
