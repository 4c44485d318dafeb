/* Salted HMAC sessions for the fake TPM: see fake_tpm2_session.h. */
#include "fake_tpm2_session.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <tss2/tss2_mu.h>

#include "fake_tcti.h"

#define HMAC_HANDLE 0x02000000u   /* the first HMAC session a TPM hands out */
#define POLICY_HANDLE 0x03000000u /* the first policy session */
#define DIGEST 32                 /* SHA-256, the only hash hwkey's sessions use */

static struct {
    EVP_PKEY *parent_key;
    TPM2B_PUBLIC parent_pub;
    int active;
    TPM2_SE type;
    TPM2_HANDLE handle;
    TPM2B_DIGEST policy; /* policy sessions: policyDigest so far */
    int auth_needed;     /* policy sessions: TPM2_PolicyAuthValue ran */
    uint8_t key[DIGEST]; /* sessionKey */
    TPM2B_NONCE nonce_tpm, nonce_caller;
    TPMA_SESSION attrs;
    uint8_t last_rsp[4096];
    size_t last_rsp_len;
} sess;

void fake_session_reset(EVP_PKEY *parent_key, const TPM2B_PUBLIC *parent_pub)
{
    memset(&sess, 0, sizeof(sess));
    sess.parent_key = parent_key;
    sess.parent_pub = *parent_pub;
}

int fake_session_name(const TPM2B_PUBLIC *pub, TPM2B_NAME *name)
{
    uint8_t area[sizeof(TPMT_PUBLIC)];
    size_t alen = 0;

    if (pub->publicArea.nameAlg != TPM2_ALG_SHA256 ||
        Tss2_MU_TPMT_PUBLIC_Marshal(&pub->publicArea, area, sizeof(area), &alen) != 0)
        return 0;
    name->size = 2 + DIGEST;
    name->name[0] = 0x00;
    name->name[1] = 0x0b; /* TPM2_ALG_SHA256 */
    SHA256(area, alen, name->name + 2);
    return 1;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/*
 * KDFa (Part 1, 11.4.10.2), counter mode over HMAC-SHA-256:
 * HMAC(key, i || label || 0x00 || u || v || bits), i = 1, 2, ...
 */
static int kdfa(const uint8_t *key, size_t keylen, const char *label, const uint8_t *u, size_t ulen,
                const uint8_t *v, size_t vlen, uint8_t *out, size_t outlen)
{
    uint8_t ctr[4], bits[4], block[DIGEST];
    size_t done = 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
                           OSSL_PARAM_END};
    int ok = 0;

    if (ctx == NULL)
        goto end;
    be32(bits, (uint32_t)(outlen * 8));
    for (uint32_t i = 1; done < outlen; i++) {
        size_t n = 0, take = outlen - done < DIGEST ? outlen - done : DIGEST;

        be32(ctr, i);
        if (!EVP_MAC_init(ctx, key, keylen, params) || !EVP_MAC_update(ctx, ctr, 4) ||
            !EVP_MAC_update(ctx, (const uint8_t *)label, strlen(label) + 1) ||
            !EVP_MAC_update(ctx, u, ulen) || !EVP_MAC_update(ctx, v, vlen) ||
            !EVP_MAC_update(ctx, bits, 4) || !EVP_MAC_final(ctx, block, &n, sizeof(block)))
            goto end;
        memcpy(out + done, block, take);
        done += take;
    }
    ok = 1;
end:
    OPENSSL_cleanse(block, sizeof(block));
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok;
}

/* HMAC-SHA-256 over the concatenation of up to four pieces. */
static int hmac4(const uint8_t *key, size_t keylen, const uint8_t *a, size_t alen, const uint8_t *b,
                 size_t blen, const uint8_t *c, size_t clen, uint8_t d, uint8_t out[DIGEST])
{
    uint8_t buf[DIGEST + 2 * sizeof(TPMU_HA) + 1];
    size_t n = 0;

    if (alen + blen + clen + 1 > sizeof(buf))
        return 0;
    memcpy(buf, a, alen);
    memcpy(buf + alen, b, blen);
    memcpy(buf + alen + blen, c, clen);
    buf[alen + blen + clen] = d;
    return EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen, buf, alen + blen + clen + 1,
                     out, DIGEST, &n) != NULL &&
           n == DIGEST;
}

/*
 * sessionKey || authValue: the HMAC key and the parameter-encryption secret.
 * A policy session adds the authValue only once TPM2_PolicyAuthValue ran.
 */
