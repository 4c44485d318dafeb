#!/usr/bin/env bash
# The hwkey CLI reads the provider's openssl.cnf section (issue 7.12) and
# `hwkey info` reports every backend (issue 7.11, 7.13):
#   - with HWKEY_TPM2_TCTI unset, keygen/pubkey reach the swtpm named by
#     tpm2-tcti in the file OPENSSL_CONF names (also when the provider's
#     section has another name but module = .../hwkey.so), and the key works
#     in openssl through the provider
#   - HWKEY_TPM2_TCTI wins over the file, --tcti over both; a bad value in the
#     file, or a missing OPENSSL_CONF file, is one error line, exit 1
#   - info: a backend that fails is shown with its error and makes the exit
#     status 1 (one stderr line naming it); --tpm2 checks the TPM alone
#     (test_cli_pkcs11.sh: the same with a live token, "pkcs11:" printed once)
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_setup

# cli RC ARGS...: the CLI with only what the caller's environment gives it
# (no HWKEY_TPM2_TCTI from lib.sh's hw_hwkey).
cli() {
    local want=$1 rc=0
    shift
    timeout -k 5 "$HW_TIMEOUT" "$HWKEY_BIN" "$@" >cli.out 2>cli.err || rc=$?
    hw_no_crash "$rc" cli.err "hwkey $*"
    ((rc == want)) || hw_fail "hwkey $*: exit $rc, expected $want: $(head -c 600 cli.err)"
}
DEAD="swtpm:host=127.0.0.1,port=$(hw_free_port 2)"

# --- the file's tpm2-tcti, no variable ---------------------------------------
[[ -z ${HWKEY_TPM2_TCTI:-} ]] || hw_fail "HWKEY_TPM2_TCTI is set"
grep -q "^tpm2-tcti = $HW_TCTI\$" "$OPENSSL_CONF" || hw_fail "the test's openssl.cnf names no tpm2-tcti"
cli 0 keygen ec:P-256 --out k.pem
cli 0 pubkey k.pem
cp cli.out k.cli.pub
cli 0 list --tpm2
ossl pkey -in k.pem -pubout -out k.ossl.pub 2>pkey.err || hw_fail "openssl pkey -in k.pem: $(cat pkey.err)"
cmp -s k.cli.pub k.ossl.pub || hw_fail "the CLI's key and the provider's public key differ"
cli 0 info --tpm2
grep -q "tcti: $HW_TCTI" cli.out || hw_fail "info --tpm2 does not use the file's TCTI: $(cat cli.out)"
hw_log "ok: keygen, pubkey, info use tpm2-tcti from OPENSSL_CONF's hwkey section"

# The section is found by its module, whatever its name.
sed 's/^hwkey = hwkey_sect$/tpmkeys = tk_sect/; s/^\[hwkey_sect\]$/[tk_sect]/' "$OPENSSL_CONF" >renamed.cnf
grep -q "^\[tk_sect\]" renamed.cnf || hw_fail "renamed.cnf has no [tk_sect]"
OPENSSL_CONF=$PWD/renamed.cnf cli 0 keygen ec:P-256 --out renamed.pem
hw_log "ok: the provider section is found by module = .../hwkey.so"

# --- precedence: variable over file, option over both --------------------------
# (keygen, not pubkey: pubkey reads a TSS2 key file's public part without the TPM)
HWKEY_TPM2_TCTI=$DEAD cli 1 keygen ec:P-256 --out p1.pem
assert_one_error_line cli.err "port=${DEAD##*=}"
HWKEY_TPM2_TCTI=$DEAD cli 0 --tcti "$HW_TCTI" keygen ec:P-256 --out p2.pem
hw_write_cnf dead.cnf "$DEAD"
OPENSSL_CONF=$PWD/dead.cnf cli 1 keygen ec:P-256 --out p3.pem
assert_one_error_line cli.err "port=${DEAD##*=}"
OPENSSL_CONF=$PWD/dead.cnf HWKEY_TPM2_TCTI=$HW_TCTI cli 0 keygen ec:P-256 --out p4.pem
hw_log "ok: HWKEY_TPM2_TCTI wins over the file, --tcti over both"

# --- bad configuration: one line, exit 1 ----------------------------------------
sed 's/^activate = 1$/activate = 1\nlog-level = 9/' "$OPENSSL_CONF" >badlog.cnf
OPENSSL_CONF=$PWD/badlog.cnf cli 1 keygen ec:P-256 --out p5.pem
assert_one_error_line cli.err "log-level must be 0..3"
OPENSSL_CONF=$PWD/no-such.cnf cli 1 keygen ec:P-256 --out p6.pem
assert_one_error_line cli.err "no-such.cnf.*no such file"
hw_log "ok: a bad value in the file and a missing OPENSSL_CONF file are one error line"

# --- info: every backend, with its error; exit 1 when one fails ----------------------
HWKEY_PKCS11_MODULE=/nonexistent/libp11.so cli 1 info
grep -q "^tpm2:" cli.out && grep -q "vendor:" cli.out || hw_fail "info dropped the TPM that answered: $(cat cli.out)"
grep -q "^pkcs11:" cli.out || hw_fail "info dropped the failing PKCS#11 backend: $(cat cli.out)"
grep -q "^  error: .*/nonexistent/libp11.so" cli.out || hw_fail "info shows no PKCS#11 error: $(cat cli.out)"
assert_one_error_line cli.err "^hwkey: info: pkcs11: .*/nonexistent/libp11.so"
HWKEY_PKCS11_MODULE=/nonexistent/libp11.so cli 0 info --tpm2
! grep -q "^pkcs11:" cli.out || hw_fail "info --tpm2 showed PKCS#11"
HWKEY_TPM2_TCTI=$DEAD cli 1 info --tpm2
grep -q "^  error: .*port=${DEAD##*=}" cli.out || hw_fail "info shows no TPM error: $(cat cli.out)"
assert_one_error_line cli.err "^hwkey: info: tpm2: .*port=${DEAD##*=}"
HWKEY_TPM2_TCTI=$DEAD cli 1 info
grep -q "^tpm2:" cli.out && grep -q "^pkcs11:" cli.out || hw_fail "info: a section is missing: $(cat cli.out)"
hw_log "ok: info shows every backend with its error, exit 1 when one fails; --tpm2 alone"

hw_log "PASS"
