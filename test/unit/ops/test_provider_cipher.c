/*
 * hwkey's RSA decryption, ECDH and device failures over the fake backend,
 * each result checked against the default provider on the same software key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "../fakes/provider_fixture.h"
#include "util/error.h"

/* --- decryption ------------------------------------------------------------- */

typedef struct {
    const char *name;
    int pad;
    const char *oaep_md; /* NULL: the default, SHA-1 */
    const char *mgf1_md;
    const char *label;
    int raw;
} DECRYPT_CASE;

static const DECRYPT_CASE decrypt_cases[] = {
    {.name = "OAEP SHA-1 raw", .pad = RSA_PKCS1_OAEP_PADDING, .raw = 1},
    {.name = "OAEP SHA-256 raw", .pad = RSA_PKCS1_OAEP_PADDING, .oaep_md = "SHA256", .raw = 1},
    {.name = "OAEP SHA-256 MGF1-SHA-1 label raw",
     .pad = RSA_PKCS1_OAEP_PADDING,
     .oaep_md = "SHA256",
     .mgf1_md = "SHA1",
     .label = "a label",
     .raw = 1},
    {.name = "OAEP SHA-512 MGF1-SHA-256 raw",
     .pad = RSA_PKCS1_OAEP_PADDING,
     .oaep_md = "SHA512",
     .mgf1_md = "SHA256",
     .raw = 1},
    {.name = "PKCS1 v1.5 raw", .pad = RSA_PKCS1_PADDING, .raw = 1},
    {.name = "OAEP SHA-1 device pads", .pad = RSA_PKCS1_OAEP_PADDING},
    {.name = "OAEP SHA-256 label device pads",
     .pad = RSA_PKCS1_OAEP_PADDING,
     .oaep_md = "SHA256",
     .label = "a label"},
    {.name = "PKCS1 v1.5 device pads", .pad = RSA_PKCS1_PADDING},
};

static void set_cipher(EVP_PKEY_CTX *ctx, const DECRYPT_CASE *c)
{
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, c->pad), 1);
    if (c->oaep_md != NULL)
        assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, c->oaep_md, NULL), 1);
    if (c->mgf1_md != NULL)
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, c->mgf1_md, NULL), 1);
    if (c->label != NULL)
        assert_int_equal(
            EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, OPENSSL_memdup(c->label, strlen(c->label)),
                                             (int)strlen(c->label)),
            1);
}

static size_t encrypt_soft(const DECRYPT_CASE *c, const unsigned char *in, size_t inlen,
                           unsigned char *out)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(lib, soft[RSA2048], SOFT);
    size_t len = 512;

    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
    set_cipher(ctx, c);
    assert_int_equal(EVP_PKEY_encrypt(ctx, out, &len, in, inlen), 1);
    EVP_PKEY_CTX_free(ctx);
    return len;
}

