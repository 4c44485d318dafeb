/*
 * The AES-NI GCM core (src/bulk): McGrew-Viega / NIST AES-256 vectors,
 * a randomized cross-check against OpenSSL's EVP_aes_256_gcm for every length
 * 0..4096 (one-shot, streamed in random pieces, in place), and rejection of
 * a modified tag, ciphertext or AAD with the reason on the error queue.
 * The whole group runs once per core this CPU has (128-bit AES-NI, 256-bit
 * VAES), each forced with hwkey_bulk_gcm_set_impl(), so every path is
 * tested on one machine; a last test switches cores between the pieces of
 * one message (both keep the same state).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "bulk/bulk_gcm.h"
#include "util/error.h"

#define MAXLEN 4096

/* The core under test (main() runs the group once per core). */
static int impl_under_test;

static HWKEY_BULK_GCM *new_gcm(const unsigned char *key)
{
    HWKEY_BULK_GCM *g = hwkey_bulk_gcm_new(key);

    assert_non_null(g);
    assert_int_equal(hwkey_bulk_gcm_set_impl(g, impl_under_test), 1);
    assert_int_equal(hwkey_bulk_gcm_get_impl(g), impl_under_test);
    return g;
}

static size_t unhex(const char *hex, unsigned char *out, size_t max)
{
    size_t n = strlen(hex) / 2;

    assert_true(n <= max);
    for (size_t i = 0; i < n; i++) {
        unsigned int b;

        assert_int_equal(sscanf(hex + 2 * i, "%2x", &b), 1);
        out[i] = (unsigned char)b;
    }
    return n;
}

static const struct vector {
    const char *name, *key, *iv, *aad, *pt, *ct, *tag;
} vectors[] = {
    {.name = "MV 13: empty plaintext, empty AAD",
     .key = "0000000000000000000000000000000000000000000000000000000000000000",
     .iv = "000000000000000000000000",
     .aad = "",
     .pt = "",
     .ct = "",
     .tag = "530f8afbc74536b9a963b4f1c4cb738b"},
    {.name = "MV 14: one zero block",
     .key = "0000000000000000000000000000000000000000000000000000000000000000",
     .iv = "000000000000000000000000",
     .aad = "",
     .pt = "00000000000000000000000000000000",
     .ct = "cea7403d4d606b6e074ec5d3baf39d18",
     .tag = "d0d1c8a799996bf0265b98b5d48ab919"},
    {.name = "MV 15: four blocks",
     .key = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     .iv = "cafebabefacedbaddecaf888",
     .aad = "",
     .pt = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
           "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
     .ct = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
           "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     .tag = "b094dac5d93471bdec1a502270e3cc6c"},
    {.name = "MV 16: 60 bytes (not a block multiple) with 20 bytes of AAD",
     .key = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     .iv = "cafebabefacedbaddecaf888",
     .aad = "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     .pt = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
           "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     .ct = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
           "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     .tag = "76fc6ece0f4e1768cddf8853bb2d551b"},
};

static void test_vectors(void **state)
{
    (void)state;
    for (size_t v = 0; v < sizeof(vectors) / sizeof(vectors[0]); v++) {
        const struct vector *t = &vectors[v];
        unsigned char key[32], iv[12], aad[64], pt[64], ct[64], tag[16];
        unsigned char out[64], gottag[16];
        size_t aadlen, ptlen, ctlen;
        HWKEY_BULK_GCM *g;

        print_message("%s\n", t->name);
        assert_int_equal(unhex(t->key, key, sizeof(key)), 32);
        assert_int_equal(unhex(t->iv, iv, sizeof(iv)), 12);
        aadlen = unhex(t->aad, aad, sizeof(aad));
        ptlen = unhex(t->pt, pt, sizeof(pt));
        ctlen = unhex(t->ct, ct, sizeof(ct));
        assert_int_equal(unhex(t->tag, tag, sizeof(tag)), 16);
        assert_int_equal(ptlen, ctlen);
        g = new_gcm(key);
        assert_int_equal(hwkey_bulk_gcm_encrypt(g, iv, aad, aadlen, pt, out, ptlen, gottag), 1);
        assert_memory_equal(out, ct, ctlen);
        assert_memory_equal(gottag, tag, 16);
        assert_int_equal(hwkey_bulk_gcm_decrypt(g, iv, aad, aadlen, ct, out, ctlen, tag), 1);
        assert_memory_equal(out, pt, ptlen);
        hwkey_bulk_gcm_free(g);
    }
}

static void openssl_gcm(const unsigned char *key, const unsigned char *iv, const unsigned char *aad,
                        size_t aadlen, const unsigned char *in, size_t len, unsigned char *out,
                        unsigned char tag[16])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, m = 0;

    assert_non_null(c);
    assert_int_equal(EVP_EncryptInit_ex2(c, EVP_aes_256_gcm(), key, iv, NULL), 1);
    if (aadlen > 0)
        assert_int_equal(EVP_EncryptUpdate(c, NULL, &n, aad, (int)aadlen), 1);
    assert_int_equal(EVP_EncryptUpdate(c, out, &n, in, (int)len), 1);
    assert_int_equal(EVP_EncryptFinal_ex(c, out + n, &m), 1);
    assert_int_equal((size_t)(n + m), len);
    assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag), 1);
    EVP_CIPHER_CTX_free(c);
}

