/* STUB */
#ifndef HWKEY_CLI_CLI_H
#define HWKEY_CLI_CLI_H
#endif
