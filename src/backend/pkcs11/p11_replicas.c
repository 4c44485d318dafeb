/*
 * Failover and load sharing (pkcs11-failover = yes, docs/failover.md): one
 * key held by several tokens (two HSMs, two p11-kit servers, several slots)
 * is used on all of them.  A key URI that names the key by id/object then
 * resolves, across every configured module (pkcs11-module, pkcs11-modules)
 * and every slot, to each token holding a private key under that reference
 * whose public key is the one the first token holds: two different keys that
 * happen to share a label are never mixed.
 *
 * Operations go round robin over the replicas that are in.  A replica whose
 * operation fails for any reason but the data (a device or session error, a
 * failed login, the key gone) is taken out at once and the same operation
 * runs on the next one, so the handshake that met the failure succeeds.  It
 * does so without the single-key recovery (p11_recover.c): a re-initialisation
 * of a network HSM's client can block for its connect timeout, and another
 * token is ready now.  A replica that is out is tried again by one operation
 * (the "probe") after a back-off of 100 ms doubling to 400 ms; the probe runs
 * with the full recovery (re-initialise, log in, re-find; the module's own
 * back-off paces those) and puts the replica back when it answers.  When every replica is out, an
 * operation tries each with recovery, as a key on one token would (the module's own back-off keeps
 * that cheap while the devices stay away).
 *
 * One log line per change ("out", "back") per key and process; the
 * module-level lines of p11_recover.c are silenced for replica operations.
 *
 * Fork: each replica is an ordinary key on its token, so a child
 * re-initialises each module and re-finds each object on first use, as for
 * a single key.  Lock: reps->lock (order 4, a leaf) guards the out/back-off
 * state and is never held across a module call.
 */
#include "backend/pkcs11/p11_internal.h"

#include <string.h>

#include <openssl/err.h>

#include "util/error.h"
#include "util/log.h"

#define MAX_REPLICAS 16
/*
 * How often an out replica is retried: 100 ms doubling to 400 ms.  Only a
 * cap this low: the retry of a lost device goes through the module's own
 * back-off (p11_recover.c, 100 ms doubling to 800 ms), which fails fast in
 * between, so the two delays would otherwise add up (a device back for
 * up to the cap before a retry lands after the module's next attempt).
 */
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 400u
#define REINIT_MAX_MS HWKEY_P11_REINIT_BACKOFF_MAX_MS /* for the log line */

typedef struct {
    HWKEY_P11_KEY *key; /* r[0].key is the key that owns the set */
    int out;            /* taken out after a failure */
    int probing;        /* one operation is trying it again */
    uint64_t out_since_ms, next_try_ms;
    unsigned int backoff_ms;
} REPLICA;

struct hwkey_p11_replicas {
    pthread_mutex_t lock;
    unsigned int next; /* round robin, atomic */
    size_t n;
    REPLICA r[MAX_REPLICAS];
};

/* --- configuration ----------------------------------------------------------- */

static int path_add(HWKEY_P11_DEVICE *dev, const char *p, size_t n)
{
    char **grown;

    for (size_t i = 0; i < dev->n_paths; i++)
        if (strlen(dev->paths[i]) == n && strncmp(dev->paths[i], p, n) == 0)
            return 1; /* named twice: one module, loaded once */
    grown = OPENSSL_realloc(dev->paths, (dev->n_paths + 1) * sizeof(*grown));
    if (grown == NULL || (grown[dev->n_paths] = OPENSSL_strndup(p, n)) == NULL) {
        if (grown != NULL)
            dev->paths = grown;
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying pkcs11-modules");
        return 0;
    }
    dev->paths = grown;
    dev->n_paths++;
    return 1;
}

