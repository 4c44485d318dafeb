/*
 * The checked entry to the AES-NI GCM core: this file is built with the
 * project's ordinary flags, so asking the CPU what it has runs on any x86-64;
 * gcm_aesni.c (built with -maes -mpclmul -msse4.1) is reached only through
 * an object made here, after the check.
 */
#include "bulk/bulk_gcm.h"
#include "bulk/gcm_aesni.h"

#include <cpuid.h>
#include <pthread.h>
#include <string.h>

#include "util/error.h"
#include "util/secmem.h"

/*
 * CPUID traps to the hypervisor in a VM (thousands of cycles), and a provider
 * cipher may be keyed per message: ask the CPU once per process.
 */
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static int cpu_aesni, cpu_vaes;

static int probe_aesni(void)
{
    unsigned int eax, ebx, ecx, edx;

    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return 0;
    return (ecx & bit_AES) != 0 && (ecx & bit_PCLMUL) != 0 && (ecx & bit_SSE4_1) != 0;
}

/* XCR0 without -mxsave: the OS saves the xmm and ymm state only if bits 1 and 2 are set. */
static unsigned long long xcr0(void)
{
    unsigned int lo, hi;

    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static int probe_vaes(void)
{
    unsigned int eax, ebx, ecx, edx;

    if (!probe_aesni() || !__get_cpuid(1, &eax, &ebx, &ecx, &edx) || (ecx & bit_OSXSAVE) == 0 ||
        (ecx & bit_AVX) == 0 || (xcr0() & 6) != 6)
        return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx))
        return 0;
    return (ebx & bit_AVX2) != 0 && (ecx & bit_VAES) != 0 && (ecx & bit_VPCLMULQDQ) != 0;
}

static void probe_cpu(void)
{
    cpu_aesni = probe_aesni();
    cpu_vaes = probe_vaes();
}

int hwkey_bulk_cpu_ok(void)
{
    pthread_once(&cpu_once, probe_cpu);
    return cpu_aesni;
}

static int cpu_has_vaes(void)
{
    pthread_once(&cpu_once, probe_cpu);
    return cpu_vaes;
}

int hwkey_bulk_impl_available(int impl)
{
    switch (impl) {
    case HWKEY_BULK_IMPL_AESNI:
        return hwkey_bulk_cpu_ok();
    case HWKEY_BULK_IMPL_VAES:
        return cpu_has_vaes();
    default:
        return 0;
    }
}

const char *hwkey_bulk_impl_name(int impl)
{
    switch (impl) {
    case HWKEY_BULK_IMPL_AESNI:
        return "AES-NI";
    case HWKEY_BULK_IMPL_VAES:
        return "VAES-256";
    default:
        return "none";
    }
}

int hwkey_bulk_gcm_set_impl(HWKEY_BULK_GCM *g, int impl)
{
    if (!hwkey_bulk_impl_available(impl)) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "this CPU cannot run the %s GCM core",
                    hwkey_bulk_impl_name(impl));
        return 0;
    }
    hwkey_gcm_aesni_set_impl(g, impl);
    return 1;
}

int hwkey_bulk_gcm_get_impl(const HWKEY_BULK_GCM *g)
{
    return hwkey_gcm_aesni_get_impl(g);
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
    hwkey_gcm_aesni_init(g, key, cpu_has_vaes() ? HWKEY_BULK_IMPL_VAES : HWKEY_BULK_IMPL_AESNI);
    return g;
}

void hwkey_bulk_gcm_rekey(HWKEY_BULK_GCM *g, const unsigned char key[HWKEY_BULK_KEY_LEN])
{
    hwkey_gcm_aesni_init(g, key, hwkey_gcm_aesni_get_impl(g));
}

HWKEY_BULK_GCM *hwkey_bulk_gcm_dup(const HWKEY_BULK_GCM *g)
{
    HWKEY_BULK_GCM *copy;

    if ((copy = hwkey_secmem_alloc(hwkey_gcm_aesni_ctx_size())) == NULL)
        return NULL;
    memcpy(copy, g, hwkey_gcm_aesni_ctx_size());
    return copy;
}

void hwkey_bulk_gcm_free(HWKEY_BULK_GCM *g)
{
    hwkey_secmem_free(g);
}
