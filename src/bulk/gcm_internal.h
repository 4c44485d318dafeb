/*
 * The GCM context and the GHASH arithmetic shared by the two ISA-flagged
 * cores: gcm_aesni.c (-maes -mpclmul -msse4.1) and gcm_vaes.c (adds -mvaes
 * -mvpclmulqdq -mavx2).  Only those two files include this header: its
 * inline functions execute AES-NI/PCLMULQDQ/SSE4.1 instructions, which
 * bulk_gcm.c may not run before its CPU check.
 */
#ifndef HWKEY_BULK_GCM_INTERNAL_H
#define HWKEY_BULK_GCM_INTERNAL_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "bulk/gcm_aesni.h"

/* Blocks folded per GHASH reduction: the VAES core hashes 16 blocks per loop. */
#define GCM_HPOWS 16

/*
 * Everything here is as secret as the key (round keys, H powers) or belongs
 * to the message in flight; the whole struct lives in hwkey_secmem memory.
 * H powers are stored highest first, hpow[i] = H^(16 - i), so that the
 * multipliers of n consecutive blocks, H^n .. H^1, are the n consecutive
 * entries ending at hpow[15]: one 32-byte load gives the VAES core two.
 */
struct hwkey_bulk_gcm {
    __m128i rk[15];            /* AES-256 round keys */
    __m128i hpow[GCM_HPOWS];   /* H^16 .. H^1, byte-reflected */
    __m128i hkar[GCM_HPOWS];   /* hpow[i]'s two halves xored, in both halves (Karatsuba) */
    __m128i xi;                /* GHASH accumulator, byte-reflected */
    __m128i ekj0;              /* E(K, IV || 1): xored into the tag */
    __m128i ctr0;              /* IV || 0; counter blocks set word 3 */
    uint32_t ctr;              /* next counter value */
    int impl;                  /* HWKEY_BULK_IMPL_*, chosen by bulk_gcm.c after CPUID */
    uint64_t aad_len, msg_len; /* bytes */
    unsigned char aad_buf[16]; /* partial AAD block */
    size_t aad_part;
    unsigned char ks[16];     /* keystream of the partial data block */
    unsigned char ct_buf[16]; /* its ciphertext so far, for GHASH */
    size_t part;
    int in_data; /* data seen: AAD is closed */
};

/* H^n, 1 <= n <= GCM_HPOWS, and its Karatsuba companion. */
#define GCM_HPOW(g, n) (&(g)->hpow[GCM_HPOWS - (n)])
#define GCM_HKAR(g, n) (&(g)->hkar[GCM_HPOWS - (n)])

/*
 * The same pointer, but the compiler can no longer prove what it points to
 * is unchanged since the last use: every use of a round key or H power
 * reloads it from the context (a memory operand) instead of being hoisted
 * out of the loop into a local, which would be spilled to the stack.
 */
static inline const __m128i *gcm_opaque(const __m128i *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

#define GCM_BSWAP_MASK _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

static inline __m128i gcm_bswap(__m128i x)
{
    return _mm_shuffle_epi8(x, GCM_BSWAP_MASK);
}

/*
 * Accumulates the unreduced product x*h with Karatsuba: lo, hi and the
 * product of the xored halves (mid); gcm_reduce() turns mid into the middle
 * term.  Three PCLMULQDQs per block instead of four.
 */
static inline void gcm_kmul_acc(__m128i x, __m128i h, __m128i hk, __m128i *lo, __m128i *mid,
                                __m128i *hi)
{
    *lo = _mm_xor_si128(*lo, _mm_clmulepi64_si128(x, h, 0x00));
    *hi = _mm_xor_si128(*hi, _mm_clmulepi64_si128(x, h, 0x11));
    *mid = _mm_xor_si128(
        *mid, _mm_clmulepi64_si128(_mm_xor_si128(x, _mm_shuffle_epi32(x, 0x4e)), hk, 0x00));
}

/*
 * lo, Karatsuba mid, hi of a reflected 256-bit product (sums of several):
 * shift left by one and reduce modulo x^128 + x^7 + x^2 + x + 1 (Gueron and
 * Kounavis, "Intel Carry-Less Multiplication Instruction and its Usage for
 * Computing the GCM Mode", fig. 5).
 */
static inline __m128i gcm_reduce(__m128i lo, __m128i mid, __m128i hi)
{
    __m128i t2, t4, t5, t7, t8, t9;

    mid = _mm_xor_si128(mid, _mm_xor_si128(lo, hi));
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

/*
 * Counter blocks are kept byte-reversed ("cle"): the 32-bit block counter is
 * then dword 0, and _mm_add_epi32 on it is GCM's inc32 (wraps mod 2^32,
 * never carries into the IV).
 */
static inline __m128i gcm_ctr_le(const struct hwkey_bulk_gcm *g, uint32_t ctr)
{
    return gcm_bswap(_mm_insert_epi32(g->ctr0, (int)__builtin_bswap32(ctr), 3));
}

/* The VAES core (gcm_vaes.c): whole groups of 16 blocks; returns how many blocks it did. */
size_t hwkey_gcm_vaes_blocks(struct hwkey_bulk_gcm *g, int enc, const unsigned char *in,
                             unsigned char *out, size_t nblocks);

#endif
