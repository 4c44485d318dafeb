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
/* Expands key and H^1..H^4 into g (zeroed protected memory of ctx_size bytes). */
void hwkey_gcm_aesni_init(HWKEY_BULK_GCM *g, const unsigned char key[HWKEY_BULK_KEY_LEN]);

#endif
