/*
 * key_import: a software private key (RSA, EC P-256/P-384/P-521, Ed25519)
 * becomes a token private key object (C_CreateObject) that is sensitive,
 * non-extractable and private, plus a public key object with the same
 * CKA_ID/CKA_LABEL so that `hwkey pubkey` and the store need no login.
 *
 * The key's secret components are read from the EVP_PKEY straight into one
 * block of protected memory (no BIGNUM copies on the ordinary heap), handed
 * to the module from there, and wiped.  PKCS#11 has no way to send them
 * wrapped to a token without a wrapping key agreed beforehand, so they cross
 * the module boundary in the clear: that is what C_CreateObject means, and
 * why docs/pkcs11.md says to generate on the token when you can.  The token
 * marks such keys neither CKA_ALWAYS_SENSITIVE nor CKA_NEVER_EXTRACTABLE:
 * they were outside.
 */
#include "backend/pkcs11/p11_internal.h"

#include <string.h>

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

#include "util/error.h"
#include "util/secmem.h"

/* RSA moduli beyond this are not keys anyone imports into a token. */
#define IMPORT_RSA_MAX_BITS 8192
#define IMPORT_MAX_ATTRS 24

/* One protected block the key's components are carved from. */
typedef struct {
    unsigned char *mem;
    size_t size, used;
} SECBUF;

/* Two templates under construction; every value points into the SECBUF or at constants. */
typedef struct {
    CK_ATTRIBUTE priv[IMPORT_MAX_ATTRS], pub[IMPORT_MAX_ATTRS];
    CK_ULONG npriv, npub;
} TEMPLATES;

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

static unsigned char *secbuf_take(SECBUF *b, size_t n)
{
    unsigned char *p;

    if (n > b->size - b->used) {
        hwkey_raise(HWKEY_R_INTERNAL, "import buffer too small (%zu more bytes)", n);
        return NULL;
    }
    p = b->mem + b->used;
    b->used += n;
    return p;
}

/* An overflow leaves *n past the end, which the caller refuses before C_CreateObject. */
static void add(CK_ATTRIBUTE *t, CK_ULONG *n, CK_ATTRIBUTE_TYPE type, const void *v, size_t len)
{
    if (*n >= IMPORT_MAX_ATTRS) {
        *n = IMPORT_MAX_ATTRS + 1;
        return;
    }
    t[*n].type = type;
    t[*n].pValue = (void *)v;
    t[*n].ulValueLen = (CK_ULONG)len;
    (*n)++;
}

static int host_is_little_endian(void)
{
    const union {
        unsigned int u;
        unsigned char c[sizeof(unsigned int)];
    } one = {1};

    return one.c[0] == 1;
}

/*
 * The unsigned-integer parameter name of soft as a PKCS#11 big integer
 * (big-endian, no leading zeros) in b.  The provider writes native byte
 * order, zero-padded, into our protected buffer; we reorder it in place.
 * optional: 1 when absent is not an error (*len = 0 then).
 */
static int get_uint(EVP_PKEY *soft, const char *name, SECBUF *b, size_t cap, int optional,
                    const unsigned char **val, size_t *len)
{
    unsigned char *buf = secbuf_take(b, cap);
    OSSL_PARAM p[2];
    size_t n, off = 0;

    *len = 0;
    if (buf == NULL)
        return 0;
    p[0] = OSSL_PARAM_construct_BN(name, buf, cap);
    p[1] = OSSL_PARAM_construct_end();
    if (!EVP_PKEY_get_params(soft, p) || !OSSL_PARAM_modified(p) || p[0].return_size == 0 ||
        p[0].return_size > cap) {
        if (optional)
            return 1;
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the software key has no usable \"%s\" component", name);
        return 0;
    }
    if (host_is_little_endian()) {
        /* Least significant byte first, zeros after: reversed, leading zeros. */
        for (size_t i = 0, j = cap - 1; i < j; i++, j--) {
            unsigned char t = buf[i];

            buf[i] = buf[j];
            buf[j] = t;
        }
        n = cap;
    } else {
        n = p[0].return_size;
    }
    while (off + 1 < n && buf[off] == 0)
        off++;
    *val = buf + off;
    *len = n - off;
    return 1;
}

static int get_octets(EVP_PKEY *soft, const char *name, SECBUF *b, size_t cap,
                      const unsigned char **val, size_t *len)
{
    unsigned char *buf = secbuf_take(b, cap);
    OSSL_PARAM p[2];

    if (buf == NULL)
        return 0;
    p[0] = OSSL_PARAM_construct_octet_string(name, buf, cap);
    p[1] = OSSL_PARAM_construct_end();
    if (!EVP_PKEY_get_params(soft, p) || !OSSL_PARAM_modified(p) || p[0].return_size == 0 ||
        p[0].return_size > cap) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the software key has no usable \"%s\" component", name);
        return 0;
    }
    *val = buf;
    *len = p[0].return_size;
    return 1;
}

