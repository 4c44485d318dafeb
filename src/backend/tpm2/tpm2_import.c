/*
 * Import of a software private key into the TPM (`hwkey import`): the key
 * becomes a loadable TSS2 key file under hwkey's usual parent, with the same
 * attributes as generated keys except fixedTPM / fixedParent /
 * sensitiveDataOrigin, which a TPM refuses (or would lie about) for a key
 * that was born outside it.
 *
 * The private part crosses the bus only inside the outer duplication wrapper
 * (tpm2_dup.c), encrypted to the parent's public key; so does the optional
 * auth value, which sits in the same sensitive area.  The imported object has
 * an empty authPolicy, so TPM2_Duplicate (which needs a policy session) can
 * never take it out again.
 */
#include "backend/tpm2/tpm2_internal.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <tss2/tss2_mu.h>

#include "backend/tpm2/tpm2_dup.h"
#include "util/error.h"
#include "util/log.h"
#include "util/secmem.h"
#include "util/tss2_keyfile.h"

/* Attributes an imported object may not carry (TPM 2.0 Part 3, TPM2_Import). */
#define IMPORT_FORBIDDEN_ATTRS                                                                     \
    (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |            \
     TPMA_OBJECT_ENCRYPTEDDUPLICATION)

/* A big number into a TPM2B buffer at exactly len bytes (left-padded). */
static int bn_to_buf(const BIGNUM *bn, BYTE *buf, size_t max, size_t len, UINT16 *size,
                     const char *what)
{
    if (len > max || BN_num_bytes(bn) > (int)len || BN_bn2binpad(bn, buf, (int)len) < 0) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "the key's %s (%d bytes) does not fit the "
                    "TPM structure (%zu bytes)",
                    what, BN_num_bytes(bn), len);
        return 0;
    }
    *size = (UINT16)len;
    return 1;
}

static int ec_curve_of(EVP_PKEY *soft, int *nid)
{
    char group[64];
    size_t len = 0;

    if (!EVP_PKEY_get_utf8_string_param(soft, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        &len)) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "EC key without a named curve (explicit parameters) cannot be imported");
        return 0;
    }
    *nid = OBJ_txt2nid(group);
    if (*nid == NID_undef)
        *nid = EC_curve_nist2nid(group);
    if (*nid == NID_undef || hwkey_tpm2_curve_id(*nid) == TPM2_ECC_NONE) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "EC curve %s is not a TPM curve (P-256, P-384 are)", group);
        return 0;
    }
    return 1;
}

