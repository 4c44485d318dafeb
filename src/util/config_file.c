/*
 * The provider's openssl.cnf section, read by programs that do not load the
 * provider (the hwkey CLI), so that they use the same TPM and module as the
 * applications do.  The file is parsed, never applied: applying it would
 * load hwkey.so (and a PKCS#11 module) a second time into the process.
 */
#include "util/config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/conf.h>
#include <openssl/err.h>

#include "util/error.h"

/* Is provider section sect (named name in provider_sect) hwkey's? */
static int is_hwkey_section(const CONF *conf, const char *name, const char *sect)
{
    const char *module, *base;

    ERR_set_mark();
    module = NCONF_get_string(conf, sect, "module");
    ERR_pop_to_mark();
    if (module == NULL)
        return strcmp(name, "hwkey") == 0; /* loaded by name from the modules dir */
    base = strrchr(module, '/');
    base = base != NULL ? base + 1 : module;
    return strcmp(base, "hwkey.so") == 0 || strcmp(base, "hwkey") == 0;
}

/* The name of hwkey's provider section in conf, or NULL. */
static const char *find_hwkey_section(const CONF *conf)
{
    const char *init, *providers, *found = NULL;
    STACK_OF(CONF_VALUE) * list;

    /* Absent names are normal here; NCONF_get_string queues an error for them. */
    ERR_set_mark();
    init = NCONF_get_string(conf, NULL, "openssl_conf");
    providers = init != NULL ? NCONF_get_string(conf, init, "providers") : NULL;
    list = providers != NULL ? NCONF_get_section(conf, providers) : NULL;
    for (int i = 0; list != NULL && i < sk_CONF_VALUE_num(list) && found == NULL; i++) {
        const CONF_VALUE *v = sk_CONF_VALUE_value(list, i);

        if (is_hwkey_section(conf, v->name, v->value))
            found = v->value;
    }
    ERR_pop_to_mark();
    return found;
}

int hwkey_config_load_file(HWKEY_CONFIG *cfg, const char *path, int must_exist)
{
    CONF *conf = NCONF_new(NULL);
    STACK_OF(CONF_VALUE) * values;
    const char *sect;
    long line = 0;
    int ok = 0;

    if (conf == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "reading %s", path);
        return 0;
    }
    ERR_set_mark();
    if (NCONF_load(conf, path, &line) <= 0) {
        unsigned long e = ERR_peek_last_error();

        ERR_pop_to_mark();
        if (!must_exist && ERR_GET_REASON(e) == CONF_R_NO_SUCH_FILE) {
            ok = 1;
            goto end;
        }
        if (ERR_GET_REASON(e) == CONF_R_NO_SUCH_FILE)
            hwkey_raise(HWKEY_R_CONFIG_INVALID, "%s (OPENSSL_CONF): no such file", path);
        else if (line > 0)
            hwkey_raise(HWKEY_R_CONFIG_INVALID, "cannot parse %s at line %ld", path, line);
        else
            hwkey_raise(HWKEY_R_CONFIG_INVALID, "cannot read %s", path);
        goto end;
    }
    ERR_pop_to_mark();
    if ((sect = find_hwkey_section(conf)) == NULL) {
        ok = 1; /* hwkey is not configured there: defaults and environment */
        goto end;
    }
    values = NCONF_get_section(conf, sect);
    for (int i = 0; values != NULL && i < sk_CONF_VALUE_num(values); i++) {
        const CONF_VALUE *v = sk_CONF_VALUE_value(values, i);

        /* Unknown names (module, activate, identity) are ignored by _set(). */
        if (!hwkey_config_set(cfg, v->name, v->value))
            goto end; /* raised, naming the parameter and the value */
    }
    ok = 1;
end:
    NCONF_free(conf);
    return ok;
}

int hwkey_config_load_openssl_cnf(HWKEY_CONFIG *cfg)
{
    const char *env = getenv("OPENSSL_CONF");
    char *path;
    int ok;

    if (env != NULL && *env != '\0')
        return hwkey_config_load_file(cfg, env, 1);
    /* OpenSSL's own default (OPENSSLDIR/openssl.cnf); its absence is no error. */
    if ((path = CONF_get1_default_config_file()) == NULL) {
        hwkey_raise(HWKEY_R_OUT_OF_MEMORY, "finding the default openssl.cnf");
        return 0;
    }
    ok = hwkey_config_load_file(cfg, path, 0);
    OPENSSL_free(path);
    return ok;
}
