/*
 * pkcs11_sign_bench: PKCS#11 signatures per second, hwkey against the
 * token's own limit, on the same token key, with 1 and 2 threads
 * (bench/README.md, "PKCS#11"; the contenders are in pkcs11_contender.c).
 *
 * Each contender lives in its own child process: a PKCS#11 module is
 * initialised once per process (C_Initialize, login state and sessions are
 * process-wide, so the direct loop and hwkey's backend would trip over each
 * other in one), and a crash spoils only that contender's rows.  The parent
 * never loads the module nor the provider; it sends "run T threads for S
 * seconds" to one child at a time, so each slice has the machine to itself,
 * and interleaves the (contender, threads) slices round after round with
 * the order rotating.  A ratio is the median over rounds of the ratio of two
 * rates measured in the same round, which a burst of load on a shared
 * machine barely moves.
 */
#include "pkcs11_bench.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

typedef struct {
    int threads; /* 0: quit */
    double secs;
} CMD;

typedef struct {
    int ok;
    unsigned long sigs;
    double secs;
    double cpu; /* the child's CPU time during the slice */
    char err[P11B_ERRLEN];
} SLICE_REPLY;

typedef struct {
    int ok;
    char err[P11B_ERRLEN];
    char info[P11B_INFOLEN];
    size_t siglen, publen;
    unsigned char sig[P11B_MAX_SIG];
    unsigned char pub[P11B_MAX_PUB];
} SETUP_REPLY;

typedef struct {
    pid_t pid;
    int fd;
    int ok;
    char err[P11B_ERRLEN];
} CHILD;

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds all processes have used since boot (/proc/stat); -1 if unknown. */
static double machine_busy(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int n = f != NULL ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                               &v[2], &v[3], &v[4], &v[5], &v[6], &v[7])
                      : 0;
    long hz = sysconf(_SC_CLK_TCK);

    if (f != NULL)
        fclose(f);
    if (n != 8 || hz <= 0)
        return -1;
    /* user nice system [idle iowait] irq softirq steal */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)hz;
}

