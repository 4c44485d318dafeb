/*
 * What a PKCS#11 key reference looks like: an RFC 7512 "pkcs11:" URI,
 * kept in files as a reference file (util/keyref.h).  Nothing here loads a
 * module or opens a session.
 */
#include "backend/pkcs11/p11_internal.h"

#include <string.h>

#include "util/keyref.h"

#define P11_SCHEME "pkcs11:"

HWKEY_REF_KIND hwkey_p11_uri_kind(const char *uri)
{
    return strncmp(uri, P11_SCHEME, strlen(P11_SCHEME)) == 0 ? HWKEY_REF_PKCS11_URI : 0;
}

int hwkey_p11_generates(const HWKEY_GENOPTS *opts)
{
    return opts->uri != NULL && hwkey_p11_uri_kind(opts->uri) == HWKEY_REF_PKCS11_URI;
}

int hwkey_p11_ref_is_stored(HWKEY_REF_KIND kind)
{
    (void)kind;
    return 1; /* every PKCS#11 key is a token object */
}

int hwkey_p11_key_describe(HWKEY_BKEY *key, const HWKEY_KEYREF *ref, BIO *out)
{
    size_t path_len = 0;

    (void)key;
    /* The path names the object; query attributes (module, PIN source) are not printed. */
    while (path_len < ref->len && ref->data[path_len] != '?' && ref->data[path_len] != '\0')
        path_len++;
    return BIO_printf(out, "Private key: held by a PKCS#11 token (%.*s)\n", (int)path_len,
                      (const char *)ref->data) > 0;
}

int hwkey_p11_ref_encode(const HWKEY_KEYREF *ref, int pem, BIO *out)
{
    return hwkey_keyref_write(out, ref->data, ref->len, pem);
}
