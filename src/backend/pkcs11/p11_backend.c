/*
 * The PKCS#11 backend's vtable and its device: configuration, describe,
 * supports.  Modules load lazily on first use, so a provider
 * configured for a token that is not there still starts (and says why the
 * first key fails to load).
 */
#include "backend/pkcs11/p11_internal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/objects.h>

#include "util/error.h"
#include "util/forkgate.h"
#include "util/secmem.h"

static int p11_handles(HWKEY_REF_KIND kind)
{
    return kind == HWKEY_REF_PKCS11_URI || kind == HWKEY_REF_PKCS11_DATAKEY;
}

static void p11_close(HWKEY_DEVICE *base);

static HWKEY_DEVICE *p11_open(const HWKEY_CONFIG *cfg)
{
    HWKEY_P11_DEVICE *dev = OPENSSL_zalloc(sizeof(*dev));

    if (dev == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating the pkcs11 device");
        return NULL;
    }
    dev->base.backend = &hwkey_pkcs11_backend;
    pthread_mutex_init(&dev->lock, NULL);
    if (cfg != NULL) {
        if ((cfg->pkcs11_module != NULL &&
             (dev->module_path = OPENSSL_strdup(cfg->pkcs11_module)) == NULL) ||
            (cfg->pkcs11_pin_source != NULL &&
             (dev->pin_source = OPENSSL_strdup(cfg->pkcs11_pin_source)) == NULL)) {
            hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying the pkcs11 configuration");
            goto err;
        }
        if (!hwkey_p11_quirks_parse(cfg->pkcs11_quirks, &dev->quirks))
            goto err;
        dev->failover = cfg->pkcs11_failover;
        if (!hwkey_p11_paths_parse(dev, cfg->pkcs11_modules))
            goto err;
    }
    /*
     * Installs the gate's atfork handlers (once per process) so the fork
     * generation counts from now on, even for internal callers that never
     * pass through a gated entry before a fork (the unit tests).
     */
    hwkey_gate_enter();
    hwkey_gate_leave();
    return &dev->base;
err:
    p11_close(&dev->base);
    return NULL;
}

/*
 * Memory only: no C_CloseSession, no C_Finalize, no dlclose.  This runs from
 * provider teardown, possibly inside exit() after SoftHSM's own destructors
 * (TRAPS.md); the process's end releases the module's resources.
 */
static void p11_close(HWKEY_DEVICE *base)
{
    HWKEY_P11_DEVICE *dev = (HWKEY_P11_DEVICE *)base;
    HWKEY_P11_MODULE *mod, *nmod;

    if (dev == NULL)
        return;
    for (mod = dev->modules; mod != NULL; mod = nmod) {
        HWKEY_P11_TOKEN *tok, *ntok;

        nmod = mod->next;
        for (tok = mod->tokens; tok != NULL; tok = ntok) {
            ntok = tok->next;
            hwkey_secmem_free(tok->pin);
            OPENSSL_cleanse(tok->rejected, sizeof(tok->rejected));
            OPENSSL_free(tok->idle);
            OPENSSL_free(tok->mechs);
            pthread_cond_destroy(&tok->cond);
            pthread_mutex_destroy(&tok->lock);
            OPENSSL_free(tok);
        }
        pthread_mutex_destroy(&mod->lock);
        OPENSSL_free(mod->path);
        OPENSSL_free(mod);
    }
    for (size_t i = 0; i < dev->n_paths; i++)
        OPENSSL_free(dev->paths[i]);
    OPENSSL_free(dev->paths);
    OPENSSL_free(dev->module_path);
    OPENSSL_free(dev->pin_source);
    pthread_mutex_destroy(&dev->lock);
    OPENSSL_free(dev);
}

