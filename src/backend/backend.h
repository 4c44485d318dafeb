/*
 * The seam between "what OpenSSL asked" and "which device does it".
 *
 * Every backend (tpm2, pkcs11, the unit tests' fake) fills one HWKEY_BACKEND
 * vtable; nothing above this header knows which device it talks to, and
 * nothing else switches on the backend type.  Locking, sessions, fork
 * re-initialisation and retries live inside each backend: every function here
 * may be called from several threads at once and in a forked child.
 *
 * Conventions: functions return 1 on success and 0 on failure, having raised
 * exactly one error with hwkey_raise() that names the device's own decoded
 * code (TPM_RC_..., CKR_...).  Output buffers come with their size in *outlen;
 * passing out == NULL asks for the size only.
 */
#ifndef HWKEY_BACKEND_BACKEND_H
#define HWKEY_BACKEND_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>
#include <openssl/core.h>
#include <openssl/evp.h>

#include "util/config.h"
#include "util/pcrsel.h"

typedef struct hwkey_backend HWKEY_BACKEND;

/* An open device context.  Backends embed this as their first member. */
typedef struct hwkey_device {
    const HWKEY_BACKEND *backend;
} HWKEY_DEVICE;

typedef enum { HWKEY_ALG_EC = 1, HWKEY_ALG_RSA, HWKEY_ALG_ED25519 } HWKEY_ALG;

/* What a key can do, filled by the backend when it resolves a key. */
#define HWKEY_KEYF_SIGN 0x01u    /* digest signatures through ->sign */
#define HWKEY_KEYF_DECRYPT 0x02u /* RSA decryption through ->rsa_decrypt */
#define HWKEY_KEYF_DERIVE 0x04u  /* ECDH through ->ecdh */
#define HWKEY_KEYF_RSA_RAW                                                                         \
    0x08u /* raw RSA private op (m^d) through ->rsa_private:                                       \
           * the caller pads, any PSS salt length works */

typedef struct {
    HWKEY_ALG alg;
    int bits;           /* modulus or field size */
    int curve_nid;      /* EC: NID_X9_62_prime256v1, NID_secp384r1, ... */
    unsigned int flags; /* HWKEY_KEYF_* */
} HWKEY_KEYINFO;

/* A resolved key handle.  Backends embed this as their first member. */
typedef struct hwkey_bkey {
    const HWKEY_BACKEND *backend;
    HWKEY_DEVICE *device;
    HWKEY_KEYINFO info;
} HWKEY_BKEY;

/* How a key is referred to. */
typedef enum {
    HWKEY_REF_TSS2_KEYFILE = 1, /* data: DER of a TSS2 PRIVATE KEY */
    HWKEY_REF_TPM2_HANDLE,      /* data: "handle:0x81000002" */
    HWKEY_REF_PKCS11_URI,       /* data: "pkcs11:..." */
    HWKEY_REF_PKCS11_DATAKEY,   /* data: DER of an HWKEY DATA KEY (util/datakey_file.h) */
} HWKEY_REF_KIND;

typedef struct {
    HWKEY_REF_KIND kind;
    const unsigned char *data;
    size_t len;
} HWKEY_KEYREF;

/* A key reference produced by generate/import: same kinds as HWKEY_KEYREF. */
typedef struct {
    HWKEY_REF_KIND kind;
    unsigned char *data; /* OPENSSL_free */
    size_t len;
} HWKEY_REFBLOB;

/* What to generate. */
typedef struct {
    HWKEY_ALG alg;
    int bits;      /* RSA: 2048, 3072, 4096 */
    int curve_nid; /* EC */
} HWKEY_KEYSPEC;

