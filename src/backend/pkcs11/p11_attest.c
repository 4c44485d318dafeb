/*
 * `hwkey attest 'pkcs11:...'`: what a token says about a private key's
 * origin.  PKCS#11 has no signed evidence (some HSMs have vendor
 * attestation, outside the standard), so this is the token's word, read
 * from four attributes (PKCS#11 3.0, 4.4 and 4.9):
 *
 *   CKA_LOCAL              generated on the token (C_GenerateKeyPair), not
 *                          created from outside values or unwrapped
 *   CKA_NEVER_EXTRACTABLE  CKA_EXTRACTABLE has always been FALSE
 *   CKA_ALWAYS_SENSITIVE   CKA_SENSITIVE has always been TRUE
 *   CKA_SENSITIVE          the value cannot be read in the clear
 *   CKA_EXTRACTABLE        the key can be wrapped out (FALSE: it cannot)
 *
 * A key with LOCAL, NEVER_EXTRACTABLE, SENSITIVE true and EXTRACTABLE false
 * was generated in the token and never left it.
 */
#include "backend/pkcs11/p11_internal.h"

#include "util/error.h"

typedef struct {
    CK_ATTRIBUTE_TYPE type;
    const char *name;
} ATTR;

static const ATTR attrs[] = {
    {CKA_LOCAL, "CKA_LOCAL"},
    {CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE"},
    {CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE"},
    {CKA_SENSITIVE, "CKA_SENSITIVE"},
    {CKA_EXTRACTABLE, "CKA_EXTRACTABLE"},
};
#define N_ATTRS (sizeof(attrs) / sizeof(attrs[0]))

/* 1 TRUE, 0 FALSE, -1 absent or unreadable. */
static int read_bool(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                     CK_ATTRIBUTE_TYPE type)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int v = -1;

    if (hwkey_p11_attr_get(tok, s, obj, type, &buf, &len) && len == sizeof(CK_BBOOL))
        v = buf[0] != CK_FALSE;
    OPENSSL_free(buf);
    return v;
}

static const char *verdict(const int v[N_ATTRS])
{
    int local = v[0], never_ext = v[1], always_sens = v[2], sens = v[3], ext = v[4];

    if (sens != 1 || ext != 0)
        return "can leave the token now (not sensitive, or extractable)";
    if (local == 1 && never_ext == 1 && always_sens == 1)
        return "generated in the token, never left it";
    if (local == 1)
        return "generated in the token, but was extractable or not sensitive once: a copy "
               "may exist outside";
    return "imported (not generated in the token): cannot leave it now, but a copy may exist "
           "outside";
}

int hwkey_p11_key_attest(HWKEY_BKEY *base, const unsigned char *nonce, size_t nonce_len, BIO *out)
{
    HWKEY_P11_KEY *key = (HWKEY_P11_KEY *)base;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE obj;
    uint64_t epoch;
    int v[N_ATTRS];

    (void)nonce;
    (void)nonce_len;
    if (!hwkey_p11_key_acquire(key, &s, &epoch, &obj))
        return 0;
    for (size_t i = 0; i < N_ATTRS; i++)
        v[i] = read_bool(key->tok, s, obj, attrs[i].type);
    hwkey_p11_session_put(key->tok, s, epoch, 0);

    BIO_printf(out, "token: %s (%s)\n", key->tok->name, key->tok->mod->path);
    for (size_t i = 0; i < N_ATTRS; i++)
        BIO_printf(out, "%s: %s\n", attrs[i].name,
                   v[i] < 0 ? "(not reported)"
                   : v[i]   ? "TRUE"
                            : "FALSE");
    BIO_printf(out, "verdict: %s\n", verdict(v));
    BIO_printf(out, "note: the token's own statement, not signed evidence (docs/attestation.md)\n");
    return 1;
}
