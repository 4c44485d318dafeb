/*
 * The hwkey command: shared state and helpers of the subcommands
 * (one file per subcommand, cmd_<name>.c).  The CLI talks to the backend
 * registry directly, never through the provider: cli -> backend, util.
 *
 * Exit codes: 0 success, 1 operation failure, 2 usage error.  Every failure
 * prints exactly one line on stderr,
 *     hwkey: <what failed>: <reason>: <detail with the device's decoded code>
 * built from the first hwkey error on the error queue.
 */
#ifndef HWKEY_CLI_CLI_H
#define HWKEY_CLI_CLI_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/core.h>

#include "backend/backend.h"
#include "util/config.h"
#include "util/secret.h"

enum { HWKEY_CLI_OK = 0, HWKEY_CLI_FAIL = 1, HWKEY_CLI_USAGE = 2 };

typedef struct {
    HWKEY_CONFIG cfg;
    HWKEY_DEVICES *devs; /* created on first use */
    char *tcti;          /* --tcti, wins over HWKEY_TPM2_TCTI and tpm2-tcti */
    char *pin_source;    /* --pin-source, wins over HWKEY_PKCS11_PIN_SOURCE and the file */
    HWKEY_SECRET *auth;  /* --auth-file contents (protected memory); may be empty */
} HWKEY_CLI;

/* Prints the one failure line from the error queue (then cleared); returns 1. */
int hwkey_cli_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/*
 * The cause of a failure as one line of text ("<reason>: <detail>"), from
 * the first hwkey error on the error queue (else the last one); the queue is
 * emptied.  Truncated to len - 1 characters.
 */
