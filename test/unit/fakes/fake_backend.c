/*
 * The unit tests' software device: every private operation is done with
 * OpenSSL's default provider in the device's own library context, so the
 * provider under test never recurses into itself.
 */
#include "fake_backend.h"

#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "util/error.h"
#include "util/tss2_keyfile.h"

typedef struct {
    HWKEY_DEVICE base;
    OSSL_LIB_CTX *libctx;
    OSSL_PROVIDER *deflt; /* unloaded before the context, or it leaks */
} FAKE_DEVICE;

typedef struct {
    HWKEY_BKEY base;
    EVP_PKEY *soft;
    OSSL_LIB_CTX *libctx;
} FAKE_KEY;

static int calls[HWKEY_FAKE_OP_N];
static struct {
    int reason;
    char code[64];
} injected[HWKEY_FAKE_OP_N];
static int rsa_raw = 1;
static int generate_delay_ms;

/* TPM2B_PUBLIC-like header the decoder peeks at: size, then TPM2_ALG_RSA/ECC. */
#define TPM2_ALG_RSA 0x0001
#define TPM2_ALG_ECC 0x0023
static const char fake_marker[] = "hwkey-fake";

void hwkey_fake_reset(void)
{
    memset(calls, 0, sizeof(calls));
    memset(injected, 0, sizeof(injected));
    rsa_raw = 1;
    generate_delay_ms = 0;
}

void hwkey_fake_set_generate_delay(int ms)
{
    generate_delay_ms = ms;
}

int hwkey_fake_calls(HWKEY_FAKE_OP op)
{
    return __atomic_load_n(&calls[op], __ATOMIC_SEQ_CST);
}

void hwkey_fake_inject(HWKEY_FAKE_OP op, int reason, const char *device_code)
{
    injected[op].reason = reason;
    snprintf(injected[op].code, sizeof(injected[op].code), "%s", device_code);
}

void hwkey_fake_set_rsa_raw(int on)
{
    rsa_raw = on;
}

/* Counts the call; fails it when a failure was injected. */
static int fake_enter(HWKEY_FAKE_OP op)
{
    __atomic_add_fetch(&calls[op], 1, __ATOMIC_SEQ_CST);
    if (injected[op].reason == 0)
        return 1;
    hwkey_raise(injected[op].reason, "fake device: %s (injected)", injected[op].code);
    return 0;
}

/* --- key files ------------------------------------------------------------ */

int hwkey_fake_keyfile(EVP_PKEY *soft, unsigned char **der, size_t *der_len)
{
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(soft);
    unsigned char *p8der = NULL, pub[2 + 2 + sizeof(fake_marker)];
    HWKEY_TSS2_KEYFILE kf;
    int n = p8 != NULL ? i2d_PKCS8_PRIV_KEY_INFO(p8, &p8der) : -1;
    /* Ed25519 (no TPM type): 0, so the decoders cannot tell the type without loading. */
    unsigned int type = EVP_PKEY_is_a(soft, "RSA")       ? TPM2_ALG_RSA
                        : EVP_PKEY_is_a(soft, "ED25519") ? 0
                                                         : TPM2_ALG_ECC;
    int ok = 0;

    memset(&kf, 0, sizeof(kf));
    if (n <= 0 || n > 0xffff)
        goto end;
    pub[0] = 0;
    pub[1] = (unsigned char)(sizeof(pub) - 2);
    pub[2] = (unsigned char)(type >> 8);
    pub[3] = (unsigned char)type;
    memcpy(pub + 4, fake_marker, sizeof(fake_marker));
    kf.type = HWKEY_TSS2_LOADABLE;
    kf.empty_auth = 1;
    kf.parent = 0x40000001;
    kf.pubkey = pub;
    kf.pubkey_len = sizeof(pub);
    kf.privkey_len = (size_t)n + 2;
    kf.privkey = OPENSSL_malloc(kf.privkey_len);
    if (kf.privkey == NULL)
        goto end;
    kf.privkey[0] = (unsigned char)(n >> 8);
    kf.privkey[1] = (unsigned char)n;
    memcpy(kf.privkey + 2, p8der, (size_t)n);
    ok = hwkey_tss2_keyfile_encode(&kf, der, der_len);
end:
    OPENSSL_clear_free(kf.privkey, kf.privkey_len);
    OPENSSL_clear_free(p8der, n > 0 ? (size_t)n : 0);
    PKCS8_PRIV_KEY_INFO_free(p8);
    return ok;
}

