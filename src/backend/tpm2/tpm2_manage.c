/*
 * Key management on the TPM: generate (a loadable TSS2 key file, or a
 * persistent handle), delete and list persistent keys, and random bytes.
 * describe/supports live in tpm2_info.c.  Every ESAPI call sits between acquire() and release(); in
 * no-RM mode nothing loaded here outlives the call (slot rule, tpm2_internal.h).
 */
#include "backend/tpm2/tpm2_internal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <tss2/tss2_mu.h>

#include "util/error.h"
#include "util/log.h"
#include "util/secmem.h"
#include "util/tss2_keyfile.h"

#define PERSISTENT_FIRST 0x81000000u
#define PERSISTENT_LAST 0x81ffffffu

static HWKEY_TPM2_DEVICE *tpm2_dev(HWKEY_DEVICE *dev)
{
    return (HWKEY_TPM2_DEVICE *)dev;
}

/* ---- helpers ------------------------------------------------------------ */

/* ---- generate ------------------------------------------------------------ */

/* Load the new key and make it persistent at handle; call with the lock held. */
static int persist_key(ESYS_CONTEXT *esys, ESYS_TR parent, ESYS_TR parent_session,
                       const TPM2B_PUBLIC *pub, const TPM2B_PRIVATE *priv, uint32_t handle)
{
    ESYS_TR obj = ESYS_TR_NONE, persistent = ESYS_TR_NONE;
    HWKEY_TPM2_RETRY retry = {0};
    char what[96];
    TSS2_RC rc;
    int ok = 0;

    do {
        rc = Esys_Load(esys, parent, parent_session, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub, &obj);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, "loading the new key to make it persistent");
        goto end;
    }
    retry = (HWKEY_TPM2_RETRY){0};
    do {
        rc = Esys_EvictControl(esys, ESYS_TR_RH_OWNER, obj, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                               ESYS_TR_NONE, handle, &persistent);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        snprintf(what, sizeof(what), "making the new key persistent at 0x%08x%s",
                 (unsigned int)handle,
                 hwkey_tpm2_rc_base(rc) == TPM2_RC_NV_DEFINED ? " (handle already in use)" : "");
        hwkey_tpm2_raise_rc(rc, what);
        goto end;
    }
    Esys_TR_Close(esys, &persistent);
    ok = 1;
end:
    hwkey_tpm2_flush_quiet(esys, &obj);
    return ok;
}

static int refblob_set(HWKEY_REFBLOB *out, HWKEY_REF_KIND kind, unsigned char *data, size_t len)
{
    out->kind = kind;
    out->data = data;
    out->len = len;
    return 1;
}

