/*
 * HWKEY DATA KEY file (util/datakey_file.c): round trips, the encoder's
 * refusals, and a table of corrupt inputs built by hand that must each be
 * rejected with exactly one HWKEY_R_KEY_FILE_INVALID.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "util/datakey_file.h"
#include "util/error.h"

static const char good_uri[] = "pkcs11:token=hwkey-test;id=%01%02;object=kek;type=secret-key"
                               "?module-path=/usr/lib/softhsm/libsofthsm2.so";

static unsigned char wrapped40[HWKEY_DATAKEY_WRAPPED_LEN];

static HWKEY_DATAKEY_FILE sample(unsigned long mech)
{
    HWKEY_DATAKEY_FILE f = {
        .version = HWKEY_DATAKEY_FILE_VERSION,
        .kek_uri = (char *)good_uri,
        .mechanism = mech,
        .wrapped = wrapped40,
        .wrapped_len = sizeof(wrapped40),
    };
    for (size_t i = 0; i < sizeof(wrapped40); i++)
        wrapped40[i] = (unsigned char)(0xa5 ^ (i * 13));
    return f;
}

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
    HWKEY_DATAKEY_FILE f;

    ERR_clear_error();
    assert_int_equal(hwkey_datakey_file_decode(der, len, &f), 0);
    assert_null(f.kek_uri);
    assert_null(f.wrapped);
    assert_one_invalid_error();
}

/* --- a tiny DER writer, so inputs the encoder refuses can be built --------- */

static size_t put_tlv(unsigned char *out, unsigned char tag, const void *val, size_t len)
{
    size_t n = 0;

    out[n++] = tag;
    if (len < 0x80) {
        out[n++] = (unsigned char)len;
    } else if (len < 0x100) {
        out[n++] = 0x81;
        out[n++] = (unsigned char)len;
    } else {
        out[n++] = 0x82;
        out[n++] = (unsigned char)(len >> 8);
        out[n++] = (unsigned char)len;
    }
    memcpy(out + n, val, len);
    return n + len;
}

/* Non-negative integers only, minimal DER. */
static size_t put_uint(unsigned char *out, unsigned long v)
{
    unsigned char b[9];
    size_t n = 0;

    do {
        b[8 - n++] = (unsigned char)v;
        v >>= 8;
    } while (v != 0);
    if (b[9 - n] & 0x80)
        b[8 - n++] = 0;
    return put_tlv(out, 0x02, b + 9 - n, n);
}

typedef struct {
    const char *name;
    unsigned char version_tag; /* 0x02 */
    long version;              /* -1: the INTEGER -1 */
    unsigned char uri_tag;     /* 0x0c UTF8String */
    const char *uri;
    size_t uri_len; /* 0: strlen(uri) */
    unsigned long mech;
    size_t wrapped_len;
    int omit_wrapped;
    int trailing;
} CASE;

static size_t build(const CASE *c, unsigned char *out)
{
    static unsigned char body[8192];
    unsigned char wrapped[64] = {0};
    size_t n = 0, len;

    if (c->version < 0) {
        n += put_tlv(body + n, c->version_tag, "\xff", 1);
    } else {
        size_t at = n;

        n += put_uint(body + n, (unsigned long)c->version);
        body[at] = c->version_tag;
    }
    n += put_tlv(body + n, c->uri_tag, c->uri, c->uri_len != 0 ? c->uri_len : strlen(c->uri));
    n += put_uint(body + n, c->mech);
    if (!c->omit_wrapped)
        n += put_tlv(body + n, 0x04, wrapped, c->wrapped_len);
    len = put_tlv(out, 0x30, body, n);
    if (c->trailing)
        out[len++] = 0x00;
    return len;
}

/* --- tests ------------------------------------------------------------------- */

static void test_roundtrip(void **state)
{
    static const unsigned long mechs[] = {HWKEY_DATAKEY_MECH_AES_KEY_WRAP_PAD,
                                          HWKEY_DATAKEY_MECH_AES_KEY_WRAP};
    (void)state;
    for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
        HWKEY_DATAKEY_FILE in = sample(mechs[i]), out;
        unsigned char *der = NULL;
        size_t len = 0;

        assert_int_equal(hwkey_datakey_file_encode(&in, &der, &len), 1);
        assert_true(len > sizeof(good_uri) + HWKEY_DATAKEY_WRAPPED_LEN);
        assert_int_equal(hwkey_datakey_file_decode(der, len, &out), 1);
        assert_int_equal(out.version, 1);
        assert_string_equal(out.kek_uri, good_uri);
        assert_int_equal(out.mechanism, mechs[i]);
        assert_int_equal(out.wrapped_len, HWKEY_DATAKEY_WRAPPED_LEN);
        assert_memory_equal(out.wrapped, wrapped40, HWKEY_DATAKEY_WRAPPED_LEN);
        hwkey_datakey_file_clear(&out);
        assert_null(out.kek_uri);
        OPENSSL_free(der);
    }
    assert_int_equal(ERR_peek_error(), 0);
}

/* The hand-made writer agrees with the encoder, so the corrupt table tests the decoder. */
static void test_builder_matches_encoder(void **state)
{
    HWKEY_DATAKEY_FILE in = sample(HWKEY_DATAKEY_MECH_AES_KEY_WRAP_PAD);
    const CASE c = {.version_tag = 0x02,
                    .version = 1,
                    .uri_tag = 0x0c,
                    .uri = good_uri,
                    .mech = 0x210a,
                    .wrapped_len = 40};
    unsigned char built[8192], *der = NULL;
    size_t len = 0, blen;

    (void)state;
    memset(wrapped40, 0, sizeof(wrapped40));
    in.wrapped = (unsigned char[HWKEY_DATAKEY_WRAPPED_LEN]){0};
    assert_int_equal(hwkey_datakey_file_encode(&in, &der, &len), 1);
    blen = build(&c, built);
    assert_int_equal(blen, len);
    assert_memory_equal(built, der, len);
    OPENSSL_free(der);
}

