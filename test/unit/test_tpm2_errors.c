/*
 * The TPM backend's error paths without a TPM: a fake TCTI answers ESAPI's
 * commands with canned responses, and a script injects TPM_RC_OBJECT_MEMORY,
 * TPM_RC_RETRY or a dropped connection at chosen commands.
 *
 * The key is a persistent handle in resource-manager mode, the shortest real
 * path: TPM2_ReadPublic at load, then exactly one TPM2_Sign per signature.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/sha.h>
#include <tss2/tss2_mu.h>

#include "backend/tpm2/tpm2_internal.h"
#include "util/error.h"

#define KEY_HANDLE 0x81000002u
#define TCTI_IO_ERROR (TSS2_TCTI_RC_LAYER | TSS2_BASE_RC_IO_ERROR)

/* One scripted answer: to the n-th command with this code, reply rc instead. */
typedef struct {
    TPM2_CC cc;
    TSS2_RC rc; /* a TPM_RC_* or TCTI_IO_ERROR (receive fails) */
} STEP;

typedef struct {
    TSS2_TCTI_CONTEXT_COMMON_V2 common;
    TPM2_CC last_cc;
    const STEP *script;
    size_t nsteps, step;
    unsigned int n_read_public, n_sign, n_total;
    uint8_t rsp[1024];
    size_t rsp_len;
} FAKE_TCTI;

static FAKE_TCTI fake;

static TPM2B_PUBLIC key_public(void)
{
    TPM2B_PUBLIC pub;

    memset(&pub, 0, sizeof(pub));
    pub.publicArea.type = TPM2_ALG_ECC;
    pub.publicArea.nameAlg = TPM2_ALG_SHA256;
    pub.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT
                                      | TPMA_OBJECT_SENSITIVEDATAORIGIN
                                      | TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_SIGN_ENCRYPT;
    pub.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    pub.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    pub.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    pub.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    pub.publicArea.unique.ecc.x.size = 32;
    memset(pub.publicArea.unique.ecc.x.buffer, 0x11, 32);
    pub.publicArea.unique.ecc.y.size = 32;
    memset(pub.publicArea.unique.ecc.y.buffer, 0x22, 32);
    return pub;
}

static void put_header(uint16_t tag, TSS2_RC rc)
{
    size_t off = 0;

    assert_int_equal(Tss2_MU_UINT16_Marshal(tag, fake.rsp, sizeof(fake.rsp), &off), 0);
    assert_int_equal(Tss2_MU_UINT32_Marshal(0, fake.rsp, sizeof(fake.rsp), &off), 0);
    assert_int_equal(Tss2_MU_UINT32_Marshal(rc, fake.rsp, sizeof(fake.rsp), &off), 0);
    fake.rsp_len = off;
}

static void finish_size(void)
{
    size_t off = 2;

    assert_int_equal(Tss2_MU_UINT32_Marshal((UINT32)fake.rsp_len, fake.rsp, 6, &off), 0);
}

/* TPM2_ReadPublic: outPublic, name (nameAlg || H(public)), qualifiedName. */
static void answer_read_public(void)
{
    TPM2B_PUBLIC pub = key_public();
    uint8_t area[sizeof(TPMT_PUBLIC)];
    size_t alen = 0, off;
    TPM2B_NAME name = {.size = 2 + SHA256_DIGEST_LENGTH};

    assert_int_equal(Tss2_MU_TPMT_PUBLIC_Marshal(&pub.publicArea, area, sizeof(area), &alen), 0);
    name.name[0] = 0x00;
    name.name[1] = 0x0b; /* TPM2_ALG_SHA256 */
    SHA256(area, alen, name.name + 2);
    put_header(TPM2_ST_NO_SESSIONS, TPM2_RC_SUCCESS);
    off = fake.rsp_len;
    assert_int_equal(Tss2_MU_TPM2B_PUBLIC_Marshal(&pub, fake.rsp, sizeof(fake.rsp), &off), 0);
    assert_int_equal(Tss2_MU_TPM2B_NAME_Marshal(&name, fake.rsp, sizeof(fake.rsp), &off), 0);
    assert_int_equal(Tss2_MU_TPM2B_NAME_Marshal(&name, fake.rsp, sizeof(fake.rsp), &off), 0);
    fake.rsp_len = off;
    finish_size();
}

