/*
 * Public keys and certificates named by pkcs11: URIs, for the provider's
 * pkcs11: store (type=public, type=cert) and `hwkey pubkey`.
 *
 * Public objects are visible without a login, and a store that merely lists
 * a certificate should not cost the user a PIN prompt: so each lookup runs
 * first in a session that is not logged in, and logs in (PIN from the URI,
 * the configured pin-source, or the caller's passphrase callback) only when
 * nothing was found there, because the object may be CKA_PRIVATE.
 *
 * "Nothing matches" returns HWKEY_LOOKUP_ABSENT (raised as
 * HWKEY_R_KEY_NOT_FOUND), so the store can try the next kind of object;
 * anything else that goes wrong is FAILED (backend.h).
 */
#include "backend/pkcs11/p11_internal.h"

#include <string.h>

#include <openssl/x509.h>

#include "util/error.h"

typedef struct {
    HWKEY_P11_DEVICE *dev;
    HWKEY_P11_URI *uri;
    HWKEY_P11_TOKEN *tok;
    CK_SESSION_HANDLE s;
    uint64_t epoch;
    int have_session;
    OSSL_PASSPHRASE_CALLBACK *pw_cb;
    void *pw_arg;
} LOOKUP;

static const char *class_name(CK_OBJECT_CLASS klass)
{
    switch (klass) {
    case CKO_PUBLIC_KEY:
        return "public key";
    case CKO_PRIVATE_KEY:
        return "private key";
    case CKO_CERTIFICATE:
        return "certificate";
    }
    return "object";
}

static const char *what_of(const HWKEY_P11_URI *uri)
{
    return uri->object != NULL ? uri->object : "(by id)";
}

/* Parses ref, finds its token and takes a session; no login yet. */
static int lookup_open(LOOKUP *lk, HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg)
{
    HWKEY_P11_MODULE *mod;

    memset(lk, 0, sizeof(*lk));
    lk->dev = (HWKEY_P11_DEVICE *)dev;
    lk->pw_cb = pw_cb;
    lk->pw_arg = pw_arg;
    if (ref->kind != HWKEY_REF_PKCS11_URI) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the pkcs11 backend resolves pkcs11: URIs only");
        return 0;
    }
    if (!hwkey_p11_uri_parse((const char *)ref->data, ref->len, &lk->uri))
        return 0;
    if (lk->uri->object == NULL && !lk->uri->has_id) {
        hwkey_raise(HWKEY_R_INVALID_URI, "the URI names no object= nor id=");
        return 0;
    }
    if ((mod = hwkey_p11_module_get(lk->dev, lk->uri->module_path)) == NULL ||
        (lk->tok = hwkey_p11_token_find(mod, lk->uri)) == NULL ||
        !hwkey_p11_session_get(lk->tok, &lk->s, &lk->epoch))
        return 0;
    lk->have_session = 1;
    return 1;
}

static void lookup_close(LOOKUP *lk)
{
    if (lk->have_session)
        hwkey_p11_session_put(lk->tok, lk->s, lk->epoch, 0);
    hwkey_p11_uri_free(lk->uri);
    memset(lk, 0, sizeof(*lk));
}

/*
 * The one object of klass the URI names: *obj, or CK_INVALID_HANDLE when
 * there is none (nothing raised).  Returns 0 on a failure (raised).
 */
static int lookup_find(LOOKUP *lk, CK_OBJECT_CLASS klass, CK_OBJECT_HANDLE *obj)
{
    HWKEY_P11_PINSRC src = {lk->uri, lk->dev->pin_source, lk->pw_cb, lk->pw_arg, lk->dev->quirks};
    CK_OBJECT_HANDLE objs[2];
    CK_ULONG n = 0;

    *obj = CK_INVALID_HANDLE;
    if (!hwkey_p11_find(lk->tok, lk->s, klass, lk->uri->id, lk->uri->id_len, lk->uri->has_id,
                        lk->uri->object, objs, 2, &n))
        return 0;
    if (n == 0) {
        /* Perhaps CKA_PRIVATE: visible only after a login (a no-op when logged in). */
        if (!hwkey_p11_login(lk->tok, lk->s, &src) ||
            !hwkey_p11_find(lk->tok, lk->s, klass, lk->uri->id, lk->uri->id_len, lk->uri->has_id,
                            lk->uri->object, objs, 2, &n))
            return 0;
    }
    if (n > 1) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "several %ss match object=\"%s\" on token \"%s\"; "
                    "add id= to the URI",
                    class_name(klass), what_of(lk->uri), lk->tok->name);
        return 0;
    }
    if (n == 1)
        *obj = objs[0];
    return 1;
}

/* 1 if the URI's type= (if any) allows objects of klass. */
static int type_allows(const HWKEY_P11_URI *uri, CK_OBJECT_CLASS klass)
{
    return !uri->has_class || uri->klass == klass;
}

static EVP_PKEY *pubkey_of_object(LOOKUP *lk, CK_OBJECT_HANDLE obj, OSSL_LIB_CTX *libctx,
                                  const char *propq)
{
    HWKEY_P11_KEY k;
    EVP_PKEY *pub = NULL;

    memset(&k, 0, sizeof(k));
    k.tok = lk->tok;
    k.label = lk->uri->object;
    if (hwkey_p11_pub_read_object(&k, lk->s, obj))
        pub = hwkey_p11_key_public(&k.base, libctx, propq);
    OPENSSL_free(k.pub_a);
    OPENSSL_free(k.pub_b);
    return pub;
}

