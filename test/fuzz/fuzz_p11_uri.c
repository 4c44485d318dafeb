/*
 * libFuzzer harness for the RFC 7512 pkcs11: URI parser
 * (src/backend/pkcs11/p11_uri.c, through its internal API in p11_internal.h):
 * untrusted input from reference files, command lines and openssl.cnf.
 * Invariants: a parsed URI's strings are readable to their NUL and its id to
 * id_len; the URI hwkey_p11_uri_for_object() writes for the object it names
 * (as `hwkey keygen --uri` and `hwkey list` do) parses again, to the same
 * label and id.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "backend/pkcs11/p11_internal.h"
#include "fuzz.h"

static void touch_str(const char *s)
{
    if (s != NULL)
        hwkey_fuzz_touch(s, strlen(s) + 1);
}

/* Space-padded token info field, as a token reports it. */
static void pad(unsigned char *field, size_t n, const char *s)
{
    size_t l = s != NULL ? strlen(s) : 0;

    memset(field, ' ', n);
    memcpy(field, s != NULL ? s : "", l < n ? l : n);
}

static void round_trip(const HWKEY_P11_URI *u)
{
    CK_TOKEN_INFO ti;
    HWKEY_P11_URI *again = NULL;
    char *text;

    memset(&ti, 0, sizeof(ti));
    pad(ti.label, sizeof(ti.label), u->token);
    pad(ti.manufacturerID, sizeof(ti.manufacturerID), u->manufacturer);
    pad(ti.model, sizeof(ti.model), u->model);
    pad(ti.serialNumber, sizeof(ti.serialNumber), u->serial);
    text = hwkey_p11_uri_for_object(&ti, u->id, u->id_len, u->object,
                                    u->has_class ? u->klass : CKO_PRIVATE_KEY, u);
    if (text == NULL)
        __builtin_trap();
    /* Percent-encoding can triple a URI: past p11_uri.c's 4096 bytes is refused by design. */
    if (strlen(text) > 4096)
        goto end;
    if (!hwkey_p11_uri_parse(text, strlen(text), &again))
        __builtin_trap();
    if ((u->object == NULL) != (again->object == NULL) ||
        (u->object != NULL && strcmp(u->object, again->object) != 0) ||
        (u->id_len > 0 && (again->id_len != u->id_len || memcmp(again->id, u->id, u->id_len) != 0)))
        __builtin_trap();
end:
    hwkey_p11_uri_free(again);
    OPENSSL_clear_free(text, strlen(text));
}

int hwkey_fuzz_p11_uri(const uint8_t *data, size_t size)
{
    HWKEY_P11_URI *u = NULL;

    if (hwkey_p11_uri_parse((const char *)data, size, &u)) {
        if (u == NULL)
            __builtin_trap();
        touch_str(u->token);
        touch_str(u->manufacturer);
        touch_str(u->model);
        touch_str(u->serial);
        touch_str(u->object);
        touch_str(u->pin_source);
        touch_str(u->pin_value);
        touch_str(u->module_path);
        touch_str(u->module_name);
        if (u->id_len > 0)
            hwkey_fuzz_touch(u->id, u->id_len);
        round_trip(u);
        hwkey_p11_uri_free(u);
    } else if (u != NULL) {
        __builtin_trap();
    }
    ERR_clear_error();
    return 0;
}

#ifndef HWKEY_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return hwkey_fuzz_p11_uri(data, size);
}
#endif
