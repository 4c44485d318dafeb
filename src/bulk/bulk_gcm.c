/*
 * The checked entry to the AES-NI GCM core: this file is built with the
 * project's ordinary flags, so asking the CPU what it has runs on any x86-64;
 * gcm_aesni.c (built with -maes -mpclmul -msse4.1) is reached only through
 * an object made here, after the check.
 */
#include "bulk/bulk_gcm.h"
#include "bulk/gcm_aesni.h"

#include <cpuid.h>

#include "util/error.h"
#include "util/secmem.h"

int hwkey_bulk_cpu_ok(void)
{
    unsigned int eax, ebx, ecx, edx;

    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return 0;
    return (ecx & bit_AES) != 0 && (ecx & bit_PCLMUL) != 0 && (ecx & bit_SSE4_1) != 0;
}

HWKEY_BULK_GCM *hwkey_bulk_gcm_new(const unsigned char key[HWKEY_BULK_KEY_LEN])
{
    HWKEY_BULK_GCM *g;

    if (!hwkey_bulk_cpu_ok()) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "this CPU lacks AES-NI, PCLMULQDQ or SSE4.1 (see /proc/cpuinfo flags "
                    "aes, pclmulqdq, sse4_1): the bulk cipher needs them");
        return NULL;
    }
    /* Round keys and H powers: as secret as the key itself. */
    if ((g = hwkey_secmem_alloc(hwkey_gcm_aesni_ctx_size())) == NULL)
        return NULL;
    hwkey_gcm_aesni_init(g, key);
    return g;
}

void hwkey_bulk_gcm_free(HWKEY_BULK_GCM *g)
{
    hwkey_secmem_free(g);
}
