/* hwkey list [--tpm2 | --uri 'pkcs11:token=...']: one key per line. */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"

static void list_usage(void)
{
    printf("usage: hwkey list [--tpm2 | --uri 'pkcs11:token=...' [--pin-source SRC]]\n"
           "                  [--tcti STRING]\n\n"
           "Lists persistent TPM keys (--tpm2, the default) or the keys of a PKCS#11\n"
           "token, one per line: REFERENCE<TAB>ALG<TAB>LABEL.\n");
}

static int print_key(const HWKEY_LISTED_KEY *key, void *arg)
{
    char alg[64];

    (void)arg;
    hwkey_cli_describe_alg(&key->info, alg, sizeof(alg));
    printf("%s\t%s\t%s\n", key->ref, alg, key->label != NULL ? key->label : "");
    return 1;
}

int hwkey_cmd_list(HWKEY_CLI *cli, int argc, char **argv)
{
    enum { OPT_TPM2 = 1, OPT_URI };
    static const struct option opts[] = {
        {"tpm2", no_argument, NULL, OPT_TPM2},
        {"uri", required_argument, NULL, OPT_URI},
        {"tcti", required_argument, NULL, HWKEY_CLI_OPT_TCTI},
        {"pin-source", required_argument, NULL, HWKEY_CLI_OPT_PIN_SOURCE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *uri = NULL;
    HWKEY_DEVICE *dev;
    int opt, c, tpm2 = 0;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            list_usage();
            return HWKEY_CLI_OK;
        case OPT_TPM2:
            tpm2 = 1;
            break;
        case OPT_URI:
            uri = optarg;
            break;
        default:
            if ((c = hwkey_cli_other_option(cli, "list", opt, argv)) != HWKEY_CLI_OK)
                return c;
        }
    }
    if (optind != argc)
        return hwkey_cli_usage("list", "unexpected argument \"%s\"", argv[optind]);
    if (tpm2 && uri != NULL)
        return hwkey_cli_usage("list", "give --tpm2 or --uri, not both");
    if ((dev = hwkey_cli_device_for(cli, uri)) == NULL ||
        !hwkey_backend_key_list(dev, uri, print_key, NULL))
        return hwkey_cli_fail("list %s", uri != NULL ? uri : "--tpm2");
    return HWKEY_CLI_OK;
}
