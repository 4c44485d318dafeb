/*
 * RSA signatures, PKCS#1 v1.5 and PSS.  When the device offers the raw
 * private operation (HWKEY_KEYF_RSA_RAW) the padding is done here, so any
 * PSS salt length the application asks for works (TLS 1.3 peers insist);
 * otherwise the device pads and refuses what it cannot do.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

#include "ops/ops.h"
#include "ops/dispatch.h"
#include "ops/rsa_padding.h"
#include "ops/signature.h"
#include "util/error.h"

static OSSL_FUNC_signature_newctx_fn rsa_newctx;
static OSSL_FUNC_signature_settable_ctx_params_fn rsa_settable_ctx_params;
static OSSL_FUNC_signature_gettable_ctx_params_fn rsa_gettable_ctx_params;

static const OSSL_ITEM salt_names[] = {
    {(unsigned int)RSA_PSS_SALTLEN_DIGEST, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST},
    {(unsigned int)RSA_PSS_SALTLEN_MAX, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX},
    {(unsigned int)RSA_PSS_SALTLEN_AUTO, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO},
};

#define N_ITEMS(a) (sizeof(a) / sizeof((a)[0]))

/* The salt length this signature uses, in bytes; raises if none fits. */
static int rsa_pss_salt(HWKEY_SIG_CTX *ctx, int *salt)
{
    int max = hwkey_rsa_pss_max_salt(ctx->key->bits, ctx->md_size);
    int s = ctx->rsa.salt_len;

    switch (s) {
    case RSA_PSS_SALTLEN_DIGEST:
        s = (int)ctx->md_size;
        break;
    case RSA_PSS_SALTLEN_MAX:
        s = max;
        break;
    case RSA_PSS_SALTLEN_AUTO:
        /* The verifier detects it: max when we pad, the usual device choice otherwise. */
        s = hwkey_key_can(ctx->key, HWKEY_KEYF_RSA_RAW) || max < (int)ctx->md_size
                ? max
                : (int)ctx->md_size;
        break;
    }
    if (s < 0 || s > max) {
        hwkey_raise(HWKEY_R_INVALID_SALT_LENGTH,
                    "a PSS salt of %d bytes does not fit a %d-bit RSA key with %s (at most %d)", s,
                    ctx->key->bits, EVP_MD_get0_name(ctx->md), max);
        return 0;
    }
    *salt = s;
    return 1;
}

static const EVP_MD *mgf1_of(const HWKEY_SIG_CTX *ctx)
{
    return ctx->rsa.mgf1_md != NULL ? ctx->rsa.mgf1_md : ctx->md;
}

/* The raw private operation on an encoded block; the result is left-padded to k. */
static int rsa_raw_sign(HWKEY_SIG_CTX *ctx, const unsigned char *em, size_t k, unsigned char *sig,
                        size_t *siglen, size_t sigsize)
{
    size_t n = sigsize;

    if (!hwkey_key_rsa_private(ctx->key, em, k, sig, &n))
        return 0;
    if (n > k) {
        hwkey_raise(HWKEY_R_DEVICE_ERROR, "the device returned %zu bytes for a %zu-byte modulus", n,
                    k);
        return 0;
    }
    memmove(sig + (k - n), sig, n);
    memset(sig, 0, k - n);
    *siglen = k;
    return 1;
}

static int rsa_sign(HWKEY_SIG_CTX *ctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                    const unsigned char *tbs, size_t tbslen)
{
    int raw = hwkey_key_can(ctx->key, HWKEY_KEYF_RSA_RAW);
    size_t k = hwkey_key_max_size(ctx->key);
    HWKEY_SIGN_PARAMS params = {.md_nid = ctx->md != NULL ? ctx->md_nid : NID_undef};
    unsigned char *em = NULL;
    int ok = 0, salt = 0;

    if (ctx->rsa.pad_mode == RSA_PKCS1_PADDING) {
        params.scheme = HWKEY_SIG_RSA_PKCS1;
    } else if (ctx->rsa.pad_mode == RSA_PKCS1_PSS_PADDING) {
        if (ctx->md == NULL) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "RSA-PSS signing needs the digest to be set");
            return 0;
        }
        if (!rsa_pss_salt(ctx, &salt))
            return 0;
        params.scheme = HWKEY_SIG_RSA_PSS;
        params.mgf1_md_nid = EVP_MD_get_type(mgf1_of(ctx));
        params.salt_len = salt;
    } else {
        hwkey_raise(HWKEY_R_UNSUPPORTED_PADDING, "RSA signature padding mode %d is not supported",
                    ctx->rsa.pad_mode);
        return 0;
    }
    if (!raw) {
        *siglen = sigsize;
        return hwkey_key_sign(ctx->key, &params, tbs, tbslen, sig, siglen);
    }

    em = OPENSSL_malloc(k);
    if (em == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating an RSA block");
        return 0;
    }
    if (params.scheme == HWKEY_SIG_RSA_PKCS1) {
        if (!hwkey_rsa_encode_pkcs1(em, k, params.md_nid, tbs, tbslen)) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                        "a %zu-byte digest does not fit PKCS#1 v1.5 with a %d-bit key", tbslen,
                        ctx->key->bits);
            goto end;
        }
    } else if (!hwkey_rsa_encode_pss(ctx->provctx->swctx, em, k, ctx->key->bits, ctx->md,
                                     mgf1_of(ctx), tbs, (size_t)salt)) {
        hwkey_raise(HWKEY_R_INTERNAL, "PSS encoding failed");
        goto end;
    }
    ok = rsa_raw_sign(ctx, em, k, sig, siglen, sigsize);
