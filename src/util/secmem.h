/*
 * Protected memory for what the host must hold: PINs, auth values, unwrapped
 * data keys, key schedules.  memfd_secret(2) where the kernel offers it (the
 * pages leave the kernel's direct map), else mmap + mlock + MADV_DONTDUMP +
 * MADV_WIPEONFORK.  Every allocation sits between guard pages and is wiped on
 * free.  See docs/threat-model.md for what this does and does not protect.
 */
#ifndef HWKEY_UTIL_SECMEM_H
#define HWKEY_UTIL_SECMEM_H

#include <stddef.h>

/* Zeroed protected memory of n bytes, or NULL (error raised). */
void *hwkey_secmem_alloc(size_t n);
/* Wipes and releases; NULL is a no-op. */
void hwkey_secmem_free(void *p);
/* Copy of buf[0..n) in protected memory with a trailing NUL. */
char *hwkey_secmem_strndup(const char *buf, size_t n);
/* "memfd_secret" or "mlock": which protection the last allocation got. */
const char *hwkey_secmem_kind(void);

#endif
