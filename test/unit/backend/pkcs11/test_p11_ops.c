/*
 * Private-key operations of the pkcs11 backend (src/backend/pkcs11/p11_ops.c)
 * over the fake module, each checked against OpenSSL on the software key and
 * against what the module received:
 *   - ECDSA on P-256/P-384/P-521: the token's raw r||s becomes the DER that
 *     OpenSSL verifies; leading zeros encode minimally; a wrong-length
 *     answer is a DEVICE_ERROR
 *   - RSA PKCS#1 v1.5: the DigestInfo prefix for SHA-1..SHA-512 (OpenSSL
 *     verifies with the digest set), the raw input without a digest
 *   - RSA-PSS: hashAlg, mgf and sLen as asked (salt 0, digest length,
 *     maximum, another MGF1 digest); salts that do not fit are refused
 *     before the token sees them
 *   - Ed25519 on the message; raw RSA (CKM_RSA_X_509), left-padded
 *   - RSA decryption: PKCS#1 v1.5 and OAEP (digest, MGF1, label mapped);
 *     a bad ciphertext gives one fixed message whatever the padding
 *   - ECDH: the shared secret, the derive template, the secret destroyed
 *   - failures: each raises exactly one error with its reason and the
 *     CKR_ name; the repairable ones (stale handle, logged out, lost
 *     session or device) are repaired once and leave no error behind
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "p11_fixture.h"
#include "util/error.h"

enum { K_RSA, K_P256, K_P384, K_P521, K_ED, K_N };
static const char *const labels[K_N] = {"rsa", "p256", "p384", "p521", "ed"};
static EVP_PKEY *soft[K_N];
static CK_OBJECT_HANDLE handles[K_N];

static int group_setup(void **state)
{
    (void)state;
    soft[K_RSA] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    soft[K_P256] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    soft[K_P384] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    soft[K_P521] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
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

/* A fresh token holding every key (private + public object, id = index + 1). */
static int setup(void **state)
{
    if (fx_setup(state) != 0)
        return -1;
    for (int i = 0; i < K_N; i++) {
        unsigned char id = (unsigned char)(i + 1);

        if ((handles[i] = fake_p11_add_key(soft[i], labels[i], &id, 1, 1)) == CK_INVALID_HANDLE)
            return -1;
    }
    return 0;
}

static HWKEY_BKEY *load(int k)
{
    char uri[128];

    snprintf(uri, sizeof(uri), FX_URI ";object=%s", labels[k]);
    return fx_load_ok(uri);
}

static void digest(const char *md, const void *msg, size_t len, unsigned char *out,
                   unsigned int *outlen)
{
    assert_int_equal(EVP_Digest(msg, len, out, outlen, EVP_get_digestbyname(md), NULL), 1);
}

/* --- ECDSA ---------------------------------------------------------------------- */

static void test_ecdsa_each_curve(void **state)
{
    static const struct {
        int key;
        const char *md;
        int md_nid;
        size_t der_max; /* 2 INTEGERs of field+1 bytes, SEQUENCE header */
    } cases[] = {
        {K_P256, "SHA256", NID_sha256, 72},
        {K_P384, "SHA384", NID_sha384, 104},
        {K_P521, "SHA512", NID_sha512, 141},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        HWKEY_BKEY *key = load(cases[i].key);
        HWKEY_SIGN_PARAMS p = {.scheme = HWKEY_SIG_ECDSA, .md_nid = cases[i].md_nid};
        unsigned char dgst[64], sig[160];
        unsigned int dlen;
        size_t siglen = 0, inlen;
        const unsigned char *in;
        EVP_PKEY_CTX *v = EVP_PKEY_CTX_new(soft[cases[i].key], NULL);

        digest(cases[i].md, "hello", 5, dgst, &dlen);
        assert_int_equal(hwkey_pkcs11_backend.sign(key, &p, dgst, dlen, NULL, &siglen), 1);
        assert_int_equal(siglen, cases[i].der_max);
        /* OpenSSL sizes the buffer with ECDSA_size(), below our worst case for P-521. */
        siglen = (size_t)EVP_PKEY_get_size(soft[cases[i].key]);
        assert_int_equal(hwkey_pkcs11_backend.sign(key, &p, dgst, dlen, sig, &siglen), 1);
        assert_int_equal(fake_p11_last_mech()->mechanism, CKM_ECDSA);
        in = fake_p11_last_input(&inlen);
        assert_int_equal(inlen, dlen);
        assert_memory_equal(in, dgst, dlen);
        assert_non_null(v);
        assert_int_equal(EVP_PKEY_verify_init(v), 1);
        assert_int_equal(EVP_PKEY_verify(v, sig, siglen, dgst, dlen), 1);
        EVP_PKEY_CTX_free(v);
        hwkey_pkcs11_backend.key_free(key);
    }
}

/* A token answer chosen by the test: C_Sign replaced by use_canned_sign(). */
static unsigned char canned[256];
static CK_ULONG canned_len;
static CK_C_Sign fake_sign;

