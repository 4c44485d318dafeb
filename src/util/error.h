/*
 * One way to report a failure: hwkey_raise(reason, fmt, ...), called once,
 * where the failure is detected.  Inside the provider the error goes to the
 * core's error upcalls (so `openssl` prints "hwkey: <reason>: <text>"); in the
 * CLI, tests and benchmarks it goes to libcrypto's error queue under
 * ERR_LIB_USER with the same reason number.  Device codes (TPM_RC_*, CKR_*)
 * belong in the text, decoded: their number spaces overlap, so they are never
 * reason numbers.
 */
#ifndef HWKEY_UTIL_ERROR_H
#define HWKEY_UTIL_ERROR_H

#include <openssl/core.h>
#include <openssl/crypto.h>

enum hwkey_reason {
    HWKEY_R_INTERNAL = 1,
    HWKEY_R_OUT_OF_MEMORY,
    HWKEY_R_BAD_ARGUMENT,
    HWKEY_R_CONFIG_INVALID,
    HWKEY_R_DEVICE_UNREACHABLE, /* cannot connect to the TPM / load the module */
    HWKEY_R_DEVICE_ERROR,       /* the device answered with an error */
    HWKEY_R_DEVICE_BUSY,        /* retries exhausted, out of object slots */
    HWKEY_R_AUTH_FAILED,        /* wrong key auth / PIN */
    HWKEY_R_PIN_LOCKED,         /* token refuses further logins */
    HWKEY_R_KEY_FILE_INVALID,   /* corrupt, truncated or oversized key file */
    HWKEY_R_KEY_NOT_FOUND,
    HWKEY_R_INVALID_URI,
    HWKEY_R_UNSUPPORTED_ALGORITHM,
    HWKEY_R_UNSUPPORTED_DIGEST,
    HWKEY_R_UNSUPPORTED_PADDING,
    HWKEY_R_INVALID_SALT_LENGTH,
    HWKEY_R_BUFFER_TOO_SMALL,
    HWKEY_R_DECRYPTION_FAILED,
    HWKEY_R_NO_PRIVATE_KEY, /* a public-only key was asked to sign/decrypt */
    HWKEY_R_INVALID_PEER_KEY,
    HWKEY_R_OPERATION_NOT_INITIALISED,
    HWKEY_R_ATTESTATION_REJECTED, /* hwkey attest --verify: a check failed */
    HWKEY_R_POLICY_FAILED,        /* the key's policy is not met (a bound PCR changed) */
    HWKEY_R_MAX
};

/* Reason strings, terminated by {0, NULL}; also the provider's reason table. */
const OSSL_ITEM *hwkey_reason_strings(void);
const char *hwkey_reason_string(int reason);

/*
 * Route errors through the provider core, one sink per provider instance.
 * An application may load hwkey into several library contexts and free them
 * in any order: each instance adds its sink in init and removes it in
 * teardown, so an error is never reported through a core handle that was
 * freed (which printed "reason(12)" and read freed memory).  An error goes
 * to the newest live instance; every instance registers the same reason
 * table, so the text is right whichever one carries it.  With no instance
 * (CLI, tests, benchmarks) errors go to libcrypto's queue under ERR_LIB_USER.
 */
typedef struct hwkey_error_sink HWKEY_ERROR_SINK;
/* NULL (and nothing registered) if in lacks the error upcalls. */
HWKEY_ERROR_SINK *hwkey_error_sink_add(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in);
/* Unregisters and frees; NULL is a no-op.  Call before the core handle dies. */
void hwkey_error_sink_remove(HWKEY_ERROR_SINK *sink);

void hwkey_raise_at(const char *file, int line, const char *func, int reason, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

#define hwkey_raise(reason, ...)                                                                   \
    hwkey_raise_at(OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC, (reason), __VA_ARGS__)

#endif
