/*
 * Device calls off the event loop for applications that run handshakes in
 * OpenSSL ASYNC jobs (HAProxy's ssl-mode-async, SSL_MODE_ASYNC, openssl
 * s_server -async).  A network HSM answers in 1-10 ms and a TPM in 20-50
 * ms; an event loop that waits for each signature does at most 1/latency
 * handshakes.  Inside a job, hwkey_offload_run() hands the call to a worker
 * thread, gives the job a wait fd (ASYNC_WAIT_CTX_set_wait_fd) and pauses
 * it; the application's loop goes on with other connections and resumes
 * the job when the fd becomes readable.  Outside a job it calls directly:
 * nothing changes for other applications.
 *
 * The caller's buffers may die with the connection (the client hangs up
 * while its signature is in flight, SSL_free frees the output buffer), so
 * the request owns copies: OFFLOAD_CALL.in is copied in, .out is a buffer
 * of the request's own that is copied back only to a job that is still
 * waiting.  A request that lost its job is freed by the worker when the
 * device answers.  Errors raised on the worker thread are moved to the
 * job's thread's error queue.
 *
 * Workers: up to HWKEY_ASYNC_THREADS (default 16) threads, started on first
 * use, re-started after fork (a fork hook empties the pool in the child).
 * Each device still serialises what it must (the TPM's lock, a token's
 * session pool), so the pool bounds the calls in flight, not the devices.
 */
#ifndef HWKEY_UTIL_OFFLOAD_H
#define HWKEY_UTIL_OFFLOAD_H

#include <stddef.h>

typedef struct {
    /* The device call: in/out as below, *outlen = capacity in, length out. */
    int (*fn)(void *ctx, const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen);
    void *ctx; /* copied into the request (ctx_size bytes) */
    size_t ctx_size;
    const unsigned char *in;
    size_t inlen;
    unsigned char *out;
    size_t *outlen;
    int secret_out; /* out is a secret: protected memory, wiped */
} HWKEY_OFFLOAD_CALL;

/* 1 if the caller runs inside an ASYNC job and offloading is not disabled. */
int hwkey_offload_wanted(void);
/*
 * Runs call->fn: on a worker while the current job is paused when
 * hwkey_offload_wanted(), else directly.  Returns fn's result; 0 with an
 * error raised if the request could not be handed over.
 */
int hwkey_offload_run(const HWKEY_OFFLOAD_CALL *call);

/* Tests and benchmarks: requests handed to workers since the process started. */
unsigned long hwkey_offload_count(void);
/* Stops and joins idle workers (provider teardown of the last instance). */
void hwkey_offload_shutdown(void);

#endif
