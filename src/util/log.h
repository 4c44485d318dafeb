/*
 * Diagnostic logging to stderr, levels 0 (off) .. 3 (trace), set by the
 * log-level parameter or HWKEY_LOG.  The default, 1, prints only errors that
 * OpenSSL would otherwise swallow.  Never pass a secret to it.
 */
#ifndef HWKEY_UTIL_LOG_H
#define HWKEY_UTIL_LOG_H

enum { HWKEY_LOG_OFF = 0, HWKEY_LOG_ERROR = 1, HWKEY_LOG_INFO = 2, HWKEY_LOG_TRACE = 3 };

void hwkey_log_set_level(int level);
int hwkey_log_level(void);
void hwkey_log(int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/*
 * At level >= 1: one line "hwkey: <what>: <reason>: <detail>" from the newest
 * error in this thread's error queue (left in place).
 */
void hwkey_log_last_error(const char *what);

#endif
