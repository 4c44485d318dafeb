/*
 * Device loss and recovery of the pkcs11 backend, in-process, on a real
 * SoftHSM token seen through a fake module that wraps it (fake_module_*):
 * the fake can make one C_Sign answer a given CKR_ (a session or device
 * that went away between two calls) or make the whole device "away" (every
 * call, C_Initialize included, answers CKR_DEVICE_ERROR), and it leaves a
 * stale line in OpenSSL's error queue in every C_Initialize, as SoftHSM does
 * ("no such engine: rdrand").
 *   - each error of the recovery list, met once: the signature still
 *     succeeds (re-initialise, log in, re-find, retry once), nothing is left
 *     in the error queue, one log line
 *   - away: every signature fails in well under a second with exactly one
 *     error (DEVICE_UNREACHABLE, naming CKR_DEVICE_ERROR, not the stale
 *     line); re-initialisation attempts back off (100 ms doubling to 2 s);
 *     one "lost" log line
 *   - back: signing works again within 2 s, one "back" log line
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "backend/pkcs11/p11_internal.h"
#include "../../fakes/p11_test_token.h"
#include "util/error.h"

#define FAKE_PATH "/fake/p11-wrapper.so"

/* --- the fake module ------------------------------------------------------ */

static CK_FUNCTION_LIST *real;
static CK_FUNCTION_LIST fake;
static volatile int away;
static CK_RV sign_once_rv; /* answered by the next C_Sign, then cleared */
static unsigned long fake_inits;

static CK_RV fake_Initialize(CK_VOID_PTR args)
{
    fake_inits++;
    /* SoftHSM's own OpenSSL leaves this behind during its initialisation. */
    ERR_raise_data(ERR_LIB_USER, 99, "no such engine: rdrand (stale, from the module)");
    return away ? CKR_DEVICE_ERROR : real->C_Initialize(args);
}

static CK_RV fake_Finalize(CK_VOID_PTR r)
{
    return real->C_Finalize(r);
}

static CK_RV fake_Sign(CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR sig,
                       CK_ULONG_PTR sl)
{
    CK_RV rv = sign_once_rv;

    if (away)
        return CKR_DEVICE_ERROR;
    if (rv != CKR_OK) {
        sign_once_rv = CKR_OK;
        return rv;
    }
    return real->C_Sign(s, d, dl, sig, sl);
}

/* While away every call answers CKR_DEVICE_ERROR, as p11-kit-client does. */
#define AWAY_WRAP(name, params, args)                                                              \
    static CK_RV fake_##name params                                                                \
    {                                                                                              \
        return away ? CKR_DEVICE_ERROR : real->C_##name args;                                      \
    }
AWAY_WRAP(GetSlotList, (CK_BBOOL p, CK_SLOT_ID_PTR l, CK_ULONG_PTR n), (p, l, n))
AWAY_WRAP(GetTokenInfo, (CK_SLOT_ID s, CK_TOKEN_INFO_PTR i), (s, i))
AWAY_WRAP(OpenSession,
          (CK_SLOT_ID s, CK_FLAGS f, CK_VOID_PTR a, CK_NOTIFY n, CK_SESSION_HANDLE_PTR h),
          (s, f, a, n, h))
AWAY_WRAP(CloseSession, (CK_SESSION_HANDLE s), (s))
AWAY_WRAP(GetSessionInfo, (CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR i), (s, i))
AWAY_WRAP(Login, (CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR_PTR p, CK_ULONG l), (s, u, p, l))
AWAY_WRAP(FindObjectsInit, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n), (s, t, n))
AWAY_WRAP(SignInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE o), (s, m, o))

static void fake_module_make(void)
{
    fake = *real;
    fake.C_Initialize = fake_Initialize;
    fake.C_Finalize = fake_Finalize;
    fake.C_Sign = fake_Sign;
    fake.C_GetSlotList = fake_GetSlotList;
    fake.C_GetTokenInfo = fake_GetTokenInfo;
    fake.C_OpenSession = fake_OpenSession;
    fake.C_CloseSession = fake_CloseSession;
    fake.C_GetSessionInfo = fake_GetSessionInfo;
    fake.C_Login = fake_Login;
    fake.C_FindObjectsInit = fake_FindObjectsInit;
    fake.C_SignInit = fake_SignInit;
}

/* --- fixture --------------------------------------------------------------- */

static HWKEY_DEVICE *dev;
static HWKEY_P11_MODULE *mod;
static HWKEY_BKEY *key;
static EVP_PKEY *pub;

static int setup(void **state)
{
    HWKEY_CONFIG cfg = {0};
    HWKEY_KEYSPEC spec = {.alg = HWKEY_ALG_EC, .curve_nid = NID_X9_62_prime256v1};
    HWKEY_GENOPTS opts = {.uri = "pkcs11:token=hwkey-test;object=rec"};
    HWKEY_REFBLOB ref = {0};
    HWKEY_KEYREF kr;
    CK_C_GetFunctionList get;
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    void *dl;

    (void)state;
    if (!p11_test_token_setup("false"))
        exit(77);
    setenv("P11_TEST_PIN", "1234", 1);
    if ((dl = dlopen(P11_TEST_MODULE, RTLD_NOW)) == NULL ||
        (get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) == NULL ||
        get(&real) != CKR_OK || real->C_Initialize(&args) != CKR_OK)
        return -1;
    fake_module_make();
    cfg.pkcs11_module = FAKE_PATH;
    cfg.pkcs11_pin_source = "env:P11_TEST_PIN";
    if ((dev = hwkey_pkcs11_backend.open(&cfg)) == NULL ||
        (mod = hwkey_p11_module_adopt((HWKEY_P11_DEVICE *)dev, FAKE_PATH, &fake)) == NULL ||
        hwkey_pkcs11_backend.key_generate(dev, &spec, &opts, &ref) != 1)
        return -1;
    kr = (HWKEY_KEYREF){HWKEY_REF_PKCS11_URI, ref.data, ref.len};
    if (hwkey_pkcs11_backend.key_load(dev, &kr, NULL, NULL, &key) != 1 ||
        (pub = hwkey_pkcs11_backend.key_public(key, NULL, NULL)) == NULL)
        return -1;
    OPENSSL_free(ref.data);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(pub);
    hwkey_pkcs11_backend.key_free(key);
    hwkey_pkcs11_backend.close(dev);
    return 0;
}

