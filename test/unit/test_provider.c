/*
 * The provider end to end over the fake backend: hwkey is added as a
 * built-in to a fresh library context next to OpenSSL's default provider,
 * device keys come in through hwkey's own decoder (a TSS2 PEM whose privkey
 * holds a software key, see fake_backend.h), and every result is checked
 * against the default provider on the same software key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "fake_backend.h"
#include "provider/provider.h"
#include "util/error.h"

#define SOFT "provider=default"

static OSSL_LIB_CTX *lib;
static OSSL_PROVIDER *prov_default, *prov_hwkey;

enum { EC256, EC384, RSA2048, N_SOFT };
static EVP_PKEY *soft[N_SOFT];

static const unsigned char message[] = "the quick brown fox jumps over the lazy dog";

/* --- helpers -------------------------------------------------------------- */

/* Drains the error queue; 1 if some error had this reason. */
static int drain_errors_for(int reason, const char **text_out)
{
    static char text[256];
    const char *data = NULL;
    unsigned long e;
    int flags = 0, found = 0;

    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        if (ERR_GET_REASON(e) == reason && !found) {
            found = 1;
            snprintf(text, sizeof(text), "%s",
                     (flags & ERR_TXT_STRING) != 0 && data != NULL ? data : "");
            if (text_out != NULL)
                *text_out = text;
            /* The provider registered its reason strings with the core. */
            if (ERR_reason_error_string(e) == NULL
                || strcmp(ERR_reason_error_string(e), hwkey_reason_string(reason)) != 0)
                fail_msg("reason %d has text \"%s\"", reason,
                         ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "(null)");
        }
    }
    return found;
}

static int is_hwkey(const EVP_PKEY *pkey)
{
    const OSSL_PROVIDER *p = EVP_PKEY_get0_provider(pkey);

    return p != NULL && strcmp(OSSL_PROVIDER_get0_name(p), "hwkey") == 0;
}

/* Device key for soft, through a TSS2 PEM and hwkey's decoder. */
static EVP_PKEY *hw_key_of(EVP_PKEY *sw)
{
    unsigned char *der = NULL;
    size_t der_len = 0;
    BIO *bio = BIO_new(BIO_s_mem());
    EVP_PKEY *pkey = NULL;

    assert_non_null(bio);
    assert_true(hwkey_fake_keyfile(sw, &der, &der_len));
    assert_true(PEM_write_bio(bio, "TSS2 PRIVATE KEY", "", der, (long)der_len) > 0);
    pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, NULL, lib, NULL);
    OPENSSL_free(der);
    BIO_free(bio);
    if (pkey == NULL)
        ERR_print_errors_fp(stderr);
    assert_non_null(pkey);
    assert_true(is_hwkey(pkey));
    return pkey;
}

/* A public-only copy of sw, in the default provider. */
static EVP_PKEY *public_of(EVP_PKEY *sw)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    int n = i2d_PUBKEY(sw, &der);
    EVP_PKEY *pub;

    assert_true(n > 0);
    p = der;
    pub = d2i_PUBKEY_ex(NULL, &p, n, lib, SOFT);
    OPENSSL_free(der);
    assert_non_null(pub);
    return pub;
}

/* A public-only key in hwkey's keymgmt, imported from the default provider's public key. */
static EVP_PKEY *hw_public_of(EVP_PKEY *sw)
{
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *pkey = NULL;

    assert_true(EVP_PKEY_todata(sw, EVP_PKEY_PUBLIC_KEY, &params));
    ctx = EVP_PKEY_CTX_new_from_name(lib, EVP_PKEY_get0_type_name(sw), "provider=hwkey");
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
    assert_true(is_hwkey(pkey));
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static int device_calls(void)
{
    return hwkey_fake_calls(HWKEY_FAKE_OP_SIGN) + hwkey_fake_calls(HWKEY_FAKE_OP_RSA_PRIVATE)
           + hwkey_fake_calls(HWKEY_FAKE_OP_RSA_DECRYPT) + hwkey_fake_calls(HWKEY_FAKE_OP_ECDH);
}

/* Padding / salt settings of a signature context; pad 0 = leave the default. */
static void set_rsa(EVP_PKEY_CTX *pctx, int pad, int salt)
{
    if (pad == 0)
        return;
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, pad), 1);
    if (pad == RSA_PKCS1_PSS_PADDING)
        assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, salt), 1);
}

