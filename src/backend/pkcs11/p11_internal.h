/*
 * Internal API of the PKCS#11 backend (src/backend/pkcs11/ only; the unit
 * tests include it too, nothing else does).
 *
 * Files:
 *   p11_backend.c  the vtable: open/close, describe, supports, random
 *   p11_module.c   dlopen + C_GetFunctionList, C_Initialize (OS locking),
 *                  slot/token lookup, CKR_* names, quirks
 *   p11_uri.c      RFC 7512 URIs through p11_kit_uri_parse, plus the checks
 *                  p11-kit leaves out (duplicates, unknown attributes)
 *   p11_login.c    PIN sources, C_Login policy (never retry a rejected PIN)
 *   p11_session.c  per-token session pool
 *   p11_fork.c     re-initialising a module in a forked child
 *   p11_recover.c  device loss: re-initialise, log in again, re-find; back-off
 *   p11_diag.c     why a module cannot start (SoftHSM token store permissions)
 *   p11_keys.c     key_load/free, generate
 *   p11_keylist.c  delete, list
 *   p11_import.c   key_import: a software key into token objects (C_CreateObject)
 *   p11_pubkey.c   object lookup, attributes, the public half as an EVP_PKEY
 *   p11_ops.c      sign, rsa_private, rsa_decrypt, ecdh
 *   p11_objects.c  public keys and certificates by URI (the pkcs11: store)
 *   p11_datakey.c  bulk data keys wrapped by a KEK on the token (HWKEY DATA KEY)
 *   p11_replicas.c failover: one key on several tokens, round robin, out/back
 *
 * Objects: a device owns modules (one per module path); a module owns its
 * tokens (one per slot used); a key points at its token.  Modules and
 * tokens live until the device closes; nothing is ever C_Finalize'd (see
 * p11_module.c: SoftHSM tears itself down in its own destructors).
 *
 * Fork: a module remembers the fork generation it was initialised in.
 * hwkey_p11_module_check() (called by every session acquire) re-runs
 * C_Initialize in a child and bumps each token's epoch; sessions, logins and
 * object handles of an older epoch are dead and are re-made on next use.
 *
 * Device loss (p11_recover.c): an operation that meets a device, session or
 * initialisation error re-initialises the module (C_Finalize + C_Initialize:
 * the only place that finalizes, never at exit), bumps the epochs and retries
 * once.  If the module cannot be re-initialised it is "down": operations fail
 * at once, and a new attempt is made at most every backoff_ms (100 ms
 * doubling to 800 ms: a device that returns is used within 2 s).
 *
 * Locks (the numbering of util/forkgate.h, which owns the order):
 *   1. dev->lock   module list                   taken before 2..
 *   2. mod->lock   token list, (re)initialisation, down/backoff state
 *   3. tok->lock   session pool, login state, kept PIN (cond: tok->cond)
 *   4. key->lock   object handle cache; reps->lock (failover state of a
 *                  replica set, p11_replicas.c): leaves, never held together
 *   7. secure memory (keep_pin allocates under tok->lock: 3 then 7)
 * Every one is taken only inside hwkey_gate_enter()/leave() (p11_backend.c
 * brackets each vtable entry), so fork() never copies a held lock and no
 * atfork handler here takes one.  No module call runs under dev->lock;
 * tok->lock is released around C_OpenSession.  Recovery holds mod->lock and
 * waits (on tok->cond) for every checked-out session to come back before
 * C_Finalize: a thread holding a session must never wait for mod->lock.
 * No application callback (passphrase/PIN prompt) runs under any of these
 * locks or inside the gate (p11_login.c reads the PIN first, gate suspended).
 */
#ifndef HWKEY_P11_INTERNAL_H
#define HWKEY_P11_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

#include "backend/backend.h"

/* CloudHSM quirks (pkcs11-quirks, comma list). */
#define HWKEY_P11_QUIRK_NO_SESSION_CALLBACKS 0x01u /* never pass Notify to C_OpenSession */
#define HWKEY_P11_QUIRK_NO_OPERATION_STATE 0x02u   /* never call C_GetOperationState */
#define HWKEY_P11_QUIRK_PIN_USER_PASSWORD 0x04u    /* PIN must read "user:password" */
#define HWKEY_P11_QUIRK_SINGLE_PART_ONLY 0x08u     /* no C_SignUpdate/C_SignFinal */