/* Returns EVP_PKEY_decrypt's result; *outlen the plaintext length. */
static int decrypt_hw(EVP_PKEY *hw, const DECRYPT_CASE *c, const unsigned char *in, size_t inlen,
                      unsigned char *out, size_t *outlen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(lib, hw, NULL);
    int ok;

    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
    set_cipher(ctx, c);
    *outlen = 512;
    ok = EVP_PKEY_decrypt(ctx, out, outlen, in, inlen);
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

static void test_decrypt(void **state)
{
    static const unsigned char secret[] = "a 32-byte session key, say......";

    (void)state;
    for (size_t i = 0; i < sizeof(decrypt_cases) / sizeof(decrypt_cases[0]); i++) {
        const DECRYPT_CASE *c = &decrypt_cases[i];
        unsigned char ct[512], pt[512];
        size_t ctlen, ptlen;
        EVP_PKEY *hw;

        print_message("  %s\n", c->name);
        hwkey_fake_reset();
        hwkey_fake_set_rsa_raw(c->raw);
        hw = hw_key_of(soft[RSA2048]);
        ctlen = encrypt_soft(c, secret, sizeof(secret), ct);

        assert_int_equal(decrypt_hw(hw, c, ct, ctlen, pt, &ptlen), 1);
        assert_int_equal(ptlen, sizeof(secret));
        assert_memory_equal(pt, secret, sizeof(secret));
        assert_int_equal(device_calls(), 1);
        assert_int_equal(
            hwkey_fake_calls(c->raw ? HWKEY_FAKE_OP_RSA_PRIVATE : HWKEY_FAKE_OP_RSA_DECRYPT), 1);

        /* A damaged ciphertext: one reason, whatever went wrong in the padding. */
        ct[ctlen / 2] ^= 0x40;
        ERR_clear_error();
        assert_int_not_equal(decrypt_hw(hw, c, ct, ctlen, pt, &ptlen), 1);
        assert_true(drain_errors_for(HWKEY_R_DECRYPTION_FAILED, NULL));
        EVP_PKEY_free(hw);
    }
}

/* libssl's RSA key exchange: a bad premaster must look like a good one. */
static void test_decrypt_tls_premaster(void **state)
{
    static const DECRYPT_CASE pkcs1 = {.name = "PKCS1", .pad = RSA_PKCS1_PADDING};
    static const struct {
        const char *name;
        int raw;
        int corrupt;
        unsigned int client_version;
        int expect_same;
    } cases[] = {
        {"raw: good", 1, 0, 0x0303, 1},
        {"raw: damaged ciphertext", 1, 1, 0x0303, 0},
        {"raw: other client version", 1, 0, 0x0302, 0},
        {"device pads: good", 0, 0, 0x0303, 1},
        {"device pads: damaged ciphertext", 0, 1, 0x0303, 0},
        {"device pads: other client version", 0, 0, 0x0302, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char premaster[48], ct[512], out[48];
        unsigned int version = cases[i].client_version;
        size_t ctlen, outlen = sizeof(out);
        OSSL_PARAM params[2];
        EVP_PKEY_CTX *ctx;
        EVP_PKEY *hw;

        print_message("  %s\n", cases[i].name);
        hwkey_fake_reset();
        hwkey_fake_set_rsa_raw(cases[i].raw);
        hw = hw_key_of(soft[RSA2048]);
        assert_int_equal(RAND_bytes(premaster, sizeof(premaster)), 1);
        premaster[0] = 0x03;
        premaster[1] = 0x03;
        ctlen = encrypt_soft(&pkcs1, premaster, sizeof(premaster), ct);
        if (cases[i].corrupt)
            ct[ctlen / 2] ^= 0x40;

        ctx = EVP_PKEY_CTX_new_from_pkey(lib, hw, NULL);
        assert_non_null(ctx);
        assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_WITH_TLS_PADDING), 1);
        params[0] = OSSL_PARAM_construct_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, &version);
        params[1] = OSSL_PARAM_construct_end();
        assert_int_equal(EVP_PKEY_CTX_set_params(ctx, params), 1);
        ERR_clear_error();
        assert_int_equal(EVP_PKEY_decrypt(ctx, out, &outlen, ct, ctlen), 1);
        assert_int_equal(outlen, sizeof(out));
        assert_int_equal(ERR_peek_error(), 0);
        if (cases[i].expect_same)
            assert_memory_equal(out, premaster, sizeof(out));
        else
            assert_memory_not_equal(out, premaster, sizeof(out));
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(hw);
    }
}

/* --- key exchange ------------------------------------------------------------ */

static size_t derive(EVP_PKEY *key, const char *propq, EVP_PKEY *peer, unsigned char *out)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(lib, key, propq);
    size_t len = 0;

    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_derive_init(ctx), 1);
    if (EVP_PKEY_derive_set_peer(ctx, peer) != 1 || EVP_PKEY_derive(ctx, NULL, &len) != 1 ||
        EVP_PKEY_derive(ctx, out, &len) != 1)
        len = 0;
    EVP_PKEY_CTX_free(ctx);
    return len;
}

