/*
 * The CLI's file handling that no device is needed for: import
 * --wipe-source (src/cli/cli_wipe.c) and --auth-file (src/cli/cli_common.c).
 * Each refusal leaves the file as it was and raises exactly one error.
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>

#include "cli/cli.h"
#include "util/error.h"
#include "util/secret.h"
#include "../fakes/one_error.h"

static char dir[] = "/tmp/hwkey-test-cli.XXXXXX";

static void path_of(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

static void write_file(const char *path, const char *content, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char cmd[96];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The wipe overwrites every byte (seen through a descriptor held open) and removes the name. */
static void test_wipe_overwrites_and_unlinks(void **state)
{
    static const char key[] = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEF\n";
    char path[128], seen[sizeof(key)];
    HWKEY_CLI_WIPE w;
    int fd;

    (void)state;
    path_of(path, sizeof(path), "key.pem");
    write_file(path, key, sizeof(key) - 1);
    assert_int_equal(hwkey_cli_wipe_check(path, &w), 1);
    assert_int_equal(hwkey_cli_wipe_same_file(&w, path), 1);
    assert_true((fd = open(path, O_RDONLY)) >= 0);
    assert_int_equal(hwkey_cli_wipe(&w), 1);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(access(path, F_OK), -1); /* the name is gone */
    assert_int_equal(pread(fd, seen, sizeof(key) - 1, 0), (ssize_t)(sizeof(key) - 1));
    close(fd);
    assert_memory_not_equal(seen, key, sizeof(key) - 1); /* the bytes were overwritten */
    assert_null(memmem(seen, sizeof(key) - 1, "PRIVATE KEY", 11));
}

/* What the check refuses, before anything is imported; each file stays as it was. */
static void test_wipe_check_refusals(void **state)
{
    char reg[128], link2[128], sym[128], fifo[128], missing[128];
    HWKEY_CLI_WIPE w;
    struct stat st;

    (void)state;
    path_of(reg, sizeof(reg), "reg.pem");
    path_of(link2, sizeof(link2), "second-name.pem");
    path_of(sym, sizeof(sym), "sym.pem");
    path_of(fifo, sizeof(fifo), "fifo");
    path_of(missing, sizeof(missing), "missing.pem");
    write_file(reg, "key", 3);

    assert_int_equal(symlink(reg, sym), 0);
    assert_int_equal(hwkey_cli_wipe_check(sym, &w), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "is a symbolic link");

    assert_int_equal(link(reg, link2), 0);
    assert_int_equal(hwkey_cli_wipe_check(reg, &w), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "has 2 hard links");
    assert_int_equal(unlink(link2), 0);

    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(hwkey_cli_wipe_check(fifo, &w), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "is not a regular file");
    assert_int_equal(hwkey_cli_wipe_check(dir, &w), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "is not a regular file");

    assert_int_equal(hwkey_cli_wipe_check(missing, &w), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "cannot examine");

    assert_int_equal(stat(reg, &st), 0);
    assert_int_equal(st.st_size, 3); /* untouched */
}

/* A file replaced between the check and the wipe (another inode) is not touched. */
static void test_wipe_refuses_replaced_file(void **state)
{
    char path[128], other[128], buf[8] = {0};
    HWKEY_CLI_WIPE w;
    FILE *f;

    (void)state;
    path_of(path, sizeof(path), "swap.pem");
    path_of(other, sizeof(other), "other.pem");
    write_file(path, "old", 3);
    assert_int_equal(hwkey_cli_wipe_check(path, &w), 1);
    write_file(other, "new", 3);
    assert_int_equal(rename(other, path), 0);
    assert_int_equal(hwkey_cli_wipe_same_file(&w, path), 0);
    assert_int_equal(hwkey_cli_wipe(&w), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "was replaced during the import");
    assert_non_null(f = fopen(path, "rb"));
    assert_int_equal(fread(buf, 1, sizeof(buf), f), 3);
    fclose(f);
    assert_string_equal(buf, "new");
}

/* Without a terminal, only --yes confirms; the refusal is a usage error. */
static void test_wipe_confirm_without_terminal(void **state)
{
    int saved = dup(STDIN_FILENO), null = open("/dev/null", O_RDONLY);

    (void)state;
    assert_true(saved >= 0 && null >= 0);
    assert_int_equal(dup2(null, STDIN_FILENO), STDIN_FILENO);
    assert_int_equal(hwkey_cli_wipe_confirm("k.pem", 1), HWKEY_CLI_OK);
    assert_int_equal(hwkey_cli_wipe_confirm("k.pem", 0), HWKEY_CLI_USAGE);
    assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
    close(saved);
    close(null);
    ERR_clear_error();
}

/* --auth-file: an empty file is an explicit empty value; too long and missing refused. */
static void test_auth_file(void **state)
{
    char path[128], big[300];
    HWKEY_CLI cli;

    (void)state;
    memset(&cli, 0, sizeof(cli));
    path_of(path, sizeof(path), "auth");
    write_file(path, "s3cret\n", 7);
    assert_int_equal(hwkey_cli_read_auth(&cli, path), 1);
    assert_int_equal(cli.auth->len, 6);
    assert_memory_equal(cli.auth->p, "s3cret", 6);
    write_file(path, "", 0);
    assert_int_equal(hwkey_cli_read_auth(&cli, path), 1);
    assert_non_null(cli.auth);
    assert_int_equal(cli.auth->len, 0);
    memset(big, 'x', sizeof(big));
    write_file(path, big, sizeof(big));
    assert_int_equal(hwkey_cli_read_auth(&cli, path), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "must hold 0..");
    path_of(path, sizeof(path), "no-such-auth");
    assert_int_equal(hwkey_cli_read_auth(&cli, path), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "no-such-auth");
    hwkey_secret_free(cli.auth);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wipe_overwrites_and_unlinks),
        cmocka_unit_test(test_wipe_check_refusals),
        cmocka_unit_test(test_wipe_refuses_replaced_file),
        cmocka_unit_test(test_wipe_confirm_without_terminal),
        cmocka_unit_test(test_auth_file),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
