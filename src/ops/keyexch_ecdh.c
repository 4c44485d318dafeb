/*
 * ECDH with a device key: the peer's public point goes to the device, the
 * shared X coordinate comes back.  The peer may come from any provider:
 * OpenSSL imports it into our keymgmt as a public-only key first.  By
 * default the raw shared secret is returned (what TLS wants); with the
 * X9.63 KDF asked for (CMS/S-MIME key agreement, RFC 5753) the KDF runs in
 * software over the device's secret, which is held in protected memory and
 * wiped, and only the derived key is returned: the parameters are those of
 * OpenSSL's default provider (KDF type, digest, output length, UKM).
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/objects.h>
#include <openssl/params.h>

#include "key/key.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "ops/provctx.h"
#include "util/error.h"
#include "util/secmem.h"

/* 04 || X || Y of P-521, the largest curve. */
#define MAX_POINT (1 + 2 * 66)

typedef enum { KDF_NONE, KDF_X963 } ECDH_KDF;

typedef struct {
    HWKEY_PROVCTX *provctx;
    HWKEY_KEY *key;
    unsigned char peer[MAX_POINT];
    size_t peer_len;
    int cofactor_mode;
    ECDH_KDF kdf;
    EVP_MD *kdf_md; /* fetched from provctx->swctx */
    size_t kdf_outlen;
    unsigned char *kdf_ukm; /* OPENSSL_malloc'd copy; public (sent in the clear by CMS) */
    size_t kdf_ukm_len;
} ECDH_CTX;

static OSSL_FUNC_keyexch_newctx_fn ecdh_newctx;
static OSSL_FUNC_keyexch_init_fn ecdh_init;
static OSSL_FUNC_keyexch_set_peer_fn ecdh_set_peer;
static OSSL_FUNC_keyexch_derive_fn ecdh_derive;
static OSSL_FUNC_keyexch_freectx_fn ecdh_freectx;
static OSSL_FUNC_keyexch_dupctx_fn ecdh_dupctx;
static OSSL_FUNC_keyexch_set_ctx_params_fn ecdh_set_ctx_params;
static OSSL_FUNC_keyexch_settable_ctx_params_fn ecdh_settable_ctx_params;
static OSSL_FUNC_keyexch_get_ctx_params_fn ecdh_get_ctx_params;
static OSSL_FUNC_keyexch_gettable_ctx_params_fn ecdh_gettable_ctx_params;

static size_t field_bytes(const HWKEY_KEY *key)
{
    return ((size_t)key->bits + 7) / 8;
}

static void *ecdh_newctx(void *provctx)
{
    ECDH_CTX *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating an ECDH context");
        return NULL;
    }
    ctx->provctx = provctx;
    ctx->cofactor_mode = -1;
    return ctx;
}

static void ecdh_freectx(void *vctx)
{
    ECDH_CTX *ctx = vctx;

    if (ctx == NULL)
        return;
    hwkey_key_free(ctx->key);
    EVP_MD_free(ctx->kdf_md);
    OPENSSL_free(ctx->kdf_ukm);
    OPENSSL_free(ctx);
}

static void *ecdh_dupctx(void *vctx)
{
    const ECDH_CTX *src = vctx;
    ECDH_CTX *dst = OPENSSL_memdup(src, sizeof(*src));

    if (dst == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "duplicating an ECDH context");
        return NULL;
    }
    /* Every reference the copy holds is taken again, so both free alike. */
    dst->key = NULL;
    dst->kdf_md = NULL;
    dst->kdf_ukm = NULL;
    if ((src->key != NULL && !hwkey_key_up_ref(src->key)) ||
        (src->kdf_md != NULL && !EVP_MD_up_ref(src->kdf_md))) {
        OPENSSL_free(dst);
        hwkey_raise(HWKEY_R_INTERNAL, "duplicating an ECDH context");
        return NULL;
    }
    dst->key = src->key;
    dst->kdf_md = src->kdf_md;
    if (src->kdf_ukm != NULL &&
        (dst->kdf_ukm = OPENSSL_memdup(src->kdf_ukm, src->kdf_ukm_len)) == NULL) {
        ecdh_freectx(dst);
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "duplicating an ECDH context");
        return NULL;
    }
    return dst;
}

