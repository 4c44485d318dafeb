/*
 * Fork: nginx and Apache load keys in a master, then fork workers.  In the
 * child every session, login and object handle the parent had is either gone
 * (a module that resets on fork, a remote HSM) or a copy that must not be
 * trusted; PKCS#11 §6.7.7 says the child calls C_Initialize again.  The fork
 * generation (util/forkgate.h) tells each module that it lives in a new
 * process; the first use there re-initialises it and bumps every token's
 * epoch, which makes the session pool start empty, the login happen again and
 * every key re-find its object from its stored id/label/class.
 *
 * A module that resets on fork needs the PIN again in the child, and the
 * application's passphrase callback cannot be asked there: the PIN that
 * worked is kept in hwkey_secmem_alloc_inherited() memory (p11_login.c),
 * protected like every secret but copied into the child instead of wiped,
 * so it never passes through ordinary memory.
 *
 * No atfork handler here: every token and module lock is taken only inside
 * the fork gate (p11_backend.c), and fork() waits for the gate, so no child
 * inherits a pool or login state that another thread was halfway through
 * changing.  The work a child needs is done lazily, on first use, below.
 */
#include "backend/pkcs11/p11_internal.h"

#include <string.h>
#include <unistd.h>

#include "util/error.h"
#include "util/forkgate.h"
#include "util/log.h"

/*
 * SoftHSM's file store sometimes misses a token that a sibling process is
 * writing at that moment (seen: 1 child in 4 forked at once): re-initialise
 * and look again, briefly.  0 with *rv set when C_Initialize itself fails.
 */
static int reresolve_in_child(HWKEY_P11_TOKEN *tok, CK_RV *rv)
{
    for (int i = 0; i < 50; i++) {
        if (hwkey_p11_token_reresolve(tok))
            return 1;
        usleep(10000);
        tok->mod->fl->C_Finalize(NULL); /* a child's first use, never at exit */
        if ((*rv = hwkey_p11_module_reinitialize(tok->mod)) != CKR_OK)
            return 0;
    }
    *rv = CKR_TOKEN_NOT_PRESENT;
    return 0;
}

uint64_t hwkey_p11_fork_generation(void)
{
    return hwkey_fork_generation();
}

/* The first use in a forked child (mod->lock held). */
static int reinit_in_child(HWKEY_P11_MODULE *mod)
{
    CK_RV rv = hwkey_p11_module_reinitialize(mod);
    int ok = rv == CKR_OK;

    if (!ok)
        hwkey_p11_raise_init_failure(mod, "C_Initialize in a forked child", rv);
    for (HWKEY_P11_TOKEN *tok = mod->tokens; tok != NULL; tok = tok->next) {
        pthread_mutex_lock(&tok->lock);
        if (ok && !reresolve_in_child(tok, &rv)) {
            if (rv == CKR_TOKEN_NOT_PRESENT) {
                char hint[1024];
                int h = hwkey_p11_store_hint(mod->path, hint, sizeof(hint));

                hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE,
                            "token \"%s\" not found again in %s "
                            "after re-initialising it in a forked child (uid %ld)%s%s",
                            tok->name, mod->path, (long)geteuid(), h ? ": " : "", h ? hint : "");
            } else {
                hwkey_p11_raise_init_failure(mod, "C_Initialize in a forked child", rv);
            }
            ok = 0;
        }
        /* The parent's sessions are not ours to close: forget them. */
        tok->n_idle = 0;
        tok->n_open = 0;
        tok->n_out = 0;
        tok->closing = 0;
        tok->logged_in = 0;
        tok->epoch++;
        pthread_mutex_unlock(&tok->lock);
    }
    if (!ok) {
        /* Down from the start in this process: back-off, one log line, fail fast. */
        hwkey_p11_mark(mod, 0, rv);
    } else {
        __atomic_store_n(&mod->down, 0, __ATOMIC_RELEASE);
        hwkey_log(HWKEY_LOG_INFO, "pkcs11: re-initialised %s after fork", mod->path);
    }
    return ok;
}

int hwkey_p11_module_check(HWKEY_P11_MODULE *mod)
{
    uint64_t gen = hwkey_p11_fork_generation();
    int ok = 1;

    if (__atomic_load_n(&mod->fork_gen, __ATOMIC_ACQUIRE) == gen &&
        !__atomic_load_n(&mod->down, __ATOMIC_ACQUIRE))
        return 1;
    pthread_mutex_lock(&mod->lock);
    if (mod->fork_gen != gen) {
        ok = reinit_in_child(mod);
        __atomic_store_n(&mod->fork_gen, gen, __ATOMIC_RELEASE);
    } else if (mod->down) {
        if (hwkey_p11_now_ms() < mod->next_try_ms) {
            hwkey_p11_raise_down(mod);
            ok = 0;
        } else {
            ok = hwkey_p11_reinit_locked(mod, mod->down_rv);
            hwkey_p11_mark(mod, ok, mod->down_rv);
        }
    }
    pthread_mutex_unlock(&mod->lock);
    return ok;
}
