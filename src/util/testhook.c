/* Test stop points: see testhook.h. */
#include "util/testhook.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *stop_at(void)
{
    /* Read per call: cheap, and a forked test child may set it late. */
    const char *p = getenv("HWKEY_TEST_STOP_AT");

    return p != NULL && p[0] != '\0' ? p : NULL;
}

void hwkey_test_point(const char *name)
{
    static __thread unsigned long passes;
    const char *want = stop_at();
    const char *count_s, *file;
    unsigned long count = 1;
    char line[128];
    int fd, n;

    if (want == NULL || strcmp(want, name) != 0)
        return;
    if ((count_s = getenv("HWKEY_TEST_STOP_COUNT")) != NULL)
        count = strtoul(count_s, NULL, 10);
    if (++passes != count)
        return;
    if ((file = getenv("HWKEY_TEST_STOP_FILE")) != NULL &&
        (fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) >= 0) {
        n = snprintf(line, sizeof(line), "%ld %s\n", (long)getpid(), name);
        if (n > 0 && write(fd, line, (size_t)n) < 0) {
            /* the test will time out waiting for the line: nothing else to do */
        }
        close(fd);
    }
    raise(SIGSTOP);
}
