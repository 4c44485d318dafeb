/*
 * The provider's configuration (ARCHITECTURE.md §5): openssl.cnf parameters
 * with environment overrides.  Plain strings; each backend interprets its own.
 */
#ifndef HWKEY_UTIL_CONFIG_H
#define HWKEY_UTIL_CONFIG_H

typedef struct hwkey_config {
    char *tpm2_tcti;   /* NULL: device:/dev/tpmrm0 */
    char *tpm2_parent; /* NULL: SRK 0x81000001 if present, else a primary */
    char *pkcs11_module;
    char *pkcs11_pin_source; /* file:/path or env:NAME */
    char *pkcs11_quirks;
    char *pkcs11_modules; /* further module paths, comma list (failover replicas) */
    int pkcs11_failover;  /* 1: a key URI resolves to every token holding the key */
    int log_level;
    /*
     * 1: offer the bulk AES-256-GCM cipher.  Off by default: OpenSSL 3.0
     * answers a fetch without properties with the first provider activated,
     * so with hwkey listed before default every AES-256-GCM of the process
     * (libssl's TLS 1.2 records, SoftHSM's in-process OpenSSL) would become
     * hwkey's.  Only a user who asked for it gets it (docs/bulk.md).
     */
    int bulk_cipher;
} HWKEY_CONFIG;

/*
 * Sets one value by its openssl.cnf name (HWKEY_PARAM_*); the environment
 * variable, when set, wins over the value given.  Unknown names are ignored.
 * Returns 0 on a malformed value (error raised).
 */
int hwkey_config_set(HWKEY_CONFIG *cfg, const char *name, const char *value);
/* Applies environment overrides for every value not set through _set(). */
int hwkey_config_apply_env(HWKEY_CONFIG *cfg);
void hwkey_config_clear(HWKEY_CONFIG *cfg);

/*
 * For programs that do not load the provider (the CLI): reads hwkey's
 * provider section from an openssl.cnf without applying the file.  The
 * section is the one in [provider_sect] whose module is hwkey.so (or, with
 * no module line, the one named hwkey).  Values go through _set(), so the
 * environment still wins.  A file without such a section sets nothing.
 * must_exist 0: a missing file is no error.  (config_file.c)
 */
int hwkey_config_load_file(HWKEY_CONFIG *cfg, const char *path, int must_exist);
/* The file OpenSSL would read: $OPENSSL_CONF (must exist), else its default. */
int hwkey_config_load_openssl_cnf(HWKEY_CONFIG *cfg);

#endif
