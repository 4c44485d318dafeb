/*
 * pkcs11_sign_bench's tables: signatures per second, paired ratios,
 * scaling, the CPU each contender used, and the verdict on the targets.
 */
#include "pkcs11_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const int p11b_thread_counts[P11B_NTHR] = {1, 2};
const char *const p11b_alg_names[P11B_NALGS] = {"EC P-256", "RSA-2048"};

static double cell_rate(const P11B_CELL *c)
{
    return c->err[0] == '\0' && c->secs > 0 ? (double)c->sigs / c->secs : -1;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;

    return a < b ? -1 : a > b;
}

/* Median over rounds of num's rate / den's rate in the same round; -1 if unknown. */
static double paired_ratio(const P11B_CELL *num, const P11B_CELL *den)
{
    double q[P11B_MAX_ROUNDS];
    int n = 0;

    if (num->err[0] != '\0' || den->err[0] != '\0')
        return -1;
    for (int r = 0; r < num->nrates && r < den->nrates; r++)
        if (den->rate[r] > 0)
            q[n++] = num->rate[r] / den->rate[r];
    if (n == 0)
        return -1;
    qsort(q, (size_t)n, sizeof(q[0]), cmp_double);
    return n % 2 ? q[n / 2] : (q[n / 2 - 1] + q[n / 2]) / 2;
}

static void print_num(double v, int width, const char *suffix, int ran)
{
    if (!ran)
        printf(" %*s", width, "-");
    else if (v < 0)
        printf(" %*s", width, "FAILED");
    else
        printf(" %*.*f%s", width - (int)strlen(suffix), suffix[0] ? 2 : 0, v, suffix);
}

int p11b_report(const P11B_BENCH *b)
{
    int missed = 0;

    printf("\nPKCS#11 signatures per second (%.1f s per contender and case, %d-byte message, "
           "SHA-256; ratios: median of rounds)\n",
           b->seconds, (int)b->msg_len);
    printf("%-9s %3s", "key", "thr");
    for (int k = 0; k < P11B_KIND_MAX; k++)
        printf(" %17s", p11b_kind_names[k]);
    printf(" %13s %13s\n", "DigestSign/", "PKEY_sign/");
    printf("%-9s %3s %17s %17s %17s %13s %13s\n", "", "", "", "", "", "direct", "direct");
    for (int a = 0; a < P11B_NALGS; a++) {
        if (!b->run_alg[a])
            continue;
        for (int t = 0; t < P11B_NTHR; t++) {
            printf("%-9s %3d", p11b_alg_names[a], p11b_thread_counts[t]);
            for (int k = 0; k < P11B_KIND_MAX; k++)
                print_num(cell_rate(&b->cell[a][k][t]), 17, "", b->run_kind[k]);
            for (int k = P11B_DIGESTSIGN; k < P11B_KIND_MAX; k++)
                print_num(paired_ratio(&b->cell[a][k][t], &b->cell[a][P11B_DIRECT][t]), 13, "x",
                          b->run_kind[k] && b->run_kind[P11B_DIRECT]);
            printf("\n");
        }
        printf("%-9s %3s", p11b_alg_names[a], "2/1");
        for (int k = 0; k < P11B_KIND_MAX; k++)
            print_num(paired_ratio(&b->cell[a][k][1], &b->cell[a][k][0]), 17, "x", b->run_kind[k]);
        printf("   (scaling)\n");
    }
    printf("\nCPU cores busy during the slices (contender's CPU time / wall time; in brackets\n"
           "the rest of the machine, from /proc/stat: other work takes the 2nd core first)\n");
    for (int a = 0; a < P11B_NALGS; a++)
        for (int t = 0; b->run_alg[a] && t < P11B_NTHR; t++) {
            printf("%-9s %3d", p11b_alg_names[a], p11b_thread_counts[t]);
            for (int k = 0; k < P11B_KIND_MAX; k++) {
                const P11B_CELL *c = &b->cell[a][k][t];
                char buf[32] = "-";

                if (c->secs > 0)
                    snprintf(buf, sizeof(buf), "%.2f [%.2f]", c->cpu / c->secs,
                             c->others / c->secs);
                printf(" %17s", buf);
            }
            printf("\n");
        }
    printf("\ntargets (hwkey = EVP_DigestSign, as libssl signs):\n");
    for (int a = 0; a < P11B_NALGS; a++) {
        const P11B_CELL *h = b->cell[a][P11B_DIGESTSIGN], *d = b->cell[a][P11B_DIRECT];
        double vs = paired_ratio(&h[0], &d[0]), sc = paired_ratio(&h[1], &h[0]);
        double dsc = paired_ratio(&d[1], &d[0]);
        double busy = h[1].secs > 0 ? h[1].others / h[1].secs : 0;

        if (!b->run_alg[a] || !b->run_kind[P11B_DIGESTSIGN] || !b->run_kind[P11B_DIRECT])
            continue;
        printf("  %-9s hwkey/direct, 1 thread     >= %.2fx: ", p11b_alg_names[a],
               P11B_TARGET_VS_DIRECT);
        if (vs < 0)
            printf("FAILED\n");
        else
            printf("%.2fx  %s\n", vs, vs >= P11B_TARGET_VS_DIRECT ? "PASS" : "MISS");
        printf("  %-9s hwkey 2 threads/1 thread   >= %.2fx: ", p11b_alg_names[a],
               P11B_TARGET_SCALING);
        if (sc < 0) {
            printf("FAILED\n");
        } else if (busy >= P11B_BUSY_LIMIT) {
            /* The second thread had no core of its own: no verdict, whatever the figure. */
            printf("%.2fx  UNMEASURED (other processes used %.2f cores meanwhile)\n", sc, busy);
            sc = P11B_TARGET_SCALING;
        } else {
            printf("%.2fx  %s", sc, sc >= P11B_TARGET_SCALING ? "PASS" : "MISS");
            if (dsc > 0)
                printf("  (direct C_Sign: %.2fx%s)", dsc,
                       sc < P11B_TARGET_SCALING && dsc < P11B_TARGET_SCALING ? ": the token caps it"
                                                                             : "");
            printf("\n");
        }
        missed += (vs < P11B_TARGET_VS_DIRECT) + (sc < P11B_TARGET_SCALING);
    }
    return missed;
}

int p11b_report_failures(const P11B_BENCH *b)
{
    int failed = 0;

    for (int a = 0; a < P11B_NALGS; a++)
        for (int k = 0; k < P11B_KIND_MAX; k++)
            for (int t = 0; t < P11B_NTHR; t++) {
                const char *e = b->cell[a][k][t].err;

                if (!b->run_alg[a] || !b->run_kind[k] || e[0] == '\0' ||
                    (t > 0 && strcmp(e, b->cell[a][k][0].err) == 0))
                    continue;
                printf("FAILED: %s, %s, %d thread(s): %s\n", p11b_alg_names[a], p11b_kind_names[k],
                       p11b_thread_counts[t], e);
                failed = 1;
            }
    return failed;
}
