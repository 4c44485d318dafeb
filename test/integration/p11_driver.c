/*
 * Drives the pkcs11 backend through the backend registry only (what the
 * provider and the CLI use), for test_pkcs11_backend.sh.  Every private-key
 * result is checked in software with OpenSSL's default provider.
 *
 *   p11_driver sign URI ecdsa|pkcs1|pss|eddsa MD [SALT]
 *   p11_driver decrypt URI oaep|pkcs1 MD
 *   p11_driver ecdh URI
 *   p11_driver pubkey URI OUT.pem
 *   p11_driver keygen URI rsa:BITS|ec:CURVE|ed25519     prints the key's URI
 *   p11_driver delete URI
 *   p11_driver list URI
 *   p11_driver keygen-many URI N       N EC P-256 keys named <object>-1 .. -N (one login)
 *   p11_driver load URI [TIMES]        loads TIMES (1) times, reports every failure
 *   p11_driver threads URI N COUNT     N threads x COUNT ECDSA/PKCS#1 signatures
 *   p11_driver fork URI N              load in the parent, sign in N forked children
 *   p11_driver loop URI SECS N         N threads sign (and verify) for SECS seconds; prints
 *                                      "loop ok=A fail=B" and a line per failure; exit 1 if B > 0
 *
 * Configuration from the environment (HWKEY_PKCS11_MODULE ...).  On failure
 * prints "FAIL <reason string>: <text>" on stderr and exits 1.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "backend/backend.h"
#include "util/config.h"
#include "util/error.h"

static HWKEY_CONFIG cfg;
static HWKEY_DEVICES *devs;
static HWKEY_DEVICE *dev;

static int fail(const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *data = NULL;
    int flags = 0;

    ERR_peek_last_error_data(&data, &flags);
    fprintf(stderr, "FAIL %s: %s (%s)\n", e != 0 ? hwkey_reason_string(ERR_GET_REASON(e)) : "?",
            (flags & ERR_TXT_STRING) && data != NULL ? data : "", what);
    ERR_clear_error();
    return 1;
}

static HWKEY_BKEY *load(const char *uri)
{
    HWKEY_KEYREF ref = {HWKEY_REF_PKCS11_URI, (const unsigned char *)uri, strlen(uri)};
    HWKEY_BKEY *key = NULL;

    if (!hwkey_backend_key_load(dev, &ref, NULL, NULL, &key))
        return NULL;
    return key;
}

static const EVP_MD *md_of(const char *name)
{
    return EVP_get_digestbyname(name);
}

/* Signs a digest of random data on the token and verifies it in software. */
static int sign_verify(HWKEY_BKEY *key, EVP_PKEY *pub, const char *scheme, const char *mdname,
                       int salt)
{
    unsigned char msg[100], dgst[64], sig[1024];
    unsigned int dlen = 0;
    size_t siglen = sizeof(sig);
    HWKEY_SIGN_PARAMS p = {0};
    const EVP_MD *md = md_of(mdname);
    EVP_PKEY_CTX *vctx = NULL;
    EVP_MD_CTX *mctx = NULL;
    int ok = 0;

    if (RAND_bytes(msg, sizeof(msg)) != 1 || md == NULL)
        return 0;
    if (strcmp(scheme, "eddsa") == 0) {
        p.scheme = HWKEY_SIG_EDDSA;
        if (!hwkey_backend_sign(key, &p, msg, sizeof(msg), sig, &siglen))
            return 0;
        mctx = EVP_MD_CTX_new();
        ok = mctx != NULL &&
             EVP_DigestVerifyInit_ex(mctx, NULL, NULL, NULL, NULL, pub, NULL) == 1 &&
             EVP_DigestVerify(mctx, sig, siglen, msg, sizeof(msg)) == 1;
        EVP_MD_CTX_free(mctx);
        if (!ok)
            fprintf(stderr, "software verification of the EdDSA signature failed\n");
        return ok;
    }
    if (!EVP_Digest(msg, sizeof(msg), dgst, &dlen, md, NULL))
        return 0;
    p.md_nid = EVP_MD_get_type(md);
    p.mgf1_md_nid = p.md_nid;
    p.salt_len = salt;
    p.scheme = strcmp(scheme, "ecdsa") == 0   ? HWKEY_SIG_ECDSA
               : strcmp(scheme, "pkcs1") == 0 ? HWKEY_SIG_RSA_PKCS1
                                              : HWKEY_SIG_RSA_PSS;
    if (!hwkey_backend_sign(key, &p, dgst, dlen, sig, &siglen))
        return 0;
    vctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
    if (vctx == NULL || EVP_PKEY_verify_init(vctx) <= 0 ||
        EVP_PKEY_CTX_set_signature_md(vctx, md) <= 0)
        goto end;
    if (p.scheme == HWKEY_SIG_RSA_PKCS1 &&
        EVP_PKEY_CTX_set_rsa_padding(vctx, RSA_PKCS1_PADDING) <= 0)
        goto end;
    if (p.scheme == HWKEY_SIG_RSA_PSS &&
        (EVP_PKEY_CTX_set_rsa_padding(vctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
         EVP_PKEY_CTX_set_rsa_pss_saltlen(vctx, salt) <= 0))
        goto end;
    ok = EVP_PKEY_verify(vctx, sig, siglen, dgst, dlen) == 1;
    if (!ok)
        fprintf(stderr, "software verification of the %s signature failed\n", scheme);
end:
    EVP_PKEY_CTX_free(vctx);
    return ok;
}

static int cmd_sign(const char *uri, const char *scheme, const char *md, int salt)
{
    HWKEY_BKEY *key = load(uri);
    EVP_PKEY *pub = key != NULL ? hwkey_backend_key_public(key, NULL, NULL) : NULL;
    int ok = pub != NULL && sign_verify(key, pub, scheme, md, salt);

    EVP_PKEY_free(pub);
    hwkey_backend_key_free(key);
    return ok ? (printf("ok sign %s %s\n", scheme, md), 0) : fail("sign");
}

static int cmd_decrypt(const char *uri, const char *pad, const char *mdname)
{
    HWKEY_BKEY *key = load(uri);
    EVP_PKEY *pub = key != NULL ? hwkey_backend_key_public(key, NULL, NULL) : NULL;
    HWKEY_DECRYPT_PARAMS p = {0};
    unsigned char msg[32], ct[1024], pt[1024];
    size_t ctlen = sizeof(ct), ptlen = sizeof(pt);
    EVP_PKEY_CTX *ctx = NULL;
    int ok = 0;

    if (pub == NULL || RAND_bytes(msg, sizeof(msg)) != 1 ||
        (ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL)) == NULL ||
        EVP_PKEY_encrypt_init(ctx) <= 0)
        goto end;
    if (strcmp(pad, "oaep") == 0) {
        p.padding = HWKEY_PAD_OAEP;
        p.oaep_md_nid = p.mgf1_md_nid = EVP_MD_get_type(md_of(mdname));
        if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md_of(mdname)) <= 0 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md_of(mdname)) <= 0)
            goto end;
    } else {
        p.padding = HWKEY_PAD_PKCS1;
        if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0)
            goto end;
    }
    if (EVP_PKEY_encrypt(ctx, ct, &ctlen, msg, sizeof(msg)) <= 0 ||
        !hwkey_backend_rsa_decrypt(key, &p, ct, ctlen, pt, &ptlen))
        goto end;
    ok = ptlen == sizeof(msg) && memcmp(pt, msg, ptlen) == 0;
    if (!ok)
        fprintf(stderr, "decrypted text differs\n");
    /* A corrupted ciphertext must fail with the one fixed error. */
    ct[ctlen / 2] ^= 0x01;
    ptlen = sizeof(pt);
    if (ok && hwkey_backend_rsa_decrypt(key, &p, ct, ctlen, pt, &ptlen)) {
        fprintf(stderr, "corrupted ciphertext decrypted\n");
        ok = 0;
    } else if (ok) {
        ok = ERR_GET_REASON(ERR_peek_last_error()) == HWKEY_R_DECRYPTION_FAILED;
        if (!ok)
            fprintf(stderr, "corrupted ciphertext: wrong error reason\n");
        ERR_clear_error();
    }
end:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pub);
    hwkey_backend_key_free(key);
    return ok ? (printf("ok decrypt %s %s\n", pad, mdname), 0) : fail("decrypt");
}

static int cmd_ecdh(const char *uri)
{
    HWKEY_BKEY *key = load(uri);
    EVP_PKEY *pub = key != NULL ? hwkey_backend_key_public(key, NULL, NULL) : NULL;
    EVP_PKEY *peer = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    unsigned char point[200], z1[100], z2[100];
    size_t plen = 0, z1len = sizeof(z1), z2len = sizeof(z2);
    char group[64];
    int ok = 0;

    if (pub == NULL ||
        !EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        NULL) ||
        (peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", group)) == NULL ||
        !EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point),
                                         &plen) ||
        !hwkey_backend_ecdh(key, point, plen, z1, &z1len))
        goto end;
    if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, peer, NULL)) == NULL ||
        EVP_PKEY_derive_init(ctx) <= 0 || EVP_PKEY_derive_set_peer(ctx, pub) <= 0 ||
        EVP_PKEY_derive(ctx, z2, &z2len) <= 0)
        goto end;
    ok = z1len == z2len && memcmp(z1, z2, z1len) == 0;
    if (!ok)
        fprintf(stderr, "shared secrets differ\n");
end:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer);
    EVP_PKEY_free(pub);
    hwkey_backend_key_free(key);
    return ok ? (printf("ok ecdh %s\n", group), 0) : fail("ecdh");
}

