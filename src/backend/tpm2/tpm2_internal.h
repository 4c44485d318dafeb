/*
 * Internal API of the TPM 2.0 backend (src/backend/tpm2/ only; nothing
 * outside this folder includes it).
 *
 * Files:
 *   tpm2_backend.c   the vtable, open/close, key_load/free/public
 *   tpm2_context.c   TCTI + ESAPI context: lazy connect, lock, fork, retry
 *   tpm2_lock.c      no-RM mode: the per-TPM flock across processes, orphans
 *   tpm2_helper.c    tabrmd: pre-fork questions asked from a helper process
 *   tpm2_tcti.c      TCTI strings: RM detection, why a connection failed,
 *                    reconnect backoff
 *   tpm2_parent.c    parent resolution: configured handle, SRK 0x81000001,
 *                    or the owner-hierarchy primary (tpm2-openssl's template)
 *   tpm2_keyload.c   key in the TPM for one operation; auth sessions
 *   tpm2_sign.c      sign / rsa_private / rsa_decrypt / ecdh
 *   tpm2_public.c    TPMT_PUBLIC -> EVP_PKEY / HWKEY_KEYINFO, key templates
 *   tpm2_error.c     TSS2_RC -> reason + decoded text
 *   tpm2_manage.c    key_generate, key_delete,
 *                    key_list, random
 *   tpm2_info.c      supports + capability cache, describe
 *
 * Locking rule: every ESAPI call happens between hwkey_tpm2_acquire() and
 * hwkey_tpm2_release() of the same device; the pair holds the device mutex.
 * Nothing in this header takes the lock by itself except acquire.
 *
 * Slot rule (ARCHITECTURE.md §7): with dev->rm_mode == 0 (swtpm, mssim,
 * /dev/tpm0) no transient object may survive a release(): flush everything
 * you loaded or created (hwkey_tpm2_parent_put() does it for the parent).
 * With a resource manager the backend keeps keys and the primary loaded.
 */
#ifndef HWKEY_TPM2_INTERNAL_H
#define HWKEY_TPM2_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tcti.h>

#include "backend/backend.h"
#include "util/tss2_keyfile.h"

/* The parent handle a key file records for "the standard owner primary". */
#define HWKEY_TPM2_PARENT_OWNER TPM2_RH_OWNER /* 0x40000001 */
/* The TCG well-known SRK handle, used as default parent when present. */
#define HWKEY_TPM2_SRK_HANDLE 0x81000001u
#define HWKEY_TPM2_DEFAULT_TCTI "device:/dev/tpmrm0"