/* The public area and the sensitive's key part of an EC key. */
static int fill_ec(EVP_PKEY *soft, TPM2B_PUBLIC *pub, TPMT_SENSITIVE *sens)
{
    HWKEY_KEYSPEC spec = {.alg = HWKEY_ALG_EC};
    BIGNUM *x = NULL, *y = NULL, *d = NULL;
    TPMS_ECC_POINT *pt = &pub->publicArea.unique.ecc;
    size_t flen;
    int ok = 0;

    if (!ec_curve_of(soft, &spec.curve_nid) || !hwkey_tpm2_key_template(&spec, pub))
        return 0;
    flen = ((size_t)EVP_PKEY_get_bits(soft) + 7) / 8;
    if (!EVP_PKEY_get_bn_param(soft, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
        !EVP_PKEY_get_bn_param(soft, OSSL_PKEY_PARAM_EC_PUB_Y, &y)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the EC key has no public point");
        goto end;
    }
    if (!EVP_PKEY_get_bn_param(soft, OSSL_PKEY_PARAM_PRIV_KEY, &d)) {
        hwkey_raise(HWKEY_R_NO_PRIVATE_KEY, "the EC key has no private scalar to import");
        goto end;
    }
    ok = bn_to_buf(x, pt->x.buffer, sizeof(pt->x.buffer), flen, &pt->x.size, "public x") &&
         bn_to_buf(y, pt->y.buffer, sizeof(pt->y.buffer), flen, &pt->y.size, "public y") &&
         bn_to_buf(d, sens->sensitive.ecc.buffer, sizeof(sens->sensitive.ecc.buffer), flen,
                   &sens->sensitive.ecc.size, "private scalar");
    sens->sensitiveType = TPM2_ALG_ECC;
end:
    BN_free(x);
    BN_free(y);
    BN_clear_free(d);
    return ok;
}

/* The public area and the sensitive's first prime of a two-prime RSA key. */
static int fill_rsa(EVP_PKEY *soft, TPM2B_PUBLIC *pub, TPMT_SENSITIVE *sens)
{
    HWKEY_KEYSPEC spec = {.alg = HWKEY_ALG_RSA, .bits = EVP_PKEY_get_bits(soft)};
    TPMS_RSA_PARMS *rp = &pub->publicArea.parameters.rsaDetail;
    BIGNUM *n = NULL, *e = NULL, *p = NULL, *p3 = NULL;
    BN_ULONG ev;
    int ok = 0;

    if (spec.bits != 2048 && spec.bits != 3072 && spec.bits != 4096) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "RSA-%d cannot be imported (TPM RSA keys are 2048 or 3072 bits, some 4096)",
                    spec.bits);
        return 0;
    }
    if (!hwkey_tpm2_key_template(&spec, pub))
        return 0;
    if (!EVP_PKEY_get_bn_param(soft, OSSL_PKEY_PARAM_RSA_N, &n) ||
        !EVP_PKEY_get_bn_param(soft, OSSL_PKEY_PARAM_RSA_E, &e)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the RSA key has no modulus or exponent");
        goto end;
    }
    if (!EVP_PKEY_get_bn_param(soft, OSSL_PKEY_PARAM_RSA_FACTOR1, &p)) {
        hwkey_raise(HWKEY_R_NO_PRIVATE_KEY, "the RSA key has no prime factors to import");
        goto end;
    }
    if (EVP_PKEY_get_bn_param(soft, OSSL_PKEY_PARAM_RSA_FACTOR3, &p3)) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "multi-prime RSA keys cannot be imported (a TPM key has two primes)");
        goto end;
    }
    ev = BN_get_word(e);
    if (BN_num_bits(e) > 32 || ev < 3 || (ev & 1) == 0) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "the RSA public exponent does not fit a TPM key (odd, 32 bits at most)");
        goto end;
    }
    /* 0 stands for 65537 in a TPM public area; some TPMs accept only that. */
    rp->exponent = ev == 65537 ? 0 : (UINT32)ev;
    ok = bn_to_buf(n, pub->publicArea.unique.rsa.buffer, sizeof(pub->publicArea.unique.rsa.buffer),
                   (size_t)spec.bits / 8, &pub->publicArea.unique.rsa.size, "modulus") &&
         bn_to_buf(p, sens->sensitive.rsa.buffer, sizeof(sens->sensitive.rsa.buffer),
                   (size_t)spec.bits / 16, &sens->sensitive.rsa.size, "prime");
    sens->sensitiveType = TPM2_ALG_RSA;
end:
    BN_free(n);
    BN_free(e);
    BN_clear_free(p);
    BN_clear_free(p3);
    return ok;
}

static int fill_key(EVP_PKEY *soft, TPM2B_PUBLIC *pub, TPMT_SENSITIVE *sens)
{
    if (EVP_PKEY_is_a(soft, "EC"))
        return fill_ec(soft, pub, sens);
    if (EVP_PKEY_is_a(soft, "RSA"))
        return fill_rsa(soft, pub, sens);
    hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                "%s keys cannot be imported into a TPM (TPM keys are EC or RSA)",
                EVP_PKEY_get0_type_name(soft) != NULL ? EVP_PKEY_get0_type_name(soft) : "these");
    return 0;
}

/* Build the public area and sensitive area (auth value, seed) to import (tpm2_dup.h). */
int hwkey_tpm2_import_object(EVP_PKEY *soft, const HWKEY_GENOPTS *opts, TPM2B_PUBLIC *pub,
                             TPMT_SENSITIVE *sens)
{
    size_t auth_len = opts != NULL && opts->auth != NULL ? opts->auth_len : 0;

    memset(pub, 0, sizeof(*pub));
    if (!fill_key(soft, pub, sens))
        return 0;
    pub->publicArea.objectAttributes &= ~IMPORT_FORBIDDEN_ATTRS;
    /* As for generated keys: dictionary-attack protection only guards an auth value. */
    if (auth_len == 0)
        pub->publicArea.objectAttributes |= TPMA_OBJECT_NODA;
    if (auth_len > sizeof(sens->authValue.buffer)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "TPM key auth value longer than %zu bytes",
                    sizeof(sens->authValue.buffer));
        return 0;
    }
    sens->authValue.size = (UINT16)auth_len;
    if (auth_len > 0)
        memcpy(sens->authValue.buffer, opts->auth, auth_len);
    /* The obfuscation seed of an asymmetric key: nameAlg's digest size. */
    sens->seedValue.size = 32;
    if (RAND_priv_bytes(sens->seedValue.buffer, sens->seedValue.size) != 1) {
        hwkey_raise(HWKEY_R_INTERNAL, "no random bytes for the key's seed value");
        return 0;
    }
    return 1;
}

