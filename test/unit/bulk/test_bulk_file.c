/*
 * The encrypted file format (src/bulk/bulk_file.c, bulk_file.h, docs/bulk.md)
 * with a data key in memory, no device:
 *   - round trips at sizes around the chunk boundary (0, 1, chunk-1, chunk,
 *     chunk+1, several chunks): the output's size and header fields are the
 *     documented ones, and the bytes equal those of an encoder written here
 *     from the documented format alone (IV = nonce | i, AAD = header | i |
 *     final), so code and documentation cannot drift apart silently
 *   - truncation at every structural point (and, with a 16-byte chunk file,
 *     at every byte): exactly one HWKEY_R_DECRYPTION_FAILED naming the chunk
 *     and why; the output holds only the chunks that verified, never any
 *     plaintext of the chunk that failed
 *   - a flipped byte in each header field, in a ciphertext, in a tag; a
 *     reordered, duplicated, dropped, appended or spliced chunk; another key
 *   - header limits (chunk size 16 .. 2^24), I/O failures (BAD_ARGUMENT)
 *   - the progress callback: once per chunk, monotonic, ends at the total
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "bulk/bulk_file.h"
#include "util/error.h"
#include "../fakes/one_error.h"

#define C HWKEY_BULK_FILE_CHUNK
#define HDR HWKEY_BULK_FILE_HEADER_LEN
#define TAG HWKEY_BULK_TAG_LEN
#define REC (C + TAG)

static unsigned char key[HWKEY_BULK_KEY_LEN];
static HWKEY_BULK_GCM *gcm;

/* --- in-memory files --------------------------------------------------------- */

typedef struct {
    unsigned char *data;
    size_t len;
} BUF;

