/*
 * AES-256-GCM's bulk loop with VAES and VPCLMULQDQ on 256-bit registers:
 * two blocks per instruction, sixteen blocks (eight ymm AES chains) in
 * flight, GHASH of sixteen blocks with H^16..H^1 and one reduction, stitched
 * between the AES rounds of the next sixteen as in gcm_aesni.c.
 *
 * Built with -mvaes -mvpclmulqdq -mavx2 (libhwkey_vaes.la); reached only
 * through gcm_aesni.c when the context's impl is HWKEY_BULK_IMPL_VAES, which
 * bulk_gcm.c sets only after CPUID (and XCR0: the OS saves ymm) said yes.
 *
 * Round keys are broadcast from the context at each round and H powers
 * loaded from it (hpow[] is stored highest power first, so one 32-byte load
 * is the pair of multipliers of two consecutive blocks); nothing is copied
 * to locals, though the compiler may keep or spill what it loaded.
 */
#include "bulk/gcm_internal.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

#define RK(r) _mm256_broadcastsi128_si256(rk[(r)])

#define AES_ROUND16(k)                                                                             \
    do {                                                                                           \
        const __m256i k_ = (k);                                                                    \
        b0 = _mm256_aesenc_epi128(b0, k_);                                                         \
        b1 = _mm256_aesenc_epi128(b1, k_);                                                         \
        b2 = _mm256_aesenc_epi128(b2, k_);                                                         \
        b3 = _mm256_aesenc_epi128(b3, k_);                                                         \
        b4 = _mm256_aesenc_epi128(b4, k_);                                                         \
        b5 = _mm256_aesenc_epi128(b5, k_);                                                         \
        b6 = _mm256_aesenc_epi128(b6, k_);                                                         \
        b7 = _mm256_aesenc_epi128(b7, k_);                                                         \
    } while (0)

/* Blocks 2i and 2i+1 at p times H^(16-2i), H^(15-2i), accumulated; xi joins block 0. */
static ALWAYS_INLINE void ghash_pair(const HWKEY_BULK_GCM *g, const unsigned char *p, int i,
                                     __m128i xi, __m256i *lo, __m256i *mid, __m256i *hi)
{
    const __m256i bswap = _mm256_broadcastsi128_si256(GCM_BSWAP_MASK);
    __m256i x = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(p + 32 * i)), bswap);
    __m256i h = _mm256_loadu_si256((const __m256i *)&gcm_opaque(g->hpow)[2 * i]);
    __m256i hk = _mm256_loadu_si256((const __m256i *)&gcm_opaque(g->hkar)[2 * i]);

    if (i == 0)
        x = _mm256_xor_si256(x, _mm256_zextsi128_si256(xi));
    *lo = _mm256_xor_si256(*lo, _mm256_clmulepi64_epi128(x, h, 0x00));
    *hi = _mm256_xor_si256(*hi, _mm256_clmulepi64_epi128(x, h, 0x11));
    *mid = _mm256_xor_si256(
        *mid,
        _mm256_clmulepi64_epi128(_mm256_xor_si256(x, _mm256_shuffle_epi32(x, 0x4e)), hk, 0x00));
}

/* Folds the two lanes' sums and reduces once. */
static ALWAYS_INLINE __m128i fold_reduce(__m256i lo, __m256i mid, __m256i hi)
{
    return gcm_reduce(_mm_xor_si128(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1)),
                      _mm_xor_si128(_mm256_castsi256_si128(mid), _mm256_extracti128_si256(mid, 1)),
                      _mm_xor_si128(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1)));
}

#define GHASH_STEP(i)                                                                              \
    do {                                                                                           \
        if (hsrc != NULL)                                                                          \
            ghash_pair(g, hsrc, (i), *xi, &lo, &mid, &hi);                                         \
    } while (0)

/* Counter pair i: blocks 2i, 2i+1 of the group, byte order restored. */
#define CTR_PAIR(i)                                                                                \
    _mm256_xor_si256(                                                                              \
        _mm256_shuffle_epi8(                                                                       \
            _mm256_add_epi32(*cle, _mm256_set_epi32(0, 0, 0, 2 * (i) + 1, 0, 0, 0, 2 * (i))),      \
            bswap),                                                                                \
        RK(0))

#define XOR_OUT(b, i)                                                                              \
    _mm256_storeu_si256((__m256i *)(out + 32 * (i)),                                               \
                        _mm256_xor_si256(b, _mm256_loadu_si256((const __m256i *)(in + 32 * (i)))))

