/*
 * Private-key operations on the token: exactly one single-part operation per
 * call (C_SignInit + C_Sign, C_DecryptInit + C_Decrypt, C_DeriveKey).  The
 * digest is computed in software by the caller (ARCHITECTURE.md §7), so no
 * multi-part C_SignUpdate ever happens (CloudHSM quirk single-part-only holds
 * by construction), and C_GetOperationState is never used.
 *
 * Each operation runs through run_op(): take a logged-in session and the key's
 * current object handle; on a stale handle, a logged-out token or a dead
 * session, repair once and retry once.
 */
#include "backend/pkcs11/p11_internal.h"

#include <string.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>

#include "util/error.h"
#include "util/testhook.h"
#include "util/secmem.h"

typedef struct {
    CK_MECHANISM mech;
    const unsigned char *in;
    size_t inlen;
    unsigned char *out;
    CK_ULONG outlen;
    CK_ULONG outlen0; /* outlen as asked: each attempt starts from it */
    int decrypt;      /* C_Decrypt rather than C_Sign */
    CK_ULONG field;   /* ECDH: bytes of the shared secret */
    int init_failed;  /* C_*Init refused: mechanism/parameters, not data */
} P11_OP;

static CK_RV one_op(HWKEY_P11_KEY *key, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj, P11_OP *op,
                    int *broken)
{
    CK_FUNCTION_LIST *fl = key->tok->mod->fl;
    CK_RV rv;

    if (op->mech.mechanism == CKM_ECDH1_DERIVE) {
        static CK_OBJECT_CLASS klass = CKO_SECRET_KEY;
        static CK_KEY_TYPE type = CKK_GENERIC_SECRET;
        static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ULONG vlen = op->field;
        CK_ATTRIBUTE t[] = {
            {CKA_CLASS, &klass, sizeof(klass)},   {CKA_KEY_TYPE, &type, sizeof(type)},
            {CKA_TOKEN, &no, sizeof(no)},         {CKA_SENSITIVE, &no, sizeof(no)},
            {CKA_EXTRACTABLE, &yes, sizeof(yes)}, {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
        };
        CK_ATTRIBUTE v = {CKA_VALUE, op->out, op->outlen};
        CK_OBJECT_HANDLE secret = CK_INVALID_HANDLE;

        ERR_set_mark();
        rv = fl->C_DeriveKey(s, &op->mech, obj, t, sizeof(t) / sizeof(t[0]), &secret);
        if (rv == CKR_OK) {
            rv = fl->C_GetAttributeValue(s, secret, &v, 1);
            /* A session object: gone with the session anyway, but do not leave it around. */
            fl->C_DestroyObject(s, secret);
            op->outlen = v.ulValueLen;
        }
        ERR_pop_to_mark();
        return rv;
    }
    /*
     * Module calls run inside an error mark: SoftHSM's in-process OpenSSL
     * leaves its own failures in this thread's queue (a bad ciphertext:
     * "rsa routines::padding check failed"), where they would come before
     * the one error the caller raises and tell a PKCS#1 failure from an
     * OAEP one.  A module call raises nothing of ours, so all of it goes.
     */
    ERR_set_mark();
    rv = op->decrypt ? fl->C_DecryptInit(s, &op->mech, obj) : fl->C_SignInit(s, &op->mech, obj);
    ERR_pop_to_mark();
    op->init_failed = rv != CKR_OK;
    if (rv != CKR_OK)
        return rv;
    if (key->always_auth && !hwkey_p11_login_context(key->tok, s)) {
        *broken = 1; /* an operation is still active on it */
        return CKR_USER_NOT_LOGGED_IN;
    }
    ERR_set_mark();
    if (op->decrypt)
        rv = fl->C_Decrypt(s, (CK_BYTE *)op->in, op->inlen, op->out, &op->outlen);
    else
        rv = fl->C_Sign(s, (CK_BYTE *)op->in, op->inlen, op->out, &op->outlen);
    ERR_pop_to_mark();
    return rv;
}

/*
 * SoftHSM 2.6 answers CKR_GENERAL_ERROR to a C_Decrypt whose ciphertext does
 * not decrypt (seen with a probe against it), a code that otherwise says the
 * device is lost.  After this attempt's C_DecryptInit succeeded it is the
 * data being refused: re-initialising the module for it would drop every
 * session on each bad ciphertext and make bad padding much slower than good
 * padding (a timing oracle).  A device really lost meanwhile is met by the
 * next call's C_*Init.
 */
static int data_refused(const P11_OP *op, CK_RV rv)
{
    return op->decrypt && !op->init_failed && rv == CKR_GENERAL_ERROR;
}

/*
 * 1 done; 0 with *rv set when the device refused (the caller raises: decrypt
 * hides details); -1 raised.  On a stale handle, a logged-out token or a dead
 * session, repair once and retry; on a lost device (p11_recover.c)
 * re-initialise the module once and retry, so a request that arrives after
 * the device came back succeeds (recover = 0: a failover replica, which
 * fails at once so that another token takes the operation).  Errors of a
 * first try that then succeeded are dropped (error mark).
 */
static int run_on(HWKEY_P11_KEY *key, void *vop, CK_RV *rv, int recover)
{
    P11_OP *op = vop;
    int recovered = !recover, r = 0;

    *rv = CKR_GENERAL_ERROR;
    ERR_set_mark();
    for (int attempt = 0; attempt < 3; attempt++) {
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE obj;
        uint64_t epoch;
        int broken = 0, lost;

        if (!hwkey_p11_key_acquire_recovering(key, &s, &epoch, &obj, &recovered)) {
            r = -1;
            break;
        }
        HWKEY_TEST_POINT("p11-sign");
        op->outlen = op->outlen0;
        *rv = one_op(key, s, obj, op, &broken);
        lost = hwkey_p11_rv_device_lost(*rv) && !data_refused(op, *rv);
        hwkey_p11_session_put(key->tok, s, epoch, broken || hwkey_p11_rv_session_dead(*rv) || lost);
        if (*rv == CKR_OK) {
            ERR_pop_to_mark();
            return 1;
        }
        if (*rv == CKR_OBJECT_HANDLE_INVALID || *rv == CKR_KEY_HANDLE_INVALID) {
            hwkey_p11_key_forget_handle(key);
        } else if (*rv == CKR_USER_NOT_LOGGED_IN && !broken) {
            pthread_mutex_lock(&key->tok->lock);
            key->tok->logged_in = 0;
            pthread_mutex_unlock(&key->tok->lock);
        } else if (lost && !recovered) {
            recovered = 1;
            if (!hwkey_p11_recover(key->tok, epoch, *rv)) {
                r = -1;
                break;
            }
        } else {
            break;
        }
    }
    ERR_clear_last_mark();
    return r;
}

/*
 * A key on several tokens (pkcs11-failover) runs on one of them, and on
 * another if that one is lost (p11_replicas.c); recovery there is the
 * replica set's business.
 */
static int run_op(HWKEY_P11_KEY *key, P11_OP *op, CK_RV *rv)
{
    op->outlen0 = op->outlen;
    if (key->reps != NULL)
        return hwkey_p11_replicas_run(key, run_on, op, rv);
    return run_on(key, op, rv, 1);
}

/* Returns 0; the macro makes the error's location the caller's line. */
static int raise_rv_at(const char *file, int line, const char *func, CK_RV rv,
                       const HWKEY_P11_KEY *key, const char *what)
{
    hwkey_raise_at(file, line, func, hwkey_p11_rv_reason(rv), "%s with token key \"%s\" failed: %s",
                   what, key->label != NULL ? key->label : "", hwkey_p11_rv_name(rv));
    return 0;
}
#define raise_rv(rv, key, what)                                                                    \
    raise_rv_at(OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, (rv), (key), (what))

static size_t modulus_bytes(const HWKEY_P11_KEY *key)
{
    return key->pub_a_len;
}

static size_t field_bytes(const HWKEY_P11_KEY *key)
{
    return ((size_t)key->base.info.bits + 7) / 8;
}

/* --- digests -------------------------------------------------------------- */

static const struct {
    int nid;
    CK_MECHANISM_TYPE hash;
    CK_RSA_PKCS_MGF_TYPE mgf;
    size_t len;
    unsigned char prefix[19];
    size_t prefix_len;
} digests[] = {
    {NID_sha1,
     CKM_SHA_1,
     CKG_MGF1_SHA1,
     20,
     {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
     15},
    {NID_sha224,
     CKM_SHA224,
     CKG_MGF1_SHA224,
     28,
     {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04,
      0x05, 0x00, 0x04, 0x1c},
     19},
    {NID_sha256,
     CKM_SHA256,
     CKG_MGF1_SHA256,
     32,
     {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
      0x05, 0x00, 0x04, 0x20},
     19},
    {NID_sha384,
     CKM_SHA384,
     CKG_MGF1_SHA384,
     48,
     {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
      0x05, 0x00, 0x04, 0x30},
     19},
    {NID_sha512,
     CKM_SHA512,
     CKG_MGF1_SHA512,
     64,
     {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
      0x05, 0x00, 0x04, 0x40},
     19},
};

static int digest_index(int nid)
{
    for (size_t i = 0; i < sizeof(digests) / sizeof(digests[0]); i++)
        if (digests[i].nid == nid)
            return (int)i;
    hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST,
                "digest %s is not one of SHA-1, SHA-224, SHA-256, "
                "SHA-384, SHA-512",
                OBJ_nid2sn(nid));
    return -1;
}

/* --- sign ------------------------------------------------------------------ */

/* Largest DER ECDSA-Sig-Value for a field of n bytes. */
static size_t ecdsa_der_max(size_t n)
{
    size_t ints = 2 * (n + 1 + 2);

    return ints + (ints < 128 ? 2 : 3);
}

static int raw_to_der(const unsigned char *raw, size_t rawlen, unsigned char *der, size_t *derlen)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)(rawlen / 2), NULL);
    BIGNUM *s = BN_bin2bn(raw + rawlen / 2, (int)(rawlen / 2), NULL);
    unsigned char *p = der;
    int len, ok = 0;

    if (sig != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(sig, r, s)) {
        r = s = NULL;
        /* Measure first: never write past the caller's buffer. */
        len = i2d_ECDSA_SIG(sig, NULL);
        if (len > 0 && (size_t)len > *derlen) {
            hwkey_raise(HWKEY_R_BUFFER_TOO_SMALL, "signature buffer of %zu bytes, need %d", *derlen,
                        len);
            goto end;
        }
        if (len > 0 && i2d_ECDSA_SIG(sig, &p) == len) {
            *derlen = (size_t)len;
            ok = 1;
        }
    }
    if (!ok)
        hwkey_raise(HWKEY_R_INTERNAL, "encoding the token's r||s as DER failed");
end:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return ok;
}

int hwkey_p11_sign(HWKEY_BKEY *bkey, const HWKEY_SIGN_PARAMS *params, const unsigned char *tbs,
                   size_t tbslen, unsigned char *sig, size_t *siglen)
{
    HWKEY_P11_KEY *key = (HWKEY_P11_KEY *)bkey;
    CK_RSA_PKCS_PSS_PARAMS pss;
    unsigned char buf[19 + 64 + 132]; /* DigestInfo input, or ECDSA raw output */
    unsigned char raw[132];
    P11_OP op;
    size_t max;
    CK_RV rv;
    int di, r;

    memset(&op, 0, sizeof(op));
    op.in = tbs;
    op.inlen = tbslen;
    op.out = sig;
    switch (params->scheme) {
    case HWKEY_SIG_ECDSA:
        if (key->ktype != CKK_EC)
            goto wrongkey;
        op.mech.mechanism = CKM_ECDSA;
        op.out = raw;
        op.outlen = 2 * field_bytes(key);
        max = ecdsa_der_max(field_bytes(key));
        break;
    case HWKEY_SIG_RSA_PKCS1:
        if (key->ktype != CKK_RSA)
            goto wrongkey;
        op.mech.mechanism = CKM_RSA_PKCS;
        op.outlen = max = modulus_bytes(key);
        if (params->md_nid != NID_undef && params->md_nid != NID_md5_sha1) {
            if ((di = digest_index(params->md_nid)) < 0)
                return 0;
            if (tbslen != digests[di].len)
                goto badlen;
            memcpy(buf, digests[di].prefix, digests[di].prefix_len);
            memcpy(buf + digests[di].prefix_len, tbs, tbslen);
            op.in = buf;
            op.inlen = digests[di].prefix_len + tbslen;
        }
        break;
    case HWKEY_SIG_RSA_PSS:
        if (key->ktype != CKK_RSA)
            goto wrongkey;
        if ((di = digest_index(params->md_nid)) < 0)
            return 0;
        if (tbslen != digests[di].len)
            goto badlen;
        pss.hashAlg = digests[di].hash;
        if ((di = digest_index(params->mgf1_md_nid != NID_undef ? params->mgf1_md_nid
                                                                : params->md_nid)) < 0)
            return 0;
        pss.mgf = digests[di].mgf;
        if (params->salt_len < 0 || (size_t)params->salt_len + tbslen + 2 > modulus_bytes(key)) {
            hwkey_raise(HWKEY_R_INVALID_SALT_LENGTH,
                        "PSS salt length %d does not fit a %d-bit "
                        "key with a %zu-byte digest",
                        params->salt_len, key->base.info.bits, tbslen);
            return 0;
        }
        pss.sLen = (CK_ULONG)params->salt_len;
        op.mech.mechanism = CKM_RSA_PKCS_PSS;
        op.mech.pParameter = &pss;
        op.mech.ulParameterLen = sizeof(pss);
        op.outlen = max = modulus_bytes(key);
        break;
    case HWKEY_SIG_EDDSA:
        if (key->ktype != CKK_EC_EDWARDS)
            goto wrongkey;
        op.mech.mechanism = CKM_EDDSA;
        op.outlen = max = 64;
        break;
    default:
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "unknown signature scheme %d",
                    (int)params->scheme);
        return 0;
    }
    if (sig == NULL) {
        *siglen = max;
        return 1;
    }
    /*
     * ECDSA: the DER length is known only after signing, and callers size the
     * buffer with OpenSSL's ECDSA_size() (139 for P-521), which is below the
     * worst case computed here; raw_to_der() checks the real length.
     */
    if (params->scheme != HWKEY_SIG_ECDSA && *siglen < max) {
        hwkey_raise(HWKEY_R_BUFFER_TOO_SMALL, "signature buffer of %zu bytes, need %zu", *siglen,
                    max);
        return 0;
    }
    if ((r = run_op(key, &op, &rv)) <= 0)
        return r < 0 ? 0 : raise_rv(rv, key, "C_Sign");
    if (params->scheme == HWKEY_SIG_ECDSA) {
        if (op.outlen != 2 * field_bytes(key) || op.outlen % 2 != 0) {
            hwkey_raise(HWKEY_R_DEVICE_ERROR, "token returned an ECDSA signature of %lu bytes",
                        (unsigned long)op.outlen);
            return 0;
        }
        return raw_to_der(raw, op.outlen, sig, siglen);
    }
    *siglen = op.outlen;
    return 1;
