#!/usr/bin/env bash
# ECDSA with TPM P-256, P-384 and P-521 keys over digests the TPM lacks
# (SHA-224, SHA-3, SHA-512/224) or whose size differs from the curve's
# (SHA-1, SHA-512 on P-256): the TPM accepts only a digest of a hash it
# implements, of that hash's size, so hwkey hands it the integer ECDSA signs
# (issue 7.5; tlsfuzzer saw internal_error for ecdsa_sha224).  Checked with
# pkeyutl (verified by the default provider) and TLS 1.2 through s_server with
# a client offering one ECDSA signature algorithm (lib.sh hw_ecdsa_digests).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_setup

for curve in P-256 P-384 P-521; do
    hw_keygen "ec:$curve" "key-$curve.pem"
    hw_ecdsa_digests "TPM $curve" "key-$curve.pem"
done
echo "PASS: $HW_TEST"
