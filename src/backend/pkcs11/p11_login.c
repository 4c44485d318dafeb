/*
 * Logging a token's user in.  Where the PIN comes from, in order: the URI's
 * pin-value, the URI's pin-source, the configured pkcs11-pin-source, the PIN
 * that already worked for this token in this process (re-login after fork),
 * the application's passphrase callback.
 *
 * A wrong PIN costs a try of the token's retry counter, and a locked token
 * needs its security officer; so: a PIN the token rejected is remembered (as
 * a hash) and never sent again, and no login is attempted when the token
 * reports CKF_USER_PIN_FINAL_TRY or CKF_USER_PIN_LOCKED.
 */
#include "backend/pkcs11/p11_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "util/error.h"
#include "util/forkgate.h"
#include "util/secmem.h"

#define PIN_MAX 256

char *hwkey_p11_pin_from_source(const char *source)
{
    char *pin = NULL;
    const char *path = source;
    ssize_t n;
    size_t len = 0;
    int fd;

    if (strncmp(source, "env:", 4) == 0) {
        const char *v = getenv(source + 4);

        if (v == NULL) {
            hwkey_raise(HWKEY_R_AUTH_FAILED, "PIN source %s: the variable is not set", source);
            return NULL;
        }
        return hwkey_secmem_strndup(v, strlen(v));
    }
    if (strncmp(source, "file:", 5) == 0)
        path = source + 5;
    if (*path != '/') {
        hwkey_raise(HWKEY_R_CONFIG_INVALID,
                    "PIN source \"%s\" is neither file:/path nor "
                    "env:NAME",
                    source);
        return NULL;
    }
    if ((pin = hwkey_secmem_alloc(PIN_MAX + 1)) == NULL)
        return NULL;
    /* read(2) rather than stdio: no library buffer keeps a copy of the PIN. */
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        hwkey_raise(HWKEY_R_AUTH_FAILED, "cannot open PIN file %s: %s", path, strerror(errno));
        goto err;
    }
    while (len < PIN_MAX && (n = read(fd, pin + len, PIN_MAX - len)) > 0)
        len += (size_t)n;
    close(fd);
    pin[len] = '\0';
    pin[strcspn(pin, "\r\n")] = '\0'; /* first line only, as echo > file writes it */
    return pin;
err:
    hwkey_secmem_free(pin);
    return NULL;
}

/*
 * Asks the application's passphrase callback, outside every provider lock
 * and outside the fork gate (util/forkgate.h): a person may take minutes to
 * type the PIN, and a callback may fork (a helper program) or call back into
 * OpenSSL.  Called with no lock held.
 */
static char *pin_from_callback(const HWKEY_P11_TOKEN *tok, const HWKEY_P11_PINSRC *src)
{
    char info[80];
    OSSL_PARAM params[2];
    size_t len = 0;
    char *pin = hwkey_secmem_alloc(PIN_MAX + 1);
    unsigned int depth;
    int ok;

    if (pin == NULL)
        return NULL;
    snprintf(info, sizeof(info), "PIN for PKCS#11 token \"%s\"", tok->name);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PASSPHRASE_PARAM_INFO, info, 0);
    params[1] = OSSL_PARAM_construct_end();
    depth = hwkey_gate_suspend();
    ok = src->pw_cb(pin, PIN_MAX, &len, params, src->pw_arg);
    hwkey_gate_resume(depth);
    if (!ok || len > PIN_MAX) {
        hwkey_secmem_free(pin);
        hwkey_raise(HWKEY_R_AUTH_FAILED,
                    "the passphrase callback gave no PIN for token "
                    "\"%s\"",
                    tok->name);
        return NULL;
    }
    pin[len] = '\0';
    return pin;
}

/* login_locked(): the PIN has to come from the callback; ask it unlocked, then again. */
#define NEED_CALLBACK 2

/*
 * The PIN to try, in protected memory; NULL with *none = 1 when no source has
 * one, or *none = NEED_CALLBACK when only the application's callback has one
 * and cb_pin (its answer, read beforehand) is NULL.  An empty candidate is
 * skipped: in a forked child ordinary protected memory (the URI's pin-value)
 * reads as zeros (util/secmem.h), and sending "" would cost a retry; the kept
 * tok->pin is inherited and still there.
 */
