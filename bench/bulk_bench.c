/*
 * Bulk cipher throughput: hwkey's AES-NI AES-256-GCM (src/bulk) against the
 * OpenSSL default provider's AES-256-GCM, side by side in one run, for 1 KiB,
 * 16 KiB and 1 MiB buffers, each of hwkey's cores this CPU has (128-bit
 * AES-NI, 256-bit VAES) forced in turn.  Each round times both for the same wall-clock slice,
 * alternating, so a noisy machine moves both numbers alike; the ratio is the
 * verdict.  Usage: bulk_bench [SECONDS_PER_SIDE (default 1)] [ROUNDS (default 3)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "bulk/bulk_gcm.h"

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    HWKEY_BULK_GCM *g;
    EVP_CIPHER_CTX *ctx;
    EVP_CIPHER *cipher;
    unsigned char key[32], iv[12], tag[16];
    unsigned char *in, *out;
    size_t len;
} BENCH;

static int one_hwkey(BENCH *b)
{
    b->iv[11]++;
    return hwkey_bulk_gcm_encrypt(b->g, b->iv, b->iv, 12, b->in, b->out, b->len, b->tag);
}

static int one_openssl(BENCH *b)
{
    int n = 0, m = 0;

    b->iv[11]++;
    return EVP_EncryptInit_ex2(b->ctx, NULL, NULL, b->iv, NULL) &&
           EVP_EncryptUpdate(b->ctx, NULL, &n, b->iv, 12) &&
           EVP_EncryptUpdate(b->ctx, b->out, &n, b->in, (int)b->len) &&
           EVP_EncryptFinal_ex(b->ctx, b->out + n, &m) &&
           EVP_CIPHER_CTX_ctrl(b->ctx, EVP_CTRL_GCM_GET_TAG, 16, b->tag);
}

/* MB/s (10^6 bytes) over at least secs seconds. */
static double run(BENCH *b, int (*fn)(BENCH *), double secs)
{
    double t0 = now(), t;
    unsigned long n = 0;

    do {
        for (int i = 0; i < 16; i++, n++)
            if (!fn(b)) {
                ERR_print_errors_fp(stderr);
                exit(1);
            }
        t = now() - t0;
    } while (t < secs);
    return (double)n * (double)b->len / t / 1e6;
}

int main(int argc, char **argv)
{
    static const size_t sizes[] = {1024, 16 * 1024, 1024 * 1024};
    static const char *const size_names[] = {"1 KiB", "16 KiB", "1 MiB"};
    static const int impls[] = {HWKEY_BULK_IMPL_AESNI, HWKEY_BULK_IMPL_VAES};
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    int avail[2];
    BENCH b;

    memset(&b, 0, sizeof(b));
    if (!hwkey_bulk_cpu_ok()) {
        fprintf(stderr, "bulk_bench: this CPU lacks AES-NI/PCLMULQDQ\n");
        return 77;
    }
    if (RAND_bytes(b.key, 32) != 1 || (b.g = hwkey_bulk_gcm_new(b.key)) == NULL ||
        (b.ctx = EVP_CIPHER_CTX_new()) == NULL ||
        (b.cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", "provider=default")) == NULL ||
        !EVP_EncryptInit_ex2(b.ctx, b.cipher, b.key, NULL, NULL)) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    for (int i = 0; i < 2; i++)
        avail[i] = hwkey_bulk_impl_available(impls[i]);
    printf("AES-256-GCM encrypt (12-byte AAD), %d round(s) of %.1f s per side; MB/s = 10^6 B/s\n"
           "hwkey_bulk_gcm_new() picks: %s\n",
           rounds, secs, hwkey_bulk_impl_name(hwkey_bulk_gcm_get_impl(b.g)));
    printf("%-7s %10s %10s %16s %8s %8s\n", "buffer", "AES-NI", "VAES-256", "OpenSSL default",
           "ratio", "ratio");
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        double hw[2] = {0, 0}, os = 0;

        b.len = sizes[s];
        b.in = calloc(1, b.len);
        b.out = malloc(b.len);
        if (b.in == NULL || b.out == NULL)
            return 1;
        run(&b, one_hwkey, 0.1); /* warm-up: page faults, frequency */
        run(&b, one_openssl, 0.1);
        for (int r = 0; r < rounds; r++) {
            for (int i = 0; i < 2; i++) {
                if (!avail[i] || !hwkey_bulk_gcm_set_impl(b.g, impls[i]))
                    continue;
                hw[i] += run(&b, one_hwkey, secs);
            }
            os += run(&b, one_openssl, secs);
        }
        os /= rounds;
        printf("%-7s", size_names[s]);
        for (int i = 0; i < 2; i++)
            if (avail[i])
                printf(" %10.0f", hw[i] / rounds);
            else
                printf(" %10s", "n/a");
        printf(" %16.0f", os);
        for (int i = 0; i < 2; i++)
            if (avail[i])
                printf(" %7.2fx", hw[i] / rounds / os);
            else
                printf(" %8s", "n/a");
        printf("\n");
        free(b.in);
        free(b.out);
    }
    hwkey_bulk_gcm_free(b.g);
    EVP_CIPHER_CTX_free(b.ctx);
    EVP_CIPHER_free(b.cipher);
    return 0;
}
