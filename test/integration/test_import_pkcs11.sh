#!/usr/bin/env bash
# hwkey import SOFTWARE_KEY --uri 'pkcs11:...' on a fresh SoftHSM token (exit
# 77 without SoftHSM / pkcs11-tool):
#   - EC P-256/P-384/P-521, RSA 2048/3072 and Ed25519 software keys become
#     token keys; the URI is printed and --out writes a reference file
#   - the token's public key (type=public, no PIN) equals the software one
#   - signatures made through hwkey (openssl pkeyutl with the reference file)
#     verify with the software public key; the deterministic schemes (RSA
#     PKCS#1 v1.5, Ed25519) give the software key's very bytes; ECDH and RSA
#     decryption agree with the software key
#   - the private keys are sensitive, not extractable and private; being
#     imported, neither "always sensitive" nor "never extractable"
#   - id= from the URI is kept; an encrypted software key with --passin-file
#   - duplicate label or id, wrong PIN, unsupported keys, unknown token:
#     one clear line, exit 1, no object created; usage errors exit 2
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_p11_setup

T="pkcs11:token=$HW_P11_TOKEN"
PINSRC=(--pin-source "file:$HW_P11_PIN_FILE")
printf 'hwkey pkcs11 import test %s\n' "$RANDOM$RANDOM" >msg

# cli EXPECTED_RC ARGS...: the CLI with the module from the environment, the
# PIN only through the arguments.
cli() {
    local want=$1 rc=0
    shift
    HWKEY_PKCS11_MODULE=$HW_P11_MODULE timeout -k 5 "$HW_TIMEOUT" "$HWKEY_BIN" "$@" \
        >cli.out 2>cli.err || rc=$?
    hw_no_crash "$rc" cli.err "hwkey $*"
    ((rc == want)) || hw_fail "hwkey $*: exit $rc, expected $want: $(head -c 600 cli.err)"
}
# fails RC REGEX ARGS...: exit RC, exactly one stderr line matching REGEX, no stdout.
fails() {
    local want=$1 regex=$2
    shift 2
    cli "$want" "$@"
    assert_one_error_line cli.err "$regex"
    [[ ! -s cli.out ]] || hw_fail "hwkey $*: wrote to stdout on failure: $(head -c 200 cli.out)"
}
# objects: the number of key objects on the token (private + public), logged in.
objects() {
    p11tool --list-objects >objs.count 2>&1 || hw_fail "pkcs11-tool --list-objects: $(tail -3 objs.count)"
    grep -cE "^(Private|Public) Key Object" objs.count || true
}

# --- import every supported kind ----------------------------------------------------
declare -A GENOPT=([ec-p256]="EC -pkeyopt ec_paramgen_curve:P-256"
    [ec-p384]="EC -pkeyopt ec_paramgen_curve:P-384"
    [ec-p521]="EC -pkeyopt ec_paramgen_curve:P-521"
    [rsa-2048]="RSA -pkeyopt rsa_keygen_bits:2048"
    [rsa-3072]="RSA -pkeyopt rsa_keygen_bits:3072"
    [ed25519]="ED25519")
NAMES=(ec-p256 ec-p384 ec-p521 rsa-2048 rsa-3072 ed25519)
for name in "${NAMES[@]}"; do
    # shellcheck disable=SC2086
    sw genpkey -algorithm ${GENOPT[$name]} -out "$name.soft.pem" 2>/dev/null || hw_fail "genpkey $name"
    sw pkey -in "$name.soft.pem" -pubout -out "$name.soft.pub"
    cli 0 import "$name.soft.pem" --uri "$T;object=i-$name" --out "$name.ref" "${PINSRC[@]}"
    grep -q "^pkcs11:.*id=.*object=i-$name.*type=private" cli.out ||
        hw_fail "import $name printed no URI with an id: $(cat cli.out)"
    [[ ! -s cli.err ]] || hw_fail "import $name wrote to stderr: $(cat cli.err)"
    grep -q -- "-----BEGIN PKCS#11 PROVIDER URI-----" "$name.ref" || hw_fail "import $name wrote no reference file"
    ! grep -q "pin-value\|$HW_P11_PIN" "$name.ref" || hw_fail "the reference file holds the PIN"
done
hw_log "ok: import --uri ${NAMES[*]}"

