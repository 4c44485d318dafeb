#!/usr/bin/env bash
# A key's auth value never crosses the bus to the TPM in the clear
# (docs/threat-model.md).  Every TPM command and response is recorded with
# the pcap: TCTI while hwkey creates a key with an auth value and signs with
# it; the password's bytes must not appear in the recordings.
# Control: tpm2-tools' createprimary with a password, recorded the same way,
# does show it, so a clean recording means something.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing tpm2_createprimary tpm2_flushcontext
[[ -n $(find /usr/lib /lib -name 'libtss2-tcti-pcap.so*' 2>/dev/null | head -1) ]] ||
    { echo "SKIP: tpm2-tss pcap TCTI not installed" >&2; exit 77; }
hw_setup

pw="hwkey-auth-$RANDOM$RANDOM$RANDOM"
printf '%s' "$pw" >pw.txt
PCAP_TCTI="pcap:$HW_TCTI"
echo "to be signed" >msg

in_capture() { grep -c -a -F -- "$pw" "$1" || true; }

# Control: the method sees a password that is sent in the clear.
OPENSSL_CONF=$HW_SW_CNF TCTI_PCAP_FILE=$HW_DIR/control.pcap TPM2TOOLS_TCTI=$PCAP_TCTI \
    timeout 60 tpm2_createprimary -Q -C o -G ecc -p "$pw" -c primary.ctx || hw_fail "tpm2_createprimary"
tpm2_flushcontext -t >/dev/null
(($(in_capture control.pcap) > 0)) || hw_fail "control: the pcap TCTI did not record a clear-text password"

# hwkey keygen with --auth-file: the auth value is in TPM2_Create's inSensitive.
TCTI_PCAP_FILE=$HW_DIR/keygen.pcap HW_CLI_TCTI=$PCAP_TCTI hw_keygen ec:P-256 key.pem --auth-file pw.txt
[[ $(stat -c %s keygen.pcap) -gt 500 ]] || hw_fail "nothing recorded during keygen"
n=$(in_capture keygen.pcap)
((n == 0)) || hw_fail "hwkey keygen sent the auth value in the clear ($n times)"

# Signing through the provider: load, authorize, sign.
hw_write_cnf "$HW_DIR/openssl-pcap.cnf" "$PCAP_TCTI"
OPENSSL_CONF=$HW_DIR/openssl-pcap.cnf TCTI_PCAP_FILE=$HW_DIR/sign.pcap \
    ossl pkeyutl -sign -inkey key.pem -passin file:pw.txt -rawin -digest sha256 -in msg -out sig ||
    hw_fail "signing with the auth key"
ossl pkey -in key.pem -passin file:pw.txt -pubout -out key.pub || hw_fail "pkey -pubout"
sw pkeyutl -verify -pubin -inkey key.pub -rawin -digest sha256 -in msg -sigfile sig >/dev/null ||
    hw_fail "signature does not verify"
# TPM_CC_Sign = 0x0000015d
od -An -tx1 -v sign.pcap | tr -d ' \n' | grep -q 0000015d || hw_fail "no TPM2_Sign in the recording"
n=$(in_capture sign.pcap)
((n == 0)) || hw_fail "signing sent the auth value in the clear ($n times)"

echo "PASS: $HW_TEST"
