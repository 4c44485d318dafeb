/*
 * The TCTI and ESAPI context of a TPM device: lazy connect (a provider load
 * without a TPM must not fail), one mutex around every ESAPI use, fork
 * detection, and the bounded retry of transient TPM conditions.
 */
#include "backend/tpm2/tpm2_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "util/error.h"
#include "util/forkgate.h"
#include "util/log.h"

/*
 * Total sleep budget of one retried command.  Short on purpose: the caller
 * may be an nginx worker's event loop.  It was 10 s when processes without a
 * resource manager waited for each other's slots; the cross-process lock
 * (tpm2_lock.c) made that wait unnecessary.
 */
#define RETRY_BUDGET_MS 200ul
#define RETRY_FIRST_MS 5ul
#define RETRY_MAX_STEP_MS 50ul

static HWKEY_TPM2_DEVICE *device_new(void)
{
    HWKEY_TPM2_DEVICE *dev = OPENSSL_zalloc(sizeof(*dev));

    if (dev == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating the TPM device context");
        return NULL;
    }
    if (pthread_mutex_init(&dev->lock, NULL) != 0) {
        OPENSSL_free(dev);
        hwkey_raise(HWKEY_R_INTERNAL, "creating the TPM device mutex");
        return NULL;
    }
    dev->base.backend = &hwkey_tpm2_backend;
    dev->primary_tr = ESYS_TR_NONE;
    dev->pid = getpid();
    dev->lock_fd = -1;
    return dev;
}

/*
 * What tpm2-tss itself logs (its ERROR:/WARNING: lines on stderr).  hwkey
 * reports device errors itself, once, so the library stays silent unless
 * the user asked for its log (TSS2_LOG) or for our trace level.
 *
 * The library has no API for this: each of its log modules reads TSS2_LOG
 * from the environment at its first message in a process.  Setting it once
 * is not enough: nginx replaces its workers' environment (only `env NAME;`
 * variables survive), so a module that first logs in a worker (the TCTI when
 * the TPM goes away) would find no TSS2_LOG and print at its default level,
 * once per failed reconnect.  So the choice is made once, in the first
 * process that opens the TPM (nginx's master, whose environment is the
 * user's), and put back into the environment of every process before its
 * first TSS call (connect, helper child).
 */
static pthread_once_t tss2_log_once = PTHREAD_ONCE_INIT;
static char tss2_log_choice[128]; /* "": leave the library's default */

static void tss2_log_decide(void)
{
    const char *user = getenv("TSS2_LOG");

    if (user != NULL && strlen(user) < sizeof(tss2_log_choice))
        snprintf(tss2_log_choice, sizeof(tss2_log_choice), "%s", user);
    else if (user == NULL && hwkey_log_level() < HWKEY_LOG_TRACE)
        snprintf(tss2_log_choice, sizeof(tss2_log_choice), "all+NONE");
}

void hwkey_tpm2_tss_log_apply(void)
{
    const char *now;

    pthread_once(&tss2_log_once, tss2_log_decide);
    if (tss2_log_choice[0] == '\0')
        return;
    /* setenv only when it differs: once per process, not once per connect. */
    now = getenv("TSS2_LOG");
    if (now == NULL || strcmp(now, tss2_log_choice) != 0)
        setenv("TSS2_LOG", tss2_log_choice, 1);
}

static int parse_parent(const char *s, uint32_t *out)
{
    char *end = NULL;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 0);
    if (errno != 0 || end == s || *end != '\0' || v == 0 || v > 0xfffffffful) {
        hwkey_raise(HWKEY_R_CONFIG_INVALID,
                    "tpm2-parent \"%s\" is not a TPM handle (e.g. 0x81000001)", s);
        return 0;
    }
    *out = (uint32_t)v;
    return 1;
}

