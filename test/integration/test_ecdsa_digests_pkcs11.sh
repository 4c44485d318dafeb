#!/usr/bin/env bash
# test_ecdsa_digests.sh on a PKCS#11 token (SoftHSM): CKM_ECDSA takes the
# digest as it is and truncates it to the order's bit length itself; checked
# for every digest with pkeyutl (verified by the default provider) and TLS 1.2
# with a client offering one ECDSA signature algorithm (issue 7.5).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_p11_setup

for curve in P-256 P-384 P-521; do
    hw_p11_keygen "ec:$curve" "ec-$curve" "key-$curve.pem"
    hw_ecdsa_digests "token $curve" "key-$curve.pem"
done
echo "PASS: $HW_TEST"
