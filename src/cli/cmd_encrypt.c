/*
 * hwkey encrypt|decrypt --key FILE [-in F] [-out F]: streaming authenticated
 * encryption (docs/bulk.md).  The device unwraps the data key once into
 * protected memory; AES-NI does the rest.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bulk/bulk_file.h"
#include "bulk/bulk_gcm.h"
#include "cli/cli.h"
#include "util/error.h"
#include "util/secmem.h"

/* Progress by default only for inputs this large, and only to a terminal. */
#define PROGRESS_MIN (64ull << 20)
#define PROGRESS_STEP (16ull << 20)

typedef struct {
    const char *verb;
    int on;
    int tty;                  /* redraw one line ("\r"), else one line per step */
    unsigned long long total; /* the input's size; 0: unknown (a pipe) */
    unsigned long long done;  /* input consumed, as the bulk code reports it */
    unsigned long long shown; /* the value last printed */
    unsigned long long next;
} PROGRESS;

static void print_progress(PROGRESS *p)
{
    const char *start = p->tty ? "\r" : "", *end = p->tty ? "" : "\n";

    if (p->total != 0)
        fprintf(stderr, "%shwkey: %s: %llu / %llu MiB%s", start, p->verb, p->done >> 20,
                p->total >> 20, end);
    else
        fprintf(stderr, "%shwkey: %s: %llu MiB%s", start, p->verb, p->done >> 20, end);
    p->shown = p->done;
}

static void show_progress(void *arg, uint64_t done)
{
    PROGRESS *p = arg;

    p->done = done;
    if (done < p->next && (p->total == 0 || done < p->total))
        return;
    p->next = done + PROGRESS_STEP;
    print_progress(p);
}

/* After the last chunk: the final figure (the total, once all was read), then end the line. */
static void finish_progress(PROGRESS *p, int ok)
{
    if (ok && p->shown != p->done)
        print_progress(p);
    if (p->tty)
        fputc('\n', stderr);
}

static void crypt_usage(const char *cmd)
{
    printf("usage: hwkey %s --key FILE [-in F] [-out F] [--force] [--progress]\n"
           "                     [--auth-file F] [--pin-source S] [--tcti STRING]\n\n"
           "%s\n\n"
           "  --key FILE      the data key file, as written by hwkey datakey\n"
           "  -in F           input (default: stdin)\n"
           "  -out F          output (default: stdout); written to a temporary file and\n"
           "                  renamed only when everything %s\n"
           "  --force         replace an existing -out file\n"
           "  --progress      report progress on stderr (default: on a terminal, for\n"
           "                  inputs of 64 MiB or more); the last line is the total\n"
           "  --auth-file F   the data key's auth value, if it was made with one\n"
           "                  (PKCS#11 data key: the token's user PIN)\n"
           "  --pin-source S  PKCS#11 data key: the user PIN, file:/path or env:NAME\n"
           "  --tcti STRING   TPM transport (see hwkey --help)\n\n"
           "AES-256-GCM in 64 KiB chunks; truncation, reordering and appended data are\n"
           "detected.  Exit status: 0 success, 1 failure, 2 usage error.\n",
           cmd,
           strcmp(cmd, "encrypt") == 0
               ? "Encrypts with the data key, which the device unwraps into protected memory."
               : "Decrypts and verifies a file made by hwkey encrypt.",
           strcmp(cmd, "encrypt") == 0 ? "was written" : "verified (a failure leaves no file)");
}

