/*
 * hwkey's decoders and handle: store over the fake backend, with hwkey added
 * as a built-in next to OpenSSL's default provider in a fresh library
 * context: which keymgmt ends up holding a decoded key (PEM_read path and
 * OSSL_STORE path, with and without default_properties ?provider=default),
 * that the decoder of the other key type never touches the device, that
 * foreign input passes through without error noise, and that our failures
 * reach the error queue with their reason.
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
#include <openssl/store.h>

#include "../fakes/fake_backend.h"
#include "provider/provider.h"
#include "util/error.h"

static OSSL_LIB_CTX *lib;
static OSSL_PROVIDER *prov_default, *prov_hwkey;
static EVP_PKEY *soft_ec, *soft_rsa;
static char tmpdir[] = "/tmp/hwkey-test-decoder-XXXXXX";

static int group_setup(void **state)
{
    (void)state;
    hwkey_backend_set_override(&hwkey_fake_backend);
    lib = OSSL_LIB_CTX_new();
    if (lib == NULL || !OSSL_PROVIDER_add_builtin(lib, "hwkey", hwkey_provider_init))
        return -1;
    /* default first, as in most openssl.cnf files: its keymgmts win fetch ties */
    prov_default = OSSL_PROVIDER_load(lib, "default");
    prov_hwkey = OSSL_PROVIDER_load(lib, "hwkey");
    soft_ec = EVP_PKEY_Q_keygen(lib, "provider=default", "EC", "P-256");
    soft_rsa = EVP_PKEY_Q_keygen(lib, "provider=default", "RSA", (size_t)2048);
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    return prov_default != NULL && prov_hwkey != NULL && soft_ec != NULL && soft_rsa != NULL ? 0
                                                                                             : -1;
}

static int group_teardown(void **state)
{
    char cmd[128];

    (void)state;
    EVP_PKEY_free(soft_ec);
    EVP_PKEY_free(soft_rsa);
    OSSL_PROVIDER_unload(prov_hwkey);
    OSSL_PROVIDER_unload(prov_default);
    OSSL_LIB_CTX_free(lib);
    hwkey_backend_set_override(NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int test_setup(void **state)
{
    (void)state;
    hwkey_fake_reset();
    ERR_clear_error();
    return EVP_set_default_properties(lib, NULL) ? 0 : -1;
}

static int is_hwkey(const EVP_PKEY *pkey)
{
    const OSSL_PROVIDER *p = EVP_PKEY_get0_provider(pkey);

    return p != NULL && strcmp(OSSL_PROVIDER_get0_name(p), "hwkey") == 0;
}

/* The first error with this reason on the queue (queue drained); 0 if none. */
static int queue_has_reason(int reason)
{
    unsigned long e;
    int found = 0;

    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_REASON(e) == reason)
            found = 1;
    return found;
}

/* Writes a PEM file (label, der) into the temp dir; returns its path. */
static const char *write_pem(const char *name, const char *label, const unsigned char *der,
                             size_t len)
{
    static char path[256];
    BIO *out;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    out = BIO_new_file(path, "w");
    assert_non_null(out);
    assert_true(PEM_write_bio(out, label, "", der, (long)len) > 0);
    BIO_free(out);
    return path;
}

static const char *keyfile_of(EVP_PKEY *soft, const char *name)
{
    unsigned char *der = NULL;
    size_t len = 0;
    const char *path;

    assert_true(hwkey_fake_keyfile(soft, &der, &len));
    path = write_pem(name, "TSS2 PRIVATE KEY", der, len);
    OPENSSL_free(der);
    return path;
}

static EVP_PKEY *load_pem(const char *path)
{
    BIO *in = BIO_new_file(path, "r");
    EVP_PKEY *pkey;

    assert_non_null(in);
    pkey = PEM_read_bio_PrivateKey_ex(in, NULL, NULL, NULL, lib, NULL);
    BIO_free(in);
    return pkey;
}

static EVP_PKEY *load_store(const char *uri)
{
    OSSL_STORE_CTX *ctx = OSSL_STORE_open_ex(uri, lib, NULL, NULL, NULL, NULL, NULL, NULL);
    EVP_PKEY *pkey = NULL;

    if (ctx == NULL)
        return NULL;
    while (pkey == NULL && !OSSL_STORE_eof(ctx)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(ctx);

        if (info == NULL)
            break;
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            pkey = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(ctx);
    return pkey;
}

/* Signs and verifies with the default provider's copy of soft. */
static void assert_signs_as(EVP_PKEY *pkey, EVP_PKEY *soft)
{
    static const unsigned char msg[] = "decoder test";
    unsigned char sig[512];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();

    assert_int_equal(EVP_DigestSignInit_ex(md, NULL, "SHA256", lib, NULL, pkey, NULL), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &siglen, msg, sizeof(msg)), 1);
    EVP_MD_CTX_free(md);
    md = EVP_MD_CTX_new();
    assert_int_equal(
        EVP_DigestVerifyInit_ex(md, NULL, "SHA256", lib, "provider=default", soft, NULL), 1);
    assert_int_equal(EVP_DigestVerify(md, sig, siglen, msg, sizeof(msg)), 1);
    EVP_MD_CTX_free(md);
}

/* --- cases ------------------------------------------------------------------ */

typedef struct {
    const char *name;
    int use_store;
    int rsa;
    const char *default_props;
} LOAD_CASE;

static const LOAD_CASE load_cases[] = {
    {.name = "pem-ec", .use_store = 0, .rsa = 0},
    {.name = "pem-rsa", .use_store = 0, .rsa = 1},
    {.name = "store-ec", .use_store = 1, .rsa = 0},
    {.name = "store-rsa", .use_store = 1, .rsa = 1},
    {.name = "pem-ec-pref", .use_store = 0, .rsa = 0, .default_props = "?provider=default"},
    {.name = "store-rsa-pref", .use_store = 1, .rsa = 1, .default_props = "?provider=default"},
};

static void run_load_case(const LOAD_CASE *c)
{
    EVP_PKEY *soft = c->rsa ? soft_rsa : soft_ec;
    const char *path = keyfile_of(soft, c->name);
    EVP_PKEY *pkey;

    assert_true(EVP_set_default_properties(lib, c->default_props));
    pkey = c->use_store ? load_store(path) : load_pem(path);
    if (pkey == NULL)
        ERR_print_errors_fp(stderr);
    assert_non_null(pkey);
    /* hwkey's keymgmt, not a public copy in the default provider */
    assert_true(is_hwkey(pkey));
    /* the other type's decoder read the type from the file, not the device */
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_LOAD), 1);
    assert_signs_as(pkey, soft);
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_SIGN) > 0 ||
                         hwkey_fake_calls(HWKEY_FAKE_OP_RSA_PRIVATE) > 0,
                     1);
    EVP_PKEY_free(pkey);
}

