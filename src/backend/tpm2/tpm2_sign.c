/*
 * Private-key operations: one TPM command each in steady state behind a
 * resource manager (sign, RSA_Decrypt, ECDH_ZGen); without one, ContextLoad
 * and FlushContext frame the command (tpm2_keyload.c).
 */
#include "backend/tpm2/tpm2_internal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>

#include "backend/tpm2/tpm2_dup.h"
#include "util/error.h"
#include "util/testhook.h"

/*
 * One attempt: 1 ran (result in *cmd_rc), 0 failed (error raised), -1 the
 * connection broke under a connection made earlier (error raised): worth
 * one more attempt on a fresh one, because swtpm or tpm2-abrmd may have
 * restarted while we were idle.
 */
static int run_once(HWKEY_TPM2_KEY *key, const char *name, hwkey_tpm2_cmd_fn *fn, void *arg,
                    TSS2_RC *cmd_rc)
{
    HWKEY_TPM2_DEVICE *dev = (HWKEY_TPM2_DEVICE *)key->base.device;
    HWKEY_TPM2_RETRY retry = {0};
    ESYS_CONTEXT *esys;
    ESYS_TR tr = ESYS_TR_NONE, session = ESYS_TR_NONE;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    int ran = 0, reused;

    if ((esys = hwkey_tpm2_acquire(dev)) == NULL)
        return 0;
    reused = dev->conn_used;
    if (!hwkey_tpm2_key_get(key, esys, &tr))
        goto end;
    if (!hwkey_tpm2_session_start(key, esys, &session))
        goto end;
    HWKEY_TEST_POINT("tpm2-command");
    do {
        rc = fn(esys, tr, session, arg);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (hwkey_tpm2_reason(rc) == HWKEY_R_DEVICE_UNREACHABLE) {
        char what[300];

        snprintf(what, sizeof(what), "%s: lost the TPM connection through TCTI \"%s\"", name,
                 dev->tcti_conf);
        hwkey_tpm2_raise_rc(rc, what);
        hwkey_tpm2_note_rc(dev, rc);
        goto end; /* nothing can be flushed through a dead context */
    }
    /* The caller raises rc after release: let the device judge it while held (stale handles). */
    hwkey_tpm2_rc_seen(rc);
    hwkey_tpm2_wipe_response(esys); /* a decrypted secret or ECDH Z must not stay in ESYS */
    hwkey_tpm2_session_scrub(esys, session, tr, key->has_auth ? key->auth : NULL);
    hwkey_tpm2_session_end(esys, &session, rc);
    *cmd_rc = rc;
    ran = 1;
end:
    if (dev->esys == esys && !dev->broken) {
        hwkey_tpm2_session_end(esys, &session, TPM2_RC_FAILURE);
        hwkey_tpm2_key_put(key, esys, &tr);
    } else if (reused && ran == 0) {
        ran = -1;
    }
    hwkey_tpm2_release(dev);
    return ran;
}

/*
 * Runs one command on the key with retries.  Returns 0 (error raised) when
 * the command could not be issued; 1 when it ran, with its result in *cmd_rc
 * for the caller to judge (decrypt must hide the reason).
 */
static int run_on_key(HWKEY_TPM2_KEY *key, const char *name, hwkey_tpm2_cmd_fn *fn, void *arg,
                      TSS2_RC *cmd_rc)
{
    int ran;

    ERR_set_mark();
    ran = run_once(key, name, fn, arg, cmd_rc);
    if (ran == -1) {
        /* The first error was the stale connection: report only the retry's. */
        ERR_pop_to_mark();
        ran = run_once(key, name, fn, arg, cmd_rc);
    } else {
        ERR_clear_last_mark();
    }
    return ran == 1;
}

static size_t digest_size(int md_nid)
{
    switch (md_nid) {
    case NID_sha1:
        return 20;
    case NID_sha256:
        return 32;
    case NID_sha384:
        return 48;
    case NID_sha512:
        return 64;
    default:
        return 0;
    }
}

/* Largest DER ECDSA-Sig-Value for a field of n bytes. */
static size_t ecdsa_der_max(size_t n)
{
    size_t content = 2 * (n + 1 + 2); /* two INTEGERs: tag, length, 0x00 + n bytes */

    return content + (content < 128 ? 2 : 3);
}

static size_t key_bytes(const HWKEY_TPM2_KEY *key)
{
    return (size_t)(key->base.info.bits + 7) / 8;
}

static int check_out(unsigned char *out, size_t *outlen, size_t need)
{
    if (out != NULL && *outlen < need) {
        hwkey_raise(HWKEY_R_BUFFER_TOO_SMALL, "output buffer of %zu bytes, %zu needed", *outlen,
                    need);
        return 0;
    }
    return 1;
}

/* Copy a big-endian number into out[0..n), left-padded with zeros. */
static int left_pad(const unsigned char *src, size_t srclen, unsigned char *out, size_t n)
{
    while (srclen > n && *src == 0) {
        src++;
        srclen--;
    }
    if (srclen > n)
        return 0;
    memset(out, 0, n - srclen);
    memcpy(out + n - srclen, src, srclen);
    return 1;
}

/* --- sign ------------------------------------------------------------------ */

typedef struct {
    TPM2B_DIGEST digest;
    TPMT_SIG_SCHEME scheme;
    TPMT_SIGNATURE *sig;
} SIGN_ARGS;

static TSS2_RC do_sign(ESYS_CONTEXT *esys, ESYS_TR key, ESYS_TR session, void *arg)
{
    SIGN_ARGS *a = arg;
    /* A NULL ticket: the digest was made outside the TPM, fine for unrestricted keys. */
    const TPMT_TK_HASHCHECK ticket = {.tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL};

    return Esys_Sign(esys, key, session, ESYS_TR_NONE, ESYS_TR_NONE, &a->digest, &a->scheme,
                     &ticket, &a->sig);
}

static int ecdsa_to_der(const TPMS_SIGNATURE_ECC *ecc, unsigned char *sig, size_t *siglen)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(ecc->signatureR.buffer, ecc->signatureR.size, NULL);
    BIGNUM *s = BN_bin2bn(ecc->signatureS.buffer, ecc->signatureS.size, NULL);
    unsigned char *p = sig;
    int len, ok = 0;

    if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "encoding the ECDSA signature");
        goto end;
    }
    r = s = NULL; /* owned by es */
    if ((len = i2d_ECDSA_SIG(es, NULL)) <= 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "encoding the ECDSA signature");
        goto end;
    }
    if (!check_out(sig, siglen, (size_t)len))
        goto end;
    i2d_ECDSA_SIG(es, &p);
    *siglen = (size_t)len;
    ok = 1;
