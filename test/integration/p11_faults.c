/*
 * Fault and fork drivers for the pkcs11 backend (test_pkcs11_recovery.sh,
 * test_pkcs11_forklock.sh), through the backend registry like the provider.
 * Every signature is verified in software.
 *
 *   p11_faults keepsign URI DONE_FILE [INTERVAL_MS]
 *       signs every INTERVAL_MS (20) until DONE_FILE exists (at most 120 s);
 *       one line per signature on stdout:
 *         ok <epoch_ms> <dur_ms>
 *         fail <epoch_ms> <dur_ms> <errors in queue> <first error text>
 *   p11_faults forkthreads URI THREADS FORKS
 *       THREADS threads sign without pause while the main thread forks FORKS
 *       children, each of which signs once and exits 0
 *   p11_faults pinfork URI
 *       loads the key with a passphrase callback that forks (the child exits
 *       at once), then signs; the URI and configuration must give no PIN
 *
 * Configuration from the environment (HWKEY_PKCS11_MODULE ...).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "backend/backend.h"
#include "util/config.h"
#include "util/error.h"
#include "util/forkgate.h"

static HWKEY_DEVICE *dev;

static HWKEY_BKEY *load(const char *uri, OSSL_PASSPHRASE_CALLBACK *cb, void *arg)
{
    HWKEY_KEYREF ref = {HWKEY_REF_PKCS11_URI, (const unsigned char *)uri, strlen(uri)};
    HWKEY_BKEY *key = NULL;

    return hwkey_backend_key_load(dev, &ref, cb, arg, &key) ? key : NULL;
}

/* ECDSA (or RSA PKCS#1) over SHA-256 of random data, checked with the public key. */
static int sign_once(HWKEY_BKEY *key, EVP_PKEY *pub)
{
    unsigned char msg[64], dgst[32], sig[600];
    size_t siglen = sizeof(sig);
    unsigned int dlen = 0;
    HWKEY_SIGN_PARAMS p = {0};
    EVP_PKEY_CTX *v = NULL;
    int ok;

    p.scheme = key->info.alg == HWKEY_ALG_RSA ? HWKEY_SIG_RSA_PKCS1 : HWKEY_SIG_ECDSA;
    p.md_nid = p.mgf1_md_nid = NID_sha256;
    ok = RAND_bytes(msg, sizeof(msg)) == 1 &&
         EVP_Digest(msg, sizeof(msg), dgst, &dlen, EVP_sha256(), NULL) &&
         hwkey_backend_sign(key, &p, dgst, dlen, sig, &siglen) &&
         (v = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL)) != NULL && EVP_PKEY_verify_init(v) > 0 &&
         EVP_PKEY_CTX_set_signature_md(v, EVP_sha256()) > 0 &&
         EVP_PKEY_verify(v, sig, siglen, dgst, dlen) == 1;
    EVP_PKEY_CTX_free(v);
    return ok;
}

static long long now_ms(int clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int report(const char *what)
{
    unsigned long e = ERR_peek_error();
    const char *data = NULL;
    int flags = 0;

    ERR_peek_error_data(&data, &flags);
    fprintf(stderr, "FAIL %s: %s: %s\n", what, e ? hwkey_reason_string(ERR_GET_REASON(e)) : "?",
            (flags & ERR_TXT_STRING) && data != NULL ? data : "");
    ERR_clear_error();
    return 1;
}

/* The errors in this thread's queue: how many, and the first one's text. */
static int drain(char *first, size_t len)
{
    const char *data = NULL;
    int flags = 0, n = 0;
    unsigned long e;

    first[0] = '\0';
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        if (n++ == 0)
            snprintf(first, len, "%s: %s", hwkey_reason_string(ERR_GET_REASON(e)),
                     (flags & ERR_TXT_STRING) && data != NULL ? data : "");
    }
    return n;
}

static int cmd_keepsign(const char *uri, const char *done, int interval_ms)
{
    HWKEY_BKEY *key = load(uri, NULL, NULL);
    EVP_PKEY *pub = key != NULL ? hwkey_backend_key_public(key, NULL, NULL) : NULL;
    long long start = now_ms(CLOCK_MONOTONIC);
    char first[600];

    if (pub == NULL)
        return report("keepsign: load");
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (access(done, F_OK) != 0 && now_ms(CLOCK_MONOTONIC) - start < 120000) {
        long long t0 = now_ms(CLOCK_MONOTONIC), wall = now_ms(CLOCK_REALTIME);
        int ok = sign_once(key, pub);
        long long dur = now_ms(CLOCK_MONOTONIC) - t0;

        if (ok) {
            printf("ok %lld %lld\n", wall, dur);
        } else {
            int n = drain(first, sizeof(first));

            printf("fail %lld %lld %d %s\n", wall, dur, n, first);
        }
        usleep((useconds_t)interval_ms * 1000);
    }
    EVP_PKEY_free(pub);
    hwkey_backend_key_free(key);
    return 0;
}