/* Signs message with key (propq chooses the provider); returns the length, 0 on failure. */
static size_t sign_message(EVP_PKEY *key, const char *md, int pad, int salt, unsigned char *sig,
                           size_t sigsize)
{
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    size_t len = 0;

    assert_non_null(mctx);
    if (EVP_DigestSignInit_ex(mctx, &pctx, md, lib, NULL, key, NULL) != 1)
        goto end;
    set_rsa(pctx, pad, salt);
    if (EVP_DigestSign(mctx, NULL, &len, message, sizeof(message)) != 1 || len > sigsize) {
        len = 0;
        goto end;
    }
    if (EVP_DigestSign(mctx, sig, &len, message, sizeof(message)) != 1)
        len = 0;
end:
    EVP_MD_CTX_free(mctx);
    return len;
}

static int verify_message(EVP_PKEY *key, const char *propq, const char *md, int pad, int salt,
                          const unsigned char *sig, size_t siglen)
{
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok;

    assert_non_null(mctx);
    assert_int_equal(EVP_DigestVerifyInit_ex(mctx, &pctx, md, lib, propq, key, NULL), 1);
    set_rsa(pctx, pad, salt);
    ok = EVP_DigestVerify(mctx, sig, siglen, message, sizeof(message));
    EVP_MD_CTX_free(mctx);
    ERR_clear_error();
    return ok;
}

/* --- signatures ------------------------------------------------------------ */

typedef struct {
    const char *name;
    int key;
    const char *md;
    int pad;            /* 0: ECDSA */
    int salt;           /* what the application asks for (RSA_PSS_SALTLEN_* or bytes) */
    int expect_salt;    /* what the signature must carry */
    int raw;            /* fake offers the raw RSA private operation */
} SIGN_CASE;

static const SIGN_CASE sign_cases[] = {
    {.name = "ECDSA P-256 SHA-256", .key = EC256, .md = "SHA256"},
    {.name = "ECDSA P-256 SHA-384", .key = EC256, .md = "SHA384"},
    {.name = "ECDSA P-256 SHA-512", .key = EC256, .md = "SHA512"},
    {.name = "ECDSA P-384 SHA-256", .key = EC384, .md = "SHA256"},
    {.name = "ECDSA P-384 SHA-384", .key = EC384, .md = "SHA384"},
    {.name = "ECDSA P-384 SHA-512", .key = EC384, .md = "SHA512"},
    {.name = "RSA PKCS1 SHA-256 raw", .key = RSA2048, .md = "SHA256", .pad = RSA_PKCS1_PADDING, .raw = 1},
    {.name = "RSA PKCS1 SHA-384 raw", .key = RSA2048, .md = "SHA384", .pad = RSA_PKCS1_PADDING, .raw = 1},
    {.name = "RSA PKCS1 SHA-512 raw", .key = RSA2048, .md = "SHA512", .pad = RSA_PKCS1_PADDING, .raw = 1},
    {.name = "RSA PKCS1 SHA-256 device pads", .key = RSA2048, .md = "SHA256", .pad = RSA_PKCS1_PADDING},
    {.name = "RSA PSS SHA-256 salt=digest", .key = RSA2048, .md = "SHA256", .pad = RSA_PKCS1_PSS_PADDING,
     .salt = RSA_PSS_SALTLEN_DIGEST, .expect_salt = 32, .raw = 1},
    {.name = "RSA PSS SHA-384 salt=digest", .key = RSA2048, .md = "SHA384", .pad = RSA_PKCS1_PSS_PADDING,
     .salt = RSA_PSS_SALTLEN_DIGEST, .expect_salt = 48, .raw = 1},
    {.name = "RSA PSS SHA-512 salt=digest", .key = RSA2048, .md = "SHA512", .pad = RSA_PKCS1_PSS_PADDING,
     .salt = RSA_PSS_SALTLEN_DIGEST, .expect_salt = 64, .raw = 1},
    {.name = "RSA PSS SHA-256 salt=max", .key = RSA2048, .md = "SHA256", .pad = RSA_PKCS1_PSS_PADDING,
     .salt = RSA_PSS_SALTLEN_MAX, .expect_salt = 256 - 32 - 2, .raw = 1},
    {.name = "RSA PSS SHA-512 salt=max", .key = RSA2048, .md = "SHA512", .pad = RSA_PKCS1_PSS_PADDING,
     .salt = RSA_PSS_SALTLEN_MAX, .expect_salt = 256 - 64 - 2, .raw = 1},
    {.name = "RSA PSS SHA-256 salt=32", .key = RSA2048, .md = "SHA256", .pad = RSA_PKCS1_PSS_PADDING,
     .salt = 32, .expect_salt = 32, .raw = 1},
    {.name = "RSA PSS SHA-384 salt=32", .key = RSA2048, .md = "SHA384", .pad = RSA_PKCS1_PSS_PADDING,
     .salt = 32, .expect_salt = 32, .raw = 1},
    {.name = "RSA PSS SHA-512 salt=32", .key = RSA2048, .md = "SHA512", .pad = RSA_PKCS1_PSS_PADDING,
     .salt = 32, .expect_salt = 32, .raw = 1},
    {.name = "RSA PSS SHA-384 salt=0", .key = RSA2048, .md = "SHA384", .pad = RSA_PKCS1_PSS_PADDING,
     .salt = 0, .expect_salt = 0, .raw = 1},
    {.name = "RSA PSS SHA-256 salt=digest device pads", .key = RSA2048, .md = "SHA256",
     .pad = RSA_PKCS1_PSS_PADDING, .salt = RSA_PSS_SALTLEN_DIGEST, .expect_salt = 32},
    {.name = "RSA PSS SHA-512 salt=auto device pads", .key = RSA2048, .md = "SHA512",
     .pad = RSA_PKCS1_PSS_PADDING, .salt = RSA_PSS_SALTLEN_AUTO, .expect_salt = 64},
};