end:
    OPENSSL_free(em);
    return ok;
}

static int rsa_algorithm_id(HWKEY_SIG_CTX *ctx, unsigned char **der, size_t *der_len)
{
    X509_ALGOR *alg = X509_ALGOR_new(), *mgf1_alg = NULL;
    RSA_PSS_PARAMS *pss = NULL;
    ASN1_STRING *packed = NULL;
    int sig_nid = NID_undef, salt = 0;

    if (alg == NULL)
        goto err;
    if (ctx->rsa.pad_mode == RSA_PKCS1_PADDING) {
        if (!OBJ_find_sigid_by_algs(&sig_nid, ctx->md_nid, NID_rsaEncryption)) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST, "no X.509 algorithm for RSA with %s",
                        EVP_MD_get0_name(ctx->md));
            goto fail;
        }
        if (!X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), V_ASN1_NULL, NULL))
            goto err;
        return hwkey_sig_algor_der(alg, der, der_len);
    }
    if (ctx->rsa.pad_mode != RSA_PKCS1_PSS_PADDING) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_PADDING, "no X.509 algorithm for RSA padding mode %d",
                    ctx->rsa.pad_mode);
        goto fail;
    }
    /* RSASSA-PSS-params (RFC 4055 3.1): SHA-1, MGF1-SHA-1, salt 20 are the defaults left out. */
    if (!rsa_pss_salt(ctx, &salt))
        goto fail;
    if ((pss = RSA_PSS_PARAMS_new()) == NULL)
        goto err;
    if (ctx->md_nid != NID_sha1) {
        if ((pss->hashAlgorithm = X509_ALGOR_new()) == NULL)
            goto err;
        X509_ALGOR_set_md(pss->hashAlgorithm, ctx->md);
    }
    if (EVP_MD_get_type(mgf1_of(ctx)) != NID_sha1) {
        if ((mgf1_alg = X509_ALGOR_new()) == NULL)
            goto err;
        X509_ALGOR_set_md(mgf1_alg, mgf1_of(ctx));
        packed = ASN1_item_pack(mgf1_alg, ASN1_ITEM_rptr(X509_ALGOR), NULL);
        if (packed == NULL || (pss->maskGenAlgorithm = X509_ALGOR_new()) == NULL ||
            !X509_ALGOR_set0(pss->maskGenAlgorithm, OBJ_nid2obj(NID_mgf1), V_ASN1_SEQUENCE, packed))
            goto err;
        packed = NULL;
    }
    if (salt != 20 && ((pss->saltLength = ASN1_INTEGER_new()) == NULL ||
                       !ASN1_INTEGER_set(pss->saltLength, salt)))
        goto err;
    packed = ASN1_item_pack(pss, ASN1_ITEM_rptr(RSA_PSS_PARAMS), NULL);
    if (packed == NULL ||
        !X509_ALGOR_set0(alg, OBJ_nid2obj(NID_rsassaPss), V_ASN1_SEQUENCE, packed))
        goto err;
    X509_ALGOR_free(mgf1_alg);
    RSA_PSS_PARAMS_free(pss);
    return hwkey_sig_algor_der(alg, der, der_len);
err:
    hwkey_raise(HWKEY_R_INTERNAL, "cannot build the RSA signature's AlgorithmIdentifier");
fail:
    ASN1_STRING_free(packed);
    X509_ALGOR_free(mgf1_alg);
    RSA_PSS_PARAMS_free(pss);
    X509_ALGOR_free(alg);
    return 0;
}

/*
 * "digest", "max", "auto", a decimal byte count, or an integer.  The numbers
 * -1, -2 and -3 are RSA_PSS_SALTLEN_DIGEST, _AUTO and _MAX: the default
 * provider reads the string with atoi(), so `-sigopt rsa_pss_saltlen:-1`
 * works there and must here too.  rsa_set_params() rejects anything below -3.
 */
static int get_salt_len(const OSSL_PARAM *p, int *out)
{
    char buf[32], *end = NULL, *s = buf;
    long v;

    if (p->data_type != OSSL_PARAM_UTF8_STRING)
        return OSSL_PARAM_get_int(p, out);
    if (!OSSL_PARAM_get_utf8_string(p, &s, sizeof(buf)))
        return 0;
    for (size_t i = 0; i < N_ITEMS(salt_names); i++)
        if (OPENSSL_strcasecmp(salt_names[i].ptr, buf) == 0) {
            *out = (int)salt_names[i].id;
            return 1;
        }
    v = strtol(buf, &end, 10);
    if (end == buf || *end != '\0' || v < RSA_PSS_SALTLEN_MAX || v > 65535)
        return 0;
    *out = (int)v;
    return 1;
}

