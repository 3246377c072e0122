// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for userspace/sha256.c (backup --verify, manifests): FIPS
 * 180-4 test vectors, the same digest however the input is split or
 * whether it comes in one buffer, and hex that parses back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sha256.h"

static void digest(const void *p, size_t len, char hex[65])
{
	unsigned char d[SHA256_DIGEST_SIZE];
	struct sha256 c;

	sha256_init(&c);
	sha256_update(&c, p, len);
	sha256_final(&c, d);
	sha256_hex(d, hex);
}

static void test_vectors(void **state)
{
	char hex[65];
	char *m;

	(void)state;
	digest("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	digest("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	digest(m, strlen(m), hex);
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	m = malloc(1000000);
	assert_non_null(m);
	memset(m, 'a', 1000000);
	digest(m, 1000000, hex);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(m);
}

/* Split at every offset around the 55/56/64-byte block edges. */
static void test_split(void **state)
{
	unsigned char buf[200], d[SHA256_DIGEST_SIZE];
	char want[65], got[65];
	struct sha256 c;
	size_t len, cut;

	(void)state;
	for (len = 0; len < sizeof(buf); len++)
		buf[len] = (unsigned char)(len * 7 + 3);
	for (len = 50; len < 140; len++) {
		digest(buf, len, want);
		for (cut = 0; cut <= len; cut++) {
			sha256_init(&c);
			sha256_update(&c, buf, cut);
			sha256_update(&c, buf + cut, len - cut);
			sha256_final(&c, d);
			sha256_hex(d, got);
			if (strcmp(want, got))
				fail_msg("len %zu cut %zu differs", len, cut);
		}
	}
}

static void test_buf_and_hex(void **state)
{
	unsigned char buf[3000], d1[SHA256_DIGEST_SIZE], d2[SHA256_DIGEST_SIZE];
	char h1[65], h2[65];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 13 + 1);
	assert_int_equal(sha256_buf(buf, sizeof(buf), d1), 0);
	sha256_hex(d1, h1);
	digest(buf, sizeof(buf), h2);
	assert_string_equal(h1, h2);
	assert_int_equal(sha256_unhex(h1, d2), 0);
	assert_memory_equal(d1, d2, sizeof(d1));
	h1[10] = 'G';
	assert_int_equal(sha256_unhex(h1, d2), -1);
	h1[10] = '0';
	h1[63] = '\0';
	assert_int_equal(sha256_unhex(h1, d2), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_buf_and_hex),
	};

	return cmocka_run_group_tests_name("fleecectl_sha256", tests, NULL, NULL);
}
