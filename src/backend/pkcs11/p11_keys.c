/*
 * Token keys: resolving a pkcs11: URI to a private key object, and
 * generating (deleting and listing: p11_keylist.c).  A key remembers how it was found (CKA_ID,
 * CKA_LABEL, CKO_PRIVATE_KEY) rather than trusting its object handle forever: handles die with the
 * session epoch (fork, module re-initialisation) and are re-found on first use in the new epoch.
 */
#include "backend/pkcs11/p11_internal.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rand.h>

#include "util/error.h"

static void pinsrc_of(HWKEY_P11_PINSRC *src, const HWKEY_P11_DEVICE *dev, const HWKEY_P11_URI *uri,
                      OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg)
{
    src->uri = uri;
    src->cfg_pin_source = dev->pin_source;
    src->pw_cb = pw_cb;
    src->pw_arg = pw_arg;
    src->quirks = dev->quirks;
}

int hwkey_p11_ref_open(HWKEY_P11_DEVICE *dev, const char *text, size_t len,
                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_P11_URI **uri,
                       HWKEY_P11_TOKEN **tok, CK_SESSION_HANDLE *s, uint64_t *epoch)
{
    HWKEY_P11_MODULE *mod;
    HWKEY_P11_PINSRC src;

    *tok = NULL;
    if (!hwkey_p11_uri_parse(text, len, uri))
        return 0;
    if ((mod = hwkey_p11_module_get(dev, (*uri)->module_path)) == NULL ||
        (*tok = hwkey_p11_token_find(mod, *uri)) == NULL || !hwkey_p11_session_get(*tok, s, epoch))
        goto err;
    pinsrc_of(&src, dev, *uri, pw_cb, pw_arg);
    if (!hwkey_p11_login(*tok, *s, &src)) {
        hwkey_p11_session_put(*tok, *s, *epoch, 0);
        goto err;
    }
    return 1;
err:
    *tok = NULL;
    hwkey_p11_uri_free(*uri);
    *uri = NULL;
    return 0;
}

/*
 * Exactly one private key matching key->id/label; ABSENT when there is none,
 * FAILED when the search fails or is ambiguous (error raised in both).
 */
static HWKEY_LOOKUP find_private(HWKEY_P11_KEY *key, CK_SESSION_HANDLE s, int has_id,
                                 CK_OBJECT_HANDLE *obj)
{
    CK_OBJECT_HANDLE objs[2];
    CK_ULONG n = 0;

    key->finds++;
    if (!hwkey_p11_find(key->tok, s, CKO_PRIVATE_KEY, key->id, key->id_len, has_id, key->label,
                        objs, 2, &n))
        return HWKEY_LOOKUP_FAILED;
    if (n == 0 && key->found_before && hwkey_p11_now_ms() - key->vanished_ms >= 1000u) {
        /*
         * A key that was there and is gone: SoftHSM whose token store went
         * away and came back finds nothing until C_Finalize + C_Initialize
         * (checked with SoftHSM 2.6.1).  Report it as a lost device so the
         * caller re-initialises the module; at most once a second per key,
         * so a key really deleted under a running server does not make
         * every operation re-initialise the module.
         */
        key->vanished_ms = hwkey_p11_now_ms();
        hwkey_p11_note_rv(CKR_TOKEN_NOT_PRESENT);
    }
    if (n == 0) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "no private key with object=\"%s\" on token \"%s\"",
                    key->label != NULL ? key->label : "", key->tok->name);
        return HWKEY_LOOKUP_ABSENT;
    }
    if (n > 1) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "several private keys match object=\"%s\" on token "
                    "\"%s\"; add id= to the URI",
                    key->label != NULL ? key->label : "", key->tok->name);
        return HWKEY_LOOKUP_FAILED;
    }
    *obj = objs[0];
    key->found_before = 1;
    return HWKEY_LOOKUP_FOUND;
}

