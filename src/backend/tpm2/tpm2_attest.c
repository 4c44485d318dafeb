/*
 * Key attestation (`hwkey attest KEY --out FILE`): TPM2_Certify of the key
 * by an attestation key (AK), and the evidence a CA needs to check it
 * (docs/attestation.md):
 *
 *   AK  a restricted ECDSA P-256 signing key, a primary of the endorsement
 *       hierarchy from a fixed template: the same key every time on this
 *       TPM (until the endorsement seed changes), so a CA can pin it.  A
 *       restricted key signs only digests the TPM did not receive from
 *       outside as TPM_GENERATED_VALUE structures, so an attestation it
 *       signed was made by the TPM.
 *   EK  a TCG default endorsement key (EK Credential Profile): the ECC
 *       P-256 one (template L-2, certificate at NV 0x01c0000a), or the
 *       RSA-2048 one (L-1, 0x01c00002) when the TPM has a certificate only
 *       for that; its public area and certificate are what a CA uses to
 *       tie the AK to a genuine TPM by credential activation.
 *
 * The bundle is PEM blocks (labels below), so each part is extracted with
 * standard tools and verified with openssl (docs/attestation.md).
 */
#include "backend/tpm2/tpm2_attest.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <tss2/tss2_mu.h>

#include "backend/tpm2/tpm2_internal.h"
#include "util/error.h"
#include "util/log.h"

/* TPM2_PolicySecret(TPM_RH_ENDORSEMENT), SHA-256: the TCG EK's authPolicy. */
static const BYTE ek_policy[32] = {0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
                                   0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
                                   0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa};

#define EK_CERT_NV_ECC 0x01c0000au
#define EK_CERT_NV_RSA 0x01c00002u
/* EK certificates are a few hundred bytes to 2 KB; read them in small chunks. */
#define EK_CERT_MAX 4096
#define NV_CHUNK 512

void hwkey_tpm2_ak_template(TPM2B_PUBLIC *t)
{
    TPMT_PUBLIC *p = &t->publicArea;

    memset(t, 0, sizeof(*t));
    p->type = TPM2_ALG_ECC;
    p->nameAlg = TPM2_ALG_SHA256;
    p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                          TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
    p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p->parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    p->parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
}

void hwkey_tpm2_ek_template(TPM2B_PUBLIC *t, int rsa)
{
    TPMT_PUBLIC *p = &t->publicArea;

    memset(t, 0, sizeof(*t));
    p->nameAlg = TPM2_ALG_SHA256;
    p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_ADMINWITHPOLICY |
                          TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    p->authPolicy.size = sizeof(ek_policy);
    memcpy(p->authPolicy.buffer, ek_policy, sizeof(ek_policy));
    /* Both templates: AES-128-CFB, scheme NULL, a zero-filled unique of the key's size. */
    if (rsa) {
        p->type = TPM2_ALG_RSA;
        p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
        p->parameters.rsaDetail.symmetric.keyBits.aes = 128;
        p->parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
        p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        p->parameters.rsaDetail.keyBits = 2048;
        p->parameters.rsaDetail.exponent = 0;
        p->unique.rsa.size = 256;
        return;
    }
    p->type = TPM2_ALG_ECC;
    p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
    p->parameters.eccDetail.symmetric.keyBits.aes = 128;
    p->parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    p->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    p->unique.ecc.x.size = 32;
    p->unique.ecc.y.size = 32;
}

/* What the Certify command fills (arg of the run_cmd callback). */
typedef struct {
    const TPM2B_DATA *nonce;
    TPM2B_PUBLIC ak_pub, ek_pub;
    TPM2B_ATTEST attest;
    TPMT_SIGNATURE sig;
    unsigned char *ek_cert; /* OPENSSL_malloc, may stay NULL */
    size_t ek_cert_len;
    TPM2_HANDLE ek_cert_index; /* NV index it came from, 0 if none */
    const char *failed;        /* which step the returned rc belongs to */
} CERTIFY;

static TSS2_RC endorsement_primary(ESYS_CONTEXT *esys, const TPM2B_PUBLIC *tmpl, ESYS_TR *tr,
                                   TPM2B_PUBLIC *pub)
{
    const TPM2B_SENSITIVE_CREATE sensitive = {0};
    const TPM2B_DATA outside = {0};
    const TPML_PCR_SELECTION pcrs = {0};
    TPM2B_PUBLIC *out = NULL;
    TSS2_RC rc;

    rc = Esys_CreatePrimary(esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                            ESYS_TR_NONE, &sensitive, tmpl, &outside, &pcrs, tr, &out, NULL, NULL,
                            NULL);
    if (rc == TSS2_RC_SUCCESS) {
        *pub = *out;
        Esys_Free(out);
    } else {
        *tr = ESYS_TR_NONE;
    }
    return rc;
}

