/*
 * Ed25519 keys and EdDSA signatures, and the pkcs11: store, over the fake
 * backend; every signature checked by the default provider.
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
#include <openssl/store.h>
#include <openssl/x509.h>

#include "../fakes/provider_fixture.h"
#include "util/error.h"

static EVP_PKEY *soft_ed;

static int setup(void **state)
{
    if (fixture_setup(state) != 0)
        return -1;
    soft_ed = EVP_PKEY_Q_keygen(lib, SOFT, "ED25519");
    return soft_ed != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    hwkey_fake_set_uri_object(NULL, NULL, NULL, 0);
    EVP_PKEY_free(soft_ed);
    return fixture_teardown(state);
}

/* EdDSA one-shot signature of message with key; its length, 0 on failure. */
static size_t ed_sign(EVP_PKEY *key, const char *md, unsigned char *sig, size_t sigsize)
{
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    size_t len = 0;

    assert_non_null(mctx);
    if (EVP_DigestSignInit_ex(mctx, NULL, md, lib, NULL, key, NULL) == 1 &&
        EVP_DigestSign(mctx, NULL, &len, message, sizeof(message)) == 1 && len <= sigsize &&
        EVP_DigestSign(mctx, sig, &len, message, sizeof(message)) != 1)
        len = 0;
    EVP_MD_CTX_free(mctx);
    return len;
}

static int ed_verify(EVP_PKEY *key, const char *propq, const unsigned char *sig, size_t siglen,
                     const unsigned char *msg, size_t msglen)
{
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    int ok;

    assert_non_null(mctx);
    assert_int_equal(EVP_DigestVerifyInit_ex(mctx, NULL, NULL, lib, propq, key, NULL), 1);
    ok = EVP_DigestVerify(mctx, sig, siglen, msg, msglen);
    EVP_MD_CTX_free(mctx);
    ERR_clear_error();
    return ok;
}

static void test_eddsa_sign_verifies_in_default(void **state)
{
    EVP_PKEY *hw = hw_key_of(soft_ed), *pub = public_of(soft_ed);
    unsigned char sig[128], bad[sizeof(message)];
    size_t len;

    (void)state;
    assert_true(EVP_PKEY_is_a(hw, "ED25519"));
    assert_int_equal(EVP_PKEY_get_bits(hw), EVP_PKEY_get_bits(soft_ed));
    assert_int_equal(EVP_PKEY_get_security_bits(hw), 128);
    assert_int_equal(EVP_PKEY_get_size(hw), 64);
    hwkey_fake_reset();
    len = ed_sign(hw, NULL, sig, sizeof(sig));
    assert_int_equal(len, 64);
    /* One device command per signature, with the whole message. */
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_SIGN), 1);
    assert_int_equal(ed_verify(pub, SOFT, sig, len, message, sizeof(message)), 1);
    memcpy(bad, message, sizeof(bad));
    bad[0] ^= 1;
    assert_int_not_equal(ed_verify(pub, SOFT, sig, len, bad, sizeof(bad)), 1);
    /* Verification through hwkey runs in software: no device call. */
    assert_int_equal(ed_verify(hw, NULL, sig, len, message, sizeof(message)), 1);
    assert_int_not_equal(ed_verify(hw, NULL, sig, len, bad, sizeof(bad)), 1);
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_SIGN), 1);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(hw);
}

static void test_eddsa_refusals(void **state)
{
    EVP_PKEY *hw = hw_key_of(soft_ed), *hwpub = hw_public_of(soft_ed);
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    unsigned char sig[64];

    (void)state;
    /* A digest makes no sense for pure EdDSA. */
    assert_int_not_equal(EVP_DigestSignInit_ex(mctx, NULL, "SHA256", lib, NULL, hw, NULL), 1);
    assert_true(drain_errors_for(HWKEY_R_UNSUPPORTED_DIGEST, NULL));
    /* A public-only key in hwkey cannot sign. */
    assert_int_equal(ed_sign(hwpub, NULL, sig, sizeof(sig)), 0);
    assert_true(drain_errors_for(HWKEY_R_NO_PRIVATE_KEY, NULL));
    /* The private half is never exported. */
    assert_int_equal(EVP_PKEY_get_raw_private_key(hw, NULL, &(size_t){0}), 0);
    ERR_clear_error();
    EVP_MD_CTX_free(mctx);
    EVP_PKEY_free(hwpub);
    EVP_PKEY_free(hw);
}

