#include "CTimelineShims.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>

// OpenSSL 3 looks the algorithm up on every EVP_sha256() digest unless it is fetched once;
// a fetched EVP_MD is immutable and safe to share between threads.
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

static const EVP_MD *sha256(void) {
    pthread_once(&sha256_once, fetch_sha256);
    return sha256_md != NULL ? sha256_md : EVP_sha256();
}

// A context per thread: the chain hashes one edit at a time on the writer thread, and
// resetting a context is far cheaper than allocating one per edit.
static __thread EVP_MD_CTX *thread_ctx;

int timeline_sha256_two(const uint8_t *prefix, size_t prefix_len, const uint8_t *data, size_t data_len,
                        uint8_t out[32]) {
    if (thread_ctx == NULL) {
        thread_ctx = EVP_MD_CTX_new();
        if (thread_ctx == NULL) return 0;
    }
    unsigned int len = 0;
    if (EVP_DigestInit_ex(thread_ctx, sha256(), NULL) != 1) return 0;
    if (prefix_len > 0 && EVP_DigestUpdate(thread_ctx, prefix, prefix_len) != 1) return 0;
    if (data_len > 0 && EVP_DigestUpdate(thread_ctx, data, data_len) != 1) return 0;
    if (EVP_DigestFinal_ex(thread_ctx, out, &len) != 1) return 0;
    return len == 32;
}

timeline_sha256_ctx *timeline_sha256_new(void) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return NULL;
    if (EVP_DigestInit_ex(ctx, sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return NULL;
    }
    return (timeline_sha256_ctx *)ctx;
}

int timeline_sha256_update(timeline_sha256_ctx *ctx, const uint8_t *data, size_t len) {
    if (len == 0) return 1;
    return EVP_DigestUpdate((EVP_MD_CTX *)ctx, data, len);
}

int timeline_sha256_final(timeline_sha256_ctx *ctx, uint8_t out[32]) {
    unsigned int len = 0;
    return EVP_DigestFinal_ex((EVP_MD_CTX *)ctx, out, &len) == 1 && len == 32;
}

void timeline_sha256_free(timeline_sha256_ctx *ctx) { EVP_MD_CTX_free((EVP_MD_CTX *)ctx); }

int timeline_random_bytes(uint8_t *out, size_t len) { return RAND_bytes(out, (int)len); }

const char *timeline_openssl_version(void) { return OpenSSL_version(OPENSSL_VERSION); }
