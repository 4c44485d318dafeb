/*
 * Key generation in the device and writing device keys back out (keymgmt
 * gen, encoders) over the fake backend: a generated key is a device key,
 * PEM_write_bio_PrivateKey writes its TSS2 key file, reading that file gives
 * the same key back, and nothing private is ever printed or exported.
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
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "hwkey/hwkey.h"
#include "../fakes/provider_fixture.h"
#include "util/error.h"

#define HWKEY "provider=hwkey"

/* --- helpers ----------------------------------------------------------------- */

/* A device key made through hwkey's keymgmt; param: group name or RSA bits. */
static EVP_PKEY *generate(const char *type, const char *group, size_t bits)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(lib, type, HWKEY);
    EVP_PKEY *pkey = NULL;

    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
    if (group != NULL)
        assert_int_equal(EVP_PKEY_CTX_set_group_name(ctx, group), 1);
    if (bits != 0)
        assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits), 1);
    if (EVP_PKEY_generate(ctx, &pkey) != 1)
        ERR_print_errors_fp(stderr);
    assert_non_null(pkey);
    assert_true(is_hwkey(pkey));
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

/* PEM_write_bio_PrivateKey of pkey into a NUL-terminated string (OPENSSL_free). */
static char *write_pem(EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *copy;
    long n;

    assert_non_null(bio);
    if (PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1)
        ERR_print_errors_fp(stderr);
    n = BIO_get_mem_data(bio, &data);
    assert_true(n > 0);
    /* hwkey's encoder was chosen directly: no failed try left behind. */
    assert_int_equal(ERR_peek_error(), 0);
    copy = OPENSSL_strndup(data, (size_t)n);
    assert_non_null(copy);
    BIO_free(bio);
    return copy;
}

static EVP_PKEY *read_pem(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pkey;

    assert_non_null(bio);
    pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, NULL, lib, NULL);
    if (pkey == NULL)
        ERR_print_errors_fp(stderr);
    BIO_free(bio);
    assert_non_null(pkey);
    assert_true(is_hwkey(pkey));
    return pkey;
}

/* pkey's public key as SubjectPublicKeyInfo DER, by whichever encoder OpenSSL picks. */
static int spki_of(EVP_PKEY *pkey, unsigned char **der)
{
    *der = NULL;
    return i2d_PUBKEY(pkey, der);
}

/* --- generate, write, read back, sign ------------------------------------------ */

typedef struct {
    const char *name;
    const char *type;
    const char *group;
    size_t bits;
    int expect_bits;
    const char *md;
    int pad;
} GEN_CASE;

static const GEN_CASE gen_cases[] = {
    {.name = "EC P-256", .type = "EC", .group = "P-256", .expect_bits = 256, .md = "SHA256"},
    {.name = "EC prime256v1",
     .type = "EC",
     .group = "prime256v1",
     .expect_bits = 256,
     .md = "SHA256"},
    {.name = "EC P-384", .type = "EC", .group = "P-384", .expect_bits = 384, .md = "SHA384"},
    {.name = "EC secp384r1",
     .type = "EC",
     .group = "secp384r1",
     .expect_bits = 384,
     .md = "SHA384"},
    {.name = "RSA 2048",
     .type = "RSA",
     .bits = 2048,
     .expect_bits = 2048,
     .md = "SHA256",
     .pad = RSA_PKCS1_PADDING},
};

