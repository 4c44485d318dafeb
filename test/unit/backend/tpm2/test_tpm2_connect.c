/*
 * Connecting to a TPM that is not there, or not ours to open: each failure
 * says what an operator has to change (ARCHITECTURE.md §6, issue 6), and
 * while the TPM stays away operations fail at once instead of each trying
 * to connect (an nginx worker must not stall).  Also: the no-RM lock file's
 * name and its override.  No TPM needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>

#include "backend/tpm2/tpm2_internal.h"
#include "util/config.h"
#include "util/error.h"

static HWKEY_TPM2_DEVICE *open_tcti(const char *tcti)
{
    HWKEY_CONFIG cfg;
    HWKEY_DEVICE *dev;

    memset(&cfg, 0, sizeof(cfg));
    cfg.tpm2_tcti = (char *)tcti;
    dev = hwkey_tpm2_backend.open(&cfg);
    assert_non_null(dev);
    return (HWKEY_TPM2_DEVICE *)dev;
}

/* acquire() must fail; returns the error's reason, its text in text. */
static int acquire_fails(HWKEY_TPM2_DEVICE *dev, char *text, size_t len)
{
    const char *data = NULL;
    int flags = 0;
    unsigned long err;

    ERR_clear_error();
    assert_null(hwkey_tpm2_acquire(dev));
    err = ERR_get_error_all(NULL, NULL, NULL, &data, &flags);
    assert_int_not_equal(err, 0);
    snprintf(text, len, "%s", data != NULL ? data : "");
    assert_int_equal(ERR_peek_error(), 0); /* one error, not a pile */
    return ERR_GET_REASON(err);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_missing_device(void **state)
{
    HWKEY_TPM2_DEVICE *dev = open_tcti("device:/nonexistent/tpmrm9");
    char text[512];

    (void)state;
    assert_int_equal(acquire_fails(dev, text, sizeof(text)), HWKEY_R_DEVICE_UNREACHABLE);
    assert_non_null(strstr(text, "/nonexistent/tpmrm9"));
    assert_non_null(strstr(text, "No such file"));
    hwkey_tpm2_backend.close(&dev->base);
}

static void test_unknown_tcti(void **state)
{
    HWKEY_TPM2_DEVICE *dev = open_tcti("nosuchtcti:foo=1");
    char text[512];

    (void)state;
    assert_int_equal(acquire_fails(dev, text, sizeof(text)), HWKEY_R_CONFIG_INVALID);
    assert_non_null(strstr(text, "unknown TCTI \"nosuchtcti\""));
    hwkey_tpm2_backend.close(&dev->base);
}

/*
 * A device node the process may not open.  As root (CI containers) a child
 * drops to uid 65534 first: root opens anything.
 */
static void test_permission_denied(void **state)
{
    char dir[] = "/tmp/hwkey-tpmperm.XXXXXX", path[128], text[512], want[64];
    HWKEY_TPM2_DEVICE *dev;
    pid_t pid;
    int status = 0;
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chmod(dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/tpm0", dir);
    assert_non_null(f = fopen(path, "w"));
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
    if (geteuid() != 0)
        assert_int_equal(chmod(path, 0000), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        snprintf(path, sizeof(path), "device:%s/tpm0", dir);
        dev = open_tcti(path);
        if (acquire_fails(dev, text, sizeof(text)) != HWKEY_R_DEVICE_UNREACHABLE)
            _exit(4);
        snprintf(want, sizeof(want), "uid %ld", (long)geteuid());
        if (strstr(text, "Permission denied") == NULL || strstr(text, want) == NULL ||
            strstr(text, "group tss") == NULL || strstr(text, "/tpm0") == NULL) {
            fprintf(stderr, "unexpected: %s\n", text);
            _exit(5);
        }
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    unlink(path);
    rmdir(dir);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/*
 * While the TPM is away: the first failure tries to connect; the ones that
 * follow within the backoff fail at once, with the same explanation and no
 * new connection attempt.
 */
static void test_backoff_fails_fast(void **state)
{
    HWKEY_TPM2_DEVICE *dev = open_tcti("device:/nonexistent/tpm0");
    char text[512];
    double t0;

    (void)state;
    acquire_fails(dev, text, sizeof(text));
    assert_int_equal(dev->backoff_ms, 100);
    assert_int_equal(dev->lost, 0); /* never reached: the error says it, no "lost" line */
    t0 = now_s();
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(acquire_fails(dev, text, sizeof(text)), HWKEY_R_DEVICE_UNREACHABLE);
        if (i == 0) {
            assert_non_null(strstr(text, "next reconnect in"));
            assert_non_null(strstr(text, "No such file"));
        }
    }
    assert_true(now_s() - t0 < 0.1);        /* 1000 failures, no waiting */
    assert_int_equal(dev->backoff_ms, 100); /* and no new attempt counted */
    /* After the wait, one real attempt, and the backoff doubles, up to 1 s. */
    dev->retry_at_ms = 1;
    acquire_fails(dev, text, sizeof(text));
    assert_int_equal(dev->backoff_ms, 200);
    for (int i = 0; i < 10; i++) {
        dev->retry_at_ms = 1;
        acquire_fails(dev, text, sizeof(text));
    }
    assert_int_equal(dev->backoff_ms, 1000);
    hwkey_tpm2_backend.close(&dev->base);
}

static void test_lock_path(void **state)
{
    char a[512], b[512], c[512];

    (void)state;
    unsetenv("HWKEY_TPM2_LOCK_FILE");
    setenv("HWKEY_TPM2_LOCK_DIR", "/x/locks", 1);
    assert_true(hwkey_tpm2_lock_path("device:/dev/tpm0", a, sizeof(a)));
    assert_true(hwkey_tpm2_lock_path("/dev/tpm0", b, sizeof(b)));
    assert_true(hwkey_tpm2_lock_path("pcap:device:/dev/tpm0", c, sizeof(c)));
    assert_string_equal(a, b); /* one TPM, one lock, whatever the spelling */
    assert_string_equal(a, c);
    assert_int_equal(strncmp(a, "/x/locks/hwkey-tpm2-", 20), 0);
    assert_true(hwkey_tpm2_lock_path("swtpm:host=127.0.0.1,port=2321", b, sizeof(b)));
    assert_string_not_equal(a, b);
    setenv("HWKEY_TPM2_LOCK_FILE", "/y/tpm.lock", 1);
    assert_true(hwkey_tpm2_lock_path("device:/dev/tpm0", a, sizeof(a)));
    assert_string_equal(a, "/y/tpm.lock");
    unsetenv("HWKEY_TPM2_LOCK_FILE");
    unsetenv("HWKEY_TPM2_LOCK_DIR");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_device),    cmocka_unit_test(test_unknown_tcti),
        cmocka_unit_test(test_permission_denied), cmocka_unit_test(test_backoff_fails_fast),
        cmocka_unit_test(test_lock_path),
    };

    setenv("TSS2_LOG", "all+NONE", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
