/*
 * Managing persistent TPM keys (src/backend/tpm2/tpm2_manage.c) without a
 * TPM: a fake TCTI (test/unit/fakes/fake_tcti.h) answers TPM2_GetCapability,
 * TPM2_ReadPublic, TPM2_EvictControl and TPM2_GetRandom from a small table
 * of persistent objects.
 *   - list: every usable key with its type and size, the SRK labelled,
 *     a sealed object skipped quietly, pages of handles followed to the end,
 *     a handle filter; a failing TPM2_GetCapability is one error
 *   - delete: TPM2_EvictControl of exactly that handle; the SRK and key
 *     files refused before any command; a missing handle is KEY_NOT_FOUND;
 *     an owner-auth failure is AUTH_FAILED and the key stays
 *   - random: the TPM's bytes, gathered over several short answers;
 *     TPM_RC_RETRY retried; an empty answer is a DEVICE_ERROR
 *   - import (tpm2_import.c): EC P-256 and RSA-2048 software keys go to
 *     TPM2_Import under the SRK found by TPM2_GetCapability, with the
 *     software key's public area (no fixedTPM/fixedParent, noDA without an
 *     auth value), an outer wrapper only (no inner key, symmetricAlg NULL)
 *     and a seed; the key file holds the TPM's private blob, the public
 *     area, the parent and emptyAuth.  (That the duplicate decrypts to the
 *     key is test_tpm2_dup's.)  TPM2_Import refused, a persistent handle
 *     asked, a key type a TPM cannot hold: one error, no key file.
 * Not here: sealing and unsealing data keys (tpm2_seal.c), which run
 * through a salted HMAC session with parameter encryption: test_tpm2_seal.c,
 * over the same fake TCTI with fake_tpm2_session.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/sha.h>
#include <tss2/tss2_mu.h>

#include "backend/tpm2/tpm2_internal.h"
#include "../../fakes/fake_tcti.h"
#include "util/error.h"
#include "util/tss2_keyfile.h"
#include "../../fakes/one_error.h"

#define SRK 0x81000001u
#define EC_KEY 0x81000002u
#define RSA_KEY 0x81000003u
#define SEALED 0x81000010u
#define RANDOM_CHUNK 20 /* the fake TPM's longest TPM2_GetRandom answer */

/* --- the fake TPM's persistent objects --------------------------------------- */

static struct {
    TPM2_HANDLE handle;
    TPM2B_PUBLIC pub;
    int present;
} objects[4];
static UINT32 page_size = TPM2_MAX_CAP_HANDLES;
static TPM2_HANDLE evicted;
static EVP_PKEY *srk_key; /* the SRK's key pair: a real point for the import seed */

