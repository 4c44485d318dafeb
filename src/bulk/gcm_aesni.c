/*
 * AES-256-GCM with AES-NI and PCLMULQDQ intrinsics (128-bit registers).
 *
 * Built with -maes -mpclmul -msse4.1 (Makefile.am, libhwkey_aesni.la): every
 * function here may execute those instructions, so none may run before
 * bulk_gcm.c has checked the CPU; the only entry to an object is
 * hwkey_bulk_gcm_new(), which does.
 *
 * Eight counter blocks go through the AES rounds side by side (eight
 * independent AESENC chains hide its latency), and GHASH of eight blocks is
 * folded with one reduction, X' = (X ^ C1)*H^8 ^ C2*H^7 ^ ... ^ C8*H, each
 * product with three PCLMULQDQs (Karatsuba).  The GHASH of one group is
 * stitched between the AES rounds of the next: encryption hashes the
 * previous group's ciphertext, decryption the ciphertext it is decrypting.
 * Where the CPU has VAES/VPCLMULQDQ, long runs go to gcm_vaes.c first.
 *
 * Round keys and H powers are read through pointers into the context (in
 * protected memory) at each use, never copied into locals; the compiler
 * still holds them in registers while they are used, and may spill
 * temporaries, so a block's worth of key material can pass through the
 * stack (docs/threat-model.md).
 */
#include "bulk/gcm_internal.h"

#include <string.h>

#include <openssl/crypto.h>

#include "util/error.h"

/* GCM's limits (SP 800-38D): plaintext < 2^39 - 256 bits with a 32-bit counter. */
#define GCM_MAX_MSG ((((uint64_t)1 << 32) - 2) * 16)
#define GCM_MAX_AAD ((uint64_t)1 << 61)

#define ALWAYS_INLINE inline __attribute__((always_inline))

size_t hwkey_gcm_aesni_ctx_size(void)
{
    return sizeof(HWKEY_BULK_GCM);
}

void hwkey_gcm_aesni_set_impl(HWKEY_BULK_GCM *g, int impl)
{
    g->impl = impl;
}

int hwkey_gcm_aesni_get_impl(const HWKEY_BULK_GCM *g)
{
    return g->impl;
}

/* ---- AES-256 ------------------------------------------------------------- */

static inline __m128i expand_a(__m128i t1, __m128i t2)
{
    __m128i t4;

    t2 = _mm_shuffle_epi32(t2, 0xff);
    t4 = _mm_slli_si128(t1, 4);
    t1 = _mm_xor_si128(t1, t4);
    t4 = _mm_slli_si128(t4, 4);
    t1 = _mm_xor_si128(t1, t4);
    t4 = _mm_slli_si128(t4, 4);
    t1 = _mm_xor_si128(t1, t4);
    return _mm_xor_si128(t1, t2);
}

static inline __m128i expand_b(__m128i t1, __m128i t3)
{
    __m128i t2 = _mm_shuffle_epi32(_mm_aeskeygenassist_si128(t1, 0x00), 0xaa);
    __m128i t4 = _mm_slli_si128(t3, 4);

    t3 = _mm_xor_si128(t3, t4);
    t4 = _mm_slli_si128(t4, 4);
    t3 = _mm_xor_si128(t3, t4);
    t4 = _mm_slli_si128(t4, 4);
    t3 = _mm_xor_si128(t3, t4);
    return _mm_xor_si128(t3, t2);
}

/* AESKEYGENASSIST takes its round constant as an immediate: one macro step per pair. */
#define EXPAND_PAIR(i, rcon)                                                                       \
    do {                                                                                           \
        t1 = expand_a(t1, _mm_aeskeygenassist_si128(t3, (rcon)));                                  \
        rk[(i)] = t1;                                                                              \
        t3 = expand_b(t1, t3);                                                                     \
        rk[(i) + 1] = t3;                                                                          \
    } while (0)

static void aes256_expand(__m128i rk[15], const unsigned char key[32])
{
    __m128i t1 = _mm_loadu_si128((const __m128i *)key);
    __m128i t3 = _mm_loadu_si128((const __m128i *)(key + 16));

    rk[0] = t1;
    rk[1] = t3;
    EXPAND_PAIR(2, 0x01);
    EXPAND_PAIR(4, 0x02);
    EXPAND_PAIR(6, 0x04);
    EXPAND_PAIR(8, 0x08);
    EXPAND_PAIR(10, 0x10);
    EXPAND_PAIR(12, 0x20);
    rk[14] = expand_a(t1, _mm_aeskeygenassist_si128(t3, 0x40));
}