static int mem_fd(const unsigned char *data, size_t len)
{
    int fd = memfd_create("hwkey-bulk-test", 0);

    assert_true(fd >= 0);
    if (len > 0)
        assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static BUF fd_contents(int fd)
{
    struct stat st;
    BUF b = {0};

    assert_int_equal(fstat(fd, &st), 0);
    b.len = (size_t)st.st_size;
    b.data = malloc(b.len + 1);
    assert_non_null(b.data);
    assert_int_equal(pread(fd, b.data, b.len, 0), (ssize_t)b.len);
    return b;
}

static BUF random_buf(size_t len)
{
    BUF b = {malloc(len + 1), len};

    assert_non_null(b.data);
    assert_int_equal(RAND_bytes(b.data, (int)len + 1), 1);
    return b;
}

/* --- progress ----------------------------------------------------------------- */

typedef struct {
    size_t calls;
    uint64_t last;
    int monotonic;
    uint64_t seen[64];
} PROGRESS;

static void on_progress(void *arg, uint64_t done)
{
    PROGRESS *p = arg;

    if (done < p->last)
        p->monotonic = 0;
    if (p->calls < sizeof(p->seen) / sizeof(p->seen[0]))
        p->seen[p->calls] = done;
    p->calls++;
    p->last = done;
}

/*
 * Once per chunk, with the input consumed after chunk i: encrypting, the
 * plaintext, min((i + 1) * C, total); decrypting (over), the header and the
 * tags too, so that the last call equals the encrypted file's size.
 */
static void assert_progress_over(const PROGRESS *p, size_t total, size_t chunks, size_t header,
                                 size_t tag)
{
    assert_true(p->monotonic);
    assert_int_equal(p->calls, chunks);
    assert_int_equal(p->last, header + total + chunks * tag);
    for (size_t i = 0; i < chunks && i < 64; i++)
        assert_int_equal(p->seen[i],
                         header + ((i + 1) * C < total ? (i + 1) * C : total) + (i + 1) * tag);
}

static void assert_progress(const PROGRESS *p, size_t total, size_t chunks)
{
    assert_progress_over(p, total, chunks, 0, 0);
}

/* --- encrypt / decrypt through fds -------------------------------------------- */

static BUF encrypt_buf(const BUF *pt, PROGRESS *p)
{
    int in = mem_fd(pt->data, pt->len), out = mem_fd(NULL, 0);
    BUF ct;

    ERR_clear_error();
    assert_int_equal(hwkey_bulk_file_encrypt(gcm, in, out, p != NULL ? on_progress : NULL, p), 1);
    assert_int_equal(ERR_peek_error(), 0);
    ct = fd_contents(out);
    close(in);
    close(out);
    return ct;
}

/* Returns what decrypt returned; *out gets everything it wrote. */
static int decrypt_buf(HWKEY_BULK_GCM *g, const unsigned char *ct, size_t len, BUF *out,
                       PROGRESS *p)
{
    int in = mem_fd(ct, len), o = mem_fd(NULL, 0), rc;

    ERR_clear_error();
    rc = hwkey_bulk_file_decrypt(g, in, o, p != NULL ? on_progress : NULL, p);

    *out = fd_contents(o);
    close(in);
    close(o);
    return rc;
}

/*
 * Decryption of ct fails with one DECRYPTION_FAILED naming what, and what was
 * written is exactly the first `verified` bytes of pt (the chunks that
 * authenticated before the failure; nothing of the failing chunk).
 */
static void assert_decrypt_fails(HWKEY_BULK_GCM *g, const unsigned char *ct, size_t len,
                                 const BUF *pt, size_t verified, const char *what)
{
    BUF out;

    assert_int_equal(decrypt_buf(g, ct, len, &out, NULL), 0);
    assert_one_error(HWKEY_R_DECRYPTION_FAILED, what);
    if (out.len != verified)
        fail_msg("after \"%s\": %zu bytes written, expected the %zu that verified", what, out.len,
                 verified);
    assert_true(verified <= pt->len);
    assert_memory_equal(out.data, pt->data, verified);
    free(out.data);
}

/* --- the format, written from the documentation alone ---------------------------- */

/*
 * docs/bulk.md: header = "HWKEYENC" | 1 | 1 | 0x0000 | chunk (u32 BE) | nonce(8);
 * chunk i = ct | tag, IV = nonce | i (u32 BE), AAD = header | i (u64 BE) | final.
 * extra_empty appends an empty final chunk after a full last one (the format
 * allows both; hwkey writes none).
 */
static BUF doc_encode(uint32_t chunk, const unsigned char nonce[8], const BUF *pt, int extra_empty)
{
    size_t chunks = pt->len == 0 ? 1 : (pt->len + chunk - 1) / chunk;
    BUF f;
    unsigned char *p;

    if (extra_empty && pt->len % chunk == 0 && pt->len > 0)
        chunks++;
    f.len = HDR + pt->len + chunks * TAG;
    f.data = malloc(f.len);
    assert_non_null(f.data);
    memcpy(f.data, "HWKEYENC", 8);
    f.data[8] = 1;
    f.data[9] = 1;
    f.data[10] = f.data[11] = 0;
    for (int i = 0; i < 4; i++)
        f.data[12 + i] = (unsigned char)(chunk >> (24 - 8 * i));
    memcpy(f.data + 16, nonce, 8);
    p = f.data + HDR;
    for (size_t i = 0; i < chunks; i++) {
        size_t off = i * chunk, n = off >= pt->len ? 0 : pt->len - off;
        unsigned char iv[12], aad[HDR + 9];

        n = n > chunk ? chunk : n;
        memcpy(iv, nonce, 8);
        for (int k = 0; k < 4; k++)
            iv[8 + k] = (unsigned char)(i >> (24 - 8 * k));
        memcpy(aad, f.data, HDR);
        for (int k = 0; k < 8; k++)
            aad[HDR + k] = (unsigned char)((uint64_t)i >> (56 - 8 * k));
        aad[HDR + 8] = i == chunks - 1;
        assert_int_equal(
            hwkey_bulk_gcm_encrypt(gcm, iv, aad, sizeof(aad), pt->data + off, p, n, p + n), 1);
        p += n + TAG;
    }
    assert_int_equal((size_t)(p - f.data), f.len);
    return f;
}

/* --- round trips ---------------------------------------------------------------- */

static const size_t sizes[] = {0, 1, 15, 16, 17, C - 1, C, C + 1, 2 * C, 3 * C + 7};

static void test_round_trip_sizes(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i], chunks = n == 0 ? 1 : (n + C - 1) / C;
        BUF pt = random_buf(n), ct, out, doc;
        PROGRESS pe = {.monotonic = 1}, pd = {.monotonic = 1};

        ct = encrypt_buf(&pt, &pe);
        /* Header fields as documented; one tag per chunk, no empty trailing chunk. */
        assert_int_equal(ct.len, HDR + n + chunks * TAG);
        assert_memory_equal(ct.data, "HWKEYENC", 8);
        assert_int_equal(ct.data[8], 1);
        assert_int_equal(ct.data[9], 1);
        assert_int_equal(ct.data[10] | ct.data[11], 0);
        assert_int_equal(
            (uint32_t)ct.data[12] << 24 | ct.data[13] << 16 | ct.data[14] << 8 | ct.data[15], C);
        assert_progress(&pe, n, chunks);
        /* Byte for byte what the documented format gives with the same nonce. */
        doc = doc_encode(C, ct.data + 16, &pt, 0);
        assert_int_equal(doc.len, ct.len);
        assert_memory_equal(doc.data, ct.data, ct.len);

        assert_int_equal(decrypt_buf(gcm, ct.data, ct.len, &out, &pd), 1);
        assert_int_equal(ERR_peek_error(), 0);
        assert_int_equal(out.len, n);
        assert_memory_equal(out.data, pt.data, n);
        assert_progress_over(&pd, n, chunks, HDR, TAG); /* ends at ct.len: the input's size */
        free(pt.data);
        free(ct.data);
        free(out.data);
        free(doc.data);
    }
}

