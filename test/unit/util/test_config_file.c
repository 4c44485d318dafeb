/*
 * util/config_file.c: the CLI finds hwkey's provider section in an
 * openssl.cnf and takes its values, the environment still winning (issue 7.12).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>

#include "hwkey/hwkey.h"
#include "util/config.h"

static const char *const head = "openssl_conf = openssl_init\n"
                                "[openssl_init]\nproviders = provider_sect\n";

/* Writes text to a temporary file; returns its path (static buffer). */
static const char *write_cnf(const char *text)
{
    static char path[] = "/tmp/hwkey-test-config-XXXXXX";
    int fd;
    FILE *f;

    strcpy(path, "/tmp/hwkey-test-config-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static const struct {
    const char *name;
    const char *body; /* after head */
    const char *tcti; /* expected tpm2_tcti, NULL: none */
} cases[] = {
    {.name = "section named hwkey, module by path",
     .body = "[provider_sect]\ndefault = d\nhwkey = h\n[d]\nactivate = 1\n"
             "[h]\nmodule = /usr/lib/ossl-modules/hwkey.so\ntpm2-tcti = swtpm:port=1\n",
     .tcti = "swtpm:port=1"},
    {.name = "another name, found by module",
     .body = "[provider_sect]\ndefault = d\ntpmkeys = tk\n[d]\nactivate = 1\n"
             "[tk]\nmodule = /opt/x/hwkey.so\nactivate = 1\ntpm2-tcti = tabrmd:\n",
     .tcti = "tabrmd:"},
    {.name = "named hwkey, no module line (modules dir)",
     .body = "[provider_sect]\nhwkey = h\n[h]\ntpm2-tcti = device:/dev/tpm0\n",
     .tcti = "device:/dev/tpm0"},
    {.name = "named hwkey but another module: not ours",
     .body = "[provider_sect]\nhwkey = h\n[h]\nmodule = /x/tpm2.so\ntpm2-tcti = swtpm:\n",
     .tcti = NULL},
    {.name = "no hwkey section",
     .body = "[provider_sect]\ndefault = d\n[d]\nactivate = 1\n",
     .tcti = NULL},
};

static void sections(void **state)
{
    (void)state;
    unsetenv(HWKEY_ENV_TPM2_TCTI);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        HWKEY_CONFIG cfg;
        char text[1024];
        const char *path;

        memset(&cfg, 0, sizeof(cfg));
        snprintf(text, sizeof(text), "%s%s", head, cases[i].body);
        path = write_cnf(text);
        print_message("case: %s\n", cases[i].name);
        assert_int_equal(hwkey_config_load_file(&cfg, path, 1), 1);
        if (cases[i].tcti == NULL)
            assert_null(cfg.tpm2_tcti);
        else
            assert_string_equal(cfg.tpm2_tcti, cases[i].tcti);
        hwkey_config_clear(&cfg);
        unlink(path);
    }
}

static void environment_wins(void **state)
{
    HWKEY_CONFIG cfg;
    char text[512];
    const char *path;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    snprintf(text, sizeof(text),
             "%s[provider_sect]\nhwkey = h\n[h]\nmodule = hwkey.so\n"
             "tpm2-tcti = swtpm:port=1\npkcs11-module = /m.so\n",
             head);
    path = write_cnf(text);
    setenv(HWKEY_ENV_TPM2_TCTI, "swtpm:port=2", 1);
    assert_int_equal(hwkey_config_load_file(&cfg, path, 1), 1);
    assert_string_equal(cfg.tpm2_tcti, "swtpm:port=2");
    assert_string_equal(cfg.pkcs11_module, "/m.so");
    unsetenv(HWKEY_ENV_TPM2_TCTI);
    hwkey_config_clear(&cfg);
    unlink(path);
}

static void bad_input(void **state)
{
    HWKEY_CONFIG cfg;
    char text[512];
    const char *path;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    /* a missing file: an error only when it must exist (OPENSSL_CONF) */
    assert_int_equal(hwkey_config_load_file(&cfg, "/nonexistent/hwkey.cnf", 0), 1);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(hwkey_config_load_file(&cfg, "/nonexistent/hwkey.cnf", 1), 0);
    assert_int_not_equal(ERR_peek_error(), 0);
    ERR_clear_error();
    /* a value that does not parse */
    unsetenv(HWKEY_ENV_LOG_LEVEL);
    snprintf(text, sizeof(text), "%s[provider_sect]\nhwkey = h\n[h]\nlog-level = 9\n", head);
    path = write_cnf(text);
    assert_int_equal(hwkey_config_load_file(&cfg, path, 1), 0);
    assert_int_not_equal(ERR_peek_error(), 0);
    ERR_clear_error();
    unlink(path);
    /* a file that is not openssl.cnf syntax */
    path = write_cnf("[unterminated\n");
    assert_int_equal(hwkey_config_load_file(&cfg, path, 1), 0);
    ERR_clear_error();
    unlink(path);
    hwkey_config_clear(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sections),
        cmocka_unit_test(environment_wins),
        cmocka_unit_test(bad_input),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