static int run(HWKEY_CLI *cli, int argc, char **argv, int enc)
{
    enum { OPT_KEY = 1, OPT_IN, OPT_OUT, OPT_FORCE, OPT_PROGRESS };
    static const struct option opts[] = {
        {"key", required_argument, NULL, OPT_KEY},     {"in", required_argument, NULL, OPT_IN},
        {"out", required_argument, NULL, OPT_OUT},     {"force", no_argument, NULL, OPT_FORCE},
        {"progress", no_argument, NULL, OPT_PROGRESS}, HWKEY_CLI_LONGOPTS_COMMON};
    const char *cmd = enc ? "encrypt" : "decrypt";
    const char *key_path = NULL, *in_path = NULL, *out_path = NULL;
    HWKEY_CLI_KEYREF ref = {0};
    HWKEY_CLI_OUTFILE out = {.fd = -1};
    PROGRESS progress = {.verb = enc ? "encrypting" : "decrypting"};
    HWKEY_BULK_GCM *g = NULL;
    HWKEY_DEVICE *dev;
    unsigned char *key = NULL;
    struct stat st;
    int opt, c, force = 0, in_fd = 0, out_fd = 1, ok, rc = HWKEY_CLI_FAIL;

    optind = 0;
    /* getopt_long_only: -in/-out as openssl(1) spells them, --in/--out too. */
    while ((opt = getopt_long_only(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            crypt_usage(cmd);
            return HWKEY_CLI_OK;
        case OPT_KEY:
            key_path = optarg;
            break;
        case OPT_IN:
            in_path = optarg;
            break;
        case OPT_OUT:
            out_path = optarg;
            break;
        case OPT_FORCE:
            force = 1;
            break;
        case OPT_PROGRESS:
            progress.on = 1;
            break;
        default:
            if ((c = hwkey_cli_other_option(cli, cmd, opt, argv)) != HWKEY_CLI_OK)
                return c;
        }
    }
    if (optind != argc)
        return hwkey_cli_usage(cmd, "unexpected argument \"%s\"", argv[optind]);
    if (key_path == NULL)
        return hwkey_cli_usage(cmd, "--key FILE is required");

    if (!hwkey_bulk_cpu_ok()) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "this CPU lacks AES-NI/PCLMULQDQ, which the bulk cipher needs");
        goto fail;
    }
    if (in_path != NULL && (in_fd = open(in_path, O_RDONLY | O_CLOEXEC)) < 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "cannot open %s: %s", in_path, strerror(errno));
        goto fail;
    }
    if (out_path != NULL) {
        if (!hwkey_cli_out_begin(&out, out_path, force))
            goto fail;
        out_fd = out.fd;
    }
    if (fstat(in_fd, &st) == 0 && S_ISREG(st.st_mode))
        progress.total = (unsigned long long)st.st_size;
    progress.tty = isatty(2);
    if (progress.tty && progress.total >= PROGRESS_MIN)
        progress.on = 1;

    /* The data key: unwrapped by the device, held only in protected memory. */
    if ((dev = hwkey_cli_keyref_device(cli, key_path, &ref)) == NULL ||
        (key = hwkey_secmem_alloc(HWKEY_BULK_KEY_LEN)) == NULL ||
        !hwkey_backend_datakey_unwrap(dev, &ref.ref, hwkey_cli_pw_cb, cli, key))
        goto fail;
    g = hwkey_bulk_gcm_new(key);
    hwkey_secmem_free(key);
    key = NULL;
    if (g == NULL)
        goto fail;

    ok = enc ? hwkey_bulk_file_encrypt(g, in_fd, out_fd, progress.on ? show_progress : NULL,
                                       &progress)
             : hwkey_bulk_file_decrypt(g, in_fd, out_fd, progress.on ? show_progress : NULL,
                                       &progress);
    if (progress.on)
        finish_progress(&progress, ok);
    if (!ok || (out_path != NULL && !hwkey_cli_out_commit(&out, NULL, 0)))
        goto fail;
    rc = HWKEY_CLI_OK;
    goto end;
fail:
    rc = hwkey_cli_fail("%s %s", cmd, in_path != NULL ? in_path : "(stdin)");
end:
    hwkey_cli_out_abort(&out);
    hwkey_bulk_gcm_free(g);
    hwkey_secmem_free(key);
    hwkey_cli_keyref_clear(&ref);
    if (in_fd > 0)
        close(in_fd);
    return rc;
}

int hwkey_cmd_encrypt(HWKEY_CLI *cli, int argc, char **argv)
{
    return run(cli, argc, argv, 1);
}

int hwkey_cmd_decrypt(HWKEY_CLI *cli, int argc, char **argv)
{
    return run(cli, argc, argv, 0);
}
