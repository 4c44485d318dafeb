#!/usr/bin/env bash
# Bulk encryption with a PKCS#11 data key (docs/bulk.md, "The data key file
# (PKCS#11)") on a fresh SoftHSM token:
#  - hwkey datakey --uri without the KEK: one line naming --create-kek, no
#    file; --create-kek makes an AES-256 KEK that is sensitive, never
#    extractable, wrap/unwrap only; a second data key reuses it;
#  - the file is an "HWKEY DATA KEY" PEM naming the KEK, with neither the key
#    bytes (read back through datakey_driver) nor a PIN in it, even when the
#    URI given to datakey carried a pin-value;
#  - encrypt/decrypt round trips (0 B, 1 B, 200 KiB), PIN from the configured
#    pin-source, --pin-source, env:NAME, --auth-file; another data key fails;
#  - wrong PIN: one line with CKR_PIN_INCORRECT, exit 1, no output file
#    (datakey, encrypt); a deleted KEK, a corrupt file: one clear line, exit 1.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing od cmp head base64 sed
grep -qw aes /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo ||
    { echo "SKIP: $HW_TEST: this CPU lacks AES-NI/PCLMULQDQ" >&2; exit 77; }
DRIVER=$top_builddir/test/integration/datakey_driver
[[ -x $DRIVER ]] || hw_fail "$DRIVER not built (make check builds it)"
hw_p11_setup
KEK_URI="pkcs11:token=$HW_P11_TOKEN;object=kek;type=secret-key"

hexdump_of() { od -An -tx1 -v "$1" | tr -d ' \n'; }
der_of() { sed '/-----/d' "$1" | base64 -d; }
# pem_of DERFILE: the DER wrapped back into an HWKEY DATA KEY block.
pem_of() { echo "-----BEGIN HWKEY DATA KEY-----"; base64 -w 64 "$1"; echo "-----END HWKEY DATA KEY-----"; }
driver() {
    HWKEY_PKCS11_MODULE=$HW_P11_MODULE HWKEY_PKCS11_PIN_SOURCE=file:$HW_P11_PIN_FILE \
        timeout -k 5 "$HW_TIMEOUT" "$DRIVER" "$@"
}
# No PIN anywhere but where the test puts it: the CLI reads hwkey's openssl.cnf
# section too (pkcs11-pin-source there), so give it a file without one.
bare_hwkey() {
    OPENSSL_CONF=$HW_SW_CNF HWKEY_PKCS11_MODULE=$HW_P11_MODULE timeout -k 5 "$HW_TIMEOUT" "$HWKEY_BIN" "$@"
}

# must_fail EXIT REGEX WHAT OUTFILE CMD...: exit EXIT, one stderr line matching REGEX, no OUTFILE.
must_fail() {
    local want=$1 regex=$2 what=$3 outfile=$4 rc=0
    shift 4
    rm -f "$outfile"
    "$@" >/dev/null 2>err.txt || rc=$?
    hw_no_crash "$rc" err.txt "$what"
    ((rc == want)) || hw_fail "$what: exit $rc, expected $want ($(cat err.txt))"
    assert_one_error_line err.txt "$regex"
    [[ ! -e $outfile ]] || hw_fail "$what: left $outfile behind"
    [[ -z $(find . -maxdepth 1 -name '.hwkey-tmp-*') ]] || hw_fail "$what: left a temporary file"
}

secret_keys() { p11tool --list-objects --type secrkey 2>/dev/null; }

# --- the KEK -----------------------------------------------------------------------
must_fail 1 'no KEK.*"kek".*--create-kek' "datakey without a KEK nor --create-kek" dk.pem \
    hw_p11_hwkey datakey --uri "$KEK_URI" --out dk.pem
must_fail 2 'usage error: --create-kek needs --uri' "--create-kek without --uri" dk.pem \
    hw_p11_hwkey datakey --create-kek --out dk.pem
[[ -z $(secret_keys) ]] || hw_fail "a failed datakey left a secret key on the token"

hw_p11_hwkey datakey --uri "$KEK_URI" --create-kek --out dk.pem 2>err.txt ||
    hw_fail "datakey --create-kek: $(cat err.txt)"
kek=$(secret_keys)
[[ $(grep -c 'Secret Key Object' <<<"$kek") == 1 ]] || hw_fail "expected one KEK on the token: $kek"
grep -q 'AES length 32' <<<"$kek" || hw_fail "the KEK is not AES-256: $kek"
grep -q 'never extractable' <<<"$kek" || hw_fail "the KEK is extractable: $kek"
grep -Eq 'Access: +sensitive' <<<"$kek" || hw_fail "the KEK is not sensitive: $kek"
grep -Eq 'Usage: +wrap, unwrap$' <<<"$kek" || hw_fail "the KEK may do more than wrap/unwrap: $kek"
# A second data key under the same KEK (no --create-kek needed), and
# --create-kek with the KEK present reuses it.
hw_p11_hwkey datakey --uri "pkcs11:token=$HW_P11_TOKEN;object=kek" --out dk2.pem 2>err.txt ||
    hw_fail "second datakey: $(cat err.txt)"