/* --- device ------------------------------------------------------------ */

/* --- pkcs11: URI objects (hwkey_fake_set_uri_object) ----------------------- */

static struct {
    char name[64];
    EVP_PKEY *soft;
    X509 *cert;
    int has_private;
} uri_obj;

void hwkey_fake_set_uri_object(const char *name, EVP_PKEY *soft, X509 *cert, int has_private)
{
    EVP_PKEY_free(uri_obj.soft);
    X509_free(uri_obj.cert);
    memset(&uri_obj, 0, sizeof(uri_obj));
    if (name == NULL)
        return;
    snprintf(uri_obj.name, sizeof(uri_obj.name), "%s", name);
    if (soft != NULL && EVP_PKEY_up_ref(soft))
        uri_obj.soft = soft;
    if (cert != NULL && X509_up_ref(cert))
        uri_obj.cert = cert;
    uri_obj.has_private = has_private;
}

/* 1 if ref is "pkcs11:...object=NAME..." naming the registered object with type= absent or t. */
static int uri_names(const HWKEY_KEYREF *ref, const char *t)
{
    char buf[512], want[80], *type;

    if (ref->len >= sizeof(buf) || uri_obj.name[0] == '\0')
        return 0;
    memcpy(buf, ref->data, ref->len);
    buf[ref->len] = '\0';
    buf[strcspn(buf, "?")] = '\0';
    snprintf(want, sizeof(want), "object=%s", uri_obj.name);
    type = strstr(buf, "type=");
    if (strstr(buf, want) == NULL || (type != NULL && strncmp(type + 5, t, strlen(t)) != 0))
        return 0;
    return 1;
}

static int fake_handles(HWKEY_REF_KIND kind)
{
    return kind == HWKEY_REF_TSS2_KEYFILE ||
           (kind == HWKEY_REF_PKCS11_URI && uri_obj.name[0] != '\0');
}

static HWKEY_DEVICE *fake_open(const HWKEY_CONFIG *cfg)
{
    FAKE_DEVICE *dev = OPENSSL_zalloc(sizeof(*dev));

    (void)cfg;
    if (dev == NULL || (dev->libctx = OSSL_LIB_CTX_new()) == NULL ||
        (dev->deflt = OSSL_PROVIDER_load(dev->libctx, "default")) == NULL) {
        if (dev != NULL)
            OSSL_LIB_CTX_free(dev->libctx);
        OPENSSL_free(dev);
        hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE, "fake device: cannot start");
        return NULL;
    }
    dev->base.backend = &hwkey_fake_backend;
    return &dev->base;
}

static void fake_close(HWKEY_DEVICE *d)
{
    FAKE_DEVICE *dev = (FAKE_DEVICE *)d;

    if (dev == NULL)
        return;
    OSSL_PROVIDER_unload(dev->deflt);
    OSSL_LIB_CTX_free(dev->libctx);
    OPENSSL_free(dev);
}

static int fake_supports(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec)
{
    (void)dev;
    return spec->alg == HWKEY_ALG_EC || spec->alg == HWKEY_ALG_RSA ||
           spec->alg == HWKEY_ALG_ED25519;
}

static int fake_describe(HWKEY_DEVICE *dev, BIO *out)
{
    (void)dev;
    return BIO_printf(out, "fake: software test device\n") > 0;
}

static int describe_soft(EVP_PKEY *soft, HWKEY_KEYINFO *info)
{
    char group[64];

    info->bits = EVP_PKEY_get_bits(soft);
    if (EVP_PKEY_is_a(soft, "RSA")) {
        info->alg = HWKEY_ALG_RSA;
        info->flags = HWKEY_KEYF_SIGN | HWKEY_KEYF_DECRYPT | (rsa_raw ? HWKEY_KEYF_RSA_RAW : 0);
        return 1;
    }
    if (EVP_PKEY_is_a(soft, "EC") &&
        EVP_PKEY_get_utf8_string_param(soft, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       NULL)) {
        info->alg = HWKEY_ALG_EC;
        info->curve_nid = OBJ_sn2nid(group);
        info->flags = HWKEY_KEYF_SIGN | HWKEY_KEYF_DERIVE;
        return info->curve_nid != NID_undef;
    }
    if (EVP_PKEY_is_a(soft, "ED25519")) {
        info->alg = HWKEY_ALG_ED25519;
        info->flags = HWKEY_KEYF_SIGN;
        return 1;
    }
    return 0;
}