static size_t session_value(const TPM2B_AUTH *auth, uint8_t *out)
{
    size_t n = DIGEST;

    memcpy(out, sess.key, DIGEST);
    if (auth != NULL && (sess.type == TPM2_SE_HMAC || sess.auth_needed)) {
        memcpy(out + DIGEST, auth->buffer, auth->size);
        n += auth->size;
    }
    return n;
}

/* AES-128-CFB over buf in place, key and IV from KDFa(value, "CFB", newer, older). */
static int cfb(const TPM2B_AUTH *auth, const TPM2B_NONCE *newer, const TPM2B_NONCE *older,
               uint8_t *buf, size_t len, int enc)
{
    uint8_t value[DIGEST + sizeof(TPMU_HA)], kiv[32];
    size_t vlen = session_value(auth, value);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0, ok;

    ok = ctx != NULL &&
         kdfa(value, vlen, "CFB", newer->buffer, newer->size, older->buffer, older->size, kiv,
              sizeof(kiv)) &&
         EVP_CipherInit_ex(ctx, EVP_aes_128_cfb128(), NULL, kiv, kiv + 16, enc) &&
         EVP_CipherUpdate(ctx, buf, &outl, buf, (int)len) && (size_t)outl == len;
    EVP_CIPHER_CTX_free(ctx);
    OPENSSL_cleanse(value, sizeof(value));
    OPENSSL_cleanse(kiv, sizeof(kiv));
    return ok;
}

/* Z = ECDH(parent, ephemeral point), the x coordinate. */
static int ecdh_z(const TPMS_ECC_POINT *q, uint8_t z[32])
{
    uint8_t pt[65];
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pctx = NULL, *dctx = NULL;
    EVP_PKEY *peer = NULL;
    size_t zlen = 32;
    int ok = 0;

    if (bld == NULL || q->x.size != 32 || q->y.size != 32)
        goto end;
    pt[0] = 0x04;
    memcpy(pt + 1, q->x.buffer, 32);
    memcpy(pt + 33, q->y.buffer, 32);
    if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(pctx) != 1 ||
        EVP_PKEY_fromdata(pctx, &peer, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto end;
    if ((dctx = EVP_PKEY_CTX_new(sess.parent_key, NULL)) == NULL ||
        EVP_PKEY_derive_init(dctx) != 1 || EVP_PKEY_derive_set_peer(dctx, peer) != 1 ||
        EVP_PKEY_derive(dctx, z, &zlen) != 1 || zlen != 32)
        goto end;
    ok = 1;
end:
    EVP_PKEY_CTX_free(dctx);
    EVP_PKEY_CTX_free(pctx);
    EVP_PKEY_free(peer);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return ok;
}

/* salt = KDFe(SHA-256, Z, "SECRET", QeU.x, QsB.x, 256): one hash, counter 1. */
static int salt_from_point(const TPMS_ECC_POINT *q, uint8_t salt[DIGEST])
{
    const TPM2B_ECC_PARAMETER *qs = &sess.parent_pub.publicArea.unique.ecc.x;
    uint8_t z[32], one[4];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok;

    be32(one, 1);
    ok = md != NULL && ecdh_z(q, z) && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
         EVP_DigestUpdate(md, one, 4) && EVP_DigestUpdate(md, z, 32) &&
         EVP_DigestUpdate(md, "SECRET", 7) && EVP_DigestUpdate(md, q->x.buffer, q->x.size) &&
         EVP_DigestUpdate(md, qs->buffer, qs->size) && EVP_DigestFinal_ex(md, salt, NULL);
    EVP_MD_CTX_free(md);
    OPENSSL_cleanse(z, sizeof(z));
    return ok;
}

/* TPM2_StartAuthSession(tpmKey, bind, nonceCaller, encryptedSalt, type, symmetric, authHash). */
void fake_session_answer_start(const uint8_t *cmd, size_t len)
{
    size_t in = 10, size, off;
    TPM2_HANDLE tpm_key = 0, bind = 0;
    TPM2B_ENCRYPTED_SECRET secret = {0};
    TPMS_ECC_POINT q = {0};
    TPM2_SE type = 0;
    TPMT_SYM_DEF sym = {0};
    TPMI_ALG_HASH hash = 0;
    uint8_t salt[DIGEST], *rsp;
    size_t qoff = 0;

    sess.nonce_caller.size = 0;
    if (Tss2_MU_UINT32_Unmarshal(cmd, len, &in, &tpm_key) != 0 ||
        Tss2_MU_UINT32_Unmarshal(cmd, len, &in, &bind) != 0 ||
        Tss2_MU_TPM2B_NONCE_Unmarshal(cmd, len, &in, &sess.nonce_caller) != 0 ||
        Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(cmd, len, &in, &secret) != 0 ||
        Tss2_MU_UINT8_Unmarshal(cmd, len, &in, &type) != 0 ||
        Tss2_MU_TPMT_SYM_DEF_Unmarshal(cmd, len, &in, &sym) != 0 ||
        Tss2_MU_UINT16_Unmarshal(cmd, len, &in, &hash) != 0 || in != len) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    /* What hwkey asks: salted by the parent, unbound, AES-128-CFB, SHA-256; HMAC or policy. */
    if (bind != TPM2_RH_NULL || (type != TPM2_SE_HMAC && type != TPM2_SE_POLICY) ||
        hash != TPM2_ALG_SHA256 || sym.algorithm != TPM2_ALG_AES || sym.keyBits.aes != 128 ||
        sym.mode.aes != TPM2_ALG_CFB || sess.nonce_caller.size != DIGEST) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (Tss2_MU_TPMS_ECC_POINT_Unmarshal(secret.secret, secret.size, &qoff, &q) != 0 ||
        qoff != secret.size || !salt_from_point(&q, salt)) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    (void)tpm_key; /* the one parent the fake has */
    sess.nonce_tpm.size = DIGEST;
    if (RAND_bytes(sess.nonce_tpm.buffer, DIGEST) != 1 ||
        !kdfa(salt, DIGEST, "ATH", sess.nonce_tpm.buffer, DIGEST, sess.nonce_caller.buffer, DIGEST,
              sess.key, DIGEST)) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    OPENSSL_cleanse(salt, sizeof(salt));
    sess.active = 1;
    sess.type = type;
    sess.handle = type == TPM2_SE_POLICY ? POLICY_HANDLE : HMAC_HANDLE;
    sess.auth_needed = 0;
    memset(&sess.policy, 0, sizeof(sess.policy));
    sess.policy.size = DIGEST; /* a policy starts as 32 zero bytes */
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_SUCCESS);
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_UINT32_Marshal(sess.handle, rsp, size, &off) != 0 ||
        Tss2_MU_TPM2B_NONCE_Marshal(&sess.nonce_tpm, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_finish();
}

TPM2B_DIGEST *fake_session_policy(const uint8_t *cmd, size_t len)
{
    return sess.active && sess.type == TPM2_SE_POLICY &&
                   fake_tcti_cmd_handle(cmd, len) == sess.handle
               ? &sess.policy
               : NULL;
}

int fake_session_policy_extend(const uint8_t *cmd, size_t len, const uint8_t *params, size_t plen)
{
    uint8_t buf[DIGEST + 4 + 512];
    TPM2B_DIGEST *policy = fake_session_policy(cmd, len);

    if (policy == NULL || plen > sizeof(buf) - DIGEST - 4)
        return 0;
    memcpy(buf, policy->buffer, DIGEST);
    memcpy(buf + DIGEST, cmd + 6, 4); /* the command code */
    if (plen > 0)
        memcpy(buf + DIGEST + 4, params, plen);
    SHA256(buf, DIGEST + 4 + plen, policy->buffer);
    return 1;
}

/* TPM2_PolicyAuthValue(session): the digest extended by the command code alone. */
void fake_session_answer_policy_auth_value(const uint8_t *cmd, size_t len)
{
    if (len != 14 || !fake_session_policy_extend(cmd, len, NULL, 0)) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    sess.auth_needed = 1;
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_SUCCESS);
    fake_tcti_rsp_finish();
}