/* p11-kit's proxy (configure asks pkg-config p11-kit-1 for its proxy_module). */
#define HWKEY_P11_PROXY_MODULE HWKEY_P11KIT_PROXY
#define HWKEY_P11_MAX_SESSIONS 64 /* cap when the token reports no limit */
/* Re-initialisation back-off of a lost module (p11_recover.c): 100 ms doubling to this. */
#define HWKEY_P11_REINIT_BACKOFF_MIN_MS 100u
#define HWKEY_P11_REINIT_BACKOFF_MAX_MS 800u

/* --- URIs (p11_uri.c) ---------------------------------------------------- */

typedef struct {
    char *token, *manufacturer, *model, *serial; /* NULL when absent */
    int has_slot_id;
    CK_SLOT_ID slot_id;
    char *object;      /* CKA_LABEL */
    unsigned char *id; /* CKA_ID, decoded */
    size_t id_len;
    int has_id;
    int has_class;
    CK_OBJECT_CLASS klass; /* type= */
    char *pin_source;
    char *pin_value; /* protected memory */
    char *module_path;
    char *module_name;
} HWKEY_P11_URI;

/* Parses s[0..len); on failure raises HWKEY_R_INVALID_URI naming the problem. */
int hwkey_p11_uri_parse(const char *s, size_t len, HWKEY_P11_URI **out);
void hwkey_p11_uri_free(HWKEY_P11_URI *uri);
/* The key a URI names, for messages: its object= label, "(by id)" or "(any)". */
const char *hwkey_p11_uri_describe(const HWKEY_P11_URI *u);
/*
 * The URI of one object: the token's label/manufacturer/model/serial, id,
 * label, type; module-path/pin-source only if base (the URI the
 * user gave, may be NULL) had them.  OPENSSL_free the result.
 */
char *hwkey_p11_uri_for_object(const CK_TOKEN_INFO *ti, const unsigned char *id, size_t id_len,
                               const char *label, CK_OBJECT_CLASS klass, const HWKEY_P11_URI *base);

/* --- module, tokens (p11_module.c) --------------------------------------- */

typedef struct hwkey_p11_module HWKEY_P11_MODULE;
typedef struct hwkey_p11_token HWKEY_P11_TOKEN;

typedef struct {
    HWKEY_DEVICE base;    /* first member (backend.h) */
    pthread_mutex_t lock; /* the module list */
    char *module_path;    /* pkcs11-module, NULL: URI's or the proxy */
    char *pin_source;     /* pkcs11-pin-source */
    unsigned int quirks;  /* HWKEY_P11_QUIRK_* */
    int failover;         /* pkcs11-failover: keys resolve to every token */
    char **paths;         /* failover: module_path, then pkcs11-modules */
    size_t n_paths;
    HWKEY_P11_MODULE *modules;
} HWKEY_P11_DEVICE;

struct hwkey_p11_module {
    HWKEY_P11_DEVICE *dev;
    char *path;
    void *dl; /* dlopen handle, never dlclose'd */
    CK_FUNCTION_LIST *fl;
    pthread_mutex_t lock;           /* token list, (re)initialisation */
    uint64_t fork_gen;              /* generation C_Initialize ran in */
    unsigned long initialize_calls; /* tests: C_Initialize count */
    /* Device loss (p11_recover.c), under lock. */
    int down;                            /* the last re-initialisation failed */
    CK_RV down_rv;                       /* the error that lost it */
    uint64_t down_since_ms, next_try_ms; /* CLOCK_MONOTONIC */
    unsigned int backoff_ms;
    unsigned long recoveries; /* tests: successful re-initialisations */
    HWKEY_P11_TOKEN *tokens;
    HWKEY_P11_MODULE *next;
};

struct hwkey_p11_token {
    HWKEY_P11_MODULE *mod;
    CK_SLOT_ID slot;
    CK_TOKEN_INFO info; /* as of first use (label etc.) */
    char name[33];      /* the label without its padding, for messages */
    CK_MECHANISM_TYPE *mechs;
    CK_ULONG n_mechs;

    /* Session pool (p11_session.c); all below under lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    CK_SESSION_HANDLE *idle;
    size_t n_idle, n_open, max_open;
    size_t n_out;   /* checked out or being opened (recovery waits for 0) */
    int closing;    /* recovery in progress: session_get waits */
    uint64_t epoch; /* bumped by re-initialisation (fork, recovery) */

