#ifndef HWKEY_PROVIDER_PROVIDER_H
#define HWKEY_PROVIDER_PROVIDER_H

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#include "ops/provctx.h"

#define HWKEY_VERSION_STR PACKAGE_VERSION

/*
 * The provider's init function.  module.c's OSSL_provider_init calls it;
 * unit tests add it as a built-in with OSSL_PROVIDER_add_builtin().
 */
OSSL_provider_init_fn hwkey_provider_init;

/* catalogue.c: the algorithms of one operation, filtered by device support. */
const OSSL_ALGORITHM *hwkey_catalogue_query(HWKEY_PROVCTX *provctx, int operation_id);
void hwkey_catalogue_free(HWKEY_PROVCTX *provctx);

#endif
