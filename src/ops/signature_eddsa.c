/*
 * Ed25519 (pure EdDSA, RFC 8032): one-shot digest_sign / digest_verify, as
 * OpenSSL's own ED25519 signature does.  EdDSA hashes the message itself,
 * twice, so the device gets the whole message (HWKEY_SIG_EDDSA, one C_Sign
 * with CKM_EDDSA); there is no streaming update/final and no digest to
 * choose.  Verification runs in software on the cached public key.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "key/key.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "ops/provctx.h"
#include "util/error.h"

#define ED25519_SIG_LEN 64

typedef struct {
    HWKEY_PROVCTX *provctx;
    HWKEY_KEY *key;
    int signing;
} HWKEY_EDDSA_CTX;

static OSSL_FUNC_signature_newctx_fn eddsa_newctx;
static OSSL_FUNC_signature_freectx_fn eddsa_freectx;
static OSSL_FUNC_signature_dupctx_fn eddsa_dupctx;
static OSSL_FUNC_signature_digest_sign_init_fn eddsa_digest_sign_init;
static OSSL_FUNC_signature_digest_sign_fn eddsa_digest_sign;
static OSSL_FUNC_signature_digest_verify_init_fn eddsa_digest_verify_init;
static OSSL_FUNC_signature_digest_verify_fn eddsa_digest_verify;
static OSSL_FUNC_signature_get_ctx_params_fn eddsa_get_ctx_params;
static OSSL_FUNC_signature_gettable_ctx_params_fn eddsa_gettable_ctx_params;

static void *eddsa_newctx(void *provctx, const char *propq)
{
    HWKEY_EDDSA_CTX *ctx = OPENSSL_zalloc(sizeof(*ctx));

    (void)propq;
    if (ctx == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating an Ed25519 signature context");
        return NULL;
    }
    ctx->provctx = provctx;
    return ctx;
}

static void eddsa_freectx(void *vctx)
{
    HWKEY_EDDSA_CTX *ctx = vctx;

    if (ctx == NULL)
        return;
    hwkey_key_free(ctx->key);
    OPENSSL_free(ctx);
}

static void *eddsa_dupctx(void *vctx)
{
    const HWKEY_EDDSA_CTX *src = vctx;
    HWKEY_EDDSA_CTX *dst;

    if (src->key != NULL && !hwkey_key_up_ref(src->key))
        return NULL;
    if ((dst = OPENSSL_memdup(src, sizeof(*src))) == NULL) {
        hwkey_key_free(src->key);
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "duplicating an Ed25519 signature context");
    }
    return dst;
}

static int eddsa_init(HWKEY_EDDSA_CTX *ctx, const char *mdname, void *provkey, int signing)
{
    HWKEY_KEY *key = provkey;

    if (mdname != NULL && mdname[0] != '\0') {
        hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST,
                    "Ed25519 hashes the message itself: no digest may be given (got \"%s\")",
                    mdname);
        return 0;
    }
    if (key == NULL) {
        /* Re-initialisation keeps the key. */
        if (ctx->key == NULL) {
            hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED, "Ed25519 signature without a key");
            return 0;
        }
        ctx->signing = signing;
        return 1;
    }
    if (key->alg != HWKEY_ALG_ED25519 || key->pub == NULL) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "Ed25519 signature with a key of another type");
        return 0;
    }
    if (signing && !hwkey_key_require_private(key, "sign"))
        return 0;
    if (!hwkey_key_up_ref(key))
        return 0;
    hwkey_key_free(ctx->key);
    ctx->key = key;
    ctx->signing = signing;
    return 1;
}

static int eddsa_digest_sign_init(void *vctx, const char *mdname, void *provkey,
                                  const OSSL_PARAM params[])
{
    (void)params; /* Ed25519 has no settable parameters (OpenSSL 3.0: none either). */
    return eddsa_init(vctx, mdname, provkey, 1);
}

static int eddsa_digest_verify_init(void *vctx, const char *mdname, void *provkey,
                                    const OSSL_PARAM params[])
{
    (void)params;
    return eddsa_init(vctx, mdname, provkey, 0);
}

