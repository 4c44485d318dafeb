/*
 * The provider's one fork-and-lock model (ARCHITECTURE.md §7).  This file
 * owns it; docs/locking.md explains it for people.
 *
 * The gate.  Every piece of code that takes a backend mutex (TPM device
 * lock, PKCS#11 module/token/key locks) does so between hwkey_gate_enter()
 * and hwkey_gate_leave().  fork() takes the gate exclusively in its prepare
 * handler, i.e. it waits until no thread is inside a device operation, so a
 * child never inherits a mutex that another thread held, a half-updated
 * session pool or a half-sent TPM command.  The gate is re-entrant per
 * thread (a thread-local depth) and prefers the writer, so a fork is never
 * starved by a stream of signatures.
 *
 * Lock order inside the gate, outermost first (a thread may only take a
 * lock that comes later in this list than every lock it already holds):
 *
 *   1. PKCS#11 device (module list)        p11_module.c
 *   2. PKCS#11 module (token list, C_Initialize)
 *   3. PKCS#11 token (session pool, login state)
 *   4. PKCS#11 key (object handle cache); failover replica-set state
 *      (p11_replicas.c): leaves, never held together
 *   5. TPM device (ESAPI context)           tpm2_context.c
 *   6. TPM no-RM file lock (flock, per TPM, across processes)
 *   7. secure memory (secmem.c; a leaf: never held while taking another)
 *
 * Callbacks.  No application callback (PIN or passphrase prompt, progress)
 * runs inside the gate or under any provider lock: a callback may block for
 * minutes (a person typing a PIN), may fork (a passphrase helper), or may
 * call back into OpenSSL.  Code that has to call one while inside the gate
 * brackets it with hwkey_gate_suspend()/hwkey_gate_resume(); holding a
 * backend mutex across the call is a bug.
 *
 * Fork hooks.  A module that must act in the child (re-initialise, replace
 * shared memory) registers with hwkey_fork_hook(); prepare hooks run after
 * the gate is taken, child and parent hooks before it is released, in
 * registration order.  hwkey_fork_generation() counts forks in this process
 * tree: a device compares it with the generation it connected in.
 */
#ifndef HWKEY_UTIL_FORKGATE_H
#define HWKEY_UTIL_FORKGATE_H

#include <stdint.h>

/* Enter / leave the gate (shared side).  Re-entrant in one thread. */
void hwkey_gate_enter(void);
void hwkey_gate_leave(void);
/* How deep this thread is inside the gate (0: outside). */
unsigned int hwkey_gate_depth(void);

/*
 * Leave the gate completely around an application callback; returns the
 * depth to give back to hwkey_gate_resume().  A no-op outside the gate.
 */
unsigned int hwkey_gate_suspend(void);
void hwkey_gate_resume(unsigned int depth);

/* Number of fork()s seen by this process and its ancestors' copies of hwkey. */
uint64_t hwkey_fork_generation(void);

/*
 * Register handlers run inside fork() (any may be NULL).  prepare runs with
 * the gate held exclusively (so no device operation is in flight); parent
 * and child run before it is released.  Up to 8 registrations; returns 0 if
 * the table is full.
 */
int hwkey_fork_hook(void (*prepare)(void), void (*parent)(void), void (*child)(void));

#endif
