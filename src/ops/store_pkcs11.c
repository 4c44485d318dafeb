/*
 * OSSL_STORE loader for RFC 7512 URIs: `openssl pkey -in 'pkcs11:token=t;
 * object=web;type=private'`, `openssl x509 -in 'pkcs11:...;type=cert'`,
 * `OSSL_STORE_open("pkcs11:...")` in any application.
 *
 * What one URI yields, in this order (each only when the URI's type= and
 * the caller's OSSL_STORE_PARAM_EXPECT allow it):
 *   1. the private key (type=private or none; expect PKEY or anything): a
 *      device key handed out by reference, like the decoders (ops/objref.c);
 *   2. a public key (type=public; or expect PUBKEY with any type, where the
 *      public half of a private key or a certificate's key does too; or no
 *      type when no private key matched): a public-only key;
 *   3. the certificate (type=cert or none; expect CERT or anything): DER
 *      from CKA_VALUE as OSSL_OBJECT_CERT.
 * A kind that is absent is skipped quietly; only when nothing at all matched
 * does load fail, with the reason the token gave.  PINs: the URI's
 * pin-value/pin-source, else pkcs11-pin-source, else the application's
 * passphrase callback (openssl's -passin), asked only when a login is needed.
 *
 * export_object refuses to move a private key to another provider, for the
 * same reason as the handle: store (see store_handle.c and
 * docs/traps-openssl.md, "Store loaders"): libcrypto's try_key_ref() would
 * otherwise make a public-only copy in the default provider and lose the
 * private half; the refusal makes it fall back to hwkey's keymgmt.  Public
 * keys, which hold nothing secret, are exported.
 */
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/store.h>

#include "key/key.h"
#include "ops/dispatch.h"
#include "ops/objref.h"
#include "ops/ops.h"
#include "ops/provctx.h"
#include "util/error.h"
#include "util/secmem.h"

#define SCHEME "pkcs11:"

typedef enum { STEP_PRIVATE, STEP_PUBLIC, STEP_CERT, STEP_N } P11_STEP;

/* The URI's type= attribute, read without the device (the backend parses it fully). */
typedef enum { TYPE_NONE, TYPE_PRIVATE, TYPE_PUBLIC, TYPE_CERT, TYPE_OTHER } P11_TYPE;

typedef struct {
    HWKEY_PROVCTX *provctx;
    char *uri;
    P11_TYPE type;
    int expect; /* OSSL_STORE_INFO_*, 0 = anything */
    int step;   /* next P11_STEP to try */
    int found;  /* objects handed out */
    int found_private;
} P11_STORE_CTX;

static OSSL_FUNC_store_open_fn p11store_open;
static OSSL_FUNC_store_settable_ctx_params_fn p11store_settable_ctx_params;
static OSSL_FUNC_store_set_ctx_params_fn p11store_set_ctx_params;
static OSSL_FUNC_store_load_fn p11store_load;
static OSSL_FUNC_store_eof_fn p11store_eof;
static OSSL_FUNC_store_close_fn p11store_close;
static OSSL_FUNC_store_export_object_fn p11store_export_object;

static P11_TYPE uri_type(const char *uri)
{
    static const struct {
        const char *value;
        P11_TYPE type;
    } types[] = {{"private", TYPE_PRIVATE}, {"public", TYPE_PUBLIC}, {"cert", TYPE_CERT}};
    const char *p = uri + strlen(SCHEME);
    size_t path_len = strcspn(p, "?");

    /* Path attributes are ';'-separated; the query (pin-value...) is not looked at. */
    while (path_len > 0) {
        size_t n = strcspn(p, ";?");

        if (n > 5 && strncmp(p, "type=", 5) == 0) {
            for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
                if (n - 5 == strlen(types[i].value) && strncmp(p + 5, types[i].value, n - 5) == 0)
                    return types[i].type;
            return TYPE_OTHER;
        }
        if (n >= path_len)
            break;
        p += n + 1;
        path_len -= n + 1;
    }
    return TYPE_NONE;
}

/* The URI for messages: without its query, which may hold pin-value. */
static int uri_shown_len(const char *uri)
{
    return (int)strcspn(uri, "?");
}