typedef struct hwkey_tpm2_device {
    HWKEY_DEVICE base;    /* first member (backend.h) */
    pthread_mutex_t lock; /* around every ESAPI use */
    char *tcti_conf;      /* TCTI string as configured (for messages) */
    int rm_mode;          /* 1: resource manager in front of the TPM */
    uint32_t cfg_parent;  /* tpm2-parent from config, 0 = default */

    /* Connection: created lazily by acquire(), recreated after fork. */
    TSS2_TCTI_CONTEXT *tcti; /* owned unless tcti_external */
    int tcti_external;       /* opened with hwkey_tpm2_open_with_tcti */
    ESYS_CONTEXT *esys;
    pid_t pid; /* process that created esys */
    /* Bumped whenever esys is replaced: ESYS_TRs of older generations are dead. */
    uint64_t generation;

    /* Cross-process lock, no-RM mode only (tpm2_lock.c). */
    int lock_fd;    /* -1: not open yet (or dropped after fork) */
    pid_t lock_pid; /* process that opened lock_fd */
    int lock_held;
    unsigned long lock_released_ms; /* when this context last released it (fairness) */
    int flush_sessions;             /* TPM_RC_SESSION_MEMORY seen: flush orphan sessions too */
    int used_keys;                  /* this process loaded keys: flush orphans at close too */
    int conn_used;                  /* esys has served a command (not a fresh connect) */
    int broken;                     /* a command failed for transport reasons: drop at release */

    /* Device lost / back (tpm2_tcti.c): fail fast while it is away. */
    int lost;                 /* 1 after a lost line was logged, until back */
    int ever_connected;       /* a command got through once (only then "lost") */
    unsigned long backoff_ms; /* 0, or the wait after the last failed connect */
    uint64_t retry_at_ms;     /* monotonic ms before which connect fails at once */
    char last_err[320];       /* why the last connect failed (repeated while away) */

    /* Parent cache (tpm2_parent.c). */
    int default_parent_known;    /* default_parent is resolved */
    uint32_t default_parent;     /* 0x81000001 or HWKEY_TPM2_PARENT_OWNER */
    ESYS_TR primary_tr;          /* RM mode: the owner primary, kept loaded */
    uint64_t primary_gen;        /* generation of primary_tr */
    TPMS_CONTEXT *primary_saved; /* no-RM mode: saved context of the primary */

    /*
     * Capability cache (tpm2_info.c): filled under the
     * lock on the first supports()/describe(); plain values, nothing to free,
     * still valid after fork (same TPM).
     */
    int caps_known;             /* the fields below are filled */
    int caps_rsa, caps_ecc;     /* TPM2_ALG_RSA / TPM2_ALG_ECC listed */
    unsigned int caps_rsa_bits; /* bit i: rsa_sizes[i] of tpm2_info.c passes TestParms */
    unsigned int caps_curves;   /* bit i: curve i of tpm2_info.c's table listed */
} HWKEY_TPM2_DEVICE;

/* One step of a key's policy (tpm2_policy.c). */
typedef struct {
    uint32_t cc;             /* TPM2_CC_PolicyPCR or TPM2_CC_PolicyAuthValue */
    TPM2B_DIGEST pcr_digest; /* PolicyPCR: H(the PCR values at creation) */
    TPML_PCR_SELECTION pcrs; /* PolicyPCR: the PCRs (hwkey writes one per step) */
} HWKEY_TPM2_POLICY_STEP;

/* The policy to satisfy before each use, in order (OPENSSL_free). */
typedef struct {
    size_t count;
    HWKEY_TPM2_POLICY_STEP step[HWKEY_TSS2_POLICY_MAX];
} HWKEY_TPM2_POLICY;

/* A loaded key (tpm2_backend.c). */
typedef struct hwkey_tpm2_key {
    HWKEY_BKEY base; /* first member (backend.h) */
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;  /* blob to reload from; size 0 for handle: keys */
    uint32_t parent;     /* parent handle as recorded in the file */
    uint32_t persistent; /* 0x81xxxxxx for handle: keys, else 0 */
    int has_auth;
    TPM2B_AUTH *auth;    /* hwkey_secmem_alloc_inherited; NULL if !has_auth */
    ESYS_TR tr;          /* RM mode: loaded object (or persistent TR) */
    uint64_t tr_gen;     /* device generation tr belongs to */
    TPMS_CONTEXT *saved; /* no-RM mode: saved context of the key */
    /*
     * An importable key file (offline import, tpm2_offline.c): priv holds
     * the duplicate and this the encrypted seed until the first load runs
     * TPM2_Import; then priv is the TPM's own blob and this is NULL.
     */
    TPM2B_ENCRYPTED_SECRET *import_seed;
    HWKEY_TPM2_POLICY *policy; /* PCR-bound key: satisfied before each use; else NULL */
} HWKEY_TPM2_KEY;

/* ---- tpm2_context.c -------------------------------------------------- */

/* The vtable's open/close: no connection is made until the first acquire. */
HWKEY_DEVICE *hwkey_tpm2_device_open(const HWKEY_CONFIG *cfg);
void hwkey_tpm2_device_close(HWKEY_DEVICE *dev);
/*
 * Sets what tpm2-tss logs in this process (TSS2_LOG: the user's value seen
 * by the first process that opened the TPM, else silent), before the
 * process's first TSS call: nginx workers get a fresh environment.
 */
void hwkey_tpm2_tss_log_apply(void);

