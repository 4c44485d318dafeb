/*
 * The outer duplication wrapper of TPM2_Import, computed on the host with
 * OpenSSL (see tpm2_dup.h for the construction).  Written from the TPM 2.0
 * Part 1 description; tpm2-tools' tpm2_import was consulted for the facts
 * (label NUL, which Name, the duplicate's layout).  KDFa/KDFe are checked in
 * test/unit/backend/tpm2/test_tpm2_dup.c against OpenSSL's independent KBKDF and SSKDF.
 */
#include "backend/tpm2/tpm2_dup.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include "backend/tpm2/tpm2_internal.h"
#include "util/error.h"
#include "util/secmem.h"

/* Largest digest we accept as a parent nameAlg (SHA-512). */
#define DUP_MAX_DIGEST 64

const char *hwkey_tpm2_hash_name(TPMI_ALG_HASH alg)
{
    switch (alg) {
    case TPM2_ALG_SHA1:
        return "SHA1";
    case TPM2_ALG_SHA256:
        return "SHA256";
    case TPM2_ALG_SHA384:
        return "SHA384";
    case TPM2_ALG_SHA512:
        return "SHA512";
    default:
        return NULL;
    }
}

size_t hwkey_tpm2_hash_size(TPMI_ALG_HASH alg)
{
    switch (alg) {
    case TPM2_ALG_SHA1:
        return 20;
    case TPM2_ALG_SHA256:
        return 32;
    case TPM2_ALG_SHA384:
        return 48;
    case TPM2_ALG_SHA512:
        return 64;
    default:
        return 0;
    }
}

static void put_be32(unsigned char b[4], uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

typedef struct {
    const unsigned char *p;
    size_t n;
} PART;

/*
 * One HMAC or hash over the concatenation of parts; key == NULL means a
 * plain hash.  out must hold the digest size.
 */
static int digest_parts(TPMI_ALG_HASH alg, const unsigned char *key, size_t keylen,
                        const PART *parts, size_t nparts, unsigned char *out)
{
    const char *mdname = hwkey_tpm2_hash_name(alg);
    EVP_MAC *mac = NULL;
    EVP_MAC_CTX *mctx = NULL;
    EVP_MD *md = NULL;
    EVP_MD_CTX *dctx = NULL;
    OSSL_PARAM params[2];
    size_t outlen = 0;
    int ok = 0;

    if (mdname == NULL) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST, "TPM hash algorithm 0x%04x", (unsigned int)alg);
        return 0;
    }
    if (key != NULL) {
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)mdname, 0);
        params[1] = OSSL_PARAM_construct_end();
        if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
            (mctx = EVP_MAC_CTX_new(mac)) == NULL || !EVP_MAC_init(mctx, key, keylen, params))
            goto fail;
        for (size_t i = 0; i < nparts; i++)
            if (parts[i].n > 0 && !EVP_MAC_update(mctx, parts[i].p, parts[i].n))
                goto fail;
        if (!EVP_MAC_final(mctx, out, &outlen, DUP_MAX_DIGEST))
            goto fail;
    } else {
        unsigned int dlen = 0;

        if ((md = EVP_MD_fetch(NULL, mdname, NULL)) == NULL || (dctx = EVP_MD_CTX_new()) == NULL ||
            !EVP_DigestInit_ex(dctx, md, NULL))
            goto fail;
        for (size_t i = 0; i < nparts; i++)
            if (parts[i].n > 0 && !EVP_DigestUpdate(dctx, parts[i].p, parts[i].n))
                goto fail;
        if (!EVP_DigestFinal_ex(dctx, out, &dlen))
            goto fail;
    }
    ok = 1;
    goto end;
fail:
    hwkey_raise(HWKEY_R_INTERNAL, "computing %s-%s for the TPM import wrapper",
                key != NULL ? "HMAC" : "hash", mdname);
end:
    EVP_MAC_CTX_free(mctx);
    EVP_MAC_free(mac);
    EVP_MD_CTX_free(dctx);
    EVP_MD_free(md);
    return ok;
}

