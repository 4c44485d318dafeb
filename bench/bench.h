/*
 * tpm2_bench: TPM signature throughput and TPM commands per signature,
 * measured side by side in one run for
 *   bare          an ESAPI loop of TPM2_Sign on a key loaded once (the TPM's limit)
 *   hwkey         EVP_DigestSign through hwkey.so (loaded by path, own libctx)
 *   tpm2-openssl  EVP_DigestSign through Debian's tpm2.so, same key file
 *
 * Bench code may use tss2 headers directly (it is not part of the provider).
 */
#ifndef HWKEY_BENCH_H
#define HWKEY_BENCH_H

#include <stddef.h>
#include <stdint.h>

typedef enum { BENCH_BARE = 0, BENCH_HWKEY, BENCH_TPM2_OPENSSL, BENCH_KIND_MAX } BENCH_KIND;

extern const char *const bench_kind_names[BENCH_KIND_MAX];

/* What a contender needs to set itself up. */
typedef struct {
    BENCH_KIND kind;
    const char *tcti;        /* TCTI string this contender talks through */
    const char *key_file;    /* TSS2 PRIVATE KEY PEM */
    const char *module_path; /* provider module (hwkey, tpm2-openssl) */
    int no_rm;               /* 1: plain TPM socket, hold no transient object between slices */
    size_t msg_len;          /* bytes signed per signature */
} BENCH_SETUP;

typedef struct bench_contender BENCH_CONTENDER;

/*
 * Create a contender: connect, load the key, nothing signed yet.  On failure
 * returns NULL and writes one line naming what failed into err.
 */
BENCH_CONTENDER *bench_contender_new(const BENCH_SETUP *setup, char *err, size_t errlen);
/* One signature over the benchmark message.  1 on success, 0 (err filled) on failure. */
int bench_contender_sign(BENCH_CONTENDER *c, char *err, size_t errlen);
/*
 * Before and after a time slice in which other contenders run: with no
 * resource manager, the bare contender swaps its key out of the TPM's three
 * transient slots (ContextSave + FlushContext / ContextLoad), so every
 * contender finds the TPM as it would find it alone.  No-ops otherwise.
 */
int bench_contender_suspend(BENCH_CONTENDER *c, char *err, size_t errlen);
int bench_contender_resume(BENCH_CONTENDER *c, char *err, size_t errlen);
/* Verify the last signature in software with the key's public half (sanity). */
int bench_contender_verify_last(BENCH_CONTENDER *c, char *err, size_t errlen);
void bench_contender_free(BENCH_CONTENDER *c);

/* ---- bench_pcap.c: counting TPM commands in a pcap-ng capture ---------- */

#define BENCH_CC_SLOTS 16

typedef struct {
    unsigned long commands;  /* host -> TPM packets */
    unsigned long responses; /* TPM -> host packets */
    int ncodes;
    uint32_t code[BENCH_CC_SLOTS]; /* distinct command codes, first seen first */
    unsigned long code_count[BENCH_CC_SLOTS];
    unsigned long other_codes; /* commands beyond BENCH_CC_SLOTS codes */
} BENCH_CMD_COUNT;

/*
 * Count the TPM commands recorded by the pcap TCTI in bytes [from, to) of
 * the capture file (offsets taken with bench_pcap_size() between
 * signatures: the TCTI writes each block with write(2), unbuffered).
 * 1 on success, 0 with err filled.
 */
int bench_pcap_count(const char *path, long from, long to, BENCH_CMD_COUNT *out, char *err,
                     size_t errlen);
long bench_pcap_size(const char *path);
/* "TPM2_Sign" style name of a command code, or NULL if not in the table. */
const char *bench_cc_name(uint32_t cc);

/* ---- tpm2_bench.c / bench_report.c: the run and its results --------------- */

#define BENCH_MAX_MODES 2
#define BENCH_MAX_ALGS 2
#define BENCH_ERRLEN 512
#define BENCH_MAX_ROUNDS 400
#define BENCH_SLICE_SECONDS 0.25 /* default slice: short, so bursts of load hit all alike */

#define BENCH_TARGET_VS_BARE 0.9
#define BENCH_TARGET_VS_TPM2_OPENSSL 1.2

typedef struct {
    const char *label;
    const char *tcti;
    int no_rm;
    int kinds[BENCH_KIND_MAX]; /* contenders that run in this mode */
} BENCH_MODE;

typedef struct {
    const char *label;
    const char *key_file;
} BENCH_ALG;

typedef struct {
    int ran;     /* throughput measured */
    int counted; /* commands counted */
    unsigned long sigs;
    double secs;
    double cpu_secs; /* this process's CPU time (all threads) while signing */
    BENCH_CMD_COUNT cmds;
    int dev_counted; /* behind the resource manager too */
    BENCH_CMD_COUNT dev_cmds;
    unsigned long count_sigs;
    char err[BENCH_ERRLEN];       /* first failure of the timed run, empty if none */
    char count_err[BENCH_ERRLEN]; /* failure of the counting pass */
    int alone;                    /* timed alone, not interleaved (the group crashed) */
    int nslices;                  /* slice_rate[round]: signatures/s in that round's slice */
    float slice_rate[BENCH_MAX_ROUNDS];
} BENCH_RESULT;

typedef struct {
    double seconds; /* per contender, per (mode, key) */
    int rounds;
    int warmup;
    int count_sigs;
    size_t msg_len;
    int strict;
    const char *module[BENCH_KIND_MAX];
    const char *workdir;
    /* Optional: a second resource manager whose own TCTI is pcap (driver-started), so the
     * commands that really reach the TPM behind it are counted too. */
    const char *rm_count_tcti;
    const char *rm_device_pcap;
    BENCH_MODE modes[BENCH_MAX_MODES];
    int nmodes;
    BENCH_ALG algs[BENCH_MAX_ALGS];
    int nalgs;
    BENCH_RESULT res[BENCH_MAX_MODES][BENCH_MAX_ALGS][BENCH_KIND_MAX];
} BENCH;

/* Prints both tables; returns the number of targets missed (through the RM). */
int bench_report(const BENCH *b);

#endif
