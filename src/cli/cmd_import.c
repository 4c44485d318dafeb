/*
 * hwkey import SOFTWARE_KEY --out FILE [--auth-file F] [--passin-file F] [--force]
 * hwkey import SOFTWARE_KEY --uri 'pkcs11:...' [--out FILE] [--pin-source SRC]
 *
 * Wraps an existing software private key (PEM or DER, PKCS#8 or traditional,
 * optionally passphrase-protected) into the TPM: the key file written holds
 * only the TPM-wrapped blob.  Or creates it as a sensitive, non-extractable
 * object on a PKCS#11 token: the file written (optional) is then a reference
 * naming it, and the URI is printed.  The software key itself is left alone
 * unless --wipe-source asks to overwrite and unlink it after a successful
 * import (cli_wipe.c); copies elsewhere are out of hwkey's reach either way.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "cli/cli.h"
#include "util/error.h"
#include "util/keyref.h"
#include "util/secret.h"
#include "util/tss2_keyfile.h"

/* Private key files are small; anything larger is not one. */
#define IMPORT_KEY_MAX (64 * 1024)
#define PASS_MAX 1024

typedef struct {
    const char *key_path;
    HWKEY_SECRET *pass; /* --passin-file's first line; NULL: prompt on a tty */
    int asked;          /* the decoder wanted a passphrase */
} IMPORT_PASS;

static void import_usage(void)
{
    printf("usage: hwkey import SOFTWARE_KEY --out FILE [--auth-file F] [--passin-file F]\n"
           "                    [--force] [--wipe-source [--yes]] [--tcti STRING]\n"
           "       hwkey import SOFTWARE_KEY --uri 'pkcs11:...' [--out FILE] [--pin-source SRC]\n"
           "                    [--passin-file F] [--force] [--wipe-source [--yes]]\n"
           "       hwkey import SOFTWARE_KEY --parent-pub PARENT --out FILE\n"
           "                    [--parent-handle H] [--auth-file F] [--passin-file F] [--force]\n"
           "       hwkey import --finish FILE --out NEW [--force] [--tcti STRING]\n\n"
           "Wraps an existing EC (P-256, P-384) or RSA (2048, 3072) private key into the TPM\n"
           "and writes a TSS2 PRIVATE KEY file that hwkey, tpm2-openssl and\n"
           "openssl_tpm2_engine load.  The private key travels to the TPM only encrypted\n"
           "to the TPM's storage key (TPM2_Import with an outer wrapper).\n"
           "With --uri, creates an RSA (2048..8192), EC (P-256, P-384, P-521) or Ed25519\n"
           "key on the PKCS#11 token as a sensitive, non-extractable private key plus its\n"
           "public key, and prints its URI.  PKCS#11 offers no wrapped path here: the key\n"
           "crosses into the module in the clear (keygen --uri never exposes one).\n"
           "SOFTWARE_KEY: PEM or DER, PKCS#8 or traditional, optionally encrypted.\n\n"
           "  --out FILE          TSS2 PRIVATE KEY file to write (PEM); with --uri, a key\n"
           "                      reference file naming the token key\n"
           "  --auth-file F       give the TPM key this auth value (first line of F)\n"
           "  --passin-file F     passphrase of an encrypted SOFTWARE_KEY (first line of F);\n"
           "                      default: asked on the terminal when stdin is one\n"
           "  --force             replace an existing --out file\n"
           "  --uri URI           import into the PKCS#11 token named by URI (token=,\n"
           "                      object=, id=; a random id when none is given)\n"
           "  --pin-source SRC    the token's user PIN: file:/path or env:NAME (default: the\n"
           "                      URI's pin-source/pin-value, else $HWKEY_PKCS11_PIN_SOURCE)\n"
           "  --tcti STRING       TPM transport (see hwkey --help)\n"
           "  --parent-pub PARENT offline: wrap to this parent public key, no TPM needed;\n"
           "                      PARENT is the PEM that hwkey pubkey prints for the\n"
           "                      parent (standard SRK template only) or the parent's\n"
           "                      TPM2B_PUBLIC (as hwkey pubkey or tpm2_readpublic write\n"
           "                      it); FILE is an importable key file that the\n"
           "                      TPM machine imports at first use\n"
           "  --parent-handle H   parent handle FILE records (default 0x40000001 for the\n"
           "                      standard template, else 0x81000001)\n"
           "  --finish            import the importable key file FILE into the TPM once and\n"
           "                      write the regular key file NEW\n"
           "  --wipe-source       after a successful import, overwrite SOFTWARE_KEY with\n"
           "                      random bytes and delete it (asks on a terminal)\n"
           "  --yes               do not ask (needed for --wipe-source without a terminal)\n\n"
           "Without --wipe-source the software key file is not touched: delete it once the\n"
           "imported key works, or the device protects nothing.  Either way, copies\n"
           "elsewhere (backups, snapshots, other disks, old blocks kept by SSDs and\n"
           "copy-on-write or journaling filesystems) are not covered: remove them too.\n");
}