static TSS2_RC read_public(ESYS_CONTEXT *esys, ESYS_TR tr, TPM2B_PUBLIC **pub)
{
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;

    do {
        rc = Esys_ReadPublic(esys, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, pub, NULL, NULL);
    } while (hwkey_tpm2_retry(&retry, rc));
    return rc;
}

/*
 * Under the lock: wrap to the parent and TPM2_Import.  *priv is the
 * parent-wrapped private blob for the key file.
 */
static int import_under_parent(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, const TPM2B_PUBLIC *pub,
                               const TPMT_SENSITIVE *sens, TPM2B_PRIVATE **priv, uint32_t *recorded)
{
    ESYS_TR parent = ESYS_TR_NONE;
    TPM2B_PUBLIC *ppub = NULL;
    TPM2B_PRIVATE *dup = NULL;
    TPM2B_ENCRYPTED_SECRET seed;
    const TPM2B_DATA no_inner_key = {0};
    const TPMT_SYM_DEF_OBJECT no_inner = {.algorithm = TPM2_ALG_NULL};
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;
    int ok = 0;

    if (!hwkey_tpm2_parent_get(dev, esys, 0, &parent, recorded))
        return 0;
    rc = read_public(esys, parent, &ppub);
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_note_rc(dev, rc);
        hwkey_tpm2_raise_rc(rc, "reading the parent key's public area");
        goto end;
    }
    if ((dup = OPENSSL_malloc(sizeof(*dup))) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating the duplication blob");
        goto end;
    }
    if (!hwkey_tpm2_dup_wrap(&ppub->publicArea, &pub->publicArea, sens, dup, &seed))
        goto end;
    do {
        rc = Esys_Import(esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &no_inner_key,
                         pub, dup, &seed, &no_inner, priv);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        *priv = NULL;
        hwkey_tpm2_note_rc(dev, rc);
        hwkey_tpm2_raise_rc(rc, "importing the key into the TPM (TPM2_Import)");
        goto end;
    }
    ok = 1;
end:
    if (dup != NULL)
        OPENSSL_clear_free(dup, sizeof(*dup));
    Esys_Free(ppub);
    hwkey_tpm2_parent_put(dev, esys, &parent);
    return ok;
}

int hwkey_tpm2_key_import(HWKEY_DEVICE *base, EVP_PKEY *soft, const HWKEY_GENOPTS *opts,
                          HWKEY_REFBLOB *out)
{
    HWKEY_TPM2_DEVICE *dev = (HWKEY_TPM2_DEVICE *)base;
    TPMT_SENSITIVE *sens = NULL;
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE *priv = NULL;
    ESYS_CONTEXT *esys;
    uint32_t recorded = 0;
    int ok = 0;

    memset(out, 0, sizeof(*out));
    if (opts != NULL && opts->persist_handle != 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "imported TPM keys are key files; make one persistent "
                                          "with tpm2_evictcontrol after loading it");
        return 0;
    }
    if (soft == NULL) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "no key to import");
        return 0;
    }
    /* The sensitive area holds the private key and auth value: protected memory. */
    if ((sens = hwkey_secmem_alloc(sizeof(*sens))) == NULL)
        return 0;
    if (!hwkey_tpm2_import_object(soft, opts, &pub, sens))
        goto end;
    if ((esys = hwkey_tpm2_acquire(dev)) == NULL)
        goto end;
    ok = import_under_parent(dev, esys, &pub, sens, &priv, &recorded);
    hwkey_tpm2_release(dev);
    if (ok)
        ok = hwkey_tpm2_keyfile_out(HWKEY_TSS2_LOADABLE, &pub, priv, recorded,
                                    sens->authValue.size == 0,
                                    "marshalling the imported key's public area",
                                    "marshalling the imported key's private blob", out);
    if (ok)
        hwkey_log(HWKEY_LOG_INFO, "tpm2: imported a %s key under parent 0x%08x",
                  pub.publicArea.type == TPM2_ALG_ECC ? "EC" : "RSA", (unsigned int)recorded);
end:
    hwkey_secmem_free(sens);
    Esys_Free(priv);
    return ok;
}