/*
 * Lock the device, detect fork (abandon the parent process's ESAPI context
 * without flushing through it), connect on first use.  Returns the live
 * context with the lock held, or NULL with the lock released and one error
 * raised (HWKEY_R_DEVICE_UNREACHABLE naming the TCTI and the decoded code).
 */
ESYS_CONTEXT *hwkey_tpm2_acquire(HWKEY_TPM2_DEVICE *dev);
/*
 * The same for a question that loads nothing (the catalogue's capability
 * probe): no orphan flush.  OpenSSL asks it in any program that loads hwkey
 * through OPENSSL_CONF, including tpm2-tools, which keeps its own objects
 * loaded without a resource manager (seen: test_import's
 * tpm2_createprimary + tpm2_evictcontrol lost their objects).
 */
ESYS_CONTEXT *hwkey_tpm2_acquire_probe(HWKEY_TPM2_DEVICE *dev);
void hwkey_tpm2_release(HWKEY_TPM2_DEVICE *dev);
/*
 * Call (lock held) with the rc of a failed command: on a transport failure
 * (HWKEY_R_DEVICE_UNREACHABLE) the context is dropped and the next acquire
 * reconnects, re-loading keys from their blobs / saved contexts.
 */
void hwkey_tpm2_note_rc(HWKEY_TPM2_DEVICE *dev, TSS2_RC rc);
/*
 * Any failed command's rc (hwkey_tpm2_raise_rc calls it): if it means the
 * connection is broken, the device this thread has acquired is marked and
 * its context is dropped at release (not at once: the caller may still hold
 * ESYS_TRs of it), so a command cut off mid-way never poisons the next.
 */
void hwkey_tpm2_rc_seen(TSS2_RC rc);

/*
 * Open a device on a caller-supplied TCTI (unit tests' fake TCTI).  The TCTI
 * stays the caller's: close() does not finalize it.  After fork the
 * connection cannot be recreated for such a device.
 */
HWKEY_DEVICE *hwkey_tpm2_open_with_tcti(TSS2_TCTI_CONTEXT *tcti, int rm_mode);

/* 1 if the TCTI string goes through a resource manager (tpmrm, tabrmd). */
int hwkey_tpm2_tcti_is_rm(const char *tcti_conf);
/*
 * Drop the connection (lock held): the next acquire connects afresh.  Used
 * on transport errors and by key_load of a handle: key, so that no
 * connection made before a fork is used after it.  Objects kept loaded
 * through a resource manager are flushed first when flush is 1.
 */
void hwkey_tpm2_disconnect(HWKEY_TPM2_DEVICE *dev, int flush);

/* ---- tpm2_tcti.c ----------------------------------------------------- */

/*
 * Tss2_TctiLdr_Initialize failed with rc: raise one error saying why in
 * terms an operator can act on (unknown TCTI name, missing device, device
 * the process may not open with its uid and the group to add).
 */
void hwkey_tpm2_tcti_raise(const char *conf, TSS2_RC rc);
/* 0 + one error (the last failure, the wait left) while in backoff. */
int hwkey_tpm2_backoff_check(HWKEY_TPM2_DEVICE *dev);
/* After a failed connect (error raised): start/double the backoff, log once. */
void hwkey_tpm2_backoff_failed(HWKEY_TPM2_DEVICE *dev);
/* Start/double the backoff without logging (a fresh connection broke at once). */
void hwkey_tpm2_backoff_bump(HWKEY_TPM2_DEVICE *dev);
/* After a successful connect: the next connect may be tried at once. */
void hwkey_tpm2_backoff_ok(HWKEY_TPM2_DEVICE *dev);
/* A command went through: log "back" if the TPM was lost, reset the backoff. */
void hwkey_tpm2_back(HWKEY_TPM2_DEVICE *dev);
/* The connection broke under a command: log the loss once. */
void hwkey_tpm2_mark_lost(HWKEY_TPM2_DEVICE *dev, TSS2_RC rc);

/* ---- tpm2_helper.c (tabrmd: and fork) -------------------------------- */