wrongkey:
    hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "signature scheme %d does not fit this key type",
                (int)params->scheme);
    return 0;
badlen:
    hwkey_raise(HWKEY_R_BAD_ARGUMENT, "digest of %zu bytes does not match %s", tbslen,
                OBJ_nid2sn(params->md_nid));
    return 0;
}

int hwkey_p11_rsa_private(HWKEY_BKEY *bkey, const unsigned char *in, size_t inlen,
                          unsigned char *out, size_t *outlen)
{
    HWKEY_P11_KEY *key = (HWKEY_P11_KEY *)bkey;
    P11_OP op;
    CK_RV rv;
    int r;

    if (out == NULL) {
        *outlen = modulus_bytes(key);
        return 1;
    }
    if (inlen != modulus_bytes(key) || *outlen < modulus_bytes(key)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "raw RSA needs %zu input and output bytes",
                    modulus_bytes(key));
        return 0;
    }
    memset(&op, 0, sizeof(op));
    op.mech.mechanism = CKM_RSA_X_509;
    op.in = in;
    op.inlen = inlen;
    op.out = out;
    op.outlen = modulus_bytes(key);
    if ((r = run_op(key, &op, &rv)) <= 0)
        return r < 0 ? 0 : raise_rv(rv, key, "C_Sign(CKM_RSA_X_509)");
    /* Tokens may strip leading zeros; the caller expects a full-width block. */
    if (op.outlen < inlen) {
        memmove(out + (inlen - op.outlen), out, op.outlen);
        memset(out, 0, inlen - op.outlen);
    }
    *outlen = inlen;
    return 1;
}