/* Flags from the object's attributes and the token's mechanisms. */
static void key_flags(HWKEY_P11_KEY *key, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj)
{
    HWKEY_P11_TOKEN *tok = key->tok;

    key->always_auth = hwkey_p11_attr_true(tok, s, obj, CKA_ALWAYS_AUTHENTICATE);
    if (hwkey_p11_attr_true(tok, s, obj, CKA_SIGN))
        key->base.info.flags |= HWKEY_KEYF_SIGN;
    if (key->ktype == CKK_RSA && hwkey_p11_attr_true(tok, s, obj, CKA_DECRYPT))
        key->base.info.flags |= HWKEY_KEYF_DECRYPT;
    if (key->ktype == CKK_EC && hwkey_p11_attr_true(tok, s, obj, CKA_DERIVE) &&
        hwkey_p11_token_has_mech(tok, CKM_ECDH1_DERIVE))
        key->base.info.flags |= HWKEY_KEYF_DERIVE;
    if (key->ktype == CKK_RSA && (key->base.info.flags & HWKEY_KEYF_SIGN) != 0 &&
        hwkey_p11_token_has_mech(tok, CKM_RSA_X_509))
        key->base.info.flags |= HWKEY_KEYF_RSA_RAW;
}

/* The URI's type= value for an object class (RFC 7512 section 2.3). */
static const char *uri_type_name(CK_OBJECT_CLASS klass)
{
    switch (klass) {
    case CKO_PUBLIC_KEY:
        return "public";
    case CKO_CERTIFICATE:
        return "cert";
    case CKO_SECRET_KEY:
        return "secret-key";
    case CKO_DATA:
        return "data";
    }
    return "private";
}

static const char *uri_type_what(CK_OBJECT_CLASS klass)
{
    switch (klass) {
    case CKO_PUBLIC_KEY:
        return "public key";
    case CKO_CERTIFICATE:
        return "certificate";
    case CKO_SECRET_KEY:
        return "secret key";
    case CKO_DATA:
        return "data object";
    }
    return "private key";
}

HWKEY_LOOKUP hwkey_p11_key_build(HWKEY_P11_DEVICE *pdev, HWKEY_P11_TOKEN *tok, HWKEY_P11_URI *uri,
                                 CK_SESSION_HANDLE s, uint64_t epoch, HWKEY_P11_KEY **out)
{
    HWKEY_P11_KEY *key = NULL;
    CK_ATTRIBUTE a;
    CK_OBJECT_HANDLE obj;
    unsigned char *buf = NULL;
    size_t len;
    HWKEY_LOOKUP found;

    *out = NULL;
    if (uri->object == NULL && !uri->has_id) {
        hwkey_raise(HWKEY_R_INVALID_URI, "the key URI names no object= nor id=");
        return HWKEY_LOOKUP_FAILED;
    }
    /*
     * A URI that says what it names is taken at its word: type=cert in a
     * reference file given as a private key is a mistake, and finding the
     * private key of the same label anyway would hide it (nginx started and
     * served with such a file).
     */
    if (uri->has_class && uri->klass != CKO_PRIVATE_KEY) {
        hwkey_raise(HWKEY_R_INVALID_URI,
                    "the URI says type=%s: it names a %s, not a private key (use type=private "
                    "or no type=)",
                    uri_type_name(uri->klass), uri_type_what(uri->klass));
        return HWKEY_LOOKUP_FAILED;
    }
    if ((key = OPENSSL_zalloc(sizeof(*key))) == NULL)
        goto oom;
    pthread_mutex_init(&key->lock, NULL);
    key->base.device = &pdev->base;
    key->base.backend = pdev->base.backend;
    key->tok = tok;
    key->cfg_pin_source = pdev->pin_source;
    if ((uri->object != NULL && (key->label = OPENSSL_strdup(uri->object)) == NULL) ||
        (uri->id_len > 0 && (key->id = OPENSSL_memdup(uri->id, uri->id_len)) == NULL))
        goto oom;
    key->id_len = uri->id_len;
    if ((found = find_private(key, s, uri->has_id, &obj)) != HWKEY_LOOKUP_FOUND) {
        hwkey_p11_key_free(&key->base);
        return found;
    }
    /* Store the object's own id and label: the exact reference to re-find it by. */
    if (hwkey_p11_attr_get(tok, s, obj, CKA_ID, &buf, &len) && len > 0) {
        OPENSSL_free(key->id);
        key->id = buf;
        key->id_len = len;
        buf = NULL;
    }
    OPENSSL_free(buf);
    if (key->id == NULL && key->label == NULL &&
        hwkey_p11_attr_get(tok, s, obj, CKA_LABEL, &buf, &len)) {
        key->label = (char *)buf;
        buf = NULL;
    }
    a.type = CKA_KEY_TYPE;
    a.pValue = &key->ktype;
    a.ulValueLen = sizeof(key->ktype);
    if (tok->mod->fl->C_GetAttributeValue(s, obj, &a, 1) != CKR_OK) {
        hwkey_raise(HWKEY_R_DEVICE_ERROR, "cannot read CKA_KEY_TYPE of \"%s\"",
                    hwkey_p11_uri_describe(uri));
        goto err;
    }
    if (!hwkey_p11_pub_read(key, s, obj))
        goto err;
    key_flags(key, s, obj);
    key->priv = obj;
    key->priv_epoch = epoch;
    key->uri = uri;
    *out = key;
    return HWKEY_LOOKUP_FOUND;
oom:
    hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a PKCS#11 key");
err:
    hwkey_p11_key_free(key ? &key->base : NULL);
    return HWKEY_LOOKUP_FAILED;
}

