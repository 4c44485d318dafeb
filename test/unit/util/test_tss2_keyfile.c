/*
 * TSS2 PRIVATE KEY file: round trips, a table of corrupt inputs that must
 * each be rejected with exactly one HWKEY_R_KEY_FILE_INVALID, and a file
 * made by Debian's tpm2-openssl against swtpm.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "util/error.h"
#include "util/tss2_keyfile.h"

#ifndef TEST_DATA_DIR
#define TEST_DATA_DIR "test/unit/data"
#endif

/* --- helpers ------------------------------------------------------------- */

/* A TPM2B: 2-byte big-endian size, then n bytes of a pattern. */
static size_t make_tpm2b(unsigned char *buf, size_t n, unsigned char seed)
{
    buf[0] = (unsigned char)(n >> 8);
    buf[1] = (unsigned char)n;
    for (size_t i = 0; i < n; i++)
        buf[2 + i] = (unsigned char)(seed + i * 7);
    return n + 2;
}

static unsigned char pub_blob[2 + 86];
static unsigned char priv_blob[2 + 126];
static unsigned char secret_blob[2 + 32];

static HWKEY_TSS2_KEYFILE sample(HWKEY_TSS2_KEYTYPE type, int empty_auth, uint32_t parent)
{
    HWKEY_TSS2_KEYFILE kf = {
        .type = type,
        .empty_auth = empty_auth,
        .parent = parent,
        .pubkey = pub_blob,
        .pubkey_len = make_tpm2b(pub_blob, sizeof(pub_blob) - 2, 1),
        .privkey = priv_blob,
        .privkey_len = make_tpm2b(priv_blob, sizeof(priv_blob) - 2, 9),
    };
    if (type == HWKEY_TSS2_IMPORTABLE) {
        kf.secret = secret_blob;
        kf.secret_len = make_tpm2b(secret_blob, sizeof(secret_blob) - 2, 3);
    }
    return kf;
}

static void assert_same(const HWKEY_TSS2_KEYFILE *a, const HWKEY_TSS2_KEYFILE *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->empty_auth, b->empty_auth);
    assert_int_equal(a->parent, b->parent);
    assert_int_equal(a->pubkey_len, b->pubkey_len);
    assert_memory_equal(a->pubkey, b->pubkey, a->pubkey_len);
    assert_int_equal(a->privkey_len, b->privkey_len);
    assert_memory_equal(a->privkey, b->privkey, a->privkey_len);
    assert_int_equal(a->secret_len, b->secret_len);
    if (a->secret_len > 0)
        assert_memory_equal(a->secret, b->secret, a->secret_len);
    else
        assert_null(b->secret);
}

/* Exactly one error in the queue, ours, with the key-file reason. */
static void assert_one_invalid_error(void)
{
    unsigned long e = ERR_peek_last_error();

    assert_int_equal(ERR_GET_LIB(e), ERR_LIB_USER);
    assert_int_equal(ERR_GET_REASON(e), HWKEY_R_KEY_FILE_INVALID);
    assert_int_equal(ERR_get_error(), e);
    assert_int_equal(ERR_get_error(), 0);
}

static void assert_decode_rejects(const unsigned char *der, size_t len)
{
    HWKEY_TSS2_KEYFILE kf;

    ERR_clear_error();
    assert_int_equal(hwkey_tss2_keyfile_decode(der, len, &kf), 0);
    assert_null(kf.pubkey);
    assert_null(kf.privkey);
    assert_one_invalid_error();
}

/* Minimal DER writer for hand-made bad inputs the encoder refuses to make. */
typedef struct {
    unsigned char b[4096];
    size_t n;
} DERBUF;

static void der_tlv(DERBUF *d, unsigned char tag, const unsigned char *v, size_t len)
{
    d->b[d->n++] = tag;
    if (len < 0x80) {
        d->b[d->n++] = (unsigned char)len;
    } else {
        d->b[d->n++] = 0x82;
        d->b[d->n++] = (unsigned char)(len >> 8);
        d->b[d->n++] = (unsigned char)len;
    }
    memcpy(d->b + d->n, v, len);
    d->n += len;
}

