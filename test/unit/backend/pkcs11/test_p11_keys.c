/*
 * Token keys of the pkcs11 backend over the fake module: resolving a URI
 * (p11_keys.c, p11_pubkey.c), generating (p11_keys.c) and importing
 * (p11_import.c).
 *   - key_load: one match is FOUND with the right type, size and flags and
 *     the software key's public half (also from a public key object or a
 *     certificate when the private object lacks it); none is ABSENT
 *     (KEY_NOT_FOUND); several, a missing token, a bad URI, a wrong PIN, a
 *     locked PIN, a failing module, an unknown curve are FAILED with one
 *     error naming why
 *   - keygen: the mechanism and both templates the token receives (token,
 *     private, sensitive, non-extractable, sign/verify, the same CKA_ID and
 *     label on both, per-algorithm attributes); the key then signs;
 *     refusals (size, mechanism, taken label, token error) raise one error
 *   - import: RSA, EC P-256/P-384 and Ed25519 software keys become a private
 *     key object (sensitive, non-extractable, private, no unwrap, the key's
 *     own components) and a public key object (public, verify, no wrap, the
 *     point as a DER OCTET STRING); the imported key signs and OpenSSL
 *     verifies with the software key; keys that cannot be imported are
 *     refused before the token is touched; a failed public object leaves no
 *     private object behind
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "p11_fixture.h"
#include "util/error.h"

enum { K_RSA, K_P256, K_P384, K_ED, K_N };
static EVP_PKEY *soft[K_N];

static int group_setup(void **state)
{
    (void)state;
    soft[K_RSA] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    soft[K_P256] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    soft[K_P384] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    soft[K_ED] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    for (int i = 0; i < K_N; i++)
        if (soft[i] == NULL)
            return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < K_N; i++)
        EVP_PKEY_free(soft[i]);
    return 0;
}

/* Signs a digest with key and verifies it with pub in software. */
static void assert_signs(HWKEY_BKEY *key, EVP_PKEY *pub)
{
    HWKEY_SIGN_PARAMS p = {.md_nid = NID_sha256};
    unsigned char dgst[32] = {5, 4, 3}, sig[512];
    size_t siglen = sizeof(sig);
    int ok;

    if (EVP_PKEY_is_a(pub, "ED25519")) {
        EVP_MD_CTX *v = EVP_MD_CTX_new();

        p.scheme = HWKEY_SIG_EDDSA;
        assert_int_equal(hwkey_pkcs11_backend.sign(key, &p, dgst, 32, sig, &siglen), 1);
        ok = EVP_DigestVerifyInit(v, NULL, NULL, NULL, pub) == 1 &&
             EVP_DigestVerify(v, sig, siglen, dgst, 32) == 1;
        EVP_MD_CTX_free(v);
    } else {
        EVP_PKEY_CTX *v = EVP_PKEY_CTX_new(pub, NULL);

        p.scheme = EVP_PKEY_is_a(pub, "RSA") ? HWKEY_SIG_RSA_PKCS1 : HWKEY_SIG_ECDSA;
        assert_int_equal(hwkey_pkcs11_backend.sign(key, &p, dgst, 32, sig, &siglen), 1);
        ok = EVP_PKEY_verify_init(v) == 1 &&
             (p.scheme != HWKEY_SIG_RSA_PKCS1 ||
              EVP_PKEY_CTX_set_signature_md(v, EVP_sha256()) == 1) &&
             EVP_PKEY_verify(v, sig, siglen, dgst, 32) == 1;
        EVP_PKEY_CTX_free(v);
    }
    assert_true(ok);
}

/* --- key_load ------------------------------------------------------------------ */