    /* Login state (p11_login.c), under lock. */
    int logged_in;
    char *pin;                  /* PIN that worked: protected memory that forked
                                 * children inherit (hwkey_secmem_alloc_inherited) */
    unsigned char rejected[32]; /* SHA-256 of the last PIN the token refused */
    int have_rejected;
    unsigned long login_calls; /* tests: C_Login(CKU_USER) count */

    HWKEY_P11_TOKEN *next;
};

/* Quirk list "a,b" -> flags; unknown names raise HWKEY_R_CONFIG_INVALID. */
int hwkey_p11_quirks_parse(const char *list, unsigned int *out);
/* The module at path (or configured/default when path is NULL), loaded once. */
HWKEY_P11_MODULE *hwkey_p11_module_get(HWKEY_P11_DEVICE *dev, const char *path);
/* Tests: adopt an already-initialised function list under a pseudo path. */
HWKEY_P11_MODULE *hwkey_p11_module_adopt(HWKEY_P11_DEVICE *dev, const char *path,
                                         CK_FUNCTION_LIST *fl);
/* The first token matching uri (NULL: first token present). */
HWKEY_P11_TOKEN *hwkey_p11_token_find(HWKEY_P11_MODULE *mod, const HWKEY_P11_URI *uri);
/* A token object for slot (mod->lock held by the caller, not yet linked); NULL: raised. */
HWKEY_P11_TOKEN *hwkey_p11_token_new(HWKEY_P11_MODULE *mod, CK_SLOT_ID slot,
                                     const CK_TOKEN_INFO *ti);
int hwkey_p11_token_matches(const HWKEY_P11_URI *u, CK_SLOT_ID slot, const CK_TOKEN_INFO *ti);
int hwkey_p11_token_has_mech(const HWKEY_P11_TOKEN *tok, CK_MECHANISM_TYPE m);
/* C_Initialize again (ALREADY_INITIALIZED counts as success); caller holds mod->lock.
 * Errors a module leaves in OpenSSL's queue meanwhile (SoftHSM: "no such engine:
 * rdrand") are dropped, so the provider's own reason comes first. */
CK_RV hwkey_p11_module_reinitialize(HWKEY_P11_MODULE *mod);
/* Slot of tok again after a re-initialisation (by label + serial); 1 if found. */
int hwkey_p11_token_reresolve(HWKEY_P11_TOKEN *tok);
/* "CKR_PIN_INCORRECT" or "CKR_0x...": static or thread-local text. */
const char *hwkey_p11_rv_name(CK_RV rv);
/* The hwkey reason for a CKR code (device errors, auth, not found...). */
int hwkey_p11_rv_reason(CK_RV rv);

/* --- fork (p11_fork.c) -------------------------------------------------- */

uint64_t hwkey_p11_fork_generation(void);
/*
 * 1 if mod is usable now: re-initialises it in a forked child, fails fast
 * (raised) while it is down, and tries again when its back-off has passed.
 */
int hwkey_p11_module_check(HWKEY_P11_MODULE *mod);

/* --- device loss and recovery (p11_recover.c) ----------------------------- */

/* 1 for the errors after which the module is re-initialised (issue 6 list). */
int hwkey_p11_rv_device_lost(CK_RV rv);
/*
 * The last module error seen by this thread's backend call (0: none), so a
 * caller can tell a lost device behind a failure that was raised deeper.
 */
void hwkey_p11_note_rv(CK_RV rv);
CK_RV hwkey_p11_noted_rv(void);
uint64_t hwkey_p11_token_epoch(HWKEY_P11_TOKEN *tok);
/*
 * tok's module answered rv in epoch seen: re-initialise it unless another
 * thread already did (epoch moved on) or it is down and its back-off has not
 * passed.  1: retry the operation; 0: raised.  Takes mod->lock: the caller
 * holds no session and no lock.
 */
int hwkey_p11_recover(HWKEY_P11_TOKEN *tok, uint64_t seen, CK_RV rv);
/* Called with mod->lock held: finalize + initialize + re-resolve; 1 if back. */
int hwkey_p11_reinit_locked(HWKEY_P11_MODULE *mod, CK_RV why);
/* Raises the fail-fast error of a module that is down (mod->lock held). */
void hwkey_p11_raise_down_at(const char *file, int line, const char *func, HWKEY_P11_MODULE *mod);
#define hwkey_p11_raise_down(mod)                                                                  \
    hwkey_p11_raise_down_at(OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, (mod))
