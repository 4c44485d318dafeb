/* hwkey keygen ALG --out FILE [--persist 0x81xxxxxx] [--pcr BANK:N,..] [--auth-file F] [--force] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/obj_mac.h>

#include "cli/cli.h"
#include "util/error.h"
#include "util/keyref.h"
#include "util/tss2_keyfile.h"

static const struct {
    const char *name;
    HWKEY_KEYSPEC spec;
} algs[] = {
    {"ec:P-256", {.alg = HWKEY_ALG_EC, .curve_nid = NID_X9_62_prime256v1, .bits = 256}},
    {"ec:P-384", {.alg = HWKEY_ALG_EC, .curve_nid = NID_secp384r1, .bits = 384}},
    {"rsa:2048", {.alg = HWKEY_ALG_RSA, .bits = 2048}},
    {"rsa:3072", {.alg = HWKEY_ALG_RSA, .bits = 3072}},
    /* Where the device has them (swtpm has P-521, not RSA-4096; the TPM is asked). */
    {"ec:P-521", {.alg = HWKEY_ALG_EC, .curve_nid = NID_secp521r1, .bits = 521}},
    {"rsa:4096", {.alg = HWKEY_ALG_RSA, .bits = 4096}},
    {"ed25519", {.alg = HWKEY_ALG_ED25519, .bits = 256}},
};
#define ALG_LIST "ec:P-256 ec:P-384 ec:P-521 rsa:2048 rsa:3072 rsa:4096 ed25519"

/* The table's own spelling of spec ("rsa:4096"), for messages. */
static const char *algs_name(const HWKEY_KEYSPEC *spec)
{
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (&algs[i].spec == spec)
            return algs[i].name;
    return "this algorithm";
}

static void keygen_usage(void)
{
    printf(
        "usage: hwkey keygen ALG --out FILE [--persist 0x81xxxxxx | --pcr BANK:N[,N...]]\n"
        "                   [--auth-file F] [--force] [--tcti STRING]\n"
        "       hwkey keygen ALG --uri 'pkcs11:...' [--out FILE] [--pin-source SRC] [--force]\n\n"
        "ALG: ec:P-256 ec:P-384 ec:P-521 rsa:2048 rsa:3072 rsa:4096 ed25519, where the\n"
        "     device has it: a TPM is asked (hwkey info lists its curves and RSA sizes;\n"
        "     TPMs have no ed25519), a token answers when generating\n\n"
        "  --out FILE        TSS2 PRIVATE KEY file to write (PEM); with --persist or\n"
        "                    --uri, a key reference file naming the key\n"
        "  --persist HANDLE  also make the key persistent at HANDLE (0x81000000..0x81FFFFFF)\n"
        "  --pcr BANK:N,..   bind the key to these PCRs' current values, e.g.\n"
        "                    sha256:0,2,7: once one changes (firmware, boot loader or\n"
        "                    kernel update) the TPM refuses the key (docs/pcr-policy.md)\n"
        "  --auth-file F     the key's auth value (first line of F); default: none.\n"
        "                    With --pcr both are required to use the key\n"
        "  --uri URI         generate on the PKCS#11 token named by URI (token=, object=,\n"
        "                    id=); the key is sensitive, non-extractable and private\n"
        "  --pin-source SRC  the token's user PIN: file:/path or env:NAME (default: the\n"
        "                    URI's pin-source/pin-value, else $HWKEY_PKCS11_PIN_SOURCE)\n"
        "  --force           replace an existing --out file\n"
        "  --tcti STRING     TPM transport (see hwkey --help)\n");
}

static int parse_handle(const char *s, uint32_t *out)
{
    char *end = NULL;
    unsigned long v;

    if (strncasecmp(s, "0x", 2) != 0)
        return 0;
    v = strtoul(s, &end, 16);
    if (end == s || *end != '\0' || v < 0x81000000UL || v > 0x81FFFFFFUL)
        return 0;
    *out = (uint32_t)v;
    return 1;
}

