/*
 * RSA decryption on the device, encryption in software on the public key.
 * With the raw private operation (HWKEY_KEYF_RSA_RAW) the padding is removed
 * here in constant time and every padding failure looks the same: one
 * HWKEY_R_DECRYPTION_FAILED with one fixed text.  For TLS RSA key exchange
 * (RSA_PKCS1_WITH_TLS_PADDING + the client version, as libssl sets them) a
 * failure is not even reported: a random premaster comes back instead.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

#include "key/key.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "ops/provctx.h"
#include "ops/rsa_padding.h"
#include "util/error.h"
#include "util/secmem.h"

#define DECRYPTION_FAILED_TEXT "RSA decryption failed"

typedef struct {
    HWKEY_PROVCTX *provctx;
    HWKEY_KEY *key;
    int decrypting;
    int pad_mode;
    EVP_MD *oaep_md; /* NULL: SHA-1 */
    EVP_MD *mgf1_md; /* NULL: the OAEP digest */
    unsigned char *label;
    size_t label_len;
    unsigned int client_version; /* TLS: ClientHello.client_version */
    unsigned int alt_version;    /* TLS: the negotiated one, for the rollback bug */
} RSA_CIPHER_CTX;

static OSSL_FUNC_asym_cipher_newctx_fn rsa_cipher_newctx;
static OSSL_FUNC_asym_cipher_freectx_fn rsa_cipher_freectx;
static OSSL_FUNC_asym_cipher_dupctx_fn rsa_cipher_dupctx;
static OSSL_FUNC_asym_cipher_encrypt_init_fn rsa_cipher_encrypt_init;
static OSSL_FUNC_asym_cipher_encrypt_fn rsa_cipher_encrypt;
static OSSL_FUNC_asym_cipher_decrypt_init_fn rsa_cipher_decrypt_init;
static OSSL_FUNC_asym_cipher_decrypt_fn rsa_cipher_decrypt;
static OSSL_FUNC_asym_cipher_get_ctx_params_fn rsa_cipher_get_ctx_params;
static OSSL_FUNC_asym_cipher_gettable_ctx_params_fn rsa_cipher_gettable_ctx_params;
static OSSL_FUNC_asym_cipher_set_ctx_params_fn rsa_cipher_set_ctx_params;
static OSSL_FUNC_asym_cipher_settable_ctx_params_fn rsa_cipher_settable_ctx_params;

static void *rsa_cipher_newctx(void *provctx)
{
    RSA_CIPHER_CTX *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating an RSA cipher context");
        return NULL;
    }
    ctx->provctx = provctx;
    ctx->pad_mode = RSA_PKCS1_PADDING;
    return ctx;
}

static void rsa_cipher_freectx(void *vctx)
{
    RSA_CIPHER_CTX *ctx = vctx;

    if (ctx == NULL)
        return;
    hwkey_key_free(ctx->key);
    EVP_MD_free(ctx->oaep_md);
    EVP_MD_free(ctx->mgf1_md);
    OPENSSL_clear_free(ctx->label, ctx->label_len);
    OPENSSL_clear_free(ctx, sizeof(*ctx));
}

static void *rsa_cipher_dupctx(void *vctx)
{
    const RSA_CIPHER_CTX *src = vctx;
    RSA_CIPHER_CTX *dst = OPENSSL_memdup(src, sizeof(*src));

    if (dst == NULL)
        goto err;
    dst->key = NULL;
    dst->oaep_md = dst->mgf1_md = NULL;
    dst->label = NULL;
    if ((src->key != NULL && !hwkey_key_up_ref(src->key)) ||
        (src->oaep_md != NULL && !EVP_MD_up_ref(src->oaep_md)) ||
        (src->mgf1_md != NULL && !EVP_MD_up_ref(src->mgf1_md))) {
        OPENSSL_free(dst);
        goto err;
    }
    dst->key = src->key;
    dst->oaep_md = src->oaep_md;
    dst->mgf1_md = src->mgf1_md;
    if (src->label != NULL && (dst->label = OPENSSL_memdup(src->label, src->label_len)) == NULL) {
        rsa_cipher_freectx(dst);
        goto err;
    }
    return dst;
err:
    hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "duplicating an RSA cipher context");
    return NULL;
}

static int rsa_cipher_init(RSA_CIPHER_CTX *ctx, void *provkey, const OSSL_PARAM params[],
                           int decrypting)
{
    HWKEY_KEY *key = provkey;

    if (key == NULL || key->alg != HWKEY_ALG_RSA || key->pub == NULL) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "RSA cipher without an RSA key");
        return 0;
    }
    if (decrypting && !hwkey_key_require_private(key, "decrypt"))
        return 0;
    if (!hwkey_key_up_ref(key))
        return 0;
    hwkey_key_free(ctx->key);
    ctx->key = key;
    ctx->decrypting = decrypting;
    return rsa_cipher_set_ctx_params(ctx, params);
}

