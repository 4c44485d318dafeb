/*
 * The public half of a token key: read from the private key object (RSA
 * tokens keep n and e there), else from the public key object or the
 * certificate with the same CKA_ID/CKA_LABEL; turned into a software EVP_PKEY
 * so that verification and encryption never reach the token.
 */
#include "backend/pkcs11/p11_internal.h"

#include <string.h>

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "util/error.h"

int hwkey_p11_attr_get(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                       CK_ATTRIBUTE_TYPE type, unsigned char **buf, size_t *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_FUNCTION_LIST *fl = tok->mod->fl;

    *buf = NULL;
    *len = 0;
    if (fl->C_GetAttributeValue(s, obj, &a, 1) != CKR_OK ||
        a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
        return 0;
    if ((a.pValue = OPENSSL_malloc(a.ulValueLen + 1)) == NULL) {
        /* Raised, so that a caller's "no such attribute" is not the only word on it. */
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY,
                    "reading a %lu-byte attribute of an object on token "
                    "\"%s\"",
                    (unsigned long)a.ulValueLen, tok->name);
        return 0;
    }
    if (fl->C_GetAttributeValue(s, obj, &a, 1) != CKR_OK) {
        OPENSSL_free(a.pValue);
        return 0;
    }
    ((unsigned char *)a.pValue)[a.ulValueLen] = 0;
    *buf = a.pValue;
    *len = a.ulValueLen;
    return 1;
}

/* The search template: class, and id and label where given; returns its length. */
static CK_ULONG find_template(CK_ATTRIBUTE t[3], CK_OBJECT_CLASS *klass, const unsigned char *id,
                              size_t id_len, int has_id, const char *label)
{
    CK_ULONG nt = 0;

    t[nt].type = CKA_CLASS;
    t[nt].pValue = klass;
    t[nt++].ulValueLen = sizeof(*klass);
    if (has_id) {
        t[nt].type = CKA_ID;
        t[nt].pValue = (void *)id;
        t[nt++].ulValueLen = id_len;
    }
    if (label != NULL) {
        t[nt].type = CKA_LABEL;
        t[nt].pValue = (void *)label;
        t[nt++].ulValueLen = strlen(label);
    }
    return nt;
}

static int find_failed(HWKEY_P11_TOKEN *tok, CK_RV rv)
{
    hwkey_p11_note_rv(rv);
    hwkey_raise(hwkey_p11_rv_reason(rv), "C_FindObjects on token \"%s\" failed: %s", tok->name,
                hwkey_p11_rv_name(rv));
    return 0;
}

/* Finds up to max objects of class klass with the given id/label (either may be absent). */
int hwkey_p11_find(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_CLASS klass,
                   const unsigned char *id, size_t id_len, int has_id, const char *label,
                   CK_OBJECT_HANDLE *objs, CK_ULONG max, CK_ULONG *n)
{
    CK_FUNCTION_LIST *fl = tok->mod->fl;
    CK_ATTRIBUTE t[3];
    CK_ULONG nt = find_template(t, &klass, id, id_len, has_id, label);
    CK_RV rv;

    *n = 0;
    rv = fl->C_FindObjectsInit(s, t, nt);
    if (rv == CKR_OK) {
        rv = fl->C_FindObjects(s, objs, max, n);
        fl->C_FindObjectsFinal(s);
    }
    return rv == CKR_OK ? 1 : find_failed(tok, rv);
}

int hwkey_p11_find_all(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_CLASS klass,
                       const unsigned char *id, size_t id_len, int has_id, const char *label,
                       CK_OBJECT_HANDLE **objs, CK_ULONG *n)
{
    CK_FUNCTION_LIST *fl = tok->mod->fl;
    CK_ATTRIBUTE t[3];
    CK_ULONG nt = find_template(t, &klass, id, id_len, has_id, label), cap = 0, got = 0;
    CK_OBJECT_HANDLE *all = NULL, *bigger;
    CK_RV rv;

    *objs = NULL;
    *n = 0;
    if ((rv = fl->C_FindObjectsInit(s, t, nt)) != CKR_OK)
        return find_failed(tok, rv);
    /* C_FindObjects hands out a chunk at a time; 0 new objects means the end. */
    do {
        if (*n == cap) {
            cap = cap == 0 ? 64 : cap * 2;
            if ((bigger = OPENSSL_realloc(all, cap * sizeof(*all))) == NULL) {
                fl->C_FindObjectsFinal(s);
                OPENSSL_free(all);
                hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "listing %lu objects on token \"%s\"",
                            (unsigned long)cap, tok->name);
                return 0;
            }
            all = bigger;
        }
        got = 0;
        rv = fl->C_FindObjects(s, all + *n, cap - *n, &got);
        *n += got;
    } while (rv == CKR_OK && got > 0);
    fl->C_FindObjectsFinal(s);
    if (rv != CKR_OK) {
        OPENSSL_free(all);
        *n = 0;
        return find_failed(tok, rv);
    }
    *objs = all;
    return 1;
}