static CK_RV canned_sign(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR sig,
                         CK_ULONG_PTR siglen)
{
    unsigned char scratch[512];
    CK_ULONG n = sizeof(scratch);
    CK_RV rv = fake_sign(s, in, inlen, scratch, &n); /* ends the operation */

    if (rv != CKR_OK)
        return rv;
    if (*siglen < canned_len)
        return CKR_BUFFER_TOO_SMALL;
    memcpy(sig, canned, canned_len);
    *siglen = canned_len;
    return CKR_OK;
}

static void use_canned_sign(void)
{
    fake_sign = fake_p11_functions()->C_Sign;
    fake_p11_functions()->C_Sign = canned_sign;
}

static void test_ecdsa_der_encoding(void **state)
{
    HWKEY_BKEY *key = load(K_P256);
    HWKEY_SIGN_PARAMS p = {.scheme = HWKEY_SIG_ECDSA, .md_nid = NID_sha256};
    unsigned char dgst[32] = {1}, sig[80], *re = NULL;
    const unsigned char *q = sig;
    size_t siglen = sizeof(sig);
    ECDSA_SIG *es;
    BIGNUM *r, *s;

    (void)state;
    /* r with two leading zero bytes, s with its top bit set: minimal INTEGERs. */
    memset(canned, 0, sizeof(canned));
    canned[2] = 0x01;
    canned[31] = 0x7f;
    memset(canned + 32, 0xff, 32);
    canned_len = 64;
    use_canned_sign();
    assert_int_equal(hwkey_pkcs11_backend.sign(key, &p, dgst, 32, sig, &siglen), 1);
    es = d2i_ECDSA_SIG(NULL, &q, (long)siglen);
    assert_non_null(es);
    assert_ptr_equal(q, sig + siglen);
    r = BN_bin2bn(canned, 32, NULL);
    s = BN_bin2bn(canned + 32, 32, NULL);
    assert_int_equal(BN_cmp(ECDSA_SIG_get0_r(es), r), 0);
    assert_int_equal(BN_cmp(ECDSA_SIG_get0_s(es), s), 0);
    /* Canonical DER: re-encoding gives the same bytes. */
    assert_int_equal(i2d_ECDSA_SIG(es, &re), (int)siglen);
    assert_memory_equal(re, sig, siglen);
    OPENSSL_free(re);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);

    /* A token answering 63 bytes for P-256. */
    canned_len = 63;
    siglen = sizeof(sig);
    assert_int_equal(hwkey_pkcs11_backend.sign(key, &p, dgst, 32, sig, &siglen), 0);
    assert_one_error(HWKEY_R_DEVICE_ERROR, "token returned an ECDSA signature of 63 bytes");
    hwkey_pkcs11_backend.key_free(key);
}

/* --- RSA PKCS#1 v1.5, PSS, raw ------------------------------------------------------ */

static void test_rsa_pkcs1_digestinfo(void **state)
{
    static const struct {
        const char *md;
        int nid;
        size_t prefix; /* DigestInfo header bytes before the digest */
    } mds[] = {
        {"SHA1", NID_sha1, 15},     {"SHA224", NID_sha224, 19}, {"SHA256", NID_sha256, 19},
        {"SHA384", NID_sha384, 19}, {"SHA512", NID_sha512, 19},
    };
    HWKEY_BKEY *key = load(K_RSA);

    (void)state;
    for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
        HWKEY_SIGN_PARAMS p = {.scheme = HWKEY_SIG_RSA_PKCS1, .md_nid = mds[i].nid};
        unsigned char dgst[64], sig[256];
        unsigned int dlen;
        size_t siglen = sizeof(sig), inlen;
        const unsigned char *in;
        EVP_PKEY_CTX *v = EVP_PKEY_CTX_new(soft[K_RSA], NULL);

        digest(mds[i].md, "message", 7, dgst, &dlen);
        assert_int_equal(hwkey_pkcs11_backend.sign(key, &p, dgst, dlen, sig, &siglen), 1);
        assert_int_equal(siglen, 256);
        assert_int_equal(fake_p11_last_mech()->mechanism, CKM_RSA_PKCS);
        in = fake_p11_last_input(&inlen);
        assert_int_equal(inlen, mds[i].prefix + dlen);
        assert_memory_equal(in + mds[i].prefix, dgst, dlen);
        /* OpenSSL checks the DigestInfo (algorithm OID, NULL parameters) itself. */
        assert_non_null(v);
        assert_int_equal(EVP_PKEY_verify_init(v), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(v, RSA_PKCS1_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_signature_md(v, EVP_get_digestbyname(mds[i].md)), 1);
        assert_int_equal(EVP_PKEY_verify(v, sig, siglen, dgst, dlen), 1);
        EVP_PKEY_CTX_free(v);
    }
    hwkey_pkcs11_backend.key_free(key);
}

