/*
 * util/offload.c with real OpenSSL ASYNC jobs and no device: a call made in
 * a job runs on a worker while the job is paused on a wait fd; the result
 * and the errors the worker raised come back to the job; the same fd serves
 * every call of one wait ctx; a wait ctx freed while its call is in flight
 * (the client hung up) is safe; outside a job the call runs directly.
 */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/async.h>
#include <openssl/err.h>

#include "util/error.h"
#include "util/offload.h"

typedef struct {
    int fail; /* raise an error instead of answering */
    unsigned int delay_ms;
} FAKE_CTX;

static pthread_t caller_thread;
static int ran_elsewhere;

static int fake_device(void *ctx, const unsigned char *in, size_t inlen, unsigned char *out,
                       size_t *outlen)
{
    const FAKE_CTX *c = ctx;

    ran_elsewhere = !pthread_equal(pthread_self(), caller_thread);
    usleep(c->delay_ms * 1000);
    if (c->fail) {
        hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE, "the fake device is gone");
        return 0;
    }
    if (*outlen < inlen)
        return 0;
    for (size_t i = 0; i < inlen; i++)
        out[i] = (unsigned char)(in[i] ^ 0xff);
    *outlen = inlen;
    return 1;
}

typedef struct {
    FAKE_CTX ctx;
    unsigned char out[16];
    size_t outlen;
    int result;
} JOB_ARGS;

static int job_main(void *arg)
{
    JOB_ARGS *a = *(JOB_ARGS **)arg;
    static const unsigned char in[4] = {1, 2, 3, 4};
    HWKEY_OFFLOAD_CALL call = {.fn = fake_device,
                               .ctx = &a->ctx,
                               .ctx_size = sizeof(a->ctx),
                               .in = in,
                               .inlen = sizeof(in),
                               .out = a->out,
                               .outlen = &a->outlen};

    a->outlen = sizeof(a->out);
    a->result = hwkey_offload_run(&call);
    return a->result;
}

/* Drives one job to the end the way an event loop does; returns the number of pauses. */
static int drive(ASYNC_WAIT_CTX *wctx, JOB_ARGS *a, OSSL_ASYNC_FD *seen_fd)
{
    ASYNC_JOB *job = NULL;
    int ret = 0, pauses = 0, rc;

    while ((rc = ASYNC_start_job(&job, wctx, &ret, job_main, &a, sizeof(a))) == ASYNC_PAUSE) {
        OSSL_ASYNC_FD fd;
        size_t n = 0;
        struct pollfd p;

        pauses++;
        assert_true(ASYNC_WAIT_CTX_get_all_fds(wctx, NULL, &n));
        assert_int_equal(n, 1);
        assert_true(ASYNC_WAIT_CTX_get_all_fds(wctx, &fd, &n));
        *seen_fd = fd;
        p.fd = fd;
        p.events = POLLIN;
        assert_int_equal(poll(&p, 1, 10000), 1);
    }
    assert_int_equal(rc, ASYNC_FINISH);
    return pauses;
}

static void call_in_job_runs_on_worker(void **state)
{
    ASYNC_WAIT_CTX *wctx = ASYNC_WAIT_CTX_new();
    JOB_ARGS a = {.ctx = {.delay_ms = 50}};
    OSSL_ASYNC_FD fd1 = -1, fd2 = -1;
    unsigned long before = hwkey_offload_count();

    (void)state;
    assert_non_null(wctx);
    caller_thread = pthread_self();
    assert_true(drive(wctx, &a, &fd1) >= 1);
    assert_int_equal(a.result, 1);
    assert_true(ran_elsewhere);
    assert_int_equal(a.outlen, 4);
    assert_int_equal(a.out[0], 0xfe);
    assert_int_equal(a.out[3], 0xfb);
    /* A second call on the same connection reuses its fd. */
    assert_true(drive(wctx, &a, &fd2) >= 1);
    assert_int_equal(fd1, fd2);
    assert_int_equal(hwkey_offload_count(), before + 2);
    ASYNC_WAIT_CTX_free(wctx);
}

/*
 * The device answers before the job would pause: the job finishes without
 * pausing and must leave no wait fd behind (an application only learns of
 * fds at a pause; HAProxy aborted deleting one it had never seen).
 */
