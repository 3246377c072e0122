/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What create and attach share about fleece-origin tables.
 */
#ifndef FLEECECTL_ORIGIN_H
#define FLEECECTL_ORIGIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "parse.h"

/* What create and attach make: the choices both commands take. */
struct origin_opts {
	const char *meta;		/* metadata device; NULL: volatile bitmaps */
	uint64_t chunk_sectors;
	/*
	 * Vouch that nothing wrote the origin since its bitmaps last tracked
	 * it (the table gets the feature "no_gap"): the kernel then keeps them
	 * trusted when the metadata is not new. fleecectl up sets it at boot.
	 */
	int no_gap;
	/*
	 * Check everything, build the table, change nothing. The table line
	 * goes to the caller's buffer; for attach its origin is then the name
	 * of the device attach would create ("<DMDEV-fleece-real>").
	 */
	int dry_run;
};

/*
 * The commands' work, callable with parameters (fleecectl up uses them).
 * The caller holds the lock (lock_take()). Each prints its errors as
 * "fleecectl: create NAME: reason" and returns -1, or returns 0. When
 * @table is not NULL it gets the fleece-origin table line made (or that
 * would be made): "<start> <length> fleece-origin <params>".
 */
int origin_create(const char *name, const char *dev, const struct origin_opts *opts,
		  char *table, size_t len);
int origin_attach(const char *dmdev, const struct origin_opts *opts,
		  char *table, size_t len);
/*
 * remove and detach; with @dry_run only the checks. The kernel records a
 * detach as a possible gap: the next attach distrusts the bitmaps even with
 * no_gap. With @shutdown (down --shutdown, the units' ExecStop) it is
 * declared clean first ("clean_detach"): the system is going down, and the
 * next boot's up vouches rightly.
 */
int origin_remove(const char *name, int dry_run, int shutdown);
int origin_detach(const char *dmdev, int dry_run, int shutdown);

/* The table line "0 <sectors> fleece-origin <params>" into @table (NULL: none). */
void origin_table_line(char *table, size_t len, uint64_t sectors, const char *params);

/* Room for a table line of origin_create() and origin_attach(). */
#define ORIGIN_TABLE_LEN (2 * PATH_MAX + 128)

/*
 * Check the --meta device of CMD NAME (NULL: none) and put it in the table
 * as major:minor ("-" for none). Prints the error and returns -1 if the
 * device cannot be used.
 */
/*
 * The options create and attach share (--meta, --chunk-size, --no-gap) into
 * @o. Returns -1 to go on (optind at the first operand), else the exit code
 * of a usage error or --help.
 */
int origin_options(int argc, char **argv, struct origin_opts *o);

int origin_meta_arg(const char *cmd, const char *name, const char *meta,
		    dev_t origin_devt, struct origin_table *t);

/*
 * With metadata, bind it to the device applications use, @devt: its
 * stable name goes into the table as origin_id, so that the kernel refuses
 * metadata made for another origin. A device without one gets a warning.
 */
void origin_id_arg(const char *cmd, const char *name, dev_t devt, struct origin_table *t);

struct fl_origin;

/*
 * CMD NAME is about to remove the fleece-origin @o at shutdown: declare the
 * detach clean (@clean), or take that back after a failed removal. Nothing
 * to do with volatile bitmaps. Returns 0, or -1 with the error printed.
 */
int origin_clean_detach(const char *cmd, const char *name, const struct fl_origin *o,
			int clean);

#endif
