/*
 * AES-256-GCM as a provider cipher, on src/bulk's AES-NI/VAES core: the key
 * schedule and H powers live in hwkey_secmem memory (HWKEY_BULK_GCM), wiped
 * when the context is freed.  Offered under "provider=hwkey,hwkey.bulk=yes"
 * so that it is used only when an application asks for it
 * (EVP_CIPHER_fetch(libctx, "AES-256-GCM", "provider=hwkey")), never as the
 * implicit AES-256-GCM of an application or of SoftHSM (docs/bulk.md,
 * test_provider_aes_gcm.c).
 *
 * Behaves like OpenSSL's own GCM where it can: AAD through update with
 * out == NULL, the tag through OSSL_CIPHER_PARAM_AEAD_TAG (get after an
 * encryption's final, set before a decryption's final), a new IV through
 * init with key == NULL.  It does less: 12-byte IVs only (the only size the
 * bulk core takes, and SP 800-38D's recommendation), no TLS 1.x record mode
 * (OSSL_CIPHER_PARAM_AEAD_TLS1_*), no IV generation: each is refused with an
 * error that says so.  Data after final, or without an IV, is refused too,
 * so an IV is never reused by accident.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "bulk/bulk_gcm.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "ops/provctx.h"
#include "util/error.h"

typedef struct {
    HWKEY_PROVCTX *provctx;
    HWKEY_BULK_GCM *gcm; /* key schedule in protected memory; NULL until a key is set */
    int enc;
    int iv_set;  /* an IV is set and its message is not finished */
    int started; /* hwkey_bulk_gcm_start() ran for this IV */
    unsigned char iv[HWKEY_BULK_IV_LEN];
    unsigned char tag[HWKEY_BULK_TAG_LEN]; /* encrypt: computed; decrypt: expected */
    size_t taglen;                         /* decrypt: length of the expected tag; 0 = not set */
    int tag_ready;                         /* encrypt: final computed the tag */
} GCM_CTX;

static OSSL_FUNC_cipher_newctx_fn gcm_newctx;
static OSSL_FUNC_cipher_freectx_fn gcm_freectx;
static OSSL_FUNC_cipher_dupctx_fn gcm_dupctx;
static OSSL_FUNC_cipher_encrypt_init_fn gcm_encrypt_init;
static OSSL_FUNC_cipher_decrypt_init_fn gcm_decrypt_init;
static OSSL_FUNC_cipher_update_fn gcm_update;
static OSSL_FUNC_cipher_final_fn gcm_final;
static OSSL_FUNC_cipher_cipher_fn gcm_cipher;
static OSSL_FUNC_cipher_get_params_fn gcm_get_params;
static OSSL_FUNC_cipher_gettable_params_fn gcm_gettable_params;
static OSSL_FUNC_cipher_get_ctx_params_fn gcm_get_ctx_params;
static OSSL_FUNC_cipher_gettable_ctx_params_fn gcm_gettable_ctx_params;
static OSSL_FUNC_cipher_set_ctx_params_fn gcm_set_ctx_params;
static OSSL_FUNC_cipher_settable_ctx_params_fn gcm_settable_ctx_params;

/* TLS record mode parameters OpenSSL's GCM has and this one refuses. */
static const char *const tls_params[] = {
    OSSL_CIPHER_PARAM_AEAD_TLS1_AAD,        OSSL_CIPHER_PARAM_AEAD_TLS1_AAD_PAD,
    OSSL_CIPHER_PARAM_AEAD_TLS1_IV_FIXED,   OSSL_CIPHER_PARAM_AEAD_TLS1_GET_IV_GEN,
    OSSL_CIPHER_PARAM_AEAD_TLS1_SET_IV_INV,
};

static int refuse_tls_params(const OSSL_PARAM params[])
{
    for (size_t i = 0; i < sizeof(tls_params) / sizeof(tls_params[0]); i++)
        if (OSSL_PARAM_locate_const(params, tls_params[i]) != NULL) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                        "hwkey's AES-256-GCM has no TLS record mode (%s): use the default "
                        "provider's cipher for TLS",
                        tls_params[i]);
            return 0;
        }
    return 1;
}

static void *gcm_newctx(void *provctx)
{
    GCM_CTX *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating an AES-256-GCM context");
        return NULL;
    }
    ctx->provctx = provctx;
    return ctx;
}

static void gcm_freectx(void *vctx)
{
    GCM_CTX *ctx = vctx;

    if (ctx == NULL)
        return;
    hwkey_bulk_gcm_free(ctx->gcm); /* wipes the key schedule */
    OPENSSL_clear_free(ctx, sizeof(*ctx));
}