/* Every length 0..4096 against OpenSSL, with 0..70 bytes of AAD. */
static void test_cross_check_openssl(void **state)
{
    static unsigned char pt[MAXLEN], ref[MAXLEN], out[MAXLEN], back[MAXLEN];
    unsigned char key[32], iv[12], aad[70], reftag[16], tag[16];
    HWKEY_BULK_GCM *g = NULL;

    (void)state;
    for (size_t len = 0; len <= MAXLEN; len++) {
        size_t aadlen;

        if (len % 64 == 0) {
            hwkey_bulk_gcm_free(g);
            assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
            g = new_gcm(key);
        }
        assert_int_equal(RAND_bytes(iv, sizeof(iv)), 1);
        assert_int_equal(RAND_bytes(aad, sizeof(aad)), 1);
        assert_int_equal(RAND_bytes(pt, (int)(len > 0 ? len : 1)), 1);
        aadlen = (len * 7) % sizeof(aad);
        openssl_gcm(key, iv, aad, aadlen, pt, len, ref, reftag);
        assert_int_equal(hwkey_bulk_gcm_encrypt(g, iv, aad, aadlen, pt, out, len, tag), 1);
        if (memcmp(out, ref, len) != 0 || memcmp(tag, reftag, 16) != 0)
            fail_msg("mismatch with OpenSSL at length %zu, aad %zu", len, aadlen);
        assert_int_equal(hwkey_bulk_gcm_decrypt(g, iv, aad, aadlen, out, back, len, tag), 1);
        assert_memory_equal(back, pt, len);
        /* In place. */
        memcpy(back, pt, len);
        assert_int_equal(hwkey_bulk_gcm_encrypt(g, iv, aad, aadlen, back, back, len, tag), 1);
        assert_memory_equal(back, ref, len);
        assert_memory_equal(tag, reftag, 16);
    }
    hwkey_bulk_gcm_free(g);
}