/* Options of generate/import. */
typedef struct {
    const char *uri;         /* pkcs11: where to create it (token, label, id) */
    uint32_t persist_handle; /* tpm2: 0, or 0x81xxxxxx to make it persistent */
    const char *auth;        /* key auth value / NULL for none */
    size_t auth_len;
    int create_kek; /* datakey_create, pkcs11: make the KEK uri names if absent */
    /*
     * tpm2 key_generate / datakey_create: bind use to these PCRs' current
     * values (TPM2_PolicyPCR, with TPM2_PolicyAuthValue when auth is given);
     * mask 0 = no PCR policy.
     */
    HWKEY_PCRSEL pcrs;
} HWKEY_GENOPTS;

typedef enum {
    HWKEY_SIG_ECDSA = 1, /* tbs = digest; sig = DER ECDSA-Sig-Value */
    HWKEY_SIG_RSA_PKCS1, /* tbs = digest; device does PKCS#1 v1.5 */
    HWKEY_SIG_RSA_PSS,   /* tbs = digest; device does PSS with salt_len */
    HWKEY_SIG_EDDSA,     /* tbs = message */
} HWKEY_SIG_SCHEME;

typedef struct {
    HWKEY_SIG_SCHEME scheme;
    int md_nid;      /* digest that produced tbs (NID_sha256 ...) */
    int mgf1_md_nid; /* PSS */
    int salt_len;    /* PSS, in bytes, already resolved */
} HWKEY_SIGN_PARAMS;

typedef enum {
    HWKEY_PAD_PKCS1 = 1, /* RSAES-PKCS1-v1_5 */
    HWKEY_PAD_OAEP,
} HWKEY_PAD;

typedef struct {
    HWKEY_PAD padding;
    int oaep_md_nid;
    int mgf1_md_nid;
    const unsigned char *label;
    size_t label_len;
} HWKEY_DECRYPT_PARAMS;

/* One line of `hwkey list`. */
typedef struct {
    const char *ref; /* "handle:0x81000002", "pkcs11:...;object=web" */
    HWKEY_KEYINFO info;
    const char *label; /* may be NULL */
} HWKEY_LISTED_KEY;
typedef int (*hwkey_list_cb)(const HWKEY_LISTED_KEY *key, void *arg);

/*
 * The outcome of resolving a reference.  FAILED and ABSENT both raise one
 * error (ABSENT's reason is HWKEY_R_KEY_NOT_FOUND); ABSENT means the device
 * answered and holds nothing the reference names, so a caller trying
 * several kinds of object (the pkcs11: store) moves on.  Compare with
 * == HWKEY_LOOKUP_FOUND: ABSENT is not 0, so `if (!r)` would be wrong.
 */
typedef enum {
    HWKEY_LOOKUP_FAILED = 0,
    HWKEY_LOOKUP_FOUND = 1,
    HWKEY_LOOKUP_ABSENT = 2
} HWKEY_LOOKUP;

struct hwkey_backend {
    const char *name; /* "tpm2", "pkcs11", "fake" */
    /* 1 if this backend resolves references of this kind. */
    int (*handles)(HWKEY_REF_KIND kind);

    /* Open a device context from configuration.  May connect lazily. */
    HWKEY_DEVICE *(*open)(const HWKEY_CONFIG *cfg);
    void (*close)(HWKEY_DEVICE *dev);
    /* Capability predicate for the algorithm catalogue: can the device do spec? */
    /* 1: yes, 0: no, -1: cannot tell (unreachable, or asking could re-enter the module).
     * Must be cheap and must never load a PKCS#11 module. */
    int (*supports)(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec);
    /* `hwkey info`: human-readable description of the device(s). */
    int (*describe)(HWKEY_DEVICE *dev, BIO *out);

    /*
     * Resolve a reference.  pw_cb is asked for the key's auth value or PIN
     * when one is needed and none is given; it may be NULL.  ABSENT when
     * the device answered and holds nothing the reference names (see
     * HWKEY_LOOKUP).
     */
    HWKEY_LOOKUP(*key_load)
    (HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
     HWKEY_BKEY **out);
    void (*key_free)(HWKEY_BKEY *key);
    /* The public half as a software key in libctx (verification, encryption). */
    EVP_PKEY *(*key_public)(HWKEY_BKEY *key, OSSL_LIB_CTX *libctx, const char *propq);

