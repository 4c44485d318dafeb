/*
 * key/ is the only route from an operation to a device (issue 8.1), over
 * the fake backend:
 *  - every private operation of key/ refuses a public-only key exactly once,
 *    with HWKEY_R_NO_PRIVATE_KEY, and no device call happens;
 *  - what the encoder writes (`openssl pkey -text`'s holder line, the key
 *    file) and what the decoder recognises come from the backend's vtable
 *    slots (key_describe, ref_encode, keyfile_recognise), not from ops/;
 *  - which device generates is the backends' answer (generates).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "key/key.h"
#include "../fakes/provider_fixture.h"
#include "util/error.h"

static HWKEY_CONFIG cfg;
static HWKEY_DEVICES *devs;

static int seam_setup(void **state)
{
    if (fixture_setup(state) != 0)
        return -1;
    /* fixture_setup routed every reference to the fake backend. */
    devs = hwkey_devices_new(&cfg);
    return devs != NULL ? 0 : -1;
}

static int seam_teardown(void **state)
{
    hwkey_devices_free(devs);
    return fixture_teardown(state);
}

/* Every error in the queue: how many, and whether all have this reason. */
static int count_errors(int reason, int *all_match)
{
    unsigned long e;
    int n = 0;

    *all_match = 1;
    while ((e = ERR_get_error()) != 0) {
        n++;
        if (ERR_GET_REASON(e) != reason)
            *all_match = 0;
    }
    return n;
}

/* --- a public-only key, refused once per operation -------------------------- */

static unsigned char buf[512];
static size_t buflen;

static int op_sign(HWKEY_KEY *key)
{
    HWKEY_SIGN_PARAMS p = {.scheme = HWKEY_SIG_ECDSA, .md_nid = NID_sha256};

    buflen = sizeof(buf);
    return hwkey_key_sign(key, &p, message, 32, buf, &buflen);
}

static int op_rsa_private(HWKEY_KEY *key)
{
    unsigned char in[256] = {0};

    buflen = sizeof(buf);
    return hwkey_key_rsa_private(key, in, sizeof(in), buf, &buflen);
}

static int op_rsa_decrypt(HWKEY_KEY *key)
{
    HWKEY_DECRYPT_PARAMS p = {.padding = HWKEY_PAD_PKCS1};
    unsigned char in[256] = {0};

    buflen = sizeof(buf);
    return hwkey_key_rsa_decrypt(key, &p, in, sizeof(in), buf, &buflen);
}

static int op_ecdh(HWKEY_KEY *key)
{
    unsigned char peer[65] = {0x04};

    buflen = sizeof(buf);
    return hwkey_key_ecdh(key, peer, sizeof(peer), buf, &buflen);
}

static int op_print_holder(HWKEY_KEY *key)
{
    BIO *out = BIO_new(BIO_s_mem());
    int ok = hwkey_key_print_holder(key, out);

    BIO_free(out);
    return ok;
}

static int op_write_reference(HWKEY_KEY *key)
{
    BIO *out = BIO_new(BIO_s_mem());
    int ok = hwkey_key_write_reference(key, 1, out);

    BIO_free(out);
    return ok;
}

typedef struct {
    const char *name;
    int key; /* EC256 / RSA2048 */
    int (*op)(HWKEY_KEY *key);
} REFUSE_CASE;

static const REFUSE_CASE refuse_cases[] = {
    {.name = "sign", .key = EC256, .op = op_sign},
    {.name = "rsa_private", .key = RSA2048, .op = op_rsa_private},
    {.name = "rsa_decrypt", .key = RSA2048, .op = op_rsa_decrypt},
    {.name = "ecdh", .key = EC256, .op = op_ecdh},
    {.name = "print_holder", .key = EC256, .op = op_print_holder},
    {.name = "write_reference", .key = RSA2048, .op = op_write_reference},
};

static int fake_calls_total(void)
{
    int n = 0;

    for (int op = 0; op < HWKEY_FAKE_OP_N; op++)
        n += hwkey_fake_calls((HWKEY_FAKE_OP)op);
    return n;
}

static void test_public_only_refused_once(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(refuse_cases) / sizeof(refuse_cases[0]); i++) {
        const REFUSE_CASE *c = &refuse_cases[i];
        EVP_PKEY *pub = public_of(soft[c->key]);
        HWKEY_KEY *key = hwkey_key_from_public(pub);
        int all_match = 0, n;

        assert_non_null(key);
        assert_false(hwkey_key_has_private(key));
        hwkey_fake_reset();
        ERR_clear_error();
        if (c->op(key) != 0)
            fail_msg("%s: a public-only key was accepted", c->name);
        n = count_errors(HWKEY_R_NO_PRIVATE_KEY, &all_match);
        if (n != 1 || !all_match)
            fail_msg("%s: %d errors raised (want exactly one), %s HWKEY_R_NO_PRIVATE_KEY", c->name,
                     n, all_match ? "all" : "not all");
        /* Refused in key/: the device never heard of it. */
        if (fake_calls_total() != 0)
            fail_msg("%s: the fake device was called", c->name);
        hwkey_key_free(key);
    }
}

/* --- a device key: the same route reaches the backend --------------------- */

static HWKEY_KEY *device_key(int which, unsigned char **der, size_t *der_len)
{
    HWKEY_KEYREF ref;
    HWKEY_KEY *key;

    assert_true(hwkey_fake_keyfile(soft[which], der, der_len));
    /* The fake's own answer says what kind of reference its key file is. */
    {
        const char *structure = NULL;
        HWKEY_ALG alg = 0;

        assert_int_equal(hwkey_devices_recognise_keyfile(devs, NULL, *der, *der_len, &ref.kind,
                                                         &alg, &structure),
                         1);
        assert_int_equal(alg, which == RSA2048 ? HWKEY_ALG_RSA : HWKEY_ALG_EC);
    }
    ref.data = *der;
    ref.len = *der_len;
    key = hwkey_key_load(devs, lib, &ref, NULL, NULL);
    assert_non_null(key);
    assert_true(hwkey_key_has_private(key));
    return key;
}

