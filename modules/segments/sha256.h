/*
 * sha256.h - SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104), small and
 * dependency-free: the module signs report names and buckets users for
 * percentage rollout with it, and modules link no crypto library.
 */
#ifndef SEG_SHA256_H
#define SEG_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SEG_SHA256_LEN 32

void seg_sha256(const void *data, size_t len, uint8_t out[SEG_SHA256_LEN]);
void seg_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                     uint8_t out[SEG_SHA256_LEN]);

#endif