static inline __m128i aes_block(const __m128i *rk, __m128i b)
{
    b = _mm_xor_si128(b, rk[0]);
    for (int i = 1; i < 14; i++)
        b = _mm_aesenc_si128(b, rk[i]);
    return _mm_aesenclast_si128(b, rk[14]);
}

static inline __m128i ctr_block(const HWKEY_BULK_GCM *g, uint32_t ctr)
{
    return _mm_insert_epi32(g->ctr0, (int)__builtin_bswap32(ctr), 3);
}

/* ---- GHASH ---------------------------------------------------------------- */

static inline __m128i gf_mul(__m128i a, __m128i b)
{
    __m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;
    __m128i bk = _mm_xor_si128(b, _mm_shuffle_epi32(b, 0x4e));

    gcm_kmul_acc(a, b, bk, &lo, &mid, &hi);
    return gcm_reduce(lo, mid, hi);
}

/* xi = (xi ^ P1)*H^n ^ P2*H^(n-1) ^ ... ^ Pn*H, one reduction; 1 <= n <= GCM_HPOWS. */
static inline __m128i ghash_n(const HWKEY_BULK_GCM *g, __m128i xi, const unsigned char *p, size_t n)
{
    const __m128i *h = GCM_HPOW(g, n), *hk = GCM_HKAR(g, n);
    __m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;

    for (size_t i = 0; i < n; i++) {
        __m128i x = gcm_bswap(_mm_loadu_si128((const __m128i *)(p + 16 * i)));

        gcm_kmul_acc(i == 0 ? _mm_xor_si128(x, xi) : x, h[i], hk[i], &lo, &mid, &hi);
    }
    return gcm_reduce(lo, mid, hi);
}

static __m128i ghash_run(const HWKEY_BULK_GCM *g, __m128i xi, const unsigned char *p,
                         size_t nblocks)
{
    for (; nblocks >= GCM_HPOWS; nblocks -= GCM_HPOWS, p += 16 * GCM_HPOWS)
        xi = ghash_n(g, xi, p, GCM_HPOWS);
    if (nblocks > 0)
        xi = ghash_n(g, xi, p, nblocks);
    return xi;
}

static void ghash_blocks(HWKEY_BULK_GCM *g, const unsigned char *p, size_t nblocks)
{
    g->xi = ghash_run(g, g->xi, p, nblocks);
}

/* ---- setup ---------------------------------------------------------------- */

void hwkey_gcm_aesni_init(HWKEY_BULK_GCM *g, const unsigned char key[HWKEY_BULK_KEY_LEN], int impl)
{
    __m128i h;

    aes256_expand(g->rk, key);
    h = gcm_bswap(aes_block(g->rk, _mm_setzero_si128()));
    *GCM_HPOW(g, 1) = h;
    for (int n = 2; n <= GCM_HPOWS; n++)
        *GCM_HPOW(g, n) = gf_mul(*GCM_HPOW(g, n - 1), h);
    for (int i = 0; i < GCM_HPOWS; i++)
        g->hkar[i] = _mm_xor_si128(g->hpow[i], _mm_shuffle_epi32(g->hpow[i], 0x4e));
    g->impl = impl;
}

void hwkey_bulk_gcm_start(HWKEY_BULK_GCM *g, const unsigned char iv[HWKEY_BULK_IV_LEN])
{
    unsigned char block[16] = {0};

    memcpy(block, iv, HWKEY_BULK_IV_LEN);
    g->ctr0 = _mm_loadu_si128((const __m128i *)block);
    g->ekj0 = aes_block(g->rk, ctr_block(g, 1));
    g->ctr = 2;
    g->xi = _mm_setzero_si128();
    g->aad_len = g->msg_len = 0;
    g->aad_part = g->part = 0;
    g->in_data = 0;
    OPENSSL_cleanse(g->ks, sizeof(g->ks));
}

int hwkey_bulk_gcm_aad(HWKEY_BULK_GCM *g, const unsigned char *aad, size_t len)
{
    size_t take, full;

    if (g->in_data) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "GCM: additional data after the message data");
        return 0;
    }
    if (len > GCM_MAX_AAD - g->aad_len) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "GCM: more than 2^61 bytes of additional data");
        return 0;
    }
    if (len == 0)
        return 1;
    g->aad_len += len;
    if (g->aad_part > 0) {
        take = len < 16 - g->aad_part ? len : 16 - g->aad_part;
        memcpy(g->aad_buf + g->aad_part, aad, take);
        g->aad_part += take;
        aad += take;
        len -= take;
        if (g->aad_part < 16)
            return 1;
        ghash_blocks(g, g->aad_buf, 1);
        g->aad_part = 0;
    }
    full = len / 16;
    ghash_blocks(g, aad, full);
    aad += full * 16;
    len -= full * 16;
    memcpy(g->aad_buf, aad, len);
    g->aad_part = len;
    return 1;
}