/* KDFa and KDFe differ only in HMAC(key, ...) vs H(Z || ...) and where L goes. */
static int kdf_counter(int is_kdfa, TPMI_ALG_HASH alg, const unsigned char *secret,
                       size_t secretlen, const char *label, const unsigned char *u, size_t ulen,
                       const unsigned char *v, size_t vlen, unsigned char *out, size_t outlen)
{
    size_t dlen = hwkey_tpm2_hash_size(alg), done = 0;
    unsigned char counter[4], bits[4], block[DUP_MAX_DIGEST];
    uint32_t i = 1;
    int ok = 0;

    if (dlen == 0) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST, "TPM hash algorithm 0x%04x", (unsigned int)alg);
        return 0;
    }
    if (outlen > 0xffffffffu / 8) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "KDF output of %zu bytes", outlen);
        return 0;
    }
    put_be32(bits, (uint32_t)(outlen * 8));
    while (done < outlen) {
        PART parts[6];
        size_t n = 0, take;

        put_be32(counter, i++);
        parts[n++] = (PART){counter, 4};
        if (!is_kdfa)
            parts[n++] = (PART){secret, secretlen};
        parts[n++] = (PART){(const unsigned char *)label, strlen(label) + 1};
        parts[n++] = (PART){u, ulen};
        parts[n++] = (PART){v, vlen};
        if (is_kdfa)
            parts[n++] = (PART){bits, 4};
        if (!digest_parts(alg, is_kdfa ? secret : NULL, secretlen, parts, n, block))
            goto end;
        take = outlen - done < dlen ? outlen - done : dlen;
        memcpy(out + done, block, take);
        done += take;
    }
    ok = 1;
end:
    OPENSSL_cleanse(block, sizeof(block));
    return ok;
}

int hwkey_tpm2_kdfa(TPMI_ALG_HASH alg, const unsigned char *key, size_t keylen, const char *label,
                    const unsigned char *u, size_t ulen, const unsigned char *v, size_t vlen,
                    unsigned char *out, size_t outlen)
{
    return kdf_counter(1, alg, key, keylen, label, u, ulen, v, vlen, out, outlen);
}

int hwkey_tpm2_kdfe(TPMI_ALG_HASH alg, const unsigned char *z, size_t zlen, const char *label,
                    const unsigned char *u, size_t ulen, const unsigned char *v, size_t vlen,
                    unsigned char *out, size_t outlen)
{
    return kdf_counter(0, alg, z, zlen, label, u, ulen, v, vlen, out, outlen);
}

int hwkey_tpm2_object_name(const TPMT_PUBLIC *pub, TPM2B_NAME *name)
{
    unsigned char buf[sizeof(TPMT_PUBLIC)];
    size_t off = 0, dlen = hwkey_tpm2_hash_size(pub->nameAlg);
    TSS2_RC rc;
    PART part;

    if (dlen == 0) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST, "name algorithm 0x%04x",
                    (unsigned int)pub->nameAlg);
        return 0;
    }
    rc = Tss2_MU_TPMT_PUBLIC_Marshal(pub, buf, sizeof(buf), &off);
    if (rc != TSS2_RC_SUCCESS)
        return hwkey_tpm2_raise_rc(rc, "marshalling the imported key's public area");
    part = (PART){buf, off};
    name->name[0] = (BYTE)(pub->nameAlg >> 8);
    name->name[1] = (BYTE)pub->nameAlg;
    if (!digest_parts(pub->nameAlg, NULL, 0, &part, 1, name->name + 2))
        return 0;
    name->size = (UINT16)(2 + dlen);
    return 1;
}

