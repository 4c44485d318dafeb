#!/usr/bin/env bash
# Bad inputs fail cleanly: non-zero exit, a message naming the failure, no
# crash (exit < 126, no signal, no sanitizer report), nothing left in the TPM.
#  - key files: corrupt TPM blob, garbage DER, truncated DER, truncated PEM;
#  - a key with an auth value: the right password works, a wrong one fails;
#  - a TCTI pointing at a closed port;
#  - the CLI: exit 1 (operation) / 2 (usage) with one line on stderr.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_setup
# tpm2-tss logs its own errors to stderr; silence them so that the messages
# checked below must come from hwkey itself.
export TSS2_LOG=all+NONE

echo "message to sign" >msg
hw_keygen ec:P-256 good.pem
ossl pkey -in good.pem -pubout -out good.pub || hw_fail "the good key does not load"
ossl pkeyutl -sign -inkey good.pem -rawin -digest sha256 -in msg -out sig || hw_fail "the good key does not sign"

# pem_body FILE > DER ; der_to_pem LABEL < DER
pem_body() { sed -e '/^-----/d' "$1" | base64 -d; }
der_to_pem() {
    echo "-----BEGIN TSS2 PRIVATE KEY-----"
    base64 -w 64
    echo "-----END TSS2 PRIVATE KEY-----"
}
pem_body good.pem >good.der

# 1. The private blob's integrity HMAC no longer matches: the TPM refuses it.
#    Offset of the second OCTET STRING (privkey) at depth 1:
read -r off hl len < <(sw asn1parse -inform DER -in good.der |
    awk '/d=1/ && /OCTET STRING/ { n++; if (n == 2) { gsub(/[:=]/, " "); print $1, $5, $7; exit } }')
[[ -n ${len:-} ]] || hw_fail "cannot find the private blob in good.pem"
cp good.der corrupt.der
pos=$((off + hl + len / 2))
hw_flip_byte corrupt.der "$pos"
der_to_pem <corrupt.der >corrupt.pem
rc=0
ossl pkey -in corrupt.pem -pubout >/dev/null 2>corrupt.pkey.err || rc=$?
hw_no_crash "$rc" corrupt.pkey.err "openssl pkey on a corrupt TPM blob"
hw_expect_fail 'TPM_RC|tpm:|[Ii]ntegrity|INTEGRITY' "pkeyutl -sign with a corrupt TPM blob" \
    ossl pkeyutl -sign -inkey corrupt.pem -rawin -digest sha256 -in msg -out corrupt.sig

# 2. Garbage inside a TSS2 PRIVATE KEY armor: the key-file parser rejects it.
head -c 200 /dev/urandom | der_to_pem >garbage.pem
BAD_FILE_RE='TSS2|ASN\.?1|asn1|[Pp]ars|[Mm]alformed|[Cc]orrupt|[Tt]runcat|[Ii]nvalid|[Nn]ot a |too (long|short)|header'
hw_expect_fail "$BAD_FILE_RE" "openssl pkey on garbage DER" ossl pkey -in garbage.pem -pubout
hw_expect_fail "$BAD_FILE_RE" "pkeyutl -sign on garbage DER" \
    ossl pkeyutl -sign -inkey garbage.pem -rawin -digest sha256 -in msg -out x.sig

# 3. Truncated: the DER cut in half inside valid armor, and the PEM cut in half.
head -c $(($(stat -c %s good.der) / 2)) good.der | der_to_pem >truncated-der.pem
hw_expect_fail "$BAD_FILE_RE" "openssl pkey on truncated DER" ossl pkey -in truncated-der.pem -pubout
hw_expect_fail "$BAD_FILE_RE" "pkeyutl -sign on truncated DER" \
    ossl pkeyutl -sign -inkey truncated-der.pem -rawin -digest sha256 -in msg -out x.sig
head -n 3 good.pem >truncated.pem
hw_expect_fail "Could not read|[Uu]nable to load|$BAD_FILE_RE" "openssl pkey on a truncated PEM" \
    ossl pkey -in truncated.pem -pubout
