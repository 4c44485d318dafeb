/* hwkey: the provisioning command.  Global options, then one subcommand. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*run)(HWKEY_CLI *cli, int argc, char **argv);
    const char *summary;
} commands[] = {
    {"info", hwkey_cmd_info, "describe the device(s) found"},
    {"keygen", hwkey_cmd_keygen, "generate a key in the TPM (or on a PKCS#11 token)"},
    {"import", hwkey_cmd_import, "wrap an existing software private key into the TPM"},
    {"pubkey", hwkey_cmd_pubkey, "print a device key's public key (PEM)"},
    {"list", hwkey_cmd_list, "list persistent TPM keys / token keys"},
    {"delete", hwkey_cmd_delete, "delete a persistent TPM key / token key"},
    {"datakey", hwkey_cmd_datakey, "make an AES-256 data key wrapped by the device"},
    {"encrypt", hwkey_cmd_encrypt, "encrypt a file with a data key (AES-NI, AES-256-GCM)"},
    {"decrypt", hwkey_cmd_decrypt, "decrypt and verify a file made by hwkey encrypt"},
    {"attest", hwkey_cmd_attest, "prove a key lives in the device (TPM2_Certify), or verify"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
    fprintf(out, "usage: hwkey [--tcti STRING] COMMAND [ARGS]\n"
                 "       hwkey -h | --help | -V | --version\n\n"
                 "Keys that never leave a TPM 2.0 or a PKCS#11 token.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\noptions:\n"
                 "  --tcti STRING  TPM transport, e.g. swtpm:host=127.0.0.1,port=2321\n"
                 "                 (default: $HWKEY_TPM2_TCTI, else tpm2-tcti in hwkey's\n"
                 "                 openssl.cnf section, else device:/dev/tpmrm0)\n"
                 "  -h, --help     this help; hwkey COMMAND --help for a command\n"
                 "  -V, --version  print the version\n\n"
                 "Settings: hwkey's section of the openssl.cnf that OPENSSL_CONF names (else\n"
                 "OpenSSL's default file), as the provider reads it; each HWKEY_* variable\n"
                 "wins over the file, and an option over both.\n\n"
                 "Exit status: 0 success, 1 operation failure, 2 usage error.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"tcti", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    HWKEY_CLI cli;
    int opt, rc = HWKEY_CLI_USAGE;

    memset(&cli, 0, sizeof(cli));
    opterr = 0;
    /* "+": stop at the subcommand; its options are its own. */
    while ((opt = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
        switch (opt) {
        case 't':
            if (!hwkey_cli_set_tcti(&cli, optarg)) {
                rc = hwkey_cli_fail("--tcti");
                goto end;
            }
            break;
        case 'h':
            usage(stdout);
            rc = HWKEY_CLI_OK;
            goto end;
        case 'V':
            printf("hwkey %s\n", PACKAGE_VERSION);
            rc = HWKEY_CLI_OK;
            goto end;
        default:
            rc = hwkey_cli_usage(NULL, "unknown or incomplete option %s", argv[optind - 1]);
            goto end;
        }
    }
    if (optind >= argc) {
        rc = hwkey_cli_usage(NULL, "no command given");
        goto end;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[optind], commands[i].name) == 0) {
            optind++;
            /* Subcommands parse argv[0..] with argv[0] = their name. */
            rc = commands[i].run(&cli, argc - optind + 1, argv + optind - 1);
            goto end;
        }
    }
    rc = hwkey_cli_usage(NULL, "unknown command \"%s\"", argv[optind]);
end:
    hwkey_devices_free(cli.devs);
    hwkey_config_clear(&cli.cfg);
    hwkey_secret_free(cli.auth);
    OPENSSL_free(cli.tcti);
    OPENSSL_free(cli.pin_source);
    if (fflush(stdout) != 0 && rc == HWKEY_CLI_OK) {
        fprintf(stderr, "hwkey: writing the output: cannot write to stdout\n");
        rc = HWKEY_CLI_FAIL;
    }
    return rc;
}
