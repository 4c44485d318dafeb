/*
 * loadcheck MODE URI: loads a key the way applications do and prints which
 * provider's key management holds it, then signs with it and verifies.
 *   MODE pem:   PEM_read_bio_PrivateKey (nginx, curl, libssl)
 *   MODE store: OSSL_STORE_open (openssl pkey/req/s_server -key)
 * Providers and default_properties come from OPENSSL_CONF.  Output:
 *   provider=<name> sign=ok|failed
 * Exit 0 only if the key loaded and a signature verified.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>

static EVP_PKEY *load_pem(const char *path)
{
    BIO *in = BIO_new_file(path, "r");
    EVP_PKEY *pkey = in != NULL ? PEM_read_bio_PrivateKey(in, NULL, NULL, NULL) : NULL;

    BIO_free(in);
    return pkey;
}

static EVP_PKEY *load_store(const char *uri)
{
    OSSL_STORE_CTX *ctx = OSSL_STORE_open(uri, NULL, NULL, NULL, NULL);
    EVP_PKEY *pkey = NULL;

    if (ctx == NULL)
        return NULL;
    OSSL_STORE_expect(ctx, OSSL_STORE_INFO_PKEY);
    while (pkey == NULL && !OSSL_STORE_eof(ctx)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(ctx);

        if (info == NULL)
            break;
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            pkey = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(ctx);
    return pkey;
}

static int sign_verify(EVP_PKEY *pkey)
{
    static const unsigned char msg[] = "hwkey loadcheck";
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestSign(md, sig, &siglen, msg, sizeof(msg)) == 1;

    EVP_MD_CTX_free(md);
    md = EVP_MD_CTX_new();
    ok = ok && md != NULL && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
         EVP_DigestVerify(md, sig, siglen, msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

int main(int argc, char **argv)
{
    EVP_PKEY *pkey;
    const OSSL_PROVIDER *prov;
    int ok;

    if (argc != 3 || (strcmp(argv[1], "pem") != 0 && strcmp(argv[1], "store") != 0)) {
        fprintf(stderr, "usage: loadcheck pem|store URI\n");
        return 2;
    }
    pkey = strcmp(argv[1], "pem") == 0 ? load_pem(argv[2]) : load_store(argv[2]);
    if (pkey == NULL) {
        printf("provider=none sign=failed\n");
        ERR_print_errors_fp(stderr);
        return 1;
    }
    prov = EVP_PKEY_get0_provider(pkey);
    ok = sign_verify(pkey);
    printf("provider=%s sign=%s\n", prov != NULL ? OSSL_PROVIDER_get0_name(prov) : "legacy",
           ok ? "ok" : "failed");
    if (!ok)
        ERR_print_errors_fp(stderr);
    EVP_PKEY_free(pkey);
    return ok ? 0 : 1;
}