static void test_eddsa_self_signed_certificate(void **state)
{
    EVP_PKEY *hw = hw_key_of(soft_ed), *pub = public_of(soft_ed);
    X509 *x = X509_new_ex(lib, NULL);

    (void)state;
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_int_equal(X509_set_pubkey(x, pub), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                                (const unsigned char *)"ed", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
    /* NULL digest: EdDSA; the AlgorithmIdentifier comes from hwkey's signature. */
    assert_true(X509_sign(x, hw, NULL) > 0);
    assert_int_equal(OBJ_obj2nid(X509_get0_tbs_sigalg(x)->algorithm), NID_ED25519);
    assert_int_equal(X509_verify(x, pub), 1);
    assert_int_equal(X509_check_private_key(x, hw), 1);
    X509_free(x);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(hw);
}

/* --- the pkcs11: store -------------------------------------------------------- */

static X509 *self_signed(EVP_PKEY *sw)
{
    X509 *x = X509_new_ex(lib, NULL);

    assert_non_null(x);
    assert_int_equal(X509_set_pubkey(x, sw), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_true(X509_sign(x, sw, EVP_PKEY_is_a(sw, "ED25519") ? NULL : EVP_sha256()) > 0);
    return x;
}

typedef struct {
    int types[4];
    int n;
    EVP_PKEY *pkey; /* the first PKEY or PUBKEY */
    X509 *cert;
    int error;
} LOADED;

static void store_load_all(const char *uri, const char *propq, int expect, LOADED *out)
{
    OSSL_STORE_CTX *sctx = OSSL_STORE_open_ex(uri, lib, propq, NULL, NULL, NULL, NULL, NULL);

    memset(out, 0, sizeof(*out));
    assert_non_null(sctx);
    if (expect != 0)
        assert_int_equal(OSSL_STORE_expect(sctx, expect), 1);
    while (!OSSL_STORE_eof(sctx) && out->n < 4) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(sctx);

        if (info == NULL) {
            out->error |= OSSL_STORE_error(sctx);
            continue;
        }
        out->types[out->n++] = OSSL_STORE_INFO_get_type(info);
        if (out->pkey == NULL && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            out->pkey = OSSL_STORE_INFO_get1_PKEY(info);
        if (out->pkey == NULL && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PUBKEY)
            out->pkey = OSSL_STORE_INFO_get1_PUBKEY(info);
        if (out->cert == NULL && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_CERT)
            out->cert = OSSL_STORE_INFO_get1_CERT(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(sctx);
}

static void loaded_clear(LOADED *l)
{
    EVP_PKEY_free(l->pkey);
    X509_free(l->cert);
    memset(l, 0, sizeof(*l));
}

static void test_store_objects_and_hints(void **state)
{
    static const struct {
        const char *uri;
        int expect;
        int n;
        int types[2];
    } cases[] = {
        {"pkcs11:token=t;object=web;type=private", 0, 1, {OSSL_STORE_INFO_PKEY}},
        {"pkcs11:token=t;object=web", 0, 2, {OSSL_STORE_INFO_PKEY, OSSL_STORE_INFO_CERT}},
        {"pkcs11:token=t;object=web", OSSL_STORE_INFO_CERT, 1, {OSSL_STORE_INFO_CERT}},
        {"pkcs11:token=t;object=web", OSSL_STORE_INFO_PKEY, 1, {OSSL_STORE_INFO_PKEY}},
        {"pkcs11:token=t;object=web", OSSL_STORE_INFO_PUBKEY, 1, {OSSL_STORE_INFO_PUBKEY}},
        {"pkcs11:token=t;object=web;type=public", 0, 1, {OSSL_STORE_INFO_PUBKEY}},
        {"pkcs11:token=t;object=web;type=cert", 0, 1, {OSSL_STORE_INFO_CERT}},
        {"pkcs11:token=t;object=web;type=private?pin-value=1234", 0, 1, {OSSL_STORE_INFO_PKEY}},
    };
    X509 *cert = self_signed(soft[EC256]);
    EVP_PKEY *pub = public_of(soft[EC256]);

    (void)state;
    hwkey_fake_set_uri_object("web", soft[EC256], cert, 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        LOADED l;

        store_load_all(cases[i].uri, NULL, cases[i].expect, &l);
        if (l.error || l.n != cases[i].n)
            fail_msg("%s (expect %d): %d objects, error %d", cases[i].uri, cases[i].expect, l.n,
                     l.error);
        for (int j = 0; j < l.n; j++)
            assert_int_equal(l.types[j], cases[i].types[j]);
        if (l.pkey != NULL)
            assert_int_equal(EVP_PKEY_eq(l.pkey, pub), 1);
        if (l.cert != NULL)
            assert_int_equal(X509_cmp(l.cert, cert), 0);
        /* The private key stays with hwkey and signs on the device. */
        if (cases[i].types[0] == OSSL_STORE_INFO_PKEY) {
            unsigned char sig[128];
            size_t len;

            assert_true(is_hwkey(l.pkey));
            hwkey_fake_reset();
            len = sign_message(l.pkey, "SHA256", 0, 0, sig, sizeof(sig));
            assert_true(len > 0);
            assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_SIGN), 1);
            assert_int_equal(verify_message(pub, SOFT, "SHA256", 0, 0, sig, len), 1);
        }
        loaded_clear(&l);
    }
    ERR_clear_error();
    X509_free(cert);
    EVP_PKEY_free(pub);
}

static void test_store_private_key_stays_in_hwkey(void **state)
{
    LOADED l;

    (void)state;
    hwkey_fake_set_uri_object("web", soft[RSA2048], NULL, 1);
    /* The default provider's keymgmt is preferred: export_object must refuse. */
    store_load_all("pkcs11:object=web;type=private", "?provider=default", 0, &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.types[0], OSSL_STORE_INFO_PKEY);
    assert_true(is_hwkey(l.pkey));
    loaded_clear(&l);
    /* A public key may go to the default provider. */
    store_load_all("pkcs11:object=web;type=public", "?provider=default", 0, &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.types[0], OSSL_STORE_INFO_PUBKEY);
    loaded_clear(&l);
    ERR_clear_error();
}

static void test_store_ed25519(void **state)
{
    unsigned char sig[64];
    EVP_PKEY *pub = public_of(soft_ed);
    LOADED l;
    size_t len;

    (void)state;
    hwkey_fake_set_uri_object("ed", soft_ed, NULL, 1);
    store_load_all("pkcs11:object=ed;type=private", NULL, 0, &l);
    assert_int_equal(l.n, 1);
    assert_true(is_hwkey(l.pkey));
    assert_true(EVP_PKEY_is_a(l.pkey, "ED25519"));
    len = ed_sign(l.pkey, NULL, sig, sizeof(sig));
    assert_int_equal(len, 64);
    assert_int_equal(ed_verify(pub, SOFT, sig, len, message, sizeof(message)), 1);
    loaded_clear(&l);
    EVP_PKEY_free(pub);
}

static void test_store_absent(void **state)
{
    const char *text = NULL;
    LOADED l;

    (void)state;
    hwkey_fake_set_uri_object("web", soft[EC256], NULL, 0);
    /* Nothing at all: an error naming the absence. */
    store_load_all("pkcs11:object=other", NULL, 0, &l);
    assert_int_equal(l.n, 0);
    assert_true(l.error);
    assert_true(drain_errors_for(HWKEY_R_KEY_NOT_FOUND, &text));
    assert_non_null(strstr(text, "pkcs11:object=other"));
    /* No private key, no certificate: the public key alone, no error. */
    store_load_all("pkcs11:object=web", NULL, 0, &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.types[0], OSSL_STORE_INFO_PUBKEY);
    assert_false(l.error);
    loaded_clear(&l);
    /* Asked for a certificate where there is none. */
    store_load_all("pkcs11:object=web", NULL, OSSL_STORE_INFO_CERT, &l);
    assert_int_equal(l.n, 0);
    assert_true(l.error);
    assert_true(drain_errors_for(HWKEY_R_KEY_NOT_FOUND, &text));
    /* The pin-value never shows in a message. */
    store_load_all("pkcs11:object=other?pin-value=s3cret", NULL, 0, &l);
    assert_true(drain_errors_for(HWKEY_R_KEY_NOT_FOUND, &text));
    assert_null(strstr(text, "s3cret"));
}

/*
 * "Absent" is the backend's typed answer (HWKEY_LOOKUP_ABSENT), not the
 * reason of the last error: a device failure that happens to carry
 * HWKEY_R_KEY_NOT_FOUND stops the store with that error, instead of being
 * skipped as "no private key here" and answered with the public key.
 */
static void test_store_failure_is_not_absence(void **state)
{
    const char *text = NULL;
    LOADED l;

    (void)state;
    hwkey_fake_set_uri_object("web", soft[EC256], NULL, 1);
    hwkey_fake_inject(HWKEY_FAKE_OP_LOAD, HWKEY_R_KEY_NOT_FOUND, "CKR_DEVICE_ERROR");
    store_load_all("pkcs11:object=web", NULL, 0, &l);
    assert_int_equal(l.n, 0);
    assert_true(l.error);
    assert_true(drain_errors_for(HWKEY_R_KEY_NOT_FOUND, &text));
    assert_non_null(strstr(text, "CKR_DEVICE_ERROR"));
    loaded_clear(&l);
    /* Without the failure, the same URI yields the private key. */
    hwkey_fake_reset();
    store_load_all("pkcs11:object=web", NULL, 0, &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.types[0], OSSL_STORE_INFO_PKEY);
    assert_false(l.error);
    loaded_clear(&l);
    ERR_clear_error();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eddsa_sign_verifies_in_default),
        cmocka_unit_test(test_eddsa_refusals),
        cmocka_unit_test(test_eddsa_self_signed_certificate),
        cmocka_unit_test(test_store_objects_and_hints),
        cmocka_unit_test(test_store_private_key_stays_in_hwkey),
        cmocka_unit_test(test_store_ed25519),
        cmocka_unit_test(test_store_absent),
        cmocka_unit_test(test_store_failure_is_not_absence),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
