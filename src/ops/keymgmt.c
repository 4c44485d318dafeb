/*
 * Key management shared by EC and RSA: the keydata is a HWKEY_KEY *.
 * Public parts are answered by the cached software public key (key->pub,
 * in the provider's default-only swctx); private parts never leave.
 */
#include "ops/keymgmt.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>

#include "key/key.h"
#include "ops/provctx.h"
#include "util/error.h"
#include "util/log.h"

/* For messages: the key type's name, "unknown" for none. */
static const char *alg_name(HWKEY_ALG alg)
{
    const char *name = hwkey_key_alg_name(alg);

    return name != NULL ? name : "unknown";
}

void *hwkey_keymgmt_new(void *provctx)
{
    return hwkey_key_new(((HWKEY_PROVCTX *)provctx)->swctx);
}

void hwkey_keymgmt_free(void *keydata)
{
    hwkey_key_free(keydata);
}

void *hwkey_keymgmt_load(HWKEY_ALG alg, const void *reference, size_t reference_sz)
{
    /* The decoder passes the address of its HWKEY_KEY * (key/key.h). */
    HWKEY_KEY **slot = (HWKEY_KEY **)reference;
    HWKEY_KEY *key;

    if (slot == NULL || reference_sz != sizeof(*slot) || *slot == NULL) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "key reference of %zu bytes is not a hwkey key object",
                    reference_sz);
        return NULL;
    }
    key = *slot;
    if (key->alg != alg) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "an %s key was handed to the %s key manager",
                    alg_name(key->alg), alg_name(alg));
        return NULL;
    }
    *slot = NULL;
    return key;
}

/* A new public-only key holding pub's public point (or only its domain parameters). */
static HWKEY_KEY *public_copy(const HWKEY_KEY *key, int with_point)
{
    HWKEY_KEY *copy = hwkey_key_new(key->swctx);
    EVP_PKEY *pub = NULL;

    if (copy == NULL)
        return NULL;
    if (key->pub == NULL)
        return copy;
    if (with_point) {
        pub = EVP_PKEY_dup(key->pub);
    } else if ((pub = EVP_PKEY_new()) != NULL && EVP_PKEY_copy_parameters(pub, key->pub) <= 0) {
        EVP_PKEY_free(pub);
        pub = NULL;
    }
    if (pub == NULL || !hwkey_key_set_public(copy, pub)) {
        hwkey_key_free(copy);
        hwkey_raise(HWKEY_R_INTERNAL, "cannot copy a public key");
        return NULL;
    }
    return copy;
}

void *hwkey_keymgmt_dup(const void *keydata, int selection)
{
    HWKEY_KEY *key = (HWKEY_KEY *)keydata;

    if (key == NULL)
        return NULL;
    /* A device key never changes after load: a shared reference is a copy. */
    if (hwkey_key_has_private(key) && (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0)
        return hwkey_key_up_ref(key) ? key : NULL;
    /*
     * Anything less is a new public-only key with just what was selected.
     * EVP_PKEY_copy_parameters() (CMS's ECDH peer: copy the recipient key's
     * parameters, then set the originator's point) must not get the device
     * key, nor its public point, and set_params() changes the copy alone.
     */
    return public_copy(key, (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0);
}

int hwkey_keymgmt_ec_set_params(void *keydata, const OSSL_PARAM params[])
{
    HWKEY_KEY *key = keydata;
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY);
    EVP_PKEY *pub;

    if (p == NULL)
        return 1;
    if (key == NULL || key->pub == NULL || hwkey_key_has_private(key)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the public point of %s cannot be set",
                    hwkey_key_has_private(key) ? "a device key" : "a key without a curve");
        return 0;
    }
    /* The software key does the decoding and the on-curve check. */
    if ((pub = EVP_PKEY_dup(key->pub)) == NULL || !EVP_PKEY_set_params(pub, (OSSL_PARAM *)params)) {
        EVP_PKEY_free(pub);
        hwkey_raise(HWKEY_R_INVALID_PEER_KEY, "the encoded EC public point is not on %s",
                    OBJ_nid2sn(key->curve_nid));
        return 0;
    }
    EVP_PKEY_free(key->pub);
    key->pub = pub;
    return 1;
}

/* An EC key imported with domain parameters only has no public point. */
static int has_public_point(const HWKEY_KEY *key)
{
    size_t len = 0;

    if (key->pub == NULL)
        return 0;
    if (key->alg != HWKEY_ALG_EC)
        return 1;
    return EVP_PKEY_get_octet_string_param(key->pub, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0,
                                           &len) &&
           len > 0;
}

int hwkey_keymgmt_has(const void *keydata, int selection)
{
    const HWKEY_KEY *key = keydata;
    int ok = 1;

    if (key == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0)
        ok = ok && has_public_point(key);
    /* A device key has its private half, in the device. */
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0)
        ok = ok && hwkey_key_has_private(key);
    if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) != 0)
        ok = ok && key->pub != NULL;
    return ok;
}

