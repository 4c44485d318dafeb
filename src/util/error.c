#include "util/error.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include <openssl/core_dispatch.h>
#include <openssl/err.h>

static const OSSL_ITEM reason_strings[] = {
    {HWKEY_R_INTERNAL, "internal error"},
    {HWKEY_R_OUT_OF_MEMORY, "out of memory"},
    {HWKEY_R_BAD_ARGUMENT, "bad argument"},
    {HWKEY_R_CONFIG_INVALID, "invalid configuration"},
    {HWKEY_R_DEVICE_UNREACHABLE, "device unreachable"},
    {HWKEY_R_DEVICE_ERROR, "device error"},
    {HWKEY_R_DEVICE_BUSY, "device busy"},
    {HWKEY_R_AUTH_FAILED, "authorization failed"},
    {HWKEY_R_PIN_LOCKED, "PIN locked"},
    {HWKEY_R_KEY_FILE_INVALID, "invalid key file"},
    {HWKEY_R_KEY_NOT_FOUND, "key not found"},
    {HWKEY_R_INVALID_URI, "invalid URI"},
    {HWKEY_R_UNSUPPORTED_ALGORITHM, "unsupported algorithm"},
    {HWKEY_R_UNSUPPORTED_DIGEST, "unsupported digest"},
    {HWKEY_R_UNSUPPORTED_PADDING, "unsupported padding"},
    {HWKEY_R_INVALID_SALT_LENGTH, "invalid salt length"},
    {HWKEY_R_BUFFER_TOO_SMALL, "output buffer too small"},
    {HWKEY_R_DECRYPTION_FAILED, "decryption failed"},
    {HWKEY_R_NO_PRIVATE_KEY, "no private key"},
    {HWKEY_R_INVALID_PEER_KEY, "invalid peer key"},
    {HWKEY_R_OPERATION_NOT_INITIALISED, "operation not initialised"},
    {HWKEY_R_ATTESTATION_REJECTED, "attestation rejected"},
    {HWKEY_R_POLICY_FAILED, "policy check failed"},
    {0, NULL}};

const OSSL_ITEM *hwkey_reason_strings(void)
{
    return reason_strings;
}

const char *hwkey_reason_string(int reason)
{
    for (const OSSL_ITEM *it = reason_strings; it->ptr != NULL; it++)
        if ((int)it->id == reason)
            return it->ptr;
    return "unknown reason";
}

struct hwkey_error_sink {
    const OSSL_CORE_HANDLE *handle;
    OSSL_FUNC_core_new_error_fn *new_error;
    OSSL_FUNC_core_set_error_debug_fn *set_error_debug;
    OSSL_FUNC_core_vset_error_fn *vset_error;
    HWKEY_ERROR_SINK *next;
};

/*
 * Live sinks, newest first.  Raising holds the read side for the whole
 * upcall, so teardown (write side) never frees a sink in use.
 */
static pthread_rwlock_t sinks_lock = PTHREAD_RWLOCK_INITIALIZER;
static HWKEY_ERROR_SINK *sinks;

HWKEY_ERROR_SINK *hwkey_error_sink_add(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in)
{
    HWKEY_ERROR_SINK *sink = OPENSSL_zalloc(sizeof(*sink));

    if (sink == NULL)
        return NULL;
    for (; in != NULL && in->function_id != 0; in++) {
        switch (in->function_id) {
        case OSSL_FUNC_CORE_NEW_ERROR:
            sink->new_error = OSSL_FUNC_core_new_error(in);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            sink->set_error_debug = OSSL_FUNC_core_set_error_debug(in);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            sink->vset_error = OSSL_FUNC_core_vset_error(in);
            break;
        }
    }
    if (handle == NULL || sink->new_error == NULL || sink->set_error_debug == NULL ||
        sink->vset_error == NULL) {
        OPENSSL_free(sink);
        return NULL;
    }
    sink->handle = handle;
    pthread_rwlock_wrlock(&sinks_lock);
    sink->next = sinks;
    sinks = sink;
    pthread_rwlock_unlock(&sinks_lock);
    return sink;
}

void hwkey_error_sink_remove(HWKEY_ERROR_SINK *sink)
{
    if (sink == NULL)
        return;
    pthread_rwlock_wrlock(&sinks_lock);
    for (HWKEY_ERROR_SINK **pp = &sinks; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == sink) {
            *pp = sink->next;
            break;
        }
    }
    pthread_rwlock_unlock(&sinks_lock);
    OPENSSL_free(sink);
}

void hwkey_raise_at(const char *file, int line, const char *func, int reason, const char *fmt, ...)
{
    HWKEY_ERROR_SINK *sink;
    va_list ap;

    va_start(ap, fmt);
    pthread_rwlock_rdlock(&sinks_lock);
    sink = sinks;
    if (sink != NULL) {
        sink->new_error(sink->handle);
        sink->set_error_debug(sink->handle, file, line, func);
        sink->vset_error(sink->handle, (uint32_t)reason, fmt, ap);
    } else {
        ERR_new();
        ERR_set_debug(file, line, func);
        ERR_vset_error(ERR_LIB_USER, reason, fmt, ap);
    }
    pthread_rwlock_unlock(&sinks_lock);
    va_end(ap);
}
