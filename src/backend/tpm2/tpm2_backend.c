/* STUB: replaced by the TPM 2.0 backend. */
#include "backend/tpm2/tpm2_internal.h"

static int tpm2_handles(HWKEY_REF_KIND kind)
{
    return kind == HWKEY_REF_TSS2_KEYFILE || kind == HWKEY_REF_TPM2_HANDLE;
}

const HWKEY_BACKEND hwkey_tpm2_backend = {
    .name = "tpm2",
    .handles = tpm2_handles,
};
