/*
 * Session pool, one per token.  A PKCS#11 session runs one operation at a
 * time, so each signing thread takes its own; opening one costs a module
 * call, so they are kept and reused.  The pool never grows past the token's
 * ulMaxSessionCount/ulMaxRwSessionCount (capped at HWKEY_P11_MAX_SESSIONS);
 * threads beyond that wait.  Sessions stay open for the process lifetime:
 * closing the last one would log the token out (PKCS#11 §5.6), and closing
 * them at exit crashes with SoftHSM (see p11_module.c).
 */
#include "backend/pkcs11/p11_internal.h"

#include "util/error.h"

int hwkey_p11_rv_session_dead(CK_RV rv)
{
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
           rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
           rv == CKR_CRYPTOKI_NOT_INITIALIZED;
}

static CK_RV open_session(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE *s)
{
    CK_FUNCTION_LIST *fl = tok->mod->fl;
    CK_RV rv;

    /*
     * Read-write so that key generation and deletion can share the pool.
     * Notify is always NULL (CloudHSM rejects notify callbacks, quirk
     * no-session-callbacks, and no other module needs one).
     */
    rv = fl->C_OpenSession(tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, s);
    if (rv == CKR_TOKEN_WRITE_PROTECTED)
        rv = fl->C_OpenSession(tok->slot, CKF_SERIAL_SESSION, NULL, NULL, s);
    return rv;
}

int hwkey_p11_session_get(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE *s, uint64_t *epoch)
{
    int ok = 0;

    if (!hwkey_p11_module_check(tok->mod))
        return 0;
    pthread_mutex_lock(&tok->lock);
    for (;;) {
        if (tok->closing) {
            /* A re-initialisation is waiting for the sessions to come back (p11_recover.c). */
            pthread_cond_wait(&tok->cond, &tok->lock);
            continue;
        }
        if (tok->n_idle > 0) {
            *s = tok->idle[--tok->n_idle];
            *epoch = tok->epoch;
            tok->n_out++;
            ok = 1;
            break;
        }
        if (tok->n_open < tok->max_open) {
            uint64_t ep = tok->epoch;
            CK_RV rv;

            tok->n_open++; /* reserve the slot, open unlocked */
            tok->n_out++;
            pthread_mutex_unlock(&tok->lock);
            rv = open_session(tok, s);
            pthread_mutex_lock(&tok->lock);
            if (rv == CKR_OK && ep != tok->epoch) {
                /* Opened across a re-initialisation: stale; a fresh one is made next time. */
                rv = CKR_SESSION_HANDLE_INVALID;
            }
            if (rv == CKR_OK) {
                *epoch = ep;
                ok = 1;
                break;
            }
            tok->n_out--;
            pthread_cond_broadcast(&tok->cond);
            if (ep == tok->epoch)
                tok->n_open--;
            hwkey_p11_note_rv(rv);
            if (rv == CKR_SESSION_COUNT && tok->n_open > 0) {
                /* The token's real limit is lower than it said: wait for a session. */
                tok->max_open = tok->n_open;
                continue;
            }
            hwkey_raise(hwkey_p11_rv_reason(rv), "C_OpenSession on slot %lu of %s failed: %s",
                        (unsigned long)tok->slot, tok->mod->path, hwkey_p11_rv_name(rv));
            break;
        }
        pthread_cond_wait(&tok->cond, &tok->lock);
    }
    pthread_mutex_unlock(&tok->lock);
    return ok;
}

void hwkey_p11_session_put(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, uint64_t epoch, int broken)
{
    pthread_mutex_lock(&tok->lock);
    if (tok->n_out > 0)
        tok->n_out--;
    if (epoch != tok->epoch) {
        /* A session of the parent process (pool was reset by the fork code). */
    } else if (broken) {
        tok->n_open--;
        tok->mod->fl->C_CloseSession(s);
        if (tok->n_open == 0)
            tok->logged_in = 0; /* the last session closed: the token logged out */
    } else if (tok->n_idle < tok->max_open) {
        tok->idle[tok->n_idle++] = s;
    }
    /* Broadcast: a re-initialisation waiting for n_out == 0 shares the condition. */
    pthread_cond_broadcast(&tok->cond);
    pthread_mutex_unlock(&tok->lock);
}