static HWKEY_LOOKUP fake_key_load(HWKEY_DEVICE *d, const HWKEY_KEYREF *ref,
                                  OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_BKEY **out)
{
    FAKE_DEVICE *dev = (FAKE_DEVICE *)d;
    HWKEY_TSS2_KEYFILE kf;
    FAKE_KEY *key = NULL;
    const unsigned char *p;
    int ok = 0;

    (void)pw_cb;
    (void)pw_arg;
    memset(&kf, 0, sizeof(kf));
    if (!fake_enter(HWKEY_FAKE_OP_LOAD))
        return 0;
    if (ref->kind == HWKEY_REF_PKCS11_URI) {
        if (!uri_names(ref, "private") || !uri_obj.has_private || uri_obj.soft == NULL) {
            hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "fake device: no private key for that URI");
            return HWKEY_LOOKUP_ABSENT;
        }
        if ((key = OPENSSL_zalloc(sizeof(*key))) == NULL || !EVP_PKEY_up_ref(uri_obj.soft)) {
            OPENSSL_free(key);
            return 0;
        }
        key->soft = uri_obj.soft;
        describe_soft(key->soft, &key->base.info);
        key->base.backend = &hwkey_fake_backend;
        key->base.device = d;
        key->libctx = dev->libctx;
        *out = &key->base;
        return 1;
    }
    if (ref->kind != HWKEY_REF_TSS2_KEYFILE) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "fake device: only key files");
        return 0;
    }
    if (!hwkey_tss2_keyfile_decode(ref->data, ref->len, &kf))
        return 0;
    key = OPENSSL_zalloc(sizeof(*key));
    if (key == NULL || kf.privkey_len < 2)
        goto end;
    p = kf.privkey + 2;
    key->soft = d2i_AutoPrivateKey_ex(NULL, &p, (long)(kf.privkey_len - 2), dev->libctx, NULL);
    if (key->soft == NULL || !describe_soft(key->soft, &key->base.info)) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "fake device: privkey is no PKCS#8 key");
        goto end;
    }
    key->base.backend = &hwkey_fake_backend;
    key->base.device = d;
    key->libctx = dev->libctx;
    *out = &key->base;
    key = NULL;
    ok = 1;
end:
    if (key != NULL) {
        EVP_PKEY_free(key->soft);
        OPENSSL_free(key);
    }
    hwkey_tss2_keyfile_clear(&kf);
    return ok;
}

static void fake_key_free(HWKEY_BKEY *k)
{
    FAKE_KEY *key = (FAKE_KEY *)k;

    EVP_PKEY_free(key->soft);
    OPENSSL_free(key);
}

static EVP_PKEY *public_in(EVP_PKEY *soft, OSSL_LIB_CTX *libctx, const char *propq)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    EVP_PKEY *pub = NULL;
    int n = i2d_PUBKEY(soft, &der);

    p = der;
    if (n > 0)
        pub = d2i_PUBKEY_ex(NULL, &p, n, libctx, propq);
    OPENSSL_free(der);
    if (pub == NULL)
        hwkey_raise(HWKEY_R_INTERNAL, "fake device: cannot export the public key");
    return pub;
}

static EVP_PKEY *fake_key_public(HWKEY_BKEY *k, OSSL_LIB_CTX *libctx, const char *propq)
{
    return public_in(((FAKE_KEY *)k)->soft, libctx, propq);
}