/* CKA_EC_POINT is a DER OCTET STRING by the standard, the bare point on some tokens. */
static int unwrap_point(unsigned char **p, size_t *len)
{
    const unsigned char *q = *p;
    ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)*len);
    int ok = 0;

    if (os != NULL && q == *p + *len && os->length > 0) {
        unsigned char *inner = OPENSSL_memdup(os->data, (size_t)os->length);

        if (inner != NULL) {
            OPENSSL_free(*p);
            *p = inner;
            *len = (size_t)os->length;
            ok = 1;
        }
    } else {
        ok = 1; /* already the bare point */
    }
    ASN1_OCTET_STRING_free(os);
    return ok;
}

int hwkey_p11_curve_nid(const unsigned char *params, size_t len)
{
    const unsigned char *q = params;
    ASN1_OBJECT *obj;
    int nid;

    /* PKCS#11 3.0 lets Edwards curves be named by a PrintableString. */
    if (len == 14 && params[0] == 0x13 && memcmp(params + 2, "edwards25519", 12) == 0)
        return NID_ED25519;
    if ((obj = d2i_ASN1_OBJECT(NULL, &q, (long)len)) == NULL)
        return NID_undef;
    nid = OBJ_obj2nid(obj);
    ASN1_OBJECT_free(obj);
    return nid;
}

/* The point of a certificate's EC/Ed25519 public key, bare. */
static int point_from_cert(const unsigned char *der, size_t len, unsigned char **pt, size_t *ptlen)
{
    X509 *x = d2i_X509(NULL, &der, (long)len);
    const unsigned char *p = NULL;
    int plen = 0, ok = 0;

    if (x != NULL && X509_PUBKEY_get0_param(NULL, &p, &plen, NULL, X509_get_X509_PUBKEY(x)) &&
        plen > 0)
        ok = (*pt = OPENSSL_memdup(p, (size_t)plen)) != NULL;
    *ptlen = ok ? (size_t)plen : 0;
    X509_free(x);
    return ok;
}

/* CKA_EC_PARAMS of obj into key->pub_a, and the curve into key->base.info. */
static int read_curve(HWKEY_P11_KEY *key, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj)
{
    HWKEY_KEYINFO *info = &key->base.info;

    if (key->ktype != CKK_EC && key->ktype != CKK_EC_EDWARDS) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "key type CKK 0x%lx is neither RSA, EC nor "
                    "EC Edwards",
                    (unsigned long)key->ktype);
        return 0;
    }
    if (!hwkey_p11_attr_get(key->tok, s, obj, CKA_EC_PARAMS, &key->pub_a, &key->pub_a_len)) {
        hwkey_raise(HWKEY_R_DEVICE_ERROR, "token \"%s\": the key \"%s\" has no CKA_EC_PARAMS",
                    key->tok->name, key->label != NULL ? key->label : "");
        return 0;
    }
    info->curve_nid = hwkey_p11_curve_nid(key->pub_a, key->pub_a_len);
    switch (info->curve_nid) {
    case NID_X9_62_prime256v1:
        info->alg = HWKEY_ALG_EC;
        info->bits = 256;
        break;
    case NID_secp384r1:
        info->alg = HWKEY_ALG_EC;
        info->bits = 384;
        break;
    case NID_secp521r1:
        info->alg = HWKEY_ALG_EC;
        info->bits = 521;
        break;
    case NID_ED25519:
        info->alg = HWKEY_ALG_ED25519;
        info->bits = 256;
        break;
    default:
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "the key's curve (NID %d) is not one of "
                    "P-256, P-384, P-521, Ed25519",
                    info->curve_nid);
        return 0;
    }
    return 1;
}

static void strip_leading_zeros(HWKEY_P11_KEY *key)
{
    while (key->pub_a_len > 0 && key->pub_a[0] == 0)
        memmove(key->pub_a, key->pub_a + 1, --key->pub_a_len);
}

int hwkey_p11_pub_read_object(HWKEY_P11_KEY *key, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub)
{
    HWKEY_P11_TOKEN *tok = key->tok;
    CK_ATTRIBUTE a = {CKA_KEY_TYPE, &key->ktype, sizeof(key->ktype)};
    CK_RV rv = tok->mod->fl->C_GetAttributeValue(s, pub, &a, 1);

    if (rv != CKR_OK) {
        hwkey_raise(hwkey_p11_rv_reason(rv),
                    "reading CKA_KEY_TYPE of a public key on token "
                    "\"%s\": %s",
                    tok->name, hwkey_p11_rv_name(rv));
        return 0;
    }
    if (key->ktype == CKK_RSA) {
        key->base.info.alg = HWKEY_ALG_RSA;
        if (!hwkey_p11_attr_get(tok, s, pub, CKA_MODULUS, &key->pub_a, &key->pub_a_len) ||
            !hwkey_p11_attr_get(tok, s, pub, CKA_PUBLIC_EXPONENT, &key->pub_b, &key->pub_b_len)) {
            hwkey_raise(HWKEY_R_DEVICE_ERROR,
                        "token \"%s\": an RSA public key without "
                        "CKA_MODULUS/CKA_PUBLIC_EXPONENT",
                        tok->name);
            return 0;
        }
        strip_leading_zeros(key);
        key->base.info.bits = (int)key->pub_a_len * 8;
        return 1;
    }
    if (!read_curve(key, s, pub))
        return 0;
    if (!hwkey_p11_attr_get(tok, s, pub, CKA_EC_POINT, &key->pub_b, &key->pub_b_len) ||
        !unwrap_point(&key->pub_b, &key->pub_b_len)) {
        hwkey_raise(HWKEY_R_DEVICE_ERROR,
                    "token \"%s\": an EC public key without a readable "
                    "CKA_EC_POINT",
                    tok->name);
        return 0;
    }
    return 1;
}