end:
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return ok;
}

/*
 * ECDSA signs the integer e made of the leftmost min(N, 8 * hlen) bits of the
 * digest, N the bit length of the curve order (FIPS 186-4 6.4, SEC 1 4.1.3),
 * so any digest the application chose can be signed.  The TPM, though, takes
 * only a digest of a hash it implements, of exactly that hash's size
 * (TPM2_Sign: TPM_RC_SIZE), and derives e from it the same way.  So e is
 * computed here and handed over as a digest D of a scheme hash the TPM has:
 * D = e left-padded with zeros when the scheme digest has at most N bits (the
 * TPM reads D as a big-endian integer: leading zeros keep e), else
 * e << (8 * dlen - N), which the TPM's own truncation shifts back to e.
 * SHA-224 or SHA3-256 on P-256 (TLS sig_algs ecdsa_secp256r1_sha224) and any
 * hash on P-521 work this way, with a signature the default provider verifies.
 */
static TPMI_ALG_HASH ecdsa_scheme_hash(const HWKEY_TPM2_KEY *key, size_t *dlen)
{
    const TPMT_ECC_SCHEME *fixed = &key->pub.publicArea.parameters.eccDetail.scheme;
    int n = key->base.info.bits;

    /* A key created with a fixed scheme signs with that scheme's hash only. */
    if (fixed->scheme == TPM2_ALG_ECDSA) {
        if ((*dlen = hwkey_tpm2_hash_size(fixed->details.anySig.hashAlg)) == 0)
            return TPM2_ALG_ERROR;
        return fixed->details.anySig.hashAlg;
    }
    /* Else the hash the curve is paired with, which every TPM with the curve has. */
    if (n <= 256) {
        *dlen = 32;
        return TPM2_ALG_SHA256;
    }
    if (n <= 384) {
        *dlen = 48;
        return TPM2_ALG_SHA384;
    }
    *dlen = 64;
    return TPM2_ALG_SHA512;
}

/* D for the TPM from the caller's digest (see above); 0 if e cannot be expressed in dlen bytes. */
static int ecdsa_tpm_digest(const unsigned char *tbs, size_t tbslen, int n, unsigned char *d,
                            size_t dlen)
{
    BIGNUM *e = BN_bin2bn(tbs, (int)tbslen, NULL);
    int ok = e != NULL;

    if (ok && 8 * tbslen > (size_t)n)
        ok = BN_rshift(e, e, (int)(8 * tbslen - (size_t)n));
    if (ok && 8 * dlen > (size_t)n)
        ok = BN_lshift(e, e, (int)(8 * dlen - (size_t)n));
    ok = ok && BN_bn2binpad(e, d, (int)dlen) == (int)dlen;
    BN_free(e);
    return ok;
}

