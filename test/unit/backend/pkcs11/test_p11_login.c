/*
 * Login policy of the pkcs11 backend on a real SoftHSM token, seen through a
 * wrapped function list that counts C_Login calls and can add
 * CKF_USER_PIN_FINAL_TRY / CKF_USER_PIN_LOCKED to the token's flags: a PIN
 * the token rejected is never sent again, a token near or at lock-out gets
 * no login attempt at all, and each failure carries its reason.
 */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/err.h>

#include "backend/pkcs11/p11_internal.h"
#include "../../fakes/p11_test_token.h"
#include "util/error.h"
#include "util/secmem.h"

static CK_FUNCTION_LIST *real;
static CK_FUNCTION_LIST wrapped;
static unsigned long logins;
static CK_FLAGS extra_flags;

static CK_RV counting_login(CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR *pin, CK_ULONG len)
{
    logins++;
    return real->C_Login(s, u, pin, len);
}

static CK_RV flagging_token_info(CK_SLOT_ID slot, CK_TOKEN_INFO *ti)
{
    CK_RV rv = real->C_GetTokenInfo(slot, ti);

    ti->flags |= extra_flags;
    return rv;
}

static HWKEY_DEVICE *dev;
static HWKEY_P11_TOKEN *tok;
static CK_SESSION_HANDLE sess;
static uint64_t epoch;

static int setup(void **state)
{
    CK_C_GetFunctionList get;
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    HWKEY_CONFIG cfg = {0};
    HWKEY_P11_MODULE *mod;
    void *dl;

    if (!p11_test_token_setup("false"))
        exit(77);
    if ((dl = dlopen(P11_TEST_MODULE, RTLD_NOW)) == NULL ||
        (get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) == NULL ||
        get(&real) != CKR_OK || real->C_Initialize(&args) != CKR_OK)
        return -1;
    wrapped = *real;
    wrapped.C_Login = counting_login;
    wrapped.C_GetTokenInfo = flagging_token_info;
    if ((dev = hwkey_pkcs11_backend.open(&cfg)) == NULL ||
        (mod = hwkey_p11_module_adopt((HWKEY_P11_DEVICE *)dev, "wrapped-softhsm", &wrapped)) ==
            NULL ||
        (tok = hwkey_p11_token_find(mod, NULL)) == NULL ||
        !hwkey_p11_session_get(tok, &sess, &epoch))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    hwkey_p11_session_put(tok, sess, epoch, 0);
    hwkey_pkcs11_backend.close(dev);
    return 0;
}

static void logout(void)
{
    real->C_Logout(sess);
    tok->logged_in = 0;
}

/* Login must fail with reason and text; returns the C_Login calls it made. */
static unsigned long expect_fail(const HWKEY_P11_PINSRC *src, int reason, const char *text)
{
    unsigned long before = logins;
    const char *data = NULL;
    int flags = 0;
    unsigned long e;

    ERR_clear_error();
    assert_false(hwkey_p11_login(tok, sess, src));
    assert_false(tok->logged_in);
    e = ERR_peek_last_error_data(&data, &flags);
    assert_int_equal(ERR_GET_REASON(e), reason);
    if (data == NULL || strstr(data, text) == NULL)
        fail_msg("error text \"%s\" lacks \"%s\"", data != NULL ? data : "", text);
    ERR_clear_error();
    return logins - before;
}

static HWKEY_P11_URI *uri_of(const char *s)
{
    HWKEY_P11_URI *u = NULL;

    assert_true(hwkey_p11_uri_parse(s, strlen(s), &u));
    return u;
}

static void test_no_pin(void **state)
{
    HWKEY_P11_PINSRC src = {0};

    assert_int_equal(expect_fail(&src, HWKEY_R_AUTH_FAILED, "needs a PIN"), 0);
}

static void test_final_try_and_locked_are_refused(void **state)
{
    HWKEY_P11_URI *u = uri_of("pkcs11:?pin-value=1234");
    HWKEY_P11_PINSRC src = {.uri = u};

    extra_flags = CKF_USER_PIN_FINAL_TRY;
    assert_int_equal(expect_fail(&src, HWKEY_R_PIN_LOCKED, "CKF_USER_PIN_FINAL_TRY"), 0);
    extra_flags = CKF_USER_PIN_LOCKED;
    assert_int_equal(expect_fail(&src, HWKEY_R_PIN_LOCKED, "CKF_USER_PIN_LOCKED"), 0);
    extra_flags = 0;
    hwkey_p11_uri_free(u);
}

