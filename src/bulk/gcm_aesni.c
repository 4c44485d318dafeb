/*
 * AES-256-GCM with AES-NI and PCLMULQDQ intrinsics.
 *
 * Built with -maes -mpclmul -msse4.1 (Makefile.am, libhwkey_aesni.la): every
 * function here may execute those instructions, so none may run before
 * bulk_gcm.c has checked the CPU; the only entry to an object is
 * hwkey_bulk_gcm_new(), which does.
 *
 * GHASH follows Intel's white paper "Intel Carry-Less Multiplication
 * Instruction and its Usage for Computing the GCM Mode" (Gueron, Kounavis):
 * blocks are byte-reflected with PSHUFB, multiplied with four PCLMULQDQs,
 * the 256-bit product shifted left by one and reduced modulo
 * x^128 + x^7 + x^2 + x + 1.  Multiplication is linear, so four blocks are
 * folded with one reduction: X' = (X^C1)*H^4 ^ C2*H^3 ^ C3*H^2 ^ C4*H, and
 * four counter blocks go through the AES rounds side by side so the AESENC
 * latency is hidden.
 */
#include "bulk/gcm_aesni.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>

#include "util/error.h"

/* GCM's limits (SP 800-38D): plaintext < 2^39 - 256 bits with a 32-bit counter. */
#define GCM_MAX_MSG ((((uint64_t)1 << 32) - 2) * 16)
#define GCM_MAX_AAD ((uint64_t)1 << 61)

struct hwkey_bulk_gcm {
    __m128i rk[15];            /* AES-256 round keys */
    __m128i hpow[4];           /* H^1..H^4, byte-reflected */
    __m128i xi;                /* GHASH accumulator, byte-reflected */
    __m128i ekj0;              /* E(K, IV || 1): xored into the tag */
    __m128i ctr0;              /* IV || 0; counter blocks set word 3 */
    uint32_t ctr;              /* next counter value */
    uint64_t aad_len, msg_len; /* bytes */
    unsigned char aad_buf[16]; /* partial AAD block */
    size_t aad_part;
    unsigned char ks[16];      /* keystream of the partial data block */
    unsigned char ct_buf[16];  /* its ciphertext so far, for GHASH */
    size_t part;
    int in_data;               /* data seen: AAD is closed */
};

size_t hwkey_gcm_aesni_ctx_size(void)
{
    return sizeof(HWKEY_BULK_GCM);
}

static inline __m128i bswap128(__m128i x)
{
    return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
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
#define EXPAND_PAIR(i, rcon)                                        \
    do {                                                            \
        t1 = expand_a(t1, _mm_aeskeygenassist_si128(t3, (rcon)));   \
        rk[(i)] = t1;                                               \
        t3 = expand_b(t1, t3);                                      \
        rk[(i) + 1] = t3;                                           \
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

/* Accumulates the unreduced 256-bit product a*b as lo, mid (middle terms), hi. */
static inline void clmul_acc(__m128i a, __m128i b, __m128i *lo, __m128i *mid, __m128i *hi)
{
    *lo = _mm_xor_si128(*lo, _mm_clmulepi64_si128(a, b, 0x00));
    *hi = _mm_xor_si128(*hi, _mm_clmulepi64_si128(a, b, 0x11));
    *mid = _mm_xor_si128(*mid, _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10),
                                             _mm_clmulepi64_si128(a, b, 0x01)));
}

/* Shift the reflected 256-bit product left by one and reduce it (white paper, fig. 5). */
static inline __m128i gf_reduce(__m128i lo, __m128i mid, __m128i hi)
{
    __m128i t2, t4, t5, t7, t8, t9;

    lo = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
    hi = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));

    t7 = _mm_srli_epi32(lo, 31);
    t8 = _mm_srli_epi32(hi, 31);
    lo = _mm_slli_epi32(lo, 1);
    hi = _mm_slli_epi32(hi, 1);
    t9 = _mm_srli_si128(t7, 12);
    t8 = _mm_slli_si128(t8, 4);
    t7 = _mm_slli_si128(t7, 4);
    lo = _mm_or_si128(lo, t7);
    hi = _mm_or_si128(hi, t8);
    hi = _mm_or_si128(hi, t9);

    t7 = _mm_slli_epi32(lo, 31);
    t8 = _mm_slli_epi32(lo, 30);
    t9 = _mm_slli_epi32(lo, 25);
    t7 = _mm_xor_si128(t7, t8);
    t7 = _mm_xor_si128(t7, t9);
    t8 = _mm_srli_si128(t7, 4);
    t7 = _mm_slli_si128(t7, 12);
    lo = _mm_xor_si128(lo, t7);
    t2 = _mm_srli_epi32(lo, 1);
    t4 = _mm_srli_epi32(lo, 2);
    t5 = _mm_srli_epi32(lo, 7);
    t2 = _mm_xor_si128(t2, t4);
    t2 = _mm_xor_si128(t2, t5);
    t2 = _mm_xor_si128(t2, t8);
    lo = _mm_xor_si128(lo, t2);
    return _mm_xor_si128(hi, lo);
}

static inline __m128i gf_mul(__m128i a, __m128i b)
{
    __m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;

    clmul_acc(a, b, &lo, &mid, &hi);
    return gf_reduce(lo, mid, hi);
}

