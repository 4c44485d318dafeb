/*
 * hwkey's signatures and key management over the fake backend, each result
 * checked against the default provider on the same software key.
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
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "../fakes/provider_fixture.h"
#include "util/error.h"

/* --- signatures ------------------------------------------------------------ */

typedef struct {
    const char *name;
    int key;
    const char *md;
    int pad;         /* 0: ECDSA */
    int salt;        /* what the application asks for (RSA_PSS_SALTLEN_* or bytes) */
    int expect_salt; /* what the signature must carry */
    int raw;         /* fake offers the raw RSA private operation */
} SIGN_CASE;

static const SIGN_CASE sign_cases[] = {
    {.name = "ECDSA P-256 SHA-256", .key = EC256, .md = "SHA256"},
    {.name = "ECDSA P-256 SHA-384", .key = EC256, .md = "SHA384"},
    {.name = "ECDSA P-256 SHA-512", .key = EC256, .md = "SHA512"},
    {.name = "ECDSA P-384 SHA-256", .key = EC384, .md = "SHA256"},
    {.name = "ECDSA P-384 SHA-384", .key = EC384, .md = "SHA384"},
    {.name = "ECDSA P-384 SHA-512", .key = EC384, .md = "SHA512"},
    {.name = "RSA PKCS1 SHA-256 raw",
     .key = RSA2048,
     .md = "SHA256",
     .pad = RSA_PKCS1_PADDING,
     .raw = 1},
    {.name = "RSA PKCS1 SHA-384 raw",
     .key = RSA2048,
     .md = "SHA384",
     .pad = RSA_PKCS1_PADDING,
     .raw = 1},
    {.name = "RSA PKCS1 SHA-512 raw",
     .key = RSA2048,
     .md = "SHA512",
     .pad = RSA_PKCS1_PADDING,
     .raw = 1},
    {.name = "RSA PKCS1 SHA-256 device pads",
     .key = RSA2048,
     .md = "SHA256",
     .pad = RSA_PKCS1_PADDING},
    {.name = "RSA PSS SHA-256 salt=digest",
     .key = RSA2048,
     .md = "SHA256",
     .pad = RSA_PKCS1_PSS_PADDING,
     .salt = RSA_PSS_SALTLEN_DIGEST,
     .expect_salt = 32,
     .raw = 1},
    {.name = "RSA PSS SHA-384 salt=digest",
     .key = RSA2048,
     .md = "SHA384",
     .pad = RSA_PKCS1_PSS_PADDING,
     .salt = RSA_PSS_SALTLEN_DIGEST,
     .expect_salt = 48,
     .raw = 1},
    {.name = "RSA PSS SHA-512 salt=digest",
     .key = RSA2048,
     .md = "SHA512",
     .pad = RSA_PKCS1_PSS_PADDING,
     .salt = RSA_PSS_SALTLEN_DIGEST,
     .expect_salt = 64,
     .raw = 1},
    {.name = "RSA PSS SHA-256 salt=max",
     .key = RSA2048,
     .md = "SHA256",
     .pad = RSA_PKCS1_PSS_PADDING,
     .salt = RSA_PSS_SALTLEN_MAX,
     .expect_salt = 256 - 32 - 2,
     .raw = 1},
    {.name = "RSA PSS SHA-512 salt=max",
     .key = RSA2048,
     .md = "SHA512",
     .pad = RSA_PKCS1_PSS_PADDING,
     .salt = RSA_PSS_SALTLEN_MAX,
     .expect_salt = 256 - 64 - 2,
     .raw = 1},
    {.name = "RSA PSS SHA-256 salt=32",
     .key = RSA2048,
     .md = "SHA256",
     .pad = RSA_PKCS1_PSS_PADDING,
     .salt = 32,
     .expect_salt = 32,
     .raw = 1},
    {.name = "RSA PSS SHA-384 salt=32",
     .key = RSA2048,
     .md = "SHA384",
     .pad = RSA_PKCS1_PSS_PADDING,
     .salt = 32,
     .expect_salt = 32,
     .raw = 1},
    {.name = "RSA PSS SHA-512 salt=32",
     .key = RSA2048,
     .md = "SHA512",
     .pad = RSA_PKCS1_PSS_PADDING,
     .salt = 32,
     .expect_salt = 32,
     .raw = 1},
    {.name = "RSA PSS SHA-384 salt=0",
     .key = RSA2048,
     .md = "SHA384",
     .pad = RSA_PKCS1_PSS_PADDING,
     .salt = 0,
     .expect_salt = 0,
     .raw = 1},
    {.name = "RSA PSS SHA-256 salt=digest device pads",
     .key = RSA2048,
     .md = "SHA256",
     .pad = RSA_PKCS1_PSS_PADDING,
     .salt = RSA_PSS_SALTLEN_DIGEST,
     .expect_salt = 32},
    {.name = "RSA PSS SHA-512 salt=auto device pads",
     .key = RSA2048,
     .md = "SHA512",
     .pad = RSA_PKCS1_PSS_PADDING,
     .salt = RSA_PSS_SALTLEN_AUTO,
     .expect_salt = 64},
};

