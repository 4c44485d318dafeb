/*
 * Device calls on worker threads while an OpenSSL ASYNC job waits: see
 * offload.h for the contract.
 */
#include "util/offload.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "util/error.h"
#include "util/forkgate.h"
#include "util/log.h"
#include "util/secmem.h"

#define DEFAULT_THREADS 16
#define MAX_THREADS 256
#define MAX_CARRIED_ERRORS 8

/* One error moved from the worker's queue to the job's. */
typedef struct {
    unsigned long code;
    const char *file, *func; /* string literals of the code that raised it */
    int line;
    char *data; /* copy, or NULL */
} CARRIED_ERROR;

/*
 * The wait fd of one ASYNC_WAIT_CTX (one connection), kept for its whole
 * life and closed when the wait ctx is freed, never earlier: an application
 * may still have it registered in its event loop (HAProxy removes it only
 * when it frees the connection, and expects the provider to close it).
 * In-flight requests hold a reference, so a worker finishing after the
 * connection is gone still writes to our fd, never to a reused number.
 */
typedef struct offload_channel {
    int refs;                    /* the wait ctx + in-flight requests; atomic */
    int fd;                      /* eventfd */
    struct offload_req *current; /* the request the job waits for (one job per connection) */
} OFFLOAD_CHANNEL;

typedef struct offload_req {
    int refs;                /* job side + worker side; atomic */
    int done;                /* set by the worker (release), read by the job (acquire) */
    OFFLOAD_CHANNEL *chan;   /* where completion is signalled */
    HWKEY_OFFLOAD_CALL call; /* in/out point into the request's own copies */
    unsigned char *in_copy;
    void *ctx_copy; /* what call.fn gets as ctx */
    unsigned char *out_buf;
    size_t out_cap, out_len;
    int result;
    CARRIED_ERROR errors[MAX_CARRIED_ERRORS];
    int n_errors;
    struct offload_req *next; /* queue */
} OFFLOAD_REQ;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_work = PTHREAD_COND_INITIALIZER; /* queue not empty / stop */
static pthread_cond_t pool_idle = PTHREAD_COND_INITIALIZER; /* busy dropped to 0 */
static OFFLOAD_REQ *queue_head, *queue_tail;
static pthread_t threads[MAX_THREADS];
static int n_threads, n_idle, n_busy, stopping;
static unsigned long handed_over;
static pthread_once_t hook_once = PTHREAD_ONCE_INIT;

