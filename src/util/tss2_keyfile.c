/*
 * The TCG "TSS2 PRIVATE KEY" file, through OpenSSL's ASN.1 templates.
 *
 * The input is untrusted (any file a user names), so decoding checks more
 * than the grammar: size before parsing, exact consumption (no trailing
 * bytes), the type OID, a parent that fits a TPM handle, and TPM2B size
 * prefixes that agree with the octet strings carrying them.  Every rejection
 * raises one HWKEY_R_KEY_FILE_INVALID naming the flaw; the ASN.1 library's
 * own errors are dropped through an error mark so they do not bury it.
 */
#include "util/tss2_keyfile.h"

#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include "util/error.h"

#define TSS2_PEM_LABEL "TSS2 PRIVATE KEY"

/*
 * A PEM file is about 4/3 of its DER plus line breaks and guards; anything
 * longer than this cannot hold an acceptable key and is refused unread.
 */
#define TSS2_PEM_MAX (HWKEY_TSS2_KEYFILE_MAX * 2 + 256)

/* TPMPolicy ::= SEQUENCE { CommandCode [0] EXPLICIT INTEGER, CommandPolicy [1] EXPLICIT OCTET
 * STRING } */
typedef struct {
    ASN1_INTEGER *cc;
    ASN1_OCTET_STRING *params;
} HWKEY_TPMPOLICY_ASN1;

DECLARE_ASN1_FUNCTIONS(HWKEY_TPMPOLICY_ASN1)
DEFINE_STACK_OF(HWKEY_TPMPOLICY_ASN1)

ASN1_SEQUENCE(HWKEY_TPMPOLICY_ASN1) =
    {
        ASN1_EXP(HWKEY_TPMPOLICY_ASN1, cc, ASN1_INTEGER, 0),
        ASN1_EXP(HWKEY_TPMPOLICY_ASN1, params, ASN1_OCTET_STRING, 1),
} ASN1_SEQUENCE_END(HWKEY_TPMPOLICY_ASN1)

        IMPLEMENT_ASN1_FUNCTIONS(HWKEY_TPMPOLICY_ASN1)

    /*
     * The draft's optional fields.  policy [1] is parsed into its steps (the TPM
     * backend satisfies PolicyPCR and PolicyAuthValue); authPolicy is carried as
     * an opaque ANY value: hwkey does not evaluate signed policies, it only
     * reports them, and keeping it opaque means a file from a newer tool still
     * parses.
     * description [4] and rsaParent [5] come from later revisions of the draft
     * (openssl_tpm2_engine writes them).
     *
     * The booleans are ANY so that "absent" stays distinguishable from FALSE
     * (the draft gives emptyAuth three states) and a wrong type can be named.
     */
    typedef struct {
    ASN1_OBJECT *type;
    ASN1_TYPE *empty_auth;
    STACK_OF(HWKEY_TPMPOLICY_ASN1) * policy;
    ASN1_OCTET_STRING *secret;
    ASN1_TYPE *auth_policy;
    ASN1_UTF8STRING *description;
    ASN1_TYPE *rsa_parent;
    ASN1_INTEGER *parent;
    ASN1_OCTET_STRING *pubkey;
    ASN1_OCTET_STRING *privkey;
} HWKEY_TPMKEY_ASN1;

DECLARE_ASN1_FUNCTIONS(HWKEY_TPMKEY_ASN1)

/*
 * pubkey and privkey are OPT so that a file lacking one decodes far enough
 * for us to name the missing field instead of reporting a generic parse
 * failure; both are then required below.
 */
