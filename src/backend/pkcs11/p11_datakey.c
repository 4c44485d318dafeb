/*
 * Data keys for the bulk cipher, wrapped by a key-wrapping key (KEK) on a
 * PKCS#11 token (ARCHITECTURE.md §4, docs/bulk.md): an "HWKEY DATA KEY"
 * file holds the KEK's URI, the mechanism and the wrapped key.
 *
 * The KEK: an AES secret key object named by the URI (object=/id=,
 * type=secret-key), CKA_UNWRAP (and CKA_WRAP to make data keys), sensitive
 * and non-extractable: a KEK that can leave the token protects nothing, so
 * hwkey refuses one.  `hwkey datakey --create-kek` makes an AES-256 one.
 *
 * Creating a data key: the token generates it as a session object
 * (sensitive, extractable) and C_WrapKey wraps it under the KEK, so the key
 * never exists in the host's memory at creation.  This was chosen over
 * "host RNG xor C_GenerateRandom, then wrap": that needs the key on the
 * host in the clear (and in C_CreateObject's arguments) for nothing, since
 * the token's generator is what a KEK on it is trusted with anyway.  A token
 * without CKM_AES_KEY_GEN cannot hold an AES KEK either, so there is no
 * fallback.  Mechanism: CKM_AES_KEY_WRAP_PAD (RFC 5649) if the token has it,
 * else CKM_AES_KEY_WRAP (RFC 3394); both give 40 bytes for 32.
 *
 * Unwrapping: C_UnwrapKey into a session object that is extractable and not
 * sensitive (the host needs the value for AES-NI), CKA_VALUE read straight
 * into the caller's protected memory, then the object destroyed on every
 * path (or its session closed, which destroys session objects).
 */
#include "backend/pkcs11/p11_internal.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "util/datakey_file.h"
#include "util/error.h"
#include "util/log.h"

#define DATAKEY_LEN 32
#define KEK_LEN 32

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS secret_class = CKO_SECRET_KEY;
static CK_KEY_TYPE aes_type = CKK_AES;

static const char *ref_name(const HWKEY_P11_URI *u)
{
    return u->object != NULL ? u->object : "(by id)";
}

static int bool_attr(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                     CK_ATTRIBUTE_TYPE type, CK_BBOOL *v)
{
    CK_ATTRIBUTE a = {type, v, sizeof(*v)};

    *v = CK_FALSE;
    return tok->mod->fl->C_GetAttributeValue(s, o, &a, 1) == CKR_OK;
}

static int kek_uri_ok(const HWKEY_P11_URI *uri)
{
    if (uri->object == NULL && !uri->has_id) {
        hwkey_raise(HWKEY_R_INVALID_URI, "the KEK URI names no object= nor id=");
        return 0;
    }
    if (uri->has_class && uri->klass != CKO_SECRET_KEY) {
        hwkey_raise(HWKEY_R_INVALID_URI, "a KEK is a secret key: the URI's type= must be "
                                         "secret-key or absent");
        return 0;
    }
    return 1;
}

/* Exactly one secret key matching uri: 1; none: -1 (nothing raised); error: 0. */
static int kek_find(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, const HWKEY_P11_URI *uri,
                    CK_OBJECT_HANDLE *kek)
{
    CK_OBJECT_HANDLE objs[2];
    CK_ULONG n = 0;

    if (!hwkey_p11_find(tok, s, CKO_SECRET_KEY, uri->id, uri->id_len, uri->has_id, uri->object,
                        objs, 2, &n))
        return 0;
    if (n == 0)
        return -1;
    if (n > 1) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "several secret keys match KEK \"%s\" on token \"%s\"; "
                    "add id= to the URI",
                    ref_name(uri), tok->name);
        return 0;
    }
    *kek = objs[0];
    return 1;
}

