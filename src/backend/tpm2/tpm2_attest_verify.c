/*
 * `hwkey attest --verify BUNDLE KEY`: checks an attestation bundle in
 * software, no TPM needed (a CA runs it).  Every check that fails raises
 * one HWKEY_R_ATTESTATION_REJECTED naming it; what passed goes to the
 * report, including what the bundle does NOT prove (an AK nobody pinned).
 *
 * Order: the bundle parses; the AK is a restricted signing key (only then
 * does its signature mean "the TPM produced this structure"); the AK is the
 * pinned one; the signature verifies over the TPMS_ATTEST bytes; they are a
 * TPM-generated certification (magic, type) of the Name of KEY's public
 * area with the expected nonce; KEY's attributes say where it was born.
 */
#include "backend/tpm2/tpm2_offline.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <tss2/tss2_mu.h>

#include "backend/tpm2/tpm2_attest.h"
#include "backend/tpm2/tpm2_dup.h"
#include "backend/tpm2/tpm2_internal.h"
#include "util/error.h"
#include "util/tss2_keyfile.h"

/* An attestation bundle is a few KB; refuse anything far larger unread. */
#define BUNDLE_MAX (64 * 1024)

enum { B_INFO, B_SIG, B_AK, B_KEY, B_EK, B_AKPEM, B_CERT, B_N };

static const char *const labels[B_N] = {
    [B_INFO] = HWKEY_ATTEST_LABEL_INFO, [B_SIG] = HWKEY_ATTEST_LABEL_SIG,
    [B_AK] = HWKEY_ATTEST_LABEL_AK,     [B_KEY] = HWKEY_ATTEST_LABEL_KEY,
    [B_EK] = HWKEY_ATTEST_LABEL_EK,     [B_AKPEM] = "PUBLIC KEY",
    [B_CERT] = "CERTIFICATE",
};

typedef struct {
    unsigned char *data[B_N];
    long len[B_N];
} BUNDLE;

static void bundle_clear(BUNDLE *b)
{
    for (int i = 0; i < B_N; i++)
        OPENSSL_free(b->data[i]);
    memset(b, 0, sizeof(*b));
}

static int reject(const char *why)
{
    hwkey_raise(HWKEY_R_ATTESTATION_REJECTED, "%s", why);
    return 0;
}

/* Every PEM block in order; a label seen twice is ambiguous and refused. */
static int bundle_parse(const unsigned char *in, size_t len, BUNDLE *b)
{
    BIO *bio;
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    int ok = 0;

    memset(b, 0, sizeof(*b));
    if (len == 0 || len > BUNDLE_MAX)
        return reject(len == 0 ? "the attestation file is empty"
                               : "the attestation file is larger than 64 KB");
    if ((bio = BIO_new_mem_buf(in, (int)len)) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "reading the attestation");
        return 0;
    }
    for (;;) {
        int i;

        ERR_set_mark();
        if (PEM_read_bio(bio, &name, &header, &data, &dlen) <= 0) {
            ERR_pop_to_mark();
            break;
        }
        ERR_pop_to_mark();
        for (i = 0; i < B_N && strcmp(name, labels[i]) != 0; i++) {
        }
        if (i < B_N && b->data[i] != NULL) {
            hwkey_raise(HWKEY_R_ATTESTATION_REJECTED, "the attestation file has two \"%s\" blocks",
                        labels[i]);
            goto end;
        }
        if (i < B_N) {
            b->data[i] = data;
            b->len[i] = dlen;
            data = NULL;
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
        name = header = NULL;
        data = NULL;
    }
    for (int i = B_INFO; i <= B_KEY; i++)
        if (b->data[i] == NULL) {
            hwkey_raise(HWKEY_R_ATTESTATION_REJECTED,
                        "the attestation file has no \"%s\" block (not an hwkey attestation)",
                        labels[i]);
            goto end;
        }
    ok = 1;
end:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);
    if (!ok)
        bundle_clear(b);
    return ok;
}

static int public_of(const unsigned char *d, size_t len, TPM2B_PUBLIC *pub, const char *what)
{
    size_t off = 0;

    memset(pub, 0, sizeof(*pub));
    if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(d, len, &off, pub) != TSS2_RC_SUCCESS || off != len) {
        hwkey_raise(HWKEY_R_ATTESTATION_REJECTED, "%s is not a marshalled TPM2B_PUBLIC", what);
        return 0;
    }
    return 1;
}

/* The AK's signature hash: SHA-256/384/512; SHA-1 is not accepted for evidence. */
static const char *md_of(TPMI_ALG_HASH alg)
{
    return alg == TPM2_ALG_SHA1 ? NULL : hwkey_tpm2_hash_name(alg);
}

