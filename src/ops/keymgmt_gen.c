/*
 * EC and RSA key generation in the device (see keymgmt_gen.h).
 *
 * The device makes the key and returns a reference (TSS2 key file DER,
 * handle:, pkcs11:); the reference is then resolved with hwkey_key_load()
 * exactly as if a decoder had read it, so a generated key is a real device
 * key with its reference kept for the encoders.
 *
 * RSA generation in a TPM takes seconds and is one blocking command.  So
 * that `openssl genpkey` still shows its progress dots, a ticker thread calls
 * the application's callback (OSSL_GEN_PARAM_POTENTIAL 0, like OpenSSL's own
 * RSA candidates) while the calling thread waits for the device; the device
 * work and every error it raises stay in the calling thread.
 */
#include "ops/keymgmt_gen.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/params.h>

#include "hwkey/hwkey.h"
#include "key/key.h"
#include "ops/provctx.h"
#include "util/error.h"
#include "util/keyref.h"
#include "util/log.h"

/* How often the progress callback hears from a generation in progress. */
#define TICK_MS 250

typedef struct {
    HWKEY_PROVCTX *provctx;
    int selection;
    HWKEY_KEYSPEC spec;
    char *uri;        /* HWKEY_GEN_PARAM_URI, or NULL: the TPM */
    uint32_t persist; /* HWKEY_GEN_PARAM_PERSIST, or 0 */
} HWKEY_GEN_CTX;

static const char *alg_text(HWKEY_ALG alg)
{
    return alg == HWKEY_ALG_RSA ? "RSA" : "EC";
}

static void *gen_init(HWKEY_ALG alg, void *provctx, int selection, const OSSL_PARAM params[])
{
    HWKEY_GEN_CTX *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a key generation context");
        return NULL;
    }
    ctx->provctx = provctx;
    ctx->selection = selection;
    ctx->spec.alg = alg;
    /* OpenSSL's default for RSA; EC has none: the curve must be given. */
    if (alg == HWKEY_ALG_RSA)
        ctx->spec.bits = 2048;
    if (!hwkey_keymgmt_gen_set_params(ctx, params)) {
        hwkey_keymgmt_gen_cleanup(ctx);
        return NULL;
    }
    return ctx;
}

void *hwkey_ec_gen_init(void *provctx, int selection, const OSSL_PARAM params[])
{
    return gen_init(HWKEY_ALG_EC, provctx, selection, params);
}

void *hwkey_rsa_gen_init(void *provctx, int selection, const OSSL_PARAM params[])
{
    return gen_init(HWKEY_ALG_RSA, provctx, selection, params);
}

void hwkey_keymgmt_gen_cleanup(void *genctx)
{
    HWKEY_GEN_CTX *ctx = genctx;

    if (ctx == NULL)
        return;
    /* The URI may carry a pin-value. */
    OPENSSL_clear_free(ctx->uri, ctx->uri != NULL ? strlen(ctx->uri) : 0);
    OPENSSL_free(ctx);
}

/* --- parameters ------------------------------------------------------------ */

static const OSSL_PARAM ec_gen_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
    OSSL_PARAM_utf8_string(HWKEY_GEN_PARAM_URI, NULL, 0),
    OSSL_PARAM_utf8_string(HWKEY_GEN_PARAM_PERSIST, NULL, 0), OSSL_PARAM_END};

static const OSSL_PARAM rsa_gen_settable[] = {
    OSSL_PARAM_size_t(OSSL_PKEY_PARAM_RSA_BITS, NULL),
    OSSL_PARAM_size_t(OSSL_PKEY_PARAM_RSA_PRIMES, NULL),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_utf8_string(HWKEY_GEN_PARAM_URI, NULL, 0),
    OSSL_PARAM_utf8_string(HWKEY_GEN_PARAM_PERSIST, NULL, 0),
    OSSL_PARAM_END};

const OSSL_PARAM *hwkey_ec_gen_settable_params(void *genctx, void *provctx)
{
    (void)genctx;
    (void)provctx;
    return ec_gen_settable;
}