int hwkey_p11_rsa_decrypt(HWKEY_BKEY *bkey, const HWKEY_DECRYPT_PARAMS *params,
                          const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen)
{
    HWKEY_P11_KEY *key = (HWKEY_P11_KEY *)bkey;
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    size_t k = modulus_bytes(key);
    unsigned char *plain = NULL;
    P11_OP op;
    CK_RV rv;
    int di, r, ok = 0;

    if (out == NULL) {
        *outlen = k;
        return 1;
    }
    memset(&op, 0, sizeof(op));
    op.decrypt = 1;
    if (params->padding == HWKEY_PAD_OAEP) {
        if ((di = digest_index(params->oaep_md_nid)) < 0)
            return 0;
        oaep.hashAlg = digests[di].hash;
        if ((di = digest_index(params->mgf1_md_nid != NID_undef ? params->mgf1_md_nid
                                                                : params->oaep_md_nid)) < 0)
            return 0;
        oaep.mgf = digests[di].mgf;
        oaep.source = CKZ_DATA_SPECIFIED;
        oaep.pSourceData = (void *)params->label;
        oaep.ulSourceDataLen = params->label_len;
        op.mech.mechanism = CKM_RSA_PKCS_OAEP;
        op.mech.pParameter = &oaep;
        op.mech.ulParameterLen = sizeof(oaep);
    } else if (params->padding == HWKEY_PAD_PKCS1) {
        op.mech.mechanism = CKM_RSA_PKCS;
    } else {
        hwkey_raise(HWKEY_R_UNSUPPORTED_PADDING, "RSA decryption padding %d", (int)params->padding);
        return 0;
    }
    /* The plaintext is often a key: protected memory until the caller's buffer. */
    if ((plain = hwkey_secmem_alloc(k)) == NULL)
        return 0;
    op.in = in;
    op.inlen = inlen;
    op.out = plain;
    op.outlen = k;
    if ((r = run_op(key, &op, &rv)) <= 0) {
        /*
         * One fixed message whatever the token said: distinguishable padding
         * errors are a Bleichenbacher/Manger oracle.
         */
        if (r == 0 && op.init_failed)
            /* Refused before seeing the ciphertext (SoftHSM 2.6: OAEP with SHA-1 only). */
            hwkey_raise(rv == CKR_MECHANISM_PARAM_INVALID || rv == CKR_ARGUMENTS_BAD ||
                                rv == CKR_MECHANISM_INVALID
                            ? HWKEY_R_UNSUPPORTED_PADDING
                            : hwkey_p11_rv_reason(rv),
                        "C_DecryptInit with token key \"%s\" failed: %s",
                        key->label != NULL ? key->label : "", hwkey_p11_rv_name(rv));
        else if (r == 0)
            hwkey_raise(HWKEY_R_DECRYPTION_FAILED, "decryption failed");
        goto end;
    }
    if (op.outlen > *outlen) {
        hwkey_raise(HWKEY_R_BUFFER_TOO_SMALL, "plaintext buffer too small");
        goto end;
    }
    memcpy(out, plain, op.outlen);
    *outlen = op.outlen;
    ok = 1;
end:
    hwkey_secmem_free(plain);
    return ok;
}

