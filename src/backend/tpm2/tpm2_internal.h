/* STUB */
#ifndef HWKEY_TPM2_INTERNAL_H
#define HWKEY_TPM2_INTERNAL_H
#include "backend/backend.h"
#endif
