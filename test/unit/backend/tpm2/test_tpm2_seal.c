/*
 * Sealing and unsealing data keys (src/backend/tpm2/tpm2_seal.c) without a
 * TPM: the fake TCTI answers as a TPM whose SRK (0x81000001) is an ECC
 * P-256 key the test holds, and test/unit/fakes/fake_tpm2_session.c runs the
 * session salted by it that ESAPI starts (salt decryption, session key,
 * HMACs both ways, AES-CFB parameter encryption both ways).  The fake keeps
 * each sealed object's data and auth value in a table; the private blob it
 * hands out is only that table's index.
 *   - create: TPM2_Create under the SRK with a keyedHash template that is
 *     fixedTPM|fixedParent|userWithAuth, no sensitiveDataOrigin, no
 *     sign/decrypt, noDA exactly when there is no auth value; 32 bytes of
 *     data, sent encrypted (not on the wire in the clear); the key file is
 *     of type sealed, parent 0x81000001, emptyAuth as the auth value says,
 *     and holds neither the key nor the auth value
 *   - unwrap: exactly the 32 bytes the fake sealed, through a response
 *     whose outData was encrypted on the wire; the loaded object flushed;
 *     with an auth value, the right one works and a wrong one is one
 *     AUTH_FAILED error (the fake checks the command's HMAC as a TPM does);
 *     TPM_RC_OBJECT_MEMORY on TPM2_Load retried
 *   - refusals: a malformed file, a loadable key file, a sealed file with an
 *     ECC public area and a handle refused before any TPM command; a sealed
 *     object holding 16 bytes is KEY_FILE_INVALID
 *   - PCR-bound (datakey --pcr): authPolicy = PolicyPCR(PCR 7) [then
 *     PolicyAuthValue] computed here in software, no userWithAuth; unwrap
 *     through a salted policy session (the fake refuses an HMAC session for
 *     such an object, as a TPM does); a changed PCR is POLICY_FAILED naming
 *     it, with no TPM2_Unseal sent; with an auth value, a wrong one fails
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
#include "../../fakes/fake_tpm2_session.h"
#include "util/error.h"
#include "util/tss2_keyfile.h"
#include "../../fakes/one_error.h"

#define SRK 0x81000001u
#define LOADED 0x80000001u /* the transient handle the fake gives a loaded object */
#define MAX_SEALED 8

static EVP_PKEY *srk_key;
static TPM2B_PUBLIC srk_pub;

/* What the fake TPM sealed: data and auth value per object, and the last Create as received. */
static struct {
    TPM2B_SENSITIVE_DATA data;
    TPM2B_AUTH auth;
} sealed[MAX_SEALED];
static size_t n_sealed;
static size_t seal_keep; /* 0: keep all of the data; else only this many bytes */
static struct {
    TPM2_HANDLE parent;
    TPM2B_SENSITIVE_CREATE sens;
    TPM2B_PUBLIC tmpl;
    int encrypted_in;
    int clear_on_wire; /* the data key was in the command bytes as sent */
} created;
static TPM2B_DIGEST pcr[24]; /* the fake TPM's sha256 bank */
static int loaded = -1;      /* index of the object loaded at LOADED, -1: none */
static TPM2B_PUBLIC loaded_pub;
static unsigned int flushed_objects;

/* A storage key: restricted decrypt, AES-128-CFB, the point of srk_key. */
static void make_srk_public(void)
{
    unsigned char pt[65];
    size_t ptlen = 0;
    TPMT_PUBLIC *a = &srk_pub.publicArea;

    memset(&srk_pub, 0, sizeof(srk_pub));
    a->type = TPM2_ALG_ECC;
    a->nameAlg = TPM2_ALG_SHA256;
    a->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                          TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    a->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
    a->parameters.eccDetail.symmetric.keyBits.aes = 128;
    a->parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    a->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    a->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    a->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    assert_int_equal(EVP_PKEY_get_octet_string_param(srk_key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                                     pt, sizeof(pt), &ptlen),
                     1);
    assert_int_equal(ptlen, sizeof(pt));
    a->unique.ecc.x.size = 32;
    memcpy(a->unique.ecc.x.buffer, pt + 1, 32);
    a->unique.ecc.y.size = 32;
    memcpy(a->unique.ecc.y.buffer, pt + 33, 32);
}

/* --- responders ------------------------------------------------------------------ */

static void answer_rc(TSS2_RC rc)
{
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, rc);
    fake_tcti_rsp_finish();
}

