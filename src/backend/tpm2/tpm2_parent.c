/*
 * The parent keys live under: a configured handle, the SRK at 0x81000001
 * when the TPM was provisioned with one, or else a primary key in the owner
 * hierarchy created from tpm2-openssl's template (so that key files recording
 * parent 0x40000001 load in both tools).  Creating an ECC primary costs tens
 * of milliseconds, so it is created once per process: kept loaded behind a
 * resource manager, otherwise kept as a saved context and flushed after use.
 */
#include "backend/tpm2/tpm2_internal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <tss2/tss2_mu.h>

#include "util/error.h"
#include "util/log.h"
#include "util/secmem.h"
#include "util/tss2_keyfile.h"

static int srk_present(ESYS_CONTEXT *esys, int *present)
{
    TPMS_CAPABILITY_DATA *cap = NULL;
    TPMI_YES_NO more;
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;

    do {
        rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES,
                                HWKEY_TPM2_SRK_HANDLE, 1, &more, &cap);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS)
        return hwkey_tpm2_raise_rc(rc, "looking for the SRK 0x81000001");
    *present = cap->data.handles.count > 0 && cap->data.handles.handle[0] == HWKEY_TPM2_SRK_HANDLE;
    Esys_Free(cap);
    return 1;
}

static int create_primary(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, ESYS_TR *tr)
{
    TPM2B_PUBLIC tmpl;
    const TPM2B_SENSITIVE_CREATE sensitive = {0};
    const TPM2B_DATA outside = {0};
    const TPML_PCR_SELECTION pcrs = {0};
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;

    hwkey_tpm2_primary_template(&tmpl);
    do {
        rc =
            Esys_CreatePrimary(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                               &sensitive, &tmpl, &outside, &pcrs, tr, NULL, NULL, NULL, NULL);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        *tr = ESYS_TR_NONE;
        return hwkey_tpm2_raise_rc(rc, "creating the owner primary key (parent 0x40000001)");
    }
    hwkey_log(HWKEY_LOG_INFO, "tpm2: created the owner primary key");
    if (!dev->rm_mode && dev->primary_saved == NULL) {
        retry = (HWKEY_TPM2_RETRY){0};
        do {
            rc = Esys_ContextSave(esys, *tr, &dev->primary_saved);
        } while (hwkey_tpm2_retry(&retry, rc));
        if (rc != TSS2_RC_SUCCESS) {
            /* Not fatal: the next use creates the primary again. */
            dev->primary_saved = NULL;
            hwkey_log(HWKEY_LOG_INFO, "tpm2: cannot save the primary's context: 0x%x",
                      (unsigned int)rc);
        }
    }
    return 1;
}

static int owner_primary(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, ESYS_TR *tr)
{
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;

    if (dev->rm_mode) {
        if (dev->primary_tr != ESYS_TR_NONE && dev->primary_gen == dev->generation) {
            *tr = dev->primary_tr;
            return 1;
        }
        if (!create_primary(dev, esys, tr))
            return 0;
        dev->primary_tr = *tr;
        dev->primary_gen = dev->generation;
        return 1;
    }
    if (dev->primary_saved != NULL) {
        do {
            rc = Esys_ContextLoad(esys, dev->primary_saved, tr);
        } while (hwkey_tpm2_retry(&retry, rc));
        if (rc == TSS2_RC_SUCCESS)
            return 1;
        /* The TPM was restarted or the context went stale: recreate. */
        hwkey_log(HWKEY_LOG_INFO, "tpm2: saved primary context rejected (0x%x), recreating",
                  (unsigned int)rc);
        Esys_Free(dev->primary_saved);
        dev->primary_saved = NULL;
    }
    return create_primary(dev, esys, tr);
}

static int persistent_parent(ESYS_CONTEXT *esys, uint32_t handle, ESYS_TR *tr)
{
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;
    char what[64];

    do {
        rc = Esys_TR_FromTPMPublic(esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, tr);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        *tr = ESYS_TR_NONE;
        snprintf(what, sizeof(what), "opening the parent key 0x%08x", (unsigned int)handle);
        return hwkey_tpm2_raise_rc(rc, what);
    }
    return 1;
}

int hwkey_tpm2_parent_get(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, uint32_t handle, ESYS_TR *tr,
                          uint32_t *recorded)
{
    *tr = ESYS_TR_NONE;
    if (handle == 0)
        handle = dev->cfg_parent;
    if (handle == 0) {
        if (!dev->default_parent_known) {
            int present = 0;

            if (!srk_present(esys, &present))
                return 0;
            dev->default_parent = present ? HWKEY_TPM2_SRK_HANDLE : HWKEY_TPM2_PARENT_OWNER;
            dev->default_parent_known = 1;
        }
        handle = dev->default_parent;
    }
    if (recorded != NULL)
        *recorded = handle;
    if (handle == HWKEY_TPM2_PARENT_OWNER)
        return owner_primary(dev, esys, tr);
    if ((handle >> 24) == TPM2_HT_PERSISTENT)
        return persistent_parent(esys, handle, tr);
    hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                "parent handle 0x%08x is neither 0x40000001 (owner primary) nor persistent",
                (unsigned int)handle);
    return 0;
}

