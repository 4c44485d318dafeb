/*
 * The TPM backend's answers about its key references (backend.h, "What
 * only the backend knows about its keys' references"): none touches the TPM.
 */
#ifndef HWKEY_BACKEND_TPM2_REFS_H
#define HWKEY_BACKEND_TPM2_REFS_H

#include "backend/backend.h"

HWKEY_REF_KIND hwkey_tpm2_uri_kind(const char *uri);
int hwkey_tpm2_key_describe(HWKEY_BKEY *key, const HWKEY_KEYREF *ref, BIO *out);
int hwkey_tpm2_ref_encode(const HWKEY_KEYREF *ref, int pem, BIO *out);
int hwkey_tpm2_keyfile_recognise(const char *label, const unsigned char *data, size_t len,
                                 HWKEY_REF_KIND *kind, HWKEY_ALG *alg, const char **structure);
int hwkey_tpm2_generates(const HWKEY_GENOPTS *opts);
int hwkey_tpm2_ref_is_stored(HWKEY_REF_KIND kind);

#endif
