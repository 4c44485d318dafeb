/*
 * Shared fixture of the provider unit tests: hwkey added as a built-in to a
 * fresh library context next to OpenSSL's default provider, the fake backend
 * as its only device, software keys to compare with, and helpers that get
 * device keys in through hwkey's own decoder (a TSS2 PEM whose privkey holds
 * a software key, see fake_backend.h).
 */
#ifndef HWKEY_TEST_PROVIDER_FIXTURE_H
#define HWKEY_TEST_PROVIDER_FIXTURE_H

#include <stddef.h>

#include <openssl/evp.h>

#include "fake_backend.h"

#define SOFT "provider=default"

extern OSSL_LIB_CTX *lib;
enum { EC256, EC384, RSA2048, N_SOFT };
extern EVP_PKEY *soft[N_SOFT];
extern const unsigned char message[44];

/* CMocka group set-up and teardown. */
int fixture_setup(void **state);
int fixture_teardown(void **state);

/* Drains the error queue; 1 if some error had this reason (and the provider's text for it). */
int drain_errors_for(int reason, const char **text_out);
int is_hwkey(const EVP_PKEY *pkey);
/* Device key for sw, through a TSS2 PEM and hwkey's decoder. */
EVP_PKEY *hw_key_of(EVP_PKEY *sw);
/* A public-only copy of sw in the default provider. */
EVP_PKEY *public_of(EVP_PKEY *sw);
/* A public-only key in hwkey's keymgmt, imported from sw's public half. */
EVP_PKEY *hw_public_of(EVP_PKEY *sw);
/* Private operations the fake device did since the last reset. */
int device_calls(void);
/* RSA padding / PSS salt of a signature context; pad 0 leaves the default. */
void set_rsa(EVP_PKEY_CTX *pctx, int pad, int salt);
/* Signs message; the signature's length, 0 on failure. */
size_t sign_message(EVP_PKEY *key, const char *md, int pad, int salt, unsigned char *sig,
                    size_t sigsize);
int verify_message(EVP_PKEY *key, const char *propq, const char *md, int pad, int salt,
                   const unsigned char *sig, size_t siglen);

#endif
