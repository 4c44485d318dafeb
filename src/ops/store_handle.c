/*
 * OSSL_STORE loader for persistent TPM keys: "handle:0x81000002".
 *
 * One object per URI: load resolves the handle on the TPM and hands the key
 * out as an OSSL_OBJECT_PKEY reference, exactly like the decoders
 * (ops/objref.c).  libcrypto 3.0's try_key_ref() (crypto/store/store_result.c)
 * then fetches a keymgmt by type and property query, which with the default
 * provider loaded usually is the default provider's; it asks our
 * export_object to move the key there, and only when that yields nothing does
 * it fall back to the keymgmt of the loader's own provider: ours.  So
 * export_object refuses: a public-only copy in the default provider would
 * "succeed" and lose the private key (docs/traps-openssl.md).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/store.h>

#include "hwkey/hwkey.h"
#include "ops/dispatch.h"
#include "key/key.h"
#include "ops/objref.h"
#include "ops/ops.h"
#include "ops/provctx.h"
#include "util/error.h"

#define HANDLE_MIN 0x81000000UL
#define HANDLE_MAX 0x81FFFFFFUL

typedef struct {
    HWKEY_PROVCTX *provctx;
    char *uri;
    int expect; /* OSSL_STORE_INFO_*, 0 = anything */
    int eof;
} HWKEY_STORE_CTX;

static OSSL_FUNC_store_open_fn handle_open;
static OSSL_FUNC_store_settable_ctx_params_fn handle_settable_ctx_params;
static OSSL_FUNC_store_set_ctx_params_fn handle_set_ctx_params;
static OSSL_FUNC_store_load_fn handle_load;
static OSSL_FUNC_store_eof_fn handle_eof;
static OSSL_FUNC_store_close_fn handle_close;
static OSSL_FUNC_store_export_object_fn handle_export_object;

/*
 * "handle:0x81000002" (0x prefix required, 1..8 hex digits, persistent
 * range), optionally with tpm2-openssl's "?pass": the key has an auth value,
 * asked through the passphrase callback before the TPM is used.
 */
static int handle_uri_valid(const char *uri)
{
    static const char pass_suffix[] = "?pass";
    const char *hex = uri + strlen(HWKEY_HANDLE_SCHEME ":");
    char digits[9];
    char *end = NULL;
    size_t n;
    unsigned long v;

    if (strncmp(uri, HWKEY_HANDLE_SCHEME ":", strlen(HWKEY_HANDLE_SCHEME ":")) != 0)
        return 0;
    if (hex[0] != '0' || (hex[1] != 'x' && hex[1] != 'X'))
        return 0;
    hex += 2;
    n = strlen(hex);
    if (n > sizeof(pass_suffix) - 1 &&
        strcmp(hex + n - (sizeof(pass_suffix) - 1), pass_suffix) == 0)
        n -= sizeof(pass_suffix) - 1;
    if (n == 0 || n > 8)
        return 0;
    memcpy(digits, hex, n);
    digits[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)digits[i]))
            return 0;
    v = strtoul(digits, &end, 16);
    return *end == '\0' && v >= HANDLE_MIN && v <= HANDLE_MAX;
}

static void *handle_open(void *provctx, const char *uri)
{
    HWKEY_STORE_CTX *ctx;

    if (uri == NULL || !handle_uri_valid(uri)) {
        hwkey_raise(HWKEY_R_INVALID_URI,
                    "%s: expected handle:0x81000000..0x81FFFFFF, optionally with ?pass "
                    "(the key has an auth value)",
                    uri != NULL ? uri : "(null)");
        return NULL;
    }
    ctx = OPENSSL_zalloc(sizeof(*ctx));
    if (ctx == NULL || (ctx->uri = OPENSSL_strdup(uri)) == NULL) {
        OPENSSL_free(ctx);
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "opening %s", uri);
        return NULL;
    }
    ctx->provctx = provctx;
    return ctx;
}

static const OSSL_PARAM *handle_settable_ctx_params(void *provctx)
{
    (void)provctx;
    return hwkey_store_settable_params();
}

static int handle_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    return hwkey_store_read_expect(params, &((HWKEY_STORE_CTX *)vctx)->expect);
}

static int handle_load(void *vctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    HWKEY_STORE_CTX *ctx = vctx;
    HWKEY_KEYREF ref;
    HWKEY_KEY *key;

    /*
     * OpenSSL 3.0 records a 0 from load as an error even at the end of the
     * data: the end and "nothing for this caller" return 1 with no object.
     */
    if (ctx->eof)
        return 1;
    ctx->eof = 1;
    /* A handle holds a key pair: nothing to give a caller that wants certificates. */
    if (ctx->expect != 0 && ctx->expect != OSSL_STORE_INFO_PKEY &&
        ctx->expect != OSSL_STORE_INFO_PUBKEY)
        return 1;
    ref.kind = hwkey_ref_kind_of_string(ctx->uri);
    ref.data = (const unsigned char *)ctx->uri;
    ref.len = strlen(ctx->uri);
    key = hwkey_key_load(ctx->provctx->devices, ctx->provctx->swctx, &ref, pw_cb, pw_cbarg);
    /*
     * A failure is also the end: openssl(1)'s load loop (apps.c) calls load
     * again until eof, and each call would ask the passphrase again and use
     * the TPM again (seen: endless prompts, and a DA strike per wrong try).
     */
    if (key == NULL)
        return 0;
    return hwkey_objref_emit(&key, object_cb, object_cbarg);
}

static int handle_eof(void *vctx)
{
    return ((HWKEY_STORE_CTX *)vctx)->eof;
}

static int handle_close(void *vctx)
{
    HWKEY_STORE_CTX *ctx = vctx;

    if (ctx != NULL) {
        OPENSSL_free(ctx->uri);
        OPENSSL_free(ctx);
    }
    return 1;
}

/* Refuses on purpose; see the top of this file.  The error is dropped by
 * libcrypto when its fallback to hwkey's keymgmt succeeds. */
static int handle_export_object(void *vctx, const void *reference, size_t reference_sz,
                                OSSL_CALLBACK *export_cb, void *export_cbarg)
{
    HWKEY_STORE_CTX *ctx = vctx;

    (void)reference;
    (void)reference_sz;
    (void)export_cb;
    (void)export_cbarg;
    hwkey_raise(HWKEY_R_NO_PRIVATE_KEY,
                "%s lives in the TPM: only hwkey's key management can hold it "
                "(does the property query exclude provider=hwkey?)",
                ctx->uri);
    return 0;
}

const OSSL_DISPATCH hwkey_handle_store_functions[] = {
    HWKEY_STORE_FN(OPEN, open, handle_open),
    HWKEY_STORE_FN(SETTABLE_CTX_PARAMS, settable_ctx_params, handle_settable_ctx_params),
    HWKEY_STORE_FN(SET_CTX_PARAMS, set_ctx_params, handle_set_ctx_params),
    HWKEY_STORE_FN(LOAD, load, handle_load),
    HWKEY_STORE_FN(EOF, eof, handle_eof),
    HWKEY_STORE_FN(CLOSE, close, handle_close),
    HWKEY_STORE_FN(EXPORT_OBJECT, export_object, handle_export_object),
    {0, NULL}};
