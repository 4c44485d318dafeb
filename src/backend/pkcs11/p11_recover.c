/*
 * A device that leaves and comes back: an HSM rebooted, a USB token pulled
 * and re-inserted, `p11-kit server` restarted (its client module answers
 * CKR_DEVICE_ERROR to every call once the server is gone and reconnects only
 * in C_Initialize, TRAPS.md).  Sessions, the login and object handles are all
 * gone then; the only way back that every module supports is C_Finalize +
 * C_Initialize.  This is the one place that calls C_Finalize on a working
 * process (never at exit: SoftHSM tears itself down in its destructors).
 *
 * Policy: the operation that meets the error re-initialises the module once
 * and retries once (a handshake arriving after the device returned just
 * works).  If C_Initialize fails the module is "down": every operation fails
 * at once with one error, and the next re-initialisation is tried by the
 * first operation after a back-off of 100 ms doubling to 800 ms, so a device
 * that returns is used again within 2 s in every worker (measured with 4
 * nginx workers behind p11-kit server: a 1.6 s cap let the last worker come
 * back after 2.75 s).  One log line when it is lost, one
 * when it is back; none per operation.
 */
#include "backend/pkcs11/p11_internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>

#include "util/error.h"
#include "util/log.h"

#define BACKOFF_MIN_MS HWKEY_P11_REINIT_BACKOFF_MIN_MS
#define BACKOFF_MAX_MS HWKEY_P11_REINIT_BACKOFF_MAX_MS
/* How long a re-initialisation waits for other threads' sessions to come back. */
#define QUIESCE_MS 500u

static __thread CK_RV noted_rv;
static __thread int recovery_quiet;

void hwkey_p11_recovery_quiet(int on)
{
    recovery_quiet = on;
}

int hwkey_p11_rv_device_lost(CK_RV rv)
{
    switch (rv) {
    case CKR_DEVICE_REMOVED:
    case CKR_DEVICE_ERROR:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    case CKR_GENERAL_ERROR: /* p11-kit-client and others on a lost connection */
        return 1;
    default:
        return 0;
    }
}

void hwkey_p11_note_rv(CK_RV rv)
{
    noted_rv = rv;
}

CK_RV hwkey_p11_noted_rv(void)
{
    return noted_rv;
}

uint64_t hwkey_p11_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t hwkey_p11_token_epoch(HWKEY_P11_TOKEN *tok)
{
    uint64_t e;

    pthread_mutex_lock(&tok->lock);
    e = tok->epoch;
    pthread_mutex_unlock(&tok->lock);
    return e;
}

/*
 * Stops new sessions of tok and waits until every checked-out one is back
 * (C_Finalize under a thread inside C_Sign would pull the module from under
 * it).  Threads holding a session never wait for mod->lock, so they do come
 * back; the deadline covers a PIN prompt that holds one (p11_login.c).
 */
static int quiesce(HWKEY_P11_TOKEN *tok, uint64_t deadline_ms)
{
    int ok = 1;

    pthread_mutex_lock(&tok->lock);
    tok->closing = 1;
    while (tok->n_out > 0) {
        uint64_t now = hwkey_p11_now_ms();
        struct timespec ts;

        if (now >= deadline_ms) {
            ok = 0;
            break;
        }
        /* tok->cond uses CLOCK_REALTIME (default attributes). */
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)((deadline_ms - now) / 1000u);
        ts.tv_nsec += (long)((deadline_ms - now) % 1000u) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&tok->cond, &tok->lock, &ts);
    }
    pthread_mutex_unlock(&tok->lock);
    return ok;
}

/* Lets session_get run again; with reset, the old sessions and login are gone. */
static void reopen(HWKEY_P11_TOKEN *tok, int reset)
{
    pthread_mutex_lock(&tok->lock);
    if (reset) {
        tok->n_idle = 0;
        tok->n_open = 0;
        tok->logged_in = 0;
        tok->epoch++;
    }
    tok->closing = 0;
    pthread_cond_broadcast(&tok->cond);
    pthread_mutex_unlock(&tok->lock);
}

int hwkey_p11_reinit_locked(HWKEY_P11_MODULE *mod, CK_RV why)
{
    uint64_t deadline = hwkey_p11_now_ms() + QUIESCE_MS;
    HWKEY_P11_TOKEN *tok;
    char what[96];
    int quiet = 1, ok = 1;
    CK_RV rv;

    for (tok = mod->tokens; tok != NULL; tok = tok->next)
        quiet = quiesce(tok, deadline) && quiet;
    if (!quiet) {
        for (tok = mod->tokens; tok != NULL; tok = tok->next)
            reopen(tok, 0);
        hwkey_raise(HWKEY_R_DEVICE_BUSY,
                    "%s answered %s; cannot re-initialise it: sessions "
                    "still in use after %u ms",
                    mod->path, hwkey_p11_rv_name(why), QUIESCE_MS);
        return 0;
    }
    /* Its answer does not matter: a module whose device is gone may refuse it. */
    mod->fl->C_Finalize(NULL);
    rv = hwkey_p11_module_reinitialize(mod);
    if (rv != CKR_OK) {
        snprintf(what, sizeof(what), "C_Initialize (re-initialising after %s)",
                 hwkey_p11_rv_name(why));
        hwkey_p11_raise_init_failure(mod, what, rv);
        ok = 0;
    }
    for (tok = mod->tokens; tok != NULL; tok = tok->next) {
        if (ok && !hwkey_p11_token_reresolve(tok)) {
            char hint[512];

            hint[0] = '\0';
            hwkey_p11_store_hint(mod->path, hint, sizeof(hint));
            hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE,
                        "token \"%s\" is not present in %s after "
                        "re-initialising it (lost with %s)%s%s",
                        tok->name, mod->path, hwkey_p11_rv_name(why), hint[0] != '\0' ? "; " : "",
                        hint);
            ok = 0;
        }
        /* Sessions died with C_Finalize whether or not C_Initialize worked. */
        reopen(tok, 1);
    }
    return ok;
}

