/*
 * RFC 7512 pkcs11: URIs.  p11-kit does the percent-decoding and the value
 * syntax; it silently accepts a repeated attribute (the last one wins) and
 * unknown query attributes, so a first pass over the raw text rejects those:
 * an attribute given twice in a key reference is a mistake or an attack, not
 * something to resolve by guessing.
 */
#include "backend/pkcs11/p11_internal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <p11-kit/uri.h>

#include "util/error.h"
#include "util/secmem.h"

#define URI_MAX_LEN 4096

static const char *const path_attrs[] = {"token",
                                         "manufacturer",
                                         "model",
                                         "serial",
                                         "slot-id",
                                         "slot-description",
                                         "slot-manufacturer",
                                         "library-manufacturer",
                                         "library-description",
                                         "library-version",
                                         "object",
                                         "id",
                                         "type",
                                         NULL};
static const char *const query_attrs[] = {"pin-source", "pin-value", "module-name", "module-path",
                                          NULL};

static int known(const char *const *names, const char *name, size_t n)
{
    for (; *names != NULL; names++)
        if (strlen(*names) == n && memcmp(*names, name, n) == 0)
            return 1;
    return 0;
}

/* RFC 7512 §2.3: vendor attributes carry an "x-" prefix; they are ignored. */
static int vendor(const char *name, size_t n)
{
    return n > 2 && memcmp(name, "x-", 2) == 0;
}

static const char *const type_values[] = {"public", "private", "cert", "secret-key", "data", NULL};

/* Checks one ';'- or '&'-separated list of name=value for unknowns and repeats. */
static int check_attrs(const char *s, size_t len, char sep, const char *const *names,
                       const char *part, int *vendor_seen)
{
    const char *seen[16];
    size_t seen_len[16], n_seen = 0;
    const char *p = s, *end = s + len;

    while (p < end) {
        const char *next = memchr(p, sep, (size_t)(end - p));
        const char *eq;
        size_t alen, nlen;

        if (next == NULL)
            next = end;
        alen = (size_t)(next - p);
        eq = memchr(p, '=', alen);
        if (alen == 0) {
            hwkey_raise(HWKEY_R_INVALID_URI, "empty attribute in the URI's %s", part);
            return 0;
        }
        if (eq == NULL) {
            hwkey_raise(HWKEY_R_INVALID_URI, "URI %s attribute \"%.*s\" has no '='", part,
                        (int)alen, p);
            return 0;
        }
        nlen = (size_t)(eq - p);
        if (vendor(p, nlen)) {
            *vendor_seen = 1;
            p = next + 1;
            continue;
        }
        if (!known(names, p, nlen)) {
            hwkey_raise(HWKEY_R_INVALID_URI, "unknown URI %s attribute \"%.*s\"", part, (int)nlen,
                        p);
            return 0;
        }
        if (nlen == 4 && memcmp(p, "type", 4) == 0 &&
            !known(type_values, eq + 1, (size_t)(next - eq - 1))) {
            hwkey_raise(HWKEY_R_INVALID_URI,
                        "URI type=\"%.*s\" is not one of public, private, "
                        "cert, secret-key, data",
                        (int)(next - eq - 1), eq + 1);
            return 0;
        }
        for (size_t i = 0; i < n_seen; i++) {
            if (seen_len[i] == nlen && memcmp(seen[i], p, nlen) == 0) {
                hwkey_raise(HWKEY_R_INVALID_URI, "URI attribute \"%.*s\" is given twice", (int)nlen,
                            p);
                return 0;
            }
        }
        if (n_seen == sizeof(seen) / sizeof(seen[0])) {
            hwkey_raise(HWKEY_R_INVALID_URI, "too many attributes in the URI's %s", part);
            return 0;
        }
        seen[n_seen] = p;
        seen_len[n_seen++] = nlen;
        p = next + 1;
    }
    return 1;
}

/* Token info fields are space-padded and not NUL-terminated. */
static char *unpad(const unsigned char *field, size_t n)
{
    while (n > 0 && field[n - 1] == ' ')
        n--;
    return OPENSSL_strndup((const char *)field, n);
}

static int is_set(const unsigned char *field, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (field[i] != ' ' && field[i] != 0)
            return 1;
    return 0;
}

static int dup_opt(const char *in, char **out)
{
    if (in == NULL)
        return 1;
    return (*out = OPENSSL_strdup(in)) != NULL;
}

