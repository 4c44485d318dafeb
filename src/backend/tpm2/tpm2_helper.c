/*
 * tpm2-abrmd and forking servers.
 *
 * The tabrmd: TCTI talks to tpm2-abrmd over D-Bus through GLib's shared bus
 * connection, whose I/O runs in a GLib worker thread.  fork() copies the
 * connection's state but not the thread: a child of a process that ever
 * used tabrmd: hangs in its first D-Bus call (seen: every nginx worker
 * waited 25 s for StartServiceByName, then failed), even if the parent
 * finalized its TCTI.  So a process must not use GLib's D-Bus before it
 * forks.  nginx's master needs the TPM only for what OpenSSL asks while it
 * reads its configuration: the capability probe of the algorithm catalogue
 * and the public area of a handle: key (a key file carries its own).  Those
 * run here in a short-lived helper child that connects, asks, writes the
 * answer into a pipe and exits, so the master's GLib stays untouched and
 * its workers connect on their own.
 *
 * A process that used tabrmd: itself (it signed before forking) leaves its
 * children nothing to do: they fail at once with an error that says so,
 * instead of hanging.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif
#include "backend/tpm2/tpm2_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <tss2/tss2_tctildr.h>

#include "util/error.h"
#include "util/log.h"

/* Process that first initialized GLib's D-Bus for tabrmd:, 0 if none. */
static pid_t glib_dbus_pid;

#define HELPER_TIMEOUT_MS 10000
#define HELPER_MSG 300

static int uses_glib(const HWKEY_TPM2_DEVICE *dev)
{
    const char *conf = dev->tcti_conf;

    while (strncmp(conf, "pcap:", 5) == 0)
        conf += 5;
    return !dev->tcti_external && strncmp(conf, "tabrmd", 6) == 0;
}

int hwkey_tpm2_use_helper(const HWKEY_TPM2_DEVICE *dev)
{
    return uses_glib(dev) && __atomic_load_n(&glib_dbus_pid, __ATOMIC_ACQUIRE) == 0;
}

int hwkey_tpm2_glib_check(HWKEY_TPM2_DEVICE *dev)
{
    pid_t owner = __atomic_load_n(&glib_dbus_pid, __ATOMIC_ACQUIRE);

    if (!uses_glib(dev))
        return 1;
    if (owner == 0) {
        __atomic_store_n(&glib_dbus_pid, getpid(), __ATOMIC_RELEASE);
        return 1;
    }
    if (owner == getpid())
        return 1;
    hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE,
                "cannot use tpm2-abrmd (TCTI \"%s\") in process %ld: its parent %ld used it "
                "before forking, and GLib's D-Bus connection does not survive fork; use the "
                "key only after fork in servers, or use /dev/tpmrm0",
                dev->tcti_conf, (long)getpid(), (long)owner);
    return 0;
}

/* In the helper child: connect, run fn, write "ok | out | message", exit. */
static void helper_child(HWKEY_TPM2_DEVICE *dev, hwkey_tpm2_helper_fn *fn, void *out, size_t outlen,
                         int fd)
{
    TSS2_TCTI_CONTEXT *tcti = NULL;
    ESYS_CONTEXT *esys = NULL;
    char msg[HELPER_MSG] = "";
    const char *data = NULL;
    int flags = 0, ok = 0;
    TSS2_RC rc;

    hwkey_tpm2_tss_log_apply();
    rc = Tss2_TctiLdr_Initialize(dev->tcti_conf, &tcti);
    if (rc != TSS2_RC_SUCCESS)
        hwkey_tpm2_tcti_raise(dev->tcti_conf, rc);
    else if ((rc = Esys_Initialize(&esys, tcti, NULL)) != TSS2_RC_SUCCESS)
        hwkey_tpm2_raise_rc(rc, "cannot start ESAPI through tpm2-abrmd");
    else
        ok = fn(dev, esys, out);
    if (!ok && ERR_peek_last_error_data(&data, &flags) != 0 && data != NULL)
        snprintf(msg, sizeof(msg), "%s", data);
    /* Short pipe writes of < PIPE_BUF bytes each are atomic: no loop needed. */
    if (write(fd, &ok, sizeof(ok)) < 0 || write(fd, out, outlen) < 0 ||
        write(fd, msg, sizeof(msg)) < 0)
        _exit(2);
    _exit(0); /* no atexit, no OpenSSL cleanup: this is a copy of the caller */
}

static int read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};

    while (got < len) {
        ssize_t n;

        if (poll(&p, 1, HELPER_TIMEOUT_MS) <= 0)
            return 0;
        n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        got += (size_t)n;
    }
    return 1;
}

int hwkey_tpm2_run_helper(HWKEY_TPM2_DEVICE *dev, hwkey_tpm2_helper_fn *fn, void *out,
                          size_t outlen)
{
    int fds[2], ok = 0, status;
    char msg[HELPER_MSG];
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) != 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "pipe for the tpm2-abrmd helper: %s", strerror(errno));
        return 0;
    }
    if ((pid = fork()) < 0) {
        close(fds[0]);
        close(fds[1]);
        hwkey_raise(HWKEY_R_INTERNAL, "fork for the tpm2-abrmd helper: %s", strerror(errno));
        return 0;
    }
    if (pid == 0) {
        close(fds[0]);
        helper_child(dev, fn, out, outlen, fds[1]);
    }
    close(fds[1]);
    if (!read_full(fds[0], &ok, sizeof(ok)) || !read_full(fds[0], out, outlen) ||
        !read_full(fds[0], msg, sizeof(msg))) {
        kill(pid, SIGKILL);
        ok = 0;
        snprintf(msg, sizeof(msg), "the tpm2-abrmd helper process gave no answer within %d s",
                 HELPER_TIMEOUT_MS / 1000);
    }
    close(fds[0]);
    /* ECHILD if the application reaps every child itself (nginx's SIGCHLD handler): fine. */
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    msg[sizeof(msg) - 1] = '\0';
    if (!ok)
        hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE, "%s",
                    msg[0] != '\0' ? msg : "tpm2-abrmd helper failed");
    return ok;
}
