/*
 * tpm2_fork_driver: forking servers and TPM keys (issue 6, items 3 and 4).
 * Providers come from OPENSSL_CONF; KEY is a TSS2 key file or handle:.
 *
 *   tpm2_fork_driver workers KEY NCHILD NSIGN [parent-signs]
 *       nginx's shape: load KEY in the parent (no signature unless
 *       parent-signs), fork NCHILD children that each sign and verify NSIGN
 *       times.  Exit 0 if every child did.
 *   tpm2_fork_driver threads KEY NTHREAD NFORK
 *       NTHREAD threads sign in a loop while the main thread forks NFORK
 *       times; each child signs once and exits 0.  A child that hangs is
 *       killed by its own alarm (exit by signal = failure).
 *   tpm2_fork_driver sign KEY N
 *       N signatures in this process (the "another process" of a test).
 *   tpm2_fork_driver loop KEY STOPFILE
 *       sign every 20 ms until STOPFILE exists; one line per signature on
 *       stdout: "ok MS WALL" or "fail MS WALL" (MS: how long it took, WALL:
 *       when it ended, ms since the epoch, as date +%s%3N), for tests that
 *       take the TPM away and bring it back.
 *
 * Prints one summary line; failures print the OpenSSL error queue.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/store.h>

static EVP_PKEY *load_key(const char *ref)
{
    OSSL_STORE_CTX *ctx = OSSL_STORE_open(ref, NULL, NULL, NULL, NULL);
    EVP_PKEY *pkey = NULL;

    if (ctx == NULL)
        return NULL;
    OSSL_STORE_expect(ctx, OSSL_STORE_INFO_PKEY);
    while (pkey == NULL && !OSSL_STORE_eof(ctx)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(ctx);

        if (info == NULL)
            break;
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            pkey = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(ctx);
    return pkey;
}

static int quiet;

/* One signature over a message that names the signer, then its verification. */
static int sign_verify(EVP_PKEY *pkey, unsigned long n)
{
    unsigned char msg[64], sig[1024];
    size_t siglen = sizeof(sig);
    int len = snprintf((char *)msg, sizeof(msg), "hwkey fork %ld %lu", (long)getpid(), n);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestSign(md, sig, &siglen, msg, (size_t)len) == 1;

    EVP_MD_CTX_free(md);
    md = EVP_MD_CTX_new();
    ok = ok && md != NULL && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
         EVP_DigestVerify(md, sig, siglen, msg, (size_t)len) == 1;
    EVP_MD_CTX_free(md);
    if (!ok && !quiet) {
        fprintf(stderr, "pid %ld: signature %lu failed\n", (long)getpid(), n);
        ERR_print_errors_fp(stderr);
    }
    return ok;
}

static int sign_quiet(EVP_PKEY *pkey, unsigned long n)
{
    int ok;

    quiet = 1;
    ok = sign_verify(pkey, n);
    quiet = 0;
    return ok;
}

static int sign_n(EVP_PKEY *pkey, unsigned long n)
{
    for (unsigned long i = 0; i < n; i++)
        if (!sign_verify(pkey, i))
            return 0;
    return 1;
}

/* Wait for every child; returns how many did not exit 0. */
static int reap(const pid_t *pids, int n)
{
    int bad = 0, status;

    for (int i = 0; i < n; i++) {
        if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0) {
            bad++;
            if (WIFSIGNALED(status))
                fprintf(stderr, "child %ld killed by signal %d%s\n", (long)pids[i],
                        WTERMSIG(status), WTERMSIG(status) == SIGALRM ? " (hung)" : "");
            else
                fprintf(stderr, "child %ld exit %d\n", (long)pids[i], WEXITSTATUS(status));
        }
    }
    return bad;
}

static int run_workers(EVP_PKEY *pkey, int nchild, unsigned long nsign, int parent_signs)
{
    pid_t pids[64] = {0};
    int bad;

    if (nchild > 64)
        nchild = 64;
    if (parent_signs && !sign_verify(pkey, 0))
        return 1;
    for (int i = 0; i < nchild; i++) {
        if ((pids[i] = fork()) < 0)
            return 1;
        if (pids[i] == 0) {
            alarm(60);
            _exit(sign_n(pkey, nsign) ? 0 : 1);
        }
    }
    bad = reap(pids, nchild);
    printf("workers: %d children x %lu signatures%s: %d failed\n", nchild, nsign,
           parent_signs ? " (parent signed first)" : "", bad);
    return bad != 0;
}

static volatile int stop_threads;
static unsigned long thread_sigs[16];

typedef struct {
    EVP_PKEY *pkey;
    int idx;
} THREAD_ARG;

static void *signer_thread(void *p)
{
    THREAD_ARG *a = p;

    while (!__atomic_load_n(&stop_threads, __ATOMIC_ACQUIRE)) {
        if (!sign_verify(a->pkey, thread_sigs[a->idx]))
            return (void *)1;
        thread_sigs[a->idx]++;
    }
    return NULL;
}