int hwkey_p11_uri_parse(const char *s, size_t len, HWKEY_P11_URI **out)
{
    P11KitUri *pu = NULL;
    HWKEY_P11_URI *u = NULL;
    char *text = NULL;
    const char *path, *query;
    CK_TOKEN_INFO *ti;
    CK_ATTRIBUTE *a;
    CK_SLOT_ID slot;
    int rc, ok = 0, vendor_seen = 0;

    *out = NULL;
    if (len > URI_MAX_LEN || memchr(s, '\0', len) != NULL) {
        hwkey_raise(HWKEY_R_INVALID_URI, "URI is longer than %d bytes or holds a NUL byte",
                    URI_MAX_LEN);
        goto end;
    }
    if (len < 7 || strncmp(s, "pkcs11:", 7) != 0) {
        hwkey_raise(HWKEY_R_INVALID_URI, "URI does not start with \"pkcs11:\"");
        goto end;
    }
    /* Own copy: it may hold a pin-value; protected memory, wiped on free. */
    if ((text = hwkey_secmem_strndup(s, len)) == NULL)
        goto end;
    path = text + 7;
    query = strchr(path, '?');
    if (!check_attrs(path, query != NULL ? (size_t)(query - path) : strlen(path), ';', path_attrs,
                     "path", &vendor_seen))
        goto end;
    if (query != NULL &&
        !check_attrs(query + 1, strlen(query + 1), '&', query_attrs, "query", &vendor_seen))
        goto end;

    if ((pu = p11_kit_uri_new()) == NULL || (u = OPENSSL_zalloc(sizeof(*u))) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a URI");
        goto end;
    }
    rc = p11_kit_uri_parse(text, P11_KIT_URI_FOR_ANY, pu);
    if (rc != P11_KIT_URI_OK) {
        hwkey_raise(HWKEY_R_INVALID_URI, "p11-kit rejects the URI: %s", p11_kit_uri_message(rc));
        goto end;
    }
    if (p11_kit_uri_any_unrecognized(pu) && !vendor_seen) {
        /* Names were checked above: p11-kit refused a value. */
        hwkey_raise(HWKEY_R_INVALID_URI, "URI has an attribute value p11-kit does not "
                                         "recognise");
        goto end;
    }
    if (p11_kit_uri_get_pin_value(pu) != NULL && p11_kit_uri_get_pin_source(pu) != NULL) {
        hwkey_raise(HWKEY_R_INVALID_URI, "URI has both pin-value and pin-source; give one");
        goto end;
    }

    ti = p11_kit_uri_get_token_info(pu);
    if ((is_set(ti->label, sizeof(ti->label)) && (u->token = unpad(ti->label, 32)) == NULL) ||
        (is_set(ti->manufacturerID, 32) &&
         (u->manufacturer = unpad(ti->manufacturerID, 32)) == NULL) ||
        (is_set(ti->model, 16) && (u->model = unpad(ti->model, 16)) == NULL) ||
        (is_set(ti->serialNumber, 16) && (u->serial = unpad(ti->serialNumber, 16)) == NULL))
        goto oom;
    slot = p11_kit_uri_get_slot_id(pu);
    if (slot != (CK_SLOT_ID)-1) {
        u->has_slot_id = 1;
        u->slot_id = slot;
    }
    if ((a = p11_kit_uri_get_attribute(pu, CKA_LABEL)) != NULL &&
        (u->object = OPENSSL_strndup(a->pValue, a->ulValueLen)) == NULL)
        goto oom;
    if ((a = p11_kit_uri_get_attribute(pu, CKA_ID)) != NULL) {
        u->has_id = 1;
        u->id_len = a->ulValueLen;
        if (a->ulValueLen > 0 && (u->id = OPENSSL_memdup(a->pValue, a->ulValueLen)) == NULL)
            goto oom;
    }
    if ((a = p11_kit_uri_get_attribute(pu, CKA_CLASS)) != NULL &&
        a->ulValueLen == sizeof(CK_OBJECT_CLASS)) {
        u->has_class = 1;
        memcpy(&u->klass, a->pValue, sizeof(u->klass));
    }
    if (p11_kit_uri_get_pin_value(pu) != NULL) {
        const char *pv = p11_kit_uri_get_pin_value(pu);

        if ((u->pin_value = hwkey_secmem_strndup(pv, strlen(pv))) == NULL)
            goto end;
    }
    if (!dup_opt(p11_kit_uri_get_pin_source(pu), &u->pin_source) ||
        !dup_opt(p11_kit_uri_get_module_path(pu), &u->module_path) ||
        !dup_opt(p11_kit_uri_get_module_name(pu), &u->module_name))
        goto oom;
    *out = u;
    u = NULL;
    ok = 1;
    goto end;
oom:
    hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying URI attributes");
end:
    if (pu != NULL) {
        /* p11-kit keeps its own copy of pin-value: overwrite before it frees it. */
        const char *pv = p11_kit_uri_get_pin_value(pu);

        if (pv != NULL)
            OPENSSL_cleanse((char *)pv, strlen(pv));
        p11_kit_uri_free(pu);
    }
    hwkey_secmem_free(text);
    hwkey_p11_uri_free(u);
    return ok;
}

