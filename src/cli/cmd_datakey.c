/*
 * hwkey datakey --out FILE [--pcr BANK:N,..] [--auth-file F] [--force]
 * hwkey datakey --out FILE --uri 'pkcs11:...KEK' [--create-kek] [--force]
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/pem.h>

#include "cli/cli.h"
#include "hwkey/hwkey.h"
#include "util/error.h"

static void datakey_usage(void)
{
    printf("usage: hwkey datakey --out FILE [--pcr BANK:N[,N...]] [--auth-file F] [--force]\n"
           "                     [--tcti STRING]\n"
           "       hwkey datakey --out FILE --uri 'pkcs11:token=T;object=KEK' [--create-kek]\n"
           "                     [--pin-source file:/path|env:NAME] [--force]\n\n"
           "Makes a new AES-256 data key for hwkey encrypt/decrypt and writes it to FILE\n"
           "wrapped by the device, never in the clear: with a TPM, a sealed data object\n"
           "under the storage parent (a \"TSS2 PRIVATE KEY\" file of type sealed) that only\n"
           "this TPM can unseal; with --uri, generated in the token and wrapped there by an\n"
           "AES key-wrapping key (an \"HWKEY DATA KEY\" file naming the KEK, no PIN).\n\n"
           "  --out FILE        the data key file to write (PEM)\n"
           "  --pcr BANK:N,..   TPM: unseal only while these PCRs hold their current\n"
           "                    values, e.g. sha256:0,2,7 (re-wrap before an update that\n"
           "                    changes them: docs/pcr-policy.md)\n"
           "  --auth-file F     TPM: an auth value it will demand to unseal the key;\n"
           "                    PKCS#11: the token's user PIN (first line)\n"
           "  --uri URI         wrap with this PKCS#11 key-wrapping key instead of the TPM\n"
           "  --create-kek      create the KEK (AES-256, sensitive, non-extractable,\n"
           "                    wrap/unwrap only) if the token has none under URI\n"
           "  --pin-source S    the token's user PIN (default: pkcs11-pin-source)\n"
           "  --force           replace an existing FILE\n"
           "  --tcti STRING     TPM transport (see hwkey --help)\n");
}

int hwkey_cmd_datakey(HWKEY_CLI *cli, int argc, char **argv)
{
    enum { OPT_OUT = 1, OPT_URI, OPT_FORCE, OPT_CREATE_KEK, OPT_PCR };
    static const struct option opts[] = {{"out", required_argument, NULL, OPT_OUT},
                                         {"uri", required_argument, NULL, OPT_URI},
                                         {"force", no_argument, NULL, OPT_FORCE},
                                         {"create-kek", no_argument, NULL, OPT_CREATE_KEK},
                                         {"pcr", required_argument, NULL, OPT_PCR},
                                         HWKEY_CLI_LONGOPTS_COMMON};
    char why[128];
    const char *out_path = NULL, *uri = NULL;
    HWKEY_GENOPTS gen;
    HWKEY_REFBLOB blob = {0};
    HWKEY_CLI_OUTFILE out = {.fd = -1};
    HWKEY_DEVICE *dev;
    BIO *mem = NULL;
    const char *label;
    char *data;
    long datalen;
    int opt, c, force = 0, rc = HWKEY_CLI_FAIL;

    memset(&gen, 0, sizeof(gen));
    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            datakey_usage();
            return HWKEY_CLI_OK;
        case OPT_OUT:
            out_path = optarg;
            break;
        case OPT_URI:
            uri = optarg;
            break;
        case OPT_FORCE:
            force = 1;
            break;
        case OPT_CREATE_KEK:
            gen.create_kek = 1;
            break;
        case OPT_PCR:
            if (!hwkey_pcrsel_parse(optarg, &gen.pcrs, why, sizeof(why)))
                return hwkey_cli_usage("datakey", "--pcr %s: %s", optarg, why);
            break;
        default:
            if ((c = hwkey_cli_other_option(cli, "datakey", opt, argv)) != HWKEY_CLI_OK)
                return c;
        }
    }
    if (optind != argc)
        return hwkey_cli_usage("datakey", "unexpected argument \"%s\"", argv[optind]);
    if (out_path == NULL)
        return hwkey_cli_usage("datakey", "--out FILE is required");
    if (gen.create_kek && uri == NULL)
        return hwkey_cli_usage("datakey", "--create-kek needs --uri 'pkcs11:...'");
    if (gen.pcrs.mask != 0 && uri != NULL)
        return hwkey_cli_usage("datakey", "--pcr binds TPM data keys; a PKCS#11 KEK has no PCRs");
    gen.uri = uri;
    gen.auth = cli->auth != NULL ? (const char *)cli->auth->p : NULL;
    gen.auth_len = cli->auth != NULL ? cli->auth->len : 0;

    /* The output file first: an unwritable place fails before the device works. */
    if (!hwkey_cli_out_begin(&out, out_path, force))
        goto fail;
    if ((dev = hwkey_cli_device_for(cli, uri)) == NULL ||
        !hwkey_backend_datakey_create(dev, &gen, &blob))
        goto fail;
    if (blob.kind == HWKEY_REF_TSS2_KEYFILE) {
        label = HWKEY_PEM_TSS2_PRIVATE_KEY;
    } else if (blob.kind == HWKEY_REF_PKCS11_DATAKEY) {
        label = HWKEY_PEM_DATA_KEY;
    } else {
        hwkey_raise(HWKEY_R_INTERNAL, "the backend returned a data key of an unknown kind");
        goto fail;
    }
    if ((mem = BIO_new(BIO_s_mem())) == NULL ||
        PEM_write_bio(mem, label, "", blob.data, (long)blob.len) <= 0 ||
        (datalen = BIO_get_mem_data(mem, &data)) <= 0) {
        hwkey_raise(HWKEY_R_INTERNAL, "writing the data key file's PEM block");
        goto fail;
    }
    if (!hwkey_cli_out_commit(&out, data, (size_t)datalen))
        goto fail;
    rc = HWKEY_CLI_OK;
    goto end;
fail:
    rc = hwkey_cli_fail("datakey %s", out_path);
end:
    hwkey_cli_out_abort(&out);
    BIO_free(mem);
    OPENSSL_free(blob.data);
    return rc;
}
