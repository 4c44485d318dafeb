/*
 * PCR policies: keys and sealed data keys whose use is bound to the values
 * some PCRs had when they were made (hwkey keygen/datakey --pcr).
 *
 * The policy is a chain of TPM2_PolicyPCR commands, ONE PER PCR, each with
 * the digest of that PCR's value at creation, then TPM2_PolicyAuthValue when
 * the object also has an auth value.  One command per PCR (instead of one
 * PolicyPCR over all of them) costs a TPM command per bound PCR at each use,
 * and buys the clear error the user needs: the TPM answers TPM_RC_VALUE to
 * exactly the PolicyPCR whose PCR changed, so hwkey can say "PCR 7 changed"
 * without keeping the PCR values anywhere but in the standard policy.  The
 * steps are recorded in the TSS2 key file's policy [1] field (TPMPolicy:
 * command code + marshalled parameters pcrDigest, pcrs), which
 * openssl_tpm2_engine executes in the same order, so the files stay
 * interoperable.
 *
 * The object's authPolicy is the digest of that chain (computed here in
 * software, the TPM recomputes it at each use) and userWithAuth is clear:
 * without it a plain password or HMAC session would bypass the policy.
 */
#include "backend/tpm2/tpm2_internal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <tss2/tss2_mu.h>

#include "backend/tpm2/tpm2_dup.h"
#include "util/error.h"

#define POLICY_HASH "SHA256" /* the sessions' and the objects' nameAlg */

/* The PCR numbers a selection names, as a bit mask. */
static uint32_t selection_mask(const TPML_PCR_SELECTION *sel)
{
    uint32_t mask = 0;

    for (UINT32 i = 0; i < sel->count && i < TPM2_NUM_PCR_BANKS; i++)
        for (UINT8 b = 0; b < sel->pcrSelections[i].sizeofSelect && b < 4; b++)
            mask |= (uint32_t)sel->pcrSelections[i].pcrSelect[b] << (8 * b);
    return mask;
}

static void single_selection(TPMI_ALG_HASH bank, unsigned int pcr, TPML_PCR_SELECTION *sel)
{
    memset(sel, 0, sizeof(*sel));
    sel->count = 1;
    sel->pcrSelections[0].hash = bank;
    sel->pcrSelections[0].sizeofSelect = 3;
    sel->pcrSelections[0].pcrSelect[pcr / 8] = (BYTE)(1u << (pcr % 8));
}

/* H(parts...) with the policy hash into out (32 bytes). */
static int sha256_parts(const unsigned char *const *p, const size_t *n, size_t count,
                        unsigned char *out)
{
    EVP_MD *md = EVP_MD_fetch(NULL, POLICY_HASH, NULL);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = md != NULL && ctx != NULL && EVP_DigestInit_ex(ctx, md, NULL);

    for (size_t i = 0; ok && i < count; i++)
        ok = n[i] == 0 || EVP_DigestUpdate(ctx, p[i], n[i]);
    ok = ok && EVP_DigestFinal_ex(ctx, out, NULL);
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
    if (!ok)
        hwkey_raise(HWKEY_R_INTERNAL, "computing the PCR policy digest with " POLICY_HASH);
    return ok;
}

/*
 * policyDigest' = H(policyDigest || TPM_CC || parameters), TPM 2.0 part 3:
 * PolicyPCR extends with the marshalled pcrs then pcrDigest, PolicyAuthValue
 * with nothing but its command code.
 */
static int extend_digest(TPM2B_DIGEST *digest, const HWKEY_TPM2_POLICY_STEP *step)
{
    unsigned char cc[4], sel[sizeof(TPML_PCR_SELECTION)];
    size_t sel_len = 0;
    const unsigned char *p[4];
    size_t n[4], count = 2;

    cc[0] = (unsigned char)(step->cc >> 24);
    cc[1] = (unsigned char)(step->cc >> 16);
    cc[2] = (unsigned char)(step->cc >> 8);
    cc[3] = (unsigned char)step->cc;
    p[0] = digest->buffer;
    n[0] = digest->size;
    p[1] = cc;
    n[1] = sizeof(cc);
    if (step->cc == TPM2_CC_PolicyPCR) {
        if (Tss2_MU_TPML_PCR_SELECTION_Marshal(&step->pcrs, sel, sizeof(sel), &sel_len) !=
            TSS2_RC_SUCCESS) {
            hwkey_raise(HWKEY_R_INTERNAL, "marshalling a PCR selection");
            return 0;
        }
        p[2] = sel;
        n[2] = sel_len;
        p[3] = step->pcr_digest.buffer;
        n[3] = step->pcr_digest.size;
        count = 4;
    }
    if (!sha256_parts(p, n, count, digest->buffer))
        return 0;
    digest->size = 32;
    return 1;
}

