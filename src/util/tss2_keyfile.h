/*
 * The TCG "TSS2 PRIVATE KEY" key file (draft TCG TSS 2.0 key file format, as
 * written by openssl_tpm2_engine, tpm2-tss-engine and tpm2-openssl):
 *
 *   TPMKey ::= SEQUENCE {
 *     type        OBJECT IDENTIFIER,        -- loadable 2.23.133.10.1.3
 *     emptyAuth   [0] EXPLICIT BOOLEAN OPTIONAL,
 *     policy      [1] EXPLICIT SEQUENCE OF TPMPolicy OPTIONAL,
 *     secret      [2] EXPLICIT OCTET STRING OPTIONAL,
 *     authPolicy  [3] EXPLICIT SEQUENCE OF TPMAuthPolicy OPTIONAL,
 *     parent      INTEGER,
 *     pubkey      OCTET STRING,             -- marshalled TPM2B_PUBLIC
 *     privkey     OCTET STRING }            -- marshalled TPM2B_PRIVATE
 *
 * Parsed with OpenSSL's ASN.1 templates.  The TPM structures stay opaque
 * bytes here: only the TPM backend unmarshals them.
 */
#ifndef HWKEY_UTIL_TSS2_KEYFILE_H
#define HWKEY_UTIL_TSS2_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>

/* Key files larger than this are rejected before parsing. */
#define HWKEY_TSS2_KEYFILE_MAX 16384

typedef enum {
    HWKEY_TSS2_LOADABLE = 1, /* 2.23.133.10.1.3 */
    HWKEY_TSS2_IMPORTABLE,   /* 2.23.133.10.1.4 */
    HWKEY_TSS2_SEALED,       /* 2.23.133.10.1.5 */
} HWKEY_TSS2_KEYTYPE;

/*
 * One step of the draft's policy [1]: TPMPolicy ::= SEQUENCE {
 *   CommandCode [0] EXPLICIT INTEGER, CommandPolicy [1] EXPLICIT OCTET STRING }
 * params are the command's marshalled parameters after the session handle
 * (TPM2_PolicyPCR: TPM2B_DIGEST pcrDigest, TPML_PCR_SELECTION pcrs), opaque
 * here: the TPM backend interprets them.
 */
typedef struct {
    uint32_t cc;           /* TPM2_CC_* */
    unsigned char *params; /* OPENSSL_malloc'ed; NULL when params_len is 0 */
    size_t params_len;
} HWKEY_TSS2_POLICY;

/* More steps than this in one file are refused (hwkey writes at most 1 per PCR + 1). */
#define HWKEY_TSS2_POLICY_MAX 32

typedef struct {
    HWKEY_TSS2_KEYTYPE type;
    int empty_auth;        /* 1: the key has no auth value */
    uint32_t parent;       /* parent handle, e.g. 0x40000001 (owner) or 0x81000001 */
    unsigned char *pubkey; /* marshalled TPM2B_PUBLIC */
    size_t pubkey_len;
    unsigned char *privkey; /* marshalled TPM2B_PRIVATE */
    size_t privkey_len;
    unsigned char *secret; /* importable keys only, else NULL */
    size_t secret_len;
    HWKEY_TSS2_POLICY policy[HWKEY_TSS2_POLICY_MAX]; /* policy [1], in execution order */
    size_t policy_count;
    int has_auth_policy; /* authPolicy [3] present: not supported for use, reported */
} HWKEY_TSS2_KEYFILE;

/* DER <-> struct.  decode raises HWKEY_R_KEY_FILE_INVALID naming the flaw. */
int hwkey_tss2_keyfile_decode(const unsigned char *der, size_t der_len, HWKEY_TSS2_KEYFILE *out);
int hwkey_tss2_keyfile_encode(const HWKEY_TSS2_KEYFILE *kf, unsigned char **der, size_t *der_len);

/* PEM ("-----BEGIN TSS2 PRIVATE KEY-----") writing. */
int hwkey_tss2_keyfile_write_pem(BIO *out, const HWKEY_TSS2_KEYFILE *kf);
/*
 * Reads a TSS2 key file in PEM or DER from bio (PEM label checked); returns
 * the DER bytes (OPENSSL_free) or 0 with an error raised.
 */
int hwkey_tss2_keyfile_read_der(BIO *in, unsigned char **der, size_t *der_len);

/* Frees what decode allocated and zeroes the struct. */
void hwkey_tss2_keyfile_clear(HWKEY_TSS2_KEYFILE *kf);

#endif
