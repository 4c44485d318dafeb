/*
 * The fork gate (util/forkgate.h): a child forked while other threads are
 * inside device operations inherits no held lock; a fork from inside a
 * suspended gate (an application callback that forks) does not deadlock;
 * the fork generation counts; hooks run in the child.
 * Every wait is bounded: a hang is reported as a failure, not a stuck CI.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/forkgate.h"
#include "util/secmem.h"

/* A stand-in for a device mutex: only ever taken inside the gate. */
static pthread_mutex_t device_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop_workers;
static unsigned long operations;

static void *signer(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop_workers, __ATOMIC_ACQUIRE)) {
        void *secret;

        hwkey_gate_enter();
        pthread_mutex_lock(&device_lock);
        /* A device call that allocates protected memory, like a login. */
        secret = hwkey_secmem_alloc(32);
        hwkey_secmem_free(secret);
        __atomic_add_fetch(&operations, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&device_lock);
        hwkey_gate_leave();
    }
    return NULL;
}

/* waitpid with a deadline: 0 on exit status 0, -1 on failure or timeout (child killed). */
static int wait_child(pid_t pid, int seconds)
{
    int status = 0;

    for (int i = 0; i < seconds * 100; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);

        if (r == pid) {
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
            print_message("child %ld: %s %d\n", (long)pid,
                          WIFEXITED(status) ? "exit status" : "signal",
                          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            return -1;
        }
        usleep(10000);
    }
    print_message("child %ld: no exit after %d s\n", (long)pid, seconds);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static void child_uses_device(void)
{
    void *secret;

    /* alarm: a lock inherited held would hang here; fail instead. */
    alarm(5);
    hwkey_gate_enter();
    pthread_mutex_lock(&device_lock);
    secret = hwkey_secmem_alloc(32);
    hwkey_secmem_free(secret);
    pthread_mutex_unlock(&device_lock);
    hwkey_gate_leave();
    _exit(0);
}

static void fork_while_threads_operate(void **state)
{
    pthread_t threads[4];
    uint64_t gen0 = hwkey_fork_generation();
    int failures = 0;

    (void)state;
    stop_workers = 0;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, signer, NULL), 0);
    for (int i = 0; i < 40; i++) {
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
            /* One more fork seen in the child than in the parent. */
            if (hwkey_fork_generation() != gen0 + 1)
                _exit(3);
            child_uses_device();
        }
        if (wait_child(pid, 10) != 0)
            failures++;
    }
    __atomic_store_n(&stop_workers, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    assert_int_equal(failures, 0);
    assert_true(operations > 0);
    assert_int_equal(hwkey_fork_generation(), gen0);
}

/* An application callback (a PIN prompt) that forks, called from inside the gate. */
static void fork_in_suspended_callback(void **state)
{
    unsigned int depth;
    pid_t pid;

    (void)state;
    hwkey_gate_enter();
    hwkey_gate_enter();
    assert_int_equal(hwkey_gate_depth(), 2);
    depth = hwkey_gate_suspend();
    assert_int_equal(hwkey_gate_depth(), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_uses_device();
    assert_int_equal(wait_child(pid, 10), 0);
    hwkey_gate_resume(depth);
    assert_int_equal(hwkey_gate_depth(), 2);
    hwkey_gate_leave();
    hwkey_gate_leave();
    assert_int_equal(hwkey_gate_depth(), 0);
}

/*
 * A fork from inside the gate (a bug elsewhere, but it must not wedge the
 * child): the child can leave the gate it was in, and fork again.
 */
static void fork_inside_gate_child_recovers(void **state)
{
    pid_t pid;

    (void)state;
    hwkey_gate_enter();
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pid_t grandchild;
        int st = 0;

        alarm(5);
        hwkey_gate_leave();
        grandchild = fork(); /* takes the gate exclusively: must not wait forever */
        if (grandchild == 0)
            _exit(0);
        waitpid(grandchild, &st, 0);
        child_uses_device();
    }
    hwkey_gate_leave();
    assert_int_equal(wait_child(pid, 10), 0);
}

static int child_hook_ran;
static void note_child(void)
{
    child_hook_ran = 1;
}

static void child_hook_runs_in_child_only(void **state)
{
    pid_t pid;

    (void)state;
    assert_true(hwkey_fork_hook(NULL, NULL, note_child));
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_hook_ran == 1 ? 0 : 4);
    assert_int_equal(wait_child(pid, 10), 0);
    assert_int_equal(child_hook_ran, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fork_while_threads_operate),
        cmocka_unit_test(fork_in_suspended_callback),
        cmocka_unit_test(fork_inside_gate_child_recovers),
        cmocka_unit_test(child_hook_runs_in_child_only),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
