/*
 * RSA paddings around the device's raw private operation.  Decoding follows
 * OpenSSL's own constant-time code (rsa_oaep.c, rsa_pk1.c): every byte is
 * looked at, no branch depends on a padding byte, and the only outcome is
 * the final good/bad mask.
 */
#include "ops/rsa_padding.h"

#include <stdint.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "util/secmem.h"

/* --- constant-time helpers: masks are all-ones or all-zeros ------------- */

static unsigned int ct_barrier(unsigned int a)
{
    volatile unsigned int r = a;

    return r;
}

static unsigned int ct_msb(unsigned int a)
{
    return 0u - (a >> (sizeof(a) * 8 - 1));
}

static unsigned int ct_lt(unsigned int a, unsigned int b)
{
    return ct_msb(a ^ ((a ^ b) | ((a - b) ^ b)));
}

static unsigned int ct_ge(unsigned int a, unsigned int b)
{
    return ~ct_lt(a, b);
}

static unsigned int ct_is_zero(unsigned int a)
{
    return ct_msb(~a & (a - 1));
}

static unsigned int ct_eq(unsigned int a, unsigned int b)
{
    return ct_is_zero(a ^ b);
}

static unsigned int ct_select(unsigned int mask, unsigned int a, unsigned int b)
{
    return (ct_barrier(mask) & a) | (ct_barrier(~mask) & b);
}

static unsigned char ct_select_8(unsigned int mask, unsigned char a, unsigned char b)
{
    return (unsigned char)ct_select(mask, a, b);
}

/* --- signature encodings ---------------------------------------------- */

/* DigestInfo prefixes (RFC 8017 9.2 note 1): NIST hashes share all but one byte. */
static const struct {
    int nid;
    unsigned char oid_last;
    unsigned char len;
} nist_digests[] = {
    {NID_sha256, 0x01, 32},   {NID_sha384, 0x02, 48},     {NID_sha512, 0x03, 64},
    {NID_sha224, 0x04, 28},   {NID_sha512_224, 0x05, 28}, {NID_sha512_256, 0x06, 32},
    {NID_sha3_224, 0x07, 28}, {NID_sha3_256, 0x08, 32},   {NID_sha3_384, 0x09, 48},
    {NID_sha3_512, 0x0a, 64},
};
static const unsigned char sha1_prefix[] = {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
                                            0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14};
#define DIGESTINFO_PREFIX_MAX 19

/* Writes the DigestInfo prefix of md_nid; 0 if unknown or the digest length is wrong. */
static size_t digestinfo_prefix(int md_nid, size_t digest_len,
                                unsigned char out[DIGESTINFO_PREFIX_MAX])
{
    static const unsigned char nist_prefix[] = {0x30, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                0x00, 0x05, 0x00, 0x04, 0x00};

    if (md_nid == NID_sha1) {
        if (digest_len != 20)
            return 0;
        memcpy(out, sha1_prefix, sizeof(sha1_prefix));
        return sizeof(sha1_prefix);
    }
    for (size_t i = 0; i < sizeof(nist_digests) / sizeof(nist_digests[0]); i++) {
        if (nist_digests[i].nid != md_nid)
            continue;
        if (digest_len != nist_digests[i].len)
            return 0;
        memcpy(out, nist_prefix, sizeof(nist_prefix));
        out[1] = (unsigned char)(0x11 + digest_len);
        out[14] = nist_digests[i].oid_last;
        out[18] = (unsigned char)digest_len;
        return sizeof(nist_prefix);
    }
    return 0;
}

int hwkey_digest_known(int md_nid)
{
    unsigned char prefix[DIGESTINFO_PREFIX_MAX];

    if (md_nid == NID_sha1)
        return 1;
    for (size_t i = 0; i < sizeof(nist_digests) / sizeof(nist_digests[0]); i++)
        if (nist_digests[i].nid == md_nid)
            return digestinfo_prefix(md_nid, nist_digests[i].len, prefix) != 0;
    return 0;
}

