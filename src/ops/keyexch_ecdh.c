/* STUB */
#include "ops/ops.h"
const OSSL_DISPATCH hwkey_ecdh_keyexch_functions[] = {{0, NULL}};
