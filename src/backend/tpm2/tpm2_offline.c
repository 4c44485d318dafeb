/*
 * Offline import: a software key wrapped to a parent's public key on a
 * machine without that TPM, as an importable TSS2 key file
 * (2.23.133.10.1.4: pubkey = the key's TPM2B_PUBLIC, privkey = the
 * duplicate, secret = the encrypted seed, parent = the parent's handle).
 * The TPM machine runs TPM2_Import on first load (load_blob calls
 * hwkey_tpm2_import_pending), or once with `hwkey import --finish`.
 *
 * The wrap itself is tpm2_dup.c's, the same code the online import uses and
 * the TPM checks; what is new here is knowing the parent without asking
 * it.  The duplicate's integrity HMAC covers the key's Name and the
 * symmetric key is derived from it, and the seed is bound to the parent's
 * Name algorithm, curve point and symmetric parameters: a parent rebuilt
 * from a PEM must therefore match the TPM's public area bit for bit, which
 * only holds for the standard template (hwkey's owner primary, the TCG ECC
 * P-256 SRK template).  Any other parent is given as its TPM2B_PUBLIC.
 */
#include "backend/tpm2/tpm2_offline.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <tss2/tss2_mu.h>

#include "backend/tpm2/tpm2_dup.h"
#include "backend/tpm2/tpm2_internal.h"
#include "util/error.h"
#include "util/log.h"
#include "util/secmem.h"
#include "util/tss2_keyfile.h"

/* The standard template with the point of an EC P-256 public key. */
static int parent_from_pkey(EVP_PKEY *pk, TPM2B_PUBLIC *out)
{
    TPMS_ECC_POINT *pt = &out->publicArea.unique.ecc;
    char group[64] = "";
    BIGNUM *x = NULL, *y = NULL;
    int ok = 0;

    if (!EVP_PKEY_is_a(pk, "EC") ||
        !EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        NULL) ||
        (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "the parent PEM is not an EC P-256 key: only a parent made from the standard "
                    "ECC P-256 SRK template can be given as PEM; give its TPM2B_PUBLIC instead "
                    "(hwkey pubkey --parent --out-public FILE, or tpm2_readpublic -o)");
        return 0;
    }
    hwkey_tpm2_primary_template(out);
    if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
        !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_EC_PUB_Y, &y) ||
        BN_bn2binpad(x, pt->x.buffer, 32) != 32 || BN_bn2binpad(y, pt->y.buffer, 32) != 32) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "reading the parent's public point");
        goto end;
    }
    pt->x.size = pt->y.size = 32;
    ok = 1;
end:
    BN_free(x);
    BN_free(y);
    return ok;
}

/* 1 if pub is exactly the standard template with its point: the owner primary's. */
static int is_standard(const TPM2B_PUBLIC *pub)
{
    unsigned char a[sizeof(TPM2B_PUBLIC)], b[sizeof(TPM2B_PUBLIC)];
    size_t alen = 0, blen = 0;
    TPM2B_PUBLIC std;
    EVP_PKEY *pk = NULL;
    int same = 0;

    if (pub->publicArea.type != TPM2_ALG_ECC)
        return 0;
    ERR_set_mark();
    if ((pk = hwkey_tpm2_public_to_pkey(&pub->publicArea, NULL, NULL)) != NULL &&
        parent_from_pkey(pk, &std) &&
        Tss2_MU_TPM2B_PUBLIC_Marshal(pub, a, sizeof(a), &alen) == TSS2_RC_SUCCESS &&
        Tss2_MU_TPM2B_PUBLIC_Marshal(&std, b, sizeof(b), &blen) == TSS2_RC_SUCCESS)
        same = alen == blen && memcmp(a, b, alen) == 0;
    ERR_pop_to_mark();
    EVP_PKEY_free(pk);
    return same;
}

/* PEM public key (standard template) or a marshalled TPM2B_PUBLIC. */
static int parent_parse(const unsigned char *data, size_t len, TPM2B_PUBLIC *out, int *from_pem)
{
    static const char pem_begin[] = "-----BEGIN PUBLIC KEY-----";
    const TPMA_OBJECT need = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    size_t off = 0;
    TSS2_RC rc;

    memset(out, 0, sizeof(*out));
    *from_pem = 0;
    for (size_t i = 0; i + sizeof(pem_begin) - 1 <= len && !*from_pem; i++)
        *from_pem = memcmp(data + i, pem_begin, sizeof(pem_begin) - 1) == 0;
    if (*from_pem) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        EVP_PKEY *pk = NULL;
        int ok;

        ERR_set_mark();
        pk = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        ERR_pop_to_mark();
        BIO_free(bio);
        if (pk == NULL) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the parent PEM holds no readable public key");
            return 0;
        }
        ok = parent_from_pkey(pk, out);
        EVP_PKEY_free(pk);
        return ok;
    }
    rc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(data, len, &off, out);
    if (rc != TSS2_RC_SUCCESS || off != len) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "the parent public key is neither a PEM public key nor a marshalled "
                    "TPM2B_PUBLIC (tpm2_readpublic -o)");
        return 0;
    }
    if ((out->publicArea.objectAttributes & need) != need ||
        (out->publicArea.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT) != 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the parent public area is not a storage key "
                                          "(restricted decryption key)");
        return 0;
    }
    return 1;
}

