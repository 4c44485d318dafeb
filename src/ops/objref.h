/*
 * Handing a device key from a decoder or store loader to OpenSSL.
 *
 * Both decoders and the handle: store give OpenSSL an OSSL_OBJECT_PKEY whose
 * OSSL_OBJECT_PARAM_REFERENCE is the address of a local HWKEY_KEY pointer
 * (size sizeof(HWKEY_KEY *)).  OpenSSL passes it, during the callback only, to
 * hwkey's keymgmt load, or to export_object when it picked another
 * provider's keymgmt.  Ownership (see objref.c): the emitter keeps its
 * reference and drops it after the callback; load either takes its own
 * reference (hwkey_key_up_ref) or steals the pointer by setting it to NULL.
 */
#ifndef HWKEY_OPS_OBJREF_H
#define HWKEY_OPS_OBJREF_H

#include <openssl/core.h>

#include "key/key.h"

/*
 * Calls cb with an OSSL_OBJECT_PKEY referring to *keyp, then frees whatever
 * reference is left in *keyp (NULL afterwards).  Returns cb's result.
 */
int hwkey_objref_emit(HWKEY_KEY **keyp, OSSL_CALLBACK *cb, void *cbarg);

/*
 * export_object for decoders: the public half of the referenced key as
 * OSSL_PARAMs (never a private part: the device holds it).
 */
int hwkey_objref_export_public(const void *reference, size_t reference_sz, OSSL_CALLBACK *export_cb,
                               void *export_cbarg);

/* The key behind a reference, or NULL (raised) if it is not one of ours. */
HWKEY_KEY *hwkey_objref_get(const void *reference, size_t reference_sz);

/* The stores' one settable parameter: OSSL_STORE_PARAM_EXPECT (an int). */
const OSSL_PARAM *hwkey_store_settable_params(void);
/* Reads OSSL_STORE_PARAM_EXPECT into *expect when present; 0 (raised) if malformed. */
int hwkey_store_read_expect(const OSSL_PARAM params[], int *expect);

#endif