/* Like a token: the public key object of the registered URI object, any type= but cert. */
static HWKEY_LOOKUP fake_pubkey_load(HWKEY_DEVICE *d, const HWKEY_KEYREF *ref,
                                     OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                     OSSL_LIB_CTX *libctx, const char *propq, EVP_PKEY **out)
{
    (void)d;
    (void)pw_cb;
    (void)pw_arg;
    if (uri_obj.soft == NULL || !(uri_names(ref, "public") || uri_names(ref, "private"))) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "fake device: no public key for that URI");
        return HWKEY_LOOKUP_ABSENT;
    }
    *out = public_in(uri_obj.soft, libctx, propq);
    return *out != NULL ? HWKEY_LOOKUP_FOUND : HWKEY_LOOKUP_FAILED;
}

static HWKEY_LOOKUP fake_cert_load(HWKEY_DEVICE *d, const HWKEY_KEYREF *ref,
                                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                   unsigned char **der, size_t *derlen)
{
    int n;

    (void)d;
    (void)pw_cb;
    (void)pw_arg;
    if (uri_obj.cert == NULL || !uri_names(ref, "cert")) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "fake device: no certificate for that URI");
        return HWKEY_LOOKUP_ABSENT;
    }
    *der = NULL;
    if ((n = i2d_X509(uri_obj.cert, der)) <= 0)
        return 0;
    *derlen = (size_t)n;
    return 1;
}

/* --- private operations ----------------------------------------------- */

static EVP_PKEY_CTX *op_ctx(FAKE_KEY *key)
{
    return EVP_PKEY_CTX_new_from_pkey(key->libctx, key->soft, NULL);
}

/* EdDSA signs the message, one shot (no EVP_PKEY_sign for Ed25519 in OpenSSL 3.0). */
static int eddsa_sign(FAKE_KEY *key, const unsigned char *tbs, size_t tbslen, unsigned char *sig,
                      size_t *siglen)
{
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    int ok = mctx != NULL &&
             EVP_DigestSignInit_ex(mctx, NULL, NULL, key->libctx, NULL, key->soft, NULL) == 1 &&
             EVP_DigestSign(mctx, sig, siglen, tbs, tbslen) == 1;

    EVP_MD_CTX_free(mctx);
    if (!ok)
        hwkey_raise(HWKEY_R_DEVICE_ERROR, "fake device: EdDSA signing failed");
    return ok;
}

static int fake_sign(HWKEY_BKEY *k, const HWKEY_SIGN_PARAMS *params, const unsigned char *tbs,
                     size_t tbslen, unsigned char *sig, size_t *siglen)
{
    FAKE_KEY *key = (FAKE_KEY *)k;
    OSSL_PARAM p[6], *q = p;
    int pad = params->scheme == HWKEY_SIG_RSA_PSS ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING;
    int salt = params->salt_len;
    EVP_PKEY_CTX *ctx = NULL;
    int ok = 0;

    if (!fake_enter(HWKEY_FAKE_OP_SIGN))
        return 0;
    if (params->scheme == HWKEY_SIG_EDDSA)
        return eddsa_sign(key, tbs, tbslen, sig, siglen);
    if (params->md_nid != NID_undef)
        *q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST,
                                                (char *)OBJ_nid2sn(params->md_nid), 0);
    if (params->scheme == HWKEY_SIG_RSA_PKCS1 || params->scheme == HWKEY_SIG_RSA_PSS)
        *q++ = OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PAD_MODE, &pad);
    if (params->scheme == HWKEY_SIG_RSA_PSS) {
        const EVP_MD *md = EVP_get_digestbynid(params->md_nid);

        /* Like a TPM: the salt is as long as the digest, nothing else. */
        if (md == NULL || salt != EVP_MD_get_size(md)) {
            hwkey_raise(HWKEY_R_INVALID_SALT_LENGTH,
                        "fake device: PSS salt of %d bytes not supported (only the digest "
                        "length)",
                        salt);
            return 0;
        }
        *q++ = OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, &salt);
        *q++ = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST,
                                                (char *)OBJ_nid2sn(params->mgf1_md_nid), 0);
    }
    *q = OSSL_PARAM_construct_end();
    ctx = op_ctx(key);
    if (ctx == NULL || EVP_PKEY_sign_init(ctx) <= 0 || !EVP_PKEY_CTX_set_params(ctx, p) ||
        EVP_PKEY_sign(ctx, sig, siglen, tbs, tbslen) <= 0) {
        hwkey_raise(HWKEY_R_DEVICE_ERROR, "fake device: signing failed");
        goto end;
    }
    ok = 1;