static const unsigned char oid_loadable[] = {0x67, 0x81, 0x05, 0x0a, 0x01, 0x03};

/* SEQUENCE { loadable OID, INTEGER parent (raw bytes), [pubkey], [privkey] } */
static DERBUF hand_made(const unsigned char *parent, size_t parent_len, int with_pub, int with_priv)
{
    DERBUF body = {.n = 0}, out = {.n = 0};

    der_tlv(&body, 0x06, oid_loadable, sizeof(oid_loadable));
    der_tlv(&body, 0x02, parent, parent_len);
    if (with_pub)
        der_tlv(&body, 0x04, pub_blob, sizeof(pub_blob));
    if (with_priv)
        der_tlv(&body, 0x04, priv_blob, sizeof(priv_blob));
    der_tlv(&out, 0x30, body.b, body.n);
    return out;
}

static void encode_sample(unsigned char **der, size_t *len)
{
    HWKEY_TSS2_KEYFILE kf = sample(HWKEY_TSS2_LOADABLE, 1, 0x40000001);

    assert_int_equal(hwkey_tss2_keyfile_encode(&kf, der, len), 1);
}

/* --- round trips ----------------------------------------------------------- */

static void test_roundtrip_der(void **state)
{
    static const struct {
        HWKEY_TSS2_KEYTYPE type;
        int empty_auth;
        uint32_t parent;
    } cases[] = {
        {.type = HWKEY_TSS2_LOADABLE, .empty_auth = 1, .parent = 0x40000001},
        {.type = HWKEY_TSS2_LOADABLE, .empty_auth = 0, .parent = 0x81000001},
        {.type = HWKEY_TSS2_LOADABLE, .empty_auth = 0, .parent = 0xffffffff},
        {.type = HWKEY_TSS2_IMPORTABLE, .empty_auth = 1, .parent = 0x40000001},
        {.type = HWKEY_TSS2_SEALED, .empty_auth = 0, .parent = 0},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        HWKEY_TSS2_KEYFILE in = sample(cases[i].type, cases[i].empty_auth, cases[i].parent);
        HWKEY_TSS2_KEYFILE out;
        unsigned char *der = NULL;
        size_t len = 0;

        assert_int_equal(hwkey_tss2_keyfile_encode(&in, &der, &len), 1);
        assert_int_equal(der[0], 0x30);
        /* emptyAuth is explicit either way: tpm2-openssl reads "absent" as TRUE. */
        const unsigned char empty_auth[] = {0xa0, 0x03, 0x01, 0x01,
                                            cases[i].empty_auth ? 0xff : 0x00};
        assert_non_null(memmem(der, len, empty_auth, sizeof(empty_auth)));
        assert_int_equal(hwkey_tss2_keyfile_decode(der, len, &out), 1);
        assert_same(&in, &out);
        assert_int_equal(out.has_auth_policy, 0);
        hwkey_tss2_keyfile_clear(&out);
        assert_null(out.pubkey);
        OPENSSL_free(der);
    }
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_roundtrip_pem(void **state)
{
    HWKEY_TSS2_KEYFILE in = sample(HWKEY_TSS2_LOADABLE, 0, 0x81000001), out;
    unsigned char *der = NULL;
    size_t len = 0;
    char *text = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    (void)state;

    assert_non_null(bio);
    assert_int_equal(hwkey_tss2_keyfile_write_pem(bio, &in), 1);
    assert_true(BIO_get_mem_data(bio, &text) > 0);
    assert_memory_equal(text, "-----BEGIN TSS2 PRIVATE KEY-----\n", 33);
    assert_int_equal(hwkey_tss2_keyfile_read_der(bio, &der, &len), 1);
    assert_int_equal(hwkey_tss2_keyfile_decode(der, len, &out), 1);
    assert_same(&in, &out);
    hwkey_tss2_keyfile_clear(&out);
    OPENSSL_free(der);
    BIO_free(bio);
}

/* read_der on raw DER returns the same bytes. */
static void test_read_der_raw(void **state)
{
    unsigned char *der = NULL, *back = NULL;
    size_t len = 0, back_len = 0;
    BIO *bio;
    (void)state;

    encode_sample(&der, &len);
    bio = BIO_new_mem_buf(der, (int)len);
    assert_int_equal(hwkey_tss2_keyfile_read_der(bio, &back, &back_len), 1);
    assert_int_equal(back_len, len);
    assert_memory_equal(back, der, len);
    OPENSSL_free(back);
    OPENSSL_free(der);
    BIO_free(bio);
}

/* --- corrupt inputs --------------------------------------------------------- */

static void test_truncated_at_every_length(void **state)
{
    unsigned char *der = NULL;
    size_t len = 0;
    (void)state;

    encode_sample(&der, &len);
    for (size_t cut = 0; cut < len; cut++)
        assert_decode_rejects(der, cut);
    OPENSSL_free(der);
}

static void test_corrupt_table(void **state)
{
    unsigned char *good = NULL;
    size_t good_len = 0;
    (void)state;

    encode_sample(&good, &good_len);
    const unsigned char *oid_at = memmem(good, good_len, oid_loadable, sizeof(oid_loadable));
    assert_non_null(oid_at);
    size_t oid_last = (size_t)(oid_at - good) + sizeof(oid_loadable) - 1;

    enum {
        TRAILING,
        WRONG_OID,
        PUB_PREFIX,
        PRIV_PREFIX,
        BAD_BOOL
    } kinds[] = {TRAILING, WRONG_OID, PUB_PREFIX, PRIV_PREFIX, BAD_BOOL};

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        unsigned char buf[4096];
        size_t len = good_len;

        memcpy(buf, good, good_len);
        switch (kinds[i]) {
        case TRAILING:
            buf[len++] = 0x00;
            break;
        case WRONG_OID:
            buf[oid_last] = 0x09; /* 2.23.133.10.1.9 */
            break;
        case PUB_PREFIX:
        case PRIV_PREFIX: {
            const unsigned char *blob = kinds[i] == PUB_PREFIX ? pub_blob : priv_blob;
            unsigned char *at = memmem(buf, len, blob, 4);

            assert_non_null(at);
            at[1] ^= 0x01;
            break;
        }
        case BAD_BOOL: {
            /* emptyAuth [0] { BOOLEAN } -> [0] { INTEGER }, same length */
            static const unsigned char want[] = {0xa0, 0x03, 0x01, 0x01, 0xff};
            unsigned char *at = memmem(buf, len, want, sizeof(want));

            assert_non_null(at);
            at[2] = 0x02;
            at[4] = 0x01;
            break;
        }
        }
        assert_decode_rejects(buf, len);
    }
    OPENSSL_free(good);
}

