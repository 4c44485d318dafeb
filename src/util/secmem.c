/* STUB: replaced by the secmem implementation. */
#include "util/secmem.h"

#include <string.h>

#include <openssl/crypto.h>

void *hwkey_secmem_alloc(size_t n)
{
    return OPENSSL_zalloc(n);
}

void hwkey_secmem_free(void *p)
{
    OPENSSL_free(p);
}

char *hwkey_secmem_strndup(const char *buf, size_t n)
{
    char *s = hwkey_secmem_alloc(n + 1);

    if (s != NULL)
        memcpy(s, buf, n);
    return s;
}

const char *hwkey_secmem_kind(void)
{
    return "stub";
}
