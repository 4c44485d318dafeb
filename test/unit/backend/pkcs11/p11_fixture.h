/*
 * The pkcs11 backend over the fake module (test/unit/fakes/fake_pkcs11.h):
 * a fresh fake token and a fresh device per test, so nothing cached in the
 * backend (tokens, mechanism lists, logins, object handles) leaks between
 * tests.  The PIN comes from the pin-source env:HWKEY_FAKE_P11_PIN.
 */
#ifndef HWKEY_TEST_P11_FIXTURE_H
#define HWKEY_TEST_P11_FIXTURE_H

#include "backend/pkcs11/p11_internal.h"
#include "../../fakes/fake_pkcs11.h"
#include "../../fakes/one_error.h" /* assert_one_error */

#define FX_MODULE "/fake/fake-pkcs11.so"
#define FX_URI "pkcs11:token=" FAKE_P11_LABEL

extern HWKEY_DEVICE *fx_dev;
extern HWKEY_P11_MODULE *fx_mod;

/* cmocka setup/teardown: fake reset + device opened with the fake adopted; and closed. */
int fx_setup(void **state);
int fx_teardown(void **state);
/* key_load of uri; *out set when FOUND. */
HWKEY_LOOKUP fx_load(const char *uri, HWKEY_BKEY **out);
/* key_load that must succeed. */
HWKEY_BKEY *fx_load_ok(const char *uri);

#endif