static const struct {
    CK_MECHANISM_TYPE m;
    const char *name;
} mech_names[] = {
    {CKM_RSA_PKCS_KEY_PAIR_GEN, "RSA-PKCS-KEY-PAIR-GEN"},
    {CKM_RSA_PKCS, "RSA-PKCS"},
    {CKM_RSA_X_509, "RSA-X-509"},
    {CKM_RSA_PKCS_OAEP, "RSA-PKCS-OAEP"},
    {CKM_RSA_PKCS_PSS, "RSA-PKCS-PSS"},
    {CKM_EC_KEY_PAIR_GEN, "EC-KEY-PAIR-GEN"},
    {CKM_ECDSA, "ECDSA"},
    {CKM_ECDH1_DERIVE, "ECDH1-DERIVE"},
    {CKM_EC_EDWARDS_KEY_PAIR_GEN, "EC-EDWARDS-KEY-PAIR-GEN"},
    {CKM_EDDSA, "EDDSA"},
    {CKM_AES_KEY_WRAP, "AES-KEY-WRAP"},
    {CKM_AES_KEY_WRAP_PAD, "AES-KEY-WRAP-PAD"},
    {CKM_AES_GCM, "AES-GCM"},
};

/* PKCS#11 text fields are space-padded, not NUL-terminated: print them trimmed. */
static int field_len(const unsigned char *f, int n)
{
    while (n > 0 && (f[n - 1] == ' ' || f[n - 1] == 0))
        n--;
    return n;
}
#define FIELD(f) field_len((f), (int)sizeof(f)), (const char *)(f)

static void describe_token(HWKEY_P11_MODULE *mod, CK_SLOT_ID slot, BIO *out)
{
    CK_TOKEN_INFO ti;
    CK_MECHANISM_TYPE mechs[512];
    CK_ULONG n = 512;

    if (mod->fl->C_GetTokenInfo(slot, &ti) != CKR_OK)
        return;
    BIO_printf(out,
               "    token: label \"%.*s\" manufacturer \"%.*s\" model \"%.*s\" "
               "serial \"%.*s\"\n",
               FIELD(ti.label), FIELD(ti.manufacturerID), FIELD(ti.model), FIELD(ti.serialNumber));
    BIO_printf(out, "      flags 0x%lx%s%s%s, max sessions %ld\n", (unsigned long)ti.flags,
               (ti.flags & CKF_LOGIN_REQUIRED) ? " login-required" : "",
               (ti.flags & CKF_USER_PIN_FINAL_TRY) ? " pin-final-try" : "",
               (ti.flags & CKF_USER_PIN_LOCKED) ? " pin-locked" : "", (long)ti.ulMaxSessionCount);
    if (mod->fl->C_GetMechanismList(slot, mechs, &n) != CKR_OK)
        return;
    BIO_printf(out, "      mechanisms used by hwkey:");
    for (CK_ULONG i = 0; i < n; i++)
        for (size_t j = 0; j < sizeof(mech_names) / sizeof(mech_names[0]); j++)
            if (mech_names[j].m == mechs[i])
                BIO_printf(out, " %s", mech_names[j].name);
    BIO_printf(out, " (%lu in all)\n", (unsigned long)n);
}

static int p11_describe(HWKEY_DEVICE *base, BIO *out)
{
    HWKEY_P11_MODULE *mod = hwkey_p11_module_get((HWKEY_P11_DEVICE *)base, NULL);
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    CK_INFO info;

    if (mod == NULL || !hwkey_p11_module_check(mod))
        return 0;
    if (mod->fl->C_GetInfo(&info) == CKR_OK)
        BIO_printf(out, "module %s: \"%.*s\" \"%.*s\" version %d.%d, Cryptoki %d.%d\n", mod->path,
                   FIELD(info.manufacturerID), FIELD(info.libraryDescription),
                   info.libraryVersion.major, info.libraryVersion.minor, info.cryptokiVersion.major,
                   info.cryptokiVersion.minor);
    if (mod->fl->C_GetSlotList(CK_FALSE, slots, &n) != CKR_OK)
        return 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_SLOT_INFO si;

        if (mod->fl->C_GetSlotInfo(slots[i], &si) != CKR_OK)
            continue;
        BIO_printf(out, "  slot %lu: \"%.*s\"%s\n", (unsigned long)slots[i],
                   FIELD(si.slotDescription), (si.flags & CKF_TOKEN_PRESENT) ? "" : " (no token)");
        if (si.flags & CKF_TOKEN_PRESENT)
            describe_token(mod, slots[i], out);
    }
    return 1;
}