/*
 * 1 if a question for the TPM should be asked from a helper process: the
 * TCTI is tabrmd: and this process has not used GLib's D-Bus yet (it may
 * be a server's master that forks workers later).
 */
int hwkey_tpm2_use_helper(const HWKEY_TPM2_DEVICE *dev);
/*
 * Before connecting in-process: remember that this process now uses GLib's
 * D-Bus, or refuse (one clear error) in a child of a process that did.
 */
int hwkey_tpm2_glib_check(HWKEY_TPM2_DEVICE *dev);
/*
 * Run fn in a forked helper connected on its own (no lock held, outside the
 * gate); the outlen bytes at out (input and output) are copied back.
 */
typedef int hwkey_tpm2_helper_fn(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, void *out);
int hwkey_tpm2_run_helper(HWKEY_TPM2_DEVICE *dev, hwkey_tpm2_helper_fn *fn, void *out,
                          size_t outlen);

/* ---- tpm2_lock.c (no-RM mode; no-ops otherwise) ---------------------- */

/* The lock file for a TCTI string ($HWKEY_TPM2_LOCK_FILE / _DIR override). */
int hwkey_tpm2_lock_path(const char *tcti_conf, char *out, size_t len);
int hwkey_tpm2_lock_take(HWKEY_TPM2_DEVICE *dev);
void hwkey_tpm2_lock_drop(HWKEY_TPM2_DEVICE *dev);
void hwkey_tpm2_lock_after_fork(HWKEY_TPM2_DEVICE *dev);
void hwkey_tpm2_lock_close(HWKEY_TPM2_DEVICE *dev);
/*
 * With the lock held, the TPM holds nothing of a live hwkey process: flush
 * every transient object, and the loaded sessions after a
 * TPM_RC_SESSION_MEMORY.
 */
void hwkey_tpm2_flush_orphans(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys);

/*
 * Short bounded randomized backoff for the answers hwkey_tpm2_rc_busy()
 * lists (TPM_RC_OBJECT_MEMORY, TPM_RC_RETRY ...; at most 200 ms in total: an nginx worker's
 * event loop must not stall; without a resource manager the cross-process
 * lock and the orphan flush make slot exhaustion rare).  Use as
 *
 *     HWKEY_TPM2_RETRY retry = {0};
 *     do {
 *         rc = Esys_Something(...);
 *     } while (hwkey_tpm2_retry(&retry, rc));
 *
 * Returns 1 (after sleeping) when rc is retryable and budget remains.
 */
typedef struct {
    unsigned int attempts;
    unsigned long slept_ms;
} HWKEY_TPM2_RETRY;
int hwkey_tpm2_retry(HWKEY_TPM2_RETRY *retry, TSS2_RC rc);

/* Flush a transient object / forget a TR, ignoring errors (cleanup paths). */
void hwkey_tpm2_flush_quiet(ESYS_CONTEXT *esys, ESYS_TR *tr);

/* ---- tpm2_parent.c (call between acquire and release) --------------- */

/*
 * The parent to load/create keys under.  handle == 0 means the default
 * (config tpm2-parent, else SRK 0x81000001 if present, else the owner
 * primary).  *recorded is what a key file must store as its parent
 * (0x81xxxxxx or HWKEY_TPM2_PARENT_OWNER).  Pair every successful get with
 * parent_put(): it flushes the primary in no-RM mode.
 */
int hwkey_tpm2_parent_get(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, uint32_t handle, ESYS_TR *tr,
                          uint32_t *recorded);
void hwkey_tpm2_parent_put(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, ESYS_TR *tr);
/* Forget cached parent state (after fork, on close). */
void hwkey_tpm2_parent_reset(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys_or_null);
/*
 * A one-command HMAC session salted by the parent, with parameter encryption
 * one way (attr: TPMA_SESSION_DECRYPT or TPMA_SESSION_ENCRYPT), so secrets in
 * the command or the response never cross the bus in the clear.  what names
 * the failure of TPM2_StartAuthSession.
 */
