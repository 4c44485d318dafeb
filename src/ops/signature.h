/*
 * Signatures shared by ECDSA (signature_ecdsa.c) and RSA (signature_rsa.c):
 * the context, digesting on the host (one device call per signature),
 * verification in software on the cached public key, and the digest
 * parameters.  Each algorithm supplies a HWKEY_SIG_METHOD.
 */
#ifndef HWKEY_OPS_SIGNATURE_H
#define HWKEY_OPS_SIGNATURE_H

#include <openssl/core_dispatch.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "key/key.h"
#include "ops/dispatch.h"
#include "ops/provctx.h"

typedef struct hwkey_sig_ctx HWKEY_SIG_CTX;

typedef struct {
    HWKEY_ALG alg;
    const char *name; /* "ECDSA", "RSA": for messages */
    /* tbs is a digest (of ctx->md when set); sig has room for sigsize bytes. */
    int (*sign)(HWKEY_SIG_CTX *ctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                const unsigned char *tbs, size_t tbslen);
    /* Algorithm-specific settable parameters (the digest is handled in common). */
    int (*set_params)(HWKEY_SIG_CTX *ctx, const OSSL_PARAM params[]);
    int (*get_params)(HWKEY_SIG_CTX *ctx, OSSL_PARAM params[]);
    /* Adds the parameters a software verify context needs; returns how many. */
    size_t (*verify_params)(HWKEY_SIG_CTX *ctx, OSSL_PARAM *out);
    /* The DER AlgorithmIdentifier of the signature about to be made. */
    int (*algorithm_id)(HWKEY_SIG_CTX *ctx, unsigned char **der, size_t *der_len);
} HWKEY_SIG_METHOD;

/* RSA state; unused by ECDSA. */
typedef struct {
    int pad_mode;    /* RSA_PKCS1_PADDING, RSA_PKCS1_PSS_PADDING */
    int salt_len;    /* bytes, or RSA_PSS_SALTLEN_* */
    EVP_MD *mgf1_md; /* NULL: the signature's digest */
} HWKEY_SIG_RSA_STATE;

struct hwkey_sig_ctx {
    const HWKEY_SIG_METHOD *meth;
    HWKEY_PROVCTX *provctx;
    HWKEY_KEY *key;
    int signing; /* 1 sign, 0 verify */
    EVP_MD *md;  /* fetched from provctx->swctx; NULL until set */
    int md_nid;
    size_t md_size;
    EVP_MD_CTX *mdctx; /* digest_sign / digest_verify in progress */
    HWKEY_SIG_RSA_STATE rsa;
};

HWKEY_SIG_CTX *hwkey_sig_newctx(void *provctx, const HWKEY_SIG_METHOD *meth);

OSSL_FUNC_signature_freectx_fn hwkey_sig_freectx;
OSSL_FUNC_signature_dupctx_fn hwkey_sig_dupctx;
OSSL_FUNC_signature_sign_init_fn hwkey_sig_sign_init;
OSSL_FUNC_signature_sign_fn hwkey_sig_sign;
OSSL_FUNC_signature_verify_init_fn hwkey_sig_verify_init;
OSSL_FUNC_signature_verify_fn hwkey_sig_verify;
OSSL_FUNC_signature_digest_sign_init_fn hwkey_sig_digest_sign_init;
OSSL_FUNC_signature_digest_sign_update_fn hwkey_sig_digest_update;
OSSL_FUNC_signature_digest_sign_final_fn hwkey_sig_digest_sign_final;
OSSL_FUNC_signature_digest_verify_init_fn hwkey_sig_digest_verify_init;
OSSL_FUNC_signature_digest_verify_final_fn hwkey_sig_digest_verify_final;
OSSL_FUNC_signature_get_ctx_params_fn hwkey_sig_get_ctx_params;
OSSL_FUNC_signature_set_ctx_params_fn hwkey_sig_set_ctx_params;

/* Fetches md by name from swctx; raises HWKEY_R_UNSUPPORTED_DIGEST if not one hwkey signs with. */
EVP_MD *hwkey_sig_fetch_md(HWKEY_SIG_CTX *ctx, const char *name, int allow_md5_sha1);
/* DER of alg; frees alg. */
int hwkey_sig_algor_der(X509_ALGOR *alg, unsigned char **der, size_t *der_len);

/* The entries every signature table has. */
#define HWKEY_SIG_COMMON_FNS                                                                       \
    HWKEY_SIG_FN(FREECTX, freectx, hwkey_sig_freectx),                                             \
        HWKEY_SIG_FN(DUPCTX, dupctx, hwkey_sig_dupctx),                                            \
        HWKEY_SIG_FN(SIGN_INIT, sign_init, hwkey_sig_sign_init),                                   \
        HWKEY_SIG_FN(SIGN, sign, hwkey_sig_sign),                                                  \
        HWKEY_SIG_FN(VERIFY_INIT, verify_init, hwkey_sig_verify_init),                             \
        HWKEY_SIG_FN(VERIFY, verify, hwkey_sig_verify),                                            \
        HWKEY_SIG_FN(DIGEST_SIGN_INIT, digest_sign_init, hwkey_sig_digest_sign_init),              \
        HWKEY_SIG_FN(DIGEST_SIGN_UPDATE, digest_sign_update, hwkey_sig_digest_update),             \
        HWKEY_SIG_FN(DIGEST_SIGN_FINAL, digest_sign_final, hwkey_sig_digest_sign_final),           \
        HWKEY_SIG_FN(DIGEST_VERIFY_INIT, digest_verify_init, hwkey_sig_digest_verify_init),        \
        HWKEY_SIG_FN(DIGEST_VERIFY_UPDATE, digest_verify_update, hwkey_sig_digest_update),         \
        HWKEY_SIG_FN(DIGEST_VERIFY_FINAL, digest_verify_final, hwkey_sig_digest_verify_final),     \
        HWKEY_SIG_FN(GET_CTX_PARAMS, get_ctx_params, hwkey_sig_get_ctx_params),                    \
        HWKEY_SIG_FN(SET_CTX_PARAMS, set_ctx_params, hwkey_sig_set_ctx_params)

#endif
