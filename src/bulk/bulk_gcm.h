/*
 * AES-256-GCM on the host, for bulk data under a key the device unwrapped
 * (ARCHITECTURE.md §1, §8).  Devices manage a few symmetric operations per
 * second; this runs at memory speed with AES-NI + PCLMULQDQ.
 *
 * One HWKEY_BULK_GCM holds one key and one message in flight.  The whole
 * object (expanded key schedule, H^1..H^16, counter, GHASH accumulator,
 * partial keystream) lives in hwkey_secmem memory and is wiped on free.
 * Not for concurrent use: one object per thread or per EVP context.
 *
 * Only 96-bit IVs (NIST SP 800-38D's recommended size) and 128-bit tags.
 */
#ifndef HWKEY_BULK_BULK_GCM_H
#define HWKEY_BULK_BULK_GCM_H

#include <stddef.h>

#define HWKEY_BULK_KEY_LEN 32
#define HWKEY_BULK_IV_LEN 12
#define HWKEY_BULK_TAG_LEN 16

typedef struct hwkey_bulk_gcm HWKEY_BULK_GCM;

/* 1 if this CPU has AES-NI, PCLMULQDQ and SSE4.1; no error raised. */
int hwkey_bulk_cpu_ok(void);

/*
 * The cores: 128-bit AES-NI + PCLMULQDQ (gcm_aesni.c), and 256-bit VAES +
 * VPCLMULQDQ + AVX2 (gcm_vaes.c) for long runs.  hwkey_bulk_gcm_new() picks
 * the fastest this CPU (and OS: XSAVE of the ymm state) has.
 */
enum { HWKEY_BULK_IMPL_AESNI = 1, HWKEY_BULK_IMPL_VAES = 2 };
/* 1 if this CPU can run impl. */
int hwkey_bulk_impl_available(int impl);
const char *hwkey_bulk_impl_name(int impl);
/*
 * Forces a core on g, for tests and benchmarks (every path tested on one
 * machine); 0 with HWKEY_R_UNSUPPORTED_ALGORITHM raised if the CPU lacks it.
 * Call between messages only.
 */
int hwkey_bulk_gcm_set_impl(HWKEY_BULK_GCM *g, int impl);
int hwkey_bulk_gcm_get_impl(const HWKEY_BULK_GCM *g);

/*
 * Expands key into protected memory.  NULL with HWKEY_R_UNSUPPORTED_ALGORITHM
 * raised when the CPU lacks AES-NI/PCLMULQDQ, HWKEY_R_OUT_OF_MEMORY when no
 * protected memory is left.
 */
HWKEY_BULK_GCM *hwkey_bulk_gcm_new(const unsigned char key[HWKEY_BULK_KEY_LEN]);
/* A new key in g's memory (no new allocation), same core; any message in flight is dropped. */
void hwkey_bulk_gcm_rekey(HWKEY_BULK_GCM *g, const unsigned char key[HWKEY_BULK_KEY_LEN]);
/* A deep copy (key schedule, message in flight) in its own protected memory; NULL on failure. */
HWKEY_BULK_GCM *hwkey_bulk_gcm_dup(const HWKEY_BULK_GCM *g);
/* Wipes and releases; NULL is a no-op. */
void hwkey_bulk_gcm_free(HWKEY_BULK_GCM *g);

/* One-shot.  in and out may be the same buffer (not otherwise overlapping). */
int hwkey_bulk_gcm_encrypt(HWKEY_BULK_GCM *g, const unsigned char iv[HWKEY_BULK_IV_LEN],
                           const unsigned char *aad, size_t aadlen, const unsigned char *in,
                           unsigned char *out, size_t len, unsigned char tag[HWKEY_BULK_TAG_LEN]);
/*
 * Returns 0 with HWKEY_R_DECRYPTION_FAILED raised when the tag does not match
 * (compared in constant time); out is then zeroed, never left with
 * unauthenticated plaintext.
 */
int hwkey_bulk_gcm_decrypt(HWKEY_BULK_GCM *g, const unsigned char iv[HWKEY_BULK_IV_LEN],
                           const unsigned char *aad, size_t aadlen, const unsigned char *in,
                           unsigned char *out, size_t len,
                           const unsigned char tag[HWKEY_BULK_TAG_LEN]);

/*
 * Streaming, for the provider cipher: start, any number of aad calls, then
 * any number of update calls (pieces of any size), then tag.
 */
void hwkey_bulk_gcm_start(HWKEY_BULK_GCM *g, const unsigned char iv[HWKEY_BULK_IV_LEN]);
/* 0 (HWKEY_R_BAD_ARGUMENT) once data has been processed, or past 2^61 bytes. */
int hwkey_bulk_gcm_aad(HWKEY_BULK_GCM *g, const unsigned char *aad, size_t len);
/* enc = 1 encrypts, 0 decrypts; 0 (HWKEY_R_BAD_ARGUMENT) past GCM's 2^39-256 bits. */
int hwkey_bulk_gcm_update(HWKEY_BULK_GCM *g, int enc, const unsigned char *in, unsigned char *out,
                          size_t len);
/* The tag of the message so far; the message is then finished. */
void hwkey_bulk_gcm_tag(HWKEY_BULK_GCM *g, unsigned char tag[HWKEY_BULK_TAG_LEN]);

#endif