static int p11_supports(HWKEY_DEVICE *base, const HWKEY_KEYSPEC *spec)
{
    (void)spec;
    /*
     * Asked by the catalogue while OpenSSL builds its algorithm list, which
     * can happen inside SoftHSM's own C_Initialize (SoftHSM initialises
     * OpenSSL in-process): loading or asking the module here re-enters it
     * and corrupts its state (seen: pkcs11-tool aborting in
     * __pthread_tpp_change_priority).  So never touch the module: with one
     * configured, "cannot tell"; without, "no" (a URI may still name a
     * module-path; the TPM's answer or "cannot tell" then covers EC/RSA).
     */
    if (((HWKEY_P11_DEVICE *)base)->module_path == NULL &&
        ((HWKEY_P11_DEVICE *)base)->modules == NULL)
        return 0;
    return -1;
}

/*
 * Every entry that can take a backend lock runs inside the fork gate
 * (util/forkgate.h): fork() waits until no thread is in here, so a child
 * never inherits a lock, a half-updated pool or a half-done module call.
 * The passphrase callback is the one thing called from inside that leaves
 * the gate while it runs (p11_login.c).
 */
/*
 * SIGPIPE: p11-kit-client writes to its socket with write(2), so the first
 * call after `p11-kit server` went away raises SIGPIPE, whose default action
 * kills the application (seen: a signing loop died silently; nginx ignores
 * SIGPIPE, openssl(1) and most programs do not).  A library must not change
 * the process's disposition, so each entry blocks SIGPIPE in the calling
 * thread and swallows one that the module raised meanwhile (libcurl's
 * technique); the module then sees EPIPE and answers CKR_DEVICE_ERROR.
 */
typedef struct {
    sigset_t old;
    int was_pending;
} SIGPIPE_GUARD;

static void sigpipe_block(SIGPIPE_GUARD *g)
{
    sigset_t pipe, pending;

    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &g->old);
}

static void sigpipe_restore(SIGPIPE_GUARD *g)
{
    static const struct timespec zero = {0, 0};
    sigset_t pipe, pending;

    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigpending(&pending);
    /* Only ours: one that was pending before stays for the application. */
    if (!g->was_pending && sigismember(&pending, SIGPIPE))
        while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR) {
        }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

#define GATED(ret, name, params, args)                                                             \
    static ret gated_##name params                                                                 \
    {                                                                                              \
        SIGPIPE_GUARD g;                                                                           \
        ret r;                                                                                     \
        sigpipe_block(&g);                                                                         \
        hwkey_gate_enter();                                                                        \
        r = name args;                                                                             \
        hwkey_gate_leave();                                                                        \
        sigpipe_restore(&g);                                                                       \
        return r;                                                                                  \
    }

GATED(int, p11_describe, (HWKEY_DEVICE * d, BIO *out), (d, out))
GATED(HWKEY_LOOKUP, hwkey_p11_key_load,
      (HWKEY_DEVICE * d, const HWKEY_KEYREF *ref, OSSL_PASSPHRASE_CALLBACK *cb, void *arg,
       HWKEY_BKEY **out),
      (d, ref, cb, arg, out))
GATED(EVP_PKEY *, hwkey_p11_key_public, (HWKEY_BKEY * k, OSSL_LIB_CTX *l, const char *pq),
      (k, l, pq))
GATED(int, hwkey_p11_key_generate,
      (HWKEY_DEVICE * d, const HWKEY_KEYSPEC *sp, const HWKEY_GENOPTS *o, HWKEY_REFBLOB *out),
      (d, sp, o, out))
GATED(int, hwkey_p11_key_import,
      (HWKEY_DEVICE * d, EVP_PKEY *soft, const HWKEY_GENOPTS *o, HWKEY_REFBLOB *out),
      (d, soft, o, out))
