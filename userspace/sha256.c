// SPDX-License-Identifier: GPL-2.0
/*
 * SHA-256 through OpenSSL's EVP interface (libcrypto). Each reader thread
 * of a backup hashes its own pieces, so contexts are never shared.
 */
#include <string.h>
#include <openssl/evp.h>

#include "sha256.h"

void sha256_init(struct sha256 *c)
{
	c->ctx = EVP_MD_CTX_new();
	c->failed = !c->ctx || !EVP_DigestInit_ex(c->ctx, EVP_sha256(), NULL);
}

void sha256_update(struct sha256 *c, const void *data, size_t len)
{
	if (!c->failed && len && !EVP_DigestUpdate(c->ctx, data, len))
		c->failed = 1;
}

int sha256_final(struct sha256 *c, unsigned char out[SHA256_DIGEST_SIZE])
{
	unsigned int n = 0;

	if (!c->failed && (!EVP_DigestFinal_ex(c->ctx, out, &n) || n != SHA256_DIGEST_SIZE))
		c->failed = 1;
	EVP_MD_CTX_free(c->ctx);
	c->ctx = NULL;
	if (c->failed)
		memset(out, 0, SHA256_DIGEST_SIZE);
	return c->failed ? -1 : 0;
}

int sha256_buf(const void *data, size_t len, unsigned char out[SHA256_DIGEST_SIZE])
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) && n == SHA256_DIGEST_SIZE)
		return 0;
	memset(out, 0, SHA256_DIGEST_SIZE);
	return -1;
}

void sha256_hex(const unsigned char d[SHA256_DIGEST_SIZE], char out[65])
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < SHA256_DIGEST_SIZE; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[64] = '\0';
}

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int sha256_unhex(const char *hex, unsigned char d[SHA256_DIGEST_SIZE])
{
	int i, hi, lo;

	for (i = 0; i < SHA256_DIGEST_SIZE; i++) {
		hi = nibble(hex[2 * i]);
		lo = hi < 0 ? -1 : nibble(hex[2 * i + 1]);
		if (lo < 0)
			return -1;
		d[i] = (unsigned char)(hi << 4 | lo);
	}
	return hex[64] == '\0' || hex[64] == ' ' || hex[64] == '\n' ? 0 : -1;
}
