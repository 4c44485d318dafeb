/*
 * The TPM backend's error paths without a TPM: a fake TCTI
 * (test/unit/fakes/fake_tcti.c) answers ESAPI's commands with canned
 * responses, and a script injects TPM_RC_OBJECT_MEMORY, TPM_RC_RETRY or a
 * dropped connection at chosen commands.
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
#include "../../fakes/fake_tcti.h"
#include "util/error.h"

#define KEY_HANDLE 0x81000002u
#define TCTI_IO_ERROR FAKE_TCTI_IO_ERROR

typedef FAKE_TCTI_STEP STEP;

static TPM2B_PUBLIC key_public(void)
{
    TPM2B_PUBLIC pub;

    memset(&pub, 0, sizeof(pub));
    pub.publicArea.type = TPM2_ALG_ECC;
    pub.publicArea.nameAlg = TPM2_ALG_SHA256;
    pub.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                      TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                                      TPMA_OBJECT_SIGN_ENCRYPT;
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

/* TPM2_ReadPublic: outPublic, name (nameAlg || H(public)), qualifiedName. */
static void answer_read_public(const uint8_t *cmd, size_t len)
{
    TPM2B_PUBLIC pub = key_public();
    uint8_t area[sizeof(TPMT_PUBLIC)], *rsp;
    size_t alen = 0, size, off;
    TPM2B_NAME name = {.size = 2 + SHA256_DIGEST_LENGTH};

    (void)cmd;
    (void)len;
    if (Tss2_MU_TPMT_PUBLIC_Marshal(&pub.publicArea, area, sizeof(area), &alen) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    name.name[0] = 0x00;
    name.name[1] = 0x0b; /* TPM2_ALG_SHA256 */
    SHA256(area, alen, name.name + 2);
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_SUCCESS);
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_TPM2B_PUBLIC_Marshal(&pub, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (Tss2_MU_TPM2B_NAME_Marshal(&name, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (Tss2_MU_TPM2B_NAME_Marshal(&name, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_finish();
}

/* TPM2_Sign: parameterSize, TPMT_SIGNATURE, one password-session response. */
static void answer_sign(const uint8_t *cmd, size_t len)
{
    TPMT_SIGNATURE sig;
    uint8_t *rsp;
    size_t size, off;

    (void)cmd;
    (void)len;
    memset(&sig, 0, sizeof(sig));
    sig.sigAlg = TPM2_ALG_ECDSA;
    sig.signature.ecdsa.hash = TPM2_ALG_SHA256;
    sig.signature.ecdsa.signatureR.size = 32;
    memset(sig.signature.ecdsa.signatureR.buffer, 0x33, 32);
    sig.signature.ecdsa.signatureS.size = 32;
    memset(sig.signature.ecdsa.signatureS.buffer, 0x44, 32);
    fake_tcti_rsp_header(TPM2_ST_SESSIONS, TPM2_RC_SUCCESS);
    fake_tcti_rsp_params_begin();
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_params_end();
    fake_tcti_rsp_finish();
}

/* The fake TPM (test/unit/fakes/fake_tcti.c) with its script; counters through fake_tcti_count. */
static TSS2_TCTI_CONTEXT *fake_reset(const STEP *script, size_t nsteps)
{
    TSS2_TCTI_CONTEXT *tcti = fake_tcti_reset(script, nsteps);

    fake_tcti_on(TPM2_CC_ReadPublic, answer_read_public);
    fake_tcti_on(TPM2_CC_Sign, answer_sign);
    return tcti;
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

    TSS2_TCTI_CONTEXT *tcti = fake_reset(script, nsteps);

    ERR_clear_error();
    fx->dev = hwkey_tpm2_open_with_tcti(tcti, 1);
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
    assert_int_equal(fake_tcti_broken(), 0);
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
    before = fake_tcti_count(0);
    assert_int_equal(sign_once(&fx), 1);
    assert_int_equal(sign_once(&fx), 1);
    assert_int_equal(fake_tcti_count(0) - before, 2); /* one TPM2_Sign each, nothing else */
    assert_int_equal(fake_tcti_count(TPM2_CC_Sign), 3);
    close_all(&fx);
}

static void test_object_memory_then_success(void **state)
{
    static const STEP script[] = {{TPM2_CC_Sign, TPM2_RC_OBJECT_MEMORY}};
    FIXTURE fx;

    (void)state;
    open_and_load(&fx, script, 1);
    assert_int_equal(sign_once(&fx), 1);
    assert_int_equal(fake_tcti_served(), 1);            /* the fault was served */
    assert_int_equal(fake_tcti_count(TPM2_CC_Sign), 2); /* and the command retried once */
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
    assert_int_equal(fake_tcti_served(), 2);
    assert_int_equal(fake_tcti_count(TPM2_CC_Sign), 3);
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
    assert_true(fake_tcti_count(TPM2_CC_Sign) > 3 && fake_tcti_count(TPM2_CC_Sign) < 64);
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
    unsigned int reads;

    (void)state;
    open_and_load(&fx, script, 1);
    assert_int_equal(sign_once(&fx), 0);
    err = ERR_get_error_all(NULL, NULL, NULL, &data, &flags);
    assert_int_equal(ERR_GET_REASON(err), HWKEY_R_DEVICE_UNREACHABLE);
    assert_non_null(strstr(data, "TPM2_Sign"));
    assert_int_equal(ERR_peek_error(), 0);
    /* The next operation reconnects and re-opens the key from its reference. */
    reads = fake_tcti_count(TPM2_CC_ReadPublic);
    assert_int_equal(sign_once(&fx), 1);
    assert_true(fake_tcti_count(TPM2_CC_ReadPublic) > reads);
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
    unsigned int signs;

    (void)state;
    open_and_load(&fx, NULL, 0);
    assert_int_equal(sign_once(&fx), 1); /* the connection has now served a command */
    fake_tcti_script(script, 1);
    signs = fake_tcti_count(TPM2_CC_Sign);
    assert_int_equal(sign_once(&fx), 1);
    assert_int_equal(fake_tcti_served(), 1);                    /* the fault was served */
    assert_int_equal(fake_tcti_count(TPM2_CC_Sign) - signs, 2); /* and ran again, new context */
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
    assert_int_equal(fake_tcti_count(TPM2_CC_Sign), 1); /* never retried: burns DA attempts */
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