static void test_hand_made_rejects(void **state)
{
    static const unsigned char owner[] = {0x40, 0x00, 0x00, 0x01};
    static const unsigned char too_big[] = {0x01, 0x00, 0x00, 0x00, 0x01};
    static const unsigned char negative[] = {0xc0, 0x00, 0x00, 0x01};
    DERBUF d;
    HWKEY_TSS2_KEYFILE kf;
    (void)state;

    sample(HWKEY_TSS2_LOADABLE, 0, 0); /* fills the blobs */
    d = hand_made(owner, sizeof(owner), 1, 1);
    ERR_clear_error();
    assert_int_equal(hwkey_tss2_keyfile_decode(d.b, d.n, &kf), 1); /* the builder is right */
    assert_int_equal(kf.parent, 0x40000001);
    assert_int_equal(kf.empty_auth, 0);
    hwkey_tss2_keyfile_clear(&kf);

    d = hand_made(too_big, sizeof(too_big), 1, 1);
    assert_decode_rejects(d.b, d.n);
    d = hand_made(negative, sizeof(negative), 1, 1);
    assert_decode_rejects(d.b, d.n);
    d = hand_made(owner, sizeof(owner), 1, 0);
    assert_decode_rejects(d.b, d.n);
    d = hand_made(owner, sizeof(owner), 0, 0);
    assert_decode_rejects(d.b, d.n);
}