/* The AK's checks: restricted signing key, pinned if asked, signature. */
static int check_ak(const BUNDLE *b, const HWKEY_ATTEST_CHECK *chk, BIO *report)
{
    const TPMA_OBJECT need =
        TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_FIXEDTPM;
    TPM2B_PUBLIC ak;
    EVP_PKEY *pk = NULL, *pem = NULL;
    EVP_MD_CTX *md = NULL;
    const unsigned char *p;
    const char *mdname;
    int ok = 0;

    if (!public_of(b->data[B_AK], (size_t)b->len[B_AK], &ak, "the AK public area"))
        return 0;
    if ((ak.publicArea.objectAttributes & need) != need || ak.publicArea.type != TPM2_ALG_ECC)
        return reject("the AK is not a restricted ECC signing key of a TPM (fixedTPM): "
                      "its signature would not prove the TPM made the attestation");
    mdname = md_of(ak.publicArea.parameters.eccDetail.scheme.details.ecdsa.hashAlg);
    if (ak.publicArea.parameters.eccDetail.scheme.scheme != TPM2_ALG_ECDSA || mdname == NULL)
        return reject("the AK's scheme is not ECDSA with SHA-256/384/512");
    ERR_set_mark();
    pk = hwkey_tpm2_public_to_pkey(&ak.publicArea, NULL, NULL);
    ERR_pop_to_mark();
    if (pk == NULL)
        return reject("the AK public area holds no usable EC public key");
    if (b->data[B_AKPEM] != NULL) {
        p = b->data[B_AKPEM];
        pem = d2i_PUBKEY(NULL, &p, b->len[B_AKPEM]);
        if (pem == NULL || EVP_PKEY_eq(pem, pk) != 1) {
            reject("the bundle's AK PEM and AK public area disagree");
            goto end;
        }
    }
    if (chk->trust_ak != NULL && EVP_PKEY_eq(chk->trust_ak, pk) != 1) {
        reject("the attestation was signed by another AK than the trusted one "
               "(--trust-ak): another TPM, or a forged bundle");
        goto end;
    }
    ERR_set_mark();
    ok = (md = EVP_MD_CTX_new()) != NULL &&
         EVP_DigestVerifyInit_ex(md, NULL, mdname, NULL, NULL, pk, NULL) == 1 &&
         EVP_DigestVerify(md, b->data[B_SIG], (size_t)b->len[B_SIG], b->data[B_INFO],
                          (size_t)b->len[B_INFO]) == 1;
    ERR_pop_to_mark();
    if (!ok) {
        reject("the AK's signature does not verify over the attestation (tampered or "
               "not signed by this AK)");
        goto end;
    }
    BIO_printf(report, "signature: valid, by the AK (restricted signing key, fixedTPM)\n");
    BIO_printf(report, "AK: %s\n",
               chk->trust_ak != NULL ? "the trusted one (--trust-ak)"
                                     : "NOT pinned: any TPM's AK would pass; pin it with "
                                       "--trust-ak or bind it to the EK (docs/attestation.md)");
end:
    EVP_PKEY_free(pk);
    EVP_PKEY_free(pem);
    EVP_MD_CTX_free(md);
    return ok;
}

static int check_ek(const BUNDLE *b, const HWKEY_ATTEST_CHECK *chk, BIO *report)
{
    TPM2B_PUBLIC ek;
    EVP_PKEY *pk = NULL;
    int ok;

    if (chk->trust_ek == NULL) {
        BIO_printf(report, "EK: %s\n",
                   b->data[B_CERT] != NULL ? "certificate included (not checked: see docs)"
                                           : "not checked");
        return 1;
    }
    if (b->data[B_EK] == NULL)
        return reject("--trust-ek given but the attestation carries no EK");
    if (!public_of(b->data[B_EK], (size_t)b->len[B_EK], &ek, "the EK public area"))
        return 0;
    ERR_set_mark();
    pk = hwkey_tpm2_public_to_pkey(&ek.publicArea, NULL, NULL);
    ERR_pop_to_mark();
    ok = pk != NULL && EVP_PKEY_eq(pk, chk->trust_ek) == 1;
    EVP_PKEY_free(pk);
    if (!ok)
        return reject("the attestation's EK is not the trusted one (--trust-ek): "
                      "another TPM");
    BIO_printf(report, "EK: the trusted one (--trust-ek); the AK's binding to it is proven "
                       "only by credential activation (docs/attestation.md)\n");
    return 1;
}

