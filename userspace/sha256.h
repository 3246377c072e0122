/* SPDX-License-Identifier: GPL-2.0 */
/*
 * SHA-256 (FIPS 180-4), for backup --verify: small, no library needed.
 */
#ifndef FLEECECTL_SHA256_H
#define FLEECECTL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32

struct sha256 {
	uint32_t h[8];
	uint64_t bytes;
	unsigned char buf[64];
	size_t fill;
};

void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *data, size_t len);
void sha256_final(struct sha256 *c, unsigned char out[SHA256_DIGEST_SIZE]);
/* 64 lower-case hex digits and a NUL. */
void sha256_hex(const unsigned char d[SHA256_DIGEST_SIZE], char out[65]);

#endif