/*
 * The salt the TPM uses for RSASSA-PSS.  The TPM 2.0 reference code (and so
 * libtpms/swtpm) uses a salt as long as the digest, clipped by the modulus.
 */
static int tpm_pss_salt(size_t k, size_t hlen)
{
    size_t max = k >= hlen + 2 ? k - hlen - 2 : 0;

    return (int)(hlen < max ? hlen : max);
}

int hwkey_tpm2_sign(HWKEY_BKEY *base, const HWKEY_SIGN_PARAMS *params, const unsigned char *tbs,
                    size_t tbslen, unsigned char *sig, size_t *siglen)
{
    HWKEY_TPM2_KEY *key = (HWKEY_TPM2_KEY *)base;
    SIGN_ARGS a;
    size_t hlen = digest_size(params->md_nid);
    size_t k = key_bytes(key);
    TPMI_ALG_HASH halg = hwkey_tpm2_hash_alg(params->md_nid);
    int is_ec = key->base.info.alg == HWKEY_ALG_EC;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    int ok = 0;

    memset(&a, 0, sizeof(a));
    if (params->scheme != HWKEY_SIG_ECDSA && (halg == TPM2_ALG_ERROR || hlen == 0)) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST, "the TPM signs SHA-1/256/384/512 digests, not %s",
                    OBJ_nid2sn(params->md_nid));
        return 0;
    }
    switch (params->scheme) {
    case HWKEY_SIG_ECDSA:
        if (!is_ec)
            goto wrong_scheme;
        if (sig == NULL) {
            *siglen = ecdsa_der_max(k);
            return 1;
        }
        /* Whatever digest came (its hash is not the TPM's business): see ecdsa_tpm_digest. */
        a.scheme.scheme = TPM2_ALG_ECDSA;
        a.scheme.details.ecdsa.hashAlg = ecdsa_scheme_hash(key, &hlen);
        if (a.scheme.details.ecdsa.hashAlg == TPM2_ALG_ERROR || tbslen == 0 ||
            tbslen > sizeof(a.digest.buffer) ||
            !ecdsa_tpm_digest(tbs, tbslen, key->base.info.bits, a.digest.buffer, hlen)) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST,
                        "this TPM key cannot sign a %zu-byte ECDSA digest (its scheme fixes "
                        "another hash)",
                        tbslen);
            return 0;
        }
        a.digest.size = (UINT16)hlen;
        break;
    case HWKEY_SIG_RSA_PSS:
        if (params->mgf1_md_nid != 0 && params->mgf1_md_nid != params->md_nid) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_PADDING,
                        "the TPM's RSA-PSS uses MGF1 with the message digest only");
            return 0;
        }
        if (params->salt_len != tpm_pss_salt(k, hlen)) {
            hwkey_raise(HWKEY_R_INVALID_SALT_LENGTH,
                        "this TPM key signs RSA-PSS with a %d-byte salt only, %d asked",
                        tpm_pss_salt(k, hlen), params->salt_len);
            return 0;
        }
        /* fall through */
    case HWKEY_SIG_RSA_PKCS1:
        if (is_ec)
            goto wrong_scheme;
        a.scheme.scheme = params->scheme == HWKEY_SIG_RSA_PSS ? TPM2_ALG_RSAPSS : TPM2_ALG_RSASSA;
        a.scheme.details.rsassa.hashAlg = halg; /* same layout for rsapss */
        if (sig == NULL) {
            *siglen = k;
            return 1;
        }
        if (!check_out(sig, siglen, k))
            return 0;
        break;
    default:
        goto wrong_scheme;
    }
    if (!is_ec) {
        if (tbslen != hlen) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "a %zu-byte digest does not match %s", tbslen,
                        OBJ_nid2sn(params->md_nid));
            return 0;
        }
        a.digest.size = (UINT16)tbslen;
        memcpy(a.digest.buffer, tbs, tbslen);
    }
    if (!run_on_key(key, "TPM2_Sign", do_sign, &a, &rc))
        return 0;
    if (rc != TSS2_RC_SUCCESS)
        return hwkey_tpm2_raise_rc(rc, "TPM2_Sign");
    if (is_ec) {
        ok = ecdsa_to_der(&a.sig->signature.ecdsa, sig, siglen);
    } else {
        const TPM2B_PUBLIC_KEY_RSA *s = &a.sig->signature.rsassa.sig;

        ok = left_pad(s->buffer, s->size, sig, k);
        if (!ok)
            hwkey_raise(HWKEY_R_DEVICE_ERROR, "the TPM returned a %u-byte RSA signature",
                        (unsigned int)s->size);
        *siglen = k;
    }
    Esys_Free(a.sig);
    return ok;