/*
 * The child's signature: through contexts initialised before the fork.
 * OpenSSL 3.0 has no fork handlers for its own locks: a child that fetches
 * an algorithm (EVP_DigestSignInit) while another thread of the parent held
 * the method store's lock hangs inside libcrypto (seen here), whatever the
 * provider does.  With the contexts ready, the child runs only the
 * provider's sign (the TPM: the device lock, the fork gate, reconnect) and
 * the default provider's verify, which is what this test is about.
 */
typedef struct {
    EVP_PKEY_CTX *sign, *verify;
} CHILD_CTX;

static int child_ctx_init(EVP_PKEY *pkey, CHILD_CTX *c)
{
    c->sign = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    c->verify = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    return c->sign != NULL && c->verify != NULL && EVP_PKEY_sign_init(c->sign) == 1 &&
           EVP_PKEY_CTX_set_signature_md(c->sign, EVP_sha256()) == 1 &&
           EVP_PKEY_verify_init(c->verify) == 1 &&
           EVP_PKEY_CTX_set_signature_md(c->verify, EVP_sha256()) == 1;
}

static int child_sign(const CHILD_CTX *c)
{
    unsigned char dgst[32], sig[1024];
    size_t siglen = sizeof(sig);

    memset(dgst, getpid() & 0xff, sizeof(dgst));
    if (EVP_PKEY_sign(c->sign, sig, &siglen, dgst, sizeof(dgst)) != 1 ||
        EVP_PKEY_verify(c->verify, sig, siglen, dgst, sizeof(dgst)) != 1) {
        fprintf(stderr, "child %ld: signature failed\n", (long)getpid());
        ERR_print_errors_fp(stderr);
        return 0;
    }
    return 1;
}

static int run_threads(EVP_PKEY *pkey, int nthread, int nfork)
{
    pthread_t th[16];
    THREAD_ARG args[16];
    pid_t pids[256] = {0};
    unsigned long total = 0;
    int bad, thread_bad = 0;
    CHILD_CTX cc;
    void *ret;

    if (!child_ctx_init(pkey, &cc)) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    for (int i = 0; i < nthread; i++) {
        args[i] = (THREAD_ARG){pkey, i};
        pthread_create(&th[i], NULL, signer_thread, &args[i]);
    }
    for (int i = 0; i < nfork; i++) {
        if ((pids[i] = fork()) < 0)
            return 1;
        if (pids[i] == 0) {
            alarm(30); /* a hang ends as SIGALRM, reported by reap() */
            _exit(child_sign(&cc) ? 0 : 1);
        }
        usleep(20000); /* let the threads run between forks, so forks land mid-signature */
    }
    bad = reap(pids, nfork);
    __atomic_store_n(&stop_threads, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < nthread; i++) {
        pthread_join(th[i], &ret);
        thread_bad += ret != NULL;
        total += thread_sigs[i];
    }
    EVP_PKEY_CTX_free(cc.sign);
    EVP_PKEY_CTX_free(cc.verify);
    printf("threads: %d forks while %d threads signed (%lu signatures): %d children failed, "
           "%d threads failed\n",
           nfork, nthread, total, bad, thread_bad);
    return bad != 0 || thread_bad != 0;
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int run_loop(EVP_PKEY *pkey, const char *stopfile)
{
    unsigned long n = 0;
    int printed = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    while (access(stopfile, F_OK) != 0) {
        double t0 = now_ms();
        int ok;

        /* Errors are counted, and only the first is printed: the test reads the log lines. */
        ERR_set_mark();
        ok = sign_quiet(pkey, n++);
        if (!ok && !printed++) {
            fprintf(stderr, "first failure:\n");
            ERR_print_errors_fp(stderr);
        }
        ERR_pop_to_mark();
        struct timespec wall;

        clock_gettime(CLOCK_REALTIME, &wall);
        printf("%s %.1f %lld\n", ok ? "ok" : "fail", now_ms() - t0,
               (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000);
        usleep(20000);
    }
    return 0;
}

int main(int argc, char **argv)
{
    EVP_PKEY *pkey;
    int rc;

    if (argc < 4) {
        fprintf(stderr, "usage: %s workers|threads|sign KEY N [M] [parent-signs]\n", argv[0]);
        return 2;
    }
    if ((pkey = load_key(argv[2])) == NULL) {
        fprintf(stderr, "cannot load %s\n", argv[2]);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    if (strcmp(argv[1], "workers") == 0 && argc >= 5)
        rc = run_workers(pkey, atoi(argv[3]), strtoul(argv[4], NULL, 10),
                         argc > 5 && strcmp(argv[5], "parent-signs") == 0);
    else if (strcmp(argv[1], "threads") == 0 && argc >= 5)
        rc = run_threads(pkey, atoi(argv[3]) > 16 ? 16 : atoi(argv[3]),
                         atoi(argv[4]) > 256 ? 256 : atoi(argv[4]));
    else if (strcmp(argv[1], "loop") == 0)
        rc = run_loop(pkey, argv[3]);
    else if (strcmp(argv[1], "sign") == 0) {
        rc = !sign_n(pkey, strtoul(argv[3], NULL, 10));
        printf("sign: %s signatures: %s\n", argv[3], rc == 0 ? "ok" : "failed");
    } else
        rc = 2;
    EVP_PKEY_free(pkey);
    return rc;
}