/* The same plaintext twice: a fresh nonce each time, so different files. */
static void test_fresh_nonce(void **state)
{
    BUF pt = random_buf(100), a, b;

    (void)state;
    a = encrypt_buf(&pt, NULL);
    b = encrypt_buf(&pt, NULL);
    assert_int_equal(a.len, b.len);
    assert_memory_not_equal(a.data + 16, b.data + 16, 8);
    assert_memory_not_equal(a.data + HDR, b.data + HDR, a.len - HDR);
    free(pt.data);
    free(a.data);
    free(b.data);
}

/* Files the code does not write but the format allows: tiny and huge chunks, an empty final chunk.
 */
static void test_documented_variants_decrypt(void **state)
{
    static const struct {
        uint32_t chunk;
        size_t len;
        int extra_empty;
    } cases[] = {
        {.chunk = 16, .len = 50},
        {.chunk = 16, .len = 48, .extra_empty = 1},
        {.chunk = C, .len = 2 * C, .extra_empty = 1},
        {.chunk = 1u << 24, .len = 5},
    };
    unsigned char nonce[8];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        BUF pt = random_buf(cases[i].len), f, out;

        assert_int_equal(RAND_bytes(nonce, sizeof(nonce)), 1);
        f = doc_encode(cases[i].chunk, nonce, &pt, cases[i].extra_empty);
        assert_int_equal(decrypt_buf(gcm, f.data, f.len, &out, NULL), 1);
        assert_int_equal(ERR_peek_error(), 0);
        assert_int_equal(out.len, pt.len);
        assert_memory_equal(out.data, pt.data, pt.len);
        free(pt.data);
        free(f.data);
        free(out.data);
    }
}

/* --- truncation ------------------------------------------------------------------- */

/*
 * A 3-chunk file (C, C, 5 bytes): cut at each structural point.  `verified`
 * is how many plaintext bytes may be written: the chunks before the one
 * that fails.
 */
