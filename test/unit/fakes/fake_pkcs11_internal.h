/*
 * Inside the fake PKCS#11 module (fake_pkcs11.c, fake_pkcs11_keys.c): an
 * object is a list of attributes (values copied) plus, for a private key,
 * its EVP_PKEY.  Tests use fake_pkcs11.h only.
 */
#ifndef HWKEY_TEST_FAKE_PKCS11_INTERNAL_H
#define HWKEY_TEST_FAKE_PKCS11_INTERNAL_H

#include "fake_pkcs11.h"

typedef struct {
    CK_ATTRIBUTE_TYPE type;
    unsigned char *val;
    CK_ULONG len;
} FAKE_ATTR;

typedef struct {
    int used;
    FAKE_ATTR attrs[FAKE_P11_MAX_ATTRS];
    size_t n;
    EVP_PKEY *pkey; /* private key objects */
} FAKE_OBJ;

/* fake_pkcs11.c */
FAKE_ATTR *fake_attr_find(FAKE_OBJ *o, CK_ATTRIBUTE_TYPE type);
/* Sets (replaces) an attribute, value copied. */
void fake_attr_set(FAKE_OBJ *o, CK_ATTRIBUTE_TYPE type, const void *val, size_t len);
/* Sets it only if absent. */
void fake_attr_set_default(FAKE_OBJ *o, CK_ATTRIBUTE_TYPE type, const void *val, size_t len);
int fake_attr_true(FAKE_OBJ *o, CK_ATTRIBUTE_TYPE type);
CK_ULONG fake_attr_ulong(FAKE_OBJ *o, CK_ATTRIBUTE_TYPE type, CK_ULONG dflt);
/* Wipes and frees the values and the key; the slot becomes free. */
void fake_obj_free(FAKE_OBJ *o);

/* fake_pkcs11_keys.c */
/* NID of a DER OID (CKA_EC_PARAMS); NID_undef if it is none. */
int fake_curve_nid(const unsigned char *der, size_t len);
/* Class, key type and public values of pkey on o (and CKA_EC_POINT if pub). */
void fake_key_attrs(FAKE_OBJ *o, EVP_PKEY *pkey, int pub);
/* The EVP_PKEY of a private key object made from attributes (C_CreateObject); NULL if none. */
EVP_PKEY *fake_key_from_attrs(FAKE_OBJ *o);
/* CKM_ECDSA: raw r || s of the field's width into out. */
int fake_ecdsa_raw(EVP_PKEY *pkey, const unsigned char *in, size_t inlen, unsigned char *out,
                   size_t *outlen);
/* CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_RSA_PKCS_OAEP, CKM_RSA_X_509 with m's parameters. */
int fake_rsa_op(EVP_PKEY *pkey, const CK_MECHANISM *m, int decrypt, const unsigned char *in,
                size_t inlen, unsigned char *out, size_t *outlen);

#endif