/* No digest (TLS 1.0/1.1's MD5+SHA-1): the input is signed as given. */
static void test_rsa_pkcs1_raw_input(void **state)
{
    HWKEY_BKEY *key = load(K_RSA);
    HWKEY_SIGN_PARAMS p = {.scheme = HWKEY_SIG_RSA_PKCS1, .md_nid = NID_md5_sha1};
    unsigned char tbs[36], sig[256], rec[256];
    size_t siglen = sizeof(sig), reclen = sizeof(rec), inlen;
    const unsigned char *in;
    EVP_PKEY_CTX *v = EVP_PKEY_CTX_new(soft[K_RSA], NULL);

    (void)state;
    assert_int_equal(RAND_bytes(tbs, sizeof(tbs)), 1);
    assert_int_equal(hwkey_pkcs11_backend.sign(key, &p, tbs, sizeof(tbs), sig, &siglen), 1);
    in = fake_p11_last_input(&inlen);
    assert_int_equal(inlen, sizeof(tbs));
    assert_memory_equal(in, tbs, sizeof(tbs));
    assert_int_equal(EVP_PKEY_verify_recover_init(v), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(v, RSA_PKCS1_PADDING), 1);
    assert_int_equal(EVP_PKEY_verify_recover(v, rec, &reclen, sig, siglen), 1);
    assert_int_equal(reclen, sizeof(tbs));
    assert_memory_equal(rec, tbs, sizeof(tbs));
    EVP_PKEY_CTX_free(v);
    hwkey_pkcs11_backend.key_free(key);
}

static void test_rsa_pss_params(void **state)
{
    static const struct {
        const char *md, *mgf1;
        int nid, mgf1_nid, salt;
        CK_MECHANISM_TYPE hash;
        CK_RSA_PKCS_MGF_TYPE mgf;
    } cases[] = {
        {"SHA256", "SHA256", NID_sha256, NID_undef, 32, CKM_SHA256, CKG_MGF1_SHA256},
        {"SHA256", "SHA256", NID_sha256, NID_undef, 0, CKM_SHA256, CKG_MGF1_SHA256},
        {"SHA256", "SHA256", NID_sha256, NID_undef, 256 - 32 - 2, CKM_SHA256, CKG_MGF1_SHA256},
        {"SHA256", "SHA1", NID_sha256, NID_sha1, 20, CKM_SHA256, CKG_MGF1_SHA1},
        {"SHA384", "SHA384", NID_sha384, NID_sha384, 48, CKM_SHA384, CKG_MGF1_SHA384},
        {"SHA512", "SHA256", NID_sha512, NID_sha256, 64, CKM_SHA512, CKG_MGF1_SHA256},
    };
    HWKEY_BKEY *key = load(K_RSA);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        HWKEY_SIGN_PARAMS p = {.scheme = HWKEY_SIG_RSA_PSS,
                               .md_nid = cases[i].nid,
                               .mgf1_md_nid = cases[i].mgf1_nid,
                               .salt_len = cases[i].salt};
        const CK_MECHANISM *m;
        const CK_RSA_PKCS_PSS_PARAMS *pp;
        unsigned char dgst[64], sig[256];
        unsigned int dlen;
        size_t siglen = sizeof(sig);
        EVP_PKEY_CTX *v = EVP_PKEY_CTX_new(soft[K_RSA], NULL);

        digest(cases[i].md, "pss", 3, dgst, &dlen);
        assert_int_equal(hwkey_pkcs11_backend.sign(key, &p, dgst, dlen, sig, &siglen), 1);
        m = fake_p11_last_mech();
        assert_int_equal(m->mechanism, CKM_RSA_PKCS_PSS);
        assert_int_equal(m->ulParameterLen, sizeof(*pp));
        pp = m->pParameter;
        assert_int_equal(pp->hashAlg, cases[i].hash);
        assert_int_equal(pp->mgf, cases[i].mgf);
        assert_int_equal(pp->sLen, (CK_ULONG)cases[i].salt);
        /* Verified with exactly that salt length (TLS 1.3 peers insist). */
        assert_int_equal(EVP_PKEY_verify_init(v), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(v, RSA_PKCS1_PSS_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_signature_md(v, EVP_get_digestbyname(cases[i].md)), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(v, EVP_get_digestbyname(cases[i].mgf1)), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(v, cases[i].salt), 1);
        assert_int_equal(EVP_PKEY_verify(v, sig, siglen, dgst, dlen), 1);
        EVP_PKEY_CTX_free(v);
    }
    hwkey_pkcs11_backend.key_free(key);
}

