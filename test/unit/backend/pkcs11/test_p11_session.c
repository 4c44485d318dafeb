/*
 * The pkcs11 session pool on a real SoftHSM token: never more sessions than
 * the limit, no session handed to two threads at once, dead sessions leave
 * the pool, and a forked child re-initialises the module once and starts
 * with an empty pool in a new epoch (SoftHSM set to reset on fork, as a
 * remote HSM would).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>

#include "backend/pkcs11/p11_internal.h"
#include "../../fakes/p11_test_token.h"

#define N_THREADS 8
#define N_ROUNDS 300
#define LIMIT 3

static HWKEY_DEVICE *dev;
static HWKEY_P11_MODULE *mod;
static HWKEY_P11_TOKEN *tok;

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static CK_SESSION_HANDLE held[N_THREADS];
static int n_held, max_held, clash;

static int setup(void **state)
{
    HWKEY_CONFIG cfg = {0};

    if (!p11_test_token_setup("true"))
        exit(77);
    cfg.pkcs11_module = P11_TEST_MODULE;
    if ((dev = hwkey_pkcs11_backend.open(&cfg)) == NULL ||
        (mod = hwkey_p11_module_get((HWKEY_P11_DEVICE *)dev, NULL)) == NULL ||
        (tok = hwkey_p11_token_find(mod, NULL)) == NULL)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    hwkey_pkcs11_backend.close(dev);
    return 0;
}

static void *worker(void *arg)
{
    for (int i = 0; i < N_ROUNDS; i++) {
        CK_SESSION_HANDLE s;
        CK_SESSION_INFO si;
        uint64_t ep;

        if (!hwkey_p11_session_get(tok, &s, &ep))
            return (void *)1;
        pthread_mutex_lock(&held_lock);
        for (int j = 0; j < n_held; j++)
            if (held[j] == s)
                clash = 1;
        held[n_held++] = s;
        if (n_held > max_held)
            max_held = n_held;
        pthread_mutex_unlock(&held_lock);
        /* A real module call on it, so the session is used, not just counted. */
        if (mod->fl->C_GetSessionInfo(s, &si) != CKR_OK)
            return (void *)1;
        usleep(100); /* hold it a while: makes the threads overlap */
        pthread_mutex_lock(&held_lock);
        for (int j = 0; j < n_held; j++)
            if (held[j] == s) {
                held[j] = held[--n_held];
                break;
            }
        pthread_mutex_unlock(&held_lock);
        hwkey_p11_session_put(tok, s, ep, 0);
    }
    return NULL;
}

static void test_pool_limit_and_exclusive_use(void **state)
{
    pthread_t th[N_THREADS];
    void *rc;

    tok->max_open = LIMIT;
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, NULL), 0);
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], &rc), 0);
        assert_null(rc);
    }
    assert_false(clash);
    assert_true(max_held <= LIMIT);
    assert_true(max_held >= 2); /* the threads did overlap */
    assert_true(tok->n_open <= LIMIT);
    assert_int_equal(tok->n_idle, tok->n_open);
}

static void test_dead_session_leaves_pool(void **state)
{
    CK_SESSION_HANDLE s;
    uint64_t ep;
    size_t open_before = tok->n_open;

    assert_true(hwkey_p11_session_get(tok, &s, &ep));
    hwkey_p11_session_put(tok, s, ep, 1);
    assert_int_equal(tok->n_open, open_before - 1);
    assert_true(hwkey_p11_rv_session_dead(CKR_SESSION_HANDLE_INVALID));
    assert_false(hwkey_p11_rv_session_dead(CKR_PIN_INCORRECT));
}

static void test_fork_reinitialises_once(void **state)
{
    CK_SESSION_HANDLE s;
    uint64_t ep;
    pid_t pid;
    int st;

    assert_true(hwkey_p11_session_get(tok, &s, &ep));
    hwkey_p11_session_put(tok, s, ep, 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        unsigned long inits = mod->initialize_calls;
        uint64_t old_epoch = tok->epoch;
        CK_SESSION_INFO si;
        int ok;

        ok = hwkey_p11_session_get(tok, &s, &ep) && ep == old_epoch + 1 &&
             mod->initialize_calls >= inits + 1 && tok->n_open == 1 &&
             mod->fl->C_GetSessionInfo(s, &si) == CKR_OK;
        hwkey_p11_session_put(tok, s, ep, 0);
        /* Only once: a second use in the child does not re-initialise again. */
        inits = mod->initialize_calls;
        ok = ok && hwkey_p11_session_get(tok, &s, &ep) && mod->initialize_calls == inits;
        hwkey_p11_session_put(tok, s, ep, 0);
        if (!ok)
            ERR_print_errors_fp(stderr);
        _exit(ok ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* The parent's pool is untouched. */
    assert_int_equal(tok->epoch, ep);
    assert_true(hwkey_p11_session_get(tok, &s, &ep));
    hwkey_p11_session_put(tok, s, ep, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_limit_and_exclusive_use),
        cmocka_unit_test(test_dead_session_leaves_pool),
        cmocka_unit_test(test_fork_reinitialises_once),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
