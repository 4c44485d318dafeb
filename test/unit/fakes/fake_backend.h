/*
 * A software HWKEY_BACKEND for unit tests (name "fake").  It resolves
 * HWKEY_REF_TSS2_KEYFILE references whose privkey TPM2B holds a DER PKCS#8
 * software private key (hwkey_fake_keyfile() writes them), and does every
 * private operation with OpenSSL's default provider in its own library
 * context.  It counts calls per operation and can be told to fail an
 * operation with a given reason, so tests can assert what reaches the error
 * queue.  Not thread-safe in its knobs: set them before the calls.
 */
#ifndef HWKEY_TEST_FAKE_BACKEND_H
#define HWKEY_TEST_FAKE_BACKEND_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "backend/backend.h"

extern const HWKEY_BACKEND hwkey_fake_backend;

typedef enum {
    HWKEY_FAKE_OP_LOAD,
    HWKEY_FAKE_OP_SIGN,
    HWKEY_FAKE_OP_RSA_PRIVATE,
    HWKEY_FAKE_OP_RSA_DECRYPT,
    HWKEY_FAKE_OP_ECDH,
    HWKEY_FAKE_OP_GENERATE,
    HWKEY_FAKE_OP_DESCRIBE,  /* key_describe: the `pkey -text` holder line */
    HWKEY_FAKE_OP_ENCODE,    /* ref_encode: writing the key file back */
    HWKEY_FAKE_OP_RECOGNISE, /* keyfile_recognise: the decoders asking "yours?" */
    HWKEY_FAKE_OP_N
} HWKEY_FAKE_OP;

/* Counters to zero, no injected failure, RSA keys with RSA_RAW, no generate delay. */
void hwkey_fake_reset(void);
int hwkey_fake_calls(HWKEY_FAKE_OP op);
/*
 * Every later call of op fails with reason (HWKEY_R_*) and a text naming
 * device_code (e.g. "TPM_RC_AUTH_FAIL"), until hwkey_fake_reset().
 */
void hwkey_fake_inject(HWKEY_FAKE_OP op, int reason, const char *device_code);
/*
 * RSA keys loaded afterwards offer the raw private operation (1, default)
 * or not (0): then the fake pads itself and, like a TPM, only does PSS with
 * a salt as long as the digest.
 */
void hwkey_fake_set_rsa_raw(int on);

/*
 * key_generate takes at least ms milliseconds (0, default: no delay), like a
 * TPM making an RSA key, so progress callbacks can be tested.
 */
void hwkey_fake_set_generate_delay(int ms);

/*
 * pkcs11: URIs with object=name (and type= absent or matching) resolve to
 * soft's key pair (the private key only if has_private) and cert (may be
 * NULL), for store tests; until this is called, pkcs11: references are not
 * handled at all.  name NULL forgets the object.  Ed25519 keys sign with
 * HWKEY_SIG_EDDSA (the whole message).
 */
void hwkey_fake_set_uri_object(const char *name, EVP_PKEY *soft, X509 *cert, int has_private);

/*
 * The line the fake's key_describe writes for `openssl pkey -text`, so tests
 * can tell that the encoder's output comes from the backend.
 */
#define HWKEY_FAKE_HOLDER_LINE "Private key: held by the fake device (software test key)"

/* A TSS2 key file (DER) holding soft's private key for the fake backend. */
int hwkey_fake_keyfile(EVP_PKEY *soft, unsigned char **der, size_t *der_len);

#endif