static void test_ecdh(void **state)
{
    static const struct {
        int key;
        const char *curve;
        size_t len;
    } cases[] = {{EC256, "P-256", 32}, {EC384, "P-384", 48}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char a[80], b[80];
        EVP_PKEY *peer = EVP_PKEY_Q_keygen(lib, SOFT, "EC", cases[i].curve);
        EVP_PKEY *peer_pub, *hw, *own_pub;

        print_message("  ECDH %s\n", cases[i].curve);
        assert_non_null(peer);
        peer_pub = public_of(peer);
        hwkey_fake_reset();
        hw = hw_key_of(soft[cases[i].key]);
        assert_int_equal(derive(hw, NULL, peer_pub, a), cases[i].len);
        assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_ECDH), 1);
        assert_int_equal(derive(soft[cases[i].key], SOFT, peer_pub, b), cases[i].len);
        assert_memory_equal(a, b, cases[i].len);
        /* And the peer's view of it, with our public key as hwkey exports it. */
        own_pub = public_of(hw);
        assert_int_equal(derive(peer, SOFT, own_pub, b), cases[i].len);
        assert_memory_equal(a, b, cases[i].len);
        EVP_PKEY_free(own_pub);
        EVP_PKEY_free(peer);
        EVP_PKEY_free(peer_pub);
        EVP_PKEY_free(hw);
    }
}

static void test_ecdh_other_curve(void **state)
{
    unsigned char out[80];
    EVP_PKEY *hw, *peer;

    (void)state;
    hwkey_fake_reset();
    hw = hw_key_of(soft[EC256]);
    peer = public_of(soft[EC384]);
    ERR_clear_error();
    assert_int_equal(derive(hw, NULL, peer, out), 0);
    assert_true(drain_errors_for(HWKEY_R_INVALID_PEER_KEY, NULL));
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_ECDH), 0);
    EVP_PKEY_free(hw);
    EVP_PKEY_free(peer);
}

/* ECDH followed by the X9.63 KDF, set the way CMS sets it (EVP_PKEY_CTX_set_ecdh_kdf_*). */
static size_t derive_x963(EVP_PKEY *key, const char *propq, EVP_PKEY *peer, const EVP_MD *md,
                          int outlen, unsigned char *out)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(lib, key, propq);
    unsigned char *ukm = OPENSSL_memdup("shared info", 11);
    size_t len = 0;

    assert_non_null(ctx);
    assert_non_null(ukm);
    assert_int_equal(EVP_PKEY_derive_init(ctx), 1);
    assert_int_equal(EVP_PKEY_derive_set_peer(ctx, peer), 1);
    assert_int_equal(EVP_PKEY_CTX_set_ecdh_kdf_type(ctx, EVP_PKEY_ECDH_KDF_X9_63), 1);
    assert_int_equal(EVP_PKEY_CTX_set_ecdh_kdf_md(ctx, md), 1);
    assert_int_equal(EVP_PKEY_CTX_set_ecdh_kdf_outlen(ctx, outlen), 1);
    assert_int_equal(EVP_PKEY_CTX_set0_ecdh_kdf_ukm(ctx, ukm, 11), 1);
    assert_int_equal(EVP_PKEY_CTX_get_ecdh_kdf_type(ctx), EVP_PKEY_ECDH_KDF_X9_63);
    if (EVP_PKEY_derive(ctx, NULL, &len) != 1 || len != (size_t)outlen ||
        EVP_PKEY_derive(ctx, out, &len) != 1)
        len = 0;
    EVP_PKEY_CTX_free(ctx);
    return len;
}