int hwkey_rsa_encode_pkcs1(unsigned char *em, size_t k, int md_nid, const unsigned char *digest,
                           size_t digest_len)
{
    unsigned char prefix[DIGESTINFO_PREFIX_MAX];
    size_t prefix_len = 0, t_len;

    if (md_nid != NID_undef && md_nid != NID_md5_sha1) {
        prefix_len = digestinfo_prefix(md_nid, digest_len, prefix);
        if (prefix_len == 0)
            return 0;
    }
    t_len = prefix_len + digest_len;
    /* At least 8 bytes of FF (RFC 8017 9.2 step 3). */
    if (k < t_len + 11)
        return 0;
    em[0] = 0x00;
    em[1] = 0x01;
    memset(em + 2, 0xff, k - t_len - 3);
    em[k - t_len - 1] = 0x00;
    memcpy(em + k - t_len, prefix, prefix_len);
    memcpy(em + k - digest_len, digest, digest_len);
    return 1;
}

int hwkey_rsa_pss_max_salt(int modbits, size_t hlen)
{
    size_t em_len = ((size_t)modbits - 1 + 7) / 8;

    if (modbits < 2 || em_len < hlen + 2)
        return -1;
    return (int)(em_len - hlen - 2);
}

int hwkey_rsa_mgf1(unsigned char *mask, size_t len, const unsigned char *seed, size_t seed_len,
                   const EVP_MD *md)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char block[EVP_MAX_MD_SIZE];
    int md_len = EVP_MD_get_size(md);
    int ok = 0;

    if (c == NULL || md_len <= 0)
        goto end;
    for (uint32_t counter = 0, done = 0; done < len; counter++) {
        unsigned char cnt[4] = {(unsigned char)(counter >> 24), (unsigned char)(counter >> 16),
                                (unsigned char)(counter >> 8), (unsigned char)counter};
        size_t n = len - done < (size_t)md_len ? len - done : (size_t)md_len;

        if (!EVP_DigestInit_ex(c, md, NULL) || !EVP_DigestUpdate(c, seed, seed_len) ||
            !EVP_DigestUpdate(c, cnt, sizeof(cnt)) || !EVP_DigestFinal_ex(c, block, NULL))
            goto end;
        memcpy(mask + done, block, n);
        done += (uint32_t)n;
    }
    ok = 1;
end:
    OPENSSL_cleanse(block, sizeof(block));
    EVP_MD_CTX_free(c);
    return ok;
}

int hwkey_rsa_encode_pss(OSSL_LIB_CTX *libctx, unsigned char *em, size_t k, int modbits,
                         const EVP_MD *md, const EVP_MD *mgf1_md, const unsigned char *mhash,
                         size_t salt_len)
{
    static const unsigned char zeros[8] = {0};
    size_t em_bits = (size_t)modbits - 1, em_len = (em_bits + 7) / 8;
    int h = EVP_MD_get_size(md);
    size_t hlen = h > 0 ? (size_t)h : 0, db_len;
    unsigned char *out, *db, *hash;
    EVP_MD_CTX *c = NULL;
    int ok = 0;

    if (hlen == 0 || em_len > k || em_len < hlen + salt_len + 2)
        return 0;
    /* When modbits - 1 is a multiple of 8, EM is one byte shorter than k. */
    memset(em, 0, k - em_len);
    out = em + (k - em_len);
    db_len = em_len - hlen - 1;
    db = out;
    hash = out + db_len;

    /* DB = PS || 0x01 || salt, the salt written in place. */
    memset(db, 0, db_len - salt_len - 1);
    db[db_len - salt_len - 1] = 0x01;
    if (salt_len > 0 && RAND_bytes_ex(libctx, db + db_len - salt_len, salt_len, 0) <= 0)
        goto end;
    /* H = Hash(00*8 || mHash || salt). */
    c = EVP_MD_CTX_new();
    if (c == NULL || !EVP_DigestInit_ex(c, md, NULL) ||
        !EVP_DigestUpdate(c, zeros, sizeof(zeros)) || !EVP_DigestUpdate(c, mhash, hlen) ||
        !EVP_DigestUpdate(c, db + db_len - salt_len, salt_len) ||
        !EVP_DigestFinal_ex(c, hash, NULL))
        goto end;
    /* maskedDB = DB xor MGF1(H): mask into a scratch copy, then xor. */
    {
        unsigned char *mask = OPENSSL_malloc(db_len);

        if (mask == NULL || !hwkey_rsa_mgf1(mask, db_len, hash, hlen, mgf1_md)) {
            OPENSSL_free(mask);
            goto end;
        }
        for (size_t i = 0; i < db_len; i++)
            db[i] ^= mask[i];
        OPENSSL_free(mask);
    }
    db[0] &= (unsigned char)(0xffu >> (8 * em_len - em_bits));
    out[em_len - 1] = 0xbc;
    ok = 1;
end:
    EVP_MD_CTX_free(c);
    return ok;
}