int hwkey_tpm2_key_generate(HWKEY_DEVICE *base, const HWKEY_KEYSPEC *spec,
                            const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out)
{
    HWKEY_TPM2_DEVICE *dev = tpm2_dev(base);
    TPM2B_SENSITIVE_CREATE *sens = NULL;
    TPM2B_PUBLIC tmpl, *pub = NULL;
    TPM2B_PRIVATE *priv = NULL;
    const TPM2B_DATA outside = {0};
    const TPML_PCR_SELECTION pcrs = {0};
    ESYS_TR parent = ESYS_TR_NONE, session = ESYS_TR_NONE;
    ESYS_CONTEXT *esys = NULL;
    uint32_t recorded = 0, persist = opts != NULL ? opts->persist_handle : 0;
    size_t auth_len = opts != NULL && opts->auth != NULL ? opts->auth_len : 0;
    HWKEY_TPM2_POLICY *policy = NULL;
    TPM2B_DIGEST policy_digest;
    int pcr_bound = opts != NULL && opts->pcrs.mask != 0;
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;
    int ok = 0;

    memset(out, 0, sizeof(*out));
    if (pcr_bound && persist != 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "a PCR-bound key needs a key file to record its "
                                          "policy; it cannot be a persistent handle");
        return 0;
    }
    if (persist != 0 && (persist < PERSISTENT_FIRST || persist > PERSISTENT_LAST)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "0x%08x is not a persistent handle (0x81000000 .. 0x81ffffff)",
                    (unsigned int)persist);
        return 0;
    }
    if (!hwkey_tpm2_key_template(spec, &tmpl))
        return 0;
    /* Dictionary-attack protection only guards something when there is an auth value. */
    if (auth_len == 0)
        tmpl.publicArea.objectAttributes |= TPMA_OBJECT_NODA;

    /* inSensitive carries the auth value: protected memory, wiped on free. */
    if ((sens = hwkey_tpm2_sensitive_new(opts, "TPM key")) == NULL)
        return 0;

    if ((esys = hwkey_tpm2_acquire(dev)) == NULL)
        goto end;
    /* Bound to the PCRs' values now: authPolicy = the PolicyPCR chain's digest. */
    if (pcr_bound) {
        if (!hwkey_tpm2_policy_make(esys, &opts->pcrs, auth_len > 0, &policy, &policy_digest))
            goto release;
        hwkey_tpm2_policy_bind(&tmpl, &policy_digest);
    }
    if (!hwkey_tpm2_parent_get(dev, esys, 0, &parent, &recorded))
        goto release;
    /*
     * Salted by the parent: the new key's auth value in TPM2_Create's
     * inSensitive then crosses the bus encrypted.
     */
    if (auth_len > 0 &&
        !hwkey_tpm2_salted_session(esys, parent, TPMA_SESSION_DECRYPT,
                                   "starting an encrypted session with the parent key", &session))
        goto release;
    do {
        rc = Esys_Create(esys, parent, session != ESYS_TR_NONE ? session : ESYS_TR_PASSWORD,
                         ESYS_TR_NONE, ESYS_TR_NONE, sens, &tmpl, &outside, &pcrs, &priv, &pub,
                         NULL, NULL, NULL);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, "creating the key in the TPM (TPM2_Create)");
        goto release;
    }
    if (persist != 0) {
        /* The session's continueSession bit was clear: Create ended it. */
        session = ESYS_TR_NONE;
        ok = persist_key(esys, parent, ESYS_TR_PASSWORD, pub, priv, persist);
    } else {
        session = ESYS_TR_NONE;
        ok = 1;
    }
release:
    if (session != ESYS_TR_NONE)
        hwkey_tpm2_flush_quiet(esys, &session);
    hwkey_tpm2_parent_put(dev, esys, &parent);
    hwkey_tpm2_release(dev);
    if (!ok)
        goto end;
    ok = 0;

    if (persist != 0) {
        char ref[40];
        /*
         * "?pass": the reference itself says the key has an auth value, so
         * it is asked for before first use (no empty guess, no DA strike).
         */
        int n = snprintf(ref, sizeof(ref), "handle:0x%08x%s", (unsigned int)persist,
                         auth_len > 0 ? "?pass" : "");
        unsigned char *data = OPENSSL_memdup(ref, (size_t)n + 1);

        if (data == NULL) {
            hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating the key reference");
            goto end;
        }
        ok = refblob_set(out, HWKEY_REF_TPM2_HANDLE, data, (size_t)n);
        hwkey_log(HWKEY_LOG_INFO, "tpm2: generated a persistent key at %s", ref);
        goto end;
    }

    ok = hwkey_tpm2_keyfile_out_policy(HWKEY_TSS2_LOADABLE, pub, priv, recorded, auth_len == 0,
                                       policy, "marshalling the new key's public area",
                                       "marshalling the new key's private blob", out);
end:
    OPENSSL_free(policy);
    hwkey_secmem_free(sens);
    Esys_Free(pub);
    if (priv != NULL)
        OPENSSL_cleanse(priv, sizeof(*priv));
    Esys_Free(priv);
    return ok;
}

/* ---- delete / list --------------------------------------------------------- */

/* TR of a persistent handle; KEY_NOT_FOUND when the TPM has nothing there. */
static int open_persistent(ESYS_CONTEXT *esys, uint32_t handle, ESYS_TR *tr)
{
    HWKEY_TPM2_RETRY retry = {0};
    char what[64];
    TSS2_RC rc;

    do {
        rc = Esys_TR_FromTPMPublic(esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, tr);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc == TSS2_RC_SUCCESS)
        return 1;
    *tr = ESYS_TR_NONE;
    if (hwkey_tpm2_rc_base(rc) == TPM2_RC_HANDLE) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "no key at persistent handle 0x%08x",
                    (unsigned int)handle);
        return 0;
    }
    snprintf(what, sizeof(what), "opening persistent handle 0x%08x", (unsigned int)handle);
    return hwkey_tpm2_raise_rc(rc, what);
}

