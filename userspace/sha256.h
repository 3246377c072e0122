/* SPDX-License-Identifier: GPL-2.0 */
/*
 * SHA-256 for backup --verify and image manifests, through OpenSSL's EVP
 * interface: it picks the CPU's SHA extensions or vector code (about 8x
 * the portable C this replaced).
 */
#ifndef FLEECECTL_SHA256_H
#define FLEECECTL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32

struct sha256 {
	void *ctx;		/* EVP_MD_CTX */
	int failed;		/* out of memory, or the digest is unavailable */
};

/* An incremental digest: init, update..., final (which frees it). */
void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *data, size_t len);
/* Returns 0, or -1 when the digest could not be computed (@out is zeroed). */
int sha256_final(struct sha256 *c, unsigned char out[SHA256_DIGEST_SIZE]);
/* The digest of one buffer. Returns 0 or -1. */
int sha256_buf(const void *data, size_t len, unsigned char out[SHA256_DIGEST_SIZE]);
/* 64 lower-case hex digits and a NUL. */
void sha256_hex(const unsigned char d[SHA256_DIGEST_SIZE], char out[65]);
/* Parses 64 hex digits. Returns 0 or -1. */
int sha256_unhex(const char *hex, unsigned char d[SHA256_DIGEST_SIZE]);

#endif
