/*
 * hs_client: full TLS handshakes against a server, counted exactly.
 *
 *   hs_client -p PORT -C CAFILE [-H HOST] [-n COUNT | -d SECONDS] [-c THREADS]
 *             [-t TIMEOUT_MS] [-u PATH] [-V 12|13|mix] [-l LOGFILE] [-s STOPFILE]
 *             [-r RATE] [-f MAXFAIL]
 *
 * Each of THREADS threads (default 4) loops: a new TCP connection, a full
 * handshake (no session reuse: no session cache, no tickets, a new SSL each
 * time), the server certificate verified against CAFILE for IP 127.0.0.1,
 * "GET PATH HTTP/1.1" with "Connection: close", the answer read to EOF.  One
 * such round is a success when the answer starts with "HTTP/1.x 200"; anything
 * else (connection refused or reset, handshake failure, verification failure,
 * no or non-200 answer, TIMEOUT_MS (default 5000) passed on any step) is a
 * failure.  The server's "X-Worker: PID" header (nginx: add_header X-Worker
 * $pid always;) names the worker that served it.
 *
 * Stops after COUNT rounds in all (-n), or after SECONDS (-d), or when
 * STOPFILE exists (-s; checked before every round), whichever comes first.
 * -V: TLS 1.2 only, 1.3 only, or alternating (default mix).  -r: at most RATE
 * rounds per second in all (a polling probe rather than a load test).
 * -f: stop after MAXFAIL failures (a broken server must not make a count
 * run for (COUNT x TIMEOUT) / THREADS).
 *
 * -l LOGFILE: one line per round, "START_MS END_MS ok|fail WORKER REASON",
 * START/END = CLOCK_REALTIME in milliseconds, WORKER = pid or "-", REASON a
 * word ("-" for ok).  stdout, at the end:
 *   handshakes=N ok=N failed=N seconds=S rate=R
 *   worker PID ok=N          (one line per worker that served)
 *   failure REASON count=N   (one line per reason)
 * and the first failure's OpenSSL error text on stderr.
 * Exit 0 when no round failed (and at least one was made), 1 otherwise,
 * 2 on a usage or set-up error.  Run it with an openssl.cnf that does not
 * load hwkey (the client side is all software).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define MAX_WORKERS 256
#define MAX_REASONS 32

static const char *host = "127.0.0.1", *cafile, *path = "/", *logfile, *stopfile;
static int port, nthreads = 4, timeout_ms = 5000, version_mode; /* 0 mix, 12, 13 */
static long want_count = -1;
static double duration = -1, rate_limit = 0;
static long max_fail = -1;
static SSL_CTX *ctx;
static FILE *log_fp;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_long claimed, n_ok, n_fail;
static double t_start, t_end;
static struct {
    long pid, ok;
} workers[MAX_WORKERS];
static int nworkers;
static struct {
    char reason[32];
    long count;
} reasons[MAX_REASONS];
static int nreasons;
static int first_error_printed;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: hs_client -p PORT -C CAFILE [-H HOST] [-n COUNT | -d SECONDS] [-c THREADS]\n"
            "                 [-t TIMEOUT_MS] [-u PATH] [-V 12|13|mix] [-l LOGFILE] [-s STOPFILE]"
            " [-r RATE] [-f MAXFAIL]\n");
    exit(2);
}

/* Wait until fd is readable (POLLIN) or writable (POLLOUT) or the deadline. */
static int wait_fd(int fd, short events, double deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    int ms, rc;

    for (;;) {
        ms = (int)((deadline - mono_s()) * 1000.0);
        if (ms <= 0)
            return 0;
        rc = poll(&p, 1, ms);
        if (rc < 0 && errno == EINTR)
            continue;
        return rc > 0;
    }
}