/* Refused before any token call, each with one error naming the problem. */
static void test_sign_refusals(void **state)
{
    static const struct {
        int key;
        HWKEY_SIGN_PARAMS p;
        size_t tbslen, siglen;
        int reason;
        const char *error;
    } cases[] = {
        {K_RSA,
         {.scheme = HWKEY_SIG_RSA_PSS, .md_nid = NID_sha256, .salt_len = 256 - 32 - 1},
         32,
         256,
         HWKEY_R_INVALID_SALT_LENGTH,
         "PSS salt length 223 does not fit a 2048-bit key with a 32-byte digest"},
        {K_RSA,
         {.scheme = HWKEY_SIG_RSA_PSS, .md_nid = NID_sha256, .salt_len = -1},
         32,
         256,
         HWKEY_R_INVALID_SALT_LENGTH,
         "PSS salt length -1"},
        {K_RSA,
         {.scheme = HWKEY_SIG_RSA_PSS, .md_nid = NID_sha256, .salt_len = 32},
         20,
         256,
         HWKEY_R_BAD_ARGUMENT,
         "digest of 20 bytes does not match SHA256"},
        {K_RSA,
         {.scheme = HWKEY_SIG_RSA_PKCS1, .md_nid = NID_sha256},
         31,
         256,
         HWKEY_R_BAD_ARGUMENT,
         "digest of 31 bytes does not match SHA256"},
        {K_RSA,
         {.scheme = HWKEY_SIG_RSA_PKCS1, .md_nid = NID_md5},
         16,
         256,
         HWKEY_R_UNSUPPORTED_DIGEST,
         "digest MD5 is not one of"},
        {K_RSA,
         {.scheme = HWKEY_SIG_RSA_PSS,
          .md_nid = NID_sha256,
          .mgf1_md_nid = NID_md5,
          .salt_len = 32},
         32,
         256,
         HWKEY_R_UNSUPPORTED_DIGEST,
         "digest MD5"},
        {K_RSA,
         {.scheme = HWKEY_SIG_RSA_PKCS1, .md_nid = NID_sha256},
         32,
         255,
         HWKEY_R_BUFFER_TOO_SMALL,
         "signature buffer of 255 bytes, need 256"},
        {K_RSA,
         {.scheme = HWKEY_SIG_ECDSA, .md_nid = NID_sha256},
         32,
         256,
         HWKEY_R_UNSUPPORTED_ALGORITHM,
         "does not fit this key type"},
        {K_P256,
         {.scheme = HWKEY_SIG_RSA_PKCS1, .md_nid = NID_sha256},
         32,
         256,
         HWKEY_R_UNSUPPORTED_ALGORITHM,
         "does not fit this key type"},
        {K_P256,
         {.scheme = HWKEY_SIG_EDDSA},
         32,
         256,
         HWKEY_R_UNSUPPORTED_ALGORITHM,
         "does not fit this key type"},
        {K_ED,
         {.scheme = HWKEY_SIG_ECDSA, .md_nid = NID_sha256},
         32,
         256,
         HWKEY_R_UNSUPPORTED_ALGORITHM,
         "does not fit this key type"},
        {K_ED,
         {.scheme = 99},
         32,
         256,
         HWKEY_R_UNSUPPORTED_ALGORITHM,
         "unknown signature scheme 99"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        HWKEY_BKEY *key = load(cases[i].key);
        unsigned char tbs[64] = {0}, sig[256];
        size_t siglen = cases[i].siglen;
        unsigned long inits = fake_p11_calls(FAKE_C_SignInit);

        print_message("refusal: %s\n", cases[i].error);
        assert_int_equal(
            hwkey_pkcs11_backend.sign(key, &cases[i].p, tbs, cases[i].tbslen, sig, &siglen), 0);
        assert_one_error(cases[i].reason, cases[i].error);
        assert_int_equal(fake_p11_calls(FAKE_C_SignInit), inits);
        hwkey_pkcs11_backend.key_free(key);
    }
}

static void test_eddsa(void **state)
{
    HWKEY_BKEY *key = load(K_ED);
    HWKEY_SIGN_PARAMS p = {.scheme = HWKEY_SIG_EDDSA};
    unsigned char msg[100], sig[64];
    size_t siglen = 0, inlen;
    const unsigned char *in;
    EVP_MD_CTX *v = EVP_MD_CTX_new();

    (void)state;
    assert_int_equal(RAND_bytes(msg, sizeof(msg)), 1);
    assert_int_equal(hwkey_pkcs11_backend.sign(key, &p, msg, sizeof(msg), NULL, &siglen), 1);
    assert_int_equal(siglen, 64);
    assert_int_equal(hwkey_pkcs11_backend.sign(key, &p, msg, sizeof(msg), sig, &siglen), 1);
    assert_int_equal(siglen, 64);
    assert_int_equal(fake_p11_last_mech()->mechanism, CKM_EDDSA);
    in = fake_p11_last_input(&inlen);
    assert_int_equal(inlen, sizeof(msg)); /* the message, not a digest */
    assert_memory_equal(in, msg, sizeof(msg));
    assert_int_equal(EVP_DigestVerifyInit(v, NULL, NULL, NULL, soft[K_ED]), 1);
    assert_int_equal(EVP_DigestVerify(v, sig, siglen, msg, sizeof(msg)), 1);
    EVP_MD_CTX_free(v);
    hwkey_pkcs11_backend.key_free(key);
}

static void test_rsa_private_raw(void **state)
{
    HWKEY_BKEY *key = load(K_RSA);
    unsigned char m[256], out[256], back[256];
    size_t outlen = sizeof(out), backlen = sizeof(back);
    EVP_PKEY_CTX *e = EVP_PKEY_CTX_new(soft[K_RSA], NULL);

    (void)state;
    assert_true((key->info.flags & HWKEY_KEYF_RSA_RAW) != 0);
    assert_int_equal(RAND_bytes(m, sizeof(m)), 1);
    m[0] = 0; /* below the modulus */
    assert_int_equal(hwkey_pkcs11_backend.rsa_private(key, m, sizeof(m), out, &outlen), 1);
    assert_int_equal(fake_p11_last_mech()->mechanism, CKM_RSA_X_509);
    assert_int_equal(outlen, 256);
    /* (m^d)^e = m with the software public key. */
    assert_int_equal(EVP_PKEY_encrypt_init(e), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(e, RSA_NO_PADDING), 1);
    assert_int_equal(EVP_PKEY_encrypt(e, back, &backlen, out, outlen), 1);
    assert_memory_equal(back, m, sizeof(m));
    EVP_PKEY_CTX_free(e);

    /* A token that strips the leading zero byte: the caller still gets 256 bytes. */
    memset(canned, 0xab, sizeof(canned));
    canned_len = 255;
    use_canned_sign();
    outlen = sizeof(out);
    assert_int_equal(hwkey_pkcs11_backend.rsa_private(key, m, sizeof(m), out, &outlen), 1);
    assert_int_equal(outlen, 256);
    assert_int_equal(out[0], 0);
    assert_memory_equal(out + 1, canned, 255);

    outlen = sizeof(out);
    assert_int_equal(hwkey_pkcs11_backend.rsa_private(key, m, 255, out, &outlen), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "raw RSA needs 256 input and output bytes");
    hwkey_pkcs11_backend.key_free(key);
}

/* --- RSA decryption -------------------------------------------------------------------- */

static const struct dec_case {
    const char *name;
    HWKEY_DECRYPT_PARAMS p;
    const char *md, *mgf1;
    CK_MECHANISM_TYPE hash;
    CK_RSA_PKCS_MGF_TYPE mgf;
} dec_cases[] = {
    {"PKCS#1 v1.5", {.padding = HWKEY_PAD_PKCS1}, NULL, NULL, 0, 0},
    {"OAEP SHA-1",
     {.padding = HWKEY_PAD_OAEP, .oaep_md_nid = NID_sha1},
     "SHA1",
     "SHA1",
     CKM_SHA_1,
     CKG_MGF1_SHA1},
    {"OAEP SHA-256",
     {.padding = HWKEY_PAD_OAEP, .oaep_md_nid = NID_sha256},
     "SHA256",
     "SHA256",
     CKM_SHA256,
     CKG_MGF1_SHA256},
    {"OAEP SHA-256, MGF1 SHA-1, label",
     {.padding = HWKEY_PAD_OAEP,
      .oaep_md_nid = NID_sha256,
      .mgf1_md_nid = NID_sha1,
      .label = (const unsigned char *)"hwkey-label",
      .label_len = 11},
     "SHA256",
     "SHA1",
     CKM_SHA256,
     CKG_MGF1_SHA1},
};

static size_t encrypt_for(const struct dec_case *c, const unsigned char *pt, size_t ptlen,
                          unsigned char ct[256])
{
    EVP_PKEY_CTX *e = EVP_PKEY_CTX_new(soft[K_RSA], NULL);
    size_t ctlen = 256;

    assert_int_equal(EVP_PKEY_encrypt_init(e), 1);
    if (c->p.padding == HWKEY_PAD_PKCS1) {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(e, RSA_PKCS1_PADDING), 1);
    } else {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(e, RSA_PKCS1_OAEP_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(e, EVP_get_digestbyname(c->md)), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(e, EVP_get_digestbyname(c->mgf1)), 1);
        if (c->p.label_len > 0)
            assert_int_equal(
                EVP_PKEY_CTX_set0_rsa_oaep_label(e, OPENSSL_memdup(c->p.label, c->p.label_len),
                                                 (int)c->p.label_len),
                1);
    }
    assert_int_equal(EVP_PKEY_encrypt(e, ct, &ctlen, pt, ptlen), 1);
    EVP_PKEY_CTX_free(e);
    return ctlen;
}

