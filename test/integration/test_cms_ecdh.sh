#!/usr/bin/env bash
# CMS / S/MIME decryption with TPM EC keys (issue 7.9: "hwkey ECDH has no
# KDF"): software-encrypted messages (X9.63 KDF with SHA-1/256/384/512, AES
# key wrap) decrypt with TPM P-256 and P-384 keys (lib.sh hw_cms_ecdh).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_setup

for curve in P-256 P-384; do
    hw_keygen "ec:$curve" "key-$curve.pem"
    hw_cms_ecdh "TPM $curve" "key-$curve.pem"
done
echo "PASS: $HW_TEST"
