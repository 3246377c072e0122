/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small streaming JSON writer (pretty-printed, two-space indent).
 * Pass key NULL for array elements and for the top-level value.
 */
#ifndef FLEECECTL_JSON_H
#define FLEECECTL_JSON_H

#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

struct json {
	FILE *f;
	int depth;
	int count[JSON_MAX_DEPTH];	/* members written at each level */
};

void json_init(struct json *j, FILE *f);
void json_obj_begin(struct json *j, const char *key);
void json_obj_end(struct json *j);
void json_arr_begin(struct json *j, const char *key);
void json_arr_end(struct json *j);
/* val NULL writes null. */
void json_str(struct json *j, const char *key, const char *val);
void json_u64(struct json *j, const char *key, uint64_t val);
void json_bool(struct json *j, const char *key, int val);
void json_double(struct json *j, const char *key, double val);

/* The string as a JSON string literal, quotes included. */
void json_write_string(FILE *f, const char *s);

#endif
