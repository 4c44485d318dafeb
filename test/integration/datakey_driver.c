/*
 * Test helper for test_bulk.sh (never installed): unwraps a data key file
 * through the backend registry, exactly as hwkey encrypt does, and prints the
 * key in hex on stdout, so the test can look for its bytes where they must
 * not be (the data key file, the recorded TPM traffic).  TCTI from
 * HWKEY_TPM2_TCTI; an "HWKEY DATA KEY" file goes to the PKCS#11 backend
 * (HWKEY_PKCS11_MODULE, HWKEY_PKCS11_PIN_SOURCE).  Usage: datakey_driver DATAKEY_FILE
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "backend/backend.h"
#include "hwkey/hwkey.h"
#include "util/config.h"
#include "util/secmem.h"

int main(int argc, char **argv)
{
    HWKEY_CONFIG cfg;
    HWKEY_DEVICES *devs = NULL;
    HWKEY_DEVICE *dev;
    HWKEY_KEYREF ref = {.kind = HWKEY_REF_TSS2_KEYFILE};
    unsigned char *der = NULL, *key = NULL;
    char *name = NULL, *header = NULL;
    long len = 0;
    FILE *f;
    int rc = 1;

    memset(&cfg, 0, sizeof(cfg));
    if (argc != 2) {
        fprintf(stderr, "usage: datakey_driver DATAKEY_FILE\n");
        return 2;
    }
    if ((f = fopen(argv[1], "r")) == NULL || !PEM_read(f, &name, &header, &der, &len)) {
        fprintf(stderr, "datakey_driver: cannot read a PEM block from %s\n", argv[1]);
        goto end;
    }
    ref.data = der;
    ref.len = (size_t)len;
    if (strcmp(name, HWKEY_PEM_DATA_KEY) == 0)
        ref.kind = HWKEY_REF_PKCS11_DATAKEY;
    if (!hwkey_config_apply_env(&cfg) || (devs = hwkey_devices_new(&cfg)) == NULL ||
        (dev = ref.kind == HWKEY_REF_PKCS11_DATAKEY
                   ? hwkey_devices_for_kind(devs, ref.kind)
                   : hwkey_devices_by_name(devs, "tpm2")) == NULL ||
        (key = hwkey_secmem_alloc(32)) == NULL ||
        !hwkey_backend_datakey_unwrap(dev, &ref, NULL, NULL, key)) {
        ERR_print_errors_fp(stderr);
        goto end;
    }
    for (int i = 0; i < 32; i++)
        printf("%02x", key[i]);
    printf("\n");
    rc = 0;
end:
    if (f != NULL)
        fclose(f);
    hwkey_secmem_free(key);
    hwkey_devices_free(devs);
    hwkey_config_clear(&cfg);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    return rc;
}
