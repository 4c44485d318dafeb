/*
 * The three contenders of tpm2_bench.
 *
 * bare:  reads the TSS2 key file itself, creates tpm2-openssl's owner primary
 *        (ECC P-256 storage template, empty unique, as hwkey uses too), loads
 *        the key once and then only calls Esys_Sign on a precomputed
 *        SHA-256 digest: one TPM2_Sign per signature, nothing else.
 * hwkey, tpm2-openssl: the provider module loaded by path into its own
 *        OSSL_LIB_CTX next to the default provider, the key read with
 *        PEM_read_bio_PrivateKey_ex (OSSL_STORE as fallback), and every
 *        signature a fresh EVP_DigestSignInit_ex + EVP_DigestSign, as libssl
 *        does per handshake.
 */
#define _POSIX_C_SOURCE 200809L /* setenv, mkdtemp, clock_gettime, nanosleep */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "bench.h"

const char *const bench_kind_names[BENCH_KIND_MAX] = {"bare ESAPI", "hwkey", "tpm2-openssl"};

struct bench_contender {
    BENCH_KIND kind;
    int no_rm;
    unsigned char *msg; /* the message every signature signs */
    size_t msg_len;
    /* bare */
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
    ESYS_TR key;
    TPMS_CONTEXT *saved; /* suspended (no RM): the key's saved context */
    TPMT_SIGNATURE last; /* the last signature, for the sanity check */
    TPM2B_DIGEST digest;
    TPMT_SIG_SCHEME scheme;
    /* providers */
    OSSL_LIB_CTX *libctx;
    OSSL_PROVIDER *prov_default;
    OSSL_PROVIDER *prov;
    EVP_PKEY *pkey;
    EVP_PKEY *soft_pub; /* the key file's public key as a plain software key */
    EVP_MD_CTX *mctx;
    unsigned char *sig;
    size_t sig_cap;
    size_t sig_len;
};

/* ---- the key file, parsed here so the bare loop depends on no hwkey code ---- */

typedef struct {
    ASN1_OBJECT *type;
    ASN1_BOOLEAN empty_auth;
    STACK_OF(ASN1_TYPE) * policy;
    ASN1_OCTET_STRING *secret;
    STACK_OF(ASN1_TYPE) * auth_policy;
    ASN1_INTEGER *parent;
    ASN1_OCTET_STRING *pubkey;
    ASN1_OCTET_STRING *privkey;
} BENCH_TSSKEY;

