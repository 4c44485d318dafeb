/*
 * hwkey attest KEY [--out FILE] [--nonce HEX] [--force]
 * hwkey attest --verify FILE KEY [--nonce HEX] [--trust-ak PEM] [--trust-ek PEM]
 *              [--allow-imported]
 *
 * Evidence that a key was born in the device and cannot leave it
 * (docs/attestation.md): for a TPM key a bundle of PEM blocks around a
 * TPM2_Certify by the TPM's attestation key; for a PKCS#11 key the token's
 * origin attributes.  --verify checks a TPM bundle in software (no TPM).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "backend/tpm2/tpm2_offline.h"
#include "cli/cli.h"
#include "util/error.h"

#define ATTEST_FILE_MAX (64 * 1024)
#define NONCE_MAX 64

static void attest_usage(void)
{
    printf("usage: hwkey attest KEY [--out FILE] [--nonce HEX] [--force] [--tcti STRING]\n"
           "       hwkey attest --verify FILE KEY [--nonce HEX] [--trust-ak PEM]\n"
           "                    [--trust-ek PEM] [--allow-imported]\n\n"
           "TPM key (TSS2 key file or handle:): certifies the key with TPM2_Certify, signed\n"
           "by the TPM's attestation key (AK, a restricted signing primary of the\n"
           "endorsement hierarchy), and writes a bundle of PEM blocks: the TPMS_ATTEST,\n"
           "its signature (DER), the AK (PEM and TPM2B_PUBLIC), the key's and the EK's\n"
           "TPM2B_PUBLIC, and the EK certificate when the TPM has one.\n"
           "PKCS#11 key (pkcs11: URI or reference file): prints the token's CKA_LOCAL,\n"
           "CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_SENSITIVE, CKA_EXTRACTABLE\n"
           "and what they mean.\n\n"
           "  --out FILE        write there instead of stdout\n"
           "  --nonce HEX       qualifying data (the verifier's fresh challenge), 1..%d bytes\n"
           "  --force           replace an existing --out file\n"
           "  --verify FILE     check the bundle FILE against KEY (its TSS2 key file, or\n"
           "                    its PEM public key, e.g. from the CSR), in\n"
           "                    software: AK signature, TPM-generated certification of KEY's\n"
           "                    Name, nonce, and that KEY was generated in the TPM and cannot\n"
           "                    leave it (fixedTPM, fixedParent, sensitiveDataOrigin)\n"
           "  --trust-ak PEM    the AK public key to trust (else any AK passes: reported)\n"
           "  --trust-ek PEM    the EK public key to trust\n"
           "  --allow-imported  accept a key imported into the TPM (reported as such)\n\n"
           "Exit status: 0 valid / written, 1 rejected or failed, 2 usage error.\n",
           NONCE_MAX);
}

static int parse_nonce(const char *hex, unsigned char **out, size_t *len)
{
    long n = 0;

    ERR_set_mark();
    *out = OPENSSL_hexstr2buf(hex, &n);
    ERR_pop_to_mark();
    if (*out == NULL || n <= 0 || n > NONCE_MAX) {
        OPENSSL_free(*out);
        *out = NULL;
        return 0;
    }
    *len = (size_t)n;
    return 1;
}

static EVP_PKEY *read_trusted(const char *path, const char *what)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    EVP_PKEY *pk = NULL;
    BIO *bio;

    if (!hwkey_cli_read_file(path, ATTEST_FILE_MAX, what, &buf, &len))
        return NULL;
    ERR_set_mark();
    if ((bio = BIO_new_mem_buf(buf, (int)len)) != NULL)
        pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    ERR_pop_to_mark();
    if (pk == NULL)
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "%s %s holds no PEM public key", what, path);
    BIO_free(bio);
    OPENSSL_free(buf);
    return pk;
}

/* Writes the rendered mem BIO to --out (atomically) or stdout. */
static int emit(BIO *mem, const char *out_path, int force)
{
    HWKEY_CLI_OUTFILE out = {.fd = -1};
    char *data;
    long len = BIO_get_mem_data(mem, &data);
    int ok;

    if (out_path == NULL) {
        ok = len >= 0 && fwrite(data, 1, (size_t)len, stdout) == (size_t)len;
        if (!ok)
            hwkey_raise(HWKEY_R_INTERNAL, "cannot write to stdout");
        return ok;
    }
    ok =
        hwkey_cli_out_begin(&out, out_path, force) && hwkey_cli_out_commit(&out, data, (size_t)len);
    hwkey_cli_out_abort(&out);
    return ok;
}

/* KEY of --verify: a TSS2 key file, or a PEM public key (the CA may hold only the CSR's). */
static int do_verify(const char *bundle_path, const char *key_path, HWKEY_ATTEST_CHECK *chk)
{
    static const char pem_pub[] = "-----BEGIN PUBLIC KEY-----";
    unsigned char *bundle = NULL, *keybuf = NULL;
    size_t bundle_len = 0, keylen = 0;
    HWKEY_CLI_KEYREF kr = {0};
    BIO *report = NULL;
    int ok = 0;

    if (!hwkey_cli_read_file(bundle_path, ATTEST_FILE_MAX, "attestation", &bundle, &bundle_len) ||
        !hwkey_cli_read_file(key_path, ATTEST_FILE_MAX, "KEY", &keybuf, &keylen))
        goto end;
    if (keylen >= sizeof(pem_pub) - 1 && memcmp(keybuf, pem_pub, sizeof(pem_pub) - 1) == 0) {
        if ((chk->key_pub = read_trusted(key_path, "KEY")) == NULL)
            goto end;
    } else {
        if (!hwkey_cli_keyref_open(key_path, &kr))
            goto end;
        if (kr.ref.kind != HWKEY_REF_TSS2_KEYFILE) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "--verify takes the TPM key as its TSS2 key file "
                                              "or its PEM public key");
            goto end;
        }
    }
    if ((report = BIO_new(BIO_s_mem())) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "report");
        goto end;
    }
    ok = hwkey_tpm2_attest_verify(bundle, bundle_len, chk->key_pub != NULL ? NULL : kr.ref.data,
                                  kr.ref.len, chk, report) &&
         emit(report, NULL, 0);