static int tcp_connect(double deadline, const char **reason)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd, err = 0, one = 1;
    socklen_t len = sizeof(err);

    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        *reason = "bad-host";
        return -1;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *reason = "socket";
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (errno != EINPROGRESS) {
            *reason = errno == ECONNREFUSED ? "connect-refused" : "connect";
            close(fd);
            return -1;
        }
        if (!wait_fd(fd, POLLOUT, deadline)) {
            *reason = "connect-timeout";
            close(fd);
            return -1;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
            *reason = err == ECONNREFUSED ? "connect-refused" : "connect";
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* Drive a non-blocking SSL call to completion; 1 ok, 0 failed, -1 timeout. */
static int ssl_drive(SSL *ssl, int fd, int (*op)(SSL *, void *, int, size_t *), void *buf, int len,
                     size_t *done, double deadline)
{
    int rc, e;

    for (;;) {
        rc = op(ssl, buf, len, done);
        if (rc > 0)
            return 1;
        e = SSL_get_error(ssl, rc);
        if (e == SSL_ERROR_WANT_READ) {
            if (!wait_fd(fd, POLLIN, deadline))
                return -1;
        } else if (e == SSL_ERROR_WANT_WRITE) {
            if (!wait_fd(fd, POLLOUT, deadline))
                return -1;
        } else {
            return 0;
        }
    }
}

static int op_connect(SSL *ssl, void *b, int l, size_t *d)
{
    (void)b, (void)l, (void)d;
    return SSL_connect(ssl);
}

static int op_write(SSL *ssl, void *b, int l, size_t *d)
{
    return SSL_write_ex(ssl, b, (size_t)l, d);
}

static int op_read(SSL *ssl, void *b, int l, size_t *d)
{
    return SSL_read_ex(ssl, b, (size_t)l, d);
}

static void note_error(const char *reason)
{
    unsigned long e;
    char buf[256];

    pthread_mutex_lock(&mu);
    if (!first_error_printed) {
        first_error_printed = 1;
        fprintf(stderr, "hs_client: first failure: %s", reason);
        while ((e = ERR_get_error()) != 0) {
            ERR_error_string_n(e, buf, sizeof(buf));
            fprintf(stderr, "; %s", buf);
        }
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&mu);
    ERR_clear_error();
}

/* One round; returns NULL on success (worker pid in *worker), else a reason. */
static const char *one_round(long idx, long *worker)
{
    double deadline = mono_s() + timeout_ms / 1000.0;
    const char *reason = NULL;
    char req[512], resp[4096], *h;
    size_t done, got = 0;
    SSL *ssl = NULL;
    int fd, rc, reqlen;

    *worker = -1;
    fd = tcp_connect(deadline, &reason);
    if (fd < 0)
        return reason;
    ssl = SSL_new(ctx);
    if (ssl == NULL) {
        close(fd);
        return "ssl-new";
    }
    if (version_mode == 12 || (version_mode == 0 && idx % 2 == 0))
        SSL_set_max_proto_version(ssl, TLS1_2_VERSION);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "hwkey.test");
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    rc = ssl_drive(ssl, fd, op_connect, NULL, 0, &done, deadline);
    if (rc <= 0) {
        reason = rc < 0                                    ? "handshake-timeout"
                 : SSL_get_verify_result(ssl) != X509_V_OK ? "verify"
                                                           : "handshake";
        goto out;
    }
    reqlen = snprintf(req, sizeof(req),
                      "GET %s HTTP/1.1\r\nHost: hwkey.test\r\nConnection: close\r\n\r\n", path);
    rc = ssl_drive(ssl, fd, op_write, req, reqlen, &done, deadline);
    if (rc <= 0) {
        reason = rc < 0 ? "write-timeout" : "write";
        goto out;
    }
    for (;;) {
        char tmp[4096];

        rc = ssl_drive(ssl, fd, op_read, tmp, sizeof(tmp), &done, deadline);
        if (rc < 0) {
            reason = "read-timeout";
            goto out;
        }
        if (rc == 0)
            break; /* EOF (close_notify or TCP close) */
        if (got < sizeof(resp) - 1) {
            size_t n = done < sizeof(resp) - 1 - got ? done : sizeof(resp) - 1 - got;

            memcpy(resp + got, tmp, n);
            got += n;
        }
    }
    resp[got] = '\0';
    if (got == 0) {
        reason = "no-answer";
        goto out;
    }
    if (strncmp(resp, "HTTP/1.1 200", 12) != 0 && strncmp(resp, "HTTP/1.0 200", 12) != 0) {
        reason = "http-status";
        goto out;
    }
    if ((h = strcasestr(resp, "\r\nX-Worker:")) != NULL)
        *worker = strtol(h + 11, NULL, 10);
out:
    if (reason != NULL && strcmp(reason, "handshake") == 0)
        note_error(reason);
    else
        ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    return reason;
}

