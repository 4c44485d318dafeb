/*
 * A TPM seen through a fake TCTI, for unit tests of the TPM backend without
 * swtpm: ESAPI sends its marshalled commands to fake_tcti and reads back
 * what a responder built.  A test registers one responder per command code
 * (fake_tcti_on), and a script can make the n-th command of a code answer
 * an error code, or fail in the transport, instead.  A command nobody
 * answers gets TPM_RC_COMMAND_CODE.
 *
 * Responders build the answer with fake_tcti_rsp_*: a header, then for
 * commands with sessions the parameters between params_begin/params_end
 * (which adds one password-session response), then finish.
 */
#ifndef HWKEY_TEST_FAKE_TCTI_H
#define HWKEY_TEST_FAKE_TCTI_H

#include <stddef.h>
#include <stdint.h>

#include <tss2/tss2_tcti.h>
#include <tss2/tss2_tpm2_types.h>

/* A transport failure (receive fails), as a dropped connection gives. */
#define FAKE_TCTI_IO_ERROR (TSS2_TCTI_RC_LAYER | TSS2_BASE_RC_IO_ERROR)

/* One scripted answer: the next command with this code answers rc instead. */
typedef struct {
    TPM2_CC cc;
    TSS2_RC rc;
} FAKE_TCTI_STEP;

/* Builds the response to cmd[0..len) (the whole marshalled command). */
typedef void FAKE_TCTI_ANSWER(const uint8_t *cmd, size_t len);

/* A fresh fake (no responders, counters zero) with this script; the TCTI to hand ESAPI. */
TSS2_TCTI_CONTEXT *fake_tcti_reset(const FAKE_TCTI_STEP *script, size_t nsteps);
/* Replaces the script (and its position) mid-test. */
void fake_tcti_script(const FAKE_TCTI_STEP *script, size_t nsteps);
/* How many steps of the script were served. */
size_t fake_tcti_served(void);
void fake_tcti_on(TPM2_CC cc, FAKE_TCTI_ANSWER *answer);
/* Commands received with this code (0: all of them). */
unsigned int fake_tcti_count(TPM2_CC cc);
/* The first handle of a command's handle area. */
TPM2_HANDLE fake_tcti_cmd_handle(const uint8_t *cmd, size_t len);

/*
 * A responder that cannot make sense of a command answers through this
 * instead of a CMocka assert: an assert would jump out of ESAPI with the
 * backend's TPM lock held and hang the next test.  The fake then answers
 * TPM_RC_FAILURE; fake_tcti_broken() gives the responder's line (0: none),
 * for the test to assert on after the backend call.
 */
void fake_tcti_refuse(int line);
int fake_tcti_broken(void);

/* Response building. */
void fake_tcti_rsp_header(uint16_t tag, TSS2_RC rc);
/* The response buffer and its current end, to marshal into (then *off is the new end). */
uint8_t *fake_tcti_rsp_buf(size_t *size, size_t *off);
void fake_tcti_rsp_set_end(size_t off);
void fake_tcti_rsp_params_begin(void);
void fake_tcti_rsp_params_end(void);
void fake_tcti_rsp_finish(void);

#endif
