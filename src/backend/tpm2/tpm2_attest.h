/*
 * Key attestation, TPM side (tpm2_attest.c) and verification
 * (tpm2_attest_verify.c, software only).  src/backend/tpm2/ only.
 */
#ifndef HWKEY_TPM2_ATTEST_H
#define HWKEY_TPM2_ATTEST_H

#include <stddef.h>

#include <openssl/bio.h>
#include <tss2/tss2_tpm2_types.h>

#include "backend/backend.h"

/* PEM labels of the attestation bundle (docs/attestation.md). */
#define HWKEY_ATTEST_LABEL_INFO "HWKEY ATTEST INFO"     /* TPMS_ATTEST as the TPM signed it */
#define HWKEY_ATTEST_LABEL_SIG "HWKEY ATTEST SIGNATURE" /* DER ECDSA-Sig-Value by the AK */
#define HWKEY_ATTEST_LABEL_AK "HWKEY AK TPM2B PUBLIC"   /* the AK's TPM2B_PUBLIC */
#define HWKEY_ATTEST_LABEL_KEY "HWKEY KEY TPM2B PUBLIC" /* the certified key's TPM2B_PUBLIC */
#define HWKEY_ATTEST_LABEL_EK "HWKEY EK TPM2B PUBLIC"   /* the EK's TPM2B_PUBLIC */

/* The AK: restricted ECDSA-SHA256 P-256 signing primary of the endorsement hierarchy. */
void hwkey_tpm2_ak_template(TPM2B_PUBLIC *t);
/* The TCG default EK (EK Credential Profile): ECC P-256 (template L-2), or RSA-2048 (L-1). */
void hwkey_tpm2_ek_template(TPM2B_PUBLIC *t, int rsa);

/* The vtable's key_attest: TPM2_Certify by the AK, the bundle written to out. */
int hwkey_tpm2_key_attest(HWKEY_BKEY *key, const unsigned char *nonce, size_t nonce_len, BIO *out);

#endif