void hwkey_cli_error_text(char *buf, size_t len);
/* Prints "hwkey: <cmd>: usage error: <text> (see hwkey <cmd> --help)"; returns 2. */
int hwkey_cli_usage(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Option parsing shared by the subcommands: the options every one accepts. */
#define HWKEY_CLI_OPT_TCTI 1000
#define HWKEY_CLI_OPT_AUTH_FILE 1001
#define HWKEY_CLI_OPT_PIN_SOURCE 1002 /* --pin-source file:/path|env:NAME (token user PIN) */
/*
 * The last entries of a subcommand's getopt_long table (needs <getopt.h>):
 * --auth-file, --tcti, --pin-source, --help and the terminator.
 */
#define HWKEY_CLI_LONGOPTS_COMMON                                                                  \
    {"auth-file", required_argument, NULL, HWKEY_CLI_OPT_AUTH_FILE},                               \
        {"tcti", required_argument, NULL, HWKEY_CLI_OPT_TCTI},                                     \
        {"pin-source", required_argument, NULL, HWKEY_CLI_OPT_PIN_SOURCE},                         \
        {"help", no_argument, NULL, 'h'},                                                          \
    {                                                                                              \
        NULL, 0, NULL, 0                                                                           \
    }
/* 1: handled a common option; 0: not a common one; -1: failed (usage printed). */
int hwkey_cli_common_option(HWKEY_CLI *cli, int opt, const char *arg);
/*
 * The default: branch of a subcommand's getopt loop (optarg, optind as
 * getopt left them): HWKEY_CLI_OK when opt was a common option, else the
 * exit code to return (a usage error names argv[optind - 1]).
 */
int hwkey_cli_other_option(HWKEY_CLI *cli, const char *cmd, int opt, char **argv);
int hwkey_cli_set_tcti(HWKEY_CLI *cli, const char *tcti);
/*
 * Reads --auth-file into protected memory (one trailing newline dropped); an
 * empty file gives an empty value (cli->auth set, auth_len 0).
 */
int hwkey_cli_read_auth(HWKEY_CLI *cli, const char *path);
/* Answers the backend's request for a key auth value with --auth-file. */
OSSL_PASSPHRASE_CALLBACK hwkey_cli_pw_cb;

/*
 * The registry, built on first use from hwkey's openssl.cnf section (the file
 * OPENSSL_CONF names, else OpenSSL's default), the environment variables
 * (which win over the file) and the options (which win over both).
 */
HWKEY_DEVICES *hwkey_cli_devices(HWKEY_CLI *cli);
/* Where a new key or data key goes: the PKCS#11 token for uri, else the TPM. */
HWKEY_DEVICE *hwkey_cli_device_for(HWKEY_CLI *cli, const char *uri);

/* KEY argument: TSS2 key file (PEM/DER), reference file, handle:, pkcs11: */
typedef struct {
    HWKEY_KEYREF ref;
    unsigned char *buf; /* what ref.data points into */
    size_t buflen;
} HWKEY_CLI_KEYREF;
int hwkey_cli_keyref_open(const char *arg, HWKEY_CLI_KEYREF *out);
void hwkey_cli_keyref_clear(HWKEY_CLI_KEYREF *r);
/* Opens KEY argument arg into kr and finds the device that holds that kind of key. */
HWKEY_DEVICE *hwkey_cli_keyref_device(HWKEY_CLI *cli, const char *arg, HWKEY_CLI_KEYREF *kr);

/*
 * Output files are never half-written: a temporary file in the target's
 * directory, written, fsync'ed, then renamed over (with force) or linked to
 * the name (without force, so an existing file is never replaced).
 */
typedef struct {
    char *path;
    char *tmp;
    int fd;
    int force;
} HWKEY_CLI_OUTFILE;
int hwkey_cli_out_begin(HWKEY_CLI_OUTFILE *o, const char *path, int force);
int hwkey_cli_out_commit(HWKEY_CLI_OUTFILE *o, const void *data, size_t len);
/* Removes the temporary file if commit did not happen; safe to call twice. */
void hwkey_cli_out_abort(HWKEY_CLI_OUTFILE *o);

/* The whole file at path (at most max bytes, not empty) into *out (OPENSSL_free); what names it. */
int hwkey_cli_read_file(const char *path, size_t max, const char *what, unsigned char **out,
                        size_t *len);

/*
 * import --wipe-source (cli_wipe.c).  check, before the import: a regular
 * file with one name, not a symbolic link (0 + error otherwise).  confirm:
 * HWKEY_CLI_OK with yes or after "yes" typed on the terminal; a usage error
 * when stdin is not a terminal; HWKEY_CLI_FAIL (error raised) on another
 * answer.  wipe, after a successful import: overwrite with random bytes,
 * fsync, unlink, if the name still leads to the same file.
 */
typedef struct {
    const char *path;
    dev_t dev;
    ino_t ino;
} HWKEY_CLI_WIPE;
int hwkey_cli_wipe_check(const char *path, HWKEY_CLI_WIPE *w);
/* 1 if path names the very file w was checked for (e.g. --out SOFTWARE_KEY). */
int hwkey_cli_wipe_same_file(const HWKEY_CLI_WIPE *w, const char *path);
int hwkey_cli_wipe_confirm(const char *path, int yes);
int hwkey_cli_wipe(const HWKEY_CLI_WIPE *w);

/* "ec:P-256", "rsa:2048" for a key description. */
void hwkey_cli_describe_alg(const HWKEY_KEYINFO *info, char *buf, size_t bufsz);

int hwkey_cmd_info(HWKEY_CLI *cli, int argc, char **argv);
int hwkey_cmd_keygen(HWKEY_CLI *cli, int argc, char **argv);
int hwkey_cmd_import(HWKEY_CLI *cli, int argc, char **argv);
int hwkey_cmd_pubkey(HWKEY_CLI *cli, int argc, char **argv);
int hwkey_cmd_list(HWKEY_CLI *cli, int argc, char **argv);
int hwkey_cmd_delete(HWKEY_CLI *cli, int argc, char **argv);
int hwkey_cmd_datakey(HWKEY_CLI *cli, int argc, char **argv);
int hwkey_cmd_encrypt(HWKEY_CLI *cli, int argc, char **argv);
int hwkey_cmd_decrypt(HWKEY_CLI *cli, int argc, char **argv);
int hwkey_cmd_attest(HWKEY_CLI *cli, int argc, char **argv);

/* cmd_import_offline.c: --parent-pub, --parent-handle and --finish of hwkey import. */
int hwkey_cli_parse_parent_handle(const char *s, uint32_t *handle);
int hwkey_cli_import_offline(EVP_PKEY *soft, const char *parent_path, uint32_t parent_handle,
                             const HWKEY_GENOPTS *gen, HWKEY_REFBLOB *blob);
int hwkey_cli_import_finish(HWKEY_CLI *cli, const char *path, const char *out_path, int force);

/* keygen/import output: TSS2 key file PEM, or a reference file for device-held keys. */
int hwkey_cli_render_keyfile(const HWKEY_REFBLOB *blob, BIO *mem);
/* Renders blob as above and commits it to o. */
int hwkey_cli_out_commit_keyfile(HWKEY_CLI_OUTFILE *o, const HWKEY_REFBLOB *blob);

#endif
