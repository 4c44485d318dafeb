/* STUB */
#include "ops/ops.h"
const OSSL_DISPATCH hwkey_ec_pem_decoder_functions[] = {{0, NULL}};
const OSSL_DISPATCH hwkey_rsa_pem_decoder_functions[] = {{0, NULL}};
const OSSL_DISPATCH hwkey_ec_der_decoder_functions[] = {{0, NULL}};
const OSSL_DISPATCH hwkey_rsa_der_decoder_functions[] = {{0, NULL}};
