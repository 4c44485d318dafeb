/*
 * Key generation's route to a device: which backend makes the key is the
 * backends' answer (generates), not keymgmt's, so a new backend needs no
 * change in ops/.
 */
#include "key/key.h"

#include <openssl/ec.h>
#include <openssl/objects.h>

#include "util/error.h"
#include "util/log.h"

HWKEY_DEVICE *hwkey_key_gen_device(HWKEY_DEVICES *devs, const HWKEY_KEYSPEC *spec,
                                   const HWKEY_GENOPTS *opts)
{
    HWKEY_DEVICE *dev = hwkey_devices_for_generation(devs, opts);
    const char *where, *curve;

    if (dev == NULL)
        return NULL;
    /* -1, cannot tell without asking: the device itself answers when it makes the key. */
    if (hwkey_backend_supports(dev, spec) != 0)
        return dev;
    where = hwkey_backend_device_noun(dev);
    if (spec->alg == HWKEY_ALG_RSA) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "this %s does not support rsa:%d (hwkey info lists what it has)", where,
                    spec->bits);
        return NULL;
    }
    curve = EC_curve_nid2nist(spec->curve_nid);
    hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                "this %s does not support ec:%s (hwkey info lists what it has)", where,
                curve != NULL ? curve : OBJ_nid2sn(spec->curve_nid));
    return NULL;
}

int hwkey_key_gen_make(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec, const HWKEY_GENOPTS *opts,
                       HWKEY_REFBLOB *out)
{
    return hwkey_backend_key_generate(dev, spec, opts, out);
}

int hwkey_key_gen_discard(HWKEY_DEVICE *dev, const HWKEY_REFBLOB *blob)
{
    HWKEY_KEYREF ref = {blob->kind, blob->data, blob->len};

    /* A key file dies with its bytes; a persistent handle or token object would outlive us. */
    if (!hwkey_backend_ref_is_stored(dev, blob->kind))
        return 1;
    return hwkey_backend_key_delete(dev, &ref);
}

const char *hwkey_key_gen_device_name(HWKEY_DEVICE *dev)
{
    return hwkey_backend_name(dev);
}