static void test_sign_verify(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(sign_cases) / sizeof(sign_cases[0]); i++) {
        const SIGN_CASE *c = &sign_cases[i];
        unsigned char sig[512];
        size_t len;
        EVP_PKEY *hw, *pub;
        int verify_pad = c->pad, is_rsa = c->key == RSA2048;

        print_message("  %s\n", c->name);
        hwkey_fake_reset();
        hwkey_fake_set_rsa_raw(c->raw);
        hw = hw_key_of(soft[c->key]);
        pub = public_of(soft[c->key]);

        len = sign_message(hw, c->md, c->pad, c->salt, sig, sizeof(sig));
        if (len == 0)
            ERR_print_errors_fp(stderr);
        assert_true(len > 0);
        /* One device command per signature, the right one. */
        assert_int_equal(device_calls(), 1);
        assert_int_equal(
            hwkey_fake_calls(is_rsa && c->raw ? HWKEY_FAKE_OP_RSA_PRIVATE : HWKEY_FAKE_OP_SIGN), 1);

        /* The default provider accepts it, with exactly the salt length asked for. */
        assert_int_equal(verify_message(pub, SOFT, c->md, verify_pad, c->expect_salt, sig, len), 1);
        /* hwkey's own verification (software, on the cached public key) agrees. */
        assert_int_equal(verify_message(hw, NULL, c->md, verify_pad, c->expect_salt, sig, len), 1);
        assert_int_equal(device_calls(), 1);
        sig[len / 2] ^= 0x01;
        assert_int_not_equal(verify_message(pub, SOFT, c->md, verify_pad, c->expect_salt, sig, len),
                             1);
        assert_int_not_equal(verify_message(hw, NULL, c->md, verify_pad, c->expect_salt, sig, len),
                             1);
        if (c->pad == RSA_PKCS1_PSS_PADDING && c->expect_salt > 0) {
            /* A verifier expecting another salt length rejects it: the length is real. */
            sig[len / 2] ^= 0x01;
            assert_int_not_equal(
                verify_message(pub, SOFT, c->md, verify_pad, c->expect_salt - 1, sig, len), 1);
        }
        EVP_PKEY_free(hw);
        EVP_PKEY_free(pub);
    }
}

typedef struct {
    const char *name;
    const char *md;
    int salt;
    int raw;
} SALT_CASE;

static const SALT_CASE bad_salt_cases[] = {
    {.name = "device pads: salt 32 with SHA-512", .md = "SHA512", .salt = 32, .raw = 0},
    {.name = "device pads: salt max", .md = "SHA256", .salt = RSA_PSS_SALTLEN_MAX, .raw = 0},
    {.name = "raw: salt larger than the key allows", .md = "SHA256", .salt = 223, .raw = 1},
};

static void test_pss_salt_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_salt_cases) / sizeof(bad_salt_cases[0]); i++) {
        const SALT_CASE *c = &bad_salt_cases[i];
        unsigned char sig[512];
        EVP_PKEY *hw;

        print_message("  %s\n", c->name);
        hwkey_fake_reset();
        hwkey_fake_set_rsa_raw(c->raw);
        hw = hw_key_of(soft[RSA2048]);
        ERR_clear_error();
        assert_int_equal(sign_message(hw, c->md, RSA_PKCS1_PSS_PADDING, c->salt, sig, sizeof(sig)),
                         0);
        assert_true(drain_errors_for(HWKEY_R_INVALID_SALT_LENGTH, NULL));
        EVP_PKEY_free(hw);
    }
}

