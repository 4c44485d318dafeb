/*
 * Key generation in the device for the EC and RSA keymgmt tables
 * (keymgmt_gen.c): `openssl genpkey -propquery provider=hwkey`, or
 * EVP_PKEY_keygen on a context fetched with "provider=hwkey".  The result is
 * a device key like one loaded from a key file (key/key.h), so hwkey's
 * encoders can write its key file.
 *
 * Generation parameters beyond OpenSSL's own ("group"; "bits", "e"):
 *   HWKEY_GEN_PARAM_URI      "pkcs11:..." where to create the key on a token
 *   HWKEY_GEN_PARAM_PERSIST  "0x81xxxxxx": make the TPM key persistent there
 * (include/hwkey/hwkey.h).  Without them the key is a TSS2 key file's key
 * under the configured TPM parent.
 */
#ifndef HWKEY_OPS_KEYMGMT_GEN_H
#define HWKEY_OPS_KEYMGMT_GEN_H

#include <openssl/core_dispatch.h>

OSSL_FUNC_keymgmt_gen_init_fn hwkey_ec_gen_init;
OSSL_FUNC_keymgmt_gen_init_fn hwkey_rsa_gen_init;
OSSL_FUNC_keymgmt_gen_settable_params_fn hwkey_ec_gen_settable_params;
OSSL_FUNC_keymgmt_gen_settable_params_fn hwkey_rsa_gen_settable_params;
OSSL_FUNC_keymgmt_gen_set_params_fn hwkey_keymgmt_gen_set_params;
OSSL_FUNC_keymgmt_gen_fn hwkey_keymgmt_gen;
OSSL_FUNC_keymgmt_gen_cleanup_fn hwkey_keymgmt_gen_cleanup;

#endif