HWKEY_DEVICE *hwkey_tpm2_device_open(const HWKEY_CONFIG *cfg)
{
    const char *conf = cfg != NULL && cfg->tpm2_tcti != NULL && cfg->tpm2_tcti[0] != '\0'
                           ? cfg->tpm2_tcti
                           : HWKEY_TPM2_DEFAULT_TCTI;
    HWKEY_TPM2_DEVICE *dev = device_new();

    if (dev == NULL)
        return NULL;
    if ((dev->tcti_conf = OPENSSL_strdup(conf)) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying the TCTI string");
        goto err;
    }
    if (cfg != NULL && cfg->tpm2_parent != NULL && cfg->tpm2_parent[0] != '\0' &&
        !parse_parent(cfg->tpm2_parent, &dev->cfg_parent))
        goto err;
    dev->rm_mode = hwkey_tpm2_tcti_is_rm(conf);
    hwkey_tpm2_tss_log_apply();
    hwkey_log(HWKEY_LOG_INFO, "tpm2: TCTI \"%s\", %s", conf,
              dev->rm_mode ? "resource manager: keys stay loaded"
                           : "no resource manager: load-use-flush");
    return &dev->base;
err:
    hwkey_tpm2_device_close(&dev->base);
    return NULL;
}

HWKEY_DEVICE *hwkey_tpm2_open_with_tcti(TSS2_TCTI_CONTEXT *tcti, int rm_mode)
{
    HWKEY_TPM2_DEVICE *dev = device_new();

    if (dev == NULL)
        return NULL;
    if ((dev->tcti_conf = OPENSSL_strdup("(caller-supplied TCTI)")) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying the TCTI string");
        hwkey_tpm2_device_close(&dev->base);
        return NULL;
    }
    dev->tcti = tcti;
    dev->tcti_external = 1;
    dev->rm_mode = rm_mode;
    return &dev->base;
}

static int connect_locked(HWKEY_TPM2_DEVICE *dev)
{
    TSS2_RC rc;
    char what[512];

    if (dev->tcti == NULL) {
        if (dev->tcti_external) {
            hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE,
                        "cannot reconnect a caller-supplied TCTI after fork");
            return 0;
        }
        /* While the TPM is away, fail at once rather than each caller trying. */
        if (!hwkey_tpm2_backoff_check(dev) || !hwkey_tpm2_glib_check(dev))
            return 0;
        /* This process's first TSS call may be this one (a forked nginx worker). */
        hwkey_tpm2_tss_log_apply();
        rc = Tss2_TctiLdr_Initialize(dev->tcti_conf, &dev->tcti);
        if (rc != TSS2_RC_SUCCESS) {
            dev->tcti = NULL;
            hwkey_tpm2_tcti_raise(dev->tcti_conf, rc);
            hwkey_tpm2_backoff_failed(dev);
            return 0;
        }
    }
    rc = Esys_Initialize(&dev->esys, dev->tcti, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        dev->esys = NULL;
        snprintf(what, sizeof(what), "cannot start ESAPI on TCTI \"%s\"", dev->tcti_conf);
        hwkey_tpm2_raise_rc(rc, what);
        if (!dev->tcti_external) {
            Tss2_TctiLdr_Finalize(&dev->tcti);
            dev->tcti = NULL;
            hwkey_tpm2_backoff_failed(dev);
        }
        return 0;
    }
    dev->generation++;
    dev->conn_used = 0;
    hwkey_tpm2_backoff_ok(dev);
    return 1;
}

/*
 * In a forked child the parent's ESAPI context and TCTI are shared with the
 * parent (same socket / same /dev/tpmrm0 open file): finalizing them could
 * send session-end messages (mssim) or flush the parent's objects through the
 * shared RM connection.  Abandon them (a one-off leak per fork) and let the
 * next acquire connect afresh.  Saved contexts stay valid TPM-side.
 */
static void abandon_after_fork(HWKEY_TPM2_DEVICE *dev)
{
    hwkey_log(HWKEY_LOG_INFO, "tpm2: fork detected (pid %ld -> %ld), reconnecting", (long)dev->pid,
              (long)getpid());
    dev->esys = NULL;
    dev->tcti = NULL; /* a caller-supplied TCTI is the parent's connection too */
    dev->pid = getpid();
    dev->generation++;
    hwkey_tpm2_parent_reset(dev, NULL);
    /* The inherited lock descriptor is the parent's lock: open our own. */
    hwkey_tpm2_lock_after_fork(dev);
    /* A child starts afresh: no inherited backoff from the parent's failures. */
    dev->backoff_ms = 0;
    dev->retry_at_ms = 0;
}