typedef struct {
    HWKEY_BKEY *key;
    EVP_PKEY *pub;
    volatile int *stop;
    long count;
    int ok;
} SIGNER;

/*
 * The signing threads bracket their whole iteration, software verification
 * included, in the provider's fork gate.  Not for the provider's sake (its
 * own calls are gated inside): OpenSSL 3.0 registers no atfork handlers, so
 * a child forked while another thread holds one of libcrypto's own locks (a
 * method-store fetch in EVP_PKEY_verify) hangs in its first fetch, with or
 * without hwkey (seen here).  Gating the test's own libcrypto use keeps this
 * test about the provider's locks.
 */
static void *signer(void *p)
{
    SIGNER *a = p;

    a->ok = 1;
    while (!*a->stop && a->ok) {
        hwkey_gate_enter();
        a->ok = sign_once(a->key, a->pub);
        hwkey_gate_leave();
        a->count++;
    }
    if (!a->ok)
        report("forkthreads: signing thread");
    return NULL;
}

static int cmd_forkthreads(const char *uri, int nthreads, int nforks)
{
    HWKEY_BKEY *key = load(uri, NULL, NULL);
    EVP_PKEY *pub = key != NULL ? hwkey_backend_key_public(key, NULL, NULL) : NULL;
    volatile int stop = 0;
    pthread_t th[16];
    SIGNER args[16];
    int good = 0, ok = 1;
    long total = 0;

    if (pub == NULL || nthreads > 16)
        return report("forkthreads: load");
    for (int i = 0; i < nthreads; i++) {
        args[i] = (SIGNER){key, pub, &stop, 0, 0};
        pthread_create(&th[i], NULL, signer, &args[i]);
    }
    fflush(NULL);
    for (int i = 0; i < nforks; i++) {
        pid_t pid = fork();
        int st;

        if (pid == 0) {
            /* The child: only this thread; it signs once and must not hang. */
            int r = sign_once(key, pub);

            if (!r)
                report("forkthreads: child");
            _exit(r ? 0 : 1);
        }
        if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            good++;
    }
    stop = 1;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        ok = ok && args[i].ok;
        total += args[i].count;
    }
    EVP_PKEY_free(pub);
    hwkey_backend_key_free(key);
    printf("%s forkthreads: %d/%d children signed, %d threads signed %ld times meanwhile\n",
           good == nforks && ok ? "ok" : "FAIL", good, nforks, nthreads, total);
    return good == nforks && ok ? 0 : 1;
}

static int callbacks, child_ok;

/* A passphrase helper that forks (as one running a pinentry program would). */
static int forking_pin_cb(char *pass, size_t size, size_t *len, const OSSL_PARAM params[],
                          void *arg)
{
    pid_t pid = fork();
    int st;

    (void)params;
    (void)arg;
    callbacks++;
    if (pid == 0)
        _exit(0);
    child_ok = pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (size < 4)
        return 0;
    memcpy(pass, getenv("P11_FAULTS_PIN") != NULL ? getenv("P11_FAULTS_PIN") : "1234", 4);
    *len = 4;
    return 1;
}

static int cmd_pinfork(const char *uri)
{
    HWKEY_BKEY *key = load(uri, forking_pin_cb, NULL);
    EVP_PKEY *pub = key != NULL ? hwkey_backend_key_public(key, NULL, NULL) : NULL;
    int ok = pub != NULL && sign_once(key, pub);

    if (!ok)
        report("pinfork");
    EVP_PKEY_free(pub);
    hwkey_backend_key_free(key);
    printf("%s pinfork: callback called %d time(s), its child exited 0: %s, signed: %s\n",
           ok && callbacks == 1 && child_ok ? "ok" : "FAIL", callbacks, child_ok ? "yes" : "no",
           ok ? "yes" : "no");
    return ok && callbacks == 1 && child_ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    HWKEY_CONFIG cfg = {0};
    HWKEY_DEVICES *devs = NULL;
    int rc = 2;

    if (argc < 3)
        goto usage;
    if (!hwkey_config_apply_env(&cfg) || (devs = hwkey_devices_new(&cfg)) == NULL ||
        (dev = hwkey_devices_by_name(devs, "pkcs11")) == NULL) {
        rc = report("opening the pkcs11 device");
        goto end;
    }
    if (strcmp(argv[1], "keepsign") == 0 && argc >= 4)
        rc = cmd_keepsign(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 20);
    else if (strcmp(argv[1], "forkthreads") == 0 && argc == 5)
        rc = cmd_forkthreads(argv[2], atoi(argv[3]), atoi(argv[4]));
    else if (strcmp(argv[1], "pinfork") == 0)
        rc = cmd_pinfork(argv[2]);
    else
        goto usage;
    goto end;
usage:
    fprintf(stderr, "usage: p11_faults keepsign URI DONE_FILE [MS] | forkthreads URI T F | "
                    "pinfork URI\n");
end:
    hwkey_devices_free(devs);
    hwkey_config_clear(&cfg);
    return rc;
}
