/*
 * p11_latency.so: a PKCS#11 module for tests and benchmarks that forwards to
 * a real module (SoftHSM) and behaves like a remote HSM: it adds a delay to
 * every call, a larger one to each private-key operation, and it can be
 * unplugged and plugged back while applications run.
 *
 *   P11_LATENCY_MODULE   the real module (default /usr/lib/softhsm/libsofthsm2.so)
 *   P11_LATENCY_CALL_US  delay of every forwarded call, microseconds (default 0)
 *   P11_LATENCY_OP_US    extra delay of C_Sign, C_SignFinal, C_Decrypt,
 *                        C_DeriveKey, microseconds (default 0)
 *   P11_LATENCY_CONTROL  a file; when it exists and starts with "unplugged",
 *                        the device is gone (read once per call)
 *   P11_LATENCY_STATS    a file rewritten at the start and end of every
 *                        private-key operation: "inflight=N max=M ops=K",
 *                        so a test can see operations overlap (async) or
 *                        wait until one is in flight (to cancel it); "%p"
 *                        in it: the writing process's id (one file per worker)
 *   P11_LATENCY_HOLD_FOR N: each private-key operation waits (at most
 *                        P11_LATENCY_HOLD_MS, default 10000) until N have
 *                        been in flight at once, then goes on; so a test of
 *                        overlap does not depend on how fast its clients
 *                        start (an application that serialises never
 *                        reaches N, and its operations wait the timeout);
 *                        operations before the first one has finished (an
 *                        application's warm-up request) are never held
 *   P11_LATENCY_TOKEN    only the slots whose token has this label are shown
 *                        (C_GetSlotList); unset: all
 *
 * Several independent devices in one process (failover tests): copy this
 * module (and the real one) to several paths; dlopen loads each copy as its
 * own instance.  "%m" in any of the variables above (and in
 * P11_LATENCY_MODULE) stands for this copy's file name without ".so", so
 * P11_LATENCY_CONTROL=/t/%m.link gives /t/lat-a.link to lat-a.so and
 * /t/lat-b.link to lat-b.so: each unplugged on its own.
 *
 * While unplugged every call answers CKR_DEVICE_ERROR, as a network HSM's
 * client library does when its connection is lost.  After it is plugged
 * back, the connection stays broken (CKR_DEVICE_ERROR) until the
 * application calls C_Finalize and C_Initialize again, which is what
 * p11-kit's client and the vendor libraries of network HSMs do: sessions and
 * logins of the old connection are gone (the real module is finalized and
 * re-initialised underneath).
 *
 * Only the calls a TLS server and hwkey's provisioning use are wrapped;
 * every other entry of the function list goes straight to the real module.
 */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

static CK_FUNCTION_LIST *real;   /* the real module's list */
static CK_FUNCTION_LIST wrapped; /* ours: a copy with the wrappers */
static unsigned long call_us, op_us;
static const char *control;

static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static int broken; /* unplugged since the last C_Initialize */
static const char *stats_path;
static const char *token_label;
static unsigned long inflight, max_inflight, ops_done;
static unsigned long hold_for, hold_ms;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;

