/* RSA key management: the dispatch table and what is particular to RSA. */
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "ops/keymgmt.h"
#include "ops/dispatch.h"
#include "ops/keymgmt_gen.h"
#include "ops/ops.h"

static OSSL_FUNC_keymgmt_load_fn rsa_load;
static OSSL_FUNC_keymgmt_import_fn rsa_import;
static OSSL_FUNC_keymgmt_import_types_fn rsa_import_types;
static OSSL_FUNC_keymgmt_export_types_fn rsa_export_types;
static OSSL_FUNC_keymgmt_gettable_params_fn rsa_gettable_params;
static OSSL_FUNC_keymgmt_query_operation_name_fn rsa_query_operation_name;

static void *rsa_load(const void *reference, size_t reference_sz)
{
    return hwkey_keymgmt_load(HWKEY_ALG_RSA, reference, reference_sz);
}

static int rsa_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    /* RSA has no domain parameters: only a public key makes a key. */
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) == 0)
        selection |= OSSL_KEYMGMT_SELECT_PUBLIC_KEY;
    return hwkey_keymgmt_import("RSA", keydata, selection, params);
}

static const OSSL_PARAM rsa_public_types[] = {OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
                                              OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
                                              OSSL_PARAM_END};

/* Private key selections get no types: hwkey imports and exports no private key. */
static const OSSL_PARAM *rsa_types(int selection)
{
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0)
        return NULL;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0)
        return rsa_public_types;
    return NULL;
}

static const OSSL_PARAM *rsa_import_types(int selection)
{
    return rsa_types(selection);
}

static const OSSL_PARAM *rsa_export_types(int selection)
{
    return rsa_types(selection);
}

static const OSSL_PARAM rsa_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END};

static const OSSL_PARAM *rsa_gettable_params(void *provctx)
{
    (void)provctx;
    return rsa_gettable;
}

/* Signature and asymmetric cipher: hwkey's own name for them (ops.h). */
static const char *rsa_query_operation_name(int operation_id)
{
    (void)operation_id;
    return HWKEY_OPNAME_RSA;
}

const OSSL_DISPATCH hwkey_rsa_keymgmt_functions[] = {
    HWKEY_KEYMGMT_FN(NEW, new, hwkey_keymgmt_new),
    HWKEY_KEYMGMT_FN(FREE, free, hwkey_keymgmt_free),
    HWKEY_KEYMGMT_FN(LOAD, load, rsa_load),
    HWKEY_KEYMGMT_FN(DUP, dup, hwkey_keymgmt_dup),
    HWKEY_KEYMGMT_FN(HAS, has, hwkey_keymgmt_has),
    HWKEY_KEYMGMT_FN(MATCH, match, hwkey_keymgmt_match),
    HWKEY_KEYMGMT_FN(GET_PARAMS, get_params, hwkey_keymgmt_get_params),
    HWKEY_KEYMGMT_FN(GETTABLE_PARAMS, gettable_params, rsa_gettable_params),
    HWKEY_KEYMGMT_FN(IMPORT, import, rsa_import),
    HWKEY_KEYMGMT_FN(IMPORT_TYPES, import_types, rsa_import_types),
    HWKEY_KEYMGMT_FN(EXPORT, export, hwkey_keymgmt_export),
    HWKEY_KEYMGMT_FN(EXPORT_TYPES, export_types, rsa_export_types),
    HWKEY_KEYMGMT_FN(QUERY_OPERATION_NAME, query_operation_name, rsa_query_operation_name),
    HWKEY_KEYMGMT_FN(GEN_INIT, gen_init, hwkey_rsa_gen_init),
    HWKEY_KEYMGMT_FN(GEN_SET_PARAMS, gen_set_params, hwkey_keymgmt_gen_set_params),
    HWKEY_KEYMGMT_FN(GEN_SETTABLE_PARAMS, gen_settable_params, hwkey_rsa_gen_settable_params),
    HWKEY_KEYMGMT_FN(GEN, gen, hwkey_keymgmt_gen),
    HWKEY_KEYMGMT_FN(GEN_CLEANUP, gen_cleanup, hwkey_keymgmt_gen_cleanup),
    {0, NULL}};