end:
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

static int fake_decrypt(FAKE_KEY *key, int pad, const HWKEY_DECRYPT_PARAMS *params,
                        const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen)
{
    OSSL_PARAM p[5], *q = p;
    EVP_PKEY_CTX *ctx = NULL;
    int ok = 0;

    *q++ = OSSL_PARAM_construct_int(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, &pad);
    if (pad == RSA_PKCS1_OAEP_PADDING) {
        *q++ = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST,
                                                (char *)OBJ_nid2sn(params->oaep_md_nid), 0);
        *q++ = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST,
                                                (char *)OBJ_nid2sn(params->mgf1_md_nid), 0);
        if (params->label != NULL)
            *q++ = OSSL_PARAM_construct_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL,
                                                     (void *)params->label, params->label_len);
    }
    *q = OSSL_PARAM_construct_end();
    ctx = op_ctx(key);
    if (ctx == NULL || EVP_PKEY_decrypt_init(ctx) <= 0 || !EVP_PKEY_CTX_set_params(ctx, p) ||
        EVP_PKEY_decrypt(ctx, out, outlen, in, inlen) <= 0) {
        hwkey_raise(HWKEY_R_DECRYPTION_FAILED, "fake device: decryption failed");
        goto end;
    }
    ok = 1;
end:
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

static int fake_rsa_private(HWKEY_BKEY *k, const unsigned char *in, size_t inlen,
                            unsigned char *out, size_t *outlen)
{
    if (!fake_enter(HWKEY_FAKE_OP_RSA_PRIVATE))
        return 0;
    return fake_decrypt((FAKE_KEY *)k, RSA_NO_PADDING, NULL, in, inlen, out, outlen);
}

static int fake_rsa_decrypt(HWKEY_BKEY *k, const HWKEY_DECRYPT_PARAMS *params,
                            const unsigned char *in, size_t inlen, unsigned char *out,
                            size_t *outlen)
{
    if (!fake_enter(HWKEY_FAKE_OP_RSA_DECRYPT))
        return 0;
    return fake_decrypt((FAKE_KEY *)k,
                        params->padding == HWKEY_PAD_OAEP ? RSA_PKCS1_OAEP_PADDING
                                                          : RSA_PKCS1_PADDING,
                        params, in, inlen, out, outlen);
}

static int fake_ecdh(HWKEY_BKEY *k, const unsigned char *peer, size_t peerlen, unsigned char *out,
                     size_t *outlen)
{
    FAKE_KEY *key = (FAKE_KEY *)k;
    char group[64];
    OSSL_PARAM p[3];
    EVP_PKEY_CTX *pctx = NULL, *dctx = NULL;
    EVP_PKEY *peer_key = NULL;
    int ok = 0;

    if (!fake_enter(HWKEY_FAKE_OP_ECDH))
        return 0;
    if (!EVP_PKEY_get_utf8_string_param(key->soft, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        NULL))
        goto end;
    p[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    p[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)peer, peerlen);
    p[2] = OSSL_PARAM_construct_end();
    pctx = EVP_PKEY_CTX_new_from_name(key->libctx, "EC", NULL);
    if (pctx == NULL || EVP_PKEY_fromdata_init(pctx) <= 0 ||
        EVP_PKEY_fromdata(pctx, &peer_key, EVP_PKEY_PUBLIC_KEY, p) <= 0)
        goto end;
    dctx = op_ctx(key);
    if (dctx == NULL || EVP_PKEY_derive_init(dctx) <= 0 ||
        EVP_PKEY_derive_set_peer(dctx, peer_key) <= 0 || EVP_PKEY_derive(dctx, out, outlen) <= 0)
        goto end;
    ok = 1;
end:
    if (!ok)
        hwkey_raise(HWKEY_R_DEVICE_ERROR, "fake device: ECDH failed");
    EVP_PKEY_CTX_free(pctx);
    EVP_PKEY_CTX_free(dctx);
    EVP_PKEY_free(peer_key);
    return ok;
}

/* --- management: key files around software keys --------------------------- */

