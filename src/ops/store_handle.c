/* STUB */
#include "ops/ops.h"
const OSSL_DISPATCH hwkey_handle_store_functions[] = {{0, NULL}};