/* Issue 7.9: the KDF CMS asks for, over the device secret, matches the default provider. */
static void test_ecdh_x963_kdf(void **state)
{
    static const struct {
        int key;
        const char *curve, *md;
        int outlen;
    } cases[] = {{EC256, "P-256", "SHA1", 16},
                 {EC256, "P-256", "SHA256", 32},
                 {EC384, "P-384", "SHA384", 40},
                 {EC384, "P-384", "SHA512", 24}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char a[80], b[80];
        EVP_PKEY *peer = EVP_PKEY_Q_keygen(lib, SOFT, "EC", cases[i].curve);
        EVP_MD *md = EVP_MD_fetch(lib, cases[i].md, SOFT);
        EVP_PKEY *peer_pub, *hw;
        size_t n = (size_t)cases[i].outlen;

        print_message("  ECDH %s + X9.63 KDF %s, %d bytes\n", cases[i].curve, cases[i].md,
                      cases[i].outlen);
        assert_non_null(peer);
        assert_non_null(md);
        peer_pub = public_of(peer);
        hwkey_fake_reset();
        hw = hw_key_of(soft[cases[i].key]);
        assert_int_equal(derive_x963(hw, NULL, peer_pub, md, cases[i].outlen, a), n);
        assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_ECDH), 1);
        assert_int_equal(derive_x963(soft[cases[i].key], SOFT, peer_pub, md, cases[i].outlen, b),
                         n);
        assert_memory_equal(a, b, n);
        /* Not the raw secret: the KDF really ran. */
        assert_int_equal(derive(hw, NULL, peer_pub, b), cases[i].key == EC256 ? 32 : 48);
        assert_memory_not_equal(a, b, n < 32 ? n : 32);
        EVP_MD_free(md);
        EVP_PKEY_free(peer);
        EVP_PKEY_free(peer_pub);
        EVP_PKEY_free(hw);
    }
}

static void test_ecdh_kdf_refused(void **state)
{
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *hw;
    OSSL_PARAM params[2];

    (void)state;
    hw = hw_key_of(soft[EC256]);
    ctx = EVP_PKEY_CTX_new_from_pkey(lib, hw, NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_derive_init(ctx), 1);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, "HKDF", 0);
    params[1] = OSSL_PARAM_construct_end();
    ERR_clear_error();
    assert_int_equal(EVP_PKEY_CTX_set_params(ctx, params), 0);
    assert_true(drain_errors_for(HWKEY_R_UNSUPPORTED_ALGORITHM, NULL));
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(hw);
}

/*
 * CMS builds the ECDH peer by copying the recipient key's parameters and
 * setting the originator's point (EVP_PKEY_copy_parameters +
 * EVP_PKEY_set1_encoded_public_key).  With a device key that copy must be a
 * public-only key holding the new point: it once was the device key itself,
 * the point was silently not set, and ECDH ran against our own public key.
 */
static void test_copy_parameters_then_point(void **state)
{
    EVP_PKEY *hw = hw_key_of(soft[EC256]);
    EVP_PKEY *peer = EVP_PKEY_Q_keygen(lib, SOFT, "EC", "P-256");
    EVP_PKEY *copy = EVP_PKEY_new(), *peer_pub;
    unsigned char *point = NULL, a[80], b[80];
    size_t len;

    (void)state;
    assert_non_null(peer);
    assert_non_null(copy);
    peer_pub = public_of(peer);
    len = EVP_PKEY_get1_encoded_public_key(peer, &point);
    assert_true(len > 0);
    assert_int_equal(EVP_PKEY_copy_parameters(copy, hw), 1);
    assert_true(is_hwkey(copy));
    assert_int_equal(EVP_PKEY_set1_encoded_public_key(copy, point, len), 1);
    assert_int_equal(EVP_PKEY_eq(copy, peer_pub), 1);
    assert_int_not_equal(EVP_PKEY_eq(copy, hw), 1);
    /* The original keeps its own point, and the copy has no private half. */
    assert_int_equal(EVP_PKEY_eq(hw, soft[EC256]), 1);
    ERR_clear_error();
    assert_int_equal(sign_message(copy, "SHA256", 0, 0, b, sizeof(b)), 0);
    assert_true(drain_errors_for(HWKEY_R_NO_PRIVATE_KEY, NULL));
    /* ECDH with the copy as the peer is ECDH with the peer. */
    hwkey_fake_reset();
    assert_int_equal(derive(hw, NULL, copy, a), 32);
    assert_int_equal(derive(soft[EC256], SOFT, peer_pub, b), 32);
    assert_memory_equal(a, b, 32);
    /* A device key's own point cannot be replaced. */
    ERR_clear_error();
    assert_int_not_equal(EVP_PKEY_set1_encoded_public_key(hw, point, len), 1);
    assert_true(drain_errors_for(HWKEY_R_BAD_ARGUMENT, NULL));
    OPENSSL_free(point);
    EVP_PKEY_free(copy);
    EVP_PKEY_free(peer_pub);
    EVP_PKEY_free(peer);
    EVP_PKEY_free(hw);
}

