#!/usr/bin/env bash
# hwkey attest on a PKCS#11 token (SoftHSM; docs/attestation.md): the report
# of CKA_LOCAL, CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_SENSITIVE,
# CKA_EXTRACTABLE and the verdict differs between
#  - a key generated on the token (hwkey keygen --uri; pkcs11-tool --keypairgen):
#    all TRUE / EXTRACTABLE FALSE, "generated in the token, never left it";
#  - a key imported (hwkey import --uri): CKA_LOCAL FALSE, "imported";
#  - a key generated extractable (pkcs11-tool --keypairgen --extractable):
#    "can leave the token now";
# by URI and by reference file, to stdout and --out; a missing key fails with
# one line.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_p11_setup
T="pkcs11:token=$HW_P11_TOKEN"

# attest_report WHAT ARGS...: the report of hwkey attest ARGS in report.txt.
attest_report() {
    local what=$1
    shift
    hw_p11_hwkey attest "$@" >report.txt 2>attest.err || hw_fail "attest $what: $(cat attest.err)"
    [[ ! -s attest.err ]] || hw_fail "attest $what printed on stderr: $(cat attest.err)"
}
expect_line() { grep -qx -- "$1" report.txt || hw_fail "$2: no line \"$1\" in: $(cat report.txt)"; }

# Generated on the token by hwkey.
hw_p11_keygen ec:P-256 gen gen.ref
attest_report "generated (URI)" "$T;object=gen"
for a in CKA_LOCAL CKA_NEVER_EXTRACTABLE CKA_ALWAYS_SENSITIVE CKA_SENSITIVE; do
    expect_line "$a: TRUE" "generated key"
done
expect_line "CKA_EXTRACTABLE: FALSE" "generated key"
expect_line "verdict: generated in the token, never left it" "generated key"
attest_report "generated (reference file, --out)" gen.ref --out gen.report
[[ ! -s report.txt ]] || hw_fail "--out: the report also went to stdout"
grep -qx "verdict: generated in the token, never left it" gen.report || hw_fail "--out: $(cat gen.report)"

# Imported: created from outside values.
sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out soft.pem 2>/dev/null
hw_p11_hwkey import soft.pem --uri "$T;object=imp" >/dev/null 2>imp.err || hw_fail "import --uri: $(cat imp.err)"
attest_report "imported" "$T;object=imp"
expect_line "CKA_LOCAL: FALSE" "imported key"
expect_line "CKA_NEVER_EXTRACTABLE: FALSE" "imported key"
expect_line "CKA_SENSITIVE: TRUE" "imported key"
expect_line "CKA_EXTRACTABLE: FALSE" "imported key"
grep -q '^verdict: imported (not generated in the token)' report.txt || hw_fail "imported key verdict: $(cat report.txt)"

# Generated, but extractable and not sensitive (pkcs11-tool's defaults differ by version: explicit).
p11tool --keypairgen --key-type EC:prime256v1 --label ext --id 0e --extractable >/dev/null 2>&1 ||
    hw_fail "pkcs11-tool --keypairgen --extractable"
attest_report "extractable" "$T;object=ext"
expect_line "CKA_LOCAL: TRUE" "extractable key"
expect_line "CKA_EXTRACTABLE: TRUE" "extractable key"
grep -q '^verdict: can leave the token now' report.txt || hw_fail "extractable key verdict: $(cat report.txt)"

# A key that is not there: one line, exit 1.
rc=0
hw_p11_hwkey attest "$T;object=nothere" >out.txt 2>err.txt || rc=$?
((rc == 1)) || hw_fail "attest of a missing key: exit $rc, expected 1"
assert_one_error_line err.txt 'nothere'
[[ ! -s out.txt ]] || hw_fail "attest of a missing key wrote a report"
echo "PASS: $HW_TEST"