static void test_truncated_at_structural_points(void **state)
{
    static const struct {
        const char *where;
        size_t len, verified;
        const char *error;
    } cuts[] = {
        {"empty input", 0, 0, "no \"HWKEYENC\" header"},
        {"inside the magic", 5, 0, "no \"HWKEYENC\" header"},
        {"magic only", 8, 0, "no \"HWKEYENC\" header"},
        {"header less one byte", HDR - 1, 0, "no \"HWKEYENC\" header"},
        {"header only", HDR, 0, "ends at chunk 0 before its final chunk"},
        {"inside chunk 0's first tag length", HDR + TAG - 1, 0,
         "ends at chunk 0 before its final chunk"},
        {"chunk 0 cut to a tag's length", HDR + TAG, 0, "chunk 0 does not authenticate"},
        {"chunk 0 less one byte", HDR + REC - 1, 0, "chunk 0 does not authenticate"},
        {"after chunk 0", HDR + REC, 0, "chunk 0 does not authenticate"},
        {"one byte into chunk 1", HDR + REC + 1, C, "ends at chunk 1 before its final chunk"},
        {"chunk 1 less one byte", HDR + 2 * REC - 1, C, "chunk 1 does not authenticate"},
        {"after chunk 1", HDR + 2 * REC, C, "chunk 1 does not authenticate"},
        {"inside chunk 2's tag", HDR + 2 * REC + 10, 2 * C,
         "ends at chunk 2 before its final chunk"},
        {"last byte removed", HDR + 2 * REC + 5 + TAG - 1, 2 * C, "chunk 2 does not authenticate"},
    };
    BUF pt = random_buf(2 * C + 5), ct = encrypt_buf(&pt, NULL);

    (void)state;
    assert_int_equal(ct.len, HDR + 2 * REC + 5 + TAG);
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        print_message("cut: %s (%zu bytes)\n", cuts[i].where, cuts[i].len);
        assert_decrypt_fails(gcm, ct.data, cuts[i].len, &pt, cuts[i].verified, cuts[i].error);
    }
    free(pt.data);
    free(ct.data);
}

/*
 * A file with 16-byte chunks (16, 16, 16, 2 bytes) cut at every length: the
 * failing chunk and the reason follow from where the cut falls.
 */
static void test_truncated_at_every_byte(void **state)
{
    const size_t chunk = 16, rec = chunk + TAG;
    unsigned char nonce[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    BUF pt = random_buf(50), f = doc_encode((uint32_t)chunk, nonce, &pt, 0);
    char what[96];

    (void)state;
    assert_int_equal(f.len, HDR + 3 * rec + 2 + TAG);
    for (size_t len = 0; len < f.len; len++) {
        size_t body = len - HDR, whole = body / rec, rest = body % rec, verified;

        if (len < HDR) {
            verified = 0;
            snprintf(what, sizeof(what), "no \"HWKEYENC\" header");
        } else if (rest > 0 && rest < TAG) {
            /* Too short to hold a tag: the file ends before its final chunk. */
            verified = whole * chunk;
            snprintf(what, sizeof(what), "ends at chunk %zu before its final chunk", whole);
        } else if (rest == 0 && whole == 0) {
            verified = 0;
            snprintf(what, sizeof(what), "ends at chunk 0 before its final chunk");
        } else {
            /* The last record present is taken as final: its tag says it is not. */
            size_t failing = rest == 0 ? whole - 1 : whole;

            verified = failing * chunk;
            snprintf(what, sizeof(what), "chunk %zu does not authenticate", failing);
        }
        assert_decrypt_fails(gcm, f.data, len, &pt, verified, what);
    }
    free(pt.data);
    free(f.data);
}

/* --- modification ------------------------------------------------------------------ */

static void test_flipped_header_bytes(void **state)
{
    BUF pt = random_buf(2 * C + 5), ct = encrypt_buf(&pt, NULL);

    (void)state;
    for (size_t i = 0; i < HDR; i++) {
        const char *what;

        if (i < 8)
            what = "no \"HWKEYENC\" header";
        else if (i < 10)
            what = "unsupported hwkey file version";
        else if (i == 12 || i == 13) /* 0x01010000 > 2^24, 0 < 16 */
            what = "corrupt header: chunk size";
        else /* reserved, low chunk-size bytes, nonce: all authenticated */
            what = "chunk 0 does not authenticate";
        ct.data[i] ^= 0x01;
        print_message("header byte %zu flipped\n", i);
        assert_decrypt_fails(gcm, ct.data, ct.len, &pt, 0, what);
        ct.data[i] ^= 0x01;
    }
    free(pt.data);
    free(ct.data);
}

static void test_header_chunk_size_limits(void **state)
{
    static const struct {
        uint32_t chunk;
        const char *error;
    } bad[] = {
        {15, "corrupt header: chunk size 15"},
        {(1u << 24) + 1, "corrupt header: chunk size 16777217"},
        {0xffffffffu, "corrupt header: chunk size 4294967295"},
    };
    unsigned char nonce[8] = {0};
    BUF pt = random_buf(5);

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* A chunk of 16 re-labelled: the header check comes before any tag. */
        BUF f = doc_encode(16, nonce, &pt, 0);

        for (int k = 0; k < 4; k++)
            f.data[12 + k] = (unsigned char)(bad[i].chunk >> (24 - 8 * k));
        assert_decrypt_fails(gcm, f.data, f.len, &pt, 0, bad[i].error);
        free(f.data);
    }
    free(pt.data);
}

