/* Whole small files (parent public keys, attestation bundles, trust anchors). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cli/cli.h"
#include "util/error.h"

int hwkey_cli_read_file(const char *path, size_t max, const char *what, unsigned char **out,
                        size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t n;

    *out = NULL;
    *len = 0;
    if (f == NULL) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "cannot open %s %s: %s", what, path, strerror(errno));
        return 0;
    }
    if ((buf = OPENSSL_malloc(max + 1)) == NULL) {
        fclose(f);
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "reading %s %s", what, path);
        return 0;
    }
    n = fread(buf, 1, max + 1, f);
    if (ferror(f) || n == 0 || n > max) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "%s %s: %s", what, path,
                    ferror(f) ? strerror(errno)
                    : n == 0  ? "empty file"
                              : "file too large");
        fclose(f);
        OPENSSL_free(buf);
        return 0;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 1;
}
