/*
 * RFC 7512 URI parsing of the pkcs11 backend: a table of valid URIs with the
 * fields they must yield, and of malformed ones with the reason and the text
 * that must reach the error queue.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>

#include "backend/pkcs11/p11_internal.h"
#include "util/error.h"

static const struct {
    const char *uri;
    const char *token, *object, *serial, *manufacturer, *model, *pin_value, *pin_source,
        *module_path;
    const char *id; /* bytes, with id_len */
    size_t id_len;
    long slot_id; /* -1: none */
    long klass;   /* -1: none */
} valid[] = {
    {.uri = "pkcs11:", .slot_id = -1, .klass = -1},
    {.uri = "pkcs11:token=hwkey-test;object=web",
     .token = "hwkey-test",
     .object = "web",
     .slot_id = -1,
     .klass = -1},
    {.uri = "pkcs11:token=My%20Token;object=a%2Fb%3Bc",
     .token = "My Token",
     .object = "a/b;c",
     .slot_id = -1,
     .klass = -1},
    {.uri = "pkcs11:id=%01%02%ff", .id = "\x01\x02\xff", .id_len = 3, .slot_id = -1, .klass = -1},
    {.uri = "pkcs11:id=%00", .id = "\x00", .id_len = 1, .slot_id = -1, .klass = -1},
    {.uri = "pkcs11:slot-id=5;type=private", .slot_id = 5, .klass = CKO_PRIVATE_KEY},
    {.uri = "pkcs11:type=cert", .slot_id = -1, .klass = CKO_CERTIFICATE},
    {.uri = "pkcs11:type=public", .slot_id = -1, .klass = CKO_PUBLIC_KEY},
    {.uri = "pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2;serial=a79569cfe92d607a",
     .manufacturer = "SoftHSM project",
     .model = "SoftHSM v2",
     .serial = "a79569cfe92d607a",
     .slot_id = -1,
     .klass = -1},
    {.uri = "pkcs11:object=k?pin-value=12%2034",
     .object = "k",
     .pin_value = "12 34",
     .slot_id = -1,
     .klass = -1},
    {.uri = "pkcs11:object=k?pin-source=file:/etc/pin&module-path=/usr/lib/softhsm/libsofthsm2.so",
     .object = "k",
     .pin_source = "file:/etc/pin",
     .module_path = "/usr/lib/softhsm/libsofthsm2.so",
     .slot_id = -1,
     .klass = -1},
    /* RFC 7512 §2.3: vendor attributes (x-) are ignored. */
    {.uri = "pkcs11:object=k;x-vendor=1?x-other=2", .object = "k", .slot_id = -1, .klass = -1},
};

static const struct {
    const char *uri;
    const char *text; /* must appear in the error's text */
} malformed[] = {
    {"http://example.com/", "does not start with \"pkcs11:\""},
    {"pkcs11", "does not start with \"pkcs11:\""},
    {"pkcs11:id=%zz", "encoding"},
    {"pkcs11:id=%4", "encoding"},
    {"pkcs11:slot-id=abc", "syntax"},
    {"pkcs11:foo=bar", "unknown URI path attribute \"foo\""},
    {"pkcs11:object=a?foo=1", "unknown URI query attribute \"foo\""},
    {"pkcs11:object=a;object=b", "\"object\" is given twice"},
    {"pkcs11:token=a;id=%01;token=b", "\"token\" is given twice"},
    {"pkcs11:object=a?pin-value=1&pin-value=2", "\"pin-value\" is given twice"},
    {"pkcs11:object=a?pin-source=file:/x&pin-value=1", "both pin-value and pin-source"},
    {"pkcs11:type=bogus", "type=\"bogus\" is not one of"},
    {"pkcs11:object", "has no '='"},
    {"pkcs11:object=a;;id=%01", "empty attribute"},
};

