/* hwkey pubkey KEY: the public key of a device key, PEM on stdout. */
#include <getopt.h>
#include <stdio.h>

#include <openssl/bio.h>
#include <openssl/pem.h>

#include "cli/cli.h"

static void pubkey_usage(void)
{
    printf("usage: hwkey pubkey [--pin-source SRC] [--tcti STRING] KEY\n\n"
           "Prints the public key of KEY as PEM on stdout.  KEY is a TSS2 key file\n"
           "(PEM or DER), a key reference file, handle:0x81xxxxxx or a pkcs11: URI\n"
           "(of a private key, a public key or a certificate: type=private/public/cert;\n"
           "without type=, a public key object, else a certificate, else the private\n"
           "key).  A TPM key's public key is in its file (or the TPM's public area):\n"
           "no auth value is needed or accepted.  --pin-source file:/path|env:NAME:\n"
           "the token's user PIN, only for a token key without a public object.\n");
}

int hwkey_cmd_pubkey(HWKEY_CLI *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        HWKEY_CLI_LONGOPTS_COMMON};
    HWKEY_CLI_KEYREF kr = {0};
    HWKEY_DEVICE *dev;
    EVP_PKEY *pub = NULL;
    BIO *mem = NULL;
    char *pem;
    long pemlen;
    int opt, c, rc = HWKEY_CLI_FAIL;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            pubkey_usage();
            return HWKEY_CLI_OK;
        }
        /* Never take a secret that is not used: a wrong one would seem accepted. */
        if (opt == HWKEY_CLI_OPT_AUTH_FILE)
            return hwkey_cli_usage("pubkey", "--auth-file: the public key needs no auth value "
                                             "(a token PIN: --pin-source)");
        if ((c = hwkey_cli_other_option(cli, "pubkey", opt, argv)) != HWKEY_CLI_OK)
            return c;
    }
    if (argc - optind != 1)
        return hwkey_cli_usage("pubkey", "expected exactly one KEY");

    if ((dev = hwkey_cli_keyref_device(cli, argv[optind], &kr)) == NULL) {
        rc = hwkey_cli_fail("pubkey %s", argv[optind]);
        goto end;
    }
    /*
     * The public key itself, never the private key: a TPM key's public area
     * is in its file (or the TPM's public area), and a token URI may name a
     * public key or certificate, which need no PIN.  Only a token key without
     * a public object needs the PIN (--pin-source).
     */
    pub = hwkey_backend_pubkey_load(dev, &kr.ref, hwkey_cli_pw_cb, cli, NULL, NULL);
    if (pub == NULL) {
        rc = hwkey_cli_fail("pubkey %s", argv[optind]);
        goto end;
    }
    /* Render first, then write once: no half-written PEM on stdout. */
    if ((mem = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_PUBKEY(mem, pub) ||
        (pemlen = BIO_get_mem_data(mem, &pem)) <= 0) {
        rc = hwkey_cli_fail("pubkey %s: encoding the public key", argv[optind]);
        goto end;
    }
    if (fwrite(pem, 1, (size_t)pemlen, stdout) != (size_t)pemlen || fflush(stdout) != 0) {
        fprintf(stderr, "hwkey: pubkey %s: cannot write to stdout\n", argv[optind]);
        goto end;
    }
    rc = HWKEY_CLI_OK;
end:
    BIO_free(mem);
    EVP_PKEY_free(pub);
    hwkey_cli_keyref_clear(&kr);
    return rc;
}