/* The same message fed in random pieces (AAD too) gives OpenSSL's bytes. */
static void test_streaming_pieces(void **state)
{
    static unsigned char pt[MAXLEN], ref[MAXLEN], out[MAXLEN];
    unsigned char key[32], iv[12], aad[100], reftag[16], tag[16], r[2];
    HWKEY_BULK_GCM *g;

    (void)state;
    assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
    g = new_gcm(key);
    for (int round = 0; round < 300; round++) {
        size_t len, done = 0, adone = 0, aadlen;
        int enc = round % 2;

        assert_int_equal(RAND_bytes(r, 2), 1);
        len = ((size_t)r[0] << 8 | r[1]) % (MAXLEN + 1);
        aadlen = (size_t)round % sizeof(aad);
        assert_int_equal(RAND_bytes(iv, sizeof(iv)), 1);
        assert_int_equal(RAND_bytes(aad, sizeof(aad)), 1);
        assert_int_equal(RAND_bytes(pt, MAXLEN), 1);
        openssl_gcm(key, iv, aad, aadlen, pt, len, ref, reftag);
        hwkey_bulk_gcm_start(g, iv);
        while (adone < aadlen) {
            size_t piece;

            assert_int_equal(RAND_bytes(r, 1), 1);
            piece = (size_t)r[0] % 24;
            piece = piece > aadlen - adone ? aadlen - adone : piece;
            assert_int_equal(hwkey_bulk_gcm_aad(g, aad + adone, piece), 1);
            adone += piece;
        }
        while (done < len) {
            size_t piece;

            assert_int_equal(RAND_bytes(r, 2), 1);
            /* Mostly small, sometimes large pieces: partial blocks on both sides. */
            piece = r[0] < 200 ? (size_t)r[1] % 40 : ((size_t)r[0] << 8 | r[1]) % 1500;
            piece = piece > len - done ? len - done : piece;
            assert_int_equal(
                hwkey_bulk_gcm_update(g, enc, enc ? pt + done : ref + done, out + done, piece), 1);
            done += piece;
        }
        hwkey_bulk_gcm_tag(g, tag);
        assert_memory_equal(out, enc ? ref : pt, len);
        assert_memory_equal(tag, reftag, 16);
    }
    /* AAD after data is refused. */
    hwkey_bulk_gcm_start(g, iv);
    assert_int_equal(hwkey_bulk_gcm_update(g, 1, pt, out, 5), 1);
    assert_int_equal(hwkey_bulk_gcm_aad(g, aad, 3), 0);
    assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), HWKEY_R_BAD_ARGUMENT);
    ERR_clear_error();
    hwkey_bulk_gcm_free(g);
}

static void expect_rejected(HWKEY_BULK_GCM *g, const unsigned char *iv, const unsigned char *aad,
                            size_t aadlen, const unsigned char *ct, size_t len,
                            const unsigned char *tag)
{
    static unsigned char out[MAXLEN];
    unsigned long e;

    memset(out, 0xa5, len);
    ERR_clear_error();
    assert_int_equal(hwkey_bulk_gcm_decrypt(g, iv, aad, aadlen, ct, out, len, tag), 0);
    e = ERR_peek_last_error();
    assert_int_equal(ERR_GET_LIB(e), ERR_LIB_USER);
    assert_int_equal(ERR_GET_REASON(e), HWKEY_R_DECRYPTION_FAILED);
    /* No unauthenticated plaintext is left behind. */
    for (size_t i = 0; i < len; i++)
        assert_int_equal(out[i], 0);
    ERR_clear_error();
}

