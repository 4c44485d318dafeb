/*
 * Sharing a TPM that has no resource manager (swtpm socket, /dev/tpm0)
 * between processes: one advisory flock(2) per TPM, held by a process from
 * acquire() to release(), i.e. around every load-use-flush.
 *
 * Why a lock.  Such a TPM has about three transient object slots for
 * everybody.  A process killed between loading a key and flushing it (OOM
 * killer, SIGKILL, crash) leaves the object behind, and nothing else knows
 * whose it is.  With every hwkey process holding the lock around its
 * load-use-flush, an object found in the TPM while we hold the lock cannot
 * belong to a live hwkey process: it is an orphan and is flushed.  The
 * kernel drops a flock when its holder dies, so a killed process never
 * blocks the others.  Non-hwkey programs on the same TPM do not take the
 * lock, so their objects may be flushed under them: they must use a
 * resource manager (docs/tpm2.md, "Sharing a TPM without a resource
 * manager").
 *
 * Where.  $HWKEY_TPM2_LOCK_DIR, else /run/hwkey if an administrator made
 * it, else /run/lock (Debian: root 1777, tmpfs), else /tmp.  Not
 * $XDG_RUNTIME_DIR: it is per user, and nginx's root master and its
 * nobody/www-data workers must meet on the same file.  The file is created
 * 0644: flock needs only a read-only descriptor, so a file created by root
 * can be locked by an unprivileged worker and the reverse.
 *
 * Fork.  A flock belongs to the open file description, which a child
 * shares with its parent: a child locking the inherited descriptor would
 * "already hold" its parent's lock.  The child therefore drops the
 * inherited descriptor and opens its own.
 */
#include "backend/tpm2/tpm2_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <tss2/tss2_sys.h>

#include "util/error.h"
#include "util/log.h"

/*
 * Longest wait for the lock.  A holder keeps it for one load-use-flush
 * (milliseconds), but flock is not fair: with 8 processes signing with RSA
 * on a loaded 2-core machine one waiter was seen to lose every race for
 * more than 2 s.  5 s still fails a holder stopped in a debugger in bounded
 * time.  Polled every 1 ms at most, so a waiter is not much slower than a
 * process re-taking the lock it just released.
 */
#define LOCK_WAIT_MS 5000ul
#define LOCK_POLL_MAX_US 1000ul

static const char *lock_dir(void)
{
    static const char *const dirs[] = {"/run/hwkey", "/run/lock"};
    const char *env = getenv("HWKEY_TPM2_LOCK_DIR");
    struct stat st;

    if (env != NULL && env[0] != '\0')
        return env;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        if (stat(dirs[i], &st) == 0 && S_ISDIR(st.st_mode))
            return dirs[i];
    return "/tmp";
}

/* The same TPM must give the same name whatever spelling the TCTI string has. */
static void tcti_key(const char *conf, char *out, size_t len)
{
    while (strncmp(conf, "pcap:", 5) == 0)
        conf += 5;
    if (strncmp(conf, "device:", 7) == 0)
        conf += 7;
    if (conf[0] == '\0')
        conf = "/dev/tpmrm0";
    snprintf(out, len, "%s", conf);
}

int hwkey_tpm2_lock_path(const char *conf, char *out, size_t len)
{
    const char *file = getenv("HWKEY_TPM2_LOCK_FILE");
    char key[256];
    uint64_t h = 1469598103934665603ull; /* FNV-1a: a stable name, not a secret */
    char readable[48];
    size_t n = 0;
    int w;

    if (file != NULL && file[0] != '\0')
        return snprintf(out, len, "%s", file) < (int)len;
    tcti_key(conf, key, sizeof(key));
    for (const char *p = key; *p != '\0'; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
        /* A readable part so that an operator can tell which TPM a file is for. */
        if (n + 1 < sizeof(readable))
            readable[n++] = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ? *p : '_';
    }
    readable[n] = '\0';
    w = snprintf(out, len, "%s/hwkey-tpm2-%s-%016llx.lock", lock_dir(), readable,
                 (unsigned long long)h);
    return w > 0 && (size_t)w < len;
}

/*
 * Open without O_CREAT first: with fs.protected_regular, O_CREAT on a file
 * another user created in a sticky world-writable directory (/tmp,
 * /run/lock) fails with EACCES even though a plain open would succeed.
 */
static int open_lock_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd >= 0 || errno != ENOENT)
        return fd;
    fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd >= 0) {
        /* Whatever the umask: workers of another uid must be able to open it. */
        if (fchmod(fd, 0644) != 0) {
            /* not fatal: the same uid still shares it */
        }
        return fd;
    }
    if (errno == EEXIST)
        return open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    return -1;
}

static int lock_open(HWKEY_TPM2_DEVICE *dev)
{
    char path[512];

    if (!hwkey_tpm2_lock_path(dev->tcti_conf, path, sizeof(path))) {
        hwkey_raise(HWKEY_R_CONFIG_INVALID, "TPM lock file path too long");
        return 0;
    }
    dev->lock_fd = open_lock_file(path);
    if (dev->lock_fd < 0) {
        int e = errno;

        hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE,
                    "cannot open the TPM lock file %s (uid %ld): %s; processes sharing a TPM "
                    "without a resource manager need a common lock file: set "
                    "HWKEY_TPM2_LOCK_DIR to a directory all of them can write, or use "
                    "a resource manager (/dev/tpmrm0, tabrmd:)",
                    path, (long)getuid(), strerror(e));
        return 0;
    }
    dev->lock_pid = getpid();
    return 1;
}

