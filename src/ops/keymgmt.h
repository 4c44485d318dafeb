/*
 * Key management shared by the EC and RSA keymgmt tables (keymgmt_ec.c,
 * keymgmt_rsa.c).  Keydata is a HWKEY_KEY * (see key/key.h for the load
 * contract with the decoders).  Everything public is delegated to the
 * cached software key key->pub in the provider's swctx; nothing private is
 * ever exported: a private-key selection makes export fail, so OpenSSL runs
 * private operations here instead of handing a half key to another provider.
 */
#ifndef HWKEY_OPS_KEYMGMT_H
#define HWKEY_OPS_KEYMGMT_H

#include <openssl/core_dispatch.h>

#include "backend/backend.h"

/* Functions common to both tables, declared through OpenSSL's typedefs. */
OSSL_FUNC_keymgmt_new_fn hwkey_keymgmt_new;
OSSL_FUNC_keymgmt_free_fn hwkey_keymgmt_free;
OSSL_FUNC_keymgmt_dup_fn hwkey_keymgmt_dup;
OSSL_FUNC_keymgmt_has_fn hwkey_keymgmt_has;
OSSL_FUNC_keymgmt_match_fn hwkey_keymgmt_match;
OSSL_FUNC_keymgmt_get_params_fn hwkey_keymgmt_get_params;
OSSL_FUNC_keymgmt_export_fn hwkey_keymgmt_export;
/* EC: the encoded point of a public-only key (EVP_PKEY_set1_encoded_public_key). */
OSSL_FUNC_keymgmt_set_params_fn hwkey_keymgmt_ec_set_params;
/* load and import need to know which table called them. */
void *hwkey_keymgmt_load(HWKEY_ALG alg, const void *reference, size_t reference_sz);
/* type: "EC" or "RSA", the software keymgmt that builds the public key. */
int hwkey_keymgmt_import(const char *type, void *keydata, int selection, const OSSL_PARAM params[]);

#endif
