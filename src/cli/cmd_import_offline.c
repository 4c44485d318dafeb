/*
 * The offline half of `hwkey import` (docs/import.md):
 *   hwkey import KEY.pem --parent-pub PARENT --out FILE [--parent-handle H]
 *       wraps KEY to the parent's public key, on a machine without that
 *       TPM: an importable TSS2 key file;
 *   hwkey import --finish FILE --out NEW
 *       on the TPM machine, runs TPM2_Import once and writes the regular
 *       (loadable) key file.  Using FILE directly works too: every first
 *       load imports it.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "backend/tpm2/tpm2_offline.h"
#include "cli/cli.h"
#include "util/error.h"

/* A parent public key is a PEM of a few hundred bytes or a TPM2B_PUBLIC. */
#define PARENT_PUB_MAX 8192

int hwkey_cli_parse_parent_handle(const char *s, uint32_t *handle)
{
    char *end = NULL;
    unsigned long v;

    v = strtoul(s, &end, 0);
    if (end == s || *end != '\0' || (v != 0x40000001ul && ((v >> 24) != 0x81 || v > 0xfffffffful)))
        return 0;
    *handle = (uint32_t)v;
    return 1;
}

int hwkey_cli_import_offline(EVP_PKEY *soft, const char *parent_path, uint32_t parent_handle,
                             const HWKEY_GENOPTS *gen, HWKEY_REFBLOB *blob)
{
    unsigned char *parent = NULL;
    size_t parent_len = 0;
    int ok;

    if (!hwkey_cli_read_file(parent_path, PARENT_PUB_MAX, "parent public key", &parent,
                             &parent_len))
        return 0;
    ok = hwkey_tpm2_offline_wrap(soft, parent, parent_len, parent_handle, gen, blob);
    OPENSSL_free(parent);
    return ok;
}

int hwkey_cli_import_finish(HWKEY_CLI *cli, const char *path, const char *out_path, int force)
{
    HWKEY_CLI_KEYREF kr = {0};
    HWKEY_CLI_OUTFILE out = {.fd = -1};
    HWKEY_REFBLOB blob = {0};
    HWKEY_BKEY *bkey = NULL;
    HWKEY_DEVICE *dev;
    int ok = 0;

    if (!hwkey_cli_out_begin(&out, out_path, force))
        goto end;
    if ((dev = hwkey_cli_keyref_device(cli, path, &kr)) == NULL)
        goto end;
    if (kr.ref.kind != HWKEY_REF_TSS2_KEYFILE) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "--finish takes an importable TSS2 key file");
        goto end;
    }
    ok = hwkey_backend_key_load(dev, &kr.ref, hwkey_cli_pw_cb, cli, &bkey) &&
         hwkey_tpm2_import_finish(bkey, &blob) && hwkey_cli_out_commit_keyfile(&out, &blob);
end:
    hwkey_cli_out_abort(&out);
    OPENSSL_free(blob.data);
    hwkey_backend_key_free(bkey);
    hwkey_cli_keyref_clear(&kr);
    return ok;
}