/* An AES key that can unwrap (and wrap, for_wrap), and cannot leave the token. */
static int kek_check(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek,
                     const HWKEY_P11_URI *uri, int for_wrap)
{
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE a = {CKA_KEY_TYPE, &kt, sizeof(kt)};
    CK_BBOOL wrap, unwrap, sensitive, extractable;
    CK_RV rv = tok->mod->fl->C_GetAttributeValue(s, kek, &a, 1);

    if (rv != CKR_OK || kt != CKK_AES) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "KEK \"%s\" on token \"%s\" is not an AES "
                    "key%s%s",
                    ref_name(uri), tok->name, rv != CKR_OK ? ": " : "",
                    rv != CKR_OK ? hwkey_p11_rv_name(rv) : "");
        return 0;
    }
    if (!bool_attr(tok, s, kek, CKA_WRAP, &wrap) || !bool_attr(tok, s, kek, CKA_UNWRAP, &unwrap) ||
        !bool_attr(tok, s, kek, CKA_SENSITIVE, &sensitive) ||
        !bool_attr(tok, s, kek, CKA_EXTRACTABLE, &extractable)) {
        hwkey_raise(HWKEY_R_DEVICE_ERROR, "cannot read the attributes of KEK \"%s\"",
                    ref_name(uri));
        return 0;
    }
    if (!unwrap || (for_wrap && !wrap)) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "KEK \"%s\" on token \"%s\" lacks %s",
                    ref_name(uri), tok->name, !unwrap ? "CKA_UNWRAP" : "CKA_WRAP");
        return 0;
    }
    if (!sensitive || extractable) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "KEK \"%s\" on token \"%s\" is %s; a key-wrapping key "
                    "must be sensitive and non-extractable",
                    ref_name(uri), tok->name, extractable ? "extractable" : "not sensitive");
        return 0;
    }
    return 1;
}

/* A new AES-256 KEK under the URI's label and id (a random id if it gives none). */
static int kek_create(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, const HWKEY_P11_URI *uri,
                      CK_OBJECT_HANDLE *kek)
{
    CK_ULONG len = KEK_LEN;
    unsigned char rid[HWKEY_P11_NEW_ID_LEN];
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ATTRIBUTE t[16];
    CK_ULONG n = 0;
    CK_RV rv;

    if (!hwkey_p11_token_has_mech(tok, CKM_AES_KEY_GEN)) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "token \"%s\" cannot generate AES keys "
                    "(no CKM_AES_KEY_GEN)",
                    tok->name);
        return 0;
    }
    if (!(uri->has_id && uri->id_len > 0) && RAND_bytes(rid, sizeof(rid)) != 1) {
        hwkey_raise(HWKEY_R_INTERNAL, "RAND_bytes failed making a CKA_ID");
        return 0;
    }
#define ADD(ty, p, l) (t[n].type = (ty), t[n].pValue = (void *)(p), t[n++].ulValueLen = (l))
    ADD(CKA_CLASS, &secret_class, sizeof(secret_class));
    ADD(CKA_KEY_TYPE, &aes_type, sizeof(aes_type));
    ADD(CKA_VALUE_LEN, &len, sizeof(len));
    ADD(CKA_TOKEN, &yes, sizeof(yes));
    ADD(CKA_PRIVATE, &yes, sizeof(yes));
    ADD(CKA_SENSITIVE, &yes, sizeof(yes));
    ADD(CKA_EXTRACTABLE, &no, sizeof(no));
    ADD(CKA_WRAP, &yes, sizeof(yes));
    ADD(CKA_UNWRAP, &yes, sizeof(yes));
    /* Wrapping only: a KEK that also encrypts or MACs data could serve as an oracle. */
    ADD(CKA_ENCRYPT, &no, sizeof(no));
    ADD(CKA_DECRYPT, &no, sizeof(no));
    ADD(CKA_SIGN, &no, sizeof(no));
    ADD(CKA_VERIFY, &no, sizeof(no));
    if (uri->has_id && uri->id_len > 0)
        ADD(CKA_ID, uri->id, uri->id_len);
    else
        ADD(CKA_ID, rid, sizeof(rid));
    if (uri->object != NULL)
        ADD(CKA_LABEL, uri->object, strlen(uri->object));
