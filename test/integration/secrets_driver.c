/*
 * Test helper for test_secrets_coredump.sh (never installed).
 *
 *   secrets_driver sign KEY AUTHFILE N STOPFILE
 *       Loads KEY (a TSS2 key file with an auth value) through OSSL_STORE,
 *       the auth value coming from AUTHFILE through a passphrase callback
 *       that reads hwkey's protected copy (so the application holds no copy
 *       in ordinary memory: only what hwkey and its libraries leave can be
 *       found); makes N signatures, then appends "PID\n" to STOPFILE and
 *       stops itself (SIGSTOP) so the test can dump its memory.  After
 *       SIGCONT it frees everything and exits 0.
 *   secrets_driver fork KEY AUTHFILE N STOPFILE
 *       nginx's shape: loads KEY (same way) in this process, forks, and the
 *       child makes the N signatures, appends its pid and stops; the parent
 *       waits for the child and exits with its status.
 *   secrets_driver count FILE NEEDLE
 *       Prints how many times NEEDLE occurs in FILE (overlaps counted) and,
 *       on stderr, the offset of each.  NEEDLE: hex:HEXBYTES or file:PATH
 *       (the file's bytes, one trailing newline dropped).
 *
 * Providers come from OPENSSL_CONF.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/store.h>
#include <openssl/ui.h>

#include "util/secret.h"

static int pem_cb(char *buf, int size, int rwflag, void *u)
{
    const HWKEY_SECRET *s = u;

    (void)rwflag;
    if (s == NULL || s->len > (size_t)size)
        return -1;
    memcpy(buf, s->p, s->len);
    return (int)s->len;
}

static EVP_PKEY *load_key(const char *ref, HWKEY_SECRET *auth)
{
    UI_METHOD *ui = UI_UTIL_wrap_read_pem_callback(pem_cb, 0);
    OSSL_STORE_CTX *ctx = ui != NULL ? OSSL_STORE_open(ref, ui, auth, NULL, NULL) : NULL;
    EVP_PKEY *pkey = NULL;

    if (ctx != NULL) {
        OSSL_STORE_expect(ctx, OSSL_STORE_INFO_PKEY);
        while (pkey == NULL && !OSSL_STORE_eof(ctx)) {
            OSSL_STORE_INFO *info = OSSL_STORE_load(ctx);

            if (info == NULL)
                break;
            if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
                pkey = OSSL_STORE_INFO_get1_PKEY(info);
            OSSL_STORE_INFO_free(info);
        }
        OSSL_STORE_close(ctx);
    }
    UI_destroy_method(ui);
    return pkey;
}

static int sign_once(EVP_PKEY *pkey)
{
    static const unsigned char msg[] = "secrets_driver";
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestSign(md, sig, &siglen, msg, sizeof(msg)) == 1;

    EVP_MD_CTX_free(md);
    return ok;
}

static int cmd_sign(const char *key, const char *authfile, int n, const char *stopfile,
                    int in_child)
{
    HWKEY_SECRET *auth = hwkey_secret_read_file(authfile, 1, 128, "auth file");
    EVP_PKEY *pkey = NULL;
    FILE *f;
    int rc = 1, status = 0;
    pid_t child;

    if (auth == NULL || (pkey = load_key(key, auth)) == NULL) {
        fprintf(stderr, "secrets_driver: cannot load %s\n", key);
        goto end;
    }
    if (in_child) {
        if ((child = fork()) < 0)
            goto end;
        if (child > 0) {
            rc = waitpid(child, &status, 0) == child && WIFEXITED(status) ? WEXITSTATUS(status) : 1;
            goto end;
        }
    }
    for (int i = 0; i < n; i++) {
        if (!sign_once(pkey)) {
            fprintf(stderr, "secrets_driver: signature %d failed\n", i + 1);
            goto end;
        }
    }
    if ((f = fopen(stopfile, "a")) == NULL)
        goto end;
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
    raise(SIGSTOP);
    rc = 0;
end:
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    EVP_PKEY_free(pkey);
    hwkey_secret_free(auth);
    return rc;
}

static int needle_of(const char *spec, unsigned char **out, size_t *len)
{
    if (strncmp(spec, "hex:", 4) == 0) {
        long n = 0;

        *out = OPENSSL_hexstr2buf(spec + 4, &n);
        *len = (size_t)n;
        return *out != NULL && n > 0;
    }
    if (strncmp(spec, "file:", 5) == 0) {
        HWKEY_SECRET *s = hwkey_secret_read_file(spec + 5, 1, 4096, "needle file");

        if (s == NULL)
            return 0;
        *out = OPENSSL_memdup(s->p, s->len);
        *len = s->len;
        hwkey_secret_free(s);
        return *out != NULL;
    }
    return 0;
}

static int cmd_count(const char *path, const char *spec)
{
    unsigned char *needle = NULL;
    const unsigned char *map, *p;
    size_t nlen = 0, count = 0;
    struct stat st;
    int fd;

    if (!needle_of(spec, &needle, &nlen)) {
        fprintf(stderr, "secrets_driver: bad needle %s\n", spec);
        ERR_print_errors_fp(stderr);
        return 2;
    }
    if ((fd = open(path, O_RDONLY)) < 0 || fstat(fd, &st) != 0) {
        perror(path);
        return 2;
    }
    map = st.st_size > 0 ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (map == MAP_FAILED) {
        perror(path);
        return 2;
    }
    for (p = map; map != NULL && (size_t)(p - map) + nlen <= (size_t)st.st_size; p++) {
        p = memmem(p, (size_t)st.st_size - (size_t)(p - map), needle, nlen);
        if (p == NULL)
            break;
        fprintf(stderr, "found at offset 0x%zx\n", (size_t)(p - map));
        count++;
    }
    printf("%zu\n", count);
    OPENSSL_free(needle);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "sign") == 0)
        return cmd_sign(argv[2], argv[3], atoi(argv[4]), argv[5], 0);
    if (argc == 6 && strcmp(argv[1], "fork") == 0)
        return cmd_sign(argv[2], argv[3], atoi(argv[4]), argv[5], 1);
    if (argc == 4 && strcmp(argv[1], "count") == 0)
        return cmd_count(argv[2], argv[3]);
    fprintf(stderr,
            "usage: secrets_driver sign|fork KEY AUTHFILE N STOPFILE | count FILE NEEDLE\n");
    return 2;
}
