#!/bin/sh
# The pkcs11 backend end to end on fresh SoftHSM tokens, driven through the
# backend registry by p11_driver (every signature, decryption and ECDH result
# is checked in software by the driver with OpenSSL's default provider).
# Exit 77 (skip) when SoftHSM or pkcs11-tool is missing.
set -u

top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
driver=$top_builddir/test/integration/p11_driver
module=/usr/lib/softhsm/libsofthsm2.so

command -v pkcs11-tool >/dev/null 2>&1 || { echo "SKIP: pkcs11-tool (opensc) missing"; exit 77; }
[ -f "$module" ] || { echo "SKIP: SoftHSM missing"; exit 77; }
[ -x "$driver" ] || { echo "SKIP: $driver not built (make check builds it)"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
pass() { echo "PASS: $*"; }
failed() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Runs the driver, expecting success.
ok() {
    if out=$("$driver" "$@" 2>&1); then pass "$*"; else failed "$* -> $out"; fi
}
# Runs the driver, expecting failure whose message contains $1.
err() {
    want=$1; shift
    if out=$("$driver" "$@" 2>&1); then
        failed "$* succeeded, expected \"$want\""
    elif printf '%s' "$out" | grep -q -- "$want"; then
        pass "$* -> $want"
    else
        failed "$* -> $out (expected \"$want\")"
    fi
}

# Token store A: SoftHSM keeps its state in a forked child (its default).
eval "$(HWKEY_SOFTHSM_RESET_ON_FORK=false "$top_srcdir/scripts/softhsm-setup.sh" "$tmp/a")" || exit $?
conf_a=$SOFTHSM2_CONF
export HWKEY_PKCS11_MODULE=$module
unset HWKEY_PKCS11_PIN_SOURCE HWKEY_PKCS11_QUIRKS
tool="pkcs11-tool --module $module --token-label hwkey-test --login --pin 1234"
T='pkcs11:token=hwkey-test'
PIN='?pin-value=1234'

# Keys made by pkcs11-tool (interop), checked against its own public key export.
for spec in EC:prime256v1:11:ec256 EC:secp384r1:12:ec384 EC:secp521r1:13:ec521 \
            rsa:2048:21:rsa2048 rsa:3072:22:rsa3072; do
    type=${spec%%:*}; rest=${spec#*:}; param=${rest%%:*}; rest=${rest#*:}
    id=${rest%%:*}; label=${rest#*:}
    $tool --keypairgen --key-type "$type:$param" --label "$label" --id "$id" >/dev/null 2>&1 \
        || { failed "pkcs11-tool keypairgen $type:$param"; continue; }
    "$driver" pubkey "$T;object=$label$PIN" "$tmp/$label.pem" || { failed "pubkey $label"; continue; }
    if [ "$type" = rsa ]; then
        pkcs11-tool --module "$module" --token-label hwkey-test --read-object --type pubkey \
            --id "$id" -o "$tmp/$label.der" >/dev/null 2>&1
        openssl pkey -pubin -inform DER -in "$tmp/$label.der" | cmp -s - "$tmp/$label.pem" \
            && pass "public key of $label equals pkcs11-tool's" || failed "public key of $label"
    else
        # pkcs11-tool 0.23 cannot export P-384 keys as DER: find our point among the
        # EC_POINTs it lists (it does not filter --list-objects by label).
        theirs=$(pkcs11-tool --module "$module" --token-label hwkey-test --list-objects \
            --type pubkey 2>/dev/null | sed -n 's/^ *EC_POINT: *//p')
        ours=$(openssl pkey -pubin -in "$tmp/$label.pem" -text -noout \
            | sed -n '/^pub:/,/^ASN1 OID/p' | grep '^ ' | tr -d ' :\n')
        case $theirs in
            *"$ours"*) [ ${#ours} -gt 100 ] && pass "EC point of $label is on the token" \
                || failed "EC point of $label too short: $ours" ;;
            *) failed "EC point of $label: ours $ours not among $theirs" ;;
        esac
    fi
done
# The same keys by id only (percent-encoded), not by label.
ok sign "$T;id=%11$PIN" ecdsa SHA256

for k in ec256 ec384 ec521; do
    for md in SHA256 SHA384 SHA512; do ok sign "$T;object=$k$PIN" ecdsa $md; done
    ok ecdh "$T;object=$k$PIN"
done
for k in rsa2048 rsa3072; do
    for md in SHA1 SHA256 SHA384 SHA512; do ok sign "$T;object=$k$PIN" pkcs1 $md; done
    ok decrypt "$T;object=$k$PIN" pkcs1 SHA1
    ok decrypt "$T;object=$k$PIN" oaep SHA1
done
# PSS: any salt the key fits, up to the maximum (k - hLen - 2).
for salt in 0 20 32 64 222; do ok sign "$T;object=rsa2048$PIN" pss SHA256 $salt; done
for salt in 0 48 334; do ok sign "$T;object=rsa3072$PIN" pss SHA384 $salt; done
err "invalid salt length" sign "$T;object=rsa2048$PIN" pss SHA256 223
# SoftHSM 2.6 does OAEP with SHA-1 only: a clear error, not "decryption failed".
err "unsupported padding" decrypt "$T;object=rsa2048$PIN" oaep SHA256

# Keys made by the backend's key_generate.
for alg in ec:P-256 ec:P-384 ec:P-521 rsa:2048 rsa:3072 ed25519; do
    label=gen-$(echo "$alg" | tr ':' '-')
    if uri=$("$driver" keygen "$T;object=$label$PIN" "$alg" 2>"$tmp/err"); then
        pass "keygen $alg"
    else
        failed "keygen $alg: $(cat "$tmp/err")"; continue
    fi
    # The URI a keygen returns never carries the PIN it was given (util/uri_redact.h).
    [[ $uri != *pin-value* ]] || failed "keygen $alg returned a URI with the PIN: $uri"
    uri=$uri$PIN
    case $alg in
        ec:*) ok sign "$uri" ecdsa SHA256 ;;
        rsa:*) ok sign "$uri" pkcs1 SHA256; ok sign "$uri" pss SHA256 32 ;;
        ed25519) ok sign "$uri" eddsa SHA256 ;;
    esac
    # Sensitive, non-extractable, private (pkcs11-tool prints the attributes).
    $tool --list-objects --type privkey --label "$label" 2>/dev/null >"$tmp/attrs"
    grep -q "Access:.*sensitive" "$tmp/attrs" && grep -q "never extractable" "$tmp/attrs" \
        && pass "$label is sensitive and never extractable" || failed "$label attributes: $(cat "$tmp/attrs")"