ASN1_SEQUENCE(BENCH_TSSKEY) =
    {
        ASN1_SIMPLE(BENCH_TSSKEY, type, ASN1_OBJECT),
        ASN1_EXP_OPT(BENCH_TSSKEY, empty_auth, ASN1_BOOLEAN, 0),
        ASN1_EXP_SEQUENCE_OF_OPT(BENCH_TSSKEY, policy, ASN1_ANY, 1),
        ASN1_EXP_OPT(BENCH_TSSKEY, secret, ASN1_OCTET_STRING, 2),
        ASN1_EXP_SEQUENCE_OF_OPT(BENCH_TSSKEY, auth_policy, ASN1_ANY, 3),
        ASN1_SIMPLE(BENCH_TSSKEY, parent, ASN1_INTEGER),
        ASN1_SIMPLE(BENCH_TSSKEY, pubkey, ASN1_OCTET_STRING),
        ASN1_SIMPLE(BENCH_TSSKEY, privkey, ASN1_OCTET_STRING),
} static_ASN1_SEQUENCE_END(BENCH_TSSKEY)

        static int read_key_file(const char *path, TPM2B_PUBLIC *pub, TPM2B_PRIVATE *priv,
                                 uint32_t *parent, char *err, size_t errlen)
{
    BIO *bio = NULL;
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    const unsigned char *p;
    long der_len = 0;
    BENCH_TSSKEY *k = NULL;
    uint64_t parent64 = 0;
    int ok = 0;

    bio = BIO_new_file(path, "r");
    if (bio == NULL || !PEM_read_bio(bio, &name, &header, &der, &der_len) ||
        strcmp(name, "TSS2 PRIVATE KEY") != 0) {
        snprintf(err, errlen, "%s: not a TSS2 PRIVATE KEY PEM file", path);
        goto end;
    }
    p = der;
    k = (BENCH_TSSKEY *)ASN1_item_d2i(NULL, &p, der_len, ASN1_ITEM_rptr(BENCH_TSSKEY));
    if (k == NULL || !ASN1_INTEGER_get_uint64(&parent64, k->parent) || parent64 > UINT32_MAX ||
        Tss2_MU_TPM2B_PUBLIC_Unmarshal(k->pubkey->data, k->pubkey->length, NULL, pub) != 0 ||
        Tss2_MU_TPM2B_PRIVATE_Unmarshal(k->privkey->data, k->privkey->length, NULL, priv) != 0) {
        snprintf(err, errlen, "%s: malformed TSS2 key file", path);
        goto end;
    }
    if (k->empty_auth == 0) {
        snprintf(err, errlen, "%s: key has an auth value; the benchmark needs emptyAuth keys",
                 path);
        goto end;
    }
    *parent = parent64 == 0 ? TPM2_RH_OWNER : (uint32_t)parent64;
    ok = 1;
end:
    ASN1_item_free((ASN1_VALUE *)k, ASN1_ITEM_rptr(BENCH_TSSKEY));
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(bio);
    return ok;
}

/*
 * The key file's public key as a software key in the default library
 * context: the sanity check then trusts neither provider under test.
 */
