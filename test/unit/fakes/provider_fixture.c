/* The provider unit tests' shared fixture: see provider_fixture.h. */
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

#include "provider/provider.h"
#include "provider_fixture.h"
#include "util/error.h"

OSSL_LIB_CTX *lib;
EVP_PKEY *soft[N_SOFT];
const unsigned char message[44] = "the quick brown fox jumps over the lazy dog";
static OSSL_PROVIDER *prov_default, *prov_hwkey;

/* --- helpers -------------------------------------------------------------- */

/* Drains the error queue; 1 if some error had this reason. */
int drain_errors_for(int reason, const char **text_out)
{
    static char text[256];
    const char *data = NULL;
    unsigned long e;
    int flags = 0, found = 0;

    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        if (ERR_GET_REASON(e) == reason && !found) {
            found = 1;
            snprintf(text, sizeof(text), "%s",
                     (flags & ERR_TXT_STRING) != 0 && data != NULL ? data : "");
            if (text_out != NULL)
                *text_out = text;
            /* The provider registered its reason strings with the core. */
            if (ERR_reason_error_string(e) == NULL ||
                strcmp(ERR_reason_error_string(e), hwkey_reason_string(reason)) != 0)
                fail_msg("reason %d has text \"%s\"", reason,
                         ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "(null)");
        }
    }
    return found;
}

int is_hwkey(const EVP_PKEY *pkey)
{
    const OSSL_PROVIDER *p = EVP_PKEY_get0_provider(pkey);

    return p != NULL && strcmp(OSSL_PROVIDER_get0_name(p), "hwkey") == 0;
}

/* Device key for soft, through a TSS2 PEM and hwkey's decoder. */
EVP_PKEY *hw_key_of(EVP_PKEY *sw)
{
    unsigned char *der = NULL;
    size_t der_len = 0;
    BIO *bio = BIO_new(BIO_s_mem());
    EVP_PKEY *pkey = NULL;

    assert_non_null(bio);
    assert_true(hwkey_fake_keyfile(sw, &der, &der_len));
    assert_true(PEM_write_bio(bio, "TSS2 PRIVATE KEY", "", der, (long)der_len) > 0);
    pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, NULL, lib, NULL);
    OPENSSL_free(der);
    BIO_free(bio);
    if (pkey == NULL)
        ERR_print_errors_fp(stderr);
    assert_non_null(pkey);
    assert_true(is_hwkey(pkey));
    return pkey;
}

/* A public-only copy of sw, in the default provider. */
EVP_PKEY *public_of(EVP_PKEY *sw)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    int n = i2d_PUBKEY(sw, &der);
    EVP_PKEY *pub;

    assert_true(n > 0);
    p = der;
    pub = d2i_PUBKEY_ex(NULL, &p, n, lib, SOFT);
    OPENSSL_free(der);
    assert_non_null(pub);
    return pub;
}

/* A public-only key in hwkey's keymgmt, imported from the default provider's public key. */
EVP_PKEY *hw_public_of(EVP_PKEY *sw)
{
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *pkey = NULL;

    assert_true(EVP_PKEY_todata(sw, EVP_PKEY_PUBLIC_KEY, &params));
    ctx = EVP_PKEY_CTX_new_from_name(lib, EVP_PKEY_get0_type_name(sw), "provider=hwkey");
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
    assert_true(is_hwkey(pkey));
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

int device_calls(void)
{
    return hwkey_fake_calls(HWKEY_FAKE_OP_SIGN) + hwkey_fake_calls(HWKEY_FAKE_OP_RSA_PRIVATE) +
           hwkey_fake_calls(HWKEY_FAKE_OP_RSA_DECRYPT) + hwkey_fake_calls(HWKEY_FAKE_OP_ECDH);
}

/* Padding / salt settings of a signature context; pad 0 = leave the default. */
void set_rsa(EVP_PKEY_CTX *pctx, int pad, int salt)
{
    if (pad == 0)
        return;
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, pad), 1);
    if (pad == RSA_PKCS1_PSS_PADDING)
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, salt), 1);
}

/* Signs message with key (propq chooses the provider); returns the length, 0 on failure. */
size_t sign_message(EVP_PKEY *key, const char *md, int pad, int salt, unsigned char *sig,
                    size_t sigsize)
{
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    size_t len = 0;

    assert_non_null(mctx);
    if (EVP_DigestSignInit_ex(mctx, &pctx, md, lib, NULL, key, NULL) != 1)
        goto end;
    set_rsa(pctx, pad, salt);
    if (EVP_DigestSign(mctx, NULL, &len, message, sizeof(message)) != 1 || len > sigsize) {
        len = 0;
        goto end;
    }
    if (EVP_DigestSign(mctx, sig, &len, message, sizeof(message)) != 1)
        len = 0;
end:
    EVP_MD_CTX_free(mctx);
    return len;
}

int verify_message(EVP_PKEY *key, const char *propq, const char *md, int pad, int salt,
                   const unsigned char *sig, size_t siglen)
{
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok;

    assert_non_null(mctx);
    assert_int_equal(EVP_DigestVerifyInit_ex(mctx, &pctx, md, lib, propq, key, NULL), 1);
    set_rsa(pctx, pad, salt);
    ok = EVP_DigestVerify(mctx, sig, siglen, message, sizeof(message));
    EVP_MD_CTX_free(mctx);
    ERR_clear_error();
    return ok;
}

/* --- set-up --------------------------------------------------------------------- */

int fixture_setup(void **state)
{
    (void)state;
    hwkey_backend_set_override(&hwkey_fake_backend);
    lib = OSSL_LIB_CTX_new();
    if (lib == NULL || !OSSL_PROVIDER_add_builtin(lib, "hwkey", hwkey_provider_init))
        return -1;
    prov_default = OSSL_PROVIDER_load(lib, "default");
    prov_hwkey = OSSL_PROVIDER_load(lib, "hwkey");
    if (prov_default == NULL || prov_hwkey == NULL)
        return -1;
    soft[EC256] = EVP_PKEY_Q_keygen(lib, SOFT, "EC", "P-256");
    soft[EC384] = EVP_PKEY_Q_keygen(lib, SOFT, "EC", "P-384");
    soft[RSA2048] = EVP_PKEY_Q_keygen(lib, SOFT, "RSA", (size_t)2048);
    for (int i = 0; i < N_SOFT; i++)
        if (soft[i] == NULL)
            return -1;
    return 0;
}

int fixture_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < N_SOFT; i++)
        EVP_PKEY_free(soft[i]);
    OSSL_PROVIDER_unload(prov_hwkey);
    OSSL_PROVIDER_unload(prov_default);
    OSSL_LIB_CTX_free(lib);
    hwkey_backend_set_override(NULL);
    return 0;
}