static void close_aad(HWKEY_BULK_GCM *g)
{
    if (g->in_data)
        return;
    if (g->aad_part > 0) {
        memset(g->aad_buf + g->aad_part, 0, 16 - g->aad_part);
        ghash_blocks(g, g->aad_buf, 1);
        g->aad_part = 0;
    }
    g->in_data = 1;
}

/* ---- CTR + GHASH over whole blocks -------------------------------------- */

#define AES_ROUND8(k)                                                                              \
    do {                                                                                           \
        const __m128i k_ = (k);                                                                    \
        b0 = _mm_aesenc_si128(b0, k_);                                                             \
        b1 = _mm_aesenc_si128(b1, k_);                                                             \
        b2 = _mm_aesenc_si128(b2, k_);                                                             \
        b3 = _mm_aesenc_si128(b3, k_);                                                             \
        b4 = _mm_aesenc_si128(b4, k_);                                                             \
        b5 = _mm_aesenc_si128(b5, k_);                                                             \
        b6 = _mm_aesenc_si128(b6, k_);                                                             \
        b7 = _mm_aesenc_si128(b7, k_);                                                             \
    } while (0)

/* One block of the stitched GHASH: block i of hsrc times H^(8-i). */
#define GHASH_STEP(i)                                                                              \
    do {                                                                                           \
        if (hsrc != NULL) {                                                                        \
            __m128i x_ = gcm_bswap(_mm_loadu_si128((const __m128i *)(hsrc + 16 * (i))));           \
            gcm_kmul_acc((i) == 0 ? _mm_xor_si128(x_, *xi) : x_, gcm_opaque(GCM_HPOW(g, 8))[(i)],  \
                         gcm_opaque(GCM_HKAR(g, 8))[(i)], &lo, &mid, &hi);                         \
        }                                                                                          \
    } while (0)

#define CTR_LE(i) gcm_bswap(_mm_add_epi32(*cle, _mm_set_epi32(0, 0, 0, (i))))
#define XOR_OUT(b, i)                                                                              \
    _mm_storeu_si128((__m128i *)(out + 16 * (i)),                                                  \
                     _mm_xor_si128(b, _mm_loadu_si128((const __m128i *)(in + 16 * (i)))))

/*
 * Eight counter blocks through AES-256, and (hsrc != NULL) the GHASH of the
 * eight blocks at hsrc folded into *xi, one GHASH step after each of the
 * first eight rounds and the reduction in the middle of the rest.  hsrc is
 * read before out is written, so decryption may hash in == out in place.
 */
static ALWAYS_INLINE void aes8_ghash8(const HWKEY_BULK_GCM *g, __m128i *cle,
                                      const unsigned char *in, unsigned char *out,
                                      const unsigned char *hsrc, __m128i *xi)
{
    const __m128i *rk = gcm_opaque(g->rk);
    __m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;
    __m128i b0 = _mm_xor_si128(CTR_LE(0), rk[0]), b1 = _mm_xor_si128(CTR_LE(1), rk[0]);
    __m128i b2 = _mm_xor_si128(CTR_LE(2), rk[0]), b3 = _mm_xor_si128(CTR_LE(3), rk[0]);
    __m128i b4 = _mm_xor_si128(CTR_LE(4), rk[0]), b5 = _mm_xor_si128(CTR_LE(5), rk[0]);
    __m128i b6 = _mm_xor_si128(CTR_LE(6), rk[0]), b7 = _mm_xor_si128(CTR_LE(7), rk[0]);

    *cle = _mm_add_epi32(*cle, _mm_set_epi32(0, 0, 0, 8));
    AES_ROUND8(rk[1]);
    GHASH_STEP(0);
    AES_ROUND8(rk[2]);
    GHASH_STEP(1);
    AES_ROUND8(rk[3]);
    GHASH_STEP(2);
    AES_ROUND8(rk[4]);
    GHASH_STEP(3);
    AES_ROUND8(rk[5]);
    GHASH_STEP(4);
    AES_ROUND8(rk[6]);
    GHASH_STEP(5);
    AES_ROUND8(rk[7]);
    GHASH_STEP(6);
    AES_ROUND8(rk[8]);
    GHASH_STEP(7);
    AES_ROUND8(rk[9]);
    if (hsrc != NULL)
        *xi = gcm_reduce(lo, mid, hi);
    AES_ROUND8(rk[10]);
    AES_ROUND8(rk[11]);
    AES_ROUND8(rk[12]);
    AES_ROUND8(rk[13]);
    XOR_OUT(_mm_aesenclast_si128(b0, rk[14]), 0);
    XOR_OUT(_mm_aesenclast_si128(b1, rk[14]), 1);
    XOR_OUT(_mm_aesenclast_si128(b2, rk[14]), 2);
    XOR_OUT(_mm_aesenclast_si128(b3, rk[14]), 3);
    XOR_OUT(_mm_aesenclast_si128(b4, rk[14]), 4);
    XOR_OUT(_mm_aesenclast_si128(b5, rk[14]), 5);
    XOR_OUT(_mm_aesenclast_si128(b6, rk[14]), 6);
    XOR_OUT(_mm_aesenclast_si128(b7, rk[14]), 7);
}