static int cmd_pubkey(const char *uri, const char *out)
{
    HWKEY_BKEY *key = load(uri);
    EVP_PKEY *pub = key != NULL ? hwkey_backend_key_public(key, NULL, NULL) : NULL;
    FILE *f = pub != NULL ? fopen(out, "w") : NULL;
    int ok = f != NULL && PEM_write_PUBKEY(f, pub);

    if (f != NULL)
        fclose(f);
    EVP_PKEY_free(pub);
    hwkey_backend_key_free(key);
    return ok ? 0 : fail("pubkey");
}

static int cmd_keygen(const char *uri, const char *alg)
{
    HWKEY_KEYSPEC spec = {0};
    HWKEY_GENOPTS opts = {0};
    HWKEY_REFBLOB out = {0};

    if (strncmp(alg, "rsa:", 4) == 0) {
        spec.alg = HWKEY_ALG_RSA;
        spec.bits = atoi(alg + 4);
    } else if (strncmp(alg, "ec:", 3) == 0) {
        spec.alg = HWKEY_ALG_EC;
        spec.curve_nid = EC_curve_nist2nid(alg + 3);
    } else {
        spec.alg = HWKEY_ALG_ED25519;
    }
    opts.uri = uri;
    if (dev->backend->key_generate(dev, &spec, &opts, &out) != 1)
        return fail("keygen");
    printf("%.*s\n", (int)out.len, (const char *)out.data);
    OPENSSL_free(out.data);
    return 0;
}

static int cmd_keygen_many(const char *uri, int n)
{
    char one[1024];

    for (int i = 1; i <= n; i++) {
        HWKEY_KEYSPEC spec = {0};
        HWKEY_GENOPTS opts = {0};
        HWKEY_REFBLOB out = {0};

        /* object=NAME is the URI's last path attribute: NAME-i names key i (before any ?query). */
        const char *q = strchr(uri, '?');
        int plen = q != NULL ? (int)(q - uri) : (int)strlen(uri);

        snprintf(one, sizeof(one), "%.*s-%d%s", plen, uri, i, q != NULL ? q : "");
        spec.alg = HWKEY_ALG_EC;
        spec.curve_nid = NID_X9_62_prime256v1;
        opts.uri = one;
        if (dev->backend->key_generate(dev, &spec, &opts, &out) != 1)
            return fail("keygen-many");
        OPENSSL_free(out.data);
    }
    return 0;
}