static void test_load_found(void **state)
{
    static const struct {
        int key;
        const char *uri;
        HWKEY_ALG alg;
        int bits, curve;
        unsigned int flags;
    } cases[] = {
        {K_RSA, FX_URI ";object=rsa", HWKEY_ALG_RSA, 2048, NID_undef,
         HWKEY_KEYF_SIGN | HWKEY_KEYF_DECRYPT | HWKEY_KEYF_RSA_RAW},
        {K_P256, FX_URI ";object=p256", HWKEY_ALG_EC, 256, NID_X9_62_prime256v1,
         HWKEY_KEYF_SIGN | HWKEY_KEYF_DERIVE},
        {K_P384, FX_URI ";id=%03", HWKEY_ALG_EC, 384, NID_secp384r1,
         HWKEY_KEYF_SIGN | HWKEY_KEYF_DERIVE},
        {K_ED, FX_URI ";object=ed;type=private", HWKEY_ALG_ED25519, 256, NID_ED25519,
         HWKEY_KEYF_SIGN},
    };
    static const char *const labels[K_N] = {"rsa", "p256", "p384", "ed"};

    (void)state;
    for (int i = 0; i < K_N; i++) {
        unsigned char id = (unsigned char)(i + 1);

        fake_p11_add_key(soft[i], labels[i], &id, 1, 1);
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        HWKEY_BKEY *key = fx_load_ok(cases[i].uri);
        EVP_PKEY *pub = hwkey_pkcs11_backend.key_public(key, NULL, NULL);

        print_message("found: %s\n", cases[i].uri);
        assert_int_equal(key->info.alg, cases[i].alg);
        assert_int_equal(key->info.bits, cases[i].bits);
        if (cases[i].curve != NID_undef)
            assert_int_equal(key->info.curve_nid, cases[i].curve);
        assert_int_equal(key->info.flags, cases[i].flags);
        assert_non_null(pub);
        assert_int_equal(EVP_PKEY_eq(pub, soft[cases[i].key]), 1);
        assert_signs(key, soft[cases[i].key]);
        EVP_PKEY_free(pub);
        hwkey_pkcs11_backend.key_free(key);
    }
}

/* The public half from elsewhere: RSA from its public key object, EC from a certificate. */
static void test_load_public_half_elsewhere(void **state)
{
    CK_OBJECT_HANDLE h;
    X509 *x = X509_new();
    unsigned char *der = NULL;
    int derlen;
    HWKEY_BKEY *key;
    EVP_PKEY *pub;

    (void)state;
    h = fake_p11_add_key(soft[K_RSA], "rsa", (const unsigned char *)"\x01", 1, 1);
    fake_p11_drop_attr(h, CKA_MODULUS);
    key = fx_load_ok(FX_URI ";object=rsa");
    pub = hwkey_pkcs11_backend.key_public(key, NULL, NULL);
    assert_int_equal(EVP_PKEY_eq(pub, soft[K_RSA]), 1);
    EVP_PKEY_free(pub);
    hwkey_pkcs11_backend.key_free(key);

    fake_p11_add_key(soft[K_P256], "ec", (const unsigned char *)"\x02", 1, 0);
    assert_non_null(x);
    /* A self-signed certificate with the fields a parser needs. */
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                                (const unsigned char *)"ec", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_int_equal(X509_set_pubkey(x, soft[K_P256]), 1);
    assert_true(X509_sign(x, soft[K_P256], EVP_sha256()) > 0);
    assert_true((derlen = i2d_X509(x, &der)) > 0);
    fake_p11_add_cert(der, (size_t)derlen, "ec", (const unsigned char *)"\x02", 1);
    key = fx_load_ok(FX_URI ";object=ec");
    pub = hwkey_pkcs11_backend.key_public(key, NULL, NULL);
    assert_int_equal(EVP_PKEY_eq(pub, soft[K_P256]), 1);
    EVP_PKEY_free(pub);
    hwkey_pkcs11_backend.key_free(key);
    OPENSSL_free(der);
    X509_free(x);
}

static void test_load_absent_and_ambiguous(void **state)
{
    HWKEY_BKEY *key = (HWKEY_BKEY *)1;

    (void)state;
    fake_p11_add_key(soft[K_P256], "one", (const unsigned char *)"\x01", 1, 1);
    fake_p11_add_key(soft[K_P384], "dup", (const unsigned char *)"\x02", 1, 1);
    fake_p11_add_key(soft[K_P256], "dup", (const unsigned char *)"\x03", 1, 1);
    /* Absent: the token answered and holds nothing by that name. */
    assert_int_equal(fx_load(FX_URI ";object=nope", &key), HWKEY_LOOKUP_ABSENT);
    assert_null(key);
    assert_one_error(HWKEY_R_KEY_NOT_FOUND,
                     "no private key with object=\"nope\" on token \"" FAKE_P11_LABEL "\"");
    /* Several: a failure, not "absent" (a store must not move on to other objects). */
    assert_int_equal(fx_load(FX_URI ";object=dup", &key), HWKEY_LOOKUP_FAILED);
    assert_null(key);
    assert_one_error(HWKEY_R_BAD_ARGUMENT,
                     "several private keys match object=\"dup\" on token \"" FAKE_P11_LABEL
                     "\"; add id= to the URI");
    /* id= disambiguates. */
    key = fx_load_ok(FX_URI ";object=dup;id=%03");
    assert_int_equal(key->info.bits, 256);
    hwkey_pkcs11_backend.key_free(key);
}