static int max_threads(void)
{
    const char *v = getenv("HWKEY_ASYNC_THREADS");
    long n = v != NULL ? strtol(v, NULL, 10) : DEFAULT_THREADS;

    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

int hwkey_offload_wanted(void)
{
    const char *v;

    if (ASYNC_get_current_job() == NULL)
        return 0;
    v = getenv("HWKEY_ASYNC");
    return v == NULL || strcmp(v, "0") != 0;
}

unsigned long hwkey_offload_count(void)
{
    return __atomic_load_n(&handed_over, __ATOMIC_RELAXED);
}

/* Address used as this module's key in every wait ctx. */
static const char channel_key = 0;

static void channel_unref(OFFLOAD_CHANNEL *chan)
{
    if (chan == NULL || __atomic_sub_fetch(&chan->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    close(chan->fd);
    OPENSSL_free(chan);
}

static void req_unref(OFFLOAD_REQ *req)
{
    if (__atomic_sub_fetch(&req->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    channel_unref(req->chan);
    for (int i = 0; i < req->n_errors; i++)
        OPENSSL_free(req->errors[i].data);
    OPENSSL_free(req->in_copy);
    OPENSSL_clear_free(req->ctx_copy, req->call.ctx_size);
    if (req->call.secret_out)
        hwkey_secmem_free(req->out_buf);
    else
        OPENSSL_free(req->out_buf);
    OPENSSL_free(req);
}

/* Worker side: what fn left in this thread's error queue goes with the request. */
static void carry_errors(OFFLOAD_REQ *req)
{
    const char *file, *func, *data;
    int line, flags;
    unsigned long e;

    while ((e = ERR_get_error_all(&file, &line, &func, &data, &flags)) != 0) {
        CARRIED_ERROR *c;

        if (req->n_errors == MAX_CARRIED_ERRORS)
            continue;
        c = &req->errors[req->n_errors++];
        c->code = e;
        c->file = file;
        c->line = line;
        c->func = func;
        c->data = (flags & ERR_TXT_STRING) != 0 && data != NULL ? OPENSSL_strdup(data) : NULL;
    }
}

/* Job side: raise the carried errors again, oldest first, in this thread. */
static void restore_errors(const OFFLOAD_REQ *req)
{
    for (int i = 0; i < req->n_errors; i++) {
        const CARRIED_ERROR *c = &req->errors[i];

        ERR_new();
        ERR_set_debug(c->file, c->line, c->func);
        if (c->data != NULL)
            ERR_set_error(ERR_GET_LIB(c->code), ERR_GET_REASON(c->code), "%s", c->data);
        else
            ERR_set_error(ERR_GET_LIB(c->code), ERR_GET_REASON(c->code), NULL);
    }
}

static void run_request(OFFLOAD_REQ *req)
{
    uint64_t one = 1;

    ERR_clear_error();
    req->out_len = req->out_cap;
    req->result =
        req->call.fn(req->ctx_copy, req->in_copy, req->call.inlen, req->out_buf, &req->out_len);
    carry_errors(req);
    __atomic_store_n(&req->done, 1, __ATOMIC_RELEASE);
    /* Wake the application's event loop; it resumes the job. */
    while (write(req->chan->fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void *worker_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool_lock);
    for (;;) {
        OFFLOAD_REQ *req;

        while (queue_head == NULL && !stopping) {
            n_idle++;
            pthread_cond_wait(&pool_work, &pool_lock);
            n_idle--;
        }
        if (queue_head == NULL && stopping)
            break;
        req = queue_head;
        queue_head = req->next;
        if (queue_head == NULL)
            queue_tail = NULL;
        n_busy++;
        pthread_mutex_unlock(&pool_lock);
        run_request(req);
        req_unref(req);
        pthread_mutex_lock(&pool_lock);
        if (--n_busy == 0)
            pthread_cond_broadcast(&pool_idle);
    }
    pthread_mutex_unlock(&pool_lock);
    ERR_clear_error();
    OPENSSL_thread_stop();
    return NULL;
}

/*
 * The child of a fork has none of the workers; requests queued in the
 * parent belong to the parent's jobs.  Start from an empty pool (the gate
 * guarantees no worker was inside a device call at the fork).
 */
static void offload_child(void)
{
    pthread_mutex_init(&pool_lock, NULL);
    pthread_cond_init(&pool_work, NULL);
    pthread_cond_init(&pool_idle, NULL);
    queue_head = queue_tail = NULL;
    n_threads = n_idle = n_busy = stopping = 0;
}

static void register_fork_hook(void)
{
    hwkey_fork_hook(NULL, NULL, offload_child);
}

/* Queue req; a new worker if none is idle and the limit allows.  Lock held. */
static int enqueue_locked(OFFLOAD_REQ *req)
{
    if (n_idle == 0 && n_threads < max_threads()) {
        if (pthread_create(&threads[n_threads], NULL, worker_main, NULL) == 0)
            n_threads++;
        else if (n_threads == 0)
            return 0;
    }
    req->next = NULL;
    if (queue_tail != NULL)
        queue_tail->next = req;
    else
        queue_head = req;
    queue_tail = req;
    handed_over++;
    pthread_cond_signal(&pool_work);
    return 1;
}

/*
 * The wait ctx is being freed (the connection is gone).  If its job still
 * waits for a request, that job will never be resumed: drop its reference
 * for it; the worker drops its own when the device answers.
 */
static void on_wait_ctx_free(ASYNC_WAIT_CTX *wctx, const void *key, OSSL_ASYNC_FD fd, void *custom)
{
    OFFLOAD_CHANNEL *chan = custom;
    OFFLOAD_REQ *orphan = chan->current;

    (void)wctx;
    (void)key;
    (void)fd;
    chan->current = NULL;
    if (orphan != NULL)
        req_unref(orphan);
    channel_unref(chan);
}

/* This connection's registered channel, or NULL. */
static OFFLOAD_CHANNEL *channel_find(ASYNC_WAIT_CTX *wctx)
{
    OSSL_ASYNC_FD fd;
    void *custom = NULL;

    if (ASYNC_WAIT_CTX_get_fd(wctx, &channel_key, &fd, &custom) && custom != NULL)
        return custom;
    return NULL;
}

static OFFLOAD_CHANNEL *channel_new(void)
{
    OFFLOAD_CHANNEL *chan = OPENSSL_zalloc(sizeof(*chan));

    if (chan == NULL)
        return NULL;
    chan->refs = 1; /* the job's until registered, then the wait ctx's */
    if ((chan->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        OPENSSL_free(chan);
        return NULL;
    }
    return chan;
}

static OFFLOAD_REQ *req_new(const HWKEY_OFFLOAD_CALL *call, OFFLOAD_CHANNEL *chan)
{
    OFFLOAD_REQ *req = OPENSSL_zalloc(sizeof(*req));

    if (req == NULL)
        return NULL;
    req->refs = 2;
    req->call = *call;
    req->out_cap = *call->outlen;
    req->in_copy = OPENSSL_memdup(call->in, call->inlen > 0 ? call->inlen : 1);
    /*
     * The ctx names the key, which the job's EVP_PKEY_CTX keeps alive even
     * if the job is never resumed; the ctx itself may live on the job's stack.
     */
    req->ctx_copy = OPENSSL_memdup(call->ctx, call->ctx_size);
    req->out_buf = call->secret_out ? hwkey_secmem_alloc(req->out_cap > 0 ? req->out_cap : 1)
                                    : OPENSSL_zalloc(req->out_cap > 0 ? req->out_cap : 1);
    if (req->in_copy == NULL || req->ctx_copy == NULL || req->out_buf == NULL) {
        req->refs = 1;
        req_unref(req);
        return NULL;
    }
    __atomic_add_fetch(&chan->refs, 1, __ATOMIC_ACQ_REL);
    req->chan = chan;
    return req;
}

/* Job side after the worker finished: results to the caller. */
static int deliver(OFFLOAD_REQ *req, const HWKEY_OFFLOAD_CALL *call)
{
    int ok = req->result;

    restore_errors(req);
    if (ok) {
        memcpy(call->out, req->out_buf, req->out_len);
        *call->outlen = req->out_len;
    }
    return ok;
}

/*
 * Tests: HWKEY_TEST_OFFLOAD_WAIT_DELAY_US holds the job back between handing
 * the call over and waiting for it, so the device answers first: the case
 * that must not register a wait fd (test_offload.c), made deterministic.
 */
static void test_delay_before_wait(void)
{
    const char *v = getenv("HWKEY_TEST_OFFLOAD_WAIT_DELAY_US");

    if (v != NULL)
        usleep((useconds_t)strtoul(v, NULL, 10));
}

static void wait_without_job(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
}

int hwkey_offload_run(const HWKEY_OFFLOAD_CALL *call)
{
    ASYNC_WAIT_CTX *wctx;
    OFFLOAD_CHANNEL *chan;
    OFFLOAD_REQ *req;
    uint64_t count;
    int ok, queued, registered;

    /* A size query (no output buffer) never reaches the device. */
    if (!hwkey_offload_wanted() || call->out == NULL)
        return call->fn(call->ctx, call->in, call->inlen, call->out, call->outlen);
    pthread_once(&hook_once, register_fork_hook);
    wctx = ASYNC_get_wait_ctx(ASYNC_get_current_job());
    if (wctx == NULL)
        return call->fn(call->ctx, call->in, call->inlen, call->out, call->outlen);
    chan = channel_find(wctx);
    registered = chan != NULL;
    if (chan == NULL && (chan = channel_new()) == NULL)
        return call->fn(call->ctx, call->in, call->inlen, call->out, call->outlen);
    if ((req = req_new(call, chan)) == NULL) {
        if (!registered)
            channel_unref(chan);
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "preparing an asynchronous device call");
        return 0;
    }
    chan->current = req;
    pthread_mutex_lock(&pool_lock);
    queued = !stopping && enqueue_locked(req);
    pthread_mutex_unlock(&pool_lock);
    if (!queued) {
        chan->current = NULL;
        req_unref(req); /* the worker's reference, never taken */
        req_unref(req);
        if (!registered)
            channel_unref(chan);
        return call->fn(call->ctx, call->in, call->inlen, call->out, call->outlen);
    }
    test_delay_before_wait();
    /*
     * Register the fd only when the job really pauses: an application learns
     * of new fds when the job pauses (SSL_get_changed_async_fds after
     * SSL_ERROR_WANT_ASYNC); one registered in a run that never paused would
     * stay unknown to it (HAProxy then never resumes the job, and deletes an
     * fd it never inserted).  The application may resume the job early:
     * wait for done, not for one wake-up.
     */
    while (!__atomic_load_n(&req->done, __ATOMIC_ACQUIRE)) {
        if (!registered) {
            if (!ASYNC_WAIT_CTX_set_wait_fd(wctx, &channel_key, chan->fd, chan, on_wait_ctx_free)) {
                wait_without_job(chan->fd);
                continue;
            }
            registered = 1;
        }
        if (!ASYNC_pause_job())
            wait_without_job(chan->fd);
    }
    chan->current = NULL;
    /* Consume the wake-up so the fd is quiet until the next request. */
    while (read(chan->fd, &count, sizeof(count)) < 0 && errno == EINTR)
        ;
    ok = deliver(req, call);
    req_unref(req);
    if (!registered)
        channel_unref(chan);
    return ok;
}

void hwkey_offload_shutdown(void)
{
    int n;

    pthread_mutex_lock(&pool_lock);
    while (n_busy > 0 || queue_head != NULL)
        pthread_cond_wait(&pool_idle, &pool_lock);
    stopping = 1;
    pthread_cond_broadcast(&pool_work);
    n = n_threads;
    pthread_mutex_unlock(&pool_lock);
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_lock(&pool_lock);
    n_threads = 0;
    stopping = 0;
    pthread_mutex_unlock(&pool_lock);
}