    int (*key_generate)(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec, const HWKEY_GENOPTS *opts,
                        HWKEY_REFBLOB *out);
    /* Wrap a software private key into the device. */
    int (*key_import)(HWKEY_DEVICE *dev, EVP_PKEY *soft, const HWKEY_GENOPTS *opts,
                      HWKEY_REFBLOB *out);
    int (*key_delete)(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref);
    int (*key_list)(HWKEY_DEVICE *dev, const char *filter, hwkey_list_cb cb, void *arg);

    /* Private-key operations: exactly one device command in steady state. */
    int (*sign)(HWKEY_BKEY *key, const HWKEY_SIGN_PARAMS *params, const unsigned char *tbs,
                size_t tbslen, unsigned char *sig, size_t *siglen);
    int (*rsa_private)(HWKEY_BKEY *key, const unsigned char *in, size_t inlen, unsigned char *out,
                       size_t *outlen);
    int (*rsa_decrypt)(HWKEY_BKEY *key, const HWKEY_DECRYPT_PARAMS *params, const unsigned char *in,
                       size_t inlen, unsigned char *out, size_t *outlen);
    /* peer: uncompressed EC point (04||X||Y); out: the shared X coordinate. */
    int (*ecdh)(HWKEY_BKEY *key, const unsigned char *peer, size_t peerlen, unsigned char *out,
                size_t *outlen);

    /*
     * Objects other than private keys, for the pkcs11: store and `hwkey
     * pubkey`; NULL in backends that have none.  Both return ABSENT when
     * nothing matches, so a caller trying several kinds can tell "absent"
     * from a real failure without reading the error queue.
     *
     * pubkey_load: the public key ref names: a public-key object, else the
     * public key of a matching certificate, else the public half of the
     * matching private key (only this last one needs a login).  A ref whose
     * type= names one class looks only there.
     */
    HWKEY_LOOKUP(*pubkey_load)
    (HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
     OSSL_LIB_CTX *libctx, const char *propq, EVP_PKEY **out);
    /* cert_load: the DER (OPENSSL_free) of the certificate ref names. */
    HWKEY_LOOKUP(*cert_load)
    (HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
     unsigned char **der, size_t *derlen);

    /*
     * Data keys for the bulk cipher (ARCHITECTURE.md §4, docs/bulk.md); NULL
     * in backends without them.  datakey_create: a new 32-byte AES key,
     * returned only wrapped by the device (opts->auth: its auth value;
     * opts->uri: a PKCS#11 key-wrapping key).  datakey_unwrap: the key, into
     * key[32], which the caller allocated in protected memory.
     */
    int (*datakey_create)(HWKEY_DEVICE *dev, const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out);
    int (*datakey_unwrap)(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                          OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, unsigned char key[32]);

    /*
     * Evidence of where key was born and whether it can leave the device
     * (`hwkey attest`, docs/attestation.md), written to out: the TPM writes
     * a bundle of PEM blocks (TPM2_Certify by its attestation key, nonce as
     * qualifying data); a PKCS#11 token reports the key's CKA_LOCAL,
     * CKA_NEVER_EXTRACTABLE, CKA_SENSITIVE, CKA_EXTRACTABLE as text (the
     * token's own word: PKCS#11 has no signed evidence; nonce unused).
     */
    int (*key_attest)(HWKEY_BKEY *key, const unsigned char *nonce, size_t nonce_len, BIO *out);