static void test_generate_write_read_sign(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(gen_cases) / sizeof(gen_cases[0]); i++) {
        const GEN_CASE *c = &gen_cases[i];
        unsigned char sig[512], *spki_gen = NULL, *spki_read = NULL;
        const unsigned char *p;
        EVP_PKEY *gen, *back, *pub;
        char *pem, *pem_again;
        size_t siglen;
        int n1, n2;

        print_message("  %s\n", c->name);
        hwkey_fake_reset();
        gen = generate(c->type, c->group, c->bits);
        assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_GENERATE), 1);
        assert_int_equal(EVP_PKEY_get_bits(gen), c->expect_bits);

        pem = write_pem(gen);
        assert_non_null(strstr(pem, "-----BEGIN " HWKEY_PEM_TSS2_PRIVATE_KEY "-----\n"));
        assert_null(strstr(pem, "BEGIN PRIVATE KEY"));
        back = read_pem(pem);
        /* The same key pair: equal public keys, and the reloaded key signs for it. */
        assert_int_equal(EVP_PKEY_eq(gen, back), 1);
        n1 = spki_of(gen, &spki_gen);
        n2 = spki_of(back, &spki_read);
        assert_true(n1 > 0);
        assert_int_equal(n1, n2);
        assert_memory_equal(spki_gen, spki_read, (size_t)n1);
        siglen = sign_message(back, c->md, c->pad, 0, sig, sizeof(sig));
        assert_true(siglen > 0);
        assert_int_equal(device_calls(), 1);
        /* Verified in the default provider on the generated key's public half. */
        p = spki_gen;
        pub = d2i_PUBKEY_ex(NULL, &p, n1, lib, SOFT);
        assert_non_null(pub);
        assert_int_equal(verify_message(pub, SOFT, c->md, c->pad, 0, sig, siglen), 1);
        sig[siglen / 2] ^= 1;
        assert_int_not_equal(verify_message(pub, SOFT, c->md, c->pad, 0, sig, siglen), 1);
        EVP_PKEY_free(pub);

        /* `openssl pkey -in k.pem -out copy.pem`: byte for byte the same file. */
        pem_again = write_pem(back);
        assert_string_equal(pem, pem_again);

        OPENSSL_free(spki_gen);
        OPENSSL_free(spki_read);
        OPENSSL_free(pem);
        OPENSSL_free(pem_again);
        EVP_PKEY_free(gen);
        EVP_PKEY_free(back);
    }
}

/* EVP_PKEY_Q_keygen, as a one-line application would write it. */
static void test_q_keygen(void **state)
{
    EVP_PKEY *ec, *rsa;

    (void)state;
    hwkey_fake_reset();
    ec = EVP_PKEY_Q_keygen(lib, HWKEY, "EC", "P-384");
    rsa = EVP_PKEY_Q_keygen(lib, HWKEY, "RSA", (size_t)3072);
    assert_non_null(ec);
    assert_non_null(rsa);
    assert_true(is_hwkey(ec));
    assert_true(is_hwkey(rsa));
    assert_int_equal(EVP_PKEY_get_bits(ec), 384);
    assert_int_equal(EVP_PKEY_get_bits(rsa), 3072);
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_GENERATE), 2);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

/* i2d_PrivateKey (genpkey -outform DER) writes the TSS2 DER, the PEM's body. */
static void test_der(void **state)
{
    EVP_PKEY *gen, *back;
    unsigned char *der = NULL, *body = NULL;
    const unsigned char *p;
    char *pem, *name = NULL, *header = NULL;
    long body_len = 0;
    BIO *bio;
    int n;

    (void)state;
    hwkey_fake_reset();
    gen = generate("EC", "P-256", 0);
    n = i2d_PrivateKey(gen, &der);
    if (n <= 0)
        ERR_print_errors_fp(stderr);
    assert_true(n > 0);
    pem = write_pem(gen);
    bio = BIO_new_mem_buf(pem, -1);
    assert_true(PEM_read_bio(bio, &name, &header, &body, &body_len) > 0);
    assert_string_equal(name, HWKEY_PEM_TSS2_PRIVATE_KEY);
    assert_int_equal(n, (int)body_len);
    assert_memory_equal(der, body, (size_t)n);
    /* And the DER loads as the same key through hwkey's DER decoder. */
    p = der;
    back = d2i_AutoPrivateKey_ex(NULL, &p, n, lib, NULL);
    if (back == NULL)
        ERR_print_errors_fp(stderr);
    assert_non_null(back);
    assert_true(is_hwkey(back));
    assert_int_equal(EVP_PKEY_eq(gen, back), 1);
    EVP_PKEY_free(back);
    BIO_free(bio);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(body);
    OPENSSL_free(pem);
    OPENSSL_free(der);
    EVP_PKEY_free(gen);
}

/* `openssl pkey -text`: the public parts, where the private key is, no private number. */
static void test_text(void **state)
{
    EVP_PKEY *ec, *rsa;
    BIO *bio = BIO_new(BIO_s_mem());
    char *text;
    long n;

    (void)state;
    hwkey_fake_reset();
    ec = generate("EC", "P-384", 0);
    rsa = generate("RSA", NULL, 2048);
    assert_non_null(bio);
    assert_int_equal(EVP_PKEY_print_private(bio, ec, 0, NULL), 1);
    assert_int_equal(EVP_PKEY_print_private(bio, rsa, 0, NULL), 1);
    assert_int_equal(BIO_write(bio, "", 1), 1);
    n = BIO_get_mem_data(bio, &text);
    assert_true(n > 0);
    assert_non_null(strstr(text, "pub:"));
    assert_non_null(strstr(text, "NIST CURVE: P-384"));
    assert_non_null(strstr(text, "Modulus:"));
    /* The holder line is the backend's own (key_describe), not the encoder's. */
    assert_non_null(strstr(text, HWKEY_FAKE_HOLDER_LINE));
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_DESCRIBE), 2);
    assert_null(strstr(text, "priv:"));
    assert_null(strstr(text, "privateExponent"));
    assert_null(strstr(text, "prime1"));
    BIO_free(bio);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

