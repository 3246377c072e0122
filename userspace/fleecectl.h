/* SPDX-License-Identifier: GPL-2.0 */
#ifndef FLEECECTL_H
#define FLEECECTL_H

#define FLEECECTL_VERSION "0.1.0"

/* Exit codes, as dmsetup and thin-provisioning-tools use them. */
#define EXIT_OK 0
#define EXIT_ERR 1
#define EXIT_USAGE 2

#endif
