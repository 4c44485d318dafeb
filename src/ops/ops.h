/*
 * Dispatch tables of every operation hwkey implements; the provider's
 * catalogue (src/provider/catalogue.c) lists them.
 */
#ifndef HWKEY_OPS_OPS_H
#define HWKEY_OPS_OPS_H

#include <openssl/core_dispatch.h>

/*
 * The names hwkey's keymgmt gives for the operations on its keys
 * (query_operation_name).  They are hwkey's alone, registered next to the
 * usual "ECDSA", "RSA", "ECDH", "ED25519": OpenSSL 3.0 first fetches the
 * operation by that name from any provider and, when the default provider's
 * comes back, tries to export the key to it, which a device key refuses;
 * only then does it use the key's own provider.  libssl does that on every
 * handshake (EVP_PKEY_digestsign_supports_digest, then EVP_DigestSignInit_ex).
 * With a name only hwkey implements the first fetch finds hwkey at once and
 * nothing is exported.  docs/traps-openssl.md, issue 7.16.
 */
#define HWKEY_OPNAME_ECDSA "HWKEY-ECDSA"
#define HWKEY_OPNAME_ECDH "HWKEY-ECDH"
#define HWKEY_OPNAME_RSA "HWKEY-RSA"
#define HWKEY_OPNAME_ED25519 "HWKEY-ED25519"

/* keymgmt_ec.c, keymgmt_rsa.c */
extern const OSSL_DISPATCH hwkey_ec_keymgmt_functions[];
extern const OSSL_DISPATCH hwkey_rsa_keymgmt_functions[];
/* signature_ecdsa.c, signature_rsa.c */
extern const OSSL_DISPATCH hwkey_ecdsa_signature_functions[];
extern const OSSL_DISPATCH hwkey_rsa_signature_functions[];
/* asym_cipher_rsa.c */
extern const OSSL_DISPATCH hwkey_rsa_asym_cipher_functions[];
/* keyexch_ecdh.c */
extern const OSSL_DISPATCH hwkey_ecdh_keyexch_functions[];
/* decoder.c: TSS2 PRIVATE KEY (PEM and DER) and pkcs11 URI reference files */
extern const OSSL_DISPATCH hwkey_ec_pem_decoder_functions[];
extern const OSSL_DISPATCH hwkey_rsa_pem_decoder_functions[];
extern const OSSL_DISPATCH hwkey_ec_der_decoder_functions[];
extern const OSSL_DISPATCH hwkey_rsa_der_decoder_functions[];
/* decoder.c: "DER" from our PEM labels, for the 'file:' store's decoder chain */
extern const OSSL_DISPATCH hwkey_pem2der_decoder_functions[];
/* store_handle.c: handle:0x81xxxxxx */
extern const OSSL_DISPATCH hwkey_handle_store_functions[];
/* encoder.c: a device key's file (TSS2 PEM/DER or reference file) and its text form */
extern const OSSL_DISPATCH hwkey_privkey_pem_encoder_functions[];
extern const OSSL_DISPATCH hwkey_privkey_der_encoder_functions[];
extern const OSSL_DISPATCH hwkey_text_encoder_functions[];
/* store_pkcs11.c: pkcs11: URIs (private keys, public keys, certificates) */
extern const OSSL_DISPATCH hwkey_pkcs11_store_functions[];
/* keymgmt_ed25519.c, signature_eddsa.c: only where a device has EdDSA */
extern const OSSL_DISPATCH hwkey_ed25519_keymgmt_functions[];
extern const OSSL_DISPATCH hwkey_ed25519_signature_functions[];
/* decoder.c: Ed25519 keys named by reference files */
extern const OSSL_DISPATCH hwkey_ed25519_pem_decoder_functions[];
extern const OSSL_DISPATCH hwkey_ed25519_der_decoder_functions[];
/* cipher_aes_gcm.c: AES-256-GCM on src/bulk, only under provider=hwkey (docs/bulk.md) */
extern const OSSL_DISPATCH hwkey_aes256gcm_cipher_functions[];

#endif