void hwkey_tpm2_disconnect(HWKEY_TPM2_DEVICE *dev, int flush)
{
    dev->broken = 0;
    if (dev->esys == NULL)
        return;
    hwkey_tpm2_parent_reset(dev, flush ? dev->esys : NULL);
    Esys_Finalize(&dev->esys);
    dev->esys = NULL;
    if (!dev->tcti_external && dev->tcti != NULL) {
        Tss2_TctiLdr_Finalize(&dev->tcti);
        dev->tcti = NULL;
    }
    dev->generation++;
}

static void drop_broken(HWKEY_TPM2_DEVICE *dev);

/* The device this thread holds between acquire and release. */
static __thread HWKEY_TPM2_DEVICE *held_dev;

/*
 * Through a resource manager, "the handle references an object that is not
 * loaded" (TPM_RC_REFERENCE_H0..H6) means the manager forgot this
 * connection's objects: tpm2-abrmd restarted and the tabrmd TCTI's D-Bus
 * proxy reconnected to the new one without an error (seen: one nginx worker
 * failing TPM2_Sign with 0x910 for good).  The connection's state is gone,
 * as after a transport failure: drop it, reconnect, load the keys again.
 */
static int stale_handle(TSS2_RC rc)
{
    TSS2_RC base = hwkey_tpm2_rc_base(rc), layer = rc & TSS2_RC_LAYER_MASK;

    return (layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER) &&
           base >= TPM2_RC_REFERENCE_H0 && base <= TPM2_RC_REFERENCE_H6;
}

void hwkey_tpm2_rc_seen(TSS2_RC rc)
{
    if (held_dev != NULL && hwkey_tpm2_reason(rc) == HWKEY_R_DEVICE_BUSY &&
        hwkey_tpm2_rc_base(rc) == TPM2_RC_SESSION_MEMORY)
        held_dev->flush_sessions = 1;
    if (held_dev != NULL && held_dev->esys != NULL &&
        (hwkey_tpm2_conn_broken(rc) || (held_dev->rm_mode && stale_handle(rc)))) {
        if (!held_dev->broken)
            hwkey_tpm2_mark_lost(held_dev, rc);
        held_dev->broken = 1;
    }
}

void hwkey_tpm2_note_rc(HWKEY_TPM2_DEVICE *dev, TSS2_RC rc)
{
    if (rc == TSS2_RC_SUCCESS || !hwkey_tpm2_conn_broken(rc) || dev->esys == NULL)
        return;
    /*
     * The transport broke (swtpm or tpm2-abrmd restarted, socket closed):
     * ESAPI cannot resume a half-done exchange (its state machine would
     * refuse the next command with BAD_SEQUENCE), so drop the context and
     * let the next acquire reconnect.  Nothing can be flushed through it.
     */
    if (!dev->broken)
        hwkey_tpm2_mark_lost(dev, rc);
    drop_broken(dev);
}

static void unlock_all(HWKEY_TPM2_DEVICE *dev)
{
    held_dev = NULL;
    hwkey_tpm2_lock_drop(dev);
    pthread_mutex_unlock(&dev->lock);
    hwkey_gate_leave();
}

static ESYS_CONTEXT *acquire(HWKEY_TPM2_DEVICE *dev, int loads_objects)
{
    /* The fork gate first (util/forkgate.h): fork() never splits a command. */
    hwkey_gate_enter();
    if (pthread_mutex_lock(&dev->lock) != 0) {
        hwkey_gate_leave();
        hwkey_raise(HWKEY_R_INTERNAL, "locking the TPM device");
        return NULL;
    }
    if (dev->pid != getpid())
        abandon_after_fork(dev);
    /*
     * Connect first, then the cross-process lock (no RM only): a connect
     * that hangs (a TPM that accepts but does not answer) must not keep
     * every other process out.
     */
    /*
     * A probe (TPM2_GetCapability) loads no object, so it needs no slot and
     * no cross-process lock.  Taking it would also wait for ourselves: the
     * CLI (its own copy of this code) holds the lock while tpm2-tss, inside
     * that command, fetches from OpenSSL, which asks hwkey.so what the TPM
     * supports (seen: 25 s per `hwkey decrypt`, the probe timing out).
     */
    if ((dev->esys == NULL && !connect_locked(dev)) ||
        (loads_objects && !hwkey_tpm2_lock_take(dev))) {
        unlock_all(dev);
        return NULL;
    }
    held_dev = dev;
    /* Anything loaded now was left by a hwkey process that died holding the lock. */
    if (loads_objects)
        hwkey_tpm2_flush_orphans(dev, dev->esys);
    return dev->esys;
}

