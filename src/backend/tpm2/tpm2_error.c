/*
 * TSS2_RC -> hwkey reason + one line of text.  The text carries the TPM_RC_
 * name (what users and tests grep for: TPM_RC_AUTH_FAIL, TPM_RC_INTEGRITY)
 * followed by Tss2_RC_Decode's explanation and the raw number.
 */
#include "backend/tpm2/tpm2_internal.h"

#include <stdio.h>

#include <tss2/tss2_rc.h>

#include "util/error.h"

typedef struct {
    TSS2_RC rc;
    const char *name;
} RC_NAME;

#define RCN(x)                                                                                     \
    {                                                                                              \
        TPM2_RC_##x, "TPM_RC_" #x                                                                  \
    }
static const RC_NAME rc_names[] = {
    RCN(INITIALIZE),
    RCN(FAILURE),
    RCN(SEQUENCE),
    RCN(DISABLED),
    RCN(AUTH_TYPE),
    RCN(AUTH_MISSING),
    RCN(POLICY),
    RCN(PCR),
    RCN(PCR_CHANGED),
    RCN(AUTH_UNAVAILABLE),
    RCN(REBOOT),
    RCN(COMMAND_SIZE),
    RCN(COMMAND_CODE),
    RCN(BAD_CONTEXT),
    RCN(PARENT),
    RCN(NEEDS_TEST),
    RCN(NO_RESULT),
    RCN(SENSITIVE),
    RCN(ASYMMETRIC),
    RCN(ATTRIBUTES),
    RCN(HASH),
    RCN(VALUE),
    RCN(HIERARCHY),
    RCN(KEY_SIZE),
    RCN(MGF),
    RCN(MODE),
    RCN(TYPE),
    RCN(HANDLE),
    RCN(KDF),
    RCN(RANGE),
    RCN(AUTH_FAIL),
    RCN(NONCE),
    RCN(PP),
    RCN(SCHEME),
    RCN(SIZE),
    RCN(SYMMETRIC),
    RCN(TAG),
    RCN(SELECTOR),
    RCN(INSUFFICIENT),
    RCN(SIGNATURE),
    RCN(KEY),
    RCN(POLICY_FAIL),
    RCN(INTEGRITY),
    RCN(TICKET),
    RCN(RESERVED_BITS),
    RCN(BAD_AUTH),
    RCN(EXPIRED),
    RCN(POLICY_CC),
    RCN(BINDING),
    RCN(CURVE),
    RCN(ECC_POINT),
    RCN(CONTEXT_GAP),
    RCN(OBJECT_MEMORY),
    RCN(SESSION_MEMORY),
    RCN(MEMORY),
    RCN(SESSION_HANDLES),
    RCN(OBJECT_HANDLES),
    RCN(LOCALITY),
    RCN(YIELDED),
    RCN(CANCELED),
    RCN(TESTING),
    RCN(REFERENCE_H0),
    RCN(REFERENCE_H1),
    RCN(REFERENCE_H2),
    RCN(REFERENCE_S0),
    RCN(NV_RATE),
    RCN(LOCKOUT),
    RCN(RETRY),
    RCN(NV_UNAVAILABLE),
};
#undef RCN

static int is_tpm_layer(TSS2_RC rc)
{
    TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;

    /* tabrmd passes the TPM's own codes up under its RESMGR_TPM layer. */
    return layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER;
}

TSS2_RC hwkey_tpm2_rc_base(TSS2_RC rc)
{
    TSS2_RC low = rc & 0xffffu;

    if (!is_tpm_layer(rc))
        return rc;
    /* Format 1 carries a handle/session/parameter number in bits 6..11. */
    if ((low & TPM2_RC_FMT1) != 0)
        return low & (TPM2_RC_FMT1 | 0x3fu);
    return low & 0xfffu & ~0x400u; /* drop the vendor bit */
}

static const char *rc_name(TSS2_RC rc)
{
    TSS2_RC base;

    if (!is_tpm_layer(rc))
        return NULL;
    base = hwkey_tpm2_rc_base(rc);
    for (size_t i = 0; i < sizeof(rc_names) / sizeof(rc_names[0]); i++)
        if (rc_names[i].rc == base)
            return rc_names[i].name;
    return NULL;
}

int hwkey_tpm2_conn_broken(TSS2_RC rc)
{
    TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;

    if (rc == TSS2_RC_SUCCESS || is_tpm_layer(rc))
        return 0;
    /* Every TCTI failure is a transport failure. */
    if (layer == TSS2_TCTI_RC_LAYER)
        return 1;
    switch (rc & 0xffffu) {
    case TSS2_BASE_RC_IO_ERROR:
    case TSS2_BASE_RC_NO_CONNECTION:
    /*
     * A command cut off mid-way leaves ESAPI's state machine waiting for a
     * response that never comes: every later call answers BAD_SEQUENCE.
     * Only a new context cures it.
     */
    case TSS2_BASE_RC_BAD_SEQUENCE:
    case TSS2_BASE_RC_MALFORMED_RESPONSE:
    case TSS2_BASE_RC_INSUFFICIENT_RESPONSE:
        return 1;
    default:
        return 0;
    }
}

