/*
 * Dispatch table entries that the compiler checks.  OpenSSL's tables hold
 * every function as void (*)(void); a plain cast there accepts a function in
 * the wrong slot (an IMPORT in the EXPORT slot compiles and crashes at run
 * time).  HWKEY_DISPATCH puts the function through __builtin_choose_expr:
 * when its type is not the slot's OSSL_FUNC_<op>_<name>_fn, the expression
 * becomes an object of an incomplete struct type, which cannot be cast to a
 * function pointer, and the build stops (whatever the warning flags) with an
 * error that names hwkey_dispatch_function_type_does_not_match_its_slot.
 * test/integration/test_dispatch_tables.sh checks that each slot id and type name are the same
 * words.
 */
#ifndef HWKEY_OPS_DISPATCH_H
#define HWKEY_OPS_DISPATCH_H

#include <openssl/core_dispatch.h>

/* Never defined: only named by the branch a mismatch selects. */
extern struct hwkey_dispatch_mismatch hwkey_dispatch_function_type_does_not_match_its_slot;

#define HWKEY_CHECKED_FN(type, fn)                                                                 \
    __builtin_choose_expr(__builtin_types_compatible_p(__typeof__(fn), type), (fn),                \
                          hwkey_dispatch_function_type_does_not_match_its_slot)

/* id: OSSL_FUNC_<OP>_<NAME>; type: OSSL_FUNC_<op>_<name>_fn. */
#define HWKEY_DISPATCH(id, type, fn)                                                               \
    {                                                                                              \
        (id), (void (*)(void))HWKEY_CHECKED_FN(type, fn)                                           \
    }

/* One per operation: X_FN(NAME, name, function). */
#define HWKEY_KEYMGMT_FN(ID, name, fn)                                                             \
    HWKEY_DISPATCH(OSSL_FUNC_KEYMGMT_##ID, OSSL_FUNC_keymgmt_##name##_fn, fn)
#define HWKEY_SIG_FN(ID, name, fn)                                                                 \
    HWKEY_DISPATCH(OSSL_FUNC_SIGNATURE_##ID, OSSL_FUNC_signature_##name##_fn, fn)
#define HWKEY_ASYM_CIPHER_FN(ID, name, fn)                                                         \
    HWKEY_DISPATCH(OSSL_FUNC_ASYM_CIPHER_##ID, OSSL_FUNC_asym_cipher_##name##_fn, fn)
#define HWKEY_KEYEXCH_FN(ID, name, fn)                                                             \
    HWKEY_DISPATCH(OSSL_FUNC_KEYEXCH_##ID, OSSL_FUNC_keyexch_##name##_fn, fn)
#define HWKEY_CIPHER_FN(ID, name, fn)                                                              \
    HWKEY_DISPATCH(OSSL_FUNC_CIPHER_##ID, OSSL_FUNC_cipher_##name##_fn, fn)
#define HWKEY_DECODER_FN(ID, name, fn)                                                             \
    HWKEY_DISPATCH(OSSL_FUNC_DECODER_##ID, OSSL_FUNC_decoder_##name##_fn, fn)
#define HWKEY_ENCODER_FN(ID, name, fn)                                                             \
    HWKEY_DISPATCH(OSSL_FUNC_ENCODER_##ID, OSSL_FUNC_encoder_##name##_fn, fn)
#define HWKEY_STORE_FN(ID, name, fn)                                                               \
    HWKEY_DISPATCH(OSSL_FUNC_STORE_##ID, OSSL_FUNC_store_##name##_fn, fn)
#define HWKEY_PROVIDER_FN(ID, name, fn)                                                            \
    HWKEY_DISPATCH(OSSL_FUNC_PROVIDER_##ID, OSSL_FUNC_provider_##name##_fn, fn)

#endif
