/*
 * Host side of TPM2_Import (src/backend/tpm2/ only; the unit tests include it
 * too): the outer duplication wrapper of TPM 2.0 Part 1 ("Protected Storage",
 * "Duplication"), so that a software private key crosses the bus only
 * encrypted to the parent.  Pure computation: no TPM, no lock.
 *
 *   seed      random; for an ECC parent the result of an ephemeral ECDH with
 *             the parent's public key through KDFe(nameAlg, Z, "DUPLICATE",
 *             ephemeral.x, parent.x); for an RSA parent, OAEP-encrypted
 *             (label "DUPLICATE").  inSymSeed carries the ephemeral point /
 *             the OAEP ciphertext.
 *   symKey    KDFa(parent nameAlg, seed, "STORAGE", Name(object), -, parent's AES key bits)
 *   hmacKey   KDFa(parent nameAlg, seed, "INTEGRITY", -, -, digest bits)
 *   duplicate TPM2B(HMAC(hmacKey, enc || Name)) || enc,
 *             enc = AES-CFB(symKey, IV 0, marshalled TPM2B_SENSITIVE)
 */
#ifndef HWKEY_TPM2_DUP_H
#define HWKEY_TPM2_DUP_H

#include <stddef.h>

#include <openssl/evp.h>

#include <tss2/tss2_tpm2_types.h>

#include "backend/backend.h"

/*
 * KDFa (Part 1, 11.4.10.2; SP 800-108 counter mode with HMAC): outlen bytes
 * from HMAC-H(key, [i]32 || label || 0x00 || u || v || [8*outlen]32).
 * label is a C string; its terminating NUL is part of the input, as the
 * specification says.  u / v may be NULL with length 0.  Returns 1 / 0 + error.
 */
int hwkey_tpm2_kdfa(TPMI_ALG_HASH alg, const unsigned char *key, size_t keylen, const char *label,
                    const unsigned char *u, size_t ulen, const unsigned char *v, size_t vlen,
                    unsigned char *out, size_t outlen);
/*
 * KDFe (Part 1, 11.4.10.3; SP 800-56A single-step, hash): outlen bytes from
 * H([i]32 || Z || label || 0x00 || u || v).
 */
int hwkey_tpm2_kdfe(TPMI_ALG_HASH alg, const unsigned char *z, size_t zlen, const char *label,
                    const unsigned char *u, size_t ulen, const unsigned char *v, size_t vlen,
                    unsigned char *out, size_t outlen);

/*
 * The TPM hash algorithms hwkey handles (SHA-1/256/384/512): OpenSSL's name
 * and the digest size; NULL / 0 for any other.  The one table of them.
 */
const char *hwkey_tpm2_hash_name(TPMI_ALG_HASH alg);
size_t hwkey_tpm2_hash_size(TPMI_ALG_HASH alg);

/* The object's Name: nameAlg (big-endian) || H(marshalled TPMT_PUBLIC). */
int hwkey_tpm2_object_name(const TPMT_PUBLIC *pub, TPM2B_NAME *name);

/*
 * The duplicate and inSymSeed of TPM2_Import for obj/sens under parent
 * (a storage key: restricted decrypt, AES-CFB symmetric, ECC or RSA), outer
 * wrapper only (TPM2_Import's symmetricAlg = TPM2_ALG_NULL, no encryptionKey).
 * Every intermediate secret lives in protected memory and is wiped.
 */
int hwkey_tpm2_dup_wrap(const TPMT_PUBLIC *parent, const TPMT_PUBLIC *obj,
                        const TPMT_SENSITIVE *sens, TPM2B_PRIVATE *dup,
                        TPM2B_ENCRYPTED_SECRET *sym_seed);

/*
 * The public area and sensitive area (key, auth value from opts, a fresh
 * seed) of a software key about to be imported: hwkey's key template
 * without fixedTPM / fixedParent / sensitiveDataOrigin.  sens should live
 * in protected memory.  Needs no TPM (offline import uses it too).
 */
int hwkey_tpm2_import_object(EVP_PKEY *soft, const HWKEY_GENOPTS *opts, TPM2B_PUBLIC *pub,
                             TPMT_SENSITIVE *sens);

/* The vtable's key_import (tpm2_import.c): EC / RSA software key -> TSS2 key file. */
int hwkey_tpm2_key_import(HWKEY_DEVICE *dev, EVP_PKEY *soft, const HWKEY_GENOPTS *opts,
                          HWKEY_REFBLOB *out);

#endif
