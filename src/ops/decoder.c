/*
 * Decoders for device key files: each backend's own key files (PEM and DER;
 * which files are whose, and what key type a file holds, is the backends'
 * answer: backend.h keyfile_recognise) and PEM reference files that hold a
 * key URI (util/keyref.h: pkcs11-provider's format and hwkey's own).
 *
 * Three kinds of decoder, chosen so that every OpenSSL 3.0 loading path
 * reaches hwkey's keymgmt (docs/traps-openssl.md explains why):
 *
 *  - "EC"/"RSA", input=pem: PEM_read_bio_PrivateKey() (nginx, curl, libssl's
 *    *_use_PrivateKey_file) builds its decoder chain from every decoder named
 *    after a key type; this one resolves the key directly.
 *  - "DER", input=pem: the 'file:' store (openssl pkey/req/s_server -key)
 *    builds its chain only from decoders that produce DER, and the default
 *    provider's pem2der drops labels it does not know.  This one turns our
 *    labels into DER and never resolves anything: everything it outputs goes
 *    straight to the store's result handler in the default provider, where a
 *    reference would be misread by the default keymgmt's load.
 *  - "EC"/"RSA", input=der,structure=TSS2: the DER from the previous one (or
 *    a DER file), decoded again by libcrypto through OSSL_DECODER_CTX
 *    _new_for_pkey(), whose constructor prefers a keymgmt of the decoder's
 *    own provider: hwkey's keymgmt load, whatever the property query.
 *
 * A decoder that meets something that is not ours returns 1 with no object
 * and leaves no error behind (error marks), so other decoders carry on.  A
 * file that is ours but cannot be loaded (corrupt, device unreachable, wrong
 * auth) returns 0 with the error raised, so the user sees the real reason.
 */
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/pem.h>

#include "hwkey/hwkey.h"
#include "ops/dispatch.h"
#include "key/key.h"
#include "ops/objref.h"
#include "ops/ops.h"
#include "ops/provctx.h"
#include "util/error.h"
#include "util/log.h"
#include "util/keyref.h"

#define URI_MAX HWKEY_KEYREF_URI_MAX
/*
 * At most this much DER is read before asking the backends; more than any
 * backend's key file allows, so an oversized file is still named as such.
 */
#define DER_READ_MAX 16384

typedef struct {
    HWKEY_PROVCTX *provctx;
    HWKEY_ALG want; /* 0: the pem2der decoder */
} HWKEY_DECODER_CTX;

static OSSL_FUNC_decoder_newctx_fn ec_newctx;
static OSSL_FUNC_decoder_newctx_fn rsa_newctx;
static OSSL_FUNC_decoder_newctx_fn ed25519_newctx;
static OSSL_FUNC_decoder_newctx_fn pem2der_newctx;
static OSSL_FUNC_decoder_freectx_fn decoder_freectx;
static OSSL_FUNC_decoder_decode_fn pem_decode;
static OSSL_FUNC_decoder_decode_fn der_decode;
static OSSL_FUNC_decoder_decode_fn pem2der_decode;
static OSSL_FUNC_decoder_export_object_fn decoder_export_object;

static void *decoder_newctx(void *provctx, HWKEY_ALG want)
{
    HWKEY_DECODER_CTX *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a decoder context");
        return NULL;
    }
    ctx->provctx = provctx;
    ctx->want = want;
    return ctx;
}

static void *ec_newctx(void *provctx)
{
    return decoder_newctx(provctx, HWKEY_ALG_EC);
}

static void *rsa_newctx(void *provctx)
{
    return decoder_newctx(provctx, HWKEY_ALG_RSA);
}

/* Ed25519 keys exist only on PKCS#11 tokens: reached through reference files. */
static void *ed25519_newctx(void *provctx)
{
    return decoder_newctx(provctx, HWKEY_ALG_ED25519);
}

static void *pem2der_newctx(void *provctx)
{
    return decoder_newctx(provctx, 0);
}

static void decoder_freectx(void *vctx)
{
    OPENSSL_free(vctx);
}

/* Fills ref from a URI; 0 (nothing raised) if it is no kind we know. */
static int uri_to_ref(const char *uri, size_t uri_len, HWKEY_KEYREF *ref, char *buf, size_t bufsz)
{
    if (uri_len >= bufsz || memchr(uri, '\0', uri_len) != NULL)
        return 0;
    memcpy(buf, uri, uri_len);
    buf[uri_len] = '\0';
    ref->kind = hwkey_ref_kind_of_string(buf);
    ref->data = (const unsigned char *)buf;
    ref->len = uri_len;
    return ref->kind != 0;
}

/* --- resolving and handing out -------------------------------------------- */

