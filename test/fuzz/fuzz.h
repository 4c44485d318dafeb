/*
 * Entry points of the fuzz harnesses.  Each test/fuzz/fuzz_<name>.c defines
 * hwkey_fuzz_<name>() and, unless HWKEY_FUZZ_REPLAY is defined, libFuzzer's
 * LLVMFuzzerTestOneInput() calling it.  test/unit/util/test_fuzz_corpus.c builds
 * them all with HWKEY_FUZZ_REPLAY and replays test/fuzz/corpus/<name>/ through
 * the same functions, so inputs that once crashed stay fixed without clang.
 * Every entry returns 0; a broken invariant aborts (__builtin_trap).
 */
#ifndef HWKEY_TEST_FUZZ_H
#define HWKEY_TEST_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int hwkey_fuzz_tss2_keyfile(const uint8_t *data, size_t size);
int hwkey_fuzz_keyref(const uint8_t *data, size_t size);
int hwkey_fuzz_p11_uri(const uint8_t *data, size_t size);
/* Input: [2-byte length N][N bytes TSS2 key file DER][attestation bundle]. */
int hwkey_fuzz_attest(const uint8_t *data, size_t size);
/* 1 if the bundle verifies against the key file (no nonce, nothing pinned). */
int hwkey_fuzz_attest_verdict(const uint8_t *data, size_t size);
/* A fresh library context with hwkey as a built-in over the fake backend. */
int hwkey_fuzz_decoder(const uint8_t *data, size_t size);
/* Frees what hwkey_fuzz_decoder() set up (replay only: libFuzzer never returns). */
void hwkey_fuzz_decoder_cleanup(void);

/* Reads every byte, so ASan sees an out-of-bounds result of a parser. */
static inline void hwkey_fuzz_touch(const void *p, size_t n)
{
    volatile unsigned char sink = 0;

    for (size_t i = 0; i < n; i++)
        sink ^= ((const unsigned char *)p)[i];
    (void)sink;
}

#endif
