/*
 * The "HWKEY DATA KEY" file through OpenSSL's ASN.1 templates (format in
 * datakey_file.h and docs/bulk.md).
 *
 * The input is untrusted: the size is checked before parsing, the DER must
 * be consumed exactly, and every field is checked for what version 1 allows.
 * The ASN.1 library's own errors are dropped through an error mark so that
 * the one HWKEY_R_KEY_FILE_INVALID naming the flaw is what the user reads.
 */
#include "util/datakey_file.h"

#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/err.h>

#include "util/error.h"
#include "util/uri_redact.h"

typedef struct {
    ASN1_INTEGER *version;
    ASN1_UTF8STRING *kek_uri;
    ASN1_INTEGER *mechanism;
    ASN1_OCTET_STRING *wrapped;
} HWKEY_DATAKEY_ASN1;

DECLARE_ASN1_FUNCTIONS(HWKEY_DATAKEY_ASN1)

ASN1_SEQUENCE(HWKEY_DATAKEY_ASN1) =
    {
        ASN1_SIMPLE(HWKEY_DATAKEY_ASN1, version, ASN1_INTEGER),
        ASN1_SIMPLE(HWKEY_DATAKEY_ASN1, kek_uri, ASN1_UTF8STRING),
        ASN1_SIMPLE(HWKEY_DATAKEY_ASN1, mechanism, ASN1_INTEGER),
        ASN1_SIMPLE(HWKEY_DATAKEY_ASN1, wrapped, ASN1_OCTET_STRING),
} ASN1_SEQUENCE_END(HWKEY_DATAKEY_ASN1)

        IMPLEMENT_ASN1_FUNCTIONS(HWKEY_DATAKEY_ASN1)

    /* The checks shared by encode and decode: what a version 1 file may hold. */
    static int check_fields(long version, const char *uri, size_t uri_len, unsigned long mech,
                            size_t wrapped_len)
{
    if (version != HWKEY_DATAKEY_FILE_VERSION) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "data key file version %ld (this hwkey reads "
                    "version %d)",
                    version, HWKEY_DATAKEY_FILE_VERSION);
        return 0;
    }
    if (uri_len < 7 || uri_len > HWKEY_DATAKEY_URI_MAX || memchr(uri, '\0', uri_len) != NULL ||
        strncmp(uri, "pkcs11:", 7) != 0) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "the data key file's KEK reference is not a "
                    "pkcs11: URI of at most %d bytes",
                    HWKEY_DATAKEY_URI_MAX);
        return 0;
    }
    /* A PIN never belongs in a file that is copied around with the data it protects. */
    if (hwkey_uri_has_pin_value(uri, uri_len)) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "the data key file's KEK URI carries a "
                    "pin-value; refusing it (give the PIN through a pin-source)");
        return 0;
    }
    if (mech != HWKEY_DATAKEY_MECH_AES_KEY_WRAP && mech != HWKEY_DATAKEY_MECH_AES_KEY_WRAP_PAD) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "the data key file names wrapping mechanism "
                    "0x%lx; only CKM_AES_KEY_WRAP (0x2109) and CKM_AES_KEY_WRAP_PAD (0x210a) "
                    "are known",
                    mech);
        return 0;
    }
    if (wrapped_len != HWKEY_DATAKEY_WRAPPED_LEN) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "the data key file's wrapped key is %zu bytes, "
                    "not %d (a wrapped 32-byte key)",
                    wrapped_len, HWKEY_DATAKEY_WRAPPED_LEN);
        return 0;
    }
    return 1;
}