static int io_full(int fd, void *buf, size_t len, int writing)
{
    unsigned char *p = buf;

    while (len > 0) {
        ssize_t n = writing ? write(fd, p, len) : read(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

/* ---- child side ------------------------------------------------------------ */

typedef struct {
    P11B_CONTENDER *c;
    int slot;
    double end;
    unsigned long n;
    int failed;
    char err[P11B_ERRLEN];
} WORKER;

static void *worker_run(void *arg)
{
    WORKER *w = arg;
    unsigned char sig[P11B_MAX_SIG];
    size_t len;

    do {
        if (!p11b_contender_sign(w->c, w->slot, sig, &len, w->err, sizeof(w->err))) {
            w->failed = 1;
            break;
        }
        w->n++;
    } while (now() < w->end);
    return NULL;
}

static void run_slice(P11B_CONTENDER *c, const CMD *cmd, SLICE_REPLY *rep)
{
    WORKER w[P11B_MAX_THREADS];
    pthread_t tid[P11B_MAX_THREADS];
    int started = 0;
    double t0 = now(), c0 = cpu_now();

    memset(rep, 0, sizeof(*rep));
    memset(w, 0, sizeof(w));
    for (int i = 0; i < cmd->threads; i++) {
        w[i].c = c;
        w[i].slot = i;
        w[i].end = t0 + cmd->secs;
        if (pthread_create(&tid[i], NULL, worker_run, &w[i]) != 0) {
            snprintf(rep->err, sizeof(rep->err), "pthread_create failed");
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    rep->secs = now() - t0;
    rep->cpu = cpu_now() - c0;
    rep->ok = started == cmd->threads;
    for (int i = 0; i < started; i++) {
        rep->sigs += w[i].n;
        if (w[i].failed && rep->ok) {
            rep->ok = 0;
            memcpy(rep->err, w[i].err, sizeof(rep->err));
        }
    }
}

static void child_main(int fd, const P11B_SETUP *s)
{
    SETUP_REPLY rep;
    P11B_CONTENDER *c;
    CMD cmd;

    memset(&rep, 0, sizeof(rep));
    c = p11b_contender_new(s, rep.info, sizeof(rep.info), rep.err, sizeof(rep.err));
    rep.ok = c != NULL;
    /* Warm every slot (sessions, contexts, the provider's session pool). */
    for (int t = 0; rep.ok && t < s->max_threads; t++)
        for (int i = 0; rep.ok && i < 5; i++)
            rep.ok = p11b_contender_sign(c, t, rep.sig, &rep.siglen, rep.err, sizeof(rep.err));
    rep.publen = sizeof(rep.pub);
    if (rep.ok && s->kind != P11B_DIRECT && !p11b_contender_pubkey(c, rep.pub, &rep.publen)) {
        snprintf(rep.err, sizeof(rep.err), "cannot export the key's public half (i2d_PUBKEY)");
        rep.ok = 0;
    }
    if (!io_full(fd, &rep, sizeof(rep), 1) || !rep.ok)
        _exit(1);
    while (io_full(fd, &cmd, sizeof(cmd), 0) && cmd.threads > 0) {
        SLICE_REPLY sr;

        run_slice(c, &cmd, &sr);
        if (!io_full(fd, &sr, sizeof(sr), 1))
            break;
    }
    /* No teardown: a PKCS#11 module's own exit handlers are not under test here. */
    _exit(0);
}

/* ---- parent side ------------------------------------------------------------ */

static void child_died(CHILD *ch)
{
    int status = 0;

    close(ch->fd);
    ch->fd = -1;
    ch->ok = 0;
    if (waitpid(ch->pid, &status, 0) == ch->pid && WIFSIGNALED(status))
        snprintf(ch->err, sizeof(ch->err), "process died of signal %d", WTERMSIG(status));
    else
        snprintf(ch->err, sizeof(ch->err), "process exited (status %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static void child_start(CHILD *kids, int k, const P11B_SETUP *s, SETUP_REPLY *rep)
{
    CHILD *ch = &kids[k];
    int sv[2];

    memset(rep, 0, sizeof(*rep));
    ch->fd = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        snprintf(ch->err, sizeof(ch->err), "socketpair: %s", strerror(errno));
        return;
    }
    fflush(NULL);
    ch->pid = fork();
    if (ch->pid < 0) {
        snprintf(ch->err, sizeof(ch->err), "fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return;
    }
    if (ch->pid == 0) {
        /* Our siblings' sockets would keep them from seeing EOF when the parent dies. */
        for (int i = 0; i < k; i++)
            if (kids[i].fd >= 0)
                close(kids[i].fd);
        close(sv[0]);
        child_main(sv[1], s);
    }
    close(sv[1]);
    ch->fd = sv[0];
    if (!io_full(ch->fd, rep, sizeof(*rep), 0)) {
        child_died(ch);
        return;
    }
    ch->ok = rep->ok;
    if (!rep->ok) {
        memcpy(ch->err, rep->err, sizeof(ch->err));
        child_died(ch);
        memcpy(ch->err, rep->err, sizeof(ch->err));
    }
}

static int child_slice(CHILD *ch, int threads, double secs, SLICE_REPLY *sr, double *others)
{
    CMD cmd = {.threads = threads, .secs = secs};
    double busy0 = machine_busy(), busy1;

    if (!io_full(ch->fd, &cmd, sizeof(cmd), 1) || !io_full(ch->fd, sr, sizeof(*sr), 0)) {
        child_died(ch);
        return 0;
    }
    busy1 = machine_busy();
    *others = busy0 >= 0 && busy1 >= busy0 ? busy1 - busy0 - sr->cpu : 0;
    if (*others < 0)
        *others = 0; /* /proc/stat counts in ticks */
    return 1;
}

/* PKCS#11 ECDSA signatures are r || s; OpenSSL verifies DER. */
static int ecdsa_raw_to_der(const unsigned char *raw, size_t len, unsigned char *der,
                            size_t *derlen)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)(len / 2), NULL),
           *s = BN_bin2bn(raw + len / 2, (int)(len / 2), NULL);
    unsigned char *p = der;
    int n = 0;

    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s)) {
        r = s = NULL;
        if (i2d_ECDSA_SIG(es, NULL) <= (int)*derlen)
            n = i2d_ECDSA_SIG(es, &p);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    *derlen = n > 0 ? (size_t)n : 0;
    return n > 0;
}

/* Checks a contender's warm-up signature in software, with OpenSSL's default provider. */
static int verify_setup_sig(const P11B_BENCH *b, int rsa, P11B_KIND kind, const SETUP_REPLY *key,
                            const SETUP_REPLY *rep)
{
    const unsigned char *p = key->pub;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)key->publen);
    EVP_PKEY_CTX *v = pub != NULL ? EVP_PKEY_CTX_new(pub, NULL) : NULL;
    unsigned char der[P11B_MAX_SIG];
    size_t derlen = sizeof(der);
    const unsigned char *sig = rep->sig;
    size_t siglen = rep->siglen;
    int ok = 0;

    if (kind == P11B_DIRECT && !rsa) {
        if (!ecdsa_raw_to_der(rep->sig, rep->siglen, der, &derlen))
            goto end;
        sig = der;
        siglen = derlen;
    }
    /* Every contender signs SHA-256 of the same message: one check fits all. */
    ok = v != NULL && EVP_PKEY_verify_init(v) > 0 &&
         (!rsa || EVP_PKEY_CTX_set_rsa_padding(v, RSA_PKCS1_PADDING) > 0) &&
         EVP_PKEY_CTX_set_signature_md(v, EVP_sha256()) > 0 &&
         EVP_PKEY_verify(v, sig, siglen, b->digest, sizeof(b->digest)) == 1;
end:
    EVP_PKEY_CTX_free(v);
    EVP_PKEY_free(pub);
    return ok;
}

static void set_cell_err(P11B_BENCH *b, int a, int k, const char *err)
{
    for (int t = 0; t < P11B_NTHR; t++)
        if (b->cell[a][k][t].err[0] == '\0')
            snprintf(b->cell[a][k][t].err, P11B_ERRLEN, "%s", err);
}

static void run_alg(P11B_BENCH *b, int a)
{
    CHILD kids[P11B_KIND_MAX];
    SETUP_REPLY rep[P11B_KIND_MAX];
    const SETUP_REPLY *key = NULL;
    int slots[P11B_KIND_MAX * P11B_NTHR], nslots = 0;
    int rounds = (int)(b->seconds / b->slice + 0.5);
    SLICE_REPLY sr;
    double others;

    memset(kids, 0, sizeof(kids));
    rounds = rounds < 1 ? 1 : rounds > P11B_MAX_ROUNDS ? P11B_MAX_ROUNDS : rounds;
    for (int k = 0; k < P11B_KIND_MAX; k++) {
        P11B_SETUP s = {
            .kind = (P11B_KIND)k,
            .rsa = a == 1,
            .module = b->module,
            .token = b->token,
            .label = b->label[a],
            .pin = b->pin,
            .provider = b->provider,
            .key_ref = b->key_ref[a],
            .msg = b->msg,
            .msg_len = b->msg_len,
            .digest = b->digest,
            .max_threads = p11b_thread_counts[P11B_NTHR - 1],
        };

        if (!b->run_kind[k]) {
            kids[k].fd = -1;
            continue;
        }
        child_start(kids, k, &s, &rep[k]);
        if (!kids[k].ok)
            set_cell_err(b, a, k, kids[k].err);
        else if (b->info[k][0] == '\0')
            snprintf(b->info[k], sizeof(b->info[k]), "%s", rep[k].info);
        if (kids[k].ok && k != P11B_DIRECT && key == NULL)
            key = &rep[k];
    }
    /* Trust neither side: every warm-up signature must verify with the token key. */
    for (int k = 0; k < P11B_KIND_MAX && key != NULL; k++) {
        if (kids[k].ok && !verify_setup_sig(b, a == 1, (P11B_KIND)k, key, &rep[k])) {
            set_cell_err(
                b, a, k,
                k == P11B_DIRECT
                    ? "its signature does not verify with hwkey's public key: not the same key?"
                    : "its signature does not verify with the key's public half");
            kids[k].ok = 0;
        }
    }
    for (int k = 0; k < P11B_KIND_MAX; k++)
        if (kids[k].ok) {
            child_slice(&kids[k], p11b_thread_counts[P11B_NTHR - 1],
                        b->slice < 0.2 ? b->slice : 0.2, &sr, &others);
            for (int t = 0; t < P11B_NTHR; t++)
                slots[nslots++] = k * P11B_NTHR + t;
        }
    for (int r = 0; r < rounds; r++) {
        for (int j = 0; j < nslots; j++) {
            int slot = slots[(j + r) % nslots], k = slot / P11B_NTHR, t = slot % P11B_NTHR;
            P11B_CELL *c = &b->cell[a][k][t];

            if (!kids[k].ok || c->err[0] != '\0')
                continue;
            if (!child_slice(&kids[k], p11b_thread_counts[t], b->slice, &sr, &others)) {
                set_cell_err(b, a, k, kids[k].err);
                continue;
            }
            if (!sr.ok) {
                snprintf(c->err, sizeof(c->err), "%s", sr.err);
                continue;
            }
            c->sigs += sr.sigs;
            c->secs += sr.secs;
            c->cpu += sr.cpu;
            c->others += others;
            c->rate[c->nrates++] = sr.secs > 0 ? (double)sr.sigs / sr.secs : 0;
        }
    }
    for (int k = 0; k < P11B_KIND_MAX; k++) {
        CMD quit = {0, 0};

        if (kids[k].fd < 0)
            continue;
        (void)io_full(kids[k].fd, &quit, sizeof(quit), 1);
        close(kids[k].fd);
        waitpid(kids[k].pid, NULL, 0);
    }
}

/* ---- options -------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: pkcs11_sign_bench --provider HWKEY.so --pin-file FILE [options]\n"
               "  --module PATH      PKCS#11 module (default /usr/lib/softhsm/libsofthsm2.so)\n"
               "  --token LABEL      token label (default hwkey-test)\n"
               "  --pin-file FILE    user PIN (first line), for the direct loop; hwkey gets\n"
               "                     HWKEY_PKCS11_PIN_SOURCE=file:FILE unless that is set\n"
               "  --ec-label L       label of the EC P-256 key pair (default ec256)\n"
               "  --rsa-label L      label of the RSA-2048 key pair (default rsa2048)\n"
               "  --ec-key REF       what hwkey loads: a PEM reference file or a pkcs11: URI\n"
               "  --rsa-key REF      (default pkcs11:token=LABEL;object=L;type=private)\n"
               "  --algs ec|rsa|ec,rsa   (default both)\n"
               "  --only KINDS       run only some of direct,digestsign,pkeysign (to profile one)\n"
               "  -t SECONDS         per contender and case (default 3); --quick: 1\n"
               "  --slice SECONDS    interleaving slice (default 0.5; --quick 0.25)\n"
               "  --msg-len BYTES    message signed (default 130, about a TLS CertificateVerify)\n"
               "  --strict           exit 1 when a target is missed\n"
               "Exit: 0 done, 1 a contender failed (or --strict and a target missed), 2 usage.\n");
}

static int parse_args(P11B_BENCH *b, int argc, char **argv)
{
    static const struct option opts[] = {
        {"module", required_argument, NULL, 'm'},   {"provider", required_argument, NULL, 'p'},
        {"token", required_argument, NULL, 'T'},    {"pin-file", required_argument, NULL, 'P'},
        {"ec-label", required_argument, NULL, 'e'}, {"rsa-label", required_argument, NULL, 'r'},
        {"ec-key", required_argument, NULL, 'E'},   {"rsa-key", required_argument, NULL, 'R'},
        {"algs", required_argument, NULL, 'a'},     {"quick", no_argument, NULL, 'q'},
        {"slice", required_argument, NULL, 's'},    {"msg-len", required_argument, NULL, 'l'},
        {"strict", no_argument, NULL, 'S'},         {"help", no_argument, NULL, 'h'},
        {"only", required_argument, NULL, 'o'},     {NULL, 0, NULL, 0},
    };
    int opt, quick = 0;

    b->module = "/usr/lib/softhsm/libsofthsm2.so";
    b->token = "hwkey-test";
    b->label[0] = "ec256";
    b->label[1] = "rsa2048";
    b->run_alg[0] = b->run_alg[1] = 1;
    for (int k = 0; k < P11B_KIND_MAX; k++)
        b->run_kind[k] = 1;
    b->seconds = -1;
    b->slice = -1;
    b->msg_len = 130;
    while ((opt = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            b->module = optarg;
            break;
        case 'p':
            b->provider = optarg;
            break;
        case 'T':
            b->token = optarg;
            break;
        case 'P':
            b->pin_file = optarg;
            break;
        case 'e':
            b->label[0] = optarg;
            break;
        case 'r':
            b->label[1] = optarg;
            break;
        case 'E':
            b->key_ref[0] = optarg;
            break;
        case 'R':
            b->key_ref[1] = optarg;
            break;
        case 'a':
            b->run_alg[0] = strstr(optarg, "ec") != NULL;
            b->run_alg[1] = strstr(optarg, "rsa") != NULL;
            break;
        case 'o':
            b->run_kind[P11B_DIRECT] = strstr(optarg, "direct") != NULL;
            b->run_kind[P11B_DIGESTSIGN] = strstr(optarg, "digestsign") != NULL;
            b->run_kind[P11B_PKEYSIGN] = strstr(optarg, "pkeysign") != NULL;
            break;
        case 'q':
            quick = 1;
            break;
        case 't':
            b->seconds = atof(optarg);
            break;
        case 's':
            b->slice = atof(optarg);
            break;
        case 'l':
            b->msg_len = (size_t)strtoul(optarg, NULL, 10);
            break;
        case 'S':
            b->strict = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return 0;
        }
    }
    if (b->seconds < 0)
        b->seconds = quick ? 1 : 3;
    if (b->slice < 0)
        b->slice = quick ? 0.25 : 0.5;
    if (b->slice > b->seconds)
        b->slice = b->seconds;
    if (optind != argc || b->provider == NULL || b->pin_file == NULL || b->seconds <= 0 ||
        b->slice < 0.01 || b->msg_len == 0 || b->msg_len > P11B_MAX_MSG ||
        !(b->run_alg[0] || b->run_alg[1]) || b->seconds / b->slice > P11B_MAX_ROUNDS)
        return 0;
    return 1;
}

static int read_pin(P11B_BENCH *b)
{
    FILE *f = fopen(b->pin_file, "r");
    int ok = f != NULL && fgets(b->pin, sizeof(b->pin), f) != NULL;

    if (f != NULL)
        fclose(f);
    b->pin[strcspn(b->pin, "\r\n")] = '\0';
    return ok && b->pin[0] != '\0';
}

int main(int argc, char **argv)
{
    static P11B_BENCH b; /* large: the per-round rates */
    static char uri[P11B_NALGS][512], pin_source[PATH_MAX + 8];
    int failed, missed;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double load[2][1];

    if (!parse_args(&b, argc, argv)) {
        usage(stderr);
        return 2;
    }
    if (!read_pin(&b)) {
        fprintf(stderr, "pkcs11_sign_bench: cannot read a PIN from %s\n", b.pin_file);
        return 2;
    }
    if (getenv("HWKEY_PKCS11_PIN_SOURCE") == NULL) {
        char *abs = realpath(b.pin_file, NULL); /* hwkey wants file:/absolute/path */

        snprintf(pin_source, sizeof(pin_source), "file:%s", abs != NULL ? abs : b.pin_file);
        free(abs);
        setenv("HWKEY_PKCS11_PIN_SOURCE", pin_source, 1);
    }
    for (int a = 0; a < P11B_NALGS; a++) {
        if (b.key_ref[a] != NULL)
            continue;
        snprintf(uri[a], sizeof(uri[a]), "pkcs11:token=%s;object=%s;type=private", b.token,
                 b.label[a]);
        b.key_ref[a] = uri[a];
    }
    for (size_t i = 0; i < b.msg_len; i++)
        b.msg[i] = (unsigned char)(i * 7 + 1);
    if (!EVP_Digest(b.msg, b.msg_len, b.digest, NULL, EVP_sha256(), NULL)) {
        fprintf(stderr, "pkcs11_sign_bench: SHA-256 failed\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (getloadavg(load[0], 1) != 1)
        load[0][0] = -1;
    for (int a = 0; a < P11B_NALGS; a++) {
        if (!b.run_alg[a])
            continue;
        fprintf(stderr, "pkcs11_sign_bench: %s ...\n", p11b_alg_names[a]);
        run_alg(&b, a);
    }
    printf("pkcs11_sign_bench: %s, token \"%s\" (%s); %s; %ld CPU(s)\n",
           b.info[P11B_DIRECT][0] ? b.info[P11B_DIRECT] : "module ?", b.token, b.module,
           OpenSSL_version(OPENSSL_VERSION), ncpu);
    if (getloadavg(load[1], 1) != 1)
        load[1][0] = -1;
    printf("  hwkey: %s; keys: EC %s, RSA %s\n", b.provider, b.key_ref[0], b.key_ref[1]);
    /* Other work on the machine takes cores from the 2-thread cases first. */
    printf("  load average (1 min) before %.2f, after %.2f\n", load[0][0], load[1][0]);
    missed = p11b_report(&b);
    failed = p11b_report_failures(&b);
    return failed || (b.strict && missed) ? 1 : 0;
}
