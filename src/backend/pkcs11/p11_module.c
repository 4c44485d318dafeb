/*
 * Loading a PKCS#11 module and finding its tokens.
 *
 * dlopen + C_GetFunctionList rather than p11-kit's managed loading: the hot
 * path and the fork handling call the module directly (ARCHITECTURE.md §2),
 * and p11-kit's managed wrapper would add its own fork and session layer.
 *
 * Teardown: modules are never C_Finalize'd nor dlclose'd at teardown (only
 * recovery finalizes and re-initialises a module whose device was lost,
 * p11_recover.c, and a forked child re-initialises, p11_fork.c).  SoftHSM tears
 * itself down in its own destructors at exit, and provider teardown runs from
 * OPENSSL_cleanup()/atexit after (or before, the order is unreliable) those
 * destructors; a C_Finalize or C_CloseSession then crashes the program after
 * its work is done (TRAPS.md, seen with pkcs11-provider).  The process exit
 * releases every module resource anyway.
 */
#include "config.h" /* HWKEY_P11KIT_PROXY */

#include "backend/pkcs11/p11_internal.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "util/error.h"
#include "util/log.h"

static const struct {
    const char *name;
    unsigned int flag;
} quirk_names[] = {
    {"no-session-callbacks", HWKEY_P11_QUIRK_NO_SESSION_CALLBACKS},
    {"no-operation-state", HWKEY_P11_QUIRK_NO_OPERATION_STATE},
    {"pin-user-password", HWKEY_P11_QUIRK_PIN_USER_PASSWORD},
    {"single-part-only", HWKEY_P11_QUIRK_SINGLE_PART_ONLY},
};

int hwkey_p11_quirks_parse(const char *list, unsigned int *out)
{
    const char *p = list;

    *out = 0;
    while (p != NULL && *p != '\0') {
        size_t n = strcspn(p, ", ");
        size_t i;

        for (i = 0; i < sizeof(quirk_names) / sizeof(quirk_names[0]); i++)
            if (strlen(quirk_names[i].name) == n && strncmp(quirk_names[i].name, p, n) == 0)
                break;
        if (n > 0 && i == sizeof(quirk_names) / sizeof(quirk_names[0])) {
            hwkey_raise(HWKEY_R_CONFIG_INVALID,
                        "unknown pkcs11-quirks entry \"%.*s\" (known: no-session-callbacks, "
                        "no-operation-state, pin-user-password, single-part-only)",
                        (int)n, p);
            return 0;
        }
        if (n > 0)
            *out |= quirk_names[i].flag;
        p += n;
        p += strspn(p, ", ");
    }
    return 1;
}

/* --- CKR codes --------------------------------------------------------- */

#define RV(x)                                                                                      \
    {                                                                                              \
        x, #x                                                                                      \
    }