int hwkey_datakey_file_encode(const HWKEY_DATAKEY_FILE *f, unsigned char **der, size_t *der_len)
{
    HWKEY_DATAKEY_ASN1 *asn = NULL;
    size_t uri_len = f->kek_uri != NULL ? strlen(f->kek_uri) : 0;
    int len, ok = 0;

    *der = NULL;
    *der_len = 0;
    if (!check_fields(f->version, f->kek_uri != NULL ? f->kek_uri : "", uri_len, f->mechanism,
                      f->wrapped_len))
        return 0;
    if ((asn = HWKEY_DATAKEY_ASN1_new()) == NULL || !ASN1_INTEGER_set(asn->version, f->version) ||
        !ASN1_STRING_set(asn->kek_uri, f->kek_uri, (int)uri_len) ||
        !ASN1_INTEGER_set_uint64(asn->mechanism, f->mechanism) ||
        !ASN1_OCTET_STRING_set(asn->wrapped, f->wrapped, (int)f->wrapped_len) ||
        (len = i2d_HWKEY_DATAKEY_ASN1(asn, der)) <= 0) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "encoding the data key file");
        goto end;
    }
    *der_len = (size_t)len;
    ok = 1;
end:
    HWKEY_DATAKEY_ASN1_free(asn);
    return ok;
}

int hwkey_datakey_file_decode(const unsigned char *der, size_t der_len, HWKEY_DATAKEY_FILE *out)
{
    HWKEY_DATAKEY_ASN1 *asn = NULL;
    const unsigned char *p = der;
    const char *uri;
    uint64_t mech = 0;
    int64_t v = 0;
    long version;
    int uri_len, ok = 0;

    memset(out, 0, sizeof(*out));
    if (der == NULL || der_len == 0 || der_len > HWKEY_DATAKEY_FILE_MAX) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "a data key file is 1..%d bytes of DER, not %zu",
                    HWKEY_DATAKEY_FILE_MAX, der_len);
        return 0;
    }
    ERR_set_mark();
    asn = d2i_HWKEY_DATAKEY_ASN1(NULL, &p, (long)der_len);
    ERR_pop_to_mark();
    if (asn == NULL) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "the data key file is not a DER HwkeyDataKey "
                                              "SEQUENCE (corrupt or truncated)");
        return 0;
    }
    if ((size_t)(p - der) != der_len) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "the data key file has %zu bytes after its "
                    "DER SEQUENCE",
                    der_len - (size_t)(p - der));
        goto end;
    }
    ERR_set_mark();
    /* Out of range (negative, huge) reads as an impossible value, which check_fields names. */
    if (!ASN1_INTEGER_get_int64(&v, asn->version) || v < 0 || v > 0x7fffffff)
        v = -1;
    version = (long)v;
    if (!ASN1_INTEGER_get_uint64(&mech, asn->mechanism) || mech > 0xfffffffful)
        mech = 0;
    ERR_pop_to_mark();
    uri = (const char *)ASN1_STRING_get0_data(asn->kek_uri);
    uri_len = ASN1_STRING_length(asn->kek_uri);
    if (!check_fields(version, uri != NULL ? uri : "", uri_len > 0 ? (size_t)uri_len : 0,
                      (unsigned long)mech, (size_t)ASN1_STRING_length(asn->wrapped)))
        goto end;
    out->version = version;
    out->mechanism = (unsigned long)mech;
    out->wrapped_len = (size_t)ASN1_STRING_length(asn->wrapped);
    if ((out->kek_uri = OPENSSL_strndup(uri, (size_t)uri_len)) == NULL ||
        (out->wrapped = OPENSSL_memdup(ASN1_STRING_get0_data(asn->wrapped), out->wrapped_len)) ==
            NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying the data key file's fields");
        hwkey_datakey_file_clear(out);
        goto end;
    }
    ok = 1;
end:
    HWKEY_DATAKEY_ASN1_free(asn);
    return ok;
}

void hwkey_datakey_file_clear(HWKEY_DATAKEY_FILE *f)
{
    if (f == NULL)
        return;
    OPENSSL_free(f->kek_uri);
    OPENSSL_free(f->wrapped);
    memset(f, 0, sizeof(*f));
}
