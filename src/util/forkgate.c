/*
 * The fork gate: see forkgate.h for the model and the lock order.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP */
#endif
#include "util/forkgate.h"

#include <pthread.h>
#include <stdlib.h>

#include "util/log.h"

#define MAX_HOOKS 8

typedef struct {
    void (*prepare)(void);
    void (*parent)(void);
    void (*child)(void);
} FORK_HOOK;

static pthread_rwlock_t gate;
static pthread_once_t gate_once = PTHREAD_ONCE_INIT;
static __thread unsigned int gate_depth;

static pthread_mutex_t hooks_lock = PTHREAD_MUTEX_INITIALIZER;
static FORK_HOOK hooks[MAX_HOOKS];
static unsigned int n_hooks;

static uint64_t fork_generation;
/* Set by prepare when the forking thread could take the gate. */
static int gate_taken_for_fork;

static void gate_create(void);

static void on_prepare(void)
{
    /*
     * A thread that forks from inside the gate (an application callback we
     * failed to bracket) would wait for itself: fork without the gate
     * rather than hang, and say so.
     */
    if (gate_depth > 0) {
        hwkey_log(HWKEY_LOG_ERROR, "fork() inside a device operation: the child may "
                                   "inherit provider locks (a provider bug, please report)");
        gate_taken_for_fork = 0;
    } else {
        pthread_rwlock_wrlock(&gate);
        gate_taken_for_fork = 1;
    }
    pthread_mutex_lock(&hooks_lock);
    for (unsigned int i = 0; i < n_hooks; i++)
        if (hooks[i].prepare != NULL)
            hooks[i].prepare();
}

static void on_parent(void)
{
    for (unsigned int i = 0; i < n_hooks; i++)
        if (hooks[i].parent != NULL)
            hooks[i].parent();
    pthread_mutex_unlock(&hooks_lock);
    if (gate_taken_for_fork)
        pthread_rwlock_unlock(&gate);
}

static void on_child(void)
{
    __atomic_add_fetch(&fork_generation, 1, __ATOMIC_SEQ_CST);
    for (unsigned int i = 0; i < n_hooks; i++)
        if (hooks[i].child != NULL)
            hooks[i].child();
    /*
     * The child has one thread, the one that forked, but with a new thread
     * id: glibc's unlock would not recognise it as the writer.  Start both
     * locks afresh instead (nobody else can hold them here).
     */
    pthread_mutex_init(&hooks_lock, NULL);
    /*
     * Always a fresh gate: after a fork from inside the gate (not taken
     * above) the copy still counts the parent's readers, which no thread
     * here will ever release.  The forking thread, if it was inside, holds
     * the shared side again so that its pending leave() calls balance.
     */
    gate_create();
    if (gate_depth > 0)
        pthread_rwlock_rdlock(&gate);
}

static void gate_create(void)
{
    pthread_rwlockattr_t attr;

    pthread_rwlockattr_init(&attr);
    /*
     * Writer preference: a fork waits only for the operations already in
     * flight, not for every signature that arrives meanwhile.  Safe because
     * a thread never takes the shared side twice (the depth counter).
     */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&gate, &attr);
    pthread_rwlockattr_destroy(&attr);
}

static void gate_init(void)
{
    gate_create();
    pthread_atfork(on_prepare, on_parent, on_child);
}

void hwkey_gate_enter(void)
{
    pthread_once(&gate_once, gate_init);
    if (gate_depth++ == 0)
        pthread_rwlock_rdlock(&gate);
}

void hwkey_gate_leave(void)
{
    if (gate_depth == 0)
        return;
    if (--gate_depth == 0)
        pthread_rwlock_unlock(&gate);
}

unsigned int hwkey_gate_depth(void)
{
    return gate_depth;
}

unsigned int hwkey_gate_suspend(void)
{
    unsigned int depth = gate_depth;

    if (depth > 0) {
        gate_depth = 0;
        pthread_rwlock_unlock(&gate);
    }
    return depth;
}

void hwkey_gate_resume(unsigned int depth)
{
    if (depth == 0)
        return;
    pthread_once(&gate_once, gate_init);
    pthread_rwlock_rdlock(&gate);
    gate_depth = depth;
}

uint64_t hwkey_fork_generation(void)
{
    /* Whoever reads the count relies on forks being counted from now on. */
    pthread_once(&gate_once, gate_init);
    return __atomic_load_n(&fork_generation, __ATOMIC_ACQUIRE);
}

int hwkey_fork_hook(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
    int ok = 0;

    pthread_once(&gate_once, gate_init);
    pthread_mutex_lock(&hooks_lock);
    if (n_hooks < MAX_HOOKS) {
        hooks[n_hooks].prepare = prepare;
        hooks[n_hooks].parent = parent;
        hooks[n_hooks].child = child;
        n_hooks++;
        ok = 1;
    }
    pthread_mutex_unlock(&hooks_lock);
    return ok;
}
