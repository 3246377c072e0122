// SPDX-License-Identifier: GPL-2.0
/*
 * Constructor argument helpers shared by both targets, and the kept table
 * line that STATUSTYPE_TABLE prints back exactly as it was given.
 *
 * Nothing here touches a device, so tests/unit builds this file in userspace.
 */
#include <linux/kernel.h>
#include <linux/log2.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "dm-fleece.h"

int fleece_table_save(struct fleece_table_line *line, unsigned int argc,
		      char **argv)
{
	size_t len = 0;
	unsigned int i;
	char *p;

	for (i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;

	line->text = kmalloc(len ? len : 1, GFP_KERNEL);
	if (!line->text)
		return -ENOMEM;

	p = line->text;
	*p = '\0';
	for (i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]);

		memcpy(p, argv[i], n);
		p += n;
		*p++ = (i + 1 < argc) ? ' ' : '\0';
	}
	return 0;
}

void fleece_table_free(struct fleece_table_line *line)
{
	kfree(line->text);
	line->text = NULL;
}

int fleece_parse_chunk_sectors(struct dm_target *ti, const char *arg,
			       sector_t *out)
{
	unsigned int v;

	if (kstrtouint(arg, 10, &v)) {
		ti->error = "Invalid chunk size: not a number";
		return -EINVAL;
	}
	if (!is_power_of_2(v)) {
		ti->error = "Invalid chunk size: not a power of two";
		return -EINVAL;
	}
	if (v < FLEECE_MIN_CHUNK_SECTORS) {
		ti->error = "Invalid chunk size: under 8 sectors";
		return -EINVAL;
	}
	if (v > FLEECE_MAX_CHUNK_SECTORS) {
		ti->error = "Invalid chunk size: over 2097152 sectors";
		return -EINVAL;
	}
	*out = v;
	return 0;
}
