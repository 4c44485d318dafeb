/*
 * The contenders of pkcs11_sign_bench, each set up inside its own child
 * process:
 *
 *  direct  the PKCS#11 module dlopen'ed here, C_Initialize (OS locking),
 *          one session per thread, C_Login once, the private key found by
 *          label, then C_SignInit + C_Sign on a digest computed beforehand:
 *          what the token itself can do, with no library in between.
 *  hwkey   hwkey.so loaded by path into its own OSSL_LIB_CTX (before the
 *          default provider, as openssl.cnf and `-provider hwkey -provider
 *          default` do: OpenSSL 3.0 fetches a signature from the first
 *          provider offering it), the key read with PEM_read_bio_PrivateKey_ex
 *          from a PEM reference file, or from a pkcs11: URI wrapped here into
 *          one; every thread signs with the same EVP_PKEY.
 *            digestsign: EVP_DigestSignInit_ex + EVP_DigestSign per signature,
 *                        exactly what libssl does for a CertificateVerify;
 *            pkeysign:   EVP_PKEY_sign on the digest with a context set up
 *                        once per thread: the provider's signing path alone.
 */
#include "pkcs11_bench.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/store.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

const char *const p11b_kind_names[P11B_KIND_MAX] = {
    [P11B_DIRECT] = "direct C_Sign",
    [P11B_DIGESTSIGN] = "hwkey DigestSign",
    [P11B_PKEYSIGN] = "hwkey PKEY_sign",
};

/* DigestInfo prefix of SHA-256 (RFC 8017 §9.2 note 1): what CKM_RSA_PKCS signs. */
static const unsigned char sha256_prefix[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                              0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                              0x01, 0x05, 0x00, 0x04, 0x20};

struct p11b_contender {
    P11B_KIND kind;
    int rsa;
    int nthreads;
    /* direct */
    CK_FUNCTION_LIST *fl;
    CK_SESSION_HANDLE sess[P11B_MAX_THREADS];
    CK_OBJECT_HANDLE key;
    CK_MECHANISM mech;
    unsigned char tbs[sizeof(sha256_prefix) + P11B_DIGEST_LEN];
    size_t tbs_len;
    /* hwkey */
    OSSL_LIB_CTX *libctx;
    OSSL_PROVIDER *prov;
    OSSL_PROVIDER *prov_default;
    EVP_PKEY *pkey;
    EVP_MD_CTX *mctx[P11B_MAX_THREADS];
    EVP_PKEY_CTX *pctx[P11B_MAX_THREADS];
    const unsigned char *msg;
    size_t msg_len;
    unsigned char digest[P11B_DIGEST_LEN];
};

/* ---- errors ------------------------------------------------------------------- */

