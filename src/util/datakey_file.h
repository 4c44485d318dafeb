/*
 * The "HWKEY DATA KEY" file (docs/bulk.md): a bulk data key wrapped by a
 * PKCS#11 key-wrapping key (KEK) on a token.  DER inside a PEM block:
 *
 *   HwkeyDataKey ::= SEQUENCE {
 *       version    INTEGER,        -- 1
 *       kekUri     UTF8String,     -- pkcs11: URI of the KEK; never a pin-value
 *       mechanism  INTEGER,        -- CKM_AES_KEY_WRAP_PAD (0x210a) or
 *                                  -- CKM_AES_KEY_WRAP (0x2109)
 *       wrapped    OCTET STRING    -- the 32-byte data key wrapped: 40 bytes
 *   }
 *
 * util/ knows no PKCS#11 header, so the two mechanism numbers are spelled
 * here; they are the standard's values.  Nothing in the file is secret.
 */
#ifndef HWKEY_UTIL_DATAKEY_FILE_H
#define HWKEY_UTIL_DATAKEY_FILE_H

#include <stddef.h>

#define HWKEY_DATAKEY_FILE_VERSION 1
#define HWKEY_DATAKEY_MECH_AES_KEY_WRAP 0x2109ul     /* RFC 3394 */
#define HWKEY_DATAKEY_MECH_AES_KEY_WRAP_PAD 0x210aul /* RFC 5649 */
/* A 32-byte key wrapped by either mechanism: one 8-byte integrity block more. */
#define HWKEY_DATAKEY_WRAPPED_LEN 40
#define HWKEY_DATAKEY_URI_MAX 4096
/* DER larger than this cannot be a valid file and is refused unparsed. */
#define HWKEY_DATAKEY_FILE_MAX (HWKEY_DATAKEY_URI_MAX + 128)

typedef struct {
    long version;
    char *kek_uri; /* NUL-terminated, OPENSSL_malloc */
    unsigned long mechanism;
    unsigned char *wrapped; /* OPENSSL_malloc */
    size_t wrapped_len;
} HWKEY_DATAKEY_FILE;

/*
 * DER of f (OPENSSL_free *der).  Refuses what the decoder would refuse, so
 * hwkey never writes a file it cannot read back.
 */
int hwkey_datakey_file_encode(const HWKEY_DATAKEY_FILE *f, unsigned char **der, size_t *der_len);
/*
 * Parses untrusted DER: exact length, version 1, a pkcs11: URI without a
 * pin-value, a known mechanism, a 40-byte wrapped key.  Every rejection
 * raises one HWKEY_R_KEY_FILE_INVALID naming the flaw.
 */
int hwkey_datakey_file_decode(const unsigned char *der, size_t der_len, HWKEY_DATAKEY_FILE *out);
void hwkey_datakey_file_clear(HWKEY_DATAKEY_FILE *f);

#endif
