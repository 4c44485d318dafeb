/*
 * What the TPM can do: the capability cache behind the catalogue's
 * supports() predicate (TPM2_GetCapability ALGS / ECC_CURVES, RSA sizes by
 * TPM2_TestParms, asked once per device) and the `hwkey info` description.
 */
#include "backend/tpm2/tpm2_internal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "util/error.h"
#include "util/log.h"

static const int rsa_sizes[] = {1024, 2048, 3072, 4096};
#define N_RSA_SIZES (sizeof(rsa_sizes) / sizeof(rsa_sizes[0]))

static const struct {
    TPM2_ECC_CURVE id;
    const char *name;
} curve_names[] = {
    {TPM2_ECC_NIST_P192, "NIST P-192"}, {TPM2_ECC_NIST_P224, "NIST P-224"},
    {TPM2_ECC_NIST_P256, "NIST P-256"}, {TPM2_ECC_NIST_P384, "NIST P-384"},
    {TPM2_ECC_NIST_P521, "NIST P-521"}, {TPM2_ECC_BN_P256, "BN P-256"},
    {TPM2_ECC_BN_P638, "BN P-638"},     {TPM2_ECC_SM2_P256, "SM2 P-256"},
};
#define N_CURVES (sizeof(curve_names) / sizeof(curve_names[0]))

static const struct {
    TPM2_ALG_ID id;
    const char *name;
} alg_names[] = {
    {TPM2_ALG_RSA, "rsa"},
    {TPM2_ALG_TDES, "tdes"},
    {TPM2_ALG_MGF1, "mgf1"},
    {TPM2_ALG_CMAC, "cmac"},
    {TPM2_ALG_SHA1, "sha1"},
    {TPM2_ALG_HMAC, "hmac"},
    {TPM2_ALG_AES, "aes"},
    {TPM2_ALG_KEYEDHASH, "keyedhash"},
    {TPM2_ALG_XOR, "xor"},
    {TPM2_ALG_SHA256, "sha256"},
    {TPM2_ALG_SHA384, "sha384"},
    {TPM2_ALG_SHA512, "sha512"},
    {TPM2_ALG_SM3_256, "sm3_256"},
    {TPM2_ALG_SM4, "sm4"},
    {TPM2_ALG_RSASSA, "rsassa"},
    {TPM2_ALG_RSAES, "rsaes"},
    {TPM2_ALG_RSAPSS, "rsapss"},
    {TPM2_ALG_OAEP, "oaep"},
    {TPM2_ALG_ECDSA, "ecdsa"},
    {TPM2_ALG_ECDH, "ecdh"},
    {TPM2_ALG_ECDAA, "ecdaa"},
    {TPM2_ALG_SM2, "sm2"},
    {TPM2_ALG_ECSCHNORR, "ecschnorr"},
    {TPM2_ALG_ECMQV, "ecmqv"},
    {TPM2_ALG_KDF1_SP800_56A, "kdf1_sp800_56a"},
    {TPM2_ALG_KDF2, "kdf2"},
    {TPM2_ALG_KDF1_SP800_108, "kdf1_sp800_108"},
    {TPM2_ALG_ECC, "ecc"},
    {TPM2_ALG_SYMCIPHER, "symcipher"},
    {TPM2_ALG_CAMELLIA, "camellia"},
    {TPM2_ALG_SHA3_256, "sha3_256"},
    {TPM2_ALG_SHA3_384, "sha3_384"},
    {TPM2_ALG_SHA3_512, "sha3_512"},
    {TPM2_ALG_CTR, "ctr"},
    {TPM2_ALG_OFB, "ofb"},
    {TPM2_ALG_CBC, "cbc"},
    {TPM2_ALG_CFB, "cfb"},
    {TPM2_ALG_ECB, "ecb"},
};

static HWKEY_TPM2_DEVICE *tpm2_dev(HWKEY_DEVICE *dev)
{
    return (HWKEY_TPM2_DEVICE *)dev;
}