static char *find_pin(HWKEY_P11_TOKEN *tok, const HWKEY_P11_PINSRC *src, const char *cb_pin,
                      int *none)
{
    *none = 0;
    if (src->uri != NULL && src->uri->pin_value != NULL && src->uri->pin_value[0] != '\0')
        return hwkey_secmem_strndup(src->uri->pin_value, strlen(src->uri->pin_value));
    if (src->uri != NULL && src->uri->pin_source != NULL)
        return hwkey_p11_pin_from_source(src->uri->pin_source);
    if (src->cfg_pin_source != NULL)
        return hwkey_p11_pin_from_source(src->cfg_pin_source);
    if (tok->pin != NULL && tok->pin[0] != '\0')
        return hwkey_secmem_strndup(tok->pin, strlen(tok->pin));
    if (src->pw_cb != NULL && cb_pin != NULL)
        return hwkey_secmem_strndup(cb_pin, strlen(cb_pin));
    *none = src->pw_cb != NULL ? NEED_CALLBACK : 1;
    return NULL;
}

static int pin_hash(const char *pin, unsigned char md[32])
{
    size_t mdlen = 0;

    return EVP_Q_digest(NULL, "SHA256", NULL, pin, strlen(pin), md, &mdlen) && mdlen == 32;
}

/*
 * Keeps the PIN that worked for re-login (after a lost session, and in
 * forked children: nginx workers log in again with no one to ask).  The copy
 * is hwkey_secmem_alloc_inherited(): protected like the rest, but a forked
 * child keeps its own copy instead of zeros.  Called with tok->lock held;
 * on allocation failure the old PIN stays (a later re-login may then need
 * the PIN source again), which is no reason to fail this login.
 */
static void keep_pin(HWKEY_P11_TOKEN *tok, const char *pin)
{
    size_t n = strlen(pin);
    char *copy;

    if (n > PIN_MAX || (copy = hwkey_secmem_alloc_inherited(n + 1)) == NULL)
        return;
    memcpy(copy, pin, n + 1);
    hwkey_secmem_free(tok->pin);
    tok->pin = copy;
}

/*
 * Called with tok->lock held.  1: logged in; 0: failed (raised);
 * NEED_CALLBACK: ask the callback without the lock and call again with cb_pin.
 */
