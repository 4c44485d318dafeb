/* hwkey info: what each backend's device says about itself. */
#include <getopt.h>
#include <stdio.h>

#include <openssl/bio.h>
#include <openssl/err.h>

#include "cli/cli.h"

enum { OPT_TPM2 = 1, OPT_PKCS11 = 2 };

static const struct {
    const char *name;
    int flag;
} backends[] = {{"tpm2", OPT_TPM2}, {"pkcs11", OPT_PKCS11}};
#define N_BACKENDS (sizeof(backends) / sizeof(backends[0]))

static void info_usage(void)
{
    printf("usage: hwkey info [--tpm2] [--pkcs11] [--tcti STRING]\n\n"
           "Describes the devices: TPM vendor, firmware and algorithms; PKCS#11 module\n"
           "and tokens.  Every backend is shown, one that cannot be reached with its\n"
           "error; the exit status is 1 when any of them failed, so `hwkey info --tpm2`\n"
           "checks that the TPM answers.\n\n"
           "  --tpm2         only the TPM (tpm2-tcti, HWKEY_TPM2_TCTI, --tcti)\n"
           "  --pkcs11       only the PKCS#11 module (pkcs11-module, HWKEY_PKCS11_MODULE)\n"
           "  --tcti STRING  TPM transport, e.g. swtpm:host=127.0.0.1,port=2321\n");
}

/*
 * One backend's section on stdout: its description, or "  error: ..." with
 * the cause, which also goes to stderr as the one line naming what failed.
 */
static int describe_one(HWKEY_DEVICES *devs, const char *name)
{
    BIO *mem = BIO_new(BIO_s_mem());
    HWKEY_DEVICE *dev = hwkey_devices_by_name(devs, name);
    char *text = NULL, why[8192];
    long n = 0;
    int ok = mem != NULL && dev != NULL && hwkey_backend_describe(dev, mem) &&
             (n = BIO_get_mem_data(mem, &text)) > 0;

    printf("%s:\n", name);
    if (ok) {
        printf("%.*s%s", (int)n, text, text[n - 1] == '\n' ? "" : "\n");
        ERR_clear_error();
    } else {
        hwkey_cli_error_text(why, sizeof(why));
        printf("  error: %s\n", why);
        fprintf(stderr, "hwkey: info: %s: %s\n", name, why);
    }
    BIO_free(mem);
    return ok;
}

int hwkey_cmd_info(HWKEY_CLI *cli, int argc, char **argv)
{
    static const struct option opts[] = {{"tpm2", no_argument, NULL, OPT_TPM2},
                                         {"pkcs11", no_argument, NULL, OPT_PKCS11},
                                         {"tcti", required_argument, NULL, HWKEY_CLI_OPT_TCTI},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    HWKEY_DEVICES *devs;
    int opt, c, only = 0, failed = 0;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            info_usage();
            return HWKEY_CLI_OK;
        }
        if (opt == OPT_TPM2 || opt == OPT_PKCS11) {
            only |= opt;
            continue;
        }
        if ((c = hwkey_cli_other_option(cli, "info", opt, argv)) != HWKEY_CLI_OK)
            return c;
    }
    if (optind != argc)
        return hwkey_cli_usage("info", "unexpected argument \"%s\"", argv[optind]);
    if ((devs = hwkey_cli_devices(cli)) == NULL)
        return hwkey_cli_fail("info");
    for (size_t i = 0; i < N_BACKENDS; i++)
        if ((only == 0 || (only & backends[i].flag) != 0) && !describe_one(devs, backends[i].name))
            failed = 1;
    return failed ? HWKEY_CLI_FAIL : HWKEY_CLI_OK;
}