static void test_flipped_ciphertext_and_tags(void **state)
{
    static const struct {
        const char *where;
        size_t off, verified;
        const char *error;
    } flips[] = {
        {"chunk 0 first ciphertext byte", HDR, 0, "chunk 0 does not authenticate"},
        {"chunk 0 tag", HDR + C + 3, 0, "chunk 0 does not authenticate"},
        {"chunk 1 ciphertext", HDR + REC + 100, C, "chunk 1 does not authenticate"},
        {"chunk 1 last tag byte", HDR + 2 * REC - 1, C, "chunk 1 does not authenticate"},
        {"chunk 2 ciphertext", HDR + 2 * REC + 4, 2 * C, "chunk 2 does not authenticate"},
        {"last byte (chunk 2 tag)", HDR + 2 * REC + 5 + TAG - 1, 2 * C,
         "chunk 2 does not authenticate"},
    };
    BUF pt = random_buf(2 * C + 5), ct = encrypt_buf(&pt, NULL);

    (void)state;
    for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
        print_message("flip: %s\n", flips[i].where);
        ct.data[flips[i].off] ^= 0x80;
        assert_decrypt_fails(gcm, ct.data, ct.len, &pt, flips[i].verified, flips[i].error);
        ct.data[flips[i].off] ^= 0x80;
    }
    free(pt.data);
    free(ct.data);
}

/* A file assembled from src: its header, then its records by index (-1 ends; at most 5). */
static BUF assemble(const BUF *src, const int *recs)
{
    BUF f = {malloc(HDR + 5 * REC), HDR};

    assert_non_null(f.data);
    memcpy(f.data, src->data, HDR);
    for (; *recs >= 0; recs++) {
        size_t off = HDR + (size_t)*recs * REC, n = src->len - off < REC ? src->len - off : REC;

        memcpy(f.data + f.len, src->data + off, n);
        f.len += n;
    }
    return f;
}

static void test_reordered_duplicated_dropped_appended(void **state)
{
    static const struct {
        const char *what;
        int recs[6];
        size_t verified;
        const char *error;
    } cases[] = {
        {"chunks 0 and 1 swapped", {1, 0, 2, -1}, 0, "chunk 0 does not authenticate"},
        {"chunk 0 duplicated", {0, 0, 1, 2, -1}, C, "chunk 1 does not authenticate"},
        {"chunk 1 dropped", {0, 2, -1}, C, "chunk 1 does not authenticate"},
        {"final chunk appended again", {0, 1, 2, 2, -1}, 2 * C, "chunk 2 does not authenticate"},
    };
    BUF pt = random_buf(2 * C + 5), ct = encrypt_buf(&pt, NULL);

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        BUF f = assemble(&ct, cases[i].recs);

        print_message("case: %s\n", cases[i].what);
        assert_decrypt_fails(gcm, f.data, f.len, &pt, cases[i].verified, cases[i].error);
        free(f.data);
    }
    free(pt.data);
    free(ct.data);
}

/* Another encryption of the same plaintext under the same key: its pieces do not fit ours. */
static void test_spliced_from_other_file(void **state)
{
    static const int ours[] = {0, 1, 2, -1};
    BUF pt = random_buf(2 * C + 5), ct = encrypt_buf(&pt, NULL), other = encrypt_buf(&pt, NULL);
    BUF f = assemble(&ct, ours);

    (void)state;
    /* The other file's chunk 1 in ours: our chunk 0 passes, chunk 1 does not. */
    memcpy(f.data + HDR + REC, other.data + HDR + REC, REC);
    assert_decrypt_fails(gcm, f.data, f.len, &pt, C, "chunk 1 does not authenticate");
    /* The other file's header (its nonce) in front of our chunks. */
    memcpy(f.data, other.data, HDR);
    memcpy(f.data + HDR + REC, ct.data + HDR + REC, REC);
    assert_decrypt_fails(gcm, f.data, f.len, &pt, 0, "chunk 0 does not authenticate");
    free(pt.data);
    free(ct.data);
    free(other.data);
    free(f.data);
}