    /*
     * --- What only the backend knows about its keys' references ---------
     * None of these touches the device; each may be NULL.
     *
     * uri_kind: the kind of a reference string in this backend's URI
     * scheme ("handle:...", "pkcs11:..."), 0 if the scheme is not its own.
     */
    HWKEY_REF_KIND (*uri_kind)(const char *uri);
    /*
     * key_describe: one line for `openssl pkey -text`, "Private key: held
     * by ...\n", from the key and the reference it was loaded from (ref
     * holds no PIN).  Nothing secret.
     */
    int (*key_describe)(HWKEY_BKEY *key, const HWKEY_KEYREF *ref, BIO *out);
    /*
     * ref_encode: writes ref as the key file an application keeps (`openssl
     * pkey -out`, genpkey): pem = 1 a PEM block, 0 its DER body.
     */
    int (*ref_encode)(const HWKEY_KEYREF *ref, int pem, BIO *out);
    /*
     * keyfile_recognise: is this key file (a PEM block's label and body, or
     * label NULL and DER of unknown origin) one of this backend's?  1: yes,
     * with *kind set, *alg the key type if the file says (else 0), and
     * *structure the decoder input structure its DER is registered under
     * (may be NULL); 0: not ours, nothing raised; -1: ours (by its label or
     * header) but malformed, one error raised naming what is wrong.
     */
    int (*keyfile_recognise)(const char *label, const unsigned char *data, size_t len,
                             HWKEY_REF_KIND *kind, HWKEY_ALG *alg, const char **structure);
    /*
     * generates: 1 if this backend makes the key these generation options
     * ask for (e.g. the pkcs11 backend when opts->uri names a token).
     */
    int (*generates)(const HWKEY_GENOPTS *opts);
    /*
     * ref_is_stored: 1 if a reference of this kind names an object kept in
     * the device (a persistent handle, a token object) that outlives the
     * reference, 0 if the reference is the whole key (a key file).
     */
    int (*ref_is_stored)(HWKEY_REF_KIND kind);
    /* What users call the device in messages: "TPM", "token". */
    const char *device_noun;
};

/* --- The registry: one lazily opened device per backend ------------------ */

typedef struct hwkey_devices HWKEY_DEVICES;

HWKEY_DEVICES *hwkey_devices_new(const HWKEY_CONFIG *cfg);
void hwkey_devices_free(HWKEY_DEVICES *devs);
/* The device that resolves references of this kind, opened on first use. */
HWKEY_DEVICE *hwkey_devices_for_kind(HWKEY_DEVICES *devs, HWKEY_REF_KIND kind);
/* The device of the backend with this name ("tpm2", "pkcs11"), opened on first use. */
HWKEY_DEVICE *hwkey_devices_by_name(HWKEY_DEVICES *devs, const char *name);
/* Calls cb for every backend's device that opens; used by the catalogue and `hwkey info`. */
int hwkey_devices_foreach(HWKEY_DEVICES *devs, int (*cb)(HWKEY_DEVICE *dev, void *arg), void *arg);

/*
 * Unit tests: route every reference kind to this backend instead of the
 * real ones (NULL restores).  Must be called before hwkey_devices_new().
 */
void hwkey_backend_set_override(const HWKEY_BACKEND *backend);

/*
 * Classify a reference string by asking each backend's uri_kind (the
 * override first); 0 if no backend knows its scheme.
 */
HWKEY_REF_KIND hwkey_ref_kind_of_string(const char *s);
/*
 * The first backend that recognises this key file (keyfile_recognise);
 * 0 (nothing raised) if none, -1 if one claims it but finds it malformed.
 */
int hwkey_devices_recognise_keyfile(HWKEY_DEVICES *devs, const char *label,
                                    const unsigned char *data, size_t len, HWKEY_REF_KIND *kind,
                                    HWKEY_ALG *alg, const char **structure);
/* The device that makes keys for these options (generates), opened on first use. */
HWKEY_DEVICE *hwkey_devices_for_generation(HWKEY_DEVICES *devs, const HWKEY_GENOPTS *opts);

/* --- Thin wrappers so callers never touch the vtable directly ----------- */