const OSSL_PARAM *hwkey_rsa_gen_settable_params(void *genctx, void *provctx)
{
    (void)genctx;
    (void)provctx;
    return rsa_gen_settable;
}

/*
 * "P-256", "prime256v1", "secp384r1", "P-521" ... to the NIST curves devices
 * generate.  Whether this device has the curve is its own answer (gen_device).
 */
static int set_group(HWKEY_GEN_CTX *ctx, const OSSL_PARAM *p)
{
    const char *name = NULL;
    int nid;

    if (!OSSL_PARAM_get_utf8_string_ptr(p, &name)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "the EC group must be given as a name (P-256, P-384, P-521)");
        return 0;
    }
    nid = EC_curve_nist2nid(name);
    if (nid == NID_undef)
        nid = OBJ_sn2nid(name);
    if (nid == NID_undef)
        nid = OBJ_ln2nid(name);
    if (nid == NID_undef && strcasecmp(name, "p-256") == 0)
        nid = NID_X9_62_prime256v1;
    if (nid == NID_undef && strcasecmp(name, "p-384") == 0)
        nid = NID_secp384r1;
    if (nid == NID_undef && strcasecmp(name, "p-521") == 0)
        nid = NID_secp521r1;
    if (nid != NID_X9_62_prime256v1 && nid != NID_secp384r1 && nid != NID_secp521r1) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "EC curve \"%s\": hwkey generates device keys on P-256 (prime256v1), "
                    "P-384 (secp384r1) and P-521 (secp521r1), where the device has them",
                    name);
        return 0;
    }
    ctx->spec.curve_nid = nid;
    ctx->spec.bits = nid == NID_secp521r1 ? 521 : nid == NID_secp384r1 ? 384 : 256;
    return 1;
}

static int set_rsa_bits(HWKEY_GEN_CTX *ctx, const OSSL_PARAM *p)
{
    size_t bits = 0;

    if (!OSSL_PARAM_get_size_t(p, &bits) || (bits != 2048 && bits != 3072 && bits != 4096)) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "RSA key of %zu bits: hwkey generates 2048-, 3072- and 4096-bit device "
                    "keys, where the device has them",
                    bits);
        return 0;
    }
    ctx->spec.bits = (int)bits;
    return 1;
}

/* Devices generate with e = 65537 only (a TPM's exponent 0 means exactly that). */
static int set_rsa_e(const OSSL_PARAM *p)
{
    uint64_t e = 0;

    if (!OSSL_PARAM_get_uint64(p, &e) || e != 65537) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "RSA public exponent: device keys are generated with e = 65537 only");
        return 0;
    }
    return 1;
}

static int set_rsa_primes(const OSSL_PARAM *p)
{
    size_t primes = 0;

    if (!OSSL_PARAM_get_size_t(p, &primes) || primes != 2) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "multi-prime RSA: device keys have two primes only");
        return 0;
    }
    return 1;
}

static int set_uri(HWKEY_GEN_CTX *ctx, const OSSL_PARAM *p)
{
    const char *uri = NULL;

    if (!OSSL_PARAM_get_utf8_string_ptr(p, &uri) || hwkey_ref_kind_of_string(uri) == 0 ||
        strlen(uri) > HWKEY_KEYREF_URI_MAX) {
        hwkey_raise(HWKEY_R_INVALID_URI,
                    "%s: expected a pkcs11: URI naming the token and the "
                    "new key's label, e.g. pkcs11:token=T;object=web",
                    HWKEY_GEN_PARAM_URI);
        return 0;
    }
    OPENSSL_clear_free(ctx->uri, ctx->uri != NULL ? strlen(ctx->uri) : 0);
    if ((ctx->uri = OPENSSL_strdup(uri)) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying the %s parameter", HWKEY_GEN_PARAM_URI);
        return 0;
    }
    return 1;
}

/*
 * A number in hex; which numbers name a persistent object is the device's to
 * say (the TPM backend refuses anything outside 0x81000000..0x81FFFFFF).
 */
