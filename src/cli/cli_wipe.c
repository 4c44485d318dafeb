/*
 * hwkey import --wipe-source: overwrite the software key file, then unlink
 * it, once the import has succeeded.
 *
 * What this can and cannot do: the overwrite reaches the blocks the file
 * occupies now, through this name.  Backups, snapshots, copies on other
 * disks, and on SSDs, copy-on-write or journaling filesystems the blocks an
 * earlier version of the file used, are out of reach; the message after the
 * wipe says so, every time.
 *
 * The file is checked before the import (a regular file with one name, not
 * a symbolic link: overwriting through a link, or leaving a second name
 * behind, would wipe the wrong thing or not wipe at all) and the wipe opens
 * it again with O_NOFOLLOW and compares device and inode, so a file swapped
 * in between is not touched.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cli/cli.h"
#include "util/error.h"

static int dir_writable(const char *path)
{
    char *copy = OPENSSL_strdup(path);
    int ok = copy != NULL && access(dirname(copy), W_OK | X_OK) == 0;

    OPENSSL_free(copy);
    return ok;
}

int hwkey_cli_wipe_check(const char *path, HWKEY_CLI_WIPE *w)
{
    struct stat st;

    memset(w, 0, sizeof(*w));
    if (lstat(path, &st) != 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "--wipe-source: cannot examine %s: %s", path,
                    strerror(errno));
        return 0;
    }
    if (S_ISLNK(st.st_mode)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "--wipe-source: %s is a symbolic link; name the key "
                    "file itself",
                    path);
        return 0;
    }
    if (!S_ISREG(st.st_mode)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "--wipe-source: %s is not a regular file; refusing to "
                    "overwrite it",
                    path);
        return 0;
    }
    if (st.st_nlink != 1) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "--wipe-source: %s has %lu hard links; unlinking one "
                    "name would leave the others (remove them first)",
                    path, (unsigned long)st.st_nlink);
        return 0;
    }
    /* Found out now, not after the import: the file must be writable, its directory too. */
    if (access(path, W_OK) != 0 || !dir_writable(path)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "--wipe-source: %s or its directory is not writable "
                    "for this user: it could not be overwritten and removed",
                    path);
        return 0;
    }
    w->path = path;
    w->dev = st.st_dev;
    w->ino = st.st_ino;
    return 1;
}

int hwkey_cli_wipe_same_file(const HWKEY_CLI_WIPE *w, const char *path)
{
    struct stat st;

    return path != NULL && stat(path, &st) == 0 && st.st_dev == w->dev && st.st_ino == w->ino;
}

int hwkey_cli_wipe_confirm(const char *path, int yes)
{
    char answer[16];

    if (yes)
        return HWKEY_CLI_OK;
    if (!isatty(STDIN_FILENO))
        return hwkey_cli_usage("import", "--wipe-source asks for confirmation on a terminal; "
                                         "stdin is not one: add --yes");
    fprintf(stderr,
            "hwkey: after the import, overwrite and delete %s?\n"
            "       Copies elsewhere (backups, snapshots, other disks) are not covered.\n"
            "       Type yes to continue: ",
            path);
    fflush(stderr);
    if (fgets(answer, sizeof(answer), stdin) == NULL || strcmp(answer, "yes\n") != 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "--wipe-source not confirmed (the answer was not "
                    "\"yes\"): nothing imported, %s left as it was",
                    path);
        return HWKEY_CLI_FAIL;
    }
    return HWKEY_CLI_OK;
}

/* fsync the directory holding path, so that the unlink itself is durable. */
static void sync_dir_of(const char *path)
{
    char *copy = OPENSSL_strdup(path);
    int fd;

    if (copy == NULL)
        return;
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    OPENSSL_free(copy);
}

int hwkey_cli_wipe(const HWKEY_CLI_WIPE *w)
{
    unsigned char buf[4096];
    struct stat st;
    off_t done = 0;
    int fd, ok = 0;

    fd = open(w->path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "--wipe-source: cannot open %s to overwrite it: %s",
                    w->path, strerror(errno));
        return 0;
    }
    if (fstat(fd, &st) != 0 || st.st_dev != w->dev || st.st_ino != w->ino || !S_ISREG(st.st_mode)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "--wipe-source: %s was replaced during the import; "
                    "not touching it",
                    w->path);
        goto end;
    }
    /* Random, not zeros: a filesystem that compresses or dedups keeps no shortcut. */
    while (done < st.st_size) {
        size_t n =
            (size_t)(st.st_size - done) < sizeof(buf) ? (size_t)(st.st_size - done) : sizeof(buf);
        ssize_t wr;

        if (RAND_bytes(buf, (int)n) != 1) {
            hwkey_raise(HWKEY_R_INTERNAL, "--wipe-source: the RNG failed");
            goto end;
        }
        wr = pwrite(fd, buf, n, done);
        if (wr <= 0) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "--wipe-source: overwriting %s failed: %s", w->path,
                        wr < 0 ? strerror(errno) : "no progress");
            goto end;
        }
        done += wr;
    }
    if (fsync(fd) != 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "--wipe-source: flushing the overwrite of %s failed: %s",
                    w->path, strerror(errno));
        goto end;
    }
    if (unlink(w->path) != 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "--wipe-source: %s was overwritten but not removed: %s",
                    w->path, strerror(errno));
        goto end;
    }
    sync_dir_of(w->path);
    ok = 1;
end:
    OPENSSL_cleanse(buf, sizeof(buf));
    close(fd);
    return ok;
}