/* The back-off state after a failed (ok = 0) or successful (ok = 1) attempt; logs once. */
void hwkey_p11_mark(HWKEY_P11_MODULE *mod, int ok, CK_RV rv);
/*
 * Failover replicas log their own "token out/back" lines: while set (this
 * thread), hwkey_p11_mark() changes the module's state without logging.
 */
void hwkey_p11_recovery_quiet(int on);
uint64_t hwkey_p11_now_ms(void);

/* --- deployment diagnostics (p11_diag.c) ---------------------------------- */

/*
 * Raises why C_Initialize of mod failed with rv, as precisely as can be told:
 * for SoftHSM, a token store this uid cannot read (the path from
 * SOFTHSM2_CONF's directories.tokendir) and what to change.  what: "C_Initialize",
 * "C_Initialize in a forked child" ...
 */
void hwkey_p11_raise_init_failure_at(const char *file, int line, const char *func,
                                     HWKEY_P11_MODULE *mod, const char *what, CK_RV rv);
/* The error's location is the caller's line (a plain expression, no hidden return). */
#define hwkey_p11_raise_init_failure(mod, what, rv)                                                \
    hwkey_p11_raise_init_failure_at(OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, (mod), (what), (rv))
/* The same hint for a token that is not found (SoftHSM's 0700 token directories). */
int hwkey_p11_store_hint(const char *module_path, char *buf, size_t len);

/* --- sessions (p11_session.c) ------------------------------------------- */

/*
 * Takes a session of tok (waits while the pool is at its limit); *epoch is
 * the token epoch it belongs to.  put() returns it; broken != 0 closes it.
 */
int hwkey_p11_session_get(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE *s, uint64_t *epoch);
void hwkey_p11_session_put(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, uint64_t epoch, int broken);
/* 1 if rv means the session itself is gone (close it, do not reuse). */
int hwkey_p11_rv_session_dead(CK_RV rv);

/* --- login (p11_login.c) ------------------------------------------------ */

typedef struct {
    const HWKEY_P11_URI *uri;        /* pin-value / pin-source, may be NULL */
    const char *cfg_pin_source;      /* pkcs11-pin-source, may be NULL */
    OSSL_PASSPHRASE_CALLBACK *pw_cb; /* may be NULL */
    void *pw_arg;
    unsigned int quirks;
} HWKEY_P11_PINSRC;

/* Reads a pin-source ("file:/path", "env:NAME", or a bare path) into protected memory. */
char *hwkey_p11_pin_from_source(const char *source);
/* Logs tok's user in through session s unless it already is. */
int hwkey_p11_login(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, const HWKEY_P11_PINSRC *src);
/* CKA_ALWAYS_AUTHENTICATE keys: C_Login(CKU_CONTEXT_SPECIFIC) with the cached PIN. */
int hwkey_p11_login_context(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s);

/* --- keys (p11_keys.c) -------------------------------------------------- */

typedef struct hwkey_p11_replicas HWKEY_P11_REPLICAS;

typedef struct {
    HWKEY_BKEY base; /* first member (backend.h) */
    HWKEY_P11_TOKEN *tok;
    HWKEY_P11_REPLICAS *reps; /* failover: every token holding this key (it is the
                               * first); NULL for a key on one token */
    HWKEY_P11_URI *uri;       /* as given: PIN sources for re-login */
    const char *cfg_pin_source;
    CK_KEY_TYPE ktype;
    int always_auth;
    /* Stored reference: how to re-find the object after fork. */
    unsigned char *id;
    size_t id_len;
    char *label;
    /* Object handle, valid for the token epoch it was found in. */
    pthread_mutex_t lock;
    CK_OBJECT_HANDLE priv;
    uint64_t priv_epoch;
    unsigned long finds;  /* tests: how often the object was looked up */
    int found_before;     /* the object was found once: a miss now means loss */
    uint64_t vanished_ms; /* last time a miss was reported as a device loss */
    /* Public half: RSA n/e, or EC/EdDSA params (DER OID) and raw point. */
    unsigned char *pub_a, *pub_b;
    size_t pub_a_len, pub_b_len;
} HWKEY_P11_KEY;

HWKEY_LOOKUP hwkey_p11_key_load(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_BKEY **out);
/*
 * The key uri names on tok, through session s (logged in) of epoch: finds the
 * one private key, reads its public half and flags.  Takes uri over on
 * success (the key frees it), leaves it to the caller on failure.
 */