void hwkey_tpm2_parent_put(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, ESYS_TR *tr)
{
    if (*tr == ESYS_TR_NONE)
        return;
    if (*tr == dev->primary_tr) {
        /* RM mode keeps the primary for the next load. */
        *tr = ESYS_TR_NONE;
        return;
    }
    /* Persistent parent: forget the TR; transient primary (no RM): flush. */
    TPM2_HANDLE h = 0;

    if (Esys_TR_GetTpmHandle(esys, *tr, &h) == TSS2_RC_SUCCESS && (h >> 24) == TPM2_HT_PERSISTENT) {
        Esys_TR_Close(esys, tr);
        *tr = ESYS_TR_NONE;
        return;
    }
    hwkey_tpm2_flush_quiet(esys, tr);
}

void hwkey_tpm2_parent_reset(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys_or_null)
{
    if (esys_or_null != NULL && dev->primary_tr != ESYS_TR_NONE &&
        dev->primary_gen == dev->generation)
        hwkey_tpm2_flush_quiet(esys_or_null, &dev->primary_tr);
    dev->primary_tr = ESYS_TR_NONE;
    /* A TPM-side saved context stays valid across fork: keep primary_saved. */
    if (esys_or_null != NULL) {
        Esys_Free(dev->primary_saved);
        dev->primary_saved = NULL;
    }
}

/*
 * An HMAC session salted by the parent (its secret is unknown to anyone
 * watching the bus) with parameter encryption in one direction: attr is
 * TPMA_SESSION_DECRYPT (command) or TPMA_SESSION_ENCRYPT (response).
 * continueSession is clear: the TPM ends it with its one command.
 */
int hwkey_tpm2_salted_session(ESYS_CONTEXT *esys, ESYS_TR parent, TPMA_SESSION attr,
                              const char *what, ESYS_TR *session)
{
    const TPMT_SYM_DEF sym = {
        .algorithm = TPM2_ALG_AES, .keyBits = {.aes = 128}, .mode = {.aes = TPM2_ALG_CFB}};
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;

    do {
        rc =
            Esys_StartAuthSession(esys, parent, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                  ESYS_TR_NONE, NULL, TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, session);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        *session = ESYS_TR_NONE;
        return hwkey_tpm2_raise_rc(rc, what);
    }
    rc = Esys_TRSess_SetAttributes(esys, *session, attr, 0xff);
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_flush_quiet(esys, session);
        return hwkey_tpm2_raise_rc(rc, "setting the session's attributes");
    }
    return 1;
}

int hwkey_tpm2_keyfile_out(HWKEY_TSS2_KEYTYPE type, const TPM2B_PUBLIC *pub,
                           const TPM2B_PRIVATE *priv, uint32_t parent, int empty_auth,
                           const char *pub_what, const char *priv_what, HWKEY_REFBLOB *out)
{
    return hwkey_tpm2_keyfile_out_policy(type, pub, priv, parent, empty_auth, NULL, pub_what,
                                         priv_what, out);
}

int hwkey_tpm2_keyfile_out_policy(HWKEY_TSS2_KEYTYPE type, const TPM2B_PUBLIC *pub,
                                  const TPM2B_PRIVATE *priv, uint32_t parent, int empty_auth,
                                  const HWKEY_TPM2_POLICY *policy, const char *pub_what,
                                  const char *priv_what, HWKEY_REFBLOB *out)
{
    unsigned char pubbuf[sizeof(TPM2B_PUBLIC)], privbuf[sizeof(TPM2B_PRIVATE)];
    size_t publen = 0, privlen = 0, der_len = 0;
    unsigned char *der = NULL;
    HWKEY_TSS2_KEYFILE kf;
    TSS2_RC rc;
    int ok = 0;

    memset(&kf, 0, sizeof(kf));
    rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, pubbuf, sizeof(pubbuf), &publen);
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, pub_what);
        goto end;
    }
    rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, privbuf, sizeof(privbuf), &privlen);
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, priv_what);
        goto end;
    }
    if (!hwkey_tpm2_policy_to_keyfile(policy, &kf))
        goto end;
    kf.type = type;
    kf.empty_auth = empty_auth;
    kf.parent = parent;
    kf.pubkey = pubbuf;
    kf.pubkey_len = publen;
    kf.privkey = privbuf;
    kf.privkey_len = privlen;
    if (!hwkey_tss2_keyfile_encode(&kf, &der, &der_len))
        goto end;
    out->kind = HWKEY_REF_TSS2_KEYFILE;
    out->data = der;
    out->len = der_len;
    ok = 1;
end:
    /* The private blob is wrapped by the parent, but it is still key material. */
    OPENSSL_cleanse(privbuf, sizeof(privbuf));
    for (size_t i = 0; i < kf.policy_count; i++)
        OPENSSL_free(kf.policy[i].params);
    return ok;
}

TPM2B_SENSITIVE_CREATE *hwkey_tpm2_sensitive_new(const HWKEY_GENOPTS *opts, const char *what)
{
    size_t auth_len = opts != NULL && opts->auth != NULL ? opts->auth_len : 0;
    TPM2B_SENSITIVE_CREATE *sens = hwkey_secmem_alloc(sizeof(*sens));

    if (sens == NULL)
        return NULL;
    if (auth_len > sizeof(sens->sensitive.userAuth.buffer)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "%s auth value longer than %zu bytes", what,
                    sizeof(sens->sensitive.userAuth.buffer));
        hwkey_secmem_free(sens);
        return NULL;
    }
    sens->sensitive.userAuth.size = (UINT16)auth_len;
    if (auth_len > 0)
        memcpy(sens->sensitive.userAuth.buffer, opts->auth, auth_len);
    return sens;
}
