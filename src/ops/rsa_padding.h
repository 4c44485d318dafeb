/*
 * RSA padding done on the host around the device's raw RSA private
 * operation (HWKEY_KEYF_RSA_RAW): signature encodings (PKCS#1 v1.5, PSS) and
 * constant-time removal of encryption padding (OAEP, PKCS#1 v1.5, and the
 * TLS premaster variant that never fails).  Digests are EVP_MDs fetched from
 * the provider's software library context.
 */
#ifndef HWKEY_OPS_RSA_PADDING_H
#define HWKEY_OPS_RSA_PADDING_H

#include <stddef.h>

#include <openssl/core.h>
#include <openssl/evp.h>

/* 1 if md_nid is a digest hwkey signs with (SHA-1, SHA-2, SHA-3: those with a DigestInfo). */
int hwkey_digest_known(int md_nid);

/*
 * EMSA-PKCS1-v1_5 (RFC 8017 9.2) into em[0..k): 00 01 FF.. 00 T, where T is
 * the DigestInfo of digest, or digest itself for md_nid NID_md5_sha1 (TLS
 * before 1.2) and NID_undef (the caller already encoded it).
 */
int hwkey_rsa_encode_pkcs1(unsigned char *em, size_t k, int md_nid, const unsigned char *digest,
                           size_t digest_len);

/* Largest PSS salt for a modulus of modbits bits and a hlen-byte digest; < 0 if none fits. */
int hwkey_rsa_pss_max_salt(int modbits, size_t hlen);

/*
 * EMSA-PSS-ENCODE (RFC 8017 9.1.1) of mhash into em[0..k) for a modulus of
 * modbits bits, salt from RAND_bytes_ex(libctx).  The caller checked
 * salt_len against hwkey_rsa_pss_max_salt().
 */
int hwkey_rsa_encode_pss(OSSL_LIB_CTX *libctx, unsigned char *em, size_t k, int modbits,
                         const EVP_MD *md, const EVP_MD *mgf1_md, const unsigned char *mhash,
                         size_t salt_len);

/*
 * Constant-time padding removal from em[0..k), the raw RSA output.  They
 * return the message length written to to[0..tlen), or -1 for any padding
 * failure; they raise nothing, so the caller reports every failure the same way.
 */
int hwkey_rsa_decode_oaep(unsigned char *to, size_t tlen, const unsigned char *em, size_t k,
                          const EVP_MD *md, const EVP_MD *mgf1_md, const unsigned char *label,
                          size_t label_len);
int hwkey_rsa_decode_pkcs1(unsigned char *to, size_t tlen, const unsigned char *em, size_t k);

#define HWKEY_TLS_PREMASTER_LEN 48

/*
 * RSA key exchange of TLS (RFC 5246 7.4.7.1): writes 48 bytes to to[], the
 * premaster from em when padding, length and client version (or alt_version,
 * if non-zero) are right, else random bytes, without telling which.
 * Returns 48, or -1 only for a publicly invalid call (tlen, k, RNG failure).
 */
int hwkey_rsa_decode_pkcs1_tls(OSSL_LIB_CTX *libctx, unsigned char *to, size_t tlen,
                               const unsigned char *em, size_t k, unsigned int client_version,
                               unsigned int alt_version);

/*
 * The pad-mode parameter, as an integer (RSA_*_PADDING, what
 * EVP_PKEY_CTX_set_rsa_padding sends) or a name ("pkcs1", "oaep", "pss",
 * "none", "x931").  _name gives a name for messages, also for unknown modes.
 */
int hwkey_rsa_pad_mode_get(const OSSL_PARAM *p, int *mode);
int hwkey_rsa_pad_mode_set(OSSL_PARAM *p, int mode);
const char *hwkey_rsa_pad_mode_name(int mode);

/* MGF1 (RFC 8017 B.2.1). */
int hwkey_rsa_mgf1(unsigned char *mask, size_t len, const unsigned char *seed, size_t seed_len,
                   const EVP_MD *md);

#endif
