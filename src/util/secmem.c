/*
 * Protected memory (ARCHITECTURE.md §8).
 *
 * Layout of one allocation, in whole pages:
 *
 *   [ header | guard | data ........................ | guard ]
 *     RW       NONE    locked, not dumped, wiped       NONE
 *                      on fork; right-aligned user
 *                      block ends at the guard
 *
 * The header (mapping base and length, list links: no secret) sits on its
 * own ordinary page, so it survives fork and free never has to trust bytes
 * inside the secret region.  The user block is right-aligned to the trailing
 * guard page, rounded to 16 bytes so that callers can store aligned
 * structures (AES key schedules): a write past a 16-byte multiple faults at
 * once, otherwise at most 15 bytes after the end.
 *
 * The data pages come from memfd_secret(2) when the kernel offers it (pages
 * leave the kernel's direct map and are locked by the kernel), else from
 * anonymous memory with mlock + MADV_DONTDUMP + MADV_WIPEONFORK.  A
 * memfd_secret mapping is shared, so after fork the child would see, and its
 * free would wipe, the parent's secrets: an atfork handler replaces such
 * regions in the child with zero pages, which gives both kinds the same
 * "the child sees zeros" semantics.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "util/secmem.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "util/error.h"
#include "util/forkgate.h"
#include "util/log.h"

#ifndef SYS_memfd_secret
#if defined(__x86_64__)
#define SYS_memfd_secret 447
#endif
#endif

#define SECMEM_MAGIC 0x68776b7365636d65ull /* "hwksecme" */
#define SECMEM_ALIGN 16

enum { KIND_NONE = 0, KIND_MEMFD_SECRET, KIND_MLOCK };

typedef struct secmem_hdr {
    uint64_t magic;
    unsigned char *base; /* start of the whole mapping (this header page) */
    size_t map_len;      /* whole mapping */
    unsigned char *data; /* first data page */
    size_t data_len;     /* data pages */
    void *user;          /* what alloc returned */
    int kind;
    int keep_on_fork; /* hwkey_secmem_alloc_inherited(): the child keeps a copy */
    struct secmem_hdr *prev, *next;
} SECMEM_HDR;

static pthread_mutex_t secmem_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t secmem_once = PTHREAD_ONCE_INIT;
static SECMEM_HDR *secmem_list; /* live allocations, for the atfork handler */
static int last_kind = KIND_NONE;
static int memfd_secret_broken; /* the kernel refused once: do not ask again */
static int force_mlock;
static int mlock_warned;
static size_t page_size;

/*
 * Fork hooks (util/forkgate.c): the secure-memory lock is the innermost lock
 * of the provider, taken after the fork gate, so a thread that holds a token
 * or device lock and allocates cannot deadlock a fork.
 */
static void secmem_atfork_prepare(void)
{
    pthread_mutex_lock(&secmem_lock);
}

static void secmem_atfork_parent(void)
{
    pthread_mutex_unlock(&secmem_lock);
}

/*
 * Child: memfd_secret regions are shared with the parent.  Ordinary blocks
 * become zero pages (the child sees zeros, like MADV_WIPEONFORK); inherited
 * blocks (credentials a forked worker needs) become a private locked copy,
 * so the child's free cannot wipe the parent's secret.
 */
