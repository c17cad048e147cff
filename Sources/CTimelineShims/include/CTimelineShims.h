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

/// The same bytes for identifiers (not secrets), drawn from the DRBG 640 at a time into a per-thread buffer:
/// one RAND_bytes call costs about as much as decoding a whole edit. A forked child refills before using
/// the buffer, so that parent and child never hand out the same bytes. `len` is at most 64. Returns 1 on success.
int timeline_random_id_bytes(uint8_t *out, size_t len);

/// The linked libcrypto's version text, e.g. "OpenSSL 3.0.19 27 Jan 2026".
const char *timeline_openssl_version(void);

#endif

// ---- TLS: what OpenSSL offers only as macros, and certificate helpers ----

#include <openssl/ssl.h>

/// TLS 1.2 minimum; renegotiation and compression off; the server's cipher order preferred; AEAD-only
/// TLS 1.2 suites (TLS 1.3's are all AEAD). Returns 1 on success.
int timeline_ssl_ctx_harden(SSL_CTX *ctx);

/// Makes a memory BIO report EOF (rather than "retry") once drained: set when the peer's TCP stream ended,
/// so that a close without close_notify shows as truncation.
void timeline_bio_set_mem_eof(BIO *bio, int eof);

/// Sets SNI on a client connection. Returns 1 on success.
int timeline_ssl_set_sni(SSL *ssl, const char *name);

/// The OpenSSL error queue as one line ("" when empty); the queue is emptied.
/// Writes at most `len - 1` bytes and a NUL.
void timeline_drain_errors(char *buf, size_t len);

/// Generates a P-256 key and a self-signed certificate for `common_name`, valid `days` days, with the given
/// DNS and IP subject alternative names (comma-separated, e.g. "DNS:localhost,IP:127.0.0.1").
/// Writes PEM text into newly allocated buffers the caller frees with `free`. Returns 1 on success.
int timeline_make_self_signed(const char *common_name, const char *san, int days, char **cert_pem, char **key_pem);

/// SHA-256 over the DER encoding of a PEM certificate (the fingerprint people compare). Returns 1 on success.
int timeline_pem_fingerprint(const char *pem, size_t len, uint8_t out[32]);

/// SHA-256 over the DER encoding of the peer's certificate, or 0 when the peer sent none.
int timeline_peer_fingerprint(SSL *ssl, uint8_t out[32]);
