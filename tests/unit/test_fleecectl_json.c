// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for userspace/json.c: strings are escaped, and bytes that are
 * not UTF-8 never reach the document.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <cmocka.h>

#include "json.h"

/* json_write_string(@in) must print exactly @want. */
static void check(const char *in, const char *want)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	assert_non_null(f);
	json_write_string(f, in);
	assert_int_equal(fclose(f), 0);
	assert_string_equal(out, want);
	free(out);
}

static void test_escapes(void **state)
{
	(void)state;
	check("plain", "\"plain\"");
	check("a\"b\\c", "\"a\\\"b\\\\c\"");
	check("l1\nl2\tx\x01", "\"l1\\nl2\\tx\\u0001\"");
	check("", "\"\"");
}

static void test_utf8_kept(void **state)
{
	(void)state;
	check("caf\xc3\xa9", "\"caf\xc3\xa9\"");			/* U+00E9 */
	check("\xe2\x82\xac", "\"\xe2\x82\xac\"");			/* U+20AC */
	check("\xf0\x9f\x92\xbe", "\"\xf0\x9f\x92\xbe\"");		/* U+1F4BE */
	check("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");		/* U+10FFFF */
}

static void test_not_utf8_replaced(void **state)
{
	(void)state;
	check("a\xff" "b", "\"a\\ufffdb\"");			/* never in UTF-8 */
	check("\x80", "\"\\ufffd\"");				/* stray continuation */
	check("\xc3", "\"\\ufffd\"");				/* cut short at the end */
	check("\xe2\x82" "x", "\"\\ufffd\\ufffdx\"");		/* cut short */
	check("\xc0\xaf", "\"\\ufffd\\ufffd\"");			/* overlong '/' */
	check("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");	/* overlong */
	check("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");	/* surrogate */
	check("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");	/* > U+10FFFF */
	check("\xf5\x80", "\"\\ufffd\\ufffd\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_utf8_kept),
		cmocka_unit_test(test_not_utf8_replaced),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
