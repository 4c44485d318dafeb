#include "util/config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "hwkey/hwkey.h"
#include "util/error.h"
#include "util/log.h"

static const struct {
    const char *param;
    const char *env;
    size_t offset;
} string_options[] = {
    {HWKEY_PARAM_TPM2_TCTI, HWKEY_ENV_TPM2_TCTI, offsetof(HWKEY_CONFIG, tpm2_tcti)},
    {HWKEY_PARAM_TPM2_PARENT, HWKEY_ENV_TPM2_PARENT, offsetof(HWKEY_CONFIG, tpm2_parent)},
    {HWKEY_PARAM_PKCS11_MODULE, HWKEY_ENV_PKCS11_MODULE, offsetof(HWKEY_CONFIG, pkcs11_module)},
    {HWKEY_PARAM_PKCS11_PIN_SOURCE, HWKEY_ENV_PKCS11_PIN_SOURCE,
     offsetof(HWKEY_CONFIG, pkcs11_pin_source)},
    {HWKEY_PARAM_PKCS11_QUIRKS, HWKEY_ENV_PKCS11_QUIRKS, offsetof(HWKEY_CONFIG, pkcs11_quirks)},
    {HWKEY_PARAM_PKCS11_MODULES, HWKEY_ENV_PKCS11_MODULES, offsetof(HWKEY_CONFIG, pkcs11_modules)},
};

/* Yes/no parameters: openssl.cnf name, environment override, field. */
static const struct {
    const char *param;
    const char *env;
    size_t offset;
} bool_options[] = {
    {HWKEY_PARAM_BULK_CIPHER, HWKEY_ENV_BULK_CIPHER, offsetof(HWKEY_CONFIG, bulk_cipher)},
    {HWKEY_PARAM_PKCS11_FAILOVER, HWKEY_ENV_PKCS11_FAILOVER,
     offsetof(HWKEY_CONFIG, pkcs11_failover)},
};

static int parse_bool(const char *name, const char *value, int *out)
{
    static const char *const yes[] = {"yes", "1", "true", "on"};
    static const char *const no[] = {"no", "0", "false", "off"};

    for (size_t i = 0; i < 4; i++) {
        if (OPENSSL_strcasecmp(value, yes[i]) == 0) {
            *out = 1;
            return 1;
        }
        if (OPENSSL_strcasecmp(value, no[i]) == 0) {
            *out = 0;
            return 1;
        }
    }
    hwkey_raise(HWKEY_R_CONFIG_INVALID, "%s must be yes or no, got \"%s\"", name, value);
    return 0;
}

static int parse_log_level(const char *value, int *out)
{
    char *end = NULL;
    long v = strtol(value, &end, 10);

    if (end == value || *end != '\0' || v < 0 || v > 3) {
        hwkey_raise(HWKEY_R_CONFIG_INVALID, "log-level must be 0..3, got \"%s\"", value);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int hwkey_config_set(HWKEY_CONFIG *cfg, const char *name, const char *value)
{
    if (strcmp(name, HWKEY_PARAM_LOG_LEVEL) == 0) {
        const char *env = getenv(HWKEY_ENV_LOG_LEVEL);

        if (!parse_log_level(env != NULL && *env != '\0' ? env : value, &cfg->log_level))
            return 0;
        hwkey_log_set_level(cfg->log_level);
        return 1;
    }
    for (size_t i = 0; i < sizeof(bool_options) / sizeof(bool_options[0]); i++) {
        const char *env = getenv(bool_options[i].env);

        if (strcmp(name, bool_options[i].param) == 0)
            return parse_bool(name, env != NULL && *env != '\0' ? env : value,
                              (int *)((char *)cfg + bool_options[i].offset));
    }
    for (size_t i = 0; i < sizeof(string_options) / sizeof(string_options[0]); i++) {
        char **slot;
        const char *env;

        if (strcmp(name, string_options[i].param) != 0)
            continue;
        slot = (char **)((char *)cfg + string_options[i].offset);
        env = getenv(string_options[i].env);
        if (env != NULL && *env != '\0')
            value = env;
        OPENSSL_free(*slot);
        *slot = OPENSSL_strdup(value);
        if (*slot == NULL) {
            hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying %s", name);
            return 0;
        }
        return 1;
    }
    return 1;
}

int hwkey_config_apply_env(HWKEY_CONFIG *cfg)
{
    const char *env = getenv(HWKEY_ENV_LOG_LEVEL);

    if (env != NULL && *env != '\0') {
        if (!parse_log_level(env, &cfg->log_level))
            return 0;
        hwkey_log_set_level(cfg->log_level);
    }
    for (size_t i = 0; i < sizeof(bool_options) / sizeof(bool_options[0]); i++) {
        env = getenv(bool_options[i].env);
        if (env != NULL && *env != '\0' &&
            !parse_bool(bool_options[i].env, env, (int *)((char *)cfg + bool_options[i].offset)))
            return 0;
    }
    for (size_t i = 0; i < sizeof(string_options) / sizeof(string_options[0]); i++) {
        char **slot = (char **)((char *)cfg + string_options[i].offset);

        env = getenv(string_options[i].env);
        if (env == NULL || *env == '\0' || *slot != NULL)
            continue;
        *slot = OPENSSL_strdup(env);
        if (*slot == NULL) {
            hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "copying %s", string_options[i].env);
            return 0;
        }
    }
    return 1;
}

void hwkey_config_clear(HWKEY_CONFIG *cfg)
{
    for (size_t i = 0; i < sizeof(string_options) / sizeof(string_options[0]); i++) {
        char **slot = (char **)((char *)cfg + string_options[i].offset);

        OPENSSL_free(*slot);
        *slot = NULL;
    }
    cfg->log_level = 0;
    cfg->bulk_cipher = 0;
    cfg->pkcs11_failover = 0;
}