/* A deep copy: the copy's key schedule is in its own protected memory. */
static void *gcm_dupctx(void *vctx)
{
    GCM_CTX *src = vctx, *ctx = gcm_newctx(src->provctx);

    if (ctx == NULL)
        return NULL;
    *ctx = *src;
    ctx->gcm = NULL;
    if (src->gcm != NULL && (ctx->gcm = hwkey_bulk_gcm_dup(src->gcm)) == NULL) {
        OPENSSL_clear_free(ctx, sizeof(*ctx));
        return NULL;
    }
    return ctx;
}

static int gcm_init(GCM_CTX *ctx, int enc, const unsigned char *key, size_t keylen,
                    const unsigned char *iv, size_t ivlen, const OSSL_PARAM params[])
{
    HWKEY_BULK_GCM *fresh;

    ctx->enc = enc;
    ctx->tag_ready = 0;
    /* Parameters first: an IV length set here decides whether iv is accepted. */
    if (!gcm_set_ctx_params(ctx, params))
        return 0;
    if (key != NULL) {
        if (keylen != HWKEY_BULK_KEY_LEN) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "AES-256-GCM takes a 32-byte key, not %zu bytes",
                        keylen);
            return 0;
        }
        /* Applications may key per message (openssl speed does): reuse the protected block. */
        if (ctx->gcm != NULL && hwkey_bulk_gcm_get_impl(ctx->gcm) != 0) {
            hwkey_bulk_gcm_rekey(ctx->gcm, key);
        } else {
            if ((fresh = hwkey_bulk_gcm_new(key)) == NULL)
                return 0;
            hwkey_bulk_gcm_free(ctx->gcm);
            ctx->gcm = fresh;
        }
        ctx->started = 0;
    }
    if (iv != NULL) {
        if (ivlen != HWKEY_BULK_IV_LEN) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                        "hwkey's AES-256-GCM takes only 12-byte IVs, not %zu bytes", ivlen);
            return 0;
        }
        memcpy(ctx->iv, iv, HWKEY_BULK_IV_LEN);
        ctx->iv_set = 1;
        ctx->started = 0;
        ctx->taglen = 0;
    }
    return 1;
}

static int gcm_encrypt_init(void *vctx, const unsigned char *key, size_t keylen,
                            const unsigned char *iv, size_t ivlen, const OSSL_PARAM params[])
{
    return gcm_init(vctx, 1, key, keylen, iv, ivlen, params);
}

static int gcm_decrypt_init(void *vctx, const unsigned char *key, size_t keylen,
                            const unsigned char *iv, size_t ivlen, const OSSL_PARAM params[])
{
    return gcm_init(vctx, 0, key, keylen, iv, ivlen, params);
}

/*
 * Starts the message on first use.  Refuses without a key or IV, after
 * final (no second message under one IV), and in a forked child: protected
 * memory is wiped on fork, so the schedule there is zeros, not the key.
 */
static int gcm_ready(GCM_CTX *ctx)
{
    if (ctx->gcm == NULL || !ctx->iv_set) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED,
                    ctx->gcm == NULL ? "AES-256-GCM: no key set"
                                     : "AES-256-GCM: no IV set (a message is finished by "
                                       "final; set a new IV for the next one)");
        return 0;
    }
    if (hwkey_bulk_gcm_get_impl(ctx->gcm) == 0) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED,
                    "AES-256-GCM: the key schedule was wiped when the process forked; set "
                    "the key again in this process");
        return 0;
    }
    if (!ctx->started) {
        hwkey_bulk_gcm_start(ctx->gcm, ctx->iv);
        ctx->started = 1;
    }
    return 1;
}

static int gcm_update(void *vctx, unsigned char *out, size_t *outl, size_t outsize,
                      const unsigned char *in, size_t inl)
{
    GCM_CTX *ctx = vctx;

    if (!gcm_ready(ctx))
        return 0;
    if (out == NULL) { /* AAD, as OpenSSL's GCM takes it */
        if (!hwkey_bulk_gcm_aad(ctx->gcm, in, inl))
            return 0;
        *outl = inl;
        return 1;
    }
    if (outsize < inl) {
        hwkey_raise(HWKEY_R_BUFFER_TOO_SMALL, "AES-256-GCM: output buffer of %zu bytes for %zu",
                    outsize, inl);
        return 0;
    }
    if (!hwkey_bulk_gcm_update(ctx->gcm, ctx->enc, in, out, inl))
        return 0;
    *outl = inl;
    return 1;
}