static void test_rsa_decrypt(void **state)
{
    HWKEY_BKEY *key = load(K_RSA);

    (void)state;
    assert_true((key->info.flags & HWKEY_KEYF_DECRYPT) != 0);
    for (size_t i = 0; i < sizeof(dec_cases) / sizeof(dec_cases[0]); i++) {
        const struct dec_case *c = &dec_cases[i];
        unsigned char pt[48], ct[256], out[256];
        size_t ctlen, outlen = sizeof(out);
        const CK_MECHANISM *m;

        print_message("decrypt: %s\n", c->name);
        assert_int_equal(RAND_bytes(pt, sizeof(pt)), 1);
        ctlen = encrypt_for(c, pt, sizeof(pt), ct);
        assert_int_equal(hwkey_pkcs11_backend.rsa_decrypt(key, &c->p, ct, ctlen, out, &outlen), 1);
        assert_int_equal(outlen, sizeof(pt));
        assert_memory_equal(out, pt, sizeof(pt));
        m = fake_p11_last_mech();
        if (c->p.padding == HWKEY_PAD_PKCS1) {
            assert_int_equal(m->mechanism, CKM_RSA_PKCS);
            assert_null(m->pParameter);
        } else {
            const CK_RSA_PKCS_OAEP_PARAMS *op = m->pParameter;

            assert_int_equal(m->mechanism, CKM_RSA_PKCS_OAEP);
            assert_int_equal(m->ulParameterLen, sizeof(*op));
            assert_int_equal(op->hashAlg, c->hash);
            assert_int_equal(op->mgf, c->mgf);
            assert_int_equal(op->source, CKZ_DATA_SPECIFIED);
            assert_int_equal(op->ulSourceDataLen, c->p.label_len);
            if (c->p.label_len > 0)
                assert_memory_equal(op->pSourceData, c->p.label, c->p.label_len);
        }
        /* A modified ciphertext: the same one line whatever the padding (no oracle). */
        ct[ctlen - 1] ^= 1;
        outlen = sizeof(out);
        assert_int_equal(hwkey_pkcs11_backend.rsa_decrypt(key, &c->p, ct, ctlen, out, &outlen), 0);
        assert_one_error(HWKEY_R_DECRYPTION_FAILED, "decryption failed");
    }
    hwkey_pkcs11_backend.key_free(key);
}