static const char *ckr_name(CK_RV rv)
{
    static const struct {
        CK_RV rv;
        const char *name;
    } names[] = {
        {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
        {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
        {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
        {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
        {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
        {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
        {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
        {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
        {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
        {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
        {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
        {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].rv == rv)
            return names[i].name;
    return NULL;
}

static int ck_fail(const char *what, CK_RV rv, char *err, size_t errlen)
{
    const char *name = ckr_name(rv);

    if (name != NULL)
        snprintf(err, errlen, "%s: %s", what, name);
    else
        snprintf(err, errlen, "%s: CKR 0x%lx", what, (unsigned long)rv);
    return 0;
}

/* "what: reason (data); reason ..." from the OpenSSL error queue, which it empties. */
static int ossl_fail(const char *what, char *err, size_t errlen)
{
    const char *data = NULL;
    unsigned long e;
    int flags = 0, n;
    size_t used;

    n = snprintf(err, errlen, "%s:", what);
    used = n > 0 && (size_t)n < errlen ? (size_t)n : errlen - 1;
    if (ERR_peek_error() == 0)
        snprintf(err + used, errlen - used, " no error queued");
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0 && used < errlen - 1) {
        char buf[256];
        int with_data = (flags & ERR_TXT_STRING) && data != NULL && *data != '\0';

        ERR_error_string_n(e, buf, sizeof(buf));
        n = snprintf(err + used, errlen - used, " %s%s%s%s;", buf, with_data ? " (" : "",
                     with_data ? data : "", with_data ? ")" : "");
        used = n > 0 && (size_t)n < errlen - used ? used + (size_t)n : errlen - 1;
    }
    ERR_clear_error();
    return 0;
}

/* ---- direct: the module's function list --------------------------------------- */

static int label_matches(const unsigned char *field, size_t width, const char *want)
{
    size_t len = strlen(want);

    if (len > width || memcmp(field, want, len) != 0)
        return 0;
    for (size_t i = len; i < width; i++)
        if (field[i] != ' ')
            return 0;
    return 1;
}

static int direct_find_slot(P11B_CONTENDER *c, const char *token, CK_SLOT_ID *slot, char *err,
                            size_t errlen)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = sizeof(slots) / sizeof(slots[0]);
    CK_RV rv = c->fl->C_GetSlotList(CK_TRUE, slots, &n);

    if (rv != CKR_OK)
        return ck_fail("C_GetSlotList", rv, err, errlen);
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;

        if (c->fl->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
            label_matches(ti.label, sizeof(ti.label), token)) {
            *slot = slots[i];
            return 1;
        }
    }
    snprintf(err, errlen, "no token labelled \"%s\" among %lu slot(s)", token, (unsigned long)n);
    return 0;
}

static int direct_find_key(P11B_CONTENDER *c, const char *label, char *err, size_t errlen)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK_RV rv = c->fl->C_FindObjectsInit(c->sess[0], tmpl, 2);

    if (rv != CKR_OK)
        return ck_fail("C_FindObjectsInit", rv, err, errlen);
    rv = c->fl->C_FindObjects(c->sess[0], found, 2, &n);
    c->fl->C_FindObjectsFinal(c->sess[0]);
    if (rv != CKR_OK)
        return ck_fail("C_FindObjects", rv, err, errlen);
    if (n != 1) {
        snprintf(err, errlen, "%lu private keys labelled \"%s\" on the token, want 1",
                 (unsigned long)n, label);
        return 0;
    }
    c->key = found[0];
    return 1;
}

static int direct_new(P11B_CONTENDER *c, const P11B_SETUP *s, char *info, size_t infolen, char *err,
                      size_t errlen)
{
    CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
    CK_C_GetFunctionList get_list;
    CK_SLOT_ID slot = 0;
    CK_INFO ci;
    CK_RV rv;
    void *lib = dlopen(s->module, RTLD_NOW | RTLD_LOCAL);

    if (lib == NULL) {
        snprintf(err, errlen, "dlopen %s: %s", s->module, dlerror());
        return 0;
    }
    get_list = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    if (get_list == NULL) {
        snprintf(err, errlen, "%s has no C_GetFunctionList", s->module);
        return 0;
    }
    if ((rv = get_list(&c->fl)) != CKR_OK)
        return ck_fail("C_GetFunctionList", rv, err, errlen);
    if ((rv = c->fl->C_Initialize(&args)) != CKR_OK)
        return ck_fail("C_Initialize", rv, err, errlen);
    if (c->fl->C_GetInfo(&ci) == CKR_OK) {
        int n = (int)sizeof(ci.libraryDescription);

        while (n > 0 && ci.libraryDescription[n - 1] == ' ')
            n--; /* blank-padded, not NUL-terminated */
        snprintf(info, infolen, "%.*s %u.%u", n, (const char *)ci.libraryDescription,
                 ci.libraryVersion.major, ci.libraryVersion.minor);
    }
    if (!direct_find_slot(c, s->token, &slot, err, errlen))
        return 0;
    for (int i = 0; i < c->nthreads; i++)
        if ((rv = c->fl->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &c->sess[i])) !=
            CKR_OK)
            return ck_fail("C_OpenSession", rv, err, errlen);
    /* Login is per application and token: one covers every session. */
    rv = c->fl->C_Login(c->sess[0], CKU_USER, (CK_UTF8CHAR *)s->pin, strlen(s->pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
        return ck_fail("C_Login", rv, err, errlen);
    if (!direct_find_key(c, s->label, err, errlen))
        return 0;
    c->mech.mechanism = c->rsa ? CKM_RSA_PKCS : CKM_ECDSA;
    c->tbs_len = 0;
    if (c->rsa) {
        memcpy(c->tbs, sha256_prefix, sizeof(sha256_prefix));
        c->tbs_len = sizeof(sha256_prefix);
    }
    memcpy(c->tbs + c->tbs_len, s->digest, P11B_DIGEST_LEN);
    c->tbs_len += P11B_DIGEST_LEN;
    return 1;
}

static int direct_sign(P11B_CONTENDER *c, int t, unsigned char *sig, size_t *siglen, char *err,
                       size_t errlen)
{
    CK_ULONG len = P11B_MAX_SIG;
    CK_RV rv = c->fl->C_SignInit(c->sess[t], &c->mech, c->key);

    if (rv != CKR_OK)
        return ck_fail("C_SignInit", rv, err, errlen);
    if ((rv = c->fl->C_Sign(c->sess[t], c->tbs, c->tbs_len, sig, &len)) != CKR_OK)
        return ck_fail("C_Sign", rv, err, errlen);
    *siglen = len;
    return 1;
}

/* ---- hwkey: the provider ------------------------------------------------------- */

/* DER length octets for len < 65536; returns how many were written. */
static size_t der_len(unsigned char *p, size_t len)
{
    if (len < 0x80) {
        p[0] = (unsigned char)len;
        return 1;
    }
    if (len < 0x100) {
        p[0] = 0x81;
        p[1] = (unsigned char)len;
        return 2;
    }
    p[0] = 0x82;
    p[1] = (unsigned char)(len >> 8);
    p[2] = (unsigned char)len;
    return 3;
}

/*
 * A PEM reference file for uri, in memory: pkcs11-provider's
 * SEQUENCE { desc VisibleString, uri UTF8String } under "PKCS#11 PROVIDER URI",
 * so a bare URI takes exactly the path a reference file takes.
 */
static BIO *uri_to_reference(const char *uri)
{
    static const char desc[] = "PKCS#11 Provider URI v1.0";
    size_t ulen = strlen(uri), dlen = sizeof(desc) - 1;
    unsigned char *der = NULL, *p;
    size_t body, total;
    BIO *bio = NULL;

    if (ulen > 4096)
        return NULL;
    der = OPENSSL_malloc(ulen + dlen + 16);
    if (der == NULL)
        return NULL;
    body = 2 + dlen + 1 + (ulen < 0x80 ? 1 : ulen < 0x100 ? 2 : 3) + ulen;
    p = der;
    *p++ = 0x30;
    p += der_len(p, body);
    *p++ = 0x1a; /* VisibleString */
    p += der_len(p, dlen);
    memcpy(p, desc, dlen);
    p += dlen;
    *p++ = 0x0c; /* UTF8String */
    p += der_len(p, ulen);
    memcpy(p, uri, ulen);
    p += ulen;
    total = (size_t)(p - der);
    bio = BIO_new(BIO_s_mem());
    if (bio != NULL && PEM_write_bio(bio, "PKCS#11 PROVIDER URI", "", der, (long)total) <= 0) {
        BIO_free(bio);
        bio = NULL;
    }
    OPENSSL_free(der);
    return bio;
}

static EVP_PKEY *load_key(OSSL_LIB_CTX *libctx, const char *ref)
{
    int is_uri = strncmp(ref, "pkcs11:", 7) == 0;
    BIO *bio = is_uri ? uri_to_reference(ref) : BIO_new_file(ref, "r");
    EVP_PKEY *pkey = NULL;
    OSSL_STORE_CTX *store;

    if (bio != NULL)
        pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, NULL, libctx, NULL);
    BIO_free(bio);
    if (pkey != NULL || is_uri)
        return pkey;
    /* A DER reference file: the 'file:' store chains every decoder. */
    store = OSSL_STORE_open_ex(ref, libctx, NULL, NULL, NULL, NULL, NULL, NULL);
    if (store == NULL)
        return NULL;
    OSSL_STORE_expect(store, OSSL_STORE_INFO_PKEY);
    while (pkey == NULL && !OSSL_STORE_eof(store)) {
        OSSL_STORE_INFO *oi = OSSL_STORE_load(store);

        if (oi == NULL)
            break;
        if (OSSL_STORE_INFO_get_type(oi) == OSSL_STORE_INFO_PKEY)
            pkey = OSSL_STORE_INFO_get1_PKEY(oi);
        OSSL_STORE_INFO_free(oi);
    }
    OSSL_STORE_close(store);
    if (pkey != NULL)
        ERR_clear_error(); /* the PEM attempt's noise */
    return pkey;
}

static int hwkey_new(P11B_CONTENDER *c, const P11B_SETUP *s, char *info, size_t infolen, char *err,
                     size_t errlen)
{
    const char *type = c->rsa ? "RSA" : "EC";

    /* hwkey reads its configuration from the environment when not in openssl.cnf. */
    if (getenv("HWKEY_PKCS11_MODULE") == NULL)
        setenv("HWKEY_PKCS11_MODULE", s->module, 1);
    c->libctx = OSSL_LIB_CTX_new();
    if (c->libctx == NULL)
        return ossl_fail("OSSL_LIB_CTX_new", err, errlen);
    if ((c->prov = OSSL_PROVIDER_load(c->libctx, s->provider)) == NULL)
        return ossl_fail(s->provider, err, errlen);
    if ((c->prov_default = OSSL_PROVIDER_load(c->libctx, "default")) == NULL)
        return ossl_fail("loading the default provider", err, errlen);
    if ((c->pkey = load_key(c->libctx, s->key_ref)) == NULL)
        return ossl_fail(s->key_ref, err, errlen);
    /* A key that some other provider holds would measure that provider. */
    if (EVP_PKEY_get0_provider(c->pkey) != c->prov || !EVP_PKEY_is_a(c->pkey, type)) {
        snprintf(err, errlen, "%s: loaded as a %s key of provider %s, want an %s key of hwkey",
                 s->key_ref, EVP_PKEY_get0_type_name(c->pkey),
                 OSSL_PROVIDER_get0_name(EVP_PKEY_get0_provider(c->pkey)), type);
        return 0;
    }
    snprintf(info, infolen, "%s-%d key of %s", type, EVP_PKEY_get_bits(c->pkey), s->provider);
    for (int i = 0; i < c->nthreads; i++) {
        if (c->kind == P11B_DIGESTSIGN) {
            if ((c->mctx[i] = EVP_MD_CTX_new()) == NULL)
                return ossl_fail("EVP_MD_CTX_new", err, errlen);
            continue;
        }
        c->pctx[i] = EVP_PKEY_CTX_new_from_pkey(c->libctx, c->pkey, NULL);
        if (c->pctx[i] == NULL || EVP_PKEY_sign_init(c->pctx[i]) <= 0)
            return ossl_fail("EVP_PKEY_sign_init", err, errlen);
        if ((c->rsa && EVP_PKEY_CTX_set_rsa_padding(c->pctx[i], RSA_PKCS1_PADDING) <= 0) ||
            EVP_PKEY_CTX_set_signature_md(c->pctx[i], EVP_sha256()) <= 0)
            return ossl_fail("setting PKCS#1 v1.5 / SHA-256 on the signing context", err, errlen);
    }
    return 1;
}

static int hwkey_sign(P11B_CONTENDER *c, int t, unsigned char *sig, size_t *siglen, char *err,
                      size_t errlen)
{
    size_t len = P11B_MAX_SIG;

    if (c->kind == P11B_DIGESTSIGN) {
        /* A fresh init per signature, as libssl does for every handshake. */
        if (!EVP_DigestSignInit_ex(c->mctx[t], NULL, "SHA256", c->libctx, NULL, c->pkey, NULL))
            return ossl_fail("EVP_DigestSignInit_ex", err, errlen);
        if (!EVP_DigestSign(c->mctx[t], sig, &len, c->msg, c->msg_len))
            return ossl_fail("EVP_DigestSign", err, errlen);
    } else if (EVP_PKEY_sign(c->pctx[t], sig, &len, c->digest, P11B_DIGEST_LEN) <= 0) {
        return ossl_fail("EVP_PKEY_sign", err, errlen);
    }
    *siglen = len;
    return 1;
}

/* ---- the interface --------------------------------------------------------------- */

P11B_CONTENDER *p11b_contender_new(const P11B_SETUP *s, char *info, size_t infolen, char *err,
                                   size_t errlen)
{
    P11B_CONTENDER *c = calloc(1, sizeof(*c));
    int ok;

    info[0] = '\0';
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->kind = s->kind;
    c->rsa = s->rsa;
    c->nthreads = s->max_threads < 1                  ? 1
                  : s->max_threads > P11B_MAX_THREADS ? P11B_MAX_THREADS
                                                      : s->max_threads;
    c->msg = s->msg;
    c->msg_len = s->msg_len;
    memcpy(c->digest, s->digest, P11B_DIGEST_LEN);
    ok = c->kind == P11B_DIRECT ? direct_new(c, s, info, infolen, err, errlen)
                                : hwkey_new(c, s, info, infolen, err, errlen);
    /*
     * On failure nothing is torn down: the child process exits at once
     * (_exit), and SoftHSM must not be finalised half set up anyway.
     */
    if (!ok) {
        free(c);
        return NULL;
    }
    return c;
}

int p11b_contender_sign(P11B_CONTENDER *c, int thread, unsigned char *sig, size_t *siglen,
                        char *err, size_t errlen)
{
    if (thread < 0 || thread >= c->nthreads) {
        snprintf(err, errlen, "thread slot %d out of range (%d prepared)", thread, c->nthreads);
        return 0;
    }
    return c->kind == P11B_DIRECT ? direct_sign(c, thread, sig, siglen, err, errlen)
                                  : hwkey_sign(c, thread, sig, siglen, err, errlen);
}

int p11b_contender_pubkey(P11B_CONTENDER *c, unsigned char *der, size_t *len)
{
    unsigned char *p = der;
    int n;

    if (c->pkey == NULL)
        return 0;
    n = i2d_PUBKEY(c->pkey, NULL);
    if (n <= 0 || (size_t)n > *len)
        return 0;
    n = i2d_PUBKEY(c->pkey, &p);
    if (n <= 0)
        return 0;
    *len = (size_t)n;
    return 1;
}