wrong_scheme:
    hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "signature scheme %d does not fit this %s key",
                (int)params->scheme, is_ec ? "EC" : "RSA");
    return 0;
}

/* --- RSA ------------------------------------------------------------------- */

typedef struct {
    TPM2B_PUBLIC_KEY_RSA in;
    TPMT_RSA_DECRYPT scheme;
    TPM2B_DATA label;
    TPM2B_PUBLIC_KEY_RSA *out;
} DECRYPT_ARGS;

static TSS2_RC do_decrypt(ESYS_CONTEXT *esys, ESYS_TR key, ESYS_TR session, void *arg)
{
    DECRYPT_ARGS *a = arg;

    return Esys_RSA_Decrypt(esys, key, session, ESYS_TR_NONE, ESYS_TR_NONE, &a->in, &a->scheme,
                            &a->label, &a->out);
}

static void decrypt_args_clear(DECRYPT_ARGS *a)
{
    if (a->out != NULL) {
        OPENSSL_cleanse(a->out, sizeof(*a->out));
        Esys_Free(a->out);
    }
    OPENSSL_cleanse(a, sizeof(*a));
}

int hwkey_tpm2_rsa_private(HWKEY_BKEY *base, const unsigned char *in, size_t inlen,
                           unsigned char *out, size_t *outlen)
{
    HWKEY_TPM2_KEY *key = (HWKEY_TPM2_KEY *)base;
    const TPM2B_PUBLIC_KEY_RSA *n = &key->pub.publicArea.unique.rsa;
    size_t k = key_bytes(key);
    DECRYPT_ARGS a;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    int ok = 0;

    if (out == NULL) {
        *outlen = k;
        return 1;
    }
    if (!check_out(out, outlen, k))
        return 0;
    /* The TPM refuses inputs >= n with a bare TPM_RC_VALUE: say why first. */
    if (inlen != k || n->size != k || memcmp(in, n->buffer, k) >= 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "raw RSA input must be %zu bytes and smaller than the modulus", k);
        return 0;
    }
    memset(&a, 0, sizeof(a));
    a.in.size = (UINT16)inlen;
    memcpy(a.in.buffer, in, inlen);
    a.scheme.scheme = TPM2_ALG_NULL;
    if (!run_on_key(key, "TPM2_RSA_Decrypt", do_decrypt, &a, &rc))
        goto end;
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, "TPM2_RSA_Decrypt (raw RSA)");
        goto end;
    }
    if (!left_pad(a.out->buffer, a.out->size, out, k)) {
        hwkey_raise(HWKEY_R_DEVICE_ERROR, "the TPM returned a %u-byte raw RSA result",
                    (unsigned int)a.out->size);
        goto end;
    }
    *outlen = k;
    ok = 1;
end:
    decrypt_args_clear(&a);
    return ok;
}

int hwkey_tpm2_rsa_decrypt(HWKEY_BKEY *base, const HWKEY_DECRYPT_PARAMS *params,
                           const unsigned char *in, size_t inlen, unsigned char *out,
                           size_t *outlen)
{
    HWKEY_TPM2_KEY *key = (HWKEY_TPM2_KEY *)base;
    size_t k = key_bytes(key);
    DECRYPT_ARGS a;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    int ok = 0;

    if (out == NULL) {
        *outlen = k;
        return 1;
    }
    memset(&a, 0, sizeof(a));
    if (params->padding == HWKEY_PAD_OAEP) {
        TPMI_ALG_HASH h = hwkey_tpm2_hash_alg(params->oaep_md_nid);

        if (h == TPM2_ALG_ERROR ||
            (params->mgf1_md_nid != 0 && params->mgf1_md_nid != params->oaep_md_nid)) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_PADDING,
                        "the TPM's OAEP needs one SHA-1/256/384/512 digest for OAEP and MGF1");
            return 0;
        }
        /* The TPM hashes the label with its terminating zero byte included. */
        if (params->label_len > 0 && (params->label_len > sizeof(a.label.buffer) ||
                                      params->label[params->label_len - 1] != 0)) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_PADDING,
                        "the TPM accepts only NUL-terminated OAEP labels");
            return 0;
        }
        a.scheme.scheme = TPM2_ALG_OAEP;
        a.scheme.details.oaep.hashAlg = h;
        a.label.size = (UINT16)params->label_len;
        if (params->label_len > 0)
            memcpy(a.label.buffer, params->label, params->label_len);
    } else if (params->padding == HWKEY_PAD_PKCS1) {
        a.scheme.scheme = TPM2_ALG_RSAES;
    } else {
        hwkey_raise(HWKEY_R_UNSUPPORTED_PADDING, "unknown RSA padding %d", (int)params->padding);
        return 0;
    }
    if (inlen != k) {
        hwkey_raise(HWKEY_R_DECRYPTION_FAILED, "RSA decryption failed");
        return 0;
    }
    a.in.size = (UINT16)inlen;
    memcpy(a.in.buffer, in, inlen);
    if (!run_on_key(key, "TPM2_RSA_Decrypt", do_decrypt, &a, &rc))
        goto end;
    /*
     * One fixed message whatever the TPM said (TPM_RC_VALUE for bad padding,
     * ...): distinguishable failures would be a padding oracle.
     */
    if (rc != TSS2_RC_SUCCESS || *outlen < a.out->size) {
        hwkey_raise(HWKEY_R_DECRYPTION_FAILED, "RSA decryption failed");
        goto end;
    }
    memcpy(out, a.out->buffer, a.out->size);
    *outlen = a.out->size;
    ok = 1;