static void test_load_paths(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(load_cases) / sizeof(load_cases[0]); i++) {
        hwkey_fake_reset();
        run_load_case(&load_cases[i]);
    }
}

/* A software key file goes to the default provider; hwkey leaves no error. */
static void test_foreign_pem_passes_through(void **state)
{
    char path[256];
    BIO *out;
    EVP_PKEY *pkey;

    (void)state;
    snprintf(path, sizeof(path), "%s/soft.pem", tmpdir);
    out = BIO_new_file(path, "w");
    assert_non_null(out);
    assert_true(PEM_write_bio_PrivateKey(out, soft_ec, NULL, NULL, 0, NULL, NULL));
    BIO_free(out);
    pkey = load_pem(path);
    assert_non_null(pkey);
    assert_false(is_hwkey(pkey));
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_LOAD), 0);
    EVP_PKEY_free(pkey);
    pkey = load_store(path);
    assert_non_null(pkey);
    assert_false(is_hwkey(pkey));
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_LOAD), 0);
    EVP_PKEY_free(pkey);
}

/* A device failure while loading our file reaches PEM_read's caller. */
static void test_device_error_reaches_caller(void **state)
{
    const char *path = keyfile_of(soft_ec, "fail-ec");

    (void)state;
    hwkey_fake_inject(HWKEY_FAKE_OP_LOAD, HWKEY_R_AUTH_FAILED, "TPM_RC_AUTH_FAIL");
    assert_null(load_pem(path));
    assert_true(queue_has_reason(HWKEY_R_AUTH_FAILED));
}

/* Our OID but a cut-off body: named as an invalid key file. */
static void test_truncated_keyfile(void **state)
{
    unsigned char *der = NULL;
    size_t len = 0;
    const char *path;

    (void)state;
    assert_true(hwkey_fake_keyfile(soft_ec, &der, &len));
    path = write_pem("truncated", "TSS2 PRIVATE KEY", der, len / 2);
    OPENSSL_free(der);
    assert_null(load_pem(path));
    assert_true(queue_has_reason(HWKEY_R_KEY_FILE_INVALID));
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_LOAD), 0);
}

/* A reference file naming a key kind no backend handles: that backend's error. */
static void test_reference_file_without_backend(void **state)
{
    /* SEQUENCE { VisibleString "t", UTF8String "pkcs11:object=k" } */
    static const unsigned char ref[] = {0x30, 0x14, 0x1a, 0x01, 't', 0x0c, 0x0f, 'p',
                                        'k',  'c',  's',  '1',  '1', ':',  'o',  'b',
                                        'j',  'e',  'c',  't',  '=', 'k'};
    const char *path = write_pem("ref", "PKCS#11 PROVIDER URI", ref, sizeof(ref));

    (void)state;
    assert_null(load_pem(path));
    assert_true(queue_has_reason(HWKEY_R_UNSUPPORTED_ALGORITHM));
}

static void test_store_malformed_handle(void **state)
{
    static const char *const bad[] = {"handle:xyz", "handle:0x80000001", "handle:0x8100000012",
                                      "handle:81000001", "handle:"};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(OSSL_STORE_open_ex(bad[i], lib, NULL, NULL, NULL, NULL, NULL, NULL));
        assert_true(queue_has_reason(HWKEY_R_INVALID_URI));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_load_paths, test_setup),
        cmocka_unit_test_setup(test_foreign_pem_passes_through, test_setup),
        cmocka_unit_test_setup(test_device_error_reaches_caller, test_setup),
        cmocka_unit_test_setup(test_truncated_keyfile, test_setup),
        cmocka_unit_test_setup(test_reference_file_without_backend, test_setup),
        cmocka_unit_test_setup(test_store_malformed_handle, test_setup),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