static TPM2B_PUBLIC ecc_public(TPMA_OBJECT attrs)
{
    TPM2B_PUBLIC pub;

    memset(&pub, 0, sizeof(pub));
    pub.publicArea.type = TPM2_ALG_ECC;
    pub.publicArea.nameAlg = TPM2_ALG_SHA256;
    pub.publicArea.objectAttributes = attrs;
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

/* A storage key: restricted decrypt, AES-128-CFB, the point of srk_key. */
static void srk_public(TPM2B_PUBLIC *pub, TPMA_OBJECT attrs)
{
    unsigned char pt[65];
    size_t ptlen = 0;

    *pub = ecc_public(attrs | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT);
    pub->publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
    pub->publicArea.parameters.eccDetail.symmetric.keyBits.aes = 128;
    pub->publicArea.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    if (EVP_PKEY_get_octet_string_param(srk_key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof(pt),
                                        &ptlen) &&
        ptlen == sizeof(pt)) {
        memcpy(pub->publicArea.unique.ecc.x.buffer, pt + 1, 32);
        memcpy(pub->publicArea.unique.ecc.y.buffer, pt + 33, 32);
    }
}

static void rsa_public(TPM2B_PUBLIC *pub, TPMA_OBJECT attrs)
{
    memset(pub, 0, sizeof(*pub));
    pub->publicArea.type = TPM2_ALG_RSA;
    pub->publicArea.nameAlg = TPM2_ALG_SHA256;
    pub->publicArea.objectAttributes = attrs | TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT;
    pub->publicArea.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
    pub->publicArea.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
    pub->publicArea.parameters.rsaDetail.keyBits = 2048;
    pub->publicArea.unique.rsa.size = 256;
    memset(pub->publicArea.unique.rsa.buffer, 0xc5, 256);
}

/* Sealed data (a keyedHash object): not a key hwkey can use. */
static void sealed_public(TPM2B_PUBLIC *pub)
{
    memset(pub, 0, sizeof(*pub));
    pub->publicArea.type = TPM2_ALG_KEYEDHASH;
    pub->publicArea.nameAlg = TPM2_ALG_SHA256;
    pub->publicArea.objectAttributes =
        TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_USERWITHAUTH;
    pub->publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
    pub->publicArea.unique.keyedHash.size = 32;
}

static void objects_reset(void)
{
    const TPMA_OBJECT key = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                            TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH;

    memset(objects, 0, sizeof(objects));
    objects[0].handle = SRK;
    srk_public(&objects[0].pub, key);
    objects[1].handle = EC_KEY;
    objects[1].pub = ecc_public(key | TPMA_OBJECT_SIGN_ENCRYPT);
    objects[2].handle = RSA_KEY;
    rsa_public(&objects[2].pub, key);
    objects[3].handle = SEALED;
    sealed_public(&objects[3].pub);
    for (size_t i = 0; i < 4; i++)
        objects[i].present = 1;
    page_size = TPM2_MAX_CAP_HANDLES;
    evicted = 0;
}

static TPM2B_PUBLIC *object_at(TPM2_HANDLE h)
{
    for (size_t i = 0; i < 4; i++)
        if (objects[i].present && objects[i].handle == h)
            return &objects[i].pub;
    return NULL;
}

/* --- responders ------------------------------------------------------------------ */

static void answer_rc(TSS2_RC rc)
{
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, rc);
    fake_tcti_rsp_finish();
}