/* ECC parent: ephemeral ECDH, the seed through KDFe; inSymSeed = ephemeral point. */
static int share_seed_ecc(const TPMT_PUBLIC *parent, unsigned char *seed, size_t seedlen,
                          TPM2B_ENCRYPTED_SECRET *sym_seed)
{
    int nid = hwkey_tpm2_curve_nid(parent->parameters.eccDetail.curveID);
    const char *group = nid != NID_undef ? OSSL_EC_curve_nid2name(nid) : NULL;
    EVP_PKEY *peer = NULL, *eph = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    BIGNUM *x = NULL, *y = NULL;
    TPMS_ECC_POINT point;
    unsigned char *z = NULL;
    size_t zlen = 0, off = 0;
    TSS2_RC rc;
    int ok = 0;

    memset(&point, 0, sizeof(point));
    if (group == NULL) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "parent key on unsupported curve 0x%04x",
                    (unsigned int)parent->parameters.eccDetail.curveID);
        return 0;
    }
    if ((peer = hwkey_tpm2_public_to_pkey(parent, NULL, NULL)) == NULL)
        return 0;
    if ((eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", group)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_pkey(NULL, eph, NULL)) == NULL ||
        EVP_PKEY_derive_init(ctx) <= 0 || EVP_PKEY_derive_set_peer(ctx, peer) <= 0 ||
        EVP_PKEY_derive(ctx, NULL, &zlen) <= 0 || zlen > sizeof(point.x.buffer) ||
        (z = hwkey_secmem_alloc(zlen)) == NULL || EVP_PKEY_derive(ctx, z, &zlen) <= 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "ephemeral ECDH with the parent key on %s failed", group);
        goto end;
    }
    /* Coordinates at the field's full length: the TPM hashes x as it receives it. */
    if (!EVP_PKEY_get_bn_param(eph, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
        !EVP_PKEY_get_bn_param(eph, OSSL_PKEY_PARAM_EC_PUB_Y, &y) ||
        BN_bn2binpad(x, point.x.buffer, (int)zlen) < 0 ||
        BN_bn2binpad(y, point.y.buffer, (int)zlen) < 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "reading the ephemeral key's point");
        goto end;
    }
    point.x.size = point.y.size = (UINT16)zlen;
    rc = Tss2_MU_TPMS_ECC_POINT_Marshal(&point, sym_seed->secret, sizeof(sym_seed->secret), &off);
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, "marshalling the ephemeral point");
        goto end;
    }
    sym_seed->size = (UINT16)off;
    ok = hwkey_tpm2_kdfe(parent->nameAlg, z, zlen, "DUPLICATE", point.x.buffer, point.x.size,
                         parent->unique.ecc.x.buffer, parent->unique.ecc.x.size, seed, seedlen);
end:
    hwkey_secmem_free(z);
    BN_free(x);
    BN_free(y);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(eph);
    EVP_PKEY_free(peer);
    return ok;
}

/* RSA parent: a random seed, OAEP(nameAlg, label "DUPLICATE") to the parent. */
static int share_seed_rsa(const TPMT_PUBLIC *parent, unsigned char *seed, size_t seedlen,
                          TPM2B_ENCRYPTED_SECRET *sym_seed)
{
    const char *mdname = hwkey_tpm2_hash_name(parent->nameAlg);
    EVP_PKEY *peer = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    unsigned char *label = NULL;
    size_t outlen = sizeof(sym_seed->secret);
    int ok = 0;

    if ((peer = hwkey_tpm2_public_to_pkey(parent, NULL, NULL)) == NULL)
        return 0;
    if (RAND_priv_bytes(seed, (int)seedlen) != 1) {
        hwkey_raise(HWKEY_R_INTERNAL, "no random bytes for the import seed");
        goto end;
    }
    if ((label = OPENSSL_memdup("DUPLICATE", sizeof("DUPLICATE"))) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_pkey(NULL, peer, NULL)) == NULL ||
        EVP_PKEY_encrypt_init(ctx) <= 0 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, mdname, NULL) <= 0 ||
        EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, sizeof("DUPLICATE")) <= 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "setting up RSA-OAEP to the parent key");
        goto end;
    }
    label = NULL; /* owned by ctx now */
    if (EVP_PKEY_encrypt(ctx, sym_seed->secret, &outlen, seed, seedlen) <= 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "encrypting the import seed to the parent key");
        goto end;
    }
    sym_seed->size = (UINT16)outlen;
    ok = 1;
end:
    OPENSSL_free(label);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer);
    return ok;
}

static const EVP_CIPHER *parent_cipher(const TPMT_PUBLIC *parent, size_t *keylen)
{
    const TPMT_SYM_DEF_OBJECT *sym = &parent->parameters.asymDetail.symmetric;

    if (sym->algorithm == TPM2_ALG_AES && sym->mode.aes == TPM2_ALG_CFB) {
        *keylen = sym->keyBits.aes / 8u;
        switch (sym->keyBits.aes) {
        case 128:
            return EVP_aes_128_cfb128();
        case 192:
            return EVP_aes_192_cfb128();
        case 256:
            return EVP_aes_256_cfb128();
        default:
            break;
        }
    }
    hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                "the parent key's symmetric algorithm (0x%04x, %u bits) is not AES-CFB: "
                "it is not a storage key hwkey can import under",
                (unsigned int)sym->algorithm, (unsigned int)sym->keyBits.sym);
    return NULL;
}