static void pause_us(unsigned long us)
{
    struct timespec ts = {.tv_sec = (time_t)(us / 1000000), .tv_nsec = (long)(us % 1000000) * 1000};

    if (us == 0)
        return;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int unplugged_now(void)
{
    char buf[16] = "";
    FILE *f;

    if (control == NULL || (f = fopen(control, "re")) == NULL)
        return 0;
    if (fgets(buf, sizeof(buf), f) == NULL)
        buf[0] = '\0';
    fclose(f);
    return strncmp(buf, "unplugged", 9) == 0;
}

/* The common prologue of every wrapped call: latency, then the link state. */
static CK_RV link_check(unsigned long extra_us)
{
    int down;

    pause_us(call_us + extra_us);
    down = unplugged_now();
    pthread_mutex_lock(&state_lock);
    if (down)
        broken = 1;
    down = broken;
    pthread_mutex_unlock(&state_lock);
    return down ? CKR_DEVICE_ERROR : CKR_OK;
}

/* path with "%p" replaced by the writing process's id (forked workers: one file each). */
static int stats_file_name(char *buf, size_t len)
{
    const char *p = strstr(stats_path, "%p");
    int n;

    if (p == NULL)
        n = snprintf(buf, len, "%s", stats_path);
    else
        n = snprintf(buf, len, "%.*s%ld%s", (int)(p - stats_path), stats_path, (long)getpid(),
                     p + 2);
    return n > 0 && (size_t)n < len - 4;
}

static void stats_write_locked(void)
{
    char path[4096], tmp[4100];
    FILE *f;

    /* Written aside and renamed: a reader never sees a half-written (empty) file. */
    if (stats_path == NULL || !stats_file_name(path, sizeof(path)))
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if ((f = fopen(tmp, "we")) == NULL)
        return;
    fprintf(f, "inflight=%lu max=%lu ops=%lu\n", inflight, max_inflight, ops_done);
    if (fclose(f) == 0)
        rename(tmp, path);
}

/* Around a private-key operation: counts what overlaps. */
static void op_begin(void)
{
    struct timespec deadline;

    pthread_mutex_lock(&state_lock);
    if (++inflight > max_inflight)
        max_inflight = inflight;
    stats_write_locked();
    pthread_cond_broadcast(&hold_cond);
    if (hold_for > 1 && ops_done > 0 && max_inflight < hold_for) {
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += (time_t)(hold_ms / 1000);
        deadline.tv_nsec += (long)(hold_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (max_inflight < hold_for &&
               pthread_cond_timedwait(&hold_cond, &state_lock, &deadline) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&state_lock);
}

static CK_RV op_end(CK_RV rv)
{
    pthread_mutex_lock(&state_lock);
    inflight--;
    ops_done++;
    stats_write_locked();
    pthread_mutex_unlock(&state_lock);
    return rv;
}

#define LINK_OR_RETURN(extra)                                                                      \
    do {                                                                                           \
        CK_RV link_rv_ = link_check(extra);                                                        \
        if (link_rv_ != CKR_OK)                                                                    \
            return link_rv_;                                                                       \
    } while (0)

static CK_RV lat_Initialize(CK_VOID_PTR args)
{
    CK_RV rv;

    pause_us(call_us);
    if (unplugged_now())
        return CKR_DEVICE_ERROR;
    rv = real->C_Initialize(args);
    if (rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        pthread_mutex_lock(&state_lock);
        broken = 0;
        pthread_mutex_unlock(&state_lock);
    }
    return rv;
}

static CK_RV lat_Finalize(CK_VOID_PTR reserved)
{
    /* Always reaches the real module: a broken connection must be closable. */
    pause_us(call_us);
    return real->C_Finalize(reserved);
}

/* The label of a token, without its space padding, equal to want? */
static int label_is(CK_SLOT_ID slot, const char *want)
{
    CK_TOKEN_INFO ti;
    size_t n = sizeof(ti.label), wl = strlen(want);

    if (real->C_GetTokenInfo(slot, &ti) != CKR_OK)
        return 0;
    while (n > 0 && ti.label[n - 1] == ' ')
        n--;
    return n == wl && memcmp(ti.label, want, n) == 0;
}

/* C_GetSlotList with the two-call convention, showing only P11_LATENCY_TOKEN's slots. */
static CK_RV filtered_slots(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
    CK_SLOT_ID all[64];
    CK_ULONG n = 64, kept = 0;
    CK_RV rv = real->C_GetSlotList(present, all, &n);

    if (rv != CKR_OK)
        return rv;
    for (CK_ULONG i = 0; i < n; i++) {
        if (!label_is(all[i], token_label))
            continue;
        if (list != NULL && kept >= *count)
            return CKR_BUFFER_TOO_SMALL;
        if (list != NULL)
            list[kept] = all[i];
        kept++;
    }
    *count = kept;
    return CKR_OK;
}

static CK_RV lat_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
    LINK_OR_RETURN(0);
    if (token_label != NULL)
        return filtered_slots(present, list, count);
    return real->C_GetSlotList(present, list, count);
}

static CK_RV lat_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    LINK_OR_RETURN(0);
    return real->C_GetTokenInfo(slot, info);
}

static CK_RV lat_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                             CK_SESSION_HANDLE_PTR session)
{
    LINK_OR_RETURN(0);
    return real->C_OpenSession(slot, flags, app, notify, session);
}