static void test_sign_verify(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(sign_cases) / sizeof(sign_cases[0]); i++) {
        const SIGN_CASE *c = &sign_cases[i];
        unsigned char sig[512];
        size_t len;
        EVP_PKEY *hw, *pub;
        int verify_pad = c->pad, is_rsa = c->key == RSA2048;

        print_message("  %s\n", c->name);
        hwkey_fake_reset();
        hwkey_fake_set_rsa_raw(c->raw);
        hw = hw_key_of(soft[c->key]);
        pub = public_of(soft[c->key]);

        len = sign_message(hw, c->md, c->pad, c->salt, sig, sizeof(sig));
        if (len == 0)
            ERR_print_errors_fp(stderr);
        assert_true(len > 0);
        /* One device command per signature, the right one. */
        assert_int_equal(device_calls(), 1);
        assert_int_equal(hwkey_fake_calls(is_rsa && c->raw ? HWKEY_FAKE_OP_RSA_PRIVATE
                                                            : HWKEY_FAKE_OP_SIGN),
                         1);

        /* The default provider accepts it, with exactly the salt length asked for. */
        assert_int_equal(verify_message(pub, SOFT, c->md, verify_pad, c->expect_salt, sig, len), 1);
        /* hwkey's own verification (software, on the cached public key) agrees. */
        assert_int_equal(verify_message(hw, NULL, c->md, verify_pad, c->expect_salt, sig, len), 1);
        assert_int_equal(device_calls(), 1);
        sig[len / 2] ^= 0x01;
        assert_int_not_equal(verify_message(pub, SOFT, c->md, verify_pad, c->expect_salt, sig, len), 1);
        assert_int_not_equal(verify_message(hw, NULL, c->md, verify_pad, c->expect_salt, sig, len), 1);
        if (c->pad == RSA_PKCS1_PSS_PADDING && c->expect_salt > 0) {
            /* A verifier expecting another salt length rejects it: the length is real. */
            sig[len / 2] ^= 0x01;
            assert_int_not_equal(
                verify_message(pub, SOFT, c->md, verify_pad, c->expect_salt - 1, sig, len), 1);
        }
        EVP_PKEY_free(hw);
        EVP_PKEY_free(pub);
    }
}

typedef struct {
    const char *name;
    const char *md;
    int salt;
    int raw;
} SALT_CASE;

static const SALT_CASE bad_salt_cases[] = {
    {.name = "device pads: salt 32 with SHA-512", .md = "SHA512", .salt = 32, .raw = 0},
    {.name = "device pads: salt max", .md = "SHA256", .salt = RSA_PSS_SALTLEN_MAX, .raw = 0},
    {.name = "raw: salt larger than the key allows", .md = "SHA256", .salt = 223, .raw = 1},
};

static void test_pss_salt_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_salt_cases) / sizeof(bad_salt_cases[0]); i++) {
        const SALT_CASE *c = &bad_salt_cases[i];
        unsigned char sig[512];
        EVP_PKEY *hw;

        print_message("  %s\n", c->name);
        hwkey_fake_reset();
        hwkey_fake_set_rsa_raw(c->raw);
        hw = hw_key_of(soft[RSA2048]);
        ERR_clear_error();
        assert_int_equal(sign_message(hw, c->md, RSA_PKCS1_PSS_PADDING, c->salt, sig, sizeof(sig)), 0);
        assert_true(drain_errors_for(HWKEY_R_INVALID_SALT_LENGTH, NULL));
        EVP_PKEY_free(hw);
    }
}

/* --- decryption ------------------------------------------------------------- */