hw_p11_hwkey datakey --uri "$KEK_URI" --create-kek --out dk3.pem 2>err.txt ||
    hw_fail "datakey --create-kek with the KEK present: $(cat err.txt)"
[[ $(secret_keys | grep -c 'Secret Key Object') == 1 ]] ||
    hw_fail "datakey made another secret key: $(secret_keys)"

# --- the file -------------------------------------------------------------------------
grep -q -- '-----BEGIN HWKEY DATA KEY-----' dk.pem || hw_fail "datakey wrote no HWKEY DATA KEY PEM"
sw asn1parse -in dk.pem >asn1.txt || hw_fail "the data key file is not DER in PEM"
grep -Eq 'INTEGER +:01$' asn1.txt || hw_fail "no version 1: $(cat asn1.txt)"
grep -Eq 'UTF8STRING +:pkcs11:.*object=kek.*type=secret-key' asn1.txt ||
    hw_fail "the file does not name the KEK: $(cat asn1.txt)"
grep -Eq 'INTEGER +:210(9|A)$' asn1.txt || hw_fail "no AES key-wrap mechanism: $(cat asn1.txt)"
grep -Eq 'OCTET STRING +\[HEX DUMP\]:[0-9A-F]{80}$' asn1.txt || hw_fail "no 40-byte wrapped key"
! grep -qi 'pin' asn1.txt || hw_fail "the data key file mentions a PIN: $(cat asn1.txt)"

key_hex=$(driver dk.pem 2>err.txt) || hw_fail "datakey_driver: $(cat err.txt)"
[[ $key_hex =~ ^[0-9a-f]{64}$ ]] || hw_fail "datakey_driver printed no key: $key_hex"
[[ $(driver dk.pem) == "$key_hex" ]] || hw_fail "one data key file unwrapped to two keys"
key2_hex=$(driver dk2.pem) || hw_fail "datakey_driver dk2.pem"
[[ $key2_hex != "$key_hex" ]] || hw_fail "two data keys are equal"
der_of dk.pem >dk.der
dump=$(hexdump_of dk.der)
for part in "${key_hex:0:16}" "${key_hex:16:16}" "${key_hex:32:16}" "${key_hex:48:16}"; do
    [[ $dump != *"$part"* ]] || hw_fail "the data key file holds data key bytes in the clear"
done

# A pin-value in the URI logs in, but never reaches the file.
bare_hwkey datakey --uri "pkcs11:token=$HW_P11_TOKEN;object=kek?pin-value=$HW_P11_PIN" \
    --out dkpv.pem 2>err.txt || hw_fail "datakey with pin-value: $(cat err.txt)"
sw asn1parse -in dkpv.pem >asn1pv.txt || hw_fail "dkpv.pem is not DER in PEM"
! grep -qiE "pin-value|pin-source" asn1pv.txt || hw_fail "a PIN reached the data key file: $(cat asn1pv.txt)"

# --- round trips ------------------------------------------------------------------------
for n in 0 1 $((200 * 1024)); do
    head -c "$n" /dev/urandom >pt.$n
    hw_p11_hwkey encrypt --key dk.pem -in pt.$n -out ct.$n 2>err.txt || hw_fail "encrypt $n bytes: $(cat err.txt)"
    [[ $(head -c 8 ct.$n) == HWKEYENC ]] || hw_fail "$n bytes: no HWKEYENC header"
    hw_p11_hwkey decrypt --key dk.pem -in ct.$n -out back.$n 2>err.txt || hw_fail "decrypt $n bytes: $(cat err.txt)"
    cmp -s pt.$n back.$n || hw_fail "$n bytes: decrypt does not give the plaintext back"
done
# The PIN from each source: --pin-source file:, env:NAME, --auth-file, the file made with pin-value.
bare_hwkey decrypt --key dk.pem --pin-source "file:$HW_P11_PIN_FILE" -in ct.1 -out b1 2>err.txt ||
    hw_fail "decrypt with --pin-source file: $(cat err.txt)"
MY_PIN=$HW_P11_PIN bare_hwkey decrypt --key dk.pem --pin-source env:MY_PIN -in ct.1 -out b2 2>err.txt ||
    hw_fail "decrypt with --pin-source env: $(cat err.txt)"
bare_hwkey decrypt --key dk.pem --auth-file "$HW_P11_PIN_FILE" -in ct.1 -out b3 2>err.txt ||
    hw_fail "decrypt with --auth-file: $(cat err.txt)"