/* policy [1]: steps survive a round trip in order; a malformed one is named. */
static void test_policy_roundtrip(void **state)
{
    static unsigned char pcr_params[] = {0x00, 0x02, 0xaa, 0xbb, 0x00, 0x00, 0x00,
                                         0x01, 0x00, 0x0b, 0x03, 0x80, 0x00, 0x00};
    HWKEY_TSS2_KEYFILE kf = sample(HWKEY_TSS2_SEALED, 0, 0x81000001), out;
    unsigned char *der = NULL, *p;
    size_t len = 0;
    (void)state;

    kf.policy[0] =
        (HWKEY_TSS2_POLICY){.cc = 0x17f, .params = pcr_params, .params_len = sizeof(pcr_params)};
    kf.policy[1] = (HWKEY_TSS2_POLICY){.cc = 0x16b};
    kf.policy_count = 2;
    assert_int_equal(hwkey_tss2_keyfile_encode(&kf, &der, &len), 1);
    assert_int_equal(hwkey_tss2_keyfile_decode(der, len, &out), 1);
    assert_same(&kf, &out);
    assert_int_equal(out.policy_count, 2);
    assert_int_equal(out.policy[0].cc, 0x17f);
    assert_int_equal(out.policy[0].params_len, sizeof(pcr_params));
    assert_memory_equal(out.policy[0].params, pcr_params, sizeof(pcr_params));
    assert_int_equal(out.policy[1].cc, 0x16b);
    assert_int_equal(out.policy[1].params_len, 0);
    assert_int_equal(out.has_auth_policy, 0);
    hwkey_tss2_keyfile_clear(&out);

    /* A command code that is not an INTEGER: [0] { INTEGER 0x017f } becomes a BOOLEAN. */
    p = memmem(der, len, "\xa0\x04\x02\x02\x01\x7f", 6);
    assert_non_null(p);
    p[2] = 0x01;
    assert_decode_rejects(der, len);
    OPENSSL_free(der);

    /* The most steps a file may hold (the encoder refuses more). */
    kf.policy_count = HWKEY_TSS2_POLICY_MAX;
    for (size_t i = 0; i < kf.policy_count; i++)
        kf.policy[i] = (HWKEY_TSS2_POLICY){.cc = 0x16b};
    assert_int_equal(hwkey_tss2_keyfile_encode(&kf, &der, &len), 1);
    assert_int_equal(hwkey_tss2_keyfile_decode(der, len, &out), 1);
    assert_int_equal(out.policy_count, HWKEY_TSS2_POLICY_MAX);
    hwkey_tss2_keyfile_clear(&out);
    OPENSSL_free(der);
}

static void test_oversized(void **state)
{
    size_t len = HWKEY_TSS2_KEYFILE_MAX + 1;
    unsigned char *big = calloc(1, len + 16);
    BIO *bio;
    unsigned char *der = NULL;
    size_t der_len = 0;
    (void)state;

    assert_non_null(big);
    /* A well-formed SEQUENCE header claiming exactly the rest of the buffer. */
    big[0] = 0x30;
    big[1] = 0x82;
    big[2] = (unsigned char)((len - 4) >> 8);
    big[3] = (unsigned char)(len - 4);
    assert_decode_rejects(big, len);

    bio = BIO_new_mem_buf(big, (int)len);
    ERR_clear_error();
    assert_int_equal(hwkey_tss2_keyfile_read_der(bio, &der, &der_len), 0);
    assert_null(der);
    assert_one_invalid_error();
    BIO_free(bio);

    /* The same oversized DER as PEM is refused too. */
    bio = BIO_new(BIO_s_mem());
    assert_true(PEM_write_bio(bio, "TSS2 PRIVATE KEY", "", big, (long)len) > 0);
    ERR_clear_error();
    assert_int_equal(hwkey_tss2_keyfile_read_der(bio, &der, &der_len), 0);
    assert_one_invalid_error();
    BIO_free(bio);
    free(big);
}