/* TPM2_ReadPublic: outPublic, name (nameAlg || H(publicArea)), qualifiedName. */
static void answer_read_public(const uint8_t *cmd, size_t len)
{
    TPM2B_PUBLIC *pub = object_at(fake_tcti_cmd_handle(cmd, len));
    uint8_t area[sizeof(TPMT_PUBLIC)], *rsp;
    size_t alen = 0, size, off;
    TPM2B_NAME name = {.size = 2 + SHA256_DIGEST_LENGTH};

    if (pub == NULL) {
        answer_rc(TPM2_RC_HANDLE + TPM2_RC_1); /* what a TPM answers: no object */
        return;
    }
    if (Tss2_MU_TPMT_PUBLIC_Marshal(&pub->publicArea, area, sizeof(area), &alen) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    name.name[0] = 0x00;
    name.name[1] = 0x0b; /* TPM2_ALG_SHA256 */
    SHA256(area, alen, name.name + 2);
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_SUCCESS);
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_TPM2B_PUBLIC_Marshal(pub, rsp, size, &off) != 0) {
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

/* TPM2_GetCapability(TPM2_CAP_HANDLES, first, count): at most page_size handles a page. */
static void answer_get_capability(const uint8_t *cmd, size_t len)
{
    size_t in = 10, size, off;
    UINT32 cap = 0, first = 0, count = 0;
    TPMS_CAPABILITY_DATA data;
    TPMI_YES_NO more = TPM2_NO;
    uint8_t *rsp;

    if (Tss2_MU_UINT32_Unmarshal(cmd, len, &in, &cap) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (Tss2_MU_UINT32_Unmarshal(cmd, len, &in, &first) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (Tss2_MU_UINT32_Unmarshal(cmd, len, &in, &count) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (cap != TPM2_CAP_HANDLES) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    memset(&data, 0, sizeof(data));
    data.capability = TPM2_CAP_HANDLES;
    for (size_t i = 0; i < 4; i++) {
        if (!objects[i].present || objects[i].handle < first)
            continue;
        if (data.data.handles.count == page_size || data.data.handles.count == count) {
            more = TPM2_YES;
            break;
        }
        data.data.handles.handle[data.data.handles.count++] = objects[i].handle;
    }
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_SUCCESS);
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_BYTE_Marshal(more, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (Tss2_MU_TPMS_CAPABILITY_DATA_Marshal(&data, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_finish();
}

/* TPM2_EvictControl(auth, object, session, persistentHandle): the object goes. */
static void answer_evict_control(const uint8_t *cmd, size_t len)
{
    size_t in = 18, size, off;
    UINT32 auth_size = 0;
    TPM2_HANDLE persistent = 0;

    /* header (10), auth handle, object handle, authorizationSize, sessions, parameter */
    if (Tss2_MU_UINT32_Unmarshal(cmd, len, &in, &auth_size) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    in += auth_size;
    if (Tss2_MU_UINT32_Unmarshal(cmd, len, &in, &persistent) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (fake_tcti_cmd_handle(cmd, len) != TPM2_RH_OWNER) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    evicted = persistent;
    for (size_t i = 0; i < 4; i++)
        if (objects[i].handle == persistent)
            objects[i].present = 0;
    fake_tcti_rsp_header(TPM2_ST_SESSIONS, TPM2_RC_SUCCESS);
    fake_tcti_rsp_buf(&size, &off);
    fake_tcti_rsp_params_begin();
    fake_tcti_rsp_params_end();
    fake_tcti_rsp_finish();
}

/* TPM2_GetRandom: bytes i = 0x40 + (running count), at most RANDOM_CHUNK per answer. */
static unsigned int random_served;

static void answer_get_random(const uint8_t *cmd, size_t len)
{
    size_t in = 10, size, off;
    UINT16 want = 0;
    TPM2B_DIGEST d = {0};
    uint8_t *rsp;

    if (Tss2_MU_UINT16_Unmarshal(cmd, len, &in, &want) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    d.size = want < RANDOM_CHUNK ? want : RANDOM_CHUNK;
    for (UINT16 i = 0; i < d.size; i++)
        d.buffer[i] = (BYTE)(0x40 + random_served++);
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_SUCCESS);
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_TPM2B_DIGEST_Marshal(&d, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_finish();
}

static void answer_get_random_empty(const uint8_t *cmd, size_t len)
{
    size_t size, off;
    uint8_t *rsp;

    (void)cmd;
    (void)len;
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_SUCCESS);
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_UINT16_Marshal(0, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_finish();
}

/* --- fixture ----------------------------------------------------------------------- */

static HWKEY_DEVICE *dev;

static void open_device(const FAKE_TCTI_STEP *script, size_t nsteps)
{
    TSS2_TCTI_CONTEXT *tcti = fake_tcti_reset(script, nsteps);

    objects_reset();
    random_served = 0;
    fake_tcti_on(TPM2_CC_ReadPublic, answer_read_public);
    fake_tcti_on(TPM2_CC_GetCapability, answer_get_capability);
    fake_tcti_on(TPM2_CC_EvictControl, answer_evict_control);
    fake_tcti_on(TPM2_CC_GetRandom, answer_get_random);
    ERR_clear_error();
    dev = hwkey_tpm2_open_with_tcti(tcti, 1);
    assert_non_null(dev);
}

static int teardown(void **state)
{
    (void)state;
    hwkey_tpm2_backend.close(dev);
    dev = NULL;
    ERR_clear_error();
    /* A responder that could not parse a command says so here, outside the TPM lock. */
    assert_int_equal(fake_tcti_broken(), 0);
    return 0;
}

/* --- list --------------------------------------------------------------------------- */

typedef struct {
    size_t n;
    char ref[8][24];
    HWKEY_KEYINFO info[8];
    const char *label[8];
} SEEN;

static int collect(const HWKEY_LISTED_KEY *k, void *arg)
{
    SEEN *s = arg;

    if (s->n < 8) {
        strncpy(s->ref[s->n], k->ref, sizeof(s->ref[0]) - 1);
        s->info[s->n] = k->info;
        s->label[s->n] = k->label;
        s->n++;
    }
    return 1;
}

static void assert_listed_all(const SEEN *s)
{
    assert_int_equal(s->n, 3); /* the sealed object is not a key */
    assert_string_equal(s->ref[0], "handle:0x81000001");
    assert_non_null(s->label[0]);
    assert_string_equal(s->label[0], "SRK (storage parent)");
    assert_string_equal(s->ref[1], "handle:0x81000002");
    assert_int_equal(s->info[1].alg, HWKEY_ALG_EC);
    assert_int_equal(s->info[1].curve_nid, NID_X9_62_prime256v1);
    assert_true((s->info[1].flags & HWKEY_KEYF_SIGN) != 0);
    assert_null(s->label[1]);
    assert_string_equal(s->ref[2], "handle:0x81000003");
    assert_int_equal(s->info[2].alg, HWKEY_ALG_RSA);
    assert_int_equal(s->info[2].bits, 2048);
}

static void test_list_all(void **state)
{
    SEEN seen = {0};

    (void)state;
    open_device(NULL, 0);
    assert_int_equal(hwkey_tpm2_backend.key_list(dev, NULL, collect, &seen), 1);
    assert_int_equal(ERR_peek_error(), 0);
    assert_listed_all(&seen);
    assert_int_equal(fake_tcti_count(TPM2_CC_GetCapability), 1);
}

/* A TPM that hands out one handle per TPM2_GetCapability: every page is read. */
static void test_list_pages(void **state)
{
    SEEN seen = {0};

    (void)state;
    open_device(NULL, 0);
    page_size = 1;
    assert_int_equal(hwkey_tpm2_backend.key_list(dev, "tpm2", collect, &seen), 1);
    assert_listed_all(&seen);
    assert_true(fake_tcti_count(TPM2_CC_GetCapability) >= 4);
}

static void test_list_filter_and_errors(void **state)
{
    static const FAKE_TCTI_STEP fail[] = {{TPM2_CC_GetCapability, TPM2_RC_FAILURE}};
    SEEN seen = {0};

    (void)state;
    open_device(NULL, 0);
    assert_int_equal(hwkey_tpm2_backend.key_list(dev, "handle:0x81000003", collect, &seen), 1);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.ref[0], "handle:0x81000003");
    assert_int_equal(hwkey_tpm2_backend.key_list(dev, "handle:0x8100", collect, &seen), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "is not a persistent TPM handle");
    fake_tcti_script(fail, 1);
    seen.n = 0;
    assert_int_equal(hwkey_tpm2_backend.key_list(dev, NULL, collect, &seen), 0);
    assert_one_error(HWKEY_R_DEVICE_ERROR, "listing the TPM's persistent handles");
    assert_int_equal(seen.n, 0);
}

/* --- delete ------------------------------------------------------------------------- */

static int delete_handle(const char *text)
{
    HWKEY_KEYREF ref = {HWKEY_REF_TPM2_HANDLE, (const unsigned char *)text, strlen(text)};

    return hwkey_tpm2_backend.key_delete(dev, &ref);
}

static void test_delete(void **state)
{
    (void)state;
    open_device(NULL, 0);
    assert_int_equal(delete_handle("handle:0x81000002"), 1);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(evicted, EC_KEY);
    assert_null(object_at(EC_KEY));
    assert_int_equal(fake_tcti_count(TPM2_CC_EvictControl), 1);
    /* Gone: a second delete finds nothing there. */
    assert_int_equal(delete_handle("handle:0x81000002"), 0);
    assert_one_error(HWKEY_R_KEY_NOT_FOUND, "no key at persistent handle 0x81000002");
    assert_int_equal(fake_tcti_count(TPM2_CC_EvictControl), 1);
}

static void test_delete_refusals(void **state)
{
    static const unsigned char der[] = {0x30, 0x00};
    static const FAKE_TCTI_STEP bad_auth[] = {
        {TPM2_CC_EvictControl, TPM2_RC_BAD_AUTH + TPM2_RC_S + TPM2_RC_1},
    };
    HWKEY_KEYREF file = {HWKEY_REF_TSS2_KEYFILE, der, sizeof(der)};

    (void)state;
    open_device(NULL, 0);
    /* The parent of every key file: refused before any TPM command. */
    assert_int_equal(delete_handle("handle:0x81000001"), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "0x81000001 is the parent of other keys");
    assert_int_equal(hwkey_tpm2_backend.key_delete(dev, &file), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "a key file is not stored in the TPM");
    assert_int_equal(delete_handle("handle:0x01000002"), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "is not a persistent TPM handle");
    assert_int_equal(fake_tcti_count(0), 0);
    assert_int_equal(delete_handle("handle:0x81000005"), 0);
    assert_one_error(HWKEY_R_KEY_NOT_FOUND, "no key at persistent handle 0x81000005");
    /* Owner auth refused: one AUTH_FAILED naming the command; the key stays. */
    fake_tcti_script(bad_auth, 1);
    assert_int_equal(delete_handle("handle:0x81000003"), 0);
    assert_one_error(HWKEY_R_AUTH_FAILED, "evicting persistent key 0x81000003");
    assert_int_equal(fake_tcti_served(), 1);
    assert_non_null(object_at(RSA_KEY));
}

/* --- random ------------------------------------------------------------------------- */

static void test_random(void **state)
{
    static const FAKE_TCTI_STEP retry[] = {{TPM2_CC_GetRandom, TPM2_RC_RETRY}};
    unsigned char buf[50];

    (void)state;
    open_device(retry, 1);
    assert_int_equal(hwkey_tpm2_random(dev, buf, sizeof(buf)), 1);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(fake_tcti_served(), 1); /* TPM_RC_RETRY, then retried */
    /* 50 bytes from answers of at most 20: three answers, the TPM's bytes in order. */
    assert_int_equal(fake_tcti_count(TPM2_CC_GetRandom), 1 + 3);
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0x40 + i);
    fake_tcti_on(TPM2_CC_GetRandom, answer_get_random_empty);
    assert_int_equal(hwkey_tpm2_random(dev, buf, sizeof(buf)), 0);
    assert_one_error(HWKEY_R_DEVICE_ERROR, "TPM2_GetRandom returned no bytes");
}

/* --- import --------------------------------------------------------------------------- */

/* What the fake TPM received in the last TPM2_Import. */
static struct {
    TPM2_HANDLE parent;
    TPM2B_DATA encryption_key;
    TPM2B_PUBLIC object;
    TPM2B_PRIVATE duplicate;
    TPM2B_ENCRYPTED_SECRET seed;
    TPMT_SYM_DEF_OBJECT sym;
} imported;
static const BYTE tpm_private[] = "the TPM's outPrivate";

/* TPM2_Import(parent, session, encryptionKey, objectPublic, duplicate, inSymSeed, symmetricAlg). */
static void answer_import(const uint8_t *cmd, size_t len)
{
    size_t in = 14, size, off;
    UINT32 auth_size = 0;
    TPM2B_PRIVATE out = {.size = sizeof(tpm_private)};
    uint8_t *rsp;

    memset(&imported, 0, sizeof(imported));
    imported.parent = fake_tcti_cmd_handle(cmd, len);
    if (Tss2_MU_UINT32_Unmarshal(cmd, len, &in, &auth_size) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    in += auth_size;
    if (Tss2_MU_TPM2B_DATA_Unmarshal(cmd, len, &in, &imported.encryption_key) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(cmd, len, &in, &imported.object) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(cmd, len, &in, &imported.duplicate) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(cmd, len, &in, &imported.seed) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (Tss2_MU_TPMT_SYM_DEF_OBJECT_Unmarshal(cmd, len, &in, &imported.sym) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (in != len) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    memcpy(out.buffer, tpm_private, sizeof(tpm_private));
    fake_tcti_rsp_header(TPM2_ST_SESSIONS, TPM2_RC_SUCCESS);
    fake_tcti_rsp_params_begin();
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_TPM2B_PRIVATE_Marshal(&out, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_params_end();
    fake_tcti_rsp_finish();
}

/* The key file of out, checked against what the TPM received and the software key. */
static void check_imported_file(const HWKEY_REFBLOB *out, int empty_auth)
{
    HWKEY_TSS2_KEYFILE kf;
    TPM2B_PUBLIC pub = {0}; /* tss2-mu reads a TPM2B's size before unmarshalling into it */
    TPM2B_PRIVATE priv = {0};
    size_t off = 0;
    TPMA_OBJECT attrs = imported.object.publicArea.objectAttributes;

    assert_int_equal(out->kind, HWKEY_REF_TSS2_KEYFILE);
    assert_int_equal(hwkey_tss2_keyfile_decode(out->data, out->len, &kf), 1);
    assert_int_equal(kf.type, HWKEY_TSS2_LOADABLE);
    assert_int_equal(kf.parent, SRK);
    assert_int_equal(kf.empty_auth, empty_auth);
    assert_int_equal(Tss2_MU_TPM2B_PUBLIC_Unmarshal(kf.pubkey, kf.pubkey_len, &off, &pub), 0);
    assert_int_equal(off, kf.pubkey_len);
    /* Compared marshalled: a struct's unused union and buffer bytes are not the key. */
    {
        uint8_t a[sizeof(TPM2B_PUBLIC)], b[sizeof(TPM2B_PUBLIC)];
        size_t alen = 0, blen = 0;

        assert_int_equal(Tss2_MU_TPM2B_PUBLIC_Marshal(&pub, a, sizeof(a), &alen), 0);
        assert_int_equal(Tss2_MU_TPM2B_PUBLIC_Marshal(&imported.object, b, sizeof(b), &blen), 0);
        assert_int_equal(alen, blen);
        assert_memory_equal(a, b, alen);
    }
    off = 0;
    assert_int_equal(Tss2_MU_TPM2B_PRIVATE_Unmarshal(kf.privkey, kf.privkey_len, &off, &priv), 0);
    assert_int_equal(priv.size, sizeof(tpm_private));
    assert_memory_equal(priv.buffer, tpm_private, sizeof(tpm_private));
    hwkey_tss2_keyfile_clear(&kf);
    /* Under the SRK, outer wrapper only, a seed for the SRK's ECDH. */
    assert_int_equal(imported.parent, SRK);
    assert_int_equal(imported.encryption_key.size, 0);
    assert_int_equal(imported.sym.algorithm, TPM2_ALG_NULL);
    assert_true(imported.duplicate.size > 32);
    assert_int_equal(imported.seed.size, 2 + 32 + 2 + 32); /* an ephemeral P-256 point */
    /* Part 3: an imported object is neither fixedTPM nor fixedParent nor TPM-generated. */
    assert_int_equal(
        attrs & (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN),
        0);
    assert_true((attrs & TPMA_OBJECT_SIGN_ENCRYPT) != 0);
    assert_true((attrs & TPMA_OBJECT_USERWITHAUTH) != 0);
    assert_int_equal((attrs & TPMA_OBJECT_NODA) != 0, empty_auth);
}

static void test_import_ec_and_rsa(void **state)
{
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    HWKEY_GENOPTS with_auth = {.auth = "pw", .auth_len = 2};
    HWKEY_REFBLOB out = {0};
    unsigned char pt[65], n[256];
    size_t ptlen = 0;
    BIGNUM *bn = NULL;

    (void)state;
    open_device(NULL, 0);
    fake_tcti_on(TPM2_CC_Import, answer_import);
    assert_int_equal(hwkey_tpm2_backend.key_import(dev, ec, NULL, &out), 1);
    assert_int_equal(ERR_peek_error(), 0);
    check_imported_file(&out, 1);
    /* The public area is the software key's. */
    assert_int_equal(imported.object.publicArea.type, TPM2_ALG_ECC);
    assert_int_equal(imported.object.publicArea.parameters.eccDetail.curveID, TPM2_ECC_NIST_P256);
    assert_int_equal(EVP_PKEY_get_octet_string_param(ec, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
                                                     sizeof(pt), &ptlen),
                     1);
    assert_memory_equal(imported.object.publicArea.unique.ecc.x.buffer, pt + 1, 32);
    assert_memory_equal(imported.object.publicArea.unique.ecc.y.buffer, pt + 33, 32);
    /* The SRK was found through TPM2_GetCapability, then read. */
    assert_true(fake_tcti_count(TPM2_CC_GetCapability) >= 1);
    assert_int_equal(fake_tcti_count(TPM2_CC_Import), 1);
    OPENSSL_free(out.data);

    assert_int_equal(hwkey_tpm2_backend.key_import(dev, rsa, &with_auth, &out), 1);
    check_imported_file(&out, 0);
    assert_int_equal(imported.object.publicArea.type, TPM2_ALG_RSA);
    assert_int_equal(imported.object.publicArea.parameters.rsaDetail.keyBits, 2048);
    assert_int_equal(imported.object.publicArea.parameters.rsaDetail.exponent, 0); /* 65537 */
    assert_int_equal(EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &bn), 1);
    assert_int_equal(BN_bn2binpad(bn, n, sizeof(n)), 256);
    assert_int_equal(imported.object.publicArea.unique.rsa.size, 256);
    assert_memory_equal(imported.object.publicArea.unique.rsa.buffer, n, 256);
    BN_free(bn);
    OPENSSL_free(out.data);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

static void test_import_refusals(void **state)
{
    static const FAKE_TCTI_STEP refused[] = {
        {TPM2_CC_Import, TPM2_RC_INTEGRITY + TPM2_RC_P + TPM2_RC_3},
    };
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    HWKEY_GENOPTS persist = {.persist_handle = 0x81000020};
    HWKEY_REFBLOB out = {0};

    (void)state;
    open_device(NULL, 0);
    fake_tcti_on(TPM2_CC_Import, answer_import);
    /* Refused before any TPM command. */
    assert_int_equal(hwkey_tpm2_backend.key_import(dev, ec, &persist, &out), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "imported TPM keys are key files");
    assert_int_equal(hwkey_tpm2_backend.key_import(dev, ed, NULL, &out), 0);
    assert_one_error(HWKEY_R_UNSUPPORTED_ALGORITHM,
                     "ED25519 keys cannot be imported into a TPM (TPM keys are EC or RSA)");
    assert_int_equal(hwkey_tpm2_backend.key_import(dev, k1, NULL, &out), 0);
    assert_one_error(HWKEY_R_UNSUPPORTED_ALGORITHM, "EC curve secp256k1 is not a TPM curve");
    assert_int_equal(fake_tcti_count(0), 0);
    /* The TPM refuses the blob: one error naming TPM2_Import and its code, no key file. */
    fake_tcti_script(refused, 1);
    assert_int_equal(hwkey_tpm2_backend.key_import(dev, ec, NULL, &out), 0);
    assert_one_error(HWKEY_R_DEVICE_ERROR, "importing the key into the TPM (TPM2_Import): "
                                           "TPM_RC_INTEGRITY");
    assert_null(out.data);
    assert_int_equal(fake_tcti_served(), 1);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(k1);
}

int main(void)
{
#define T(name) cmocka_unit_test_teardown(name, teardown)
    const struct CMUnitTest tests[] = {
        T(test_list_all),
        T(test_list_pages),
        T(test_list_filter_and_errors),
        T(test_delete),
        T(test_delete_refusals),
        T(test_random),
        T(test_import_ec_and_rsa),
        T(test_import_refusals),
    };
#undef T

    int failed;

    setenv("TSS2_LOG", "all+NONE", 1);
    srk_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    EVP_PKEY_free(srk_key);
    return failed;
}