static int login_locked(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, const HWKEY_P11_PINSRC *src,
                        const char *cb_pin)
{
    CK_FUNCTION_LIST *fl = tok->mod->fl;
    CK_SESSION_INFO si;
    CK_TOKEN_INFO ti;
    unsigned char md[32];
    char *pin = NULL;
    int none, ok = 0;
    CK_RV rv;

    if (fl->C_GetSessionInfo(s, &si) == CKR_OK &&
        (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS)) {
        /* Logged in already (by another user of the module in this process). */
        tok->logged_in = 1;
        return 1;
    }
    /* Retried for the same SoftHSM multi-process reason as C_Login below. */
    for (int attempt = 0; attempt < 5; attempt++) {
        rv = fl->C_GetTokenInfo(tok->slot, &ti);
        if (rv != CKR_GENERAL_ERROR)
            break;
        usleep(20000);
    }
    if (rv != CKR_OK) {
        hwkey_p11_note_rv(rv);
        hwkey_raise(hwkey_p11_rv_reason(rv), "C_GetTokenInfo on slot %lu failed: %s",
                    (unsigned long)tok->slot, hwkey_p11_rv_name(rv));
        return 0;
    }
    if ((ti.flags & CKF_LOGIN_REQUIRED) == 0) {
        tok->logged_in = 1; /* nothing to do: do not ask again per operation */
        return 1;
    }
    if ((ti.flags & CKF_USER_PIN_LOCKED) != 0) {
        hwkey_raise(HWKEY_R_PIN_LOCKED,
                    "token \"%s\" reports CKF_USER_PIN_LOCKED: its "
                    "security officer must reset the user PIN",
                    tok->name);
        return 0;
    }
    if ((ti.flags & CKF_USER_PIN_FINAL_TRY) != 0) {
        hwkey_raise(HWKEY_R_PIN_LOCKED,
                    "token \"%s\" reports CKF_USER_PIN_FINAL_TRY: one "
                    "more wrong PIN locks it, so hwkey will not try; log in once with a tool "
                    "you trust to reset the counter",
                    tok->name);
        return 0;
    }
    pin = find_pin(tok, src, cb_pin, &none);
    if (pin == NULL && !none)
        return 0;
    if (pin == NULL && none == NEED_CALLBACK && (ti.flags & CKF_PROTECTED_AUTHENTICATION_PATH) == 0)
        return NEED_CALLBACK;
    if (pin == NULL && (ti.flags & CKF_PROTECTED_AUTHENTICATION_PATH) == 0) {
        hwkey_raise(HWKEY_R_AUTH_FAILED,
                    "token \"%s\" needs a PIN and none was given "
                    "(pin-value/pin-source in the URI, pkcs11-pin-source, or a passphrase "
                    "callback)",
                    tok->name);
        return 0;
    }
    if (pin != NULL && pin[0] == '\0') {
        hwkey_raise(HWKEY_R_AUTH_FAILED, "the PIN for token \"%s\" is empty; not sending it",
                    tok->name);
        goto end;
    }
    if (pin != NULL && (src->quirks & HWKEY_P11_QUIRK_PIN_USER_PASSWORD) != 0 &&
        strchr(pin, ':') == NULL) {
        hwkey_raise(HWKEY_R_AUTH_FAILED, "the PIN must read user:password (quirk "
                                         "pin-user-password, CloudHSM's crypto-user login)");
        goto end;
    }
    if (pin != NULL) {
        if (!pin_hash(pin, md)) {
            hwkey_raise(HWKEY_R_INTERNAL, "hashing the PIN with SHA-256 failed");
            goto end;
        }
        if (tok->have_rejected && CRYPTO_memcmp(md, tok->rejected, sizeof(md)) == 0) {
            hwkey_raise(HWKEY_R_AUTH_FAILED,
                        "token \"%s\" already rejected this PIN "
                        "(CKR_PIN_INCORRECT); not sending it again",
                        tok->name);
            goto end;
        }
    }
    /*
     * SoftHSM answers CKR_GENERAL_ERROR when a sibling process writes the
     * token file at that moment (seen: forked workers logging in at once).
     * Such an answer judged no PIN, so a short retry costs no PIN try.
     */
    for (int attempt = 0; attempt < 5; attempt++) {
        tok->login_calls++;
        rv = fl->C_Login(s, CKU_USER, (CK_UTF8CHAR *)pin, pin != NULL ? strlen(pin) : 0);
        if (rv != CKR_GENERAL_ERROR && rv != CKR_FUNCTION_FAILED)
            break;
        usleep(20000);
    }
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
        tok->logged_in = 1;
        tok->have_rejected = 0;
        if (pin != NULL && (tok->pin == NULL || strcmp(tok->pin, pin) != 0))
            keep_pin(tok, pin);
        ok = 1;
    } else if (rv == CKR_PIN_INCORRECT) {
        memcpy(tok->rejected, md, sizeof(md));
        tok->have_rejected = pin != NULL;
        hwkey_raise(HWKEY_R_AUTH_FAILED, "C_Login on token \"%s\" failed: CKR_PIN_INCORRECT",
                    tok->name);
    } else {
        hwkey_p11_note_rv(rv);
        hwkey_raise(rv == CKR_PIN_LOCKED ? HWKEY_R_PIN_LOCKED : hwkey_p11_rv_reason(rv),
                    "C_Login on token \"%s\" failed: %s", tok->name, hwkey_p11_rv_name(rv));
    }
end:
    OPENSSL_cleanse(md, sizeof(md));
    hwkey_secmem_free(pin);
    return ok;
}

int hwkey_p11_login(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s, const HWKEY_P11_PINSRC *src)
{
    char *cb_pin = NULL;
    int ok;

    pthread_mutex_lock(&tok->lock);
    ok = tok->logged_in ? 1 : login_locked(tok, s, src, NULL);
    pthread_mutex_unlock(&tok->lock);
    if (ok != NEED_CALLBACK)
        return ok;
    /* The callback runs with no lock held and the gate suspended (see pin_from_callback). */
    if ((cb_pin = pin_from_callback(tok, src)) == NULL)
        return 0;
    pthread_mutex_lock(&tok->lock);
    ok = tok->logged_in ? 1 : login_locked(tok, s, src, cb_pin);
    pthread_mutex_unlock(&tok->lock);
    hwkey_secmem_free(cb_pin);
    return ok == 1;
}

int hwkey_p11_login_context(HWKEY_P11_TOKEN *tok, CK_SESSION_HANDLE s)
{
    CK_RV rv;

    pthread_mutex_lock(&tok->lock);
    if (tok->pin == NULL) {
        pthread_mutex_unlock(&tok->lock);
        hwkey_raise(HWKEY_R_AUTH_FAILED,
                    "key needs CKA_ALWAYS_AUTHENTICATE and no PIN is "
                    "known for token \"%s\"",
                    tok->name);
        return 0;
    }
    rv = tok->mod->fl->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR *)tok->pin, strlen(tok->pin));
    pthread_mutex_unlock(&tok->lock);
    if (rv != CKR_OK) {
        hwkey_raise(hwkey_p11_rv_reason(rv), "C_Login(CKU_CONTEXT_SPECIFIC) failed: %s",
                    hwkey_p11_rv_name(rv));
        return 0;
    }
    return 1;
}