int hwkey_p11_paths_parse(HWKEY_P11_DEVICE *dev, const char *list)
{
    const char *p = list;

    if (dev->module_path != NULL && !path_add(dev, dev->module_path, strlen(dev->module_path)))
        return 0;
    while (p != NULL && *p != '\0') {
        size_t n;

        p += strspn(p, " \t");
        n = strcspn(p, ",");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == 0) {
            hwkey_raise(HWKEY_R_CONFIG_INVALID,
                        "pkcs11-modules has an empty entry in \"%s\" "
                        "(a comma-separated list of module paths)",
                        list);
            return 0;
        }
        if (!path_add(dev, p, n))
            return 0;
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
    /* The first listed module is the default one when pkcs11-module is not set. */
    if (dev->module_path == NULL && dev->n_paths > 0 &&
        (dev->module_path = OPENSSL_strdup(dev->paths[0])) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying pkcs11-modules");
        return 0;
    }
    return 1;
}

/* --- resolving -------------------------------------------------------------- */

/* Every initialised token of mod matching uri, as token objects of mod (made if new). */
static int tokens_all(HWKEY_P11_MODULE *mod, const HWKEY_P11_URI *uri, HWKEY_P11_TOKEN **toks,
                      size_t max, size_t *n)
{
    CK_SLOT_ID slots[64];
    CK_ULONG ns = 64;
    CK_RV rv;

    *n = 0;
    if (!hwkey_p11_module_check(mod))
        return 0;
    pthread_mutex_lock(&mod->lock);
    if ((rv = mod->fl->C_GetSlotList(CK_TRUE, slots, &ns)) != CKR_OK) {
        hwkey_raise(hwkey_p11_rv_reason(rv), "C_GetSlotList of %s failed: %s", mod->path,
                    hwkey_p11_rv_name(rv));
        pthread_mutex_unlock(&mod->lock);
        return 0;
    }
    for (CK_ULONG i = 0; i < ns && *n < max; i++) {
        HWKEY_P11_TOKEN *tok;
        CK_TOKEN_INFO ti;

        if (mod->fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
            (ti.flags & CKF_TOKEN_INITIALIZED) == 0 || !hwkey_p11_token_matches(uri, slots[i], &ti))
            continue;
        /* The same token (label and serial) keeps its one object, pool and login. */
        for (tok = mod->tokens; tok != NULL; tok = tok->next)
            if (memcmp(tok->info.label, ti.label, sizeof(ti.label)) == 0 &&
                memcmp(tok->info.serialNumber, ti.serialNumber, sizeof(ti.serialNumber)) == 0)
                break;
        if (tok == NULL && (tok = hwkey_p11_token_new(mod, slots[i], &ti)) != NULL) {
            tok->next = mod->tokens;
            mod->tokens = tok;
        }
        if (tok != NULL)
            toks[(*n)++] = tok;
    }
    pthread_mutex_unlock(&mod->lock);
    return 1;
}

/*
 * The key of the URI text on tok: its own parsed URI (PIN sources), a
 * session, a login.  1: *out is the key; -1: the token lacks it; 0: failed.
 */
static int key_on_token(HWKEY_P11_DEVICE *dev, HWKEY_P11_TOKEN *tok, const char *text, size_t len,
                        OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_P11_KEY **out)
{
    HWKEY_P11_URI *uri = NULL;
    HWKEY_P11_PINSRC src;
    CK_SESSION_HANDLE s;
    uint64_t epoch;
    HWKEY_LOOKUP r;
    int ok = 0;

    if (!hwkey_p11_uri_parse(text, len, &uri))
        return 0;
    if (!hwkey_p11_session_get(tok, &s, &epoch))
        goto end;
    src.uri = uri;
    src.cfg_pin_source = dev->pin_source;
    src.pw_cb = pw_cb;
    src.pw_arg = pw_arg;
    src.quirks = dev->quirks;
    if (!hwkey_p11_login(tok, s, &src))
        ok = 0;
    else if ((r = hwkey_p11_key_build(dev, tok, uri, s, epoch, out)) == HWKEY_LOOKUP_FOUND)
        ok = 1;
    else
        ok = r == HWKEY_LOOKUP_ABSENT ? -1 : 0;
    hwkey_p11_session_put(tok, s, epoch, 0);
end:
    if (ok != 1)
        hwkey_p11_uri_free(uri);
    return ok;
}