/* CKA_EC_POINT: the point as a DER OCTET STRING (PKCS#11 2.40 §2.3.3), in b. */
static int ec_point_der(const unsigned char *pt, size_t ptlen, SECBUF *b, const unsigned char **val,
                        size_t *len)
{
    size_t hdr = ptlen < 0x80 ? 2 : 3;
    unsigned char *der;

    if (ptlen > 0xff || (der = secbuf_take(b, hdr + ptlen)) == NULL) {
        if (ptlen > 0xff)
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "public point of %zu bytes is too long", ptlen);
        return 0;
    }
    der[0] = V_ASN1_OCTET_STRING;
    if (hdr == 3) {
        der[1] = 0x81;
        der[2] = (unsigned char)ptlen;
    } else {
        der[1] = (unsigned char)ptlen;
    }
    memcpy(der + hdr, pt, ptlen);
    *val = der;
    *len = hdr + ptlen;
    return 1;
}

static int rsa_templates(EVP_PKEY *soft, SECBUF *b, TEMPLATES *t, HWKEY_KEYINFO *info)
{
    static const struct {
        const char *name;
        CK_ATTRIBUTE_TYPE type;
    } parts[] = {
        {OSSL_PKEY_PARAM_RSA_D, CKA_PRIVATE_EXPONENT},
        {OSSL_PKEY_PARAM_RSA_FACTOR1, CKA_PRIME_1},
        {OSSL_PKEY_PARAM_RSA_FACTOR2, CKA_PRIME_2},
        {OSSL_PKEY_PARAM_RSA_EXPONENT1, CKA_EXPONENT_1},
        {OSSL_PKEY_PARAM_RSA_EXPONENT2, CKA_EXPONENT_2},
        {OSSL_PKEY_PARAM_RSA_COEFFICIENT1, CKA_COEFFICIENT},
    };
    size_t cap = (size_t)(info->bits + 7) / 8 + 8, len;
    const unsigned char *v;

    if (info->bits < 2048 || info->bits > IMPORT_RSA_MAX_BITS) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "RSA keys of %d bits are not imported "
                    "(2048..%d)",
                    info->bits, IMPORT_RSA_MAX_BITS);
        return 0;
    }
    /* A third prime has no PKCS#11 attribute: the token would get a wrong CRT key. */
    if (!get_uint(soft, OSSL_PKEY_PARAM_RSA_FACTOR3, b, cap, 1, &v, &len))
        return 0;
    if (len > 0) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "multi-prime RSA keys cannot be imported "
                                                   "into a PKCS#11 token");
        return 0;
    }
    if (!get_uint(soft, OSSL_PKEY_PARAM_RSA_N, b, cap, 0, &v, &len))
        return 0;
    add(t->priv, &t->npriv, CKA_MODULUS, v, len);
    add(t->pub, &t->npub, CKA_MODULUS, v, len);
    if (!get_uint(soft, OSSL_PKEY_PARAM_RSA_E, b, cap, 0, &v, &len))
        return 0;
    add(t->priv, &t->npriv, CKA_PUBLIC_EXPONENT, v, len);
    add(t->pub, &t->npub, CKA_PUBLIC_EXPONENT, v, len);
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (!get_uint(soft, parts[i].name, b, cap, 0, &v, &len))
            return 0;
        add(t->priv, &t->npriv, parts[i].type, v, len);
    }
    add(t->priv, &t->npriv, CKA_DECRYPT, &yes, sizeof(yes));
    add(t->priv, &t->npriv, CKA_DERIVE, &no, sizeof(no));
    add(t->pub, &t->npub, CKA_ENCRYPT, &yes, sizeof(yes));
    return 1;
}

