/*
 * tpm2_bench: signatures per second and TPM commands per signature of
 * hwkey, a bare ESAPI loop and tpm2-openssl, side by side in one run,
 * through a resource manager and on a plain TPM socket.
 *
 * Throughput: all contenders of one (mode, key) are set up at once and run
 * in interleaved time slices (rotating order), so drift of a noisy machine
 * hits them alike.  Commands: each contender is run again in a child
 * process through tpm2-tss's pcap TCTI; the commands recorded while it made
 * N signatures after a warm-up are counted from the capture (setup
 * excluded).  The capture is kept out of the timed runs: it costs a write
 * per packet.
 *
 * See bench/README.md; bench/run-tpm2-bench.sh provides the TPM.
 */
#define _XOPEN_SOURCE 700 /* setenv, mkdtemp, realpath, clock_gettime, nanosleep */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this process, all threads (the tabrmd TCTI has a D-Bus thread). */
static double cpu_now(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void setup_for(const BENCH *b, int m, int a, int k, const char *tcti, BENCH_SETUP *s)
{
    s->kind = (BENCH_KIND)k;
    s->tcti = tcti;
    s->key_file = b->algs[a].key_file;
    s->module_path = b->module[k];
    s->no_rm = b->modes[m].no_rm;
    s->msg_len = b->msg_len;
}

/* ---- counting pass: one child process per contender ------------------------ */

/* Lets a resource manager finish what it does after answering (ContextSave, flush). */
static void settle(void)
{
    struct timespec ts = {0, 50 * 1000 * 1000};

    nanosleep(&ts, NULL);
}

static void count_pass(const BENCH *b, int m, int a, int k, BENCH_RESULT *r)
{
    BENCH_SETUP s;
    BENCH_CONTENDER *c = NULL;
    const char *inner = b->modes[m].tcti, *dev = NULL;
    char tcti[1024], path[1024];
    long from, to, dev_from = -1, dev_to = -1;

    if (!b->modes[m].no_rm && b->rm_count_tcti != NULL && b->rm_device_pcap != NULL) {
        inner = b->rm_count_tcti;
        dev = b->rm_device_pcap;
    }
    snprintf(path, sizeof(path), "%s/count-%d-%d-%d.pcap", b->workdir, m, a, k);
    snprintf(tcti, sizeof(tcti), "pcap:%s", inner);
    unlink(path);
    if (setenv("TCTI_PCAP_FILE", path, 1) != 0) {
        snprintf(r->err, sizeof(r->err), "setenv TCTI_PCAP_FILE failed");
        goto end;
    }
    setup_for(b, m, a, k, tcti, &s);
    c = bench_contender_new(&s, r->err, sizeof(r->err));
    if (c == NULL)
        goto end;
    for (int i = 0; i < b->warmup; i++)
        if (!bench_contender_sign(c, r->err, sizeof(r->err)))
            goto end;
    settle();
    from = bench_pcap_size(path);
    if (dev != NULL)
        dev_from = bench_pcap_size(dev);
    for (int i = 0; i < b->count_sigs; i++)
        if (!bench_contender_sign(c, r->err, sizeof(r->err)))
            goto end;
    settle();
    to = bench_pcap_size(path);
    if (dev != NULL)
        dev_to = bench_pcap_size(dev);
    bench_contender_free(c);
    c = NULL;
    if (from < 0 || to < from) {
        snprintf(r->err, sizeof(r->err), "capture %.400s was not written (pcap TCTI missing?)",
                 path);
        goto end;
    }
    if (!bench_pcap_count(path, from, to, &r->cmds, r->err, sizeof(r->err)))
        goto end;
    r->counted = 1;
    r->count_sigs = (unsigned long)b->count_sigs;
    if (dev != NULL && dev_from >= 0 && dev_to >= dev_from)
        r->dev_counted =
            bench_pcap_count(dev, dev_from, dev_to, &r->dev_cmds, r->err, sizeof(r->err));
end:
    bench_contender_free(c);
}

static void run_throughput(BENCH *b, int m, int a, int only);

/*
 * Runs one counting pass of contender k, or (timing) the timed group of
 * contender k or of all contenders (k < 0), in a child process: a provider
 * that crashes then spoils its rows, not the run, and every pass starts from
 * a process that has loaded nothing.  Returns 0 if the child died.
 */
static int in_child(BENCH *b, int m, int a, int k, int timing)
{
    BENCH_RESULT got[BENCH_KIND_MAX];
    size_t want = !timing ? sizeof(got[0]) : sizeof(got);
    int fds[2], status = 0;
    ssize_t n;
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    if (pipe(fds) != 0 || (pid = fork()) < 0) {
        perror("tpm2_bench: pipe/fork");
        exit(1);
    }
    if (pid == 0) {
        close(fds[0]);
        if (!timing) {
            memset(&got[0], 0, sizeof(got[0]));
            count_pass(b, m, a, k, &got[0]);
            n = write(fds[1], &got[0], want);
        } else {
            run_throughput(b, m, a, k);
            n = write(fds[1], b->res[m][a], want);
        }
        _exit(n == (ssize_t)want ? 0 : 3);
    }
    close(fds[1]);
    for (size_t done = 0;;) { /* several KB: a pipe may deliver them in pieces */
        ssize_t got_now = read(fds[0], (char *)got + done, want - done);

        if (got_now < 0 && errno == EINTR)
            continue;
        if (got_now <= 0) {
            n = (ssize_t)done;
            break;
        }
        done += (size_t)got_now;
        if (done == want) {
            n = (ssize_t)done;
            break;
        }
    }
    close(fds[0]);
    waitpid(pid, &status, 0);
    for (int j = 0; j < BENCH_KIND_MAX; j++) {
        BENCH_RESULT *res = &b->res[m][a][j];
        char died[BENCH_ERRLEN];

        if (k >= 0 && j != k)
            continue;
        if (timing && !b->modes[m].kinds[j])
            continue;
        if (n != (ssize_t)want) {
            if (WIFSIGNALED(status))
                snprintf(died, sizeof(died), "process died of signal %d", WTERMSIG(status));
            else
                snprintf(died, sizeof(died), "process exited with status %d", WEXITSTATUS(status));
            if (!timing)
                snprintf(res->count_err, sizeof(res->count_err), "%s", died);
            else
                snprintf(res->err, sizeof(res->err), "%s", died);
            continue;
        }
        if (!timing) {
            const BENCH_RESULT *g = &got[0];

            res->counted = g->counted;
            res->cmds = g->cmds;
            res->dev_counted = g->dev_counted;
            res->dev_cmds = g->dev_cmds;
            res->count_sigs = g->count_sigs;
            if (g->err[0] != '\0')
                snprintf(res->count_err, sizeof(res->count_err), "%s", g->err);
        } else {
            res->ran = got[j].ran;
            res->sigs = got[j].sigs;
            res->secs = got[j].secs;
            res->cpu_secs = got[j].cpu_secs;
            res->nslices = got[j].nslices;
            memcpy(res->slice_rate, got[j].slice_rate, sizeof(res->slice_rate));
            memcpy(res->err, got[j].err, sizeof(res->err));
            res->alone = k >= 0;
        }
    }
    return n == (ssize_t)want;
}

/* ---- throughput: interleaved slices -------------------------------------------- */

static void fail(BENCH_RESULT *r, const char *what, const char *why)
{
    if (r->err[0] == '\0')
        snprintf(r->err, sizeof(r->err), "%s: %s", what, why);
}

static void run_throughput(BENCH *b, int m, int a, int only)
{
    BENCH_CONTENDER *c[BENCH_KIND_MAX] = {0};
    char err[BENCH_ERRLEN];
    int kinds[BENCH_KIND_MAX], nk = 0;
    double slice = b->seconds / b->rounds;

    for (int k = 0; k < BENCH_KIND_MAX; k++) {
        BENCH_RESULT *r = &b->res[m][a][k];
        BENCH_SETUP s;

        if (!b->modes[m].kinds[k] || (only >= 0 && k != only))
            continue;
        /* A rerun alone starts afresh (the parent recorded the group's crash). */
        r->err[0] = '\0';
        r->sigs = 0;
        r->secs = 0;
        r->cpu_secs = 0;
        setup_for(b, m, a, k, b->modes[m].tcti, &s);
        err[0] = '\0';
        c[k] = bench_contender_new(&s, err, sizeof(err));
        if (c[k] == NULL) {
            fail(r, "setup", err);
            continue;
        }
        for (int i = 0; i < b->warmup && c[k] != NULL; i++) {
            if (!bench_contender_sign(c[k], err, sizeof(err))) {
                fail(r, "warm-up", err);
                bench_contender_free(c[k]);
                c[k] = NULL;
            }
        }
        if (c[k] != NULL && !bench_contender_verify_last(c[k], err, sizeof(err))) {
            fail(r, "signature check", err);
            bench_contender_free(c[k]);
            c[k] = NULL;
        }
        if (c[k] != NULL && !bench_contender_suspend(c[k], err, sizeof(err))) {
            fail(r, "suspend", err);
            bench_contender_free(c[k]);
            c[k] = NULL;
        }
        if (c[k] != NULL)
            kinds[nk++] = k;
    }

    for (int round = 0; round < b->rounds; round++) {
        for (int j = 0; j < nk; j++) {
            int k = kinds[(j + round) % nk];
            BENCH_RESULT *r = &b->res[m][a][k];
            unsigned long sigs = 0;
            double t0, t1, deadline, cpu0;

            if (c[k] == NULL)
                continue;
            if (!bench_contender_resume(c[k], err, sizeof(err))) {
                fail(r, "resume", err);
                goto drop;
            }
            cpu0 = cpu_now();
            t0 = now();
            deadline = t0 + slice;
            do {
                if (!bench_contender_sign(c[k], err, sizeof(err))) {
                    fail(r, "signing", err);
                    goto drop;
                }
                sigs++;
                t1 = now();
            } while (t1 < deadline);
            r->sigs += sigs;
            r->secs += t1 - t0;
            r->cpu_secs += cpu_now() - cpu0;
            r->slice_rate[round] = (float)(sigs / (t1 - t0));
            r->nslices = round + 1;
            if (!bench_contender_suspend(c[k], err, sizeof(err))) {
                fail(r, "suspend", err);
                goto drop;
            }
            continue;
        drop:
            bench_contender_free(c[k]);
            c[k] = NULL;
        }
    }
    for (int j = 0; j < nk; j++) {
        int k = kinds[j];

        if (c[k] != NULL)
            b->res[m][a][k].ran = b->res[m][a][k].err[0] == '\0';
        bench_contender_free(c[k]);
    }
}

/* ---- main ---------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tpm2_bench [options]\n"
            "  --rm-tcti TCTI        TCTI through a resource manager (e.g. tabrmd:bus_name=N,"
            "bus_type=session)\n"
            "  --direct-tcti TCTI    TCTI of the plain TPM socket (e.g. "
            "swtpm:host=127.0.0.1,port=P)\n"
            "  --ec FILE             EC P-256 TSS2 key file\n"
            "  --rsa FILE            RSA-2048 TSS2 key file\n"
            "  --hwkey-module PATH   hwkey.so (default .libs/hwkey.so)\n"
            "  --tpm2-module PATH    tpm2-openssl's module (default "
            "/usr/lib/x86_64-linux-gnu/ossl-modules/tpm2.so)\n"
            "  --direct-tpm2-openssl also run tpm2-openssl on the plain socket\n"
            "  --rm-count-tcti TCTI  a second resource manager used for counting, whose own\n"
            "                        TCTI is pcap:...; with --rm-device-pcap FILE (its capture)\n"
            "                        the commands reaching the TPM behind it are counted too\n"
            "  -t SECONDS            time per contender per (mode, key) (default 5)\n"
            "  --rounds N            interleaved slices per contender (default: slices of\n"
            "                        0.25 s); ratios are medians of the rounds' paired rates\n"
            "  --count N             signatures counted for commands/signature (default 50)\n"
            "  --warmup N            signatures before measuring (default 5)\n"
            "  --msg-len BYTES       message signed each time (default 130, about a TLS 1.3\n"
            "                        CertificateVerify)\n"
            "  --quick               -t 1 --count 10 --warmup 2\n"
            "  --workdir DIR         where captures go (default: a new directory in /tmp)\n"
            "  --strict              exit 1 when a target is missed\n"
            "At least one TCTI and one key file are needed.\n");
}

int main(int argc, char **argv)
{
    static BENCH b;
    static const struct option longopts[] = {
        {"rm-tcti", required_argument, NULL, 'R'},
        {"direct-tcti", required_argument, NULL, 'D'},
        {"ec", required_argument, NULL, 'e'},
        {"rsa", required_argument, NULL, 'r'},
        {"hwkey-module", required_argument, NULL, 'H'},
        {"tpm2-module", required_argument, NULL, 'T'},
        {"direct-tpm2-openssl", no_argument, NULL, 'O'},
        {"rm-count-tcti", required_argument, NULL, 'C'},
        {"rm-device-pcap", required_argument, NULL, 'P'},
        {"rounds", required_argument, NULL, 'n'},
        {"count", required_argument, NULL, 'c'},
        {"warmup", required_argument, NULL, 'w'},
        {"msg-len", required_argument, NULL, 'm'},
        {"quick", no_argument, NULL, 'q'},
        {"workdir", required_argument, NULL, 'W'},
        {"strict", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *rm_tcti = NULL, *direct_tcti = NULL, *ec = NULL, *rsa = NULL;
    char tmpl[] = "/tmp/tpm2_bench.XXXXXX";
    static char module_abs[BENCH_KIND_MAX][PATH_MAX];
    int opt, direct_t2 = 0, own_workdir = 0, failures = 0, misses;

    b.seconds = 5;
    b.rounds = 0; /* from -t */
    b.count_sigs = 50;
    b.warmup = 5;
    b.msg_len = 130;
    b.module[BENCH_HWKEY] = ".libs/hwkey.so";
    b.module[BENCH_TPM2_OPENSSL] = "/usr/lib/x86_64-linux-gnu/ossl-modules/tpm2.so";
    while ((opt = getopt_long(argc, argv, "t:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'R':
            rm_tcti = optarg;
            break;
        case 'D':
            direct_tcti = optarg;
            break;
        case 'e':
            ec = optarg;
            break;
        case 'r':
            rsa = optarg;
            break;
        case 'H':
            b.module[BENCH_HWKEY] = optarg;
            break;
        case 'T':
            b.module[BENCH_TPM2_OPENSSL] = optarg;
            break;
        case 'O':
            direct_t2 = 1;
            break;
        case 'C':
            b.rm_count_tcti = optarg;
            break;
        case 'P':
            b.rm_device_pcap = optarg;
            break;
        case 't':
            b.seconds = atof(optarg);
            break;
        case 'n':
            b.rounds = atoi(optarg);
            break;
        case 'c':
            b.count_sigs = atoi(optarg);
            break;
        case 'w':
            b.warmup = atoi(optarg);
            break;
        case 'm':
            b.msg_len = (size_t)strtoul(optarg, NULL, 10);
            break;
        case 'q':
            b.seconds = 1;
            b.count_sigs = 10;
            b.warmup = 2;
            break;
        case 'W':
            b.workdir = optarg;
            break;
        case 's':
            b.strict = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || (rm_tcti == NULL && direct_tcti == NULL) || (ec == NULL && rsa == NULL) ||
        b.seconds <= 0 || b.rounds < 0 || b.rounds > BENCH_MAX_ROUNDS || b.count_sigs < 1 ||
        b.warmup < 0 || b.msg_len > 1024 * 1024) {
        usage(stderr);
        return 2;
    }
    if (b.rounds == 0) {
        b.rounds = (int)(b.seconds / BENCH_SLICE_SECONDS + 0.5);
        b.rounds = b.rounds < 2 ? 2 : b.rounds > BENCH_MAX_ROUNDS ? BENCH_MAX_ROUNDS : b.rounds;
    }
    /* OpenSSL resolves a relative module name against its modules directory. */
    for (int k = BENCH_HWKEY; k < BENCH_KIND_MAX; k++) {
        if (b.module[k][0] != '/') {
            if (realpath(b.module[k], module_abs[k]) == NULL) {
                fprintf(stderr, "tpm2_bench: %s: %s\n", b.module[k], strerror(errno));
                return 2;
            }
            b.module[k] = module_abs[k];
        }
    }
    if (rm_tcti != NULL)
        b.modes[b.nmodes++] = (BENCH_MODE){"rm", rm_tcti, 0, {1, 1, 1}};
    if (direct_tcti != NULL)
        b.modes[b.nmodes++] = (BENCH_MODE){"no-rm", direct_tcti, 1, {1, 1, direct_t2}};
    if (ec != NULL)
        b.algs[b.nalgs++] = (BENCH_ALG){"EC P-256", ec};
    if (rsa != NULL)
        b.algs[b.nalgs++] = (BENCH_ALG){"RSA-2048", rsa};
    if (b.workdir == NULL) {
        b.workdir = mkdtemp(tmpl);
        own_workdir = 1;
        if (b.workdir == NULL) {
            perror("mkdtemp");
            return 1;
        }
    }

    printf("tpm2_bench: %.1f s per contender per key and mode in %d interleaved slices; "
           "commands counted over %d signatures after %d warm-up; %zu-byte message, SHA-256\n",
           b.seconds, b.rounds, b.count_sigs, b.warmup, b.msg_len);
    for (int m = 0; m < b.nmodes; m++)
        printf("  %-6s TCTI %s\n", b.modes[m].label, b.modes[m].tcti);
    printf("  hwkey        %s\n  tpm2-openssl %s\n", b.module[BENCH_HWKEY],
           b.module[BENCH_TPM2_OPENSSL]);
    fflush(stdout);

    /* Counting first, in children, while this process has loaded nothing. */
    for (int m = 0; m < b.nmodes; m++)
        for (int a = 0; a < b.nalgs; a++)
            for (int k = 0; k < BENCH_KIND_MAX; k++)
                if (b.modes[m].kinds[k]) {
                    fprintf(stderr, "counting  %-6s %-9s %s\n", b.modes[m].label, b.algs[a].label,
                            bench_kind_names[k]);
                    in_child(&b, m, a, k, 0);
                }
    for (int m = 0; m < b.nmodes; m++)
        for (int a = 0; a < b.nalgs; a++) {
            fprintf(stderr, "timing    %-6s %-9s\n", b.modes[m].label, b.algs[a].label);
            if (in_child(&b, m, a, -1, 1))
                continue;
            /* Someone crashed the group: time each contender alone to find out who. */
            fprintf(stderr, "timing    %-6s %-9s: the group crashed, timing each alone\n",
                    b.modes[m].label, b.algs[a].label);
            for (int k = 0; k < BENCH_KIND_MAX; k++)
                if (b.modes[m].kinds[k])
                    in_child(&b, m, a, k, 1);
        }

    misses = bench_report(&b);
    for (int m = 0; m < b.nmodes; m++)
        for (int a = 0; a < b.nalgs; a++)
            for (int k = 0; k < BENCH_KIND_MAX; k++)
                failures += b.modes[m].kinds[k] &&
                            (b.res[m][a][k].err[0] != '\0' || b.res[m][a][k].count_err[0] != '\0');
    if (own_workdir) {
        for (int m = 0; m < b.nmodes; m++)
            for (int a = 0; a < b.nalgs; a++)
                for (int k = 0; k < BENCH_KIND_MAX; k++) {
                    char path[1024];

                    snprintf(path, sizeof(path), "%s/count-%d-%d-%d.pcap", b.workdir, m, a, k);
                    unlink(path);
                }
        rmdir(b.workdir);
    }
    return failures ? 1 : (b.strict && misses ? 1 : 0);
}
