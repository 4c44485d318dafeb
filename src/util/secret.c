/* Secrets with one lifecycle: see secret.h. */
#include "util/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

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

/*
 * Up to cap bytes of the file into s->p (s->len = what was read), with
 * read(2): no library buffer keeps a copy.  first_line: stop at a newline.
 */
static int read_into(HWKEY_SECRET *s, size_t cap, const char *path, const char *what,
                     int first_line)
{
    size_t n = 0;
    ssize_t r;
    int fd;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "cannot open %s %s: %s", what, path, strerror(errno));
        return 0;
    }
    while (n < cap) {
        r = read(fd, s->p + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "cannot read %s %s: %s", what, path, strerror(errno));
            close(fd);
            return 0;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (first_line && memchr(s->p, '\n', n) != NULL)
            break;
    }
    close(fd);
    s->len = n;
    return 1;
}

/* Keeps s->p[0..n), wipes the rest of the cap bytes (newlines, excess). */
static void keep(HWKEY_SECRET *s, size_t n, size_t cap)
{
    OPENSSL_cleanse(s->p + n, cap + 1 - n);
    s->len = n;
}

HWKEY_SECRET *hwkey_secret_read_file(const char *path, size_t min, size_t max, const char *what)
{
    /* Room for max bytes, a CR LF, and one more to tell "too long" apart. */
    const size_t cap = max + 3;
    HWKEY_SECRET *s = secret_new(cap);
    size_t n;

    if (s == NULL || !read_into(s, cap, path, what, 0))
        goto err;
    n = s->len;
    if (n > 0 && s->p[n - 1] == '\n')
        n--;
    if (n > 0 && s->p[n - 1] == '\r')
        n--;
    if (n < min || n > max) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "%s %s must hold %zu..%zu bytes (it holds %s)", what,
                    path, min, max, n < min ? "fewer" : "more");
        goto err;
    }
    keep(s, n, cap);
    return s;
err:
    hwkey_secret_free(s);
    return NULL;
}

HWKEY_SECRET *hwkey_secret_read_line(const char *path, size_t max, const char *what)
{
    const size_t cap = max + 1;
    HWKEY_SECRET *s = secret_new(cap);
    size_t n = 0;

    if (s == NULL || !read_into(s, cap, path, what, 1))
        goto err;
    while (n < s->len && s->p[n] != '\n' && s->p[n] != '\r')
        n++;
    if (n > max) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "%s %s: first line longer than %zu bytes", what, path,
                    max);
        goto err;
    }
    keep(s, n, cap);
    return s;
err:
    hwkey_secret_free(s);
    return NULL;
}

void hwkey_secret_free(HWKEY_SECRET *s)
{
    hwkey_secmem_free(s);
}