/* TPMS_ATTEST: TPM-generated, a certification of key's Name, with the nonce. */
static int check_attest(const BUNDLE *b, const TPM2B_PUBLIC *key, const HWKEY_ATTEST_CHECK *chk,
                        BIO *report)
{
    TPMS_ATTEST *at = OPENSSL_zalloc(sizeof(*at));
    TPM2B_NAME name;
    size_t off = 0;
    int ok = 0;

    if (at == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "parsing the attestation");
        return 0;
    }
    if (Tss2_MU_TPMS_ATTEST_Unmarshal(b->data[B_INFO], (size_t)b->len[B_INFO], &off, at) !=
            TSS2_RC_SUCCESS ||
        off != (size_t)b->len[B_INFO]) {
        reject("the attestation is not a TPMS_ATTEST structure");
        goto end;
    }
    if (at->magic != TPM2_GENERATED_VALUE) {
        reject("the attestation lacks TPM_GENERATED_VALUE: not made by a TPM");
        goto end;
    }
    if (at->type != TPM2_ST_ATTEST_CERTIFY) {
        reject("the attestation is not a TPM2_Certify (TPM_ST_ATTEST_CERTIFY)");
        goto end;
    }
    if (!hwkey_tpm2_object_name(&key->publicArea, &name))
        goto end;
    if (at->attested.certify.name.size != name.size ||
        memcmp(at->attested.certify.name.name, name.name, name.size) != 0) {
        reject("the attestation certifies another key (its Name differs from KEY's)");
        goto end;
    }
    if (chk->nonce != NULL && (at->extraData.size != chk->nonce_len ||
                               memcmp(at->extraData.buffer, chk->nonce, chk->nonce_len) != 0)) {
        reject("the attestation's nonce (qualifying data) is not the expected one: "
               "a replayed or other attestation");
        goto end;
    }
    BIO_printf(report, "certified: the key's Name (TPM2_Certify, TPM-generated)\n");
    BIO_printf(report, "nonce: %s\n", chk->nonce != NULL ? "matches" : "not checked");
    BIO_printf(report, "TPM clock: reset count %u, restart count %u, firmware 0x%016llx\n",
               (unsigned int)at->clockInfo.resetCount, (unsigned int)at->clockInfo.restartCount,
               (unsigned long long)at->firmwareVersion);
    ok = 1;
end:
    OPENSSL_free(at);
    return ok;
}

static int check_origin(const TPM2B_PUBLIC *key, const HWKEY_ATTEST_CHECK *chk, BIO *report)
{
    TPMA_OBJECT a = key->publicArea.objectAttributes;
    int fixed = (a & TPMA_OBJECT_FIXEDTPM) && (a & TPMA_OBJECT_FIXEDPARENT);

    if (fixed && (a & TPMA_OBJECT_SENSITIVEDATAORIGIN)) {
        BIO_printf(report, "key: generated in the TPM (sensitiveDataOrigin), cannot leave it "
                           "(fixedTPM, fixedParent)\n");
        return 1;
    }
    if (!(a & TPMA_OBJECT_SENSITIVEDATAORIGIN) && chk->allow_imported) {
        BIO_printf(report,
                   "key: imported, not generated in the TPM (no sensitiveDataOrigin); "
                   "%s\n",
                   fixed ? "cannot leave it" : "duplicable only through its authPolicy");
        return 1;
    }
    if (!(a & TPMA_OBJECT_SENSITIVEDATAORIGIN))
        return reject("the key was imported, not generated in the TPM (no "
                      "sensitiveDataOrigin): a copy may exist outside "
                      "(--allow-imported accepts it)");
    return reject("the key may leave the TPM (fixedTPM or fixedParent clear)");
}

/*
 * The key the verifier means: its key file's public area (which must be the
 * bundle's), or the bundle's public area if its public key is the expected
 * one (a CA holding only the CSR).  Either way the Name check below binds
 * that public area, attributes included, to the TPM's statement.
 */
static int key_public(const BUNDLE *b, const unsigned char *keyfile, size_t keyfile_len,
                      EVP_PKEY *expect, TPM2B_PUBLIC *key)
{
    HWKEY_TSS2_KEYFILE kf;
    EVP_PKEY *pk = NULL;
    int ok = 0;

    memset(&kf, 0, sizeof(kf));
    if (keyfile == NULL) {
        if (!public_of(b->data[B_KEY], (size_t)b->len[B_KEY], key, "the key's public area"))
            return 0;
        ERR_set_mark();
        pk = hwkey_tpm2_public_to_pkey(&key->publicArea, NULL, NULL);
        ERR_pop_to_mark();
        ok = pk != NULL && expect != NULL && EVP_PKEY_eq(pk, expect) == 1;
        EVP_PKEY_free(pk);
        if (!ok)
            return reject("the attestation is for another key than KEY (public keys differ)");
        return 1;
    }
    if (!hwkey_tss2_keyfile_decode(keyfile, keyfile_len, &kf))
        return 0;
    if (kf.pubkey_len != (size_t)b->len[B_KEY] || memcmp(kf.pubkey, b->data[B_KEY], kf.pubkey_len))
        reject("the attestation is for another key than KEY (public areas differ)");
    else
        ok = public_of(kf.pubkey, kf.pubkey_len, key, "KEY's public area");
    hwkey_tss2_keyfile_clear(&kf);
    return ok;
}

int hwkey_tpm2_attest_verify(const unsigned char *bundle, size_t bundle_len,
                             const unsigned char *keyfile, size_t keyfile_len,
                             const HWKEY_ATTEST_CHECK *chk, BIO *report)
{
    TPM2B_PUBLIC key;
    BUNDLE b;
    int ok;

    if (!bundle_parse(bundle, bundle_len, &b))
        return 0;
    ok = key_public(&b, keyfile, keyfile_len, chk->key_pub, &key) && check_ak(&b, chk, report) &&
         check_ek(&b, chk, report) && check_attest(&b, &key, chk, report) &&
         check_origin(&key, chk, report);
    if (ok)
        BIO_printf(report, "verdict: attestation valid\n");
    bundle_clear(&b);
    return ok;
}