static CK_RV lat_CloseSession(CK_SESSION_HANDLE session)
{
    LINK_OR_RETURN(0);
    return real->C_CloseSession(session);
}

static CK_RV lat_GetSessionInfo(CK_SESSION_HANDLE session, CK_SESSION_INFO_PTR info)
{
    LINK_OR_RETURN(0);
    return real->C_GetSessionInfo(session, info);
}

static CK_RV lat_Login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin,
                       CK_ULONG len)
{
    LINK_OR_RETURN(0);
    return real->C_Login(session, user, pin, len);
}

static CK_RV lat_GetAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE obj,
                                   CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
    LINK_OR_RETURN(0);
    return real->C_GetAttributeValue(session, obj, templ, count);
}

static CK_RV lat_FindObjectsInit(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
    LINK_OR_RETURN(0);
    return real->C_FindObjectsInit(session, templ, count);
}

static CK_RV lat_FindObjects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR objs, CK_ULONG max,
                             CK_ULONG_PTR count)
{
    LINK_OR_RETURN(0);
    return real->C_FindObjects(session, objs, max, count);
}

static CK_RV lat_FindObjectsFinal(CK_SESSION_HANDLE session)
{
    LINK_OR_RETURN(0);
    return real->C_FindObjectsFinal(session);
}

static CK_RV lat_SignInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    LINK_OR_RETURN(0);
    return real->C_SignInit(session, mech, key);
}

static CK_RV lat_Sign(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                      CK_ULONG_PTR siglen)
{
    /* A length query is answered by the client library, without the device. */
    CK_RV rv;

    if (sig == NULL) {
        LINK_OR_RETURN(0);
        return real->C_Sign(session, data, len, sig, siglen);
    }
    op_begin();
    rv = link_check(op_us);
    if (rv == CKR_OK)
        rv = real->C_Sign(session, data, len, sig, siglen);
    return op_end(rv);
}

static CK_RV lat_SignUpdate(CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG len)
{
    LINK_OR_RETURN(0);
    return real->C_SignUpdate(session, part, len);
}

static CK_RV lat_SignFinal(CK_SESSION_HANDLE session, CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
    LINK_OR_RETURN(sig != NULL ? op_us : 0);
    return real->C_SignFinal(session, sig, siglen);
}

static CK_RV lat_DecryptInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    LINK_OR_RETURN(0);
    return real->C_DecryptInit(session, mech, key);
}

static CK_RV lat_Decrypt(CK_SESSION_HANDLE session, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out,
                         CK_ULONG_PTR outlen)
{
    CK_RV rv;

    if (out == NULL) {
        LINK_OR_RETURN(0);
        return real->C_Decrypt(session, in, inlen, out, outlen);
    }
    op_begin();
    rv = link_check(op_us);
    if (rv == CKR_OK)
        rv = real->C_Decrypt(session, in, inlen, out, outlen);
    return op_end(rv);
}

static CK_RV lat_DeriveKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE base,
                           CK_ATTRIBUTE_PTR templ, CK_ULONG count, CK_OBJECT_HANDLE_PTR key)
{
    CK_RV rv;

    op_begin();
    rv = link_check(op_us);
    if (rv == CKR_OK)
        rv = real->C_DeriveKey(session, mech, base, templ, count, key);
    return op_end(rv);
}

