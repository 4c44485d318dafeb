/* Helpers shared by the hwkey subcommands: errors, options, key arguments, output files. */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "hwkey/hwkey.h"
#include "util/datakey_file.h"
#include "util/error.h"
#include "util/keyref.h"
#include "util/tss2_keyfile.h"

/* Key files and reference files are small; anything bigger is refused unread. */
#define KEY_ARG_MAX (HWKEY_TSS2_KEYFILE_MAX * 2 + 256)
#define AUTH_MAX 128

/* Appends s to buf (NUL-terminated, size len) with line breaks made spaces. */
static void append_clean(char *buf, size_t len, const char *s)
{
    size_t n = strlen(buf);

    for (; *s != '\0' && n + 1 < len; s++)
        buf[n++] = *s == '\n' || *s == '\r' ? ' ' : *s;
    buf[n] = '\0';
}

void hwkey_cli_error_text(char *buf, size_t len)
{
    unsigned long e, chosen = 0, last = 0;
    const char *data, *chosen_data = NULL, *last_data = NULL;
    int flags;

    buf[0] = '\0';
    /* hwkey raises once, where the failure is found: the first of ours is the cause. */
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        if (chosen == 0 && ERR_GET_LIB(e) == ERR_LIB_USER) {
            chosen = e;
            chosen_data = (flags & ERR_TXT_STRING) != 0 ? OPENSSL_strdup(data) : NULL;
        }
        last = e;
        OPENSSL_free((char *)last_data);
        last_data = (flags & ERR_TXT_STRING) != 0 ? OPENSSL_strdup(data) : NULL;
    }
    if (chosen != 0) {
        append_clean(buf, len, hwkey_reason_string(ERR_GET_REASON(chosen)));
        if (chosen_data != NULL && *chosen_data != '\0') {
            append_clean(buf, len, ": ");
            append_clean(buf, len, chosen_data);
        }
    } else if (last != 0) {
        const char *reason = ERR_reason_error_string(last);
        char code[32];

        snprintf(code, sizeof(code), "error %08lX", last);
        append_clean(buf, len, reason != NULL ? reason : code);
        if (last_data != NULL && *last_data != '\0') {
            append_clean(buf, len, ": ");
            append_clean(buf, len, last_data);
        }
    } else {
        append_clean(buf, len, "unknown error");
    }
    OPENSSL_free((char *)chosen_data);
    OPENSSL_free((char *)last_data);
}

int hwkey_cli_fail(const char *fmt, ...)
{
    char what[512], why[8192];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    hwkey_cli_error_text(why, sizeof(why));
    fprintf(stderr, "hwkey: %s: %s\n", what, why);
    return HWKEY_CLI_FAIL;
}

int hwkey_cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "hwkey: %s%susage error: ", cmd != NULL ? cmd : "", cmd != NULL ? ": " : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see hwkey %s%s--help)\n", cmd != NULL ? cmd : "", cmd != NULL ? " " : "");
    ERR_clear_error();
    return HWKEY_CLI_USAGE;
}

int hwkey_cli_set_tcti(HWKEY_CLI *cli, const char *tcti)
{
    OPENSSL_free(cli->tcti);
    cli->tcti = OPENSSL_strdup(tcti);
    return cli->tcti != NULL;
}

int hwkey_cli_read_auth(HWKEY_CLI *cli, const char *path)
{
    /*
     * An empty file is an explicit empty auth value: keys whose file says
     * they need one but have none (tpm2-tools 5.4 writes emptyAuth backwards).
     */
    HWKEY_SECRET *auth = hwkey_secret_read_file(path, 0, AUTH_MAX, "auth file");

    if (auth == NULL)
        return 0;
    hwkey_secret_free(cli->auth);
    cli->auth = auth;
    return 1;
}

int hwkey_cli_pw_cb(char *pass, size_t pass_size, size_t *pass_len, const OSSL_PARAM params[],
                    void *arg)
{
    HWKEY_CLI *cli = arg;

    (void)params;
    if (cli == NULL || cli->auth == NULL) {
        hwkey_raise(HWKEY_R_AUTH_FAILED, "the key needs an auth value or a token PIN: give "
                                         "--auth-file (a PIN also through --pin-source)");
        return 0;
    }
    if (cli->auth->len > pass_size) {
        hwkey_raise(HWKEY_R_BUFFER_TOO_SMALL, "auth value of %zu bytes", cli->auth->len);
        return 0;
    }
    memcpy(pass, cli->auth->p, cli->auth->len);
    *pass_len = cli->auth->len;
    return 1;
}

