/*
 * hwkey's provider cipher AES-256-GCM (src/ops/cipher_aes_gcm.c) in a
 * library context with the default provider and hwkey (over the fake
 * backend): it is never the implicit AES-256-GCM, "provider=hwkey" gets it,
 * and it interoperates with the default provider's cipher both ways, for
 * several lengths and AAD sizes, in pieces, with tag mismatches rejected.
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
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "bulk/bulk_gcm.h"
#include "provider/provider.h"
#include "../fakes/provider_fixture.h"
#include "util/error.h"

#define HW "provider=hwkey"
#define MAXLEN (65536 + 3)

static const char *provider_of(const EVP_CIPHER *c)
{
    return c == NULL ? "(none)" : OSSL_PROVIDER_get0_name(EVP_CIPHER_get0_provider(c));
}

static void expect_default_implicit(OSSL_LIB_CTX *libctx)
{
    EVP_CIPHER *implicit = EVP_CIPHER_fetch(libctx, "AES-256-GCM", NULL);
    EVP_CIPHER *empty = EVP_CIPHER_fetch(libctx, "AES-256-GCM", "");
    EVP_CIPHER *byoid = EVP_CIPHER_fetch(libctx, "2.16.840.1.101.3.4.1.46", NULL);
    EVP_CIPHER *hw = EVP_CIPHER_fetch(libctx, "AES-256-GCM", HW);
    EVP_CIPHER *bulk = EVP_CIPHER_fetch(libctx, "AES-256-GCM", "hwkey.bulk=yes");

    assert_string_equal(provider_of(implicit), "default");
    assert_string_equal(provider_of(empty), "default");
    assert_string_equal(provider_of(byoid), "default");
    assert_string_equal(provider_of(hw), "hwkey");
    assert_string_equal(provider_of(bulk), "hwkey");
    EVP_CIPHER_free(implicit);
    EVP_CIPHER_free(empty);
    EVP_CIPHER_free(byoid);
    EVP_CIPHER_free(hw);
    EVP_CIPHER_free(bulk);
}

/* The fixture's library context: default loaded, then hwkey. */
static void test_never_implicit(void **state)
{
    (void)state;
    expect_default_implicit(lib);
}

static void test_algorithm_params(void **state)
{
    EVP_CIPHER *c = EVP_CIPHER_fetch(lib, "AES-256-GCM", HW);

    (void)state;
    assert_non_null(c);
    assert_int_equal(EVP_CIPHER_get_mode(c), EVP_CIPH_GCM_MODE);
    assert_int_equal(EVP_CIPHER_get_key_length(c), 32);
    assert_int_equal(EVP_CIPHER_get_iv_length(c), 12);
    assert_int_equal(EVP_CIPHER_get_block_size(c), 1);
    assert_true((EVP_CIPHER_get_flags(c) & EVP_CIPH_FLAG_AEAD_CIPHER) != 0);
    EVP_CIPHER_free(c);
}

/*
 * One message through ctx's cipher: AAD then data in pieces of up to
 * `piece` bytes (0: one call); for decryption tag is the expected tag.
 * Returns the result of final.
 */
static int run(const char *propq, int enc, const unsigned char *key, const unsigned char *iv,
               const unsigned char *aad, size_t aadlen, const unsigned char *in, size_t len,
               unsigned char *out, unsigned char tag[16], size_t piece)
{
    EVP_CIPHER *c = EVP_CIPHER_fetch(lib, "AES-256-GCM", propq);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    size_t done = 0;
    int n = 0, ok;

    assert_non_null(c);
    assert_non_null(ctx);
    assert_int_equal(EVP_CipherInit_ex2(ctx, c, key, iv, enc, NULL), 1);
    if (aadlen > 0)
        assert_int_equal(EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aadlen), 1);
    while (done < len || (len == 0 && done == 0 && piece == 0)) {
        size_t take = piece == 0 ? len - done : (len - done < piece ? len - done : piece);

        assert_int_equal(EVP_CipherUpdate(ctx, out + done, &n, in + done, (int)take), 1);
        assert_int_equal((size_t)n, take);
        done += take;
        if (len == 0)
            break;
    }
    if (!enc)
        assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag), 1);
    ok = EVP_CipherFinal_ex(ctx, out + done, &n);
    if (ok && enc)
        assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag), 1);
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(c);
    return ok;
}

