/*
 * The algorithm catalogue: one table of everything hwkey implements, each
 * entry with the key type it needs.  On the first query the devices are asked
 * (backend ->supports, from TPM2_GetCapability) and only what some device can
 * do, or cannot rule out, is advertised.  An unreachable TPM answers "cannot
 * tell", so loading a key fails later with the device's own error ("cannot
 * connect to the TPM") rather than a puzzling "unsupported".  The PKCS#11
 * backend never loads its module to answer: the catalogue is built inside
 * whatever OpenSSL call comes first, which may be SoftHSM's own C_Initialize
 * (docs/traps-openssl.md, test_pkcs11_deadlock.sh).
 *
 * No digests, MACs, KDFs, RNGs or ciphers are ever offered here without
 * provider=hwkey: see docs/traps.md (SoftHSM re-entry deadlock).
 */
#include "provider/provider.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>

#include "ops/ops.h"
#include "util/error.h"

#define PROPS "provider=hwkey"

typedef struct {
    int operation_id;
    OSSL_ALGORITHM alg;
    HWKEY_ALG needs; /* 0: always offered */
    int bulk_opt_in; /* offered only with bulk-cipher = yes (HWKEY_CONFIG) */
} CATALOGUE_ENTRY;

#define ENTRY(op, names, props, fns, needs)                                                        \
    {                                                                                              \
        op, {names, props, fns, NULL}, needs, 0                                                    \
    }
#define BULK_ENTRY(op, names, props, fns)                                                          \
    {                                                                                              \
        op, {names, props, fns, NULL}, 0, 1                                                        \
    }