/* ---- capabilities ------------------------------------------------------ */

TSS2_RC hwkey_tpm2_get_cap(ESYS_CONTEXT *esys, TPM2_CAP cap, UINT32 prop, UINT32 count,
                           TPMI_YES_NO *more, TPMS_CAPABILITY_DATA **data)
{
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;

    do {
        rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, cap, prop, count,
                                more, data);
    } while (hwkey_tpm2_retry(&retry, rc));
    return rc;
}

static int rsa_size_ok(ESYS_CONTEXT *esys, int bits)
{
    TPMT_PUBLIC_PARMS parms;
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;

    memset(&parms, 0, sizeof(parms));
    parms.type = TPM2_ALG_RSA;
    parms.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
    parms.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
    parms.parameters.rsaDetail.keyBits = (TPMI_RSA_KEY_BITS)bits;
    do {
        rc = Esys_TestParms(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &parms);
    } while (hwkey_tpm2_retry(&retry, rc));
    return rc == TSS2_RC_SUCCESS;
}

/* Fill the device's capability cache; call between acquire and release. */
static int caps_fill(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys)
{
    TPMS_CAPABILITY_DATA *data = NULL;
    TPMI_YES_NO more = TPM2_NO;
    TSS2_RC rc;

    if (dev->caps_known)
        return 1;
    dev->caps_rsa = dev->caps_ecc = 0;
    dev->caps_rsa_bits = dev->caps_curves = 0;

    rc = hwkey_tpm2_get_cap(esys, TPM2_CAP_ALGS, TPM2_ALG_FIRST, TPM2_MAX_CAP_ALGS, &more, &data);
    if (rc != TSS2_RC_SUCCESS)
        return hwkey_tpm2_raise_rc(rc, "asking the TPM for its algorithms");
    for (UINT32 i = 0; i < data->data.algorithms.count; i++) {
        TPM2_ALG_ID alg = data->data.algorithms.algProperties[i].alg;

        dev->caps_rsa |= alg == TPM2_ALG_RSA;
        dev->caps_ecc |= alg == TPM2_ALG_ECC;
    }
    Esys_Free(data);
    data = NULL;

    if (dev->caps_ecc) {
        rc = hwkey_tpm2_get_cap(esys, TPM2_CAP_ECC_CURVES, TPM2_ECC_NONE, TPM2_MAX_ECC_CURVES,
                                &more, &data);
        if (rc != TSS2_RC_SUCCESS)
            return hwkey_tpm2_raise_rc(rc, "asking the TPM for its ECC curves");
        for (UINT32 i = 0; i < data->data.eccCurves.count; i++)
            for (size_t c = 0; c < N_CURVES; c++)
                if (data->data.eccCurves.eccCurves[i] == curve_names[c].id)
                    dev->caps_curves |= 1u << c;
        Esys_Free(data);
    }
    if (dev->caps_rsa)
        for (size_t i = 0; i < N_RSA_SIZES; i++)
            if (rsa_size_ok(esys, rsa_sizes[i]))
                dev->caps_rsa_bits |= 1u << i;
    dev->caps_known = 1;
    return 1;
}

static int curve_listed(const HWKEY_TPM2_DEVICE *dev, TPM2_ECC_CURVE id)
{
    for (size_t c = 0; c < N_CURVES; c++)
        if (curve_names[c].id == id)
            return (dev->caps_curves >> c) & 1u;
    return 0;
}

typedef struct {
    int rsa, ecc;
    unsigned int rsa_bits, curves;
} CAPS;

/* In the tabrmd: helper process (tpm2_helper.c): its own copy of dev. */
static int caps_helper(HWKEY_TPM2_DEVICE *dev, ESYS_CONTEXT *esys, void *out)
{
    CAPS *c = out;

    if (!caps_fill(dev, esys))
        return 0;
    *c = (CAPS){dev->caps_rsa, dev->caps_ecc, dev->caps_rsa_bits, dev->caps_curves};
    return 1;
}