static void test_valid(void **state)
{
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        HWKEY_P11_URI *u = NULL;

        if (!hwkey_p11_uri_parse(valid[i].uri, strlen(valid[i].uri), &u)) {
            ERR_print_errors_fp(stderr);
            fail_msg("rejected valid URI %s", valid[i].uri);
        }
#define CHECK_STR(f)                                                                               \
    if (valid[i].f == NULL)                                                                        \
        assert_null(u->f);                                                                         \
    else                                                                                           \
        assert_string_equal(u->f, valid[i].f)
        CHECK_STR(token);
        CHECK_STR(object);
        CHECK_STR(serial);
        CHECK_STR(manufacturer);
        CHECK_STR(model);
        CHECK_STR(pin_value);
        CHECK_STR(pin_source);
        CHECK_STR(module_path);
        assert_int_equal(u->has_id, valid[i].id != NULL);
        if (valid[i].id != NULL) {
            assert_int_equal(u->id_len, valid[i].id_len);
            assert_memory_equal(u->id, valid[i].id, valid[i].id_len);
        }
        assert_int_equal(u->has_slot_id, valid[i].slot_id >= 0);
        if (valid[i].slot_id >= 0)
            assert_int_equal(u->slot_id, valid[i].slot_id);
        assert_int_equal(u->has_class, valid[i].klass >= 0);
        if (valid[i].klass >= 0)
            assert_int_equal(u->klass, valid[i].klass);
        hwkey_p11_uri_free(u);
    }
}

static void test_malformed(void **state)
{
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        HWKEY_P11_URI *u = (HWKEY_P11_URI *)1;
        const char *data = NULL;
        unsigned long e;
        int flags = 0;

        ERR_clear_error();
        if (hwkey_p11_uri_parse(malformed[i].uri, strlen(malformed[i].uri), &u))
            fail_msg("accepted malformed URI %s", malformed[i].uri);
        assert_null(u);
        e = ERR_peek_last_error_data(&data, &flags);
        assert_int_equal(ERR_GET_REASON(e), HWKEY_R_INVALID_URI);
        if (data == NULL || strstr(data, malformed[i].text) == NULL)
            fail_msg("%s: error text \"%s\" lacks \"%s\"", malformed[i].uri,
                     data != NULL ? data : "", malformed[i].text);
        ERR_clear_error();
    }
}

static void test_embedded_nul_and_length(void **state)
{
    HWKEY_P11_URI *u = NULL;
    char big[5000];

    assert_int_equal(hwkey_p11_uri_parse("pkcs11:object=a\0b", 17, &u), 0);
    memset(big, 'a', sizeof(big));
    memcpy(big, "pkcs11:object=", 14);
    assert_int_equal(hwkey_p11_uri_parse(big, sizeof(big), &u), 0);
    assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), HWKEY_R_INVALID_URI);
    ERR_clear_error();
}

/* The URI of a generated key parses back to the same token, id, label and type. */
static void test_format_round_trip(void **state)
{
    CK_TOKEN_INFO ti;
    HWKEY_P11_URI *base = NULL, *u = NULL;
    const unsigned char id[] = {0x00, 0xab, 0x3b};
    char *text;

    memset(&ti, ' ', sizeof(ti));
    memcpy(ti.label, "my token", 8);
    memcpy(ti.serialNumber, "1234", 4);
    assert_true(hwkey_p11_uri_parse("pkcs11:token=x?pin-source=file:/p", 33, &base));
    text = hwkey_p11_uri_for_object(&ti, id, sizeof(id), "web;1", CKO_PRIVATE_KEY, base);
    assert_non_null(text);
    assert_true(hwkey_p11_uri_parse(text, strlen(text), &u));
    assert_string_equal(u->token, "my token");
    assert_string_equal(u->serial, "1234");
    assert_string_equal(u->object, "web;1");
    assert_string_equal(u->pin_source, "file:/p");
    assert_null(u->pin_value);
    assert_int_equal(u->id_len, sizeof(id));
    assert_memory_equal(u->id, id, sizeof(id));
    assert_int_equal(u->klass, CKO_PRIVATE_KEY);
    OPENSSL_free(text);
    hwkey_p11_uri_free(u);
    hwkey_p11_uri_free(base);
}

static void test_quirks(void **state)
{
    unsigned int q = 0;

    assert_true(hwkey_p11_quirks_parse("no-session-callbacks,no-operation-state", &q));
    assert_int_equal(q, HWKEY_P11_QUIRK_NO_SESSION_CALLBACKS | HWKEY_P11_QUIRK_NO_OPERATION_STATE);
    assert_true(hwkey_p11_quirks_parse("pin-user-password, single-part-only", &q));
    assert_int_equal(q, HWKEY_P11_QUIRK_PIN_USER_PASSWORD | HWKEY_P11_QUIRK_SINGLE_PART_ONLY);
    assert_true(hwkey_p11_quirks_parse(NULL, &q));
    assert_int_equal(q, 0);
    assert_false(hwkey_p11_quirks_parse("no-session-callbacks,bogus", &q));
    assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), HWKEY_R_CONFIG_INVALID);
    ERR_clear_error();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_embedded_nul_and_length),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_quirks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