ASN1_SEQUENCE(HWKEY_TPMKEY_ASN1) =
    {
        ASN1_SIMPLE(HWKEY_TPMKEY_ASN1, type, ASN1_OBJECT),
        ASN1_EXP_OPT(HWKEY_TPMKEY_ASN1, empty_auth, ASN1_ANY, 0),
        ASN1_EXP_SEQUENCE_OF_OPT(HWKEY_TPMKEY_ASN1, policy, HWKEY_TPMPOLICY_ASN1, 1),
        ASN1_EXP_OPT(HWKEY_TPMKEY_ASN1, secret, ASN1_OCTET_STRING, 2),
        ASN1_EXP_OPT(HWKEY_TPMKEY_ASN1, auth_policy, ASN1_ANY, 3),
        ASN1_EXP_OPT(HWKEY_TPMKEY_ASN1, description, ASN1_UTF8STRING, 4),
        ASN1_EXP_OPT(HWKEY_TPMKEY_ASN1, rsa_parent, ASN1_ANY, 5),
        ASN1_SIMPLE(HWKEY_TPMKEY_ASN1, parent, ASN1_INTEGER),
        ASN1_OPT(HWKEY_TPMKEY_ASN1, pubkey, ASN1_OCTET_STRING),
        ASN1_OPT(HWKEY_TPMKEY_ASN1, privkey, ASN1_OCTET_STRING),
} ASN1_SEQUENCE_END(HWKEY_TPMKEY_ASN1)

        IMPLEMENT_ASN1_FUNCTIONS(HWKEY_TPMKEY_ASN1)

    /* DER contents of the type OIDs, 2.23.133.10.1.{3,4,5}. */
    static const struct {
    HWKEY_TSS2_KEYTYPE type;
    const char *text;
    unsigned char der[6];
} keytypes[] = {
    {HWKEY_TSS2_LOADABLE, "2.23.133.10.1.3", {0x67, 0x81, 0x05, 0x0a, 0x01, 0x03}},
    {HWKEY_TSS2_IMPORTABLE, "2.23.133.10.1.4", {0x67, 0x81, 0x05, 0x0a, 0x01, 0x04}},
    {HWKEY_TSS2_SEALED, "2.23.133.10.1.5", {0x67, 0x81, 0x05, 0x0a, 0x01, 0x05}},
};

static int keytype_of_oid(const ASN1_OBJECT *obj, HWKEY_TSS2_KEYTYPE *type)
{
    const unsigned char *data = OBJ_get0_data(obj);
    size_t len = OBJ_length(obj);

    for (size_t i = 0; i < sizeof(keytypes) / sizeof(keytypes[0]); i++) {
        if (data != NULL && len == sizeof(keytypes[i].der) &&
            memcmp(data, keytypes[i].der, len) == 0) {
            *type = keytypes[i].type;
            return 1;
        }
    }
    return 0;
}

/* A TPM2B is a big-endian 16-bit size followed by exactly that many bytes. */
static int tpm2b_consistent(const ASN1_OCTET_STRING *os)
{
    const unsigned char *d = ASN1_STRING_get0_data(os);
    int len = ASN1_STRING_length(os);

    if (len < 2)
        return 0;
    return ((size_t)d[0] << 8 | d[1]) == (size_t)len - 2;
}

static int copy_octets(const ASN1_OCTET_STRING *os, unsigned char **out, size_t *outlen)
{
    int len = ASN1_STRING_length(os);

    *out = OPENSSL_memdup(ASN1_STRING_get0_data(os), len > 0 ? (size_t)len : 1);
    if (*out == NULL)
        return 0;
    *outlen = (size_t)len;
    return 1;
}

/* 1, 0 or -1 (absent); -2 when present but not a BOOLEAN. */
static int optional_bool(const ASN1_TYPE *t)
{
    if (t == NULL)
        return -1;
    if (ASN1_TYPE_get(t) != V_ASN1_BOOLEAN)
        return -2;
    return t->value.boolean != 0;
}

/* The policy [1] steps into out->policy; 0 + KEY_FILE_INVALID / OUT_OF_MEMORY raised. */
static int policy_decode(const STACK_OF(HWKEY_TPMPOLICY_ASN1) * sk, HWKEY_TSS2_KEYFILE *out)
{
    int n = sk != NULL ? sk_HWKEY_TPMPOLICY_ASN1_num(sk) : 0;

    if (n > HWKEY_TSS2_POLICY_MAX) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "TSS2 key file has a policy of %d steps (at most %d "
                    "allowed)",
                    n, HWKEY_TSS2_POLICY_MAX);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const HWKEY_TPMPOLICY_ASN1 *step = sk_HWKEY_TPMPOLICY_ASN1_value(sk, i);
        HWKEY_TSS2_POLICY *p = &out->policy[i];
        uint64_t cc = 0;
        int ok;

        ERR_set_mark();
        ok = ASN1_INTEGER_get_uint64(&cc, step->cc) == 1 && cc <= UINT32_MAX;
        ERR_pop_to_mark();
        if (!ok) {
            hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                        "TSS2 key file: policy step %d has a command code "
                        "that is not a 32-bit TPM_CC",
                        i + 1);
            return 0;
        }
        p->cc = (uint32_t)cc;
        if (ASN1_STRING_length(step->params) > 0 &&
            !copy_octets(step->params, &p->params, &p->params_len)) {
            hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying the TSS2 key file's policy");
            return 0;
        }
        out->policy_count = (size_t)i + 1;
    }
    return 1;
}

