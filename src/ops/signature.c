/*
 * What ECDSA and RSA signatures share: the message is hashed on the host
 * with a digest from the provider's software context and only the digest
 * goes to the device (one device command per signature); verification runs
 * in software on the cached public key, never on the device.
 */
#include "ops/signature.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

#include "ops/rsa_padding.h"
#include "util/error.h"

#define DEFAULT_DIGEST "SHA256"

HWKEY_SIG_CTX *hwkey_sig_newctx(void *provctx, const HWKEY_SIG_METHOD *meth)
{
    HWKEY_SIG_CTX *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a %s signature context", meth->name);
        return NULL;
    }
    ctx->meth = meth;
    ctx->provctx = provctx;
    return ctx;
}

/* Forgets the key and any digest in progress; keeps the method. */
static void sig_reset(HWKEY_SIG_CTX *ctx)
{
    hwkey_key_free(ctx->key);
    ctx->key = NULL;
    EVP_MD_free(ctx->md);
    ctx->md = NULL;
    ctx->md_nid = NID_undef;
    ctx->md_size = 0;
    EVP_MD_CTX_free(ctx->mdctx);
    ctx->mdctx = NULL;
    EVP_MD_free(ctx->rsa.mgf1_md);
    memset(&ctx->rsa, 0, sizeof(ctx->rsa));
    /* OpenSSL's defaults: PKCS#1 v1.5; for PSS, a salt length the verifier detects. */
    ctx->rsa.pad_mode = RSA_PKCS1_PADDING;
    ctx->rsa.salt_len = RSA_PSS_SALTLEN_AUTO;
}

void hwkey_sig_freectx(void *vctx)
{
    HWKEY_SIG_CTX *ctx = vctx;

    if (ctx == NULL)
        return;
    sig_reset(ctx);
    OPENSSL_free(ctx);
}

void *hwkey_sig_dupctx(void *vctx)
{
    const HWKEY_SIG_CTX *src = vctx;
    HWKEY_SIG_CTX *dst = OPENSSL_memdup(src, sizeof(*src));

    if (dst == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "duplicating a signature context");
        return NULL;
    }
    /* Every reference the copy holds is taken again, so both free alike. */
    dst->key = NULL;
    dst->md = NULL;
    dst->mdctx = NULL;
    dst->rsa.mgf1_md = NULL;
    if ((src->key != NULL && !hwkey_key_up_ref(src->key)) ||
        (src->md != NULL && !EVP_MD_up_ref(src->md)) ||
        (src->rsa.mgf1_md != NULL && !EVP_MD_up_ref(src->rsa.mgf1_md))) {
        OPENSSL_free(dst);
        hwkey_raise(HWKEY_R_INTERNAL, "duplicating a signature context");
        return NULL;
    }
    dst->key = src->key;
    dst->md = src->md;
    dst->rsa.mgf1_md = src->rsa.mgf1_md;
    if (src->mdctx != NULL) {
        dst->mdctx = EVP_MD_CTX_new();
        if (dst->mdctx == NULL || !EVP_MD_CTX_copy_ex(dst->mdctx, src->mdctx)) {
            hwkey_sig_freectx(dst);
            hwkey_raise(HWKEY_R_INTERNAL, "duplicating the digest of a signature in progress");
            return NULL;
        }
    }
    return dst;
}

EVP_MD *hwkey_sig_fetch_md(HWKEY_SIG_CTX *ctx, const char *name, int allow_md5_sha1)
{
    EVP_MD *md = EVP_MD_fetch(ctx->provctx->swctx, name, NULL);
    int nid = md != NULL ? EVP_MD_get_type(md) : NID_undef;

    if (md == NULL || !(hwkey_digest_known(nid) || (allow_md5_sha1 && nid == NID_md5_sha1))) {
        EVP_MD_free(md);
        hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST,
                    "%s signatures with digest \"%s\" are not supported (use SHA-1, SHA-2 or "
                    "SHA-3)",
                    ctx->meth->name, name);
        return NULL;
    }
    return md;
}