int hwkey_tpm2_key_delete(HWKEY_DEVICE *base, const HWKEY_KEYREF *ref)
{
    HWKEY_TPM2_DEVICE *dev = tpm2_dev(base);
    ESYS_TR tr = ESYS_TR_NONE, gone = ESYS_TR_NONE;
    HWKEY_TPM2_RETRY retry = {0};
    ESYS_CONTEXT *esys;
    uint32_t handle = 0;
    char what[64];
    TSS2_RC rc;
    int ok = 0;

    if (ref->kind == HWKEY_REF_TSS2_KEYFILE) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "a key file is not stored in the TPM; delete the file");
        return 0;
    }
    if (ref->kind != HWKEY_REF_TPM2_HANDLE) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the TPM backend cannot delete this kind of reference");
        return 0;
    }
    /* A "?pass" suffix (the key has an auth value) does not matter for eviction. */
    if (!hwkey_tpm2_parse_handle_ex(ref->data, ref->len, &handle, &(int){0}))
        return 0;
    /* Evicting a parent orphans every key file made under it. */
    if (handle == HWKEY_TPM2_SRK_HANDLE || handle == dev->cfg_parent) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "0x%08x is the parent of other keys; remove it with tpm2_evictcontrol "
                    "if you really mean to",
                    (unsigned int)handle);
        return 0;
    }
    if ((esys = hwkey_tpm2_acquire(dev)) == NULL)
        return 0;
    if (!open_persistent(esys, handle, &tr))
        goto end;
    do {
        rc = Esys_EvictControl(esys, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                               ESYS_TR_NONE, handle, &gone);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        snprintf(what, sizeof(what), "evicting persistent key 0x%08x", (unsigned int)handle);
        hwkey_tpm2_raise_rc(rc, what);
        Esys_TR_Close(esys, &tr);
        goto end;
    }
    /* ESAPI invalidated tr itself on success. */
    hwkey_log(HWKEY_LOG_INFO, "tpm2: deleted persistent key 0x%08x", (unsigned int)handle);
    ok = 1;
end:
    hwkey_tpm2_release(dev);
    return ok;
}

typedef struct {
    char ref[24];
    HWKEY_KEYINFO info;
    const char *label;
} LISTED;

static int read_listed(ESYS_CONTEXT *esys, uint32_t handle, LISTED *l)
{
    ESYS_TR tr = ESYS_TR_NONE;
    TPM2B_PUBLIC *pub = NULL;
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;
    int ok;

    if (!open_persistent(esys, handle, &tr))
        return 0;
    do {
        rc = Esys_ReadPublic(esys, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL, NULL);
    } while (hwkey_tpm2_retry(&retry, rc));
    Esys_TR_Close(esys, &tr);
    if (rc != TSS2_RC_SUCCESS)
        return hwkey_tpm2_raise_rc(rc, "reading a persistent key's public area");
    snprintf(l->ref, sizeof(l->ref), "handle:0x%08x", (unsigned int)handle);
    ok = hwkey_tpm2_public_info(&pub->publicArea, &l->info);
    if (ok && (pub->publicArea.objectAttributes & TPMA_OBJECT_RESTRICTED))
        l->label = handle == HWKEY_TPM2_SRK_HANDLE ? "SRK (storage parent)"
                   : (handle >> 16) == 0x8101u     ? "endorsement key (restricted)"
                                                   : "restricted (storage/attestation key)";
    Esys_Free(pub);
    return ok;
}