static void test_bad_tag_rejected(void **state)
{
    static unsigned char pt[1000], ct[1000];
    unsigned char key[32], iv[12], aad[13], tag[16], bad[16];
    HWKEY_BULK_GCM *g, *other;

    (void)state;
    assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
    assert_int_equal(RAND_bytes(iv, sizeof(iv)), 1);
    assert_int_equal(RAND_bytes(aad, sizeof(aad)), 1);
    assert_int_equal(RAND_bytes(pt, sizeof(pt)), 1);
    g = new_gcm(key);
    assert_int_equal(hwkey_bulk_gcm_encrypt(g, iv, aad, sizeof(aad), pt, ct, sizeof(pt), tag), 1);

    for (int bit = 0; bit < 128; bit += 9) { /* any bit of the tag */
        memcpy(bad, tag, 16);
        bad[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        expect_rejected(g, iv, aad, sizeof(aad), ct, sizeof(ct), bad);
    }
    ct[999] ^= 0x01; /* the last ciphertext byte */
    expect_rejected(g, iv, aad, sizeof(aad), ct, sizeof(ct), tag);
    ct[999] ^= 0x01;
    aad[0] ^= 0x80; /* the AAD */
    expect_rejected(g, iv, aad, sizeof(aad), ct, sizeof(ct), tag);
    aad[0] ^= 0x80;
    expect_rejected(g, iv, aad, sizeof(aad), ct, sizeof(ct) - 1, tag); /* truncated */
    iv[11] ^= 1;                                                       /* another IV */
    expect_rejected(g, iv, aad, sizeof(aad), ct, sizeof(ct), tag);
    iv[11] ^= 1;
    key[31] ^= 1; /* another key */
    other = new_gcm(key);
    expect_rejected(other, iv, aad, sizeof(aad), ct, sizeof(ct), tag);
    /* The original still verifies: rejection changed no state that matters. */
    assert_int_equal(hwkey_bulk_gcm_decrypt(g, iv, aad, sizeof(aad), ct, pt, sizeof(ct), tag), 1);
    hwkey_bulk_gcm_free(other);
    hwkey_bulk_gcm_free(g);
}

/* Cores switched at random between pieces of one message still give OpenSSL's bytes. */
static void test_mixed_cores(void **state)
{
    static unsigned char pt[MAXLEN], ref[MAXLEN], out[MAXLEN];
    unsigned char key[32], iv[12], aad[20], reftag[16], tag[16], r[3];
    HWKEY_BULK_GCM *g;

    (void)state;
    if (!hwkey_bulk_impl_available(HWKEY_BULK_IMPL_VAES)) {
        print_message("SKIP: test_mixed_cores: this CPU lacks VAES/AVX-512\n");
        skip();
    }
    assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
    g = new_gcm(key);
    for (int round = 0; round < 200; round++) {
        size_t done = 0, len = MAXLEN - (size_t)round;
        int enc = round % 2;

        assert_int_equal(RAND_bytes(iv, sizeof(iv)), 1);
        assert_int_equal(RAND_bytes(aad, sizeof(aad)), 1);
        assert_int_equal(RAND_bytes(pt, MAXLEN), 1);
        openssl_gcm(key, iv, aad, sizeof(aad), pt, len, ref, reftag);
        hwkey_bulk_gcm_start(g, iv);
        assert_int_equal(hwkey_bulk_gcm_aad(g, aad, sizeof(aad)), 1);
        while (done < len) {
            size_t piece;

            assert_int_equal(RAND_bytes(r, 3), 1);
            assert_int_equal(hwkey_bulk_gcm_set_impl(g, (r[2] & 1) ? HWKEY_BULK_IMPL_VAES
                                                                   : HWKEY_BULK_IMPL_AESNI),
                             1);
            piece = ((size_t)r[0] << 8 | r[1]) % 1200;
            piece = piece > len - done ? len - done : piece;
            assert_int_equal(
                hwkey_bulk_gcm_update(g, enc, enc ? pt + done : ref + done, out + done, piece), 1);
            done += piece;
        }
        hwkey_bulk_gcm_tag(g, tag);
        assert_memory_equal(out, enc ? ref : pt, len);
        assert_memory_equal(tag, reftag, 16);
    }
    hwkey_bulk_gcm_free(g);
}

/* A core this CPU cannot run (or that does not exist) is refused with the reason. */
static void test_unknown_core_refused(void **state)
{
    unsigned char key[32] = {0};
    HWKEY_BULK_GCM *g = new_gcm(key);

    (void)state;
    ERR_clear_error();
    assert_int_equal(hwkey_bulk_gcm_set_impl(g, 99), 0);
    assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), HWKEY_R_UNSUPPORTED_ALGORITHM);
    assert_int_equal(hwkey_bulk_gcm_get_impl(g), impl_under_test);
    ERR_clear_error();
    hwkey_bulk_gcm_free(g);
}

int main(void)
{
    static const int impls[] = {HWKEY_BULK_IMPL_AESNI, HWKEY_BULK_IMPL_VAES};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_cross_check_openssl),
        cmocka_unit_test(test_streaming_pieces),
        cmocka_unit_test(test_bad_tag_rejected),
        cmocka_unit_test(test_unknown_core_refused),
    };
    const struct CMUnitTest mixed[] = {
        cmocka_unit_test(test_mixed_cores),
    };
    int failed = 0;

    if (!hwkey_bulk_cpu_ok()) {
        fprintf(stderr, "SKIP: this CPU lacks AES-NI/PCLMULQDQ\n");
        return 77;
    }
    for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
        if (!hwkey_bulk_impl_available(impls[i])) {
            fprintf(stderr, "NOTE: this CPU lacks the %s core; not tested here\n",
                    hwkey_bulk_impl_name(impls[i]));
            continue;
        }
        impl_under_test = impls[i];
        failed += _cmocka_run_group_tests(hwkey_bulk_impl_name(impls[i]), tests,
                                          sizeof(tests) / sizeof(tests[0]), NULL, NULL);
    }
    impl_under_test = HWKEY_BULK_IMPL_AESNI;
    failed += cmocka_run_group_tests_name("mixed cores", mixed, NULL, NULL);
    return failed != 0;
}
