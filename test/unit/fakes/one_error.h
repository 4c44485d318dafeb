/*
 * The unit tests' check of the error path (docs/architecture.md, "The error
 * path"): exactly one error in the queue, hwkey's (ERR_LIB_USER outside the
 * provider), with this reason and a text containing part; the queue is empty
 * afterwards.
 */
#ifndef HWKEY_TEST_ONE_ERROR_H
#define HWKEY_TEST_ONE_ERROR_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/err.h>

static inline void assert_one_error(int reason, const char *part)
{
    const char *data = NULL;
    int flags = 0;
    unsigned long e = ERR_peek_error_data(&data, &flags);
    const char *text = (flags & ERR_TXT_STRING) != 0 && data != NULL ? data : "";

    if (e == 0)
        fail_msg("no error raised (expected \"%s\")", part);
    if (ERR_GET_LIB(e) != ERR_LIB_USER || ERR_GET_REASON(e) != reason)
        fail_msg("error %s (reason %d, text \"%s\"), expected reason %d with \"%s\"",
                 ERR_error_string(e, NULL), ERR_GET_REASON(e), text, reason, part);
    if (strstr(text, part) == NULL)
        fail_msg("error text \"%s\" lacks \"%s\"", text, part);
    assert_int_equal(ERR_get_error(), e);
    if (ERR_peek_error() != 0) {
        ERR_print_errors_fp(stderr);
        fail_msg("more than one error raised");
    }
}

#endif