static void test_device_key_reaches_backend(void **state)
{
    unsigned char *der = NULL;
    size_t der_len = 0;
    HWKEY_KEY *key;

    (void)state;
    hwkey_fake_reset();
    key = device_key(EC256, &der, &der_len);
    assert_int_equal(op_sign(key), 1);
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_SIGN), 1);
    assert_int_equal(op_ecdh(key), 0); /* not a point on the curve: the device says so */
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_ECDH), 1);
    ERR_clear_error();
    hwkey_key_free(key);
    OPENSSL_free(der);
}

/* The holder line and the key file are the backend's (key_describe, ref_encode). */
static void test_describe_and_encode_are_the_backends(void **state)
{
    unsigned char *der = NULL;
    size_t der_len = 0;
    BIO *out = BIO_new(BIO_s_mem());
    HWKEY_KEY *key;
    char *text;
    long n;

    (void)state;
    hwkey_fake_reset();
    key = device_key(RSA2048, &der, &der_len);
    assert_int_equal(hwkey_key_print_holder(key, out), 1);
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_DESCRIBE), 1);
    assert_int_equal(BIO_write(out, "", 1), 1);
    n = BIO_get_mem_data(out, &text);
    assert_true(n > 0);
    assert_string_equal(text, HWKEY_FAKE_HOLDER_LINE "\n");
    (void)BIO_reset(out);
    assert_int_equal(hwkey_key_write_reference(key, 0, out), 1);
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_ENCODE), 1);
    n = BIO_get_mem_data(out, &text);
    assert_int_equal((size_t)n, der_len);
    assert_memory_equal(text, der, der_len);
    BIO_free(out);
    hwkey_key_free(key);
    OPENSSL_free(der);
}

/* Through the provider: `openssl pkey -text` and `-out` use the fake's slots. */
static void test_provider_output_uses_backend_slots(void **state)
{
    EVP_PKEY *hw;
    BIO *out = BIO_new(BIO_s_mem());
    char *text;
    long n;

    (void)state;
    hwkey_fake_reset();
    hw = hw_key_of(soft[EC256]);
    /* The decoders asked the backend whether the file was its own. */
    assert_true(hwkey_fake_calls(HWKEY_FAKE_OP_RECOGNISE) > 0);
    assert_int_equal(EVP_PKEY_print_private(out, hw, 0, NULL), 1);
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_DESCRIBE), 1);
    assert_int_equal(BIO_write(out, "", 1), 1);
    n = BIO_get_mem_data(out, &text);
    assert_true(n > 0);
    assert_non_null(strstr(text, HWKEY_FAKE_HOLDER_LINE));
    (void)BIO_reset(out);
    assert_int_equal(PEM_write_bio_PrivateKey(out, hw, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_ENCODE), 1);
    BIO_free(out);
    EVP_PKEY_free(hw);
}

/* A file that is not the backend's is left alone, quietly; a broken one is named once. */
static void test_recognise(void **state)
{
    static const unsigned char junk[] = "not a key file at all";
    const char *structure = NULL;
    HWKEY_REF_KIND kind = 0;
    HWKEY_ALG alg = 0;
    int all_match = 0;

    (void)state;
    hwkey_fake_reset();
    ERR_clear_error();
    assert_int_equal(
        hwkey_devices_recognise_keyfile(devs, NULL, junk, sizeof(junk), &kind, &alg, &structure),
        0);
    assert_int_equal(hwkey_devices_recognise_keyfile(devs, "PRIVATE KEY", junk, sizeof(junk), &kind,
                                                     &alg, &structure),
                     0);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(hwkey_devices_recognise_keyfile(devs, "TSS2 PRIVATE KEY", junk, sizeof(junk),
                                                     &kind, &alg, &structure),
                     -1);
    assert_int_equal(count_errors(HWKEY_R_KEY_FILE_INVALID, &all_match), 1);
    assert_true(all_match);
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_RECOGNISE), 3);
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_LOAD), 0);
}

/* The backends say who generates: the fake for "no URI", nobody here for a URI. */
static void test_generation_choice(void **state)
{
    HWKEY_KEYSPEC spec = {.alg = HWKEY_ALG_EC, .curve_nid = NID_X9_62_prime256v1};
    HWKEY_GENOPTS opts;
    HWKEY_DEVICE *dev;
    int all_match = 0;

    (void)state;
    memset(&opts, 0, sizeof(opts));
    dev = hwkey_key_gen_device(devs, &spec, &opts);
    assert_non_null(dev);
    assert_string_equal(hwkey_key_gen_device_name(dev), "fake");
    opts.uri = "pkcs11:token=t;object=k";
    ERR_clear_error();
    assert_null(hwkey_key_gen_device(devs, &spec, &opts));
    assert_int_equal(count_errors(HWKEY_R_UNSUPPORTED_ALGORITHM, &all_match), 1);
    assert_true(all_match);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_public_only_refused_once),
        cmocka_unit_test(test_device_key_reaches_backend),
        cmocka_unit_test(test_describe_and_encode_are_the_backends),
        cmocka_unit_test(test_provider_output_uses_backend_slots),
        cmocka_unit_test(test_recognise),
        cmocka_unit_test(test_generation_choice),
    };

    return cmocka_run_group_tests(tests, seam_setup, seam_teardown);
}