static int gcm_final(void *vctx, unsigned char *out, size_t *outl, size_t outsize)
{
    GCM_CTX *ctx = vctx;
    unsigned char got[HWKEY_BULK_TAG_LEN];
    int ok = 0;

    (void)out;
    (void)outsize;
    if (!gcm_ready(ctx))
        return 0;
    if (!ctx->enc && ctx->taglen == 0) {
        hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED,
                    "AES-256-GCM decryption: no tag set (OSSL_CIPHER_PARAM_AEAD_TAG) before final");
        goto end;
    }
    hwkey_bulk_gcm_tag(ctx->gcm, got);
    if (ctx->enc) {
        memcpy(ctx->tag, got, sizeof(got));
        ctx->tag_ready = 1;
    } else if (CRYPTO_memcmp(got, ctx->tag, ctx->taglen) != 0) {
        hwkey_raise(HWKEY_R_DECRYPTION_FAILED,
                    "AES-256-GCM tag mismatch: the data was modified or the key or IV is wrong");
        goto end;
    }
    *outl = 0;
    ok = 1;
end:
    /* Either way this IV's message is over. */
    ctx->iv_set = 0;
    ctx->started = 0;
    OPENSSL_cleanse(got, sizeof(got));
    return ok;
}

/* EVP_Cipher(): data (AAD with out == NULL) when in is given, else final. */
static int gcm_cipher(void *vctx, unsigned char *out, size_t *outl, size_t outsize,
                      const unsigned char *in, size_t inl)
{
    if (in != NULL)
        return gcm_update(vctx, out, outl, outsize, in, inl);
    return gcm_final(vctx, out, outl, outsize);
}

/* ---- parameters ------------------------------------------------------------- */

static int set_size(OSSL_PARAM params[], const char *name, size_t v)
{
    OSSL_PARAM *p = OSSL_PARAM_locate(params, name);

    return p == NULL || OSSL_PARAM_set_size_t(p, v);
}

static int set_int(OSSL_PARAM params[], const char *name, int v)
{
    OSSL_PARAM *p = OSSL_PARAM_locate(params, name);

    return p == NULL || OSSL_PARAM_set_int(p, v);
}

static int gcm_get_params(OSSL_PARAM params[])
{
    OSSL_PARAM *p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_MODE);

    if ((p != NULL && !OSSL_PARAM_set_uint(p, EVP_CIPH_GCM_MODE)) ||
        !set_size(params, OSSL_CIPHER_PARAM_KEYLEN, HWKEY_BULK_KEY_LEN) ||
        !set_size(params, OSSL_CIPHER_PARAM_IVLEN, HWKEY_BULK_IV_LEN) ||
        !set_size(params, OSSL_CIPHER_PARAM_BLOCK_SIZE, 1) ||
        !set_int(params, OSSL_CIPHER_PARAM_AEAD, 1) ||
        !set_int(params, OSSL_CIPHER_PARAM_CUSTOM_IV, 1) ||
        !set_int(params, OSSL_CIPHER_PARAM_CTS, 0) ||
        !set_int(params, OSSL_CIPHER_PARAM_TLS1_MULTIBLOCK, 0) ||
        !set_int(params, OSSL_CIPHER_PARAM_HAS_RAND_KEY, 0)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "AES-256-GCM: a parameter has the wrong type");
        return 0;
    }
    return 1;
}

static const OSSL_PARAM *gcm_gettable_params(void *provctx)
{
    static const OSSL_PARAM table[] = {
        OSSL_PARAM_uint(OSSL_CIPHER_PARAM_MODE, NULL),
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_KEYLEN, NULL),
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_IVLEN, NULL),
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_BLOCK_SIZE, NULL),
        OSSL_PARAM_int(OSSL_CIPHER_PARAM_AEAD, NULL),
        OSSL_PARAM_int(OSSL_CIPHER_PARAM_CUSTOM_IV, NULL),
        OSSL_PARAM_int(OSSL_CIPHER_PARAM_CTS, NULL),
        OSSL_PARAM_int(OSSL_CIPHER_PARAM_TLS1_MULTIBLOCK, NULL),
        OSSL_PARAM_int(OSSL_CIPHER_PARAM_HAS_RAND_KEY, NULL),
        OSSL_PARAM_END,
    };

    (void)provctx;
    return table;
}

static int gcm_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    GCM_CTX *ctx = vctx;
    OSSL_PARAM *p;

    if (!refuse_tls_params(params))
        return 0;
    if (!set_size(params, OSSL_CIPHER_PARAM_KEYLEN, HWKEY_BULK_KEY_LEN) ||
        !set_size(params, OSSL_CIPHER_PARAM_IVLEN, HWKEY_BULK_IV_LEN) ||
        !set_size(params, OSSL_CIPHER_PARAM_AEAD_TAGLEN,
                  !ctx->enc && ctx->taglen != 0 ? ctx->taglen : HWKEY_BULK_TAG_LEN)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "AES-256-GCM: a parameter has the wrong type");
        return 0;
    }
    if (((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_IV)) != NULL &&
         !OSSL_PARAM_set_octet_string(p, ctx->iv, sizeof(ctx->iv))) ||
        ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_UPDATED_IV)) != NULL &&
         !OSSL_PARAM_set_octet_string(p, ctx->iv, sizeof(ctx->iv)))) {
        hwkey_raise(HWKEY_R_BUFFER_TOO_SMALL, "AES-256-GCM: the IV is 12 bytes");
        return 0;
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_CIPHER_PARAM_AEAD_TAG)) != NULL) {
        if (!ctx->enc || !ctx->tag_ready) {
            hwkey_raise(HWKEY_R_OPERATION_NOT_INITIALISED,
                        "AES-256-GCM: the tag is available only after an encryption's final");
            return 0;
        }
        if (p->data_size == 0 || p->data_size > HWKEY_BULK_TAG_LEN ||
            !OSSL_PARAM_set_octet_string(p, ctx->tag, p->data_size)) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "AES-256-GCM: a tag of 1..16 bytes, not %zu",
                        p->data_size);
            return 0;
        }
    }
    return 1;
}