int hwkey_tss2_keyfile_decode(const unsigned char *der, size_t der_len, HWKEY_TSS2_KEYFILE *out)
{
    HWKEY_TPMKEY_ASN1 *asn = NULL;
    const unsigned char *p = der;
    uint64_t parent = 0;
    int empty_auth, ok, ret = 0;

    memset(out, 0, sizeof(*out));
    if (der == NULL || der_len == 0) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "TSS2 key file is empty");
        return 0;
    }
    if (der_len > HWKEY_TSS2_KEYFILE_MAX) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "TSS2 key file is %zu bytes, more than the %d allowed", der_len,
                    HWKEY_TSS2_KEYFILE_MAX);
        return 0;
    }

    /* The ASN.1 code's own errors only repeat "decode failed" in other words. */
    ERR_set_mark();
    asn = d2i_HWKEY_TPMKEY_ASN1(NULL, &p, (long)der_len);
    ERR_pop_to_mark();
    if (asn == NULL) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "TSS2 key file is not a TPMKey ASN.1 structure (truncated or malformed DER)");
        goto end;
    }
    if (p != der + der_len) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "TSS2 key file has %zu trailing bytes after the key",
                    (size_t)(der + der_len - p));
        goto end;
    }
    if (!keytype_of_oid(asn->type, &out->type)) {
        char oid[64];

        OBJ_obj2txt(oid, sizeof(oid), asn->type, 1);
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "TSS2 key file has unknown type OID %s (expected 2.23.133.10.1.3/4/5)", oid);
        goto end;
    }
    empty_auth = optional_bool(asn->empty_auth);
    if (empty_auth == -2 || optional_bool(asn->rsa_parent) == -2) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "TSS2 key file: emptyAuth/rsaParent [0]/[5] is not a BOOLEAN");
        goto end;
    }
    ERR_set_mark();
    ok = ASN1_INTEGER_get_uint64(&parent, asn->parent) == 1 && parent <= UINT32_MAX;
    ERR_pop_to_mark();
    if (!ok) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "TSS2 key file: parent is not a 32-bit TPM handle");
        goto end;
    }
    if (asn->pubkey == NULL || asn->privkey == NULL) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "TSS2 key file has no %s",
                    asn->pubkey == NULL ? "pubkey" : "privkey");
        goto end;
    }
    if (!tpm2b_consistent(asn->pubkey) || !tpm2b_consistent(asn->privkey)) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "TSS2 key file: %s TPM2B size prefix disagrees with its %d-byte octet string",
                    tpm2b_consistent(asn->pubkey) ? "privkey" : "pubkey",
                    ASN1_STRING_length(tpm2b_consistent(asn->pubkey) ? asn->privkey : asn->pubkey));
        goto end;
    }

    out->empty_auth = empty_auth == 1;
    out->parent = (uint32_t)parent;
    out->has_auth_policy = asn->auth_policy != NULL;
    if (!policy_decode(asn->policy, out))
        goto end;
    if (!copy_octets(asn->pubkey, &out->pubkey, &out->pubkey_len) ||
        !copy_octets(asn->privkey, &out->privkey, &out->privkey_len) ||
        (asn->secret != NULL && !copy_octets(asn->secret, &out->secret, &out->secret_len))) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying the TSS2 key file's blobs");
        goto end;
    }
    ret = 1;

end:
    if (!ret)
        hwkey_tss2_keyfile_clear(out);
    HWKEY_TPMKEY_ASN1_free(asn);
    return ret;
}

