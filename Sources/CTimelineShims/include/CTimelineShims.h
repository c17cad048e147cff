#ifndef TIMELINE_SHIMS_H
#define TIMELINE_SHIMS_H

#include <stddef.h>
#include <stdint.h>

/// Opaque incremental SHA-256 state (an EVP_MD_CTX underneath).
typedef struct timeline_sha256_ctx timeline_sha256_ctx;

/// One-shot SHA-256 of `prefix` (may be NULL when `prefix_len` is 0) followed by `data`.
/// Hashing the two parts in one call saves the chain a concatenation copy per edit.
/// Returns 1 on success, 0 when libcrypto failed.
int timeline_sha256_two(const uint8_t *prefix, size_t prefix_len, const uint8_t *data, size_t data_len,
                        uint8_t out[32]);

timeline_sha256_ctx *timeline_sha256_new(void);
int timeline_sha256_update(timeline_sha256_ctx *ctx, const uint8_t *data, size_t len);
/// Finishes the digest into `out`; the context may not be updated afterwards.
int timeline_sha256_final(timeline_sha256_ctx *ctx, uint8_t out[32]);
void timeline_sha256_free(timeline_sha256_ctx *ctx);

/// Cryptographically secure random bytes from OpenSSL's DRBG. Returns 1 on success.
int timeline_random_bytes(uint8_t *out, size_t len);

/// The linked libcrypto's version text, e.g. "OpenSSL 3.0.19 27 Jan 2026".
const char *timeline_openssl_version(void);

#endif
