/*
 * The TPM 2.0 backend's vtable and key objects: resolving a TSS2 key file
 * or a persistent handle into a key, its capabilities and its public half.
 * The operations live in tpm2_sign.c, provisioning in tpm2_manage.c.
 */
#include "backend/tpm2/tpm2_internal.h"
#include "backend/tpm2/tpm2_attest.h"
#include "backend/tpm2/tpm2_dup.h"
#include "backend/tpm2/tpm2_refs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <tss2/tss2_mu.h>

#include "util/error.h"
#include "util/forkgate.h"
#include "util/log.h"
#include "util/secmem.h"
#include "util/tss2_keyfile.h"

static int tpm2_handles(HWKEY_REF_KIND kind)
{
    return kind == HWKEY_REF_TSS2_KEYFILE || kind == HWKEY_REF_TPM2_HANDLE;
}

int hwkey_tpm2_parse_handle(const unsigned char *data, size_t len, uint32_t *handle)
{
    return hwkey_tpm2_parse_handle_ex(data, len, handle, NULL);
}

int hwkey_tpm2_parse_handle_ex(const unsigned char *data, size_t len, uint32_t *handle,
                               int *ask_pass)
{
    static const char pass_suffix[] = "?pass";
    const size_t suffix_len = sizeof(pass_suffix) - 1;
    char buf[32];
    char *end = NULL;
    unsigned long v;

    if (ask_pass != NULL)
        *ask_pass = 0;
    /* tpm2-openssl's "handle:0x81000020?pass": the key has an auth value, ask for it. */
    if (ask_pass != NULL && len > suffix_len &&
        memcmp(data + len - suffix_len, pass_suffix, suffix_len) == 0) {
        *ask_pass = 1;
        len -= suffix_len;
    }
    if (len < 8 || len >= sizeof(buf) || memcmp(data, "handle:", 7) != 0)
        goto bad;
    memcpy(buf, data + 7, len - 7);
    buf[len - 7] = '\0';
    errno = 0;
    v = strtoul(buf, &end, 0);
    if (errno != 0 || end == buf || *end != '\0' || (v >> 24) != TPM2_HT_PERSISTENT ||
        v > 0xfffffffful)
        goto bad;
    *handle = (uint32_t)v;
    return 1;
bad:
    hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                "\"%.*s\" is not a persistent TPM handle "
                "(handle:0x81000000 .. handle:0x81ffffff%s)",
                (int)(len > 40 ? 40 : len), (const char *)data,
                ask_pass != NULL ? ", optionally followed by ?pass" : "");
    return 0;
}

/* The key's auth value by the rule of mode (tpm2_keyfile_parts.c); kept across fork. */
static int ask_auth(HWKEY_TPM2_KEY *key, HWKEY_TPM2_AUTH_MODE mode, const char *what,
                    OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg)
{
    char name[96];

    snprintf(name, sizeof(name), "TPM key %s", what);
    if (!hwkey_tpm2_ask_auth(mode, "TPM key auth value", name, 1, pw_cb, pw_arg, &key->auth))
        return 0;
    key->has_auth = key->auth != NULL;
    return 1;
}

static int from_keyfile(HWKEY_TPM2_KEY *key, const HWKEY_KEYREF *ref, int want_auth,
                        OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg)
{
    HWKEY_TSS2_KEYFILE kf;
    int ok = 0;

    memset(&kf, 0, sizeof(kf));
    if (!hwkey_tss2_keyfile_decode(ref->data, ref->len, &kf))
        return 0;
    /* Importable (offline import): TPM2_Import runs at the first load (tpm2_offline.c). */
    if (kf.type == HWKEY_TSS2_IMPORTABLE &&
        (kf.secret == NULL ||
         !hwkey_tpm2_import_seed_parse(kf.secret, kf.secret_len, &key->import_seed))) {
        if (kf.secret == NULL)
            hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                        "importable TSS2 key file (2.23.133.10.1.4) without its secret seed");
        goto end;
    }
    if (kf.type != HWKEY_TSS2_LOADABLE && kf.type != HWKEY_TSS2_IMPORTABLE) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "only loadable or importable TSS2 keys (2.23.133.10.1.3/4) can be used");
        goto end;
    }
    if (!hwkey_tpm2_keyfile_parts(&kf, "key", &key->pub, &key->priv, &key->parent, &key->policy))
        goto end;
    /*
     * emptyAuth FALSE: ask, and take what the application gives, an empty
     * value too (tpm2-tools 5.4 marks keys without one this way, docs/tpm2.md).
     */
    if (want_auth && !kf.empty_auth &&
        !ask_auth(key, HWKEY_TPM2_AUTH_REQUIRED, "in the key file", pw_cb, pw_arg))
        goto end;
    ok = 1;
end:
    hwkey_tss2_keyfile_clear(&kf);
    return ok;
}

static int read_persistent_public(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys)
{
    TPM2B_PUBLIC *pub = NULL;
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;

    do {
        rc = Esys_ReadPublic(esys, key->tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL,
                             NULL);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS)
        return hwkey_tpm2_raise_rc(rc, "reading the persistent key's public area");
    key->pub = *pub;
    Esys_Free(pub);
    return 1;
}

