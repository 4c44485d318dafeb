/*
 * The cryptography of the fake PKCS#11 module (fake_pkcs11.h): key objects'
 * attributes from an EVP_PKEY and back (an import), and the operations done
 * with OpenSSL.
 */
#include "fake_pkcs11_internal.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

/* --- keys <-> attributes ---------------------------------------------------------- */

static const struct {
    CK_MECHANISM_TYPE hash;
    CK_RSA_PKCS_MGF_TYPE mgf;
    const char *name;
} hashes[] = {
    {CKM_SHA_1, CKG_MGF1_SHA1, "SHA1"},      {CKM_SHA224, CKG_MGF1_SHA224, "SHA224"},
    {CKM_SHA256, CKG_MGF1_SHA256, "SHA256"}, {CKM_SHA384, CKG_MGF1_SHA384, "SHA384"},
    {CKM_SHA512, CKG_MGF1_SHA512, "SHA512"},
};

static const char *hash_name(CK_MECHANISM_TYPE hash, CK_RSA_PKCS_MGF_TYPE mgf)
{
    for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++)
        if ((hash != 0 && hashes[i].hash == hash) || (mgf != 0 && hashes[i].mgf == mgf))
            return hashes[i].name;
    return NULL;
}

int fake_curve_nid(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    ASN1_OBJECT *o = d2i_ASN1_OBJECT(NULL, &p, (long)len);
    int nid = o != NULL ? OBJ_obj2nid(o) : NID_undef;

    ASN1_OBJECT_free(o);
    return nid;
}

static void set_oid(FAKE_OBJ *o, int nid)
{
    unsigned char *der = NULL;
    int len = i2d_ASN1_OBJECT(OBJ_nid2obj(nid), &der);

    if (len > 0)
        fake_attr_set(o, CKA_EC_PARAMS, der, (size_t)len);
    OPENSSL_free(der);
}

static void set_bn(FAKE_OBJ *o, CK_ATTRIBUTE_TYPE type, EVP_PKEY *pkey, const char *name)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    int len;

    if (EVP_PKEY_get_bn_param(pkey, name, &bn) && (len = BN_bn2bin(bn, buf)) > 0)
        fake_attr_set(o, type, buf, (size_t)len);
    BN_free(bn);
}

/* CKA_EC_POINT: the encoded point in a DER OCTET STRING. */
static void set_point(FAKE_OBJ *o, const unsigned char *pt, size_t len)
{
    unsigned char der[200];
    size_t hdr = len < 0x80 ? 2 : 3;

    der[0] = 0x04;
    if (hdr == 3) {
        der[1] = 0x81;
        der[2] = (unsigned char)len;
    } else {
        der[1] = (unsigned char)len;
    }
    memcpy(der + hdr, pt, len);
    fake_attr_set(o, CKA_EC_POINT, der, hdr + len);
}

/* The type attributes of pkey on o: class, key type, public values (and the point if pub). */
void fake_key_attrs(FAKE_OBJ *o, EVP_PKEY *pkey, int pub)
{
    CK_OBJECT_CLASS klass = pub ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt;
    unsigned char pt[200];
    size_t ptlen = 0;

    fake_attr_set_default(o, CKA_CLASS, &klass, sizeof(klass));
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        kt = CKK_RSA;
        set_bn(o, CKA_MODULUS, pkey, OSSL_PKEY_PARAM_RSA_N);
        set_bn(o, CKA_PUBLIC_EXPONENT, pkey, OSSL_PKEY_PARAM_RSA_E);
    } else if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64];

        kt = CKK_EC;
        EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       NULL);
        set_oid(o, OBJ_sn2nid(group) != NID_undef ? OBJ_sn2nid(group) : OBJ_txt2nid(group));
        if (pub && EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
                                                   sizeof(pt), &ptlen))
            set_point(o, pt, ptlen);
    } else {
        kt = CKK_EC_EDWARDS;
        set_oid(o, NID_ED25519);
        ptlen = sizeof(pt);
        if (pub && EVP_PKEY_get_raw_public_key(pkey, pt, &ptlen))
            set_point(o, pt, ptlen);
    }
    fake_attr_set_default(o, CKA_KEY_TYPE, &kt, sizeof(kt));
}

static BIGNUM *attr_bn(FAKE_OBJ *o, CK_ATTRIBUTE_TYPE type)
{
    FAKE_ATTR *a = fake_attr_find(o, type);

    return a != NULL ? BN_bin2bn(a->val, (int)a->len, NULL) : NULL;
}