int hwkey_tpm2_key_list(HWKEY_DEVICE *base, const char *filter, hwkey_list_cb cb, void *arg)
{
    HWKEY_TPM2_DEVICE *dev = tpm2_dev(base);
    TPMS_CAPABILITY_DATA *data = NULL;
    TPMI_YES_NO more = TPM2_YES;
    uint32_t next = PERSISTENT_FIRST, only = 0;
    LISTED *keys = NULL;
    size_t n = 0, cap = 0;
    ESYS_CONTEXT *esys;
    TSS2_RC rc;
    int ok = 0;

    /* "handle:0x81..." lists that one key; "", NULL and "tpm2" list all. */
    if (filter != NULL && *filter != '\0' && strcmp(filter, "tpm2") != 0 &&
        !hwkey_tpm2_parse_handle((const unsigned char *)filter, strlen(filter), &only))
        return 0;
    if ((esys = hwkey_tpm2_acquire(dev)) == NULL)
        return 0;
    while (more == TPM2_YES && next <= PERSISTENT_LAST) {
        rc = hwkey_tpm2_get_cap(esys, TPM2_CAP_HANDLES, next, TPM2_MAX_CAP_HANDLES, &more, &data);
        if (rc != TSS2_RC_SUCCESS) {
            hwkey_tpm2_raise_rc(rc, "listing the TPM's persistent handles");
            goto release;
        }
        for (UINT32 i = 0; i < data->data.handles.count; i++) {
            uint32_t h = data->data.handles.handle[i];

            next = h + 1;
            if (h > PERSISTENT_LAST || (only != 0 && h != only))
                continue;
            if (n == cap) {
                LISTED *bigger = OPENSSL_realloc(keys, (cap = cap * 2 + 8) * sizeof(*keys));

                if (bigger == NULL) {
                    hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "listing persistent keys");
                    Esys_Free(data);
                    goto release;
                }
                keys = bigger;
            }
            memset(&keys[n], 0, sizeof(keys[n]));
            /* A key of a type hwkey cannot use (HMAC, sealed data) is skipped, quietly. */
            ERR_set_mark();
            if (read_listed(esys, h, &keys[n]))
                n++;
            ERR_pop_to_mark();
        }
        if (data->data.handles.count == 0)
            more = TPM2_NO;
        Esys_Free(data);
        data = NULL;
    }
    ok = 1;
release:
    hwkey_tpm2_release(dev);
    /* Callbacks run unlocked: they may use the backend themselves. */
    for (size_t i = 0; ok && i < n; i++) {
        HWKEY_LISTED_KEY lk = {.ref = keys[i].ref, .info = keys[i].info, .label = keys[i].label};

        ok = cb(&lk, arg);
    }
    OPENSSL_free(keys);
    return ok;
}

/* ---- random -------------------------------------------------------------- */

int hwkey_tpm2_random(HWKEY_DEVICE *base, unsigned char *buf, size_t len)
{
    HWKEY_TPM2_DEVICE *dev = tpm2_dev(base);
    size_t done = 0;

    while (done < len) {
        /* Re-take the lock every KiB so a large request does not starve signers. */
        size_t stop = len - done > 1024 ? done + 1024 : len;
        ESYS_CONTEXT *esys = hwkey_tpm2_acquire(dev);

        if (esys == NULL)
            return 0;
        while (done < stop) {
            TPM2B_DIGEST *rnd = NULL;
            HWKEY_TPM2_RETRY retry = {0};
            size_t want = stop - done > sizeof(rnd->buffer) ? sizeof(rnd->buffer) : stop - done;
            TSS2_RC rc;

            do {
                rc = Esys_GetRandom(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, (UINT16)want,
                                    &rnd);
            } while (hwkey_tpm2_retry(&retry, rc));
            if (rc != TSS2_RC_SUCCESS || rnd->size == 0) {
                if (rc == TSS2_RC_SUCCESS)
                    hwkey_raise(HWKEY_R_DEVICE_ERROR, "TPM2_GetRandom returned no bytes");
                else
                    hwkey_tpm2_raise_rc(rc, "TPM2_GetRandom");
                Esys_Free(rnd);
                hwkey_tpm2_release(dev);
                OPENSSL_cleanse(buf, done);
                return 0;
            }
            /* The TPM may return fewer bytes than asked (at most a digest's worth). */
            want = rnd->size < want ? rnd->size : want;
            memcpy(buf + done, rnd->buffer, want);
            done += want;
            OPENSSL_cleanse(rnd, sizeof(*rnd));
            Esys_Free(rnd);
        }
        hwkey_tpm2_release(dev);
    }
    return 1;
}