/* -pubout stays the default provider's business: same SPKI as the software view. */
static void test_pubout(void **state)
{
    EVP_PKEY *gen, *pub;
    BIO *a = BIO_new(BIO_s_mem()), *b = BIO_new(BIO_s_mem());
    char *da, *db;
    long na, nb;

    (void)state;
    hwkey_fake_reset();
    gen = generate("EC", "P-256", 0);
    assert_int_equal(PEM_write_bio_PUBKEY(a, gen), 1);
    na = BIO_get_mem_data(a, &da);
    assert_non_null(strstr(da, "-----BEGIN PUBLIC KEY-----"));
    /* Read back in the default provider: equal to the device key's public half. */
    pub = PEM_read_bio_PUBKEY_ex(a, NULL, NULL, NULL, lib, SOFT);
    assert_non_null(pub);
    assert_int_equal(EVP_PKEY_eq(gen, pub), 1);
    assert_int_equal(PEM_write_bio_PUBKEY(b, pub), 1);
    nb = BIO_get_mem_data(b, &db);
    assert_int_equal(na, nb);
    BIO_free(a);
    BIO_free(b);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(gen);
}

/* --- refusals ------------------------------------------------------------------ */

static void test_unsupported_parameters(void **state)
{
    /* P-521 is a device question (the TPM's curve list), not refused here. */
    static const char *const bad_groups[] = {"secp256k1", "brainpoolP256r1", "X25519", "nonsense"};
    EVP_PKEY_CTX *ctx;
    BIGNUM *e3 = BN_new();
    const char *text = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(bad_groups) / sizeof(bad_groups[0]); i++) {
        print_message("  group %s\n", bad_groups[i]);
        ctx = EVP_PKEY_CTX_new_from_name(lib, "EC", HWKEY);
        assert_non_null(ctx);
        assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
        assert_true(EVP_PKEY_CTX_set_group_name(ctx, bad_groups[i]) <= 0);
        assert_true(drain_errors_for(HWKEY_R_UNSUPPORTED_ALGORITHM, &text));
        assert_non_null(strstr(text, bad_groups[i]));
        assert_non_null(strstr(text, "P-256"));
        EVP_PKEY_CTX_free(ctx);
    }

    ctx = EVP_PKEY_CTX_new_from_name(lib, "RSA", HWKEY);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
    assert_true(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 8192) <= 0);
    assert_true(drain_errors_for(HWKEY_R_UNSUPPORTED_ALGORITHM, &text));
    assert_non_null(strstr(text, "8192"));
    assert_true(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 1024) <= 0);
    assert_true(drain_errors_for(HWKEY_R_UNSUPPORTED_ALGORITHM, NULL));
    assert_non_null(e3);
    assert_int_equal(BN_set_word(e3, 3), 1);
    assert_true(EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, e3) <= 0);
    assert_true(drain_errors_for(HWKEY_R_UNSUPPORTED_ALGORITHM, &text));
    assert_non_null(strstr(text, "65537"));
    EVP_PKEY_CTX_free(ctx);
    BN_free(e3);

    /* No curve at all: named, and the device never asked. */
    hwkey_fake_reset();
    ctx = EVP_PKEY_CTX_new_from_name(lib, "EC", HWKEY);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
    {
        EVP_PKEY *pkey = NULL;

        assert_true(EVP_PKEY_generate(ctx, &pkey) <= 0);
        assert_null(pkey);
    }
    assert_true(drain_errors_for(HWKEY_R_BAD_ARGUMENT, &text));
    assert_non_null(strstr(text, "group:P-256"));
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_GENERATE), 0);
    EVP_PKEY_CTX_free(ctx);
}

/* The device's own error reaches the application, nothing else is made. */
static void test_device_error(void **state)
{
    EVP_PKEY *pkey;
    const char *text = NULL;

    (void)state;
    hwkey_fake_reset();
    hwkey_fake_inject(HWKEY_FAKE_OP_GENERATE, HWKEY_R_DEVICE_ERROR, "TPM_RC_KEY_SIZE");
    pkey = EVP_PKEY_Q_keygen(lib, HWKEY, "EC", "P-256");
    assert_null(pkey);
    assert_true(drain_errors_for(HWKEY_R_DEVICE_ERROR, &text));
    assert_non_null(strstr(text, "TPM_RC_KEY_SIZE"));
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_LOAD), 0);
    hwkey_fake_reset();
}