static int caps_from_helper(HWKEY_TPM2_DEVICE *dev)
{
    CAPS c = {0};

    if (!hwkey_tpm2_run_helper(dev, caps_helper, &c, sizeof(c)))
        return 0;
    pthread_mutex_lock(&dev->lock);
    dev->caps_rsa = c.rsa;
    dev->caps_ecc = c.ecc;
    dev->caps_rsa_bits = c.rsa_bits;
    dev->caps_curves = c.curves;
    dev->caps_known = 1;
    pthread_mutex_unlock(&dev->lock);
    return 1;
}

/*
 * In this process.  OpenSSL asks while a server's master reads its
 * configuration, before it forks workers: a connection made just for this
 * is closed again, so that no connection made before a fork is used after
 * it (the caps stay cached; the first operation connects where it signs).
 */
static int caps_in_process(HWKEY_TPM2_DEVICE *dev)
{
    ESYS_CONTEXT *esys = hwkey_tpm2_acquire_probe(dev);
    int ok;

    if (esys == NULL)
        return 0;
    ok = caps_fill(dev, esys);
    if (!dev->conn_used)
        hwkey_tpm2_disconnect(dev, 1);
    hwkey_tpm2_release(dev);
    return ok;
}

int hwkey_tpm2_supports(HWKEY_DEVICE *base, const HWKEY_KEYSPEC *spec)
{
    HWKEY_TPM2_DEVICE *dev = tpm2_dev(base);
    int ok;

    /*
     * A predicate, asked while OpenSSL enumerates algorithms: a missing TPM
     * means "no", not an error left in the application's queue.
     */
    if (!__atomic_load_n(&dev->caps_known, __ATOMIC_ACQUIRE)) {
        ERR_set_mark();
        ok = hwkey_tpm2_use_helper(dev) ? caps_from_helper(dev) : caps_in_process(dev);
        ERR_pop_to_mark();
        if (!ok) {
            hwkey_log(HWKEY_LOG_INFO, "tpm2: capabilities unknown (TPM unreachable?)");
            return -1;
        }
    }
    switch (spec->alg) {
    case HWKEY_ALG_EC: {
        TPMI_ECC_CURVE id = hwkey_tpm2_curve_id(spec->curve_nid);

        return dev->caps_ecc && id != TPM2_ECC_NONE && curve_listed(dev, id);
    }
    case HWKEY_ALG_RSA:
        for (size_t i = 0; i < N_RSA_SIZES; i++)
            if (rsa_sizes[i] == spec->bits)
                return dev->caps_rsa && ((dev->caps_rsa_bits >> i) & 1u);
        return 0;
    default:
        return 0;
    }
}

/* ---- describe ------------------------------------------------------------ */

typedef struct {
    UINT32 manufacturer, vendor[4], fw1, fw2, family, level, revision, year, day;
    UINT32 transient_avail, persistent_avail, loaded_sessions;
} TPM_PROPS;