HWKEY_LOOKUP hwkey_p11_key_build(HWKEY_P11_DEVICE *dev, HWKEY_P11_TOKEN *tok, HWKEY_P11_URI *uri,
                                 CK_SESSION_HANDLE s, uint64_t epoch, HWKEY_P11_KEY **out);
void hwkey_p11_key_free(HWKEY_BKEY *key);
EVP_PKEY *hwkey_p11_key_public(HWKEY_BKEY *key, OSSL_LIB_CTX *libctx, const char *propq);
int hwkey_p11_key_generate(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec, const HWKEY_GENOPTS *opts,
                           HWKEY_REFBLOB *out);
int hwkey_p11_key_delete(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref);
/* p11_import.c: the software key as a sensitive, non-extractable private key object plus
 * its public key object, under the id/label of opts->uri. */
int hwkey_p11_key_import(HWKEY_DEVICE *dev, EVP_PKEY *soft, const HWKEY_GENOPTS *opts,
                         HWKEY_REFBLOB *out);
int hwkey_p11_key_list(HWKEY_DEVICE *dev, const char *filter, hwkey_list_cb cb, void *arg);
/*
 * A logged-in session and the key's current object handle (re-found when the
 * token epoch changed).  Release with hwkey_p11_session_put().
 */
int hwkey_p11_key_acquire(HWKEY_P11_KEY *key, CK_SESSION_HANDLE *s, uint64_t *epoch,
                          CK_OBJECT_HANDLE *obj);
/* After CKR_OBJECT_HANDLE_INVALID / CKR_KEY_HANDLE_INVALID: force a re-find. */
void hwkey_p11_key_forget_handle(HWKEY_P11_KEY *key);
/* p11_recover.c: */
/*
 * hwkey_p11_key_acquire(), re-initialising the module once (*recovered: spent)
 * when the failure behind it was a lost device; errors of the first try are
 * dropped (the caller set an error mark).
 */
int hwkey_p11_key_acquire_recovering(HWKEY_P11_KEY *key, CK_SESSION_HANDLE *s, uint64_t *epoch,
                                     CK_OBJECT_HANDLE *obj, int *recovered);
/* Parses text, finds its module and token, opens a session and logs in. */
int hwkey_p11_ref_open(HWKEY_P11_DEVICE *dev, const char *text, size_t len,
                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_P11_URI **uri,
                       HWKEY_P11_TOKEN **tok, CK_SESSION_HANDLE *s, uint64_t *epoch);
/* The same for generate/import ("what" names it in errors): opts->uri, opts->auth as PIN. */
int hwkey_p11_create_open(HWKEY_P11_DEVICE *dev, const HWKEY_GENOPTS *opts, const char *what,
                          HWKEY_P11_URI **uri, HWKEY_P11_TOKEN **tok, CK_SESSION_HANDLE *s,
                          uint64_t *epoch);
#define HWKEY_P11_NEW_ID_LEN 16
/*
 * The CKA_ID of a new key: the URI's id=, else random bytes in rid.  Fails
 * (HWKEY_R_BAD_ARGUMENT) if a private or public key already has that id or
 * the URI's object= label.
 */
int hwkey_p11_new_key_id(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, const HWKEY_P11_URI *uri,
                         unsigned char rid[HWKEY_P11_NEW_ID_LEN], const unsigned char **id,
                         size_t *id_len);
/* DER of the OID of nid (CKA_EC_PARAMS); OPENSSL_free *der. */
int hwkey_p11_ec_params_der(int nid, unsigned char **der, int *len);

/* --- key attestation (p11_attest.c) ------------------------------------- */

/* The vtable's key_attest: the key's origin attributes as a text report. */
int hwkey_p11_key_attest(HWKEY_BKEY *key, const unsigned char *nonce, size_t nonce_len, BIO *out);

/* --- objects and public keys (p11_pubkey.c) -------------------------------- */

/*
 * One attribute into a fresh OPENSSL_malloc'd buffer (NUL-terminated); 0 if the
 * object has no readable value (nothing raised) or memory ran out (raised).
 */
int hwkey_p11_attr_get(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                       CK_ATTRIBUTE_TYPE type, unsigned char **buf, size_t *len);
/* 1 if the boolean attribute type of obj is CK_TRUE (0 when false, absent or unreadable). */
int hwkey_p11_attr_true(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                        CK_ATTRIBUTE_TYPE type);
/* Up to max objects of class klass with this id (if has_id) and label (if non-NULL). */
int hwkey_p11_find(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_CLASS klass,
                   const unsigned char *id, size_t id_len, int has_id, const char *label,
                   CK_OBJECT_HANDLE *objs, CK_ULONG max, CK_ULONG *n);
