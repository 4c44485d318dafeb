#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include <openssl/err.h>

#include "util/error.h"

static int current_level = HWKEY_LOG_ERROR;

void hwkey_log_set_level(int level)
{
    if (level < HWKEY_LOG_OFF)
        level = HWKEY_LOG_OFF;
    if (level > HWKEY_LOG_TRACE)
        level = HWKEY_LOG_TRACE;
    current_level = level;
}

int hwkey_log_level(void)
{
    return current_level;
}

void hwkey_log(int level, const char *fmt, ...)
{
    va_list ap;
    char line[1024];
    int n;

    if (level > current_level || level <= HWKEY_LOG_OFF)
        return;
    n = snprintf(line, sizeof(line), "hwkey[%ld]: ", (long)getpid());
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines of several threads do not interleave. */
    fprintf(stderr, "%s\n", line);
}

void hwkey_log_last_error(const char *what)
{
    const char *data = NULL;
    int flags = 0;
    unsigned long e;

    if (current_level < HWKEY_LOG_ERROR)
        return;
    e = ERR_peek_last_error_data(&data, &flags);
    if (e == 0) {
        fprintf(stderr, "hwkey: %s\n", what);
        return;
    }
    if ((flags & ERR_TXT_STRING) == 0 || data == NULL)
        data = "";
    fprintf(stderr, "hwkey: %s: %s%s%s\n", what, hwkey_reason_string(ERR_GET_REASON(e)),
            *data != '\0' ? ": " : "", data);
}
