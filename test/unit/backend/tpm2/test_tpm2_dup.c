/*
 * The host side of TPM2_Import (src/backend/tpm2/tpm2_dup.c) without a TPM:
 *  - KDFa and KDFe against fixed vectors (computed with Python's hmac /
 *    hashlib from the Part 1 formulas) and against OpenSSL's independent
 *    KBKDF (SP 800-108 counter mode) and SSKDF (SP 800-56A single-step);
 *  - the duplication blob unwrapped as the TPM does (Part 1 "Duplication"),
 *    for an ECC and an RSA parent whose private keys the test holds: outer
 *    HMAC checked, sensitive area decrypted and compared field by field.
 * The integration test (test_import.sh) is the ground truth: swtpm accepts
 * the blobs and the imported keys sign.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include "backend/tpm2/tpm2_dup.h"
#include "backend/tpm2/tpm2_internal.h"

static void fill_range(unsigned char *b, size_t n, unsigned char start)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(start + i);
}

static void hex_to_bin(const char *hex, unsigned char *out, size_t n)
{
    long len = 0;
    unsigned char *b = OPENSSL_hexstr2buf(hex, &len);

    assert_non_null(b);
    assert_int_equal((size_t)len, n);
    memcpy(out, b, n);
    OPENSSL_free(b);
}

/* key = 00..1f, u = 40..61 (34 bytes), v = 80..8f, Z = a0..bf */
static const struct {
    int kdfa;
    TPMI_ALG_HASH alg;
    const char *label;
    int use_u, use_v;
    size_t outlen;
    const char *hex;
} vectors[] = {
    {.kdfa = 1,
     .alg = TPM2_ALG_SHA256,
     .label = "STORAGE",
     .use_u = 1,
     .outlen = 16,
     .hex = "30476cb97de910bef6a6a2c406648583"},
    {.kdfa = 1,
     .alg = TPM2_ALG_SHA256,
     .label = "INTEGRITY",
     .outlen = 32,
     .hex = "bacf689f634ece301e1f1b15b072d9c87db6a69585db42b1a0cb8f73ebe2692e"},
    {.kdfa = 1,
     .alg = TPM2_ALG_SHA384,
     .label = "TEST",
     .use_u = 1,
     .use_v = 1,
     .outlen = 70,
     .hex = "f385da63519ff57cbce8d9d15faf3cccd11e0dd44f07e1ed001eed5768f0897c86a2b0903b7db2e7"
            "243edea1f2fef543f2159160ccfbfacbcdb9a7b897562eaa3216dd86c374"},
    {.kdfa = 0,
     .alg = TPM2_ALG_SHA256,
     .label = "DUPLICATE",
     .use_u = 1,
     .use_v = 1,
     .outlen = 32,
     .hex = "c8795b9d43b77873ebaa0f36f429738421e2b6cdf7e969470a3c2c4f6bff0847"},
    {.kdfa = 0,
     .alg = TPM2_ALG_SHA256,
     .label = "DUPLICATE",
     .use_u = 1,
     .use_v = 1,
     .outlen = 50,
     .hex = "c8795b9d43b77873ebaa0f36f429738421e2b6cdf7e969470a3c2c4f6bff0847"
            "06307a7f69ed996605c7ce6821b52e398ff1"},
};

static void test_kdf_vectors(void **state)
{
    unsigned char key[32], u[34], v[16], z[32], want[128], got[128];

    (void)state;
    fill_range(key, sizeof(key), 0x00);
    fill_range(u, sizeof(u), 0x40);
    fill_range(v, sizeof(v), 0x80);
    fill_range(z, sizeof(z), 0xa0);
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const unsigned char *up = vectors[i].use_u ? u : NULL, *vp = vectors[i].use_v ? v : NULL;
        size_t ul = vectors[i].use_u ? sizeof(u) : 0, vl = vectors[i].use_v ? sizeof(v) : 0;
        int ok;

        hex_to_bin(vectors[i].hex, want, vectors[i].outlen);
        memset(got, 0, sizeof(got));
        if (vectors[i].kdfa)
            ok = hwkey_tpm2_kdfa(vectors[i].alg, key, sizeof(key), vectors[i].label, up, ul, vp, vl,
                                 got, vectors[i].outlen);
        else
            ok = hwkey_tpm2_kdfe(vectors[i].alg, z, sizeof(z), vectors[i].label, up, ul, vp, vl,
                                 got, vectors[i].outlen);
        assert_int_equal(ok, 1);
        assert_memory_equal(got, want, vectors[i].outlen);
    }
}