/*
 * Resolves ref (known to be ours) if it is of the decoder's key type and
 * hands it to data_cb.  hint: key type known without the device, or 0.
 */
static int resolve_and_emit(HWKEY_DECODER_CTX *ctx, const HWKEY_KEYREF *ref, HWKEY_ALG hint,
                            OSSL_CALLBACK *data_cb, void *data_cbarg,
                            OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    HWKEY_KEY *key;

    if (hint != 0 && hint != ctx->want)
        return 1;
    key = hwkey_key_load(ctx->provctx->devices, ctx->provctx->swctx, ref, pw_cb, pw_cbarg);
    if (key == NULL) {
        /*
         * OpenSSL 3.0's 'file:' store drops decoder errors and reports only
         * "unsupported" (docs/traps-openssl.md): say here, once, why the
         * device key did not load.  HWKEY_LOG=0 silences it.
         */
        hwkey_log_last_error("cannot load the device key");
        return 0;
    }
    if (key->alg != ctx->want) {
        hwkey_key_free(key);
        return 1;
    }
    return hwkey_objref_emit(&key, data_cb, data_cbarg);
}

/*
 * One PEM block (label) or DER blob (label NULL) that may be ours: a
 * backend's key file, or a reference file holding a key URI.  Not ours: 1,
 * nothing emitted, nothing raised.
 */
static int decode_blob(HWKEY_DECODER_CTX *ctx, const char *label, const unsigned char *data,
                       size_t len, OSSL_CALLBACK *data_cb, void *data_cbarg,
                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    HWKEY_KEYREF ref;
    char uribuf[URI_MAX + 1];
    const char *uri, *structure;
    size_t uri_len;
    HWKEY_ALG hint;
    int r, parsed;

    memset(&ref, 0, sizeof(ref));
    r = hwkey_devices_recognise_keyfile(ctx->provctx->devices, label, data, len, &ref.kind, &hint,
                                        &structure);
    if (r < 0)
        return 0;
    if (r > 0) {
        ref.data = data;
        ref.len = len;
        return resolve_and_emit(ctx, &ref, hint, data_cb, data_cbarg, pw_cb, pw_cbarg);
    }
    if (label != NULL && !hwkey_keyref_is_label(label))
        return 1;
    parsed = hwkey_keyref_uri_parse(data, len, &uri, &uri_len);
    if (label == NULL && !parsed)
        return 1; /* DER of something else entirely */
    if (!parsed || !uri_to_ref(uri, uri_len, &ref, uribuf, sizeof(uribuf)) ||
        !hwkey_keyref_label_fits(label, uri, uri_len)) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "\"%s\" %s holds no key URI that hwkey knows "
                    "(pkcs11:, handle:)",
                    label != NULL ? label : "DER", label != NULL ? "PEM block" : "reference file");
        return 0;
    }
    return resolve_and_emit(ctx, &ref, 0, data_cb, data_cbarg, pw_cb, pw_cbarg);
}

/* Reads one PEM block; 0 with no error left if the input is no PEM. */
static int read_pem(HWKEY_DECODER_CTX *ctx, OSSL_CORE_BIO *cin, char **label, unsigned char **data,
                    long *len)
{
    BIO *in = BIO_new_from_core_bio(ctx->provctx->libctx, cin);
    char *header = NULL;
    int ok;

    if (in == NULL)
        return 0;
    ERR_set_mark();
    ok = PEM_read_bio(in, label, &header, data, len) > 0;
    ERR_pop_to_mark();
    OPENSSL_free(header);
    BIO_free(in);
    return ok;
}

static int pem_decode(void *vctx, OSSL_CORE_BIO *cin, int selection, OSSL_CALLBACK *data_cb,
                      void *data_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    HWKEY_DECODER_CTX *ctx = vctx;
    char *label = NULL;
    unsigned char *data = NULL;
    long len = 0;
    int ok = 1;

    (void)selection;
    if (read_pem(ctx, cin, &label, &data, &len))
        ok = decode_blob(ctx, label, data, (size_t)len, data_cb, data_cbarg, pw_cb, pw_cbarg);
    OPENSSL_free(label);
    OPENSSL_clear_free(data, len > 0 ? (size_t)len : 0);
    return ok;
}

/* Reads at most max bytes; *len = max + 1 when there is more. */
static int read_der(HWKEY_DECODER_CTX *ctx, OSSL_CORE_BIO *cin, unsigned char **out, size_t *len,
                    size_t max)
{
    BIO *in = BIO_new_from_core_bio(ctx->provctx->libctx, cin);
    unsigned char *buf = OPENSSL_malloc(max + 1);
    size_t total = 0;
    int n;

    if (in == NULL || buf == NULL) {
        BIO_free(in);
        OPENSSL_free(buf);
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "reading a key file");
        return 0;
    }
    while (total < max + 1 && (n = BIO_read(in, buf + total, (int)(max + 1 - total))) > 0)
        total += (size_t)n;
    BIO_free(in);
    *out = buf;
    *len = total;
    return 1;
}

