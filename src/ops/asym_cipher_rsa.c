/* STUB */
#include "ops/ops.h"
const OSSL_DISPATCH hwkey_rsa_asym_cipher_functions[] = {{0, NULL}};