static const struct {
    CK_RV rv;
    const char *name;
} rv_names[] = {
    RV(CKR_OK),
    RV(CKR_CANCEL),
    RV(CKR_HOST_MEMORY),
    RV(CKR_SLOT_ID_INVALID),
    RV(CKR_GENERAL_ERROR),
    RV(CKR_FUNCTION_FAILED),
    RV(CKR_ARGUMENTS_BAD),
    RV(CKR_ATTRIBUTE_READ_ONLY),
    RV(CKR_ATTRIBUTE_SENSITIVE),
    RV(CKR_ATTRIBUTE_TYPE_INVALID),
    RV(CKR_ATTRIBUTE_VALUE_INVALID),
    RV(CKR_DATA_INVALID),
    RV(CKR_DATA_LEN_RANGE),
    RV(CKR_DEVICE_ERROR),
    RV(CKR_DEVICE_MEMORY),
    RV(CKR_DEVICE_REMOVED),
    RV(CKR_ENCRYPTED_DATA_INVALID),
    RV(CKR_ENCRYPTED_DATA_LEN_RANGE),
    RV(CKR_FUNCTION_CANCELED),
    RV(CKR_FUNCTION_NOT_SUPPORTED),
    RV(CKR_KEY_HANDLE_INVALID),
    RV(CKR_KEY_SIZE_RANGE),
    RV(CKR_KEY_TYPE_INCONSISTENT),
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
    RV(CKR_MECHANISM_INVALID),
    RV(CKR_MECHANISM_PARAM_INVALID),
    RV(CKR_OBJECT_HANDLE_INVALID),
    RV(CKR_OPERATION_ACTIVE),
    RV(CKR_OPERATION_NOT_INITIALIZED),
    RV(CKR_PIN_INCORRECT),
    RV(CKR_PIN_INVALID),
    RV(CKR_PIN_LEN_RANGE),
    RV(CKR_PIN_EXPIRED),
    RV(CKR_PIN_LOCKED),
    RV(CKR_SESSION_CLOSED),
    RV(CKR_SESSION_COUNT),
    RV(CKR_SESSION_HANDLE_INVALID),
    RV(CKR_SESSION_READ_ONLY),
    RV(CKR_SIGNATURE_INVALID),
    RV(CKR_SIGNATURE_LEN_RANGE),
    RV(CKR_TEMPLATE_INCOMPLETE),
    RV(CKR_TEMPLATE_INCONSISTENT),
    RV(CKR_TOKEN_NOT_PRESENT),
    RV(CKR_TOKEN_NOT_RECOGNIZED),
    RV(CKR_TOKEN_WRITE_PROTECTED),
    RV(CKR_USER_ALREADY_LOGGED_IN),
    RV(CKR_USER_NOT_LOGGED_IN),
    RV(CKR_USER_PIN_NOT_INITIALIZED),
    RV(CKR_USER_TYPE_INVALID),
    RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    RV(CKR_USER_TOO_MANY_TYPES),
    RV(CKR_BUFFER_TOO_SMALL),
    RV(CKR_CRYPTOKI_NOT_INITIALIZED),
    RV(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    RV(CKR_CANT_LOCK),
    RV(CKR_RANDOM_NO_RNG),
    RV(CKR_DOMAIN_PARAMS_INVALID),
    RV(CKR_CURVE_NOT_SUPPORTED),
};

const char *hwkey_p11_rv_name(CK_RV rv)
{
    static __thread char buf[32];

    for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
        if (rv_names[i].rv == rv)
            return rv_names[i].name;
    snprintf(buf, sizeof(buf), "CKR_0x%08lx", (unsigned long)rv);
    return buf;
}

int hwkey_p11_rv_reason(CK_RV rv)
{
    switch (rv) {
    case CKR_HOST_MEMORY:
    case CKR_DEVICE_MEMORY:
        return HWKEY_R_OUT_OF_MEMORY;
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_USER_PIN_NOT_INITIALIZED:
        return HWKEY_R_AUTH_FAILED;
    case CKR_PIN_LOCKED:
        return HWKEY_R_PIN_LOCKED;
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_KEY_HANDLE_INVALID:
        return HWKEY_R_KEY_NOT_FOUND;
    case CKR_MECHANISM_INVALID:
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_CURVE_NOT_SUPPORTED:
    case CKR_KEY_SIZE_RANGE:
        return HWKEY_R_UNSUPPORTED_ALGORITHM;
    case CKR_BUFFER_TOO_SMALL:
        return HWKEY_R_BUFFER_TOO_SMALL;
    case CKR_SESSION_COUNT:
        return HWKEY_R_DEVICE_BUSY;
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_DEVICE_REMOVED:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        return HWKEY_R_DEVICE_UNREACHABLE;
    default:
        return HWKEY_R_DEVICE_ERROR;
    }
}

/* --- modules ------------------------------------------------------------- */

static CK_RV initialize(CK_FUNCTION_LIST *fl)
{
    CK_C_INITIALIZE_ARGS args;
    CK_RV rv;

    memset(&args, 0, sizeof(args));
    /* Threads use the module at once: let it use the OS's own locking. */
    args.flags = CKF_OS_LOCKING_OK;
    /*
     * SoftHSM runs OpenSSL in-process and leaves lines such as "no such
     * engine: rdrand" in the error queue while it initialises: drop them,
     * or they come before (and bury) the reason we raise if this fails.
     */
    ERR_set_mark();
    rv = fl->C_Initialize(&args);
    ERR_pop_to_mark();
    /* Another user in the process (libp11, another provider) got there first: share it. */
    return rv == CKR_CRYPTOKI_ALREADY_INITIALIZED ? CKR_OK : rv;
}

static HWKEY_P11_MODULE *module_new(HWKEY_P11_DEVICE *dev, const char *path)
{
    HWKEY_P11_MODULE *mod = OPENSSL_zalloc(sizeof(*mod));

    if (mod == NULL || (mod->path = OPENSSL_strdup(path)) == NULL) {
        OPENSSL_free(mod);
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a PKCS#11 module");
        return NULL;
    }
    mod->dev = dev;
    pthread_mutex_init(&mod->lock, NULL);
    return mod;
}

static HWKEY_P11_MODULE *module_load(HWKEY_P11_DEVICE *dev, const char *path)
{
    CK_C_GetFunctionList get_list;
    HWKEY_P11_MODULE *mod = NULL;
    void *dl;
    CK_RV rv;

    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE, "cannot load PKCS#11 module %s: %s", path,
                    dlerror());
        return NULL;
    }
    get_list = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    if (get_list == NULL) {
        hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE,
                    "%s is not a PKCS#11 module (no "
                    "C_GetFunctionList)",
                    path);
        goto err;
    }
    if ((mod = module_new(dev, path)) == NULL)
        goto err;
    mod->dl = dl;
    rv = get_list(&mod->fl);
    if (rv != CKR_OK || mod->fl == NULL) {
        hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE, "C_GetFunctionList of %s failed: %s", path,
                    hwkey_p11_rv_name(rv));
        goto err;
    }
    mod->fork_gen = hwkey_p11_fork_generation();
    rv = initialize(mod->fl);
    mod->initialize_calls++;
    if (rv != CKR_OK) {
        hwkey_p11_raise_init_failure(mod, "C_Initialize", rv);
        goto err;
    }
    hwkey_log(HWKEY_LOG_INFO, "pkcs11: loaded %s", path);
    return mod;
