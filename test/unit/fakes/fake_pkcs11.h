/*
 * A small PKCS#11 module in software, for unit tests of the pkcs11 backend
 * without SoftHSM: one slot with one token, objects as attribute lists, keys
 * held as OpenSSL EVP_PKEYs.  Hand its function list to the backend with
 * hwkey_p11_module_adopt(dev, path, fake_p11_functions()).
 *
 * What it implements is what src/backend/pkcs11 calls: C_Initialize/
 * Finalize, GetSlotList, GetTokenInfo, GetMechanismList, Open/CloseSession,
 * GetSessionInfo, Login, FindObjects*, GetAttributeValue, CreateObject,
 * DestroyObject, GenerateKeyPair, SignInit/Sign (CKM_ECDSA, CKM_RSA_PKCS,
 * CKM_RSA_PKCS_PSS, CKM_RSA_X_509, CKM_EDDSA), DecryptInit/Decrypt
 * (CKM_RSA_PKCS, CKM_RSA_PKCS_OAEP), DeriveKey (CKM_ECDH1_DERIVE),
 * GenerateRandom.  Other entries are NULL.
 *
 * For tests to assert on: every call is counted, the last mechanism and
 * data of each operation and every template received are kept, and any
 * function can be scripted to answer a CKR_ at its n-th call.  Tests may
 * also replace entries of the list; fake_p11_reset() restores them.
 * Single-threaded: one test thread at a time.
 */
#ifndef HWKEY_TEST_FAKE_PKCS11_H
#define HWKEY_TEST_FAKE_PKCS11_H

#include <stddef.h>

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#define FAKE_P11_SLOT 7
#define FAKE_P11_LABEL "fake-token"
#define FAKE_P11_PIN "1234"

/* The functions a failure can be scripted for and that are counted. */
typedef enum {
    FAKE_C_Initialize,
    FAKE_C_Finalize,
    FAKE_C_GetSlotList,
    FAKE_C_GetTokenInfo,
    FAKE_C_GetMechanismList,
    FAKE_C_OpenSession,
    FAKE_C_CloseSession,
    FAKE_C_GetSessionInfo,
    FAKE_C_Login,
    FAKE_C_FindObjectsInit,
    FAKE_C_FindObjects,
    FAKE_C_FindObjectsFinal,
    FAKE_C_GetAttributeValue,
    FAKE_C_CreateObject,
    FAKE_C_DestroyObject,
    FAKE_C_GenerateKeyPair,
    FAKE_C_SignInit,
    FAKE_C_Sign,
    FAKE_C_DecryptInit,
    FAKE_C_Decrypt,
    FAKE_C_DeriveKey,
    FAKE_C_GenerateRandom,
    FAKE_N_FUNCS
} FAKE_P11_FN;

/* A copy of a template (values copied), as the module received it. */
#define FAKE_P11_MAX_ATTRS 40
typedef struct {
    CK_ATTRIBUTE attrs[FAKE_P11_MAX_ATTRS];
    CK_ULONG n;
} FAKE_P11_TEMPLATE;

/* Back to a fresh token: no objects, nothing scripted, counters zero, list restored. */
void fake_p11_reset(void);
CK_FUNCTION_LIST *fake_p11_functions(void);

/*
 * on: behave as SoftHSM 2.6.1 does (checked with a probe against it): its
 * failed OpenSSL calls leave their errors ("rsa routines::padding check
 * failed") in the caller's thread's error queue, and C_Decrypt of a
 * ciphertext that does not decrypt answers CKR_GENERAL_ERROR.  off (the
 * default): errors popped, CKR_ENCRYPTED_DATA_INVALID.
 */
void fake_p11_like_softhsm(int on);
/* Token flags added to CKF_TOKEN_INITIALIZED | CKF_LOGIN_REQUIRED | ... */
void fake_p11_set_token_flags(CK_FLAGS extra);
/* The mechanisms the token lists (default: every one it implements). */
void fake_p11_set_mechanisms(const CK_MECHANISM_TYPE *m, size_t n);

/*
 * A key pair as token objects: a private key (CKA_PRIVATE, sensitive; with
 * CKA_MODULUS/CKA_PUBLIC_EXPONENT for RSA, CKA_EC_PARAMS for EC/Ed25519) and,
 * if with_pub, its public key object (CKA_EC_POINT as a DER OCTET STRING).
 * label may be NULL; id may be NULL.  Returns the private key's handle.
 */
CK_OBJECT_HANDLE fake_p11_add_key(EVP_PKEY *pkey, const char *label, const unsigned char *id,
                                  size_t id_len, int with_pub);
/* A certificate object (CKA_VALUE = DER) with this label/id. */
CK_OBJECT_HANDLE fake_p11_add_cert(const unsigned char *der, size_t len, const char *label,
                                   const unsigned char *id, size_t id_len);
/* Removes one attribute of an object (a token that lacks it). */
void fake_p11_drop_attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type);
size_t fake_p11_object_count(void);
/* The value of an attribute of an object, NULL if absent. */
const void *fake_p11_attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, CK_ULONG *len);
/* The key behind a private key object (not owned). */
EVP_PKEY *fake_p11_key_of(CK_OBJECT_HANDLE h);

/* Calls nth .. nth+times-1 of fn (counted from now, 1 = the next one) answer rv. */
void fake_p11_fail(FAKE_P11_FN fn, unsigned long nth, unsigned long times, CK_RV rv);
unsigned long fake_p11_calls(FAKE_P11_FN fn);

/* The last C_SignInit/C_DecryptInit/C_DeriveKey/C_GenerateKeyPair mechanism (parameters copied). */
const CK_MECHANISM *fake_p11_last_mech(void);
/* The data of the last C_Sign/C_Decrypt. */
const unsigned char *fake_p11_last_input(size_t *len);
/* Templates received, in order: C_CreateObject one each, C_GenerateKeyPair pub then priv,
 * C_DeriveKey one.  i from 0; NULL past the end. */
const FAKE_P11_TEMPLATE *fake_p11_template(size_t i);
size_t fake_p11_template_count(void);
/* The value of type in t, NULL if absent. */
const CK_ATTRIBUTE *fake_p11_template_find(const FAKE_P11_TEMPLATE *t, CK_ATTRIBUTE_TYPE type);

#endif