/*
 * SoftHSM's answer to a bad ciphertext: CKR_GENERAL_ERROR, and its own
 * OpenSSL's "padding check failed" left in our thread's error queue.  The
 * caller must still see only the one fixed line (PKCS#1 and OAEP failures
 * indistinguishable), and a bad ciphertext is not a lost device: no
 * re-initialisation (which would also make bad padding far slower than
 * good, a timing oracle), one C_Decrypt per call.
 */
static void test_rsa_decrypt_softhsm_answers(void **state)
{
    HWKEY_BKEY *key = load(K_RSA);
    unsigned long inits = fake_p11_calls(FAKE_C_Initialize);

    (void)state;
    fake_p11_like_softhsm(1);
    for (size_t i = 0; i < sizeof(dec_cases) / sizeof(dec_cases[0]); i++) {
        unsigned char pt[16] = {1}, ct[256], out[256];
        size_t ctlen = encrypt_for(&dec_cases[i], pt, sizeof(pt), ct), outlen = sizeof(out);
        unsigned long decrypts = fake_p11_calls(FAKE_C_Decrypt);

        ct[10] ^= 1;
        assert_int_equal(
            hwkey_pkcs11_backend.rsa_decrypt(key, &dec_cases[i].p, ct, ctlen, out, &outlen), 0);
        assert_one_error(HWKEY_R_DECRYPTION_FAILED, "decryption failed");
        assert_int_equal(fake_p11_calls(FAKE_C_Decrypt), decrypts + 1);
    }
    assert_int_equal(fake_p11_calls(FAKE_C_Initialize), inits);
    hwkey_pkcs11_backend.key_free(key);
}

static void test_rsa_decrypt_refusals(void **state)
{
    HWKEY_BKEY *key = load(K_RSA);
    HWKEY_DECRYPT_PARAMS oaep = {.padding = HWKEY_PAD_OAEP, .oaep_md_nid = NID_sha256};
    HWKEY_DECRYPT_PARAMS bad = {.padding = 7};
    HWKEY_DECRYPT_PARAMS md5 = {.padding = HWKEY_PAD_OAEP, .oaep_md_nid = NID_md5};
    unsigned char pt[16] = {1}, ct[256], out[256];
    size_t ctlen = encrypt_for(&dec_cases[2], pt, sizeof(pt), ct), outlen = sizeof(out);

    (void)state;
    /* SoftHSM 2.6 refuses OAEP with SHA-256 in C_DecryptInit: that is a padding matter. */
    fake_p11_fail(FAKE_C_DecryptInit, 1, 1, CKR_MECHANISM_PARAM_INVALID);
    assert_int_equal(hwkey_pkcs11_backend.rsa_decrypt(key, &oaep, ct, ctlen, out, &outlen), 0);
    assert_one_error(HWKEY_R_UNSUPPORTED_PADDING,
                     "C_DecryptInit with token key \"rsa\" failed: CKR_MECHANISM_PARAM_INVALID");
    outlen = sizeof(out);
    assert_int_equal(hwkey_pkcs11_backend.rsa_decrypt(key, &bad, ct, ctlen, out, &outlen), 0);
    assert_one_error(HWKEY_R_UNSUPPORTED_PADDING, "RSA decryption padding 7");
    outlen = sizeof(out);
    assert_int_equal(hwkey_pkcs11_backend.rsa_decrypt(key, &md5, ct, ctlen, out, &outlen), 0);
    assert_one_error(HWKEY_R_UNSUPPORTED_DIGEST, "digest MD5");
    outlen = 8;
    assert_int_equal(hwkey_pkcs11_backend.rsa_decrypt(key, &oaep, ct, ctlen, out, &outlen), 0);
    assert_one_error(HWKEY_R_BUFFER_TOO_SMALL, "plaintext buffer too small");
    hwkey_pkcs11_backend.key_free(key);
}

