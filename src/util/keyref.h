/*
 * Key reference files: a PEM block that holds a key URI and no secret, for
 * programs that only accept a key file (nginx's ssl_certificate_key).  The
 * body is pkcs11-provider's
 *     P11PROV-PK11-URI ::= SEQUENCE { desc VisibleString, uri UTF8String }
 * under the label "PKCS#11 PROVIDER URI" (pkcs11: URIs, files that
 * pkcs11-provider reads too) or "HWKEY KEY URI" (also handle: URIs).
 */
#ifndef HWKEY_UTIL_KEYREF_H
#define HWKEY_UTIL_KEYREF_H

#include <stddef.h>

#include <openssl/bio.h>

/* A URI longer than this is not a key reference. */
#define HWKEY_KEYREF_URI_MAX 4096

/*
 * The URI in a reference file body (also accepts the bare URI text).
 * *uri points into der, not NUL-terminated.  Returns 0 and raises nothing
 * when der is not such a body, so callers can use it to recognise one.
 */
int hwkey_keyref_uri_parse(const unsigned char *der, size_t len, const char **uri, size_t *uri_len);

/* 1 if label is a reference file's PEM label ("PKCS#11 PROVIDER URI", "HWKEY KEY URI"). */
int hwkey_keyref_is_label(const char *label);
/*
 * 1 if a reference file under label may hold uri: pkcs11-provider's label
 * holds pkcs11: URIs only; hwkey's own label (or none: a DER body) any.
 */
int hwkey_keyref_label_fits(const char *label, const char *uri, size_t uri_len);

/*
 * Writes a reference file for uri.  A pkcs11: URI gets pkcs11-provider's
 * exact format (label "PKCS#11 PROVIDER URI", description
 * "PKCS#11 Provider URI v1.0"), so pkcs11-provider reads the file too; a
 * handle: URI gets "HWKEY KEY URI", which only hwkey reads.
 */
int hwkey_keyref_write_pem(BIO *out, const char *uri);

/*
 * The same from a URI of uri_len bytes (not NUL-terminated): pem = 1 the
 * PEM block, 0 its DER body (what i2d_PrivateKey() asks for), read back
 * from the PEM writer so both forms always agree.
 */
int hwkey_keyref_write(BIO *out, const unsigned char *uri, size_t uri_len, int pem);

#endif
