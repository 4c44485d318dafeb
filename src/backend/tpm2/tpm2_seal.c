/*
 * Data keys for the bulk cipher (ARCHITECTURE.md §4): a 32-byte AES key
 * sealed by the TPM as a keyedHash data object under the same parent as
 * keys, kept in a "TSS2 PRIVATE KEY" file of type sealed (2.23.133.10.1.5),
 * the format openssl_tpm2_engine and tpm2-tss-engine use for sealed data.
 *
 * The key never crosses the bus in the clear: TPM2_Create carries it inside
 * a parameter-encrypted inSensitive, TPM2_Unseal returns it inside a
 * parameter-encrypted outData, both through a session salted by the parent
 * (test/integration/test_bulk.sh checks the recorded traffic).  The object is
 * flushed after every unseal, with or without a resource manager: data keys
 * are unwrapped once per file, not per operation.
 */
#include "backend/tpm2/tpm2_internal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <tss2/tss2_mu.h>

#include "util/error.h"
#include "util/log.h"
#include "util/secmem.h"
#include "util/tss2_keyfile.h"

#define DATAKEY_LEN 32

static void sealed_template(TPM2B_PUBLIC *tmpl, int has_auth)
{
    memset(tmpl, 0, sizeof(*tmpl));
    tmpl->publicArea.type = TPM2_ALG_KEYEDHASH;
    tmpl->publicArea.nameAlg = TPM2_ALG_SHA256;
    /* No sensitiveDataOrigin: we supply the data.  No sign/decrypt: a sealed blob. */
    tmpl->publicArea.objectAttributes =
        TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_USERWITHAUTH;
    /* Dictionary-attack protection only guards something when there is an auth value. */
    if (!has_auth)
        tmpl->publicArea.objectAttributes |= TPMA_OBJECT_NODA;
    tmpl->publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
}

/*
 * Host RNG xor TPM RNG: TPM2_GetRandom's answer crosses the bus in the
 * clear, so it may only ever be one of two shares.
 */
static int make_key(HWKEY_DEVICE *base, unsigned char *key)
{
    unsigned char *share = hwkey_secmem_alloc(DATAKEY_LEN);
    int ok = 0;

    if (share == NULL)
        return 0;
    if (RAND_priv_bytes(key, DATAKEY_LEN) != 1) {
        hwkey_raise(HWKEY_R_INTERNAL, "the host RNG failed to produce a data key");
        goto end;
    }
    if (!hwkey_tpm2_random(base, share, DATAKEY_LEN))
        goto end;
    for (size_t i = 0; i < DATAKEY_LEN; i++)
        key[i] ^= share[i];
    ok = 1;
end:
    hwkey_secmem_free(share);
    return ok;
}

int hwkey_tpm2_datakey_create(HWKEY_DEVICE *base, const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out)
{
    HWKEY_TPM2_DEVICE *dev = (HWKEY_TPM2_DEVICE *)base;
    size_t auth_len = opts != NULL && opts->auth != NULL ? opts->auth_len : 0;
    TPM2B_SENSITIVE_CREATE *sens = NULL;
    TPM2B_PUBLIC tmpl, *pub = NULL;
    TPM2B_PRIVATE *priv = NULL;
    const TPM2B_DATA outside = {0};
    const TPML_PCR_SELECTION pcrs = {0};
    ESYS_TR parent = ESYS_TR_NONE, session = ESYS_TR_NONE;
    HWKEY_TPM2_RETRY retry = {0};
    ESYS_CONTEXT *esys;
    uint32_t recorded = 0;
    HWKEY_TPM2_POLICY *policy = NULL;
    TPM2B_DIGEST policy_digest;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    int ok = 0;

    memset(out, 0, sizeof(*out));
    if (opts != NULL && opts->uri != NULL) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "a TPM data key takes no URI");
        return 0;
    }
    /* inSensitive carries the data key and its auth value: protected memory. */
    if ((sens = hwkey_tpm2_sensitive_new(opts, "data key")) == NULL)
        return 0;
    sens->sensitive.data.size = DATAKEY_LEN;
    if (!make_key(base, sens->sensitive.data.buffer))
        goto end;
    sealed_template(&tmpl, auth_len > 0);

    if ((esys = hwkey_tpm2_acquire(dev)) == NULL)
        goto end;
    /* Bound to the PCRs' values now: only a policy session can unseal it. */
    if (opts != NULL && opts->pcrs.mask != 0) {
        if (!hwkey_tpm2_policy_make(esys, &opts->pcrs, auth_len > 0, &policy, &policy_digest))
            goto release;
        hwkey_tpm2_policy_bind(&tmpl, &policy_digest);
    }
    if (!hwkey_tpm2_parent_get(dev, esys, 0, &parent, &recorded) ||
        !hwkey_tpm2_salted_session(esys, parent, TPMA_SESSION_DECRYPT,
                                   "starting a session salted by the parent key", &session))
        goto release;
    do {
        rc = Esys_Create(esys, parent, session, ESYS_TR_NONE, ESYS_TR_NONE, sens, &tmpl, &outside,
                         &pcrs, &priv, &pub, NULL, NULL, NULL);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, "sealing the data key in the TPM (TPM2_Create)");
        goto release;
    }
    ok = 1;
