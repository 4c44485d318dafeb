/*
 * Streaming authenticated encryption of files (format: bulk_file.h,
 * docs/bulk.md).  Whether a chunk is the final one is known only by reading
 * ahead one chunk, so two buffers alternate.
 */
#include "bulk/bulk_file.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "util/error.h"

#define VERSION 1
#define ALG_AES256GCM 1
#define CHUNK_MIN 16u
#define CHUNK_MAX (1u << 24)
/* IVs count chunks in 32 bits. */
#define CHUNKS_MAX 0xffffffffull

typedef struct {
    unsigned char header[HWKEY_BULK_FILE_HEADER_LEN];
    size_t chunk;
    unsigned char *buf[2];
} STREAM;

static int read_full(int fd, unsigned char *buf, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        ssize_t r = read(fd, buf + *got, n - *got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "reading the input: %s", strerror(errno));
            return 0;
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return 1;
}

static int write_full(int fd, const unsigned char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "writing the output: %s", strerror(errno));
            return 0;
        }
        buf += w;
        n -= (size_t)w;
    }
    return 1;
}

static void chunk_iv_aad(const STREAM *s, uint64_t index, int final, unsigned char iv[12],
                         unsigned char aad[HWKEY_BULK_FILE_HEADER_LEN + 9])
{
    memcpy(iv, s->header + 16, 8);
    for (int i = 0; i < 4; i++)
        iv[8 + i] = (unsigned char)(index >> (24 - 8 * i));
    memcpy(aad, s->header, HWKEY_BULK_FILE_HEADER_LEN);
    for (int i = 0; i < 8; i++)
        aad[HWKEY_BULK_FILE_HEADER_LEN + i] = (unsigned char)(index >> (56 - 8 * i));
    aad[HWKEY_BULK_FILE_HEADER_LEN + 8] = (unsigned char)(final != 0);
}

/*
 * A chunk is final when it is short or when nothing follows it.  Reading the
 * next record ahead into the other buffer tells which, so the final flag is
 * known before this chunk is sealed or opened (encrypt and decrypt alike).
 */
static int read_ahead(STREAM *s, int fd, int next, size_t full, size_t n, size_t *m, int *final)
{
    *m = 0;
    if (n < full) {
        *final = 1;
        return 1;
    }
    if (!read_full(fd, s->buf[next], full, m))
        return 0;
    *final = *m == 0;
    return 1;
}

static int stream_alloc(STREAM *s)
{
    s->buf[0] = OPENSSL_malloc(s->chunk + HWKEY_BULK_TAG_LEN);
    s->buf[1] = OPENSSL_malloc(s->chunk + HWKEY_BULK_TAG_LEN);
    if (s->buf[0] == NULL || s->buf[1] == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "allocating two %zu-byte chunk buffers", s->chunk);
        return 0;
    }
    return 1;
}

static void stream_free(STREAM *s)
{
    /* Plaintext passed through: not key material, but no reason to leave it around. */
    OPENSSL_clear_free(s->buf[0], s->chunk + HWKEY_BULK_TAG_LEN);
    OPENSSL_clear_free(s->buf[1], s->chunk + HWKEY_BULK_TAG_LEN);
}

int hwkey_bulk_file_encrypt(HWKEY_BULK_GCM *g, int in_fd, int out_fd,
                            hwkey_bulk_progress_fn *progress, void *arg)
{
    STREAM s = {.chunk = HWKEY_BULK_FILE_CHUNK};
    unsigned char iv[12], aad[HWKEY_BULK_FILE_HEADER_LEN + 9];
    size_t n = 0, m = 0;
    uint64_t index = 0, done = 0;
    int cur = 0, final = 0, ok = 0;

    memcpy(s.header, HWKEY_BULK_FILE_MAGIC, 8);
    s.header[8] = VERSION;
    s.header[9] = ALG_AES256GCM;
    for (int i = 0; i < 4; i++)
        s.header[12 + i] = (unsigned char)(s.chunk >> (24 - 8 * i));
    if (RAND_bytes(s.header + 16, 8) != 1) {
        hwkey_raise(HWKEY_R_INTERNAL, "the host RNG failed to produce a file nonce");
        return 0;
    }
    if (!stream_alloc(&s) || !write_full(out_fd, s.header, sizeof(s.header)) ||
        !read_full(in_fd, s.buf[cur], s.chunk, &n))
        goto end;
    while (!final) {
        if (!read_ahead(&s, in_fd, !cur, s.chunk, n, &m, &final))
            goto end;
        if (index > CHUNKS_MAX) {
            hwkey_raise(HWKEY_R_BAD_ARGUMENT, "input too large: more than 2^32 chunks");
            goto end;
        }
        chunk_iv_aad(&s, index, final, iv, aad);
        if (!hwkey_bulk_gcm_encrypt(g, iv, aad, sizeof(aad), s.buf[cur], s.buf[cur], n,
                                    s.buf[cur] + n) ||
            !write_full(out_fd, s.buf[cur], n + HWKEY_BULK_TAG_LEN))
            goto end;
        done += n;
        index++;
        if (progress != NULL)
            progress(arg, done);
        cur = !cur;
        n = m;
    }
    ok = 1;
end:
    stream_free(&s);
    return ok;
}

