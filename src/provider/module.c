/* The module entry point: the only symbol hwkey.so exports. */
#include "provider/provider.h"

/* Everything else is built with -fvisibility=hidden. */
__attribute__((visibility("default"))) OSSL_provider_init_fn OSSL_provider_init;

int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                       const OSSL_DISPATCH **out, void **provctx)
{
    return hwkey_provider_init(handle, in, out, provctx);
}