static int read_key_bytes(const char *path, unsigned char **out, size_t *len)
{
    BIO *in = BIO_new_file(path, "rb");
    unsigned char *buf = NULL;
    int n;

    if (in == NULL) {
        ERR_clear_error();
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "cannot open %s: %s", path, strerror(errno));
        return 0;
    }
    if ((buf = OPENSSL_secure_malloc(IMPORT_KEY_MAX + 1)) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "reading %s", path);
        BIO_free(in);
        return 0;
    }
    n = BIO_read(in, buf, IMPORT_KEY_MAX + 1);
    BIO_free(in);
    if (n <= 0 || n > IMPORT_KEY_MAX) {
        ERR_clear_error();
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "%s is %s", path,
                    n <= 0 ? "empty or unreadable" : "too large to be a private key file");
        OPENSSL_secure_clear_free(buf, IMPORT_KEY_MAX + 1);
        return 0;
    }
    *out = buf;
    *len = (size_t)n;
    return 1;
}

/* The decoder's passphrase callback: --passin-file, else the terminal, else refuse. */
static int import_passphrase(char *pass, size_t pass_size, size_t *pass_len,
                             const OSSL_PARAM params[], void *arg)
{
    IMPORT_PASS *p = arg;
    char prompt[256];

    (void)params;
    p->asked = 1;
    if (p->pass != NULL) {
        if (p->pass->len > pass_size)
            return 0;
        memcpy(pass, p->pass->p, p->pass->len);
        *pass_len = p->pass->len;
        return 1;
    }
    if (!isatty(STDIN_FILENO))
        return 0;
    snprintf(prompt, sizeof(prompt), "Enter pass phrase for %s:", p->key_path);
    if (pass_size > PASS_MAX + 1)
        pass_size = PASS_MAX + 1;
    if (EVP_read_pw_string_min(pass, 0, (int)pass_size - 1, prompt, 0) != 0)
        return 0;
    *pass_len = strlen(pass);
    return 1;
}

static EVP_PKEY *load_software_key(IMPORT_PASS *pass)
{
    OSSL_DECODER_CTX *dctx = NULL;
    EVP_PKEY *pkey = NULL;
    unsigned char *buf = NULL;
    const unsigned char *p;
    size_t len = 0, left;

    if (!read_key_bytes(pass->key_path, &buf, &len))
        return NULL;
    /* Any input type (PEM, DER), any structure (PKCS#8, encrypted, traditional). */
    dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, NULL, NULL, NULL, EVP_PKEY_KEYPAIR, NULL, NULL);
    if (dctx == NULL || !OSSL_DECODER_CTX_set_passphrase_cb(dctx, import_passphrase, pass)) {
        hwkey_raise(HWKEY_R_INTERNAL, "cannot set up OpenSSL's key decoders");
        goto end;
    }
    p = buf;
    left = len;
    if (!OSSL_DECODER_from_data(dctx, &p, &left) || pkey == NULL) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
        ERR_clear_error();
        if (pass->asked && pass->pass == NULL && !isatty(STDIN_FILENO))
            hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                        "%s is encrypted: give its passphrase with "
                        "--passin-file",
                        pass->key_path);
        else if (pass->asked)
            hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                        "cannot decrypt %s: wrong passphrase or corrupt "
                        "key",
                        pass->key_path);
        else
            hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                        "%s holds no private key OpenSSL can read (PEM or "
                        "DER, PKCS#8 or traditional)",
                        pass->key_path);
    }