#undef ADD
    rv = tok->mod->fl->C_GenerateKey(s, &mech, t, n, kek);
    if (rv != CKR_OK) {
        hwkey_raise(hwkey_p11_rv_reason(rv),
                    "C_GenerateKey of KEK \"%s\" on token \"%s\" "
                    "failed: %s",
                    ref_name(uri), tok->name, hwkey_p11_rv_name(rv));
        return 0;
    }
    hwkey_log(HWKEY_LOG_INFO, "pkcs11: created AES-256 KEK \"%s\" on token \"%s\"", ref_name(uri),
              tok->name);
    return 1;
}

static CK_MECHANISM_TYPE wrap_mech(const HWKEY_P11_TOKEN *tok)
{
    if (hwkey_p11_token_has_mech(tok, CKM_AES_KEY_WRAP_PAD))
        return CKM_AES_KEY_WRAP_PAD;
    if (hwkey_p11_token_has_mech(tok, CKM_AES_KEY_WRAP))
        return CKM_AES_KEY_WRAP;
    return CK_UNAVAILABLE_INFORMATION;
}

/*
 * The KEK's own reference for the file: token, id, label, type=secret-key,
 * and the module-path / pin-source the user wrote, never a pin-value.
 */
static char *kek_reference(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek,
                           const HWKEY_P11_URI *uri)
{
    HWKEY_P11_URI base;
    unsigned char *id = NULL, *label = NULL;
    size_t id_len = 0, label_len = 0;
    char *text;

    memset(&base, 0, sizeof(base));
    base.module_path = uri->module_path;
    base.pin_source = uri->pin_source;
    if (!hwkey_p11_attr_get(tok, s, kek, CKA_ID, &id, &id_len))
        id_len = 0;
    if (!hwkey_p11_attr_get(tok, s, kek, CKA_LABEL, &label, &label_len) || label_len == 0) {
        OPENSSL_free(label);
        label = NULL;
    }
    if (id_len == 0 && label == NULL) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "KEK \"%s\" has neither CKA_ID nor CKA_LABEL to be "
                    "found again by",
                    ref_name(uri));
        text = NULL;
    } else {
        text = hwkey_p11_uri_for_object(&tok->info, id, id_len, (const char *)label, CKO_SECRET_KEY,
                                        &base);
    }
    OPENSSL_free(id);
    OPENSSL_free(label);
    return text;
}

/* Generate the data key in the token and wrap it; wrapped[] gets 40 bytes. */
static int wrap_new_key(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek,
                        CK_MECHANISM_TYPE m, unsigned char *wrapped, CK_ULONG *wrapped_len,
                        int *session_dirty)
{
    CK_FUNCTION_LIST *fl = tok->mod->fl;
    CK_ULONG len = DATAKEY_LEN;
    CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0}, wrap = {m, NULL, 0};
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &secret_class, sizeof(secret_class)},
        {CKA_KEY_TYPE, &aes_type, sizeof(aes_type)},
        {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_TOKEN, &no, sizeof(no)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        /* Wrappable, but its value cannot be read out in the clear. */
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &yes, sizeof(yes)},
    };
    CK_OBJECT_HANDLE dk = CK_INVALID_HANDLE;
    int ok = 0;
    CK_RV rv;

    if (!hwkey_p11_token_has_mech(tok, CKM_AES_KEY_GEN)) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "token \"%s\" cannot generate AES keys "
                    "(no CKM_AES_KEY_GEN)",
                    tok->name);
        return 0;
    }
    rv = fl->C_GenerateKey(s, &gen, t, sizeof(t) / sizeof(t[0]), &dk);
    if (rv != CKR_OK) {
        hwkey_raise(hwkey_p11_rv_reason(rv),
                    "C_GenerateKey of the data key on token \"%s\" "
                    "failed: %s",
                    tok->name, hwkey_p11_rv_name(rv));
        return 0;
    }
    rv = fl->C_WrapKey(s, &wrap, kek, dk, wrapped, wrapped_len);
    if (rv != CKR_OK) {
        hwkey_raise(hwkey_p11_rv_reason(rv),
                    "C_WrapKey (%s) of the data key on token \"%s\" "
                    "failed: %s",
                    m == CKM_AES_KEY_WRAP_PAD ? "CKM_AES_KEY_WRAP_PAD" : "CKM_AES_KEY_WRAP",
                    tok->name, hwkey_p11_rv_name(rv));
        goto end;
    }
    if (*wrapped_len != HWKEY_DATAKEY_WRAPPED_LEN) {
        hwkey_raise(HWKEY_R_DEVICE_ERROR, "C_WrapKey gave %lu bytes for a 32-byte key, not %d",
                    (unsigned long)*wrapped_len, HWKEY_DATAKEY_WRAPPED_LEN);
        goto end;
    }
    ok = 1;