/* KDFa == KBKDF(counter, HMAC, salt = label, info = u || v), separator and L on. */
static void test_kdfa_vs_kbkdf(void **state)
{
    unsigned char key[48], ctx[40], mine[100], theirs[100];
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "KBKDF", NULL);
    EVP_KDF_CTX *kctx;
    OSSL_PARAM p[7];
    size_t lens[] = {16, 32, 33, 100};

    (void)state;
    assert_non_null(kdf);
    fill_range(key, sizeof(key), 0x11);
    fill_range(ctx, sizeof(ctx), 0x77);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        kctx = EVP_KDF_CTX_new(kdf);
        assert_non_null(kctx);
        p[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, "COUNTER", 0);
        p[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, "HMAC", 0);
        p[2] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
        p[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, key, sizeof(key));
        p[4] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, "INTEGRITY", 9);
        p[5] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, ctx, sizeof(ctx));
        p[6] = OSSL_PARAM_construct_end();
        assert_int_equal(EVP_KDF_derive(kctx, theirs, lens[i], p), 1);
        EVP_KDF_CTX_free(kctx);
        assert_int_equal(hwkey_tpm2_kdfa(TPM2_ALG_SHA256, key, sizeof(key), "INTEGRITY", ctx, 25,
                                         ctx + 25, sizeof(ctx) - 25, mine, lens[i]),
                         1);
        assert_memory_equal(mine, theirs, lens[i]);
    }
    EVP_KDF_free(kdf);
}

/* KDFe == SSKDF(hash, key = Z, info = label\0 || u || v). */
static void test_kdfe_vs_sskdf(void **state)
{
    unsigned char z[48], info[10 + 48 + 48], mine[80], theirs[80];
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SSKDF", NULL);
    EVP_KDF_CTX *kctx;
    OSSL_PARAM p[4];

    (void)state;
    assert_non_null(kdf);
    fill_range(z, sizeof(z), 0x31);
    memcpy(info, "DUPLICATE", 10);
    fill_range(info + 10, 96, 0x90);
    for (size_t len = 16; len <= sizeof(mine); len += 32) {
        kctx = EVP_KDF_CTX_new(kdf);
        assert_non_null(kctx);
        p[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA384", 0);
        p[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, z, sizeof(z));
        p[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof(info));
        p[3] = OSSL_PARAM_construct_end();
        assert_int_equal(EVP_KDF_derive(kctx, theirs, len, p), 1);
        EVP_KDF_CTX_free(kctx);
        assert_int_equal(hwkey_tpm2_kdfe(TPM2_ALG_SHA384, z, sizeof(z), "DUPLICATE", info + 10, 48,
                                         info + 58, 48, mine, len),
                         1);
        assert_memory_equal(mine, theirs, len);
    }
    EVP_KDF_free(kdf);
}

/* A storage-key public area for a software parent key. */
static void parent_public(EVP_PKEY *pk, TPMT_PUBLIC *pub)
{
    BIGNUM *a = NULL, *b = NULL;

    memset(pub, 0, sizeof(*pub));
    pub->nameAlg = TPM2_ALG_SHA256;
    pub->objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    pub->parameters.asymDetail.symmetric.algorithm = TPM2_ALG_AES;
    pub->parameters.asymDetail.symmetric.keyBits.aes = 128;
    pub->parameters.asymDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    if (EVP_PKEY_is_a(pk, "EC")) {
        pub->type = TPM2_ALG_ECC;
        pub->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
        pub->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        pub->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        assert_true(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &a));
        assert_true(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &b));
        assert_int_equal(BN_bn2binpad(a, pub->unique.ecc.x.buffer, 32), 32);
        assert_int_equal(BN_bn2binpad(b, pub->unique.ecc.y.buffer, 32), 32);
        pub->unique.ecc.x.size = pub->unique.ecc.y.size = 32;
    } else {
        pub->type = TPM2_ALG_RSA;
        pub->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        pub->parameters.rsaDetail.keyBits = 2048;
        assert_true(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &a));
        assert_int_equal(BN_bn2binpad(a, pub->unique.rsa.buffer, 256), 256);
        pub->unique.rsa.size = 256;
    }
    BN_free(a);
    BN_free(b);
}

