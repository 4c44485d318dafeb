/*
 * Encoders for device keys: writing a key back out writes its reference,
 * never a private key.
 *
 *  - output=pem / output=der, structure=PrivateKeyInfo: what
 *    PEM_write_bio_PrivateKey() and i2d_PrivateKey() ask for (`openssl
 *    genpkey -out`, `openssl pkey -out`).  The key is written as the
 *    reference it was loaded from, in the form its backend gives it
 *    (backend.h ref_encode; the label is not "PRIVATE KEY": like
 *    tpm2-openssl, the structure name is only what OpenSSL asks for).
 *  - output=text: `openssl pkey -text`: the public key as OpenSSL prints it
 *    and one line, from the backend (key_describe), saying where the
 *    private key lives.
 *
 * No import_object: OpenSSL offers these encoders only keys of hwkey's own
 * keymgmt, whose keydata is a HWKEY_KEY.  Public-key encodings
 * (SubjectPublicKeyInfo, `-pubout`) stay with the default provider, which
 * gets the public half through keymgmt export.
 */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/pem.h>

#include "hwkey/hwkey.h"
#include "ops/dispatch.h"
#include "key/key.h"
#include "ops/ops.h"
#include "ops/provctx.h"
#include "util/error.h"

typedef enum { OUT_PEM = 1, OUT_DER, OUT_TEXT } HWKEY_ENC_OUTPUT;

typedef struct {
    HWKEY_PROVCTX *provctx;
    HWKEY_ENC_OUTPUT output;
    int cipher_asked; /* the application asked for passphrase encryption */
} HWKEY_ENCODER_CTX;

static OSSL_FUNC_encoder_newctx_fn pem_newctx;
static OSSL_FUNC_encoder_newctx_fn der_newctx;
static OSSL_FUNC_encoder_newctx_fn text_newctx;
static OSSL_FUNC_encoder_freectx_fn encoder_freectx;
static OSSL_FUNC_encoder_set_ctx_params_fn encoder_set_ctx_params;
static OSSL_FUNC_encoder_settable_ctx_params_fn encoder_settable_ctx_params;
static OSSL_FUNC_encoder_does_selection_fn privkey_does_selection;
static OSSL_FUNC_encoder_does_selection_fn text_does_selection;
static OSSL_FUNC_encoder_encode_fn encoder_encode;

static void *encoder_newctx(void *provctx, HWKEY_ENC_OUTPUT output)
{
    HWKEY_ENCODER_CTX *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating an encoder context");
        return NULL;
    }
    ctx->provctx = provctx;
    ctx->output = output;
    return ctx;
}

static void *pem_newctx(void *provctx)
{
    return encoder_newctx(provctx, OUT_PEM);
}

static void *der_newctx(void *provctx)
{
    return encoder_newctx(provctx, OUT_DER);
}

static void *text_newctx(void *provctx)
{
    return encoder_newctx(provctx, OUT_TEXT);
}

static void encoder_freectx(void *vctx)
{
    OPENSSL_free(vctx);
}

static const OSSL_PARAM encoder_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_ENCODER_PARAM_CIPHER, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ENCODER_PARAM_PROPERTIES, NULL, 0), OSSL_PARAM_END};

static const OSSL_PARAM *encoder_settable_ctx_params(void *provctx)
{
    (void)provctx;
    return encoder_settable;
}

/*
 * The cipher is remembered only to refuse it in encode: writing the key file
 * unencrypted after `-aes256` would be a silent surprise.
 */
static int encoder_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    HWKEY_ENCODER_CTX *ctx = vctx;
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_ENCODER_PARAM_CIPHER);
    const char *name = NULL;

    if (p != NULL)
        ctx->cipher_asked =
            OSSL_PARAM_get_utf8_string_ptr(p, &name) && name != NULL && name[0] != '\0';
    return 1;
}

/* A key file is what the private half of the key is: only private selections. */
static int privkey_does_selection(void *provctx, int selection)
{
    (void)provctx;
    return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
}

/* Public-only printing (-text_pub) is the default provider's. */
static int text_does_selection(void *provctx, int selection)
{
    (void)provctx;
    return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
}

static int write_text(BIO *out, const HWKEY_KEY *key)
{
    if (EVP_PKEY_print_public(out, key->pub, 0, NULL) <= 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "printing the public key failed");
        return 0;
    }
    if (!hwkey_key_has_private(key))
        return BIO_printf(out, "Private key: none (public key only)\n") > 0;
    return hwkey_key_print_holder(key, out);
}

/* --- encode -------------------------------------------------------------------- */

static int encoder_encode(void *vctx, OSSL_CORE_BIO *cout, const void *obj_raw,
                          const OSSL_PARAM obj_abstract[], int selection,
                          OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    HWKEY_ENCODER_CTX *ctx = vctx;
    const HWKEY_KEY *key = obj_raw;
    BIO *out = NULL;
    int ok = 0;

    (void)obj_abstract;
    (void)cb;
    (void)cbarg;
    if (key == NULL || key->pub == NULL || (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) == 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "hwkey encodes private (device) keys only");
        return 0;
    }
    if (ctx->output != OUT_TEXT && (!hwkey_key_has_private(key) || key->ref.data == NULL)) {
        hwkey_raise(HWKEY_R_NO_PRIVATE_KEY, "a public-only key has no device key file to write");
        return 0;
    }
    if (ctx->output != OUT_TEXT && ctx->cipher_asked) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "a device key file holds no private key to encrypt (a TPM key file is "
                    "wrapped by the TPM): write it without a cipher, and protect the key with an "
                    "auth value (hwkey keygen --auth-file) instead");
        return 0;
    }
    if ((out = BIO_new_from_core_bio(ctx->provctx->libctx, cout)) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "opening the encoder's output");
        return 0;
    }
    ok = ctx->output == OUT_TEXT ? write_text(out, key)
                                 : hwkey_key_write_reference(key, ctx->output == OUT_PEM, out);
    BIO_free(out);
    return ok;
}

#define ENCODER_TABLE(table, newctx_fn, does_selection_fn)                                         \
    const OSSL_DISPATCH table[] = {                                                                \
        HWKEY_ENCODER_FN(NEWCTX, newctx, newctx_fn),                                               \
        HWKEY_ENCODER_FN(FREECTX, freectx, encoder_freectx),                                       \
        HWKEY_ENCODER_FN(SET_CTX_PARAMS, set_ctx_params, encoder_set_ctx_params),                  \
        HWKEY_ENCODER_FN(SETTABLE_CTX_PARAMS, settable_ctx_params, encoder_settable_ctx_params),   \
        HWKEY_ENCODER_FN(DOES_SELECTION, does_selection, does_selection_fn),                       \
        HWKEY_ENCODER_FN(ENCODE, encode, encoder_encode),                                          \
        {0, NULL}}

ENCODER_TABLE(hwkey_privkey_pem_encoder_functions, pem_newctx, privkey_does_selection);
ENCODER_TABLE(hwkey_privkey_der_encoder_functions, der_newctx, privkey_does_selection);
ENCODER_TABLE(hwkey_text_encoder_functions, text_newctx, text_does_selection);