/* EC (named NIST curve) or Ed25519: CKA_EC_PARAMS, CKA_VALUE, CKA_EC_POINT. */
static int ec_templates(EVP_PKEY *soft, SECBUF *b, TEMPLATES *t, HWKEY_KEYINFO *info,
                        unsigned char **params, int *plen)
{
    const unsigned char *v, *pt;
    size_t len, ptlen, fbytes;
    char group[64];

    if (info->alg == HWKEY_ALG_EC) {
        if (!EVP_PKEY_get_utf8_string_param(soft, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            NULL)) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "the EC key has no named curve "
                                                       "(explicit parameters cannot be imported)");
            return 0;
        }
        info->curve_nid = OBJ_sn2nid(group);
        if (info->curve_nid == NID_undef)
            info->curve_nid = OBJ_txt2nid(group);
        if (info->curve_nid != NID_X9_62_prime256v1 && info->curve_nid != NID_secp384r1 &&
            info->curve_nid != NID_secp521r1) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                        "EC curve %s is not imported (P-256, "
                        "P-384 or P-521)",
                        group);
            return 0;
        }
        fbytes = (size_t)(info->bits + 7) / 8;
        if (!get_uint(soft, OSSL_PKEY_PARAM_PRIV_KEY, b, fbytes + 8, 0, &v, &len) ||
            !get_octets(soft, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, b, 2 * fbytes + 1, &pt, &ptlen))
            return 0;
    } else {
        info->curve_nid = NID_ED25519;
        if (!get_octets(soft, OSSL_PKEY_PARAM_PRIV_KEY, b, 32, &v, &len) ||
            !get_octets(soft, OSSL_PKEY_PARAM_PUB_KEY, b, 32, &pt, &ptlen))
            return 0;
        if (len != 32 || ptlen != 32) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "Ed25519 key of %zu/%zu bytes, expected 32", len,
                        ptlen);
            return 0;
        }
    }
    /* The OID form: SoftHSM 2.6 takes it for Edwards curves too (its keygen does). */
    if (!hwkey_p11_ec_params_der(info->curve_nid, params, plen)) {
        hwkey_raise(HWKEY_R_INTERNAL, "no DER OID for curve NID %d", info->curve_nid);
        return 0;
    }
    add(t->priv, &t->npriv, CKA_EC_PARAMS, *params, (size_t)*plen);
    add(t->pub, &t->npub, CKA_EC_PARAMS, *params, (size_t)*plen);
    add(t->priv, &t->npriv, CKA_VALUE, v, len);
    if (!ec_point_der(pt, ptlen, b, &v, &len))
        return 0;
    add(t->pub, &t->npub, CKA_EC_POINT, v, len);
    /* Explicit: SoftHSM otherwise defaults CKA_DECRYPT (and DERIVE) to true for any key. */
    add(t->priv, &t->npriv, CKA_DERIVE, info->alg == HWKEY_ALG_EC ? &yes : &no, sizeof(yes));
    add(t->priv, &t->npriv, CKA_DECRYPT, &no, sizeof(no));
    add(t->pub, &t->npub, CKA_ENCRYPT, &no, sizeof(no));
    return 1;
}

/* What soft is, the key type, the signing mechanism the token must have. */
static int classify(EVP_PKEY *soft, HWKEY_KEYINFO *info, CK_KEY_TYPE *kt, CK_MECHANISM_TYPE *m)
{
    memset(info, 0, sizeof(*info));
    info->bits = EVP_PKEY_get_bits(soft);
    if (EVP_PKEY_is_a(soft, "RSA")) {
        info->alg = HWKEY_ALG_RSA;
        *kt = CKK_RSA;
        *m = CKM_RSA_PKCS;
    } else if (EVP_PKEY_is_a(soft, "EC")) {
        info->alg = HWKEY_ALG_EC;
        *kt = CKK_EC;
        *m = CKM_ECDSA;
    } else if (EVP_PKEY_is_a(soft, "ED25519")) {
        info->alg = HWKEY_ALG_ED25519;
        *kt = CKK_EC_EDWARDS;
        *m = CKM_EDDSA;
    } else {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "%s keys cannot be imported into a token "
                    "(RSA, EC P-256/P-384/P-521 or Ed25519)",
                    EVP_PKEY_get0_type_name(soft) != NULL ? EVP_PKEY_get0_type_name(soft)
                                                          : "these");
        return 0;
    }
    return 1;
}

static CK_RV create(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n,
                    CK_OBJECT_HANDLE *h, const char *what)
{
    CK_RV rv = tok->mod->fl->C_CreateObject(s, t, n, h);

    if (rv != CKR_OK)
        hwkey_raise(hwkey_p11_rv_reason(rv), "C_CreateObject (%s) on token \"%s\" failed: %s", what,
                    tok->name, hwkey_p11_rv_name(rv));
    return rv;
}