/* --- ECDH -------------------------------------------------------------------------------- */

static void test_ecdh(void **state)
{
    HWKEY_BKEY *key = load(K_P256);
    EVP_PKEY *peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY_CTX *d = EVP_PKEY_CTX_new(peer, NULL);
    unsigned char pt[65], z[32], want[32];
    size_t ptlen = 0, zlen = sizeof(z), wantlen = sizeof(want);
    size_t objects = fake_p11_object_count();
    const FAKE_P11_TEMPLATE *t;
    const CK_ECDH1_DERIVE_PARAMS *dp;
    const CK_ATTRIBUTE *a;

    (void)state;
    assert_true((key->info.flags & HWKEY_KEYF_DERIVE) != 0);
    assert_int_equal(EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
                                                     sizeof(pt), &ptlen),
                     1);
    assert_int_equal(hwkey_pkcs11_backend.ecdh(key, pt, ptlen, z, &zlen), 1);
    assert_int_equal(zlen, 32);
    assert_int_equal(EVP_PKEY_derive_init(d), 1);
    assert_int_equal(EVP_PKEY_derive_set_peer(d, soft[K_P256]), 1);
    assert_int_equal(EVP_PKEY_derive(d, want, &wantlen), 1);
    assert_memory_equal(z, want, 32);
    /* The mechanism: no KDF, the peer's point as given. */
    assert_int_equal(fake_p11_last_mech()->mechanism, CKM_ECDH1_DERIVE);
    dp = fake_p11_last_mech()->pParameter;
    assert_int_equal(dp->kdf, CKD_NULL);
    assert_int_equal(dp->ulSharedDataLen, 0);
    assert_int_equal(dp->ulPublicDataLen, ptlen);
    assert_memory_equal(dp->pPublicData, pt, ptlen);
    /* The secret: a readable session object of the field's size, destroyed after. */
    t = fake_p11_template(fake_p11_template_count() - 1);
    assert_non_null(a = fake_p11_template_find(t, CKA_CLASS));
    assert_int_equal(*(CK_OBJECT_CLASS *)a->pValue, CKO_SECRET_KEY);
    assert_non_null(a = fake_p11_template_find(t, CKA_TOKEN));
    assert_int_equal(*(CK_BBOOL *)a->pValue, CK_FALSE);
    assert_non_null(a = fake_p11_template_find(t, CKA_SENSITIVE));
    assert_int_equal(*(CK_BBOOL *)a->pValue, CK_FALSE);
    assert_non_null(a = fake_p11_template_find(t, CKA_EXTRACTABLE));
    assert_int_equal(*(CK_BBOOL *)a->pValue, CK_TRUE);
    assert_non_null(a = fake_p11_template_find(t, CKA_VALUE_LEN));
    assert_int_equal(*(CK_ULONG *)a->pValue, 32);
    assert_int_equal(fake_p11_object_count(), objects);
    assert_int_equal(fake_p11_calls(FAKE_C_DestroyObject), 1);

    /* A compressed point, a point of another size, a short buffer: refused before the token. */
    pt[0] = 0x02;
    zlen = sizeof(z);
    assert_int_equal(hwkey_pkcs11_backend.ecdh(key, pt, 33, z, &zlen), 0);
    assert_one_error(HWKEY_R_INVALID_PEER_KEY,
                     "peer key is not an uncompressed point of this curve (33 bytes, want 65)");
    pt[0] = 0x04;
    assert_int_equal(hwkey_pkcs11_backend.ecdh(key, pt, 64, z, &zlen), 0);
    assert_one_error(HWKEY_R_INVALID_PEER_KEY, "(64 bytes, want 65)");
    zlen = 31;
    assert_int_equal(hwkey_pkcs11_backend.ecdh(key, pt, 65, z, &zlen), 0);
    assert_one_error(HWKEY_R_BUFFER_TOO_SMALL, "shared secret buffer of 31 bytes, need 32");
    assert_int_equal(fake_p11_calls(FAKE_C_DeriveKey), 1);
    hwkey_pkcs11_backend.key_free(key);
    key = load(K_RSA);
    zlen = sizeof(z);
    assert_int_equal(hwkey_pkcs11_backend.ecdh(key, pt, 65, z, &zlen), 0);
    assert_one_error(HWKEY_R_UNSUPPORTED_ALGORITHM, "ECDH needs an EC key");
    hwkey_pkcs11_backend.key_free(key);
    EVP_PKEY_CTX_free(d);
    EVP_PKEY_free(peer);
}

/* --- failures ------------------------------------------------------------------------------ */

static int sign_p256(HWKEY_BKEY *key)
{
    HWKEY_SIGN_PARAMS p = {.scheme = HWKEY_SIG_ECDSA, .md_nid = NID_sha256};
    unsigned char dgst[32] = {9}, sig[80];
    size_t siglen = sizeof(sig);
    EVP_PKEY_CTX *v;
    int ok;

    if (hwkey_pkcs11_backend.sign(key, &p, dgst, sizeof(dgst), sig, &siglen) != 1)
        return 0;
    v = EVP_PKEY_CTX_new(soft[K_P256], NULL);
    ok = EVP_PKEY_verify_init(v) == 1 && EVP_PKEY_verify(v, sig, siglen, dgst, 32) == 1;
    EVP_PKEY_CTX_free(v);
    return ok;
}