int hwkey_p11_pub_read(HWKEY_P11_KEY *key, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv)
{
    HWKEY_P11_TOKEN *tok = key->tok;
    HWKEY_KEYINFO *info = &key->base.info;
    CK_OBJECT_HANDLE other;
    CK_ULONG n = 0;
    unsigned char *cert = NULL;
    size_t certlen = 0;
    int ok = 0;

    if (key->ktype == CKK_RSA) {
        info->alg = HWKEY_ALG_RSA;
        if (!hwkey_p11_attr_get(tok, s, priv, CKA_MODULUS, &key->pub_a, &key->pub_a_len) ||
            !hwkey_p11_attr_get(tok, s, priv, CKA_PUBLIC_EXPONENT, &key->pub_b, &key->pub_b_len)) {
            OPENSSL_free(key->pub_a);
            key->pub_a = NULL;
            if (!hwkey_p11_find(tok, s, CKO_PUBLIC_KEY, key->id, key->id_len, key->id != NULL,
                                key->label, &other, 1, &n) ||
                n == 0 ||
                !hwkey_p11_attr_get(tok, s, other, CKA_MODULUS, &key->pub_a, &key->pub_a_len) ||
                !hwkey_p11_attr_get(tok, s, other, CKA_PUBLIC_EXPONENT, &key->pub_b,
                                    &key->pub_b_len))
                goto nopub;
        }
        strip_leading_zeros(key);
        info->bits = (int)key->pub_a_len * 8;
        return 1;
    }
    if (!read_curve(key, s, priv))
        return 0;
    if (hwkey_p11_find(tok, s, CKO_PUBLIC_KEY, key->id, key->id_len, key->id != NULL, key->label,
                       &other, 1, &n) &&
        n == 1 && hwkey_p11_attr_get(tok, s, other, CKA_EC_POINT, &key->pub_b, &key->pub_b_len)) {
        ok = unwrap_point(&key->pub_b, &key->pub_b_len);
    } else if (hwkey_p11_find(tok, s, CKO_CERTIFICATE, key->id, key->id_len, key->id != NULL,
                              key->label, &other, 1, &n) &&
               n == 1 && hwkey_p11_attr_get(tok, s, other, CKA_VALUE, &cert, &certlen)) {
        ok = point_from_cert(cert, certlen, &key->pub_b, &key->pub_b_len);
    }
    OPENSSL_free(cert);
    if (ok)
        return 1;
nopub:
    hwkey_raise(HWKEY_R_KEY_NOT_FOUND,
                "token \"%s\" has no public key or certificate for "
                "the private key \"%s\" (needed for its public half)",
                tok->name, key->label != NULL ? key->label : "");
    return 0;
}

EVP_PKEY *hwkey_p11_key_public(HWKEY_BKEY *bkey, OSSL_LIB_CTX *libctx, const char *propq)
{
    HWKEY_P11_KEY *key = (HWKEY_P11_KEY *)bkey;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *n = NULL, *e = NULL;
    const char *type;

    if (bld == NULL)
        goto err;
    switch (key->base.info.alg) {
    case HWKEY_ALG_RSA:
        type = "RSA";
        if ((n = BN_bin2bn(key->pub_a, (int)key->pub_a_len, NULL)) == NULL ||
            (e = BN_bin2bn(key->pub_b, (int)key->pub_b_len, NULL)) == NULL ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
            goto err;
        break;
    case HWKEY_ALG_EC:
        type = "EC";
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                             OBJ_nid2sn(key->base.info.curve_nid), 0))
            goto err;
        /* fall through */
    case HWKEY_ALG_ED25519:
        if (key->base.info.alg == HWKEY_ALG_ED25519)
            type = "ED25519";
        if (!OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, key->pub_b,
                                              key->pub_b_len))
            goto err;
        break;
    default:
        goto err;
    }
    if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(libctx, type, propq)) == NULL ||
        EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        pkey = NULL;
        goto err;
    }
    goto end;
err:
    hwkey_raise(HWKEY_R_INTERNAL, "building the software public key of token key \"%s\" failed",
                key->label != NULL ? key->label : "");
end:
    BN_free(n);
    BN_free(e);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

int hwkey_p11_attr_true(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                        CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};

    return tok->mod->fl->C_GetAttributeValue(s, obj, &a, 1) == CKR_OK && v == CK_TRUE;
}
