/*
 * Backend registry: which backend resolves which reference, and one device
 * context per backend, opened on first use and shared by every key.
 */
#include "backend/backend.h"

#include <string.h>

#include <openssl/crypto.h>

#include "util/error.h"
#include "util/offload.h"
#include "util/testhook.h"

static const HWKEY_BACKEND *const real_backends[] = {
    &hwkey_tpm2_backend,
#ifdef HWKEY_HAVE_PKCS11
    &hwkey_pkcs11_backend,
#endif
};
#define N_BACKENDS (sizeof(real_backends) / sizeof(real_backends[0]))

static const HWKEY_BACKEND *override_backend;

struct hwkey_devices {
    CRYPTO_RWLOCK *lock;
    const HWKEY_CONFIG *cfg;
    size_t n;
    const HWKEY_BACKEND *backends[N_BACKENDS];
    HWKEY_DEVICE *devices[N_BACKENDS];
};

void hwkey_backend_set_override(const HWKEY_BACKEND *backend)
{
    override_backend = backend;
}

HWKEY_DEVICES *hwkey_devices_new(const HWKEY_CONFIG *cfg)
{
    HWKEY_DEVICES *devs = OPENSSL_zalloc(sizeof(*devs));

    if (devs == NULL || (devs->lock = CRYPTO_THREAD_lock_new()) == NULL) {
        OPENSSL_free(devs);
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating the device registry");
        return NULL;
    }
    devs->cfg = cfg;
    if (override_backend != NULL) {
        devs->backends[0] = override_backend;
        devs->n = 1;
    } else {
        for (size_t i = 0; i < N_BACKENDS; i++)
            devs->backends[i] = real_backends[i];
        devs->n = N_BACKENDS;
    }
    return devs;
}

void hwkey_devices_free(HWKEY_DEVICES *devs)
{
    if (devs == NULL)
        return;
    for (size_t i = 0; i < devs->n; i++)
        if (devs->devices[i] != NULL)
            devs->backends[i]->close(devs->devices[i]);
    CRYPTO_THREAD_lock_free(devs->lock);
    OPENSSL_free(devs);
}

static HWKEY_DEVICE *device_at(HWKEY_DEVICES *devs, size_t i)
{
    HWKEY_DEVICE *dev;

    if (!CRYPTO_THREAD_read_lock(devs->lock))
        return NULL;
    dev = devs->devices[i];
    CRYPTO_THREAD_unlock(devs->lock);
    if (dev != NULL)
        return dev;

    if (!CRYPTO_THREAD_write_lock(devs->lock))
        return NULL;
    if (devs->devices[i] == NULL)
        devs->devices[i] = devs->backends[i]->open(devs->cfg);
    dev = devs->devices[i];
    CRYPTO_THREAD_unlock(devs->lock);
    return dev;
}

HWKEY_DEVICE *hwkey_devices_for_kind(HWKEY_DEVICES *devs, HWKEY_REF_KIND kind)
{
    for (size_t i = 0; i < devs->n; i++)
        if (devs->backends[i]->handles(kind))
            return device_at(devs, i);
    hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "no backend handles key references of kind %d",
                (int)kind);
    return NULL;
}

HWKEY_DEVICE *hwkey_devices_by_name(HWKEY_DEVICES *devs, const char *name)
{
    for (size_t i = 0; i < devs->n; i++)
        if (strcmp(devs->backends[i]->name, name) == 0)
            return device_at(devs, i);
    hwkey_raise(HWKEY_R_BAD_ARGUMENT, "no backend named \"%s\"", name);
    return NULL;
}

int hwkey_devices_foreach(HWKEY_DEVICES *devs, int (*cb)(HWKEY_DEVICE *dev, void *arg), void *arg)
{
    int any = 0;

    for (size_t i = 0; i < devs->n; i++) {
        HWKEY_DEVICE *dev = device_at(devs, i);

        if (dev != NULL && cb(dev, arg))
            any = 1;
    }
    return any;
}

