/*
 * Salted HMAC sessions with parameter encryption, for the fake TPM behind
 * fake_tcti: what tpm2_seal.c needs to seal and unseal data keys without
 * swtpm.  The fake owns the private key of the storage parent (an ECC P-256
 * key made by the test), so it can do what a TPM does with a session
 * ESAPI starts against that parent (TPM 2.0 Part 1, "Salted session",
 * "HMAC computation", "CFB mode parameter encryption"):
 *   - StartAuthSession: salt = KDFe(SHA-256, Z, "SECRET", QeU.x, QsB.x, 256)
 *     with Z = ECDH(parent, ephemeral point); sessionKey = KDFa(SHA-256,
 *     salt, "ATH", nonceTPM, nonceCaller, 256);
 *   - a command authorized by the session: its HMAC checked against the
 *     entity's name and auth value, its first parameter decrypted when the
 *     session has TPMA_SESSION_DECRYPT;
 *   - the response: its first parameter encrypted when the session has
 *     TPMA_SESSION_ENCRYPT, then the response HMAC ESAPI verifies.
 * Policy sessions (PCR-bound data keys) the same way, salted too; their
 * policyDigest is extended by the policy commands, and a command they
 * authorize fails unless it equals the object's authPolicy.
 * One session at a time (all tpm2_seal.c uses); sessions with
 * continueSession clear end with their command, as in a TPM.
 */
#ifndef HWKEY_TEST_FAKE_TPM2_SESSION_H
#define HWKEY_TEST_FAKE_TPM2_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

/* Forgets any session; parent_key is the storage parent's key pair (borrowed). */
void fake_session_reset(EVP_PKEY *parent_key, const TPM2B_PUBLIC *parent_pub);

/* The TPM2_StartAuthSession responder (fake_tcti_on). */
void fake_session_answer_start(const uint8_t *cmd, size_t len);

/* nameAlg || H(publicArea), the name of an object (SHA-256 objects only). */
int fake_session_name(const TPM2B_PUBLIC *pub, TPM2B_NAME *name);

/* A command with one handle, authorized by the session. */
typedef struct {
    uint8_t cmd[4096]; /* the command, its first parameter decrypted */
    size_t len;
    size_t params; /* offset of the parameters in cmd */
    TPMA_SESSION attrs;
    int encrypted_in; /* the first parameter came encrypted */
    int policy;       /* authorized by a policy session, not an HMAC session */
} FAKE_SESSION_CMD;

/* What fake_session_command found. */
typedef enum {
    FAKE_SESSION_OK = 0,
    FAKE_SESSION_BAD_HMAC,    /* answer TPM_RC_AUTH_FAIL */
    FAKE_SESSION_POLICY_FAIL, /* answer TPM_RC_POLICY_FAIL */
    FAKE_SESSION_MALFORMED,   /* not one handle and the live session: refuse */
} FAKE_SESSION_CHECK;

/*
 * Checks the session's HMAC for the entity (name, auth value; its
 * authPolicy for a policy session), decrypts the first parameter.
 */
FAKE_SESSION_CHECK fake_session_command(const uint8_t *cmd, size_t len, const TPM2B_NAME *name,
                                        const TPM2B_AUTH *auth, const TPM2B_DIGEST *auth_policy,
                                        FAKE_SESSION_CMD *out);

/* The policyDigest of the policy session a policy command names; NULL if it names none. */
TPM2B_DIGEST *fake_session_policy(const uint8_t *cmd, size_t len);
/* policyDigest' = H(policyDigest || commandCode || params): a policy command's effect. */
int fake_session_policy_extend(const uint8_t *cmd, size_t len, const uint8_t *params, size_t plen);
/* The TPM2_PolicyAuthValue responder. */
void fake_session_answer_policy_auth_value(const uint8_t *cmd, size_t len);

/*
 * Ends a response built with fake_tcti_rsp_header(TPM2_ST_SESSIONS) and
 * fake_tcti_rsp_params_begin(), its parameters marshalled up to the
 * current end: encrypts the first (TPM2B) parameter when the session asks
 * for it, appends the session's response with its HMAC, finishes.  Returns
 * 0 if it cannot (the caller refuses).
 */
int fake_session_rsp_end(TPM2_CC cc, size_t params_at, const TPM2B_AUTH *auth);

/* The last response fake_session_rsp_end sent, as on the wire. */
const uint8_t *fake_session_last_response(size_t *len);

#endif