static int sign_verify(void)
{
    unsigned char dgst[32] = {1, 2, 3}, sig[128];
    size_t siglen = sizeof(sig);
    HWKEY_SIGN_PARAMS p = {.scheme = HWKEY_SIG_ECDSA, .md_nid = NID_sha256};
    EVP_PKEY_CTX *v;
    int ok;

    if (hwkey_pkcs11_backend.sign(key, &p, dgst, sizeof(dgst), sig, &siglen) != 1)
        return 0;
    v = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
    ok = v != NULL && EVP_PKEY_verify_init(v) > 0 &&
         EVP_PKEY_verify(v, sig, siglen, dgst, sizeof(dgst)) == 1;
    EVP_PKEY_CTX_free(v);
    return ok;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* stderr (hwkey_log) into a file while a test runs: the log lines are asserted. */
static int saved_stderr = -1;
static char log_path[128];

static void log_capture(void)
{
    int fd;

    snprintf(log_path, sizeof(log_path), "%s/log.txt", p11_test_dir);
    fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(fd, 2);
    close(fd);
}

/* How many captured lines contain what (capture ends). */
static int log_count(const char *what)
{
    char line[1024];
    FILE *f;
    int n = 0;

    fflush(stderr);
    if (saved_stderr >= 0) {
        dup2(saved_stderr, 2);
        close(saved_stderr);
        saved_stderr = -1;
    }
    f = fopen(log_path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, what) != NULL)
            n++;
    fclose(f);
    return n;
}

/* --- tests ----------------------------------------------------------------- */

static const CK_RV lost_rvs[] = {
    CKR_DEVICE_REMOVED,         CKR_DEVICE_ERROR,   CKR_TOKEN_NOT_PRESENT,
    CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_CRYPTOKI_NOT_INITIALIZED,
    CKR_GENERAL_ERROR,
};

static void test_lost_once_recovers_in_flight(void **state)
{
    (void)state;
    assert_true(sign_verify());
    for (size_t i = 0; i < sizeof(lost_rvs) / sizeof(lost_rvs[0]); i++) {
        HWKEY_P11_KEY *k = (HWKEY_P11_KEY *)key;
        unsigned long rec = mod->recoveries, inits = fake_inits;
        unsigned long logins = k->tok->login_calls, finds = k->finds;

        log_capture();
        ERR_clear_error();
        sign_once_rv = lost_rvs[i];
        if (!sign_verify())
            fail_msg("%s: the signature did not survive the re-initialisation",
                     hwkey_p11_rv_name(lost_rvs[i]));
        assert_int_equal(mod->recoveries, rec + 1);
        assert_true(fake_inits > inits);
        assert_true(k->tok->login_calls > logins); /* logged in again */
        assert_true(k->finds > finds);             /* the key was re-found */
        /* Nothing left behind: not the first failure, not the module's stale line. */
        assert_int_equal(ERR_peek_error(), 0);
        assert_int_equal(log_count("re-initialised it"), 1);
    }
}

static void test_away_fails_fast_backs_off_and_returns(void **state)
{
    long long t0, t, worst = 0, back_at, served_at = 0;
    unsigned long inits;
    int failures = 0;

    (void)state;
    assert_true(sign_verify());
    log_capture();
    away = 1;
    inits = fake_inits;
    t0 = now_ms();
    while (now_ms() - t0 < 1500) {
        unsigned long e;
        const char *data = NULL;
        int flags = 0, n = 0;

        t = now_ms();
        ERR_clear_error();
        assert_false(sign_verify());
        t = now_ms() - t;
        worst = t > worst ? t : worst;
        failures++;
        /* Exactly one error, the provider's, with the module's code. */
        e = ERR_peek_error_data(&data, &flags);
        assert_int_equal(ERR_GET_REASON(e), HWKEY_R_DEVICE_UNREACHABLE);
        assert_non_null(strstr(data, "CKR_DEVICE_ERROR"));
        assert_null(strstr(data, "no such engine"));
        while (ERR_get_error() != 0)
            n++;
        assert_int_equal(n, 1);
        usleep(10000);
    }
    /* 1.5 s of signing every ~10 ms: attempts at 0, 100, 300, 700 ms (+1500): 4 or 5. */
    assert_true(worst < 250);
    assert_true(fake_inits - inits >= 3 && fake_inits - inits <= 6);
    away = 0;
    back_at = now_ms();
    while (now_ms() - back_at < 3000) {
        if (sign_verify()) {
            served_at = now_ms();
            break;
        }
        ERR_clear_error();
        usleep(20000);
    }
    assert_true(served_at != 0);
    assert_true(served_at - back_at <= 2000);
    assert_int_equal(log_count("pkcs11: lost"), 1);
    assert_int_equal(log_count("is back after"), 1);
    print_message("away: %d failures, slowest %lld ms, %lu C_Initialize attempts in 1.5 s; "
                  "served again %lld ms after the return\n",
                  failures, worst, fake_inits - inits, served_at - back_at);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lost_once_recovers_in_flight),
        cmocka_unit_test(test_away_fails_fast_backs_off_and_returns),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