cmp -s pt.1 b1 && cmp -s pt.1 b2 && cmp -s pt.1 b3 || hw_fail "decrypt with a PIN source: wrong plaintext"
must_fail 1 'needs an auth value or a token PIN' "decrypt with no PIN at all" b4 \
    bare_hwkey decrypt --key dk.pem -in ct.1 -out b4
hw_p11_hwkey encrypt --key dkpv.pem -in pt.1 -out ct.pv 2>err.txt || hw_fail "encrypt with dkpv.pem: $(cat err.txt)"
# stdin/stdout, one after the other: two processes logging in to one SoftHSM
# token at the same moment can read its token files mid-rewrite (a SoftHSM
# file-store race, docs/pkcs11.md), which is not what this case tests.
hw_p11_hwkey encrypt --key dk.pem <pt.1 >ct.pipe 2>err.txt ||
    hw_fail "stdin/stdout round trip (encrypt): $(cat err.txt)"
hw_p11_hwkey decrypt --key dk.pem <ct.pipe >back.pipe 2>err.txt ||
    hw_fail "stdin/stdout round trip: $(cat err.txt)"
cmp -s pt.1 back.pipe || hw_fail "stdin/stdout round trip: wrong plaintext"
must_fail 1 'decryption failed' "decrypt with another data key" back.x \
    hw_p11_hwkey decrypt --key dk2.pem -in ct.$((200 * 1024)) -out back.x

# --- wrong PIN -----------------------------------------------------------------------------
printf '9999\n' >wrong.pin
must_fail 1 'CKR_PIN_INCORRECT' "datakey with a wrong PIN" dkw.pem \
    bare_hwkey datakey --uri "$KEK_URI" --pin-source "file:$HW_DIR/wrong.pin" --out dkw.pem
must_fail 1 'CKR_PIN_INCORRECT' "encrypt with a wrong PIN" ctw \
    bare_hwkey encrypt --key dk.pem --pin-source "file:$HW_DIR/wrong.pin" -in pt.1 -out ctw
must_fail 1 'CKR_PIN_INCORRECT' "decrypt with a wrong PIN" backw \
    bare_hwkey decrypt --key dk.pem --pin-source "file:$HW_DIR/wrong.pin" -in ct.1 -out backw

# --- corrupt files ----------------------------------------------------------------------------
cp dk.der bad.der && hw_flip_byte bad.der $(($(stat -c %s bad.der) - 1))
pem_of bad.der >bad-wrapped.pem
must_fail 1 'C_UnwrapKey.*CKR_.*corrupt' "a flipped byte in the wrapped key" outc \
    hw_p11_hwkey decrypt --key bad-wrapped.pem -in ct.1 -out outc
head -c 60 dk.der >cut.der && pem_of cut.der >bad-cut.pem
must_fail 1 'invalid key file: .*corrupt or truncated' "a truncated data key file" outc \
    hw_p11_hwkey decrypt --key bad-cut.pem -in ct.1 -out outc
cp dk.der ver.der && printf '\x02' | dd of=ver.der bs=1 seek=5 conv=notrunc status=none
pem_of ver.der >bad-ver.pem
must_fail 1 'version 2' "a version 2 data key file" outc \
    hw_p11_hwkey decrypt --key bad-ver.pem -in ct.1 -out outc
head -c 150 dk.pem >bad-pem.pem
must_fail 1 'no complete PEM block' "a truncated PEM" outc \
    hw_p11_hwkey encrypt --key bad-pem.pem -in pt.1 -out outc

# --- a deleted KEK -------------------------------------------------------------------------------
hw_p11_hwkey datakey --uri "pkcs11:token=$HW_P11_TOKEN;object=gone" --create-kek --out dkgone.pem \
    2>err.txt || hw_fail "datakey with KEK gone: $(cat err.txt)"
hw_p11_hwkey encrypt --key dkgone.pem -in pt.1 -out ct.gone 2>err.txt || hw_fail "encrypt with KEK gone: $(cat err.txt)"
p11tool --delete-object --type secrkey --label gone >/dev/null 2>&1 || hw_fail "cannot delete KEK gone"
must_fail 1 "key not found: the data key's KEK \"gone\" is not on token" "decrypt after the KEK was deleted" outg \
    hw_p11_hwkey decrypt --key dkgone.pem -in ct.gone -out outg
# The other KEK is untouched, and its files still work.
hw_p11_hwkey decrypt --key dk.pem -in ct.1 -out back.after 2>err.txt && cmp -s pt.1 back.after ||
    hw_fail "dk.pem after deleting another KEK: $(cat err.txt)"

echo "PASS: $HW_TEST"
