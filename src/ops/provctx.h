/*
 * The provider context every operation receives.  Defined here, in ops/, so
 * that the dependency rule holds: provider -> ops -> key -> backend -> util.
 */
#ifndef HWKEY_OPS_PROVCTX_H
#define HWKEY_OPS_PROVCTX_H

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#include "backend/backend.h"
#include "util/config.h"

typedef struct hwkey_provctx {
    const OSSL_CORE_HANDLE *core;
    /* This instance's route to the core's error queue (util/error.h). */
    struct hwkey_error_sink *errors;
    /* Library context built from the core's dispatch: core BIO upcalls only. */
    OSSL_LIB_CTX *libctx;
    /*
     * A private library context with only OpenSSL's default provider: public
     * keys, hashing, software padding.  Never hwkey, so nothing recurses
     * into the device and SoftHSM never re-enters us.
     */
    OSSL_LIB_CTX *swctx;
    OSSL_PROVIDER *swdefault; /* the default provider loaded into swctx */
    HWKEY_CONFIG cfg;
    HWKEY_DEVICES *devices;
    struct hwkey_catalogue *catalogue; /* provider/catalogue.c, built on first query */
    CRYPTO_RWLOCK *catalogue_lock;
} HWKEY_PROVCTX;

/*
 * Decoders read their input with BIO_new_from_core_bio(provctx->libctx, cin).
 * The algorithm catalogue lives in provider/; ops only see this struct.
 */

#endif