static const CATALOGUE_ENTRY catalogue[] = {
    ENTRY(OSSL_OP_KEYMGMT, "EC:id-ecPublicKey:1.2.840.10045.2.1", PROPS, hwkey_ec_keymgmt_functions,
          HWKEY_ALG_EC),
    ENTRY(OSSL_OP_KEYMGMT, "RSA:rsaEncryption:1.2.840.113549.1.1.1", PROPS,
          hwkey_rsa_keymgmt_functions, HWKEY_ALG_RSA),
    ENTRY(OSSL_OP_SIGNATURE, "ECDSA", PROPS, hwkey_ecdsa_signature_functions, HWKEY_ALG_EC),
    ENTRY(OSSL_OP_SIGNATURE, "RSA:rsaEncryption:1.2.840.113549.1.1.1", PROPS,
          hwkey_rsa_signature_functions, HWKEY_ALG_RSA),
    ENTRY(OSSL_OP_ASYM_CIPHER, "RSA:rsaEncryption:1.2.840.113549.1.1.1", PROPS,
          hwkey_rsa_asym_cipher_functions, HWKEY_ALG_RSA),
    ENTRY(OSSL_OP_KEYEXCH, "ECDH", PROPS, hwkey_ecdh_keyexch_functions, HWKEY_ALG_EC),
    /* The same under the names our keymgmt gives its operations (ops.h: no export per use). */
    ENTRY(OSSL_OP_SIGNATURE, HWKEY_OPNAME_ECDSA, PROPS, hwkey_ecdsa_signature_functions,
          HWKEY_ALG_EC),
    ENTRY(OSSL_OP_SIGNATURE, HWKEY_OPNAME_RSA, PROPS, hwkey_rsa_signature_functions, HWKEY_ALG_RSA),
    ENTRY(OSSL_OP_ASYM_CIPHER, HWKEY_OPNAME_RSA, PROPS, hwkey_rsa_asym_cipher_functions,
          HWKEY_ALG_RSA),
    ENTRY(OSSL_OP_KEYEXCH, HWKEY_OPNAME_ECDH, PROPS, hwkey_ecdh_keyexch_functions, HWKEY_ALG_EC),
    ENTRY(OSSL_OP_DECODER, "EC", PROPS ",input=pem", hwkey_ec_pem_decoder_functions, 0),
    ENTRY(OSSL_OP_DECODER, "RSA", PROPS ",input=pem", hwkey_rsa_pem_decoder_functions, 0),
    ENTRY(OSSL_OP_DECODER, "EC", PROPS ",input=der,structure=TSS2", hwkey_ec_der_decoder_functions,
          0),
    ENTRY(OSSL_OP_DECODER, "RSA", PROPS ",input=der,structure=TSS2",
          hwkey_rsa_der_decoder_functions, 0),
    /* The 'file:' store only chains decoders that produce DER: docs/traps-openssl.md */
    ENTRY(OSSL_OP_DECODER, "DER", PROPS ",input=pem", hwkey_pem2der_decoder_functions, 0),
    ENTRY(OSSL_OP_STORE, "handle", PROPS, hwkey_handle_store_functions, 0),
    ENTRY(OSSL_OP_STORE, "pkcs11", PROPS, hwkey_pkcs11_store_functions, 0),
    /* Ed25519 only where a device has EdDSA (PKCS#11 CKM_EDDSA; no TPM has it). */
    ENTRY(OSSL_OP_KEYMGMT, "ED25519:1.3.101.112", PROPS, hwkey_ed25519_keymgmt_functions,
          HWKEY_ALG_ED25519),
    ENTRY(OSSL_OP_SIGNATURE, "ED25519:1.3.101.112", PROPS, hwkey_ed25519_signature_functions,
          HWKEY_ALG_ED25519),
    ENTRY(OSSL_OP_SIGNATURE, HWKEY_OPNAME_ED25519, PROPS, hwkey_ed25519_signature_functions,
          HWKEY_ALG_ED25519),
    ENTRY(OSSL_OP_DECODER, "ED25519", PROPS ",input=pem", hwkey_ed25519_pem_decoder_functions,
          HWKEY_ALG_ED25519),
    ENTRY(OSSL_OP_DECODER, "ED25519", PROPS ",input=der,structure=TSS2",
          hwkey_ed25519_der_decoder_functions, HWKEY_ALG_ED25519),
    /* Writing a device key writes its key file (PEM_write_bio_PrivateKey, i2d_PrivateKey). */
    ENTRY(OSSL_OP_ENCODER, "EC:id-ecPublicKey:1.2.840.10045.2.1",
          PROPS ",output=pem,structure=PrivateKeyInfo", hwkey_privkey_pem_encoder_functions,
          HWKEY_ALG_EC),
    ENTRY(OSSL_OP_ENCODER, "EC:id-ecPublicKey:1.2.840.10045.2.1",
          PROPS ",output=der,structure=PrivateKeyInfo", hwkey_privkey_der_encoder_functions,
          HWKEY_ALG_EC),
    ENTRY(OSSL_OP_ENCODER, "EC:id-ecPublicKey:1.2.840.10045.2.1", PROPS ",output=text",
          hwkey_text_encoder_functions, HWKEY_ALG_EC),
    ENTRY(OSSL_OP_ENCODER, "RSA:rsaEncryption:1.2.840.113549.1.1.1",
          PROPS ",output=pem,structure=PrivateKeyInfo", hwkey_privkey_pem_encoder_functions,
          HWKEY_ALG_RSA),
    ENTRY(OSSL_OP_ENCODER, "RSA:rsaEncryption:1.2.840.113549.1.1.1",
          PROPS ",output=der,structure=PrivateKeyInfo", hwkey_privkey_der_encoder_functions,
          HWKEY_ALG_RSA),
    ENTRY(OSSL_OP_ENCODER, "RSA:rsaEncryption:1.2.840.113549.1.1.1", PROPS ",output=text",
          hwkey_text_encoder_functions, HWKEY_ALG_RSA),
    /*
     * Bulk AES-NI cipher: asked for with provider=hwkey, and offered at all
     * only with bulk-cipher = yes: OpenSSL 3.0 would make it the implicit
     * AES-256-GCM whenever hwkey is activated before default (docs/bulk.md).
     */
    BULK_ENTRY(OSSL_OP_CIPHER, "AES-256-GCM:id-aes256-GCM:2.16.840.1.101.3.4.1.46",
               PROPS ",hwkey.bulk=yes", hwkey_aes256gcm_cipher_functions),
};
#define N_ENTRIES (sizeof(catalogue) / sizeof(catalogue[0]))