typedef struct {
    const char *name;
    int key;
    int raw;
    HWKEY_FAKE_OP op;
    int pad; /* signature padding, or -1: decrypt with OAEP */
} FAULT_CASE;

static const FAULT_CASE fault_cases[] = {
    {"ECDSA sign", EC256, 0, HWKEY_FAKE_OP_SIGN, 0},
    {"RSA PSS sign, raw", RSA2048, 1, HWKEY_FAKE_OP_RSA_PRIVATE, RSA_PKCS1_PSS_PADDING},
    {"RSA PKCS1 sign, device pads", RSA2048, 0, HWKEY_FAKE_OP_SIGN, RSA_PKCS1_PADDING},
    {"RSA OAEP decrypt, raw", RSA2048, 1, HWKEY_FAKE_OP_RSA_PRIVATE, -1},
    {"RSA OAEP decrypt, device pads", RSA2048, 0, HWKEY_FAKE_OP_RSA_DECRYPT, -1},
};

static void test_auth_failure_reaches_queue(void **state)
{
    static const DECRYPT_CASE oaep = {.name = "OAEP", .pad = RSA_PKCS1_OAEP_PADDING};

    (void)state;
    for (size_t i = 0; i < sizeof(fault_cases) / sizeof(fault_cases[0]); i++) {
        const FAULT_CASE *c = &fault_cases[i];
        unsigned char buf[512], ct[512];
        const char *text = NULL;
        size_t len;
        EVP_PKEY *hw;

        print_message("  %s\n", c->name);
        hwkey_fake_reset();
        hwkey_fake_set_rsa_raw(c->raw);
        hw = hw_key_of(soft[c->key]);
        hwkey_fake_inject(c->op, HWKEY_R_AUTH_FAILED, "TPM_RC_AUTH_FAIL");
        ERR_clear_error();
        if (c->pad >= 0) {
            assert_int_equal(
                sign_message(hw, "SHA256", c->pad, RSA_PSS_SALTLEN_DIGEST, buf, sizeof(buf)), 0);
        } else {
            len = encrypt_soft(&oaep, (const unsigned char *)"x", 1, ct);
            assert_int_not_equal(decrypt_hw(hw, &oaep, ct, len, buf, &len), 1);
        }
        assert_int_equal(hwkey_fake_calls(c->op), 1);
        assert_true(drain_errors_for(HWKEY_R_AUTH_FAILED, &text));
        assert_non_null(strstr(text, "TPM_RC_AUTH_FAIL"));
        EVP_PKEY_free(hw);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decrypt),
        cmocka_unit_test(test_decrypt_tls_premaster),
        cmocka_unit_test(test_ecdh),
        cmocka_unit_test(test_ecdh_other_curve),
        cmocka_unit_test(test_ecdh_x963_kdf),
        cmocka_unit_test(test_ecdh_kdf_refused),
        cmocka_unit_test(test_copy_parameters_then_point),
        cmocka_unit_test(test_auth_failure_reaches_queue),
    };

    return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