typedef struct {
    const char *name;
    int pad;
    const char *oaep_md;  /* NULL: the default, SHA-1 */
    const char *mgf1_md;
    const char *label;
    int raw;
} DECRYPT_CASE;

static const DECRYPT_CASE decrypt_cases[] = {
    {.name = "OAEP SHA-1 raw", .pad = RSA_PKCS1_OAEP_PADDING, .raw = 1},
    {.name = "OAEP SHA-256 raw", .pad = RSA_PKCS1_OAEP_PADDING, .oaep_md = "SHA256", .raw = 1},
    {.name = "OAEP SHA-256 MGF1-SHA-1 label raw", .pad = RSA_PKCS1_OAEP_PADDING,
     .oaep_md = "SHA256", .mgf1_md = "SHA1", .label = "a label", .raw = 1},
    {.name = "OAEP SHA-512 MGF1-SHA-256 raw", .pad = RSA_PKCS1_OAEP_PADDING,
     .oaep_md = "SHA512", .mgf1_md = "SHA256", .raw = 1},
    {.name = "PKCS1 v1.5 raw", .pad = RSA_PKCS1_PADDING, .raw = 1},
    {.name = "OAEP SHA-1 device pads", .pad = RSA_PKCS1_OAEP_PADDING},
    {.name = "OAEP SHA-256 label device pads", .pad = RSA_PKCS1_OAEP_PADDING,
     .oaep_md = "SHA256", .label = "a label"},
    {.name = "PKCS1 v1.5 device pads", .pad = RSA_PKCS1_PADDING},
};

static void set_cipher(EVP_PKEY_CTX *ctx, const DECRYPT_CASE *c)
{
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, c->pad), 1);
    if (c->oaep_md != NULL)
        assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, c->oaep_md, NULL), 1);
    if (c->mgf1_md != NULL)
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, c->mgf1_md, NULL), 1);
    if (c->label != NULL)
        assert_int_equal(EVP_PKEY_CTX_set0_rsa_oaep_label(
                             ctx, OPENSSL_memdup(c->label, strlen(c->label)), (int)strlen(c->label)),
                         1);
}

static size_t encrypt_soft(const DECRYPT_CASE *c, const unsigned char *in, size_t inlen,
                           unsigned char *out)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(lib, soft[RSA2048], SOFT);
    size_t len = 512;

    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
    set_cipher(ctx, c);
    assert_int_equal(EVP_PKEY_encrypt(ctx, out, &len, in, inlen), 1);
    EVP_PKEY_CTX_free(ctx);
    return len;
}

