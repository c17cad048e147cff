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

#include <string.h>
#include <unistd.h>

static _Thread_local struct {
    uint8_t bytes[640];
    size_t used;
} id_pool = {.used = sizeof id_pool.bytes};

// A forked child has only the thread that forked, and that thread runs this handler: emptying its pool there
// means parent and child never hand out the same bytes. (Asking getpid() on every call cost a system call per
// ID: a tenth of minting one, and a fifth of a percent of `timeline batch` checking its lines.)
static void empty_pool_in_child(void) {
    memset(id_pool.bytes, 0, sizeof id_pool.bytes);
    id_pool.used = sizeof id_pool.bytes;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_registered;

static void register_atfork(void) { atfork_registered = pthread_atfork(NULL, NULL, empty_pool_in_child) == 0; }

int timeline_random_id_bytes(uint8_t *out, size_t len) {
    if (len > 64) return 0;
    pthread_once(&atfork_once, register_atfork);
    if (!atfork_registered) return RAND_bytes(out, (int)len);
    if (id_pool.used + len > sizeof id_pool.bytes) {
        if (RAND_bytes(id_pool.bytes, (int)sizeof id_pool.bytes) != 1) return 0;
        id_pool.used = 0;
    }
    memcpy(out, id_pool.bytes + id_pool.used, len);
    // Bytes handed out are wiped, so that no two IDs can share them even through a stale copy of the pool.
    memset(id_pool.bytes + id_pool.used, 0, len);
    id_pool.used += len;
    return 1;
}

const char *timeline_openssl_version(void) { return OpenSSL_version(OPENSSL_VERSION); }

// ---- TLS ----

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

int timeline_ssl_ctx_harden(SSL_CTX *ctx) {
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) return 0;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    // TLS 1.2: forward secrecy and AEAD only.
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL") != 1)
        return 0;
    return 1;
}

void timeline_bio_set_mem_eof(BIO *bio, int eof) { BIO_set_mem_eof_return(bio, eof ? 0 : -1); }

int timeline_ssl_set_sni(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }

void timeline_drain_errors(char *buf, size_t len) {
    if (len == 0) return;
    buf[0] = 0;
    size_t used = 0;
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof one);
        size_t n = strlen(one);
        if (used + n + 3 >= len) continue;  // keep draining, stop appending
        if (used > 0) {
            memcpy(buf + used, "; ", 2);
            used += 2;
        }
        memcpy(buf + used, one, n);
        used += n;
        buf[used] = 0;
    }
}

static int pem_out(int (*write)(BIO *, void *), void *object, char **out) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL) return 0;
    int ok = write(bio, object);
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (ok && n > 0) {
        *out = malloc((size_t)n + 1);
        if (*out != NULL) {
            memcpy(*out, data, (size_t)n);
            (*out)[n] = 0;
        } else {
            ok = 0;
        }
    } else {
        ok = 0;
    }
    BIO_free(bio);
    return ok;
}

static int write_key(BIO *bio, void *key) {
    return PEM_write_bio_PrivateKey(bio, (EVP_PKEY *)key, NULL, NULL, 0, NULL, NULL);
}
static int write_cert(BIO *bio, void *cert) { return PEM_write_bio_X509(bio, (X509 *)cert); }

int timeline_make_self_signed(const char *common_name, const char *san, int days, char **cert_pem, char **key_pem) {
    int ok = 0;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    X509_EXTENSION *ext = NULL;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    if (key == NULL || cert == NULL) goto done;
    if (X509_set_version(cert, 2) != 1) goto done;
    if (RAND_bytes(serial, sizeof serial) != 1) goto done;
    serial[0] &= 0x7F;  // a positive serial
    bn = BN_bin2bn(serial, sizeof serial, NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL) goto done;
    if (X509_gmtime_adj(X509_getm_notBefore(cert), -3600) == NULL) goto done;
    if (X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400L) == NULL) goto done;
    if (X509_set_pubkey(cert, key) != 1) goto done;
    X509_NAME *name = X509_get_subject_name(cert);
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)common_name, -1, -1, 0) != 1)
        goto done;
    if (X509_set_issuer_name(cert, name) != 1) goto done;
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
    if (san != NULL && san[0] != 0) {
        ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
        if (ext == NULL || X509_add_ext(cert, ext, -1) != 1) goto done;
        X509_EXTENSION_free(ext);
        ext = NULL;
    }
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:FALSE");
    if (ext == NULL || X509_add_ext(cert, ext, -1) != 1) goto done;
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, "serverAuth,clientAuth");
    if (ext == NULL || X509_add_ext(cert, ext, -1) != 1) goto done;
    X509_EXTENSION_free(ext);
    ext = NULL;
    if (X509_sign(cert, key, EVP_sha256()) == 0) goto done;
    if (!pem_out(write_cert, cert, cert_pem)) goto done;
    if (!pem_out(write_key, key, key_pem)) {
        free(*cert_pem);
        *cert_pem = NULL;
        goto done;
    }
    ok = 1;
done:
    if (ext != NULL) X509_EXTENSION_free(ext);
    BN_free(bn);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok;
}

int timeline_pem_fingerprint(const char *pem, size_t len, uint8_t out[32]) {
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) return 0;
    X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (cert == NULL) return 0;
    unsigned int n = 0;
    int ok = X509_digest(cert, EVP_sha256(), out, &n) == 1 && n == 32;
    X509_free(cert);
    return ok;
}

int timeline_peer_fingerprint(SSL *ssl, uint8_t out[32]) {
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (cert == NULL) return 0;
    unsigned int n = 0;
    int ok = X509_digest(cert, EVP_sha256(), out, &n) == 1 && n == 32;
    X509_free(cert);
    return ok;
}
