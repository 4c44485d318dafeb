/*
 * libFuzzer harness for the key reference file parser (src/util/keyref.c):
 * untrusted input, since nginx's ssl_certificate_key or openssl -key may name
 * any file.  The bytes go to hwkey_keyref_uri_parse() as a DER body (and as
 * bare URI text), and through PEM_read_bio() as the decoder reads a reference
 * file.  Invariants: a URI found lies inside the input and within
 * HWKEY_KEYREF_URI_MAX; writing it with hwkey_keyref_write_pem() and parsing
 * that again gives the same URI.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "fuzz.h"
#include "util/keyref.h"

/* The URI written as a reference file must read back unchanged. */
static void round_trip(const char *uri, size_t uri_len)
{
    char *text = OPENSSL_strndup(uri, uri_len);
    BIO *bio = BIO_new(BIO_s_mem());
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long der_len = 0;
    const char *again = NULL;
    size_t again_len = 0;

    /* A C string cannot carry a NUL: such a URI is not written by anyone. */
    if (text == NULL || bio == NULL || strlen(text) != uri_len)
        goto end;
    if (!hwkey_keyref_write_pem(bio, text))
        __builtin_trap();
    if (!PEM_read_bio(bio, &name, &header, &der, &der_len) || der_len <= 0 ||
        !hwkey_keyref_uri_parse(der, (size_t)der_len, &again, &again_len) || again_len != uri_len ||
        memcmp(again, uri, uri_len) != 0)
        __builtin_trap();
end:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(bio);
    OPENSSL_free(text);
}

static void parse(const unsigned char *der, size_t len, int check_round_trip)
{
    const char *uri = NULL;
    size_t uri_len = 0;

    if (!hwkey_keyref_uri_parse(der, len, &uri, &uri_len))
        return;
    if (uri == NULL || (const unsigned char *)uri < der || uri_len > len ||
        (const unsigned char *)uri + uri_len > der + len || uri_len > HWKEY_KEYREF_URI_MAX)
        __builtin_trap();
    hwkey_fuzz_touch(uri, uri_len);
    if (check_round_trip)
        round_trip(uri, uri_len);
}

int hwkey_fuzz_keyref(const uint8_t *data, size_t size)
{
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long der_len = 0;
    BIO *bio;

    parse(data, size, 1);
    bio = BIO_new_mem_buf(data, size > INT32_MAX ? INT32_MAX : (int)size);
    if (bio != NULL && PEM_read_bio(bio, &name, &header, &der, &der_len) && der_len > 0)
        parse(der, (size_t)der_len, 0);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(bio);
    ERR_clear_error();
    return 0;
}

#ifndef HWKEY_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return hwkey_fuzz_keyref(data, size);
}
#endif