static void test_public_only_and_cipher_refused(void **state)
{
    EVP_PKEY *pub, *gen;
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    const char *text = NULL;

    (void)state;
    assert_non_null(bio);
    hwkey_fake_reset();
    /* A public-only hwkey key has no key file: nothing is written, no software fallback. */
    pub = hw_public_of(soft[EC256]);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pub, NULL, NULL, 0, NULL, NULL), 0);
    assert_true(BIO_get_mem_data(bio, &data) == 0 || strstr(data, "PRIVATE KEY") == NULL);
    ERR_clear_error();

    /* -aes256: refused with the reason, not written in the clear. */
    gen = generate("EC", "P-256", 0);
    assert_int_equal(
        PEM_write_bio_PrivateKey(bio, gen, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)"passphrase"),
        0);
    assert_true(drain_errors_for(HWKEY_R_BAD_ARGUMENT, &text));
    assert_non_null(strstr(text, "cipher"));
    assert_true(BIO_get_mem_data(bio, &data) == 0 || strstr(data, "TSS2") == NULL);
    BIO_free(bio);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(gen);
}

/* --- progress callback ------------------------------------------------------------ */

typedef struct {
    int dots, ends, other, stop_after;
} PROGRESS;

static int progress_cb(EVP_PKEY_CTX *ctx)
{
    PROGRESS *p = EVP_PKEY_CTX_get_app_data(ctx);
    int potential = EVP_PKEY_CTX_get_keygen_info(ctx, 0);

    if (potential == 0)
        p->dots++;
    else if (potential == 3)
        p->ends++;
    else
        p->other++;
    return p->stop_after == 0 || p->dots < p->stop_after;
}

/* RSA, or EC P-256 when ec (software EC generation is always fast). */
static int generate_watched(PROGRESS *progress, int ec, EVP_PKEY **pkey)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(lib, ec ? "EC" : "RSA", HWKEY);
    int rc;

    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
    if (ec)
        assert_int_equal(EVP_PKEY_CTX_set_group_name(ctx, "P-256"), 1);
    EVP_PKEY_CTX_set_cb(ctx, progress_cb);
    EVP_PKEY_CTX_set_app_data(ctx, progress);
    rc = EVP_PKEY_generate(ctx, pkey);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

static void test_progress_callback(void **state)
{
    PROGRESS progress = {0};
    EVP_PKEY *pkey = NULL;
    const char *text = NULL;

    (void)state;
    /* About 1.2 s in the "device": dots every 250 ms, then one end of line. */
    hwkey_fake_reset();
    hwkey_fake_set_generate_delay(1200);
    assert_int_equal(generate_watched(&progress, 0, &pkey), 1);
    assert_non_null(pkey);
    assert_true(progress.dots >= 3);
    assert_int_equal(progress.ends, 1);
    assert_int_equal(progress.other, 0);
    EVP_PKEY_free(pkey);
    pkey = NULL;

    /* The callback says stop: the generation fails, with the reason. */
    memset(&progress, 0, sizeof(progress));
    progress.stop_after = 1;
    hwkey_fake_reset();
    hwkey_fake_set_generate_delay(700);
    assert_true(generate_watched(&progress, 0, &pkey) <= 0);
    assert_null(pkey);
    assert_int_equal(progress.dots, 1);
    assert_true(drain_errors_for(HWKEY_R_BAD_ARGUMENT, &text));
    assert_non_null(strstr(text, "cancelled"));
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_LOAD), 0);

    /* A fast device prints nothing at all. */
    memset(&progress, 0, sizeof(progress));
    hwkey_fake_reset();
    assert_int_equal(generate_watched(&progress, 1, &pkey), 1);
    assert_int_equal(progress.dots + progress.ends + progress.other, 0);
    EVP_PKEY_free(pkey);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_write_read_sign),
        cmocka_unit_test(test_q_keygen),
        cmocka_unit_test(test_der),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_pubout),
        cmocka_unit_test(test_unsupported_parameters),
        cmocka_unit_test(test_device_error),
        cmocka_unit_test(test_public_only_and_cipher_refused),
        cmocka_unit_test(test_progress_callback),
    };

    return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