static void test_wrong_pin_sent_once(void **state)
{
    HWKEY_P11_URI *u = uri_of("pkcs11:?pin-value=9999");
    HWKEY_P11_PINSRC src = {.uri = u};

    assert_int_equal(expect_fail(&src, HWKEY_R_AUTH_FAILED, "CKR_PIN_INCORRECT"), 1);
    assert_int_equal(expect_fail(&src, HWKEY_R_AUTH_FAILED, "already rejected"), 0);
    assert_int_equal(expect_fail(&src, HWKEY_R_AUTH_FAILED, "already rejected"), 0);
    hwkey_p11_uri_free(u);
}

static void test_quirk_user_password(void **state)
{
    HWKEY_P11_URI *u = uri_of("pkcs11:?pin-value=1234");
    HWKEY_P11_PINSRC src = {.uri = u, .quirks = HWKEY_P11_QUIRK_PIN_USER_PASSWORD};

    assert_int_equal(expect_fail(&src, HWKEY_R_AUTH_FAILED, "user:password"), 0);
    hwkey_p11_uri_free(u);
}

static int cb_calls;
static int pin_cb(char *pass, size_t size, size_t *len, const OSSL_PARAM params[], void *arg)
{
    const char *pin = arg;

    cb_calls++;
    *len = strlen(pin);
    memcpy(pass, pin, *len);
    return 1;
}

static void test_callback_then_pin_source(void **state)
{
    char path[256];
    FILE *f;
    HWKEY_P11_PINSRC cb = {.pw_cb = pin_cb, .pw_arg = "0000"};
    HWKEY_P11_PINSRC file = {.cfg_pin_source = path, .pw_cb = pin_cb, .pw_arg = "0000"};
    unsigned long before;

    assert_int_equal(expect_fail(&cb, HWKEY_R_AUTH_FAILED, "CKR_PIN_INCORRECT"), 1);
    assert_int_equal(cb_calls, 1);
    /* The configured pin-source wins over the callback. */
    snprintf(path, sizeof(path), "file:%s/pin", p11_test_dir);
    assert_non_null(f = fopen(path + 5, "w"));
    fputs("1234\n", f);
    fclose(f);
    before = logins;
    assert_true(hwkey_p11_login(tok, sess, &file));
    assert_int_equal(logins - before, 1);
    assert_int_equal(cb_calls, 1);
    assert_true(tok->logged_in);
    assert_string_equal(tok->pin, "1234");
    /* Logged in: no further C_Login. */
    assert_true(hwkey_p11_login(tok, sess, &file));
    assert_int_equal(logins - before, 1);
    /* After a logout (as after fork), the remembered PIN logs in with no source. */
    logout();
    {
        HWKEY_P11_PINSRC none = {0};

        assert_true(hwkey_p11_login(tok, sess, &none));
        assert_int_equal(logins - before, 2);
    }
}

static void test_pin_sources(void **state)
{
    char path[256], *pin;
    FILE *f;

    snprintf(path, sizeof(path), "%s/pin2", p11_test_dir);
    assert_non_null(f = fopen(path, "w"));
    fputs("12 34\r\nsecond line\n", f);
    fclose(f);
    assert_non_null(pin = hwkey_p11_pin_from_source(path));
    assert_string_equal(pin, "12 34");
    hwkey_secmem_free(pin);
    setenv("HWKEY_TEST_PIN_VAR", "5678", 1);
    assert_non_null(pin = hwkey_p11_pin_from_source("env:HWKEY_TEST_PIN_VAR"));
    assert_string_equal(pin, "5678");
    hwkey_secmem_free(pin);
    assert_null(hwkey_p11_pin_from_source("env:HWKEY_TEST_NO_SUCH_VAR"));
    assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), HWKEY_R_AUTH_FAILED);
    assert_null(hwkey_p11_pin_from_source("ldap:whatever"));
    assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), HWKEY_R_CONFIG_INVALID);
    assert_null(hwkey_p11_pin_from_source("file:/nonexistent/pin"));
    assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), HWKEY_R_AUTH_FAILED);
    ERR_clear_error();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_pin),
        cmocka_unit_test(test_final_try_and_locked_are_refused),
        cmocka_unit_test(test_wrong_pin_sent_once),
        cmocka_unit_test(test_quirk_user_password),
        cmocka_unit_test(test_callback_then_pin_source),
        cmocka_unit_test(test_pin_sources),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