release:
    /* A dropped connection first: nothing can be flushed through a dead context. */
    hwkey_tpm2_note_rc(dev, rc);
    if (dev->esys == esys) {
        hwkey_tpm2_session_end(esys, &session, rc);
        hwkey_tpm2_parent_put(dev, esys, &parent);
    }
    hwkey_tpm2_release(dev);
    if (ok) {
        ok = hwkey_tpm2_keyfile_out_policy(HWKEY_TSS2_SEALED, pub, priv, recorded, auth_len == 0,
                                           policy, "marshalling the sealed data key",
                                           "marshalling the sealed data key", out);
        if (ok)
            hwkey_log(HWKEY_LOG_INFO, "tpm2: sealed a new data key under parent 0x%08x",
                      (unsigned int)recorded);
    }
end:
    OPENSSL_free(policy);
    hwkey_secmem_free(sens);
    Esys_Free(pub);
    Esys_Free(priv);
    return ok;
}

/* ---- unwrap -------------------------------------------------------------- */

typedef struct {
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    uint32_t parent;
    TPM2B_AUTH *auth;          /* protected memory; NULL for no auth */
    HWKEY_TPM2_POLICY *policy; /* PCR-bound (datakey --pcr): OPENSSL_free; else NULL */
} SEALED;

static int sealed_from_ref(const HWKEY_KEYREF *ref, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                           SEALED *s)
{
    HWKEY_TSS2_KEYFILE kf;
    int ok = 0;

    if (ref->kind != HWKEY_REF_TSS2_KEYFILE) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "a TPM data key is a TSS2 key file of type sealed");
        return 0;
    }
    memset(&kf, 0, sizeof(kf));
    if (!hwkey_tss2_keyfile_decode(ref->data, ref->len, &kf))
        return 0;
    if (kf.type != HWKEY_TSS2_SEALED) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "this TSS2 key file holds a %s, not a sealed data "
                    "key (2.23.133.10.1.5; make one with hwkey datakey)",
                    kf.type == HWKEY_TSS2_LOADABLE ? "loadable key" : "importable key");
        goto end;
    }
    if (!hwkey_tpm2_keyfile_parts(&kf, "data key", &s->pub, &s->priv, &s->parent, &s->policy))
        goto end;
    if (s->pub.publicArea.type != TPM2_ALG_KEYEDHASH) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "the data key file's public area is not a sealed "
                                              "data object");
        goto end;
    }
    ok = hwkey_tpm2_ask_auth(kf.empty_auth ? HWKEY_TPM2_AUTH_SKIP : HWKEY_TPM2_AUTH_REQUIRED,
                             "TPM data key auth value", "TPM data key", 0, pw_cb, pw_arg, &s->auth);
end:
    hwkey_tss2_keyfile_clear(&kf);
    return ok;
}

