/*
 * TPM public areas on the host side: what a key can do (HWKEY_KEYINFO), its
 * public half as a software EVP_PKEY, and the templates of new keys and of
 * the owner primary.
 */
#include "backend/tpm2/tpm2_internal.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>

#include "util/error.h"

static const struct {
    TPMI_ECC_CURVE curve;
    int nid;
    int bits;
} curves[] = {
    {TPM2_ECC_NIST_P256, NID_X9_62_prime256v1, 256},
    {TPM2_ECC_NIST_P384, NID_secp384r1, 384},
    {TPM2_ECC_NIST_P521, NID_secp521r1, 521},
};
#define N_CURVES (sizeof(curves) / sizeof(curves[0]))

int hwkey_tpm2_curve_nid(TPMI_ECC_CURVE curve)
{
    for (size_t i = 0; i < N_CURVES; i++)
        if (curves[i].curve == curve)
            return curves[i].nid;
    return NID_undef;
}

TPMI_ECC_CURVE hwkey_tpm2_curve_id(int nid)
{
    for (size_t i = 0; i < N_CURVES; i++)
        if (curves[i].nid == nid)
            return curves[i].curve;
    return TPM2_ECC_NONE;
}

static int curve_bits(TPMI_ECC_CURVE curve)
{
    for (size_t i = 0; i < N_CURVES; i++)
        if (curves[i].curve == curve)
            return curves[i].bits;
    return 0;
}

TPMI_ALG_HASH hwkey_tpm2_hash_alg(int md_nid)
{
    switch (md_nid) {
    case NID_sha1:
        return TPM2_ALG_SHA1;
    case NID_sha256:
        return TPM2_ALG_SHA256;
    case NID_sha384:
        return TPM2_ALG_SHA384;
    case NID_sha512:
        return TPM2_ALG_SHA512;
    default:
        return TPM2_ALG_ERROR;
    }
}

int hwkey_tpm2_public_info(const TPMT_PUBLIC *pub, HWKEY_KEYINFO *info)
{
    TPMA_OBJECT attrs = pub->objectAttributes;
    /* A restricted key signs only TPM-made digests and decrypts only blobs. */
    int restricted = (attrs & TPMA_OBJECT_RESTRICTED) != 0;
    int can_sign = !restricted && (attrs & TPMA_OBJECT_SIGN_ENCRYPT) != 0;
    int can_decrypt = !restricted && (attrs & TPMA_OBJECT_DECRYPT) != 0;

    memset(info, 0, sizeof(*info));
    switch (pub->type) {
    case TPM2_ALG_ECC:
        info->alg = HWKEY_ALG_EC;
        info->curve_nid = hwkey_tpm2_curve_nid(pub->parameters.eccDetail.curveID);
        info->bits = curve_bits(pub->parameters.eccDetail.curveID);
        if (info->curve_nid == NID_undef) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "TPM key on unsupported curve 0x%04x",
                        (unsigned int)pub->parameters.eccDetail.curveID);
            return 0;
        }
        if (can_sign)
            info->flags |= HWKEY_KEYF_SIGN;
        if (can_decrypt)
            info->flags |= HWKEY_KEYF_DERIVE;
        return 1;
    case TPM2_ALG_RSA:
        info->alg = HWKEY_ALG_RSA;
        info->bits = pub->parameters.rsaDetail.keyBits;
        if (can_sign)
            info->flags |= HWKEY_KEYF_SIGN;
        if (can_decrypt) {
            info->flags |= HWKEY_KEYF_DECRYPT;
            /* RSA_Decrypt with scheme NULL is m^d only when the key fixes no scheme. */
            if (pub->parameters.rsaDetail.scheme.scheme == TPM2_ALG_NULL)
                info->flags |= HWKEY_KEYF_RSA_RAW;
        }
        return 1;
    default:
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "TPM key of unsupported type 0x%04x",
                    (unsigned int)pub->type);
        return 0;
    }
}

static EVP_PKEY *fromdata(OSSL_LIB_CTX *libctx, const char *propq, const char *name,
                          OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;

    if (params == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "building the public key parameters");
        goto end;
    }
    ctx = EVP_PKEY_CTX_new_from_name(libctx, name, propq);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        pkey = NULL;
        hwkey_raise(HWKEY_R_INTERNAL,
                    "cannot build the %s public key of a TPM key in the "
                    "library context",
                    name);
    }
end:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *ec_pkey(const TPMS_ECC_POINT *pt, TPMI_ECC_CURVE curve, OSSL_LIB_CTX *libctx,
                         const char *propq)
{
    int bits = curve_bits(curve);
    size_t flen = (size_t)(bits + 7) / 8;
    unsigned char point[1 + 2 * 66];
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;
    const char *group = OSSL_EC_curve_nid2name(hwkey_tpm2_curve_nid(curve));

    if (bits == 0 || group == NULL || pt->x.size > flen || pt->y.size > flen) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "TPM EC public key does not fit its curve");
        return NULL;
    }
    /* TPM2B coordinates may be shorter than the field: left-pad them. */
    memset(point, 0, sizeof(point));
    point[0] = POINT_CONVERSION_UNCOMPRESSED;
    memcpy(point + 1 + flen - pt->x.size, pt->x.buffer, pt->x.size);
    memcpy(point + 1 + 2 * flen - pt->y.size, pt->y.buffer, pt->y.size);
    if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * flen)) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "building the EC public key parameters");
        goto end;
    }
    pkey = fromdata(libctx, propq, "EC", bld);
