/*
 * Deterministic fault injection for tests: a named point in a device call
 * where a test can stop the process (to SIGKILL it there, or to stop the
 * device while a call is in flight) instead of hoping a sleep lands it.
 *
 *   HWKEY_TEST_STOP_AT=tpm2-object-loaded   name of the point (one)
 *   HWKEY_TEST_STOP_FILE=/tmp/x/stopped     optional: "<pid> <point>\n" is
 *                                           appended here before stopping
 *   HWKEY_TEST_STOP_COUNT=N                 optional: stop at the N-th pass
 *                                           (default 1); later passes run on
 *
 * At the point the process appends its line and raises SIGSTOP; the test
 * waits for the line, does what it needs (kill -9, stop swtpm ...) and may
 * SIGCONT it.  Without HWKEY_TEST_STOP_AT this is one getenv per process
 * (cached) and a compare: nothing changes for users.
 *
 * Points in use (grep HWKEY_TEST_POINT): "tpm2-object-loaded" (a key is in
 * the TPM, before its command), "tpm2-command" (just before a TPM command),
 * "p11-sign" (a session is taken, before C_Sign*), "datakey-unwrapped" (a
 * data key was unwrapped into the caller's protected memory).
 */
#ifndef HWKEY_UTIL_TESTHOOK_H
#define HWKEY_UTIL_TESTHOOK_H

void hwkey_test_point(const char *name);
#define HWKEY_TEST_POINT(name) hwkey_test_point(name)

#endif