static int read_props(ESYS_CONTEXT *esys, UINT32 first, UINT32 last, TPM_PROPS *p)
{
    TPMS_CAPABILITY_DATA *data = NULL;
    TPMI_YES_NO more = TPM2_YES;
    UINT32 prop = first;
    TSS2_RC rc;

    while (more == TPM2_YES && prop <= last) {
        rc = hwkey_tpm2_get_cap(esys, TPM2_CAP_TPM_PROPERTIES, prop, TPM2_MAX_TPM_PROPERTIES, &more,
                                &data);
        if (rc != TSS2_RC_SUCCESS)
            return hwkey_tpm2_raise_rc(rc, "asking the TPM for its properties");
        if (data->data.tpmProperties.count == 0) {
            Esys_Free(data);
            break;
        }
        for (UINT32 i = 0; i < data->data.tpmProperties.count; i++) {
            const TPMS_TAGGED_PROPERTY *t = &data->data.tpmProperties.tpmProperty[i];

            prop = t->property + 1;
            switch (t->property) {
            case TPM2_PT_MANUFACTURER:
                p->manufacturer = t->value;
                break;
            case TPM2_PT_VENDOR_STRING_1:
                p->vendor[0] = t->value;
                break;
            case TPM2_PT_VENDOR_STRING_2:
                p->vendor[1] = t->value;
                break;
            case TPM2_PT_VENDOR_STRING_3:
                p->vendor[2] = t->value;
                break;
            case TPM2_PT_VENDOR_STRING_4:
                p->vendor[3] = t->value;
                break;
            case TPM2_PT_FIRMWARE_VERSION_1:
                p->fw1 = t->value;
                break;
            case TPM2_PT_FIRMWARE_VERSION_2:
                p->fw2 = t->value;
                break;
            case TPM2_PT_FAMILY_INDICATOR:
                p->family = t->value;
                break;
            case TPM2_PT_LEVEL:
                p->level = t->value;
                break;
            case TPM2_PT_REVISION:
                p->revision = t->value;
                break;
            case TPM2_PT_YEAR:
                p->year = t->value;
                break;
            case TPM2_PT_DAY_OF_YEAR:
                p->day = t->value;
                break;
            case TPM2_PT_HR_TRANSIENT_AVAIL:
                p->transient_avail = t->value;
                break;
            case TPM2_PT_HR_PERSISTENT_AVAIL:
                p->persistent_avail = t->value;
                break;
            case TPM2_PT_HR_LOADED_AVAIL:
                p->loaded_sessions = t->value;
                break;
            default:
                break;
            }
        }
        Esys_Free(data);
        data = NULL;
    }
    return 1;
}

/* A TPM property that holds up to 4 ASCII characters, NULs and spaces dropped. */
static void ascii4(UINT32 v, char *out, size_t *n)
{
    for (int shift = 24; shift >= 0; shift -= 8) {
        unsigned char c = (unsigned char)(v >> shift);

        if (c >= 0x20 && c < 0x7f)
            out[(*n)++] = (char)c;
    }
    out[*n] = '\0';
}

static int list_algorithms(ESYS_CONTEXT *esys, BIO *out)
{
    TPMS_CAPABILITY_DATA *data = NULL;
    TPMI_YES_NO more = TPM2_NO;
    TSS2_RC rc =
        hwkey_tpm2_get_cap(esys, TPM2_CAP_ALGS, TPM2_ALG_FIRST, TPM2_MAX_CAP_ALGS, &more, &data);

    if (rc != TSS2_RC_SUCCESS)
        return hwkey_tpm2_raise_rc(rc, "asking the TPM for its algorithms");
    BIO_printf(out, "  algorithms:");
    for (UINT32 i = 0; i < data->data.algorithms.count; i++) {
        TPM2_ALG_ID alg = data->data.algorithms.algProperties[i].alg;
        const char *name = NULL;

        for (size_t a = 0; a < sizeof(alg_names) / sizeof(alg_names[0]); a++)
            if (alg_names[a].id == alg)
                name = alg_names[a].name;
        if (name != NULL)
            BIO_printf(out, " %s", name);
        else
            BIO_printf(out, " 0x%04x", (unsigned int)alg);
    }
    BIO_printf(out, "\n");
    Esys_Free(data);
    return 1;
}

/*
 * What `hwkey keygen` and `openssl genpkey` make on this TPM, in keygen's
 * spelling: the intersection of hwkey's key types and the cache above.
 */
