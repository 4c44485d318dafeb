/*
 * What a TPM key reference looks like: a TSS2 PRIVATE KEY file (the TCG
 * draft's TPMKey, util/tss2_keyfile.h) or "handle:0x81xxxxxx" for a
 * persistent key.  Recognising, describing and writing them back needs no
 * TPM, so the decoder, `openssl pkey -text` and `-out` work offline.
 */
#include "backend/tpm2/tpm2_refs.h"

#include <string.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "hwkey/hwkey.h"
#include "util/error.h"
#include "util/keyref.h"
#include "util/tss2_keyfile.h"

#define HANDLE_SCHEME "handle:"

/* TPMT_PUBLIC.type values (TPM2_ALG_RSA, TPM2_ALG_ECC); no tss2 header needed for two numbers. */
#define TPM_ALG_RSA 0x0001u
#define TPM_ALG_ECC 0x0023u

HWKEY_REF_KIND hwkey_tpm2_uri_kind(const char *uri)
{
    return strncmp(uri, HANDLE_SCHEME, strlen(HANDLE_SCHEME)) == 0 ? HWKEY_REF_TPM2_HANDLE : 0;
}

int hwkey_tpm2_generates(const HWKEY_GENOPTS *opts)
{
    /* The default device: a key file, unless a URI names another device's slot. */
    return opts->uri == NULL;
}

int hwkey_tpm2_ref_is_stored(HWKEY_REF_KIND kind)
{
    /* A key file is the whole (wrapped) key; a persistent handle lives in the TPM. */
    return kind == HWKEY_REF_TPM2_HANDLE;
}

int hwkey_tpm2_key_describe(HWKEY_BKEY *key, const HWKEY_KEYREF *ref, BIO *out)
{
    HWKEY_TSS2_KEYFILE kf;
    int ok;

    (void)key;
    if (ref->kind == HWKEY_REF_TPM2_HANDLE)
        return BIO_printf(out, "Private key: held by TPM 2.0 (persistent %.*s)\n", (int)ref->len,
                          (const char *)ref->data) > 0;
    memset(&kf, 0, sizeof(kf));
    if (!hwkey_tss2_keyfile_decode(ref->data, ref->len, &kf))
        return 0;
    ok =
        BIO_printf(out, "Private key: held by TPM 2.0 (TSS2 key file, parent 0x%08x, %s%s)\n",
                   (unsigned int)kf.parent, kf.empty_auth ? "no auth value" : "auth value required",
                   kf.policy_count > 0 ? ", use bound by a policy" : "") > 0;
    hwkey_tss2_keyfile_clear(&kf);
    return ok;
}

int hwkey_tpm2_ref_encode(const HWKEY_KEYREF *ref, int pem, BIO *out)
{
    if (ref->kind != HWKEY_REF_TSS2_KEYFILE)
        return hwkey_keyref_write(out, ref->data, ref->len, pem);
    /* The bytes it was loaded from: nothing the parser skips (policies) is lost. */
    if (pem) {
        if (PEM_write_bio(out, HWKEY_PEM_TSS2_PRIVATE_KEY, "", ref->data, (long)ref->len) <= 0) {
            hwkey_raise(HWKEY_R_INTERNAL, "writing the TSS2 PRIVATE KEY PEM block failed");
            return 0;
        }
        return 1;
    }
    if (BIO_write(out, ref->data, (int)ref->len) != (int)ref->len) {
        hwkey_raise(HWKEY_R_INTERNAL, "writing the %zu-byte TSS2 key file failed", ref->len);
        return 0;
    }
    return 1;
}

/*
 * TPMKey ::= SEQUENCE { type OBJECT IDENTIFIER 2.23.133.10.1.{3,4,5}, ... }:
 * the OID's content octets are 67 81 05 0A 01 0x.
 */
static int der_is_tss2(const unsigned char *der, size_t len)
{
    static const unsigned char oid_prefix[] = {0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01};
    const unsigned char *p = der;
    long inner_len;
    int tag, xclass;

    if (len < 2)
        return 0;
    /* 0x80 = error bit; a truncated body (0x80 too) is still ours: decode names it. */
    if ((ASN1_get_object(&p, &inner_len, &tag, &xclass, (long)len) & 0x20) == 0 ||
        tag != V_ASN1_SEQUENCE || xclass != V_ASN1_UNIVERSAL)
        return 0;
    if ((size_t)(p - der) + sizeof(oid_prefix) + 1 > len)
        return 0;
    return memcmp(p, oid_prefix, sizeof(oid_prefix)) == 0 && p[sizeof(oid_prefix)] >= 3 &&
           p[sizeof(oid_prefix)] <= 5;
}

/*
 * A TSS2 key file is checked here, before any TPM is asked (a corrupt file
 * is named as such even when no TPM answers), and its key type is read from
 * its TPM2B_PUBLIC (size, then TPMT_PUBLIC.type), so that the decoder of
 * the other type neither touches the TPM nor asks for the auth value a
 * second time.  *alg = 0 when the file cannot say.
 */
int hwkey_tpm2_keyfile_recognise(const char *label, const unsigned char *data, size_t len,
                                 HWKEY_REF_KIND *kind, HWKEY_ALG *alg, const char **structure)
{
    HWKEY_TSS2_KEYFILE kf;

    if (label != NULL && strcmp(label, HWKEY_PEM_TSS2_PRIVATE_KEY) != 0)
        return 0;
    /* Unlabelled DER: ours only by its header (a longer file is still named as too long). */
    if (label == NULL) {
        int ours;

        /* ASN1_get_object queues errors on malformed input: not ours, no noise. */
        ERR_set_mark();
        ours = der_is_tss2(data, len > HWKEY_TSS2_KEYFILE_MAX ? 64 : len);
        ERR_pop_to_mark();
        if (!ours)
            return 0;
    }
    if (len > HWKEY_TSS2_KEYFILE_MAX) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "TSS2 key file of %zu bytes (at most %d)", len,
                    HWKEY_TSS2_KEYFILE_MAX);
        return -1;
    }
    memset(&kf, 0, sizeof(kf));
    if (!hwkey_tss2_keyfile_decode(data, len, &kf))
        return -1;
    *kind = HWKEY_REF_TSS2_KEYFILE;
    *structure = "TSS2";
    *alg = 0;
    if (kf.pubkey_len >= 4) {
        unsigned int type = ((unsigned int)kf.pubkey[2] << 8) | kf.pubkey[3];

        *alg = type == TPM_ALG_RSA ? HWKEY_ALG_RSA : type == TPM_ALG_ECC ? HWKEY_ALG_EC : 0;
    }
    hwkey_tss2_keyfile_clear(&kf);
    return 1;
}