int hwkey_cli_common_option(HWKEY_CLI *cli, int opt, const char *arg)
{
    switch (opt) {
    case HWKEY_CLI_OPT_TCTI:
        if (!hwkey_cli_set_tcti(cli, arg)) {
            hwkey_cli_fail("--tcti");
            return -1;
        }
        return 1;
    case HWKEY_CLI_OPT_PIN_SOURCE:
        /* Applied over openssl.cnf and HWKEY_PKCS11_PIN_SOURCE in hwkey_cli_devices(). */
        OPENSSL_free(cli->pin_source);
        if ((cli->pin_source = OPENSSL_strdup(arg)) == NULL) {
            hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying --pin-source");
            hwkey_cli_fail("--pin-source");
            return -1;
        }
        return 1;
    case HWKEY_CLI_OPT_AUTH_FILE:
        if (!hwkey_cli_read_auth(cli, arg)) {
            hwkey_cli_fail("--auth-file");
            return -1;
        }
        return 1;
    }
    return 0;
}

/* A command-line option, when given, replaces the configured value. */
static int option_wins(char **slot, const char *option)
{
    if (option == NULL)
        return 1;
    OPENSSL_free(*slot);
    if ((*slot = OPENSSL_strdup(option)) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying an option");
        return 0;
    }
    return 1;
}

HWKEY_DEVICES *hwkey_cli_devices(HWKEY_CLI *cli)
{
    if (cli->devs != NULL)
        return cli->devs;
    /*
     * The same settings as the provider in applications: its openssl.cnf
     * section, each value overridden by its environment variable; --tcti
     * wins over both.  apply_env() then fills what the file left unset.
     */
    if (!hwkey_config_load_openssl_cnf(&cli->cfg))
        return NULL;
    if (!option_wins(&cli->cfg.tpm2_tcti, cli->tcti) ||
        !option_wins(&cli->cfg.pkcs11_pin_source, cli->pin_source))
        return NULL;
    if (!hwkey_config_apply_env(&cli->cfg))
        return NULL;
    cli->devs = hwkey_devices_new(&cli->cfg);
    return cli->devs;
}

/* --- KEY arguments ---------------------------------------------------------- */

/*
 * read(2), not stdio: a reference file may hold a URI with a pin-value, and
 * stdio's buffer would keep a copy that fclose frees without a wipe.  The
 * caller clears *out with OPENSSL_clear_free.
 */
static int read_small_file(const char *path, unsigned char **out, size_t *len)
{
    unsigned char *buf = NULL;
    size_t n = 0;
    ssize_t r;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        hwkey_raise(HWKEY_R_KEY_NOT_FOUND, "cannot open %s: %s", path, strerror(errno));
        return 0;
    }
    if ((buf = OPENSSL_malloc(KEY_ARG_MAX + 1)) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "reading %s", path);
        goto err;
    }
    while (n < KEY_ARG_MAX + 1) {
        r = read(fd, buf + n, KEY_ARG_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "cannot read %s: %s", path, strerror(errno));
            goto err;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > KEY_ARG_MAX || n == 0) {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "%s is %s", path,
                    n == 0 ? "empty" : "too large for a key file");
        goto err;
    }
    close(fd);
    *out = buf;
    *len = n;
    return 1;
err:
    close(fd);
    OPENSSL_clear_free(buf, KEY_ARG_MAX + 1);
    return 0;
}