hw_expect_fail "Could not read|[Uu]nable to load|$BAD_FILE_RE" "pkeyutl -sign on a truncated PEM" \
    ossl pkeyutl -sign -inkey truncated.pem -rawin -digest sha256 -in msg -out x.sig

# 4. A key with an auth value.  Right password first (one wrong try only: the
#    TPM's dictionary-attack lockout allows 3).
printf 'correct horse' >pw.txt
printf 'wrong horse' >wrong.txt
hw_keygen ec:P-256 auth.pem --auth-file pw.txt
ossl pkey -in auth.pem -passin file:pw.txt -pubout -out auth.pub || hw_fail "key with auth does not load"
ossl pkeyutl -sign -inkey auth.pem -passin file:pw.txt -rawin -digest sha256 -in msg -out auth.sig ||
    hw_fail "key with auth does not sign with the right password"
sw pkeyutl -verify -pubin -inkey auth.pub -rawin -digest sha256 -in msg -sigfile auth.sig >/dev/null ||
    hw_fail "signature with the auth key does not verify"
hw_expect_fail '(AUTH_FAIL|BAD_AUTH|[Aa]uthori[sz]ation|auth.*fail|[Pp]assword|HMAC check failed)' \
    "pkeyutl -sign with a wrong password" \
    ossl pkeyutl -sign -inkey auth.pem -passin file:wrong.txt -rawin -digest sha256 -in msg -out x.sig
[[ ! -s x.sig ]] || hw_fail "a signature was written with a wrong password"

# 5. The TCTI points at a closed port.
closed=$(hw_free_port 2)
hw_write_cnf "$HW_DIR/openssl-closed.cnf" "swtpm:host=127.0.0.1,port=$closed"
CONNECT_RE='[Cc]onnect|TCTI|tcti|[Rr]efused|swtpm|TPM'
rc=0
OPENSSL_CONF=$HW_DIR/openssl-closed.cnf ossl pkey -in good.pem -pubout -out closed.pub 2>closed.pkey.err || rc=$?
hw_no_crash "$rc" closed.pkey.err "openssl pkey with the TPM unreachable"
if ((rc == 0)); then
    cmp -s closed.pub good.pub || hw_fail "pkey with the TPM unreachable printed a different public key"
else
    grep -qE "$CONNECT_RE" closed.pkey.err || hw_fail "pkey with the TPM unreachable: no message naming it: $(cat closed.pkey.err)"
fi
OPENSSL_CONF=$HW_DIR/openssl-closed.cnf hw_expect_fail "$CONNECT_RE" "pkeyutl -sign with the TPM unreachable" \
    ossl pkeyutl -sign -inkey good.pem -rawin -digest sha256 -in msg -out x.sig

# 6. The CLI: one line on stderr, exit 1 for an operation failure, 2 for usage.
cli_expect() { # EXIT REGEX WHAT ARGS...
    local want=$1 regex=$2 what=$3 rc=0
    shift 3
    hw_hwkey "$@" >cli.out 2>cli.err || rc=$?
    hw_no_crash "$rc" cli.err "hwkey $what"
    ((rc == want)) || hw_fail "hwkey $what: exit $rc, expected $want: $(cat cli.err)"
    assert_one_error_line cli.err "$regex"
}
cli_expect 2 '.' "keygen with an unknown algorithm" keygen nonsense:1 --out x.pem
[[ ! -e x.pem ]] || hw_fail "hwkey keygen with an unknown algorithm wrote a file"
cli_expect 2 '.' "keygen without --out" keygen ec:P-256
cli_expect 1 "$BAD_FILE_RE" "pubkey on garbage" pubkey garbage.pem
HW_CLI_TCTI="swtpm:host=127.0.0.1,port=$closed" cli_expect 1 "$CONNECT_RE" "keygen with the TPM unreachable" \
    keygen ec:P-256 --out x.pem
[[ ! -s x.pem ]] || hw_fail "hwkey keygen with the TPM unreachable wrote a key file"

left=$(hw_transient_handles | tr '\n' ' ')
[[ -z $left ]] || hw_fail "transient objects left in the TPM after failures: $left"
echo "PASS: $HW_TEST"
