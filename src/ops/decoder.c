/*
 * Decoders for device key files: "TSS2 PRIVATE KEY" (PEM and DER) and PEM
 * reference files that hold a key URI ("PKCS#11 PROVIDER URI", as written by
 * pkcs11-provider, and hwkey's own "HWKEY KEY URI").
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
#include "util/tss2_keyfile.h"

/* Our PEM labels.  HWKEY_PEM_KEY_URI carries handle: as well as pkcs11: URIs. */
#define LABEL_TSS2 HWKEY_PEM_TSS2_PRIVATE_KEY
#define LABEL_P11_URI HWKEY_PEM_PKCS11_URI
#define LABEL_KEY_URI HWKEY_PEM_KEY_URI

#define URI_MAX HWKEY_KEYREF_URI_MAX

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

/* --- recognising our formats without raising anything ------------------- */

/*
 * TPMKey ::= SEQUENCE { type OBJECT IDENTIFIER 2.23.133.10.1.{3,4,5}, ... }:
 * the OID's content octets are 67 81 05 0A 01 0x.
 */
static int tss2_der_is_ours(const unsigned char *der, size_t len)
{
    static const unsigned char oid_prefix[] = {0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01};
    const unsigned char *p = der;
    long inner_len;
    int tag, xclass;

    if (len < 2 || len > HWKEY_TSS2_KEYFILE_MAX)
        return 0;
    /* 0x80 = error bit; a truncated body (0x80 too) is still ours: decode names it. */
    if ((ASN1_get_object(&p, &inner_len, &tag, &xclass, (long)len) & 0x20) == 0 ||
        tag != V_ASN1_SEQUENCE || xclass != V_ASN1_UNIVERSAL)
        return 0;
    if ((size_t)(p - der) + sizeof(oid_prefix) + 1 > len)
        return 0;
    return memcmp(p, oid_prefix, sizeof(oid_prefix)) == 0 && p[sizeof(oid_prefix)] >= 3 &&
           p[sizeof(oid_prefix)] <= 5;
}

/*
 * Checks a TSS2 key file before any device is asked (a corrupt file is named
 * as such even when no TPM answers) and reads the key type from its
 * TPM2B_PUBLIC (size, then TPMT_PUBLIC.type: TPM2_ALG_RSA 0x0001,
 * TPM2_ALG_ECC 0x0023), so that the decoder of the other type neither
 * touches the device nor asks for the auth value a second time.  *alg = 0
 * when the file cannot say; the type is checked again after loading.
 */
static int tss2_der_check(const unsigned char *der, size_t len, HWKEY_ALG *alg)
{
    HWKEY_TSS2_KEYFILE kf;

    memset(&kf, 0, sizeof(kf));
    *alg = 0;
    if (!hwkey_tss2_keyfile_decode(der, len, &kf))
        return 0;
    if (kf.pubkey_len >= 4) {
        unsigned int type = ((unsigned int)kf.pubkey[2] << 8) | kf.pubkey[3];

        *alg = type == 0x0001 ? HWKEY_ALG_RSA : type == 0x0023 ? HWKEY_ALG_EC : 0;
    }
    hwkey_tss2_keyfile_clear(&kf);
    return 1;
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

/* One PEM block or DER blob that may be ours. */
static int decode_blob(HWKEY_DECODER_CTX *ctx, const char *label, const unsigned char *data,
                       size_t len, OSSL_CALLBACK *data_cb, void *data_cbarg,
                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    HWKEY_KEYREF ref;
    char uribuf[URI_MAX + 1];
    const char *uri;
    size_t uri_len;
    HWKEY_ALG hint;

    memset(&ref, 0, sizeof(ref));
    /* label NULL: DER that der_decode recognised as a TSS2 key file. */
    if (label == NULL || strcmp(label, LABEL_TSS2) == 0) {
        if (len > HWKEY_TSS2_KEYFILE_MAX) {
            hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "TSS2 key file of %zu bytes (at most %d)", len,
                        HWKEY_TSS2_KEYFILE_MAX);
            return 0;
        }
        if (!tss2_der_check(data, len, &hint))
            return 0;
        ref.kind = HWKEY_REF_TSS2_KEYFILE;
        ref.data = data;
        ref.len = len;
        return resolve_and_emit(ctx, &ref, hint, data_cb, data_cbarg, pw_cb, pw_cbarg);
    }
    if (strcmp(label, LABEL_P11_URI) != 0 && strcmp(label, LABEL_KEY_URI) != 0)
        return 1;
    if (!hwkey_keyref_uri_parse(data, len, &uri, &uri_len) ||
        !uri_to_ref(uri, uri_len, &ref, uribuf, sizeof(uribuf)) ||
        (strcmp(label, LABEL_P11_URI) == 0 && ref.kind != HWKEY_REF_PKCS11_URI)) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "\"%s\" PEM block holds no pkcs11: or handle: URI",
                    label);
        return 0;
    }
    return resolve_and_emit(ctx, &ref, 0, data_cb, data_cbarg, pw_cb, pw_cbarg);
}

static int is_our_label(const char *label)
{
    return strcmp(label, LABEL_TSS2) == 0 || strcmp(label, LABEL_P11_URI) == 0 ||
           strcmp(label, LABEL_KEY_URI) == 0;
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
    if (read_pem(ctx, cin, &label, &data, &len) && is_our_label(label))
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
    const char *uri;
    size_t len = 0, uri_len;
    int is_tss2 = 0, is_uri = 0, ok = 1;

    (void)selection;
    /* Anything may arrive here (PKCS#8, certificates): recognise quietly. */
    ERR_set_mark();
    if (read_der(ctx, cin, &der, &len, HWKEY_TSS2_KEYFILE_MAX)) {
        is_tss2 = tss2_der_is_ours(der, len > HWKEY_TSS2_KEYFILE_MAX ? 64 : len);
        is_uri = !is_tss2 && hwkey_keyref_uri_parse(der, len, &uri, &uri_len);
    }
    ERR_pop_to_mark();
    if (is_tss2)
        ok = decode_blob(ctx, NULL, der, len, data_cb, data_cbarg, pw_cb, pw_cbarg);
    else if (is_uri)
        /* The body of a URI reference file, handed on by our pem2der. */
        ok = decode_blob(ctx, LABEL_KEY_URI, der, len, data_cb, data_cbarg, pw_cb, pw_cbarg);
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
    int ok = 1;

    (void)selection;
    (void)pw_cb;
    (void)pw_cbarg;
    if (!read_pem(ctx, cin, &label, &data, &len) || !is_our_label(label))
        goto end;
    if (strcmp(label, LABEL_TSS2) == 0) {
        HWKEY_ALG ignored;

        /*
         * The label says this is a TPM key file: if its body is not one, say
         * so here, where it is known (the DER decoders would not recognise
         * it as ours and OpenSSL would only say "unsupported").
         */
        if ((size_t)len > HWKEY_TSS2_KEYFILE_MAX || !tss2_der_check(data, (size_t)len, &ignored)) {
            if ((size_t)len > HWKEY_TSS2_KEYFILE_MAX)
                hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "TSS2 key file of %ld bytes (at most %d)",
                            len, HWKEY_TSS2_KEYFILE_MAX);
            hwkey_log_last_error("cannot load the key file");
            ok = 0;
            goto end;
        }
    }
    *p++ = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object_type);
    if (strcmp(label, LABEL_TSS2) == 0)
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_STRUCTURE, "TSS2", 0);
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