typedef struct {
    HWKEY_TPM2_KEY key; /* in: persistent handle; out: pub */
} HANDLE_QUERY;

/* In the tabrmd: helper process (tpm2_helper.c). */
static int public_helper(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, void *out)
{
    HANDLE_QUERY *q = out;

    (void)dev;
    q->key.tr = ESYS_TR_NONE;
    q->key.base.device = NULL; /* open_persistent() only reports through it on failure */
    if (Esys_TR_FromTPMPublic(esys, q->key.persistent, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                              &q->key.tr) != TSS2_RC_SUCCESS) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "no TPM key at handle:0x%08x",
                    (unsigned int)q->key.persistent);
        return 0;
    }
    return read_persistent_public(&q->key, esys);
}

static int persistent_public_from_helper(HWKEY_TPM2_KEY *key)
{
    HANDLE_QUERY *q = OPENSSL_zalloc(sizeof(*q));
    int ok;

    if (q == NULL)
        return 0;
    q->key.persistent = key->persistent;
    ok = hwkey_tpm2_run_helper((HWKEY_TPM2_DEVICE *)key->base.device, public_helper, q, sizeof(*q));
    if (ok)
        key->pub = q->key.pub;
    OPENSSL_free(q);
    return ok;
}

static void key_destroy(HWKEY_TPM2_KEY *key)
{
    HWKEY_TPM2_DEVICE *dev = (HWKEY_TPM2_DEVICE *)key->base.device;

    if (key->tr != ESYS_TR_NONE) {
        hwkey_gate_enter();
        pthread_mutex_lock(&dev->lock);
        /* Only through our own live connection: never flush a parent process's object. */
        if (dev->pid == getpid() && dev->esys != NULL && key->tr_gen == dev->generation) {
            if (key->persistent != 0)
                Esys_TR_Close(dev->esys, &key->tr);
            else
                hwkey_tpm2_flush_quiet(dev->esys, &key->tr);
        }
        pthread_mutex_unlock(&dev->lock);
        hwkey_gate_leave();
    }
    Esys_Free(key->saved);
    if (key->import_seed != NULL)
        OPENSSL_clear_free(key->import_seed, sizeof(*key->import_seed));
    OPENSSL_free(key->policy);
    hwkey_secmem_free(key->auth);
    OPENSSL_clear_free(key, sizeof(*key));
}

/*
 * The auth rule for a handle: key (docs/tpm2.md, "Keys with an auth value"):
 * "?pass" (or hwkey's reference file of a key made with --auth-file) says
 * it has one: the application must give it.  Otherwise the public area
 * decides: an object with noDA set costs nothing to try without one, so it
 * is used so (hwkey makes every key without an auth value noDA); a
 * DA-protected one may have a value that only the application knows, so
 * it is asked through the passphrase callback when there is one.
 */
static HWKEY_TPM2_AUTH_MODE bare_handle_auth_mode(const HWKEY_TPM2_KEY *key)
{
    TPMA_OBJECT attrs = key->pub.publicArea.objectAttributes;

    if ((attrs & TPMA_OBJECT_USERWITHAUTH) == 0 || (attrs & TPMA_OBJECT_NODA) != 0)
        return HWKEY_TPM2_AUTH_SKIP;
    return HWKEY_TPM2_AUTH_ASK;
}

/* Resolve ref into a key; want_auth 0: the public half only, no auth value asked. */
static int key_resolve(HWKEY_DEVICE *base, const HWKEY_KEYREF *ref, int want_auth,
                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_TPM2_KEY **out)
{
    HWKEY_TPM2_DEVICE *dev = (HWKEY_TPM2_DEVICE *)base;
    HWKEY_TPM2_KEY *key = OPENSSL_zalloc(sizeof(*key));
    ESYS_CONTEXT *esys = NULL;
    int ok = 0, ask_pass = 0;
    char what[40] = "";

    *out = NULL;
    if (key == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a TPM key");
        return 0;
    }
    key->base.backend = &hwkey_tpm2_backend;
    key->base.device = base;
    key->tr = ESYS_TR_NONE;
    switch (ref->kind) {
    case HWKEY_REF_TSS2_KEYFILE:
        if (!from_keyfile(key, ref, want_auth, pw_cb, pw_arg))
            goto end;
        break;
    case HWKEY_REF_TPM2_HANDLE:
        if (!hwkey_tpm2_parse_handle_ex(ref->data, ref->len, &key->persistent, &ask_pass))
            goto end;
        /* Asked before the TPM is, so a missing value costs no TPM command. */
        snprintf(what, sizeof(what), "handle:0x%08x", (unsigned int)key->persistent);
        if (want_auth && ask_pass && !ask_auth(key, HWKEY_TPM2_AUTH_REQUIRED, what, pw_cb, pw_arg))
            goto end;
        break;
    default:
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the TPM backend cannot resolve this key reference");
        goto end;
    }
    /*
     * A key file carries its public area: nothing to ask the TPM now.  The
     * load happens at first use, in the process that uses the key, so a
     * forking server's master makes no TPM connection that its workers
     * would inherit (tpm2-abrmd's TCTI talks D-Bus through GLib, which does
     * not survive fork).  A key of another TPM fails at first use, with
     * "key file does not belong to this TPM or parent".
     */
    if (key->persistent == 0)
        ok = 1;
    else if (hwkey_tpm2_use_helper(dev))
        ok = persistent_public_from_helper(key);
    else if ((esys = hwkey_tpm2_acquire(dev)) != NULL) {
        ok = hwkey_tpm2_key_prepare(key, esys) && read_persistent_public(key, esys);
        /*
         * handle: keys need the TPM for their public area.  Close a
         * connection made just for it, so that nothing made before a fork
         * is used after it; the next operation connects afresh.
         */
        if (key->tr != ESYS_TR_NONE)
            Esys_TR_Close(esys, &key->tr);
        key->tr = ESYS_TR_NONE;
        if (!dev->conn_used)
            hwkey_tpm2_disconnect(dev, 1);
        hwkey_tpm2_release(dev);
    }
    if (ok)
        ok = hwkey_tpm2_public_info(&key->pub.publicArea, &key->base.info);
    /* A bare handle: once its public area is known (no TPM command with an auth value yet). */
    if (ok && want_auth && key->persistent != 0 && !ask_pass)
        ok = ask_auth(key, bare_handle_auth_mode(key), what, pw_cb, pw_arg);
end:
    if (!ok) {
        key_destroy(key);
        return 0;
    }
    *out = key;
    return 1;
}