static void test_truncated_at_every_length(void **state)
{
    HWKEY_DATAKEY_FILE in = sample(HWKEY_DATAKEY_MECH_AES_KEY_WRAP_PAD);
    unsigned char *der = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(hwkey_datakey_file_encode(&in, &der, &len), 1);
    for (size_t cut = 0; cut < len; cut++)
        assert_decode_rejects(der, cut);
    OPENSSL_free(der);
}

static void test_corrupt_table(void **state)
{
    static char long_uri[HWKEY_DATAKEY_URI_MAX + 2];
    const CASE cases[] = {
        {.name = "version 2",
         .version_tag = 0x02,
         .version = 2,
         .uri_tag = 0x0c,
         .uri = good_uri,
         .mech = 0x210a,
         .wrapped_len = 40},
        {.name = "version 0",
         .version_tag = 0x02,
         .version = 0,
         .uri_tag = 0x0c,
         .uri = good_uri,
         .mech = 0x210a,
         .wrapped_len = 40},
        {.name = "version -1",
         .version_tag = 0x02,
         .version = -1,
         .uri_tag = 0x0c,
         .uri = good_uri,
         .mech = 0x210a,
         .wrapped_len = 40},
        {.name = "version as ENUMERATED",
         .version_tag = 0x0a,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = good_uri,
         .mech = 0x210a,
         .wrapped_len = 40},
        {.name = "uri as OCTET STRING",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x04,
         .uri = good_uri,
         .mech = 0x210a,
         .wrapped_len = 40},
        {.name = "not a pkcs11: uri",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = "handle:0x81000001",
         .mech = 0x210a,
         .wrapped_len = 40},
        {.name = "empty uri",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = "",
         .mech = 0x210a,
         .wrapped_len = 40},
        {.name = "uri with a NUL",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = "pkcs11:object=a\0b",
         .uri_len = 17,
         .mech = 0x210a,
         .wrapped_len = 40},
        {.name = "uri with a pin-value",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = "pkcs11:token=t;object=kek?pin-value=1234",
         .mech = 0x210a,
         .wrapped_len = 40},
        {.name = "uri too long",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = long_uri,
         .mech = 0x210a,
         .wrapped_len = 40},
        {.name = "unknown mechanism",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = good_uri,
         .mech = 0x1087 /* CKM_AES_GCM */,
         .wrapped_len = 40},
        {.name = "huge mechanism",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = good_uri,
         .mech = 0x100000000210aul,
         .wrapped_len = 40},
        {.name = "wrapped 39 bytes",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = good_uri,
         .mech = 0x210a,
         .wrapped_len = 39},
        {.name = "wrapped 48 bytes",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = good_uri,
         .mech = 0x2109,
         .wrapped_len = 48},
        {.name = "wrapped 0 bytes",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = good_uri,
         .mech = 0x2109,
         .wrapped_len = 0},
        {.name = "no wrapped field",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = good_uri,
         .mech = 0x2109,
         .omit_wrapped = 1},
        {.name = "trailing byte",
         .version_tag = 0x02,
         .version = 1,
         .uri_tag = 0x0c,
         .uri = good_uri,
         .mech = 0x210a,
         .wrapped_len = 40,
         .trailing = 1},
    };
    static unsigned char der[16384];

    (void)state;
    memcpy(long_uri, "pkcs11:object=", 14);
    memset(long_uri + 14, 'a', sizeof(long_uri) - 15);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = build(&cases[i], der);

        print_message("case: %s\n", cases[i].name);
        assert_decode_rejects(der, len);
    }
    /* Not DER at all, and an oversized input refused unparsed. */
    assert_decode_rejects((const unsigned char *)"-----BEGIN", 10);
    assert_decode_rejects(der, HWKEY_DATAKEY_FILE_MAX + 1);
    assert_decode_rejects(NULL, 0);
}

static void test_encoder_refuses(void **state)
{
    HWKEY_DATAKEY_FILE f = sample(HWKEY_DATAKEY_MECH_AES_KEY_WRAP_PAD);
    unsigned char *der = (unsigned char *)"x";
    size_t len = 1;

    (void)state;
    f.kek_uri = (char *)"pkcs11:token=t;object=kek?pin-value=1234";
    ERR_clear_error();
    assert_int_equal(hwkey_datakey_file_encode(&f, &der, &len), 0);
    assert_null(der);
    assert_int_equal(len, 0);
    assert_one_invalid_error();

    f = sample(HWKEY_DATAKEY_MECH_AES_KEY_WRAP_PAD);
    f.wrapped_len = 32; /* a key that was never wrapped */
    assert_int_equal(hwkey_datakey_file_encode(&f, &der, &len), 0);
    assert_one_invalid_error();

    f = sample(HWKEY_DATAKEY_MECH_AES_KEY_WRAP_PAD);
    f.kek_uri = NULL;
    assert_int_equal(hwkey_datakey_file_encode(&f, &der, &len), 0);
    assert_one_invalid_error();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_builder_matches_encoder),
        cmocka_unit_test(test_truncated_at_every_length),
        cmocka_unit_test(test_corrupt_table),
        cmocka_unit_test(test_encoder_refuses),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