/* A PEM file: one of our labels, else a clear refusal. */
static int keyref_from_pem(const char *path, HWKEY_CLI_KEYREF *r)
{
    BIO *mem = BIO_new_mem_buf(r->buf, (int)r->buflen);
    char *label = NULL, *header = NULL;
    unsigned char *data = NULL;
    const char *uri;
    size_t uri_len;
    long len = 0;
    int ok = 0;

    ERR_set_mark();
    if (mem == NULL || PEM_read_bio(mem, &label, &header, &data, &len) <= 0) {
        ERR_pop_to_mark();
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "%s: no complete PEM block (truncated or corrupt)",
                    path);
        goto end;
    }
    ERR_pop_to_mark();
    OPENSSL_clear_free(r->buf, r->buflen);
    r->buf = data;
    r->buflen = (size_t)len;
    data = NULL;
    if (strcmp(label, HWKEY_PEM_TSS2_PRIVATE_KEY) == 0) {
        r->ref.kind = HWKEY_REF_TSS2_KEYFILE;
        r->ref.data = r->buf;
        r->ref.len = r->buflen;
        ok = 1;
    } else if (strcmp(label, HWKEY_PEM_DATA_KEY) == 0) {
        HWKEY_DATAKEY_FILE dk;

        /* Checked here, so a corrupt file is named before any token is asked. */
        r->ref.kind = HWKEY_REF_PKCS11_DATAKEY;
        r->ref.data = r->buf;
        r->ref.len = r->buflen;
        ok = hwkey_datakey_file_decode(r->buf, r->buflen, &dk);
        hwkey_datakey_file_clear(&dk);
    } else if (strcmp(label, HWKEY_PEM_PKCS11_URI) == 0 || strcmp(label, HWKEY_PEM_KEY_URI) == 0) {
        unsigned char *copy;

        if (!hwkey_keyref_uri_parse(r->buf, r->buflen, &uri, &uri_len) ||
            (copy = OPENSSL_zalloc(uri_len + 1)) == NULL) {
            hwkey_raise(HWKEY_R_KEY_FILE_INVALID, "%s: \"%s\" block holds no key URI", path, label);
            goto end;
        }
        memcpy(copy, uri, uri_len);
        OPENSSL_free(r->buf);
        r->buf = copy;
        r->buflen = uri_len;
        r->ref.kind = hwkey_ref_kind_of_string((char *)copy);
        r->ref.data = copy;
        r->ref.len = uri_len;
        ok = r->ref.kind != 0;
        if (!ok)
            hwkey_raise(HWKEY_R_INVALID_URI, "%s: unknown URI scheme in \"%s\"", path,
                        (char *)copy);
    } else {
        hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                    "%s holds a \"%s\" PEM block, not a TSS2 key, a data key or a key "
                    "reference",
                    path, label);
    }
end:
    OPENSSL_free(label);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(mem);
    return ok;
}

int hwkey_cli_keyref_open(const char *arg, HWKEY_CLI_KEYREF *r)
{
    HWKEY_TSS2_KEYFILE kf;
    int ok;

    memset(r, 0, sizeof(*r));
    r->ref.kind = hwkey_ref_kind_of_string(arg);
    if (r->ref.kind != 0) {
        r->ref.data = (const unsigned char *)arg;
        r->ref.len = strlen(arg);
        return 1;
    }
    if (!read_small_file(arg, &r->buf, &r->buflen))
        return 0;
    if (r->buflen > 11 && memcmp(r->buf, "-----BEGIN ", 11) == 0) {
        if (!keyref_from_pem(arg, r))
            goto err;
    } else {
        r->ref.kind = HWKEY_REF_TSS2_KEYFILE;
        r->ref.data = r->buf;
        r->ref.len = r->buflen;
    }
    if (r->ref.kind != HWKEY_REF_TSS2_KEYFILE)
        return 1;
    /* Check the file here, so a corrupt one is named even when no TPM answers. */
    memset(&kf, 0, sizeof(kf));
    ok = hwkey_tss2_keyfile_decode(r->ref.data, r->ref.len, &kf);
    hwkey_tss2_keyfile_clear(&kf);
    if (ok)
        return 1;
err:
    hwkey_cli_keyref_clear(r);
    return 0;
}

void hwkey_cli_keyref_clear(HWKEY_CLI_KEYREF *r)
{
    OPENSSL_clear_free(r->buf, r->buflen);
    memset(r, 0, sizeof(*r));
}

/* --- output files ------------------------------------------------------------ */

int hwkey_cli_out_begin(HWKEY_CLI_OUTFILE *o, const char *path, int force)
{
    char *dircopy = NULL;
    struct stat st;
    size_t n;

    memset(o, 0, sizeof(*o));
    o->fd = -1;
    o->force = force;
    if (!force && lstat(path, &st) == 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "%s exists; use --force to replace it", path);
        return 0;
    }
    dircopy = OPENSSL_strdup(path);
    o->path = OPENSSL_strdup(path);
    n = strlen(path) + 32;
    o->tmp = OPENSSL_malloc(n);
    if (dircopy == NULL || o->path == NULL || o->tmp == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "preparing %s", path);
        goto err;
    }
    /* Same directory as the target, so rename/link never crosses file systems. */
    snprintf(o->tmp, n, "%s/.hwkey-tmp-XXXXXX", dirname(dircopy));
    o->fd = mkstemp(o->tmp);
    if (o->fd < 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "cannot create a file next to %s: %s", path,
                    strerror(errno));
        goto err;
    }
    OPENSSL_free(dircopy);
    return 1;
err:
    OPENSSL_free(dircopy);
    OPENSSL_free(o->tmp);
    OPENSSL_free(o->path);
    o->tmp = o->path = NULL;
    return 0;
}