/* FOUND or FAILED: a TPM reference always names one object (no "absent"). */
static HWKEY_LOOKUP tpm2_key_load(HWKEY_DEVICE *base, const HWKEY_KEYREF *ref,
                                  OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_BKEY **out)
{
    HWKEY_TPM2_KEY *key = NULL;

    *out = NULL;
    if (!key_resolve(base, ref, 1, pw_cb, pw_arg, &key))
        return 0;
    *out = &key->base;
    return 1;
}

/*
 * The public key of a key file or handle:.  It is in the file (or the
 * TPM's public area), so no auth value is ever asked (hwkey pubkey).
 */
static HWKEY_LOOKUP tpm2_pubkey_load(HWKEY_DEVICE *base, const HWKEY_KEYREF *ref,
                                     OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                     OSSL_LIB_CTX *libctx, const char *propq, EVP_PKEY **out)
{
    HWKEY_TPM2_KEY *key = NULL;

    (void)pw_cb;
    (void)pw_arg;
    *out = NULL;
    if (!key_resolve(base, ref, 0, NULL, NULL, &key))
        return HWKEY_LOOKUP_FAILED;
    *out = hwkey_tpm2_public_to_pkey(&key->pub.publicArea, libctx, propq);
    key_destroy(key);
    return *out != NULL ? HWKEY_LOOKUP_FOUND : HWKEY_LOOKUP_FAILED;
}

static void tpm2_key_free(HWKEY_BKEY *base)
{
    if (base != NULL)
        key_destroy((HWKEY_TPM2_KEY *)base);
}

static EVP_PKEY *tpm2_key_public(HWKEY_BKEY *base, OSSL_LIB_CTX *libctx, const char *propq)
{
    HWKEY_TPM2_KEY *key = (HWKEY_TPM2_KEY *)base;

    return hwkey_tpm2_public_to_pkey(&key->pub.publicArea, libctx, propq);
}

const HWKEY_BACKEND hwkey_tpm2_backend = {
    .name = "tpm2",
    .handles = tpm2_handles,
    .open = hwkey_tpm2_device_open,
    .close = hwkey_tpm2_device_close,
    .supports = hwkey_tpm2_supports,
    .describe = hwkey_tpm2_describe,
    .key_load = tpm2_key_load,
    .key_free = tpm2_key_free,
    .key_public = tpm2_key_public,
    .key_generate = hwkey_tpm2_key_generate,
    .key_import = hwkey_tpm2_key_import,
    .key_delete = hwkey_tpm2_key_delete,
    .key_list = hwkey_tpm2_key_list,
    .pubkey_load = tpm2_pubkey_load,
    .sign = hwkey_tpm2_sign,
    .rsa_private = hwkey_tpm2_rsa_private,
    .rsa_decrypt = hwkey_tpm2_rsa_decrypt,
    .ecdh = hwkey_tpm2_ecdh,
    .datakey_create = hwkey_tpm2_datakey_create,
    .datakey_unwrap = hwkey_tpm2_datakey_unwrap,
    .key_attest = hwkey_tpm2_key_attest,
    .uri_kind = hwkey_tpm2_uri_kind,
    .key_describe = hwkey_tpm2_key_describe,
    .ref_encode = hwkey_tpm2_ref_encode,
    .keyfile_recognise = hwkey_tpm2_keyfile_recognise,
    .generates = hwkey_tpm2_generates,
    .ref_is_stored = hwkey_tpm2_ref_is_stored,
    .device_noun = "TPM",
};
