/*
 * Replays the checked-in fuzz corpora (test/fuzz/corpus/<harness>/) through
 * the harnesses' own entry points (test/fuzz/fuzz.h, built here with
 * HWKEY_FUZZ_REPLAY), so inputs that once crashed or leaked stay fixed in
 * every `make check`, with or without clang.  Files named ok-* must parse and
 * bad-* must be refused (the parsers' verdicts, checked directly), so a
 * parser that starts refusing everything fails here too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>

#include "../../fuzz/fuzz.h"
#include "backend/pkcs11/p11_internal.h"
#include "util/keyref.h"

typedef int (*entry_fn)(const uint8_t *data, size_t size);
typedef int (*verdict_fn)(const unsigned char *data, size_t size);

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int keyref_verdict(const unsigned char *data, size_t size)
{
    const char *uri;
    size_t uri_len;

    return hwkey_keyref_uri_parse(data, size, &uri, &uri_len);
}

static int p11_uri_verdict(const unsigned char *data, size_t size)
{
    HWKEY_P11_URI *u = NULL;
    int ok = hwkey_p11_uri_parse((const char *)data, size, &u);

    hwkey_p11_uri_free(u);
    ERR_clear_error();
    return ok;
}

/* Replays every file of corpus/<name>; returns how many there were. */
static int replay(const char *name, entry_fn entry, verdict_fn verdict)
{
    char dir[1024], path[2048];
    struct dirent *de;
    DIR *d;
    int n = 0;

    snprintf(dir, sizeof(dir), "%s/%s", FUZZ_CORPUS_DIR, name);
    d = opendir(dir);
    if (d == NULL)
        fail_msg("no corpus directory %s", dir);
    while ((de = readdir(d)) != NULL) {
        unsigned char *data;
        size_t len;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        data = read_file(path, &len);
        assert_int_equal(entry(data, len), 0);
        if (verdict != NULL && strncmp(de->d_name, "ok-", 3) == 0 && !verdict(data, len))
            fail_msg("%s: a valid input was refused", path);
        if (verdict != NULL && strncmp(de->d_name, "bad-", 4) == 0 && verdict(data, len))
            fail_msg("%s: an invalid input was accepted", path);
        free(data);
        n++;
    }
    closedir(d);
    ERR_clear_error();
    return n;
}

static void test_tss2_keyfile_corpus(void **state)
{
    (void)state;
    assert_true(replay("tss2_keyfile", hwkey_fuzz_tss2_keyfile, NULL) >= 3);
}

static void test_keyref_corpus(void **state)
{
    (void)state;
    assert_true(replay("keyref", hwkey_fuzz_keyref, keyref_verdict) >= 5);
}

static void test_p11_uri_corpus(void **state)
{
    (void)state;
    assert_true(replay("p11_uri", hwkey_fuzz_p11_uri, p11_uri_verdict) >= 5);
}

static int attest_verdict(const unsigned char *data, size_t size)
{
    return hwkey_fuzz_attest_verdict(data, size);
}

/* Real swtpm bundles: ok-* verify, bad-* (altered, other key, imported) are rejected. */
static void test_attest_corpus(void **state)
{
    (void)state;
    assert_true(replay("attest", hwkey_fuzz_attest, attest_verdict) >= 6);
}

static void test_decoder_corpus(void **state)
{
    (void)state;
    assert_true(replay("decoder", hwkey_fuzz_decoder, NULL) >= 4);
    hwkey_fuzz_decoder_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tss2_keyfile_corpus), cmocka_unit_test(test_keyref_corpus),
        cmocka_unit_test(test_p11_uri_corpus),      cmocka_unit_test(test_decoder_corpus),
        cmocka_unit_test(test_attest_corpus),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