int hwkey_tpm2_offline_wrap(EVP_PKEY *soft, const unsigned char *parent, size_t parent_len,
                            uint32_t parent_handle, const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out)
{
    TPM2B_PUBLIC ppub, pub;
    TPMT_SENSITIVE *sens = NULL;
    TPM2B_PRIVATE *dup = NULL;
    TPM2B_ENCRYPTED_SECRET seed;
    unsigned char pubbuf[sizeof(TPM2B_PUBLIC)], dupbuf[sizeof(TPM2B_PRIVATE)];
    unsigned char seedbuf[sizeof(TPM2B_ENCRYPTED_SECRET)];
    size_t publen = 0, duplen = 0, seedlen = 0;
    HWKEY_TSS2_KEYFILE kf;
    int from_pem = 0, ok = 0;

    memset(out, 0, sizeof(*out));
    memset(&kf, 0, sizeof(kf));
    if (!parent_parse(parent, parent_len, &ppub, &from_pem))
        return 0;
    if ((sens = hwkey_secmem_alloc(sizeof(*sens))) == NULL ||
        (dup = OPENSSL_zalloc(sizeof(*dup))) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating the import wrapper");
        goto end;
    }
    if (!hwkey_tpm2_import_object(soft, opts, &pub, sens) ||
        !hwkey_tpm2_dup_wrap(&ppub.publicArea, &pub.publicArea, sens, dup, &seed))
        goto end;
    if (Tss2_MU_TPM2B_PUBLIC_Marshal(&pub, pubbuf, sizeof(pubbuf), &publen) != TSS2_RC_SUCCESS ||
        Tss2_MU_TPM2B_PRIVATE_Marshal(dup, dupbuf, sizeof(dupbuf), &duplen) != TSS2_RC_SUCCESS ||
        Tss2_MU_TPM2B_ENCRYPTED_SECRET_Marshal(&seed, seedbuf, sizeof(seedbuf), &seedlen) !=
            TSS2_RC_SUCCESS) {
        hwkey_raise(HWKEY_R_INTERNAL, "marshalling the importable key");
        goto end;
    }
    kf.type = HWKEY_TSS2_IMPORTABLE;
    kf.empty_auth = sens->authValue.size == 0;
    if (parent_handle == 0)
        parent_handle =
            from_pem || is_standard(&ppub) ? HWKEY_TPM2_PARENT_OWNER : HWKEY_TPM2_SRK_HANDLE;
    kf.parent = parent_handle;
    kf.pubkey = pubbuf;
    kf.pubkey_len = publen;
    kf.privkey = dupbuf;
    kf.privkey_len = duplen;
    /* The seed as a marshalled TPM2B_ENCRYPTED_SECRET, as openssl_tpm2_engine writes it. */
    kf.secret = seedbuf;
    kf.secret_len = seedlen;
    if (!hwkey_tss2_keyfile_encode(&kf, &out->data, &out->len))
        goto end;
    out->kind = HWKEY_REF_TSS2_KEYFILE;
    hwkey_log(HWKEY_LOG_INFO, "tpm2: wrapped a key offline for parent 0x%08x",
              (unsigned int)parent_handle);
    ok = 1;
end:
    OPENSSL_cleanse(dupbuf, sizeof(dupbuf));
    OPENSSL_cleanse(seedbuf, sizeof(seedbuf));
    if (dup != NULL)
        OPENSSL_clear_free(dup, sizeof(*dup));
    hwkey_secmem_free(sens);
    return ok;
}

int hwkey_tpm2_import_seed_parse(const unsigned char *secret, size_t len,
                                 TPM2B_ENCRYPTED_SECRET **out)
{
    TPM2B_ENCRYPTED_SECRET *s = OPENSSL_zalloc(sizeof(*s));
    size_t off = 0;

    *out = NULL;
    if (s == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "reading the importable key's seed");
        return 0;
    }
    /* A marshalled TPM2B (ours, openssl_tpm2_engine's), else the bare secret bytes. */
    if (len >= 2 && ((size_t)secret[0] << 8 | secret[1]) == len - 2) {
        if (Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(secret, len, &off, s) != TSS2_RC_SUCCESS ||
            off != len)
            goto bad;
    } else {
        if (len == 0 || len > sizeof(s->secret))
            goto bad;
        memcpy(s->secret, secret, len);
        s->size = (UINT16)len;
    }
    *out = s;
    return 1;
bad:
    OPENSSL_free(s);
    hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                "the importable key file's secret (%zu bytes) is not "
                "an encrypted seed",
                len);
    return 0;
}

