/* util/secret.c: reading PINs, auth values and passphrases from files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "util/secret.h"

enum { WHOLE, LINE };

static const struct {
    const char *content; /* NULL: the file does not exist */
    size_t len;
    int mode;
    size_t min; /* WHOLE only */
    size_t max;
    const char *want;  /* NULL: must fail */
    size_t want_len;   /* 0: strlen(want) */
    const char *error; /* a part of the error text when it fails */
} cases[] = {
    {.content = "s3cret", .len = 6, .mode = WHOLE, .min = 1, .max = 16, .want = "s3cret"},
    {.content = "s3cret\n", .len = 7, .mode = WHOLE, .min = 1, .max = 16, .want = "s3cret"},
    {.content = "s3cret\r\n", .len = 8, .mode = WHOLE, .min = 1, .max = 16, .want = "s3cret"},
    /* only one trailing newline goes: an auth value may end in one */
    {.content = "s3cret\n\n", .len = 8, .mode = WHOLE, .min = 1, .max = 16, .want = "s3cret\n"},
    /* bytes are bytes: a NUL inside an auth value is kept */
    {.content = "a\0b",
     .len = 3,
     .mode = WHOLE,
     .min = 1,
     .max = 16,
     .want = "a\0b",
     .want_len = 3},
    {.content = "", .len = 0, .mode = WHOLE, .min = 1, .max = 16, .error = "must hold 1..16 bytes"},
    {.content = "\n",
     .len = 1,
     .mode = WHOLE,
     .min = 1,
     .max = 16,
     .error = "must hold 1..16 bytes"},
    {.content = "0123456789abcdefX",
     .len = 17,
     .mode = WHOLE,
     .min = 1,
     .max = 16,
     .error = "must hold 1..16 bytes"},
    {.content = "0123456789abcdef\n",
     .len = 17,
     .mode = WHOLE,
     .min = 1,
     .max = 16,
     .want = "0123456789abcdef"},
    {.content = NULL, .mode = WHOLE, .min = 1, .max = 16, .error = "cannot open test file"},
    /* min 0: an empty file is an explicit empty value (hwkey --auth-file) */
    {.content = "", .len = 0, .mode = WHOLE, .min = 0, .max = 16, .want = ""},
    {.content = "\n", .len = 1, .mode = WHOLE, .min = 0, .max = 16, .want = ""},
    {.content = "pass\nsecond line", .len = 16, .mode = LINE, .max = 16, .want = "pass"},
    {.content = "pass\r\n", .len = 6, .mode = LINE, .max = 16, .want = "pass"},
    {.content = "", .len = 0, .mode = LINE, .max = 16, .want = ""},
    {.content = "0123456789abcdefX\n",
     .len = 18,
     .mode = LINE,
     .max = 16,
     .error = "first line longer than 16 bytes"},
    {.content = NULL, .mode = LINE, .max = 16, .error = "cannot open test file"},
};

static char *last_error(void)
{
    const char *data = NULL;
    int flags = 0;
    unsigned long e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags);
    char *copy = e != 0 && (flags & ERR_TXT_STRING) ? strdup(data) : strdup("");

    ERR_clear_error();
    return copy;
}

static void table(void **state)
{
    char dir[] = "/tmp/hwkey-test-secret.XXXXXX";
    char path[128];

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/secret", dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        HWKEY_SECRET *s;
        FILE *f;

        unlink(path);
        if (cases[i].content != NULL) {
            assert_non_null(f = fopen(path, "wb"));
            assert_int_equal(fwrite(cases[i].content, 1, cases[i].len, f), cases[i].len);
            fclose(f);
        }
        s = cases[i].mode == WHOLE
                ? hwkey_secret_read_file(path, cases[i].min, cases[i].max, "test file")
                : hwkey_secret_read_line(path, cases[i].max, "test file");
        if (cases[i].want == NULL) {
            char *err = last_error();

            if (s != NULL || strstr(err, cases[i].error) == NULL)
                fail_msg("case %zu: expected an error with \"%s\", got \"%s\"", i, cases[i].error,
                         err);
            assert_non_null(strstr(err, path)); /* the error names the file */
            free(err);
            continue;
        }
        if (s == NULL)
            fail_msg("case %zu: failed: %s", i, last_error());
        {
            size_t wlen = cases[i].want_len != 0 ? cases[i].want_len : strlen(cases[i].want);

            assert_int_equal(s->len, wlen);
            assert_memory_equal(s->p, cases[i].want, wlen);
            /* NUL-terminated, and the stripped newline bytes are wiped */
            for (size_t k = wlen; k < cases[i].len && k <= cases[i].max; k++)
                assert_int_equal(s->p[k], 0);
            assert_int_equal(s->p[wlen], 0);
        }
        hwkey_secret_free(s);
    }
    unlink(path);
    rmdir(dir);
}

static void from_bytes(void **state)
{
    HWKEY_SECRET *s = hwkey_secret_from_bytes("pin\0x", 5);

    (void)state;
    assert_non_null(s);
    assert_int_equal(s->len, 5);
    assert_memory_equal(s->p, "pin\0x", 5);
    assert_int_equal(s->p[5], 0);
    hwkey_secret_free(s);
    hwkey_secret_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(table), cmocka_unit_test(from_bytes)};

    return cmocka_run_group_tests(tests, NULL, NULL);
}