/* The TPM's side: recover the seed from inSymSeed with the parent's private key. */
static void recover_seed(EVP_PKEY *parent, const TPMT_PUBLIC *ppub,
                         const TPM2B_ENCRYPTED_SECRET *in, unsigned char seed[32])
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(parent, NULL);

    assert_non_null(ctx);
    if (ppub->type == TPM2_ALG_ECC) {
        TPMT_PUBLIC eph = *ppub;
        TPMS_ECC_POINT pt;
        EVP_PKEY *peer;
        unsigned char z[32];
        size_t off = 0, zlen = sizeof(z);

        assert_int_equal(Tss2_MU_TPMS_ECC_POINT_Unmarshal(in->secret, in->size, &off, &pt), 0);
        assert_int_equal(off, in->size);
        eph.unique.ecc = pt;
        peer = hwkey_tpm2_public_to_pkey(&eph, NULL, NULL);
        assert_non_null(peer);
        assert_int_equal(EVP_PKEY_derive_init(ctx), 1);
        assert_int_equal(EVP_PKEY_derive_set_peer(ctx, peer), 1);
        assert_int_equal(EVP_PKEY_derive(ctx, z, &zlen), 1);
        assert_int_equal(hwkey_tpm2_kdfe(TPM2_ALG_SHA256, z, zlen, "DUPLICATE", pt.x.buffer,
                                         pt.x.size, ppub->unique.ecc.x.buffer,
                                         ppub->unique.ecc.x.size, seed, 32),
                         1);
        EVP_PKEY_free(peer);
    } else {
        unsigned char out[512];
        size_t len = sizeof(out);

        assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, "SHA256", NULL), 1);
        assert_int_equal(EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, OPENSSL_memdup("DUPLICATE", 10), 10),
                         1);
        assert_int_equal(EVP_PKEY_decrypt(ctx, out, &len, in->secret, in->size), 1);
        assert_int_equal(len, 32);
        memcpy(seed, out, 32);
    }
    EVP_PKEY_CTX_free(ctx);
}