static ASN1_OCTET_STRING *octets_new(const unsigned char *data, size_t len)
{
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();

    if (os != NULL && (len > INT32_MAX || !ASN1_OCTET_STRING_set(os, data, (int)len))) {
        ASN1_OCTET_STRING_free(os);
        os = NULL;
    }
    return os;
}

/* kf->policy into asn->policy (absent when there is none). */
static int policy_encode(const HWKEY_TSS2_KEYFILE *kf, HWKEY_TPMKEY_ASN1 *asn)
{
    if (kf->policy_count == 0 || kf->policy_count > HWKEY_TSS2_POLICY_MAX)
        return kf->policy_count == 0;
    if ((asn->policy = sk_HWKEY_TPMPOLICY_ASN1_new_null()) == NULL)
        return 0;
    for (size_t i = 0; i < kf->policy_count; i++) {
        HWKEY_TPMPOLICY_ASN1 *step = HWKEY_TPMPOLICY_ASN1_new();

        if (step == NULL || !ASN1_INTEGER_set_uint64(step->cc, kf->policy[i].cc) ||
            !ASN1_OCTET_STRING_set(step->params, kf->policy[i].params,
                                   (int)kf->policy[i].params_len) ||
            !sk_HWKEY_TPMPOLICY_ASN1_push(asn->policy, step)) {
            HWKEY_TPMPOLICY_ASN1_free(step);
            return 0;
        }
    }
    return 1;
}

int hwkey_tss2_keyfile_encode(const HWKEY_TSS2_KEYFILE *kf, unsigned char **der, size_t *der_len)
{
    HWKEY_TPMKEY_ASN1 *asn = NULL;
    const char *oid = NULL;
    unsigned char *buf = NULL;
    int len, ret = 0;

    *der = NULL;
    *der_len = 0;
    for (size_t i = 0; i < sizeof(keytypes) / sizeof(keytypes[0]); i++)
        if (keytypes[i].type == kf->type)
            oid = keytypes[i].text;
    if (oid == NULL || kf->pubkey == NULL || kf->privkey == NULL) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "TSS2 key file to encode lacks %s",
                    oid == NULL ? "a valid type" : "pubkey or privkey");
        return 0;
    }

    asn = HWKEY_TPMKEY_ASN1_new();
    if (asn == NULL)
        goto oom;
    asn->type = OBJ_txt2obj(oid, 1);
    asn->pubkey = octets_new(kf->pubkey, kf->pubkey_len);
    asn->privkey = octets_new(kf->privkey, kf->privkey_len);
    if (asn->type == NULL || asn->pubkey == NULL || asn->privkey == NULL ||
        !ASN1_INTEGER_set_uint64(asn->parent, kf->parent))
        goto oom;
    /*
     * emptyAuth is always written, FALSE too: tpm2-openssl 1.1 reads an
     * absent emptyAuth as TRUE and then fails with TPM_RC_AUTH_FAIL on a key
     * that has an auth value (seen on swtpm).
     */
    asn->empty_auth = ASN1_TYPE_new();
    if (asn->empty_auth == NULL)
        goto oom;
    ASN1_TYPE_set(asn->empty_auth, V_ASN1_BOOLEAN, (void *)(intptr_t)(kf->empty_auth != 0));
    if (kf->secret != NULL && (asn->secret = octets_new(kf->secret, kf->secret_len)) == NULL)
        goto oom;
    if (!policy_encode(kf, asn))
        goto oom;

    len = i2d_HWKEY_TPMKEY_ASN1(asn, &buf);
    if (len <= 0)
        goto oom;
    *der = buf;
    *der_len = (size_t)len;
    ret = 1;
    goto end;

oom:
    hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "encoding the TSS2 key file");
end:
    HWKEY_TPMKEY_ASN1_free(asn);
    return ret;
}

int hwkey_tss2_keyfile_write_pem(BIO *out, const HWKEY_TSS2_KEYFILE *kf)
{
    unsigned char *der = NULL;
    size_t der_len = 0;
    int ret = 0;

    if (!hwkey_tss2_keyfile_encode(kf, &der, &der_len))
        return 0;
    if (PEM_write_bio(out, TSS2_PEM_LABEL, "", der, (long)der_len) <= 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "writing the TSS2 PRIVATE KEY PEM block failed");
        goto end;
    }
    ret = 1;
