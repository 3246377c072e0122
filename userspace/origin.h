/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What create and attach share about fleece-origin tables.
 */
#ifndef FLEECECTL_ORIGIN_H
#define FLEECECTL_ORIGIN_H

#include <sys/types.h>

#include "parse.h"

/*
 * Check the --meta device of CMD NAME (NULL: none) and put it in the table
 * as major:minor ("-" for none). Prints the error and returns -1 if the
 * device cannot be used.
 */
int origin_meta_arg(const char *cmd, const char *name, const char *meta,
		    dev_t origin_devt, struct origin_table *t);

#endif