static int same_public(const HWKEY_P11_KEY *a, const HWKEY_P11_KEY *b)
{
    return a->ktype == b->ktype && a->pub_a_len == b->pub_a_len && a->pub_b_len == b->pub_b_len &&
           (a->pub_a_len == 0 || memcmp(a->pub_a, b->pub_a, a->pub_a_len) == 0) &&
           (a->pub_b_len == 0 || memcmp(a->pub_b, b->pub_b, a->pub_b_len) == 0);
}

static const char *key_name(const HWKEY_P11_KEY *key)
{
    return key->label != NULL ? key->label : "(by id)";
}

/* The text of the newest error in the queue, for a log line. */
static const char *last_error(void)
{
    const char *data = NULL;
    int flags = 0;

    ERR_peek_last_error_data(&data, &flags);
    return (flags & ERR_TXT_STRING) != 0 && data != NULL ? data : "unknown error";
}

/* Adds k to the set (or frees it when its public key differs from the first one's). */
static void replica_add(HWKEY_P11_KEY **keys, size_t *n, HWKEY_P11_KEY *k)
{
    if (*n > 0 && !same_public(keys[0], k)) {
        hwkey_log(HWKEY_LOG_ERROR,
                  "pkcs11: token \"%s\" of %s holds a different key under "
                  "\"%s\": not used (failover replicas must hold the same key)",
                  k->tok->name, k->tok->mod->path, key_name(k));
        hwkey_p11_key_free(&k->base);
        return;
    }
    keys[(*n)++] = k;
}

/* Every token of the module at path (NULL: the default) that holds the key. */
/* *failed: set when a module or token could not be asked (not merely lacks the key). */
static void load_module(HWKEY_P11_DEVICE *dev, const char *path, const HWKEY_P11_URI *uri,
                        const char *text, size_t len, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                        HWKEY_P11_KEY **keys, size_t *n, int *failed)
{
    HWKEY_P11_TOKEN *toks[MAX_REPLICAS];
    HWKEY_P11_MODULE *mod;
    size_t nt = 0;

    ERR_set_mark();
    if ((mod = hwkey_p11_module_get(dev, path)) == NULL ||
        !tokens_all(mod, uri, toks, MAX_REPLICAS, &nt)) {
        hwkey_log(HWKEY_LOG_ERROR,
                  "pkcs11: failover: module %s not usable now (%s); key "
                  "\"%s\" goes without it",
                  path != NULL ? path : "(default)", last_error(),
                  uri->object != NULL ? uri->object : "(by id)");
        ERR_pop_to_mark();
        *failed = 1;
        return;
    }
    ERR_pop_to_mark();
    for (size_t i = 0; i < nt && *n < MAX_REPLICAS; i++) {
        HWKEY_P11_KEY *k = NULL;
        int r;

        ERR_set_mark();
        r = key_on_token(dev, toks[i], text, len, pw_cb, pw_arg, &k);
        if (r == 1) {
            replica_add(keys, n, k);
        } else {
            if (r == 0)
                *failed = 1;
            hwkey_log(HWKEY_LOG_INFO, "pkcs11: failover: token \"%s\" of %s: %s", toks[i]->name,
                      mod->path, last_error());
        }
        ERR_pop_to_mark();
    }
}

int hwkey_p11_replicas_adopt(HWKEY_P11_KEY **keys, size_t n)
{
    HWKEY_P11_REPLICAS *reps = n <= MAX_REPLICAS ? OPENSSL_zalloc(sizeof(*reps)) : NULL;

    if (reps == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a replica set");
        return 0;
    }
    pthread_mutex_init(&reps->lock, NULL);
    reps->n = n;
    for (size_t i = 0; i < n; i++)
        reps->r[i].key = keys[i];
    keys[0]->reps = reps;
    hwkey_log(HWKEY_LOG_INFO, "pkcs11: key \"%s\" on %zu token(s) (failover)", key_name(keys[0]),
              n);
    return 1;
}