static int read_header(STREAM *s, int in_fd)
{
    size_t got = 0, chunk = 0;

    if (!read_full(in_fd, s->header, sizeof(s->header), &got))
        return 0;
    if (got < sizeof(s->header) || memcmp(s->header, HWKEY_BULK_FILE_MAGIC, 8) != 0) {
        hwkey_raise(HWKEY_R_DECRYPTION_FAILED, "the input is not an hwkey encrypted file "
                                               "(no \"HWKEYENC\" header)");
        return 0;
    }
    if (s->header[8] != VERSION || s->header[9] != ALG_AES256GCM) {
        hwkey_raise(HWKEY_R_DECRYPTION_FAILED,
                    "unsupported hwkey file version %u / "
                    "algorithm %u",
                    s->header[8], s->header[9]);
        return 0;
    }
    for (int i = 0; i < 4; i++)
        chunk = chunk << 8 | s->header[12 + i];
    if (chunk < CHUNK_MIN || chunk > CHUNK_MAX) {
        hwkey_raise(HWKEY_R_DECRYPTION_FAILED, "corrupt header: chunk size %zu", chunk);
        return 0;
    }
    s->chunk = chunk;
    return 1;
}

int hwkey_bulk_file_decrypt(HWKEY_BULK_GCM *g, int in_fd, int out_fd,
                            hwkey_bulk_progress_fn *progress, void *arg)
{
    STREAM s = {.chunk = 0};
    unsigned char iv[12], aad[HWKEY_BULK_FILE_HEADER_LEN + 9];
    size_t n = 0, m = 0, rec;
    uint64_t index = 0, done = 0;
    int cur = 0, final = 0, ok = 0;

    if (!read_header(&s, in_fd) || !stream_alloc(&s))
        goto end;
    rec = s.chunk + HWKEY_BULK_TAG_LEN;
    done = HWKEY_BULK_FILE_HEADER_LEN;
    if (!read_full(in_fd, s.buf[cur], rec, &n))
        goto end;
    while (!final) {
        if (n < HWKEY_BULK_TAG_LEN) {
            hwkey_raise(HWKEY_R_DECRYPTION_FAILED,
                        "the input ends at chunk %llu before its final chunk (truncated)",
                        (unsigned long long)index);
            goto end;
        }
        if (!read_ahead(&s, in_fd, !cur, rec, n, &m, &final))
            goto end;
        if (index > CHUNKS_MAX) {
            hwkey_raise(HWKEY_R_DECRYPTION_FAILED, "more than 2^32 chunks: not a valid file");
            goto end;
        }
        chunk_iv_aad(&s, index, final, iv, aad);
        /* The core's "tag mismatch" is replaced by one naming the chunk. */
        ERR_set_mark();
        if (!hwkey_bulk_gcm_decrypt(g, iv, aad, sizeof(aad), s.buf[cur], s.buf[cur],
                                    n - HWKEY_BULK_TAG_LEN, s.buf[cur] + n - HWKEY_BULK_TAG_LEN)) {
            ERR_pop_to_mark();
            hwkey_raise(HWKEY_R_DECRYPTION_FAILED,
                        "chunk %llu does not authenticate: the file was modified, truncated "
                        "or reordered, or this is not its data key",
                        (unsigned long long)index);
            goto end;
        }
        ERR_clear_last_mark();
        if (!write_full(out_fd, s.buf[cur], n - HWKEY_BULK_TAG_LEN))
            goto end;
        /* Input consumed, tag included: the caller compares it with the input's size. */
        done += n;
        index++;
        if (progress != NULL)
            progress(arg, done);
        cur = !cur;
        n = m;
    }
    ok = 1;
end:
    stream_free(&s);
    return ok;
}