/* The current value of one PCR of bank; BAD_ARGUMENT if the TPM lacks that bank. */
static int read_pcr(ESYS_CONTEXT *esys, TPMI_ALG_HASH bank, int md_nid, unsigned int pcr,
                    TPM2B_DIGEST *value)
{
    TPML_PCR_SELECTION sel, *sel_out = NULL;
    TPML_DIGEST *values = NULL;
    HWKEY_TPM2_RETRY retry = {0};
    UINT32 counter = 0;
    TSS2_RC rc;
    int ok = 0;

    single_selection(bank, pcr, &sel);
    do {
        rc = Esys_PCR_Read(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, &counter, &sel_out,
                           &values);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, "reading the PCRs to bind to (TPM2_PCR_Read)");
        return 0;
    }
    if (values->count != 1 || values->digests[0].size != hwkey_tpm2_hash_size(bank)) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT,
                    "the TPM has no %s value for PCR %u (no such PCR "
                    "bank active; tpm2_getcap pcrs lists them)",
                    hwkey_pcrsel_bank_name(md_nid), pcr);
        goto end;
    }
    *value = values->digests[0];
    ok = 1;
end:
    Esys_Free(sel_out);
    Esys_Free(values);
    return ok;
}

int hwkey_tpm2_policy_make(ESYS_CONTEXT *esys, const HWKEY_PCRSEL *sel, int with_auth,
                           HWKEY_TPM2_POLICY **out, TPM2B_DIGEST *digest)
{
    TPMI_ALG_HASH bank = hwkey_tpm2_hash_alg(sel->md_nid);
    HWKEY_TPM2_POLICY *pol = NULL;

    *out = NULL;
    memset(digest, 0, sizeof(*digest));
    digest->size = 32; /* the empty policy: 32 zero bytes */
    if (bank == TPM2_ALG_ERROR || sel->mask == 0 || sel->mask >> HWKEY_PCR_COUNT != 0) {
        hwkey_raise(HWKEY_R_BAD_ARGUMENT, "the PCR selection is empty or not sha1/256/384/512");
        return 0;
    }
    if ((pol = OPENSSL_zalloc(sizeof(*pol))) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a PCR policy");
        return 0;
    }
    for (unsigned int pcr = 0; pcr < HWKEY_PCR_COUNT; pcr++) {
        HWKEY_TPM2_POLICY_STEP *step = &pol->step[pol->count];
        TPM2B_DIGEST value;
        const unsigned char *p[1];
        size_t n[1];

        if ((sel->mask & (1u << pcr)) == 0)
            continue;
        if (!read_pcr(esys, bank, sel->md_nid, pcr, &value))
            goto err;
        step->cc = TPM2_CC_PolicyPCR;
        single_selection(bank, pcr, &step->pcrs);
        /* pcrDigest is hashed with the session's algorithm, whatever the bank. */
        p[0] = value.buffer;
        n[0] = value.size;
        if (!sha256_parts(p, n, 1, step->pcr_digest.buffer))
            goto err;
        step->pcr_digest.size = 32;
        if (!extend_digest(digest, step))
            goto err;
        pol->count++;
    }
    if (with_auth) {
        pol->step[pol->count].cc = TPM2_CC_PolicyAuthValue;
        if (!extend_digest(digest, &pol->step[pol->count]))
            goto err;
        pol->count++;
    }
    *out = pol;
    return 1;
err:
    OPENSSL_free(pol);
    return 0;
}