/* --- constant-time decodings ------------------------------------------ */

/*
 * Moves the message that starts at one of [from_min .. from_min + room) in
 * buf left to buf + from_min, in time independent of where it starts
 * (OpenSSL's rotation), then copies min(mlen, tlen) bytes out when good.
 */
static void ct_copy_out(unsigned char *to, size_t tlen, unsigned char *buf, size_t from_min,
                        size_t buf_len, size_t mlen, unsigned int good)
{
    size_t room = buf_len - from_min;
    size_t n = ct_select(ct_lt((unsigned int)room, (unsigned int)tlen), (unsigned int)room,
                         (unsigned int)tlen);

    for (size_t shift = 1; shift < room; shift <<= 1) {
        unsigned int mask = ~ct_eq((unsigned int)(shift & (room - mlen)), 0);

        for (size_t i = from_min; i < buf_len - shift; i++)
            buf[i] = ct_select_8(mask, buf[i + shift], buf[i]);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned int mask = good & ct_lt((unsigned int)i, (unsigned int)mlen);

        to[i] = ct_select_8(mask, buf[i + from_min], to[i]);
    }
}

int hwkey_rsa_decode_oaep(unsigned char *to, size_t tlen, const unsigned char *em, size_t k,
                          const EVP_MD *md, const EVP_MD *mgf1_md, const unsigned char *label,
                          size_t label_len)
{
    int h = EVP_MD_get_size(md);
    size_t mdlen = h > 0 ? (size_t)h : 0, db_len;
    unsigned char seed[EVP_MAX_MD_SIZE], phash[EVP_MAX_MD_SIZE];
    unsigned char *db = NULL;
    unsigned int good, found_one = 0, one_index = 0, mlen;
    int ret = -1;

    /* Publicly invalid sizes: not secret, may return early. */
    if (mdlen == 0 || k < 2 * mdlen + 2)
        return -1;
    db_len = k - mdlen - 1;
    db = hwkey_secmem_alloc(db_len);
    if (db == NULL)
        return -1;

    good = ct_is_zero(em[0]);
    if (!hwkey_rsa_mgf1(seed, mdlen, em + 1 + mdlen, db_len, mgf1_md))
        goto end;
    for (size_t i = 0; i < mdlen; i++)
        seed[i] ^= em[1 + i];
    if (!hwkey_rsa_mgf1(db, db_len, seed, mdlen, mgf1_md))
        goto end;
    for (size_t i = 0; i < db_len; i++)
        db[i] ^= em[1 + mdlen + i];
    if (!EVP_Digest(label != NULL ? label : (const unsigned char *)"", label_len, phash, NULL, md,
                    NULL))
        goto end;
    good &= ct_is_zero((unsigned int)CRYPTO_memcmp(db, phash, mdlen));

    /* DB = lHash' || PS (zeros) || 0x01 || M */
    for (size_t i = mdlen; i < db_len; i++) {
        unsigned int is_one = ct_eq(db[i], 1), is_zero = ct_is_zero(db[i]);

        one_index = ct_select(~found_one & is_one, (unsigned int)i, one_index);
        found_one |= is_one;
        good &= (found_one | is_zero);
    }
    good &= found_one;
    mlen = (unsigned int)db_len - (one_index + 1);
    good &= ct_ge((unsigned int)tlen, mlen);
    ct_copy_out(to, tlen, db, mdlen + 1, db_len, mlen, good);
    ret = (int)ct_select(good, mlen, (unsigned int)-1);
end:
    OPENSSL_cleanse(seed, sizeof(seed));
    hwkey_secmem_free(db);
    return ret;
}

#define PKCS1_PADDING_SIZE 11

int hwkey_rsa_decode_pkcs1(unsigned char *to, size_t tlen, const unsigned char *em, size_t k)
{
    unsigned char *buf;
    unsigned int good, found_zero = 0, zero_index = 0, mlen;
    int ret;

    if (k < PKCS1_PADDING_SIZE)
        return -1;
    buf = hwkey_secmem_alloc(k);
    if (buf == NULL)
        return -1;
    memcpy(buf, em, k);

    good = ct_is_zero(buf[0]);
    good &= ct_eq(buf[1], 2);
    for (size_t i = 2; i < k; i++) {
        unsigned int is_zero = ct_is_zero(buf[i]);

        zero_index = ct_select(~found_zero & is_zero, (unsigned int)i, zero_index);
        found_zero |= is_zero;
    }
    /* PS is at least 8 bytes and the separator must exist. */
    good &= found_zero;
    good &= ct_ge(zero_index, 2 + 8);
    mlen = (unsigned int)k - (zero_index + 1);
    good &= ct_ge((unsigned int)tlen, mlen);
    ct_copy_out(to, tlen, buf, PKCS1_PADDING_SIZE, k, mlen, good);
    ret = (int)ct_select(good, mlen, (unsigned int)-1);
    hwkey_secmem_free(buf);
    return ret;
}