int hwkey_tpm2_salted_session(ESYS_CONTEXT *esys, ESYS_TR parent, TPMA_SESSION attr,
                              const char *what, ESYS_TR *session);
/*
 * A TSS2 key file of type (loadable or sealed) for an object created or
 * imported under parent (as recorded by parent_get) into out, as
 * HWKEY_REF_TSS2_KEYFILE.  pub_what/priv_what name a marshalling failure.
 */
/*
 * TPM2_Create's inSensitive in protected memory (free with
 * hwkey_secmem_free) holding opts' auth value; what names the object in
 * the error for a value that does not fit.
 */
TPM2B_SENSITIVE_CREATE *hwkey_tpm2_sensitive_new(const HWKEY_GENOPTS *opts, const char *what);
int hwkey_tpm2_keyfile_out(HWKEY_TSS2_KEYTYPE type, const TPM2B_PUBLIC *pub,
                           const TPM2B_PRIVATE *priv, uint32_t parent, int empty_auth,
                           const char *pub_what, const char *priv_what, HWKEY_REFBLOB *out);

/* The same, with policy (NULL = none) recorded in the file's policy [1] field. */
int hwkey_tpm2_keyfile_out_policy(HWKEY_TSS2_KEYTYPE type, const TPM2B_PUBLIC *pub,
                                  const TPM2B_PRIVATE *priv, uint32_t parent, int empty_auth,
                                  const HWKEY_TPM2_POLICY *policy, const char *pub_what,
                                  const char *priv_what, HWKEY_REFBLOB *out);

/* ---- tpm2_keyfile_parts.c: what keys and sealed data keys share -------- */

/*
 * kf's public and private blobs (checked), parent (0 = the owner primary)
 * and policy steps (NULL when unbound; OPENSSL_free).  what: "key",
 * "data key" for the messages.
 */
int hwkey_tpm2_keyfile_parts(const HWKEY_TSS2_KEYFILE *kf, const char *what, TPM2B_PUBLIC *pub,
                             TPM2B_PRIVATE *priv, uint32_t *parent, HWKEY_TPM2_POLICY **policy);

/*
 * What to do about an object's auth value when it is resolved.  The TPM
 * cannot be asked whether an auth value is empty: the only test is to use
 * it, and a wrong guess on a DA-protected object costs a dictionary-attack
 * strike.  So hwkey asks the application, and uses an object without a
 * value only where the reference says it has none or says nothing at all
 * (a bare handle: with no answer from the application, as tpm2-openssl does).
 */
typedef enum {
    HWKEY_TPM2_AUTH_SKIP = 0, /* none, or only the public half is wanted (hwkey pubkey) */
    HWKEY_TPM2_AUTH_REQUIRED, /* the reference says it has one: the callback must give it */
    HWKEY_TPM2_AUTH_ASK,      /* bare handle: of a DA-protected key: ask if the application
                               * can be asked; no callback or no answer: used without one */
} HWKEY_TPM2_AUTH_MODE;

/*
 * The one prompt for an auth value (info: the passphrase prompt's
 * OSSL_PASSPHRASE_PARAM_INFO; what: "TPM key in the key file" ... for
 * messages).  *out: the value in protected memory (inherited by forked
 * children when inherit), an empty value included; NULL when none is to be
 * used.  0 with one error when a required value is not given.
 */
int hwkey_tpm2_ask_auth(HWKEY_TPM2_AUTH_MODE mode, const char *info, const char *what, int inherit,
                        OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, TPM2B_AUTH **out);

/*
 * TPM2_Load of pub/priv under the parent at parent_handle, retried while
 * the TPM is busy, the parent released before each wait (a process waiting
 * for a slot never holds one).  before (may be NULL) runs with the parent
 * held before each TPM2_Load (an importable key's TPM2_Import) and raises
 * when it fails.  On success *obj is loaded and the parent is in
 * *parent_out (the caller puts it), or put when parent_out is NULL.
 * Returns TSS2_RC_SUCCESS, the failing TPM2_Load's rc (not raised: the
 * caller words it), or HWKEY_TPM2_RC_RAISED when the error was raised.
 */
