/* A TPM seen through a fake TCTI: see fake_tcti.h. */
#include "fake_tcti.h"

#include <string.h>

#include <tss2/tss2_mu.h>

#define MAX_ANSWERS 32

static struct {
    TSS2_TCTI_CONTEXT_COMMON_V2 common;
    TPM2_CC last_cc;
    uint8_t cmd[4096];
    size_t cmd_len;
    const FAKE_TCTI_STEP *script;
    size_t nsteps, step;
    struct {
        TPM2_CC cc;
        FAKE_TCTI_ANSWER *fn;
        unsigned int count;
    } answers[MAX_ANSWERS];
    size_t n_answers;
    unsigned int total;
    uint8_t rsp[4096];
    size_t rsp_len, params_at;
    int broken_line;
} fake;

static TSS2_RC fake_transmit(TSS2_TCTI_CONTEXT *ctx, size_t size, const uint8_t *cmd)
{
    size_t off = 6;
    TPM2_CC cc = 0;

    (void)ctx;
    if (size < 10 || size > sizeof(fake.cmd) ||
        Tss2_MU_UINT32_Unmarshal(cmd, size, &off, &cc) != TSS2_RC_SUCCESS)
        return TSS2_TCTI_RC_BAD_VALUE;
    memcpy(fake.cmd, cmd, size);
    fake.cmd_len = size;
    fake.last_cc = cc;
    fake.total++;
    for (size_t i = 0; i < fake.n_answers; i++)
        if (fake.answers[i].cc == cc)
            fake.answers[i].count++;
    return TSS2_RC_SUCCESS;
}

static TSS2_RC fake_receive(TSS2_TCTI_CONTEXT *ctx, size_t *size, uint8_t *rsp, int32_t timeout)
{
    FAKE_TCTI_ANSWER *fn = NULL;

    (void)ctx;
    (void)timeout;
    if (rsp == NULL) {
        *size = sizeof(fake.rsp); /* size query: an upper bound */
        return TSS2_RC_SUCCESS;
    }
    for (size_t i = 0; i < fake.n_answers; i++)
        if (fake.answers[i].cc == fake.last_cc)
            fn = fake.answers[i].fn;
    if (fake.step < fake.nsteps && fake.script[fake.step].cc == fake.last_cc) {
        TSS2_RC rc = fake.script[fake.step++].rc;

        if (rc == FAKE_TCTI_IO_ERROR)
            return FAKE_TCTI_IO_ERROR;
        fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, rc);
        fake_tcti_rsp_finish();
    } else if (fn != NULL) {
        fn(fake.cmd, fake.cmd_len);
    } else {
        fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_COMMAND_CODE);
        fake_tcti_rsp_finish();
    }
    if (*size < fake.rsp_len)
        return TSS2_TCTI_RC_INSUFFICIENT_BUFFER;
    memcpy(rsp, fake.rsp, fake.rsp_len);
    *size = fake.rsp_len;
    return TSS2_RC_SUCCESS;
}

static void fake_finalize(TSS2_TCTI_CONTEXT *ctx)
{
    (void)ctx;
}

TSS2_TCTI_CONTEXT *fake_tcti_reset(const FAKE_TCTI_STEP *script, size_t nsteps)
{
    memset(&fake, 0, sizeof(fake));
    fake.common.v1.magic = 0x46414b4554435449ull; /* "FAKETCTI" */
    fake.common.v1.version = 2;
    fake.common.v1.transmit = fake_transmit;
    fake.common.v1.receive = fake_receive;
    fake.common.v1.finalize = fake_finalize;
    fake_tcti_script(script, nsteps);
    return (TSS2_TCTI_CONTEXT *)&fake.common;
}

void fake_tcti_script(const FAKE_TCTI_STEP *script, size_t nsteps)
{
    fake.script = script;
    fake.nsteps = nsteps;
    fake.step = 0;
}

size_t fake_tcti_served(void)
{
    return fake.step;
}

void fake_tcti_on(TPM2_CC cc, FAKE_TCTI_ANSWER *answer)
{
    for (size_t i = 0; i < fake.n_answers; i++) {
        if (fake.answers[i].cc == cc) {
            fake.answers[i].fn = answer;
            return;
        }
    }
    if (fake.n_answers < MAX_ANSWERS) {
        fake.answers[fake.n_answers].cc = cc;
        fake.answers[fake.n_answers++].fn = answer;
    }
}

unsigned int fake_tcti_count(TPM2_CC cc)
{
    if (cc == 0)
        return fake.total;
    for (size_t i = 0; i < fake.n_answers; i++)
        if (fake.answers[i].cc == cc)
            return fake.answers[i].count;
    return 0;
}

TPM2_HANDLE fake_tcti_cmd_handle(const uint8_t *cmd, size_t len)
{
    size_t off = 10;
    TPM2_HANDLE h = 0;

    if (Tss2_MU_UINT32_Unmarshal(cmd, len, &off, &h) != TSS2_RC_SUCCESS)
        return 0;
    return h;
}

void fake_tcti_refuse(int line)
{
    if (fake.broken_line == 0)
        fake.broken_line = line;
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_FAILURE);
    fake_tcti_rsp_finish();
}

int fake_tcti_broken(void)
{
    return fake.broken_line;
}

void fake_tcti_rsp_header(uint16_t tag, TSS2_RC rc)
{
    size_t off = 0;

    /* The size is filled in by fake_tcti_rsp_finish(). */
    Tss2_MU_UINT16_Marshal(tag, fake.rsp, sizeof(fake.rsp), &off);
    Tss2_MU_UINT32_Marshal(0, fake.rsp, sizeof(fake.rsp), &off);
    Tss2_MU_UINT32_Marshal(rc, fake.rsp, sizeof(fake.rsp), &off);
    fake.rsp_len = off;
}

uint8_t *fake_tcti_rsp_buf(size_t *size, size_t *off)
{
    *size = sizeof(fake.rsp);
    *off = fake.rsp_len;
    return fake.rsp;
}

void fake_tcti_rsp_set_end(size_t off)
{
    fake.rsp_len = off;
}

/* parameterSize (filled in by params_end), then the parameters. */
void fake_tcti_rsp_params_begin(void)
{
    fake.params_at = fake.rsp_len;
    fake.rsp_len += 4;
}

void fake_tcti_rsp_params_end(void)
{
    TPMS_AUTH_RESPONSE auth;
    size_t p = fake.params_at, off = fake.rsp_len;

    Tss2_MU_UINT32_Marshal((UINT32)(fake.rsp_len - fake.params_at - 4), fake.rsp, sizeof(fake.rsp),
                           &p);
    /* One password session: empty nonce and hmac. */
    memset(&auth, 0, sizeof(auth));
    auth.sessionAttributes = TPMA_SESSION_CONTINUESESSION;
    Tss2_MU_TPMS_AUTH_RESPONSE_Marshal(&auth, fake.rsp, sizeof(fake.rsp), &off);
    fake.rsp_len = off;
}

void fake_tcti_rsp_finish(void)
{
    size_t off = 2;

    Tss2_MU_UINT32_Marshal((UINT32)fake.rsp_len, fake.rsp, 6, &off);
}