static int eddsa_digest_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                             const unsigned char *tbs, size_t tbslen)
{
    HWKEY_EDDSA_CTX *ctx = vctx;
    HWKEY_SIGN_PARAMS params = {.scheme = HWKEY_SIG_EDDSA};

    if (ctx->key == NULL || !ctx->signing) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED, "Ed25519 sign before sign_init");
        return 0;
    }
    if (sig == NULL) {
        *siglen = ED25519_SIG_LEN;
        return 1;
    }
    if (sigsize < ED25519_SIG_LEN) {
        hwkey_raise(HWKEY_R_BUFFER_TOO_SMALL, "an Ed25519 signature needs %d bytes, %zu given",
                    ED25519_SIG_LEN, sigsize);
        return 0;
    }
    *siglen = sigsize;
    if (!hwkey_key_sign(ctx->key, &params, tbs, tbslen, sig, siglen))
        return 0;
    if (*siglen != ED25519_SIG_LEN) {
        hwkey_raise(HWKEY_R_DEVICE_ERROR, "the device returned an Ed25519 signature of %zu bytes",
                    *siglen);
        return 0;
    }
    return 1;
}

static int eddsa_digest_verify(void *vctx, const unsigned char *sig, size_t siglen,
                               const unsigned char *tbs, size_t tbslen)
{
    HWKEY_EDDSA_CTX *ctx = vctx;
    EVP_MD_CTX *mdctx = NULL;
    int ok = 0;

    if (ctx->key == NULL || ctx->signing) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED, "Ed25519 verify before verify_init");
        return 0;
    }
    mdctx = EVP_MD_CTX_new();
    if (mdctx == NULL || EVP_DigestVerifyInit_ex(mdctx, NULL, NULL, ctx->provctx->swctx, NULL,
                                                 ctx->key->pub, NULL) != 1) {
        hwkey_raise(HWKEY_R_INTERNAL, "cannot set up a software Ed25519 verification");
        goto end;
    }
    /* A bad signature is an answer, not an error. */
    ok = EVP_DigestVerify(mdctx, sig, siglen, tbs, tbslen) == 1;
end:
    EVP_MD_CTX_free(mdctx);
    return ok;
}

/* AlgorithmIdentifier id-Ed25519 (1.3.101.112), parameters absent (RFC 8410). */
static const unsigned char ed25519_algorithm_id[] = {0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70};

static int eddsa_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID);

    (void)vctx;
    if (p != NULL &&
        !OSSL_PARAM_set_octet_string(p, ed25519_algorithm_id, sizeof(ed25519_algorithm_id)))
        return 0;
    return 1;
}

static const OSSL_PARAM *eddsa_gettable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM gettable[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0), OSSL_PARAM_END};

    (void)vctx;
    (void)provctx;
    return gettable;
}

const OSSL_DISPATCH hwkey_ed25519_signature_functions[] = {
    HWKEY_SIG_FN(NEWCTX, newctx, eddsa_newctx),
    HWKEY_SIG_FN(FREECTX, freectx, eddsa_freectx),
    HWKEY_SIG_FN(DUPCTX, dupctx, eddsa_dupctx),
    HWKEY_SIG_FN(DIGEST_SIGN_INIT, digest_sign_init, eddsa_digest_sign_init),
    HWKEY_SIG_FN(DIGEST_SIGN, digest_sign, eddsa_digest_sign),
    HWKEY_SIG_FN(DIGEST_VERIFY_INIT, digest_verify_init, eddsa_digest_verify_init),
    HWKEY_SIG_FN(DIGEST_VERIFY, digest_verify, eddsa_digest_verify),
    HWKEY_SIG_FN(GET_CTX_PARAMS, get_ctx_params, eddsa_get_ctx_params),
    HWKEY_SIG_FN(GETTABLE_CTX_PARAMS, gettable_ctx_params, eddsa_gettable_ctx_params),
    {0, NULL}};
