/*
 * Counting TPM commands in the capture of tpm2-tss's pcap TCTI
 * ("pcap:<inner tcti>", file from TCTI_PCAP_FILE).
 *
 * The TCTI writes pcap-ng in host byte order: a section header and an
 * interface block at every TCTI initialisation, then one enhanced packet
 * block per command and per response, each an IPv4 + TCP frame whose TCP
 * payload is the TPM command or response.  Commands go to TCP port 2321.
 * Blocks are written with write(2), one call each, so a file size taken
 * between two signatures is a block boundary.
 */
#define _POSIX_C_SOURCE 200809L /* setenv, mkdtemp, clock_gettime, nanosleep */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"

#define PCAPNG_EPB 0x00000006u
#define EPB_HEADER_LEN 28u
#define IPV4_HEADER_LEN 20u
#define TCP_HEADER_LEN 20u
#define TPM_PORT 2321u
#define TPM_HEADER_LEN 10u

static const struct {
    uint32_t cc;
    const char *name;
} cc_names[] = {
    {0x00000131, "CreatePrimary"},
    {0x00000153, "Create"},
    {0x00000157, "Load"},
    {0x00000159, "RSA_Decrypt"},
    {0x0000015C, "SequenceUpdate"},
    {0x0000015D, "Sign"},
    {0x0000013E, "SequenceComplete"},
    {0x00000161, "ContextLoad"},
    {0x00000162, "ContextSave"},
    {0x00000165, "FlushContext"},
    {0x00000173, "ReadPublic"},
    {0x00000174, "RSA_Encrypt"},
    {0x00000176, "StartAuthSession"},
    {0x00000177, "VerifySignature"},
    {0x0000017A, "GetCapability"},
    {0x0000017B, "GetRandom"},
    {0x0000017D, "Hash"},
    {0x00000186, "HashSequenceStart"},
    {0x0000018A, "TestParms"},
    {0x00000191, "CreateLoaded"},
    {0x00000167, "ECDH_ZGen"},
    {0x00000121, "EvictControl"},
};

const char *bench_cc_name(uint32_t cc)
{
    for (size_t i = 0; i < sizeof(cc_names) / sizeof(cc_names[0]); i++)
        if (cc_names[i].cc == cc)
            return cc_names[i].name;
    return NULL;
}

long bench_pcap_size(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return -1;
    return (long)st.st_size;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void count_command(BENCH_CMD_COUNT *out, uint32_t cc)
{
    out->commands++;
    for (int i = 0; i < out->ncodes; i++) {
        if (out->code[i] == cc) {
            out->code_count[i]++;
            return;
        }
    }
    if (out->ncodes == BENCH_CC_SLOTS) {
        out->other_codes++;
        return;
    }
    out->code[out->ncodes] = cc;
    out->code_count[out->ncodes++] = 1;
}

/* One enhanced packet block: classify its TCP payload. */
static int count_epb(const unsigned char *b, uint32_t blen, BENCH_CMD_COUNT *out)
{
    uint32_t caplen;
    const unsigned char *ip, *tcp, *tpm;

    if (blen < EPB_HEADER_LEN + 4)
        return 0;
    caplen = le32(b + 20);
    if (caplen > blen - EPB_HEADER_LEN - 4 ||
        caplen < IPV4_HEADER_LEN + TCP_HEADER_LEN + TPM_HEADER_LEN)
        return 0;
    ip = b + EPB_HEADER_LEN;
    if ((ip[0] >> 4) != 4 || ip[9] != 6) /* IPv4, TCP */
        return 0;
    tcp = ip + (ip[0] & 0x0f) * 4u;
    tpm = tcp + (tcp[12] >> 4) * 4u;
    if (tpm + TPM_HEADER_LEN > ip + caplen)
        return 0;
    if ((((uint32_t)tcp[2] << 8) | tcp[3]) == TPM_PORT)
        count_command(out, be32(tpm + 6));
    else
        out->responses++;
    return 1;
}

int bench_pcap_count(const char *path, long from, long to, BENCH_CMD_COUNT *out, char *err,
                     size_t errlen)
{
    FILE *f = NULL;
    unsigned char *buf = NULL;
    long size, off = 0;
    int ok = 0;

    memset(out, 0, sizeof(*out));
    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open capture %s", path);
        goto end;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot size capture %s", path);
        goto end;
    }
    buf = malloc(size > 0 ? (size_t)size : 1);
    if (buf == NULL || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        snprintf(err, errlen, "cannot read capture %s", path);
        goto end;
    }
    /* Walk every block from the start so offsets are always block starts. */
    while (off + 12 <= size) {
        uint32_t type = le32(buf + off), blen = le32(buf + off + 4);

        if (blen < 12 || blen % 4 != 0 || off + (long)blen > size) {
            snprintf(err, errlen, "capture %s: bad block length %u at offset %ld", path,
                     (unsigned)blen, off);
            goto end;
        }
        if (type == PCAPNG_EPB && off >= from && off < to && !count_epb(buf + off, blen, out)) {
            snprintf(err, errlen, "capture %s: packet at offset %ld is not a TPM frame", path, off);
            goto end;
        }
        off += blen;
    }
    ok = 1;
end:
    free(buf);
    if (f != NULL)
        fclose(f);
    return ok;
}