/* Everything secret of one wrap, in one block of protected memory. */
typedef struct {
    unsigned char seed[DUP_MAX_DIGEST];
    unsigned char sym_key[32];
    unsigned char hmac_key[DUP_MAX_DIGEST];
    unsigned char plain[sizeof(TPM2B_SENSITIVE)];
} DUP_SECRETS;

int hwkey_tpm2_dup_wrap(const TPMT_PUBLIC *parent, const TPMT_PUBLIC *obj,
                        const TPMT_SENSITIVE *sens, TPM2B_PRIVATE *dup,
                        TPM2B_ENCRYPTED_SECRET *sym_seed)
{
    size_t dlen = hwkey_tpm2_hash_size(parent->nameAlg), keylen = 0, plainlen = 0;
    const EVP_CIPHER *cipher;
    DUP_SECRETS *s = NULL;
    EVP_CIPHER_CTX *cctx = NULL;
    TPM2B_NAME name;
    unsigned char *enc;
    const unsigned char iv[16] = {0};
    int outl = 0, finl = 0, ok = 0;
    TSS2_RC rc;
    PART parts[2];

    memset(dup, 0, sizeof(*dup));
    memset(sym_seed, 0, sizeof(*sym_seed));
    if (dlen == 0 || hwkey_tpm2_hash_name(parent->nameAlg) == NULL) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_DIGEST, "parent name algorithm 0x%04x",
                    (unsigned int)parent->nameAlg);
        return 0;
    }
    if ((cipher = parent_cipher(parent, &keylen)) == NULL)
        return 0;
    if (!hwkey_tpm2_object_name(obj, &name))
        return 0;
    if ((s = hwkey_secmem_alloc(sizeof(*s))) == NULL)
        return 0;

    /* The sensitive area as a TPM2B: size, then the marshalled TPMT_SENSITIVE. */
    rc = Tss2_MU_TPMT_SENSITIVE_Marshal(sens, s->plain + 2, sizeof(s->plain) - 2, &plainlen);
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, "marshalling the imported key's sensitive area");
        goto end;
    }
    s->plain[0] = (unsigned char)(plainlen >> 8);
    s->plain[1] = (unsigned char)plainlen;
    plainlen += 2;
    if (2 + dlen + plainlen > sizeof(dup->buffer)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "the key's sensitive area (%zu bytes) does not fit "
                    "a TPM2B_PRIVATE",
                    plainlen);
        goto end;
    }

    switch (parent->type) {
    case TPM2_ALG_ECC:
        if (!share_seed_ecc(parent, s->seed, dlen, sym_seed))
            goto end;
        break;
    case TPM2_ALG_RSA:
        if (!share_seed_rsa(parent, s->seed, dlen, sym_seed))
            goto end;
        break;
    default:
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "parent key of type 0x%04x",
                    (unsigned int)parent->type);
        goto end;
    }
    if (!hwkey_tpm2_kdfa(parent->nameAlg, s->seed, dlen, "STORAGE", name.name, name.size, NULL, 0,
                         s->sym_key, keylen) ||
        !hwkey_tpm2_kdfa(parent->nameAlg, s->seed, dlen, "INTEGRITY", NULL, 0, NULL, 0, s->hmac_key,
                         dlen))
        goto end;

    enc = dup->buffer + 2 + dlen;
    if ((cctx = EVP_CIPHER_CTX_new()) == NULL ||
        !EVP_EncryptInit_ex2(cctx, cipher, s->sym_key, iv, NULL) ||
        !EVP_EncryptUpdate(cctx, enc, &outl, s->plain, (int)plainlen) ||
        !EVP_EncryptFinal_ex(cctx, enc + outl, &finl) || (size_t)(outl + finl) != plainlen) {
        hwkey_raise(HWKEY_R_INTERNAL, "AES-CFB encryption of the sensitive area failed");
        goto end;
    }
    parts[0] = (PART){enc, plainlen};
    parts[1] = (PART){name.name, name.size};
    if (!digest_parts(parent->nameAlg, s->hmac_key, dlen, parts, 2, dup->buffer + 2))
        goto end;
    dup->buffer[0] = (BYTE)(dlen >> 8);
    dup->buffer[1] = (BYTE)dlen;
    dup->size = (UINT16)(2 + dlen + plainlen);
    ok = 1;
end:
    EVP_CIPHER_CTX_free(cctx);
    hwkey_secmem_free(s);
    if (!ok) {
        OPENSSL_cleanse(dup, sizeof(*dup));
        memset(sym_seed, 0, sizeof(*sym_seed));
    }
    return ok;
}