/* Every matching object, however many (OPENSSL_free *objs); for listings. */
int hwkey_p11_find_all(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_CLASS klass,
                       const unsigned char *id, size_t id_len, int has_id, const char *label,
                       CK_OBJECT_HANDLE **objs, CK_ULONG *n);
/* NID of a DER CKA_EC_PARAMS (OID, or the "edwards25519" PrintableString). */
int hwkey_p11_curve_nid(const unsigned char *params, size_t len);
/* Fills key->pub_* and key->base.info alg/bits/curve from the token. */
int hwkey_p11_pub_read(HWKEY_P11_KEY *key, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv);
/* The same from a public-key object (key->tok set): CKA_KEY_TYPE, n/e or params/point. */
int hwkey_p11_pub_read_object(HWKEY_P11_KEY *key, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub);

/* --- public keys and certificates by URI (p11_objects.c) -------------------- */

HWKEY_LOOKUP hwkey_p11_pubkey_load(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                   OSSL_LIB_CTX *libctx, const char *propq, EVP_PKEY **out);
HWKEY_LOOKUP hwkey_p11_cert_load(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                 OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, unsigned char **der,
                                 size_t *derlen);

/* --- operations (p11_ops.c) --------------------------------------------- */

int hwkey_p11_sign(HWKEY_BKEY *key, const HWKEY_SIGN_PARAMS *params, const unsigned char *tbs,
                   size_t tbslen, unsigned char *sig, size_t *siglen);
int hwkey_p11_rsa_private(HWKEY_BKEY *key, const unsigned char *in, size_t inlen,
                          unsigned char *out, size_t *outlen);
int hwkey_p11_rsa_decrypt(HWKEY_BKEY *key, const HWKEY_DECRYPT_PARAMS *params,
                          const unsigned char *in, size_t inlen, unsigned char *out,
                          size_t *outlen);
int hwkey_p11_ecdh(HWKEY_BKEY *key, const unsigned char *peer, size_t peerlen, unsigned char *out,
                   size_t *outlen);

/* --- failover replicas (p11_replicas.c) ---------------------------------- */

/* pkcs11-modules "a.so,b.so" (after module_path) into dev->paths; bad entries raise. */
int hwkey_p11_paths_parse(HWKEY_P11_DEVICE *dev, const char *list);
/* pkcs11-failover: the key on every token of every configured module that holds it. */
HWKEY_LOOKUP hwkey_p11_replicas_load(HWKEY_P11_DEVICE *dev, const char *text, size_t len,
                                     OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                     HWKEY_P11_KEY **out);
/* keys[0] becomes the key of a set of n (<= 16) replicas and owns keys[1..]; unit tests too. */
int hwkey_p11_replicas_adopt(HWKEY_P11_KEY **keys, size_t n);
void hwkey_p11_replicas_free(HWKEY_P11_REPLICAS *reps);
/*
 * One operation on one token's key (p11_ops.c): 1 done; 0 refused with *rv;
 * -1 raised.  recover: re-initialise the module once on a lost device.
 */
typedef int HWKEY_P11_RUN_FN(HWKEY_P11_KEY *key, void *op, CK_RV *rv, int recover);
/* The operation on the replicas of key: round robin, a lost token out, the op retried. */
int hwkey_p11_replicas_run(HWKEY_P11_KEY *key, HWKEY_P11_RUN_FN *run, void *op, CK_RV *rv);

/* --- data keys (p11_datakey.c) ------------------------------------------ */

/* opts->uri: the KEK; opts->create_kek: make it if absent; out: HWKEY_REF_PKCS11_DATAKEY. */
int hwkey_p11_datakey_create(HWKEY_DEVICE *dev, const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out);
int hwkey_p11_datakey_unwrap(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                             OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, unsigned char key[32]);

/* --- references (p11_refs.c): no module is touched ------------------------ */

HWKEY_REF_KIND hwkey_p11_uri_kind(const char *uri);
int hwkey_p11_key_describe(HWKEY_BKEY *key, const HWKEY_KEYREF *ref, BIO *out);
int hwkey_p11_ref_encode(const HWKEY_KEYREF *ref, int pem, BIO *out);
int hwkey_p11_generates(const HWKEY_GENOPTS *opts);
int hwkey_p11_ref_is_stored(HWKEY_REF_KIND kind);

#endif
