/* "sha256:0,2,7" <-> HWKEY_PCRSEL (pcrsel.h). */
#include "util/pcrsel.h"

#include <stdio.h>
#include <string.h>

#include <openssl/obj_mac.h>

static const struct {
    const char *name;
    int nid;
} banks[] = {
    {"sha1", NID_sha1},
    {"sha256", NID_sha256},
    {"sha384", NID_sha384},
    {"sha512", NID_sha512},
};

const char *hwkey_pcrsel_bank_name(int md_nid)
{
    for (size_t i = 0; i < sizeof(banks) / sizeof(banks[0]); i++)
        if (banks[i].nid == md_nid)
            return banks[i].name;
    return "?";
}

int hwkey_pcrsel_parse(const char *spec, HWKEY_PCRSEL *out, char *why, size_t whylen)
{
    const char *colon = spec != NULL ? strchr(spec, ':') : NULL;
    const char *p;

    memset(out, 0, sizeof(*out));
    if (colon == NULL) {
        snprintf(why, whylen, "expected BANK:N[,N...], e.g. sha256:0,2,7");
        return 0;
    }
    for (size_t i = 0; i < sizeof(banks) / sizeof(banks[0]); i++)
        if (strlen(banks[i].name) == (size_t)(colon - spec) &&
            strncmp(spec, banks[i].name, (size_t)(colon - spec)) == 0)
            out->md_nid = banks[i].nid;
    if (out->md_nid == 0) {
        snprintf(why, whylen, "unknown PCR bank \"%.*s\" (sha1, sha256, sha384, sha512)",
                 (int)(colon - spec > 16 ? 16 : colon - spec), spec);
        return 0;
    }
    p = colon + 1;
    for (;;) {
        unsigned int n = 0;
        int digits = 0;

        /* Decimal only, no sign, no spaces: strtoul would accept " +7". */
        while (*p >= '0' && *p <= '9' && digits < 3) {
            n = n * 10 + (unsigned int)(*p++ - '0');
            digits++;
        }
        if (digits == 0 || (*p != ',' && *p != '\0') || n >= HWKEY_PCR_COUNT) {
            snprintf(why, whylen, "PCR numbers are 0..%d, separated by commas",
                     HWKEY_PCR_COUNT - 1);
            memset(out, 0, sizeof(*out));
            return 0;
        }
        if (out->mask & (1u << n)) {
            snprintf(why, whylen, "PCR %u is listed twice", n);
            memset(out, 0, sizeof(*out));
            return 0;
        }
        out->mask |= 1u << n;
        if (*p == '\0')
            break;
        p++;
    }
    return 1;
}

void hwkey_pcrsel_list(uint32_t mask, char *buf, size_t buflen)
{
    size_t off = 0;

    if (buflen == 0)
        return;
    buf[0] = '\0';
    for (unsigned int n = 0; n < HWKEY_PCR_COUNT && off < buflen; n++) {
        if ((mask & (1u << n)) == 0)
            continue;
        int w = snprintf(buf + off, buflen - off, "%s%u", off > 0 ? "," : "", n);

        if (w < 0)
            break;
        off += (size_t)w;
    }
}