end:
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static EVP_PKEY *rsa_pkey(const TPMT_PUBLIC *pub, OSSL_LIB_CTX *libctx, const char *propq)
{
    uint32_t exp = pub->parameters.rsaDetail.exponent;
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;

    if (exp == 0)
        exp = 65537; /* TPM 2.0 Part 2: 0 means the default exponent */
    n = BN_bin2bn(pub->unique.rsa.buffer, pub->unique.rsa.size, NULL);
    e = BN_new();
    if (n == NULL || e == NULL || !BN_set_word(e, exp) || (bld = OSSL_PARAM_BLD_new()) == NULL ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "building the RSA public key parameters");
        goto end;
    }
    pkey = fromdata(libctx, propq, "RSA", bld);
end:
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pkey;
}

EVP_PKEY *hwkey_tpm2_public_to_pkey(const TPMT_PUBLIC *pub, OSSL_LIB_CTX *libctx, const char *propq)
{
    switch (pub->type) {
    case TPM2_ALG_ECC:
        return ec_pkey(&pub->unique.ecc, pub->parameters.eccDetail.curveID, libctx, propq);
    case TPM2_ALG_RSA:
        return rsa_pkey(pub, libctx, propq);
    default:
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "TPM key of unsupported type 0x%04x",
                    (unsigned int)pub->type);
        return NULL;
    }
}

int hwkey_tpm2_key_template(const HWKEY_KEYSPEC *spec, TPM2B_PUBLIC *tmpl)
{
    TPMT_PUBLIC *p = &tmpl->publicArea;

    memset(tmpl, 0, sizeof(*tmpl));
    p->nameAlg = TPM2_ALG_SHA256;
    /*
     * Unrestricted sign + decrypt with scheme NULL: the caller picks the
     * scheme per operation, and the raw RSA op (any PSS salt) stays possible.
     */
    p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                          TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT;
    switch (spec->alg) {
    case HWKEY_ALG_EC:
        p->type = TPM2_ALG_ECC;
        p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
        p->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        p->parameters.eccDetail.curveID = hwkey_tpm2_curve_id(spec->curve_nid);
        if (p->parameters.eccDetail.curveID == TPM2_ECC_NONE) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "curve %s is not available on a TPM",
                        OBJ_nid2sn(spec->curve_nid));
            return 0;
        }
        return 1;
    case HWKEY_ALG_RSA:
        p->type = TPM2_ALG_RSA;
        p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
        p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        p->parameters.rsaDetail.exponent = 0;
        if (spec->bits != 1024 && spec->bits != 2048 && spec->bits != 3072 && spec->bits != 4096) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "RSA-%d is not a TPM key size", spec->bits);
            return 0;
        }
        p->parameters.rsaDetail.keyBits = (TPMI_RSA_KEY_BITS)spec->bits;
        return 1;
    default:
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "TPM keys are EC or RSA");
        return 0;
    }
}

void hwkey_tpm2_primary_template(TPM2B_PUBLIC *tmpl)
{
    TPMT_PUBLIC *p = &tmpl->publicArea;

    /*
     * Exactly tpm2-openssl's primaryEccTemplate (its parent 0x40000001):
     * any difference (NODA, an empty vs. zero-filled unique) derives another
     * key and every key file of the other tool fails with TPM_RC_INTEGRITY.
     */
    memset(tmpl, 0, sizeof(*tmpl));
    p->type = TPM2_ALG_ECC;
    p->nameAlg = TPM2_ALG_SHA256;
    p->objectAttributes = TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT |
                          TPMA_OBJECT_NODA | TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_SENSITIVEDATAORIGIN;
    p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
    p->parameters.eccDetail.symmetric.keyBits.aes = 128;
    p->parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    p->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    p->unique.ecc.x.size = 0;
    p->unique.ecc.y.size = 0;
}

void hwkey_tpm2_tools_primary_template(TPM2B_PUBLIC *tmpl)
{
    TPMT_PUBLIC *p = &tmpl->publicArea;

    /*
     * `tpm2_createprimary -C o` with no -G/-a/-u (tpm2-tools 5.4, Debian 12):
     * RSA 2048, AES-128-CFB, scheme NULL, exponent 0, empty unique, no noDA.
     * tpm2_encodeobject records such a transient parent as 0x40000001.
     */
    memset(tmpl, 0, sizeof(*tmpl));
    p->type = TPM2_ALG_RSA;
    p->nameAlg = TPM2_ALG_SHA256;
    p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                          TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
    p->parameters.rsaDetail.symmetric.keyBits.aes = 128;
    p->parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
    p->parameters.rsaDetail.keyBits = 2048;
    p->parameters.rsaDetail.exponent = 0;
    p->unique.rsa.size = 0;
}
