/*
 * Getting a key into the TPM for one operation, and the authorization
 * session that goes with it.
 *
 * Behind a resource manager a key is loaded once per connection (generation)
 * and stays: one TPM command per operation.  Without one, swtpm and
 * /dev/tpm0 have three transient slots shared by every process, so a key is
 * kept only as a saved context (TPM-encrypted, valid until TPM reset) and
 * each operation is ContextLoad + command + FlushContext; if the saved
 * context is refused (TPM restarted) the key is loaded again from its blob.
 */
#include "backend/tpm2/tpm2_internal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "util/error.h"
#include "util/log.h"
#include "util/testhook.h"

static HWKEY_TPM2_DEVICE *dev_of(HWKEY_TPM2_KEY *key)
{
    return (HWKEY_TPM2_DEVICE *)key->base.device;
}

static int set_auth(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys, ESYS_TR tr)
{
    TSS2_RC rc;

    if (!key->has_auth)
        return 1;
    rc = Esys_TR_SetAuth(esys, tr, key->auth);
    if (rc != TSS2_RC_SUCCESS)
        return hwkey_tpm2_raise_rc(rc, "setting the key's auth value");
    return 1;
}

static int open_persistent(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys, ESYS_TR *tr)
{
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;
    char what[64];

    do {
        rc = Esys_TR_FromTPMPublic(esys, key->persistent, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   tr);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        *tr = ESYS_TR_NONE;
        snprintf(what, sizeof(what), "opening the TPM key handle:0x%08x",
                 (unsigned int)key->persistent);
        hwkey_tpm2_raise_rc(rc, what);
        hwkey_tpm2_note_rc(dev_of(key), rc);
        return 0;
    }
    return 1;
}

/*
 * A key file recording the owner hierarchy (0x40000001) does not say which
 * primary: tpm2-openssl and hwkey mean the ECC template (tried first), but
 * tpm2-tools' tpm2_encodeobject writes the same number for a key made under
 * `tpm2_createprimary`'s default RSA primary.  A Load under the wrong parent
 * fails with TPM_RC_INTEGRITY, which involves no auth value (no DA strike),
 * so that second template is tried once.  Its primary is made for this load
 * only and flushed: an RSA primary takes seconds on a hardware TPM, but a
 * key is loaded once per connection (RM) or once per process (no RM, where
 * its saved context is reused).
 */
static TSS2_RC load_under_tools_primary(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys, ESYS_TR *tr)
{
    TPM2B_PUBLIC tmpl;
    const TPM2B_SENSITIVE_CREATE sensitive = {0};
    const TPM2B_DATA outside = {0};
    const TPML_PCR_SELECTION pcrs = {0};
    ESYS_TR primary = ESYS_TR_NONE;
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;

    hwkey_tpm2_tools_primary_template(&tmpl);
    do {
        rc = Esys_CreatePrimary(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                ESYS_TR_NONE, &sensitive, &tmpl, &outside, &pcrs, &primary, NULL,
                                NULL, NULL, NULL);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS)
        return rc;
    retry = (HWKEY_TPM2_RETRY){0};
    do {
        rc = Esys_Load(esys, primary, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &key->priv,
                       &key->pub, tr);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS)
        *tr = ESYS_TR_NONE;
    hwkey_tpm2_flush_quiet(esys, &primary);
    return rc;
}

/*
 * Load from the blob under the parent; returns a fresh transient TR.
 *
 * Without a resource manager the parent and the key need two of swtpm's
 * three slots at once.  A process that waits for the second slot while
 * holding the first can starve everyone (eight processes, three parents
 * loaded, nobody can load a key), so on a retryable failure the parent is
 * released before backing off, and both are taken again.
 */
/* An importable key file: TPM2_Import once, then load the TPM's own blob. */
static int import_if_pending(void *arg, ESYS_CONTEXT *esys, ESYS_TR parent)
{
    HWKEY_TPM2_KEY *key = arg;

    return key->import_seed == NULL || hwkey_tpm2_import_pending(key, esys, parent);
}

static int load_blob(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys, ESYS_TR *tr)
{
    HWKEY_TPM2_DEVICE *dev = dev_of(key);
    TSS2_RC rc;
    char what[80];

    rc = hwkey_tpm2_load_under(dev, esys, key->parent, &key->priv, &key->pub, import_if_pending,
                               key, tr, NULL);
    if (rc == TSS2_RC_SUCCESS)
        return 1;
    if (rc == HWKEY_TPM2_RC_RAISED)
        return 0;
    if (key->parent == HWKEY_TPM2_PARENT_OWNER && dev->esys == esys &&
        hwkey_tpm2_rc_base(rc) == TPM2_RC_INTEGRITY &&
        load_under_tools_primary(key, esys, tr) == TSS2_RC_SUCCESS) {
        hwkey_log(HWKEY_LOG_INFO, "tpm2: the key loads under tpm2-tools' default (RSA) primary");
        return 1;
    }
    snprintf(what, sizeof(what), "loading the key under parent 0x%08x", (unsigned int)key->parent);
    hwkey_tpm2_raise_load_rc(rc, what);
    hwkey_tpm2_note_rc(dev, rc);
    return 0;
}

