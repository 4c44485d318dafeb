/*
 * The failover state machine of p11_replicas.c, without a device: three
 * replica keys whose per-token operation is a fake that answers what the
 * test says and counts its calls (with or without recovery).
 *   - round robin: operations spread evenly over the replicas that are in
 *   - a device error: the operation is done by the next replica; that token
 *     is out (no operation reaches it during its back-off); one "out" line
 *   - its retry after the back-off runs with recovery and puts it back; one
 *     "back" line; a failed retry doubles the back-off, up to 400 ms
 *   - an answer about the data (CKR_DATA_INVALID) is not retried elsewhere
 *   - every replica failing: each is tried once more with recovery, the
 *     operation fails with the device's code
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "backend/pkcs11/p11_internal.h"
#include "util/log.h"

#define N 3

static HWKEY_P11_MODULE mods[N];
static HWKEY_P11_TOKEN toks[N];
static HWKEY_P11_KEY *keys[N];
static CK_RV answer[N]; /* what each token's operation answers */
static int calls[N], recover_calls[N];

static int index_of(const HWKEY_P11_KEY *key)
{
    for (int i = 0; i < N; i++)
        if (keys[i] == key)
            return i;
    fail_msg("unknown replica key");
    return -1;
}

static int fake_run(HWKEY_P11_KEY *key, void *op, CK_RV *rv, int recover)
{
    int i = index_of(key);

    (void)op;
    calls[i]++;
    recover_calls[i] += recover != 0;
    *rv = answer[i];
    return *rv == CKR_OK ? 1 : 0;
}

static int setup(void **state)
{
    static const char *names[N] = {"hsm-a", "hsm-b", "hsm-c"};
    static char paths[N][32];

    (void)state;
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof(paths[i]), "/fake/%s.so", names[i]);
        memset(&mods[i], 0, sizeof(mods[i]));
        memset(&toks[i], 0, sizeof(toks[i]));
        mods[i].path = paths[i];
        toks[i].mod = &mods[i];
        snprintf(toks[i].name, sizeof(toks[i].name), "%s", names[i]);
        keys[i] = OPENSSL_zalloc(sizeof(*keys[i]));
        assert_non_null(keys[i]);
        pthread_mutex_init(&keys[i]->lock, NULL);
        keys[i]->tok = &toks[i];
        keys[i]->label = OPENSSL_strdup("web");
        answer[i] = CKR_OK;
        calls[i] = recover_calls[i] = 0;
    }
    assert_int_equal(hwkey_p11_replicas_adopt(keys, N), 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hwkey_p11_key_free(&keys[0]->base); /* frees the set and the other replicas */
    return 0;
}

static int run_once(CK_RV *rv)
{
    return hwkey_p11_replicas_run(keys[0], fake_run, NULL, rv);
}

static void reset_calls(void)
{
    memset(calls, 0, sizeof(calls));
    memset(recover_calls, 0, sizeof(recover_calls));
}

