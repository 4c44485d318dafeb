#include "key/key.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>

#include "util/error.h"
#include "util/uri_redact.h"

static HWKEY_KEY *key_new(void)
{
    HWKEY_KEY *key = OPENSSL_zalloc(sizeof(*key));

    if (key == NULL || (key->lock = CRYPTO_THREAD_lock_new()) == NULL) {
        OPENSSL_free(key);
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a key");
        return NULL;
    }
    key->refcount = 1;
    return key;
}

/* Fills alg/bits/curve from the software public key. */
static int describe_from_public(HWKEY_KEY *key)
{
    char group[64];

    key->bits = EVP_PKEY_get_bits(key->pub);
    if (EVP_PKEY_is_a(key->pub, "RSA")) {
        key->alg = HWKEY_ALG_RSA;
        return 1;
    }
    if (EVP_PKEY_is_a(key->pub, "ED25519")) {
        key->alg = HWKEY_ALG_ED25519;
        return 1;
    }
    if (EVP_PKEY_is_a(key->pub, "EC") &&
        EVP_PKEY_get_utf8_string_param(key->pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       NULL)) {
        key->alg = HWKEY_ALG_EC;
        key->curve_nid = OBJ_txt2nid(group);
        if (key->curve_nid == NID_undef)
            key->curve_nid = EC_curve_nist2nid(group);
        if (key->curve_nid != NID_undef)
            return 1;
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "EC public key on curve \"%s\", which this "
                    "OpenSSL does not know",
                    group);
        return 0;
    }
    hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "public key of type %s",
                EVP_PKEY_get0_type_name(key->pub));
    return 0;
}

/*
 * Keeps a copy of ref for encoders.  A PIN never goes into the copy:
 * util/uri_redact.h, the one place that decides what of a reference may
 * leave the process, drops the pin-value of a pkcs11: URI (RFC 7512
 * section 2.4) and copies every other reference (key-file DER, other
 * schemes) unchanged, so key/ needs to know no reference kind.  A
 * reference file written back names the key and, at most, where its PIN
 * comes from (pin-source), never the PIN itself.
 */
static int keep_ref(HWKEY_KEY *key, const HWKEY_KEYREF *ref)
{
    size_t n = 0;
    /* NUL-terminated: URIs stay printable C strings; len excludes the NUL. */
    unsigned char *copy = (unsigned char *)hwkey_uri_redact((const char *)ref->data, ref->len, &n);

    if (copy == NULL)
        return 0;
    key->ref.kind = ref->kind;
    key->ref.data = copy;
    key->ref.len = n;
    return 1;
}

HWKEY_LOOKUP hwkey_key_find(HWKEY_DEVICES *devs, OSSL_LIB_CTX *swctx, const HWKEY_KEYREF *ref,
                            OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_KEY **out)
{
    HWKEY_DEVICE *dev = hwkey_devices_for_kind(devs, ref->kind);
    HWKEY_KEY *key = NULL;
    HWKEY_LOOKUP r;

    *out = NULL;
    if (dev == NULL || (key = key_new()) == NULL)
        return HWKEY_LOOKUP_FAILED;
    key->swctx = swctx;
    r = hwkey_backend_key_find(dev, ref, pw_cb, pw_arg, &key->bkey);
    if (r != HWKEY_LOOKUP_FOUND)
        goto end;
    r = HWKEY_LOOKUP_FAILED;
    if (!keep_ref(key, ref))
        goto end;
    key->pub = hwkey_backend_key_public(key->bkey, swctx, NULL);
    if (key->pub == NULL || !describe_from_public(key))
        goto end;
    *out = key;
    return HWKEY_LOOKUP_FOUND;
end:
    hwkey_key_free(key);
    return r;
}

HWKEY_KEY *hwkey_key_load(HWKEY_DEVICES *devs, OSSL_LIB_CTX *swctx, const HWKEY_KEYREF *ref,
                          OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg)
{
    HWKEY_KEY *key = NULL;

    (void)hwkey_key_find(devs, swctx, ref, pw_cb, pw_arg, &key);
    return key;
}

HWKEY_KEY *hwkey_key_from_public(EVP_PKEY *pub)
{
    HWKEY_KEY *key = key_new();

    if (key == NULL) {
        EVP_PKEY_free(pub);
        return NULL;
    }
    key->pub = pub;
    if (!describe_from_public(key)) {
        hwkey_key_free(key);
        return NULL;
    }
    return key;
}

int hwkey_key_up_ref(HWKEY_KEY *key)
{
    int n;

    return CRYPTO_atomic_add(&key->refcount, 1, &n, key->lock);
}

void hwkey_key_free(HWKEY_KEY *key)
{
    int n;

    if (key == NULL)
        return;
    if (!CRYPTO_atomic_add(&key->refcount, -1, &n, key->lock) || n > 0)
        return;
    hwkey_backend_key_free(key->bkey);
    EVP_PKEY_free(key->pub);
    OPENSSL_clear_free(key->ref.data, key->ref.len + 1);
    CRYPTO_THREAD_lock_free(key->lock);
    OPENSSL_free(key);
}

int hwkey_key_can(const HWKEY_KEY *key, unsigned int flag)
{
    return key->bkey != NULL && (key->bkey->info.flags & flag) != 0;
}

/* --- the route from an operation to the device --------------------------- */

const char *hwkey_key_alg_name(HWKEY_ALG alg)
{
    switch (alg) {
    case HWKEY_ALG_EC:
        return "EC";
    case HWKEY_ALG_RSA:
        return "RSA";
    case HWKEY_ALG_ED25519:
        return "ED25519";
    }
    return NULL;
}