static EVP_PKEY *soft_public_key(const TPMT_PUBLIC *pub)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *n = NULL, *e = NULL;
    unsigned char point[1 + 2 * sizeof(pub->unique.ecc.x.buffer)];
    const char *group = NULL;
    size_t plen;

    if (bld == NULL)
        goto end;
    if (pub->type == TPM2_ALG_ECC) {
        switch (pub->parameters.eccDetail.curveID) {
        case TPM2_ECC_NIST_P256:
            group = "P-256";
            break;
        case TPM2_ECC_NIST_P384:
            group = "P-384";
            break;
        case TPM2_ECC_NIST_P521:
            group = "P-521";
            break;
        default:
            goto end;
        }
        point[0] = 0x04; /* uncompressed */
        memcpy(point + 1, pub->unique.ecc.x.buffer, pub->unique.ecc.x.size);
        memcpy(point + 1 + pub->unique.ecc.x.size, pub->unique.ecc.y.buffer,
               pub->unique.ecc.y.size);
        plen = 1 + (size_t)pub->unique.ecc.x.size + pub->unique.ecc.y.size;
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, plen))
            goto end;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    } else if (pub->type == TPM2_ALG_RSA) {
        n = BN_bin2bn(pub->unique.rsa.buffer, pub->unique.rsa.size, NULL);
        e = BN_new();
        if (n == NULL || e == NULL ||
            !BN_set_word(e, pub->parameters.rsaDetail.exponent ? pub->parameters.rsaDetail.exponent
                                                               : 65537) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
            goto end;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    } else {
        goto end;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    if (ctx == NULL || params == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
end:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pkey;
}

/* ---- bare ESAPI ---------------------------------------------------------- */

static int tss_fail(TSS2_RC rc, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s (0x%x)", what, Tss2_RC_Decode(rc), (unsigned)rc);
    return 0;
}

/* tpm2-openssl's owner primary: the same object hwkey's default parent is. */
static const TPM2B_PUBLIC bench_primary_template = {
    .publicArea =
        {
            .type = TPM2_ALG_ECC,
            .nameAlg = TPM2_ALG_SHA256,
            .objectAttributes = TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED |
                                TPMA_OBJECT_DECRYPT | TPMA_OBJECT_NODA | TPMA_OBJECT_FIXEDTPM |
                                TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN,
            .parameters.eccDetail =
                {
                    .symmetric = {.algorithm = TPM2_ALG_AES,
                                  .keyBits.aes = 128,
                                  .mode.aes = TPM2_ALG_CFB},
                    .scheme = {.scheme = TPM2_ALG_NULL},
                    .curveID = TPM2_ECC_NIST_P256,
                    .kdf = {.scheme = TPM2_ALG_NULL},
                },
        },
};

static int bare_new(BENCH_CONTENDER *c, const BENCH_SETUP *s, char *err, size_t errlen)
{
    TPM2B_PUBLIC pub = {0};
    TPM2B_PRIVATE priv = {0};
    TPM2B_SENSITIVE_CREATE sens = {0};
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION pcrs = {0};
    ESYS_TR parent = ESYS_TR_NONE;
    uint32_t parent_handle = 0;
    unsigned int dlen = 0;
    TSS2_RC rc;
    int ok = 0;

    c->key = ESYS_TR_NONE;
    if (!read_key_file(s->key_file, &pub, &priv, &parent_handle, err, errlen))
        goto end;
    rc = Tss2_TctiLdr_Initialize(s->tcti, &c->tcti);
    if (rc != TSS2_RC_SUCCESS) {
        tss_fail(rc, "TCTI", err, errlen);
        goto end;
    }
    rc = Esys_Initialize(&c->esys, c->tcti, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        tss_fail(rc, "Esys_Initialize", err, errlen);
        goto end;
    }
    if (parent_handle == TPM2_RH_OWNER) {
        rc = Esys_CreatePrimary(c->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                ESYS_TR_NONE, &sens, &bench_primary_template, &outside, &pcrs,
                                &parent, NULL, NULL, NULL, NULL);
        if (rc != TSS2_RC_SUCCESS) {
            tss_fail(rc, "CreatePrimary (owner, ECC P-256 storage template)", err, errlen);
            goto end;
        }
    } else {
        rc = Esys_TR_FromTPMPublic(c->esys, parent_handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   &parent);
        if (rc != TSS2_RC_SUCCESS) {
            tss_fail(rc, "parent handle from key file", err, errlen);
            goto end;
        }
    }
    rc = Esys_Load(c->esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub,
                   &c->key);
    if (rc != TSS2_RC_SUCCESS) {
        tss_fail(rc, "Load", err, errlen);
        goto end;
    }

    if (!EVP_Digest(c->msg, c->msg_len, c->digest.buffer, &dlen, EVP_sha256(), NULL)) {
        snprintf(err, errlen, "SHA-256 of the message failed");
        goto end;
    }
    c->digest.size = (UINT16)dlen;
    if (pub.publicArea.type == TPM2_ALG_ECC) {
        c->scheme.scheme = pub.publicArea.parameters.eccDetail.scheme.scheme;
        if (c->scheme.scheme == TPM2_ALG_NULL)
            c->scheme.scheme = TPM2_ALG_ECDSA;
    } else {
        c->scheme.scheme = pub.publicArea.parameters.rsaDetail.scheme.scheme;
        if (c->scheme.scheme == TPM2_ALG_NULL)
            c->scheme.scheme = TPM2_ALG_RSASSA;
    }
    c->scheme.details.any.hashAlg = TPM2_ALG_SHA256;
    ok = 1;
end:
    /* The primary is only the key's way in; the slot is better left free. */
    if (parent != ESYS_TR_NONE && parent_handle == TPM2_RH_OWNER)
        Esys_FlushContext(c->esys, parent);
    OPENSSL_cleanse(&priv, sizeof(priv));
    return ok;
}

static int bare_sign(BENCH_CONTENDER *c, char *err, size_t errlen)
{
    static const TPMT_TK_HASHCHECK no_ticket = {.tag = TPM2_ST_HASHCHECK,
                                                .hierarchy = TPM2_RH_NULL};
    TPMT_SIGNATURE *sig = NULL;
    TSS2_RC rc;

    rc = Esys_Sign(c->esys, c->key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &c->digest,
                   &c->scheme, &no_ticket, &sig);
    if (rc == TSS2_RC_SUCCESS)
        c->last = *sig;
    Esys_Free(sig);
    if (rc != TSS2_RC_SUCCESS)
        return tss_fail(rc, "Sign", err, errlen);
    return 1;
}

static void bare_free(BENCH_CONTENDER *c)
{
    if (c->esys != NULL) {
        if (c->key != ESYS_TR_NONE)
            Esys_FlushContext(c->esys, c->key);
        Esys_Finalize(&c->esys);
    }
    free(c->saved);
    if (c->tcti != NULL)
        Tss2_TctiLdr_Finalize(&c->tcti);
}

/* ---- providers ----------------------------------------------------------- */

/* "what: reason (data); reason (data)..." with every queued error, oldest first. */
static int ossl_fail(const char *what, char *err, size_t errlen)
{
    const char *data = NULL;
    unsigned long e;
    int flags = 0, n;
    size_t used;

    n = snprintf(err, errlen, "%s:", what);
    used = n > 0 && (size_t)n < errlen ? (size_t)n : errlen - 1;
    if (ERR_peek_error() == 0)
        snprintf(err + used, errlen - used, " no error queued");
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        char buf[256];

        ERR_error_string_n(e, buf, sizeof(buf));
        n = snprintf(err + used, errlen - used, " %s%s%s%s;", buf,
                     (flags & ERR_TXT_STRING) && data && *data ? " (" : "",
                     (flags & ERR_TXT_STRING) && data ? data : "",
                     (flags & ERR_TXT_STRING) && data && *data ? ")" : "");
        if (n < 0 || (size_t)n >= errlen - used) {
            used = errlen - 1;
            break;
        }
        used += (size_t)n;
    }
    ERR_clear_error();
    return 0;
}

static EVP_PKEY *load_pkey(OSSL_LIB_CTX *libctx, const char *path)
{
    EVP_PKEY *pkey = NULL;
    OSSL_STORE_CTX *store = NULL;
    BIO *bio = BIO_new_file(path, "r");

    if (bio != NULL)
        pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, NULL, libctx, NULL);
    BIO_free(bio);
    if (pkey != NULL)
        return pkey;
    store = OSSL_STORE_open_ex(path, libctx, NULL, NULL, NULL, NULL, NULL, NULL);
    if (store == NULL)
        return NULL;
    OSSL_STORE_expect(store, OSSL_STORE_INFO_PKEY);
    while (pkey == NULL && !OSSL_STORE_eof(store)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(store);

        if (info != NULL && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            pkey = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
        if (info == NULL)
            break;
    }
    OSSL_STORE_close(store);
    if (pkey != NULL)
        ERR_clear_error(); /* the PEM attempt's noise */
    return pkey;
}

static int prov_new(BENCH_CONTENDER *c, const BENCH_SETUP *s, char *err, size_t errlen)
{
    /* Both modules read their TCTI when they initialise (or first connect). */
    const char *env = s->kind == BENCH_HWKEY ? "HWKEY_TPM2_TCTI" : "TPM2OPENSSL_TCTI";

    if (setenv(env, s->tcti, 1) != 0) {
        snprintf(err, errlen, "setenv %s failed", env);
        return 0;
    }
    c->libctx = OSSL_LIB_CTX_new();
    if (c->libctx == NULL)
        return ossl_fail("OSSL_LIB_CTX_new", err, errlen);
    /*
     * Device provider first, as `openssl -provider X -provider default` and
     * an openssl.cnf listing it first do: OpenSSL 3.0 fetches the signature
     * by name from the first provider offering it, not from the key's one.
     */
    c->prov = OSSL_PROVIDER_load(c->libctx, s->module_path);
    if (c->prov == NULL)
        return ossl_fail(s->module_path, err, errlen);
    c->prov_default = OSSL_PROVIDER_load(c->libctx, "default");
    if (c->prov_default == NULL)
        return ossl_fail("loading the default provider", err, errlen);
    c->pkey = load_pkey(c->libctx, s->key_file);
    if (c->pkey == NULL)
        return ossl_fail(s->key_file, err, errlen);
    c->sig_cap = (size_t)EVP_PKEY_get_size(c->pkey);
    c->sig = OPENSSL_malloc(c->sig_cap);
    c->mctx = EVP_MD_CTX_new();
    if (c->sig == NULL || c->mctx == NULL)
        return ossl_fail("allocation", err, errlen);
    return 1;
}

static int prov_sign(BENCH_CONTENDER *c, char *err, size_t errlen)
{
    size_t len = c->sig_cap;

    if (!EVP_MD_CTX_reset(c->mctx) ||
        !EVP_DigestSignInit_ex(c->mctx, NULL, "SHA256", c->libctx, NULL, c->pkey, NULL))
        return ossl_fail("EVP_DigestSignInit_ex", err, errlen);
    if (!EVP_DigestSign(c->mctx, c->sig, &len, c->msg, c->msg_len))
        return ossl_fail("EVP_DigestSign", err, errlen);
    c->sig_len = len;
    return 1;
}

static void prov_free(BENCH_CONTENDER *c)
{
    EVP_MD_CTX_free(c->mctx);
    OPENSSL_free(c->sig);
    EVP_PKEY_free(c->pkey);
    if (c->prov != NULL)
        OSSL_PROVIDER_unload(c->prov);
    if (c->prov_default != NULL)
        OSSL_PROVIDER_unload(c->prov_default);
    OSSL_LIB_CTX_free(c->libctx);
}

/* ---- the interface ----------------------------------------------------------- */

BENCH_CONTENDER *bench_contender_new(const BENCH_SETUP *setup, char *err, size_t errlen)
{
    BENCH_CONTENDER *c = calloc(1, sizeof(*c));
    int ok;

    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->kind = setup->kind;
    c->no_rm = setup->no_rm;
    c->msg_len = setup->msg_len;
    c->msg = malloc(c->msg_len > 0 ? c->msg_len : 1);
    if (c->msg == NULL) {
        snprintf(err, errlen, "out of memory");
        free(c);
        return NULL;
    }
    for (size_t i = 0; i < c->msg_len; i++)
        c->msg[i] = (unsigned char)('a' + i % 26);
    {
        TPM2B_PUBLIC pub = {0};
        TPM2B_PRIVATE priv = {0};
        uint32_t parent = 0;

        if (!read_key_file(setup->key_file, &pub, &priv, &parent, err, errlen)) {
            bench_contender_free(c);
            return NULL;
        }
        c->soft_pub = soft_public_key(&pub.publicArea);
        if (c->soft_pub == NULL) {
            ossl_fail("public key of the key file", err, errlen);
            bench_contender_free(c);
            return NULL;
        }
    }
    ok = c->kind == BENCH_BARE ? bare_new(c, setup, err, errlen) : prov_new(c, setup, err, errlen);
    if (!ok) {
        bench_contender_free(c);
        return NULL;
    }
    return c;
}

int bench_contender_sign(BENCH_CONTENDER *c, char *err, size_t errlen)
{
    return c->kind == BENCH_BARE ? bare_sign(c, err, errlen) : prov_sign(c, err, errlen);
}

int bench_contender_suspend(BENCH_CONTENDER *c, char *err, size_t errlen)
{
    TSS2_RC rc;

    if (c->kind != BENCH_BARE || !c->no_rm || c->key == ESYS_TR_NONE)
        return 1;
    rc = Esys_ContextSave(c->esys, c->key, &c->saved);
    if (rc != TSS2_RC_SUCCESS)
        return tss_fail(rc, "ContextSave", err, errlen);
    rc = Esys_FlushContext(c->esys, c->key);
    c->key = ESYS_TR_NONE;
    if (rc != TSS2_RC_SUCCESS)
        return tss_fail(rc, "FlushContext", err, errlen);
    return 1;
}

int bench_contender_resume(BENCH_CONTENDER *c, char *err, size_t errlen)
{
    TSS2_RC rc;

    if (c->kind != BENCH_BARE || c->saved == NULL)
        return 1;
    rc = Esys_ContextLoad(c->esys, c->saved, &c->key);
    free(c->saved);
    c->saved = NULL;
    if (rc != TSS2_RC_SUCCESS) {
        c->key = ESYS_TR_NONE;
        return tss_fail(rc, "ContextLoad", err, errlen);
    }
    return 1;
}

/* TPM signature -> what EVP_PKEY_verify takes (DER ECDSA-Sig-Value, or the RSA bytes). */
static int tpm_sig_to_der(const TPMT_SIGNATURE *sig, unsigned char **der, size_t *len)
{
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;
    int n;

    if (sig->sigAlg == TPM2_ALG_RSASSA || sig->sigAlg == TPM2_ALG_RSAPSS) {
        *der = OPENSSL_memdup(sig->signature.rsassa.sig.buffer, sig->signature.rsassa.sig.size);
        *len = sig->signature.rsassa.sig.size;
        return *der != NULL;
    }
    if (sig->sigAlg != TPM2_ALG_ECDSA)
        return 0;
    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig->signature.ecdsa.signatureR.buffer, sig->signature.ecdsa.signatureR.size,
                  NULL);
    s = BN_bin2bn(sig->signature.ecdsa.signatureS.buffer, sig->signature.ecdsa.signatureS.size,
                  NULL);
    if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return 0;
    }
    *der = NULL;
    n = i2d_ECDSA_SIG(es, der);
    ECDSA_SIG_free(es);
    if (n <= 0)
        return 0;
    *len = (size_t)n;
    return 1;
}

