/*
 * hwkey public header: names an application may use to talk to the hwkey
 * provider (configuration parameters, environment variables, PEM labels).
 */
#ifndef HWKEY_HWKEY_H
#define HWKEY_HWKEY_H

#define HWKEY_PROVIDER_NAME "hwkey"

/* openssl.cnf provider-section parameters; the environment variable wins. */
#define HWKEY_PARAM_TPM2_TCTI "tpm2-tcti"
#define HWKEY_PARAM_TPM2_PARENT "tpm2-parent"
#define HWKEY_PARAM_PKCS11_MODULE "pkcs11-module"
#define HWKEY_PARAM_PKCS11_PIN_SOURCE "pkcs11-pin-source"
#define HWKEY_PARAM_PKCS11_QUIRKS "pkcs11-quirks"
#define HWKEY_PARAM_PKCS11_MODULES "pkcs11-modules"   /* more modules, comma list (failover) */
#define HWKEY_PARAM_PKCS11_FAILOVER "pkcs11-failover" /* yes: keys on every token holding them */
#define HWKEY_PARAM_LOG_LEVEL "log-level"
/* "yes" offers the AES-NI AES-256-GCM cipher (property provider=hwkey); default "no". */
#define HWKEY_PARAM_BULK_CIPHER "bulk-cipher"

#define HWKEY_ENV_TPM2_TCTI "HWKEY_TPM2_TCTI"
#define HWKEY_ENV_TPM2_PARENT "HWKEY_TPM2_PARENT"
#define HWKEY_ENV_PKCS11_MODULE "HWKEY_PKCS11_MODULE"
#define HWKEY_ENV_PKCS11_PIN_SOURCE "HWKEY_PKCS11_PIN_SOURCE"
#define HWKEY_ENV_PKCS11_QUIRKS "HWKEY_PKCS11_QUIRKS"
#define HWKEY_ENV_PKCS11_MODULES "HWKEY_PKCS11_MODULES"
#define HWKEY_ENV_PKCS11_FAILOVER "HWKEY_PKCS11_FAILOVER"
#define HWKEY_ENV_LOG_LEVEL "HWKEY_LOG"
#define HWKEY_ENV_BULK_CIPHER "HWKEY_BULK_CIPHER"

/* PEM labels of the key files hwkey reads and writes. */
#define HWKEY_PEM_TSS2_PRIVATE_KEY "TSS2 PRIVATE KEY"
#define HWKEY_PEM_PKCS11_URI "PKCS#11 PROVIDER URI"
/*
 * hwkey's own reference file: same body as pkcs11-provider's
 * (SEQUENCE { desc VisibleString, uri UTF8String }), and the URI may also be
 * handle:0x81xxxxxx, so persistent TPM keys can be named by a file too.
 */
#define HWKEY_PEM_KEY_URI "HWKEY KEY URI"
/*
 * The description field of a reference file.  pkcs11-provider accepts only
 * its own, so hwkey writes that one in every "PKCS#11 PROVIDER URI" file;
 * on reading, hwkey accepts any description (older hwkey files carry
 * "hwkey key reference").
 */
#define HWKEY_KEYREF_DESC_PKCS11 "PKCS#11 Provider URI v1.0"
#define HWKEY_KEYREF_DESC_HWKEY "hwkey key reference"
/* A bulk data key wrapped by a PKCS#11 key-wrapping key (docs/bulk.md). */
#define HWKEY_PEM_DATA_KEY "HWKEY DATA KEY"

/* Store URI scheme for persistent TPM keys: handle:0x81000002 */
#define HWKEY_HANDLE_SCHEME "handle"

/*
 * Key generation parameters of hwkey's EC and RSA keymgmt, beside OpenSSL's
 * own ("group", "bits"): `openssl genpkey -propquery provider=hwkey
 * -pkeyopt hwkey-persist:0x81000010` or `-pkeyopt hwkey-uri:pkcs11:...`.
 */
#define HWKEY_GEN_PARAM_URI "hwkey-uri"         /* pkcs11: URI: generate on that token */
#define HWKEY_GEN_PARAM_PERSIST "hwkey-persist" /* "0x81xxxxxx": persistent TPM key */

#endif