static int rsa_cipher_encrypt_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
    return rsa_cipher_init(vctx, provkey, params, 0);
}

static int rsa_cipher_decrypt_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
    return rsa_cipher_init(vctx, provkey, params, 1);
}

static const EVP_MD *oaep_md(RSA_CIPHER_CTX *ctx, EVP_MD **fetched)
{
    if (ctx->oaep_md != NULL)
        return ctx->oaep_md;
    *fetched = EVP_MD_fetch(ctx->provctx->swctx, "SHA1", NULL);
    return *fetched;
}

/* Encryption needs no device: the default provider does it on the public key. */
static int rsa_cipher_encrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
                              const unsigned char *in, size_t inlen)
{
    RSA_CIPHER_CTX *ctx = vctx;
    OSSL_PARAM params[5], *p = params;
    EVP_PKEY_CTX *pctx = NULL;
    int ok = 0;

    if (ctx->key == NULL || ctx->decrypting) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED, "RSA encrypt before encrypt_init");
        return 0;
    }
    *p++ = OSSL_PARAM_construct_int(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, &ctx->pad_mode);
    if (ctx->oaep_md != NULL)
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST,
                                                (char *)EVP_MD_get0_name(ctx->oaep_md), 0);
    if (ctx->mgf1_md != NULL)
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST,
                                                (char *)EVP_MD_get0_name(ctx->mgf1_md), 0);
    if (ctx->label != NULL)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, ctx->label,
                                                 ctx->label_len);
    *p = OSSL_PARAM_construct_end();
    pctx = EVP_PKEY_CTX_new_from_pkey(ctx->provctx->swctx, ctx->key->pub, NULL);
    if (pctx == NULL || EVP_PKEY_encrypt_init(pctx) <= 0 ||
        !EVP_PKEY_CTX_set_params(pctx, params)) {
        hwkey_raise(HWKEY_R_INTERNAL, "cannot set up a software RSA encryption");
        goto end;
    }
    *outlen = outsize;
    if (EVP_PKEY_encrypt(pctx, out, outlen, in, inlen) <= 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "RSA encryption of %zu bytes failed", inlen);
        goto end;
    }
    ok = 1;
end:
    EVP_PKEY_CTX_free(pctx);
    return ok;
}

/* The raw private operation on the ciphertext, left-padded to k, into em[0..k). */
static int raw_private(RSA_CIPHER_CTX *ctx, const unsigned char *in, size_t inlen,
                       unsigned char *em, size_t k)
{
    unsigned char *block = OPENSSL_zalloc(k);
    size_t n = k;
    int ok = 0;

    if (block == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating an RSA block");
        return 0;
    }
    memcpy(block + (k - inlen), in, inlen);
    if (!hwkey_key_rsa_private(ctx->key, block, k, em, &n))
        goto end;
    if (n > k) {
        hwkey_raise(HWKEY_R_DEVICE_ERROR, "the device returned %zu bytes for a %zu-byte modulus", n,
                    k);
        goto end;
    }
    memmove(em + (k - n), em, n);
    memset(em, 0, k - n);
    ok = 1;
end:
    OPENSSL_free(block);
    return ok;
}

/*
 * TLS premaster on a device that pads itself: its verdict is not constant
 * time anyway, but it must not become an error oracle.  A failure or a
 * wrong length is turned into a block that fails the constant-time check,
 * so the answer is a random premaster and the error queue stays clean.
 */
static int tls_premaster_via_device(RSA_CIPHER_CTX *ctx, unsigned char *out, size_t outsize,
                                    const unsigned char *in, size_t inlen, unsigned char *em,
                                    size_t k)
{
    HWKEY_DECRYPT_PARAMS params = {.padding = HWKEY_PAD_PKCS1};
    /* Devices (and the default provider) want room for a whole block. */
    unsigned char *plain = hwkey_secmem_alloc(k);
    size_t n = k;
    int ok, ret;

    if (plain == NULL)
        return -1;
    ERR_set_mark();
    ok = hwkey_key_rsa_decrypt(ctx->key, &params, in, inlen, plain, &n);
    ERR_pop_to_mark();
    memset(em, 0, k);
    if (ok && n == HWKEY_TLS_PREMASTER_LEN) {
        em[1] = 0x02;
        memset(em + 2, 0xff, k - HWKEY_TLS_PREMASTER_LEN - 3);
        memcpy(em + k - HWKEY_TLS_PREMASTER_LEN, plain, HWKEY_TLS_PREMASTER_LEN);
    }
    ret = hwkey_rsa_decode_pkcs1_tls(ctx->provctx->swctx, out, outsize, em, k, ctx->client_version,
                                     ctx->alt_version);
    hwkey_secmem_free(plain);
    return ret;
}