typedef int (*HWKEY_TPM2_BEFORE_LOAD)(void *arg, ESYS_CONTEXT *esys, ESYS_TR parent);
#define HWKEY_TPM2_RC_RAISED ((TSS2_RC)0xffffffffu)
TSS2_RC hwkey_tpm2_load_under(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, uint32_t parent_handle,
                              const TPM2B_PRIVATE *priv, const TPM2B_PUBLIC *pub,
                              HWKEY_TPM2_BEFORE_LOAD before, void *arg, ESYS_TR *obj,
                              ESYS_TR *parent_out);

/* ---- tpm2_policy.c: PCR policies (keygen/datakey --pcr) --------------- */

/*
 * At creation (lock held): read the PCRs of sel and build the policy (one
 * PolicyPCR per PCR, then PolicyAuthValue if with_auth) and its digest for
 * the template's authPolicy.  *out: OPENSSL_free.
 */
int hwkey_tpm2_policy_make(ESYS_CONTEXT *esys, const HWKEY_PCRSEL *sel, int with_auth,
                           HWKEY_TPM2_POLICY **out, TPM2B_DIGEST *digest);
/* Set authPolicy and clear userWithAuth: only the policy authorizes use. */
void hwkey_tpm2_policy_bind(TPM2B_PUBLIC *tmpl, const TPM2B_DIGEST *digest);
/*
 * The key file's policy [1] steps (*out NULL when there are none); 0 + one
 * error for steps hwkey cannot satisfy or an authPolicy [3].
 */
int hwkey_tpm2_policy_from_keyfile(const HWKEY_TSS2_KEYFILE *kf, HWKEY_TPM2_POLICY **out);
/* policy's steps into kf->policy (params allocated; hwkey_tss2_keyfile_clear-style free). */
int hwkey_tpm2_policy_to_keyfile(const HWKEY_TPM2_POLICY *policy, HWKEY_TSS2_KEYFILE *kf);
/*
 * A policy session satisfying policy, ready to authorize one command: salted
 * by salt (ESYS_TR_NONE: unsalted, no parameter encryption) with attrs
 * (e.g. TPMA_SESSION_ENCRYPT); continueSession clear.  A changed PCR gives
 * one HWKEY_R_POLICY_FAILED error naming it ("PCR 7 changed ..."); the
 * session is flushed on every failure.
 */
int hwkey_tpm2_policy_session(ESYS_CONTEXT *esys, const HWKEY_TPM2_POLICY *policy, ESYS_TR salt,
                              TPMA_SESSION attrs, ESYS_TR *session);

/* ---- tpm2_error.c ---------------------------------------------------- */

/* 1 if rc means the connection is unusable (transport down, ESAPI out of step). */
int hwkey_tpm2_conn_broken(TSS2_RC rc);

/* HWKEY_R_* for a TSS2_RC (see ARCHITECTURE.md: auth, unreachable, busy ...). */
int hwkey_tpm2_reason(TSS2_RC rc);
/* 1 for the TPM's "busy, ask again" answers: what hwkey_tpm2_retry retries. */
int hwkey_tpm2_rc_busy(TSS2_RC rc);
/*
 * Raise one error: "<what>: <Tss2_RC_Decode text> (0x...)"; reason from
 * hwkey_tpm2_reason().  Returns 0 so callers can `return hwkey_tpm2_raise_rc(...)`.
 * The macro records the caller's file, line and function as the error's
 * location (not tpm2_error.c's); it is an expression, nothing hidden.
 */
int hwkey_tpm2_raise_rc_at(const char *file, int line, const char *func, TSS2_RC rc,
                           const char *what);
#define hwkey_tpm2_raise_rc(rc, what)                                                              \
    hwkey_tpm2_raise_rc_at(OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, (rc), (what))
/* Same, on a Load/ContextLoad: integrity/size/value errors become KEY_FILE_INVALID. */
int hwkey_tpm2_raise_load_rc_at(const char *file, int line, const char *func, TSS2_RC rc,
                                const char *what);