/*
 * -sigopt / -pkeyopt rsa_pss_saltlen:VALUE reaches the provider as a string.
 * The default provider reads numbers with atoi(), so "-1", "-2" and "-3"
 * (RSA_PSS_SALTLEN_DIGEST, _AUTO, _MAX) work there; they must here too.
 */
typedef struct {
    const char *value;
    int expect_salt; /* bytes; -100: refused */
} SALT_STRING_CASE;

static const SALT_STRING_CASE salt_string_cases[] = {
    {"-1", 32},           {"digest", 32},        {"-2", 256 - 32 - 2}, {"auto", 256 - 32 - 2},
    {"-3", 256 - 32 - 2}, {"max", 256 - 32 - 2}, {"20", 20},           {"0", 0},
    {"-4", -100},         {"x", -100},           {"-", -100},          {"1x", -100},
};

static void test_pss_salt_strings(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(salt_string_cases) / sizeof(salt_string_cases[0]); i++) {
        const SALT_STRING_CASE *c = &salt_string_cases[i];
        EVP_MD_CTX *mctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        unsigned char sig[512];
        size_t len = sizeof(sig);
        EVP_PKEY *hw, *pub;
        int ok;

        print_message("  rsa_pss_saltlen:%s\n", c->value);
        hwkey_fake_reset();
        hwkey_fake_set_rsa_raw(1);
        hw = hw_key_of(soft[RSA2048]);
        pub = public_of(soft[RSA2048]);
        assert_non_null(mctx);
        assert_int_equal(EVP_DigestSignInit_ex(mctx, &pctx, "SHA256", lib, NULL, hw, NULL), 1);
        assert_int_equal(EVP_PKEY_CTX_ctrl_str(pctx, "rsa_padding_mode", "pss"), 1);
        ERR_clear_error();
        ok = EVP_PKEY_CTX_ctrl_str(pctx, "rsa_pss_saltlen", c->value) > 0;
        if (c->expect_salt == -100) {
            assert_false(ok);
            assert_true(drain_errors_for(HWKEY_R_INVALID_SALT_LENGTH, NULL));
        } else {
            assert_true(ok);
            assert_int_equal(EVP_DigestSign(mctx, sig, &len, message, sizeof(message)), 1);
            /* The default provider verifies it with exactly that salt length, no other. */
            assert_int_equal(verify_message(pub, SOFT, "SHA256", RSA_PKCS1_PSS_PADDING,
                                            c->expect_salt, sig, len),
                             1);
            assert_int_not_equal(verify_message(pub, SOFT, "SHA256", RSA_PKCS1_PSS_PADDING,
                                                c->expect_salt + 1, sig, len),
                                 1);
        }
        EVP_MD_CTX_free(mctx);
        EVP_PKEY_free(hw);
        EVP_PKEY_free(pub);
    }
}

/* --- public-only keys, refusals, injected device failures ------------------- */

static void test_public_only_cannot_sign(void **state)
{
    static const int keys[] = {EC256, RSA2048};

    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        unsigned char sig[512];
        EVP_PKEY *pub = hw_public_of(soft[keys[i]]);

        hwkey_fake_reset();
        ERR_clear_error();
        assert_int_equal(sign_message(pub, "SHA256", 0, 0, sig, sizeof(sig)), 0);
        assert_true(drain_errors_for(HWKEY_R_NO_PRIVATE_KEY, NULL));
        assert_int_equal(device_calls(), 0);
        EVP_PKEY_free(pub);
    }
}

static void test_import_refuses_private_key(void **state)
{
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *pkey = NULL;

    (void)state;
    assert_true(EVP_PKEY_todata(soft[EC256], EVP_PKEY_KEYPAIR, &params));
    ctx = EVP_PKEY_CTX_new_from_name(lib, "EC", "provider=hwkey");
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    ERR_clear_error();
    assert_int_not_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params), 1);
    assert_null(pkey);
    assert_true(drain_errors_for(HWKEY_R_BAD_ARGUMENT, NULL));
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
}

/* --- key management ------------------------------------------------------------ */