/* Returns EVP_PKEY_decrypt's result; *outlen the plaintext length. */
static int decrypt_hw(EVP_PKEY *hw, const DECRYPT_CASE *c, const unsigned char *in, size_t inlen,
                      unsigned char *out, size_t *outlen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(lib, hw, NULL);
    int ok;

    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
    set_cipher(ctx, c);
    *outlen = 512;
    ok = EVP_PKEY_decrypt(ctx, out, outlen, in, inlen);
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

static void test_decrypt(void **state)
{
    static const unsigned char secret[] = "a 32-byte session key, say......";

    (void)state;
    for (size_t i = 0; i < sizeof(decrypt_cases) / sizeof(decrypt_cases[0]); i++) {
        const DECRYPT_CASE *c = &decrypt_cases[i];
        unsigned char ct[512], pt[512];
        size_t ctlen, ptlen;
        EVP_PKEY *hw;

        print_message("  %s\n", c->name);
        hwkey_fake_reset();
        hwkey_fake_set_rsa_raw(c->raw);
        hw = hw_key_of(soft[RSA2048]);
        ctlen = encrypt_soft(c, secret, sizeof(secret), ct);

        assert_int_equal(decrypt_hw(hw, c, ct, ctlen, pt, &ptlen), 1);
        assert_int_equal(ptlen, sizeof(secret));
        assert_memory_equal(pt, secret, sizeof(secret));
        assert_int_equal(device_calls(), 1);
        assert_int_equal(hwkey_fake_calls(c->raw ? HWKEY_FAKE_OP_RSA_PRIVATE
                                                 : HWKEY_FAKE_OP_RSA_DECRYPT),
                         1);

        /* A damaged ciphertext: one reason, whatever went wrong in the padding. */
        ct[ctlen / 2] ^= 0x40;
        ERR_clear_error();
        assert_int_not_equal(decrypt_hw(hw, c, ct, ctlen, pt, &ptlen), 1);
        assert_true(drain_errors_for(HWKEY_R_DECRYPTION_FAILED, NULL));
        EVP_PKEY_free(hw);
    }
}

/* libssl's RSA key exchange: a bad premaster must look like a good one. */
static void test_decrypt_tls_premaster(void **state)
{
    static const DECRYPT_CASE pkcs1 = {.name = "PKCS1", .pad = RSA_PKCS1_PADDING};
    static const struct {
        const char *name;
        int raw;
        int corrupt;
        unsigned int client_version;
        int expect_same;
    } cases[] = {
        {"raw: good", 1, 0, 0x0303, 1},
        {"raw: damaged ciphertext", 1, 1, 0x0303, 0},
        {"raw: other client version", 1, 0, 0x0302, 0},
        {"device pads: good", 0, 0, 0x0303, 1},
        {"device pads: damaged ciphertext", 0, 1, 0x0303, 0},
        {"device pads: other client version", 0, 0, 0x0302, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char premaster[48], ct[512], out[48];
        unsigned int version = cases[i].client_version;
        size_t ctlen, outlen = sizeof(out);
        OSSL_PARAM params[2];
        EVP_PKEY_CTX *ctx;
        EVP_PKEY *hw;

        print_message("  %s\n", cases[i].name);
        hwkey_fake_reset();
        hwkey_fake_set_rsa_raw(cases[i].raw);
        hw = hw_key_of(soft[RSA2048]);
        assert_int_equal(RAND_bytes(premaster, sizeof(premaster)), 1);
        premaster[0] = 0x03;
        premaster[1] = 0x03;
        ctlen = encrypt_soft(&pkcs1, premaster, sizeof(premaster), ct);
        if (cases[i].corrupt)
            ct[ctlen / 2] ^= 0x40;

        ctx = EVP_PKEY_CTX_new_from_pkey(lib, hw, NULL);
        assert_non_null(ctx);
        assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_WITH_TLS_PADDING), 1);
        params[0] = OSSL_PARAM_construct_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, &version);
        params[1] = OSSL_PARAM_construct_end();
        assert_int_equal(EVP_PKEY_CTX_set_params(ctx, params), 1);
        ERR_clear_error();
        assert_int_equal(EVP_PKEY_decrypt(ctx, out, &outlen, ct, ctlen), 1);
        assert_int_equal(outlen, sizeof(out));
        assert_int_equal(ERR_peek_error(), 0);
        if (cases[i].expect_same)
            assert_memory_equal(out, premaster, sizeof(out));
        else
            assert_memory_not_equal(out, premaster, sizeof(out));
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(hw);
    }
}

/* --- key exchange ------------------------------------------------------------ */

static size_t derive(EVP_PKEY *key, const char *propq, EVP_PKEY *peer, unsigned char *out)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(lib, key, propq);
    size_t len = 0;

    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_derive_init(ctx), 1);
    if (EVP_PKEY_derive_set_peer(ctx, peer) != 1 || EVP_PKEY_derive(ctx, NULL, &len) != 1
        || EVP_PKEY_derive(ctx, out, &len) != 1)
        len = 0;
    EVP_PKEY_CTX_free(ctx);
    return len;
}

static void test_ecdh(void **state)
{
    static const struct {
        int key;
        const char *curve;
        size_t len;
    } cases[] = {{EC256, "P-256", 32}, {EC384, "P-384", 48}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char a[80], b[80];
        EVP_PKEY *peer = EVP_PKEY_Q_keygen(lib, SOFT, "EC", cases[i].curve);
        EVP_PKEY *peer_pub, *hw, *own_pub;

        print_message("  ECDH %s\n", cases[i].curve);
        assert_non_null(peer);
        peer_pub = public_of(peer);
        hwkey_fake_reset();
        hw = hw_key_of(soft[cases[i].key]);
        assert_int_equal(derive(hw, NULL, peer_pub, a), cases[i].len);
        assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_ECDH), 1);
        assert_int_equal(derive(soft[cases[i].key], SOFT, peer_pub, b), cases[i].len);
        assert_memory_equal(a, b, cases[i].len);
        /* And the peer's view of it, with our public key as hwkey exports it. */
        own_pub = public_of(hw);
        assert_int_equal(derive(peer, SOFT, own_pub, b), cases[i].len);
        assert_memory_equal(a, b, cases[i].len);
        EVP_PKEY_free(own_pub);
        EVP_PKEY_free(peer);
        EVP_PKEY_free(peer_pub);
        EVP_PKEY_free(hw);
    }
}

