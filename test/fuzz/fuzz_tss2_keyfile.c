/*
 * libFuzzer harness for the TSS2 key file parsers (untrusted input: any file
 * a user or a configuration names).  Feeds the bytes to decode directly and,
 * through a memory BIO, to read_der (PEM or DER) and then decode.  Build and
 * run: see test/fuzz/README.md.
 */
#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "fuzz.h"
#include "util/tss2_keyfile.h"

static void decode_and_reencode(const unsigned char *der, size_t len)
{
    HWKEY_TSS2_KEYFILE kf;
    unsigned char *again = NULL;
    size_t again_len = 0;

    if (!hwkey_tss2_keyfile_decode(der, len, &kf))
        return;
    /* Whatever decodes must encode again (the encoder accepts all decoded types). */
    if (!hwkey_tss2_keyfile_encode(&kf, &again, &again_len))
        __builtin_trap();
    OPENSSL_free(again);
    hwkey_tss2_keyfile_clear(&kf);
}

int hwkey_fuzz_tss2_keyfile(const uint8_t *data, size_t size)
{
    unsigned char *der = NULL;
    size_t der_len = 0;
    BIO *bio;

    decode_and_reencode(data, size);

    bio = BIO_new_mem_buf(data, size > INT32_MAX ? INT32_MAX : (int)size);
    if (bio != NULL && hwkey_tss2_keyfile_read_der(bio, &der, &der_len)) {
        decode_and_reencode(der, der_len);
        OPENSSL_free(der);
    }
    BIO_free(bio);
    ERR_clear_error();
    return 0;
}

#ifndef HWKEY_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return hwkey_fuzz_tss2_keyfile(data, size);
}
#endif