/* 1 if found, else 0 (absent or failed: one error raised either way). */
int hwkey_backend_key_load(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                           OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg, HWKEY_BKEY **out);
/* The same, saying which: for callers that try several kinds of object. */
HWKEY_LOOKUP hwkey_backend_key_find(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                    OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                    HWKEY_BKEY **out);
void hwkey_backend_key_free(HWKEY_BKEY *key);
EVP_PKEY *hwkey_backend_key_public(HWKEY_BKEY *key, OSSL_LIB_CTX *libctx, const char *propq);
int hwkey_backend_sign(HWKEY_BKEY *key, const HWKEY_SIGN_PARAMS *params, const unsigned char *tbs,
                       size_t tbslen, unsigned char *sig, size_t *siglen);
int hwkey_backend_rsa_private(HWKEY_BKEY *key, const unsigned char *in, size_t inlen,
                              unsigned char *out, size_t *outlen);
int hwkey_backend_rsa_decrypt(HWKEY_BKEY *key, const HWKEY_DECRYPT_PARAMS *params,
                              const unsigned char *in, size_t inlen, unsigned char *out,
                              size_t *outlen);
int hwkey_backend_ecdh(HWKEY_BKEY *key, const unsigned char *peer, size_t peerlen,
                       unsigned char *out, size_t *outlen);
int hwkey_backend_supports(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec);
/* Management (the CLI): raise HWKEY_R_UNSUPPORTED_ALGORITHM if the backend lacks the function. */
int hwkey_backend_describe(HWKEY_DEVICE *dev, BIO *out);
int hwkey_backend_key_generate(HWKEY_DEVICE *dev, const HWKEY_KEYSPEC *spec,
                               const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out);
/* Wrap a software private key into the device (key_import). */
int hwkey_backend_key_import(HWKEY_DEVICE *dev, EVP_PKEY *soft, const HWKEY_GENOPTS *opts,
                             HWKEY_REFBLOB *out);
int hwkey_backend_key_delete(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref);
int hwkey_backend_key_list(HWKEY_DEVICE *dev, const char *filter, hwkey_list_cb cb, void *arg);
/*
 * Public keys and certificates (see the vtable); ABSENT also when the
 * backend has no such objects at all.
 */
HWKEY_LOOKUP hwkey_backend_pubkey_load(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                       OSSL_LIB_CTX *libctx, const char *propq, EVP_PKEY **out);
HWKEY_LOOKUP hwkey_backend_cert_load(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                     OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                     unsigned char **der, size_t *derlen);

/* Data keys (see the vtable); HWKEY_R_UNSUPPORTED_ALGORITHM if the backend has none. */
int hwkey_backend_datakey_create(HWKEY_DEVICE *dev, const HWKEY_GENOPTS *opts, HWKEY_REFBLOB *out);
int hwkey_backend_datakey_unwrap(HWKEY_DEVICE *dev, const HWKEY_KEYREF *ref,
                                 OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_arg,
                                 unsigned char key[32]);

/*
 * References (see the vtable).  key_describe falls back to "held by the
 * <name> device"; ref_encode raises HWKEY_R_UNSUPPORTED_ALGORITHM if the
 * backend cannot; ref_is_stored is 1 when the backend does not say.
 */
int hwkey_backend_key_describe(HWKEY_BKEY *key, const HWKEY_KEYREF *ref, BIO *out);
int hwkey_backend_ref_encode(HWKEY_BKEY *key, const HWKEY_KEYREF *ref, int pem, BIO *out);
int hwkey_backend_ref_is_stored(HWKEY_DEVICE *dev, HWKEY_REF_KIND kind);
const char *hwkey_backend_device_noun(HWKEY_DEVICE *dev);
const char *hwkey_backend_name(HWKEY_DEVICE *dev);

/* Key attestation (see the vtable); HWKEY_R_UNSUPPORTED_ALGORITHM if the backend has none. */
int hwkey_backend_key_attest(HWKEY_BKEY *key, const unsigned char *nonce, size_t nonce_len,
                             BIO *out);

/* The real backends, defined in backend/<name>/. */
extern const HWKEY_BACKEND hwkey_tpm2_backend;
extern const HWKEY_BACKEND hwkey_pkcs11_backend;

#endif