/* Each failure: FAILED, no key, one error naming why. */
static void test_load_failures(void **state)
{
    static const struct {
        const char *what, *uri;
        FAKE_P11_FN fn; /* scripted: answers rv from its next call on */
        CK_RV rv;
        CK_FLAGS token_flags;
        const char *pin;
        int reason;
        const char *error;
    } cases[] = {
        {"another token", "pkcs11:token=other;object=k", .reason = HWKEY_R_KEY_NOT_FOUND,
         .error = "no initialised token in " FX_MODULE " matches the URI (1 slots with a "
                  "token); token=other"},
        {"no object nor id", FX_URI, .reason = HWKEY_R_INVALID_URI,
         .error = "the key URI names no object= nor id="},
        {"wrong PIN", FX_URI ";object=k", .pin = "9999", .reason = HWKEY_R_AUTH_FAILED,
         .error = "C_Login on token \"" FAKE_P11_LABEL "\" failed: CKR_PIN_INCORRECT"},
        {"PIN locked by C_Login", FX_URI ";object=k", FAKE_C_Login, CKR_PIN_LOCKED,
         .reason = HWKEY_R_PIN_LOCKED, .error = "failed: CKR_PIN_LOCKED"},
        {"PIN locked by flag", FX_URI ";object=k", .token_flags = CKF_USER_PIN_LOCKED,
         .reason = HWKEY_R_PIN_LOCKED, .error = "reports CKF_USER_PIN_LOCKED"},
        {"find fails", FX_URI ";object=k", FAKE_C_FindObjectsInit, CKR_DEVICE_MEMORY,
         .reason = HWKEY_R_OUT_OF_MEMORY,
         .error = "C_FindObjects on token \"" FAKE_P11_LABEL "\" failed: CKR_DEVICE_MEMORY"},
        {"no session", FX_URI ";object=k", FAKE_C_OpenSession, CKR_SESSION_COUNT,
         .reason = HWKEY_R_DEVICE_BUSY,
         .error = "C_OpenSession on slot 7 of " FX_MODULE " failed: CKR_SESSION_COUNT"},
        {"no public half", FX_URI ";object=nopub", .reason = HWKEY_R_KEY_NOT_FOUND,
         .error = "has no public key or certificate for the private key \"nopub\""},
        {"unknown curve", FX_URI ";object=k1", .reason = HWKEY_R_UNSUPPORTED_ALGORITHM,
         .error = "is not one of P-256, P-384, P-521, Ed25519"},
    };
    EVP_PKEY *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");

    (void)state;
    assert_non_null(k1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        HWKEY_BKEY *key = (HWKEY_BKEY *)1;
        unsigned long logins;

        print_message("failure: %s\n", cases[i].what);
        /* A fresh device and token: nothing cached from the case before. */
        fx_teardown(state);
        assert_int_equal(fx_setup(state), 0);
        fake_p11_add_key(soft[K_P256], "k", (const unsigned char *)"\x01", 1, 1);
        fake_p11_add_key(soft[K_P256], "nopub", (const unsigned char *)"\x02", 1, 0);
        fake_p11_add_key(k1, "k1", (const unsigned char *)"\x03", 1, 1);
        fake_p11_set_token_flags(cases[i].token_flags);
        if (cases[i].pin != NULL)
            setenv("HWKEY_FAKE_P11_PIN", cases[i].pin, 1);
        if (cases[i].rv != CKR_OK)
            fake_p11_fail(cases[i].fn, 1, 1000, cases[i].rv);
        logins = fake_p11_calls(FAKE_C_Login);
        assert_int_equal(fx_load(cases[i].uri, &key), HWKEY_LOOKUP_FAILED);
        assert_null(key);
        assert_one_error(cases[i].reason, cases[i].error);
        if (cases[i].token_flags != 0)
            assert_int_equal(fake_p11_calls(FAKE_C_Login), logins); /* no PIN try spent */
    }
    EVP_PKEY_free(k1);
}

static void test_load_not_a_uri(void **state)
{
    HWKEY_KEYREF ref = {HWKEY_REF_TPM2_HANDLE, (const unsigned char *)"handle:0x81000001", 17};
    HWKEY_BKEY *key = (HWKEY_BKEY *)1;

    (void)state;
    assert_int_equal(hwkey_pkcs11_backend.key_load(fx_dev, &ref, NULL, NULL, &key),
                     HWKEY_LOOKUP_FAILED);
    assert_null(key);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "the pkcs11 backend resolves pkcs11: URIs only");
}

