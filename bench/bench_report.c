/*
 * tpm2_bench's report: the per-contender table and the ratios against the
 * targets of issue 2 (hwkey >= 0.9x the bare loop, >= 1.2x tpm2-openssl, one
 * TPM command per signature in steady state, through a resource manager).
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"

/* ---- report --------------------------------------------------------------- */

static double rate(const BENCH_RESULT *r)
{
    return r->ran && r->secs > 0 ? (double)r->sigs / r->secs : 0.0;
}

static double per_sig(const BENCH_RESULT *r, const BENCH_CMD_COUNT *c)
{
    return r->count_sigs > 0 ? (double)c->commands / r->count_sigs : 0.0;
}

static void print_commands(const BENCH_RESULT *r, const BENCH_CMD_COUNT *c)
{
    for (int i = 0; i < c->ncodes; i++) {
        const char *name = bench_cc_name(c->code[i]);
        double n = (double)c->code_count[i] / r->count_sigs;

        if (name != NULL)
            printf("%s%s %.3g", i ? ", " : "", name, n);
        else
            printf("%sCC 0x%x %.3g", i ? ", " : "", (unsigned)c->code[i], n);
    }
    if (c->other_codes)
        printf(", %lu more", c->other_codes);
}

/* Returns the number of missed targets. */
int bench_report(const BENCH *b)
{
    int misses = 0;

    printf("\n%-6s %-9s %-13s %8s %9s %8s  %s\n", "mode", "key", "contender", "sig/s", "cmds/sig",
           "at TPM", "commands per signature, steady state [at the TPM, behind the RM]");
    for (int m = 0; m < b->nmodes; m++) {
        for (int a = 0; a < b->nalgs; a++) {
            for (int k = 0; k < BENCH_KIND_MAX; k++) {
                const BENCH_RESULT *r = &b->res[m][a][k];

                if (!b->modes[m].kinds[k])
                    continue;
                printf("%-6s %-9s %-13s ", b->modes[m].label, b->algs[a].label,
                       bench_kind_names[k]);
                if (r->ran)
                    printf("%8.1f ", rate(r));
                else
                    printf("%8s ", "-");
                if (r->counted) {
                    printf("%9.2f ", per_sig(r, &r->cmds));
                    if (r->dev_counted)
                        printf("%8.2f  ", per_sig(r, &r->dev_cmds));
                    else if (b->modes[m].no_rm) /* no RM: the client talks to the TPM */
                        printf("%8.2f  ", per_sig(r, &r->cmds));
                    else
                        printf("%8s  ", "-");
                    print_commands(r, &r->cmds);
                    if (r->dev_counted) {
                        printf(" [");
                        print_commands(r, &r->dev_cmds);
                        printf("]");
                    }
                    printf("  ");
                } else {
                    printf("%9s %8s  ", "-", "-");
                }
                if (r->alone && r->ran)
                    printf("(timed alone: its group crashed)  ");
                if (r->err[0] != '\0')
                    printf("FAILED: %s  ", r->err);
                if (r->count_err[0] != '\0' && strcmp(r->count_err, r->err) != 0)
                    printf("counting FAILED: %s", r->count_err);
                printf("\n");
            }
        }
    }

    printf("\n%-6s %-9s %-24s %-28s %s\n", "mode", "key", "hwkey/bare (>= 0.9x)",
           "hwkey/tpm2-openssl (>= 1.2x)", "hwkey cmds/sig (= 1)");
    for (int m = 0; m < b->nmodes; m++) {
        /* The targets are defined for a resource manager; without one the
         * contract (ARCHITECTURE.md §7) requires load-use-flush instead. */
        int rm = !b->modes[m].no_rm;

        for (int a = 0; a < b->nalgs; a++) {
            const BENCH_RESULT *hw = &b->res[m][a][BENCH_HWKEY];
            const BENCH_RESULT *bare = &b->res[m][a][BENCH_BARE];
            const BENCH_RESULT *t2 = &b->res[m][a][BENCH_TPM2_OPENSSL];
            char col[3][64];

            if (hw->ran && bare->ran) {
                double x = rate(hw) / rate(bare);
                int pass = x >= TARGET_VS_BARE;

                misses += rm && !pass;
                snprintf(col[0], sizeof(col[0]), "%.2fx %s", x,
                         rm ? (pass ? "PASS" : "MISS") : "(info)");
            } else {
                snprintf(col[0], sizeof(col[0]), "-");
                misses += rm;
            }
            if (hw->ran && t2->ran) {
                double x = rate(hw) / rate(t2);
                int pass = x >= TARGET_VS_TPM2_OPENSSL;

                misses += rm && !pass;
                snprintf(col[1], sizeof(col[1]), "%.2fx %s", x,
                         rm ? (pass ? "PASS" : "MISS") : "(info)");
            } else {
                snprintf(col[1], sizeof(col[1]), "-");
                misses += rm && b->modes[m].kinds[BENCH_TPM2_OPENSSL];
            }
            if (hw->counted) {
                /* Steady state: exactly count_sigs commands for count_sigs signatures. */
                int pass = hw->cmds.commands == hw->count_sigs;

                misses += rm && !pass;
                snprintf(col[2], sizeof(col[2]), "%.2f %s", per_sig(hw, &hw->cmds),
                         rm ? (pass ? "PASS" : "MISS") : "(info)");
            } else {
                snprintf(col[2], sizeof(col[2]), "-");
                misses += rm;
            }
            printf("%-6s %-9s %-24s %-28s %s\n", b->modes[m].label, b->algs[a].label, col[0],
                   col[1], col[2]);
        }
    }
    printf("\n%s: targets apply through the resource manager; without one hwkey must not keep\n"
           "a transient object loaded between calls (ARCHITECTURE.md section 7), figures are "
           "informative.\n",
           "no-rm");
    printf("Verdict: %s\n", misses == 0 ? "all targets PASS" : "some targets MISS");
    return misses;
}