static int sig_set_md(HWKEY_SIG_CTX *ctx, const char *name)
{
    EVP_MD *md;

    if (ctx->mdctx != NULL) {
        if (ctx->md != NULL && EVP_MD_is_a(ctx->md, name))
            return 1;
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "the digest cannot change while a message is being digested");
        return 0;
    }
    md = hwkey_sig_fetch_md(ctx, name, ctx->meth->alg == HWKEY_ALG_RSA); /* MD5-SHA1: TLS 1.0/1.1 */
    if (md == NULL)
        return 0;
    EVP_MD_free(ctx->md);
    ctx->md = md;
    ctx->md_nid = EVP_MD_get_type(md);
    ctx->md_size = (size_t)EVP_MD_get_size(md);
    return 1;
}

static int sig_init(HWKEY_SIG_CTX *ctx, void *provkey, const OSSL_PARAM params[], int signing)
{
    HWKEY_KEY *key = provkey;

    if (key == NULL) {
        /* Re-initialisation with new parameters only. */
        if (ctx->key == NULL) {
            hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED, "%s signature without a key",
                        ctx->meth->name);
            return 0;
        }
        key = ctx->key;
        if (!hwkey_key_up_ref(key))
            return 0;
    } else if (!hwkey_key_up_ref(key)) {
        return 0;
    }
    sig_reset(ctx);
    ctx->key = key;
    ctx->signing = signing;
    if (key->alg != ctx->meth->alg || key->pub == NULL) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "%s signature with a key of another type",
                    ctx->meth->name);
        return 0;
    }
    if (signing && !hwkey_key_require_private(key, "sign"))
        return 0;
    return hwkey_sig_set_ctx_params(ctx, params);
}

int hwkey_sig_sign_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
    return sig_init(vctx, provkey, params, 1);
}

int hwkey_sig_verify_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
    return sig_init(vctx, provkey, params, 0);
}

int hwkey_sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                   const unsigned char *tbs, size_t tbslen)
{
    HWKEY_SIG_CTX *ctx = vctx;
    size_t max = ctx->key != NULL ? hwkey_key_max_size(ctx->key) : 0;

    if (ctx->key == NULL || !ctx->signing) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED, "%s sign before sign_init", ctx->meth->name);
        return 0;
    }
    if (sig == NULL) {
        *siglen = max;
        return 1;
    }
    if (sigsize < max) {
        hwkey_raise(HWKEY_R_BUFFER_TOO_SMALL, "%s signature needs %zu bytes, %zu given",
                    ctx->meth->name, max, sigsize);
        return 0;
    }
    if (ctx->md != NULL && tbslen != ctx->md_size) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "a %s digest is %zu bytes, %zu given",
                    EVP_MD_get0_name(ctx->md), ctx->md_size, tbslen);
        return 0;
    }
    return ctx->meth->sign(ctx, sig, siglen, sigsize, tbs, tbslen);
}

int hwkey_sig_verify(void *vctx, const unsigned char *sig, size_t siglen, const unsigned char *tbs,
                     size_t tbslen)
{
    HWKEY_SIG_CTX *ctx = vctx;
    OSSL_PARAM params[8], *p = params;
    EVP_PKEY_CTX *vpctx = NULL;
    int ok = 0;

    if (ctx->key == NULL || ctx->signing) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED, "%s verify before verify_init",
                    ctx->meth->name);
        return 0;
    }
    if (ctx->md != NULL)
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST,
                                                (char *)EVP_MD_get0_name(ctx->md), 0);
    if (ctx->meth->verify_params != NULL)
        p += ctx->meth->verify_params(ctx, p);
    *p = OSSL_PARAM_construct_end();
    vpctx = EVP_PKEY_CTX_new_from_pkey(ctx->provctx->swctx, ctx->key->pub, NULL);
    if (vpctx == NULL || EVP_PKEY_verify_init(vpctx) <= 0 ||
        !EVP_PKEY_CTX_set_params(vpctx, params)) {
        hwkey_raise(HWKEY_R_INTERNAL, "cannot set up a software %s verification", ctx->meth->name);
        goto end;
    }
    /* A bad signature is an answer, not an error: OpenSSL's own providers leave its reason. */
    ok = EVP_PKEY_verify(vpctx, sig, siglen, tbs, tbslen) == 1;
end:
    EVP_PKEY_CTX_free(vpctx);
    return ok;
}