int hwkey_key_has_private(const HWKEY_KEY *key)
{
    return key != NULL && key->bkey != NULL;
}

int hwkey_key_require_private(const HWKEY_KEY *key, const char *what)
{
    if (hwkey_key_has_private(key))
        return 1;
    hwkey_raise(HWKEY_R_NO_PRIVATE_KEY,
                "this %s key is public only (imported, not loaded from a device): it cannot %s",
                key != NULL && hwkey_key_alg_name(key->alg) != NULL ? hwkey_key_alg_name(key->alg)
                                                                    : "empty",
                what);
    return 0;
}

int hwkey_key_sign(HWKEY_KEY *key, const HWKEY_SIGN_PARAMS *params, const unsigned char *tbs,
                   size_t tbslen, unsigned char *sig, size_t *siglen)
{
    if (!hwkey_key_require_private(key, "sign"))
        return 0;
    return hwkey_backend_sign(key->bkey, params, tbs, tbslen, sig, siglen);
}

int hwkey_key_rsa_private(HWKEY_KEY *key, const unsigned char *in, size_t inlen, unsigned char *out,
                          size_t *outlen)
{
    if (!hwkey_key_require_private(key, "do the raw RSA private operation"))
        return 0;
    return hwkey_backend_rsa_private(key->bkey, in, inlen, out, outlen);
}

int hwkey_key_rsa_decrypt(HWKEY_KEY *key, const HWKEY_DECRYPT_PARAMS *params,
                          const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen)
{
    if (!hwkey_key_require_private(key, "decrypt"))
        return 0;
    return hwkey_backend_rsa_decrypt(key->bkey, params, in, inlen, out, outlen);
}

int hwkey_key_ecdh(HWKEY_KEY *key, const unsigned char *peer, size_t peerlen, unsigned char *out,
                   size_t *outlen)
{
    if (!hwkey_key_require_private(key, "derive"))
        return 0;
    return hwkey_backend_ecdh(key->bkey, peer, peerlen, out, outlen);
}

size_t hwkey_key_max_size(const HWKEY_KEY *key)
{
    int n = key->pub != NULL ? EVP_PKEY_get_size(key->pub) : 0;

    return n > 0 ? (size_t)n : 0;
}

HWKEY_KEY *hwkey_key_new(OSSL_LIB_CTX *swctx)
{
    HWKEY_KEY *key = key_new();

    if (key != NULL)
        key->swctx = swctx;
    return key;
}

int hwkey_key_set_public(HWKEY_KEY *key, EVP_PKEY *pub)
{
    if (key->pub != NULL || key->bkey != NULL) {
        EVP_PKEY_free(pub);
        hwkey_raise(HWKEY_R_INTERNAL, "the key already has a public half");
        return 0;
    }
    key->pub = pub;
    if (!describe_from_public(key)) {
        key->pub = NULL;
        EVP_PKEY_free(pub);
        return 0;
    }
    return 1;
}

/* --- writing a device key back out --------------------------------------- */

static void ref_view(const HWKEY_KEY *key, HWKEY_KEYREF *ref)
{
    ref->kind = key->ref.kind;
    ref->data = key->ref.data;
    ref->len = key->ref.len;
}

int hwkey_key_print_holder(const HWKEY_KEY *key, BIO *out)
{
    HWKEY_KEYREF ref;

    if (!hwkey_key_require_private(key, "be described as a device key"))
        return 0;
    ref_view(key, &ref);
    return hwkey_backend_key_describe(key->bkey, &ref, out);
}

int hwkey_key_write_reference(const HWKEY_KEY *key, int pem, BIO *out)
{
    HWKEY_KEYREF ref;

    if (!hwkey_key_require_private(key, "be written as a device key file"))
        return 0;
    if (key->ref.data == NULL) {
        hwkey_raise(HWKEY_R_NO_PRIVATE_KEY, "the key has no reference to write");
        return 0;
    }
    ref_view(key, &ref);
    return hwkey_backend_ref_encode(key->bkey, &ref, pem, out);
}

/* --- other objects, for stores ------------------------------------------- */

HWKEY_LOOKUP hwkey_key_find_public(HWKEY_DEVICES *devs, OSSL_LIB_CTX *swctx,
                                   const HWKEY_KEYREF *ref, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                                   void *pw_arg, HWKEY_KEY **out)
{
    HWKEY_DEVICE *dev = hwkey_devices_for_kind(devs, ref->kind);
    EVP_PKEY *pub = NULL;
    HWKEY_LOOKUP r;

    *out = NULL;
    if (dev == NULL)
        return HWKEY_LOOKUP_FAILED;
    r = hwkey_backend_pubkey_load(dev, ref, pw_cb, pw_arg, swctx, NULL, &pub);
    if (r != HWKEY_LOOKUP_FOUND)
        return r;
    if ((*out = hwkey_key_from_public(pub)) == NULL)
        return HWKEY_LOOKUP_FAILED;
    (*out)->swctx = swctx;
    return HWKEY_LOOKUP_FOUND;
}

HWKEY_LOOKUP hwkey_cert_find(HWKEY_DEVICES *devs, const HWKEY_KEYREF *ref,
                             OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, unsigned char **der,
                             size_t *derlen)
{
    HWKEY_DEVICE *dev = hwkey_devices_for_kind(devs, ref->kind);

    *der = NULL;
    *derlen = 0;
    if (dev == NULL)
        return HWKEY_LOOKUP_FAILED;
    return hwkey_backend_cert_load(dev, ref, pw_cb, pw_arg, der, derlen);
}