/* --- templates --------------------------------------------------------------------- */

static void assert_bool(const FAKE_P11_TEMPLATE *t, CK_ATTRIBUTE_TYPE type, CK_BBOOL want)
{
    const CK_ATTRIBUTE *a = fake_p11_template_find(t, type);

    if (a == NULL)
        fail_msg("template lacks attribute 0x%lx", (unsigned long)type);
    assert_int_equal(a->ulValueLen, sizeof(CK_BBOOL));
    if (*(CK_BBOOL *)a->pValue != want)
        fail_msg("attribute 0x%lx is %d, want %d", (unsigned long)type, *(CK_BBOOL *)a->pValue,
                 want);
}

static void assert_ulong(const FAKE_P11_TEMPLATE *t, CK_ATTRIBUTE_TYPE type, CK_ULONG want)
{
    const CK_ATTRIBUTE *a = fake_p11_template_find(t, type);

    if (a == NULL)
        fail_msg("template lacks attribute 0x%lx", (unsigned long)type);
    assert_int_equal(a->ulValueLen, sizeof(CK_ULONG));
    assert_int_equal(*(CK_ULONG *)a->pValue, want);
}

static void assert_bytes(const FAKE_P11_TEMPLATE *t, CK_ATTRIBUTE_TYPE type, const void *want,
                         size_t len)
{
    const CK_ATTRIBUTE *a = fake_p11_template_find(t, type);

    if (a == NULL)
        fail_msg("template lacks attribute 0x%lx", (unsigned long)type);
    assert_int_equal(a->ulValueLen, len);
    assert_memory_equal(a->pValue, want, len);
}

/* The same attribute twice makes tokens reject a template (or take either value). */
static void assert_no_duplicates(const FAKE_P11_TEMPLATE *t)
{
    for (CK_ULONG i = 0; i < t->n; i++)
        for (CK_ULONG j = i + 1; j < t->n; j++)
            if (t->attrs[i].type == t->attrs[j].type)
                fail_msg("attribute 0x%lx appears twice", (unsigned long)t->attrs[i].type);
}

static void assert_oid(const FAKE_P11_TEMPLATE *t, int nid)
{
    unsigned char *der = NULL;
    int len = i2d_ASN1_OBJECT(OBJ_nid2obj(nid), &der);

    assert_true(len > 0);
    assert_bytes(t, CKA_EC_PARAMS, der, (size_t)len);
    OPENSSL_free(der);
}

/* A big integer component of soft as PKCS#11 wants it: big-endian, no leading zero. */
static void assert_bn(const FAKE_P11_TEMPLATE *t, CK_ATTRIBUTE_TYPE type, EVP_PKEY *soft_key,
                      const char *name)
{
    BIGNUM *bn = NULL;
    unsigned char buf[512];
    int len;

    assert_int_equal(EVP_PKEY_get_bn_param(soft_key, name, &bn), 1);
    len = BN_bn2bin(bn, buf);
    assert_bytes(t, type, buf, (size_t)len);
    BN_clear_free(bn);
}

/* CKA_EC_POINT: the encoded point inside a DER OCTET STRING. */
static void assert_point(const FAKE_P11_TEMPLATE *t, const unsigned char *pt, size_t len)
{
    unsigned char der[140];
    size_t hdr = len < 0x80 ? 2 : 3;

    der[0] = 0x04;
    der[1] = hdr == 3 ? 0x81 : (unsigned char)len;
    der[2] = (unsigned char)len;
    memcpy(der + hdr, pt, len);
    assert_bytes(t, CKA_EC_POINT, der, hdr + len);
}

/* --- keygen --------------------------------------------------------------------------- */

