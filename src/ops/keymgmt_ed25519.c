/*
 * Ed25519 key management: the dispatch table and what is particular to
 * Ed25519 (no domain parameters; a public key is its 32-byte "pub").
 * Offered only where a device signs with EdDSA (catalogue: needs
 * HWKEY_ALG_ED25519): PKCS#11 tokens with CKM_EDDSA; TPMs have none.
 */
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "ops/keymgmt.h"
#include "ops/dispatch.h"
#include "ops/ops.h"

static OSSL_FUNC_keymgmt_load_fn ed25519_load;
static OSSL_FUNC_keymgmt_import_fn ed25519_import;
static OSSL_FUNC_keymgmt_import_types_fn ed25519_import_types;
static OSSL_FUNC_keymgmt_export_types_fn ed25519_export_types;
static OSSL_FUNC_keymgmt_gettable_params_fn ed25519_gettable_params;
static OSSL_FUNC_keymgmt_query_operation_name_fn ed25519_query_operation_name;

static void *ed25519_load(const void *reference, size_t reference_sz)
{
    return hwkey_keymgmt_load(HWKEY_ALG_ED25519, reference, reference_sz);
}

static int ed25519_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    /* No domain parameters: only a public key makes a key. */
    return hwkey_keymgmt_import("ED25519", keydata, selection | OSSL_KEYMGMT_SELECT_PUBLIC_KEY,
                                params);
}

static const OSSL_PARAM ed25519_public_types[] = {
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0), OSSL_PARAM_END};

/* Private key selections get no types: hwkey imports and exports no private key. */
static const OSSL_PARAM *ed25519_types(int selection)
{
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0)
        return NULL;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0)
        return ed25519_public_types;
    return NULL;
}

static const OSSL_PARAM *ed25519_import_types(int selection)
{
    return ed25519_types(selection);
}

static const OSSL_PARAM *ed25519_export_types(int selection)
{
    return ed25519_types(selection);
}

/*
 * What OpenSSL's own Ed25519 keymgmt answers, from the cached public key.
 * "mandatory-digest" (empty) is what tells libssl and X.509 signing to
 * pass no digest to an EdDSA signature.
 */
static const OSSL_PARAM ed25519_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_MANDATORY_DIGEST, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END};

static const OSSL_PARAM *ed25519_gettable_params(void *provctx)
{
    (void)provctx;
    return ed25519_gettable;
}

static const char *ed25519_query_operation_name(int operation_id)
{
    return operation_id == OSSL_OP_SIGNATURE ? HWKEY_OPNAME_ED25519 : NULL; /* ops.h */
}

const OSSL_DISPATCH hwkey_ed25519_keymgmt_functions[] = {
    HWKEY_KEYMGMT_FN(NEW, new, hwkey_keymgmt_new),
    HWKEY_KEYMGMT_FN(FREE, free, hwkey_keymgmt_free),
    HWKEY_KEYMGMT_FN(LOAD, load, ed25519_load),
    HWKEY_KEYMGMT_FN(DUP, dup, hwkey_keymgmt_dup),
    HWKEY_KEYMGMT_FN(HAS, has, hwkey_keymgmt_has),
    HWKEY_KEYMGMT_FN(MATCH, match, hwkey_keymgmt_match),
    HWKEY_KEYMGMT_FN(GET_PARAMS, get_params, hwkey_keymgmt_get_params),
    HWKEY_KEYMGMT_FN(GETTABLE_PARAMS, gettable_params, ed25519_gettable_params),
    HWKEY_KEYMGMT_FN(IMPORT, import, ed25519_import),
    HWKEY_KEYMGMT_FN(IMPORT_TYPES, import_types, ed25519_import_types),
    HWKEY_KEYMGMT_FN(EXPORT, export, hwkey_keymgmt_export),
    HWKEY_KEYMGMT_FN(EXPORT_TYPES, export_types, ed25519_export_types),
    HWKEY_KEYMGMT_FN(QUERY_OPERATION_NAME, query_operation_name, ed25519_query_operation_name),
    {0, NULL}};