static int ecdh_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
    ECDH_CTX *ctx = vctx;
    HWKEY_KEY *key = provkey;

    if (key == NULL || key->alg != HWKEY_ALG_EC || key->pub == NULL) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "ECDH without an EC key");
        return 0;
    }
    if (!hwkey_key_require_private(key, "derive"))
        return 0;
    if (!hwkey_key_up_ref(key))
        return 0;
    hwkey_key_free(ctx->key);
    ctx->key = key;
    ctx->peer_len = 0;
    /* As the default provider: each init starts with the raw secret and the key's cofactor. */
    ctx->kdf = KDF_NONE;
    ctx->cofactor_mode = -1;
    return ecdh_set_ctx_params(ctx, params);
}

/* Writes bn big-endian into out[0..len), left-padded. */
static int coordinate(const EVP_PKEY *pub, const char *name, unsigned char *out, size_t len)
{
    BIGNUM *bn = NULL;
    int ok = EVP_PKEY_get_bn_param(pub, name, &bn) && BN_bn2binpad(bn, out, (int)len) == (int)len;

    BN_free(bn);
    return ok;
}

static int ecdh_set_peer(void *vctx, void *provkey)
{
    ECDH_CTX *ctx = vctx;
    HWKEY_KEY *peer = provkey;
    size_t n;

    if (ctx->key == NULL) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED, "ECDH peer set before init");
        return 0;
    }
    if (peer == NULL || peer->alg != HWKEY_ALG_EC || peer->pub == NULL) {
        hwkey_raise(HWKEY_R_INVALID_PEER_KEY, "the ECDH peer is not an EC public key");
        return 0;
    }
    if (peer->curve_nid != ctx->key->curve_nid) {
        hwkey_raise(HWKEY_R_INVALID_PEER_KEY, "the ECDH peer is on %s, our key on %s",
                    OBJ_nid2sn(peer->curve_nid), OBJ_nid2sn(ctx->key->curve_nid));
        return 0;
    }
    /* Uncompressed whatever form the peer was given in: what backends take. */
    n = field_bytes(ctx->key);
    if (1 + 2 * n > sizeof(ctx->peer) ||
        !coordinate(peer->pub, OSSL_PKEY_PARAM_EC_PUB_X, ctx->peer + 1, n) ||
        !coordinate(peer->pub, OSSL_PKEY_PARAM_EC_PUB_Y, ctx->peer + 1 + n, n)) {
        hwkey_raise(HWKEY_R_INVALID_PEER_KEY, "the ECDH peer has no public point");
        return 0;
    }
    ctx->peer[0] = 0x04;
    ctx->peer_len = 1 + 2 * n;
    return 1;
}

/* ANSI X9.63 KDF (X963KDF of the default provider) over the device's shared secret z. */
static int ecdh_x963(ECDH_CTX *ctx, const unsigned char *z, size_t zlen, unsigned char *out)
{
    EVP_KDF *kdf = EVP_KDF_fetch(ctx->provctx->swctx, OSSL_KDF_NAME_X963KDF, NULL);
    EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[4], *p = params;
    int ok;

    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                            (char *)EVP_MD_get0_name(ctx->kdf_md), 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)z, zlen);
    if (ctx->kdf_ukm != NULL)
        *p++ =
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, ctx->kdf_ukm, ctx->kdf_ukm_len);
    *p = OSSL_PARAM_construct_end();
    ok = kctx != NULL && EVP_KDF_derive(kctx, out, ctx->kdf_outlen, params) == 1;
    if (!ok)
        hwkey_raise(HWKEY_R_INTERNAL, "the X9.63 KDF with %s over the ECDH secret failed",
                    EVP_MD_get0_name(ctx->kdf_md));
    EVP_KDF_CTX_free(kctx); /* clears its copy of the key */
    EVP_KDF_free(kdf);
    return ok;
}