/* The token refuses: one error, the reason from the CKR_, the CKR_ name in the text. */
static void test_refused_by_token(void **state)
{
    static const struct {
        FAKE_P11_FN fn;
        CK_RV rv;
        int reason;
        const char *error;
    } cases[] = {
        {FAKE_C_Sign, CKR_KEY_FUNCTION_NOT_PERMITTED, HWKEY_R_UNSUPPORTED_ALGORITHM,
         "C_Sign with token key \"p256\" failed: CKR_KEY_FUNCTION_NOT_PERMITTED"},
        {FAKE_C_Sign, CKR_DEVICE_MEMORY, HWKEY_R_OUT_OF_MEMORY,
         "C_Sign with token key \"p256\" failed: CKR_DEVICE_MEMORY"},
        {FAKE_C_Sign, CKR_DATA_LEN_RANGE, HWKEY_R_DEVICE_ERROR,
         "C_Sign with token key \"p256\" failed: CKR_DATA_LEN_RANGE"},
        {FAKE_C_SignInit, CKR_MECHANISM_INVALID, HWKEY_R_UNSUPPORTED_ALGORITHM,
         "C_Sign with token key \"p256\" failed: CKR_MECHANISM_INVALID"},
        {FAKE_C_Sign, CKR_PIN_EXPIRED, HWKEY_R_AUTH_FAILED, "CKR_PIN_EXPIRED"},
    };
    HWKEY_BKEY *key = load(K_P256);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("token answers %s\n", cases[i].error);
        fake_p11_fail(cases[i].fn, 1, 1, cases[i].rv);
        assert_false(sign_p256(key));
        assert_one_error(cases[i].reason, cases[i].error);
        assert_true(sign_p256(key)); /* the next call works */
    }
    hwkey_pkcs11_backend.key_free(key);
}

/* Met once, repaired once: the operation succeeds and leaves nothing in the error queue. */
static void test_repaired_once(void **state)
{
    static const struct {
        const char *what;
        FAKE_P11_FN fn;
        CK_RV rv;
        FAKE_P11_FN repair; /* the call that must have happened again */
    } cases[] = {
        {"stale object handle", FAKE_C_SignInit, CKR_OBJECT_HANDLE_INVALID, FAKE_C_FindObjectsInit},
        {"stale key handle", FAKE_C_SignInit, CKR_KEY_HANDLE_INVALID, FAKE_C_FindObjectsInit},
        {"logged out", FAKE_C_Sign, CKR_USER_NOT_LOGGED_IN, FAKE_C_GetSessionInfo},
        {"session gone", FAKE_C_Sign, CKR_SESSION_HANDLE_INVALID, FAKE_C_Initialize},
        {"device removed", FAKE_C_Sign, CKR_DEVICE_REMOVED, FAKE_C_Initialize},
        {"general error", FAKE_C_SignInit, CKR_GENERAL_ERROR, FAKE_C_Initialize},
    };
    HWKEY_BKEY *key = load(K_P256);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned long before = fake_p11_calls(cases[i].repair);

        print_message("repair: %s\n", cases[i].what);
        fake_p11_fail(cases[i].fn, 1, 1, cases[i].rv);
        assert_true(sign_p256(key));
        assert_int_equal(ERR_peek_error(), 0);
        assert_true(fake_p11_calls(cases[i].repair) > before);
    }
    hwkey_pkcs11_backend.key_free(key);
}

/* Lost for good: repaired once, then one error naming the device's code. */
static void test_device_stays_lost(void **state)
{
    HWKEY_BKEY *key = load(K_P256);
    unsigned long inits = fake_p11_calls(FAKE_C_Initialize);

    (void)state;
    fake_p11_fail(FAKE_C_Sign, 1, 100, CKR_DEVICE_REMOVED);
    assert_false(sign_p256(key));
    assert_one_error(HWKEY_R_DEVICE_UNREACHABLE,
                     "C_Sign with token key \"p256\" failed: CKR_DEVICE_REMOVED");
    assert_int_equal(fake_p11_calls(FAKE_C_Initialize), inits + 1); /* once, not a loop */
    hwkey_pkcs11_backend.key_free(key);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_ecdsa_each_curve),
        T(test_ecdsa_der_encoding),
        T(test_rsa_pkcs1_digestinfo),
        T(test_rsa_pkcs1_raw_input),
        T(test_rsa_pss_params),
        T(test_sign_refusals),
        T(test_eddsa),
        T(test_rsa_private_raw),
        T(test_rsa_decrypt),
        T(test_rsa_decrypt_softhsm_answers),
        T(test_rsa_decrypt_refusals),
        T(test_ecdh),
        T(test_refused_by_token),
        T(test_repaired_once),
        T(test_device_stays_lost),
    };
#undef T

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