end:
    BIO_free(report);
    OPENSSL_free(bundle);
    OPENSSL_free(keybuf);
    EVP_PKEY_free(chk->key_pub);
    chk->key_pub = NULL;
    hwkey_cli_keyref_clear(&kr);
    return ok;
}

static int do_attest(HWKEY_CLI *cli, const char *key_arg, const unsigned char *nonce,
                     size_t nonce_len, const char *out_path, int force)
{
    HWKEY_CLI_KEYREF kr = {0};
    HWKEY_DEVICE *dev;
    HWKEY_BKEY *bkey = NULL;
    BIO *mem = NULL;
    int ok = 0;

    if ((dev = hwkey_cli_keyref_device(cli, key_arg, &kr)) == NULL ||
        !hwkey_backend_key_load(dev, &kr.ref, hwkey_cli_pw_cb, cli, &bkey))
        goto end;
    if ((mem = BIO_new(BIO_s_mem())) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "attestation");
        goto end;
    }
    ok = hwkey_backend_key_attest(bkey, nonce, nonce_len, mem) && emit(mem, out_path, force);
end:
    BIO_free(mem);
    hwkey_backend_key_free(bkey);
    hwkey_cli_keyref_clear(&kr);
    return ok;
}

int hwkey_cmd_attest(HWKEY_CLI *cli, int argc, char **argv)
{
    enum {
        OPT_OUT = 1,
        OPT_NONCE,
        OPT_FORCE,
        OPT_VERIFY,
        OPT_TRUST_AK,
        OPT_TRUST_EK,
        OPT_IMPORTED
    };
    static const struct option opts[] = {{"out", required_argument, NULL, OPT_OUT},
                                         {"nonce", required_argument, NULL, OPT_NONCE},
                                         {"force", no_argument, NULL, OPT_FORCE},
                                         {"verify", required_argument, NULL, OPT_VERIFY},
                                         {"trust-ak", required_argument, NULL, OPT_TRUST_AK},
                                         {"trust-ek", required_argument, NULL, OPT_TRUST_EK},
                                         {"allow-imported", no_argument, NULL, OPT_IMPORTED},
                                         HWKEY_CLI_LONGOPTS_COMMON};
    const char *out_path = NULL, *verify = NULL, *trust_ak = NULL, *trust_ek = NULL;
    const char *nonce_hex = NULL;
    HWKEY_ATTEST_CHECK chk;
    unsigned char *nonce = NULL;
    size_t nonce_len = 0;
    int opt, c, force = 0, ok = 0, rc;

    memset(&chk, 0, sizeof(chk));
    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            attest_usage();
            return HWKEY_CLI_OK;
        case OPT_OUT:
            out_path = optarg;
            break;
        case OPT_NONCE:
            nonce_hex = optarg;
            break;
        case OPT_FORCE:
            force = 1;
            break;
        case OPT_VERIFY:
            verify = optarg;
            break;
        case OPT_TRUST_AK:
            trust_ak = optarg;
            break;
        case OPT_TRUST_EK:
            trust_ek = optarg;
            break;
        case OPT_IMPORTED:
            chk.allow_imported = 1;
            break;
        default:
            if ((c = hwkey_cli_other_option(cli, "attest", opt, argv)) != HWKEY_CLI_OK)
                return c;
        }
    }
    if (argc - optind != 1)
        return hwkey_cli_usage("attest", "expected exactly one KEY");
    if (verify == NULL && (trust_ak != NULL || trust_ek != NULL || chk.allow_imported))
        return hwkey_cli_usage("attest", "--trust-ak, --trust-ek, --allow-imported go with "
                                         "--verify");
    if (verify != NULL && (out_path != NULL || force))
        return hwkey_cli_usage("attest", "--verify prints its report; --out is for making one");
    if (nonce_hex != NULL && !parse_nonce(nonce_hex, &nonce, &nonce_len))
        return hwkey_cli_usage("attest", "--nonce %s: expected 1..%d bytes in hex", nonce_hex,
                               NONCE_MAX);

    if (verify != NULL) {
        chk.nonce = nonce;
        chk.nonce_len = nonce_len;
        if ((trust_ak == NULL || (chk.trust_ak = read_trusted(trust_ak, "--trust-ak")) != NULL) &&
            (trust_ek == NULL || (chk.trust_ek = read_trusted(trust_ek, "--trust-ek")) != NULL))
            ok = do_verify(verify, argv[optind], &chk);
    } else {
        ok = do_attest(cli, argv[optind], nonce, nonce_len, out_path, force);
    }
    rc = ok ? HWKEY_CLI_OK
            : hwkey_cli_fail(verify != NULL ? "attest --verify %s" : "attest %s",
                             verify != NULL ? verify : argv[optind]);
    EVP_PKEY_free(chk.trust_ak);
    EVP_PKEY_free(chk.trust_ek);
    OPENSSL_free(nonce);
    return rc;
}