end:
    OPENSSL_free(der);
    return ret;
}

/*
 * Read at most TSS2_PEM_MAX + 1 bytes: one byte more than allowed tells an
 * oversized input from one of exactly the limit.
 */
static int read_bounded(BIO *in, unsigned char **buf, size_t *len)
{
    unsigned char *b = OPENSSL_malloc(TSS2_PEM_MAX + 1);
    size_t n = 0;
    int r;

    if (b == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "reading a TSS2 key file");
        return 0;
    }
    while (n < TSS2_PEM_MAX + 1 && (r = BIO_read(in, b + n, (int)(TSS2_PEM_MAX + 1 - n))) > 0)
        n += (size_t)r;
    *buf = b;
    *len = n;
    return 1;
}

static int find_pem_begin(const unsigned char *buf, size_t len)
{
    static const char begin[] = "-----BEGIN ";

    for (size_t i = 0; i + sizeof(begin) - 1 <= len; i++)
        if (memcmp(buf + i, begin, sizeof(begin) - 1) == 0)
            return 1;
    return 0;
}

int hwkey_tss2_keyfile_read_der(BIO *in, unsigned char **der, size_t *der_len)
{
    unsigned char *buf = NULL, *data = NULL;
    char *name = NULL, *header = NULL;
    long data_len = 0;
    size_t len = 0;
    BIO *mem = NULL;
    int ret = 0;

    *der = NULL;
    *der_len = 0;
    if (!read_bounded(in, &buf, &len))
        return 0;
    if (len == 0) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "TSS2 key file is empty");
        goto end;
    }

    if (!find_pem_begin(buf, len)) {
        /* Raw DER: it is the key itself, so the DER limit applies. */
        if (len > HWKEY_TSS2_KEYFILE_MAX) {
            hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "TSS2 key file is more than the %d bytes allowed",
                        HWKEY_TSS2_KEYFILE_MAX);
            goto end;
        }
        if (buf[0] != 0x30) {
            hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                        "not a TSS2 key file: neither PEM nor a DER SEQUENCE");
            goto end;
        }
        *der = buf;
        *der_len = len;
        buf = NULL;
        ret = 1;
        goto end;
    }

    if (len > TSS2_PEM_MAX) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "TSS2 PEM key file is more than the %d bytes allowed",
                    TSS2_PEM_MAX);
        goto end;
    }
    mem = BIO_new_mem_buf(buf, (int)len);
    if (mem == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "reading a TSS2 key file");
        goto end;
    }
    ERR_set_mark();
    if (PEM_read_bio(mem, &name, &header, &data, &data_len) <= 0) {
        ERR_pop_to_mark();
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "TSS2 key file: malformed PEM block");
        goto end;
    }
    ERR_pop_to_mark();
    if (strcmp(name, TSS2_PEM_LABEL) != 0) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "PEM block is \"%.40s\", not \"" TSS2_PEM_LABEL "\"",
                    name);
        goto end;
    }
    if (header != NULL && header[0] != '\0') {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "TSS2 PEM key file has headers (encrypted PEM is not a TSS2 key file)");
        goto end;
    }
    if (data_len <= 0 || (size_t)data_len > HWKEY_TSS2_KEYFILE_MAX) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "TSS2 PEM key file holds %ld bytes of DER (1..%d allowed)", data_len,
                    HWKEY_TSS2_KEYFILE_MAX);
        goto end;
    }
    *der = data;
    *der_len = (size_t)data_len;
    data = NULL;
    ret = 1;

end:
    BIO_free(mem);
    OPENSSL_free(buf);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    return ret;
}

void hwkey_tss2_keyfile_clear(HWKEY_TSS2_KEYFILE *kf)
{
    if (kf == NULL)
        return;
    OPENSSL_free(kf->pubkey);
    /* privkey is wrapped by the TPM, but secret of an importable key is a seed. */
    OPENSSL_clear_free(kf->privkey, kf->privkey_len);
    OPENSSL_clear_free(kf->secret, kf->secret_len);
    for (size_t i = 0; i < kf->policy_count && i < HWKEY_TSS2_POLICY_MAX; i++)
        OPENSSL_free(kf->policy[i].params);
    memset(kf, 0, sizeof(*kf));
}