static void test_ecdh_other_curve(void **state)
{
    unsigned char out[80];
    EVP_PKEY *hw, *peer;

    (void)state;
    hwkey_fake_reset();
    hw = hw_key_of(soft[EC256]);
    peer = public_of(soft[EC384]);
    ERR_clear_error();
    assert_int_equal(derive(hw, NULL, peer, out), 0);
    assert_true(drain_errors_for(HWKEY_R_INVALID_PEER_KEY, NULL));
    assert_int_equal(hwkey_fake_calls(HWKEY_FAKE_OP_ECDH), 0);
    EVP_PKEY_free(hw);
    EVP_PKEY_free(peer);
}

/* --- public-only keys, refusals, injected device failures ------------------- */

static void test_public_only_cannot_sign(void **state)
{
    static const int keys[] = {EC256, RSA2048};

    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        unsigned char sig[512];
        EVP_PKEY *pub = hw_public_of(soft[keys[i]]);

        hwkey_fake_reset();
        ERR_clear_error();
        assert_int_equal(sign_message(pub, "SHA256", 0, 0, sig, sizeof(sig)), 0);
        assert_true(drain_errors_for(HWKEY_R_NO_PRIVATE_KEY, NULL));
        assert_int_equal(device_calls(), 0);
        EVP_PKEY_free(pub);
    }
}

static void test_import_refuses_private_key(void **state)
{
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *pkey = NULL;

    (void)state;
    assert_true(EVP_PKEY_todata(soft[EC256], EVP_PKEY_KEYPAIR, &params));
    ctx = EVP_PKEY_CTX_new_from_name(lib, "EC", "provider=hwkey");
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    ERR_clear_error();
    assert_int_not_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params), 1);
    assert_null(pkey);
    assert_true(drain_errors_for(HWKEY_R_BAD_ARGUMENT, NULL));
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
}

typedef struct {
    const char *name;
    int key;
    int raw;
    HWKEY_FAKE_OP op;
    int pad;              /* signature padding, or -1: decrypt with OAEP */
} FAULT_CASE;

static const FAULT_CASE fault_cases[] = {
    {"ECDSA sign", EC256, 0, HWKEY_FAKE_OP_SIGN, 0},
    {"RSA PSS sign, raw", RSA2048, 1, HWKEY_FAKE_OP_RSA_PRIVATE, RSA_PKCS1_PSS_PADDING},
    {"RSA PKCS1 sign, device pads", RSA2048, 0, HWKEY_FAKE_OP_SIGN, RSA_PKCS1_PADDING},
    {"RSA OAEP decrypt, raw", RSA2048, 1, HWKEY_FAKE_OP_RSA_PRIVATE, -1},
    {"RSA OAEP decrypt, device pads", RSA2048, 0, HWKEY_FAKE_OP_RSA_DECRYPT, -1},
};

static void test_auth_failure_reaches_queue(void **state)
{
    static const DECRYPT_CASE oaep = {.name = "OAEP", .pad = RSA_PKCS1_OAEP_PADDING};

    (void)state;
    for (size_t i = 0; i < sizeof(fault_cases) / sizeof(fault_cases[0]); i++) {
        const FAULT_CASE *c = &fault_cases[i];
        unsigned char buf[512], ct[512];
        const char *text = NULL;
        size_t len;
        EVP_PKEY *hw;

        print_message("  %s\n", c->name);
        hwkey_fake_reset();
        hwkey_fake_set_rsa_raw(c->raw);
        hw = hw_key_of(soft[c->key]);
        hwkey_fake_inject(c->op, HWKEY_R_AUTH_FAILED, "TPM_RC_AUTH_FAIL");
        ERR_clear_error();
        if (c->pad >= 0) {
            assert_int_equal(sign_message(hw, "SHA256", c->pad, RSA_PSS_SALTLEN_DIGEST, buf,
                                          sizeof(buf)),
                             0);
        } else {
            len = encrypt_soft(&oaep, (const unsigned char *)"x", 1, ct);
            assert_int_not_equal(decrypt_hw(hw, &oaep, ct, len, buf, &len), 1);
        }
        assert_int_equal(hwkey_fake_calls(c->op), 1);
        assert_true(drain_errors_for(HWKEY_R_AUTH_FAILED, &text));
        assert_non_null(strstr(text, "TPM_RC_AUTH_FAIL"));
        EVP_PKEY_free(hw);
    }
}

/* --- key management ------------------------------------------------------------ */