int hwkey_rsa_decode_pkcs1_tls(OSSL_LIB_CTX *libctx, unsigned char *to, size_t tlen,
                               const unsigned char *em, size_t k, unsigned int client_version,
                               unsigned int alt_version)
{
    unsigned char random_premaster[HWKEY_TLS_PREMASTER_LEN];
    const size_t pm = k - HWKEY_TLS_PREMASTER_LEN;
    unsigned int good, version_good;

    if (tlen < HWKEY_TLS_PREMASTER_LEN || k < HWKEY_TLS_PREMASTER_LEN + PKCS1_PADDING_SIZE)
        return -1;
    /* Drawn every time, so that success and failure cost the same. */
    if (RAND_priv_bytes_ex(libctx, random_premaster, sizeof(random_premaster), 0) <= 0)
        return -1;

    good = ct_is_zero(em[0]);
    good &= ct_eq(em[1], 2);
    for (size_t i = 2; i < pm - 1; i++)
        good &= ~ct_is_zero(em[i]);
    good &= ct_is_zero(em[pm - 1]);

    version_good = ct_eq(em[pm], (client_version >> 8) & 0xff);
    version_good &= ct_eq(em[pm + 1], client_version & 0xff);
    if (alt_version != 0) {
        unsigned int alt_good = ct_eq(em[pm], (alt_version >> 8) & 0xff);

        alt_good &= ct_eq(em[pm + 1], alt_version & 0xff);
        version_good |= alt_good;
    }
    good &= version_good;

    for (size_t i = 0; i < HWKEY_TLS_PREMASTER_LEN; i++)
        to[i] = ct_select_8(good, em[pm + i], random_premaster[i]);
    OPENSSL_cleanse(random_premaster, sizeof(random_premaster));
    return HWKEY_TLS_PREMASTER_LEN;
}

/* --- the pad-mode parameter ------------------------------------------- */

static const OSSL_ITEM pad_modes[] = {
    {RSA_PKCS1_PADDING, OSSL_PKEY_RSA_PAD_MODE_PKCSV15},
    {RSA_PKCS1_OAEP_PADDING, OSSL_PKEY_RSA_PAD_MODE_OAEP},
    {RSA_PKCS1_PSS_PADDING, OSSL_PKEY_RSA_PAD_MODE_PSS},
    {RSA_NO_PADDING, OSSL_PKEY_RSA_PAD_MODE_NONE},
    {RSA_X931_PADDING, OSSL_PKEY_RSA_PAD_MODE_X931},
    {RSA_PKCS1_WITH_TLS_PADDING, "pkcs1-tls"},
};

int hwkey_rsa_pad_mode_get(const OSSL_PARAM *p, int *mode)
{
    char buf[32], *s = buf;

    if (p->data_type != OSSL_PARAM_UTF8_STRING)
        return OSSL_PARAM_get_int(p, mode);
    if (!OSSL_PARAM_get_utf8_string(p, &s, sizeof(buf)))
        return 0;
    for (size_t i = 0; i < sizeof(pad_modes) / sizeof(pad_modes[0]); i++)
        if (OPENSSL_strcasecmp(pad_modes[i].ptr, buf) == 0) {
            *mode = (int)pad_modes[i].id;
            return 1;
        }
    *mode = -1;
    return 0;
}

const char *hwkey_rsa_pad_mode_name(int mode)
{
    for (size_t i = 0; i < sizeof(pad_modes) / sizeof(pad_modes[0]); i++)
        if ((int)pad_modes[i].id == mode)
            return pad_modes[i].ptr;
    return "(unknown)";
}

int hwkey_rsa_pad_mode_set(OSSL_PARAM *p, int mode)
{
    if (p->data_type == OSSL_PARAM_UTF8_STRING)
        return OSSL_PARAM_set_utf8_string(p, hwkey_rsa_pad_mode_name(mode));
    return OSSL_PARAM_set_int(p, mode);
}
