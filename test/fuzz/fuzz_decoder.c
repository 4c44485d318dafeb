/*
 * libFuzzer harness for hwkey's decoders on arbitrary PEM/DER bytes: what
 * nginx (PEM_read_bio_PrivateKey) and any program using OSSL_DECODER do with
 * a key file an attacker may have written.  hwkey is added as a built-in to a
 * fresh library context next to the default provider, over the fake backend
 * (test/unit/fakes/fake_backend.h: TSS2 key files whose privkey holds a software
 * key), exactly like the provider unit tests; no device is touched.
 * Invariant: a key that decodes is usable (bits, public half, one signature)
 * or fails cleanly; nothing leaks or crashes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/x509.h>

#include "../unit/fakes/fake_backend.h"
#include "backend/backend.h"
#include "fuzz.h"
#include "provider/provider.h"

static OSSL_LIB_CTX *lib;
static OSSL_PROVIDER *prov_default, *prov_hwkey;

static int setup(void)
{
    if (lib != NULL)
        return 1;
    /* The decoder names every failure on stderr at log level 1: noise at fuzzing speed. */
    setenv("HWKEY_LOG", "0", 0);
    hwkey_backend_set_override(&hwkey_fake_backend);
    if ((lib = OSSL_LIB_CTX_new()) == NULL ||
        !OSSL_PROVIDER_add_builtin(lib, "hwkey", hwkey_provider_init) ||
        (prov_default = OSSL_PROVIDER_load(lib, "default")) == NULL ||
        (prov_hwkey = OSSL_PROVIDER_load(lib, "hwkey")) == NULL)
        __builtin_trap();
    return 1;
}

void hwkey_fuzz_decoder_cleanup(void)
{
    OSSL_PROVIDER_unload(prov_hwkey);
    OSSL_PROVIDER_unload(prov_default);
    OSSL_LIB_CTX_free(lib);
    prov_hwkey = prov_default = NULL;
    lib = NULL;
    hwkey_backend_set_override(NULL);
}

/* Never prompt: an encrypted PEM in the corpus must not wait for a terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static void use(EVP_PKEY *pkey)
{
    static const unsigned char digest[32] = "0123456789abcdef0123456789abcde";
    unsigned char *pub = NULL, sig[1024];
    size_t siglen = sizeof(sig);
    EVP_PKEY_CTX *ctx;

    (void)EVP_PKEY_get_bits(pkey);
    if (i2d_PUBKEY(pkey, &pub) > 0)
        OPENSSL_free(pub);
    ctx = EVP_PKEY_CTX_new_from_pkey(lib, pkey, NULL);
    if (ctx != NULL && EVP_PKEY_sign_init(ctx) == 1 && EVP_PKEY_get_size(pkey) > 0 &&
        (size_t)EVP_PKEY_get_size(pkey) <= sizeof(sig))
        (void)EVP_PKEY_sign(ctx, sig, &siglen, digest, sizeof(digest));
    EVP_PKEY_CTX_free(ctx);
}

int hwkey_fuzz_decoder(const uint8_t *data, size_t size)
{
    int len = size > INT32_MAX ? INT32_MAX : (int)size;
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx;
    const unsigned char *p = data;
    size_t left = size;
    BIO *bio;

    setup();
    /* nginx, curl, libssl: PEM_read_bio_PrivateKey */
    if ((bio = BIO_new_mem_buf(data, len)) != NULL) {
        pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, no_password, NULL, lib, NULL);
        if (pkey != NULL)
            use(pkey);
        EVP_PKEY_free(pkey);
        pkey = NULL;
        BIO_free(bio);
    }
    ERR_clear_error();
    /* Any input type (PEM or DER), any structure: OSSL_DECODER straight. */
    dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, NULL, NULL, NULL, 0, lib, NULL);
    if (dctx != NULL) {
        OSSL_DECODER_CTX_set_pem_password_cb(dctx, no_password, NULL);
        if (OSSL_DECODER_from_data(dctx, &p, &left) && pkey != NULL)
            use(pkey);
        EVP_PKEY_free(pkey);
        OSSL_DECODER_CTX_free(dctx);
    }
    ERR_clear_error();
    return 0;
}

#ifndef HWKEY_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return hwkey_fuzz_decoder(data, size);
}
#endif