int hwkey_tpm2_key_prepare(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys)
{
    HWKEY_TPM2_DEVICE *dev = dev_of(key);
    HWKEY_TPM2_RETRY retry = {0};
    ESYS_TR tr = ESYS_TR_NONE;
    TSS2_RC rc;

    if (key->persistent != 0) {
        if (!open_persistent(key, esys, &tr))
            return 0;
        key->tr = tr;
        key->tr_gen = dev->generation;
        return 1;
    }
    if (!load_blob(key, esys, &tr))
        return 0;
    if (dev->rm_mode) {
        key->tr = tr;
        key->tr_gen = dev->generation;
        return 1;
    }
    /* No RM: keep only the saved context, free the slot now. */
    Esys_Free(key->saved);
    key->saved = NULL;
    do {
        rc = Esys_ContextSave(esys, tr, &key->saved);
    } while (hwkey_tpm2_retry(&retry, rc));
    hwkey_tpm2_flush_quiet(esys, &tr);
    if (rc != TSS2_RC_SUCCESS) {
        key->saved = NULL;
        return hwkey_tpm2_raise_rc(rc, "saving the key's context");
    }
    return 1;
}

int hwkey_tpm2_key_get(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys, ESYS_TR *tr)
{
    HWKEY_TPM2_DEVICE *dev = dev_of(key);
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc = TSS2_RC_SUCCESS;

    dev->used_keys = 1;

    *tr = ESYS_TR_NONE;
    if (key->persistent != 0 || dev->rm_mode) {
        if (key->tr == ESYS_TR_NONE || key->tr_gen != dev->generation) {
            /* First use in this connection (or in a forked child): the old TR is dead. */
            key->tr = ESYS_TR_NONE;
            if (!hwkey_tpm2_key_prepare(key, esys))
                return 0;
        }
        *tr = key->tr;
        return set_auth(key, esys, *tr);
    }
    if (key->saved != NULL) {
        do {
            rc = Esys_ContextLoad(esys, key->saved, tr);
        } while (hwkey_tpm2_retry(&retry, rc));
    }
    if (key->saved == NULL || rc != TSS2_RC_SUCCESS) {
        int reason = hwkey_tpm2_reason(rc);

        if (key->saved != NULL &&
            (reason == HWKEY_R_DEVICE_BUSY || reason == HWKEY_R_DEVICE_UNREACHABLE)) {
            hwkey_tpm2_raise_rc(rc, "loading the key's saved context");
            hwkey_tpm2_note_rc(dev, rc);
            return 0;
        }
        if (key->saved != NULL)
            hwkey_log(HWKEY_LOG_INFO, "tpm2: saved key context refused (0x%x), reloading",
                      (unsigned int)rc);
        /* Reload from the blob, then ContextLoad the fresh saved context. */
        if (!hwkey_tpm2_key_prepare(key, esys))
            return 0;
        retry = (HWKEY_TPM2_RETRY){0};
        do {
            rc = Esys_ContextLoad(esys, key->saved, tr);
        } while (hwkey_tpm2_retry(&retry, rc));
        if (rc != TSS2_RC_SUCCESS) {
            *tr = ESYS_TR_NONE;
            return hwkey_tpm2_raise_load_rc(rc, "loading the key's saved context");
        }
    }
    if (!set_auth(key, esys, *tr)) {
        hwkey_tpm2_flush_quiet(esys, tr);
        return 0;
    }
    /* Tests stop (and SIGKILL) a process here: the key occupies a slot. */
    HWKEY_TEST_POINT("tpm2-object-loaded");
    return 1;
}

void hwkey_tpm2_forget_auth(ESYS_CONTEXT *esys, ESYS_TR tr)
{
    /*
     * Esys_TR_SetAuth copies the whole TPM2B_AUTH into the ESYS object; with
     * NULL it only sets the size to 0 and the bytes stay (tpm2-tss 3.x/4.x).
     * Copying an all-zero one overwrites them: the auth value must not stay
     * in ESYS's ordinary heap (nor in the freed object after a flush).
     */
    static const TPM2B_AUTH zero;

    if (tr != ESYS_TR_NONE)
        (void)Esys_TR_SetAuth(esys, tr, &zero);
}

void hwkey_tpm2_key_put(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys, ESYS_TR *tr)
{
    if (*tr == ESYS_TR_NONE)
        return;
    /* Set again by hwkey_tpm2_key_get before each use, from key->auth (protected). */
    if (key->has_auth)
        hwkey_tpm2_forget_auth(esys, *tr);
    if (key->persistent == 0 && !dev_of(key)->rm_mode)
        hwkey_tpm2_flush_quiet(esys, tr);
    *tr = ESYS_TR_NONE;
}

/*
 * A key with an auth value is used through an unsalted HMAC session, so the
 * value itself never crosses the bus (a password session would send it in
 * the clear).  continueSession is clear: the TPM ends the session with the
 * command.  Keys without auth use the password session with an empty value.
 */