FAKE_SESSION_CHECK fake_session_command(const uint8_t *cmd, size_t len, const TPM2B_NAME *name,
                                        const TPM2B_AUTH *auth, const TPM2B_DIGEST *auth_policy,
                                        FAKE_SESSION_CMD *out)
{
    size_t in = 14;
    UINT32 auth_size = 0;
    TPMS_AUTH_COMMAND a;
    uint8_t cp[4 + sizeof(TPMU_NAME) + 4096], cp_hash[DIGEST], value[DIGEST + sizeof(TPMU_HA)],
        want[DIGEST];
    size_t vlen, cplen;
    UINT16 first = 0;

    memset(&a, 0, sizeof(a));
    memset(out, 0, sizeof(*out));
    if (len > sizeof(out->cmd) || Tss2_MU_UINT32_Unmarshal(cmd, len, &in, &auth_size) != 0 ||
        Tss2_MU_TPMS_AUTH_COMMAND_Unmarshal(cmd, len, &in, &a) != 0 || in != 18 + auth_size ||
        !sess.active || a.sessionHandle != sess.handle)
        return FAKE_SESSION_MALFORMED;
    memcpy(out->cmd, cmd, len);
    out->len = len;
    out->params = in;
    out->attrs = a.sessionAttributes;
    out->policy = sess.type == TPM2_SE_POLICY;
    /* cpHash = H(commandCode || name || parameters as sent), then the HMAC over the nonces. */
    memcpy(cp, cmd + 6, 4);
    memcpy(cp + 4, name->name, name->size);
    memcpy(cp + 4 + name->size, cmd + in, len - in);
    cplen = 4 + name->size + (len - in);
    SHA256(cp, cplen, cp_hash);
    vlen = session_value(auth, value);
    if (!hmac4(value, vlen, cp_hash, DIGEST, a.nonce.buffer, a.nonce.size, sess.nonce_tpm.buffer,
               sess.nonce_tpm.size, a.sessionAttributes, want))
        return FAKE_SESSION_MALFORMED;
    OPENSSL_cleanse(value, sizeof(value));
    if (a.hmac.size != DIGEST || CRYPTO_memcmp(a.hmac.buffer, want, DIGEST) != 0)
        return FAKE_SESSION_BAD_HMAC;
    /* A policy session authorizes only an object whose authPolicy it has reached. */
    if (sess.type == TPM2_SE_POLICY &&
        (auth_policy == NULL || auth_policy->size != DIGEST ||
         memcmp(auth_policy->buffer, sess.policy.buffer, DIGEST) != 0))
        return FAKE_SESSION_POLICY_FAIL;
    sess.nonce_caller = a.nonce;
    sess.attrs = a.sessionAttributes;
    if (a.sessionAttributes & TPMA_SESSION_DECRYPT) {
        size_t p = in;

        if (Tss2_MU_UINT16_Unmarshal(cmd, len, &p, &first) != 0 || p + first > len ||
            !cfb(auth, &sess.nonce_caller, &sess.nonce_tpm, out->cmd + p, first, 0))
            return FAKE_SESSION_MALFORMED;
        out->encrypted_in = 1;
    }
    return FAKE_SESSION_OK;
}