static void describe_keygen(const HWKEY_TPM2_DEVICE *dev, BIO *out)
{
    static const struct {
        TPM2_ECC_CURVE id;
        const char *name;
    } ec[] = {{TPM2_ECC_NIST_P256, "ec:P-256"},
              {TPM2_ECC_NIST_P384, "ec:P-384"},
              {TPM2_ECC_NIST_P521, "ec:P-521"}};
    static const int rsa[] = {2048, 3072, 4096};

    BIO_printf(out, "  hwkey keygen:");
    for (size_t i = 0; i < sizeof(ec) / sizeof(ec[0]); i++)
        if (dev->caps_ecc && curve_listed(dev, ec[i].id))
            BIO_printf(out, " %s", ec[i].name);
    for (size_t i = 0; i < sizeof(rsa) / sizeof(rsa[0]); i++)
        for (size_t j = 0; j < N_RSA_SIZES; j++)
            if (rsa_sizes[j] == rsa[i] && dev->caps_rsa && ((dev->caps_rsa_bits >> j) & 1u))
                BIO_printf(out, " rsa:%d", rsa[i]);
    BIO_printf(out, "\n");
}

int hwkey_tpm2_describe(HWKEY_DEVICE *base, BIO *out)
{
    HWKEY_TPM2_DEVICE *dev = tpm2_dev(base);
    TPM_PROPS p;
    char manu[8], vendor[20], family[8];
    const char *sep = " ";
    size_t n = 0, m = 0, f = 0;
    ESYS_CONTEXT *esys;
    int ok = 0;

    memset(&p, 0, sizeof(p));
    if ((esys = hwkey_tpm2_acquire(dev)) == NULL)
        return 0;
    if (!read_props(esys, TPM2_PT_FIXED, TPM2_PT_FIXED + 0xff, &p) ||
        !read_props(esys, TPM2_PT_VAR, TPM2_PT_VAR + 0xff, &p) || !caps_fill(dev, esys))
        goto end;

    ascii4(p.manufacturer, manu, &m);
    for (int i = 0; i < 4; i++)
        ascii4(p.vendor[i], vendor, &n);
    BIO_printf(out, "TPM 2.0 (tpm2 backend)\n");
    BIO_printf(out, "  vendor: %s (%s)\n", manu, vendor);
    /* Vendors encode the version differently: show the common reading and the raw words. */
    BIO_printf(out, "  firmware: %u.%u.%u.%u (0x%08x 0x%08x)\n", (unsigned int)(p.fw1 >> 16),
               (unsigned int)(p.fw1 & 0xffff), (unsigned int)(p.fw2 >> 16),
               (unsigned int)(p.fw2 & 0xffff), (unsigned int)p.fw1, (unsigned int)p.fw2);
    ascii4(p.family, family, &f);
    BIO_printf(out, "  spec: family %s level %u revision %u.%02u (%u, day %u)\n", family,
               (unsigned int)p.level, (unsigned int)p.revision / 100,
               (unsigned int)p.revision % 100, (unsigned int)p.year, (unsigned int)p.day);
    BIO_printf(out, "  tcti: %s\n", dev->tcti_conf != NULL ? dev->tcti_conf : "(external)");
    BIO_printf(out, "  resource manager: %s\n",
               dev->rm_mode ? "yes (keys stay loaded)" : "no (load-use-flush per operation)");
    BIO_printf(out, "  free transient object slots: %u\n", (unsigned int)p.transient_avail);
    BIO_printf(out, "  free persistent slots: %u\n", (unsigned int)p.persistent_avail);
    if (!list_algorithms(esys, out))
        goto end;
    BIO_printf(out, "  ecc curves:");
    for (size_t c = 0; c < N_CURVES; c++)
        if ((dev->caps_curves >> c) & 1u) {
            BIO_printf(out, "%s%s", sep, curve_names[c].name);
            sep = ", ";
        }
    BIO_printf(out, "\n  rsa key sizes:");
    for (size_t i = 0; i < N_RSA_SIZES; i++)
        if ((dev->caps_rsa_bits >> i) & 1u)
            BIO_printf(out, " %d", rsa_sizes[i]);
    BIO_printf(out, "\n");
    describe_keygen(dev, out);
    ok = 1;
end:
    hwkey_tpm2_release(dev);
    return ok;
}
