/*
 * The backend-neutral key object behind every EVP_PKEY of hwkey's keymgmt.
 *
 * A key is either a device key (bkey != NULL: private operations go to the
 * device) or a public-only key (imported from another provider, e.g. the
 * certificate's key when libssl checks that key and certificate match).
 * The public half is always cached as a software EVP_PKEY in the provider's
 * own library context, which holds only OpenSSL's default provider, so
 * verification and encryption never reach the device nor recurse into hwkey.
 */
#ifndef HWKEY_KEY_KEY_H
#define HWKEY_KEY_KEY_H

#include <openssl/evp.h>

#include "backend/backend.h"

/*
 * Contract between the decoders/stores (ops/decoder.c, ops/store_handle.c)
 * and keymgmt (ops/keymgmt*.c):
 *
 * A decoder or store hands a device key to OpenSSL with an object callback
 * whose OSSL_OBJECT_PARAM_REFERENCE is the address of a `HWKEY_KEY *`
 * variable (reference size == sizeof(HWKEY_KEY *)), OSSL_OBJECT_PARAM_TYPE
 * OSSL_OBJECT_PKEY and OSSL_OBJECT_PARAM_DATA_TYPE "EC" or "RSA".  keymgmt's
 * OSSL_FUNC_keymgmt_load takes over that reference: it returns the key as
 * its keydata and sets the variable to NULL.  After the callback returns,
 * the decoder frees whatever is still in the variable with hwkey_key_free()
 * (the load did not happen, e.g. no keymgmt matched).  Keydata of both EC
 * and RSA keymgmt is a HWKEY_KEY *.
 */

typedef struct hwkey_key {
    int refcount;        /* atomic, CRYPTO_atomic_add */
    CRYPTO_RWLOCK *lock; /* for the refcount where atomics are emulated */
    HWKEY_BKEY *bkey;    /* NULL: public-only key */
    EVP_PKEY *pub;       /* software public key in the provider's swctx */
    HWKEY_ALG alg;
    int bits;
    int curve_nid;       /* EC */
    OSSL_LIB_CTX *swctx; /* where pub lives and import() builds it; not owned */
    /*
     * A copy of the reference the key was loaded from (kind 0 / data NULL
     * for public-only keys), so encoders can write the key file back out:
     * TSS2 key-file DER, "handle:0x81..." or a "pkcs11:..." URI (without any
     * pin-value, see hwkey_key_load).  Owned; freed with the key.
     */
    HWKEY_REFBLOB ref;
} HWKEY_KEY;

/*
 * Resolves ref on the device of its kind, caches the public key and keeps a
 * copy of ref in key->ref.  swctx: the provider's software-only library
 * context.
 */
HWKEY_KEY *hwkey_key_load(HWKEY_DEVICES *devs, OSSL_LIB_CTX *swctx, const HWKEY_KEYREF *ref,
                          OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg);
/* The same, saying whether the device holds no such key (HWKEY_LOOKUP). */
HWKEY_LOOKUP hwkey_key_find(HWKEY_DEVICES *devs, OSSL_LIB_CTX *swctx, const HWKEY_KEYREF *ref,
                            OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_KEY **out);
/* A public-only key around pub (takes ownership of pub). */
HWKEY_KEY *hwkey_key_from_public(EVP_PKEY *pub);
/*
 * An empty key (no public, no device half): what keymgmt's new() returns
 * before import() fills it with hwkey_key_set_public().
 */
HWKEY_KEY *hwkey_key_new(OSSL_LIB_CTX *swctx);
/* Gives an empty key its public half (takes ownership of pub, also on failure). */
int hwkey_key_set_public(HWKEY_KEY *key, EVP_PKEY *pub);
int hwkey_key_up_ref(HWKEY_KEY *key);
void hwkey_key_free(HWKEY_KEY *key);

/* 1 if key can do the private operation named by flag (HWKEY_KEYF_*). */
int hwkey_key_can(const HWKEY_KEY *key, unsigned int flag);

