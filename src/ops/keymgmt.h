/* STUB */
#ifndef HWKEY_OPS_KEYMGMT_H
#define HWKEY_OPS_KEYMGMT_H
#endif