/* The EVP_PKEY of a private key object made by C_CreateObject (an import). */
EVP_PKEY *fake_key_from_attrs(FAKE_OBJ *o)
{
    static const struct {
        CK_ATTRIBUTE_TYPE type;
        const char *name;
    } rsa[] = {
        {CKA_MODULUS, OSSL_PKEY_PARAM_RSA_N},
        {CKA_PUBLIC_EXPONENT, OSSL_PKEY_PARAM_RSA_E},
        {CKA_PRIVATE_EXPONENT, OSSL_PKEY_PARAM_RSA_D},
        {CKA_PRIME_1, OSSL_PKEY_PARAM_RSA_FACTOR1},
        {CKA_PRIME_2, OSSL_PKEY_PARAM_RSA_FACTOR2},
        {CKA_EXPONENT_1, OSSL_PKEY_PARAM_RSA_EXPONENT1},
        {CKA_EXPONENT_2, OSSL_PKEY_PARAM_RSA_EXPONENT2},
        {CKA_COEFFICIENT, OSSL_PKEY_PARAM_RSA_COEFFICIENT1},
    };
    CK_KEY_TYPE kt = fake_attr_ulong(o, CKA_KEY_TYPE, (CK_ULONG)-1);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *bns[8] = {NULL};
    FAKE_ATTR *a;
    int ok = bld != NULL;

    if (kt == CKK_EC_EDWARDS) {
        OSSL_PARAM_BLD_free(bld);
        a = fake_attr_find(o, CKA_VALUE);
        return a != NULL ? EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, a->val, a->len)
                         : NULL;
    }
    if (kt == CKK_RSA) {
        for (size_t i = 0; ok && i < sizeof(rsa) / sizeof(rsa[0]); i++)
            ok = (bns[i] = attr_bn(o, rsa[i].type)) != NULL &&
                 OSSL_PARAM_BLD_push_BN(bld, rsa[i].name, bns[i]);
    } else if (kt == CKK_EC) {
        a = fake_attr_find(o, CKA_EC_PARAMS);
        ok = ok && a != NULL && (bns[0] = attr_bn(o, CKA_VALUE)) != NULL &&
             OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                             OBJ_nid2sn(fake_curve_nid(a->val, a->len)), 0) &&
             OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bns[0]);
    } else {
        ok = 0;
    }
    if (ok && (params = OSSL_PARAM_BLD_to_param(bld)) != NULL &&
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, kt == CKK_RSA ? "RSA" : "EC", NULL)) != NULL &&
        EVP_PKEY_fromdata_init(ctx) > 0)
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params);
    for (size_t i = 0; i < 8; i++)
        BN_clear_free(bns[i]);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

/* ECDSA: OpenSSL's DER signature as r || s of the field's width. */
int fake_ecdsa_raw(EVP_PKEY *pkey, const unsigned char *in, size_t inlen, unsigned char *out,
                   size_t *outlen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
    unsigned char der[160];
    const unsigned char *p = der;
    size_t derlen = sizeof(der), n = ((size_t)EVP_PKEY_get_bits(pkey) + 7) / 8;
    ECDSA_SIG *sig = NULL;
    int ok = ctx != NULL && EVP_PKEY_sign_init(ctx) > 0 &&
             EVP_PKEY_sign(ctx, der, &derlen, in, inlen) > 0 &&
             (sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen)) != NULL && *outlen >= 2 * n &&
             BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, (int)n) == (int)n &&
             BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + n, (int)n) == (int)n;

    *outlen = 2 * n;
    ECDSA_SIG_free(sig);
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

int fake_rsa_op(EVP_PKEY *pkey, const CK_MECHANISM *m, int decrypt, const unsigned char *in,
                size_t inlen, unsigned char *out, size_t *outlen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
    int ok = ctx != NULL && (decrypt ? EVP_PKEY_decrypt_init(ctx) : EVP_PKEY_sign_init(ctx)) > 0;

    if (ok && m->mechanism == CKM_RSA_PKCS) {
        ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0;
    } else if (ok && m->mechanism == CKM_RSA_PKCS_PSS) {
        const CK_RSA_PKCS_PSS_PARAMS *p = m->pParameter;
        const char *md = p != NULL ? hash_name(p->hashAlg, 0) : NULL;
        const char *mgf = p != NULL ? hash_name(0, p->mgf) : NULL;

        ok = md != NULL && mgf != NULL &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) > 0 &&
             EVP_PKEY_CTX_set_signature_md(ctx, EVP_get_digestbyname(md)) > 0 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_get_digestbyname(mgf)) > 0 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)p->sLen) > 0;
    } else if (ok && m->mechanism == CKM_RSA_PKCS_OAEP) {
        const CK_RSA_PKCS_OAEP_PARAMS *p = m->pParameter;
        const char *md = p != NULL ? hash_name(p->hashAlg, 0) : NULL;
        const char *mgf = p != NULL ? hash_name(0, p->mgf) : NULL;
        unsigned char *label = NULL;

        ok = md != NULL && mgf != NULL &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_get_digestbyname(md)) > 0 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_get_digestbyname(mgf)) > 0;
        if (ok && p->ulSourceDataLen > 0) {
            ok = (label = OPENSSL_memdup(p->pSourceData, p->ulSourceDataLen)) != NULL &&
                 EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, (int)p->ulSourceDataLen) > 0;
            if (!ok)
                OPENSSL_free(label);
        }
    } else if (ok && m->mechanism == CKM_RSA_X_509) {
        /* The raw private operation m^d is RSA decryption without padding. */
        EVP_PKEY_CTX_free(ctx);
        ctx = EVP_PKEY_CTX_new(pkey, NULL);
        decrypt = 1;
        ok = ctx != NULL && EVP_PKEY_decrypt_init(ctx) > 0 &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) > 0;
    }
    ok = ok && (decrypt ? EVP_PKEY_decrypt(ctx, out, outlen, in, inlen)
                        : EVP_PKEY_sign(ctx, out, outlen, in, inlen)) > 0;
    EVP_PKEY_CTX_free(ctx);
    return ok;
}