HWKEY_LOOKUP hwkey_p11_key_load(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_BKEY **out)
{
    HWKEY_P11_DEVICE *pdev = (HWKEY_P11_DEVICE *)dev;
    HWKEY_P11_KEY *key = NULL;
    HWKEY_P11_URI *uri = NULL;
    HWKEY_P11_TOKEN *tok = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    uint64_t epoch = 0;
    HWKEY_LOOKUP r;

    *out = NULL;
    if (ref->kind != HWKEY_REF_PKCS11_URI) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the pkcs11 backend resolves pkcs11: URIs only");
        return HWKEY_LOOKUP_FAILED;
    }
    if (pdev->failover) {
        r = hwkey_p11_replicas_load(pdev, (const char *)ref->data, ref->len, pw_cb, pw_arg, &key);
        *out = r == HWKEY_LOOKUP_FOUND ? &key->base : NULL;
        return r;
    }
    /* A token that is not there is a failure (with the reason), not an absent object. */
    if (!hwkey_p11_ref_open(pdev, (const char *)ref->data, ref->len, pw_cb, pw_arg, &uri, &tok, &s,
                            &epoch))
        return HWKEY_LOOKUP_FAILED;
    r = hwkey_p11_key_build(pdev, tok, uri, s, epoch, &key);
    hwkey_p11_session_put(tok, s, epoch, 0);
    if (r != HWKEY_LOOKUP_FOUND)
        hwkey_p11_uri_free(uri);
    *out = r == HWKEY_LOOKUP_FOUND ? &key->base : NULL;
    return r;
}

void hwkey_p11_key_free(HWKEY_BKEY *bkey)
{
    HWKEY_P11_KEY *key = (HWKEY_P11_KEY *)bkey;

    if (key == NULL)
        return;
    /* The object stays on the token; only our memory of it goes. */
    hwkey_p11_replicas_free(key->reps);
    pthread_mutex_destroy(&key->lock);
    hwkey_p11_uri_free(key->uri);
    OPENSSL_free(key->id);
    OPENSSL_free(key->label);
    OPENSSL_free(key->pub_a);
    OPENSSL_free(key->pub_b);
    OPENSSL_free(key);
}

int hwkey_p11_key_acquire(HWKEY_P11_KEY *key, CK_SESSION_HANDLE *s, uint64_t *epoch,
                          CK_OBJECT_HANDLE *obj)
{
    HWKEY_P11_DEVICE *dev = (HWKEY_P11_DEVICE *)key->base.device;
    HWKEY_P11_PINSRC src;
    int ok = 1;

    if (!hwkey_p11_session_get(key->tok, s, epoch))
        return 0;
    /* After fork or a lost session the token is logged out: log in again, no prompt. */
    pinsrc_of(&src, dev, key->uri, NULL, NULL);
    if (!hwkey_p11_login(key->tok, *s, &src)) {
        hwkey_p11_session_put(key->tok, *s, *epoch, 0);
        return 0;
    }
    pthread_mutex_lock(&key->lock);
    if (key->priv_epoch != *epoch || key->priv == CK_INVALID_HANDLE) {
        ok = find_private(key, *s, key->id != NULL, &key->priv) == HWKEY_LOOKUP_FOUND;
        key->priv_epoch = *epoch;
        if (!ok)
            key->priv = CK_INVALID_HANDLE;
    }
    *obj = key->priv;
    pthread_mutex_unlock(&key->lock);
    if (!ok)
        hwkey_p11_session_put(key->tok, *s, *epoch, 0);
    return ok;
}

void hwkey_p11_key_forget_handle(HWKEY_P11_KEY *key)
{
    pthread_mutex_lock(&key->lock);
    key->priv = CK_INVALID_HANDLE;
    pthread_mutex_unlock(&key->lock);
}