static int set_persist(HWKEY_GEN_CTX *ctx, const OSSL_PARAM *p)
{
    const char *s = NULL;
    char *end = NULL;
    unsigned long v = 0;

    if (OSSL_PARAM_get_utf8_string_ptr(p, &s) && strncasecmp(s, "0x", 2) == 0) {
        errno = 0;
        v = strtoul(s, &end, 16);
    }
    if (s == NULL || end == NULL || end == s + 2 || *end != '\0' || errno != 0 || v == 0 ||
        v > 0xFFFFFFFFUL) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "%s \"%s\": expected a persistent handle in hex, e.g. 0x81000010",
                    HWKEY_GEN_PARAM_PERSIST, s != NULL ? s : "(not a string)");
        return 0;
    }
    ctx->persist = (uint32_t)v;
    return 1;
}

int hwkey_keymgmt_gen_set_params(void *genctx, const OSSL_PARAM params[])
{
    HWKEY_GEN_CTX *ctx = genctx;
    const OSSL_PARAM *p;
    const char *enc = NULL;

    if (ctx == NULL)
        return 0;
    if (params == NULL)
        return 1;
    if (ctx->spec.alg == HWKEY_ALG_EC) {
        if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME)) != NULL &&
            !set_group(ctx, p))
            return 0;
        /* Device keys are named-curve keys; explicit parameters cannot be asked of a device. */
        if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_EC_ENCODING)) != NULL &&
            (!OSSL_PARAM_get_utf8_string_ptr(p, &enc) ||
             strcmp(enc, OSSL_PKEY_EC_ENCODING_GROUP) != 0)) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                        "EC parameter encoding \"%s\": device keys use named curves only",
                        enc != NULL ? enc : "?");
            return 0;
        }
    } else {
        if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_BITS)) != NULL &&
            !set_rsa_bits(ctx, p))
            return 0;
        if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_E)) != NULL && !set_rsa_e(p))
            return 0;
        if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_PRIMES)) != NULL &&
            !set_rsa_primes(p))
            return 0;
    }
    if ((p = OSSL_PARAM_locate_const(params, HWKEY_GEN_PARAM_URI)) != NULL && !set_uri(ctx, p))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, HWKEY_GEN_PARAM_PERSIST)) != NULL &&
        !set_persist(ctx, p))
        return 0;
    return 1;
}

/* --- progress -------------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int done;      /* set by the generating thread */
    int cancelled; /* the callback returned 0 */
    int ticks;
    OSSL_CALLBACK *cb;
    void *cbarg;
} HWKEY_TICKER;

/* One progress report, OpenSSL style: potential 0 = '.', 3 = end of line. */
static int report(HWKEY_TICKER *t, int potential)
{
    int iteration = t->ticks;
    OSSL_PARAM params[3];

    params[0] = OSSL_PARAM_construct_int(OSSL_GEN_PARAM_POTENTIAL, &potential);
    params[1] = OSSL_PARAM_construct_int(OSSL_GEN_PARAM_ITERATION, &iteration);
    params[2] = OSSL_PARAM_construct_end();
    return t->cb(params, t->cbarg);
}

static void *ticker_main(void *arg)
{
    HWKEY_TICKER *t = arg;
    int go_on;

    pthread_mutex_lock(&t->mutex);
    while (!t->done && !t->cancelled) {
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += TICK_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        if (pthread_cond_timedwait(&t->cond, &t->mutex, &until) != ETIMEDOUT || t->done)
            continue;
        /* The generating thread only waits for the device meanwhile: cb is ours. */
        pthread_mutex_unlock(&t->mutex);
        go_on = report(t, 0);
        pthread_mutex_lock(&t->mutex);
        t->ticks++;
        if (!go_on)
            t->cancelled = 1;
    }
    pthread_mutex_unlock(&t->mutex);
    return NULL;
}

/*
 * Generates on dev, calling cb every TICK_MS meanwhile.  Returns 1 with *out
 * filled, or 0 (raised); *cancelled when the callback asked to stop (the
 * device had the key made by then: the caller disposes of it).
 */