# --- the token's public keys are the software ones -------------------------------------
for name in "${NAMES[@]}"; do
    # public key object: no PIN at all
    cli 0 pubkey "$T;object=i-$name;type=public"
    cmp -s cli.out "$name.soft.pub" || hw_fail "$name: the token's public key object differs from the software key's"
    cli 0 pubkey "$name.ref" "${PINSRC[@]}"
    cmp -s cli.out "$name.soft.pub" || hw_fail "$name: pubkey of the reference file differs from the software key's"
done
hw_log "ok: public key objects (no login) and reference files give the software public keys"

# --- signatures through hwkey verify with the software public key ----------------------
for name in "${NAMES[@]}"; do
    if [[ $name == ed25519 ]]; then dg=(); else dg=(-digest sha256); fi
    rm -f "$name.sig"
    ossl pkeyutl -sign -rawin "${dg[@]}" -inkey "$name.ref" -in msg -out "$name.sig" 2>sign.err ||
        hw_fail "pkeyutl -sign with the imported $name: $(cat sign.err)"
    sw pkeyutl -verify -rawin "${dg[@]}" -pubin -inkey "$name.soft.pub" -in msg -sigfile "$name.sig" \
        >/dev/null 2>&1 || hw_fail "the imported $name's signature does not verify with the software public key"
    case $name in
    rsa-* | ed25519)
        # deterministic: the token signs exactly like the software key
        sw pkeyutl -sign -rawin "${dg[@]}" -inkey "$name.soft.pem" -in msg -out "$name.soft.sig"
        cmp -s "$name.sig" "$name.soft.sig" || hw_fail "$name: the token's signature differs from the software key's"
        ;;
    esac
done
hw_log "ok: signatures verify with the software keys (RSA PKCS#1 and Ed25519 byte for byte)"

sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.pem
sw pkey -in peer.pem -pubout -out peer.pub
ossl pkeyutl -derive -inkey ec-p256.ref -peerkey peer.pub -out z.token 2>derive.err ||
    hw_fail "ECDH with the imported P-256 key: $(cat derive.err)"
sw pkeyutl -derive -inkey ec-p256.soft.pem -peerkey peer.pub -out z.soft
cmp -s z.token z.soft || hw_fail "ECDH with the imported key differs from the software key's"
sw pkeyutl -encrypt -pubin -inkey rsa-2048.soft.pub -in msg -out ct
ossl pkeyutl -decrypt -inkey rsa-2048.ref -in ct -out pt 2>dec.err || hw_fail "RSA decrypt with the imported key: $(cat dec.err)"
cmp -s pt msg || hw_fail "RSA decryption with the imported key gave the wrong plaintext"
hw_log "ok: ECDH and RSA decryption agree with the software keys"

# --- attributes: sensitive, not extractable, private ------------------------------------
p11tool --list-objects --type privkey >objs.txt 2>&1 || hw_fail "pkcs11-tool --list-objects: $(tail -3 objs.txt)"
for name in "${NAMES[@]}"; do
    awk -v l="label:      i-$name" '$0 == "  " l {f=1} f && /Access:/ {print; exit}' objs.txt >access.txt
    [[ -s access.txt ]] || hw_fail "pkcs11-tool does not list the private key i-$name"
    grep -q "sensitive" access.txt || hw_fail "i-$name is not sensitive: $(cat access.txt)"
    # "extractable" would mean CKA_EXTRACTABLE; an imported key is not "never extractable"
    # nor "always sensitive" either (it was outside the token), so neither word appears.
    ! grep -q "extractable" access.txt || hw_fail "i-$name: unexpected extractability: $(cat access.txt)"
    ! grep -q "always sensitive" access.txt || hw_fail "i-$name claims always sensitive: $(cat access.txt)"
done
awk '/label: +i-ec-p256$/ {f=1} f && /Usage:/ {print; exit}' objs.txt >usage.txt
if ! grep -q "sign" usage.txt || ! grep -q "derive" usage.txt || grep -q "decrypt\|unwrap" usage.txt; then
    hw_fail "i-ec-p256 usage should be sign, derive: $(cat usage.txt)"
fi
OPENSSL_CONF=$HW_SW_CNF pkcs11-tool --module "$HW_P11_MODULE" --token-label "$HW_P11_TOKEN" \
    --list-objects >nologin.txt 2>&1 || true