GATED(int, hwkey_p11_key_delete, (HWKEY_DEVICE * d, const HWKEY_KEYREF *ref), (d, ref))
GATED(int, hwkey_p11_key_list, (HWKEY_DEVICE * d, const char *f, hwkey_list_cb cb, void *arg),
      (d, f, cb, arg))
GATED(int, hwkey_p11_sign,
      (HWKEY_BKEY * k, const HWKEY_SIGN_PARAMS *p, const unsigned char *tbs, size_t tbslen,
       unsigned char *sig, size_t *siglen),
      (k, p, tbs, tbslen, sig, siglen))
GATED(int, hwkey_p11_rsa_private,
      (HWKEY_BKEY * k, const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen),
      (k, in, inlen, out, outlen))
GATED(int, hwkey_p11_rsa_decrypt,
      (HWKEY_BKEY * k, const HWKEY_DECRYPT_PARAMS *p, const unsigned char *in, size_t inlen,
       unsigned char *out, size_t *outlen),
      (k, p, in, inlen, out, outlen))
GATED(int, hwkey_p11_ecdh,
      (HWKEY_BKEY * k, const unsigned char *peer, size_t peerlen, unsigned char *out,
       size_t *outlen),
      (k, peer, peerlen, out, outlen))
GATED(HWKEY_LOOKUP, hwkey_p11_pubkey_load,
      (HWKEY_DEVICE * d, const HWKEY_KEYREF *ref, OSSL_PASSPHRASE_CALLBACK *cb, void *arg,
       OSSL_LIB_CTX *l, const char *pq, EVP_PKEY **out),
      (d, ref, cb, arg, l, pq, out))
GATED(HWKEY_LOOKUP, hwkey_p11_cert_load,
      (HWKEY_DEVICE * d, const HWKEY_KEYREF *ref, OSSL_PASSPHRASE_CALLBACK *cb, void *arg,
       unsigned char **der, size_t *derlen),
      (d, ref, cb, arg, der, derlen))
GATED(int, hwkey_p11_datakey_create, (HWKEY_DEVICE * d, const HWKEY_GENOPTS *o, HWKEY_REFBLOB *out),
      (d, o, out))
GATED(int, hwkey_p11_datakey_unwrap,
      (HWKEY_DEVICE * d, const HWKEY_KEYREF *ref, OSSL_PASSPHRASE_CALLBACK *cb, void *arg,
       unsigned char key[32]),
      (d, ref, cb, arg, key))
GATED(int, hwkey_p11_key_attest,
      (HWKEY_BKEY * k, const unsigned char *nonce, size_t nonce_len, BIO *out),
      (k, nonce, nonce_len, out))

const HWKEY_BACKEND hwkey_pkcs11_backend = {
    .name = "pkcs11",
    .handles = p11_handles,
    .open = p11_open,
    .close = p11_close,
    .supports = p11_supports,
    .describe = gated_p11_describe,
    .key_load = gated_hwkey_p11_key_load,
    .key_free = hwkey_p11_key_free,
    .key_public = gated_hwkey_p11_key_public,
    .key_generate = gated_hwkey_p11_key_generate,
    .key_import = gated_hwkey_p11_key_import,
    .key_delete = gated_hwkey_p11_key_delete,
    .key_list = gated_hwkey_p11_key_list,
    .sign = gated_hwkey_p11_sign,
    .rsa_private = gated_hwkey_p11_rsa_private,
    .rsa_decrypt = gated_hwkey_p11_rsa_decrypt,
    .ecdh = gated_hwkey_p11_ecdh,
    .pubkey_load = gated_hwkey_p11_pubkey_load,
    .cert_load = gated_hwkey_p11_cert_load,
    .datakey_create = gated_hwkey_p11_datakey_create,
    .datakey_unwrap = gated_hwkey_p11_datakey_unwrap,
    .key_attest = gated_hwkey_p11_key_attest,
    .uri_kind = hwkey_p11_uri_kind,
    .key_describe = hwkey_p11_key_describe,
    .ref_encode = hwkey_p11_ref_encode,
    .generates = hwkey_p11_generates,
    .ref_is_stored = hwkey_p11_ref_is_stored,
    .device_noun = "token",
};