static void test_keygen_templates(void **state)
{
    static const struct {
        HWKEY_KEYSPEC spec;
        const char *label;
        CK_MECHANISM_TYPE mech;
    } cases[] = {
        {{.alg = HWKEY_ALG_EC, .curve_nid = NID_X9_62_prime256v1}, "gen-p256", CKM_EC_KEY_PAIR_GEN},
        {{.alg = HWKEY_ALG_EC, .curve_nid = NID_secp521r1}, "gen-p521", CKM_EC_KEY_PAIR_GEN},
        {{.alg = HWKEY_ALG_ED25519}, "gen-ed", CKM_EC_EDWARDS_KEY_PAIR_GEN},
        {{.alg = HWKEY_ALG_RSA, .bits = 2048}, "gen-rsa", CKM_RSA_PKCS_KEY_PAIR_GEN},
    };
    static const unsigned char e[] = {0x01, 0x00, 0x01};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        HWKEY_GENOPTS opts = {0};
        HWKEY_REFBLOB out = {0};
        char uri[128], *text;
        const FAKE_P11_TEMPLATE *pub, *priv;
        const CK_ATTRIBUTE *pid, *kid;
        size_t before = fake_p11_template_count();
        HWKEY_BKEY *key;
        EVP_PKEY *pubkey;

        print_message("keygen: %s\n", cases[i].label);
        snprintf(uri, sizeof(uri), FX_URI ";object=%s", cases[i].label);
        opts.uri = uri;
        assert_int_equal(hwkey_pkcs11_backend.key_generate(fx_dev, &cases[i].spec, &opts, &out), 1);
        assert_int_equal(fake_p11_last_mech()->mechanism, cases[i].mech);
        pub = fake_p11_template(before);
        priv = fake_p11_template(before + 1);
        assert_non_null(priv);
        assert_no_duplicates(pub);
        assert_no_duplicates(priv);
        assert_bool(pub, CKA_TOKEN, CK_TRUE);
        assert_bool(pub, CKA_PRIVATE, CK_FALSE); /* readable without a login */
        assert_bool(pub, CKA_VERIFY, CK_TRUE);
        assert_bytes(pub, CKA_LABEL, cases[i].label, strlen(cases[i].label));
        assert_bool(priv, CKA_TOKEN, CK_TRUE);
        assert_bool(priv, CKA_PRIVATE, CK_TRUE);
        assert_bool(priv, CKA_SENSITIVE, CK_TRUE);
        assert_bool(priv, CKA_EXTRACTABLE, CK_FALSE);
        assert_bool(priv, CKA_SIGN, CK_TRUE);
        assert_bytes(priv, CKA_LABEL, cases[i].label, strlen(cases[i].label));
        /* One CKA_ID on both halves: a fresh random one of 16 bytes. */
        pid = fake_p11_template_find(pub, CKA_ID);
        kid = fake_p11_template_find(priv, CKA_ID);
        assert_non_null(pid);
        assert_non_null(kid);
        assert_int_equal(pid->ulValueLen, 16);
        assert_bytes(priv, CKA_ID, pid->pValue, pid->ulValueLen);
        switch (cases[i].spec.alg) {
        case HWKEY_ALG_EC:
            assert_oid(pub, cases[i].spec.curve_nid);
            assert_bool(priv, CKA_DERIVE, CK_TRUE);
            break;
        case HWKEY_ALG_ED25519:
            assert_oid(pub, NID_ED25519);
            break;
        default:
            assert_ulong(pub, CKA_MODULUS_BITS, 2048);
            assert_bytes(pub, CKA_PUBLIC_EXPONENT, e, sizeof(e));
            assert_bool(pub, CKA_ENCRYPT, CK_TRUE);
            assert_bool(priv, CKA_DECRYPT, CK_TRUE);
            break;
        }
        /* The reference names the new key, which then loads and signs. */
        assert_int_equal(out.kind, HWKEY_REF_PKCS11_URI);
        text = OPENSSL_strndup((const char *)out.data, out.len);
        assert_non_null(strstr(text, "object="));
        assert_non_null(strstr(text, cases[i].label));
        assert_non_null(strstr(text, "id=%"));
        key = fx_load_ok(text);
        pubkey = hwkey_pkcs11_backend.key_public(key, NULL, NULL);
        assert_signs(key, pubkey);
        EVP_PKEY_free(pubkey);
        hwkey_pkcs11_backend.key_free(key);
        OPENSSL_free(text);
        OPENSSL_free(out.data);
    }
}