static int rsa_cipher_decrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
                              const unsigned char *in, size_t inlen)
{
    RSA_CIPHER_CTX *ctx = vctx;
    size_t k = ctx->key != NULL ? hwkey_key_max_size(ctx->key) : 0;
    int tls = ctx->pad_mode == RSA_PKCS1_WITH_TLS_PADDING;
    EVP_MD *fetched = NULL;
    const EVP_MD *md = NULL;
    unsigned char *em = NULL;
    int ok = 0, n = -1;

    if (ctx->key == NULL || !ctx->decrypting) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED, "RSA decrypt before decrypt_init");
        return 0;
    }
    if (out == NULL) {
        *outlen = tls ? HWKEY_TLS_PREMASTER_LEN : k;
        return 1;
    }
    /* Publicly visible faults may be told apart. */
    if (inlen > k || inlen == 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "a %zu-byte ciphertext for a %zu-byte modulus", inlen, k);
        return 0;
    }
    if (tls && (ctx->client_version == 0 || outsize < HWKEY_TLS_PREMASTER_LEN)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "TLS premaster decryption needs the client version and 48 bytes of room");
        return 0;
    }
    if (ctx->pad_mode == RSA_PKCS1_OAEP_PADDING && (md = oaep_md(ctx, &fetched)) == NULL) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST, "cannot fetch SHA-1 for OAEP");
        return 0;
    }
    if (!hwkey_key_can(ctx->key, HWKEY_KEYF_RSA_RAW) && !tls) {
        HWKEY_DECRYPT_PARAMS params = {
            .padding = ctx->pad_mode == RSA_PKCS1_OAEP_PADDING ? HWKEY_PAD_OAEP : HWKEY_PAD_PKCS1,
            .oaep_md_nid = md != NULL ? EVP_MD_get_type(md) : NID_undef,
            .mgf1_md_nid = md == NULL             ? NID_undef
                           : ctx->mgf1_md != NULL ? EVP_MD_get_type(ctx->mgf1_md)
                                                  : EVP_MD_get_type(md),
            .label = ctx->label,
            .label_len = ctx->label_len,
        };

        *outlen = outsize;
        ok = hwkey_key_rsa_decrypt(ctx->key, &params, in, inlen, out, outlen);
        goto end;
    }

    if ((em = hwkey_secmem_alloc(k)) == NULL)
        goto end;
    if (tls && !hwkey_key_can(ctx->key, HWKEY_KEYF_RSA_RAW)) {
        n = tls_premaster_via_device(ctx, out, outsize, in, inlen, em, k);
    } else {
        if (!raw_private(ctx, in, inlen, em, k))
            goto end;
        if (tls)
            n = hwkey_rsa_decode_pkcs1_tls(ctx->provctx->swctx, out, outsize, em, k,
                                           ctx->client_version, ctx->alt_version);
        else if (ctx->pad_mode == RSA_PKCS1_OAEP_PADDING)
            n = hwkey_rsa_decode_oaep(out, outsize, em, k, md,
                                      ctx->mgf1_md != NULL ? ctx->mgf1_md : md, ctx->label,
                                      ctx->label_len);
        else
            n = hwkey_rsa_decode_pkcs1(out, outsize, em, k);
    }
    if (n < 0) {
        hwkey_raise(HWKEY_R_DECRYPTION_FAILED, DECRYPTION_FAILED_TEXT);
        goto end;
    }
    *outlen = (size_t)n;
    ok = 1;
end:
    hwkey_secmem_free(em);
    EVP_MD_free(fetched);
    return ok;
}

static int set_md(RSA_CIPHER_CTX *ctx, const OSSL_PARAM *p, EVP_MD **slot, const char *what)
{
    char name[64], *s = name;
    EVP_MD *md;

    if (!OSSL_PARAM_get_utf8_string(p, &s, sizeof(name))) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the %s parameter is not a digest name", what);
        return 0;
    }
    md = EVP_MD_fetch(ctx->provctx->swctx, name, NULL);
    if (md == NULL || !hwkey_digest_known(EVP_MD_get_type(md))) {
        EVP_MD_free(md);
        hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST, "%s \"%s\" is not supported (SHA-1, SHA-2, SHA-3)",
                    what, name);
        return 0;
    }
    EVP_MD_free(*slot);
    *slot = md;
    return 1;
}

