/* hwkey delete KEY: evict a persistent TPM key or destroy a token key. */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"

static void delete_usage(void)
{
    printf("usage: hwkey delete [--pin-source SRC] [--tcti STRING] KEY\n\n"
           "Deletes the key KEY names from the device: handle:0x81xxxxxx, a pkcs11: URI\n"
           "or a reference file naming one.  A TSS2 key file's key lives only in the\n"
           "file: remove the file instead.\n");
}

int hwkey_cmd_delete(HWKEY_CLI *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tcti", required_argument, NULL, HWKEY_CLI_OPT_TCTI},
        {"pin-source", required_argument, NULL, HWKEY_CLI_OPT_PIN_SOURCE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    HWKEY_CLI_KEYREF kr = {0};
    HWKEY_DEVICE *dev;
    int opt, c, rc = HWKEY_CLI_FAIL;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            delete_usage();
            return HWKEY_CLI_OK;
        }
        if ((c = hwkey_cli_other_option(cli, "delete", opt, argv)) != HWKEY_CLI_OK)
            return c;
    }
    if (argc - optind != 1)
        return hwkey_cli_usage("delete", "expected exactly one KEY");
    if ((dev = hwkey_cli_keyref_device(cli, argv[optind], &kr)) == NULL ||
        !hwkey_backend_key_delete(dev, &kr.ref)) {
        rc = hwkey_cli_fail("delete %s", argv[optind]);
        goto end;
    }
    printf("deleted %s\n", argv[optind]);
    rc = HWKEY_CLI_OK;
end:
    hwkey_cli_keyref_clear(&kr);
    return rc;
}