end:
    OSSL_DECODER_CTX_free(dctx);
    OPENSSL_secure_clear_free(buf, IMPORT_KEY_MAX + 1);
    return pkey;
}

int hwkey_cmd_import(HWKEY_CLI *cli, int argc, char **argv)
{
    enum {
        OPT_OUT = 1,
        OPT_URI,
        OPT_FORCE,
        OPT_PASSIN,
        OPT_PARENT_PUB,
        OPT_PARENT_HANDLE,
        OPT_FINISH,
        OPT_WIPE,
        OPT_YES
    };
    static const struct option opts[] = {
        {"out", required_argument, NULL, OPT_OUT},
        {"parent-pub", required_argument, NULL, OPT_PARENT_PUB},
        {"parent-handle", required_argument, NULL, OPT_PARENT_HANDLE},
        {"finish", no_argument, NULL, OPT_FINISH},
        {"uri", required_argument, NULL, OPT_URI},
        {"force", no_argument, NULL, OPT_FORCE},
        {"passin-file", required_argument, NULL, OPT_PASSIN},
        {"wipe-source", no_argument, NULL, OPT_WIPE},
        {"yes", no_argument, NULL, OPT_YES},
        HWKEY_CLI_LONGOPTS_COMMON};
    const char *out_path = NULL, *uri = NULL, *passin = NULL, *parent_pub = NULL;
    uint32_t parent_handle = 0;
    int finish = 0;
    HWKEY_CLI_WIPE wipe;
    int wipe_source = 0, yes = 0;
    IMPORT_PASS pass = {0};
    HWKEY_GENOPTS gen;
    HWKEY_REFBLOB blob = {0};
    HWKEY_CLI_OUTFILE out = {.fd = -1};
    HWKEY_DEVICE *dev;
    EVP_PKEY *soft = NULL;
    int opt, c, force = 0, rc = HWKEY_CLI_FAIL;

    memset(&gen, 0, sizeof(gen));
    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            import_usage();
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
        case OPT_PASSIN:
            passin = optarg;
            break;
        case OPT_PARENT_PUB:
            parent_pub = optarg;
            break;
        case OPT_PARENT_HANDLE:
            if (!hwkey_cli_parse_parent_handle(optarg, &parent_handle))
                return hwkey_cli_usage("import",
                                       "--parent-handle %s: expected 0x40000001 or a "
                                       "persistent handle 0x81xxxxxx",
                                       optarg);
            break;
        case OPT_FINISH:
            finish = 1;
            break;
        case OPT_WIPE:
            wipe_source = 1;
            break;
        case OPT_YES:
            yes = 1;
            break;
        default:
            if ((c = hwkey_cli_other_option(cli, "import", opt, argv)) != HWKEY_CLI_OK)
                return c;
        }
    }
    if (argc - optind != 1)
        return hwkey_cli_usage("import", "expected exactly one SOFTWARE_KEY file");
    if (finish) {
        if (out_path == NULL || uri != NULL || parent_pub != NULL || passin != NULL ||
            wipe_source || yes)
            return hwkey_cli_usage("import", "--finish FILE takes --out NEW (and no "
                                             "--uri/--parent-pub/--passin-file/--wipe-source)");
        if (!hwkey_cli_import_finish(cli, argv[optind], out_path, force))
            return hwkey_cli_fail("import --finish %s", argv[optind]);
        return HWKEY_CLI_OK;
    }
    if (parent_pub != NULL && (uri != NULL || out_path == NULL))
        return hwkey_cli_usage("import", "--parent-pub needs --out FILE and no --uri");
    if (parent_handle != 0 && parent_pub == NULL)
        return hwkey_cli_usage("import", "--parent-handle goes with --parent-pub");
    pass.key_path = argv[optind];
    if (uri != NULL && hwkey_ref_kind_of_string(uri) != HWKEY_REF_PKCS11_URI)
        return hwkey_cli_usage("import", "--uri %s: expected a pkcs11: URI", uri);
    /* A token key has no auth value of its own; its PIN comes from --pin-source. */
    if (uri != NULL && cli->auth != NULL)
        return hwkey_cli_usage("import", "--auth-file is for TPM keys; give the token's PIN "
                                         "with --pin-source");
    if (out_path == NULL && uri == NULL)
        return hwkey_cli_usage("import", "--out FILE (TPM) or --uri URI (PKCS#11) is required");
    if (yes && !wipe_source)
        return hwkey_cli_usage("import", "--yes only answers --wipe-source's question");
    gen.uri = uri;
    gen.auth = cli->auth != NULL ? (const char *)cli->auth->p : NULL;
    gen.auth_len = cli->auth != NULL ? cli->auth->len : 0;

    /* Asked and checked before anything is imported: a refusal leaves nothing behind. */
    if (wipe_source) {
        if (!hwkey_cli_wipe_check(pass.key_path, &wipe))
            goto fail;
        /* --out over the key itself would rename the file away unwiped. */
        if (hwkey_cli_wipe_same_file(&wipe, out_path))
            return hwkey_cli_usage("import",
                                   "--out %s is the software key itself; with "
                                   "--wipe-source write the key file elsewhere",
                                   out_path);
        if ((c = hwkey_cli_wipe_confirm(pass.key_path, yes)) == HWKEY_CLI_USAGE)
            return c;
        if (c != HWKEY_CLI_OK)
            goto fail;
    }
    if (passin != NULL &&
        (pass.pass = hwkey_secret_read_line(passin, PASS_MAX, "passphrase file")) == NULL)
        goto fail;
    if ((soft = load_software_key(&pass)) == NULL)
        goto fail;
    /* The output file before the device: an unwritable place fails before the device works. */
    if (out_path != NULL && !hwkey_cli_out_begin(&out, out_path, force))
        goto fail;
    /* Offline: no device at all, the parent's public key is all it takes. */
    if (parent_pub != NULL) {
        if (!hwkey_cli_import_offline(soft, parent_pub, parent_handle, &gen, &blob))
            goto fail;
    } else if ((dev = hwkey_cli_device_for(cli, uri)) == NULL ||
               !hwkey_backend_key_import(dev, soft, &gen, &blob)) {
        goto fail;
    }
    if (out_path != NULL && !hwkey_cli_out_commit_keyfile(&out, &blob))
        goto fail;
    if (blob.kind == HWKEY_REF_PKCS11_URI)
        printf("%.*s\n", (int)blob.len, (const char *)blob.data);
    if (wipe_source) {
        if (!hwkey_cli_wipe(&wipe)) {
            rc = hwkey_cli_fail("import %s succeeded, but the software key was not wiped",
                                pass.key_path);
            goto end;
        }
        fprintf(stderr,
                "hwkey: %s overwritten and removed; copies elsewhere (backups, "
                "snapshots, other disks, old blocks on SSDs or copy-on-write and "
                "journaling filesystems) are not covered\n",
                pass.key_path);
    }
    rc = HWKEY_CLI_OK;
    goto end;
fail:
    rc = hwkey_cli_fail("import %s", pass.key_path);
end:
    hwkey_cli_out_abort(&out);
    OPENSSL_free(blob.data);
    EVP_PKEY_free(soft);
    hwkey_secret_free(pass.pass);
    return rc;
}
