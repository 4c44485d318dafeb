/*
 * libFuzzer harness for `hwkey attest --verify` (src/backend/tpm2/
 * tpm2_attest_verify.c): the bundle is untrusted input a CA receives from
 * the machine it enrols, and so is the key file sent with it.  Input layout:
 * a 2-byte big-endian length N, N bytes of TSS2 key file (DER), then the
 * bundle.  The corpus holds real swtpm bundles (ok-*: they verify, unpinned,
 * no nonce) and altered ones (bad-*: one changed byte, another key, an
 * imported key), so the replay in test_fuzz_corpus is also a TPM-free test
 * of the verifier's verdicts.
 */
#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>
#include <openssl/err.h>

#include "backend/tpm2/tpm2_offline.h"
#include "fuzz.h"

int hwkey_fuzz_attest_verdict(const uint8_t *data, size_t size)
{
    HWKEY_ATTEST_CHECK chk = {0};
    BIO *report = BIO_new(BIO_s_mem());
    size_t keylen;
    int ok = 0;

    if (report == NULL || size < 2)
        goto end;
    keylen = (size_t)data[0] << 8 | data[1];
    if (keylen > size - 2)
        goto end;
    ok = hwkey_tpm2_attest_verify(data + 2 + keylen, size - 2 - keylen, data + 2, keylen, &chk,
                                  report);
end:
    BIO_free(report);
    ERR_clear_error();
    return ok;
}

int hwkey_fuzz_attest(const uint8_t *data, size_t size)
{
    (void)hwkey_fuzz_attest_verdict(data, size);
    return 0;
}

#ifndef HWKEY_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return hwkey_fuzz_attest(data, size);
}
#endif