HWKEY_LOOKUP hwkey_p11_replicas_load(HWKEY_P11_DEVICE *dev, const char *text, size_t len,
                                     OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                     HWKEY_P11_KEY **out)
{
    HWKEY_P11_KEY *keys[MAX_REPLICAS];
    HWKEY_P11_URI *uri = NULL;
    size_t n = 0;
    int failed = 0;
    HWKEY_LOOKUP r = HWKEY_LOOKUP_FAILED;

    *out = NULL;
    if (!hwkey_p11_uri_parse(text, len, &uri))
        return HWKEY_LOOKUP_FAILED;
    if (uri->object == NULL && !uri->has_id) {
        hwkey_raise(HWKEY_R_INVALID_URI, "the key URI names no object= nor id=");
        goto end;
    }
    if (uri->module_path != NULL || dev->n_paths == 0)
        load_module(dev, uri->module_path, uri, text, len, pw_cb, pw_arg, keys, &n, &failed);
    else
        for (size_t i = 0; i < dev->n_paths; i++)
            load_module(dev, dev->paths[i], uri, text, len, pw_cb, pw_arg, keys, &n, &failed);
    if (n == 0) {
        /* Absent only if every token answered and none holds it. */
        if (!failed)
            r = HWKEY_LOOKUP_ABSENT;
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND,
                    "pkcs11-failover: no token of the %zu configured "
                    "module(s) holds a usable private key with object=\"%s\" (log-level 2 "
                    "names each token's reason)",
                    dev->n_paths > 0 ? dev->n_paths : 1,
                    uri->object != NULL ? uri->object : "(by id)");
        goto end;
    }
    /* One token: a plain key, with the single-key recovery (p11_recover.c). */
    if (n == 1)
        hwkey_log(HWKEY_LOG_INFO,
                  "pkcs11: key \"%s\" on 1 token (failover: no other token "
                  "holds it)",
                  key_name(keys[0]));
    else if (!hwkey_p11_replicas_adopt(keys, n)) {
        for (size_t i = 0; i < n; i++)
            hwkey_p11_key_free(&keys[i]->base);
        goto end;
    }
    *out = keys[0];
    r = HWKEY_LOOKUP_FOUND;
end:
    hwkey_p11_uri_free(uri);
    return r;
}

void hwkey_p11_replicas_free(HWKEY_P11_REPLICAS *reps)
{
    if (reps == NULL)
        return;
    /* r[0] is the key being freed by the caller. */
    for (size_t i = 1; i < reps->n; i++)
        hwkey_p11_key_free(&reps->r[i].key->base);
    pthread_mutex_destroy(&reps->lock);
    OPENSSL_free(reps);
}

/* --- running ---------------------------------------------------------------- */

/* 1 if r may take this operation now; *probe: it is out and this is its retry. */
static int claim(HWKEY_P11_REPLICAS *reps, REPLICA *r, int *probe)
{
    int ok = 0;

    pthread_mutex_lock(&reps->lock);
    *probe = 0;
    if (!r->out) {
        ok = 1;
    } else if (!r->probing && hwkey_p11_now_ms() >= r->next_try_ms) {
        r->probing = 1;
        *probe = ok = 1;
    }
    pthread_mutex_unlock(&reps->lock);
    return ok;
}

/*
 * After an attempt on r: back in (ok), out (first failure) or a longer
 * back-off (a failed retry).  probe: this attempt held r's probe claim.
 */