/* TPM2_GetCapability(TPM2_CAP_HANDLES, 0x81000001, 1): the SRK is there. */
static void answer_get_capability(const uint8_t *cmd, size_t len)
{
    TPMS_CAPABILITY_DATA data;
    size_t size, off;
    uint8_t *rsp;

    (void)cmd;
    (void)len;
    memset(&data, 0, sizeof(data));
    data.capability = TPM2_CAP_HANDLES;
    data.data.handles.count = 1;
    data.data.handles.handle[0] = SRK;
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_SUCCESS);
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_BYTE_Marshal(TPM2_NO, rsp, size, &off) != 0 ||
        Tss2_MU_TPMS_CAPABILITY_DATA_Marshal(&data, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_finish();
}

/* TPM2_ReadPublic of the SRK: outPublic, name, qualifiedName. */
static void answer_read_public(const uint8_t *cmd, size_t len)
{
    TPM2B_NAME name;
    size_t size, off;
    uint8_t *rsp;

    if (fake_tcti_cmd_handle(cmd, len) != SRK) {
        answer_rc(TPM2_RC_HANDLE + TPM2_RC_1);
        return;
    }
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_SUCCESS);
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (!fake_session_name(&srk_pub, &name) ||
        Tss2_MU_TPM2B_PUBLIC_Marshal(&srk_pub, rsp, size, &off) != 0 ||
        Tss2_MU_TPM2B_NAME_Marshal(&name, rsp, size, &off) != 0 ||
        Tss2_MU_TPM2B_NAME_Marshal(&name, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_finish();
}

/* TPM2_GetRandom: 0xa5 bytes (one share of the data key; the host's is random). */
static void answer_get_random(const uint8_t *cmd, size_t len)
{
    size_t in = 10, size, off;
    UINT16 want = 0;
    TPM2B_DIGEST d = {0};
    uint8_t *rsp;

    if (Tss2_MU_UINT16_Unmarshal(cmd, len, &in, &want) != 0 || want > sizeof(d.buffer)) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    d.size = want;
    memset(d.buffer, 0xa5, want);
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_SUCCESS);
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_TPM2B_DIGEST_Marshal(&d, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_finish();
}

/* The private blob of sealed object i: its index, nothing secret (the fake keeps the data). */
static TPM2B_PRIVATE private_of(size_t i)
{
    TPM2B_PRIVATE p = {.size = 8};

    memcpy(p.buffer, "sealed#", 7);
    p.buffer[7] = (BYTE)('0' + i);
    return p;
}

static int contains(const uint8_t *hay, size_t hlen, const uint8_t *needle, size_t nlen)
{
    for (size_t i = 0; i + nlen <= hlen; i++)
        if (memcmp(hay + i, needle, nlen) == 0)
            return 1;
    return 0;
}

/* TPM2_Create(parent, session, inSensitive, inPublic, outsideInfo, creationPCR). */
static void answer_create(const uint8_t *cmd, size_t len)
{
    static FAKE_SESSION_CMD c;
    TPM2B_NAME parent_name;
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION pcrs = {0};
    TPM2B_CREATION_DATA cdata;
    TPM2B_DIGEST chash = {0};
    TPMT_TK_CREATION ticket;
    TPM2B_PRIVATE priv;
    size_t in, size, off, params_at;
    uint8_t *rsp;

    memset(&created, 0, sizeof(created));
    created.parent = fake_tcti_cmd_handle(cmd, len);
    if (created.parent != SRK || !fake_session_name(&srk_pub, &parent_name) ||
        fake_session_command(cmd, len, &parent_name, NULL, NULL, &c) != FAKE_SESSION_OK) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    in = c.params;
    if (Tss2_MU_TPM2B_SENSITIVE_CREATE_Unmarshal(c.cmd, c.len, &in, &created.sens) != 0 ||
        Tss2_MU_TPM2B_PUBLIC_Unmarshal(c.cmd, c.len, &in, &created.tmpl) != 0 ||
        Tss2_MU_TPM2B_DATA_Unmarshal(c.cmd, c.len, &in, &outside) != 0 ||
        Tss2_MU_TPML_PCR_SELECTION_Unmarshal(c.cmd, c.len, &in, &pcrs) != 0 || in != c.len ||
        n_sealed == MAX_SEALED) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    created.encrypted_in = c.encrypted_in;
    created.clear_on_wire =
        contains(cmd, len, created.sens.sensitive.data.buffer, created.sens.sensitive.data.size);
    sealed[n_sealed].data = created.sens.sensitive.data;
    if (seal_keep != 0 && seal_keep < sealed[n_sealed].data.size)
        sealed[n_sealed].data.size = (UINT16)seal_keep;
    sealed[n_sealed].auth = created.sens.sensitive.userAuth;
    priv = private_of(n_sealed++);

    memset(&cdata, 0, sizeof(cdata));
    memset(&ticket, 0, sizeof(ticket));
    ticket.tag = TPM2_ST_CREATION;
    ticket.hierarchy = TPM2_RH_OWNER;
    /* The public area as a TPM returns it: the template, unique = a digest of the data. */
    created.tmpl.publicArea.unique.keyedHash.size = 32;
    memset(created.tmpl.publicArea.unique.keyedHash.buffer, 0x3c, 32);
    fake_tcti_rsp_header(TPM2_ST_SESSIONS, TPM2_RC_SUCCESS);
    fake_tcti_rsp_buf(&size, &params_at);
    fake_tcti_rsp_params_begin();
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_TPM2B_PRIVATE_Marshal(&priv, rsp, size, &off) != 0 ||
        Tss2_MU_TPM2B_PUBLIC_Marshal(&created.tmpl, rsp, size, &off) != 0 ||
        Tss2_MU_TPM2B_CREATION_DATA_Marshal(&cdata, rsp, size, &off) != 0 ||
        Tss2_MU_TPM2B_DIGEST_Marshal(&chash, rsp, size, &off) != 0 ||
        Tss2_MU_TPMT_TK_CREATION_Marshal(&ticket, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    if (!fake_session_rsp_end(TPM2_CC_Create, params_at, NULL))
        fake_tcti_refuse(__LINE__);
}

/* TPM2_Load(parent, password session, inPrivate, inPublic): objectHandle, name. */
static void answer_load(const uint8_t *cmd, size_t len)
{
    size_t in = 14, size, off;
    UINT32 auth_size = 0;
    TPM2B_PRIVATE priv = {0};
    TPM2B_NAME name;
    uint8_t *rsp;

    loaded_pub.size = 0;
    if (fake_tcti_cmd_handle(cmd, len) != SRK ||
        Tss2_MU_UINT32_Unmarshal(cmd, len, &in, &auth_size) != 0 || (in += auth_size) > len ||
        Tss2_MU_TPM2B_PRIVATE_Unmarshal(cmd, len, &in, &priv) != 0 ||
        Tss2_MU_TPM2B_PUBLIC_Unmarshal(cmd, len, &in, &loaded_pub) != 0 || in != len) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    loaded = -1;
    for (size_t i = 0; i < n_sealed; i++) {
        TPM2B_PRIVATE p = private_of(i);

        if (p.size == priv.size && memcmp(p.buffer, priv.buffer, p.size) == 0)
            loaded = (int)i;
    }
    if (loaded < 0) {
        answer_rc(TPM2_RC_INTEGRITY + TPM2_RC_P + TPM2_RC_1); /* not a blob of this TPM */
        return;
    }
    fake_tcti_rsp_header(TPM2_ST_SESSIONS, TPM2_RC_SUCCESS);
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_UINT32_Marshal(LOADED, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_params_begin();
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (!fake_session_name(&loaded_pub, &name) ||
        Tss2_MU_TPM2B_NAME_Marshal(&name, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_params_end();
    fake_tcti_rsp_finish();
}

/* TPM2_Unseal(item, session): outData, encrypted when the session says so. */
static void answer_unseal(const uint8_t *cmd, size_t len)
{
    static FAKE_SESSION_CMD c;
    TPM2B_NAME name;
    size_t size, off, params_at;
    uint8_t *rsp;

    if (fake_tcti_cmd_handle(cmd, len) != LOADED || loaded < 0 ||
        !fake_session_name(&loaded_pub, &name)) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    switch (fake_session_command(cmd, len, &name, &sealed[loaded].auth,
                                 &loaded_pub.publicArea.authPolicy, &c)) {
    case FAKE_SESSION_OK:
        /* Without userWithAuth only a policy session may authorize (Part 1, 19.7.4). */
        if (!c.policy && !(loaded_pub.publicArea.objectAttributes & TPMA_OBJECT_USERWITHAUTH)) {
            answer_rc(TPM2_RC_AUTH_UNAVAILABLE);
            return;
        }
        break;
    case FAKE_SESSION_POLICY_FAIL:
        answer_rc(TPM2_RC_POLICY_FAIL + TPM2_RC_S + TPM2_RC_1);
        return;
    case FAKE_SESSION_BAD_HMAC:
        /* What a TPM answers for a wrong auth value on a DA-protected object. */
        answer_rc(TPM2_RC_AUTH_FAIL + TPM2_RC_S + TPM2_RC_1);
        return;
    default:
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_header(TPM2_ST_SESSIONS, TPM2_RC_SUCCESS);
    fake_tcti_rsp_buf(&size, &params_at);
    fake_tcti_rsp_params_begin();
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_TPM2B_SENSITIVE_DATA_Marshal(&sealed[loaded].data, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    if (!fake_session_rsp_end(TPM2_CC_Unseal, params_at, &sealed[loaded].auth))
        fake_tcti_refuse(__LINE__);
}

/* The PCRs a selection names, hashed in order: what TPM2_PolicyPCR compares. */
static int pcr_digest(const TPML_PCR_SELECTION *sel, TPM2B_DIGEST *out)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && sel->count == 1 && sel->pcrSelections[0].hash == TPM2_ALG_SHA256 &&
             EVP_DigestInit_ex(md, EVP_sha256(), NULL);

    for (unsigned int i = 0; ok && i < 24; i++)
        if (sel->pcrSelections[0].pcrSelect[i / 8] & (1u << (i % 8)))
            ok = EVP_DigestUpdate(md, pcr[i].buffer, pcr[i].size);
    ok = ok && EVP_DigestFinal_ex(md, out->buffer, NULL);
    out->size = 32;
    EVP_MD_CTX_free(md);
    return ok;
}

/* TPM2_PCR_Read(pcrSelectionIn): updateCounter, the selection, the values (sha256 only). */
static void answer_pcr_read(const uint8_t *cmd, size_t len)
{
    size_t in = 10, size, off;
    TPML_PCR_SELECTION sel = {0};
    TPML_DIGEST values = {0};
    uint8_t *rsp;

    if (Tss2_MU_TPML_PCR_SELECTION_Unmarshal(cmd, len, &in, &sel) != 0 || in != len ||
        sel.count != 1 || sel.pcrSelections[0].hash != TPM2_ALG_SHA256) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    for (unsigned int i = 0; i < 24 && values.count < 8; i++)
        if (sel.pcrSelections[0].pcrSelect[i / 8] & (1u << (i % 8)))
            values.digests[values.count++] = pcr[i];
    fake_tcti_rsp_header(TPM2_ST_NO_SESSIONS, TPM2_RC_SUCCESS);
    rsp = fake_tcti_rsp_buf(&size, &off);
    if (Tss2_MU_UINT32_Marshal(1, rsp, size, &off) != 0 ||
        Tss2_MU_TPML_PCR_SELECTION_Marshal(&sel, rsp, size, &off) != 0 ||
        Tss2_MU_TPML_DIGEST_Marshal(&values, rsp, size, &off) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    fake_tcti_rsp_set_end(off);
    fake_tcti_rsp_finish();
}

/*
 * TPM2_PolicyPCR(session, pcrDigest, pcrs): TPM_RC_VALUE if the PCRs no
 * longer hash to pcrDigest, else policyDigest extended by pcrs || digest.
 */
static void answer_policy_pcr(const uint8_t *cmd, size_t len)
{
    size_t in = 14, plen = 0;
    TPM2B_DIGEST want = {0}, now;
    TPML_PCR_SELECTION sel = {0};
    uint8_t params[sizeof(TPML_PCR_SELECTION) + 32];

    if (fake_session_policy(cmd, len) == NULL ||
        Tss2_MU_TPM2B_DIGEST_Unmarshal(cmd, len, &in, &want) != 0 ||
        Tss2_MU_TPML_PCR_SELECTION_Unmarshal(cmd, len, &in, &sel) != 0 || in != len ||
        !pcr_digest(&sel, &now)) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (want.size != 0 && (want.size != now.size || memcmp(want.buffer, now.buffer, 32) != 0)) {
        answer_rc(TPM2_RC_VALUE + TPM2_RC_P + TPM2_RC_1);
        return;
    }
    if (Tss2_MU_TPML_PCR_SELECTION_Marshal(&sel, params, sizeof(params), &plen) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    memcpy(params + plen, now.buffer, 32);
    if (!fake_session_policy_extend(cmd, len, params, plen + 32)) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    answer_rc(TPM2_RC_SUCCESS);
}

/* TPM2_FlushContext(handle): the loaded object, or the session (already ended). */
static void answer_flush(const uint8_t *cmd, size_t len)
{
    size_t in = 10;
    TPM2_HANDLE h = 0;

    if (Tss2_MU_UINT32_Unmarshal(cmd, len, &in, &h) != 0) {
        fake_tcti_refuse(__LINE__);
        return;
    }
    if (h == LOADED) {
        loaded = -1;
        flushed_objects++;
    }
    answer_rc(TPM2_RC_SUCCESS);
}

/* --- fixture ----------------------------------------------------------------------- */

static HWKEY_DEVICE *dev;

static void open_device(const FAKE_TCTI_STEP *script, size_t nsteps)
{
    TSS2_TCTI_CONTEXT *tcti = fake_tcti_reset(script, nsteps);

    memset(sealed, 0, sizeof(sealed));
    n_sealed = 0;
    seal_keep = 0;
    loaded = -1;
    flushed_objects = 0;
    for (size_t i = 0; i < 24; i++) {
        pcr[i].size = 32;
        memset(pcr[i].buffer, (int)i, 32);
    }
    fake_session_reset(srk_key, &srk_pub);
    fake_tcti_on(TPM2_CC_GetCapability, answer_get_capability);
    fake_tcti_on(TPM2_CC_ReadPublic, answer_read_public);
    fake_tcti_on(TPM2_CC_GetRandom, answer_get_random);
    fake_tcti_on(TPM2_CC_StartAuthSession, fake_session_answer_start);
    fake_tcti_on(TPM2_CC_Create, answer_create);
    fake_tcti_on(TPM2_CC_Load, answer_load);
    fake_tcti_on(TPM2_CC_Unseal, answer_unseal);
    fake_tcti_on(TPM2_CC_FlushContext, answer_flush);
    fake_tcti_on(TPM2_CC_PCR_Read, answer_pcr_read);
    fake_tcti_on(TPM2_CC_PolicyPCR, answer_policy_pcr);
    fake_tcti_on(TPM2_CC_PolicyAuthValue, fake_session_answer_policy_auth_value);
    ERR_clear_error();
    /* No resource manager, as with swtpm: nothing stays loaded between calls. */
    dev = hwkey_tpm2_open_with_tcti(tcti, 0);
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

/* The passphrase callback: arg is the auth value to give. */
static int give_pass(char *pass, size_t pass_size, size_t *pass_len, const OSSL_PARAM params[],
                     void *arg)
{
    size_t n = strlen(arg);

    (void)params;
    if (n > pass_size)
        return 0;
    memcpy(pass, arg, n);
    *pass_len = n;
    return 1;
}

static void seal(const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out)
{
    assert_int_equal(hwkey_tpm2_backend.datakey_create(dev, opts, out), 1);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(out->kind, HWKEY_REF_TSS2_KEYFILE);
}

static int unwrap(const HWKEY_REFBLOB *file, const char *pass, unsigned char key[32])
{
    HWKEY_KEYREF ref = {file->kind, file->data, file->len};

    return hwkey_tpm2_backend.datakey_unwrap(dev, &ref, pass != NULL ? give_pass : NULL,
                                             (void *)pass, key);
}

/* --- create --------------------------------------------------------------------------- */

/* The key file of out: sealed, under the SRK, the public area the TPM returned. */
static void check_sealed_file(const HWKEY_REFBLOB *out, int empty_auth)
{
    HWKEY_TSS2_KEYFILE kf;
    TPM2B_PUBLIC pub = {0};
    size_t off = 0;
    TPMA_OBJECT want = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_USERWITHAUTH;

    assert_int_equal(hwkey_tss2_keyfile_decode(out->data, out->len, &kf), 1);
    assert_int_equal(kf.type, HWKEY_TSS2_SEALED);
    assert_int_equal(kf.parent, SRK);
    assert_int_equal(kf.empty_auth, empty_auth);
    assert_int_equal(kf.policy_count, 0);
    assert_int_equal(Tss2_MU_TPM2B_PUBLIC_Unmarshal(kf.pubkey, kf.pubkey_len, &off, &pub), 0);
    hwkey_tss2_keyfile_clear(&kf);
    /* The template hwkey promises, as the TPM received it and as the file keeps it. */
    if (empty_auth)
        want |= TPMA_OBJECT_NODA; /* DA protection guards nothing without an auth value */
    assert_int_equal(created.tmpl.publicArea.type, TPM2_ALG_KEYEDHASH);
    assert_int_equal(created.tmpl.publicArea.nameAlg, TPM2_ALG_SHA256);
    /* Exactly these: no sensitiveDataOrigin (we supply the data), no sign, no decrypt. */
    assert_int_equal(created.tmpl.publicArea.objectAttributes, want);
    assert_int_equal(created.tmpl.publicArea.parameters.keyedHashDetail.scheme.scheme,
                     TPM2_ALG_NULL);
    assert_int_equal(created.tmpl.publicArea.authPolicy.size, 0);
    assert_int_equal(pub.publicArea.type, TPM2_ALG_KEYEDHASH);
    assert_int_equal(pub.publicArea.objectAttributes, want);
    /* The file holds neither the data key nor the auth value. */
    assert_false(contains(out->data, out->len, created.sens.sensitive.data.buffer, 32));
    if (!empty_auth)
        assert_false(contains(out->data, out->len, created.sens.sensitive.userAuth.buffer,
                              created.sens.sensitive.userAuth.size));
}

static void test_create(void **state)
{
    HWKEY_GENOPTS with_auth = {.auth = "s3cret", .auth_len = 6};
    HWKEY_REFBLOB out = {0};

    (void)state;
    open_device(NULL, 0);
    seal(NULL, &out);
    assert_int_equal(created.parent, SRK);
    assert_int_equal(created.sens.sensitive.data.size, 32);
    assert_int_equal(created.sens.sensitive.userAuth.size, 0);
    /* inSensitive went through the salted session's parameter encryption. */
    assert_true(created.encrypted_in);
    assert_false(created.clear_on_wire);
    /* Host share xor TPM share: not the TPM's bytes (all 0xa5) alone. */
    {
        uint8_t tpm_share[32];

        memset(tpm_share, 0xa5, sizeof(tpm_share));
        assert_memory_not_equal(created.sens.sensitive.data.buffer, tpm_share, 32);
    }
    check_sealed_file(&out, 1);
    assert_int_equal(fake_tcti_count(TPM2_CC_StartAuthSession), 1);
    assert_int_equal(fake_tcti_count(TPM2_CC_Create), 1);
    OPENSSL_free(out.data);

    seal(&with_auth, &out);
    assert_int_equal(created.sens.sensitive.userAuth.size, 6);
    assert_memory_equal(created.sens.sensitive.userAuth.buffer, "s3cret", 6);
    assert_false(created.clear_on_wire);
    check_sealed_file(&out, 0);
    OPENSSL_free(out.data);
}

/* --- unwrap ----------------------------------------------------------------------------- */

static void test_unwrap(void **state)
{
    HWKEY_REFBLOB out = {0};
    unsigned char key[32];
    const uint8_t *wire;
    size_t wire_len = 0;

    (void)state;
    open_device(NULL, 0);
    seal(NULL, &out);
    memset(key, 0, sizeof(key));
    assert_int_equal(unwrap(&out, NULL, key), 1);
    assert_int_equal(ERR_peek_error(), 0);
    assert_memory_equal(key, sealed[0].data.buffer, 32);
    /* outData crossed the bus encrypted: the TPM2_Unseal response as sent lacks the key. */
    wire = fake_session_last_response(&wire_len);
    assert_true(wire_len > 32);
    assert_false(contains(wire, wire_len, key, 32));
    assert_int_equal(fake_tcti_count(TPM2_CC_Load), 1);
    assert_int_equal(fake_tcti_count(TPM2_CC_Unseal), 1);
    /* Flushed after the unseal: no object left behind. */
    assert_int_equal(flushed_objects, 1);
    assert_int_equal(loaded, -1);
    OPENSSL_free(out.data);
}

static void test_unwrap_auth(void **state)
{
    HWKEY_GENOPTS with_auth = {.auth = "s3cret", .auth_len = 6};
    HWKEY_REFBLOB out = {0};
    unsigned char key[32];

    (void)state;
    open_device(NULL, 0);
    seal(&with_auth, &out);
    assert_int_equal(unwrap(&out, "s3cret", key), 1);
    assert_int_equal(ERR_peek_error(), 0);
    assert_memory_equal(key, sealed[0].data.buffer, 32);
    /* The response encrypted with sessionKey || authValue: still not in the clear. */
    {
        size_t wire_len = 0;
        const uint8_t *wire = fake_session_last_response(&wire_len);

        assert_false(contains(wire, wire_len, key, 32));
    }

    /* A wrong auth value: the TPM's HMAC check fails, one error, the object still flushed. */
    memset(key, 0, sizeof(key));
    assert_int_equal(unwrap(&out, "wrong!", key), 0);
    assert_one_error(HWKEY_R_AUTH_FAILED, "unsealing the data key (TPM2_Unseal): TPM_RC_AUTH_FAIL");
    assert_int_equal(fake_tcti_count(TPM2_CC_Unseal), 2);
    assert_int_equal(flushed_objects, 2);
    {
        unsigned char zero[32] = {0};

        assert_memory_equal(key, zero, 32);
    }
    OPENSSL_free(out.data);
}

static void test_unwrap_load_retried(void **state)
{
    static const FAKE_TCTI_STEP full[] = {
        {TPM2_CC_Load, TPM2_RC_OBJECT_MEMORY},
    };
    HWKEY_REFBLOB out = {0};
    unsigned char key[32];

    (void)state;
    open_device(NULL, 0);
    seal(NULL, &out);
    fake_tcti_script(full, 1);
    assert_int_equal(unwrap(&out, NULL, key), 1);
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(fake_tcti_served(), 1);
    assert_int_equal(fake_tcti_count(TPM2_CC_Load), 2);
    assert_memory_equal(key, sealed[0].data.buffer, 32);
    OPENSSL_free(out.data);
}

/* --- refusals ----------------------------------------------------------------------------- */

static void test_unwrap_refusals(void **state)
{
    static const unsigned char garbage[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    HWKEY_REFBLOB out = {0}, loadable = {HWKEY_REF_TSS2_KEYFILE, NULL, 0},
                  ecc = {HWKEY_REF_TSS2_KEYFILE, NULL, 0};
    HWKEY_KEYREF bad = {HWKEY_REF_TSS2_KEYFILE, garbage, sizeof(garbage)};
    HWKEY_KEYREF handle = {HWKEY_REF_TPM2_HANDLE, (const unsigned char *)"handle:0x81000010", 17};
    unsigned char pubbuf[sizeof(TPM2B_PUBLIC)];
    size_t publen = 0, free_len;
    unsigned char *free_pub;
    HWKEY_TSS2_KEYFILE kf;
    unsigned char key[32];
    unsigned int before;

    (void)state;
    open_device(NULL, 0);
    seal(NULL, &out);
    /* A loadable key's file, otherwise the same. */
    assert_int_equal(hwkey_tss2_keyfile_decode(out.data, out.len, &kf), 1);
    kf.type = HWKEY_TSS2_LOADABLE;
    assert_int_equal(hwkey_tss2_keyfile_encode(&kf, &loadable.data, &loadable.len), 1);
    /* A sealed file whose public area is the SRK's (an ECC key), not a keyedHash object. */
    kf.type = HWKEY_TSS2_SEALED;
    assert_int_equal(Tss2_MU_TPM2B_PUBLIC_Marshal(&srk_pub, pubbuf, sizeof(pubbuf), &publen), 0);
    free_pub = kf.pubkey;
    free_len = kf.pubkey_len;
    kf.pubkey = pubbuf;
    kf.pubkey_len = publen;
    assert_int_equal(hwkey_tss2_keyfile_encode(&kf, &ecc.data, &ecc.len), 1);
    kf.pubkey = free_pub; /* pubbuf is not the decoder's to free */
    kf.pubkey_len = free_len;
    hwkey_tss2_keyfile_clear(&kf);
    before = fake_tcti_count(0);

    assert_int_equal(hwkey_tpm2_backend.datakey_unwrap(dev, &bad, NULL, NULL, key), 0);
    assert_one_error(HWKEY_R_KEY_FILE_INVALID, "not a TPMKey ASN.1 structure");
    assert_int_equal(unwrap(&loadable, NULL, key), 0);
    assert_one_error(HWKEY_R_KEY_FILE_INVALID, "holds a loadable key, not a sealed data key");
    assert_int_equal(unwrap(&ecc, NULL, key), 0);
    assert_one_error(HWKEY_R_KEY_FILE_INVALID,
                     "the data key file's public area is not a sealed data object");
    assert_int_equal(hwkey_tpm2_backend.datakey_unwrap(dev, &handle, NULL, NULL, key), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "a TPM data key is a TSS2 key file of type sealed");
    /* Refused before any TPM command. */
    assert_int_equal(fake_tcti_count(0), before);
    OPENSSL_free(loadable.data);
    OPENSSL_free(ecc.data);
    OPENSSL_free(out.data);
}

static void test_unwrap_short_data(void **state)
{
    HWKEY_REFBLOB out = {0};
    unsigned char key[32];

    (void)state;
    open_device(NULL, 0);
    seal_keep = 16; /* a sealed object made by another tool, holding 16 bytes */
    seal(NULL, &out);
    assert_int_equal(unwrap(&out, NULL, key), 0);
    assert_one_error(HWKEY_R_KEY_FILE_INVALID, "the sealed object holds 16 bytes, not a 32-byte "
                                               "data key");
    assert_int_equal(flushed_objects, 1);
    OPENSSL_free(out.data);
}

/* --- PCR-bound data keys -------------------------------------------------------------- */

static void put_cc(uint8_t *p, TPM2_CC cc)
{
    p[0] = (uint8_t)(cc >> 24);
    p[1] = (uint8_t)(cc >> 16);
    p[2] = (uint8_t)(cc >> 8);
    p[3] = (uint8_t)cc;
}

/* policyDigest of PolicyPCR(PCR 7 of sha256 = value) [then PolicyAuthValue], in software. */
static void expected_policy(const TPM2B_DIGEST *value, int with_auth, uint8_t out[32])
{
    TPML_PCR_SELECTION sel = {.count = 1};
    uint8_t buf[32 + 4 + sizeof(TPML_PCR_SELECTION) + 32];
    size_t n = 36;

    sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
    sel.pcrSelections[0].sizeofSelect = 3;
    sel.pcrSelections[0].pcrSelect[0] = 0x80; /* PCR 7 */
    memset(buf, 0, 32);                       /* a policy starts as 32 zero bytes */
    put_cc(buf + 32, TPM2_CC_PolicyPCR);
    assert_int_equal(Tss2_MU_TPML_PCR_SELECTION_Marshal(&sel, buf, sizeof(buf), &n), 0);
    SHA256(value->buffer, value->size, buf + n); /* pcrDigest: H(the one PCR) */
    SHA256(buf, n + 32, out);
    if (with_auth) {
        memcpy(buf, out, 32);
        put_cc(buf + 32, TPM2_CC_PolicyAuthValue);
        SHA256(buf, 36, out);
    }
}

static void check_pcr_template(int with_auth)
{
    uint8_t want[32];
    TPMA_OBJECT attrs = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT;

    expected_policy(&pcr[7], with_auth, want);
    assert_int_equal(created.tmpl.publicArea.authPolicy.size, 32);
    assert_memory_equal(created.tmpl.publicArea.authPolicy.buffer, want, 32);
    /* No userWithAuth: only the policy session may authorize an unseal. */
    if (!with_auth)
        attrs |= TPMA_OBJECT_NODA;
    assert_int_equal(created.tmpl.publicArea.objectAttributes, attrs);
}

static void test_pcr_bound(void **state)
{
    HWKEY_GENOPTS opts = {.pcrs = {.md_nid = NID_sha256, .mask = 1u << 7}};
    HWKEY_REFBLOB out = {0};
    HWKEY_TSS2_KEYFILE kf;
    unsigned char key[32];
    size_t wire_len = 0;
    const uint8_t *wire;

    (void)state;
    open_device(NULL, 0);
    seal(&opts, &out);
    check_pcr_template(0);
    assert_int_equal(hwkey_tss2_keyfile_decode(out.data, out.len, &kf), 1);
    assert_int_equal(kf.policy_count, 1);
    assert_int_equal(kf.policy[0].cc, TPM2_CC_PolicyPCR);
    hwkey_tss2_keyfile_clear(&kf);
    /* The PCR as it was: the policy session reaches authPolicy; outData still encrypted. */
    assert_int_equal(unwrap(&out, NULL, key), 1);
    assert_int_equal(ERR_peek_error(), 0);
    assert_memory_equal(key, sealed[0].data.buffer, 32);
    wire = fake_session_last_response(&wire_len);
    assert_false(contains(wire, wire_len, key, 32));
    assert_int_equal(fake_tcti_count(TPM2_CC_PolicyPCR), 1);
    /* PCR 7 extended since: refused by TPM2_PolicyPCR, the unseal never sent. */
    pcr[7].buffer[0] ^= 0xff;
    assert_int_equal(unwrap(&out, NULL, key), 0);
    assert_one_error(HWKEY_R_POLICY_FAILED,
                     "PCR 7 changed since the key was bound to it (sha256 bank)");
    assert_int_equal(fake_tcti_count(TPM2_CC_Unseal), 1);
    assert_int_equal(flushed_objects, 2);
    OPENSSL_free(out.data);
}

static void test_pcr_bound_with_auth(void **state)
{
    HWKEY_GENOPTS opts = {
        .auth = "s3cret", .auth_len = 6, .pcrs = {.md_nid = NID_sha256, .mask = 1u << 7}};
    HWKEY_REFBLOB out = {0};
    unsigned char key[32];

    (void)state;
    open_device(NULL, 0);
    seal(&opts, &out);
    check_pcr_template(1);
    /* PolicyPCR then PolicyAuthValue: the HMAC and the CFB key take the auth value. */
    assert_int_equal(unwrap(&out, "s3cret", key), 1);
    assert_int_equal(ERR_peek_error(), 0);
    assert_memory_equal(key, sealed[0].data.buffer, 32);
    assert_int_equal(fake_tcti_count(TPM2_CC_PolicyAuthValue), 1);
    assert_int_equal(unwrap(&out, "wrong!", key), 0);
    assert_one_error(HWKEY_R_AUTH_FAILED, "unsealing the data key (TPM2_Unseal): TPM_RC_AUTH_FAIL");
    OPENSSL_free(out.data);
}

int main(void)
{
#define T(name) cmocka_unit_test_teardown(name, teardown)
    const struct CMUnitTest tests[] = {
        T(test_create),          T(test_unwrap),
        T(test_unwrap_auth),     T(test_unwrap_load_retried),
        T(test_unwrap_refusals), T(test_unwrap_short_data),
        T(test_pcr_bound),       T(test_pcr_bound_with_auth),
    };
#undef T

    int failed;

    setenv("TSS2_LOG", "all+NONE", 1);
    srk_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    make_srk_public();
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    EVP_PKEY_free(srk_key);
    return failed;
}