/* --- generate, delete, list ---------------------------------------------- */

typedef struct {
    const char *auth;
    size_t auth_len;
} AUTH_ARG;

/* HWKEY_GENOPTS.auth, when given, is the PIN (the CLI's --pin). */
static int auth_as_pin(char *pass, size_t size, size_t *len, const OSSL_PARAM params[], void *arg)
{
    const AUTH_ARG *a = arg;

    if (a->auth_len > size)
        return 0;
    memcpy(pass, a->auth, a->auth_len);
    *len = a->auth_len;
    return 1;
}

int hwkey_p11_ec_params_der(int nid, unsigned char **der, int *len)
{
    ASN1_OBJECT *obj = OBJ_nid2obj(nid);

    *der = NULL;
    *len = obj != NULL ? i2d_ASN1_OBJECT(obj, der) : 0;
    return *len > 0;
}

int hwkey_p11_create_open(HWKEY_P11_DEVICE *dev, const HWKEY_GENOPTS *opts, const char *what,
                          HWKEY_P11_URI **uri, HWKEY_P11_TOKEN **tok, CK_SESSION_HANDLE *s,
                          uint64_t *epoch)
{
    AUTH_ARG auth;

    if (opts == NULL || opts->uri == NULL) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "%s a token key needs a pkcs11: URI", what);
        return 0;
    }
    auth.auth = opts->auth;
    auth.auth_len = opts->auth_len;
    /* The login happens inside, so auth need not outlive this call. */
    return hwkey_p11_ref_open(dev, opts->uri, strlen(opts->uri),
                              opts->auth != NULL ? auth_as_pin : NULL, &auth, uri, tok, s, epoch);
}

int hwkey_p11_new_key_id(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, const HWKEY_P11_URI *uri,
                         unsigned char rid[HWKEY_P11_NEW_ID_LEN], const unsigned char **id,
                         size_t *id_len)
{
    static const CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
    CK_OBJECT_HANDLE dup[1];
    CK_ULONG n = 0;

    if (uri->has_id && uri->id_len > 0) {
        *id = uri->id;
        *id_len = uri->id_len;
    } else {
        if (RAND_bytes(rid, HWKEY_P11_NEW_ID_LEN) != 1) {
            hwkey_raise(HWKEY_R_INTERNAL, "RAND_bytes failed making a CKA_ID");
            return 0;
        }
        *id = rid;
        *id_len = HWKEY_P11_NEW_ID_LEN;
    }
    /*
     * Two keys under one reference would make every later load ambiguous, and
     * a stray public key with the new key's id/label would be taken for its
     * public half.  Certificates may share them: that is how they pair.
     */
    for (size_t c = 0; c < sizeof(classes) / sizeof(classes[0]); c++) {
        if (!hwkey_p11_find(tok, s, classes[c], *id, *id_len, 1, NULL, dup, 1, &n))
            return 0;
        if (n == 0 && uri->object != NULL &&
            !hwkey_p11_find(tok, s, classes[c], NULL, 0, 0, uri->object, dup, 1, &n))
            return 0;
        if (n > 0) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                        "token \"%s\" already has a %s key with this "
                        "id or object=\"%s\"",
                        tok->name, classes[c] == CKO_PRIVATE_KEY ? "private" : "public",
                        uri->object != NULL ? uri->object : "");
            return 0;
        }
    }
    return 1;
}