#define hwkey_tpm2_raise_load_rc(rc, what)                                                         \
    hwkey_tpm2_raise_load_rc_at(OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, (rc), (what))
/* The TPM_RC_ code without handle/session/parameter number (format-1 aware). */
TSS2_RC hwkey_tpm2_rc_base(TSS2_RC rc);

/* ---- tpm2_public.c --------------------------------------------------- */

/* Fill alg/bits/curve/flags from a public area; 0 + error if unsupported. */
int hwkey_tpm2_public_info(const TPMT_PUBLIC *pub, HWKEY_KEYINFO *info);
/* The public key as a software EVP_PKEY in libctx (RSA exponent 0 = 65537). */
EVP_PKEY *hwkey_tpm2_public_to_pkey(const TPMT_PUBLIC *pub, OSSL_LIB_CTX *libctx,
                                    const char *propq);
/*
 * Template for a new key under our parent: fixedTPM, fixedParent,
 * sensitiveDataOrigin, userWithAuth, sign + decrypt, scheme NULL (so the
 * raw RSA op and every signature scheme are available).  0 + error if the
 * spec is not representable.
 */
int hwkey_tpm2_key_template(const HWKEY_KEYSPEC *spec, TPM2B_PUBLIC *tmpl);
/* The owner primary's template (ECC P-256, AES-128-CFB, empty unique: tpm2-openssl's). */
void hwkey_tpm2_primary_template(TPM2B_PUBLIC *tmpl);
/*
 * tpm2_createprimary's default template (RSA 2048): the second guess for a
 * key file recording 0x40000001 that does not load under the first.
 */
void hwkey_tpm2_tools_primary_template(TPM2B_PUBLIC *tmpl);
/* TPM hash algorithm of an OpenSSL digest NID, TPM2_ALG_ERROR if none. */
TPMI_ALG_HASH hwkey_tpm2_hash_alg(int md_nid);
/* OpenSSL curve NID of a TPM curve and back; NID_undef / TPM2_ECC_NONE if none. */
int hwkey_tpm2_curve_nid(TPMI_ECC_CURVE curve);
TPMI_ECC_CURVE hwkey_tpm2_curve_id(int nid);

/*
 * One command on a key (tpm2_sign.c): fn runs with the key loaded, its auth
 * session started, the device held, and again on retryable codes; a stale
 * connection is retried once on a fresh one.  0: not issued (raised);
 * 1: ran, fn's rc in *cmd_rc for the caller to judge.
 */
typedef TSS2_RC hwkey_tpm2_cmd_fn(ESYS_CONTEXT *esys, ESYS_TR key, ESYS_TR session, void *arg);
int hwkey_tpm2_run_cmd(HWKEY_TPM2_KEY *key, const char *name, hwkey_tpm2_cmd_fn *fn, void *arg,
                       TSS2_RC *cmd_rc);

/* ---- tpm2_offline.c (importable key files) --------------------------- */

/* The importable key file's secret field: a marshalled TPM2B (or bare bytes). */
int hwkey_tpm2_import_seed_parse(const unsigned char *secret, size_t len,
                                 TPM2B_ENCRYPTED_SECRET **out);
/*
 * Lock held, parent loaded: TPM2_Import of key->priv (the duplicate) with
 * key->import_seed; on success key->priv becomes the loadable blob.
 */
int hwkey_tpm2_import_pending(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys, ESYS_TR parent);

/* ---- tpm2_backend.c -------------------------------------------------- */

/* Parse "handle:0x81xxxxxx" (also decimal); 0 + HWKEY_R_BAD_ARGUMENT if malformed. */
int hwkey_tpm2_parse_handle(const unsigned char *data, size_t len, uint32_t *handle);
/*
 * The same, also accepting tpm2-openssl's "?pass" suffix ("the key has an
 * auth value: ask for it"); *ask_pass says whether it was there.
 */
int hwkey_tpm2_parse_handle_ex(const unsigned char *data, size_t len, uint32_t *handle,
                               int *ask_pass);

