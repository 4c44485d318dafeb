/* Secrets with one lifecycle: see secret.h. */
#include "util/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"
#include "util/secmem.h"

/* The header and the bytes in one protected block: one allocation, one wipe. */
static HWKEY_SECRET *secret_new(size_t len)
{
    HWKEY_SECRET *s = hwkey_secmem_alloc(sizeof(*s) + len + 1);

    if (s == NULL)
        return NULL;
    s->p = (unsigned char *)(s + 1);
    s->len = len;
    return s;
}

HWKEY_SECRET *hwkey_secret_from_bytes(const void *buf, size_t len)
{
    HWKEY_SECRET *s = secret_new(len);

    if (s != NULL && len > 0)
        memcpy(s->p, buf, len);
    return s;
}

HWKEY_SECRET *hwkey_secret_read_file(const char *path, size_t max, const char *what)
{
    /* Room for max bytes, a CR LF, and one more to tell "too long" apart. */
    HWKEY_SECRET *s = secret_new(max + 3);
    size_t n = 0;
    ssize_t r;
    int fd;

    if (s == NULL)
        return NULL;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "cannot open %s %s: %s", what, path, strerror(errno));
        goto err;
    }
    while (n < max + 3) {
        r = read(fd, s->p + n, max + 3 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "cannot read %s %s: %s", what, path,
                        strerror(errno));
            close(fd);
            goto err;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (n > 0 && s->p[n - 1] == '\n')
        n--;
    if (n > 0 && s->p[n - 1] == '\r')
        n--;
    if (n == 0 || n > max) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "%s %s must hold 1..%zu bytes%s", what, path, max,
                    n == 0 ? " (it is empty)" : "");
        goto err;
    }
    /* The newline and any excess bytes are wiped: only len bytes + NUL stay. */
    memset(s->p + n, 0, max + 3 - n);
    s->len = n;
    return s;
err:
    hwkey_secret_free(s);
    return NULL;
}

void hwkey_secret_free(HWKEY_SECRET *s)
{
    hwkey_secmem_free(s);
}