int hwkey_cli_out_commit(HWKEY_CLI_OUTFILE *o, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t done = 0;

    while (done < len) {
        ssize_t n = write(o->fd, p + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "writing %s: %s", o->path, strerror(errno));
            return 0;
        }
        done += (size_t)n;
    }
    if (fsync(o->fd) != 0 || close(o->fd) != 0) {
        o->fd = -1;
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "writing %s: %s", o->path, strerror(errno));
        return 0;
    }
    o->fd = -1;
    if (o->force ? rename(o->tmp, o->path) != 0 : link(o->tmp, o->path) != 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "cannot create %s: %s%s", o->path, strerror(errno),
                    errno == EEXIST ? " (use --force to replace it)" : "");
        return 0;
    }
    if (!o->force)
        unlink(o->tmp);
    OPENSSL_free(o->tmp);
    o->tmp = NULL;
    return 1;
}

void hwkey_cli_out_abort(HWKEY_CLI_OUTFILE *o)
{
    if (o->fd >= 0)
        close(o->fd);
    o->fd = -1;
    if (o->tmp != NULL)
        unlink(o->tmp);
    OPENSSL_free(o->tmp);
    OPENSSL_free(o->path);
    o->tmp = o->path = NULL;
}

void hwkey_cli_describe_alg(const HWKEY_KEYINFO *info, char *buf, size_t bufsz)
{
    const char *curve;

    switch (info->alg) {
    case HWKEY_ALG_EC:
        curve = EC_curve_nid2nist(info->curve_nid);
        snprintf(buf, bufsz, "ec:%s", curve != NULL ? curve : OBJ_nid2sn(info->curve_nid));
        return;
    case HWKEY_ALG_RSA:
        snprintf(buf, bufsz, "rsa:%d", info->bits);
        return;
    case HWKEY_ALG_ED25519:
        snprintf(buf, bufsz, "ed25519");
        return;
    }
    snprintf(buf, bufsz, "unknown");
}

/*
 * What keygen and import write: a TSS2 key file as PEM, or for a key that
 * lives in the device (handle:, pkcs11:) a reference file naming it.
 */
int hwkey_cli_render_keyfile(const HWKEY_REFBLOB *blob, BIO *mem)
{
    HWKEY_TSS2_KEYFILE kf;
    char uri[HWKEY_KEYREF_URI_MAX + 1];
    int ok;

    if (blob->kind != HWKEY_REF_TSS2_KEYFILE) {
        if (blob->len == 0 || blob->len > HWKEY_KEYREF_URI_MAX) {
            hwkey_raise(HWKEY_R_INTERNAL, "the backend returned a key reference of %zu bytes",
                        blob->len);
            return 0;
        }
        memcpy(uri, blob->data, blob->len);
        uri[blob->len] = '\0';
        return hwkey_keyref_write_pem(mem, uri);
    }
    memset(&kf, 0, sizeof(kf));
    ok = hwkey_tss2_keyfile_decode(blob->data, blob->len, &kf) &&
         hwkey_tss2_keyfile_write_pem(mem, &kf);
    hwkey_tss2_keyfile_clear(&kf);
    return ok;
}

int hwkey_cli_other_option(HWKEY_CLI *cli, const char *cmd, int opt, char **argv)
{
    int c = hwkey_cli_common_option(cli, opt, optarg);

    if (c < 0)
        return HWKEY_CLI_FAIL;
    if (c == 0)
        return hwkey_cli_usage(cmd, "unknown or incomplete option %s", argv[optind - 1]);
    return HWKEY_CLI_OK;
}

HWKEY_DEVICE *hwkey_cli_device_for(HWKEY_CLI *cli, const char *uri)
{
    HWKEY_DEVICES *devs = hwkey_cli_devices(cli);

    if (devs == NULL)
        return NULL;
    return uri != NULL ? hwkey_devices_for_kind(devs, HWKEY_REF_PKCS11_URI)
                       : hwkey_devices_by_name(devs, "tpm2");
}

int hwkey_cli_out_commit_keyfile(HWKEY_CLI_OUTFILE *o, const HWKEY_REFBLOB *blob)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *data;
    long datalen;
    int ok;

    ok = mem != NULL && hwkey_cli_render_keyfile(blob, mem) &&
         (datalen = BIO_get_mem_data(mem, &data)) > 0 &&
         hwkey_cli_out_commit(o, data, (size_t)datalen);
    BIO_free(mem);
    return ok;
}

HWKEY_DEVICE *hwkey_cli_keyref_device(HWKEY_CLI *cli, const char *arg, HWKEY_CLI_KEYREF *kr)
{
    HWKEY_DEVICES *devs;

    if (!hwkey_cli_keyref_open(arg, kr) || (devs = hwkey_cli_devices(cli)) == NULL)
        return NULL;
    return hwkey_devices_for_kind(devs, kr->ref.kind);
}