end:
    /* Closing the session destroys session objects: the fallback if this fails. */
    if (fl->C_DestroyObject(s, dk) != CKR_OK)
        *session_dirty = 1;
    return ok;
}

int hwkey_p11_datakey_create(HWKEY_DEVICE *dev, const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out)
{
    HWKEY_DATAKEY_FILE f;
    HWKEY_P11_URI *uri = NULL;
    HWKEY_P11_TOKEN *tok = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE;
    unsigned char wrapped[64], *der = NULL;
    CK_ULONG wrapped_len = sizeof(wrapped);
    CK_MECHANISM_TYPE m;
    uint64_t epoch = 0;
    size_t der_len = 0;
    int found, dirty = 0, ok = 0;

    memset(out, 0, sizeof(*out));
    memset(&f, 0, sizeof(f));
    if (!hwkey_p11_create_open((HWKEY_P11_DEVICE *)dev, opts, "making a data key with", &uri, &tok,
                               &s, &epoch))
        return 0;
    if (!kek_uri_ok(uri) || (found = kek_find(tok, s, uri, &kek)) == 0)
        goto end;
    if (found < 0 && !opts->create_kek) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND,
                    "no KEK (secret key) \"%s\" on token \"%s\"; pass "
                    "--create-kek to create an AES-256 one",
                    ref_name(uri), tok->name);
        goto end;
    }
    if (found < 0 && !kek_create(tok, s, uri, &kek))
        goto end;
    if (!kek_check(tok, s, kek, uri, 1))
        goto end;
    if ((m = wrap_mech(tok)) == CK_UNAVAILABLE_INFORMATION) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "token \"%s\" has neither "
                    "CKM_AES_KEY_WRAP_PAD nor CKM_AES_KEY_WRAP",
                    tok->name);
        goto end;
    }
    if (!wrap_new_key(tok, s, kek, m, wrapped, &wrapped_len, &dirty))
        goto end;
    f.version = HWKEY_DATAKEY_FILE_VERSION;
    f.mechanism = (unsigned long)m;
    f.wrapped = wrapped;
    f.wrapped_len = wrapped_len;
    if ((f.kek_uri = kek_reference(tok, s, kek, uri)) == NULL ||
        !hwkey_datakey_file_encode(&f, &der, &der_len))
        goto end;
    out->kind = HWKEY_REF_PKCS11_DATAKEY;
    out->data = der;
    out->len = der_len;
    ok = 1;
end:
    OPENSSL_free(f.kek_uri);
    hwkey_p11_session_put(tok, s, epoch, dirty);
    hwkey_p11_uri_free(uri);
    return ok;
}

/* C_UnwrapKey's failures that mean "this wrapped key is not for this KEK, or corrupt". */
static int rv_bad_blob(CK_RV rv)
{
    return rv == CKR_WRAPPED_KEY_INVALID || rv == CKR_WRAPPED_KEY_LEN_RANGE ||
           rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
           rv == CKR_DATA_INVALID;
}

