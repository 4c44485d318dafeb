/*
 * A PCR selection as users write it (tpm2-tools' syntax, one bank):
 * "sha256:0,2,7".  Backend-neutral: the bank is an OpenSSL digest NID and
 * the PCRs a bit mask; the TPM backend turns it into a TPML_PCR_SELECTION.
 */
#ifndef HWKEY_UTIL_PCRSEL_H
#define HWKEY_UTIL_PCRSEL_H

#include <stddef.h>
#include <stdint.h>

/* PCRs 0..23: the PC Client profile's count, and what swtpm has. */
#define HWKEY_PCR_COUNT 24

typedef struct {
    int md_nid;    /* NID_sha1, NID_sha256, NID_sha384, NID_sha512; 0 = no selection */
    uint32_t mask; /* bit n: PCR n */
} HWKEY_PCRSEL;

/*
 * Parses spec into out.  On a malformed spec returns 0 and writes why (one
 * phrase, no newline) into why[whylen].  Raises nothing: the CLI turns it
 * into a usage error.
 */
int hwkey_pcrsel_parse(const char *spec, HWKEY_PCRSEL *out, char *why, size_t whylen);

/* "0,2,7" for mask (buf of at least 3 * HWKEY_PCR_COUNT bytes). */
void hwkey_pcrsel_list(uint32_t mask, char *buf, size_t buflen);

/* "sha256" for the bank's NID, "?" for another. */
const char *hwkey_pcrsel_bank_name(int md_nid);

#endif