/*
 * Load under the parent and start the response-encrypting session salted by
 * it; the parent is released before a retry so that waiting for a slot
 * never holds one (tpm2_keyload.c, load_blob).
 */
static int load_sealed(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, SEALED *s, ESYS_TR *obj,
                       ESYS_TR *session)
{
    ESYS_TR parent = ESYS_TR_NONE;
    char what[80];
    TSS2_RC rc;

    rc = hwkey_tpm2_load_under(dev, esys, s->parent, &s->priv, &s->pub, NULL, NULL, obj, &parent);
    if (rc == HWKEY_TPM2_RC_RAISED)
        return 0;
    if (rc != TSS2_RC_SUCCESS)
        goto fail;
    /* A PCR-bound data key: the policy session, salted and encrypting the same way. */
    if (s->policy != NULL
            ? !hwkey_tpm2_policy_session(esys, s->policy, parent, TPMA_SESSION_ENCRYPT, session)
            : !hwkey_tpm2_salted_session(esys, parent, TPMA_SESSION_ENCRYPT,
                                         "starting a session salted by the parent key", session)) {
        hwkey_tpm2_parent_put(dev, esys, &parent);
        hwkey_tpm2_flush_quiet(esys, obj);
        return 0;
    }
    hwkey_tpm2_parent_put(dev, esys, &parent);
    return 1;
fail:
    snprintf(what, sizeof(what), "loading the sealed data key under parent 0x%08x",
             (unsigned int)s->parent);
    hwkey_tpm2_raise_load_rc(rc, what);
    hwkey_tpm2_note_rc(dev, rc);
    return 0;
}

int hwkey_tpm2_datakey_unwrap(HWKEY_DEVICE *base, const HWKEY_KEYREF *ref,
                              OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, unsigned char key[32])
{
    HWKEY_TPM2_DEVICE *dev = (HWKEY_TPM2_DEVICE *)base;
    ESYS_TR obj = ESYS_TR_NONE, session = ESYS_TR_NONE;
    TPM2B_SENSITIVE_DATA *data = NULL;
    HWKEY_TPM2_RETRY retry = {0};
    ESYS_CONTEXT *esys;
    SEALED *s;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    int ok = 0;

    /* The private blob is not secret (TPM-encrypted) but the auth value is: keep them together. */
    if ((s = hwkey_secmem_alloc(sizeof(*s))) == NULL)
        return 0;
    if (!sealed_from_ref(ref, pw_cb, pw_arg, s))
        goto end;
    if ((esys = hwkey_tpm2_acquire(dev)) == NULL)
        goto end;
    if (!load_sealed(dev, esys, s, &obj, &session))
        goto release;
    if (s->auth != NULL && (rc = Esys_TR_SetAuth(esys, obj, s->auth)) != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, "setting the data key's auth value");
        goto release;
    }
    do {
        rc = Esys_Unseal(esys, obj, session, ESYS_TR_NONE, ESYS_TR_NONE, &data);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, "unsealing the data key (TPM2_Unseal)");
        goto release;
    }
    if (data->size != DATAKEY_LEN) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "the sealed object holds %u bytes, not a %d-byte "
                    "data key",
                    (unsigned int)data->size, DATAKEY_LEN);
        goto release;
    }
    memcpy(key, data->buffer, DATAKEY_LEN);
    ok = 1;
release:
    hwkey_tpm2_note_rc(dev, rc);
    if (dev->esys == esys) {
        /* ESYS's copies of the key (response buffer) and of the auth value. */
        hwkey_tpm2_wipe_response(esys);
        hwkey_tpm2_session_scrub(esys, session, obj, s->auth);
        hwkey_tpm2_session_end(esys, &session, rc);
        hwkey_tpm2_flush_quiet(esys, &obj);
    }
    hwkey_tpm2_release(dev);
end:
    if (data != NULL)
        OPENSSL_cleanse(data, sizeof(*data));
    Esys_Free(data);
    if (s != NULL) {
        hwkey_secmem_free(s->auth);
        OPENSSL_free(s->policy);
    }
    hwkey_secmem_free(s);
    return ok;
}