void hwkey_tpm2_policy_bind(TPM2B_PUBLIC *tmpl, const TPM2B_DIGEST *digest)
{
    tmpl->publicArea.authPolicy = *digest;
    /* Only a policy session may then authorize use: the policy is not optional. */
    tmpl->publicArea.objectAttributes &= ~TPMA_OBJECT_USERWITHAUTH;
}

int hwkey_tpm2_policy_from_keyfile(const HWKEY_TSS2_KEYFILE *kf, HWKEY_TPM2_POLICY **out)
{
    HWKEY_TPM2_POLICY *pol;

    *out = NULL;
    if (kf->has_auth_policy) {
        hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                    "the key file has an authPolicy (signed "
                    "policy); hwkey satisfies only PolicyPCR and PolicyAuthValue");
        return 0;
    }
    if (kf->policy_count == 0)
        return 1;
    if ((pol = OPENSSL_zalloc(sizeof(*pol))) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating a PCR policy");
        return 0;
    }
    for (size_t i = 0; i < kf->policy_count; i++) {
        const HWKEY_TSS2_POLICY *in = &kf->policy[i];
        HWKEY_TPM2_POLICY_STEP *step = &pol->step[i];
        size_t off = 0;

        step->cc = in->cc;
        if (in->cc == TPM2_CC_PolicyAuthValue && in->params_len == 0)
            continue;
        if (in->cc != TPM2_CC_PolicyPCR) {
            hwkey_raise(HWKEY_R_UNSUPPORTED_ALGORITHM,
                        "the key file's policy step %zu is TPM "
                        "command 0x%x; hwkey satisfies only PolicyPCR (0x%x) and "
                        "PolicyAuthValue (0x%x)",
                        i + 1, (unsigned int)in->cc, (unsigned int)TPM2_CC_PolicyPCR,
                        (unsigned int)TPM2_CC_PolicyAuthValue);
            goto err;
        }
        if (Tss2_MU_TPM2B_DIGEST_Unmarshal(in->params, in->params_len, &off, &step->pcr_digest) !=
                TSS2_RC_SUCCESS ||
            Tss2_MU_TPML_PCR_SELECTION_Unmarshal(in->params, in->params_len, &off, &step->pcrs) !=
                TSS2_RC_SUCCESS ||
            off != in->params_len || selection_mask(&step->pcrs) == 0) {
            hwkey_raise(HWKEY_R_KEY_FILE_INVALID,
                        "the key file's policy step %zu (PolicyPCR) "
                        "does not hold a pcrDigest and a PCR selection",
                        i + 1);
            goto err;
        }
    }
    pol->count = kf->policy_count;
    *out = pol;
    return 1;
err:
    OPENSSL_free(pol);
    return 0;
}

int hwkey_tpm2_policy_to_keyfile(const HWKEY_TPM2_POLICY *pol, HWKEY_TSS2_KEYFILE *kf)
{
    unsigned char buf[sizeof(TPM2B_DIGEST) + sizeof(TPML_PCR_SELECTION)];

    for (size_t i = 0; pol != NULL && i < pol->count; i++) {
        const HWKEY_TPM2_POLICY_STEP *step = &pol->step[i];
        size_t len = 0;

        kf->policy[i].cc = step->cc;
        if (step->cc == TPM2_CC_PolicyPCR) {
            if (Tss2_MU_TPM2B_DIGEST_Marshal(&step->pcr_digest, buf, sizeof(buf), &len) !=
                    TSS2_RC_SUCCESS ||
                Tss2_MU_TPML_PCR_SELECTION_Marshal(&step->pcrs, buf, sizeof(buf), &len) !=
                    TSS2_RC_SUCCESS) {
                hwkey_raise(HWKEY_R_INTERNAL, "marshalling the PCR policy");
                return 0;
            }
            if ((kf->policy[i].params = OPENSSL_memdup(buf, len)) == NULL) {
                hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "marshalling the PCR policy");
                return 0;
            }
            kf->policy[i].params_len = len;
        }
        kf->policy_count = i + 1;
    }
    return 1;
}

/*
 * TPM_RC_VALUE from every PolicyPCR whose PCR moved: say which, in words an
 * operator can act on.
 */