/* The EK certificate from NV, if the TPM has one; absence is not an error. */
static void read_ek_cert(ESYS_CONTEXT *esys, CERTIFY *c)
{
    static const TPM2_HANDLE indexes[] = {EK_CERT_NV_ECC, EK_CERT_NV_RSA};

    for (size_t i = 0; i < sizeof(indexes) / sizeof(indexes[0]) && c->ek_cert == NULL; i++) {
        TPM2B_NV_PUBLIC *nvpub = NULL;
        ESYS_TR nv = ESYS_TR_NONE;
        size_t size, done = 0;

        if (Esys_TR_FromTPMPublic(esys, indexes[i], ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                  &nv) != TSS2_RC_SUCCESS)
            continue;
        if (Esys_NV_ReadPublic(esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nvpub, NULL) !=
            TSS2_RC_SUCCESS)
            goto next;
        size = nvpub->nvPublic.dataSize;
        if (size == 0 || size > EK_CERT_MAX || (c->ek_cert = OPENSSL_malloc(size)) == NULL)
            goto next;
        while (done < size) {
            TPM2B_MAX_NV_BUFFER *data = NULL;
            UINT16 n = (UINT16)(size - done > NV_CHUNK ? NV_CHUNK : size - done);

            if (Esys_NV_Read(esys, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, n,
                             (UINT16)done, &data) != TSS2_RC_SUCCESS ||
                data->size != n) {
                Esys_Free(data);
                break;
            }
            memcpy(c->ek_cert + done, data->buffer, n);
            done += n;
            Esys_Free(data);
        }
        if (done == size) {
            c->ek_cert_len = size;
            c->ek_cert_index = indexes[i];
        } else {
            hwkey_log(HWKEY_LOG_INFO, "tpm2: cannot read the EK certificate at NV 0x%08x",
                      (unsigned int)indexes[i]);
            OPENSSL_free(c->ek_cert);
            c->ek_cert = NULL;
        }
    next:
        Esys_Free(nvpub);
        Esys_TR_Close(esys, &nv);
    }
}

/*
 * With the key loaded: the EK's public area (created, then flushed: only two
 * objects at a time fit beside the key in swtpm's three slots), then the AK,
 * TPM2_Certify, and the AK flushed.
 */
static TSS2_RC do_certify(ESYS_CONTEXT *esys, ESYS_TR key, ESYS_TR session, void *arg)
{
    CERTIFY *c = arg;
    TPM2B_PUBLIC tmpl;
    const TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_ECDSA,
                                    .details.ecdsa.hashAlg = TPM2_ALG_SHA256};
    TPM2B_ATTEST *attest = NULL;
    TPMT_SIGNATURE *sig = NULL;
    ESYS_TR tr = ESYS_TR_NONE;
    TSS2_RC rc;

    /* The EK its certificate is for: ECC P-256 if the TPM has that one, else RSA-2048. */
    if (c->ek_cert == NULL)
        read_ek_cert(esys, c);
    hwkey_tpm2_ek_template(&tmpl, c->ek_cert_index == EK_CERT_NV_RSA);
    c->failed = "creating the endorsement key (endorsement hierarchy)";
    if ((rc = endorsement_primary(esys, &tmpl, &tr, &c->ek_pub)) != TSS2_RC_SUCCESS)
        return rc;
    hwkey_tpm2_flush_quiet(esys, &tr);

    hwkey_tpm2_ak_template(&tmpl);
    c->failed = "creating the attestation key (endorsement hierarchy)";
    if ((rc = endorsement_primary(esys, &tmpl, &tr, &c->ak_pub)) != TSS2_RC_SUCCESS)
        return rc;
    c->failed = "certifying the key (TPM2_Certify)";
    rc = Esys_Certify(esys, key, tr, session, ESYS_TR_PASSWORD, ESYS_TR_NONE, c->nonce, &scheme,
                      &attest, &sig);
    hwkey_tpm2_flush_quiet(esys, &tr);
    if (rc == TSS2_RC_SUCCESS) {
        c->attest = *attest;
        c->sig = *sig;
    }
    Esys_Free(attest);
    Esys_Free(sig);
    return rc;
}

static int write_block(BIO *out, const char *label, const unsigned char *data, size_t len)
{
    if (PEM_write_bio(out, label, "", data, (long)len) <= 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "writing the %s block", label);
        return 0;
    }
    return 1;
}