int fake_session_rsp_end(TPM2_CC cc, size_t params_at, const TPM2B_AUTH *auth)
{
    size_t size, end, p = params_at, first_at = params_at + 4;
    uint8_t *rsp = fake_tcti_rsp_buf(&size, &end);
    uint8_t rp[8 + 4096], rp_hash[DIGEST], value[DIGEST + sizeof(TPMU_HA)];
    TPMS_AUTH_RESPONSE a;
    UINT16 first = 0;
    size_t vlen, plen;

    if (end < first_at || end - first_at > 4096 ||
        Tss2_MU_UINT32_Marshal((UINT32)(end - first_at), rsp, size, &p) != 0)
        return 0;
    memset(&a, 0, sizeof(a));
    sess.nonce_tpm.size = DIGEST;
    if (RAND_bytes(sess.nonce_tpm.buffer, DIGEST) != 1)
        return 0;
    if (sess.attrs & TPMA_SESSION_ENCRYPT) {
        p = first_at;
        if (Tss2_MU_UINT16_Unmarshal(rsp, end, &p, &first) != 0 || p + first > end ||
            !cfb(auth, &sess.nonce_tpm, &sess.nonce_caller, rsp + p, first, 1))
            return 0;
    }
    /* rpHash = H(responseCode || commandCode || parameters as sent). */
    plen = end - first_at;
    memset(rp, 0, 4); /* TPM2_RC_SUCCESS: only successes carry sessions */
    be32(rp + 4, cc);
    memcpy(rp + 8, rsp + first_at, plen);
    SHA256(rp, 8 + plen, rp_hash);
    a.nonce = sess.nonce_tpm;
    a.sessionAttributes = sess.attrs;
    a.hmac.size = DIGEST;
    vlen = session_value(auth, value);
    if (!hmac4(value, vlen, rp_hash, DIGEST, sess.nonce_tpm.buffer, DIGEST,
               sess.nonce_caller.buffer, sess.nonce_caller.size, sess.attrs, a.hmac.buffer))
        return 0;
    OPENSSL_cleanse(value, sizeof(value));
    if (Tss2_MU_TPMS_AUTH_RESPONSE_Marshal(&a, rsp, size, &end) != 0)
        return 0;
    fake_tcti_rsp_set_end(end);
    fake_tcti_rsp_finish();
    /* A TPM ends a session whose continueSession was clear with its command. */
    if (!(sess.attrs & TPMA_SESSION_CONTINUESESSION))
        sess.active = 0;
    if (end <= sizeof(sess.last_rsp)) {
        memcpy(sess.last_rsp, rsp, end);
        sess.last_rsp_len = end;
    }
    return 1;
}

const uint8_t *fake_session_last_response(size_t *len)
{
    *len = sess.last_rsp_len;
    return sess.last_rsp;
}
