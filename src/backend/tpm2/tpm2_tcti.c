/*
 * TCTI strings and the life of a connection: whether a resource manager is
 * in front, why a connection could not be made (in words an operator can
 * act on: tpm2-tss says "IO failure" for both a missing device and one the
 * process may not open), and the backoff that makes operations fail at once
 * while the TPM is away instead of each waiting on a connect.
 */
#include "backend/tpm2/tpm2_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <tss2/tss2_rc.h>

#include "util/error.h"
#include "util/log.h"

/* Reconnect attempts: 100 ms after the first failure, doubling to 1 s. */
#define BACKOFF_FIRST_MS 100ul
#define BACKOFF_MAX_MS 1000ul

static const char *skip_pcap(const char *conf)
{
    /* The pcap: TCTI only records; what matters is the TCTI it wraps. */
    while (strncmp(conf, "pcap:", 5) == 0)
        conf += 5;
    return conf;
}

int hwkey_tpm2_tcti_is_rm(const char *conf)
{
    conf = skip_pcap(conf);
    if (strncmp(conf, "tabrmd", 6) == 0)
        return 1;
    /* "device:/dev/tpmrm0" (and a bare "/dev/tpmrm0" some users write). */
    if (strncmp(conf, "device:", 7) == 0)
        conf += 7;
    return strncmp(conf, "/dev/tpmrm", 10) == 0;
}

/* The device path of a device: TCTI string, else NULL. */
static const char *device_path(const char *conf, char *buf, size_t len)
{
    const char *colon = strchr(conf, ':');

    if (conf[0] == '/')
        snprintf(buf, len, "%s", conf);
    else if (strncmp(conf, "device:", 7) == 0 || strcmp(conf, "device") == 0)
        snprintf(buf, len, "%s", colon != NULL && colon[1] != '\0' ? colon + 1 : "/dev/tpmrm0");
    else
        return NULL;
    return buf;
}

/* 1 if libtss2-tcti-NAME (or NAME as a library) can be loaded. */
static int tcti_known(const char *conf)
{
    char name[64], lib[128];
    size_t n = strcspn(conf, ":");
    void *h;

    if (n == 0 || n >= sizeof(name))
        return 1; /* the loader's default or a strange string: let its error speak */
    memcpy(name, conf, n);
    name[n] = '\0';
    snprintf(lib, sizeof(lib), "libtss2-tcti-%s.so.0", name);
    if ((h = dlopen(lib, RTLD_LAZY | RTLD_LOCAL)) == NULL &&
        (h = dlopen(name, RTLD_LAZY | RTLD_LOCAL)) == NULL)
        return 0;
    dlclose(h);
    return 1;
}

static void raise_device(const char *conf, const char *path, TSS2_RC rc)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    int e = errno;
    struct group *tss = getgrnam("tss");

    if (fd >= 0) {
        close(fd); /* it opens now: the failure was something else */
        hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE,
                    "cannot connect to the TPM through TCTI "
                    "\"%s\": %s (0x%x)",
                    conf, Tss2_RC_Decode(rc), (unsigned int)rc);
    } else if (e == EACCES || e == EPERM) {
        hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE,
                    "TPM device %s: Permission denied for uid %ld (gid %ld): add this user "
                    "to group %s (usermod -a -G tss USER; /dev/tpmrm0 is root:tss 0660 on "
                    "Debian), or run the process as a user that may open it",
                    path, (long)geteuid(), (long)getegid(),
                    tss != NULL ? "tss" : "tss (create it)");
    } else if (e == ENOENT || e == ENXIO || e == ENODEV) {
        hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE,
                    "TPM device %s: No such file or device: this machine has no kernel TPM "
                    "there (check the tpm_tis/tpm_crb driver), or set tpm2-tcti / "
                    "HWKEY_TPM2_TCTI (e.g. swtpm:, tabrmd:)",
                    path);
    } else {
        hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE, "TPM device %s: %s (TCTI \"%s\")", path,
                    strerror(e), conf);
    }
}