struct hwkey_catalogue {
    int device_answered;
    int supported[HWKEY_ALG_ED25519 + 1];
    /* Per operation: filtered, NULL-terminated copies of the table. */
    OSSL_ALGORITHM *by_op[OSSL_OP__HIGHEST + 1];
};

typedef struct {
    struct hwkey_catalogue *cat;
} PROBE;

static int probe_device(HWKEY_DEVICE *dev, void *arg)
{
    static const HWKEY_KEYSPEC probes[] = {
        {.alg = HWKEY_ALG_EC, .curve_nid = NID_X9_62_prime256v1},
        {.alg = HWKEY_ALG_EC, .curve_nid = NID_secp384r1},
        {.alg = HWKEY_ALG_RSA, .bits = 2048},
        {.alg = HWKEY_ALG_RSA, .bits = 3072},
        {.alg = HWKEY_ALG_ED25519},
    };
    struct hwkey_catalogue *cat = ((PROBE *)arg)->cat;

    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        /* 1 yes, 0 no, -1 cannot tell (unreachable, or asking could re-enter a module). */
        int answer = hwkey_backend_supports(dev, &probes[i]);

        if (answer != 0)
            cat->supported[probes[i].alg] = 1;
        if (answer >= 0)
            cat->device_answered = 1;
    }
    return 1;
}

static struct hwkey_catalogue *catalogue_build(HWKEY_PROVCTX *provctx)
{
    struct hwkey_catalogue *cat = OPENSSL_zalloc(sizeof(*cat));
    PROBE probe = {cat};

    if (cat == NULL)
        return NULL;
    /* A device that cannot be reached raises; that is not this query's error. */
    ERR_set_mark();
    hwkey_devices_foreach(provctx->devices, probe_device, &probe);
    ERR_pop_to_mark();

    for (int op = 1; op <= OSSL_OP__HIGHEST; op++) {
        size_t n = 0;

        for (size_t i = 0; i < N_ENTRIES; i++)
            if (catalogue[i].operation_id == op)
                n++;
        if (n == 0)
            continue;
        cat->by_op[op] = OPENSSL_zalloc((n + 1) * sizeof(OSSL_ALGORITHM));
        if (cat->by_op[op] == NULL)
            continue;
        n = 0;
        for (size_t i = 0; i < N_ENTRIES; i++) {
            const CATALOGUE_ENTRY *e = &catalogue[i];

            if (e->operation_id != op)
                continue;
            if (e->needs != 0 && cat->device_answered && !cat->supported[e->needs])
                continue;
            if (e->bulk_opt_in && !provctx->cfg.bulk_cipher)
                continue;
            cat->by_op[op][n++] = e->alg;
        }
    }
    return cat;
}

const OSSL_ALGORITHM *hwkey_catalogue_query(HWKEY_PROVCTX *provctx, int operation_id)
{
    if (operation_id <= 0 || operation_id > OSSL_OP__HIGHEST)
        return NULL;
    const OSSL_ALGORITHM *algs = NULL;

    /* Two threads may fetch for the first time at once: build once. */
    if (!CRYPTO_THREAD_write_lock(provctx->catalogue_lock))
        return NULL;
    if (provctx->catalogue == NULL)
        provctx->catalogue = catalogue_build(provctx);
    if (provctx->catalogue != NULL)
        algs = provctx->catalogue->by_op[operation_id];
    CRYPTO_THREAD_unlock(provctx->catalogue_lock);
    return algs;
}

void hwkey_catalogue_free(HWKEY_PROVCTX *provctx)
{
    struct hwkey_catalogue *cat = provctx->catalogue;

    if (cat == NULL)
        return;
    for (int op = 0; op <= OSSL_OP__HIGHEST; op++)
        OPENSSL_free(cat->by_op[op]);
    OPENSSL_free(cat);
    provctx->catalogue = NULL;
}
