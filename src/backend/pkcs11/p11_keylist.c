/*
 * Deleting and listing token keys (`hwkey delete`, `hwkey list`): acts on the
 * one token the URI names, with or without pkcs11-failover.
 */
#include "backend/pkcs11/p11_internal.h"

#include <string.h>

#include <openssl/err.h>

#include "util/error.h"

int hwkey_p11_key_delete(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref)
{
    static const CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY};
    HWKEY_P11_URI *uri = NULL;
    HWKEY_P11_TOKEN *tok = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE objs[8];
    uint64_t epoch = 0;
    size_t privs = 0;
    int ok = 0;

    if (!hwkey_p11_ref_open((HWKEY_P11_DEVICE *)dev, (const char *)ref->data, ref->len, NULL, NULL,
                            &uri, &tok, &s, &epoch))
        return 0;
    if (uri->object == NULL && !uri->has_id) {
        hwkey_raise(HWKEY_R_INVALID_URI, "refusing to delete: the URI names no object= nor id=");
        goto end;
    }
    for (size_t c = 0; c < sizeof(classes) / sizeof(classes[0]); c++) {
        CK_ULONG n = 0;

        if (!hwkey_p11_find(tok, s, classes[c], uri->id, uri->id_len, uri->has_id, uri->object,
                            objs, 8, &n))
            goto end;
        if (c == 0 && n == 0) {
            hwkey_raise(HWKEY_R_KEY_NOT_FOUND,
                        "no private key \"%s\" to delete on token "
                        "\"%s\"",
                        hwkey_p11_uri_describe(uri), tok->name);
            goto end;
        }
        if (c == 0 && n > 1) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                        "the URI matches %lu private keys; refusing to "
                        "delete them all",
                        (unsigned long)n);
            goto end;
        }
        for (CK_ULONG i = 0; i < n; i++) {
            CK_RV rv = tok->mod->fl->C_DestroyObject(s, objs[i]);

            if (rv != CKR_OK) {
                hwkey_raise(hwkey_p11_rv_reason(rv), "C_DestroyObject failed: %s",
                            hwkey_p11_rv_name(rv));
                goto end;
            }
        }
        privs += c == 0 ? n : 0;
    }
    ok = privs == 1;
end:
    hwkey_p11_session_put(tok, s, epoch, 0);
    hwkey_p11_uri_free(uri);
    return ok;
}

int hwkey_p11_key_list(HWKEY_DEVICE *dev, const char *filter, hwkey_list_cb cb, void *arg)
{
    const char *all = "pkcs11:";
    HWKEY_P11_URI *uri = NULL;
    HWKEY_P11_TOKEN *tok = NULL;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE *objs = NULL;
    CK_ULONG n = 0;
    uint64_t epoch = 0;
    int ok = 0;

    if (filter == NULL)
        filter = all;
    if (!hwkey_p11_ref_open((HWKEY_P11_DEVICE *)dev, filter, strlen(filter), NULL, NULL, &uri, &tok,
                            &s, &epoch))
        return 0;
    if (!hwkey_p11_find_all(tok, s, CKO_PRIVATE_KEY, uri->id, uri->id_len, uri->has_id, uri->object,
                            &objs, &n))
        goto end;
    ok = 1;
    for (CK_ULONG i = 0; i < n && ok; i++) {
        HWKEY_P11_KEY k;
        HWKEY_LISTED_KEY lk;
        CK_ATTRIBUTE a = {CKA_KEY_TYPE, &k.ktype, sizeof(k.ktype)};
        char *ref;

        memset(&k, 0, sizeof(k));
        k.tok = tok;
        hwkey_p11_attr_get(tok, s, objs[i], CKA_ID, &k.id, &k.id_len);
        hwkey_p11_attr_get(tok, s, objs[i], CKA_LABEL, (unsigned char **)&k.label, &(size_t){0});
        if (k.id_len == 0) {
            OPENSSL_free(k.id);
            k.id = NULL;
        }
        ERR_set_mark();
        if (tok->mod->fl->C_GetAttributeValue(s, objs[i], &a, 1) != CKR_OK ||
            !hwkey_p11_pub_read(&k, s, objs[i]))
            ERR_pop_to_mark(); /* listed with what is known */
        else
            ERR_clear_last_mark();
        if (hwkey_p11_attr_true(tok, s, objs[i], CKA_SIGN))
            k.base.info.flags |= HWKEY_KEYF_SIGN;
        ref = hwkey_p11_uri_for_object(&tok->info, k.id, k.id_len, k.label, CKO_PRIVATE_KEY, NULL);
        lk.ref = ref;
        lk.info = k.base.info;
        lk.label = k.label;
        ok = ref != NULL && cb(&lk, arg);
        OPENSSL_free(ref);
        OPENSSL_free(k.id);
        OPENSSL_free(k.label);
        OPENSSL_free(k.pub_a);
        OPENSSL_free(k.pub_b);
    }
end:
    OPENSSL_free(objs);
    hwkey_p11_session_put(tok, s, epoch, 0);
    hwkey_p11_uri_free(uri);
    return ok;
}