void hwkey_p11_uri_free(HWKEY_P11_URI *u)
{
    if (u == NULL)
        return;
    OPENSSL_free(u->token);
    OPENSSL_free(u->manufacturer);
    OPENSSL_free(u->model);
    OPENSSL_free(u->serial);
    OPENSSL_free(u->object);
    OPENSSL_free(u->id);
    OPENSSL_free(u->pin_source);
    hwkey_secmem_free(u->pin_value);
    OPENSSL_free(u->module_path);
    OPENSSL_free(u->module_name);
    OPENSSL_free(u);
}

char *hwkey_p11_uri_for_object(const CK_TOKEN_INFO *ti, const unsigned char *id, size_t id_len,
                               const char *label, CK_OBJECT_CLASS klass, const HWKEY_P11_URI *base)
{
    P11KitUri *pu = p11_kit_uri_new();
    CK_TOKEN_INFO *uti;
    CK_ATTRIBUTE attr;
    char *text = NULL, *res = NULL;

    if (pu == NULL)
        goto oom;
    uti = p11_kit_uri_get_token_info(pu);
    memcpy(uti->label, ti->label, sizeof(uti->label));
    memcpy(uti->manufacturerID, ti->manufacturerID, sizeof(uti->manufacturerID));
    memcpy(uti->model, ti->model, sizeof(uti->model));
    memcpy(uti->serialNumber, ti->serialNumber, sizeof(uti->serialNumber));
    attr.type = CKA_CLASS;
    attr.pValue = &klass;
    attr.ulValueLen = sizeof(klass);
    if (p11_kit_uri_set_attribute(pu, &attr) != P11_KIT_URI_OK)
        goto oom;
    if (id != NULL && id_len > 0) {
        attr.type = CKA_ID;
        attr.pValue = (void *)id;
        attr.ulValueLen = id_len;
        if (p11_kit_uri_set_attribute(pu, &attr) != P11_KIT_URI_OK)
            goto oom;
    }
    if (label != NULL) {
        attr.type = CKA_LABEL;
        attr.pValue = (void *)label;
        attr.ulValueLen = strlen(label);
        if (p11_kit_uri_set_attribute(pu, &attr) != P11_KIT_URI_OK)
            goto oom;
    }
    if (base != NULL) {
        if (base->module_path != NULL)
            p11_kit_uri_set_module_path(pu, base->module_path);
        /* Where the PIN comes from may be written down; the PIN never (util/uri_redact.h). */
        if (base->pin_source != NULL)
            p11_kit_uri_set_pin_source(pu, base->pin_source);
    }
    if (p11_kit_uri_format(pu, P11_KIT_URI_FOR_OBJECT_ON_TOKEN_AND_MODULE, &text) != P11_KIT_URI_OK)
        goto oom;
    res = OPENSSL_strdup(text);
    if (res == NULL)
        goto oom;
    goto end;
oom:
    hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "formatting a pkcs11: URI");
end:
    if (text != NULL) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    if (pu != NULL) {
        const char *pv = p11_kit_uri_get_pin_value(pu);

        if (pv != NULL)
            OPENSSL_cleanse((char *)pv, strlen(pv));
        p11_kit_uri_free(pu);
    }
    return res;
}

const char *hwkey_p11_uri_describe(const HWKEY_P11_URI *u)
{
    return u->object != NULL ? u->object : (u->has_id ? "(by id)" : "(any)");
}
