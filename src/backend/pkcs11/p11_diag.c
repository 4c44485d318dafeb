/*
 * Why a module cannot start, in words an operator can act on.  The common
 * case: SoftHSM's token store is readable by root only, and the process that
 * uses it runs as another user (nginx workers as nobody/www-data, Debian's
 * /var/lib/softhsm/tokens is root:softhsm 2770, and softhsm2-util creates each
 * token directory 0700 as root).  SoftHSM then answers CKR_GENERAL_ERROR to
 * C_Initialize, or shows no initialised token, and says nothing else.  So we
 * look where its configuration (SOFTHSM2_CONF) says the store is and name the
 * path, our uid and what to change.
 */
#include "backend/pkcs11/p11_internal.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

#define SOFTHSM_DEFAULT_CONF "/etc/softhsm/softhsm2.conf"

/* getpwuid/getgrgid return static storage: copy, one name per buffer. */
static const char *user_name(uid_t uid, char *buf, size_t len)
{
    struct passwd *pw = getpwuid(uid);

    snprintf(buf, len, "%s", pw != NULL ? pw->pw_name : "?");
    return buf;
}

static const char *group_name(gid_t gid, char *buf, size_t len)
{
    struct group *gr = getgrgid(gid);

    snprintf(buf, len, "%s", gr != NULL ? gr->gr_name : "?");
    return buf;
}

/* directories.tokendir from a SoftHSM configuration file; 0 if unreadable/absent. */
static int softhsm_tokendir(const char *conf, char *dir, size_t len, int *conf_errno)
{
    char line[1024];
    FILE *f = fopen(conf, "re");
    int found = 0;

    *conf_errno = f == NULL ? errno : 0;
    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        char *p = line + strspn(line, " \t"), *v, *end;

        if (strncmp(p, "directories.tokendir", 20) != 0)
            continue;
        v = p + 20 + strspn(p + 20, " \t");
        if (*v != '=')
            continue;
        v += 1 + strspn(v + 1, " \t");
        end = v + strcspn(v, "\r\n");
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        *end = '\0';
        found = *v != '\0' && snprintf(dir, len, "%s", v) < (int)len;
    }
    fclose(f);
    return found;
}

/*
 * "PATH (owner U:G, mode M) is not readable and writable by uid N (name):
 * why; what to change".  The group to suggest is the store's own group,
 * unless that is root's: then a dedicated one (Debian's package uses softhsm).
 */
static int describe_denied(const char *what, const char *path, int need, char *buf, size_t len)
{
    char owner[64], group[64], me[64], fix_group[64];
    struct stat st;
    int e;

    if (access(path, need) == 0)
        return 0;
    e = errno;
    if (stat(path, &st) != 0) {
        snprintf(buf, len, "%s %s: %s (uid %ld)", what, path, strerror(errno), (long)geteuid());
        return 1;
    }
    user_name(st.st_uid, owner, sizeof(owner));
    group_name(st.st_gid, group, sizeof(group));
    user_name(geteuid(), me, sizeof(me));
    snprintf(fix_group, sizeof(fix_group), "%s", st.st_gid == 0 ? "softhsm" : group);
    snprintf(buf, len,
             "%s %s (owner %s:%s, mode %04o) is not %s by this "
             "process, uid %ld (%s) gid %ld: %s; %sput the worker user in group %s (nginx: "
             "`user %s %s;`, systemd: SupplementaryGroups=%s) and make the store group-"
             "accessible: chmod -R g+rwX %s (token directories made by softhsm2-util as root "
             "are 0700)",
             what, path, owner, group, (unsigned int)(st.st_mode & 07777),
             (need & W_OK) != 0 ? "readable and writable" : "readable", (long)geteuid(), me,
             (long)getegid(), strerror(e),
             st.st_gid == 0 ? "give the store a group of its own (chgrp -R softhsm PATH), " : "",
             fix_group, me, fix_group, fix_group, path);
    return 1;
}

int hwkey_p11_store_hint(const char *module_path, char *buf, size_t len)
{
    const char *conf = getenv("SOFTHSM2_CONF");
    char dir[768], sub[1024];
    struct dirent *de;
    DIR *d;
    int conf_errno = 0, found = 0;

    buf[0] = '\0';
    if (module_path == NULL || strstr(module_path, "softhsm") == NULL)
        return 0;
    if (conf != NULL && conf[0] == '\0') {
        snprintf(buf, len,
                 "SOFTHSM2_CONF is set but empty (unset it to use %s, or name "
                 "SoftHSM's configuration file)",
                 SOFTHSM_DEFAULT_CONF);
        return 1;
    }
    if (conf == NULL)
        conf = SOFTHSM_DEFAULT_CONF;
    if (!softhsm_tokendir(conf, dir, sizeof(dir), &conf_errno)) {
        char me[64];

        if (conf_errno != 0)
            snprintf(buf, len,
                     "SoftHSM configuration %s (SOFTHSM2_CONF) cannot be read by "
                     "uid %ld (%s): %s",
                     conf, (long)geteuid(), user_name(geteuid(), me, sizeof(me)),
                     strerror(conf_errno));
        return conf_errno != 0;
    }
    /* The store itself is only read (listed) to use a token; each token is written. */
    if (describe_denied("SoftHSM token store", dir, R_OK | X_OK, buf, len))
        return 1;
    /* Each token is a directory of its own, 0700 when softhsm2-util ran as root. */
    if ((d = opendir(dir)) == NULL)
        return 0;
    while (!found && (de = readdir(d)) != NULL) {
        struct stat st;

        if (de->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            found = describe_denied("SoftHSM token directory", sub, R_OK | W_OK | X_OK, buf, len);
    }
    closedir(d);
    return found;
}

void hwkey_p11_raise_init_failure_at(const char *file, int line, const char *func,
                                     HWKEY_P11_MODULE *mod, const char *what, CK_RV rv)
{
    char hint[1024];

    if (hwkey_p11_store_hint(mod->path, hint, sizeof(hint)))
        hwkey_raise_at(file, line, func, HWKEY_R_DEVICE_UNREACHABLE, "%s of %s failed: %s: %s",
                       what, mod->path, hwkey_p11_rv_name(rv), hint);
    else
        hwkey_raise_at(file, line, func, HWKEY_R_DEVICE_UNREACHABLE,
                       "%s of %s failed: %s (process uid %ld)", what, mod->path,
                       hwkey_p11_rv_name(rv), (long)geteuid());
}