static int der_decode(void *vctx, OSSL_CORE_BIO *cin, int selection, OSSL_CALLBACK *data_cb,
                      void *data_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    HWKEY_DECODER_CTX *ctx = vctx;
    unsigned char *der = NULL;
    size_t len = 0;
    int ok = 1, read;

    (void)selection;
    /* Anything may arrive here (PKCS#8, certificates): recognise quietly. */
    ERR_set_mark();
    read = read_der(ctx, cin, &der, &len, DER_READ_MAX);
    ERR_pop_to_mark();
    /* A backend's key file, or the body of a URI reference file handed on by our pem2der. */
    if (read)
        ok = decode_blob(ctx, NULL, der, len, data_cb, data_cbarg, pw_cb, pw_cbarg);
    OPENSSL_free(der);
    return ok;
}

/*
 * PEM to DER for our labels only.  Outputs data, never a reference (see the
 * top of this file); TSS2 files are marked structure "TSS2" so that only the
 * TSS2 decoders look at them.
 */
static int pem2der_decode(void *vctx, OSSL_CORE_BIO *cin, int selection, OSSL_CALLBACK *data_cb,
                          void *data_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    HWKEY_DECODER_CTX *ctx = vctx;
    char *label = NULL;
    unsigned char *data = NULL;
    long len = 0;
    int object_type = OSSL_OBJECT_PKEY;
    OSSL_PARAM params[4], *p = params;
    const char *structure = NULL;
    HWKEY_REF_KIND kind;
    HWKEY_ALG alg;
    int ok = 1, r;

    (void)selection;
    (void)pw_cb;
    (void)pw_cbarg;
    if (!read_pem(ctx, cin, &label, &data, &len))
        goto end;
    /*
     * A label that says "this backend's key file" with a body that is not
     * one is named here, where it is known (the DER decoders would not
     * recognise it as ours and OpenSSL would only say "unsupported").
     */
    r = hwkey_devices_recognise_keyfile(ctx->provctx->devices, label, data, (size_t)len, &kind,
                                        &alg, &structure);
    if (r < 0) {
        hwkey_log_last_error("cannot load the key file");
        ok = 0;
        goto end;
    }
    if (r == 0 && !hwkey_keyref_is_label(label))
        goto end;
    *p++ = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object_type);
    /* The structure the backend's DER decoders are registered under (so only they look). */
    if (structure != NULL)
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_STRUCTURE, (char *)structure,
                                                0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, data, (size_t)len);
    *p = OSSL_PARAM_construct_end();
    ok = data_cb(params, data_cbarg);
end:
    OPENSSL_free(label);
    OPENSSL_clear_free(data, len > 0 ? (size_t)len : 0);
    return ok;
}

/*
 * Called by decoder_construct_pkey() only when hwkey's keymgmt for the type
 * is not available (the catalogue withheld it): the public half, so that
 * `-pubout` still works; any private operation then fails in the other
 * provider, which never gets a private part.
 */
static int decoder_export_object(void *vctx, const void *reference, size_t reference_sz,
                                 OSSL_CALLBACK *export_cb, void *export_cbarg)
{
    (void)vctx;
    return hwkey_objref_export_public(reference, reference_sz, export_cb, export_cbarg);
}

#define DECODER_TABLE(table, newctx_fn, decode_fn)                                                 \
    const OSSL_DISPATCH table[] = {                                                                \
        HWKEY_DECODER_FN(NEWCTX, newctx, newctx_fn),                                               \
        HWKEY_DECODER_FN(FREECTX, freectx, decoder_freectx),                                       \
        HWKEY_DECODER_FN(DECODE, decode, decode_fn),                                               \
        HWKEY_DECODER_FN(EXPORT_OBJECT, export_object, decoder_export_object),                     \
        {0, NULL}}

DECODER_TABLE(hwkey_ec_pem_decoder_functions, ec_newctx, pem_decode);
DECODER_TABLE(hwkey_rsa_pem_decoder_functions, rsa_newctx, pem_decode);
DECODER_TABLE(hwkey_ec_der_decoder_functions, ec_newctx, der_decode);
DECODER_TABLE(hwkey_rsa_der_decoder_functions, rsa_newctx, der_decode);
DECODER_TABLE(hwkey_ed25519_pem_decoder_functions, ed25519_newctx, pem_decode);
DECODER_TABLE(hwkey_ed25519_der_decoder_functions, ed25519_newctx, der_decode);
DECODER_TABLE(hwkey_pem2der_decoder_functions, pem2der_newctx, pem2der_decode);
