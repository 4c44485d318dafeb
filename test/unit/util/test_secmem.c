/*
 * Protected memory: zeroed allocations, guard pages that fault, wipe-on-fork,
 * and both kinds (memfd_secret where the kernel has it, mlock forced).
 * Every test runs once per kind (group setup selects it).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/secmem.h"

static int setup_default(void **state)
{
    (void)state;
    hwkey_secmem_force_mlock(0);
    return 0;
}

static int setup_mlock(void **state)
{
    (void)state;
    hwkey_secmem_force_mlock(1);
    return 0;
}

static void test_alloc_zeroed_free(void **state)
{
    static const size_t sizes[] = {1, 15, 16, 100, 4096, 4097, 65536};
    (void)state;

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char *p = hwkey_secmem_alloc(sizes[i]);

        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        for (size_t j = 0; j < sizes[i]; j++)
            assert_int_equal(p[j], 0);
        /* Writes up to the last byte work. */
        memset(p, 0xa5, sizes[i]);
        assert_int_equal(p[sizes[i] - 1], 0xa5);
        hwkey_secmem_free(p);
    }
    hwkey_secmem_free(NULL);
}

static void test_kind(void **state)
{
    void *p = hwkey_secmem_alloc(32);
    const char *kind = hwkey_secmem_kind();
    (void)state;

    assert_non_null(p);
    assert_true(strcmp(kind, "memfd_secret") == 0 || strcmp(kind, "mlock") == 0);
    if (*(int *)state == 1)
        assert_string_equal(kind, "mlock");
    hwkey_secmem_free(p);
}

static void test_strndup(void **state)
{
    char *s = hwkey_secmem_strndup("correct horse", 7);
    char *t = hwkey_secmem_strndup("ab\0cd", 5);
    char *e = hwkey_secmem_strndup("", 0);
    (void)state;

    assert_non_null(s);
    assert_string_equal(s, "correct");
    assert_non_null(t);
    assert_string_equal(t, "ab");
    assert_non_null(e);
    assert_string_equal(e, "");
    hwkey_secmem_free(s);
    hwkey_secmem_free(t);
    hwkey_secmem_free(e);
}

/* Runs fn in a child and returns the signal that killed it (0 if it exited). */
static int child_signal(void (*fn)(unsigned char *, size_t), unsigned char *p, size_t n)
{
    int status = 0;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};

        setrlimit(RLIMIT_CORE, &no_core);
        /* cmocka catches SIGSEGV to report a failed test; the child must just die. */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        fn(p, n);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

static void write_last(unsigned char *p, size_t n)
{
    ((volatile unsigned char *)p)[n - 1] = 1;
}

static void write_past_end(unsigned char *p, size_t n)
{
    ((volatile unsigned char *)p)[n] = 1;
}

static void write_before_start(unsigned char *p, size_t n)
{
    (void)n;
    /* The guard page sits just below the first data page. */
    volatile unsigned char *q =
        (unsigned char *)(((uintptr_t)p & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1)) - 1);
    *q = 1;
}

static void test_guard_pages(void **state)
{
    static const size_t sizes[] = {16, 64, 4096, 8192};
    (void)state;

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char *p = hwkey_secmem_alloc(sizes[i]);

        assert_non_null(p);
        assert_int_equal(child_signal(write_last, p, sizes[i]), 0);
        assert_int_equal(child_signal(write_past_end, p, sizes[i]), SIGSEGV);
        assert_int_equal(child_signal(write_before_start, p, sizes[i]), SIGSEGV);
        hwkey_secmem_free(p);
    }
}

/* The child sees zeros and its free does not touch the parent's copy. */
static void test_wipe_on_fork(void **state)
{
    unsigned char *p = hwkey_secmem_alloc(48);
    int status = 0;
    pid_t pid;
    (void)state;

    assert_non_null(p);
    memset(p, 0x5a, 48);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int bad = 0;

        for (size_t i = 0; i < 48; i++)
            bad |= p[i];
        memset(p, 0x77, 48); /* must not reach the parent either */
        hwkey_secmem_free(p);
        _exit(bad == 0 ? 0 : 3);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    for (size_t i = 0; i < 48; i++)
        assert_int_equal(p[i], 0x5a);
    hwkey_secmem_free(p);
}

/* Credentials allocated "inherited" survive fork as a private copy. */
static void test_inherited_survives_fork(void **state)
{
    unsigned char *p = hwkey_secmem_alloc_inherited(40);
    int status = 0;
    pid_t pid;
    (void)state;

    assert_non_null(p);
    memset(p, 0x3c, 40);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int bad = 0;

        for (size_t i = 0; i < 40; i++)
            bad |= p[i] ^ 0x3c;
        memset(p, 0x11, 40); /* the child's copy is private */
        hwkey_secmem_free(p);
        _exit(bad == 0 ? 0 : 4);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    for (size_t i = 0; i < 40; i++)
        assert_int_equal(p[i], 0x3c);
    hwkey_secmem_free(p);
}

static void test_foreign_free_ignored(void **state)
{
    unsigned char *p = hwkey_secmem_alloc(32);
    (void)state;

    assert_non_null(p);
    p[0] = 9;
    hwkey_secmem_free(p + 16); /* not an allocation: must not unmap p */
    assert_int_equal(p[0], 9);
    hwkey_secmem_free(p);
}

#define SECMEM_TESTS(mode)                                                                         \
    {                                                                                              \
        cmocka_unit_test_prestate(test_alloc_zeroed_free, &mode),                                  \
            cmocka_unit_test_prestate(test_kind, &mode),                                           \
            cmocka_unit_test_prestate(test_strndup, &mode),                                        \
            cmocka_unit_test_prestate(test_guard_pages, &mode),                                    \
            cmocka_unit_test_prestate(test_wipe_on_fork, &mode),                                   \
            cmocka_unit_test_prestate(test_inherited_survives_fork, &mode),                        \
            cmocka_unit_test_prestate(test_foreign_free_ignored, &mode),                           \
    }

int main(void)
{
    static int mode_default = 0, mode_mlock = 1;
    const struct CMUnitTest default_tests[] = SECMEM_TESTS(mode_default);
    const struct CMUnitTest mlock_tests[] = SECMEM_TESTS(mode_mlock);
    int failed = 0;

    failed += cmocka_run_group_tests_name("secmem_default", default_tests, setup_default, NULL);
    printf("secmem kind with default settings: %s\n", hwkey_secmem_kind());
    failed += cmocka_run_group_tests_name("secmem_forced_mlock", mlock_tests, setup_mlock, NULL);
    return failed;
}
