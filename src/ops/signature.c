/* STUB */
#include "ops/ops.h"
const OSSL_DISPATCH hwkey_ecdsa_signature_functions[] = {{0, NULL}};
const OSSL_DISPATCH hwkey_rsa_signature_functions[] = {{0, NULL}};