/* URI schemes are pure syntax: every compiled-in backend is asked, no device opened. */
HWKEY_REF_KIND hwkey_ref_kind_of_string(const char *s)
{
    HWKEY_REF_KIND kind;

    if (override_backend != NULL && override_backend->uri_kind != NULL &&
        (kind = override_backend->uri_kind(s)) != 0)
        return kind;
    for (size_t i = 0; i < N_BACKENDS; i++)
        if (real_backends[i]->uri_kind != NULL && (kind = real_backends[i]->uri_kind(s)) != 0)
            return kind;
    return 0;
}

int hwkey_devices_recognise_keyfile(HWKEY_DEVICES *devs, const char *label,
                                    const unsigned char *data, size_t len, HWKEY_REF_KIND *kind,
                                    HWKEY_ALG *alg, const char **structure)
{
    *kind = 0;
    *alg = 0;
    *structure = NULL;
    for (size_t i = 0; i < devs->n; i++) {
        int r;

        if (devs->backends[i]->keyfile_recognise == NULL)
            continue;
        r = devs->backends[i]->keyfile_recognise(label, data, len, kind, alg, structure);
        if (r != 0)
            return r;
    }
    return 0;
}

HWKEY_DEVICE *hwkey_devices_for_generation(HWKEY_DEVICES *devs, const HWKEY_GENOPTS *opts)
{
    for (size_t i = 0; i < devs->n; i++)
        if (devs->backends[i]->generates != NULL && devs->backends[i]->generates(opts))
            return device_at(devs, i);
    hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "no backend generates keys %s",
                opts->uri != NULL ? "at that URI" : "without a URI");
    return NULL;
}

/* --- wrappers ------------------------------------------------------------ */

HWKEY_LOOKUP hwkey_backend_key_find(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                    OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_BKEY **out)
{
    *out = NULL;
    return dev->backend->key_load(dev, ref, pw_cb, pw_arg, out);
}

int hwkey_backend_key_load(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                           OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_BKEY **out)
{
    return hwkey_backend_key_find(dev, ref, pw_cb, pw_arg, out) == HWKEY_LOOKUP_FOUND;
}

void hwkey_backend_key_free(HWKEY_BKEY *key)
{
    if (key != NULL)
        key->backend->key_free(key);
}

EVP_PKEY *hwkey_backend_key_public(HWKEY_BKEY *key, OSSL_LIB_CTX *libctx, const char *propq)
{
    return key->backend->key_public(key, libctx, propq);
}

static int not_capable(HWKEY_BKEY *key, unsigned int flag, const char *what)
{
    if ((key->info.flags & flag) != 0)
        return 0;
    hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "this %s key cannot %s", key->backend->name, what);
    return 1;
}

/*
 * The four private-key operations go through hwkey_offload_run(): inside an
 * OpenSSL ASYNC job the device call runs on a worker thread while the job
 * waits (util/offload.h); otherwise it runs here, directly.  Each op packs
 * its key and parameters into a small context that the request copies.
 */
typedef struct {
    HWKEY_BKEY *key;
    HWKEY_SIGN_PARAMS params;
} SIGN_CALL;

static int sign_call(void *ctx, const unsigned char *in, size_t inlen, unsigned char *out,
                     size_t *outlen)
{
    SIGN_CALL *c = ctx;

    return c->key->backend->sign(c->key, &c->params, in, inlen, out, outlen);
}

int hwkey_backend_sign(HWKEY_BKEY *key, const HWKEY_SIGN_PARAMS *params, const unsigned char *tbs,
                       size_t tbslen, unsigned char *sig, size_t *siglen)
{
    SIGN_CALL c = {.key = key, .params = *params};
    HWKEY_OFFLOAD_CALL call = {.fn = sign_call,
                               .ctx = &c,
                               .ctx_size = sizeof(c),
                               .in = tbs,
                               .inlen = tbslen,
                               .out = sig,
                               .outlen = siglen};

    if (key->backend->sign == NULL || not_capable(key, HWKEY_KEYF_SIGN, "sign"))
        return 0;
    return hwkey_offload_run(&call);
}