/* A whole-chunk file (no short final chunk) with a record appended: chunk 1 is no longer final. */
static void test_appended_after_full_final_chunk(void **state)
{
    static const int recs[] = {0, 1, 1, -1};
    BUF pt = random_buf(2 * C), ct = encrypt_buf(&pt, NULL), f;

    (void)state;
    assert_int_equal(ct.len, HDR + 2 * REC);
    f = assemble(&ct, recs);
    assert_decrypt_fails(gcm, f.data, f.len, &pt, C, "chunk 1 does not authenticate");
    /* Trailing garbage shorter than a tag, too. */
    memcpy(f.data + HDR + 2 * REC, "garbage", 7);
    assert_decrypt_fails(gcm, f.data, HDR + 2 * REC + 7, &pt, C, "chunk 1 does not authenticate");
    free(pt.data);
    free(ct.data);
    free(f.data);
}

static void test_other_key(void **state)
{
    unsigned char k2[HWKEY_BULK_KEY_LEN];
    BUF pt = random_buf(C + 1), ct = encrypt_buf(&pt, NULL);
    HWKEY_BULK_GCM *g2;

    (void)state;
    memcpy(k2, key, sizeof(k2));
    k2[31] ^= 1;
    g2 = hwkey_bulk_gcm_new(k2);
    assert_non_null(g2);
    assert_decrypt_fails(g2, ct.data, ct.len, &pt, 0, "or this is not its data key");
    hwkey_bulk_gcm_free(g2);
    free(pt.data);
    free(ct.data);
}

/* --- I/O failures -------------------------------------------------------------------- */

static void test_io_failures(void **state)
{
    BUF pt = random_buf(10), ct = encrypt_buf(&pt, NULL);
    int in, full, wronly;

    (void)state;
    /* Output device full: one BAD_ARGUMENT naming the write and errno's text. */
    full = open("/dev/full", O_WRONLY);
    assert_true(full >= 0);
    in = mem_fd(pt.data, pt.len);
    ERR_clear_error();
    assert_int_equal(hwkey_bulk_file_encrypt(gcm, in, full, NULL, NULL), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "writing the output: No space left on device");
    close(in);
    in = mem_fd(ct.data, ct.len);
    assert_int_equal(hwkey_bulk_file_decrypt(gcm, in, full, NULL, NULL), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "writing the output: No space left on device");
    close(in);
    close(full);
    /* An input that cannot be read. */
    wronly = open("/dev/null", O_WRONLY);
    assert_true(wronly >= 0);
    in = mem_fd(NULL, 0);
    assert_int_equal(hwkey_bulk_file_encrypt(gcm, wronly, in, NULL, NULL), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "reading the input: Bad file descriptor");
    assert_int_equal(hwkey_bulk_file_decrypt(gcm, wronly, in, NULL, NULL), 0);
    assert_one_error(HWKEY_R_BAD_ARGUMENT, "reading the input: Bad file descriptor");
    close(in);
    close(wronly);
    free(pt.data);
    free(ct.data);
}

static int setup(void **state)
{
    (void)state;
    if (RAND_bytes(key, sizeof(key)) != 1 || (gcm = hwkey_bulk_gcm_new(key)) == NULL)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hwkey_bulk_gcm_free(gcm);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_sizes),
        cmocka_unit_test(test_fresh_nonce),
        cmocka_unit_test(test_documented_variants_decrypt),
        cmocka_unit_test(test_truncated_at_structural_points),
        cmocka_unit_test(test_truncated_at_every_byte),
        cmocka_unit_test(test_flipped_header_bytes),
        cmocka_unit_test(test_header_chunk_size_limits),
        cmocka_unit_test(test_flipped_ciphertext_and_tags),
        cmocka_unit_test(test_reordered_duplicated_dropped_appended),
        cmocka_unit_test(test_spliced_from_other_file),
        cmocka_unit_test(test_appended_after_full_final_chunk),
        cmocka_unit_test(test_other_key),
        cmocka_unit_test(test_io_failures),
    };

    if (!hwkey_bulk_cpu_ok()) {
        fprintf(stderr, "SKIP: this CPU lacks AES-NI/PCLMULQDQ\n");
        return 77;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
