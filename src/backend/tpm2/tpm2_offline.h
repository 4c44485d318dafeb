/*
 * TPM commands of the CLI that are not key operations: offline import
 * (wrap a key to a parent's public key on a machine without that TPM,
 * finish it on the TPM machine), the parent's public key, and key
 * attestation (TPM2_Certify by an endorsement-hierarchy AK, and its
 * verification in software).  Only the CLI and the TPM backend include
 * this header; it carries no tss2 types.
 */
#ifndef HWKEY_TPM2_OFFLINE_H
#define HWKEY_TPM2_OFFLINE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>
#include <openssl/evp.h>

#include "backend/backend.h"

/*
 * An importable TSS2 key file (2.23.133.10.1.4) of soft, wrapped to the
 * parent whose public key is parent[0..parent_len): a PEM public key of a
 * parent made from the standard ECC P-256 SRK template, or the parent's
 * marshalled TPM2B_PUBLIC (`tpm2_readpublic -o`, `hwkey pubkey --parent
 * --out-public`).  parent_handle 0: 0x40000001 for a PEM parent (the owner
 * primary from the standard template) and for a TPM2B_PUBLIC of that template,
 * else 0x81000001.
 * Needs no TPM.
 */
int hwkey_tpm2_offline_wrap(EVP_PKEY *soft, const unsigned char *parent, size_t parent_len,
                            uint32_t parent_handle, const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out);

/*
 * The default parent (or handle, if not 0) of the TPM device dev: its public
 * key, its marshalled TPM2B_PUBLIC (OPENSSL_free), the handle a key file
 * records for it, and whether it is the standard SRK template (then its PEM
 * alone is enough for an offline import).
 */
int hwkey_tpm2_parent_public(HWKEY_DEVICE *dev, uint32_t handle, EVP_PKEY **pkey,
                             unsigned char **tpm2b, size_t *tpm2b_len, uint32_t *recorded,
                             int *standard);

/* A loaded importable key: TPM2_Import it and write the loadable key file. */
int hwkey_tpm2_import_finish(HWKEY_BKEY *key, HWKEY_REFBLOB *out);

/* Options of `hwkey attest --verify`. */
typedef struct {
    const unsigned char *nonce; /* expected qualifying data, or NULL */
    size_t nonce_len;
    EVP_PKEY *trust_ak; /* the AK the verifier trusts, or NULL */
    EVP_PKEY *trust_ek; /* the EK the verifier trusts, or NULL */
    int allow_imported; /* accept a key imported into the TPM */
    EVP_PKEY *key_pub;  /* KEY as a public key (no key file): e.g. from the CSR */
} HWKEY_ATTEST_CHECK;

/*
 * Checks an attestation bundle (written by key_attest, docs/attestation.md)
 * against the TSS2 key file keyfile (DER), or when keyfile is NULL against
 * chk->key_pub (a public key): AK signature, TPMS_ATTEST type,
 * certified Name, key attributes, nonce, pinned AK/EK.  Writes what was
 * proven to report; 0 + one error naming the first failed check.
 */
int hwkey_tpm2_attest_verify(const unsigned char *bundle, size_t bundle_len,
                             const unsigned char *keyfile, size_t keyfile_len,
                             const HWKEY_ATTEST_CHECK *chk, BIO *report);

#endif