ESYS_CONTEXT *hwkey_tpm2_acquire(HWKEY_TPM2_DEVICE *dev)
{
    return acquire(dev, 1);
}

ESYS_CONTEXT *hwkey_tpm2_acquire_probe(HWKEY_TPM2_DEVICE *dev)
{
    return acquire(dev, 0);
}

/* A connection that breaks before serving anything does not count as back. */
static void drop_broken(HWKEY_TPM2_DEVICE *dev)
{
    if (!dev->conn_used && !dev->tcti_external)
        hwkey_tpm2_backoff_bump(dev);
    hwkey_tpm2_disconnect(dev, 0);
}

void hwkey_tpm2_release(HWKEY_TPM2_DEVICE *dev)
{
    if (dev->broken)
        drop_broken(dev);
    if (dev->esys != NULL) {
        /* This operation met no transport failure: the TPM answered. */
        dev->conn_used = 1;
        if (dev->lost || !dev->ever_connected)
            hwkey_tpm2_back(dev);
    }
    unlock_all(dev);
}

void hwkey_tpm2_device_close(HWKEY_DEVICE *base)
{
    HWKEY_TPM2_DEVICE *dev = (HWKEY_TPM2_DEVICE *)base;

    if (dev == NULL)
        return;
    hwkey_gate_enter();
    pthread_mutex_lock(&dev->lock);
    if (dev->pid == getpid() && dev->esys != NULL) {
        /* Flush the primary we keep in RM mode; keys were flushed by key_free. */
        hwkey_tpm2_parent_reset(dev, dev->esys);
        /* No RM: leave no orphan of a dead hwkey process behind us either. */
        if (dev->used_keys && hwkey_tpm2_lock_take(dev)) {
            hwkey_tpm2_flush_orphans(dev, dev->esys);
            hwkey_tpm2_lock_drop(dev);
        }
        Esys_Finalize(&dev->esys);
        if (!dev->tcti_external && dev->tcti != NULL)
            Tss2_TctiLdr_Finalize(&dev->tcti);
    } else {
        hwkey_tpm2_parent_reset(dev, NULL);
    }
    Esys_Free(dev->primary_saved); /* plain memory; the TPM holds nothing for it */
    dev->primary_saved = NULL;
    hwkey_tpm2_lock_close(dev);
    pthread_mutex_unlock(&dev->lock);
    hwkey_gate_leave();
    pthread_mutex_destroy(&dev->lock);
    OPENSSL_free(dev->tcti_conf);
    OPENSSL_free(dev);
}

/* --- retry --------------------------------------------------------------- */

static void sleep_ms(unsigned long ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int hwkey_tpm2_retry(HWKEY_TPM2_RETRY *retry, TSS2_RC rc)
{
    unsigned long step, jitter = 0;
    unsigned int r = 0;

    if (rc == TSS2_RC_SUCCESS || !hwkey_tpm2_rc_busy(rc) || retry->slept_ms >= RETRY_BUDGET_MS)
        return 0;
    step = RETRY_FIRST_MS << (retry->attempts < 6 ? retry->attempts : 6);
    if (step > RETRY_MAX_STEP_MS)
        step = RETRY_MAX_STEP_MS;
    /*
     * Randomized so that many processes competing for swtpm's three object
     * slots do not retry in lock-step.  Jitter only, not a secret.
     */
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) == 1)
        jitter = r % (step + 1);
    step = step / 2 + jitter;
    if (retry->slept_ms + step > RETRY_BUDGET_MS)
        step = RETRY_BUDGET_MS - retry->slept_ms;
    hwkey_log(HWKEY_LOG_TRACE, "tpm2: 0x%x, retrying in %lu ms", (unsigned int)rc, step);
    sleep_ms(step);
    retry->slept_ms += step;
    retry->attempts++;
    return 1;
}

void hwkey_tpm2_flush_quiet(ESYS_CONTEXT *esys, ESYS_TR *tr)
{
    if (*tr == ESYS_TR_NONE)
        return;
    if (Esys_FlushContext(esys, *tr) != TSS2_RC_SUCCESS)
        Esys_TR_Close(esys, tr);
    *tr = ESYS_TR_NONE;
}
