/* hwkey info: what each backend's device says about itself. */
#include <getopt.h>
#include <stdio.h>

#include <openssl/bio.h>
#include <openssl/err.h>

#include "cli/cli.h"

static void info_usage(void)
{
    printf("usage: hwkey info [--tcti STRING]\n\n"
           "Describes the devices found: TPM vendor, firmware and algorithms; PKCS#11\n"
           "tokens.  Fails only when no device answers.\n");
}

int hwkey_cmd_info(HWKEY_CLI *cli, int argc, char **argv)
{
    static const char *const backends[] = {"tpm2", "pkcs11"};
    static const struct option opts[] = {{"tcti", required_argument, NULL, HWKEY_CLI_OPT_TCTI},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    HWKEY_DEVICES *devs;
    int opt, c, described = 0, failed = 0;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            info_usage();
            return HWKEY_CLI_OK;
        }
        if ((c = hwkey_cli_other_option(cli, "info", opt, argv)) != HWKEY_CLI_OK)
            return c;
    }
    if (optind != argc)
        return hwkey_cli_usage("info", "unexpected argument \"%s\"", argv[optind]);
    if ((devs = hwkey_cli_devices(cli)) == NULL)
        return hwkey_cli_fail("info");
    for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
        BIO *mem = BIO_new(BIO_s_mem());
        HWKEY_DEVICE *dev;
        char *text;
        long n;

        /* Keep the first failure for the one error line; a later one is only noted. */
        if (failed)
            ERR_set_mark();
        dev = hwkey_devices_by_name(devs, backends[i]);
        if (mem != NULL && dev != NULL && hwkey_backend_describe(dev, mem) &&
            (n = BIO_get_mem_data(mem, &text)) > 0) {
            printf("%s:\n%.*s%s", backends[i], (int)n, text, text[n - 1] == '\n' ? "" : "\n");
            described = 1;
        } else if (!failed) {
            failed = 1;
        } else {
            ERR_pop_to_mark();
        }
        BIO_free(mem);
    }
    if (described) {
        ERR_clear_error();
        return HWKEY_CLI_OK;
    }
    return hwkey_cli_fail("info: no device answered");
}
