/* Provider init, parameters and teardown: tables and init only. */
#include "config.h"
#include "ops/dispatch.h"

#include "provider/provider.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "hwkey/hwkey.h"
#include "util/error.h"
#include "util/log.h"
#include "util/offload.h"

static OSSL_FUNC_provider_teardown_fn hwkey_teardown;
static OSSL_FUNC_provider_gettable_params_fn hwkey_gettable_params;
static OSSL_FUNC_provider_get_params_fn hwkey_get_params;
static OSSL_FUNC_provider_query_operation_fn hwkey_query_operation;
static OSSL_FUNC_provider_get_reason_strings_fn hwkey_get_reason_strings;

static const OSSL_PARAM gettable_params[] = {
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0), OSSL_PARAM_END};

static const OSSL_PARAM *hwkey_gettable_params(void *provctx)
{
    (void)provctx;
    return gettable_params;
}

static int hwkey_get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;

    (void)provctx;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, "hwkey: TPM 2.0 and PKCS#11 keys"))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, HWKEY_VERSION_STR))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, "hwkey " HWKEY_VERSION_STR))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS);
    if (p != NULL && !OSSL_PARAM_set_int(p, 1))
        return 0;
    return 1;
}

static const OSSL_ALGORITHM *hwkey_query_operation(void *provctx, int operation_id, int *no_cache)
{
    *no_cache = 0;
    return hwkey_catalogue_query(provctx, operation_id);
}

static const OSSL_ITEM *hwkey_get_reason_strings(void *provctx)
{
    (void)provctx;
    return hwkey_reason_strings();
}

static void provctx_free(HWKEY_PROVCTX *ctx)
{
    if (ctx == NULL)
        return;
    /* No worker may still be inside a device call of this instance's keys. */
    hwkey_offload_shutdown();
    hwkey_catalogue_free(ctx);
    CRYPTO_THREAD_lock_free(ctx->catalogue_lock);
    hwkey_devices_free(ctx->devices);
    OSSL_PROVIDER_unload(ctx->swdefault);
    OSSL_LIB_CTX_free(ctx->swctx);
    OSSL_LIB_CTX_free(ctx->libctx);
    hwkey_config_clear(&ctx->cfg);
    /* Last: errors raised while tearing down still reach this instance's core. */
    hwkey_error_sink_remove(ctx->errors);
    OPENSSL_free(ctx);
}

static void hwkey_teardown(void *provctx)
{
    provctx_free(provctx);
}

static const OSSL_DISPATCH provider_functions[] = {
    HWKEY_PROVIDER_FN(TEARDOWN, teardown, hwkey_teardown),
    HWKEY_PROVIDER_FN(GETTABLE_PARAMS, gettable_params, hwkey_gettable_params),
    HWKEY_PROVIDER_FN(GET_PARAMS, get_params, hwkey_get_params),
    HWKEY_PROVIDER_FN(QUERY_OPERATION, query_operation, hwkey_query_operation),
    HWKEY_PROVIDER_FN(GET_REASON_STRINGS, get_reason_strings, hwkey_get_reason_strings),
    {0, NULL}};

/* Reads the provider's openssl.cnf section through the core. */
static int read_configuration(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                              HWKEY_CONFIG *cfg)
{
    static const char *const names[] = {
        HWKEY_PARAM_TPM2_TCTI,         HWKEY_PARAM_TPM2_PARENT,    HWKEY_PARAM_PKCS11_MODULE,
        HWKEY_PARAM_PKCS11_PIN_SOURCE, HWKEY_PARAM_PKCS11_QUIRKS,  HWKEY_PARAM_LOG_LEVEL,
        HWKEY_PARAM_BULK_CIPHER,       HWKEY_PARAM_PKCS11_MODULES, HWKEY_PARAM_PKCS11_FAILOVER,
    };
    enum { N = sizeof(names) / sizeof(names[0]) };
    OSSL_FUNC_core_get_params_fn *get_params = NULL;
    char *values[N] = {NULL};
    OSSL_PARAM params[N + 1];

    for (; in->function_id != 0; in++)
        if (in->function_id == OSSL_FUNC_CORE_GET_PARAMS)
            get_params = OSSL_FUNC_core_get_params(in);
    if (get_params != NULL) {
        for (size_t i = 0; i < N; i++)
            params[i] = OSSL_PARAM_construct_utf8_ptr(names[i], &values[i], 0);
        params[N] = OSSL_PARAM_construct_end();
        if (!get_params(handle, params))
            return 0;
        for (size_t i = 0; i < N; i++)
            if (values[i] != NULL && !hwkey_config_set(cfg, names[i], values[i]))
                return 0;
    }
    return hwkey_config_apply_env(cfg);
}

int hwkey_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                        const OSSL_DISPATCH **out, void **provctx)
{
    HWKEY_ERROR_SINK *errors = hwkey_error_sink_add(handle, in);
    HWKEY_PROVCTX *ctx;

    ctx = OPENSSL_zalloc(sizeof(*ctx));
    if (ctx == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating the provider context");
        hwkey_error_sink_remove(errors);
        return 0;
    }
    ctx->errors = errors;
    ctx->core = handle;
    ctx->catalogue_lock = CRYPTO_THREAD_lock_new();
    if (ctx->catalogue_lock == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a lock");
        goto err;
    }
    if (!read_configuration(handle, in, &ctx->cfg)) {
        const char *why = NULL;
        int flags = 0;

        /* openssl(1) and servers drop a provider's init error silently: say it once. */
        ERR_peek_last_error_data(&why, &flags);
        hwkey_log(HWKEY_LOG_ERROR, "provider not started: %s",
                  (flags & ERR_TXT_STRING) != 0 && why != NULL ? why : "invalid configuration");
        goto err;
    }
    ctx->libctx = OSSL_LIB_CTX_new_from_dispatch(handle, in);
    ctx->swctx = OSSL_LIB_CTX_new();
    if (ctx->libctx == NULL || ctx->swctx == NULL ||
        (ctx->swdefault = OSSL_PROVIDER_load(ctx->swctx, "default")) == NULL) {
        hwkey_raise(HWKEY_R_INTERNAL, "cannot create the software library context");
        goto err;
    }
    ctx->devices = hwkey_devices_new(&ctx->cfg);
    if (ctx->devices == NULL)
        goto err;
    hwkey_log(HWKEY_LOG_INFO, "provider %s initialised", HWKEY_VERSION_STR);
    *out = provider_functions;
    *provctx = ctx;
    return 1;
err:
    provctx_free(ctx);
    return 0;
}