static unsigned long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long)ts.tv_sec * 1000ul + (unsigned long)ts.tv_nsec / 1000000ul;
}

static int wait_lock(HWKEY_TPM2_DEVICE *dev)
{
    unsigned long start = now_ms(), step_us = 100;
    char path[512];

    for (;;) {
        if (flock(dev->lock_fd, LOCK_EX | LOCK_NB) == 0)
            return 1;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            hwkey_raise(HWKEY_R_INTERNAL, "flock on the TPM lock file: %s", strerror(errno));
            return 0;
        }
        /* Real time, not the sum of the pauses: a loaded machine oversleeps. */
        if (now_ms() - start >= LOCK_WAIT_MS)
            break;
        usleep((useconds_t)step_us);
        if (step_us < LOCK_POLL_MAX_US)
            step_us *= 2;
    }
    if (!hwkey_tpm2_lock_path(dev->tcti_conf, path, sizeof(path)))
        path[0] = '\0';
    hwkey_raise(HWKEY_R_DEVICE_BUSY,
                "another process has held the TPM lock %s for more than %lu ms (stopped in a "
                "debugger, or hung inside a TPM command?)",
                path, LOCK_WAIT_MS);
    return 0;
}

int hwkey_tpm2_lock_take(HWKEY_TPM2_DEVICE *dev)
{
    if (dev->rm_mode || dev->tcti_external)
        return 1;
    if (dev->lock_fd >= 0 && dev->lock_pid != getpid())
        hwkey_tpm2_lock_after_fork(dev);
    if (dev->lock_fd < 0 && !lock_open(dev))
        return 0;
    /*
     * A holder keeps it for one load-use-flush (milliseconds) and the
     * kernel drops it when a holder dies.  A holder that is stopped (a
     * debugger, SIGSTOP) or hangs must not block an event loop for good:
     * poll with a growing pause, up to LOCK_WAIT_MS, then fail busy.
     * Only operations that load objects take it: a capability probe inside
     * another context's operation would wait for itself (tpm2_context.c).
     *
     * flock is not fair: a process that takes the lock again right after
     * releasing it (a worker under load, a signing loop) wins against the
     * waiters polling every millisecond, and they starved past the bound
     * (seen: 4 of 8 RSA signers in CI).  Give them that millisecond.
     */
    if (dev->lock_released_ms != 0 && now_ms() - dev->lock_released_ms < 2)
        usleep(LOCK_POLL_MAX_US);
    if (!wait_lock(dev))
        return 0;
    dev->lock_held = 1;
    return 1;
}

void hwkey_tpm2_lock_drop(HWKEY_TPM2_DEVICE *dev)
{
    if (!dev->lock_held)
        return;
    flock(dev->lock_fd, LOCK_UN);
    dev->lock_released_ms = now_ms();
    dev->lock_held = 0;
}

void hwkey_tpm2_lock_after_fork(HWKEY_TPM2_DEVICE *dev)
{
    /*
     * Fork waits for the gate, so the parent did not hold the lock when it
     * forked; closing our copy leaves the parent's lock state untouched.
     */
    if (dev->lock_fd >= 0)
        close(dev->lock_fd);
    dev->lock_fd = -1;
    dev->lock_held = 0;
}

void hwkey_tpm2_lock_close(HWKEY_TPM2_DEVICE *dev)
{
    hwkey_tpm2_lock_drop(dev);
    if (dev->lock_fd >= 0 && dev->lock_pid == getpid())
        close(dev->lock_fd);
    dev->lock_fd = -1;
}

/* Flush every handle of one type; returns how many were flushed. */
static unsigned int flush_type(ESYS_CONTEXT *esys, TSS2_SYS_CONTEXT *sys, TPM2_HANDLE first)
{
    TPMS_CAPABILITY_DATA *cap = NULL;
    TPMI_YES_NO more = 0;
    unsigned int n = 0;

    if (Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, first,
                           TPM2_MAX_CAP_HANDLES, &more, &cap) != TSS2_RC_SUCCESS)
        return 0;
    for (UINT32 i = 0; i < cap->data.handles.count; i++) {
        TPM2_HANDLE h = cap->data.handles.handle[i];

        if ((h >> 24) != (first >> 24))
            continue;
        /* Through SYS: ESAPI has no ESYS_TR for an object it never loaded. */
        if (Tss2_Sys_FlushContext(sys, h) == TSS2_RC_SUCCESS)
            n++;
    }
    Esys_Free(cap);
    return n;
}

void hwkey_tpm2_flush_orphans(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys)
{
    TSS2_SYS_CONTEXT *sys = NULL;
    unsigned int n;

    if (!dev->lock_held || Esys_GetSysContext(esys, &sys) != TSS2_RC_SUCCESS || sys == NULL)
        return;
    n = flush_type(esys, sys, TPM2_TRANSIENT_FIRST);
    /* Sessions only once one was refused for lack of room (the same reason). */
    if (dev->flush_sessions)
        n += flush_type(esys, sys, TPM2_LOADED_SESSION_FIRST);
    dev->flush_sessions = 0;
    if (n > 0)
        hwkey_log(HWKEY_LOG_INFO,
                  "tpm2: flushed %u object(s)/session(s) left in the TPM by a process that "
                  "died holding the lock %s",
                  n, "(no resource manager)");
}
