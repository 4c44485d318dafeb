/*
 * two_libctx MODULE: the provider loaded into two library contexts, the
 * first one freed, then an error raised by the instance that is still alive.
 * Before errors were kept per instance, the second error went through the
 * freed instance's core handle: invalid reads (valgrind) and a text of
 * "reason(10)" instead of "invalid key file".
 * Exit 0 if each error carries hwkey's reason text; prints the error lines.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

/* A TSS2 key file whose DER is garbage: the hwkey decoder must reject it. */
static const char bad_key[] = "-----BEGIN TSS2 PRIVATE KEY-----\n"
                              "MAYGBGcBAQEBAQEBAQE=\n"
                              "-----END TSS2 PRIVATE KEY-----\n";

static int decode_fails_with_text(OSSL_LIB_CTX *lib, const char *label)
{
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx;
    const unsigned char *p = (const unsigned char *)bad_key;
    size_t len = sizeof(bad_key) - 1;
    char buf[256] = "";
    unsigned long e;
    int seen = 0, ok = 1;

    ERR_clear_error();
    dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, "PEM", NULL, NULL, 0, lib, "provider=hwkey");
    if (dctx == NULL) {
        printf("%s: no decoder context\n", label);
        return 0;
    }
    if (OSSL_DECODER_from_data(dctx, &p, &len) == 1) {
        printf("%s: the corrupt key was accepted\n", label);
        ok = 0;
    }
    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
        printf("%s: %s\n", label, buf);
        if (strstr(buf, "invalid key file") != NULL)
            seen = 1;
        if (strstr(buf, "reason(") != NULL)
            ok = 0;
    }
    OSSL_DECODER_CTX_free(dctx);
    EVP_PKEY_free(pkey);
    if (!seen)
        printf("%s: no \"invalid key file\" error\n", label);
    return ok && seen;
}

/* A library context with the default provider and hwkey; prov[2] keeps both. */
static OSSL_LIB_CTX *context_with_hwkey(const char *module, OSSL_PROVIDER *prov[2])
{
    OSSL_LIB_CTX *lib = OSSL_LIB_CTX_new();

    prov[0] = prov[1] = NULL;
    if (lib == NULL || (prov[0] = OSSL_PROVIDER_load(lib, "default")) == NULL ||
        (prov[1] = OSSL_PROVIDER_load(lib, module)) == NULL) {
        ERR_print_errors_fp(stdout);
        OSSL_PROVIDER_unload(prov[0]);
        OSSL_LIB_CTX_free(lib);
        return NULL;
    }
    return lib;
}

/* Unload both providers (so the hwkey instance is really torn down), then the context. */
static void context_free(OSSL_LIB_CTX **lib, OSSL_PROVIDER *prov[2])
{
    OSSL_PROVIDER_unload(prov[1]);
    OSSL_PROVIDER_unload(prov[0]);
    prov[0] = prov[1] = NULL;
    OSSL_LIB_CTX_free(*lib);
    *lib = NULL;
}

int main(int argc, char **argv)
{
    OSSL_LIB_CTX *a = NULL, *b = NULL, *c = NULL;
    OSSL_PROVIDER *pa[2] = {NULL, NULL}, *pb[2] = {NULL, NULL}, *pc[2] = {NULL, NULL};
    int ok = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: two_libctx /path/to/hwkey.so\n");
        return 2;
    }
    /*
     * Both orders: free the instance loaded last (the one a process-wide
     * sink would point at), then the one loaded first.
     */
    if ((a = context_with_hwkey(argv[1], pa)) == NULL ||
        (b = context_with_hwkey(argv[1], pb)) == NULL)
        goto end;
    if (!decode_fails_with_text(b, "second context"))
        goto end;
    context_free(&b, pb);
    if (!decode_fails_with_text(a, "first context after the second was freed"))
        goto end;
    if ((c = context_with_hwkey(argv[1], pc)) == NULL)
        goto end;
    context_free(&a, pa);
    if (!decode_fails_with_text(c, "third context after the first was freed"))
        goto end;
    ok = 1;
end:
    context_free(&a, pa);
    context_free(&b, pb);
    context_free(&c, pc);
    printf("%s\n", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}