static unsigned long env_ulong(const char *name)
{
    const char *v = getenv(name);

    return v != NULL ? strtoul(v, NULL, 10) : 0;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

/* This copy's file name without ".so": what "%m" stands for. */
static void self_name(char *buf, size_t len)
{
    Dl_info info;
    const char *base, *dot;

    if (dladdr((void *)&self_name, &info) == 0 || info.dli_fname == NULL) {
        snprintf(buf, len, "p11_latency");
        return;
    }
    base = strrchr(info.dli_fname, '/');
    base = base != NULL ? base + 1 : info.dli_fname;
    dot = strstr(base, ".so");
    snprintf(buf, len, "%.*s", (int)(dot != NULL ? (size_t)(dot - base) : strlen(base)), base);
}

/* getenv(name) with every "%m" replaced by this copy's name; never freed (lives with us). */
static const char *env_expanded(const char *name)
{
    const char *v = getenv(name), *p;
    char self[256], *out, *o;
    size_t n = 0;

    if (v == NULL || strstr(v, "%m") == NULL)
        return v;
    self_name(self, sizeof(self));
    for (p = v; *p != '\0'; p++)
        n += (p[0] == '%' && p[1] == 'm') ? strlen(self) : 1;
    if ((out = o = malloc(n + 1)) == NULL)
        return v;
    for (p = v; *p != '\0'; p++) {
        if (p[0] == '%' && p[1] == 'm') {
            o = stpcpy(o, self);
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

static CK_RV load_real(void)
{
    const char *path = env_expanded("P11_LATENCY_MODULE");
    CK_C_GetFunctionList get;
    void *dl;

    if (real != NULL)
        return CKR_OK;
    if (path == NULL || path[0] == '\0')
        path = DEFAULT_MODULE;
    if ((dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
        fprintf(stderr, "p11_latency: cannot load %s: %s\n", path, dlerror());
        return CKR_GENERAL_ERROR;
    }
    get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    if (get == NULL || get(&real) != CKR_OK || real == NULL) {
        fprintf(stderr, "p11_latency: %s has no usable C_GetFunctionList\n", path);
        real = NULL;
        return CKR_GENERAL_ERROR;
    }
    call_us = env_ulong("P11_LATENCY_CALL_US");
    op_us = env_ulong("P11_LATENCY_OP_US");
    hold_for = env_ulong("P11_LATENCY_HOLD_FOR");
    hold_ms = getenv("P11_LATENCY_HOLD_MS") != NULL ? env_ulong("P11_LATENCY_HOLD_MS") : 10000;
    control = env_expanded("P11_LATENCY_CONTROL");
    stats_path = env_expanded("P11_LATENCY_STATS");
    token_label = env_expanded("P11_LATENCY_TOKEN");
    wrapped = *real;
    wrapped.C_GetFunctionList = C_GetFunctionList;
    wrapped.C_Initialize = lat_Initialize;
    wrapped.C_Finalize = lat_Finalize;
    wrapped.C_GetSlotList = lat_GetSlotList;
    wrapped.C_GetTokenInfo = lat_GetTokenInfo;
    wrapped.C_OpenSession = lat_OpenSession;
    wrapped.C_CloseSession = lat_CloseSession;
    wrapped.C_GetSessionInfo = lat_GetSessionInfo;
    wrapped.C_Login = lat_Login;
    wrapped.C_GetAttributeValue = lat_GetAttributeValue;
    wrapped.C_FindObjectsInit = lat_FindObjectsInit;
    wrapped.C_FindObjects = lat_FindObjects;
    wrapped.C_FindObjectsFinal = lat_FindObjectsFinal;
    wrapped.C_SignInit = lat_SignInit;
    wrapped.C_Sign = lat_Sign;
    wrapped.C_SignUpdate = lat_SignUpdate;
    wrapped.C_SignFinal = lat_SignFinal;
    wrapped.C_DecryptInit = lat_DecryptInit;
    wrapped.C_Decrypt = lat_Decrypt;
    wrapped.C_DeriveKey = lat_DeriveKey;
    return CKR_OK;
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
    CK_RV rv;

    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&load_lock);
    rv = load_real();
    pthread_mutex_unlock(&load_lock);
    if (rv != CKR_OK)
        return rv;
    *list = &wrapped;
    return CKR_OK;
}