static void test_pkey_eq(void **state)
{
    static const int keys[] = {EC256, EC384, RSA2048};

    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        EVP_PKEY *hw = hw_key_of(soft[keys[i]]);
        EVP_PKEY *pub = public_of(soft[keys[i]]);
        EVP_PKEY *hw_pub = hw_public_of(soft[keys[i]]);
        EVP_PKEY *other =
            keys[i] == RSA2048
                ? EVP_PKEY_Q_keygen(lib, SOFT, "RSA", (size_t)2048)
                : EVP_PKEY_Q_keygen(lib, SOFT, "EC", keys[i] == EC256 ? "P-256" : "P-384");
        EVP_PKEY *other_pub;

        assert_non_null(other);
        other_pub = public_of(other);
        /* What X509_check_private_key asks: the device key and the certificate's key. */
        ERR_clear_error();
        assert_int_equal(EVP_PKEY_eq(hw, pub), 1);
        /* The refused private export on the way is no error (libssl would see it). */
        assert_int_equal(ERR_peek_error(), 0);
        assert_int_equal(EVP_PKEY_eq(pub, hw), 1);
        assert_int_equal(EVP_PKEY_eq(hw, hw_pub), 1);
        assert_int_equal(EVP_PKEY_eq(hw, other_pub), 0);
        assert_int_equal(EVP_PKEY_eq(other_pub, hw), 0);
        ERR_clear_error();
        EVP_PKEY_free(hw);
        EVP_PKEY_free(pub);
        EVP_PKEY_free(hw_pub);
        EVP_PKEY_free(other);
        EVP_PKEY_free(other_pub);
    }
}

static char *pubkey_pem(EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *copy;
    long n;

    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
    n = BIO_get_mem_data(bio, &data);
    copy = OPENSSL_strndup(data, (size_t)n);
    BIO_free(bio);
    return copy;
}

static void test_key_params(void **state)
{
    static const struct {
        int key;
        int bits;
        int security_bits;
        const char *group;
    } cases[] = {{EC256, 256, 128, "prime256v1"},
                 {EC384, 384, 192, "secp384r1"},
                 {RSA2048, 2048, 112, NULL}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EVP_PKEY *hw = hw_key_of(soft[cases[i].key]);
        char name[64], *pem_hw, *pem_sw;
        unsigned char enc_hw[200], enc_sw[200];
        size_t len_hw = 0, len_sw = 0;
        BIO *bio;

        assert_int_equal(EVP_PKEY_get_bits(hw), cases[i].bits);
        assert_int_equal(EVP_PKEY_get_security_bits(hw), cases[i].security_bits);
        assert_int_equal(EVP_PKEY_get_size(hw), EVP_PKEY_get_size(soft[cases[i].key]));
        /* 1: advisory, as the default provider answers for the software key. */
        assert_int_equal(EVP_PKEY_get_default_digest_name(hw, name, sizeof(name)), 1);
        assert_string_equal(name, "SHA256");
        if (cases[i].group != NULL) {
            assert_int_equal(EVP_PKEY_get_group_name(hw, name, sizeof(name), NULL), 1);
            assert_string_equal(name, cases[i].group);
            assert_int_equal(EVP_PKEY_get_octet_string_param(hw, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                                             enc_hw, sizeof(enc_hw), &len_hw),
                             1);
            assert_int_equal(EVP_PKEY_get_octet_string_param(soft[cases[i].key],
                                                             OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                                             enc_sw, sizeof(enc_sw), &len_sw),
                             1);
            assert_int_equal(len_hw, len_sw);
            assert_memory_equal(enc_hw, enc_sw, len_sw);
        } else {
            BIGNUM *n_hw = NULL, *n_sw = NULL;

            assert_int_equal(EVP_PKEY_get_bn_param(hw, OSSL_PKEY_PARAM_RSA_N, &n_hw), 1);
            assert_int_equal(
                EVP_PKEY_get_bn_param(soft[cases[i].key], OSSL_PKEY_PARAM_RSA_N, &n_sw), 1);
            assert_int_equal(BN_cmp(n_hw, n_sw), 0);
            BN_free(n_hw);
            BN_free(n_sw);
        }
        /* The public key encodes as the software one does; the private key does not leave. */
        pem_hw = pubkey_pem(hw);
        pem_sw = pubkey_pem(soft[cases[i].key]);
        assert_string_equal(pem_hw, pem_sw);
        OPENSSL_free(pem_hw);
        OPENSSL_free(pem_sw);
        /* Writing the "private key" writes the device's key file, never a software key. */
        bio = BIO_new(BIO_s_mem());
        assert_int_equal(PEM_write_bio_PrivateKey(bio, hw, NULL, NULL, 0, NULL, NULL), 1);
        assert_int_equal(BIO_write(bio, "", 1), 1);
        assert_true(BIO_get_mem_data(bio, &pem_hw) > 0);
        assert_non_null(strstr(pem_hw, "-----BEGIN TSS2 PRIVATE KEY-----"));
        assert_null(strstr(pem_hw, "-----BEGIN PRIVATE KEY-----"));
        BIO_free(bio);
        ERR_clear_error();
        EVP_PKEY_free(hw);
    }
}

