/*
 * Unit tests of the pkcs11 backend that need a real token: a fresh SoftHSM
 * token store in a temporary directory (scripts/softhsm-setup.sh), never the
 * system one.  p11_test_token_setup() returns 0 when SoftHSM is missing; the
 * test then exits 77 (skip).
 */
#ifndef HWKEY_TEST_P11_TEST_TOKEN_H
#define HWKEY_TEST_P11_TEST_TOKEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define P11_TEST_MODULE "/usr/lib/softhsm/libsofthsm2.so"

static char p11_test_dir[64];

static void p11_test_token_cleanup(void)
{
    char cmd[128];

    if (p11_test_dir[0] != '\0') {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p11_test_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", p11_test_dir);
    }
}

static int p11_test_token_setup(const char *reset_on_fork)
{
    const char *src = getenv("top_srcdir");
    char cmd[512], conf[128];

    if (access(P11_TEST_MODULE, R_OK) != 0)
        return 0;
    strcpy(p11_test_dir, "/tmp/hwkey-p11-unit.XXXXXX");
    if (mkdtemp(p11_test_dir) == NULL)
        return 0;
    atexit(p11_test_token_cleanup);
    snprintf(cmd, sizeof(cmd),
             "HWKEY_SOFTHSM_RESET_ON_FORK=%s '%s/scripts/softhsm-setup.sh' '%s' "
             ">/dev/null",
             reset_on_fork, src != NULL ? src : ".", p11_test_dir);
    if (system(cmd) != 0)
        return 0;
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", p11_test_dir);
    setenv("SOFTHSM2_CONF", conf, 1);
    return 1;
}

#endif