int hwkey_p11_ecdh(HWKEY_BKEY *bkey, const unsigned char *peer, size_t peerlen, unsigned char *out,
                   size_t *outlen)
{
    HWKEY_P11_KEY *key = (HWKEY_P11_KEY *)bkey;
    CK_ECDH1_DERIVE_PARAMS dp;
    size_t n = field_bytes(key);
    P11_OP op;
    CK_RV rv;
    int r;

    if (key->ktype != CKK_EC) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "ECDH needs an EC key");
        return 0;
    }
    if (out == NULL) {
        *outlen = n;
        return 1;
    }
    if (peerlen != 1 + 2 * n || peer[0] != 0x04) {
        hwkey_raise(HWKEY_R_INVALID_PEER_KEY,
                    "peer key is not an uncompressed point of this "
                    "curve (%zu bytes, want %zu)",
                    peerlen, 1 + 2 * n);
        return 0;
    }
    if (*outlen < n) {
        hwkey_raise(HWKEY_R_BUFFER_TOO_SMALL, "shared secret buffer of %zu bytes, need %zu",
                    *outlen, n);
        return 0;
    }
    memset(&op, 0, sizeof(op));
    dp.kdf = CKD_NULL;
    dp.ulSharedDataLen = 0;
    dp.pSharedData = NULL;
    dp.ulPublicDataLen = peerlen;
    dp.pPublicData = (CK_BYTE *)peer;
    op.mech.mechanism = CKM_ECDH1_DERIVE;
    op.mech.pParameter = &dp;
    op.mech.ulParameterLen = sizeof(dp);
    op.field = n;
    op.out = out;
    op.outlen = n;
    if ((r = run_op(key, &op, &rv)) <= 0)
        return r < 0 ? 0 : raise_rv(rv, key, "C_DeriveKey(CKM_ECDH1_DERIVE)");
    *outlen = op.outlen;
    return 1;
}