/* xi = (xi ^ c0)*H^4 ^ c1*H^3 ^ c2*H^2 ^ c3*H; c* already byte-reflected. */
static inline __m128i ghash4(const __m128i *hp, __m128i xi, __m128i c0, __m128i c1, __m128i c2,
                             __m128i c3)
{
    __m128i lo = _mm_setzero_si128(), mid = lo, hi = lo;

    clmul_acc(_mm_xor_si128(xi, c0), hp[3], &lo, &mid, &hi);
    clmul_acc(c1, hp[2], &lo, &mid, &hi);
    clmul_acc(c2, hp[1], &lo, &mid, &hi);
    clmul_acc(c3, hp[0], &lo, &mid, &hi);
    return gf_reduce(lo, mid, hi);
}

static void ghash_blocks(HWKEY_BULK_GCM *g, const unsigned char *p, size_t nblocks)
{
    __m128i xi = g->xi;

    for (; nblocks >= 4; nblocks -= 4, p += 64)
        xi = ghash4(g->hpow, xi, bswap128(_mm_loadu_si128((const __m128i *)p)),
                    bswap128(_mm_loadu_si128((const __m128i *)(p + 16))),
                    bswap128(_mm_loadu_si128((const __m128i *)(p + 32))),
                    bswap128(_mm_loadu_si128((const __m128i *)(p + 48))));
    for (; nblocks > 0; nblocks--, p += 16)
        xi = gf_mul(_mm_xor_si128(xi, bswap128(_mm_loadu_si128((const __m128i *)p))), g->hpow[0]);
    g->xi = xi;
}

/* ---- setup ---------------------------------------------------------------- */

void hwkey_gcm_aesni_init(HWKEY_BULK_GCM *g, const unsigned char key[HWKEY_BULK_KEY_LEN])
{
    __m128i h;

    aes256_expand(g->rk, key);
    h = bswap128(aes_block(g->rk, _mm_setzero_si128()));
    g->hpow[0] = h;
    g->hpow[1] = gf_mul(h, h);
    g->hpow[2] = gf_mul(g->hpow[1], h);
    g->hpow[3] = gf_mul(g->hpow[2], h);
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

#define AES_ROUND4(k)                         \
    do {                                      \
        b0 = _mm_aesenc_si128(b0, (k));       \
        b1 = _mm_aesenc_si128(b1, (k));       \
        b2 = _mm_aesenc_si128(b2, (k));       \
        b3 = _mm_aesenc_si128(b3, (k));       \
    } while (0)

static void crypt_blocks(HWKEY_BULK_GCM *g, int enc, const unsigned char *in,
                         unsigned char *out, size_t nblocks)
{
    const __m128i *rk = g->rk;
    __m128i xi = g->xi;
    uint32_t ctr = g->ctr;

    for (; nblocks >= 4; nblocks -= 4, in += 64, out += 64, ctr += 4) {
        __m128i b0 = ctr_block(g, ctr), b1 = ctr_block(g, ctr + 1);
        __m128i b2 = ctr_block(g, ctr + 2), b3 = ctr_block(g, ctr + 3);
        __m128i i0 = _mm_loadu_si128((const __m128i *)in);
        __m128i i1 = _mm_loadu_si128((const __m128i *)(in + 16));
        __m128i i2 = _mm_loadu_si128((const __m128i *)(in + 32));
        __m128i i3 = _mm_loadu_si128((const __m128i *)(in + 48));

        /* Decryption hashes the ciphertext it was given: no wait for the AES rounds. */
        if (!enc)
            xi = ghash4(g->hpow, xi, bswap128(i0), bswap128(i1), bswap128(i2), bswap128(i3));
        b0 = _mm_xor_si128(b0, rk[0]);
        b1 = _mm_xor_si128(b1, rk[0]);
        b2 = _mm_xor_si128(b2, rk[0]);
        b3 = _mm_xor_si128(b3, rk[0]);
        for (int r = 1; r < 14; r++)
            AES_ROUND4(rk[r]);
        b0 = _mm_xor_si128(_mm_aesenclast_si128(b0, rk[14]), i0);
        b1 = _mm_xor_si128(_mm_aesenclast_si128(b1, rk[14]), i1);
        b2 = _mm_xor_si128(_mm_aesenclast_si128(b2, rk[14]), i2);
        b3 = _mm_xor_si128(_mm_aesenclast_si128(b3, rk[14]), i3);
        _mm_storeu_si128((__m128i *)out, b0);
        _mm_storeu_si128((__m128i *)(out + 16), b1);
        _mm_storeu_si128((__m128i *)(out + 32), b2);
        _mm_storeu_si128((__m128i *)(out + 48), b3);
        if (enc)
            xi = ghash4(g->hpow, xi, bswap128(b0), bswap128(b1), bswap128(b2), bswap128(b3));
    }
    for (; nblocks > 0; nblocks--, in += 16, out += 16, ctr++) {
        __m128i i0 = _mm_loadu_si128((const __m128i *)in);
        __m128i o0 = _mm_xor_si128(aes_block(rk, ctr_block(g, ctr)), i0);

        _mm_storeu_si128((__m128i *)out, o0);
        xi = gf_mul(_mm_xor_si128(xi, bswap128(enc ? o0 : i0)), g->hpow[0]);
    }
    g->xi = xi;
    g->ctr = ctr;
}

int hwkey_bulk_gcm_update(HWKEY_BULK_GCM *g, int enc, const unsigned char *in,
                          unsigned char *out, size_t len)
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
    _mm_storeu_si128((__m128i *)tag, _mm_xor_si128(bswap128(g->xi), g->ekj0));
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