int hwkey_tpm2_import_pending(HWKEY_TPM2_KEY *key, ESYS_CONTEXT *esys, ESYS_TR parent)
{
    const TPM2B_DATA no_inner_key = {0};
    const TPMT_SYM_DEF_OBJECT no_inner = {.algorithm = TPM2_ALG_NULL};
    HWKEY_TPM2_RETRY retry = {0};
    TPM2B_PRIVATE *priv = NULL;
    TSS2_RC rc;

    do {
        rc = Esys_Import(esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &no_inner_key,
                         &key->pub, &key->priv, key->import_seed, &no_inner, &priv);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_note_rc((HWKEY_TPM2_DEVICE *)key->base.device, rc);
        /* Integrity/value errors: wrapped for another parent (or corrupt). */
        return hwkey_tpm2_raise_load_rc(
            rc, "importing the importable key file (TPM2_Import): was it wrapped to this "
                "TPM's parent?");
    }
    key->priv = *priv;
    OPENSSL_cleanse(priv, sizeof(*priv));
    Esys_Free(priv);
    OPENSSL_clear_free(key->import_seed, sizeof(*key->import_seed));
    key->import_seed = NULL;
    hwkey_log(HWKEY_LOG_INFO, "tpm2: imported an importable key file under 0x%08x",
              (unsigned int)key->parent);
    return 1;
}

int hwkey_tpm2_import_finish(HWKEY_BKEY *base, HWKEY_REFBLOB *out)
{
    HWKEY_TPM2_KEY *key = (HWKEY_TPM2_KEY *)base;
    HWKEY_TPM2_DEVICE *dev;
    ESYS_CONTEXT *esys;
    ESYS_TR tr = ESYS_TR_NONE;
    int ok;

    memset(out, 0, sizeof(*out));
    if (base == NULL || base->backend != &hwkey_tpm2_backend || key->persistent != 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "import --finish takes a TPM key file");
        return 0;
    }
    if (key->import_seed == NULL) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the key file is already loadable (not an importable "
                                          "key file): nothing to finish");
        return 0;
    }
    dev = (HWKEY_TPM2_DEVICE *)base->device;
    if ((esys = hwkey_tpm2_acquire(dev)) == NULL)
        return 0;
    ok = hwkey_tpm2_key_get(key, esys, &tr);
    hwkey_tpm2_key_put(key, esys, &tr);
    hwkey_tpm2_release(dev);
    if (!ok)
        return 0;
    return hwkey_tpm2_keyfile_out(HWKEY_TSS2_LOADABLE, &key->pub, &key->priv, key->parent,
                                  !key->has_auth, "marshalling the key's public area",
                                  "marshalling the key's private blob", out);
}

int hwkey_tpm2_parent_public(HWKEY_DEVICE *base, uint32_t handle, EVP_PKEY **pkey,
                             unsigned char **tpm2b, size_t *tpm2b_len, uint32_t *recorded,
                             int *standard)
{
    HWKEY_TPM2_DEVICE *dev = (HWKEY_TPM2_DEVICE *)base;
    HWKEY_TPM2_RETRY retry = {0};
    ESYS_CONTEXT *esys;
    ESYS_TR parent = ESYS_TR_NONE;
    TPM2B_PUBLIC *pub = NULL;
    unsigned char a[sizeof(TPM2B_PUBLIC)];
    size_t alen = 0;
    TSS2_RC rc;
    int ok = 0;

    *pkey = NULL;
    *tpm2b = NULL;
    if (base == NULL || base->backend != &hwkey_tpm2_backend) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "no TPM device");
        return 0;
    }
    if ((esys = hwkey_tpm2_acquire(dev)) == NULL)
        return 0;
    if (!hwkey_tpm2_parent_get(dev, esys, handle, &parent, recorded)) {
        hwkey_tpm2_release(dev);
        return 0;
    }
    do {
        rc = Esys_ReadPublic(esys, parent, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL,
                             NULL);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_note_rc(dev, rc);
        hwkey_tpm2_raise_rc(rc, "reading the parent key's public area");
    }
    hwkey_tpm2_parent_put(dev, esys, &parent);
    hwkey_tpm2_release(dev);
    if (rc != TSS2_RC_SUCCESS)
        return 0;

    if (Tss2_MU_TPM2B_PUBLIC_Marshal(pub, a, sizeof(a), &alen) != TSS2_RC_SUCCESS) {
        hwkey_raise(HWKEY_R_INTERNAL, "marshalling the parent's public area");
        goto end;
    }
    /* Standard: the PEM alone rebuilds exactly this public area. */
    *standard = is_standard(pub);
    if ((*pkey = hwkey_tpm2_public_to_pkey(&pub->publicArea, NULL, NULL)) == NULL)
        goto end;
    if ((*tpm2b = OPENSSL_memdup(a, alen)) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying the parent's public area");
        goto end;
    }
    *tpm2b_len = alen;
    ok = 1;
end:
    if (!ok) {
        EVP_PKEY_free(*pkey);
        *pkey = NULL;
    }
    Esys_Free(pub);
    return ok;
}