end:
    decrypt_args_clear(&a);
    return ok;
}

/* --- ECDH ------------------------------------------------------------------ */

typedef struct {
    TPM2B_ECC_POINT peer;
    TPM2B_ECC_POINT *z;
} ECDH_ARGS;

static TSS2_RC do_ecdh(ESYS_CONTEXT *esys, ESYS_TR key, ESYS_TR session, void *arg)
{
    ECDH_ARGS *a = arg;

    return Esys_ECDH_ZGen(esys, key, session, ESYS_TR_NONE, ESYS_TR_NONE, &a->peer, &a->z);
}

int hwkey_tpm2_ecdh(HWKEY_BKEY *base, const unsigned char *peer, size_t peerlen, unsigned char *out,
                    size_t *outlen)
{
    HWKEY_TPM2_KEY *key = (HWKEY_TPM2_KEY *)base;
    size_t flen = key_bytes(key);
    ECDH_ARGS a;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    int ok = 0;

    if (out == NULL) {
        *outlen = flen;
        return 1;
    }
    if (!check_out(out, outlen, flen))
        return 0;
    if (peerlen != 1 + 2 * flen || peer[0] != POINT_CONVERSION_UNCOMPRESSED) {
        hwkey_raise(HWKEY_R_INVALID_PEER_KEY,
                    "peer key must be an uncompressed point of %zu bytes, got %zu", 1 + 2 * flen,
                    peerlen);
        return 0;
    }
    memset(&a, 0, sizeof(a));
    a.peer.point.x.size = (UINT16)flen;
    memcpy(a.peer.point.x.buffer, peer + 1, flen);
    a.peer.point.y.size = (UINT16)flen;
    memcpy(a.peer.point.y.buffer, peer + 1 + flen, flen);
    if (!run_on_key(key, "TPM2_ECDH_ZGen", do_ecdh, &a, &rc))
        goto end;
    if (rc != TSS2_RC_SUCCESS) {
        if (hwkey_tpm2_rc_base(rc) == TPM2_RC_ECC_POINT)
            hwkey_raise(HWKEY_R_INVALID_PEER_KEY, "TPM2_ECDH_ZGen: TPM_RC_ECC_POINT (the peer "
                                                  "point is not on the key's curve)");
        else
            hwkey_tpm2_raise_rc(rc, "TPM2_ECDH_ZGen");
        goto end;
    }
    if (!left_pad(a.z->point.x.buffer, a.z->point.x.size, out, flen)) {
        hwkey_raise(HWKEY_R_DEVICE_ERROR, "the TPM returned a %u-byte shared secret",
                    (unsigned int)a.z->point.x.size);
        goto end;
    }
    *outlen = flen;
    ok = 1;
end:
    if (a.z != NULL) {
        OPENSSL_cleanse(a.z, sizeof(*a.z));
        Esys_Free(a.z);
    }
    OPENSSL_cleanse(&a, sizeof(a));
    return ok;
}

int hwkey_tpm2_run_cmd(HWKEY_TPM2_KEY *key, const char *name, hwkey_tpm2_cmd_fn *fn, void *arg,
                       TSS2_RC *cmd_rc)
{
    return run_on_key(key, name, fn, arg, cmd_rc);
}