static int write_tpm2b_public(BIO *out, const char *label, const TPM2B_PUBLIC *pub)
{
    unsigned char buf[sizeof(TPM2B_PUBLIC)];
    size_t len = 0;

    if (Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(buf), &len) != TSS2_RC_SUCCESS) {
        hwkey_raise(HWKEY_R_INTERNAL, "marshalling %s", label);
        return 0;
    }
    return write_block(out, label, buf, len);
}

/* TPMT_SIGNATURE (ECDSA) as a DER ECDSA-Sig-Value, what openssl dgst -verify takes. */
static int sig_der(const TPMT_SIGNATURE *sig, unsigned char **der, int *len)
{
    const TPMS_SIGNATURE_ECC *e = &sig->signature.ecdsa;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;

    *der = NULL;
    if (sig->sigAlg != TPM2_ALG_ECDSA) {
        hwkey_raise(HWKEY_R_DEVICE_ERROR,
                    "the TPM signed the attestation with scheme 0x%04x, "
                    "not ECDSA",
                    (unsigned int)sig->sigAlg);
        return 0;
    }
    if ((r = BN_bin2bn(e->signatureR.buffer, e->signatureR.size, NULL)) == NULL ||
        (s = BN_bin2bn(e->signatureS.buffer, e->signatureS.size, NULL)) == NULL ||
        (es = ECDSA_SIG_new()) == NULL || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "encoding the attestation signature");
        return 0;
    }
    *len = i2d_ECDSA_SIG(es, der);
    ECDSA_SIG_free(es);
    if (*len <= 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "encoding the attestation signature");
        return 0;
    }
    return 1;
}

static int write_bundle(BIO *out, const HWKEY_TPM2_KEY *key, const CERTIFY *c)
{
    unsigned char *sig = NULL;
    EVP_PKEY *ak = NULL;
    int siglen = 0, ok = 0;

    if (!sig_der(&c->sig, &sig, &siglen) ||
        (ak = hwkey_tpm2_public_to_pkey(&c->ak_pub.publicArea, NULL, NULL)) == NULL)
        goto end;
    if (BIO_printf(out, "hwkey key attestation: TPM2_Certify of the key by the TPM's AK "
                        "(docs/attestation.md)\n") <= 0 ||
        !write_block(out, HWKEY_ATTEST_LABEL_INFO, c->attest.attestationData, c->attest.size) ||
        !write_block(out, HWKEY_ATTEST_LABEL_SIG, sig, (size_t)siglen) ||
        !PEM_write_bio_PUBKEY(out, ak) ||
        !write_tpm2b_public(out, HWKEY_ATTEST_LABEL_AK, &c->ak_pub) ||
        !write_tpm2b_public(out, HWKEY_ATTEST_LABEL_KEY, &key->pub) ||
        !write_tpm2b_public(out, HWKEY_ATTEST_LABEL_EK, &c->ek_pub) ||
        (c->ek_cert != NULL && !write_block(out, "CERTIFICATE", c->ek_cert, c->ek_cert_len))) {
        hwkey_raise(HWKEY_R_INTERNAL, "writing the attestation bundle");
        goto end;
    }
    ok = 1;
end:
    OPENSSL_free(sig);
    EVP_PKEY_free(ak);
    return ok;
}

int hwkey_tpm2_key_attest(HWKEY_BKEY *base, const unsigned char *nonce, size_t nonce_len, BIO *out)
{
    HWKEY_TPM2_KEY *key = (HWKEY_TPM2_KEY *)base;
    CERTIFY *c = NULL;
    TPM2B_DATA qualifying = {0};
    TSS2_RC rc = TSS2_RC_SUCCESS;
    int ok = 0;

    if (nonce_len > sizeof(qualifying.buffer)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the nonce is %zu bytes; a TPM takes at most %zu",
                    nonce_len, sizeof(qualifying.buffer));
        return 0;
    }
    qualifying.size = (UINT16)nonce_len;
    if (nonce_len > 0)
        memcpy(qualifying.buffer, nonce, nonce_len);
    if ((c = OPENSSL_zalloc(sizeof(*c))) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating the attestation");
        return 0;
    }
    c->nonce = &qualifying;
    if (!hwkey_tpm2_run_cmd(key, "TPM2_Certify", do_certify, c, &rc))
        goto end;
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, c->failed);
        goto end;
    }
    ok = write_bundle(out, key, c);
end:
    OPENSSL_free(c->ek_cert);
    OPENSSL_free(c);
    return ok;
}