static int rsa_cipher_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    RSA_CIPHER_CTX *ctx = vctx;
    const OSSL_PARAM *p;

    if (params == NULL)
        return 1;
    p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE);
    if (p != NULL) {
        int mode = -1;

        if (!hwkey_rsa_pad_mode_get(p, &mode) ||
            (mode != RSA_PKCS1_PADDING && mode != RSA_PKCS1_OAEP_PADDING &&
             mode != RSA_PKCS1_WITH_TLS_PADDING)) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_PADDING,
                        "RSA encryption padding %s is not supported (pkcs1 or oaep only)",
                        hwkey_rsa_pad_mode_name(mode));
            return 0;
        }
        ctx->pad_mode = mode;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST);
    if (p != NULL && !set_md(ctx, p, &ctx->oaep_md, "OAEP digest"))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST);
    if (p != NULL && !set_md(ctx, p, &ctx->mgf1_md, "MGF1 digest"))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL);
    if (p != NULL) {
        void *label = NULL;
        size_t len = 0;

        if (!OSSL_PARAM_get_octet_string(p, &label, 0, &len)) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the OAEP label is not an octet string");
            return 0;
        }
        OPENSSL_clear_free(ctx->label, ctx->label_len);
        ctx->label = label;
        ctx->label_len = len;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION);
    if (p != NULL && !OSSL_PARAM_get_uint(p, &ctx->client_version)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the TLS client version is not an integer");
        return 0;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION);
    if (p != NULL && !OSSL_PARAM_get_uint(p, &ctx->alt_version)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the TLS negotiated version is not an integer");
        return 0;
    }
    return 1;
}

static int rsa_cipher_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    RSA_CIPHER_CTX *ctx = vctx;
    OSSL_PARAM *p;
    const EVP_MD *mgf1 = ctx->mgf1_md != NULL ? ctx->mgf1_md : ctx->oaep_md;

    p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE);
    if (p != NULL && !hwkey_rsa_pad_mode_set(p, ctx->pad_mode))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST);
    if (p != NULL && !OSSL_PARAM_set_utf8_string(
                         p, ctx->oaep_md != NULL ? EVP_MD_get0_name(ctx->oaep_md) : "SHA1"))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST);
    if (p != NULL && !OSSL_PARAM_set_utf8_string(p, mgf1 != NULL ? EVP_MD_get0_name(mgf1) : "SHA1"))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL);
    if (p != NULL && !OSSL_PARAM_set_octet_ptr(p, ctx->label, ctx->label_len))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION);
    if (p != NULL && !OSSL_PARAM_set_uint(p, ctx->client_version))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION);
    if (p != NULL && !OSSL_PARAM_set_uint(p, ctx->alt_version))
        return 0;
    return 1;
}

static const OSSL_PARAM settable[] = {
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST_PROPS, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST_PROPS, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, NULL),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, NULL),
    OSSL_PARAM_END};

static const OSSL_PARAM gettable[] = {
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_octet_ptr(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, NULL),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, NULL),
    OSSL_PARAM_END};

static const OSSL_PARAM *rsa_cipher_settable_ctx_params(void *ctx, void *provctx)
{
    (void)ctx;
    (void)provctx;
    return settable;
}

static const OSSL_PARAM *rsa_cipher_gettable_ctx_params(void *ctx, void *provctx)
{
    (void)ctx;
    (void)provctx;
    return gettable;
}

const OSSL_DISPATCH hwkey_rsa_asym_cipher_functions[] = {
    HWKEY_ASYM_CIPHER_FN(NEWCTX, newctx, rsa_cipher_newctx),
    HWKEY_ASYM_CIPHER_FN(FREECTX, freectx, rsa_cipher_freectx),
    HWKEY_ASYM_CIPHER_FN(DUPCTX, dupctx, rsa_cipher_dupctx),
    HWKEY_ASYM_CIPHER_FN(ENCRYPT_INIT, encrypt_init, rsa_cipher_encrypt_init),
    HWKEY_ASYM_CIPHER_FN(ENCRYPT, encrypt, rsa_cipher_encrypt),
    HWKEY_ASYM_CIPHER_FN(DECRYPT_INIT, decrypt_init, rsa_cipher_decrypt_init),
    HWKEY_ASYM_CIPHER_FN(DECRYPT, decrypt, rsa_cipher_decrypt),
    HWKEY_ASYM_CIPHER_FN(GET_CTX_PARAMS, get_ctx_params, rsa_cipher_get_ctx_params),
    HWKEY_ASYM_CIPHER_FN(GETTABLE_CTX_PARAMS, gettable_ctx_params, rsa_cipher_gettable_ctx_params),
    HWKEY_ASYM_CIPHER_FN(SET_CTX_PARAMS, set_ctx_params, rsa_cipher_set_ctx_params),
    HWKEY_ASYM_CIPHER_FN(SETTABLE_CTX_PARAMS, settable_ctx_params, rsa_cipher_settable_ctx_params),
    {0, NULL}};