/* The device's shared secret in protected memory, fed to the KDF, wiped. */
static int ecdh_derive_kdf(ECDH_CTX *ctx, unsigned char *secret, size_t *secretlen, size_t outlen)
{
    size_t n = field_bytes(ctx->key), zlen = n;
    unsigned char *z;
    int ok;

    if (ctx->kdf_md == NULL || ctx->kdf_outlen == 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "ECDH with the X9.63 KDF needs %s",
                    ctx->kdf_md == NULL ? "a KDF digest" : "a KDF output length");
        return 0;
    }
    if (outlen < ctx->kdf_outlen) {
        hwkey_raise(HWKEY_R_BUFFER_TOO_SMALL, "the ECDH KDF output is %zu bytes, %zu given",
                    ctx->kdf_outlen, outlen);
        return 0;
    }
    if ((z = hwkey_secmem_alloc(n)) == NULL)
        return 0;
    ok = hwkey_key_ecdh(ctx->key, ctx->peer, ctx->peer_len, z, &zlen) &&
         ecdh_x963(ctx, z, zlen, secret);
    hwkey_secmem_free(z);
    if (ok)
        *secretlen = ctx->kdf_outlen;
    return ok;
}

static int ecdh_derive(void *vctx, unsigned char *secret, size_t *secretlen, size_t outlen)
{
    ECDH_CTX *ctx = vctx;
    size_t n;

    if (ctx->key == NULL || ctx->peer_len == 0) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED, "ECDH derive without %s",
                    ctx->key == NULL ? "a key" : "a peer");
        return 0;
    }
    n = field_bytes(ctx->key);
    if (ctx->kdf == KDF_X963) {
        if (secret != NULL)
            return ecdh_derive_kdf(ctx, secret, secretlen, outlen);
        *secretlen = ctx->kdf_outlen;
        return 1;
    }
    if (secret == NULL) {
        *secretlen = n;
        return 1;
    }
    if (outlen < n) {
        hwkey_raise(HWKEY_R_BUFFER_TOO_SMALL, "the ECDH secret needs %zu bytes, %zu given", n,
                    outlen);
        return 0;
    }
    *secretlen = outlen;
    return hwkey_key_ecdh(ctx->key, ctx->peer, ctx->peer_len, secret, secretlen);
}

/* KDF type, digest, output length and UKM, as the default provider takes them. */
static int ecdh_set_kdf_params(ECDH_CTX *ctx, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p;

    p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_TYPE);
    if (p != NULL) {
        const char *name = NULL;

        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the ECDH KDF type is not a string");
            return 0;
        }
        if (name[0] == '\0') {
            ctx->kdf = KDF_NONE;
        } else if (OPENSSL_strcasecmp(name, OSSL_KDF_NAME_X963KDF) == 0) {
            ctx->kdf = KDF_X963;
        } else {
            hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                        "ECDH KDF \"%s\" is not supported (X963KDF, or none for the raw secret)",
                        name);
            return 0;
        }
    }
    p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_DIGEST);
    if (p != NULL) {
        const char *name = NULL, *props = NULL;
        const OSSL_PARAM *pp =
            OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_DIGEST_PROPS);
        EVP_MD *md;

        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) ||
            (pp != NULL && !OSSL_PARAM_get_utf8_string_ptr(pp, &props))) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the ECDH KDF digest is not a string");
            return 0;
        }
        /* Digests come from the software context: hwkey offers none (ARCHITECTURE.md 7). */
        if ((md = EVP_MD_fetch(ctx->provctx->swctx, name, props)) == NULL ||
            (EVP_MD_get_flags(md) & EVP_MD_FLAG_XOF) != 0) {
            EVP_MD_free(md);
            hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST, "ECDH KDF digest \"%s\" is not available",
                        name);
            return 0;
        }
        EVP_MD_free(ctx->kdf_md);
        ctx->kdf_md = md;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_OUTLEN);
    if (p != NULL && !OSSL_PARAM_get_size_t(p, &ctx->kdf_outlen)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the ECDH KDF output length is not a size");
        return 0;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_UKM);
    if (p != NULL) {
        void *ukm = NULL;
        size_t len = 0;

        if (!OSSL_PARAM_get_octet_string(p, &ukm, 0, &len)) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the ECDH KDF UKM is not an octet string");
            return 0;
        }
        OPENSSL_free(ctx->kdf_ukm);
        ctx->kdf_ukm = ukm;
        ctx->kdf_ukm_len = len;
    }
    return 1;
}