static int refblob_of(EVP_PKEY *soft, HWKEY_REFBLOB *out)
{
    out->kind = HWKEY_REF_TSS2_KEYFILE;
    if (!hwkey_fake_keyfile(soft, &out->data, &out->len)) {
        hwkey_raise(HWKEY_R_INTERNAL, "fake device: cannot write the key file");
        return 0;
    }
    return 1;
}

static int fake_key_generate(HWKEY_DEVICE *d, const HWKEY_KEYSPEC *spec, const HWKEY_GENOPTS *opts,
                             HWKEY_REFBLOB *out)
{
    OSSL_LIB_CTX *libctx = ((FAKE_DEVICE *)d)->libctx;
    EVP_PKEY *soft;
    int ok;

    (void)opts;
    if (!fake_enter(HWKEY_FAKE_OP_GENERATE))
        return 0;
    if (generate_delay_ms > 0) {
        struct timespec delay = {generate_delay_ms / 1000, (generate_delay_ms % 1000) * 1000000L};

        while (nanosleep(&delay, &delay) != 0)
            ;
    }
    if (spec->alg == HWKEY_ALG_RSA)
        soft = EVP_PKEY_Q_keygen(libctx, NULL, "RSA", (size_t)spec->bits);
    else if (spec->alg == HWKEY_ALG_EC)
        soft = EVP_PKEY_Q_keygen(libctx, NULL, "EC", OBJ_nid2sn(spec->curve_nid));
    else
        soft = NULL;
    if (soft == NULL) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM, "fake device: cannot generate that key");
        return 0;
    }
    ok = refblob_of(soft, out);
    EVP_PKEY_free(soft);
    return ok;
}

static int fake_key_import(HWKEY_DEVICE *d, EVP_PKEY *soft, const HWKEY_GENOPTS *opts,
                           HWKEY_REFBLOB *out)
{
    (void)d;
    (void)opts;
    return refblob_of(soft, out);
}

/* --- references: the fake's key files are TPM-shaped, so the TPM's own parsing serves --- */

static int fake_key_describe(HWKEY_BKEY *k, const HWKEY_KEYREF *ref, BIO *out)
{
    (void)k;
    (void)ref;
    if (!fake_enter(HWKEY_FAKE_OP_DESCRIBE))
        return 0;
    return BIO_printf(out, "%s\n", HWKEY_FAKE_HOLDER_LINE) > 0;
}

static int fake_ref_encode(const HWKEY_KEYREF *ref, int pem, BIO *out)
{
    if (!fake_enter(HWKEY_FAKE_OP_ENCODE))
        return 0;
    return hwkey_tpm2_backend.ref_encode(ref, pem, out);
}

static int fake_keyfile_recognise(const char *label, const unsigned char *data, size_t len,
                                  HWKEY_REF_KIND *kind, HWKEY_ALG *alg, const char **structure)
{
    __atomic_add_fetch(&calls[HWKEY_FAKE_OP_RECOGNISE], 1, __ATOMIC_SEQ_CST);
    return hwkey_tpm2_backend.keyfile_recognise(label, data, len, kind, alg, structure);
}

static int fake_generates(const HWKEY_GENOPTS *opts)
{
    return opts->uri == NULL;
}

static int fake_ref_is_stored(HWKEY_REF_KIND kind)
{
    return kind != HWKEY_REF_TSS2_KEYFILE;
}

const HWKEY_BACKEND hwkey_fake_backend = {
    .name = "fake",
    .handles = fake_handles,
    .open = fake_open,
    .close = fake_close,
    .supports = fake_supports,
    .describe = fake_describe,
    .key_load = fake_key_load,
    .key_free = fake_key_free,
    .key_public = fake_key_public,
    .key_generate = fake_key_generate,
    .key_import = fake_key_import,
    .pubkey_load = fake_pubkey_load,
    .cert_load = fake_cert_load,
    .sign = fake_sign,
    .rsa_private = fake_rsa_private,
    .rsa_decrypt = fake_rsa_decrypt,
    .ecdh = fake_ecdh,
    .key_describe = fake_key_describe,
    .ref_encode = fake_ref_encode,
    .keyfile_recognise = fake_keyfile_recognise,
    .generates = fake_generates,
    .ref_is_stored = fake_ref_is_stored,
    .device_noun = "fake device",
};