err:
    /* Not dlclose'd: a half-initialised module may have registered destructors. */
    if (mod != NULL) {
        pthread_mutex_destroy(&mod->lock);
        OPENSSL_free(mod->path);
        OPENSSL_free(mod);
    }
    return NULL;
}

static HWKEY_P11_MODULE *module_insert(HWKEY_P11_DEVICE *dev, const char *path,
                                       CK_FUNCTION_LIST *fl)
{
    HWKEY_P11_MODULE *mod;

    pthread_mutex_lock(&dev->lock);
    for (mod = dev->modules; mod != NULL; mod = mod->next)
        if (strcmp(mod->path, path) == 0)
            break;
    if (mod == NULL) {
        mod = fl != NULL ? module_new(dev, path) : module_load(dev, path);
        if (mod != NULL) {
            if (fl != NULL) {
                mod->fl = fl;
                mod->fork_gen = hwkey_p11_fork_generation();
            }
            mod->next = dev->modules;
            dev->modules = mod;
        }
    }
    pthread_mutex_unlock(&dev->lock);
    return mod;
}

HWKEY_P11_MODULE *hwkey_p11_module_get(HWKEY_P11_DEVICE *dev, const char *path)
{
    if (path == NULL)
        path = dev->module_path;
    if (path == NULL) {
        if (access(HWKEY_P11_PROXY_MODULE, R_OK) != 0) {
            hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE,
                        "no PKCS#11 module configured "
                        "(pkcs11-module, HWKEY_PKCS11_MODULE or module-path=) and no "
                        "p11-kit proxy at %s",
                        HWKEY_P11_PROXY_MODULE);
            return NULL;
        }
        path = HWKEY_P11_PROXY_MODULE;
    }
    return module_insert(dev, path, NULL);
}

HWKEY_P11_MODULE *hwkey_p11_module_adopt(HWKEY_P11_DEVICE *dev, const char *path,
                                         CK_FUNCTION_LIST *fl)
{
    return module_insert(dev, path, fl);
}

