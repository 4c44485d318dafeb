#!/usr/bin/env bash
# test_cms_ecdh.sh with PKCS#11 token keys (SoftHSM P-256 and P-384): the
# token derives the ECDH secret (CKM_ECDH1_DERIVE), hwkey runs the X9.63 KDF
# in software (lib.sh hw_cms_ecdh; issue 7.9).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_p11_setup

for curve in P-256 P-384; do
    hw_p11_keygen "ec:$curve" "cms-$curve" "key-$curve.pem"
    hw_cms_ecdh "token $curve" "key-$curve.pem"
done
echo "PASS: $HW_TEST"
