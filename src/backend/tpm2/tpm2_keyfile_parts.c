/*
 * What every TPM object read from a TSS2 key file needs, in one place: the
 * public and private blobs unmarshalled and checked, the parent handle, the
 * policy steps (tpm2_policy.c), and the one prompt for an auth value.  Keys
 * (tpm2_backend.c) and sealed data keys (tpm2_seal.c) both use it, so a
 * malformed file reads the same way and an auth value is asked the same way
 * whichever the object is.
 */
#include "backend/tpm2/tpm2_internal.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <tss2/tss2_mu.h>

#include "util/error.h"
#include "util/log.h"
#include "util/secmem.h"

int hwkey_tpm2_keyfile_parts(const HWKEY_TSS2_KEYFILE *kf, const char *what, TPM2B_PUBLIC *pub,
                             TPM2B_PRIVATE *priv, uint32_t *parent, HWKEY_TPM2_POLICY **policy)
{
    size_t off = 0;
    TSS2_RC rc;

    rc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(kf->pubkey, kf->pubkey_len, &off, pub);
    if (rc != TSS2_RC_SUCCESS || off != kf->pubkey_len) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "the %s file's public area is malformed", what);
        return 0;
    }
    off = 0;
    rc = Tss2_MU_TPM2B_PRIVATE_Unmarshal(kf->privkey, kf->privkey_len, &off, priv);
    if (rc != TSS2_RC_SUCCESS || off != kf->privkey_len || priv->size == 0) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "the %s file's private blob is malformed", what);
        return 0;
    }
    /* tpm2-openssl writes 0 for "the owner primary" in old files. */
    *parent = kf->parent != 0 ? kf->parent : HWKEY_TPM2_PARENT_OWNER;
    /* A PCR-bound object (--pcr): its policy is satisfied before each use. */
    return hwkey_tpm2_policy_from_keyfile(kf, policy);
}

int hwkey_tpm2_ask_auth(HWKEY_TPM2_AUTH_MODE mode, const char *info, const char *what, int inherit,
                        OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, TPM2B_AUTH **out)
{
    const size_t max = sizeof((*out)->buffer);
    OSSL_PARAM params[2];
    char *pass = NULL;
    size_t pass_len = 0;
    int ok = 0, answered;

    *out = NULL;
    if (mode == HWKEY_TPM2_AUTH_SKIP)
        return 1;
    if (pw_cb == NULL) {
        if (mode == HWKEY_TPM2_AUTH_ASK)
            return 1;
        hwkey_raise(HWKEY_R_AUTH_FAILED,
                    "the %s needs an auth value and no passphrase callback "
                    "was given (an empty one is given explicitly, e.g. -passin pass:)",
                    what);
        return 0;
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PASSPHRASE_PARAM_INFO, (char *)info, 0);
    params[1] = OSSL_PARAM_construct_end();
    /*
     * A key's auth value must survive fork (inherit): nginx loads keys in
     * the master and signs in the workers, when the callback is long gone.
     */
    if ((pass = hwkey_secmem_alloc(max + 1)) == NULL ||
        (*out = inherit ? hwkey_secmem_alloc_inherited(sizeof(**out))
                        : hwkey_secmem_alloc(sizeof(**out))) == NULL)
        goto end;
    if (mode == HWKEY_TPM2_AUTH_ASK)
        ERR_set_mark();
    answered = pw_cb(pass, max + 1, &pass_len, params, pw_arg);
    if (mode == HWKEY_TPM2_AUTH_ASK) {
        /* No answer (no terminal, no -passin): the object is used with an empty value. */
        ERR_pop_to_mark();
        if (!answered) {
            hwkey_log(HWKEY_LOG_INFO,
                      "tpm2: no auth value given for the %s: using it without "
                      "one",
                      what);
            hwkey_secmem_free(*out);
            *out = NULL;
            ok = 1;
            goto end;
        }
    } else if (!answered) {
        hwkey_raise(HWKEY_R_AUTH_FAILED, "no auth value given for the %s", what);
        goto end;
    }
    if (pass_len > max) {
        hwkey_raise(HWKEY_R_AUTH_FAILED, "the %s's auth value is longer than %zu bytes", what, max);
        goto end;
    }
    (*out)->size = (UINT16)pass_len;
    memcpy((*out)->buffer, pass, pass_len);
    ok = 1;
end:
    if (!ok) {
        hwkey_secmem_free(*out);
        *out = NULL;
    }
    hwkey_secmem_free(pass);
    return ok;
}

TSS2_RC hwkey_tpm2_load_under(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, uint32_t parent_handle,
                              const TPM2B_PRIVATE *priv, const TPM2B_PUBLIC *pub,
                              HWKEY_TPM2_BEFORE_LOAD before, void *arg, ESYS_TR *obj,
                              ESYS_TR *parent_out)
{
    HWKEY_TPM2_RETRY retry = {0};
    ESYS_TR parent = ESYS_TR_NONE;
    TSS2_RC rc;

    *obj = ESYS_TR_NONE;
    for (;;) {
        if (!hwkey_tpm2_parent_get(dev, esys, parent_handle, &parent, NULL))
            return HWKEY_TPM2_RC_RAISED;
        if (before != NULL && !before(arg, esys, parent)) {
            if (dev->esys == esys)
                hwkey_tpm2_parent_put(dev, esys, &parent);
            return HWKEY_TPM2_RC_RAISED;
        }
        rc = Esys_Load(esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub, obj);
        if (rc == TSS2_RC_SUCCESS)
            break;
        *obj = ESYS_TR_NONE;
        if (dev->esys != esys)
            return rc; /* connection dropped: nothing to flush through it */
        /* Released before waiting: a process waiting for a slot never holds one. */
        hwkey_tpm2_parent_put(dev, esys, &parent);
        if (!hwkey_tpm2_retry(&retry, rc))
            return rc;
    }
    if (parent_out != NULL)
        *parent_out = parent;
    else
        hwkey_tpm2_parent_put(dev, esys, &parent);
    return TSS2_RC_SUCCESS;
}