/* Unwrap into a session object, read its value into key, destroy it. */
static int unwrap_into(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek,
                       const HWKEY_DATAKEY_FILE *f, unsigned char key[32], int *session_dirty)
{
    CK_FUNCTION_LIST *fl = tok->mod->fl;
    CK_MECHANISM mech = {(CK_MECHANISM_TYPE)f->mechanism, NULL, 0};
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &secret_class, sizeof(secret_class)},
        {CKA_KEY_TYPE, &aes_type, sizeof(aes_type)},
        {CKA_TOKEN, &no, sizeof(no)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        /* The host needs the value for AES-NI: that is the point of a data key. */
        {CKA_SENSITIVE, &no, sizeof(no)},
        {CKA_EXTRACTABLE, &yes, sizeof(yes)},
    };
    CK_ATTRIBUTE val = {CKA_VALUE, NULL, 0};
    CK_OBJECT_HANDLE dk = CK_INVALID_HANDLE;
    int ok = 0;
    CK_RV rv;

    rv = fl->C_UnwrapKey(s, &mech, kek, f->wrapped, f->wrapped_len, t, sizeof(t) / sizeof(t[0]),
                         &dk);
    if (rv != CKR_OK) {
        /* SoftHSM 2.6 answers a failed RFC 3394/5649 integrity check with CKR_GENERAL_ERROR. */
        hwkey_raise(rv_bad_blob(rv) ? HWKEY_R_KEY_FILE_INVALID : hwkey_p11_rv_reason(rv),
                    "C_UnwrapKey of the data key on token \"%s\" failed: %s%s", tok->name,
                    hwkey_p11_rv_name(rv),
                    rv_bad_blob(rv) ? " (the file is corrupt or was wrapped by another KEK)"
                    : rv == CKR_GENERAL_ERROR
                        ? " (SoftHSM's answer to a wrapped key that fails "
                          "its integrity check: the file may be corrupt or from another KEK)"
                        : "");
        return 0;
    }
    /* The length first, so a wrong-sized value never writes past key[32]. */
    rv = fl->C_GetAttributeValue(s, dk, &val, 1);
    if (rv == CKR_OK && val.ulValueLen != DATAKEY_LEN) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "the unwrapped data key is %lu bytes, not %d",
                    (unsigned long)val.ulValueLen, DATAKEY_LEN);
        goto end;
    }
    if (rv == CKR_OK) {
        val.pValue = key;
        rv = fl->C_GetAttributeValue(s, dk, &val, 1);
    }
    if (rv != CKR_OK || val.ulValueLen != DATAKEY_LEN) {
        OPENSSL_cleanse(key, DATAKEY_LEN);
        hwkey_raise(rv != CKR_OK ? hwkey_p11_rv_reason(rv) : HWKEY_R_DEVICE_ERROR,
                    "reading the unwrapped data key (CKA_VALUE) failed: %s", hwkey_p11_rv_name(rv));
        goto end;
    }
    ok = 1;
end:
    if (fl->C_DestroyObject(s, dk) != CKR_OK)
        *session_dirty = 1;
    return ok;
}

int hwkey_p11_datakey_unwrap(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                             OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, unsigned char key[32])
{
    HWKEY_DATAKEY_FILE f;
    HWKEY_P11_URI *uri = NULL;
    HWKEY_P11_TOKEN *tok = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE;
    uint64_t epoch = 0;
    int found, dirty = 0, ok = 0;

    if (ref->kind != HWKEY_REF_PKCS11_DATAKEY) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "a PKCS#11 data key is an HWKEY DATA KEY file");
        return 0;
    }
    if (!hwkey_datakey_file_decode(ref->data, ref->len, &f))
        return 0;
    if (!hwkey_p11_ref_open((HWKEY_P11_DEVICE *)dev, f.kek_uri, strlen(f.kek_uri), pw_cb, pw_arg,
                            &uri, &tok, &s, &epoch))
        goto end;
    if (!kek_uri_ok(uri) || (found = kek_find(tok, s, uri, &kek)) == 0)
        goto end;
    if (found < 0) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND,
                    "the data key's KEK \"%s\" is not on token \"%s\" "
                    "(deleted, or another token)",
                    ref_name(uri), tok->name);
        goto end;
    }
    if (!kek_check(tok, s, kek, uri, 0))
        goto end;
    if (!hwkey_p11_token_has_mech(tok, (CK_MECHANISM_TYPE)f.mechanism)) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "token \"%s\" lacks mechanism 0x%lx, which "
                    "wrapped this data key",
                    tok->name, f.mechanism);
        goto end;
    }
    ok = unwrap_into(tok, s, kek, &f, key, &dirty);
end:
    if (tok != NULL)
        hwkey_p11_session_put(tok, s, epoch, dirty);
    hwkey_p11_uri_free(uri);
    hwkey_datakey_file_clear(&f);
    return ok;
}