/* --- tokens --------------------------------------------------------------- */

static int field_eq(const unsigned char *field, size_t n, const char *want)
{
    size_t wl = strlen(want);

    if (wl > n || memcmp(field, want, wl) != 0)
        return 0;
    for (size_t i = wl; i < n; i++)
        if (field[i] != ' ')
            return 0;
    return 1;
}

int hwkey_p11_token_matches(const HWKEY_P11_URI *u, CK_SLOT_ID slot, const CK_TOKEN_INFO *ti)
{
    if (u == NULL)
        return 1;
    return (!u->has_slot_id || u->slot_id == slot) &&
           (u->token == NULL || field_eq(ti->label, sizeof(ti->label), u->token)) &&
           (u->manufacturer == NULL ||
            field_eq(ti->manufacturerID, sizeof(ti->manufacturerID), u->manufacturer)) &&
           (u->model == NULL || field_eq(ti->model, sizeof(ti->model), u->model)) &&
           (u->serial == NULL || field_eq(ti->serialNumber, sizeof(ti->serialNumber), u->serial));
}

HWKEY_P11_TOKEN *hwkey_p11_token_new(HWKEY_P11_MODULE *mod, CK_SLOT_ID slot,
                                     const CK_TOKEN_INFO *ti)
{
    HWKEY_P11_TOKEN *tok = OPENSSL_zalloc(sizeof(*tok));
    CK_ULONG n = 0;

    if (tok == NULL)
        goto oom;
    tok->mod = mod;
    tok->slot = slot;
    tok->info = *ti;
    memcpy(tok->name, ti->label, sizeof(ti->label));
    for (size_t i = sizeof(ti->label); i > 0 && (tok->name[i - 1] == ' ' || tok->name[i - 1] == 0);
         i--)
        tok->name[i - 1] = '\0';
    pthread_mutex_init(&tok->lock, NULL);
    pthread_cond_init(&tok->cond, NULL);
    /* ulMaxSessionCount: 0 = effectively infinite, ~0 = unknown. */
    tok->max_open = HWKEY_P11_MAX_SESSIONS;
    if (ti->ulMaxSessionCount != CK_EFFECTIVELY_INFINITE &&
        ti->ulMaxSessionCount != CK_UNAVAILABLE_INFORMATION &&
        ti->ulMaxSessionCount < tok->max_open)
        tok->max_open = ti->ulMaxSessionCount;
    if (ti->ulMaxRwSessionCount != CK_EFFECTIVELY_INFINITE &&
        ti->ulMaxRwSessionCount != CK_UNAVAILABLE_INFORMATION &&
        ti->ulMaxRwSessionCount < tok->max_open && ti->ulMaxRwSessionCount > 0)
        tok->max_open = ti->ulMaxRwSessionCount;
    if (tok->max_open == 0)
        tok->max_open = 1;
    if ((tok->idle = OPENSSL_zalloc(tok->max_open * sizeof(*tok->idle))) == NULL)
        goto oom;
    if (mod->fl->C_GetMechanismList(slot, NULL, &n) == CKR_OK &&
        n > 0
        /* One spare element: p11-kit-client 0.24.1's mechanism_list_purge()
         * reads one past the array it is given (fixed in later p11-kit). */
        && (tok->mechs = OPENSSL_zalloc((n + 1) * sizeof(*tok->mechs))) != NULL &&
        mod->fl->C_GetMechanismList(slot, tok->mechs, &n) == CKR_OK)
        tok->n_mechs = n;
    return tok;
oom:
    if (tok != NULL)
        OPENSSL_free(tok->idle);
    OPENSSL_free(tok);
    hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a PKCS#11 token");
    return NULL;
}

/*
 * One pass over the slots: the matching initialised token, or NULL with
 * *n_out slots seen.  0 on a C_GetSlotList failure (raised).
 */
