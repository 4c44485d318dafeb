/* EC key management: the dispatch table and what is particular to EC. */
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "ops/keymgmt.h"
#include "ops/dispatch.h"
#include "ops/keymgmt_gen.h"
#include "ops/ops.h"

static OSSL_FUNC_keymgmt_load_fn ec_load;
static OSSL_FUNC_keymgmt_import_fn ec_import;
static OSSL_FUNC_keymgmt_import_types_fn ec_import_types;
static OSSL_FUNC_keymgmt_export_types_fn ec_export_types;
static OSSL_FUNC_keymgmt_gettable_params_fn ec_gettable_params;
static OSSL_FUNC_keymgmt_settable_params_fn ec_settable_params;
static OSSL_FUNC_keymgmt_query_operation_name_fn ec_query_operation_name;

static void *ec_load(const void *reference, size_t reference_sz)
{
    return hwkey_keymgmt_load(HWKEY_ALG_EC, reference, reference_sz);
}

static int ec_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    return hwkey_keymgmt_import("EC", keydata, selection, params);
}

static const OSSL_PARAM ec_domain_types[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0), OSSL_PARAM_END};

static const OSSL_PARAM ec_public_types[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0), OSSL_PARAM_END};

/* Private key selections get no types: hwkey imports and exports no private key. */
static const OSSL_PARAM *ec_types(int selection)
{
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0)
        return NULL;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0)
        return ec_public_types;
    if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) != 0)
        return ec_domain_types;
    return NULL;
}

static const OSSL_PARAM *ec_import_types(int selection)
{
    return ec_types(selection);
}

static const OSSL_PARAM *ec_export_types(int selection)
{
    return ec_types(selection);
}

static const OSSL_PARAM ec_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_EC_PUB_X, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_EC_PUB_Y, NULL, 0),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS, NULL),
    OSSL_PARAM_END};

static const OSSL_PARAM *ec_gettable_params(void *provctx)
{
    (void)provctx;
    return ec_gettable;
}

static const OSSL_PARAM ec_settable[] = {
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0), OSSL_PARAM_END};

static const OSSL_PARAM *ec_settable_params(void *provctx)
{
    (void)provctx;
    return ec_settable;
}

/* The operations are ECDSA and ECDH (under hwkey's own names, ops.h), not the key type. */
static const char *ec_query_operation_name(int operation_id)
{
    switch (operation_id) {
    case OSSL_OP_SIGNATURE:
        return HWKEY_OPNAME_ECDSA;
    case OSSL_OP_KEYEXCH:
        return HWKEY_OPNAME_ECDH;
    }
    return NULL;
}

const OSSL_DISPATCH hwkey_ec_keymgmt_functions[] = {
    HWKEY_KEYMGMT_FN(NEW, new, hwkey_keymgmt_new),
    HWKEY_KEYMGMT_FN(FREE, free, hwkey_keymgmt_free),
    HWKEY_KEYMGMT_FN(LOAD, load, ec_load),
    HWKEY_KEYMGMT_FN(DUP, dup, hwkey_keymgmt_dup),
    HWKEY_KEYMGMT_FN(HAS, has, hwkey_keymgmt_has),
    HWKEY_KEYMGMT_FN(MATCH, match, hwkey_keymgmt_match),
    HWKEY_KEYMGMT_FN(GET_PARAMS, get_params, hwkey_keymgmt_get_params),
    HWKEY_KEYMGMT_FN(GETTABLE_PARAMS, gettable_params, ec_gettable_params),
    HWKEY_KEYMGMT_FN(SET_PARAMS, set_params, hwkey_keymgmt_ec_set_params),
    HWKEY_KEYMGMT_FN(SETTABLE_PARAMS, settable_params, ec_settable_params),
    HWKEY_KEYMGMT_FN(IMPORT, import, ec_import),
    HWKEY_KEYMGMT_FN(IMPORT_TYPES, import_types, ec_import_types),
    HWKEY_KEYMGMT_FN(EXPORT, export, hwkey_keymgmt_export),
    HWKEY_KEYMGMT_FN(EXPORT_TYPES, export_types, ec_export_types),
    HWKEY_KEYMGMT_FN(QUERY_OPERATION_NAME, query_operation_name, ec_query_operation_name),
    HWKEY_KEYMGMT_FN(GEN_INIT, gen_init, hwkey_ec_gen_init),
    HWKEY_KEYMGMT_FN(GEN_SET_PARAMS, gen_set_params, hwkey_keymgmt_gen_set_params),
    HWKEY_KEYMGMT_FN(GEN_SETTABLE_PARAMS, gen_settable_params, hwkey_ec_gen_settable_params),
    HWKEY_KEYMGMT_FN(GEN, gen, hwkey_keymgmt_gen),
    HWKEY_KEYMGMT_FN(GEN_CLEANUP, gen_cleanup, hwkey_keymgmt_gen_cleanup),
    {0, NULL}};