int hwkey_cmd_keygen(HWKEY_CLI *cli, int argc, char **argv)
{
    enum { OPT_OUT = 1, OPT_PERSIST, OPT_URI, OPT_FORCE, OPT_PCR };
    static const struct option opts[] = {{"out", required_argument, NULL, OPT_OUT},
                                         {"persist", required_argument, NULL, OPT_PERSIST},
                                         {"uri", required_argument, NULL, OPT_URI},
                                         {"force", no_argument, NULL, OPT_FORCE},
                                         {"pcr", required_argument, NULL, OPT_PCR},
                                         HWKEY_CLI_LONGOPTS_COMMON};
    const char *out_path = NULL, *uri = NULL, *alg_name;
    char why[128];
    const HWKEY_KEYSPEC *spec = NULL;
    HWKEY_GENOPTS gen;
    HWKEY_REFBLOB blob = {0};
    HWKEY_CLI_OUTFILE out = {.fd = -1};
    HWKEY_DEVICE *dev;
    int opt, c, force = 0, supported, rc = HWKEY_CLI_FAIL;

    memset(&gen, 0, sizeof(gen));
    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            keygen_usage();
            return HWKEY_CLI_OK;
        case OPT_OUT:
            out_path = optarg;
            break;
        case OPT_PERSIST:
            if (!parse_handle(optarg, &gen.persist_handle))
                return hwkey_cli_usage("keygen", "--persist %s: expected 0x81000000..0x81FFFFFF",
                                       optarg);
            break;
        case OPT_URI:
            uri = optarg;
            break;
        case OPT_FORCE:
            force = 1;
            break;
        case OPT_PCR:
            if (!hwkey_pcrsel_parse(optarg, &gen.pcrs, why, sizeof(why)))
                return hwkey_cli_usage("keygen", "--pcr %s: %s", optarg, why);
            break;
        default:
            if ((c = hwkey_cli_other_option(cli, "keygen", opt, argv)) != HWKEY_CLI_OK)
                return c;
        }
    }
    if (argc - optind != 1)
        return hwkey_cli_usage("keygen", "expected exactly one ALG (" ALG_LIST ")");
    alg_name = argv[optind];
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strcasecmp(alg_name, algs[i].name) == 0)
            spec = &algs[i].spec;
    if (spec == NULL)
        return hwkey_cli_usage("keygen", "unknown algorithm \"%s\" (" ALG_LIST ")", alg_name);
    if (out_path == NULL && uri == NULL && gen.persist_handle == 0)
        return hwkey_cli_usage("keygen", "--out FILE is required");
    if (uri != NULL && gen.persist_handle != 0)
        return hwkey_cli_usage("keygen", "--persist is for TPM keys, --uri for PKCS#11 keys");
    if (gen.pcrs.mask != 0 && uri != NULL)
        return hwkey_cli_usage("keygen", "--pcr binds TPM keys; a PKCS#11 token has no PCRs");
    if (gen.pcrs.mask != 0 && (gen.persist_handle != 0 || out_path == NULL))
        return hwkey_cli_usage("keygen", "--pcr needs --out FILE to record the policy (not "
                                         "--persist)");
    gen.uri = uri;
    gen.auth = cli->auth != NULL ? (const char *)cli->auth->p : NULL;
    gen.auth_len = cli->auth != NULL ? cli->auth->len : 0;

    /* The output file first: an unwritable place fails before the device works. */
    if (out_path != NULL && !hwkey_cli_out_begin(&out, out_path, force))
        goto fail;
    if ((dev = hwkey_cli_device_for(cli, uri)) == NULL)
        goto fail;
    /*
     * The progress line only once the device answered and can do it: a TPM
     * that is unreachable or lacks the size fails below with one line
     * (supports() says -1, "cannot tell", for those and for every token).
     */
    supported = hwkey_backend_supports(dev, spec);
    if (supported == 0) {
        /* Before TPM2_Create, which would only say TPM_RC_VALUE or TPM_RC_CURVE. */
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "this %s does not support %s (hwkey info lists what it has)",
                    uri != NULL ? "token" : "TPM", algs_name(spec));
        goto fail;
    }
    if (spec->alg == HWKEY_ALG_RSA && supported == 1)
        fprintf(stderr, "hwkey: generating %s in the %s, this can take a few seconds...\n",
                alg_name, uri != NULL ? "token" : "TPM");
    if (!hwkey_backend_key_generate(dev, spec, &gen, &blob))
        goto fail;
    if (out_path != NULL && !hwkey_cli_out_commit_keyfile(&out, &blob))
        goto fail;
    if (blob.kind != HWKEY_REF_TSS2_KEYFILE)
        printf("%.*s\n", (int)blob.len, (const char *)blob.data);
    rc = HWKEY_CLI_OK;
    goto end;
fail:
    rc = hwkey_cli_fail("keygen %s", alg_name);
end:
    hwkey_cli_out_abort(&out);
    OPENSSL_free(blob.data);
    return rc;
}