int hwkey_tpm2_session_start(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys, ESYS_TR *session)
{
    const TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_NULL};
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;

    /*
     * A PCR-bound key: a policy session (its PolicyAuthValue, if any, makes
     * ESAPI bind the key's auth value into the HMAC as for an HMAC session).
     */
    if (key->policy != NULL)
        return hwkey_tpm2_policy_session(esys, key->policy, ESYS_TR_NONE, 0, session);
    *session = ESYS_TR_PASSWORD;
    if (!key->has_auth)
        return 1;
    do {
        rc =
            Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                  ESYS_TR_NONE, NULL, TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, session);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        *session = ESYS_TR_NONE;
        return hwkey_tpm2_raise_rc(rc, "starting the key's HMAC session");
    }
    rc = Esys_TRSess_SetAttributes(esys, *session, 0, TPMA_SESSION_CONTINUESESSION);
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_flush_quiet(esys, session);
        return hwkey_tpm2_raise_rc(rc, "setting the session attributes");
    }
    return 1;
}

void hwkey_tpm2_wipe_response(ESYS_CONTEXT *esys)
{
    /*
     * ESYS unmarshals a response from its SYS context's buffer and, for an
     * encrypting session, decrypts the parameters in place there: after
     * TPM2_Unseal the data key stays in that buffer, in ordinary heap, until
     * a longer command overwrites it.  Overwrite the parameter area now
     * (the buffer is the context's own memory; the next command rewrites it).
     */
    TSS2_SYS_CONTEXT *sys = NULL;
    const uint8_t *rp = NULL;
    size_t len = 0;

    if (Esys_GetSysContext(esys, &sys) == TSS2_RC_SUCCESS && sys != NULL &&
        Tss2_Sys_GetRpBuffer(sys, &len, &rp) == TSS2_RC_SUCCESS && rp != NULL)
        OPENSSL_cleanse((void *)rp, len);
}

/*
 * ESYS keeps sessionKey || authValue (its "session value", the HMAC key) in
 * the session object after a command, and Esys_TR_Close/FlushContext free
 * the object without wiping it: the auth value stays in ordinary heap.  No
 * API clears it, but every command recomputes it from the object's auth
 * before anything else.  So: give the object an all-zero auth of the same
 * length, mark the session as the response-encrypting one, and start a
 * TPM2_Unseal naming that session twice: ESYS writes the zeros into the
 * session value, then refuses the command ("more than one encrypt session")
 * before sending it (tpm2-tss 3.2: iesys_compute_session_value runs before
 * iesys_gen_auths; the error is silent, TSS2_LOG is off, tpm2_context.c).
 * Should a library ever send it, the TPM refuses it while checking the
 * session area (one session named twice, two encrypt sessions), before any
 * authorization check, so it cannot cost a dictionary-attack try; the answer
 * is collected here, and the test fails on such a send (HWKEY_LOG=2).
 * Checked by test/integration/test_secrets_coredump.sh.
 */
void hwkey_tpm2_session_scrub(ESYS_CONTEXT *esys, ESYS_TR session, ESYS_TR obj,
                              const TPM2B_AUTH *auth)
{
    TPM2B_AUTH zero;
    TPM2B_SENSITIVE_DATA *out = NULL;
    TSS2_RC rc;

    if (session == ESYS_TR_NONE || session == ESYS_TR_PASSWORD || obj == ESYS_TR_NONE ||
        auth == NULL || auth->size == 0)
        return;
    memset(&zero, 0, sizeof(zero));
    zero.size = auth->size;
    if (Esys_TR_SetAuth(esys, obj, &zero) != TSS2_RC_SUCCESS ||
        Esys_TRSess_SetAttributes(esys, session, TPMA_SESSION_ENCRYPT, TPMA_SESSION_ENCRYPT) !=
            TSS2_RC_SUCCESS)
        goto end;
    if (Esys_Unseal_Async(esys, obj, session, session, ESYS_TR_NONE) == TSS2_RC_SUCCESS) {
        hwkey_log(HWKEY_LOG_INFO, "tpm2: the session scrub command was sent; collecting it");
        do {
            rc = Esys_Unseal_Finish(esys, &out);
        } while ((rc & ~TSS2_RC_LAYER_MASK) == TSS2_BASE_RC_TRY_AGAIN);
        if (out != NULL)
            OPENSSL_cleanse(out, sizeof(*out));
        Esys_Free(out);
    }
end:
    hwkey_tpm2_forget_auth(esys, obj);
}

void hwkey_tpm2_session_end(ESYS_CONTEXT *esys, ESYS_TR *session, TSS2_RC cmd_rc)
{
    if (*session == ESYS_TR_NONE || *session == ESYS_TR_PASSWORD)
        return;
    /* After success the TPM already ended it; after failure it may still exist. */
    if (cmd_rc == TSS2_RC_SUCCESS)
        Esys_TR_Close(esys, session);
    else
        hwkey_tpm2_flush_quiet(esys, session);
    *session = ESYS_TR_NONE;
}