static void test_interop(void **state)
{
    static const size_t lens[] = {0, 1, 15, 16, 17, 100, 255, 256, 257, 1000, 4096, 4099, MAXLEN};
    static const size_t aadlens[] = {0, 13, 70};
    static const size_t pieces[] = {0, 7, 300};
    static unsigned char pt[MAXLEN], ct_hw[MAXLEN], ct_sw[MAXLEN], back[MAXLEN];
    unsigned char key[32], iv[12], aad[70], tag_hw[16], tag_sw[16], bad[16];
    const char *text = NULL;

    (void)state;
    assert_int_equal(RAND_bytes(pt, sizeof(pt)), 1);
    for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++)
        for (size_t a = 0; a < sizeof(aadlens) / sizeof(aadlens[0]); a++) {
            size_t len = lens[l], aadlen = aadlens[a], piece = pieces[(l + a) % 3];

            assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
            assert_int_equal(RAND_bytes(iv, sizeof(iv)), 1);
            assert_int_equal(RAND_bytes(aad, sizeof(aad)), 1);
            /* hwkey encrypts, default decrypts, and the other way round. */
            assert_int_equal(run(HW, 1, key, iv, aad, aadlen, pt, len, ct_hw, tag_hw, piece), 1);
            assert_int_equal(run(SOFT, 1, key, iv, aad, aadlen, pt, len, ct_sw, tag_sw, 0), 1);
            assert_memory_equal(ct_hw, ct_sw, len);
            assert_memory_equal(tag_hw, tag_sw, 16);
            assert_int_equal(run(SOFT, 0, key, iv, aad, aadlen, ct_hw, len, back, tag_hw, 0), 1);
            assert_memory_equal(back, pt, len);
            assert_int_equal(run(HW, 0, key, iv, aad, aadlen, ct_sw, len, back, tag_sw, piece), 1);
            assert_memory_equal(back, pt, len);
            /* A modified tag fails in both. */
            memcpy(bad, tag_hw, 16);
            bad[len % 16] ^= 0x40;
            ERR_clear_error();
            assert_int_equal(run(HW, 0, key, iv, aad, aadlen, ct_sw, len, back, bad, piece), 0);
            assert_true(drain_errors_for(HWKEY_R_DECRYPTION_FAILED, &text));
            assert_non_null(strstr(text, "tag mismatch"));
            assert_int_equal(run(SOFT, 0, key, iv, aad, aadlen, ct_hw, len, back, bad, 0), 0);
            ERR_clear_error();
            /* Modified AAD fails too. */
            if (aadlen > 0) {
                aad[0] ^= 1;
                assert_int_equal(run(HW, 0, key, iv, aad, aadlen, ct_sw, len, back, tag_sw, 0), 0);
                ERR_clear_error();
            }
        }
}

static EVP_CIPHER_CTX *hw_ctx(int enc, const unsigned char *key, const unsigned char *iv)
{
    EVP_CIPHER *c = EVP_CIPHER_fetch(lib, "AES-256-GCM", HW);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

    assert_non_null(c);
    assert_non_null(ctx);
    assert_int_equal(EVP_CipherInit_ex2(ctx, c, key, iv, enc, NULL), 1);
    EVP_CIPHER_free(c);
    return ctx;
}

/* What it refuses, each with its reason: other IV lengths, TLS mode, IV reuse, no tag. */
static void test_refusals(void **state)
{
    unsigned char key[32] = {1}, iv[16] = {2}, buf[64] = {0}, tag[16];
    OSSL_PARAM params[2];
    const char *text = NULL;
    size_t ivlen = 16;
    int n = 0;
    EVP_CIPHER_CTX *ctx = hw_ctx(1, key, NULL);

    (void)state;
    ERR_clear_error();
    assert_true(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 16, NULL) <= 0);
    assert_true(drain_errors_for(HWKEY_R_BAD_ARGUMENT, &text));
    assert_non_null(strstr(text, "12-byte IVs"));
    params[0] = OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivlen);
    params[1] = OSSL_PARAM_construct_end();
    assert_int_equal(EVP_CIPHER_CTX_set_params(ctx, params), 0);
    assert_true(drain_errors_for(HWKEY_R_BAD_ARGUMENT, NULL));
    /* TLS record mode. */
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TLS1_AAD, buf, 13);
    assert_int_equal(EVP_CIPHER_CTX_set_params(ctx, params), 0);
    assert_true(drain_errors_for(HWKEY_R_BAD_ARGUMENT, &text));
    assert_non_null(strstr(text, "TLS record mode"));
    assert_true(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IV_FIXED, 4, buf) <= 0);
    assert_true(drain_errors_for(HWKEY_R_BAD_ARGUMENT, NULL));
    /* No IV yet: no data. */
    assert_int_equal(EVP_EncryptUpdate(ctx, buf, &n, buf, 16), 0);
    assert_true(drain_errors_for(HWKEY_R_OPERATION_NOT_INITIALISED, &text));
    assert_non_null(strstr(text, "no IV"));
    /* A message, then no second one under the same IV. */
    assert_int_equal(EVP_EncryptInit_ex2(ctx, NULL, NULL, iv, NULL), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, buf, &n, buf, 16), 1);
    assert_int_equal(EVP_EncryptFinal_ex(ctx, buf, &n), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, buf, &n, buf, 16), 0);
    assert_true(drain_errors_for(HWKEY_R_OPERATION_NOT_INITIALISED, NULL));
    EVP_CIPHER_CTX_free(ctx);
    /* Decryption without a tag set fails at final. */
    ctx = hw_ctx(0, key, iv);
    assert_int_equal(EVP_DecryptUpdate(ctx, buf, &n, buf, 16), 1);
    assert_int_equal(EVP_DecryptFinal_ex(ctx, buf, &n), 0);
    assert_true(drain_errors_for(HWKEY_R_OPERATION_NOT_INITIALISED, &text));
    assert_non_null(strstr(text, "no tag set"));
    EVP_CIPHER_CTX_free(ctx);
}