static void answer_before_pause_registers_no_fd(void **state)
{
    ASYNC_WAIT_CTX *wctx = ASYNC_WAIT_CTX_new();
    JOB_ARGS a = {.ctx = {.delay_ms = 0}};
    JOB_ARGS *ap = &a;
    ASYNC_JOB *job = NULL;
    size_t n = 99;
    int ret = 0;

    (void)state;
    setenv("HWKEY_TEST_OFFLOAD_WAIT_DELAY_US", "100000", 1);
    assert_int_equal(ASYNC_start_job(&job, wctx, &ret, job_main, &ap, sizeof(ap)), ASYNC_FINISH);
    unsetenv("HWKEY_TEST_OFFLOAD_WAIT_DELAY_US");
    assert_int_equal(ret, 1);
    assert_int_equal(a.outlen, 4);
    assert_true(ASYNC_WAIT_CTX_get_all_fds(wctx, NULL, &n));
    assert_int_equal(n, 0);
    ASYNC_WAIT_CTX_free(wctx);
}

static void worker_errors_reach_the_job(void **state)
{
    ASYNC_WAIT_CTX *wctx = ASYNC_WAIT_CTX_new();
    JOB_ARGS a = {.ctx = {.fail = 1}};
    OSSL_ASYNC_FD fd = -1;
    const char *data = NULL, *func = NULL;
    unsigned long e;
    int flags = 0;

    (void)state;
    ERR_clear_error();
    drive(wctx, &a, &fd);
    assert_int_equal(a.result, 0);
    /* exactly one error, with the worker's reason, text and location */
    e = ERR_get_error_all(NULL, NULL, &func, &data, &flags);
    assert_int_not_equal(e, 0);
    assert_int_equal(ERR_GET_REASON(e), HWKEY_R_DEVICE_UNREACHABLE);
    assert_non_null(data);
    assert_string_equal(data, "the fake device is gone");
    assert_string_equal(func, "fake_device");
    assert_int_equal(ERR_get_error(), 0);
    ASYNC_WAIT_CTX_free(wctx);
}

static void hang_up_while_in_flight(void **state)
{
    ASYNC_WAIT_CTX *wctx = ASYNC_WAIT_CTX_new();
    JOB_ARGS *a = calloc(1, sizeof(*a));
    ASYNC_JOB *job = NULL;
    int ret = 0;

    (void)state;
    a->ctx.delay_ms = 200;
    assert_int_equal(ASYNC_start_job(&job, wctx, &ret, job_main, &a, sizeof(a)), ASYNC_PAUSE);
    /* The connection goes away; the job is never resumed. */
    ASYNC_WAIT_CTX_free(wctx);
    /* Waits for the worker to finish the orphaned call: nothing touches freed memory. */
    hwkey_offload_shutdown();
    free(a);
}

/* A child forked after the pool ran has no workers: its first call starts them again. */
static void fork_after_use(void **state)
{
    ASYNC_WAIT_CTX *wctx = ASYNC_WAIT_CTX_new();
    JOB_ARGS a = {.ctx = {.delay_ms = 20}};
    OSSL_ASYNC_FD fd = -1;
    pid_t pid;
    int status = 0;

    (void)state;
    drive(wctx, &a, &fd);
    assert_int_equal(a.result, 1);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ASYNC_WAIT_CTX *child_wctx = ASYNC_WAIT_CTX_new();
        JOB_ARGS b = {.ctx = {.delay_ms = 20}};
        JOB_ARGS *bp = &b;
        ASYNC_JOB *job = NULL;
        int ret = 0, rc;

        alarm(10); /* a pool inherited from the parent would never answer */
        caller_thread = pthread_self();
        while ((rc = ASYNC_start_job(&job, child_wctx, &ret, job_main, &bp, sizeof(bp))) ==
               ASYNC_PAUSE)
            usleep(1000);
        _exit(rc == ASYNC_FINISH && ret == 1 && b.out[0] == 0xfe && ran_elsewhere ? 0 : 3);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    ASYNC_WAIT_CTX_free(wctx);
}

static void outside_a_job_runs_directly(void **state)
{
    JOB_ARGS a = {.ctx = {0}};
    unsigned long before = hwkey_offload_count();

    (void)state;
    caller_thread = pthread_self();
    assert_int_equal(job_main(&(JOB_ARGS *){&a}), 1);
    assert_false(ran_elsewhere);
    assert_int_equal(hwkey_offload_count(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(call_in_job_runs_on_worker),
        cmocka_unit_test(answer_before_pause_registers_no_fd),
        cmocka_unit_test(worker_errors_reach_the_job),
        cmocka_unit_test(hang_up_while_in_flight),
        cmocka_unit_test(fork_after_use),
        cmocka_unit_test(outside_a_job_runs_directly),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
