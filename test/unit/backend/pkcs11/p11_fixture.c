/* The pkcs11 backend over the fake module: see p11_fixture.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>

#include "p11_fixture.h"
#include "util/error.h"

HWKEY_DEVICE *fx_dev;
HWKEY_P11_MODULE *fx_mod;

int fx_setup(void **state)
{
    HWKEY_CONFIG cfg = {0};

    (void)state;
    fake_p11_reset();
    setenv("HWKEY_FAKE_P11_PIN", FAKE_P11_PIN, 1);
    cfg.pkcs11_module = FX_MODULE;
    cfg.pkcs11_pin_source = "env:HWKEY_FAKE_P11_PIN";
    if ((fx_dev = hwkey_pkcs11_backend.open(&cfg)) == NULL ||
        (fx_mod = hwkey_p11_module_adopt((HWKEY_P11_DEVICE *)fx_dev, FX_MODULE,
                                         fake_p11_functions())) == NULL)
        return -1;
    ERR_clear_error();
    return 0;
}

int fx_teardown(void **state)
{
    (void)state;
    hwkey_pkcs11_backend.close(fx_dev);
    fx_dev = NULL;
    fx_mod = NULL;
    fake_p11_reset();
    ERR_clear_error();
    return 0;
}

HWKEY_LOOKUP fx_load(const char *uri, HWKEY_BKEY **out)
{
    HWKEY_KEYREF ref = {HWKEY_REF_PKCS11_URI, (const unsigned char *)uri, strlen(uri)};

    *out = NULL;
    return hwkey_pkcs11_backend.key_load(fx_dev, &ref, NULL, NULL, out);
}

HWKEY_BKEY *fx_load_ok(const char *uri)
{
    HWKEY_BKEY *key = NULL;

    if (fx_load(uri, &key) != HWKEY_LOOKUP_FOUND) {
        ERR_print_errors_fp(stderr);
        fail_msg("loading %s failed", uri);
    }
    assert_int_equal(ERR_peek_error(), 0);
    return key;
}
