/*
 * hwkey pubkey KEY: the public key of a device key, PEM on stdout.
 * hwkey pubkey --parent [--out-public FILE]: the TPM parent's, for offline import.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include <openssl/bio.h>
#include <openssl/pem.h>

#include "backend/tpm2/tpm2_offline.h"
#include "cli/cli.h"

static void pubkey_usage(void)
{
    printf("usage: hwkey pubkey [--pin-source SRC] [--tcti STRING] KEY\n"
           "       hwkey pubkey --parent [--out-public FILE] [--force] [--tcti STRING]\n\n"
           "Prints the public key of KEY as PEM on stdout.  KEY is a TSS2 key file\n"
           "(PEM or DER), a key reference file, handle:0x81xxxxxx or a pkcs11: URI\n"
           "(of a private key, a public key or a certificate: type=private/public/cert;\n"
           "without type=, a public key object, else a certificate, else the private\n"
           "key).  A TPM key's public key is in its file (or the TPM's public area):\n"
           "no auth value is needed or accepted.  --pin-source file:/path|env:NAME:\n"
           "the token's user PIN, only for a token key without a public object.\n\n"
           "With --parent: the public key of the TPM parent that keys are created and\n"
           "imported under (tpm2-parent, else 0x81000001, else the owner primary), for\n"
           "offline import (hwkey import's parent-pub option) on a machine without this\n"
           "TPM.  --out-public FILE also writes its TPM2B_PUBLIC (as tpm2_readpublic\n"
           "writes it), which offline import needs when the parent is not made from the\n"
           "standard ECC P-256 SRK template; --force overwrites FILE.\n");
}

/* PEM to stdout, rendered first: no half-written PEM. */
static int print_pem(EVP_PKEY *pub)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *pem;
    long pemlen;
    int ok;

    ok = mem != NULL && PEM_write_bio_PUBKEY(mem, pub) &&
         (pemlen = BIO_get_mem_data(mem, &pem)) > 0 &&
         fwrite(pem, 1, (size_t)pemlen, stdout) == (size_t)pemlen && fflush(stdout) == 0;
    BIO_free(mem);
    return ok;
}

static int parent_pubkey(HWKEY_CLI *cli, const char *out_public, int force)
{
    HWKEY_CLI_OUTFILE out = {.fd = -1};
    HWKEY_DEVICES *devs;
    HWKEY_DEVICE *dev;
    EVP_PKEY *pk = NULL;
    unsigned char *tpm2b = NULL;
    size_t tpm2b_len = 0;
    uint32_t recorded = 0;
    int standard = 0, rc = HWKEY_CLI_FAIL;

    if (out_public != NULL && !hwkey_cli_out_begin(&out, out_public, force))
        goto fail;
    if ((devs = hwkey_cli_devices(cli)) == NULL ||
        (dev = hwkey_devices_by_name(devs, "tpm2")) == NULL ||
        !hwkey_tpm2_parent_public(dev, 0, &pk, &tpm2b, &tpm2b_len, &recorded, &standard))
        goto fail;
    if (out_public != NULL && !hwkey_cli_out_commit(&out, tpm2b, tpm2b_len))
        goto fail;
    if (!print_pem(pk)) {
        fprintf(stderr, "hwkey: pubkey --parent: cannot write to stdout\n");
        goto end;
    }
    /* Not an error, but the PEM alone would make import files this TPM rejects. */
    if (!standard && out_public == NULL)
        fprintf(stderr,
                "hwkey: note: parent 0x%08x is not made from the standard ECC P-256 "
                "SRK template: offline import needs its TPM2B_PUBLIC "
                "(--out-public FILE)\n",
                (unsigned int)recorded);
    rc = HWKEY_CLI_OK;
    goto end;
fail:
    rc = hwkey_cli_fail("pubkey --parent");
end:
    hwkey_cli_out_abort(&out);
    OPENSSL_free(tpm2b);
    EVP_PKEY_free(pk);
    return rc;
}

int hwkey_cmd_pubkey(HWKEY_CLI *cli, int argc, char **argv)
{
    enum { OPT_PARENT = 1, OPT_OUT_PUBLIC, OPT_FORCE };
    static const struct option opts[] = {{"parent", no_argument, NULL, OPT_PARENT},
                                         {"out-public", required_argument, NULL, OPT_OUT_PUBLIC},
                                         {"force", no_argument, NULL, OPT_FORCE},
                                         HWKEY_CLI_LONGOPTS_COMMON};
    const char *out_public = NULL;
    int parent = 0, force = 0;
    HWKEY_CLI_KEYREF kr = {0};
    HWKEY_DEVICE *dev;
    EVP_PKEY *pub = NULL;
    BIO *mem = NULL;
    char *pem;
    long pemlen;
    int opt, c, rc = HWKEY_CLI_FAIL;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            pubkey_usage();
            return HWKEY_CLI_OK;
        case OPT_PARENT:
            parent = 1;
            break;
        case OPT_OUT_PUBLIC:
            out_public = optarg;
            break;
        case OPT_FORCE:
            force = 1;
            break;
        default:
            /* Never take a secret that is not used: a wrong one would seem accepted. */
            if (opt == HWKEY_CLI_OPT_AUTH_FILE)
                return hwkey_cli_usage("pubkey", "--auth-file: the public key needs no auth "
                                                 "value (a token PIN: --pin-source)");
            if ((c = hwkey_cli_other_option(cli, "pubkey", opt, argv)) != HWKEY_CLI_OK)
                return c;
        }
    }
    if (parent) {
        if (argc - optind != 0)
            return hwkey_cli_usage("pubkey", "--parent takes no KEY");
        return parent_pubkey(cli, out_public, force);
    }
    if (out_public != NULL || force)
        return hwkey_cli_usage("pubkey", "--out-public and --force go with --parent");
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
    (void)hwkey_backend_pubkey_load(dev, &kr.ref, hwkey_cli_pw_cb, cli, NULL, NULL, &pub);
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