/*
 * The one list of TPM answers that mean "busy, ask again shortly": the
 * retry loop (hwkey_tpm2_retry) retries exactly these, and an error that
 * still carries one after the retries is HWKEY_R_DEVICE_BUSY.
 */
int hwkey_tpm2_rc_busy(TSS2_RC rc)
{
    if (!is_tpm_layer(rc))
        return 0;
    switch (hwkey_tpm2_rc_base(rc)) {
    case TPM2_RC_OBJECT_MEMORY:
    case TPM2_RC_SESSION_MEMORY:
    case TPM2_RC_MEMORY:
    case TPM2_RC_SESSION_HANDLES:
    case TPM2_RC_OBJECT_HANDLES:
    case TPM2_RC_RETRY:
    case TPM2_RC_YIELDED:
    case TPM2_RC_TESTING:
    case TPM2_RC_NV_RATE:
        return 1;
    default:
        return 0;
    }
}

int hwkey_tpm2_reason(TSS2_RC rc)
{
    TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;
    TSS2_RC low = rc & 0xffffu;

    if (is_tpm_layer(rc)) {
        switch (hwkey_tpm2_rc_base(rc)) {
        case TPM2_RC_AUTH_FAIL:
        case TPM2_RC_BAD_AUTH:
        case TPM2_RC_AUTH_MISSING:
            return HWKEY_R_AUTH_FAILED;
        case TPM2_RC_LOCKOUT:
            return HWKEY_R_PIN_LOCKED;
        /* The command's policy session does not satisfy the object's authPolicy. */
        case TPM2_RC_POLICY_FAIL:
        case TPM2_RC_PCR_CHANGED:
            return HWKEY_R_POLICY_FAILED;
        default:
            return hwkey_tpm2_rc_busy(rc) ? HWKEY_R_DEVICE_BUSY : HWKEY_R_DEVICE_ERROR;
        }
    }
    if (hwkey_tpm2_conn_broken(rc))
        return HWKEY_R_DEVICE_UNREACHABLE;
    switch (low) {
    case TSS2_BASE_RC_IO_ERROR:
    case TSS2_BASE_RC_NO_CONNECTION:
    case TSS2_BASE_RC_NO_TPM:
    case TSS2_BASE_RC_INCOMPATIBLE_TCTI:
    case TSS2_BASE_RC_BAD_TCTI_STRUCTURE:
        return HWKEY_R_DEVICE_UNREACHABLE;
    case TSS2_BASE_RC_MEMORY:
        return HWKEY_R_OUT_OF_MEMORY;
    case TSS2_BASE_RC_TRY_AGAIN:
        return HWKEY_R_DEVICE_BUSY;
    default:
        break;
    }
    /* The TCTI layer and the loader only fail for transport reasons. */
    if (layer == TSS2_TCTI_RC_LAYER)
        return HWKEY_R_DEVICE_UNREACHABLE;
    return HWKEY_R_DEVICE_ERROR;
}

static void describe_rc(TSS2_RC rc, char *buf, size_t len)
{
    const char *name = rc_name(rc);
    const char *text = Tss2_RC_Decode(rc);

    if (name != NULL)
        snprintf(buf, len, "%s (%s, 0x%x)", name, text, (unsigned int)rc);
    else
        snprintf(buf, len, "%s (0x%x)", text, (unsigned int)rc);
}

int hwkey_tpm2_raise_rc_at(const char *file, int line, const char *func, TSS2_RC rc,
                           const char *what)
{
    char text[256];

    describe_rc(rc, text, sizeof(text));
    hwkey_raise_at(file, line, func, hwkey_tpm2_reason(rc), "%s: %s", what, text);
    hwkey_tpm2_rc_seen(rc);
    return 0;
}

int hwkey_tpm2_raise_load_rc_at(const char *file, int line, const char *func, TSS2_RC rc,
                                const char *what)
{
    char text[256];

    if (is_tpm_layer(rc)) {
        switch (hwkey_tpm2_rc_base(rc)) {
        case TPM2_RC_INTEGRITY:
        case TPM2_RC_SIZE:
        case TPM2_RC_VALUE:
        case TPM2_RC_BINDING:
        case TPM2_RC_SENSITIVE:
        case TPM2_RC_KEY:
        case TPM2_RC_ATTRIBUTES:
        case TPM2_RC_INSUFFICIENT:
        case TPM2_RC_ASYMMETRIC:
        case TPM2_RC_TYPE:
        case TPM2_RC_SYMMETRIC:
        case TPM2_RC_KEY_SIZE:
            describe_rc(rc, text, sizeof(text));
            hwkey_raise_at(file, line, func, HWKEY_R_KEY_FILE_INVALID,
                           "%s: key file does not belong to this TPM or parent: %s", what, text);
            return 0;
        default:
            break;
        }
    }
    return hwkey_tpm2_raise_rc_at(file, line, func, rc, what);
}
