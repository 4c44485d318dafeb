/*
 * pkcs11_sign_bench: PKCS#11 signatures per second through hwkey.so against
 * the token's own limit, on the same token key, side by side in one run
 * (bench/README.md, "PKCS#11").  Bench code may include the PKCS#11 header:
 * it is not part of the provider.
 */
#ifndef HWKEY_PKCS11_BENCH_H
#define HWKEY_PKCS11_BENCH_H

#include <stddef.h>

#define P11B_MAX_THREADS 8
#define P11B_ERRLEN 384
#define P11B_INFOLEN 128
#define P11B_MAX_SIG 512 /* RSA up to 4096 bits */
#define P11B_MAX_PUB 1024
#define P11B_DIGEST_LEN 32 /* SHA-256 */

typedef enum {
    P11B_DIRECT = 0, /* C_SignInit + C_Sign on a precomputed digest: the token's limit */
    P11B_DIGESTSIGN, /* hwkey: EVP_DigestSignInit_ex + EVP_DigestSign per signature */
    P11B_PKEYSIGN,   /* hwkey: EVP_PKEY_sign on the digest, context initialised once */
    P11B_KIND_MAX
} P11B_KIND;

extern const char *const p11b_kind_names[P11B_KIND_MAX];

/* What one contender needs; it lives in its own child process. */
typedef struct {
    P11B_KIND kind;
    int rsa;              /* 0: EC P-256 (CKM_ECDSA); 1: RSA (CKM_RSA_PKCS, SHA-256 DigestInfo) */
    const char *module;   /* PKCS#11 module path (direct) */
    const char *token;    /* token label (direct) */
    const char *label;    /* key object label (direct) */
    const char *pin;      /* user PIN (direct) */
    const char *provider; /* hwkey.so path (hwkey) */
    const char *key_ref;  /* PEM reference file or pkcs11: URI (hwkey) */
    const unsigned char *msg;
    size_t msg_len;
    const unsigned char *digest; /* SHA-256 of msg */
    int max_threads;             /* sessions / contexts to prepare */
} P11B_SETUP;

typedef struct p11b_contender P11B_CONTENDER;

/*
 * Set up: load the module or provider, log in / load the key, prepare one
 * session or context per thread.  info gets a one-line description (module
 * version, key size).  NULL with err filled on failure.
 */
P11B_CONTENDER *p11b_contender_new(const P11B_SETUP *s, char *info, size_t infolen, char *err,
                                   size_t errlen);
/*
 * One signature from thread slot `thread` (< max_threads); threads use
 * different slots concurrently.  sig must hold P11B_MAX_SIG bytes.
 * 1 on success, 0 with err filled.
 */
int p11b_contender_sign(P11B_CONTENDER *c, int thread, unsigned char *sig, size_t *siglen,
                        char *err, size_t errlen);
/* DER SubjectPublicKeyInfo of the hwkey key (hwkey kinds only); 0 if none. */
int p11b_contender_pubkey(P11B_CONTENDER *c, unsigned char *der, size_t *len);

/* ---- pkcs11_sign_bench.c / pkcs11_bench_report.c: the run and its results ---- */

#define P11B_NALGS 2 /* EC P-256, RSA-2048 */
#define P11B_NTHR 2  /* 1 and 2 threads */
#define P11B_MAX_ROUNDS 200
#define P11B_MAX_MSG 65536
#define P11B_TARGET_VS_DIRECT 0.9 /* hwkey >= 0.9x the direct loop, 1 thread */
#define P11B_TARGET_SCALING 1.6   /* hwkey 2 threads >= 1.6x 1 thread */
/* Other processes busier than this (cores) during the 2-thread slices: no scaling verdict. */
#define P11B_BUSY_LIMIT 0.3

extern const int p11b_thread_counts[P11B_NTHR];
extern const char *const p11b_alg_names[P11B_NALGS];

/* One (key, contender, thread count): its slices summed, and each round's rate. */
typedef struct {
    unsigned long sigs;
    double secs;
    double cpu;    /* contender's CPU seconds */
    double others; /* CPU seconds the rest of the machine used meanwhile */
    int nrates;
    double rate[P11B_MAX_ROUNDS];
    char err[P11B_ERRLEN];
} P11B_CELL;

typedef struct {
    const char *module, *provider, *token, *pin_file;
    const char *label[P11B_NALGS], *key_ref[P11B_NALGS];
    int run_alg[P11B_NALGS];
    int run_kind[P11B_KIND_MAX];
    double seconds, slice;
    size_t msg_len;
    int strict;
    char pin[256];
    unsigned char msg[P11B_MAX_MSG];
    unsigned char digest[P11B_DIGEST_LEN];
    char info[P11B_KIND_MAX][P11B_INFOLEN];
    P11B_CELL cell[P11B_NALGS][P11B_KIND_MAX][P11B_NTHR];
} P11B_BENCH;

/* Prints the tables; returns how many targets were missed. */
int p11b_report(const P11B_BENCH *b);
/* Prints one line per failed contender; returns 1 if any failed. */
int p11b_report_failures(const P11B_BENCH *b);

#endif