static void test_keygen_refusals(void **state)
{
    static const CK_MECHANISM_TYPE rsa_only[] = {CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_RSA_PKCS};
    HWKEY_KEYSPEC ec = {.alg = HWKEY_ALG_EC, .curve_nid = NID_X9_62_prime256v1};
    HWKEY_KEYSPEC rsa1024 = {.alg = HWKEY_ALG_RSA, .bits = 1024};
    HWKEY_KEYSPEC k1 = {.alg = HWKEY_ALG_EC, .curve_nid = NID_secp256k1};
    HWKEY_GENOPTS opts = {.uri = FX_URI ";object=taken"}, none = {0};
    HWKEY_REFBLOB out = {0};

    (void)state;
    fake_p11_add_key(soft[K_P256], "taken", (const unsigned char *)"\x01", 1, 1);
    assert_int_equal(hwkey_pkcs11_backend.key_generate(fx_dev, &rsa1024, &opts, &out), 0);
    assert_one_error(HWKEY_R_UNSUPPORTED_ALGORITHM,
                     "pkcs11 keys are RSA 2048/3072/4096, EC P-256/P-384/P-521 or Ed25519 "
                     "(asked: alg 2, 1024 bits");
    assert_int_equal(hwkey_pkcs11_backend.key_generate(fx_dev, &k1, &opts, &out), 0);
    assert_one_error(HWKEY_R_UNSUPPORTED_ALGORITHM, "pkcs11 keys are RSA");
    assert_int_equal(hwkey_pkcs11_backend.key_generate(fx_dev, &ec, &opts, &out), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "token \"" FAKE_P11_LABEL "\" already has a "
                                           "private key with this id or object=\"taken\"");
    assert_int_equal(hwkey_pkcs11_backend.key_generate(fx_dev, &ec, &none, &out), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "generating a token key needs a pkcs11: URI");
    opts.uri = FX_URI ";object=new";
    fake_p11_fail(FAKE_C_GenerateKeyPair, 1, 1, CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(hwkey_pkcs11_backend.key_generate(fx_dev, &ec, &opts, &out), 0);
    assert_one_error(HWKEY_R_DEVICE_ERROR, "C_GenerateKeyPair on token \"" FAKE_P11_LABEL
                                           "\" failed: CKR_TEMPLATE_INCONSISTENT");
    assert_int_equal(fake_p11_calls(FAKE_C_GenerateKeyPair), 1);
    assert_null(out.data);

    /* A token without EC key generation (the mechanism list is read when the token is found). */
    fx_teardown(state);
    assert_int_equal(fx_setup(state), 0);
    fake_p11_set_mechanisms(rsa_only, 2);
    assert_int_equal(hwkey_pkcs11_backend.key_generate(fx_dev, &ec, &opts, &out), 0);
    assert_one_error(HWKEY_R_UNSUPPORTED_ALGORITHM,
                     "has no key-pair generation mechanism 0x1040 for this algorithm");
    assert_int_equal(fake_p11_calls(FAKE_C_GenerateKeyPair), 0);
}

/* --- import ----------------------------------------------------------------------------- */

static void check_import_templates(int k, const FAKE_P11_TEMPLATE *priv,
                                   const FAKE_P11_TEMPLATE *pub, const char *label)
{
    static const unsigned char e[] = {0x01, 0x00, 0x01};
    EVP_PKEY *s = soft[k];
    const CK_ATTRIBUTE *pid;
    unsigned char pt[133];
    size_t ptlen = 0;

    assert_no_duplicates(priv);
    assert_no_duplicates(pub);
    assert_ulong(priv, CKA_CLASS, CKO_PRIVATE_KEY);
    assert_bool(priv, CKA_TOKEN, CK_TRUE);
    assert_bool(priv, CKA_PRIVATE, CK_TRUE);
    assert_bool(priv, CKA_SENSITIVE, CK_TRUE);
    assert_bool(priv, CKA_EXTRACTABLE, CK_FALSE);
    assert_bool(priv, CKA_SIGN, CK_TRUE);
    assert_bool(priv, CKA_UNWRAP, CK_FALSE);
    assert_bytes(priv, CKA_LABEL, label, strlen(label));
    assert_ulong(pub, CKA_CLASS, CKO_PUBLIC_KEY);
    assert_bool(pub, CKA_TOKEN, CK_TRUE);
    assert_bool(pub, CKA_PRIVATE, CK_FALSE);
    assert_bool(pub, CKA_VERIFY, CK_TRUE);
    assert_bool(pub, CKA_WRAP, CK_FALSE);
    assert_bytes(pub, CKA_LABEL, label, strlen(label));
    pid = fake_p11_template_find(pub, CKA_ID);
    assert_non_null(pid);
    assert_int_equal(pid->ulValueLen, 16);
    assert_bytes(priv, CKA_ID, pid->pValue, pid->ulValueLen);
    if (k == K_RSA) {
        assert_ulong(priv, CKA_KEY_TYPE, CKK_RSA);
        assert_ulong(pub, CKA_KEY_TYPE, CKK_RSA);
        assert_bn(priv, CKA_MODULUS, s, OSSL_PKEY_PARAM_RSA_N);
        assert_bn(pub, CKA_MODULUS, s, OSSL_PKEY_PARAM_RSA_N);
        assert_bytes(priv, CKA_PUBLIC_EXPONENT, e, sizeof(e));
        assert_bytes(pub, CKA_PUBLIC_EXPONENT, e, sizeof(e));
        assert_bn(priv, CKA_PRIVATE_EXPONENT, s, OSSL_PKEY_PARAM_RSA_D);
        assert_bn(priv, CKA_PRIME_1, s, OSSL_PKEY_PARAM_RSA_FACTOR1);
        assert_bn(priv, CKA_PRIME_2, s, OSSL_PKEY_PARAM_RSA_FACTOR2);
        assert_bn(priv, CKA_EXPONENT_1, s, OSSL_PKEY_PARAM_RSA_EXPONENT1);
        assert_bn(priv, CKA_EXPONENT_2, s, OSSL_PKEY_PARAM_RSA_EXPONENT2);
        assert_bn(priv, CKA_COEFFICIENT, s, OSSL_PKEY_PARAM_RSA_COEFFICIENT1);
        assert_bool(priv, CKA_DECRYPT, CK_TRUE);
        assert_bool(priv, CKA_DERIVE, CK_FALSE);
        assert_bool(pub, CKA_ENCRYPT, CK_TRUE);
        return;
    }
    if (k == K_ED) {
        unsigned char raw[32];
        size_t rawlen = sizeof(raw);

        assert_ulong(priv, CKA_KEY_TYPE, CKK_EC_EDWARDS);
        assert_oid(priv, NID_ED25519);
        assert_oid(pub, NID_ED25519);
        assert_int_equal(EVP_PKEY_get_raw_private_key(s, raw, &rawlen), 1);
        assert_bytes(priv, CKA_VALUE, raw, rawlen);
        ptlen = sizeof(pt);
        assert_int_equal(EVP_PKEY_get_raw_public_key(s, pt, &ptlen), 1);
        assert_bool(priv, CKA_DERIVE, CK_FALSE);
    } else {
        assert_ulong(priv, CKA_KEY_TYPE, CKK_EC);
        assert_oid(priv, k == K_P256 ? NID_X9_62_prime256v1 : NID_secp384r1);
        assert_oid(pub, k == K_P256 ? NID_X9_62_prime256v1 : NID_secp384r1);
        assert_bn(priv, CKA_VALUE, s, OSSL_PKEY_PARAM_PRIV_KEY);
        assert_int_equal(EVP_PKEY_get_octet_string_param(s, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
                                                         sizeof(pt), &ptlen),
                         1);
        assert_bool(priv, CKA_DERIVE, CK_TRUE);
    }
    assert_point(pub, pt, ptlen);
    assert_bool(priv, CKA_DECRYPT, CK_FALSE);
    assert_bool(pub, CKA_ENCRYPT, CK_FALSE);
}

static void test_import_templates(void **state)
{
    static const char *const labels[K_N] = {"imp-rsa", "imp-p256", "imp-p384", "imp-ed"};

    (void)state;
    for (int k = 0; k < K_N; k++) {
        HWKEY_GENOPTS opts = {0};
        HWKEY_REFBLOB out = {0};
        size_t before = fake_p11_template_count(), objects = fake_p11_object_count();
        char uri[128], *text;
        HWKEY_BKEY *key;

        print_message("import: %s\n", labels[k]);
        snprintf(uri, sizeof(uri), FX_URI ";object=%s", labels[k]);
        opts.uri = uri;
        assert_int_equal(hwkey_pkcs11_backend.key_import(fx_dev, soft[k], &opts, &out), 1);
        assert_int_equal(ERR_peek_error(), 0);
        assert_int_equal(fake_p11_template_count(), before + 2); /* private, then public */
        assert_int_equal(fake_p11_object_count(), objects + 2);
        check_import_templates(k, fake_p11_template(before), fake_p11_template(before + 1),
                               labels[k]);
        /* The imported key signs on the token; the software key verifies. */
        text = OPENSSL_strndup((const char *)out.data, out.len);
        key = fx_load_ok(text);
        assert_signs(key, soft[k]);
        hwkey_pkcs11_backend.key_free(key);
        OPENSSL_free(text);
        OPENSSL_free(out.data);
    }
}

/* Keys that cannot be imported: refused before any session or login. */
static void test_import_refused_offline(void **state)
{
    static const struct {
        const char *alg, *arg;
        size_t bits;
        const char *error;
    } cases[] = {
        {"RSA", NULL, 1024, "RSA keys of 1024 bits are not imported (2048..8192)"},
        {"EC", "secp256k1", 0, "EC curve secp256k1 is not imported (P-256, P-384 or P-521)"},
        {"X25519", NULL, 0, "X25519 keys cannot be imported into a token"},
    };
    HWKEY_GENOPTS opts = {.uri = FX_URI ";object=new"};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EVP_PKEY *k =
            cases[i].bits != 0     ? EVP_PKEY_Q_keygen(NULL, NULL, cases[i].alg, cases[i].bits)
            : cases[i].arg != NULL ? EVP_PKEY_Q_keygen(NULL, NULL, cases[i].alg, cases[i].arg)
                                   : EVP_PKEY_Q_keygen(NULL, NULL, cases[i].alg);
        HWKEY_REFBLOB out = {0};

        assert_non_null(k);
        assert_int_equal(hwkey_pkcs11_backend.key_import(fx_dev, k, &opts, &out), 0);
        assert_one_error(HWKEY_R_UNSUPPORTED_ALGORITHM, cases[i].error);
        EVP_PKEY_free(k);
    }
    assert_int_equal(fake_p11_calls(FAKE_C_OpenSession), 0);
    assert_int_equal(fake_p11_calls(FAKE_C_Login), 0);
    assert_int_equal(fake_p11_object_count(), 0);
}