static int rsa_private_call(void *ctx, const unsigned char *in, size_t inlen, unsigned char *out,
                            size_t *outlen)
{
    HWKEY_BKEY *key = *(HWKEY_BKEY **)ctx;

    return key->backend->rsa_private(key, in, inlen, out, outlen);
}

int hwkey_backend_rsa_private(HWKEY_BKEY *key, const unsigned char *in, size_t inlen,
                              unsigned char *out, size_t *outlen)
{
    HWKEY_OFFLOAD_CALL call = {.fn = rsa_private_call,
                               .ctx = &key,
                               .ctx_size = sizeof(key),
                               .in = in,
                               .inlen = inlen,
                               .out = out,
                               .outlen = outlen,
                               /* the raw RSA result may be a decrypted secret */
                               .secret_out = 1};

    if (key->backend->rsa_private == NULL ||
        not_capable(key, HWKEY_KEYF_RSA_RAW, "do the raw RSA private operation"))
        return 0;
    return hwkey_offload_run(&call);
}

typedef struct {
    HWKEY_BKEY *key;
    HWKEY_DECRYPT_PARAMS params; /* label points into the caller's ctx, which the job keeps */
} DECRYPT_CALL;

static int decrypt_call(void *ctx, const unsigned char *in, size_t inlen, unsigned char *out,
                        size_t *outlen)
{
    DECRYPT_CALL *c = ctx;

    return c->key->backend->rsa_decrypt(c->key, &c->params, in, inlen, out, outlen);
}

int hwkey_backend_rsa_decrypt(HWKEY_BKEY *key, const HWKEY_DECRYPT_PARAMS *params,
                              const unsigned char *in, size_t inlen, unsigned char *out,
                              size_t *outlen)
{
    DECRYPT_CALL c = {.key = key, .params = *params};
    HWKEY_OFFLOAD_CALL call = {.fn = decrypt_call,
                               .ctx = &c,
                               .ctx_size = sizeof(c),
                               .in = in,
                               .inlen = inlen,
                               .out = out,
                               .outlen = outlen,
                               .secret_out = 1};

    if (key->backend->rsa_decrypt == NULL || not_capable(key, HWKEY_KEYF_DECRYPT, "decrypt"))
        return 0;
    return hwkey_offload_run(&call);
}

static int ecdh_call(void *ctx, const unsigned char *in, size_t inlen, unsigned char *out,
                     size_t *outlen)
{
    HWKEY_BKEY *key = *(HWKEY_BKEY **)ctx;

    return key->backend->ecdh(key, in, inlen, out, outlen);
}

int hwkey_backend_ecdh(HWKEY_BKEY *key, const unsigned char *peer, size_t peerlen,
                       unsigned char *out, size_t *outlen)
{
    HWKEY_OFFLOAD_CALL call = {.fn = ecdh_call,
                               .ctx = &key,
                               .ctx_size = sizeof(key),
                               .in = peer,
                               .inlen = peerlen,
                               .out = out,
                               .outlen = outlen,
                               .secret_out = 1};

    if (key->backend->ecdh == NULL || not_capable(key, HWKEY_KEYF_DERIVE, "derive"))
        return 0;
    return hwkey_offload_run(&call);
}

int hwkey_backend_supports(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec)
{
    return dev->backend->supports == NULL ? -1 : dev->backend->supports(dev, spec);
}

static int lacks(HWKEY_DEVICE *dev, const void *fn, const char *what)
{
    if (fn != NULL)
        return 0;
    hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "the %s backend cannot %s", dev->backend->name,
                what);
    return 1;
}

int hwkey_backend_describe(HWKEY_DEVICE *dev, BIO *out)
{
    if (lacks(dev, (const void *)dev->backend->describe, "describe its device"))
        return 0;
    return dev->backend->describe(dev, out);
}

int hwkey_backend_key_generate(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec,
                               const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out)
{
    if (lacks(dev, (const void *)dev->backend->key_generate, "generate keys"))
        return 0;
    return dev->backend->key_generate(dev, spec, opts, out);
}