static int token_scan(HWKEY_P11_MODULE *mod, const HWKEY_P11_URI *uri, HWKEY_P11_TOKEN **found,
                      CK_ULONG *n_out)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_RV rv;
    int ok = 0;

    *found = NULL;
    rv = mod->fl->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv == CKR_OK && n > 0) {
        if ((slots = OPENSSL_zalloc(n * sizeof(*slots))) == NULL) {
            hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "listing slots");
            return 0;
        }
        rv = mod->fl->C_GetSlotList(CK_TRUE, slots, &n);
    }
    if (rv != CKR_OK) {
        hwkey_p11_note_rv(rv);
        hwkey_raise(hwkey_p11_rv_reason(rv), "C_GetSlotList of %s failed: %s", mod->path,
                    hwkey_p11_rv_name(rv));
        goto end;
    }
    ok = 1;
    *n_out = n;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;

        if (mod->fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
            (ti.flags & CKF_TOKEN_INITIALIZED) == 0 || !hwkey_p11_token_matches(uri, slots[i], &ti))
            continue;
        if ((*found = hwkey_p11_token_new(mod, slots[i], &ti)) == NULL)
            ok = 0;
        break;
    }
end:
    OPENSSL_free(slots);
    return ok;
}

HWKEY_P11_TOKEN *hwkey_p11_token_find(HWKEY_P11_MODULE *mod, const HWKEY_P11_URI *uri)
{
    HWKEY_P11_TOKEN *tok = NULL;
    CK_ULONG n = 0;

    if (!hwkey_p11_module_check(mod))
        return NULL;
    pthread_mutex_lock(&mod->lock);
    for (tok = mod->tokens; tok != NULL; tok = tok->next)
        if (hwkey_p11_token_matches(uri, tok->slot, &tok->info))
            goto end;
    /*
     * SoftHSM keeps tokens in files that other processes rewrite (a login,
     * a new object): a process reading at that moment can see the token as
     * missing or uninitialised (seen: `hwkey encrypt | hwkey decrypt` on one
     * token, about one run in five).  A token that is really absent costs
     * the retries, 10 x 20 ms, once.
     */
    for (int attempt = 0; attempt < 10; attempt++) {
        if (!token_scan(mod, uri, &tok, &n))
            goto end;
        if (tok != NULL) {
            tok->next = mod->tokens;
            mod->tokens = tok;
            goto end;
        }
        usleep(20000);
    }
    {
        /* A token SoftHSM cannot read looks absent or uninitialised: say why. */
        char hint[1024];
        int have_hint = hwkey_p11_store_hint(mod->path, hint, sizeof(hint));

        hwkey_raise(HWKEY_R_KEY_NOT_FOUND,
                    "no initialised token in %s matches the URI (%lu "
                    "slots with a token)%s%s%s%s",
                    mod->path, (unsigned long)n,
                    uri != NULL && uri->token != NULL ? "; token=" : "",
                    uri != NULL && uri->token != NULL ? uri->token : "", have_hint ? "; " : "",
                    have_hint ? hint : "");
    }
end:
    pthread_mutex_unlock(&mod->lock);
    return tok;
}

int hwkey_p11_token_has_mech(const HWKEY_P11_TOKEN *tok, CK_MECHANISM_TYPE m)
{
    for (CK_ULONG i = 0; i < tok->n_mechs; i++)
        if (tok->mechs[i] == m)
            return 1;
    return 0;
}

CK_RV hwkey_p11_module_reinitialize(HWKEY_P11_MODULE *mod)
{
    mod->initialize_calls++;
    return initialize(mod->fl);
}

/* Slot ids may change when a module re-initialises: find the token by label and serial. */
int hwkey_p11_token_reresolve(HWKEY_P11_TOKEN *tok)
{
    CK_FUNCTION_LIST *fl = tok->mod->fl;
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;

    if (fl->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
        return 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;

        if (fl->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
            memcmp(ti.label, tok->info.label, sizeof(ti.label)) == 0 &&
            memcmp(ti.serialNumber, tok->info.serialNumber, sizeof(ti.serialNumber)) == 0) {
            tok->slot = slots[i];
            return 1;
        }
    }
    return 0;
}