int hwkey_keymgmt_match(const void *keydata1, const void *keydata2, int selection)
{
    const HWKEY_KEY *k1 = keydata1, *k2 = keydata2;

    if (k1 == NULL || k2 == NULL || k1->pub == NULL || k2->pub == NULL || k1->alg != k2->alg)
        return 0;
    /*
     * The private half of a device key is only reachable through its public
     * half: two keys with equal public halves are the same key pair, which
     * is what X509_check_private_key asks about a device key and the
     * certificate's public-only key.
     */
    if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0)
        return has_public_point(k1) && has_public_point(k2) && EVP_PKEY_eq(k1->pub, k2->pub) == 1;
    if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) != 0)
        return EVP_PKEY_parameters_eq(k1->pub, k2->pub) == 1;
    return 1;
}

int hwkey_keymgmt_get_params(void *keydata, OSSL_PARAM params[])
{
    HWKEY_KEY *key = keydata;

    if (key == NULL || key->pub == NULL) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "parameters asked of an empty key");
        return 0;
    }
    if (!EVP_PKEY_get_params(key->pub, params)) {
        hwkey_raise(HWKEY_R_INTERNAL, "the software public key did not answer its parameters");
        return 0;
    }
    return 1;
}

/* Parameters that carry private key material, which hwkey never accepts. */
static int holds_private_material(const OSSL_PARAM params[])
{
    static const char *const prefixes[] = {
        OSSL_PKEY_PARAM_PRIV_KEY, OSSL_PKEY_PARAM_RSA_D, "rsa-factor",
        "rsa-exponent",           "rsa-coefficient",
    };

    for (const OSSL_PARAM *p = params; p != NULL && p->key != NULL; p++)
        for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
            size_t n = strlen(prefixes[i]);

            /* "priv" and "d" must match whole; the RSA CRT names as prefixes. */
            if (i < 2 ? strcmp(p->key, prefixes[i]) == 0 : strncmp(p->key, prefixes[i], n) == 0)
                return 1;
        }
    return 0;
}

int hwkey_keymgmt_import(const char *type, void *keydata, int selection, const OSSL_PARAM params[])
{
    HWKEY_KEY *key = keydata;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pub = NULL;
    int ok = 0;

    if (key == NULL || key->pub != NULL || hwkey_key_has_private(key)) {
        hwkey_raise(HWKEY_R_INTERNAL, "import into a key that is not empty");
        return 0;
    }
    /*
     * OpenSSL 3.0 imports with OSSL_KEYMGMT_SELECT_ALL whatever it carries,
     * so the selection cannot tell a public key from a key pair: look at
     * what the parameters hold.
     */
    if (holds_private_material(params)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "hwkey does not take software private keys into memory: wrap the key into "
                    "the device with `hwkey import` and load the key file it writes");
        return 0;
    }
    if ((selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS)) ==
        0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "import of an %s key without its public part", type);
        return 0;
    }
    pctx = EVP_PKEY_CTX_new_from_name(key->swctx, type, NULL);
    if (pctx == NULL || EVP_PKEY_fromdata_init(pctx) <= 0 ||
        EVP_PKEY_fromdata(pctx, &pub,
                          (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0
                              ? EVP_PKEY_PUBLIC_KEY
                              : EVP_PKEY_KEY_PARAMETERS,
                          (OSSL_PARAM *)params) <= 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the %s public key parameters do not form a key", type);
        goto end;
    }
    ok = hwkey_key_set_public(key, pub);
end:
    EVP_PKEY_CTX_free(pctx);
    return ok;
}

int hwkey_keymgmt_export(void *keydata, int selection, OSSL_CALLBACK *param_cb, void *cbarg)
{
    HWKEY_KEY *key = keydata;
    OSSL_PARAM *params = NULL;
    int ok;

    if (key == NULL || key->pub == NULL)
        return 0;
    /*
     * No error raised: OpenSSL 3.0 exports with OSSL_KEYMGMT_SELECT_ALL when
     * it tries another provider first (EVP_PKEY_eq, a foreign operation);
     * refusing makes it come back to hwkey, which is what we want, and an
     * error left behind would be noise after a success.
     */
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
        hwkey_log(HWKEY_LOG_TRACE, "refusing to export the private half of an %s key",
                  alg_name(key->alg));
        return 0;
    }
    if (!EVP_PKEY_todata(key->pub,
                         (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0
                             ? EVP_PKEY_PUBLIC_KEY
                             : EVP_PKEY_KEY_PARAMETERS,
                         &params)) {
        hwkey_raise(HWKEY_R_INTERNAL, "cannot export the %s public key", alg_name(key->alg));
        return 0;
    }
    ok = param_cb(params, cbarg);
    OSSL_PARAM_free(params);
    return ok;
}