static int cmd_delete(const char *uri)
{
    HWKEY_KEYREF ref = {HWKEY_REF_PKCS11_URI, (const unsigned char *)uri, strlen(uri)};

    return dev->backend->key_delete(dev, &ref) ? 0 : fail("delete");
}

static int print_key(const HWKEY_LISTED_KEY *k, void *arg)
{
    printf("%s alg=%d bits=%d label=%s\n", k->ref, (int)k->info.alg, k->info.bits,
           k->label != NULL ? k->label : "");
    return 1;
}

static int cmd_list(const char *uri)
{
    return dev->backend->key_list(dev, uri, print_key, NULL) ? 0 : fail("list");
}

/* Tries TIMES loads in one process (a wrong PIN must reach the token only once). */
static int cmd_load(const char *uri, int times)
{
    int failed = 0;

    for (int i = 0; i < times; i++) {
        HWKEY_BKEY *key = load(uri);

        if (key == NULL) {
            failed = fail("load");
            continue;
        }
        printf("ok load\n");
        hwkey_backend_key_free(key);
    }
    return failed;
}

typedef struct {
    HWKEY_BKEY *key;
    EVP_PKEY *pub;
    int count, ok;
} THREAD_ARG;

static const char *default_scheme(HWKEY_BKEY *key)
{
    return key->info.alg == HWKEY_ALG_RSA  ? "pkcs1"
           : key->info.alg == HWKEY_ALG_EC ? "ecdsa"
                                           : "eddsa";
}

static void *signer(void *p)
{
    THREAD_ARG *a = p;

    a->ok = 1;
    for (int i = 0; i < a->count && a->ok; i++)
        a->ok = sign_verify(a->key, a->pub, default_scheme(a->key), "SHA256", 0);
    if (!a->ok)
        ERR_print_errors_fp(stderr);
    return NULL;
}

static int cmd_threads(const char *uri, int n, int count)
{
    HWKEY_BKEY *key = load(uri);
    EVP_PKEY *pub = key != NULL ? hwkey_backend_key_public(key, NULL, NULL) : NULL;
    pthread_t th[64];
    THREAD_ARG args[64];
    int ok = pub != NULL && n <= 64;

    for (int i = 0; ok && i < n; i++) {
        args[i] = (THREAD_ARG){key, pub, count, 0};
        ok = pthread_create(&th[i], NULL, signer, &args[i]) == 0;
    }
    for (int i = 0; pub != NULL && i < n; i++) {
        pthread_join(th[i], NULL);
        ok = ok && args[i].ok;
    }
    EVP_PKEY_free(pub);
    hwkey_backend_key_free(key);
    return ok ? (printf("ok threads %d x %d\n", n, count), 0) : fail("threads");
}

typedef struct {
    HWKEY_BKEY *key;
    EVP_PKEY *pub;
    time_t until;
    unsigned long ok, failed;
} LOOP_ARG;

static void *loop_signer(void *p)
{
    LOOP_ARG *a = p;

    while (time(NULL) < a->until) {
        if (sign_verify(a->key, a->pub, default_scheme(a->key), "SHA256", 0)) {
            a->ok++;
        } else {
            a->failed++;
            fprintf(stderr, "loop: signature failed at %ld:\n", (long)time(NULL));
            ERR_print_errors_fp(stderr);
        }
    }
    return NULL;
}

/* Signs without pause while a test unplugs and plugs devices; counts failures. */
static int cmd_loop(const char *uri, int secs, int n)
{
    HWKEY_BKEY *key = load(uri);
    EVP_PKEY *pub = key != NULL ? hwkey_backend_key_public(key, NULL, NULL) : NULL;
    unsigned long ok = 0, failed = 0;
    pthread_t th[16];
    LOOP_ARG args[16];
    int started = 0;

    if (pub == NULL || n < 1 || n > 16)
        return fail("loop: load");
    for (int i = 0; i < n; i++) {
        args[i] = (LOOP_ARG){key, pub, time(NULL) + secs, 0, 0};
        if (pthread_create(&th[i], NULL, loop_signer, &args[i]) == 0)
            started++;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
        failed += args[i].failed;
    }
    printf("loop ok=%lu fail=%lu\n", ok, failed);
    EVP_PKEY_free(pub);
    hwkey_backend_key_free(key);
    return failed == 0 && started == n && ok > 0 ? 0 : 1;
}

