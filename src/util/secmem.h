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
/*
 * Like hwkey_secmem_alloc, but a forked child keeps its own copy instead of
 * zeros: for credentials (key auth values, PINs) that nginx workers forked
 * after the key was loaded must still present to the device.  Blocks up to
 * one page; the child's copy is locked and undumpable like the parent's.
 */
void *hwkey_secmem_alloc_inherited(size_t n);
/* Wipes and releases; NULL is a no-op. */
void hwkey_secmem_free(void *p);
/* Copy of buf[0..n) (up to a NUL, like strndup) in protected memory, NUL-terminated. */
char *hwkey_secmem_strndup(const char *buf, size_t n);
/* "memfd_secret" or "mlock": which protection the last allocation got. */
const char *hwkey_secmem_kind(void);
/*
 * Tests: 1 makes later allocations use mmap + mlock even where memfd_secret
 * exists, so both paths can be exercised on one machine.
 */
void hwkey_secmem_force_mlock(int on);

/*
 * Layout and fork semantics (see secmem.c): user blocks are 16-byte aligned
 * and end at a guard page (exactly at it when n is a multiple of 16).  A
 * forked child sees every block zeroed (MADV_WIPEONFORK, or the equivalent
 * for memfd_secret): code that needs a secret after fork must get it again
 * (re-read the PIN source, re-unwrap the data key), or allocate it with
 * hwkey_secmem_alloc_inherited().  Freeing an inherited
 * block in the child is safe and does not touch the parent's copy.
 */

#endif