/* ---- tpm2_manage.c + tpm2_info.c ---------------- */

int hwkey_tpm2_supports(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec);
int hwkey_tpm2_describe(HWKEY_DEVICE *dev, BIO *out);
int hwkey_tpm2_key_generate(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec, const HWKEY_GENOPTS *opts,
                            HWKEY_REFBLOB *out);
int hwkey_tpm2_key_delete(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref);
int hwkey_tpm2_key_list(HWKEY_DEVICE *dev, const char *filter, hwkey_list_cb cb, void *arg);
int hwkey_tpm2_random(HWKEY_DEVICE *dev, unsigned char *buf, size_t len);
/* TPM2_GetCapability with the busy retry (tpm2_info.c); the one copy for every caller. */
TSS2_RC hwkey_tpm2_get_cap(ESYS_CONTEXT *esys, TPM2_CAP cap, UINT32 prop, UINT32 count,
                           TPMI_YES_NO *more, TPMS_CAPABILITY_DATA **data);

/* ---- tpm2_sign.c ----------------------------------------------------- */

int hwkey_tpm2_sign(HWKEY_BKEY *key, const HWKEY_SIGN_PARAMS *params, const unsigned char *tbs,
                    size_t tbslen, unsigned char *sig, size_t *siglen);
int hwkey_tpm2_rsa_private(HWKEY_BKEY *key, const unsigned char *in, size_t inlen,
                           unsigned char *out, size_t *outlen);
int hwkey_tpm2_rsa_decrypt(HWKEY_BKEY *key, const HWKEY_DECRYPT_PARAMS *params,
                           const unsigned char *in, size_t inlen, unsigned char *out,
                           size_t *outlen);
int hwkey_tpm2_ecdh(HWKEY_BKEY *key, const unsigned char *peer, size_t peerlen, unsigned char *out,
                    size_t *outlen);

/*
 * Make the key usable in the current connection and return its ESYS_TR
 * (auth set).  RM mode: loads once per generation and keeps it.  No-RM mode:
 * ContextLoad of the saved context (or a full reload from the blob);
 * the caller must hwkey_tpm2_key_put() after its one command.
 */
int hwkey_tpm2_key_get(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys, ESYS_TR *tr);
void hwkey_tpm2_key_put(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys, ESYS_TR *tr);
/* Overwrites the auth value ESYS keeps for tr (Esys_TR_SetAuth(NULL) does not). */
void hwkey_tpm2_forget_auth(ESYS_CONTEXT *esys, ESYS_TR tr);
/* Overwrites the last response's parameters in ESYS's buffer (decrypted secrets). */
void hwkey_tpm2_wipe_response(ESYS_CONTEXT *esys);
/*
 * After a command on obj through an HMAC session: overwrites the copy of
 * auth that ESYS keeps in the session object (no TPM traffic), then
 * forgets obj's auth.  Call before hwkey_tpm2_session_end.
 */
void hwkey_tpm2_session_scrub(ESYS_CONTEXT *esys, ESYS_TR session, ESYS_TR obj,
                              const TPM2B_AUTH *auth);
/* First load at key_load time (RM: keep; no RM: ContextSave + flush). */
int hwkey_tpm2_key_prepare(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys);
/*
 * The authorization session for one command on the key: ESYS_TR_PASSWORD
 * for keys without auth, else a one-shot HMAC session (the auth value never
 * crosses the bus).  session_end() with the command's rc cleans it up.
 */
int hwkey_tpm2_session_start(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys, ESYS_TR *session);
void hwkey_tpm2_session_end(ESYS_CONTEXT *esys, ESYS_TR *session, TSS2_RC cmd_rc);

/* ---- tpm2_seal.c (engineer "bulk"): data keys as sealed objects ------- */

int hwkey_tpm2_datakey_create(HWKEY_DEVICE *dev, const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out);
int hwkey_tpm2_datakey_unwrap(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                              OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, unsigned char key[32]);

#endif