/*
 * The only route from an operation (ops/) to a device.  ops/ never reads
 * key->bkey nor calls the backend: it asks key/.
 *
 * hwkey_key_has_private: 1 if the device holds the private half (a loaded
 * device key), 0 for a public-only key; raises nothing (keymgmt's has()).
 *
 * hwkey_key_require_private: the one "public-only key" check.  Returns 1
 * for a device key; for a public-only key raises HWKEY_R_NO_PRIVATE_KEY
 * once ("this EC key is public only (...): it cannot <what>") and returns
 * 0.  Operations call it at init, to fail before any data flows, and the
 * four private operations below call it again, so no path reaches a
 * backend with a public-only key.
 */
int hwkey_key_has_private(const HWKEY_KEY *key);
int hwkey_key_require_private(const HWKEY_KEY *key, const char *what);
/* OpenSSL's key type name of alg ("EC", "RSA", "ED25519"), NULL for none. */
const char *hwkey_key_alg_name(HWKEY_ALG alg);

/*
 * Private-key operations (backend.h documents params and buffers).  Each
 * checks hwkey_key_require_private() first, then goes through the backend
 * wrappers, which check the key's capability (HWKEY_KEYF_*) and run the
 * device call on a worker thread inside an ASYNC job (util/offload.h).
 */
int hwkey_key_sign(HWKEY_KEY *key, const HWKEY_SIGN_PARAMS *params, const unsigned char *tbs,
                   size_t tbslen, unsigned char *sig, size_t *siglen);
int hwkey_key_rsa_private(HWKEY_KEY *key, const unsigned char *in, size_t inlen, unsigned char *out,
                          size_t *outlen);
int hwkey_key_rsa_decrypt(HWKEY_KEY *key, const HWKEY_DECRYPT_PARAMS *params,
                          const unsigned char *in, size_t inlen, unsigned char *out,
                          size_t *outlen);
int hwkey_key_ecdh(HWKEY_KEY *key, const unsigned char *peer, size_t peerlen, unsigned char *out,
                   size_t *outlen);

/*
 * Writing a device key back out, in the words of its backend: the
 * "Private key: held by ...\n" line of `openssl pkey -text` (key_describe)
 * and the key file the application keeps, PEM (pem = 1) or DER
 * (ref_encode).  Both refuse a public-only key (HWKEY_R_NO_PRIVATE_KEY).
 */
int hwkey_key_print_holder(const HWKEY_KEY *key, BIO *out);
int hwkey_key_write_reference(const HWKEY_KEY *key, int pem, BIO *out);

/*
 * Objects other than private keys, for stores: the public key ref names
 * (as a public-only key) and the DER of the certificate ref names
 * (OPENSSL_free).  ABSENT as in HWKEY_LOOKUP.
 */
HWKEY_LOOKUP hwkey_key_find_public(HWKEY_DEVICES *devs, OSSL_LIB_CTX *swctx,
                                   const HWKEY_KEYREF *ref, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                                   void *pw_arg, HWKEY_KEY **out);
HWKEY_LOOKUP hwkey_cert_find(HWKEY_DEVICES *devs, const HWKEY_KEYREF *ref,
                             OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, unsigned char **der,
                             size_t *derlen);

/*
 * Generation (key_gen.c), in steps so that keymgmt can report progress
 * while the device works:
 *  - hwkey_key_gen_device: the device that makes keys for opts (the
 *    backend's generates slot) and, as far as it can tell without asking,
 *    can make spec; else one error naming the device and the key type.
 *  - hwkey_key_gen_make: the device makes the key; *out its reference.
 *  - hwkey_key_gen_discard: undoes a key made for a cancelled call when the
 *    reference names an object kept in the device (ref_is_stored).
 *  - hwkey_key_gen_device_name: "tpm2", "pkcs11", for log lines.
 */
HWKEY_DEVICE *hwkey_key_gen_device(HWKEY_DEVICES *devs, const HWKEY_KEYSPEC *spec,
                                   const HWKEY_GENOPTS *opts);
int hwkey_key_gen_make(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec, const HWKEY_GENOPTS *opts,
                       HWKEY_REFBLOB *out);
int hwkey_key_gen_discard(HWKEY_DEVICE *dev, const HWKEY_REFBLOB *blob);
const char *hwkey_key_gen_device_name(HWKEY_DEVICE *dev);
/* Maximum signature / ciphertext size in bytes. */
size_t hwkey_key_max_size(const HWKEY_KEY *key);

#endif
