/*
 * The object reference shared by decoders and the handle: store.
 *
 * Why the decoder keeps its own reference: OpenSSL 3.0's
 * decoder_construct_pkey() (crypto/encode_decode/decoder_pkey.c) and the
 * store's try_key_ref() (crypto/store/store_result.c) treat the reference as
 * volatile ("assumed to be freed as soon as this function returns") and may
 * not call load at all: when another provider's keymgmt is chosen they call
 * export_object instead, when no keymgmt is found they call nothing, and the
 * store may try export, then load from a second keymgmt.  So the emitter must
 * free the key after the callback unless load took it.  Two load styles are
 * safe with this: up-ref and leave the pointer (the reference count drops
 * back when we free ours), or steal it by writing NULL through the reference
 * (tpm2-openssl's style; we then free nothing).  Up-ref is preferred because
 * a second load of the same reference (the store's fallback) still works.
 */
#include "ops/objref.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/store.h>

#include "util/error.h"

int hwkey_objref_emit(HWKEY_KEY **keyp, OSSL_CALLBACK *cb, void *cbarg)
{
    int object_type = OSSL_OBJECT_PKEY;
    const char *type = hwkey_key_alg_name((*keyp)->alg);
    OSSL_PARAM params[4];
    int ok = 0;

    if (type == NULL) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "device key of unknown type %d",
                    (int)(*keyp)->alg);
        goto end;
    }
    params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object_type);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, (char *)type, 0);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, keyp, sizeof(*keyp));
    params[3] = OSSL_PARAM_construct_end();
    ok = cb(params, cbarg);
end:
    hwkey_key_free(*keyp);
    *keyp = NULL;
    return ok;
}

HWKEY_KEY *hwkey_objref_get(const void *reference, size_t reference_sz)
{
    HWKEY_KEY *key = NULL;

    if (reference == NULL || reference_sz != sizeof(HWKEY_KEY *)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "object reference of %zu bytes is not an hwkey key",
                    reference_sz);
        return NULL;
    }
    memcpy(&key, reference, sizeof(key));
    if (key == NULL)
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "object reference already taken by a key load");
    return key;
}

int hwkey_objref_export_public(const void *reference, size_t reference_sz, OSSL_CALLBACK *export_cb,
                               void *export_cbarg)
{
    HWKEY_KEY *key = hwkey_objref_get(reference, reference_sz);
    OSSL_PARAM *params = NULL;
    int ok;

    if (key == NULL)
        return 0;
    if (key->pub == NULL || !EVP_PKEY_todata(key->pub, EVP_PKEY_PUBLIC_KEY, &params)) {
        hwkey_raise(HWKEY_R_INTERNAL, "cannot export the public half of the device key");
        return 0;
    }
    ok = export_cb(params, export_cbarg);
    OSSL_PARAM_free(params);
    return ok;
}

const OSSL_PARAM *hwkey_store_settable_params(void)
{
    static const OSSL_PARAM settable[] = {OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
                                          OSSL_PARAM_END};

    return settable;
}

int hwkey_store_read_expect(const OSSL_PARAM params[], int *expect)
{
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT);

    if (p != NULL && !OSSL_PARAM_get_int(p, expect)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "store parameter \"%s\" is not an integer",
                    OSSL_STORE_PARAM_EXPECT);
        return 0;
    }
    return 1;
}