static void *p11store_open(void *provctx, const char *uri)
{
    P11_STORE_CTX *ctx;

    if (uri == NULL || strncmp(uri, SCHEME, strlen(SCHEME)) != 0) {
        hwkey_raise(HWKEY_R_INVALID_URI, "%s: not a pkcs11: URI", uri != NULL ? uri : "(null)");
        return NULL;
    }
    ctx = OPENSSL_zalloc(sizeof(*ctx));
    /* The URI may carry a pin-value: kept in protected memory, wiped at close. */
    if (ctx == NULL || (ctx->uri = hwkey_secmem_strndup(uri, strlen(uri))) == NULL) {
        OPENSSL_free(ctx);
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "opening a pkcs11: store");
        return NULL;
    }
    ctx->provctx = provctx;
    ctx->type = uri_type(uri);
    return ctx;
}

static const OSSL_PARAM *p11store_settable_ctx_params(void *provctx)
{
    (void)provctx;
    return hwkey_store_settable_params();
}

static int p11store_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    return hwkey_store_read_expect(params, &((P11_STORE_CTX *)vctx)->expect);
}

static int step_allowed(const P11_STORE_CTX *ctx, P11_STEP step)
{
    switch (step) {
    case STEP_PRIVATE:
        return (ctx->type == TYPE_NONE || ctx->type == TYPE_PRIVATE) &&
               (ctx->expect == 0 || ctx->expect == OSSL_STORE_INFO_PKEY);
    case STEP_PUBLIC:
        if (ctx->expect == OSSL_STORE_INFO_PUBKEY)
            return ctx->type != TYPE_OTHER;
        return ctx->expect == 0 &&
               (ctx->type == TYPE_PUBLIC || (ctx->type == TYPE_NONE && !ctx->found_private));
    case STEP_CERT:
        return (ctx->type == TYPE_NONE || ctx->type == TYPE_CERT) &&
               (ctx->expect == 0 || ctx->expect == OSSL_STORE_INFO_CERT);
    case STEP_N:
        break;
    }
    return 0;
}

/*
 * After a lookup that found nothing (ERR_set_mark() before it): -1 when the
 * backend said ABSENT (its error dropped: the next kind may match), else 0
 * (the error stays: the token is unreachable, a PIN is wrong ...).  The
 * decision is the backend's typed result, never the error queue's content.
 */
static int absent_or_error(HWKEY_LOOKUP r)
{
    if (r == HWKEY_LOOKUP_ABSENT) {
        ERR_pop_to_mark();
        return -1;
    }
    ERR_clear_last_mark();
    return 0;
}

static int emit_key(P11_STORE_CTX *ctx, HWKEY_KEY *key, OSSL_CALLBACK *cb, void *cbarg)
{
    ctx->found++;
    return hwkey_objref_emit(&key, cb, cbarg);
}

static int load_private(P11_STORE_CTX *ctx, const HWKEY_KEYREF *ref, OSSL_CALLBACK *cb, void *cbarg,
                        OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    HWKEY_KEY *key = NULL;
    HWKEY_LOOKUP r;

    ERR_set_mark();
    r = hwkey_key_find(ctx->provctx->devices, ctx->provctx->swctx, ref, pw_cb, pw_cbarg, &key);
    if (r != HWKEY_LOOKUP_FOUND)
        return absent_or_error(r);
    ERR_clear_last_mark();
    ctx->found_private = 1;
    return emit_key(ctx, key, cb, cbarg);
}

static int load_public(P11_STORE_CTX *ctx, const HWKEY_KEYREF *ref, OSSL_CALLBACK *cb, void *cbarg,
                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    HWKEY_KEY *key = NULL;
    HWKEY_LOOKUP r;

    ERR_set_mark();
    r = hwkey_key_find_public(ctx->provctx->devices, ctx->provctx->swctx, ref, pw_cb, pw_cbarg,
                              &key);
    if (r != HWKEY_LOOKUP_FOUND)
        return absent_or_error(r);
    ERR_clear_last_mark();
    return emit_key(ctx, key, cb, cbarg);
}

