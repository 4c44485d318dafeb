/* STUB */
#include "ops/ops.h"
const OSSL_DISPATCH hwkey_ec_keymgmt_functions[] = {{0, NULL}};
const OSSL_DISPATCH hwkey_rsa_keymgmt_functions[] = {{0, NULL}};
