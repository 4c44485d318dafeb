/*
 * Internal seam between bulk_gcm.c (built with the project's ordinary flags:
 * it checks the CPU) and gcm_aesni.c (built with -maes -mpclmul -msse4.1:
 * it may execute those instructions anywhere, so nothing in it may run
 * before the check).  src/bulk/ only.
 */
#ifndef HWKEY_BULK_GCM_AESNI_H
#define HWKEY_BULK_GCM_AESNI_H

#include <stddef.h>

#include "bulk/bulk_gcm.h"

/* Bytes of protected memory one HWKEY_BULK_GCM needs. */
size_t hwkey_gcm_aesni_ctx_size(void);
/*
 * Expands key and H^1..H^16 into g (zeroed protected memory of ctx_size
 * bytes) and selects impl (HWKEY_BULK_IMPL_*), which the caller has checked
 * this CPU can run.
 */
void hwkey_gcm_aesni_init(HWKEY_BULK_GCM *g, const unsigned char key[HWKEY_BULK_KEY_LEN], int impl);
void hwkey_gcm_aesni_set_impl(HWKEY_BULK_GCM *g, int impl);
int hwkey_gcm_aesni_get_impl(const HWKEY_BULK_GCM *g);

#endif