static void test_pkey_eq(void **state)
{
    static const int keys[] = {EC256, EC384, RSA2048};

    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        EVP_PKEY *hw = hw_key_of(soft[keys[i]]);
        EVP_PKEY *pub = public_of(soft[keys[i]]);
        EVP_PKEY *hw_pub = hw_public_of(soft[keys[i]]);
        EVP_PKEY *other = keys[i] == RSA2048 ? EVP_PKEY_Q_keygen(lib, SOFT, "RSA", (size_t)2048)
                                             : EVP_PKEY_Q_keygen(lib, SOFT, "EC",
                                                                 keys[i] == EC256 ? "P-256"
                                                                                  : "P-384");
        EVP_PKEY *other_pub;

        assert_non_null(other);
        other_pub = public_of(other);
        /* What X509_check_private_key asks: the device key and the certificate's key. */
        ERR_clear_error();
        assert_int_equal(EVP_PKEY_eq(hw, pub), 1);
        /* The refused private export on the way is no error (libssl would see it). */
        assert_int_equal(ERR_peek_error(), 0);
        assert_int_equal(EVP_PKEY_eq(pub, hw), 1);
        assert_int_equal(EVP_PKEY_eq(hw, hw_pub), 1);
        assert_int_equal(EVP_PKEY_eq(hw, other_pub), 0);
        assert_int_equal(EVP_PKEY_eq(other_pub, hw), 0);
        ERR_clear_error();
        EVP_PKEY_free(hw);
        EVP_PKEY_free(pub);
        EVP_PKEY_free(hw_pub);
        EVP_PKEY_free(other);
        EVP_PKEY_free(other_pub);
    }
}

static char *pubkey_pem(EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *copy;
    long n;

    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
    n = BIO_get_mem_data(bio, &data);
    copy = OPENSSL_strndup(data, (size_t)n);
    BIO_free(bio);
    return copy;
}

static void test_key_params(void **state)
{
    static const struct {
        int key;
        int bits;
        int security_bits;
        const char *group;
    } cases[] = {{EC256, 256, 128, "prime256v1"}, {EC384, 384, 192, "secp384r1"},
                 {RSA2048, 2048, 112, NULL}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EVP_PKEY *hw = hw_key_of(soft[cases[i].key]);
        char name[64], *pem_hw, *pem_sw;
        unsigned char enc_hw[200], enc_sw[200];
        size_t len_hw = 0, len_sw = 0;
        BIO *bio;

        assert_int_equal(EVP_PKEY_get_bits(hw), cases[i].bits);
        assert_int_equal(EVP_PKEY_get_security_bits(hw), cases[i].security_bits);
        assert_int_equal(EVP_PKEY_get_size(hw), EVP_PKEY_get_size(soft[cases[i].key]));
        /* 1: advisory, as the default provider answers for the software key. */
        assert_int_equal(EVP_PKEY_get_default_digest_name(hw, name, sizeof(name)), 1);
        assert_string_equal(name, "SHA256");
        if (cases[i].group != NULL) {
            assert_int_equal(EVP_PKEY_get_group_name(hw, name, sizeof(name), NULL), 1);
            assert_string_equal(name, cases[i].group);
            assert_int_equal(EVP_PKEY_get_octet_string_param(
                                 hw, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, enc_hw, sizeof(enc_hw),
                                 &len_hw),
                             1);
            assert_int_equal(EVP_PKEY_get_octet_string_param(
                                 soft[cases[i].key], OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, enc_sw,
                                 sizeof(enc_sw), &len_sw),
                             1);
            assert_int_equal(len_hw, len_sw);
            assert_memory_equal(enc_hw, enc_sw, len_sw);
        } else {
            BIGNUM *n_hw = NULL, *n_sw = NULL;

            assert_int_equal(EVP_PKEY_get_bn_param(hw, OSSL_PKEY_PARAM_RSA_N, &n_hw), 1);
            assert_int_equal(EVP_PKEY_get_bn_param(soft[cases[i].key], OSSL_PKEY_PARAM_RSA_N, &n_sw), 1);
            assert_int_equal(BN_cmp(n_hw, n_sw), 0);
            BN_free(n_hw);
            BN_free(n_sw);
        }
        /* The public key encodes as the software one does; the private key does not leave. */
        pem_hw = pubkey_pem(hw);
        pem_sw = pubkey_pem(soft[cases[i].key]);
        assert_string_equal(pem_hw, pem_sw);
        OPENSSL_free(pem_hw);
        OPENSSL_free(pem_sw);
        bio = BIO_new(BIO_s_mem());
        assert_int_not_equal(PEM_write_bio_PrivateKey(bio, hw, NULL, NULL, 0, NULL, NULL), 1);
        BIO_free(bio);
        ERR_clear_error();
        EVP_PKEY_free(hw);
    }
}

/* --- X.509: the AlgorithmIdentifier and the key/certificate match -------------- */

typedef struct {
    const char *name;
    int key;
    const char *md;
    int pad;
    int salt;
    int sig_nid;
} CERT_CASE;