static int sig_digest_init(HWKEY_SIG_CTX *ctx, const char *mdname, void *provkey,
                           const OSSL_PARAM params[], int signing)
{
    if (!sig_init(ctx, provkey, NULL, signing) ||
        !sig_set_md(ctx, mdname != NULL && mdname[0] != '\0' ? mdname : DEFAULT_DIGEST) ||
        !hwkey_sig_set_ctx_params(ctx, params))
        return 0;
    ctx->mdctx = EVP_MD_CTX_new();
    if (ctx->mdctx == NULL || !EVP_DigestInit_ex2(ctx->mdctx, ctx->md, NULL)) {
        hwkey_raise(HWKEY_R_INTERNAL, "cannot start a %s digest", EVP_MD_get0_name(ctx->md));
        return 0;
    }
    return 1;
}

int hwkey_sig_digest_sign_init(void *vctx, const char *mdname, void *provkey,
                               const OSSL_PARAM params[])
{
    return sig_digest_init(vctx, mdname, provkey, params, 1);
}

int hwkey_sig_digest_verify_init(void *vctx, const char *mdname, void *provkey,
                                 const OSSL_PARAM params[])
{
    return sig_digest_init(vctx, mdname, provkey, params, 0);
}

int hwkey_sig_digest_update(void *vctx, const unsigned char *data, size_t datalen)
{
    HWKEY_SIG_CTX *ctx = vctx;

    if (ctx->mdctx == NULL) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED, "digest update before digest init");
        return 0;
    }
    return EVP_DigestUpdate(ctx->mdctx, data, datalen);
}

static int sig_digest_final(HWKEY_SIG_CTX *ctx, unsigned char *digest, unsigned int *len)
{
    if (ctx->mdctx == NULL) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED, "digest final before digest init");
        return 0;
    }
    if (!EVP_DigestFinal_ex(ctx->mdctx, digest, len)) {
        hwkey_raise(HWKEY_R_INTERNAL, "finishing the %s digest", EVP_MD_get0_name(ctx->md));
        return 0;
    }
    return 1;
}

int hwkey_sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    HWKEY_SIG_CTX *ctx = vctx;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    /* Size query: the digest in progress stays untouched. */
    if (sig == NULL)
        return hwkey_sig_sign(ctx, NULL, siglen, 0, NULL, 0);
    return sig_digest_final(ctx, digest, &len) &&
           hwkey_sig_sign(ctx, sig, siglen, sigsize, digest, len);
}

int hwkey_sig_digest_verify_final(void *vctx, const unsigned char *sig, size_t siglen)
{
    HWKEY_SIG_CTX *ctx = vctx;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    return sig_digest_final(ctx, digest, &len) && hwkey_sig_verify(ctx, sig, siglen, digest, len);
}

int hwkey_sig_algor_der(X509_ALGOR *alg, unsigned char **der, size_t *der_len)
{
    int n;

    *der = NULL;
    n = alg != NULL ? i2d_X509_ALGOR(alg, der) : -1;
    X509_ALGOR_free(alg);
    if (n <= 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "cannot encode the signature's AlgorithmIdentifier");
        return 0;
    }
    *der_len = (size_t)n;
    return 1;
}

int hwkey_sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    HWKEY_SIG_CTX *ctx = vctx;
    OSSL_PARAM *p;

    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST);
    if (p != NULL && ctx->md != NULL && !OSSL_PARAM_set_utf8_string(p, EVP_MD_get0_name(ctx->md)))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST_SIZE);
    if (p != NULL && ctx->md != NULL && !OSSL_PARAM_set_size_t(p, ctx->md_size))
        return 0;
    /* X.509 (openssl req, x509 -signkey/-CA) and TLS ask for it. */
    p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID);
    if (p != NULL && ctx->md != NULL && ctx->key != NULL) {
        unsigned char *der = NULL;
        size_t der_len = 0;
        int ok = ctx->meth->algorithm_id(ctx, &der, &der_len) &&
                 OSSL_PARAM_set_octet_string(p, der, der_len);

        OPENSSL_free(der);
        if (!ok)
            return 0;
    }
    return ctx->meth->get_params == NULL || ctx->meth->get_params(ctx, params);
}

int hwkey_sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    HWKEY_SIG_CTX *ctx = vctx;
    const OSSL_PARAM *p;

    if (params == NULL)
        return 1;
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST);
    if (p != NULL) {
        const char *name = NULL;

        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the digest parameter is not a string");
            return 0;
        }
        if (!sig_set_md(ctx, name))
            return 0;
    }
    return ctx->meth->set_params == NULL || ctx->meth->set_params(ctx, params);
}