! grep -q "Private Key Object" nologin.txt || hw_fail "imported private keys are visible without a login"
(($(grep -c "Public Key Object" nologin.txt) == ${#NAMES[@]})) ||
    hw_fail "expected ${#NAMES[@]} public key objects without a login: $(grep -c 'Public Key Object' nologin.txt)"
hw_log "ok: private keys sensitive, not extractable, private; public keys public"

# --- id= from the URI, encrypted software key ------------------------------------------
echo "soft key passphrase" >pass.txt
sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes-128-cbc -pass file:pass.txt -out enc.pem
cli 0 import enc.pem --uri "$T;object=i-enc;id=%c0%ff%ee" --passin-file pass.txt "${PINSRC[@]}"
grep -q "id=%C0%FF%EE;" cli.out || hw_fail "import ignored id= from the URI: $(cat cli.out)"
cli 0 pubkey "$T;id=%c0%ff%ee;type=public"
sw pkey -in enc.pem -passin file:pass.txt -pubout | cmp -s - cli.out || hw_fail "the key imported by id has the wrong public key"
hw_log "ok: id= kept, encrypted software key with --passin-file"

# --- errors: nothing created, one line each --------------------------------------------
# a public key object alone already claims the label (it would be taken for the new key's)
sw pkey -in peer.pem -pubout -outform DER -out peer.pub.der
p11tool --write-object peer.pub.der --type pubkey --label pub-only >/dev/null 2>&1 ||
    hw_fail "pkcs11-tool --write-object pubkey"
before=$(objects)
((before > 0)) || hw_fail "cannot count the token's key objects"
fails 1 "already has a public key.*pub-only" import ec-p256.soft.pem --uri "$T;object=pub-only" "${PINSRC[@]}"
fails 1 "already has a private key.*i-ec-p256" import ec-p256.soft.pem --uri "$T;object=i-ec-p256" "${PINSRC[@]}"
fails 1 "already has a private key" import rsa-2048.soft.pem --uri "$T;object=fresh;id=%c0%ff%ee" "${PINSRC[@]}"
echo 0000 >wrong.pin
fails 1 "CKR_PIN_INCORRECT" import ec-p384.soft.pem --uri "$T;object=wrong-pin" --pin-source "file:$PWD/wrong.pin"
sw genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024.pem 2>/dev/null
fails 1 "1024 bits" import rsa1024.pem --uri "$T;object=weak" "${PINSRC[@]}"
sw genpkey -algorithm X25519 -out x25519.pem
fails 1 "X25519 keys cannot be imported" import x25519.pem --uri "$T;object=x" "${PINSRC[@]}"
sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp256k1 -out k1.pem
fails 1 "curve secp256k1" import k1.pem --uri "$T;object=k1" "${PINSRC[@]}"
fails 1 "token" import ec-p256.soft.pem --uri "pkcs11:token=no-such-token;object=x" "${PINSRC[@]}"
fails 1 "invalid URI" import ec-p256.soft.pem --uri "$T;object=x;bogus=1" "${PINSRC[@]}"
fails 1 "exists; use --force" import ec-p256.soft.pem --uri "$T;object=other" --out ec-p256.ref "${PINSRC[@]}"
after=$(objects)
((before == after)) || hw_fail "a failed import left objects behind ($before before, $after after)"
[[ ! -e wrong-pin.ref ]] || hw_fail "failed import wrote a file"
fails 2 "usage error.*pkcs11: URI" import ec-p256.soft.pem --uri "file:/x"
fails 2 "usage error.*--pin-source" import ec-p256.soft.pem --uri "$T;object=y" --auth-file wrong.pin
fails 2 "usage error.*--out FILE.*--uri" import ec-p256.soft.pem
hw_log "ok: duplicates, wrong PIN, unsupported keys, missing token: one line, exit 1, nothing created"

# --- delete removes both objects ---------------------------------------------------------
cli 0 delete ed25519.ref "${PINSRC[@]}"
fails 1 "key not found" pubkey ed25519.ref "${PINSRC[@]}"
OPENSSL_CONF=$HW_SW_CNF pkcs11-tool --module "$HW_P11_MODULE" --token-label "$HW_P11_TOKEN" \
    --list-objects >after.txt 2>&1 || true
! grep -q "i-ed25519" after.txt || hw_fail "delete left the imported public key behind"
hw_log "ok: delete removes the imported key pair"

hw_log "PASS"