/*
 * Sixteen counter blocks through AES-256 and (hsrc != NULL) the GHASH of the
 * sixteen blocks at hsrc into *xi.  hsrc is read before out is written.
 * *cle holds the next counter (byte-reversed, see gcm_internal.h) in both lanes.
 */
static ALWAYS_INLINE void aes16_ghash16(const HWKEY_BULK_GCM *g, __m256i *cle,
                                        const unsigned char *in, unsigned char *out,
                                        const unsigned char *hsrc, __m128i *xi)
{
    const __m128i *rk = gcm_opaque(g->rk);
    const __m256i bswap = _mm256_broadcastsi128_si256(GCM_BSWAP_MASK);
    __m256i lo = _mm256_setzero_si256(), mid = lo, hi = lo;
    __m256i b0 = CTR_PAIR(0), b1 = CTR_PAIR(1), b2 = CTR_PAIR(2), b3 = CTR_PAIR(3);
    __m256i b4 = CTR_PAIR(4), b5 = CTR_PAIR(5), b6 = CTR_PAIR(6), b7 = CTR_PAIR(7);

    *cle = _mm256_add_epi32(*cle, _mm256_set_epi32(0, 0, 0, 16, 0, 0, 0, 16));
    AES_ROUND16(RK(1));
    GHASH_STEP(0);
    AES_ROUND16(RK(2));
    GHASH_STEP(1);
    AES_ROUND16(RK(3));
    GHASH_STEP(2);
    AES_ROUND16(RK(4));
    GHASH_STEP(3);
    AES_ROUND16(RK(5));
    GHASH_STEP(4);
    AES_ROUND16(RK(6));
    GHASH_STEP(5);
    AES_ROUND16(RK(7));
    GHASH_STEP(6);
    AES_ROUND16(RK(8));
    GHASH_STEP(7);
    AES_ROUND16(RK(9));
    if (hsrc != NULL)
        *xi = fold_reduce(lo, mid, hi);
    AES_ROUND16(RK(10));
    AES_ROUND16(RK(11));
    AES_ROUND16(RK(12));
    AES_ROUND16(RK(13));
    XOR_OUT(_mm256_aesenclast_epi128(b0, RK(14)), 0);
    XOR_OUT(_mm256_aesenclast_epi128(b1, RK(14)), 1);
    XOR_OUT(_mm256_aesenclast_epi128(b2, RK(14)), 2);
    XOR_OUT(_mm256_aesenclast_epi128(b3, RK(14)), 3);
    XOR_OUT(_mm256_aesenclast_epi128(b4, RK(14)), 4);
    XOR_OUT(_mm256_aesenclast_epi128(b5, RK(14)), 5);
    XOR_OUT(_mm256_aesenclast_epi128(b6, RK(14)), 6);
    XOR_OUT(_mm256_aesenclast_epi128(b7, RK(14)), 7);
}

/* GHASH of sixteen blocks at p into xi with the same 256-bit multiplies, no AES. */
static __m128i ghash16(const HWKEY_BULK_GCM *g, __m128i xi, const unsigned char *p)
{
    __m256i lo = _mm256_setzero_si256(), mid = lo, hi = lo;

    for (int i = 0; i < 8; i++)
        ghash_pair(g, p, i, xi, &lo, &mid, &hi);
    return fold_reduce(lo, mid, hi);
}

size_t hwkey_gcm_vaes_blocks(HWKEY_BULK_GCM *g, int enc, const unsigned char *in,
                             unsigned char *out, size_t nblocks)
{
    size_t done = nblocks - nblocks % 16;
    __m128i xi = g->xi;
    __m256i cle;

    if (done == 0)
        return 0;
    cle = _mm256_broadcastsi128_si256(gcm_ctr_le(g, g->ctr));
    if (enc) {
        /* The first group has no predecessor to hash; the last is hashed after the loop. */
        aes16_ghash16(g, &cle, in, out, NULL, &xi);
        for (nblocks = done - 16, in += 256, out += 256; nblocks > 0;
             nblocks -= 16, in += 256, out += 256)
            aes16_ghash16(g, &cle, in, out, out - 256, &xi);
        xi = ghash16(g, xi, out - 256);
    } else {
        for (nblocks = done; nblocks > 0; nblocks -= 16, in += 256, out += 256)
            aes16_ghash16(g, &cle, in, out, in, &xi);
    }
    g->xi = xi;
    g->ctr = (uint32_t)_mm_cvtsi128_si32(_mm256_castsi256_si128(cle));
    return done;
}