static void secmem_atfork_child(void)
{
    unsigned char copy[4096];

    for (SECMEM_HDR *h = secmem_list; h != NULL; h = h->next) {
        int keep = h->keep_on_fork && h->data_len <= sizeof(copy);

        if (h->kind != KIND_MEMFD_SECRET) {
            if (h->keep_on_fork)
                (void)mlock(h->data, h->data_len); /* locks are not inherited */
            continue;
        }
        if (keep)
            memcpy(copy, h->data, h->data_len);
        if (mmap(h->data, h->data_len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) {
            /* Cannot keep the parent's secret reachable from the child. */
            mprotect(h->data, h->data_len, PROT_NONE);
            continue;
        }
        madvise(h->data, h->data_len, MADV_DONTDUMP);
        if (!h->keep_on_fork)
            madvise(h->data, h->data_len, MADV_WIPEONFORK);
        (void)mlock(h->data, h->data_len);
        if (keep)
            memcpy(h->data, copy, h->data_len);
        h->kind = KIND_MLOCK;
    }
    OPENSSL_cleanse(copy, sizeof(copy));
    pthread_mutex_unlock(&secmem_lock);
}

static void secmem_init(void)
{
    long ps = sysconf(_SC_PAGESIZE);

    page_size = ps > 0 ? (size_t)ps : 4096;
    hwkey_fork_hook(secmem_atfork_prepare, secmem_atfork_parent, secmem_atfork_child);
}

/* Map memfd_secret pages over data; 0 if the kernel does not offer them. */
static int map_memfd_secret(unsigned char *data, size_t len)
{
#ifdef SYS_memfd_secret
    long fd;
    void *p;

    if (memfd_secret_broken || force_mlock)
        return 0;
    fd = syscall(SYS_memfd_secret, 0);
    if (fd < 0) {
        memfd_secret_broken = 1;
        hwkey_log(HWKEY_LOG_INFO, "secmem: memfd_secret unavailable (%s), using mlock",
                  strerror(errno));
        return 0;
    }
    p = MAP_FAILED;
    if (ftruncate((int)fd, (off_t)len) == 0)
        p = mmap(data, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, (int)fd, 0);
    close((int)fd);
    if (p == MAP_FAILED) {
        /* Usually RLIMIT_MEMLOCK: secret pages are locked pages. Fall back quietly. */
        hwkey_log(HWKEY_LOG_TRACE, "secmem: memfd_secret mapping failed (%s), using mlock",
                  strerror(errno));
        return 0;
    }
    return 1;
#else
    (void)data;
    (void)len;
    return 0;
#endif
}

static void map_anonymous_locked(unsigned char *data, size_t len, int keep_on_fork)
{
    madvise(data, len, MADV_DONTDUMP);
    if (!keep_on_fork)
        madvise(data, len, MADV_WIPEONFORK);
    if (mlock(data, len) != 0 && !mlock_warned) {
        mlock_warned = 1;
        hwkey_log(HWKEY_LOG_INFO,
                  "secmem: mlock failed (%s; raise RLIMIT_MEMLOCK): secrets may be swapped",
                  strerror(errno));
    }
}

static void *secmem_alloc(size_t n, int keep_on_fork)
{
    size_t rn, data_len, map_len;
    unsigned char *base;
    SECMEM_HDR *h;

    pthread_once(&secmem_once, secmem_init);
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / 2) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "secure memory: %zu bytes is too large", n);
        return NULL;
    }
    rn = (n + SECMEM_ALIGN - 1) & ~(size_t)(SECMEM_ALIGN - 1);
    data_len = (rn + page_size - 1) & ~(page_size - 1);
    map_len = data_len + 3 * page_size;

    /* Reserve everything inaccessible, then open up header and data. */
    base = mmap(NULL, map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "secure memory: mmap of %zu bytes failed: %s", map_len,
                    strerror(errno));
        return NULL;
    }
    if (mprotect(base, page_size, PROT_READ | PROT_WRITE) != 0) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "secure memory: mprotect failed: %s", strerror(errno));
        munmap(base, map_len);
        return NULL;
    }
    h = (SECMEM_HDR *)base;
    h->magic = SECMEM_MAGIC;
    h->base = base;
    h->map_len = map_len;
    h->data = base + 2 * page_size;
    h->data_len = data_len;
    h->user = h->data + data_len - rn;

    pthread_mutex_lock(&secmem_lock);
    if (map_memfd_secret(h->data, data_len)) {
        h->kind = KIND_MEMFD_SECRET;
    } else if (mmap(h->data, data_len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
        /* MAP_FIXED, not mprotect: a failed memfd_secret mmap may have unmapped it. */
        map_anonymous_locked(h->data, data_len, keep_on_fork);
        h->kind = KIND_MLOCK;
    } else {
        pthread_mutex_unlock(&secmem_lock);
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "secure memory: mmap of %zu bytes failed: %s", data_len,
                    strerror(errno));
        munmap(base, map_len);
        return NULL;
    }
    last_kind = h->kind;
    h->keep_on_fork = keep_on_fork;
    h->prev = NULL;
    h->next = secmem_list;
    if (secmem_list != NULL)
        secmem_list->prev = h;
    secmem_list = h;
    pthread_mutex_unlock(&secmem_lock);
    return h->user; /* fresh pages are zero */
}

void *hwkey_secmem_alloc(size_t n)
{
    return secmem_alloc(n, 0);
}

void *hwkey_secmem_alloc_inherited(size_t n)
{
    return secmem_alloc(n, 1);
}

/*
 * The live allocation that returned p, or NULL.  A list walk rather than
 * pointer arithmetic: a foreign pointer must not make free read (or unmap)
 * memory it does not own.  Callers hold secmem_lock.
 */
static SECMEM_HDR *header_of(void *p)
{
    for (SECMEM_HDR *h = secmem_list; h != NULL; h = h->next)
        if (h->user == p && h->magic == SECMEM_MAGIC)
            return h;
    return NULL;
}

void hwkey_secmem_free(void *p)
{
    SECMEM_HDR *h;

    if (p == NULL)
        return;
    pthread_mutex_lock(&secmem_lock);
    h = header_of(p);
    if (h == NULL) {
        pthread_mutex_unlock(&secmem_lock);
        /* A corrupted or foreign pointer: leaking beats unmapping something else. */
        hwkey_log(HWKEY_LOG_ERROR, "secmem: free of a pointer it did not allocate");
        return;
    }
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        secmem_list = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&secmem_lock);

    OPENSSL_cleanse(h->data, h->data_len);
    if (h->kind == KIND_MLOCK)
        munlock(h->data, h->data_len);
    h->magic = 0;
    munmap(h->base, h->map_len);
}

char *hwkey_secmem_strndup(const char *buf, size_t n)
{
    char *s;

    if (n == SIZE_MAX) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "secure memory: string too large");
        return NULL;
    }
    /* Like strndup: stop at a NUL inside buf[0..n). */
    n = buf != NULL ? strnlen(buf, n) : 0;
    s = hwkey_secmem_alloc(n + 1);
    if (s != NULL && n > 0)
        memcpy(s, buf, n);
    return s;
}

const char *hwkey_secmem_kind(void)
{
    int kind;

    pthread_mutex_lock(&secmem_lock);
    kind = last_kind;
    pthread_mutex_unlock(&secmem_lock);
    if (kind == KIND_MEMFD_SECRET)
        return "memfd_secret";
    if (kind == KIND_MLOCK)
        return "mlock";
    /* Nothing allocated yet: say what the next allocation will try first. */
    return memfd_secret_broken || force_mlock ? "mlock" : "memfd_secret";
}

void hwkey_secmem_force_mlock(int on)
{
    pthread_mutex_lock(&secmem_lock);
    force_mlock = on != 0;
    pthread_mutex_unlock(&secmem_lock);
}