int bench_contender_verify_last(BENCH_CONTENDER *c, char *err, size_t errlen)
{
    EVP_MD_CTX *v = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char *der = NULL;
    size_t der_len = 0;
    int ok = 0;

    if (c->kind == BENCH_BARE) {
        pctx = EVP_PKEY_CTX_new_from_pkey(NULL, c->soft_pub, NULL);
        if (!tpm_sig_to_der(&c->last, &der, &der_len) || pctx == NULL ||
            EVP_PKEY_verify_init(pctx) != 1 ||
            EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) != 1 ||
            EVP_PKEY_verify(pctx, der, der_len, c->digest.buffer, c->digest.size) != 1) {
            ossl_fail("checking the TPM's signature against the key file's public key", err,
                      errlen);
            goto end;
        }
    } else {
        v = EVP_MD_CTX_new();
        if (v == NULL ||
            EVP_DigestVerifyInit_ex(v, NULL, "SHA256", NULL, NULL, c->soft_pub, NULL) != 1 ||
            EVP_DigestVerify(v, c->sig, c->sig_len, c->msg, c->msg_len) != 1) {
            ossl_fail("checking the signature against the key file's public key", err, errlen);
            goto end;
        }
    }
    ok = 1;
end:
    OPENSSL_free(der);
    EVP_PKEY_CTX_free(pctx);
    EVP_MD_CTX_free(v);
    return ok;
}

void bench_contender_free(BENCH_CONTENDER *c)
{
    if (c == NULL)
        return;
    if (c->kind == BENCH_BARE)
        bare_free(c);
    else
        prov_free(c);
    EVP_PKEY_free(c->soft_pub);
    free(c->msg);
    free(c);
}