/* EVP_CIPHER_CTX_copy mid-message: both copies finish with the same bytes and tag. */
static void test_dup_midstream(void **state)
{
    unsigned char key[32], iv[12], pt[1000], a[1000], b[1000], ta[16], tb[16];
    EVP_CIPHER_CTX *ctx, *copy = EVP_CIPHER_CTX_new();
    int n = 0;

    (void)state;
    assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
    assert_int_equal(RAND_bytes(iv, sizeof(iv)), 1);
    assert_int_equal(RAND_bytes(pt, sizeof(pt)), 1);
    ctx = hw_ctx(1, key, iv);
    assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &n, iv, 5), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, a, &n, pt, 333), 1);
    assert_int_equal(EVP_CIPHER_CTX_copy(copy, ctx), 1);
    memcpy(b, a, 333);
    assert_int_equal(EVP_EncryptUpdate(ctx, a + 333, &n, pt + 333, 667), 1);
    assert_int_equal(EVP_EncryptFinal_ex(ctx, a + 1000, &n), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, ta), 1);
    EVP_CIPHER_CTX_free(ctx); /* the copy must not depend on the original's memory */
    assert_int_equal(EVP_EncryptUpdate(copy, b + 333, &n, pt + 333, 667), 1);
    assert_int_equal(EVP_EncryptFinal_ex(copy, b + 1000, &n), 1);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(copy, EVP_CTRL_AEAD_GET_TAG, 16, tb), 1);
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_equal(ta, tb, 16);
    EVP_CIPHER_CTX_free(copy);
}

/*
 * hwkey loaded before the default provider, in a fresh library context.
 * OpenSSL 3.0 answers a fetch without properties with the first provider
 * activated, so the cipher is offered only when the configuration asks for
 * it (bulk-cipher = yes): without it, hwkey-first must leave AES-256-GCM to
 * the default provider, and provider=hwkey finds nothing.  With it, the
 * implicit choice is hwkey's: that is the documented cost of opting in.
 */
static void test_not_offered_without_opt_in(void **state)
{
    OSSL_LIB_CTX *l = OSSL_LIB_CTX_new();
    OSSL_PROVIDER *h, *d;
    EVP_CIPHER *c;

    (void)state;
    assert_non_null(l);
    unsetenv("HWKEY_BULK_CIPHER");
    assert_int_equal(OSSL_PROVIDER_add_builtin(l, "hwkey", hwkey_provider_init), 1);
    assert_non_null(h = OSSL_PROVIDER_load(l, "hwkey"));
    assert_non_null(d = OSSL_PROVIDER_load(l, "default"));
    c = EVP_CIPHER_fetch(l, "AES-256-GCM", NULL);
    assert_string_equal(provider_of(c), "default");
    EVP_CIPHER_free(c);
    ERR_set_mark();
    c = EVP_CIPHER_fetch(l, "AES-256-GCM", "provider=hwkey");
    ERR_pop_to_mark();
    assert_null(c);
    OSSL_PROVIDER_unload(d);
    OSSL_PROVIDER_unload(h);
    OSSL_LIB_CTX_free(l);
    setenv("HWKEY_BULK_CIPHER", "yes", 1);
}

int main(void)
{
    /* The fixture's provider offers the cipher: the user opted in. */
    setenv("HWKEY_BULK_CIPHER", "yes", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_implicit), cmocka_unit_test(test_algorithm_params),
        cmocka_unit_test(test_interop),        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_dup_midstream),  cmocka_unit_test(test_not_offered_without_opt_in),
    };

    if (!hwkey_bulk_cpu_ok()) {
        fprintf(stderr, "SKIP: this CPU lacks AES-NI/PCLMULQDQ\n");
        return 77;
    }
    return cmocka_run_group_tests(tests, fixture_setup, fixture_teardown);
}
