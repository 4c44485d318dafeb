/*
 * Fork: nginx and Apache load keys in a master, then fork workers.  In the
 * child every session, login and object handle the parent had is either gone
 * (a module that resets on fork, a remote HSM) or a copy that must not be
 * trusted; PKCS#11 §6.7.7 says the child calls C_Initialize again.  A counter
 * bumped by a pthread_atfork child handler tells each module that it lives in
 * a new process; the first use there re-initialises it and bumps every
 * token's epoch, which makes the session pool start empty, the login happen
 * again and every key re-find its object from its stored id/label/class.
 *
 * A module that resets on fork needs the PIN again in the child, and the
 * application's passphrase callback cannot be asked there: the PIN that
 * worked is kept in hwkey_secmem_alloc_inherited() memory (p11_login.c),
 * protected like every secret but copied into the child instead of wiped,
 * so it never passes through ordinary memory.  The prepare handler holds
 * every token lock across fork(), so no child inherits a pool or login state
 * (or a half-replaced PIN) that another thread was halfway through changing.
 */
#include "backend/pkcs11/p11_internal.h"

#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "util/secmem.h"

#include "util/error.h"
#include "util/forkgate.h"
#include "util/log.h"

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static HWKEY_P11_TOKEN *all_tokens;

void hwkey_p11_fork_track(HWKEY_P11_TOKEN *tok)
{
    pthread_mutex_lock(&all_lock);
    tok->all_next = all_tokens;
    all_tokens = tok;
    pthread_mutex_unlock(&all_lock);
}

void hwkey_p11_fork_untrack(HWKEY_P11_TOKEN *tok)
{
    pthread_mutex_lock(&all_lock);
    for (HWKEY_P11_TOKEN **pp = &all_tokens; *pp != NULL; pp = &(*pp)->all_next) {
        if (*pp == tok) {
            *pp = tok->all_next;
            break;
        }
    }
    pthread_mutex_unlock(&all_lock);
}

static void on_fork_prepare(void)
{
    pthread_mutex_lock(&all_lock);
    for (HWKEY_P11_TOKEN *tok = all_tokens; tok != NULL; tok = tok->all_next)
        pthread_mutex_lock(&tok->lock);
}

static void on_fork_parent(void)
{
    for (HWKEY_P11_TOKEN *tok = all_tokens; tok != NULL; tok = tok->all_next)
        pthread_mutex_unlock(&tok->lock);
    pthread_mutex_unlock(&all_lock);
}

static void on_fork_child(void)
{
    for (HWKEY_P11_TOKEN *tok = all_tokens; tok != NULL; tok = tok->all_next)
        pthread_mutex_unlock(&tok->lock);
    pthread_mutex_unlock(&all_lock);
}

static void register_atfork(void)
{
    /* One fork model for the whole provider: util/forkgate.h. */
    hwkey_fork_hook(on_fork_prepare, on_fork_parent, on_fork_child);
}

static int find_slot(HWKEY_P11_TOKEN *tok)
{
    CK_FUNCTION_LIST *fl = tok->mod->fl;
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;

    if (fl->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        return 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;

        if (fl->C_GetTokenInfo(slots[i], &ti) == CKR_OK
            && memcmp(ti.label, tok->info.label, sizeof(ti.label)) == 0
            && memcmp(ti.serialNumber, tok->info.serialNumber, sizeof(ti.serialNumber)) == 0) {
            tok->slot = slots[i];
            return 1;
        }
    }
    return 0;
}

/*
 * Slot ids may change when a module re-initialises.  And SoftHSM's file store
 * sometimes misses a token that a sibling process is writing at that moment
 * (seen: 1 child in 4 forked at once): re-initialise and look again, briefly.
 */
static void reresolve_slot(HWKEY_P11_TOKEN *tok)
{
    for (int i = 0; i < 50; i++) {
        if (find_slot(tok))
            return;
        usleep(10000);
        tok->mod->fl->C_Finalize(NULL);   /* a child's first use, never at exit */
        hwkey_p11_module_reinitialize(tok->mod);
    }
    hwkey_log(HWKEY_LOG_ERROR, "pkcs11: token \"%s\" not found again after re-initialisation",
              tok->name);
}

void hwkey_p11_fork_init(void)
{
    pthread_once(&fork_once, register_atfork);
}

uint64_t hwkey_p11_fork_generation(void)
{
    return hwkey_fork_generation();
}

int hwkey_p11_module_check(HWKEY_P11_MODULE *mod)
{
    uint64_t gen = hwkey_p11_fork_generation();
    CK_RV rv;
    int ok = 1;

    if (__atomic_load_n(&mod->fork_gen, __ATOMIC_ACQUIRE) == gen)
        return 1;
    pthread_mutex_lock(&mod->lock);
    if (mod->fork_gen == gen)
        goto end;
    rv = hwkey_p11_module_reinitialize(mod);
    if (rv != CKR_OK) {
        hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE, "C_Initialize of %s in a forked child "
                    "failed: %s", mod->path, hwkey_p11_rv_name(rv));
        ok = 0;
        goto end;
    }
    for (HWKEY_P11_TOKEN *tok = mod->tokens; tok != NULL; tok = tok->next) {
        pthread_mutex_lock(&tok->lock);
        reresolve_slot(tok);
        /* The parent's sessions are not ours to close: forget them. */
        tok->n_idle = 0;
        tok->n_open = 0;
        tok->logged_in = 0;
        tok->epoch++;
        pthread_mutex_unlock(&tok->lock);
    }
    __atomic_store_n(&mod->fork_gen, gen, __ATOMIC_RELEASE);
    hwkey_log(HWKEY_LOG_INFO, "pkcs11: re-initialised %s after fork", mod->path);
end:
    pthread_mutex_unlock(&mod->lock);
    return ok;
}