void hwkey_tpm2_tcti_raise(const char *conf, TSS2_RC rc)
{
    const char *inner = skip_pcap(conf);
    char path[256];

    if (device_path(inner, path, sizeof(path)) != NULL) {
        raise_device(conf, path, rc);
        return;
    }
    if (!tcti_known(inner)) {
        hwkey_raise(HWKEY_R_CONFIG_INVALID,
                    "unknown TCTI \"%.*s\" in \"%s\": no libtss2-tcti-%.*s.so.0 installed "
                    "(known: device, swtpm, mssim, tabrmd with libtss2-tcti-tabrmd0)",
                    (int)strcspn(inner, ":"), inner, conf, (int)strcspn(inner, ":"), inner);
        return;
    }
    hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE,
                "cannot connect to the TPM through TCTI \"%s\": "
                "%s (0x%x)",
                conf, Tss2_RC_Decode(rc), (unsigned int)rc);
}

/* --- backoff ------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int hwkey_tpm2_backoff_check(HWKEY_TPM2_DEVICE *dev)
{
    uint64_t now = now_ms();

    if (dev->retry_at_ms == 0 || now >= dev->retry_at_ms)
        return 1;
    hwkey_raise(HWKEY_R_DEVICE_UNREACHABLE, "TPM unavailable (next reconnect in %lu ms): %s",
                (unsigned long)(dev->retry_at_ms - now), dev->last_err);
    return 0;
}

void hwkey_tpm2_backoff_bump(HWKEY_TPM2_DEVICE *dev)
{
    dev->backoff_ms = dev->backoff_ms == 0 ? BACKOFF_FIRST_MS : dev->backoff_ms * 2;
    if (dev->backoff_ms > BACKOFF_MAX_MS)
        dev->backoff_ms = BACKOFF_MAX_MS;
    dev->retry_at_ms = now_ms() + dev->backoff_ms;
}

void hwkey_tpm2_backoff_failed(HWKEY_TPM2_DEVICE *dev)
{
    const char *data = NULL;
    int flags = 0;

    hwkey_tpm2_backoff_bump(dev);
    /* Repeat the connect's own error while in backoff: it says what to fix. */
    if (ERR_peek_last_error_data(&data, &flags) != 0 && data != NULL &&
        (flags & ERR_TXT_STRING) != 0 && data[0] != '\0')
        snprintf(dev->last_err, sizeof(dev->last_err), "%s", data);
    else
        snprintf(dev->last_err, sizeof(dev->last_err), "cannot connect through TCTI \"%s\"",
                 dev->tcti_conf);
    /*
     * A TPM that was never reached is not "lost": the caller's error says it
     * (and the CLI's contract is one line on stderr).  One that answered
     * before gets one line now and one when it is back.
     */
    if (!dev->lost && dev->ever_connected) {
        dev->lost = 1;
        hwkey_log(HWKEY_LOG_ERROR,
                  "tpm2: TPM unavailable: %s; operations fail until it is "
                  "back",
                  dev->last_err);
    }
}

void hwkey_tpm2_backoff_ok(HWKEY_TPM2_DEVICE *dev)
{
    /*
     * A connection is not the TPM: tpm2-abrmd accepts clients while the
     * TPM behind it is gone.  The backoff ends here; "back" is said only
     * when a command got through (hwkey_tpm2_back).
     */
    dev->retry_at_ms = 0;
}

void hwkey_tpm2_back(HWKEY_TPM2_DEVICE *dev)
{
    dev->ever_connected = 1;
    if (dev->lost)
        hwkey_log(HWKEY_LOG_ERROR, "tpm2: TPM back through TCTI \"%s\"", dev->tcti_conf);
    dev->lost = 0;
    dev->backoff_ms = 0;
    dev->retry_at_ms = 0;
}

void hwkey_tpm2_mark_lost(HWKEY_TPM2_DEVICE *dev, TSS2_RC rc)
{
    snprintf(dev->last_err, sizeof(dev->last_err),
             "lost the TPM connection through TCTI "
             "\"%s\": %s (0x%x)",
             dev->tcti_conf, Tss2_RC_Decode(rc), (unsigned int)rc);
    if (!dev->lost && dev->ever_connected) {
        dev->lost = 1;
        hwkey_log(HWKEY_LOG_ERROR, "tpm2: %s; reconnecting", dev->last_err);
    }
}