/* TPM2_Sign: parameterSize, TPMT_SIGNATURE, one password-session response. */
static void answer_sign(void)
{
    TPMT_SIGNATURE sig;
    TPMS_AUTH_RESPONSE auth;
    size_t off, params_at;

    memset(&sig, 0, sizeof(sig));
    sig.sigAlg = TPM2_ALG_ECDSA;
    sig.signature.ecdsa.hash = TPM2_ALG_SHA256;
    sig.signature.ecdsa.signatureR.size = 32;
    memset(sig.signature.ecdsa.signatureR.buffer, 0x33, 32);
    sig.signature.ecdsa.signatureS.size = 32;
    memset(sig.signature.ecdsa.signatureS.buffer, 0x44, 32);
    memset(&auth, 0, sizeof(auth));
    auth.sessionAttributes = TPMA_SESSION_CONTINUESESSION;

    put_header(TPM2_ST_SESSIONS, TPM2_RC_SUCCESS);
    off = fake.rsp_len + 4;
    params_at = off;
    assert_int_equal(Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, fake.rsp, sizeof(fake.rsp), &off), 0);
    {
        size_t p = fake.rsp_len;

        assert_int_equal(
            Tss2_MU_UINT32_Marshal((UINT32)(off - params_at), fake.rsp, sizeof(fake.rsp), &p), 0);
    }
    assert_int_equal(Tss2_MU_TPMS_AUTH_RESPONSE_Marshal(&auth, fake.rsp, sizeof(fake.rsp), &off),
                     0);
    fake.rsp_len = off;
    finish_size();
}

static TSS2_RC fake_transmit(TSS2_TCTI_CONTEXT *ctx, size_t size, const uint8_t *cmd)
{
    size_t off = 6;
    TPM2_CC cc = 0;

    (void)ctx;
    if (size < 10 || Tss2_MU_UINT32_Unmarshal(cmd, size, &off, &cc) != TSS2_RC_SUCCESS)
        return TSS2_TCTI_RC_BAD_VALUE;
    fake.last_cc = cc;
    fake.n_total++;
    if (cc == TPM2_CC_ReadPublic)
        fake.n_read_public++;
    if (cc == TPM2_CC_Sign)
        fake.n_sign++;
    return TSS2_RC_SUCCESS;
}