static int ecdh_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    ECDH_CTX *ctx = vctx;
    const OSSL_PARAM *p;

    if (params == NULL)
        return 1;
    p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE);
    if (p != NULL) {
        int mode = 0;

        /*
         * Every curve a device offers here (P-256, P-384, P-521) has
         * cofactor 1, where cofactor ECDH is plain ECDH: all modes agree.
         */
        if (!OSSL_PARAM_get_int(p, &mode) || mode < -1 || mode > 1) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "ECDH cofactor mode must be -1, 0 or 1");
            return 0;
        }
        ctx->cofactor_mode = mode;
    }
    return ecdh_set_kdf_params(ctx, params);
}

static int ecdh_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    ECDH_CTX *ctx = vctx;
    OSSL_PARAM *p;

    p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE);
    if (p != NULL && !OSSL_PARAM_set_int(p, ctx->cofactor_mode < 0 ? 0 : ctx->cofactor_mode))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_KDF_TYPE);
    if (p != NULL &&
        !OSSL_PARAM_set_utf8_string(p, ctx->kdf == KDF_X963 ? OSSL_KDF_NAME_X963KDF : ""))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_KDF_DIGEST);
    if (p != NULL &&
        !OSSL_PARAM_set_utf8_string(p, ctx->kdf_md != NULL ? EVP_MD_get0_name(ctx->kdf_md) : ""))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_KDF_OUTLEN);
    if (p != NULL && !OSSL_PARAM_set_size_t(p, ctx->kdf_outlen))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_KDF_UKM);
    if (p != NULL && !OSSL_PARAM_set_octet_ptr(p, ctx->kdf_ukm, ctx->kdf_ukm_len))
        return 0;
    return 1;
}

static const OSSL_PARAM settable[] = {
    OSSL_PARAM_int(OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE, NULL),
    OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_DIGEST_PROPS, NULL, 0),
    OSSL_PARAM_size_t(OSSL_EXCHANGE_PARAM_KDF_OUTLEN, NULL),
    OSSL_PARAM_octet_string(OSSL_EXCHANGE_PARAM_KDF_UKM, NULL, 0),
    OSSL_PARAM_END};

static const OSSL_PARAM gettable[] = {
    OSSL_PARAM_int(OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE, NULL),
    OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_DIGEST, NULL, 0),
    OSSL_PARAM_size_t(OSSL_EXCHANGE_PARAM_KDF_OUTLEN, NULL),
    OSSL_PARAM_octet_ptr(OSSL_EXCHANGE_PARAM_KDF_UKM, NULL, 0),
    OSSL_PARAM_END};

static const OSSL_PARAM *ecdh_settable_ctx_params(void *ctx, void *provctx)
{
    (void)ctx;
    (void)provctx;
    return settable;
}

static const OSSL_PARAM *ecdh_gettable_ctx_params(void *ctx, void *provctx)
{
    (void)ctx;
    (void)provctx;
    return gettable;
}

const OSSL_DISPATCH hwkey_ecdh_keyexch_functions[] = {
    HWKEY_KEYEXCH_FN(NEWCTX, newctx, ecdh_newctx),
    HWKEY_KEYEXCH_FN(INIT, init, ecdh_init),
    HWKEY_KEYEXCH_FN(SET_PEER, set_peer, ecdh_set_peer),
    HWKEY_KEYEXCH_FN(DERIVE, derive, ecdh_derive),
    HWKEY_KEYEXCH_FN(FREECTX, freectx, ecdh_freectx),
    HWKEY_KEYEXCH_FN(DUPCTX, dupctx, ecdh_dupctx),
    HWKEY_KEYEXCH_FN(SET_CTX_PARAMS, set_ctx_params, ecdh_set_ctx_params),
    HWKEY_KEYEXCH_FN(SETTABLE_CTX_PARAMS, settable_ctx_params, ecdh_settable_ctx_params),
    HWKEY_KEYEXCH_FN(GET_CTX_PARAMS, get_ctx_params, ecdh_get_ctx_params),
    HWKEY_KEYEXCH_FN(GETTABLE_CTX_PARAMS, gettable_ctx_params, ecdh_gettable_ctx_params),
    {0, NULL}};
