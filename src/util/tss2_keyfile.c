/* STUB */
#include "util/tss2_keyfile.h"