void hwkey_p11_mark(HWKEY_P11_MODULE *mod, int ok, CK_RV rv)
{
    uint64_t now = hwkey_p11_now_ms();

    if (ok) {
        /* Under failover the replica logs "back" itself (p11_replicas.c). */
        if (!recovery_quiet && mod->down)
            hwkey_log(HWKEY_LOG_ERROR,
                      "pkcs11: %s is back after %llu ms: re-initialised, "
                      "logging in again",
                      mod->path, (unsigned long long)(now - mod->down_since_ms));
        else if (!recovery_quiet)
            hwkey_log(HWKEY_LOG_ERROR,
                      "pkcs11: %s answered %s: re-initialised it, tokens "
                      "usable again",
                      mod->path, hwkey_p11_rv_name(rv));
        mod->recoveries++;
        mod->backoff_ms = 0;
        __atomic_store_n(&mod->down, 0, __ATOMIC_RELEASE);
        return;
    }
    if (!mod->down) {
        mod->down_since_ms = now;
        mod->down_rv = rv;
        mod->backoff_ms = BACKOFF_MIN_MS;
        __atomic_store_n(&mod->down, 1, __ATOMIC_RELEASE);
        if (!recovery_quiet)
            hwkey_log(HWKEY_LOG_ERROR,
                      "pkcs11: lost %s (%s): operations fail at once until "
                      "it is back; reconnecting every %u ms at most",
                      mod->path, hwkey_p11_rv_name(rv), BACKOFF_MAX_MS);
    } else {
        mod->backoff_ms =
            mod->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : mod->backoff_ms * 2;
    }
    mod->next_try_ms = now + mod->backoff_ms;
}

void hwkey_p11_raise_down_at(const char *file, int line, const char *func, HWKEY_P11_MODULE *mod)
{
    uint64_t now = hwkey_p11_now_ms();

    hwkey_raise_at(file, line, func, HWKEY_R_DEVICE_UNREACHABLE,
                   "PKCS#11 module %s is unreachable (lost %llu ms "
                   "ago with %s); next reconnection attempt in %llu ms",
                   mod->path, (unsigned long long)(now - mod->down_since_ms),
                   hwkey_p11_rv_name(mod->down_rv),
                   (unsigned long long)(mod->next_try_ms > now ? mod->next_try_ms - now : 0));
}

int hwkey_p11_recover(HWKEY_P11_TOKEN *tok, uint64_t seen, CK_RV rv)
{
    HWKEY_P11_MODULE *mod = tok->mod;
    int ok;

    pthread_mutex_lock(&mod->lock);
    if (hwkey_p11_token_epoch(tok) != seen) {
        ok = 1; /* another thread re-initialised it meanwhile */
    } else if (mod->down && hwkey_p11_now_ms() < mod->next_try_ms) {
        hwkey_p11_raise_down(mod);
        ok = 0;
    } else {
        ok = hwkey_p11_reinit_locked(mod, rv);
        hwkey_p11_mark(mod, ok, rv);
    }
    pthread_mutex_unlock(&mod->lock);
    return ok;
}

/*
 * A session and the object handle, re-initialising the module once if the
 * device was lost (the failure was raised deeper; hwkey_p11_noted_rv() says
 * why).  *recovered: the one re-initialisation of this operation is spent.
 */
int hwkey_p11_key_acquire_recovering(HWKEY_P11_KEY *key, CK_SESSION_HANDLE *s, uint64_t *epoch,
                                     CK_OBJECT_HANDLE *obj, int *recovered)
{
    uint64_t seen = hwkey_p11_token_epoch(key->tok);
    CK_RV lost;

    hwkey_p11_note_rv(CKR_OK);
    if (hwkey_p11_key_acquire(key, s, epoch, obj))
        return 1;
    lost = hwkey_p11_noted_rv();
    if (*recovered || !hwkey_p11_rv_device_lost(lost))
        return 0;
    *recovered = 1;
    /* The first failure is replaced by the outcome of the recovery: one error, not two. */
    ERR_pop_to_mark();
    ERR_set_mark();
    return hwkey_p11_recover(key->tok, seen, lost) && hwkey_p11_key_acquire(key, s, epoch, obj);
}