done
err "already has a private key" keygen "$T;object=gen-ec-P-256$PIN" ec:P-256
# 4096-bit RSA too (slow on SoftHSM, once).
ok keygen "$T;object=gen-rsa4096$PIN" rsa:4096
ok sign "$T;object=gen-rsa4096$PIN" pkcs1 SHA512

"$driver" list "$T$PIN" >"$tmp/list" 2>&1
n=$(grep -c '^pkcs11:' "$tmp/list")
[ "$n" -eq 12 ] && pass "list shows 12 private keys" || failed "list shows $n keys: $(cat "$tmp/list")"
ok delete "$T;object=gen-ec-P-384$PIN"
# A listing is never capped (it was at 256 objects): 300 more keys, all listed.
ok keygen-many "$T;object=many$PIN" 300
"$driver" list "$T$PIN" >"$tmp/list" 2>&1
n=$(grep -c '^pkcs11:' "$tmp/list")
[ "$n" -eq 311 ] && pass "list shows all 311 private keys" || failed "list shows $n of 311 keys"
err "key not found" load "$T;object=gen-ec-P-384$PIN"

# Errors.
err "key not found" load "$T;object=no-such-key$PIN"
export HWKEY_PKCS11_MODULE=/nonexistent/libnone.so
err "device unreachable" load "$T;object=ec256$PIN"
export HWKEY_PKCS11_MODULE=$module
err "invalid URI" load "$T;object=a;object=b$PIN"
err "invalid URI" load "pkcs11:token=hwkey-test;object=ec256?pin-value=1&pin-source=file:/x"
err "needs a PIN" load "$T;object=ec256"
echo 1234 >"$tmp/pin"
ok load "$T;object=ec256?pin-source=file:$tmp/pin"
export HWKEY_PKCS11_PIN_SOURCE=file:$tmp/pin HWKEY_TEST_PIN=1234
ok load "$T;object=ec256"
ok load "$T;object=ec256?pin-source=env:HWKEY_TEST_PIN"
unset HWKEY_PKCS11_PIN_SOURCE HWKEY_TEST_PIN
# Wrong PIN: reported as CKR_PIN_INCORRECT once; the same PIN is never sent twice.
"$driver" load "$T;object=ec256?pin-value=9999" 3 >"$tmp/wrong" 2>&1
if [ "$(grep -c 'CKR_PIN_INCORRECT' "$tmp/wrong")" -eq 3 ] \
   && [ "$(grep -c 'failed: CKR_PIN_INCORRECT' "$tmp/wrong")" -eq 1 ] \
   && [ "$(grep -c 'already rejected this PIN' "$tmp/wrong")" -eq 2 ] \
   && grep -q "authorization failed" "$tmp/wrong"; then
    pass "wrong PIN: AUTH_FAILED, sent to the token once in 3 tries"
else
    failed "wrong PIN: $(cat "$tmp/wrong")"
fi
ok load "$T;object=ec256$PIN"

# Concurrency and fork.
ok threads "$T;object=ec256$PIN" 8 25
ok threads "$T;object=rsa2048$PIN" 8 10
ok fork "$T;object=ec256$PIN" 4
ok fork "$T;object=rsa2048$PIN" 4

# Token store B: SoftHSM resets itself in a forked child (like a remote HSM):
# the children must C_Initialize again, log in and re-find the key objects.
eval "$(HWKEY_SOFTHSM_RESET_ON_FORK=true "$top_srcdir/scripts/softhsm-setup.sh" "$tmp/b")" || exit $?
$tool --keypairgen --key-type EC:prime256v1 --label ec256 --id 11 >/dev/null 2>&1
$tool --keypairgen --key-type rsa:2048 --label rsa2048 --id 21 >/dev/null 2>&1
ok fork "$T;object=ec256$PIN" 4
ok fork "$T;object=rsa2048$PIN" 4
echo 1234 >"$tmp/pin"
ok fork "$T;object=ec256?pin-source=file:$tmp/pin" 4
SOFTHSM2_CONF=$conf_a

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
