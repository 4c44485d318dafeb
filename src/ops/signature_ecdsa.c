/* ECDSA: the device signs the digest and returns a DER ECDSA-Sig-Value. */
#include <openssl/core_names.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/params.h>

#include "ops/ops.h"
#include "ops/dispatch.h"
#include "ops/signature.h"
#include "util/error.h"

static OSSL_FUNC_signature_newctx_fn ecdsa_newctx;
static OSSL_FUNC_signature_settable_ctx_params_fn ecdsa_settable_ctx_params;
static OSSL_FUNC_signature_gettable_ctx_params_fn ecdsa_gettable_ctx_params;

/* Without a digest set, the caller's tbs length says which digest made it. */
static int digest_nid_of_length(size_t len)
{
    switch (len) {
    case 20:
        return NID_sha1;
    case 28:
        return NID_sha224;
    case 32:
        return NID_sha256;
    case 48:
        return NID_sha384;
    case 64:
        return NID_sha512;
    }
    return NID_undef;
}

static int ecdsa_sign(HWKEY_SIG_CTX *ctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                      const unsigned char *tbs, size_t tbslen)
{
    HWKEY_SIGN_PARAMS params = {
        .scheme = HWKEY_SIG_ECDSA,
        .md_nid = ctx->md != NULL ? ctx->md_nid : digest_nid_of_length(tbslen),
    };

    *siglen = sigsize;
    return hwkey_key_sign(ctx->key, &params, tbs, tbslen, sig, siglen);
}

static int ecdsa_algorithm_id(HWKEY_SIG_CTX *ctx, unsigned char **der, size_t *der_len)
{
    X509_ALGOR *alg = X509_ALGOR_new();
    int sig_nid = NID_undef;

    if (!OBJ_find_sigid_by_algs(&sig_nid, ctx->md_nid, NID_X9_62_id_ecPublicKey)) {
        X509_ALGOR_free(alg);
        hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST, "no X.509 algorithm for ECDSA with %s",
                    EVP_MD_get0_name(ctx->md));
        return 0;
    }
    /* ecdsa-with-SHA*: parameters absent (RFC 5758 3.2). */
    if (alg == NULL || !X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), V_ASN1_UNDEF, NULL)) {
        X509_ALGOR_free(alg);
        alg = NULL;
    }
    return hwkey_sig_algor_der(alg, der, der_len);
}

static const HWKEY_SIG_METHOD ecdsa_method = {
    .alg = HWKEY_ALG_EC,
    .name = "ECDSA",
    .sign = ecdsa_sign,
    .algorithm_id = ecdsa_algorithm_id,
};

static void *ecdsa_newctx(void *provctx, const char *propq)
{
    (void)propq;
    return hwkey_sig_newctx(provctx, &ecdsa_method);
}

static const OSSL_PARAM settable[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0), OSSL_PARAM_END};

static const OSSL_PARAM gettable[] = {
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_size_t(OSSL_SIGNATURE_PARAM_DIGEST_SIZE, NULL), OSSL_PARAM_END};

static const OSSL_PARAM *ecdsa_settable_ctx_params(void *ctx, void *provctx)
{
    (void)ctx;
    (void)provctx;
    return settable;
}

static const OSSL_PARAM *ecdsa_gettable_ctx_params(void *ctx, void *provctx)
{
    (void)ctx;
    (void)provctx;
    return gettable;
}

const OSSL_DISPATCH hwkey_ecdsa_signature_functions[] = {
    HWKEY_SIG_FN(NEWCTX, newctx, ecdsa_newctx),
    HWKEY_SIG_COMMON_FNS,
    HWKEY_SIG_FN(SETTABLE_CTX_PARAMS, settable_ctx_params, ecdsa_settable_ctx_params),
    HWKEY_SIG_FN(GETTABLE_CTX_PARAMS, gettable_ctx_params, ecdsa_gettable_ctx_params),
    {0, NULL}};
