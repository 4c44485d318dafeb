/*
 * The hwkey encrypted file format (docs/bulk.md): a 24-byte header, then
 * chunks of up to 64 KiB, each AES-256-GCM with its own tag.
 *
 *   header = "HWKEYENC" | version 1 | alg 1 (AES-256-GCM) | 0x0000 |
 *            chunk size (u32 BE) | nonce prefix (8 random bytes)
 *   chunk i = ciphertext | tag(16)     IV  = nonce prefix | i (u32 BE)
 *                                      AAD = header | i (u64 BE) | final (u8)
 *
 * Every chunk but the last holds exactly chunk-size bytes; the last one,
 * flagged final, holds 0..chunk-size bytes.  A modified byte, a truncated,
 * reordered, duplicated or appended chunk, or another data key makes some
 * tag fail.
 */
#ifndef HWKEY_BULK_BULK_FILE_H
#define HWKEY_BULK_BULK_FILE_H

#include <stdint.h>

#include "bulk/bulk_gcm.h"

#define HWKEY_BULK_FILE_MAGIC "HWKEYENC"
#define HWKEY_BULK_FILE_HEADER_LEN 24
#define HWKEY_BULK_FILE_CHUNK 65536u

/*
 * Called after each chunk with the input bytes consumed so far (header and
 * tags included when decrypting), so that after the last chunk it equals the
 * input's size; may be NULL.
 */
typedef void hwkey_bulk_progress_fn(void *arg, uint64_t done);

/*
 * Streams in_fd to out_fd.  1 on success; 0 with one error raised:
 * HWKEY_R_DECRYPTION_FAILED names the chunk that failed and why (tag,
 * truncation, not our format), HWKEY_R_BAD_ARGUMENT an I/O failure.
 * decrypt writes a chunk's plaintext only after its tag verified; the caller
 * must still discard everything written when it returns 0 (a later chunk may
 * fail, or the final one may be missing).
 */
int hwkey_bulk_file_encrypt(HWKEY_BULK_GCM *g, int in_fd, int out_fd,
                            hwkey_bulk_progress_fn *progress, void *arg);
int hwkey_bulk_file_decrypt(HWKEY_BULK_GCM *g, int in_fd, int out_fd,
                            hwkey_bulk_progress_fn *progress, void *arg);

#endif