static int generate_with_progress(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec,
                                  const HWKEY_GENOPTS *opts, OSSL_CALLBACK *cb, void *cbarg,
                                  HWKEY_REFBLOB *out, int *cancelled)
{
    HWKEY_TICKER t = {.cb = cb, .cbarg = cbarg};
    pthread_t thread;
    int ok, started = 0;

    *cancelled = 0;
    if (cb != NULL && pthread_mutex_init(&t.mutex, NULL) == 0) {
        if (pthread_cond_init(&t.cond, NULL) == 0) {
            started = pthread_create(&thread, NULL, ticker_main, &t) == 0;
            if (!started)
                pthread_cond_destroy(&t.cond);
        }
        if (!started)
            pthread_mutex_destroy(&t.mutex);
    }
    /* Without a ticker (no callback, no thread) the key is made all the same. */
    ok = hwkey_key_gen_make(dev, spec, opts, out);
    if (!started)
        return ok;

    pthread_mutex_lock(&t.mutex);
    t.done = 1;
    pthread_cond_signal(&t.cond);
    pthread_mutex_unlock(&t.mutex);
    pthread_join(thread, NULL);
    pthread_cond_destroy(&t.cond);
    pthread_mutex_destroy(&t.mutex);
    /* Dots were printed: end their line, as OpenSSL's RSA generation does. */
    if (ok && !t.cancelled && t.ticks > 0 && !report(&t, 3))
        t.cancelled = 1;
    *cancelled = t.cancelled;
    return ok;
}

/* --- generation -------------------------------------------------------------- */

void *hwkey_keymgmt_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg)
{
    HWKEY_GEN_CTX *ctx = genctx;
    HWKEY_GENOPTS opts;
    HWKEY_REFBLOB blob = {0};
    HWKEY_KEYREF ref;
    HWKEY_DEVICE *dev;
    HWKEY_KEY *key = NULL;
    int cancelled = 0;

    if (ctx == NULL)
        return NULL;
    if ((ctx->selection & OSSL_KEYMGMT_SELECT_KEYPAIR) == 0) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "hwkey generates %s key pairs in the device, not domain parameters",
                    alg_text(ctx->spec.alg));
        return NULL;
    }
    if (ctx->spec.alg == HWKEY_ALG_EC && ctx->spec.curve_nid == 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "no EC curve given: use -pkeyopt group:P-256, group:P-384 or group:P-521");
        return NULL;
    }
    if (ctx->uri != NULL && ctx->persist != 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "%s is for TPM keys, %s for PKCS#11 keys: not both",
                    HWKEY_GEN_PARAM_PERSIST, HWKEY_GEN_PARAM_URI);
        return NULL;
    }
    memset(&opts, 0, sizeof(opts));
    opts.uri = ctx->uri;
    opts.persist_handle = ctx->persist;
    /* The device, and that it can make this key, before the slow part. */
    if ((dev = hwkey_key_gen_device(ctx->provctx->devices, &ctx->spec, &opts)) == NULL)
        return NULL;
    hwkey_log(HWKEY_LOG_INFO, "generating an %s-%d key in the %s device", alg_text(ctx->spec.alg),
              ctx->spec.bits, hwkey_key_gen_device_name(dev));
    if (!generate_with_progress(dev, &ctx->spec, &opts, cb, cbarg, &blob, &cancelled))
        goto end;
    ref.kind = blob.kind;
    ref.data = blob.data;
    ref.len = blob.len;
    if (cancelled) {
        /* A persistent handle or token object would outlive the cancelled call. */
        if (!hwkey_key_gen_discard(dev, &blob))
            hwkey_log_last_error("cannot delete the key of the cancelled generation");
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "key generation cancelled by the application");
        goto end;
    }
    key = hwkey_key_load(ctx->provctx->devices, ctx->provctx->swctx, &ref, NULL, NULL);
    if (key != NULL && key->alg != ctx->spec.alg) {
        hwkey_raise(HWKEY_R_INTERNAL, "the %s device made a key of another type",
                    hwkey_key_gen_device_name(dev));
        hwkey_key_free(key);
        key = NULL;
    }
end:
    OPENSSL_free(blob.data);
    return key;
}