static void raise_changed(const HWKEY_TPM2_POLICY *pol, const int *failed)
{
    char list[3 * HWKEY_PCR_COUNT + 1];
    uint32_t mask = 0;
    int bank_nid = 0, several_in_one = 0;
    const char *name;

    for (size_t i = 0; i < pol->count; i++) {
        uint32_t m;

        if (!failed[i])
            continue;
        m = selection_mask(&pol->step[i].pcrs);
        several_in_one |= (m & (m - 1)) != 0;
        mask |= m;
        name = hwkey_tpm2_hash_name(pol->step[i].pcrs.pcrSelections[0].hash);
        bank_nid = name != NULL ? OBJ_sn2nid(name) : 0;
    }
    hwkey_pcrsel_list(mask, list, sizeof(list));
    /* A step over several PCRs (another tool's file) only says that one of them moved. */
    hwkey_raise(HWKEY_R_POLICY_FAILED,
                "%s %s changed since the key was bound to %s "
                "(%s bank); re-seal the data key or make a new key (docs/pcr-policy.md)",
                several_in_one ? "one of PCR" : "PCR", list, (mask & (mask - 1)) ? "them" : "it",
                hwkey_pcrsel_bank_name(bank_nid));
}

int hwkey_tpm2_policy_session(ESYS_CONTEXT *esys, const HWKEY_TPM2_POLICY *pol, ESYS_TR salt,
                              TPMA_SESSION attrs, ESYS_TR *session)
{
    const TPMT_SYM_DEF aes = {
        .algorithm = TPM2_ALG_AES, .keyBits = {.aes = 128}, .mode = {.aes = TPM2_ALG_CFB}};
    const TPMT_SYM_DEF none = {.algorithm = TPM2_ALG_NULL};
    int failed[HWKEY_TSS2_POLICY_MAX] = {0}, any_failed = 0;
    HWKEY_TPM2_RETRY retry = {0};
    TSS2_RC rc;

    do {
        rc = Esys_StartAuthSession(esys, salt, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   ESYS_TR_NONE, NULL, TPM2_SE_POLICY,
                                   salt != ESYS_TR_NONE ? &aes : &none, TPM2_ALG_SHA256, session);
    } while (hwkey_tpm2_retry(&retry, rc));
    if (rc != TSS2_RC_SUCCESS) {
        *session = ESYS_TR_NONE;
        return hwkey_tpm2_raise_rc(rc, "starting the key's policy session");
    }
    for (size_t i = 0; i < pol->count && i < HWKEY_TSS2_POLICY_MAX; i++) {
        const HWKEY_TPM2_POLICY_STEP *step = &pol->step[i];

        retry = (HWKEY_TPM2_RETRY){0};
        do {
            if (step->cc == TPM2_CC_PolicyPCR)
                rc = Esys_PolicyPCR(esys, *session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                    &step->pcr_digest, &step->pcrs);
            else
                rc = Esys_PolicyAuthValue(esys, *session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE);
        } while (hwkey_tpm2_retry(&retry, rc));
        /*
         * TPM_RC_VALUE: this PCR differs.  The session's digest is left as
         * it was, so the other steps still run: the error then names every
         * PCR that changed, not only the first.
         */
        if (step->cc == TPM2_CC_PolicyPCR && hwkey_tpm2_rc_base(rc) == TPM2_RC_VALUE) {
            failed[i] = any_failed = 1;
            continue;
        }
        if (rc != TSS2_RC_SUCCESS) {
            hwkey_tpm2_raise_rc(rc, step->cc == TPM2_CC_PolicyPCR
                                        ? "running the key's policy (TPM2_PolicyPCR)"
                                        : "running the key's policy (TPM2_PolicyAuthValue)");
            goto err;
        }
    }
    if (any_failed) {
        raise_changed(pol, failed);
        goto err;
    }
    /* continueSession clear: the TPM ends the session with the one command it authorizes. */
    rc = Esys_TRSess_SetAttributes(esys, *session, attrs, 0xff);
    if (rc != TSS2_RC_SUCCESS) {
        hwkey_tpm2_raise_rc(rc, "setting the policy session's attributes");
        goto err;
    }
    return 1;
err:
    if (!hwkey_tpm2_conn_broken(rc))
        hwkey_tpm2_flush_quiet(esys, session);
    *session = ESYS_TR_NONE;
    return 0;
}