static TSS2_RC fake_receive(TSS2_TCTI_CONTEXT *ctx, size_t *size, uint8_t *rsp, int32_t timeout)
{
    (void)ctx;
    (void)timeout;
    if (rsp == NULL) {
        *size = sizeof(fake.rsp); /* size query: an upper bound */
        return TSS2_RC_SUCCESS;
    }
    if (fake.step < fake.nsteps && fake.script[fake.step].cc == fake.last_cc) {
        TSS2_RC rc = fake.script[fake.step++].rc;

        if (rc == TCTI_IO_ERROR)
            return TCTI_IO_ERROR;
        put_header(TPM2_ST_NO_SESSIONS, rc);
        finish_size();
    } else if (fake.last_cc == TPM2_CC_ReadPublic) {
        answer_read_public();
    } else if (fake.last_cc == TPM2_CC_Sign) {
        answer_sign();
    } else {
        put_header(TPM2_ST_NO_SESSIONS, TPM2_RC_COMMAND_CODE);
        finish_size();
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

static void fake_reset(const STEP *script, size_t nsteps)
{
    memset(&fake, 0, sizeof(fake));
    fake.common.v1.magic = 0x46414b4554435449ull;
    fake.common.v1.version = 2;
    fake.common.v1.transmit = fake_transmit;
    fake.common.v1.receive = fake_receive;
    fake.common.v1.finalize = fake_finalize;
    fake.script = script;
    fake.nsteps = nsteps;
}

typedef struct {
    HWKEY_DEVICE *dev;
    HWKEY_BKEY *key;
} FIXTURE;

/* Open a device on the fake TCTI and load handle:0x81000002 (no faults yet). */
static void open_and_load(FIXTURE *fx, const STEP *script, size_t nsteps)
{
    static const char ref_text[] = "handle:0x81000002";
    HWKEY_KEYREF ref = {HWKEY_REF_TPM2_HANDLE, (const unsigned char *)ref_text,
                        sizeof(ref_text) - 1};

    fake_reset(script, nsteps);
    ERR_clear_error();
    fx->dev = hwkey_tpm2_open_with_tcti((TSS2_TCTI_CONTEXT *)&fake, 1);
    assert_non_null(fx->dev);
    assert_int_equal(hwkey_tpm2_backend.key_load(fx->dev, &ref, NULL, NULL, &fx->key), 1);
    assert_int_equal(fx->key->info.alg, HWKEY_ALG_EC);
    assert_int_equal(fx->key->info.curve_nid, NID_X9_62_prime256v1);
    assert_true((fx->key->info.flags & HWKEY_KEYF_SIGN) != 0);
}

static void close_all(FIXTURE *fx)
{
    hwkey_tpm2_backend.key_free(fx->key);
    hwkey_tpm2_backend.close(fx->dev);
}

static int sign_once(FIXTURE *fx)
{
    const HWKEY_SIGN_PARAMS params = {.scheme = HWKEY_SIG_ECDSA, .md_nid = NID_sha256};
    unsigned char digest[32], sig[128];
    size_t siglen = sizeof(sig);
    const unsigned char *p = sig;
    ECDSA_SIG *es;
    int ok;

    memset(digest, 0xab, sizeof(digest));
    ok = hwkey_tpm2_backend.sign(fx->key, &params, digest, sizeof(digest), sig, &siglen);
    if (ok) {
        /* The DER must carry the fake TPM's r and s. */
        es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
        assert_non_null(es);
        assert_int_equal(BN_num_bytes(ECDSA_SIG_get0_r(es)), 32);
        assert_int_equal(BN_num_bytes(ECDSA_SIG_get0_s(es)), 32);
        ECDSA_SIG_free(es);
    }
    return ok;
}

static void test_steady_state_one_command(void **state)
{
    FIXTURE fx;
    unsigned int before;

    (void)state;
    open_and_load(&fx, NULL, 0);
    /*
     * key_load of a handle: key closes its connection (no connection made
     * before a fork may be used after it), so the first signature opens the
     * handle again; from then on the key stays loaded.
     */
    assert_int_equal(sign_once(&fx), 1);
    before = fake.n_total;
    assert_int_equal(sign_once(&fx), 1);
    assert_int_equal(sign_once(&fx), 1);
    assert_int_equal(fake.n_total - before, 2); /* one TPM2_Sign each, nothing else */
    assert_int_equal(fake.n_sign, 3);
    close_all(&fx);
}

static void test_object_memory_then_success(void **state)
{
    static const STEP script[] = {{TPM2_CC_Sign, TPM2_RC_OBJECT_MEMORY}};
    FIXTURE fx;

    (void)state;
    open_and_load(&fx, script, 1);
    assert_int_equal(sign_once(&fx), 1);
    assert_int_equal(fake.step, 1);    /* the fault was served */
    assert_int_equal(fake.n_sign, 2);  /* and the command retried once */
    assert_int_equal(ERR_peek_error(), 0);
    close_all(&fx);
}

static void test_retry_then_success(void **state)
{
    static const STEP script[] = {{TPM2_CC_Sign, TPM2_RC_RETRY}, {TPM2_CC_Sign, TPM2_RC_RETRY}};
    FIXTURE fx;

    (void)state;
    open_and_load(&fx, script, 2);
    assert_int_equal(sign_once(&fx), 1);
    assert_int_equal(fake.step, 2);
    assert_int_equal(fake.n_sign, 3);
    assert_int_equal(ERR_peek_error(), 0);
    close_all(&fx);
}

static void test_object_memory_forever_is_busy(void **state)
{
    /* More faults than the 200 ms budget can retry: DEVICE_BUSY, not a hang. */
    static STEP script[64];
    FIXTURE fx;
    unsigned long err;

    (void)state;
    for (size_t i = 0; i < 64; i++)
        script[i] = (STEP){TPM2_CC_Sign, TPM2_RC_OBJECT_MEMORY};
    open_and_load(&fx, script, 64);
    assert_int_equal(sign_once(&fx), 0);
    err = ERR_get_error();
    assert_int_equal(ERR_GET_REASON(err), HWKEY_R_DEVICE_BUSY);
    assert_true(fake.n_sign > 3 && fake.n_sign < 64);
    assert_int_equal(ERR_peek_error(), 0); /* exactly one error line */
    close_all(&fx);
}

static void test_dropped_connection_unreachable(void **state)
{
    static const STEP script[] = {{TPM2_CC_Sign, TCTI_IO_ERROR}};
    FIXTURE fx;
    unsigned long err;
    const char *data = NULL;
    int flags = 0;

    (void)state;
    open_and_load(&fx, script, 1);
    assert_int_equal(sign_once(&fx), 0);
    err = ERR_get_error_all(NULL, NULL, NULL, &data, &flags);
    assert_int_equal(ERR_GET_REASON(err), HWKEY_R_DEVICE_UNREACHABLE);
    assert_non_null(strstr(data, "TPM2_Sign"));
    assert_int_equal(ERR_peek_error(), 0);
    /* The next operation reconnects and re-opens the key from its reference. */
    fake.n_read_public = 0;
    assert_int_equal(sign_once(&fx), 1);
    assert_true(fake.n_read_public >= 1);
    close_all(&fx);
}

/*
 * swtpm or tpm2-abrmd restarted while the process was idle: the first
 * command on the old connection fails with an I/O error.  That one error is
 * not the caller's: the operation reconnects once and succeeds, and the
 * error queue stays clean.
 */
static void test_stale_connection_retried_once(void **state)
{
    static const STEP script[] = {{TPM2_CC_Sign, TCTI_IO_ERROR}};
    FIXTURE fx;

    (void)state;
    open_and_load(&fx, NULL, 0);
    assert_int_equal(sign_once(&fx), 1); /* the connection has now served a command */
    fake.script = script;
    fake.nsteps = 1;
    fake.step = 0;
    fake.n_sign = 0;
    assert_int_equal(sign_once(&fx), 1);
    assert_int_equal(fake.step, 1);   /* the fault was served */
    assert_int_equal(fake.n_sign, 2); /* and the command ran again on a new context */
    assert_int_equal(ERR_peek_error(), 0);
    close_all(&fx);
}

static void test_auth_fail_reason(void **state)
{
    static const STEP script[] = {{TPM2_CC_Sign, TPM2_RC_AUTH_FAIL + TPM2_RC_S + TPM2_RC_1}};
    FIXTURE fx;
    unsigned long err;
    const char *data = NULL, *file = NULL, *func = NULL;
    int flags = 0, line = 0;

    (void)state;
    open_and_load(&fx, script, 1);
    assert_int_equal(sign_once(&fx), 0);
    err = ERR_get_error_all(&file, &line, &func, &data, &flags);
    assert_int_equal(ERR_GET_REASON(err), HWKEY_R_AUTH_FAILED);
    assert_non_null(strstr(data, "TPM_RC_AUTH_FAIL"));
    /* Exactly one error, located where TPM2_Sign was called, not in tpm2_error.c. */
    assert_int_equal(ERR_peek_error(), 0);
    assert_non_null(strstr(file, "tpm2_sign.c"));
    assert_true(line > 0);
    assert_int_equal(fake.n_sign, 1); /* never retried: retrying burns DA attempts */
    close_all(&fx);
}

static void test_rc_mapping(void **state)
{
    const char *file = NULL, *func = NULL;
    int line = 0, expected_line;

    (void)state;
    assert_int_equal(hwkey_tpm2_reason(TPM2_RC_BAD_AUTH + TPM2_RC_P + TPM2_RC_2),
                     HWKEY_R_AUTH_FAILED);
    assert_int_equal(hwkey_tpm2_reason(TPM2_RC_OBJECT_MEMORY), HWKEY_R_DEVICE_BUSY);
    assert_int_equal(hwkey_tpm2_reason(TSS2_TCTI_RC_LAYER | TSS2_BASE_RC_NO_CONNECTION),
                     HWKEY_R_DEVICE_UNREACHABLE);
    assert_int_equal(hwkey_tpm2_reason(TPM2_RC_INTEGRITY + TPM2_RC_P + TPM2_RC_1),
                     HWKEY_R_DEVICE_ERROR);
    /* A policy session that does not satisfy the key's authPolicy (PCR-bound keys). */
    assert_int_equal(hwkey_tpm2_reason(TPM2_RC_POLICY_FAIL + TPM2_RC_S + TPM2_RC_1),
                     HWKEY_R_POLICY_FAILED);
    assert_int_equal(hwkey_tpm2_reason(TPM2_RC_PCR_CHANGED), HWKEY_R_POLICY_FAILED);
    ERR_clear_error();
    expected_line = __LINE__ + 1;
    hwkey_tpm2_raise_load_rc(TPM2_RC_INTEGRITY + TPM2_RC_P + TPM2_RC_1, "loading");
    assert_int_equal(ERR_GET_REASON(ERR_get_error_all(&file, &line, &func, NULL, NULL)),
                     HWKEY_R_KEY_FILE_INVALID);
    assert_int_equal(ERR_peek_error(), 0);
    /* The caller's location, whichever path of the function raised it. */
    assert_non_null(strstr(file, "test_tpm2_errors.c"));
    assert_int_equal(line, expected_line);
    assert_string_equal(func, "test_rc_mapping");
    expected_line = __LINE__ + 1;
    hwkey_tpm2_raise_load_rc(TPM2_RC_AUTH_FAIL + TPM2_RC_S + TPM2_RC_1, "loading");
    assert_int_equal(ERR_GET_REASON(ERR_get_error_all(&file, &line, NULL, NULL, NULL)),
                     HWKEY_R_AUTH_FAILED);
    assert_int_equal(line, expected_line);
    /* One list of "busy" answers: what is retried is what is reported as busy. */
    assert_int_equal(hwkey_tpm2_rc_busy(TPM2_RC_OBJECT_HANDLES), 1);
    assert_int_equal(hwkey_tpm2_rc_busy(TPM2_RC_SESSION_MEMORY), 1);
    assert_int_equal(hwkey_tpm2_rc_busy(TPM2_RC_AUTH_FAIL + TPM2_RC_S + TPM2_RC_1), 0);
    assert_int_equal(hwkey_tpm2_rc_busy(TSS2_TCTI_RC_LAYER | TSS2_BASE_RC_IO_ERROR), 0);
    for (TSS2_RC rc = 0x900; rc < 0xa00; rc++)
        if (hwkey_tpm2_rc_busy(rc))
            assert_int_equal(hwkey_tpm2_reason(rc), HWKEY_R_DEVICE_BUSY);
    assert_int_equal(hwkey_tpm2_tcti_is_rm("device:/dev/tpmrm0"), 1);
    assert_int_equal(hwkey_tpm2_tcti_is_rm("tabrmd:bus_type=session"), 1);
    assert_int_equal(hwkey_tpm2_tcti_is_rm("device:/dev/tpm0"), 0);
    assert_int_equal(hwkey_tpm2_tcti_is_rm("swtpm:host=127.0.0.1,port=2321"), 0);
    assert_int_equal(hwkey_tpm2_tcti_is_rm("mssim:"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steady_state_one_command),
        cmocka_unit_test(test_object_memory_then_success),
        cmocka_unit_test(test_retry_then_success),
        cmocka_unit_test(test_object_memory_forever_is_busy),
        cmocka_unit_test(test_dropped_connection_unreachable),
        cmocka_unit_test(test_stale_connection_retried_once),
        cmocka_unit_test(test_auth_fail_reason),
        cmocka_unit_test(test_rc_mapping),
    };

    setenv("TSS2_LOG", "all+NONE", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
