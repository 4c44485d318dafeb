/* "sha256:0,2,7" parsing for keygen/datakey --pcr: a table of good and bad specs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/obj_mac.h>

#include "util/pcrsel.h"

static const struct {
    const char *spec;
    int ok;
    int md_nid;
    uint32_t mask;
    const char *why; /* part of the reason for a bad spec */
} cases[] = {
    {.spec = "sha256:0,2,7", .ok = 1, .md_nid = NID_sha256, .mask = 0x85},
    {.spec = "sha1:23", .ok = 1, .md_nid = NID_sha1, .mask = 1u << 23},
    {.spec = "sha384:0", .ok = 1, .md_nid = NID_sha384, .mask = 1},
    {.spec = "sha512:16,1", .ok = 1, .md_nid = NID_sha512, .mask = 0x10002},
    {.spec = "sha256", .why = "expected BANK:N"},
    {.spec = "", .why = "expected BANK:N"},
    {.spec = "md5:1", .why = "unknown PCR bank \"md5\""},
    {.spec = "SHA256x:1", .why = "unknown PCR bank"},
    {.spec = "sha256:", .why = "0..23"},
    {.spec = "sha256:24", .why = "0..23"},
    {.spec = "sha256:1,", .why = "0..23"},
    {.spec = "sha256:,1", .why = "0..23"},
    {.spec = "sha256: 1", .why = "0..23"},
    {.spec = "sha256:+1", .why = "0..23"},
    {.spec = "sha256:0x1", .why = "0..23"},
    {.spec = "sha256:0001", .why = "0..23"},
    {.spec = "sha256:1,7,1", .why = "PCR 1 is listed twice"},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        HWKEY_PCRSEL sel;
        char why[128] = "";
        int ok = hwkey_pcrsel_parse(cases[i].spec, &sel, why, sizeof(why));

        print_message("%s\n", cases[i].spec);
        assert_int_equal(ok, cases[i].ok);
        if (ok) {
            assert_int_equal(sel.md_nid, cases[i].md_nid);
            assert_int_equal(sel.mask, cases[i].mask);
        } else {
            assert_int_equal(sel.mask, 0);
            assert_non_null(strstr(why, cases[i].why));
        }
    }
}

static void test_list(void **state)
{
    char buf[3 * HWKEY_PCR_COUNT + 1];
    (void)state;

    hwkey_pcrsel_list(0x85, buf, sizeof(buf));
    assert_string_equal(buf, "0,2,7");
    hwkey_pcrsel_list(1u << 23, buf, sizeof(buf));
    assert_string_equal(buf, "23");
    hwkey_pcrsel_list(0xffffff, buf, sizeof(buf));
    assert_string_equal(buf, "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23");
    assert_string_equal(hwkey_pcrsel_bank_name(NID_sha256), "sha256");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