static void test_import_refused_by_token(void **state)
{
    static const CK_MECHANISM_TYPE rsa_only[] = {CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_RSA_PKCS};
    HWKEY_GENOPTS opts = {.uri = FX_URI ";object=taken"}, none = {0};
    HWKEY_REFBLOB out = {0};
    size_t objects;

    (void)state;
    fake_p11_add_key(soft[K_P384], "taken", (const unsigned char *)"\x01", 1, 1);
    objects = fake_p11_object_count();
    assert_int_equal(hwkey_pkcs11_backend.key_import(fx_dev, soft[K_P256], &opts, &out), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "already has a private key with this id or "
                                           "object=\"taken\"");
    assert_int_equal(hwkey_pkcs11_backend.key_import(fx_dev, soft[K_P256], &none, &out), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "importing a token key needs a pkcs11: URI");
    /* The private object is made, the public one refused: no half key stays behind. */
    opts.uri = FX_URI ";object=half";
    fake_p11_fail(FAKE_C_CreateObject, 2, 1, CKR_DEVICE_MEMORY);
    assert_int_equal(hwkey_pkcs11_backend.key_import(fx_dev, soft[K_P256], &opts, &out), 0);
    assert_one_error(HWKEY_R_OUT_OF_MEMORY, "C_CreateObject (public key) on token \"" FAKE_P11_LABEL
                                            "\" failed: CKR_DEVICE_MEMORY");
    assert_int_equal(fake_p11_calls(FAKE_C_DestroyObject), 1);
    assert_int_equal(fake_p11_object_count(), objects);
    fake_p11_fail(FAKE_C_CreateObject, 1, 1, CKR_TEMPLATE_INCONSISTENT);
    assert_int_equal(hwkey_pkcs11_backend.key_import(fx_dev, soft[K_P256], &opts, &out), 0);
    assert_one_error(HWKEY_R_DEVICE_ERROR,
                     "C_CreateObject (private key) on token \"" FAKE_P11_LABEL "\" failed: "
                     "CKR_TEMPLATE_INCONSISTENT");
    assert_int_equal(fake_p11_object_count(), objects);
    assert_null(out.data);

    /* A token that cannot sign with the key's type gets nothing. */
    fx_teardown(state);
    assert_int_equal(fx_setup(state), 0);
    fake_p11_set_mechanisms(rsa_only, 2);
    assert_int_equal(hwkey_pkcs11_backend.key_import(fx_dev, soft[K_P256], &opts, &out), 0);
    assert_one_error(HWKEY_R_UNSUPPORTED_ALGORITHM, "cannot sign with this key type (no "
                                                    "mechanism 0x1041); nothing imported");
    assert_int_equal(fake_p11_calls(FAKE_C_CreateObject), 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_load_found),
        T(test_load_public_half_elsewhere),
        T(test_load_absent_and_ambiguous),
        T(test_load_failures),
        T(test_load_not_a_uri),
        T(test_keygen_templates),
        T(test_keygen_refusals),
        T(test_import_templates),
        T(test_import_refused_offline),
        T(test_import_refused_by_token),
    };
#undef T

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
