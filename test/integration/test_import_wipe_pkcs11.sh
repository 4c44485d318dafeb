#!/usr/bin/env bash
# hwkey import --wipe-source onto a SoftHSM token: test_import_wipe.sh with the pkcs11 backend.
HWKEY_WIPE_BACKEND=pkcs11 exec bash "$(dirname "$0")/test_import_wipe.sh"