static void test_pem_rejects(void **state)
{
    static const char *const labels[] = {"RSA PRIVATE KEY", "TSS2 PRIVATE KEYS", "PRIVATE KEY"};
    unsigned char *good = NULL, *der = NULL;
    size_t good_len = 0, der_len = 0;
    (void)state;

    encode_sample(&good, &good_len);
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
        BIO *bio = BIO_new(BIO_s_mem());

        assert_int_equal(PEM_write_bio(bio, labels[i], "", good, (long)good_len) > 0, 1);
        ERR_clear_error();
        assert_int_equal(hwkey_tss2_keyfile_read_der(bio, &der, &der_len), 0);
        assert_null(der);
        assert_one_invalid_error();
        BIO_free(bio);
    }

    static const char *const broken[] = {
        "-----BEGIN TSS2 PRIVATE KEY-----\nnot base64 !!\n-----END TSS2 PRIVATE KEY-----\n",
        "-----BEGIN TSS2 PRIVATE KEY-----\nMIHw\n", /* no end line */
        "",                                         /* empty */
        "hello, not a key\n",                       /* neither PEM nor DER */
    };
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        BIO *bio = BIO_new_mem_buf(broken[i], -1);

        ERR_clear_error();
        assert_int_equal(hwkey_tss2_keyfile_read_der(bio, &der, &der_len), 0);
        assert_one_invalid_error();
        BIO_free(bio);
    }
    OPENSSL_free(good);
}

/* --- interop -------------------------------------------------------------- */

static void test_tpm2_openssl_file(void **state)
{
    BIO *bio = BIO_new_file(TEST_DATA_DIR "/tpm2-openssl-p256.pem", "r");
    unsigned char *der = NULL, *again = NULL;
    size_t len = 0, again_len = 0;
    HWKEY_TSS2_KEYFILE kf;
    (void)state;

    assert_non_null(bio);
    assert_int_equal(hwkey_tss2_keyfile_read_der(bio, &der, &len), 1);
    assert_int_equal(len, 243);
    assert_int_equal(hwkey_tss2_keyfile_decode(der, len, &kf), 1);
    assert_int_equal(kf.type, HWKEY_TSS2_LOADABLE);
    assert_int_equal(kf.empty_auth, 1);
    assert_int_equal(kf.parent, 0x40000001);
    assert_int_equal(kf.pubkey_len, 88);
    assert_int_equal(kf.privkey_len, 128);
    /* TPM2B_PUBLIC: size 0x56, then TPMT_PUBLIC type TPM2_ALG_ECC (0x0023). */
    assert_int_equal(kf.pubkey[0] << 8 | kf.pubkey[1], 86);
    assert_int_equal(kf.pubkey[2] << 8 | kf.pubkey[3], 0x0023);
    assert_null(kf.secret);
    assert_int_equal(kf.has_auth_policy, 0);

    /*
     * Re-encoding reproduces tpm2-openssl's bytes but one: tpm2-openssl 1.1
     * writes emptyAuth TRUE as 0x01 (BER), DER and we write 0xff.
     */
    assert_int_equal(hwkey_tss2_keyfile_encode(&kf, &again, &again_len), 1);
    assert_int_equal(again_len, len);
    assert_int_equal(der[15], 0x01);
    assert_int_equal(again[15], 0xff);
    again[15] = 0x01;
    assert_memory_equal(again, der, len);

    hwkey_tss2_keyfile_clear(&kf);
    OPENSSL_free(again);
    OPENSSL_free(der);
    BIO_free(bio);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_der),    cmocka_unit_test(test_roundtrip_pem),
        cmocka_unit_test(test_read_der_raw),     cmocka_unit_test(test_truncated_at_every_length),
        cmocka_unit_test(test_corrupt_table),    cmocka_unit_test(test_hand_made_rejects),
        cmocka_unit_test(test_policy_roundtrip), cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_pem_rejects),      cmocka_unit_test(test_tpm2_openssl_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