static int load_cert(P11_STORE_CTX *ctx, const HWKEY_KEYREF *ref, OSSL_CALLBACK *cb, void *cbarg,
                     OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    int object_type = OSSL_OBJECT_CERT;
    unsigned char *der = NULL;
    size_t derlen = 0;
    OSSL_PARAM params[3];
    HWKEY_LOOKUP r;
    int ok;

    ERR_set_mark();
    r = hwkey_cert_find(ctx->provctx->devices, ref, pw_cb, pw_cbarg, &der, &derlen);
    if (r != HWKEY_LOOKUP_FOUND)
        return absent_or_error(r);
    ERR_clear_last_mark();
    params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object_type);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, der, derlen);
    params[2] = OSSL_PARAM_construct_end();
    ctx->found++;
    ok = cb(params, cbarg);
    OPENSSL_free(der);
    return ok;
}

static int p11store_load(void *vctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                         OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    P11_STORE_CTX *ctx = vctx;
    HWKEY_KEYREF ref = {hwkey_ref_kind_of_string(ctx->uri), (const unsigned char *)ctx->uri,
                        strlen(ctx->uri)};
    int r = -1;

    /*
     * libcrypto (OSSL_STORE_load) counts any 0 as an error, also at the end:
     * the end is 1 with no object, like the default provider's file: store.
     */
    if (ctx->step >= STEP_N)
        return 1;
    while (r < 0 && ctx->step < STEP_N) {
        P11_STEP step = (P11_STEP)ctx->step++;

        if (!step_allowed(ctx, step))
            continue;
        if (step == STEP_PRIVATE)
            r = load_private(ctx, &ref, object_cb, object_cbarg, pw_cb, pw_cbarg);
        else if (step == STEP_PUBLIC)
            r = load_public(ctx, &ref, object_cb, object_cbarg, pw_cb, pw_cbarg);
        else
            r = load_cert(ctx, &ref, object_cb, object_cbarg, pw_cb, pw_cbarg);
    }
    if (r > 0)
        return 1;
    if (r < 0 && ctx->found > 0)
        return 1; /* the end, after what was found */
    if (r < 0)
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND,
                    "nothing in %.*s %s: the token holds no such "
                    "object",
                    uri_shown_len(ctx->uri), ctx->uri,
                    ctx->expect == OSSL_STORE_INFO_CERT     ? "is a certificate"
                    : ctx->expect == OSSL_STORE_INFO_PKEY   ? "is a private key"
                    : ctx->expect == OSSL_STORE_INFO_PUBKEY ? "is a public key"
                                                            : "matches");
    /* An error (OSSL_STORE_error() says so), and nothing more to come. */
    ctx->step = STEP_N;
    return 0;
}

static int p11store_eof(void *vctx)
{
    P11_STORE_CTX *ctx = vctx;

    return ctx->step >= STEP_N;
}

static int p11store_close(void *vctx)
{
    P11_STORE_CTX *ctx = vctx;

    if (ctx != NULL) {
        hwkey_secmem_free(ctx->uri); /* may hold a pin-value: wiped */
        OPENSSL_free(ctx);
    }
    return 1;
}

/* Public keys go anywhere; private keys only to hwkey's keymgmt (top of this file). */
static int p11store_export_object(void *vctx, const void *reference, size_t reference_sz,
                                  OSSL_CALLBACK *export_cb, void *export_cbarg)
{
    P11_STORE_CTX *ctx = vctx;
    HWKEY_KEY *key = hwkey_objref_get(reference, reference_sz);

    if (key == NULL)
        return 0;
    if (!hwkey_key_has_private(key))
        return hwkey_objref_export_public(reference, reference_sz, export_cb, export_cbarg);
    hwkey_raise(HWKEY_R_NO_PRIVATE_KEY,
                "%.*s lives on the token: only hwkey's key management can hold it "
                "(does the property query exclude provider=hwkey?)",
                uri_shown_len(ctx->uri), ctx->uri);
    return 0;
}

const OSSL_DISPATCH hwkey_pkcs11_store_functions[] = {
    HWKEY_STORE_FN(OPEN, open, p11store_open),
    HWKEY_STORE_FN(SETTABLE_CTX_PARAMS, settable_ctx_params, p11store_settable_ctx_params),
    HWKEY_STORE_FN(SET_CTX_PARAMS, set_ctx_params, p11store_set_ctx_params),
    HWKEY_STORE_FN(LOAD, load, p11store_load),
    HWKEY_STORE_FN(EOF, eof, p11store_eof),
    HWKEY_STORE_FN(CLOSE, close, p11store_close),
    HWKEY_STORE_FN(EXPORT_OBJECT, export_object, p11store_export_object),
    {0, NULL}};
