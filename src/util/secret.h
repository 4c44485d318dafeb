/*
 * The secret policy's one type: a PIN, an auth value or a passphrase held in
 * protected memory (util/secmem.h), read from files with read(2) only (stdio
 * keeps its own buffer, which fclose frees without wiping), wiped by the one
 * function that frees it.  What of a key reference may leave the process
 * (files, stdout, logs) is decided by hwkey_uri_redact (util/uri_redact.h);
 * a secret itself never leaves.  See docs/threat-model.md, "Secret policy".
 */
#ifndef HWKEY_UTIL_SECRET_H
#define HWKEY_UTIL_SECRET_H

#include <stddef.h>

typedef struct hwkey_secret_st {
    unsigned char *p; /* len bytes, then a NUL (for APIs taking C strings) */
    size_t len;
} HWKEY_SECRET;

/* A copy of buf[0..len) in protected memory, or NULL (error raised). */
HWKEY_SECRET *hwkey_secret_from_bytes(const void *buf, size_t len);

/*
 * The contents of the file at path, without one trailing "\n" or "\r\n",
 * as a secret of min..max bytes (min 0: an empty file is an explicit empty
 * value); NULL with one error naming `what` (e.g. "auth file"), the path
 * and the cause when the file cannot be opened or read, or is shorter than
 * min or longer than max.
 */
HWKEY_SECRET *hwkey_secret_read_file(const char *path, size_t min, size_t max, const char *what);

/*
 * The first line of the file at path (up to the first "\n" or "\r", as
 * openssl's -passin file: reads it), 0..max bytes; NULL with one error like
 * hwkey_secret_read_file's when the file cannot be read or the line is
 * longer than max.
 */
HWKEY_SECRET *hwkey_secret_read_line(const char *path, size_t max, const char *what);

/* Wipes and frees; NULL is a no-op. */
void hwkey_secret_free(HWKEY_SECRET *s);

#endif
