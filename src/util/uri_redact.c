/* What of a URI may leave the process: see uri_redact.h. */
#include "util/uri_redact.h"

#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "util/error.h"

#define PIN_VALUE "pin-value"

static int is_pkcs11(const char *uri, size_t len)
{
    return len >= 7 && strncasecmp(uri, "pkcs11:", 7) == 0;
}

/* An attribute "name[=value]" whose name is pin-value (any case). */
static int is_pin_value_attr(const char *attr, size_t alen)
{
    size_t n = sizeof(PIN_VALUE) - 1;

    return alen >= n && strncasecmp(attr, PIN_VALUE, n) == 0 && (alen == n || attr[n] == '=');
}

/*
 * Copies the attributes of one part (the path, separated by ';', or the
 * query, separated by '&') from src[0..len) to dst, leaving out pin-value.
 * lead: what to write before the first kept attribute ('\0': nothing).
 * Returns the bytes written.
 */
static size_t copy_part(char *dst, const char *src, size_t len, char sep, char lead)
{
    const char *end = src + len, *attr = src;
    size_t n = 0;
    int first = 1;

    while (attr < end) {
        const char *next = memchr(attr, sep, (size_t)(end - attr));
        size_t alen = (size_t)((next != NULL ? next : end) - attr);

        if (alen > 0 && !is_pin_value_attr(attr, alen)) {
            if (!first)
                dst[n++] = sep;
            else if (lead != '\0')
                dst[n++] = lead;
            memcpy(dst + n, attr, alen);
            n += alen;
            first = 0;
        }
        attr += alen + 1;
    }
    return n;
}

char *hwkey_uri_redact(const char *uri, size_t len, size_t *out_len)
{
    char *out = OPENSSL_malloc(len + 1);
    const char *q;
    size_t n;

    if (out == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying a key reference of %zu bytes", len);
        return NULL;
    }
    if (!is_pkcs11(uri, len)) {
        memcpy(out, uri, len);
        n = len;
    } else {
        q = memchr(uri, '?', len);
        memcpy(out, uri, 7);
        n = 7 + copy_part(out + 7, uri + 7, (size_t)((q != NULL ? q : uri + len) - (uri + 7)), ';',
                          '\0');
        if (q != NULL)
            n += copy_part(out + n, q + 1, (size_t)(uri + len - q - 1), '&', '?');
    }
    out[n] = '\0';
    if (out_len != NULL)
        *out_len = n;
    return out;
}

int hwkey_uri_has_pin_value(const char *uri, size_t len)
{
    char *red;
    size_t n = 0;
    int has;

    if (!is_pkcs11(uri, len))
        return 0;
    if ((red = hwkey_uri_redact(uri, len, &n)) == NULL)
        return 1; /* cannot tell: treat as carrying one */
    has = n != len;
    OPENSSL_clear_free(red, n + 1);
    return has;
}