/* --- X.509: the AlgorithmIdentifier and the key/certificate match -------------- */

typedef struct {
    const char *name;
    int key;
    const char *md;
    int pad;
    int salt;
    int sig_nid;
} CERT_CASE;

static const CERT_CASE cert_cases[] = {
    {"ECDSA P-256 SHA-256", EC256, "SHA256", 0, 0, NID_ecdsa_with_SHA256},
    {"ECDSA P-384 SHA-384", EC384, "SHA384", 0, 0, NID_ecdsa_with_SHA384},
    {"RSA PKCS1 SHA-256", RSA2048, "SHA256", RSA_PKCS1_PADDING, 0, NID_sha256WithRSAEncryption},
    {"RSA PKCS1 SHA-512", RSA2048, "SHA512", RSA_PKCS1_PADDING, 0, NID_sha512WithRSAEncryption},
    {"RSA PSS SHA-256 salt=digest", RSA2048, "SHA256", RSA_PKCS1_PSS_PADDING,
     RSA_PSS_SALTLEN_DIGEST, NID_rsassaPss},
    {"RSA PSS SHA-384 salt=max", RSA2048, "SHA384", RSA_PKCS1_PSS_PADDING, RSA_PSS_SALTLEN_MAX,
     NID_rsassaPss},
};

static void test_self_signed_certificate(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cert_cases) / sizeof(cert_cases[0]); i++) {
        const CERT_CASE *c = &cert_cases[i];
        X509 *x = X509_new_ex(lib, NULL);
        X509_NAME *name = X509_NAME_new();
        EVP_MD_CTX *mctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        EVP_PKEY *hw, *pub;

        print_message("  %s\n", c->name);
        hwkey_fake_reset();
        hw = hw_key_of(soft[c->key]);
        pub = public_of(soft[c->key]);
        assert_non_null(x);
        assert_non_null(name);
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                    (const unsigned char *)"hwkey test", -1, -1, 0),
                         1);
        assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
        assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), (long)i + 1), 1);
        assert_int_equal(X509_set_subject_name(x, name), 1);
        assert_int_equal(X509_set_issuer_name(x, name), 1);
        assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
        assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
        assert_int_equal(X509_set_pubkey(x, hw), 1);

        assert_int_equal(EVP_DigestSignInit_ex(mctx, &pctx, c->md, lib, NULL, hw, NULL), 1);
        set_rsa(pctx, c->pad, c->salt);
        if (X509_sign_ctx(x, mctx) <= 0)
            ERR_print_errors_fp(stderr);
        assert_true(X509_get_signature_nid(x) == c->sig_nid);
        assert_int_equal(device_calls(), 1);
        /* The default provider checks signature and algorithm parameters (PSS salt too). */
        assert_int_equal(X509_verify(x, pub), 1);
        assert_int_equal(X509_check_private_key(x, hw), 1);
        ERR_clear_error();

        EVP_MD_CTX_free(mctx);
        X509_NAME_free(name);
        X509_free(x);
        EVP_PKEY_free(hw);
        EVP_PKEY_free(pub);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_pss_salt_refused),
        cmocka_unit_test(test_pss_salt_strings),
        cmocka_unit_test(test_public_only_cannot_sign),
        cmocka_unit_test(test_import_refuses_private_key),
        cmocka_unit_test(test_pkey_eq),
        cmocka_unit_test(test_key_params),
        cmocka_unit_test(test_self_signed_certificate),
    };

    return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