static const CERT_CASE cert_cases[] = {
    {"ECDSA P-256 SHA-256", EC256, "SHA256", 0, 0, NID_ecdsa_with_SHA256},
    {"ECDSA P-384 SHA-384", EC384, "SHA384", 0, 0, NID_ecdsa_with_SHA384},
    {"RSA PKCS1 SHA-256", RSA2048, "SHA256", RSA_PKCS1_PADDING, 0, NID_sha256WithRSAEncryption},
    {"RSA PKCS1 SHA-512", RSA2048, "SHA512", RSA_PKCS1_PADDING, 0, NID_sha512WithRSAEncryption},
    {"RSA PSS SHA-256 salt=digest", RSA2048, "SHA256", RSA_PKCS1_PSS_PADDING,
     RSA_PSS_SALTLEN_DIGEST, NID_rsassaPss},
    {"RSA PSS SHA-384 salt=max", RSA2048, "SHA384", RSA_PKCS1_PSS_PADDING, RSA_PSS_SALTLEN_MAX,
     NID_rsassaPss},
};

static void test_self_signed_certificate(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cert_cases) / sizeof(cert_cases[0]); i++) {
        const CERT_CASE *c = &cert_cases[i];
        X509 *x = X509_new_ex(lib, NULL);
        X509_NAME *name = X509_NAME_new();
        EVP_MD_CTX *mctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        EVP_PKEY *hw, *pub;

        print_message("  %s\n", c->name);
        hwkey_fake_reset();
        hw = hw_key_of(soft[c->key]);
        pub = public_of(soft[c->key]);
        assert_non_null(x);
        assert_non_null(name);
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                    (const unsigned char *)"hwkey test", -1, -1, 0),
                         1);
        assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
        assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), (long)i + 1), 1);
        assert_int_equal(X509_set_subject_name(x, name), 1);
        assert_int_equal(X509_set_issuer_name(x, name), 1);
        assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
        assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
        assert_int_equal(X509_set_pubkey(x, hw), 1);

        assert_int_equal(EVP_DigestSignInit_ex(mctx, &pctx, c->md, lib, NULL, hw, NULL), 1);
        set_rsa(pctx, c->pad, c->salt);
        if (X509_sign_ctx(x, mctx) <= 0)
            ERR_print_errors_fp(stderr);
        assert_true(X509_get_signature_nid(x) == c->sig_nid);
        assert_int_equal(device_calls(), 1);
        /* The default provider checks signature and algorithm parameters (PSS salt too). */
        assert_int_equal(X509_verify(x, pub), 1);
        assert_int_equal(X509_check_private_key(x, hw), 1);
        ERR_clear_error();

        EVP_MD_CTX_free(mctx);
        X509_NAME_free(name);
        X509_free(x);
        EVP_PKEY_free(hw);
        EVP_PKEY_free(pub);
    }
}

/* --- set-up --------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    hwkey_backend_set_override(&hwkey_fake_backend);
    lib = OSSL_LIB_CTX_new();
    if (lib == NULL || !OSSL_PROVIDER_add_builtin(lib, "hwkey", hwkey_provider_init))
        return -1;
    prov_default = OSSL_PROVIDER_load(lib, "default");
    prov_hwkey = OSSL_PROVIDER_load(lib, "hwkey");
    if (prov_default == NULL || prov_hwkey == NULL)
        return -1;
    soft[EC256] = EVP_PKEY_Q_keygen(lib, SOFT, "EC", "P-256");
    soft[EC384] = EVP_PKEY_Q_keygen(lib, SOFT, "EC", "P-384");
    soft[RSA2048] = EVP_PKEY_Q_keygen(lib, SOFT, "RSA", (size_t)2048);
    for (int i = 0; i < N_SOFT; i++)
        if (soft[i] == NULL)
            return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < N_SOFT; i++)
        EVP_PKEY_free(soft[i]);
    OSSL_PROVIDER_unload(prov_hwkey);
    OSSL_PROVIDER_unload(prov_default);
    OSSL_LIB_CTX_free(lib);
    hwkey_backend_set_override(NULL);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_pss_salt_refused),
        cmocka_unit_test(test_decrypt),
        cmocka_unit_test(test_decrypt_tls_premaster),
        cmocka_unit_test(test_ecdh),
        cmocka_unit_test(test_ecdh_other_curve),
        cmocka_unit_test(test_public_only_cannot_sign),
        cmocka_unit_test(test_import_refuses_private_key),
        cmocka_unit_test(test_auth_failure_reaches_queue),
        cmocka_unit_test(test_pkey_eq),
        cmocka_unit_test(test_key_params),
        cmocka_unit_test(test_self_signed_certificate),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