static const OSSL_PARAM *gcm_gettable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM table[] = {
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_KEYLEN, NULL),
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_IVLEN, NULL),
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_AEAD_TAGLEN, NULL),
        OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_IV, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_UPDATED_IV, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, NULL, 0),
        OSSL_PARAM_END,
    };

    (void)vctx;
    (void)provctx;
    return table;
}

static int gcm_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    GCM_CTX *ctx = vctx;
    const OSSL_PARAM *p;
    size_t n;

    if (params == NULL)
        return 1;
    if (!refuse_tls_params(params))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_CIPHER_PARAM_AEAD_IVLEN)) != NULL) {
        if (!OSSL_PARAM_get_size_t(p, &n) || n != HWKEY_BULK_IV_LEN) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                        "hwkey's AES-256-GCM takes only 12-byte IVs (asked for another length)");
            return 0;
        }
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_CIPHER_PARAM_KEYLEN)) != NULL) {
        if (!OSSL_PARAM_get_size_t(p, &n) || n != HWKEY_BULK_KEY_LEN) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "AES-256-GCM's key length is 32 bytes");
            return 0;
        }
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_CIPHER_PARAM_AEAD_TAG)) != NULL) {
        /* A length without data (EVP_CTRL_AEAD_SET_TAG with NULL) only sets the length. */
        if (p->data_type != OSSL_PARAM_OCTET_STRING || p->data_size == 0 ||
            p->data_size > HWKEY_BULK_TAG_LEN) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "AES-256-GCM: a tag of 1..16 bytes");
            return 0;
        }
        if (p->data != NULL) {
            if (ctx->enc) {
                hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                            "AES-256-GCM: the expected tag is set for decryption only");
                return 0;
            }
            memcpy(ctx->tag, p->data, p->data_size);
            ctx->taglen = p->data_size;
        } else if (p->data_size != HWKEY_BULK_TAG_LEN) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                        "AES-256-GCM: truncated tags are checked by their length when set");
            return 0;
        }
    }
    return 1;
}

static const OSSL_PARAM *gcm_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM table[] = {
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, NULL),
        OSSL_PARAM_size_t(OSSL_CIPHER_PARAM_KEYLEN, NULL),
        OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, NULL, 0),
        OSSL_PARAM_END,
    };

    (void)vctx;
    (void)provctx;
    return table;
}

const OSSL_DISPATCH hwkey_aes256gcm_cipher_functions[] = {
    HWKEY_CIPHER_FN(NEWCTX, newctx, gcm_newctx),
    HWKEY_CIPHER_FN(FREECTX, freectx, gcm_freectx),
    HWKEY_CIPHER_FN(DUPCTX, dupctx, gcm_dupctx),
    HWKEY_CIPHER_FN(ENCRYPT_INIT, encrypt_init, gcm_encrypt_init),
    HWKEY_CIPHER_FN(DECRYPT_INIT, decrypt_init, gcm_decrypt_init),
    HWKEY_CIPHER_FN(UPDATE, update, gcm_update),
    HWKEY_CIPHER_FN(FINAL, final, gcm_final),
    HWKEY_CIPHER_FN(CIPHER, cipher, gcm_cipher),
    HWKEY_CIPHER_FN(GET_PARAMS, get_params, gcm_get_params),
    HWKEY_CIPHER_FN(GETTABLE_PARAMS, gettable_params, gcm_gettable_params),
    HWKEY_CIPHER_FN(GET_CTX_PARAMS, get_ctx_params, gcm_get_ctx_params),
    HWKEY_CIPHER_FN(GETTABLE_CTX_PARAMS, gettable_ctx_params, gcm_gettable_ctx_params),
    HWKEY_CIPHER_FN(SET_CTX_PARAMS, set_ctx_params, gcm_set_ctx_params),
    HWKEY_CIPHER_FN(SETTABLE_CTX_PARAMS, settable_ctx_params, gcm_settable_ctx_params),
    {0, NULL},
};