int hwkey_p11_key_import(HWKEY_DEVICE *dev, EVP_PKEY *soft, const HWKEY_GENOPTS *opts,
                         HWKEY_REFBLOB *out)
{
    static CK_OBJECT_CLASS priv_class = CKO_PRIVATE_KEY, pub_class = CKO_PUBLIC_KEY;
    unsigned char rid[HWKEY_P11_NEW_ID_LEN], *params = NULL;
    SECBUF b = {NULL, 0, 0};
    TEMPLATES *t = NULL;
    HWKEY_KEYINFO info;
    CK_KEY_TYPE kt = 0;
    CK_MECHANISM_TYPE mech = 0;
    CK_OBJECT_HANDLE hpriv = CK_INVALID_HANDLE, hpub = CK_INVALID_HANDLE;
    HWKEY_P11_URI *uri = NULL;
    HWKEY_P11_TOKEN *tok = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    const unsigned char *id;
    uint64_t epoch = 0;
    size_t id_len;
    char *text = NULL;
    int plen = 0, ok = 0, dead = 0;
    CK_RV rv;

    if (soft == NULL || !classify(soft, &info, &kt, &mech))
        return 0;
    /* Everything the key holds fits in 10 components of the modulus size, DER included. */
    b.size = 10 * ((size_t)(info.bits + 7) / 8 + 16);
    if ((b.mem = hwkey_secmem_alloc(b.size)) == NULL ||
        (t = hwkey_secmem_alloc(sizeof(*t))) == NULL)
        goto end;
    if (!(info.alg == HWKEY_ALG_RSA ? rsa_templates(soft, &b, t, &info)
                                    : ec_templates(soft, &b, t, &info, &params, &plen)))
        goto end;
    /* The token only once the key is known to be importable: no login for a bad file. */
    if (!hwkey_p11_create_open((HWKEY_P11_DEVICE *)dev, opts, "importing", &uri, &tok, &s, &epoch))
        goto end;
    if (!hwkey_p11_token_has_mech(tok, mech)) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "token \"%s\" cannot sign with this key "
                    "type (no mechanism 0x%lx); nothing imported",
                    tok->name, (unsigned long)mech);
        goto end;
    }
    if (!hwkey_p11_new_key_id(tok, s, uri, rid, &id, &id_len))
        goto end;
    add(t->priv, &t->npriv, CKA_CLASS, &priv_class, sizeof(priv_class));
    add(t->priv, &t->npriv, CKA_KEY_TYPE, &kt, sizeof(kt));
    add(t->priv, &t->npriv, CKA_TOKEN, &yes, sizeof(yes));
    add(t->priv, &t->npriv, CKA_PRIVATE, &yes, sizeof(yes));
    add(t->priv, &t->npriv, CKA_SENSITIVE, &yes, sizeof(yes));
    add(t->priv, &t->npriv, CKA_EXTRACTABLE, &no, sizeof(no));
    add(t->priv, &t->npriv, CKA_SIGN, &yes, sizeof(yes));
    add(t->priv, &t->npriv, CKA_UNWRAP, &no, sizeof(no));
    add(t->priv, &t->npriv, CKA_ID, id, id_len);
    add(t->pub, &t->npub, CKA_CLASS, &pub_class, sizeof(pub_class));
    add(t->pub, &t->npub, CKA_KEY_TYPE, &kt, sizeof(kt));
    add(t->pub, &t->npub, CKA_TOKEN, &yes, sizeof(yes));
    /* Readable without a login: the store and `hwkey pubkey` then need no PIN. */
    add(t->pub, &t->npub, CKA_PRIVATE, &no, sizeof(no));
    add(t->pub, &t->npub, CKA_VERIFY, &yes, sizeof(yes));
    add(t->pub, &t->npub, CKA_WRAP, &no, sizeof(no));
    add(t->pub, &t->npub, CKA_ID, id, id_len);
    if (uri->object != NULL) {
        add(t->priv, &t->npriv, CKA_LABEL, uri->object, strlen(uri->object));
        add(t->pub, &t->npub, CKA_LABEL, uri->object, strlen(uri->object));
    }
    if (t->npriv > IMPORT_MAX_ATTRS || t->npub > IMPORT_MAX_ATTRS) {
        hwkey_raise(HWKEY_R_INTERNAL, "import template overflow");
        goto end;
    }
    if ((rv = create(tok, s, t->priv, t->npriv, &hpriv, "private key")) != CKR_OK) {
        dead = hwkey_p11_rv_session_dead(rv);
        goto end;
    }
    if ((rv = create(tok, s, t->pub, t->npub, &hpub, "public key")) != CKR_OK) {
        /* No half-imported key: a private key without its public object stays unusable
         * for `hwkey pubkey` without a login and blocks the label. */
        dead = hwkey_p11_rv_session_dead(rv);
        if (!dead)
            tok->mod->fl->C_DestroyObject(s, hpriv);
        goto end;
    }
    text = hwkey_p11_uri_for_object(&tok->info, id, id_len, uri->object, CKO_PRIVATE_KEY, uri);
    if (text == NULL) {
        tok->mod->fl->C_DestroyObject(s, hpub);
        tok->mod->fl->C_DestroyObject(s, hpriv);
        goto end;
    }
    out->kind = HWKEY_REF_PKCS11_URI;
    out->data = (unsigned char *)text;
    out->len = strlen(text);
    ok = 1;
end:
    if (tok != NULL)
        hwkey_p11_session_put(tok, s, epoch, dead);
    hwkey_p11_uri_free(uri);
    OPENSSL_free(params);
    hwkey_secmem_free(t);     /* wiped: the templates pointed at the key */
    hwkey_secmem_free(b.mem); /* wiped: the key's components */
    return ok;
}