static void settle(HWKEY_P11_REPLICAS *reps, REPLICA *r, int probe, int ok, CK_RV rv)
{
    uint64_t now = hwkey_p11_now_ms();
    int went_out = 0, came_back = 0;
    size_t n_in = 0;
    uint64_t away = 0;

    pthread_mutex_lock(&reps->lock);
    if (probe)
        r->probing = 0;
    if (ok && r->out) {
        r->out = 0;
        came_back = 1;
        away = now - r->out_since_ms;
    } else if (!ok && !r->out) {
        r->out = went_out = 1;
        r->out_since_ms = now;
        r->backoff_ms = BACKOFF_MIN_MS;
        r->next_try_ms = now + r->backoff_ms;
        for (size_t i = 0; i < reps->n; i++)
            n_in += !reps->r[i].out;
    } else if (!ok && probe) {
        r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
        r->next_try_ms = now + r->backoff_ms;
    }
    pthread_mutex_unlock(&reps->lock);
    /* Logged outside the lock: one line per change, none per operation. */
    if (went_out)
        hwkey_log(HWKEY_LOG_ERROR,
                  "pkcs11: token \"%s\" of %s out (%s): key \"%s\" continues "
                  "on %zu other token(s); retrying it every %u ms at most",
                  r->key->tok->name, r->key->tok->mod->path,
                  rv != CKR_OK ? hwkey_p11_rv_name(rv) : last_error(), key_name(r->key), n_in,
                  REINIT_MAX_MS);
    if (came_back)
        hwkey_log(HWKEY_LOG_ERROR,
                  "pkcs11: token \"%s\" of %s back after %llu ms: key \"%s\" "
                  "uses it again",
                  r->key->tok->name, r->key->tok->mod->path, (unsigned long long)away,
                  key_name(r->key));
}

/*
 * One attempt on r.  1: the operation is answered (done, or refused for its
 * data: another token would say the same); 0: r failed it, try another.
 * recover: r is out and this is its retry (re-initialise, log in, re-find);
 * probe: this attempt holds r's probe claim.
 */
static int attempt(HWKEY_P11_REPLICAS *reps, REPLICA *r, HWKEY_P11_RUN_FN *run, void *op, CK_RV *rv,
                   int recover, int probe, int *res)
{
    int answered;

    /* Only the errors of the last attempt stay for the caller. */
    ERR_pop_to_mark();
    ERR_set_mark();
    hwkey_p11_recovery_quiet(1);
    *rv = CKR_OK;
    *res = run(r->key, op, rv, recover);
    hwkey_p11_recovery_quiet(0);
    answered = *res == 1 ||
               (*res == 0 && !hwkey_p11_rv_device_lost(*rv) && !hwkey_p11_rv_session_dead(*rv));
    settle(reps, r, probe, answered, *res == 0 ? *rv : hwkey_p11_noted_rv());
    return answered;
}

int hwkey_p11_replicas_run(HWKEY_P11_KEY *key, HWKEY_P11_RUN_FN *run, void *op, CK_RV *rv)
{
    HWKEY_P11_REPLICAS *reps = key->reps;
    unsigned int start = __atomic_fetch_add(&reps->next, 1, __ATOMIC_RELAXED);
    int recovered[MAX_REPLICAS] = {0};
    int res = -1, probe;

    ERR_set_mark();
    /* The replicas that are in, round robin; an out one whose back-off has passed, probed. */
    for (size_t i = 0; i < reps->n; i++) {
        REPLICA *r = &reps->r[(start + i) % reps->n];

        if (!claim(reps, r, &probe))
            continue;
        recovered[(start + i) % reps->n] = probe;
        if (attempt(reps, r, run, op, rv, probe, probe, &res))
            goto done;
    }
    /*
     * None answered: every token is out (or failed just now); try each once
     * with recovery, as a key on one token would, so a short outage of all
     * of them costs no operation.  The modules' own back-off (p11_recover.c)
     * makes this fail fast while the devices stay away.
     */
    for (size_t i = 0; i < reps->n; i++) {
        if (recovered[i])
            continue;
        if (attempt(reps, &reps->r[i], run, op, rv, 1, 0, &res))
            goto done;
    }
    ERR_clear_last_mark();
    return res;
done:
    /* Errors of the replicas that failed before are dropped: the operation succeeded. */
    if (res == 1)
        ERR_pop_to_mark();
    else
        ERR_clear_last_mark();
    return res;
}
