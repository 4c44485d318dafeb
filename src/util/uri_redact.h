/*
 * The one function that decides what of a key reference may leave the
 * process: written into a file (reference files, data key files, encoder
 * output), printed (hwkey keygen/import/list, `openssl pkey -text`) or
 * logged.  A pkcs11: URI may carry the PIN itself (pin-value, RFC 7512
 * section 2.4); that never leaves.  Everything else stays, pin-source
 * included: it names where the PIN is, not the PIN.
 */
#ifndef HWKEY_UTIL_URI_REDACT_H
#define HWKEY_UTIL_URI_REDACT_H

#include <stddef.h>

/*
 * uri[0..len) without any pin-value attribute (in the query or, as some old
 * writers put it, in the path), as a NUL-terminated OPENSSL_malloc'd string;
 * *out_len (may be NULL) gets its length.  Text that is not a pkcs11: URI is
 * copied unchanged.  NULL only when out of memory (error raised).
 */
char *hwkey_uri_redact(const char *uri, size_t len, size_t *out_len);

/* 1 if uri[0..len) carries a pin-value attribute. */
int hwkey_uri_has_pin_value(const char *uri, size_t len);

#endif