/* The certificate's SubjectPublicKeyInfo, decoded again in libctx. */
static EVP_PKEY *pubkey_of_cert(const unsigned char *der, size_t len, OSSL_LIB_CTX *libctx,
                                const char *propq)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    unsigned char *spki = NULL;
    EVP_PKEY *pub = NULL;
    int n = x != NULL ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki) : -1;

    p = spki;
    if (n > 0)
        pub = d2i_PUBKEY_ex(NULL, &p, n, libctx, propq);
    if (pub == NULL)
        hwkey_raise(HWKEY_R_DEVICE_ERROR,
                    "the token's certificate (%zu bytes) does not parse "
                    "as X.509 with a supported public key",
                    len);
    OPENSSL_free(spki);
    X509_free(x);
    return pub;
}

static int cert_der(LOOKUP *lk, CK_OBJECT_HANDLE obj, unsigned char **der, size_t *derlen)
{
    if (hwkey_p11_attr_get(lk->tok, lk->s, obj, CKA_VALUE, der, derlen) && *derlen > 0)
        return 1;
    OPENSSL_free(*der);
    *der = NULL;
    *derlen = 0;
    hwkey_raise(HWKEY_R_DEVICE_ERROR,
                "the certificate \"%s\" on token \"%s\" has no readable "
                "CKA_VALUE",
                what_of(lk->uri), lk->tok->name);
    return 0;
}

HWKEY_LOOKUP hwkey_p11_pubkey_load(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                   OSSL_LIB_CTX *libctx, const char *propq, EVP_PKEY **out)
{
    LOOKUP lk;
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    HWKEY_BKEY *bkey = NULL;
    EVP_PKEY *pub = NULL;
    unsigned char *der = NULL;
    size_t derlen = 0;
    HWKEY_LOOKUP r = HWKEY_LOOKUP_FAILED;

    *out = NULL;
    if (!lookup_open(&lk, dev, ref, pw_cb, pw_arg))
        goto end;
    /*
     * type=private (what keygen --uri writes): the key pair's public object
     * with the same label/id is that key's public half, readable without a
     * login; the PIN is asked only when the token has none.
     */
    if (type_allows(lk.uri, CKO_PUBLIC_KEY) || lk.uri->klass == CKO_PRIVATE_KEY) {
        if (!lookup_find(&lk, CKO_PUBLIC_KEY, &obj))
            goto end;
        if (obj != CK_INVALID_HANDLE) {
            pub = pubkey_of_object(&lk, obj, libctx, propq);
            goto end;
        }
    }
    if (type_allows(lk.uri, CKO_CERTIFICATE)) {
        if (!lookup_find(&lk, CKO_CERTIFICATE, &obj))
            goto end;
        if (obj != CK_INVALID_HANDLE) {
            if (cert_der(&lk, obj, &der, &derlen))
                pub = pubkey_of_cert(der, derlen, libctx, propq);
            goto end;
        }
    }
    if (!type_allows(lk.uri, CKO_PRIVATE_KEY)) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "no %s \"%s\" on token \"%s\"",
                    class_name(lk.uri->klass == CKO_CERTIFICATE ? CKO_CERTIFICATE : CKO_PUBLIC_KEY),
                    what_of(lk.uri), lk.tok->name);
        r = HWKEY_LOOKUP_ABSENT;
        goto end;
    }
    /* The private key's own public half (ABSENT when there is no such key either). */
    lookup_close(&lk);
    r = hwkey_p11_key_load(dev, ref, pw_cb, pw_arg, &bkey);
    if (r == HWKEY_LOOKUP_FOUND)
        pub = hwkey_p11_key_public(bkey, libctx, propq);
    hwkey_p11_key_free(bkey);
end:
    OPENSSL_free(der);
    lookup_close(&lk);
    if (pub != NULL) {
        *out = pub;
        return HWKEY_LOOKUP_FOUND;
    }
    /* An object found whose key could not be read is a failure, not an absence. */
    return r == HWKEY_LOOKUP_ABSENT ? r : HWKEY_LOOKUP_FAILED;
}

HWKEY_LOOKUP hwkey_p11_cert_load(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                 OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, unsigned char **der,
                                 size_t *derlen)
{
    LOOKUP lk;
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    HWKEY_LOOKUP r = HWKEY_LOOKUP_FAILED;

    *der = NULL;
    *derlen = 0;
    if (!lookup_open(&lk, dev, ref, pw_cb, pw_arg))
        goto end;
    if (!type_allows(lk.uri, CKO_CERTIFICATE)) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "the URI names a %s, not a certificate",
                    class_name(lk.uri->klass));
        r = HWKEY_LOOKUP_ABSENT;
        goto end;
    }
    if (!lookup_find(&lk, CKO_CERTIFICATE, &obj))
        goto end;
    if (obj == CK_INVALID_HANDLE) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "no certificate \"%s\" on token \"%s\"", what_of(lk.uri),
                    lk.tok->name);
        r = HWKEY_LOOKUP_ABSENT;
        goto end;
    }
    if (cert_der(&lk, obj, der, derlen))
        r = HWKEY_LOOKUP_FOUND;
end:
    lookup_close(&lk);
    return r;
}