static void unwrap_and_compare(const char *parent_alg)
{
    EVP_PKEY *parent = strcmp(parent_alg, "EC") == 0
                           ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                           : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    TPMT_PUBLIC ppub, obj;
    TPMT_SENSITIVE sens, back;
    TPM2B_PRIVATE dup;
    TPM2B_ENCRYPTED_SECRET seed_in;
    TPM2B_NAME name;
    unsigned char seed[32], sym[16], hkey[32], mac[32], plain[sizeof(TPM2B_SENSITIVE)];
    const unsigned char iv[16] = {0};
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    size_t maclen = 0, off = 0, enclen;
    int outl = 0;

    assert_non_null(parent);
    parent_public(parent, &ppub);
    memset(&obj, 0, sizeof(obj));
    obj.type = TPM2_ALG_ECC;
    obj.nameAlg = TPM2_ALG_SHA256;
    obj.objectAttributes = TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_SIGN_ENCRYPT;
    obj.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    obj.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    obj.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    obj.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    obj.unique.ecc.x.size = obj.unique.ecc.y.size = 32;
    memset(&sens, 0, sizeof(sens));
    sens.sensitiveType = TPM2_ALG_ECC;
    sens.authValue.size = 5;
    memcpy(sens.authValue.buffer, "s3cr3", 5);
    sens.seedValue.size = 32;
    fill_range(sens.seedValue.buffer, 32, 0x5a);
    sens.sensitive.ecc.size = 32;
    fill_range(sens.sensitive.ecc.buffer, 32, 0xc0);

    assert_int_equal(hwkey_tpm2_dup_wrap(&ppub, &obj, &sens, &dup, &seed_in), 1);
    /* The scalar is nowhere in the clear in what crosses the bus. */
    for (size_t i = 0; i + 32 <= dup.size; i++)
        assert_memory_not_equal(dup.buffer + i, sens.sensitive.ecc.buffer, 32);

    recover_seed(parent, &ppub, &seed_in, seed);
    assert_int_equal(hwkey_tpm2_object_name(&obj, &name), 1);
    assert_int_equal(name.size, 34);
    assert_int_equal(hwkey_tpm2_kdfa(TPM2_ALG_SHA256, seed, 32, "STORAGE", name.name, name.size,
                                     NULL, 0, sym, sizeof(sym)),
                     1);
    assert_int_equal(hwkey_tpm2_kdfa(TPM2_ALG_SHA256, seed, 32, "INTEGRITY", NULL, 0, NULL, 0, hkey,
                                     sizeof(hkey)),
                     1);
    /* duplicate = TPM2B(outerHMAC) || encSensitive; HMAC over encSensitive || Name */
    assert_int_equal(dup.buffer[0] << 8 | dup.buffer[1], 32);
    enclen = dup.size - 34u;
    {
        unsigned char both[sizeof(dup.buffer) + sizeof(name.name)];

        memcpy(both, dup.buffer + 34, enclen);
        memcpy(both + enclen, name.name, name.size);
        assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, hkey, sizeof(hkey), both,
                                  enclen + name.size, mac, sizeof(mac), &maclen));
    }
    assert_memory_equal(mac, dup.buffer + 2, 32);
    assert_int_equal(EVP_DecryptInit_ex2(c, EVP_aes_128_cfb128(), sym, iv, NULL), 1);
    assert_int_equal(EVP_DecryptUpdate(c, plain, &outl, dup.buffer + 34, (int)enclen), 1);
    assert_int_equal((size_t)outl, enclen);
    assert_int_equal(plain[0] << 8 | plain[1], enclen - 2);
    memset(&back, 0, sizeof(back));
    assert_int_equal(Tss2_MU_TPMT_SENSITIVE_Unmarshal(plain + 2, enclen - 2, &off, &back), 0);
    assert_int_equal(off, enclen - 2);
    assert_int_equal(back.sensitiveType, TPM2_ALG_ECC);
    assert_int_equal(back.authValue.size, 5);
    assert_memory_equal(back.authValue.buffer, "s3cr3", 5);
    assert_memory_equal(back.seedValue.buffer, sens.seedValue.buffer, 32);
    assert_int_equal(back.sensitive.ecc.size, 32);
    assert_memory_equal(back.sensitive.ecc.buffer, sens.sensitive.ecc.buffer, 32);

    /* One flipped byte of the encrypted part no longer matches the outer HMAC. */
    dup.buffer[40] ^= 1;
    {
        unsigned char both[sizeof(dup.buffer) + sizeof(name.name)];

        memcpy(both, dup.buffer + 34, enclen);
        memcpy(both + enclen, name.name, name.size);
        assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, hkey, sizeof(hkey), both,
                                  enclen + name.size, mac, sizeof(mac), &maclen));
    }
    assert_memory_not_equal(mac, dup.buffer + 2, 32);
    EVP_CIPHER_CTX_free(c);
    EVP_PKEY_free(parent);
}

static void test_unwrap_ecc_parent(void **state)
{
    (void)state;
    unwrap_and_compare("EC");
}

static void test_unwrap_rsa_parent(void **state)
{
    (void)state;
    unwrap_and_compare("RSA");
}

/* A parent that is not an AES-CFB storage key is refused, not wrapped to. */
static void test_refuses_non_storage_parent(void **state)
{
    TPMT_PUBLIC ppub, obj;
    TPMT_SENSITIVE sens;
    TPM2B_PRIVATE dup;
    TPM2B_ENCRYPTED_SECRET seed;

    (void)state;
    memset(&ppub, 0, sizeof(ppub));
    memset(&obj, 0, sizeof(obj));
    memset(&sens, 0, sizeof(sens));
    ppub.type = TPM2_ALG_ECC;
    ppub.nameAlg = TPM2_ALG_SHA256;
    ppub.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    obj.type = TPM2_ALG_ECC;
    obj.nameAlg = TPM2_ALG_SHA256;
    assert_int_equal(hwkey_tpm2_dup_wrap(&ppub, &obj, &sens, &dup, &seed), 0);
    assert_int_equal(dup.size, 0);
    assert_int_equal(seed.size, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kdf_vectors),       cmocka_unit_test(test_kdfa_vs_kbkdf),
        cmocka_unit_test(test_kdfe_vs_sskdf),     cmocka_unit_test(test_unwrap_ecc_parent),
        cmocka_unit_test(test_unwrap_rsa_parent), cmocka_unit_test(test_refuses_non_storage_parent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
