#include "util/keyref.h"

#include <string.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "hwkey/hwkey.h"
#include "util/error.h"

int hwkey_keyref_uri_parse(const unsigned char *der, size_t len, const char **uri, size_t *uri_len)
{
    const unsigned char *p = der, *end = der + len;
    long l;
    int tag, xclass, ok = 0;

    if (len > 7 && (memcmp(der, "pkcs11:", 7) == 0 || memcmp(der, "handle:", 7) == 0)) {
        *uri = (const char *)der;
        *uri_len = len;
        return len <= HWKEY_KEYREF_URI_MAX;
    }
    if (len > HWKEY_KEYREF_URI_MAX + 64)
        return 0;
    /* ASN1_get_object queues errors on malformed input: not ours, no noise. */
    ERR_set_mark();
    if (ASN1_get_object(&p, &l, &tag, &xclass, (long)len) != 0x20 || tag != V_ASN1_SEQUENCE)
        goto end;
    if (ASN1_get_object(&p, &l, &tag, &xclass, end - p) != 0 || tag != V_ASN1_VISIBLESTRING)
        goto end;
    p += l;
    if (p >= end || ASN1_get_object(&p, &l, &tag, &xclass, end - p) != 0 ||
        tag != V_ASN1_UTF8STRING || l <= 0 || l > HWKEY_KEYREF_URI_MAX)
        goto end;
    *uri = (const char *)p;
    *uri_len = (size_t)l;
    ok = 1;
end:
    ERR_pop_to_mark();
    return ok;
}

int hwkey_keyref_write_pem(BIO *out, const char *uri)
{
    int is_pkcs11 = strncmp(uri, "pkcs11:", 7) == 0;
    /*
     * pkcs11-provider 1.2 reads a "PKCS#11 PROVIDER URI" block only when the
     * description is exactly its own; anything else it skips silently.
     */
    const char *desc = is_pkcs11 ? HWKEY_KEYREF_DESC_PKCS11 : HWKEY_KEYREF_DESC_HWKEY;
    const char *label = is_pkcs11 ? HWKEY_PEM_PKCS11_URI : HWKEY_PEM_KEY_URI;
    ASN1_VISIBLESTRING *d = ASN1_VISIBLESTRING_new();
    ASN1_UTF8STRING *u = ASN1_UTF8STRING_new();
    unsigned char *der = NULL, *p;
    int dlen, ulen, total, ok = 0;

    if (d == NULL || u == NULL || !ASN1_STRING_set(d, desc, -1) || !ASN1_STRING_set(u, uri, -1))
        goto oom;
    dlen = i2d_ASN1_VISIBLESTRING(d, NULL);
    ulen = i2d_ASN1_UTF8STRING(u, NULL);
    if (dlen <= 0 || ulen <= 0)
        goto oom;
    total = ASN1_object_size(1, dlen + ulen, V_ASN1_SEQUENCE);
    if (total <= 0 || (der = OPENSSL_malloc((size_t)total)) == NULL)
        goto oom;
    p = der;
    ASN1_put_object(&p, 1, dlen + ulen, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    i2d_ASN1_VISIBLESTRING(d, &p);
    i2d_ASN1_UTF8STRING(u, &p);
    if (PEM_write_bio(out, label, "", der, total) <= 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "cannot write the \"%s\" PEM block", label);
        goto end;
    }
    ok = 1;
    goto end;
oom:
    hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "encoding a key reference file");
end:
    OPENSSL_free(der);
    ASN1_VISIBLESTRING_free(d);
    ASN1_UTF8STRING_free(u);
    return ok;
}

int hwkey_keyref_write(BIO *out, const unsigned char *uri, size_t uri_len, int pem)
{
    char *text = NULL, *name = NULL, *header = NULL;
    unsigned char *body = NULL;
    BIO *mem = NULL;
    long len = 0;
    int ok = 0;

    if (uri_len == 0 || uri_len > HWKEY_KEYREF_URI_MAX || memchr(uri, '\0', uri_len) != NULL) {
        hwkey_raise(HWKEY_R_INTERNAL, "the key's reference of %zu bytes is no URI", uri_len);
        return 0;
    }
    if ((text = OPENSSL_strndup((const char *)uri, uri_len)) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying a key reference");
        return 0;
    }
    if (pem) {
        ok = hwkey_keyref_write_pem(out, text);
        goto end;
    }
    if ((mem = BIO_new(BIO_s_mem())) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "encoding a key reference");
        goto end;
    }
    if (!hwkey_keyref_write_pem(mem, text))
        goto end;
    if (PEM_read_bio(mem, &name, &header, &body, &len) <= 0 || len <= 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "cannot read back the key reference just encoded");
        goto end;
    }
    if (BIO_write(out, body, (int)len) != (int)len) {
        hwkey_raise(HWKEY_R_INTERNAL, "writing the %ld-byte key reference failed", len);
        goto end;
    }
    ok = 1;
end:
    OPENSSL_free(text);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(body);
    BIO_free(mem);
    return ok;
}

int hwkey_keyref_is_label(const char *label)
{
    return label != NULL &&
           (strcmp(label, HWKEY_PEM_PKCS11_URI) == 0 || strcmp(label, HWKEY_PEM_KEY_URI) == 0);
}

int hwkey_keyref_label_fits(const char *label, const char *uri, size_t uri_len)
{
    if (label == NULL || strcmp(label, HWKEY_PEM_PKCS11_URI) != 0)
        return 1;
    return uri_len > 7 && memcmp(uri, "pkcs11:", 7) == 0;
}