int hwkey_p11_key_generate(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec, const HWKEY_GENOPTS *opts,
                           HWKEY_REFBLOB *out)
{
    HWKEY_P11_DEVICE *pdev = (HWKEY_P11_DEVICE *)dev;
    static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG bits = (CK_ULONG)spec->bits;
    unsigned char exp[3] = {0x01, 0x00, 0x01}, rid[HWKEY_P11_NEW_ID_LEN], *params = NULL;
    CK_MECHANISM mech = {0, NULL, 0};
    CK_ATTRIBUTE pub[10], priv[10];
    CK_ULONG npub = 0, npriv = 0;
    CK_OBJECT_HANDLE hpub, hpriv;
    HWKEY_P11_URI *uri = NULL;
    HWKEY_P11_TOKEN *tok = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    const unsigned char *id;
    uint64_t epoch = 0;
    size_t id_len;
    char *text = NULL;
    int plen = 0, ok = 0;
    CK_RV rv;

    if (!hwkey_p11_create_open(pdev, opts, "generating", &uri, &tok, &s, &epoch))
        return 0;
#define ADD(t, ty, p, l)                                                                           \
    (t[n##t].type = (ty), t[n##t].pValue = (void *)(p), t[n##t++].ulValueLen = (l))
    switch (spec->alg) {
    case HWKEY_ALG_RSA:
        if (spec->bits != 2048 && spec->bits != 3072 && spec->bits != 4096)
            goto badspec;
        mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        ADD(pub, CKA_MODULUS_BITS, &bits, sizeof(bits));
        ADD(pub, CKA_PUBLIC_EXPONENT, exp, sizeof(exp));
        ADD(pub, CKA_ENCRYPT, &yes, sizeof(yes));
        ADD(priv, CKA_DECRYPT, &yes, sizeof(yes));
        break;
    case HWKEY_ALG_EC:
        if (spec->curve_nid != NID_X9_62_prime256v1 && spec->curve_nid != NID_secp384r1 &&
            spec->curve_nid != NID_secp521r1)
            goto badspec;
        mech.mechanism = CKM_EC_KEY_PAIR_GEN;
        if (!hwkey_p11_ec_params_der(spec->curve_nid, &params, &plen))
            goto badspec;
        ADD(pub, CKA_EC_PARAMS, params, (CK_ULONG)plen);
        ADD(priv, CKA_DERIVE, &yes, sizeof(yes));
        break;
    case HWKEY_ALG_ED25519:
        mech.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
        if (!hwkey_p11_ec_params_der(NID_ED25519, &params, &plen))
            goto badspec;
        ADD(pub, CKA_EC_PARAMS, params, (CK_ULONG)plen);
        break;
    default:
        goto badspec;
    }
    if (!hwkey_p11_token_has_mech(tok, mech.mechanism)) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "token \"%s\" has no key-pair generation "
                    "mechanism 0x%lx for this algorithm",
                    tok->name, (unsigned long)mech.mechanism);
        goto end;
    }
    if (!hwkey_p11_new_key_id(tok, s, uri, rid, &id, &id_len))
        goto end;
    ADD(pub, CKA_TOKEN, &yes, sizeof(yes));
    /* Readable without a login: the store and `hwkey pubkey` then need no PIN. */
    ADD(pub, CKA_PRIVATE, &no, sizeof(no));
    ADD(pub, CKA_VERIFY, &yes, sizeof(yes));
    ADD(pub, CKA_ID, id, id_len);
    ADD(priv, CKA_TOKEN, &yes, sizeof(yes));
    ADD(priv, CKA_PRIVATE, &yes, sizeof(yes));
    ADD(priv, CKA_SENSITIVE, &yes, sizeof(yes));
    ADD(priv, CKA_EXTRACTABLE, &no, sizeof(no));
    ADD(priv, CKA_SIGN, &yes, sizeof(yes));
    ADD(priv, CKA_ID, id, id_len);
    if (uri->object != NULL) {
        ADD(pub, CKA_LABEL, uri->object, strlen(uri->object));
        ADD(priv, CKA_LABEL, uri->object, strlen(uri->object));
    }
#undef ADD
    rv = tok->mod->fl->C_GenerateKeyPair(s, &mech, pub, npub, priv, npriv, &hpub, &hpriv);
    if (rv != CKR_OK) {
        hwkey_raise(hwkey_p11_rv_reason(rv), "C_GenerateKeyPair on token \"%s\" failed: %s",
                    tok->name, hwkey_p11_rv_name(rv));
        goto end;
    }
    text = hwkey_p11_uri_for_object(&tok->info, id, id_len, uri->object, CKO_PRIVATE_KEY, uri);
    if (text == NULL)
        goto end;
    out->kind = HWKEY_REF_PKCS11_URI;
    out->data = (unsigned char *)text;
    out->len = strlen(text);
    ok = 1;
    goto end;
badspec:
    hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                "pkcs11 keys are RSA 2048/3072/4096, EC "
                "P-256/P-384/P-521 or Ed25519 (asked: alg %d, %d bits, curve NID %d)",
                (int)spec->alg, spec->bits, spec->curve_nid);
end:
    OPENSSL_free(params);
    if (tok != NULL)
        hwkey_p11_session_put(tok, s, epoch, 0);
    hwkey_p11_uri_free(uri);
    return ok;
}