static int rsa_set_params(HWKEY_SIG_CTX *ctx, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p;

    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE);
    if (p != NULL) {
        int mode = 0;

        if (!hwkey_rsa_pad_mode_get(p, &mode) ||
            (mode != RSA_PKCS1_PADDING && mode != RSA_PKCS1_PSS_PADDING)) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_PADDING,
                        "RSA signature padding %s is not supported (pkcs1 or pss only)",
                        hwkey_rsa_pad_mode_name(mode));
            return 0;
        }
        ctx->rsa.pad_mode = mode;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN);
    if (p != NULL) {
        int salt = 0;

        if (!get_salt_len(p, &salt) || salt < RSA_PSS_SALTLEN_MAX) {
            hwkey_raise(HWKEY_R_INVALID_SALT_LENGTH,
                        "PSS salt length must be a byte count, \"digest\" (-1), \"auto\" (-2) "
                        "or \"max\" (-3)");
            return 0;
        }
        ctx->rsa.salt_len = salt;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST);
    if (p != NULL) {
        const char *name = NULL;
        EVP_MD *md;

        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the MGF1 digest parameter is not a string");
            return 0;
        }
        if ((md = hwkey_sig_fetch_md(ctx, name, 0)) == NULL)
            return 0;
        EVP_MD_free(ctx->rsa.mgf1_md);
        ctx->rsa.mgf1_md = md;
    }
    return 1;
}

static int rsa_get_params(HWKEY_SIG_CTX *ctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;

    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE);
    if (p != NULL && !hwkey_rsa_pad_mode_set(p, ctx->rsa.pad_mode))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN);
    if (p != NULL) {
        const char *name = NULL;
        char num[16];

        for (size_t i = 0; i < N_ITEMS(salt_names); i++)
            if ((int)salt_names[i].id == ctx->rsa.salt_len)
                name = salt_names[i].ptr;

        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (name == NULL) {
                BIO_snprintf(num, sizeof(num), "%d", ctx->rsa.salt_len);
                name = num;
            }
            if (!OSSL_PARAM_set_utf8_string(p, name))
                return 0;
        } else if (!OSSL_PARAM_set_int(p, ctx->rsa.salt_len)) {
            return 0;
        }
    }
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST);
    if (p != NULL && mgf1_of(ctx) != NULL &&
        !OSSL_PARAM_set_utf8_string(p, EVP_MD_get0_name(mgf1_of(ctx))))
        return 0;
    return 1;
}

static size_t rsa_verify_params(HWKEY_SIG_CTX *ctx, OSSL_PARAM *out)
{
    size_t n = 0;

    out[n++] = OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PAD_MODE, &ctx->rsa.pad_mode);
    if (ctx->rsa.pad_mode == RSA_PKCS1_PSS_PADDING) {
        out[n++] = OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, &ctx->rsa.salt_len);
        if (ctx->rsa.mgf1_md != NULL)
            out[n++] = OSSL_PARAM_construct_utf8_string(
                OSSL_SIGNATURE_PARAM_MGF1_DIGEST, (char *)EVP_MD_get0_name(ctx->rsa.mgf1_md), 0);
    }
    return n;
}

static const HWKEY_SIG_METHOD rsa_method = {
    .alg = HWKEY_ALG_RSA,
    .name = "RSA",
    .sign = rsa_sign,
    .set_params = rsa_set_params,
    .get_params = rsa_get_params,
    .verify_params = rsa_verify_params,
    .algorithm_id = rsa_algorithm_id,
};

static void *rsa_newctx(void *provctx, const char *propq)
{
    HWKEY_SIG_CTX *ctx;

    (void)propq;
    ctx = hwkey_sig_newctx(provctx, &rsa_method);
    if (ctx != NULL) {
        ctx->rsa.pad_mode = RSA_PKCS1_PADDING;
        ctx->rsa.salt_len = RSA_PSS_SALTLEN_AUTO;
    }
    return ctx;
}

static const OSSL_PARAM settable[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_PROPERTIES, NULL, 0),
    OSSL_PARAM_END};

static const OSSL_PARAM gettable[] = {
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_size_t(OSSL_SIGNATURE_PARAM_DIGEST_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_END};

static const OSSL_PARAM *rsa_settable_ctx_params(void *ctx, void *provctx)
{
    (void)ctx;
    (void)provctx;
    return settable;
}

static const OSSL_PARAM *rsa_gettable_ctx_params(void *ctx, void *provctx)
{
    (void)ctx;
    (void)provctx;
    return gettable;
}

const OSSL_DISPATCH hwkey_rsa_signature_functions[] = {
    HWKEY_SIG_FN(NEWCTX, newctx, rsa_newctx),
    HWKEY_SIG_COMMON_FNS,
    HWKEY_SIG_FN(SETTABLE_CTX_PARAMS, settable_ctx_params, rsa_settable_ctx_params),
    HWKEY_SIG_FN(GETTABLE_CTX_PARAMS, gettable_ctx_params, rsa_gettable_ctx_params),
    {0, NULL}};