/* stderr into a file while f runs; returns how many lines contain needle. */
static int log_lines_during(void (*f)(void), const char *needle)
{
    char path[] = "/tmp/hwkey-replicas-log.XXXXXX", line[512];
    int fd = mkstemp(path), saved = dup(2), n = 0;
    FILE *in;

    assert_true(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, 2);
    f();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    in = fopen(path, "r");
    assert_non_null(in);
    while (fgets(line, sizeof(line), in) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(in);
    unlink(path);
    return n;
}

static void test_round_robin(void **state)
{
    CK_RV rv;

    (void)state;
    for (int i = 0; i < 30; i++)
        assert_int_equal(run_once(&rv), 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(calls[i], 10);
        assert_int_equal(recover_calls[i], 0);
    }
}

static void lose_a_under_load(void)
{
    CK_RV rv;

    answer[0] = CKR_DEVICE_ERROR;
    for (int i = 0; i < 30; i++)
        assert_int_equal(run_once(&rv), 1); /* every operation succeeds */
}

static void probe_a_back(void)
{
    CK_RV rv;

    answer[0] = CKR_OK;
    usleep(150 * 1000); /* past the first back-off (100 ms) */
    for (int i = 0; i < 30; i++)
        assert_int_equal(run_once(&rv), 1);
}

static void test_out_and_back(void **state)
{
    (void)state;
    assert_int_equal(log_lines_during(lose_a_under_load, "token \"hsm-a\" of /fake/hsm-a.so out "
                                                         "(CKR_DEVICE_ERROR)"),
                     1);
    /* Out at the first failure: that one call only, no recovery inline. */
    assert_int_equal(calls[0], 1);
    assert_int_equal(recover_calls[0], 0);
    assert_int_equal(calls[1] + calls[2], 30);
    reset_calls();
    assert_int_equal(log_lines_during(probe_a_back, "token \"hsm-a\" of /fake/hsm-a.so back "
                                                    "after"),
                     1);
    /* The first call after the back-off is the retry, with recovery; then round robin. */
    assert_true(recover_calls[0] == 1);
    assert_in_range(calls[0], 9, 11);
    assert_in_range(calls[1], 9, 11);
}

static void test_failed_retry_backs_off(void **state)
{
    CK_RV rv;

    (void)state;
    answer[0] = CKR_DEVICE_ERROR;
    assert_int_equal(run_once(&rv), 1); /* a goes out */
    usleep(150 * 1000);
    for (int i = 0; i < 6; i++)
        assert_int_equal(run_once(&rv), 1);
    assert_int_equal(recover_calls[0], 1); /* one retry, failed: back-off now 200 ms */
    reset_calls();
    usleep(120 * 1000);
    for (int i = 0; i < 6; i++)
        assert_int_equal(run_once(&rv), 1);
    assert_int_equal(calls[0], 0); /* 120 ms < 200 ms: not tried */
    usleep(150 * 1000);
    for (int i = 0; i < 6; i++)
        assert_int_equal(run_once(&rv), 1);
    assert_int_equal(recover_calls[0], 1); /* second retry, failed: 400 ms, the cap */
    reset_calls();
    usleep(300 * 1000);
    for (int i = 0; i < 6; i++)
        assert_int_equal(run_once(&rv), 1);
    assert_int_equal(calls[0], 0); /* 300 ms < 400 ms */
    usleep(150 * 1000);            /* 450 ms: due; fails again */
    for (int i = 0; i < 6; i++)
        assert_int_equal(run_once(&rv), 1);
    assert_int_equal(recover_calls[0], 1);
    reset_calls();
    usleep(450 * 1000); /* due again: the cap held it at 400, not 800 */
    answer[0] = CKR_OK;
    for (int i = 0; i < 6; i++)
        assert_int_equal(run_once(&rv), 1);
    assert_int_equal(recover_calls[0], 1);
    reset_calls();
    for (int i = 0; i < 6; i++)
        assert_int_equal(run_once(&rv), 1);
    assert_int_equal(calls[0], 2); /* back in the rotation */
    assert_int_equal(recover_calls[0], 0);
}

static void test_data_error_not_retried(void **state)
{
    CK_RV rv;

    (void)state;
    for (int i = 0; i < N; i++)
        answer[i] = CKR_DATA_INVALID;
    assert_int_equal(run_once(&rv), 0);
    assert_int_equal(rv, CKR_DATA_INVALID);
    assert_int_equal(calls[0] + calls[1] + calls[2], 1);
    for (int i = 0; i < N; i++)
        answer[i] = CKR_OK;
    reset_calls();
    for (int i = 0; i < 9; i++)
        assert_int_equal(run_once(&rv), 1);
    for (int i = 0; i < N; i++)
        assert_int_equal(calls[i], 3); /* nobody was taken out */
}

static void test_all_out(void **state)
{
    CK_RV rv;

    (void)state;
    for (int i = 0; i < N; i++)
        answer[i] = CKR_DEVICE_ERROR;
    assert_int_equal(run_once(&rv), 0);
    assert_int_equal(rv, CKR_DEVICE_ERROR);
    for (int i = 0; i < N; i++) {
        assert_int_equal(calls[i], 2); /* once without, once with recovery */
        assert_int_equal(recover_calls[i], 1);
    }
    /* A token that returns is used by the next operation, back-off or not. */
    answer[2] = CKR_OK;
    reset_calls();
    assert_int_equal(run_once(&rv), 1);
    assert_int_equal(recover_calls[2], 1);
    ERR_clear_error();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_retry_backs_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_error_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_out, setup, teardown),
    };

    hwkey_log_set_level(HWKEY_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