int hwkey_backend_key_import(HWKEY_DEVICE *dev, EVP_PKEY *soft, const HWKEY_GENOPTS *opts,
                             HWKEY_REFBLOB *out)
{
    if (lacks(dev, (const void *)dev->backend->key_import, "import software keys"))
        return 0;
    return dev->backend->key_import(dev, soft, opts, out);
}

int hwkey_backend_key_delete(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref)
{
    if (lacks(dev, (const void *)dev->backend->key_delete, "delete keys"))
        return 0;
    return dev->backend->key_delete(dev, ref);
}

int hwkey_backend_key_list(HWKEY_DEVICE *dev, const char *filter, hwkey_list_cb cb, void *arg)
{
    if (lacks(dev, (const void *)dev->backend->key_list, "list keys"))
        return 0;
    return dev->backend->key_list(dev, filter, cb, arg);
}

/* A backend without such objects has none to find: "absent", not "broken". */
HWKEY_LOOKUP hwkey_backend_pubkey_load(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                       OSSL_LIB_CTX *libctx, const char *propq, EVP_PKEY **out)
{
    *out = NULL;
    if (dev->backend->pubkey_load == NULL) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "the %s backend holds no public key objects",
                    dev->backend->name);
        return HWKEY_LOOKUP_ABSENT;
    }
    return dev->backend->pubkey_load(dev, ref, pw_cb, pw_arg, libctx, propq, out);
}

HWKEY_LOOKUP hwkey_backend_cert_load(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                     OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                     unsigned char **der, size_t *derlen)
{
    *der = NULL;
    *derlen = 0;
    if (dev->backend->cert_load == NULL) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "the %s backend holds no certificates",
                    dev->backend->name);
        return HWKEY_LOOKUP_ABSENT;
    }
    return dev->backend->cert_load(dev, ref, pw_cb, pw_arg, der, derlen);
}

int hwkey_backend_datakey_create(HWKEY_DEVICE *dev, const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out)
{
    if (lacks(dev, (const void *)dev->backend->datakey_create, "make data keys"))
        return 0;
    return dev->backend->datakey_create(dev, opts, out);
}

int hwkey_backend_datakey_unwrap(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                 OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                 unsigned char key[32])
{
    if (lacks(dev, (const void *)dev->backend->datakey_unwrap, "unwrap data keys"))
        return 0;
    if (!dev->backend->datakey_unwrap(dev, ref, pw_cb, pw_arg, key))
        return 0;
    /* Tests dump the process here: the only copy of the key must be the caller's. */
    HWKEY_TEST_POINT("datakey-unwrapped");
    return 1;
}

int hwkey_backend_key_attest(HWKEY_BKEY *key, const unsigned char *nonce, size_t nonce_len,
                             BIO *out)
{
    if (lacks(key->device, (const void *)key->backend->key_attest, "attest keys"))
        return 0;
    return key->backend->key_attest(key, nonce, nonce_len, out);
}

int hwkey_backend_key_describe(HWKEY_BKEY *key, const HWKEY_KEYREF *ref, BIO *out)
{
    if (key->backend->key_describe == NULL)
        return BIO_printf(out, "Private key: held by the %s device\n", key->backend->name) > 0;
    return key->backend->key_describe(key, ref, out);
}

int hwkey_backend_ref_encode(HWKEY_BKEY *key, const HWKEY_KEYREF *ref, int pem, BIO *out)
{
    if (lacks(key->device, (const void *)key->backend->ref_encode, "write key reference files"))
        return 0;
    return key->backend->ref_encode(ref, pem, out);
}

int hwkey_backend_ref_is_stored(HWKEY_DEVICE *dev, HWKEY_REF_KIND kind)
{
    /* Not knowing, assume the device keeps it: deleting is then the safe choice. */
    return dev->backend->ref_is_stored == NULL || dev->backend->ref_is_stored(kind);
}

const char *hwkey_backend_device_noun(HWKEY_DEVICE *dev)
{
    return dev->backend->device_noun != NULL ? dev->backend->device_noun : dev->backend->name;
}

const char *hwkey_backend_name(HWKEY_DEVICE *dev)
{
    return dev->backend->name;
}