/* CTR over fewer than eight blocks: four side by side, then one at a time. */
static void ctr_tail(const HWKEY_BULK_GCM *g, __m128i *cle, const unsigned char *in,
                     unsigned char *out, size_t nblocks)
{
    const __m128i *rk = g->rk;

    if (nblocks >= 4) {
        __m128i b0 = _mm_xor_si128(CTR_LE(0), rk[0]), b1 = _mm_xor_si128(CTR_LE(1), rk[0]);
        __m128i b2 = _mm_xor_si128(CTR_LE(2), rk[0]), b3 = _mm_xor_si128(CTR_LE(3), rk[0]);

        for (int r = 1; r < 14; r++) {
            b0 = _mm_aesenc_si128(b0, rk[r]);
            b1 = _mm_aesenc_si128(b1, rk[r]);
            b2 = _mm_aesenc_si128(b2, rk[r]);
            b3 = _mm_aesenc_si128(b3, rk[r]);
        }
        XOR_OUT(_mm_aesenclast_si128(b0, rk[14]), 0);
        XOR_OUT(_mm_aesenclast_si128(b1, rk[14]), 1);
        XOR_OUT(_mm_aesenclast_si128(b2, rk[14]), 2);
        XOR_OUT(_mm_aesenclast_si128(b3, rk[14]), 3);
        *cle = _mm_add_epi32(*cle, _mm_set_epi32(0, 0, 0, 4));
        nblocks -= 4;
        in += 64;
        out += 64;
    }
    for (; nblocks > 0; nblocks--, in += 16, out += 16) {
        XOR_OUT(aes_block(rk, CTR_LE(0)), 0);
        *cle = _mm_add_epi32(*cle, _mm_set_epi32(0, 0, 0, 1));
    }
}

/* The 128-bit core over whole blocks; g->xi and g->ctr advance. */
static void crypt_blocks_aesni(HWKEY_BULK_GCM *g, int enc, const unsigned char *in,
                               unsigned char *out, size_t nblocks)
{
    __m128i xi = g->xi, cle = gcm_ctr_le(g, g->ctr);

    if (enc && nblocks >= 8) {
        /* The first group has no predecessor to hash; the last is hashed after the loop. */
        aes8_ghash8(g, &cle, in, out, NULL, &xi);
        for (nblocks -= 8, in += 128, out += 128; nblocks >= 8; nblocks -= 8, in += 128, out += 128)
            aes8_ghash8(g, &cle, in, out, out - 128, &xi);
        xi = ghash_n(g, xi, out - 128, 8);
    } else if (!enc) {
        for (; nblocks >= 8; nblocks -= 8, in += 128, out += 128)
            aes8_ghash8(g, &cle, in, out, in, &xi);
    }
    if (nblocks > 0) {
        /* Decryption hashes before it overwrites (in may equal out). */
        if (!enc)
            xi = ghash_n(g, xi, in, nblocks);
        ctr_tail(g, &cle, in, out, nblocks);
        if (enc)
            xi = ghash_n(g, xi, out, nblocks);
    }
    g->xi = xi;
    g->ctr = (uint32_t)_mm_cvtsi128_si32(cle);
}