static void record(double t0, double t1, const char *reason, long worker)
{
    int i;

    pthread_mutex_lock(&mu);
    if (reason == NULL) {
        for (i = 0; i < nworkers && workers[i].pid != worker; i++)
            ;
        if (i == nworkers && nworkers < MAX_WORKERS)
            workers[nworkers++].pid = worker;
        if (i < MAX_WORKERS)
            workers[i].ok++;
    } else {
        for (i = 0; i < nreasons && strcmp(reasons[i].reason, reason) != 0; i++)
            ;
        if (i == nreasons && nreasons < MAX_REASONS)
            snprintf(reasons[nreasons++].reason, sizeof(reasons[0].reason), "%s", reason);
        if (i < MAX_REASONS)
            reasons[i].count++;
    }
    if (log_fp != NULL)
        fprintf(log_fp, "%.0f %.0f %s %ld %s\n", t0 * 1000.0, t1 * 1000.0,
                reason == NULL ? "ok" : "fail", worker, reason == NULL ? "-" : reason);
    pthread_mutex_unlock(&mu);
}

static void *thread_main(void *arg)
{
    struct stat st;
    double t0, t1, next;
    const char *reason;
    long idx, worker;

    (void)arg;
    for (;;) {
        if (stopfile != NULL && stat(stopfile, &st) == 0)
            break;
        if (duration > 0 && now_s() >= t_end)
            break;
        if (max_fail >= 0 && atomic_load(&n_fail) >= max_fail)
            break;
        idx = atomic_fetch_add(&claimed, 1);
        if (want_count >= 0 && idx >= want_count)
            break;
        if (rate_limit > 0) {
            next = t_start + (double)idx / rate_limit;
            while ((t0 = now_s()) < next)
                usleep((useconds_t)((next - t0) * 1e6 < 100000 ? (next - t0) * 1e6 : 100000));
            if (duration > 0 && now_s() >= t_end)
                break;
        }
        t0 = now_s();
        reason = one_round(idx, &worker);
        t1 = now_s();
        record(t0, t1, reason, worker);
        if (reason == NULL)
            atomic_fetch_add(&n_ok, 1);
        else
            atomic_fetch_add(&n_fail, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th[256];
    double secs;
    long ok, fail;
    int opt, i;

    while ((opt = getopt(argc, argv, "p:C:H:n:d:c:t:u:V:l:s:r:f:")) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'C':
            cafile = optarg;
            break;
        case 'H':
            host = optarg;
            break;
        case 'n':
            want_count = atol(optarg);
            break;
        case 'd':
            duration = atof(optarg);
            break;
        case 'c':
            nthreads = atoi(optarg);
            break;
        case 't':
            timeout_ms = atoi(optarg);
            break;
        case 'u':
            path = optarg;
            break;
        case 'V':
            version_mode = strcmp(optarg, "12") == 0 ? 12 : strcmp(optarg, "13") == 0 ? 13 : 0;
            if (version_mode == 0 && strcmp(optarg, "mix") != 0)
                usage();
            break;
        case 'l':
            logfile = optarg;
            break;
        case 's':
            stopfile = optarg;
            break;
        case 'r':
            rate_limit = atof(optarg);
            break;
        case 'f':
            max_fail = atol(optarg);
            break;
        default:
            usage();
        }
    }
    if (port <= 0 || port > 65535 || cafile == NULL || nthreads < 1 || nthreads > 256 ||
        timeout_ms < 1 || (want_count < 0 && duration <= 0 && stopfile == NULL))
        usage();
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
        fprintf(stderr, "hs_client: cannot load CA file %s\n", cafile);
        ERR_print_errors_fp(stderr);
        return 2;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, version_mode == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    /* every round a full handshake */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (logfile != NULL && (log_fp = fopen(logfile, "w")) == NULL) {
        perror(logfile);
        return 2;
    }
    if (log_fp != NULL)
        setvbuf(log_fp, NULL, _IOLBF, 0);
    t_start = now_s();
    t_end = t_start + (duration > 0 ? duration : 1e9);
    for (i = 0; i < nthreads; i++) {
        if (pthread_create(&th[i], NULL, thread_main, NULL) != 0) {
            fprintf(stderr, "hs_client: cannot start thread %d\n", i);
            return 2;
        }
    }
    for (i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    secs = now_s() - t_start;
    ok = atomic_load(&n_ok);
    fail = atomic_load(&n_fail);
    printf("handshakes=%ld ok=%ld failed=%ld seconds=%.2f rate=%.1f\n", ok + fail, ok, fail, secs,
           secs > 0 ? (double)ok / secs : 0.0);
    for (i = 0; i < nworkers; i++)
        printf("worker %ld ok=%ld\n", workers[i].pid, workers[i].ok);
    for (i = 0; i < nreasons; i++)
        printf("failure %s count=%ld\n", reasons[i].reason, reasons[i].count);
    if (log_fp != NULL)
        fclose(log_fp);
    SSL_CTX_free(ctx);
    return fail == 0 && ok > 0 ? 0 : 1;
}