static int cmd_fork(const char *uri, int n)
{
    HWKEY_BKEY *key = load(uri);
    EVP_PKEY *pub = key != NULL ? hwkey_backend_key_public(key, NULL, NULL) : NULL;
    int good = 0;

    /* The parent signs first: its sessions and handles exist when the children fork. */
    if (pub == NULL || !sign_verify(key, pub, default_scheme(key), "SHA256", 0))
        return fail("fork: parent");
    fflush(NULL);
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();

        if (pid == 0) {
            int ok = 1;

            for (int j = 0; j < 5 && ok; j++)
                ok = sign_verify(key, pub, default_scheme(key), "SHA256", 0);
            if (!ok)
                fail("fork: child");
            _exit(ok ? 0 : 1);
        }
    }
    for (int i = 0; i < n; i++) {
        int st;

        if (wait(&st) > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            good++;
    }
    /* And the parent still works after its children used the token. */
    if (!sign_verify(key, pub, default_scheme(key), "SHA256", 0))
        return fail("fork: parent after children");
    EVP_PKEY_free(pub);
    hwkey_backend_key_free(key);
    printf("%s fork %d/%d children signed\n", good == n ? "ok" : "FAIL", good, n);
    return good == n ? 0 : 1;
}

int main(int argc, char **argv)
{
    int rc = 2;

    if (argc < 3)
        goto usage;
    if (!hwkey_config_apply_env(&cfg) || (devs = hwkey_devices_new(&cfg)) == NULL ||
        (dev = hwkey_devices_by_name(devs, "pkcs11")) == NULL) {
        rc = fail("opening the pkcs11 device");
        goto end;
    }
    if (strcmp(argv[1], "sign") == 0 && argc >= 5)
        rc = cmd_sign(argv[2], argv[3], argv[4], argc > 5 ? atoi(argv[5]) : 0);
    else if (strcmp(argv[1], "decrypt") == 0 && argc == 5)
        rc = cmd_decrypt(argv[2], argv[3], argv[4]);
    else if (strcmp(argv[1], "ecdh") == 0)
        rc = cmd_ecdh(argv[2]);
    else if (strcmp(argv[1], "pubkey") == 0 && argc == 4)
        rc = cmd_pubkey(argv[2], argv[3]);
    else if (strcmp(argv[1], "keygen") == 0 && argc == 4)
        rc = cmd_keygen(argv[2], argv[3]);
    else if (strcmp(argv[1], "delete") == 0)
        rc = cmd_delete(argv[2]);
    else if (strcmp(argv[1], "keygen-many") == 0 && argc == 4)
        rc = cmd_keygen_many(argv[2], atoi(argv[3]));
    else if (strcmp(argv[1], "list") == 0)
        rc = cmd_list(argv[2]);
    else if (strcmp(argv[1], "load") == 0)
        rc = cmd_load(argv[2], argc > 3 ? atoi(argv[3]) : 1);
    else if (strcmp(argv[1], "threads") == 0 && argc == 5)
        rc = cmd_threads(argv[2], atoi(argv[3]), atoi(argv[4]));
    else if (strcmp(argv[1], "loop") == 0 && argc == 5)
        rc = cmd_loop(argv[2], atoi(argv[3]), atoi(argv[4]));
    else if (strcmp(argv[1], "fork") == 0 && argc == 4)
        rc = cmd_fork(argv[2], atoi(argv[3]));
    else
        goto usage;
    goto end;
usage:
    fprintf(stderr, "usage: p11_driver sign|decrypt|ecdh|pubkey|keygen|delete|list|load|"
                    "threads|fork|loop URI ...\n");
end:
    hwkey_devices_free(devs);
    hwkey_config_clear(&cfg);
    return rc;
}
