/* util/uri_redact.c: the one decision of what of a URI may leave the process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/crypto.h>

#include "util/uri_redact.h"

static const struct {
    const char *in, *out;
} cases[] = {
    {.in = "pkcs11:token=t;object=k", .out = "pkcs11:token=t;object=k"},
    {.in = "pkcs11:token=t;object=k?pin-value=1234", .out = "pkcs11:token=t;object=k"},
    {.in = "pkcs11:token=t?pin-value=1234&module-path=/m.so",
     .out = "pkcs11:token=t?module-path=/m.so"},
    {.in = "pkcs11:token=t?module-path=/m.so&pin-value=1234",
     .out = "pkcs11:token=t?module-path=/m.so"},
    {.in = "pkcs11:token=t?pin-source=file:/p", .out = "pkcs11:token=t?pin-source=file:/p"},
    {.in = "pkcs11:token=t;pin-value=1234;object=k", .out = "pkcs11:token=t;object=k"},
    {.in = "pkcs11:token=t?PIN-VALUE=1234", .out = "pkcs11:token=t"},
    {.in = "pkcs11:token=t?pin-value", .out = "pkcs11:token=t"},
    /* an attribute that only starts like pin-value stays */
    {.in = "pkcs11:token=t?pin-valueish=1", .out = "pkcs11:token=t?pin-valueish=1"},
    {.in = "pkcs11:?pin-value=1", .out = "pkcs11:"},
    {.in = "handle:0x81000001", .out = "handle:0x81000001"},
};

static void table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = 0;
        char *r = hwkey_uri_redact(cases[i].in, strlen(cases[i].in), &n);

        assert_non_null(r);
        assert_string_equal(r, cases[i].out);
        assert_int_equal(n, strlen(cases[i].out));
        assert_int_equal(hwkey_uri_has_pin_value(cases[i].in, strlen(cases[i].in)),
                         strcmp(cases[i].in, cases[i].out) != 0);
        OPENSSL_free(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(table)};

    return cmocka_run_group_tests(tests, NULL, NULL);
}