static void crypt_blocks(HWKEY_BULK_GCM *g, int enc, const unsigned char *in, unsigned char *out,
                         size_t nblocks)
{
    if (g->impl == HWKEY_BULK_IMPL_VAES) {
        size_t done = hwkey_gcm_vaes_blocks(g, enc, in, out, nblocks);

        in += 16 * done;
        out += 16 * done;
        nblocks -= done;
    }
    if (nblocks > 0)
        crypt_blocks_aesni(g, enc, in, out, nblocks);
}

int hwkey_bulk_gcm_update(HWKEY_BULK_GCM *g, int enc, const unsigned char *in, unsigned char *out,
                          size_t len)
{
    size_t full;

    if (len > GCM_MAX_MSG - g->msg_len) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "GCM: more than 2^36 - 32 bytes under one IV");
        return 0;
    }
    close_aad(g);
    if (len == 0)
        return 1;
    g->msg_len += len;
    /* Finish the block an earlier call left partial, byte by byte (in may equal out). */
    while (g->part != 0 && len > 0) {
        unsigned char c = *in++, o = c ^ g->ks[g->part];

        g->ct_buf[g->part++] = enc ? o : c;
        *out++ = o;
        len--;
        if (g->part == 16) {
            ghash_blocks(g, g->ct_buf, 1);
            g->part = 0;
        }
    }
    full = len / 16;
    crypt_blocks(g, enc, in, out, full);
    in += full * 16;
    out += full * 16;
    len -= full * 16;
    if (len > 0) {
        _mm_storeu_si128((__m128i *)g->ks, aes_block(g->rk, ctr_block(g, g->ctr++)));
        for (size_t i = 0; i < len; i++) {
            unsigned char c = in[i], o = c ^ g->ks[i];

            g->ct_buf[i] = enc ? o : c;
            out[i] = o;
        }
        g->part = len;
    }
    return 1;
}

void hwkey_bulk_gcm_tag(HWKEY_BULK_GCM *g, unsigned char tag[HWKEY_BULK_TAG_LEN])
{
    unsigned char lens[16];
    uint64_t abits = g->aad_len * 8, cbits = g->msg_len * 8;

    close_aad(g);
    if (g->part > 0) {
        memset(g->ct_buf + g->part, 0, 16 - g->part);
        ghash_blocks(g, g->ct_buf, 1);
        g->part = 0;
    }
    for (int i = 0; i < 8; i++) {
        lens[i] = (unsigned char)(abits >> (56 - 8 * i));
        lens[8 + i] = (unsigned char)(cbits >> (56 - 8 * i));
    }
    ghash_blocks(g, lens, 1);
    _mm_storeu_si128((__m128i *)tag, _mm_xor_si128(gcm_bswap(g->xi), g->ekj0));
    OPENSSL_cleanse(g->ks, sizeof(g->ks));
}

/* ---- one-shot ------------------------------------------------------------- */

int hwkey_bulk_gcm_encrypt(HWKEY_BULK_GCM *g, const unsigned char iv[HWKEY_BULK_IV_LEN],
                           const unsigned char *aad, size_t aadlen, const unsigned char *in,
                           unsigned char *out, size_t len, unsigned char tag[HWKEY_BULK_TAG_LEN])
{
    hwkey_bulk_gcm_start(g, iv);
    if (!hwkey_bulk_gcm_aad(g, aad, aadlen) || !hwkey_bulk_gcm_update(g, 1, in, out, len))
        return 0;
    hwkey_bulk_gcm_tag(g, tag);
    return 1;
}

int hwkey_bulk_gcm_decrypt(HWKEY_BULK_GCM *g, const unsigned char iv[HWKEY_BULK_IV_LEN],
                           const unsigned char *aad, size_t aadlen, const unsigned char *in,
                           unsigned char *out, size_t len,
                           const unsigned char tag[HWKEY_BULK_TAG_LEN])
{
    unsigned char got[HWKEY_BULK_TAG_LEN];

    hwkey_bulk_gcm_start(g, iv);
    if (!hwkey_bulk_gcm_aad(g, aad, aadlen) || !hwkey_bulk_gcm_update(g, 0, in, out, len))
        goto bad;
    hwkey_bulk_gcm_tag(g, got);
    if (CRYPTO_memcmp(got, tag, HWKEY_BULK_TAG_LEN) != 0) {
        hwkey_raise(HWKEY_R_DECRYPTION_FAILED,
                    "AES-256-GCM tag mismatch: the data was modified or the key is wrong");
        goto bad;
    }
    return 1;
bad:
    if (len > 0)
        OPENSSL_cleanse(out, len);
    return 0;
}
