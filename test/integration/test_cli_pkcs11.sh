#!/usr/bin/env bash
# The hwkey CLI and the pkcs11: store on a fresh SoftHSM token (exit 77
# without SoftHSM / pkcs11-tool):
#   - hwkey info lists the token and its mechanisms ("pkcs11:" once), shows
#     the unreachable TPM with its error and exits 1; info --pkcs11 exits 0
#   - the CLI takes pkcs11-module and pkcs11-pin-source from OPENSSL_CONF's
#     hwkey section when no variable or option is given (issue 7.12)
#   - reference files written by keygen --uri and by openssl pkey (encoder)
#     are pkcs11-provider's DER byte for byte; old hwkey files still load
#   - keygen --uri for ec:P-256/P-384/P-521, rsa:2048/4096, ed25519 with
#     --pin-source; the private keys are sensitive, never extractable and
#     private (invisible without a login), the public keys readable without one
#   - list --uri, pubkey URI / REFFILE / type=public (no PIN needed), delete
#   - the store: openssl pkey/x509/storeutl with type=private/public/cert and
#     no type, expect hints (-certs, -pubin), PIN from -passin, provider order
#     and default_properties = ?provider=default; EdDSA signatures and an
#     Ed25519 self-signed certificate verified by the default provider alone
#   - one clear line and exit 1 for a wrong PIN (CKR_PIN_INCORRECT), a missing
#     object, a missing module; exit 2 for usage errors
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_p11_setup

T="pkcs11:token=$HW_P11_TOKEN"
printf 'hwkey cli pkcs11 test %s\n' "$RANDOM$RANDOM" >msg

# cli EXPECTED_RC ARGS...: the CLI with the module from the environment and
# the PIN only through --pin-source (no HWKEY_PKCS11_PIN_SOURCE).
cli() {
    local want=$1 rc=0
    shift
    HWKEY_PKCS11_MODULE=${CLI_MODULE:-$HW_P11_MODULE} timeout -k 5 "$HW_TIMEOUT" "$HWKEY_BIN" "$@" \
        >cli.out 2>cli.err || rc=$?
    hw_no_crash "$rc" cli.err "hwkey $*"
    ((rc == want)) || hw_fail "hwkey $*: exit $rc, expected $want: $(head -c 600 cli.err)"
}
PINSRC=(--pin-source "file:$HW_P11_PIN_FILE")

# fails RC REGEX ARGS...: exit RC, exactly one stderr line matching REGEX, no stdout.
fails() {
    local want=$1 regex=$2
    shift 2
    cli "$want" "$@"
    assert_one_error_line cli.err "$regex"
    [[ ! -s cli.out ]] || hw_fail "hwkey $*: wrote to stdout on failure: $(head -c 200 cli.out)"
}

# --- info ------------------------------------------------------------------------
# The file's tpm2-tcti names no TPM: info shows both, the TPM with its error, exit 1.
cli 1 info
grep -q "^tpm2:" cli.out && grep -q "^  error: device unreachable" cli.out ||
    hw_fail "hwkey info does not show the unreachable TPM with its error: $(cat cli.out)"
assert_one_error_line cli.err "^hwkey: info: tpm2: device unreachable"
n=$(grep -o "pkcs11:" cli.out | wc -l)
((n == 1)) || hw_fail "hwkey info prints \"pkcs11:\" $n times: $(cat cli.out)"
grep -q "^module $HW_P11_MODULE: " cli.out || hw_fail "hwkey info names no module: $(cat cli.out)"
cli 0 info --pkcs11
! grep -q "^tpm2:" cli.out || hw_fail "hwkey info --pkcs11 showed the TPM"
# No module configured anywhere: p11-kit's proxy, which offers every registered
# module's tokens (docs/pkcs11.md section 1; Debian registers SoftHSM's).
if [[ -f /usr/share/p11-kit/modules/softhsm2.module && -e /usr/lib/x86_64-linux-gnu/p11-kit-proxy.so ]]; then
    OPENSSL_CONF=$HW_SW_CNF timeout -k 5 "$HW_TIMEOUT" env -u HWKEY_PKCS11_MODULE "$HWKEY_BIN" info --pkcs11 \
        >proxy.out 2>proxy.err || hw_fail "hwkey info --pkcs11 without a module: $(cat proxy.err)"
    grep -q "^module /usr/lib/x86_64-linux-gnu/p11-kit-proxy.so: " proxy.out &&
        grep -q "label \"$HW_P11_TOKEN\"" proxy.out ||
        hw_fail "without pkcs11-module, info does not show the SoftHSM token through p11-kit's proxy: $(cat proxy.out)"
    hw_log "ok: no module configured: p11-kit's proxy with the registered SoftHSM module"
fi
grep -q "label \"$HW_P11_TOKEN\"" cli.out || hw_fail "hwkey info does not list the token: $(cat cli.out)"
for m in ECDSA RSA-PKCS EDDSA EC-KEY-PAIR-GEN; do
    grep -q "mechanisms used by hwkey:.* $m\b" cli.out || hw_fail "hwkey info lists no $m mechanism"
done
hw_log "ok: info lists the token and its mechanisms"

# --- keygen --uri for every algorithm ------------------------------------------------
ALGS=(ec:P-256 ec:P-384 ec:P-521 rsa:2048 rsa:4096 ed25519)
label_of() { echo "c-${1//:/-}"; }
for alg in "${ALGS[@]}"; do
    label=$(label_of "$alg")
    cli 0 keygen "$alg" --uri "$T;object=$label" --out "$label.pem" "${PINSRC[@]}"
    grep -q "^pkcs11:.*object=$label.*type=private" cli.out || hw_fail "keygen $alg printed no URI: $(cat cli.out)"
    grep -q -- "-----BEGIN PKCS#11 PROVIDER URI-----" "$label.pem" || hw_fail "keygen $alg wrote no reference file"
    ! grep -q "pin-value\|$HW_P11_PIN" "$label.pem" || hw_fail "the reference file holds the PIN"
done
hw_log "ok: keygen --uri ${ALGS[*]}"

# Issue 7.8: the reference files are pkcs11-provider's format byte for byte
# (its description "PKCS#11 Provider URI v1.0"; pkcs11-provider 1.2 skips a
# file with any other), and files of older hwkey ("hwkey key reference") still load.
for alg in "${ALGS[@]}"; do
    hw_assert_p11prov_ref "$(label_of "$alg").pem"
done
hw_p11_ref "$T;object=c-ec-P-256;type=private" old-desc.pem "hwkey key reference"
cli 0 pubkey old-desc.pem "${PINSRC[@]}"
cp cli.out old-desc.pub
cli 0 pubkey c-ec-P-256.pem "${PINSRC[@]}"
cmp -s cli.out old-desc.pub || hw_fail "a reference file with hwkey's old description names another key"
hw_log "ok: keygen writes pkcs11-provider's exact reference format; old hwkey files still load"

# Private keys: sensitive, never extractable, CKA_PRIVATE (not listed without a login).
p11tool --list-objects --type privkey >objs.txt 2>&1 || hw_fail "pkcs11-tool --list-objects: $(tail -3 objs.txt)"
for alg in "${ALGS[@]}"; do
    label=$(label_of "$alg")
    awk -v l="label:      $label" '$0 ~ l {f=1} f && /Access:/ {print; exit}' objs.txt >access.txt
    grep -q "sensitive" access.txt && grep -q "never extractable" access.txt ||
        hw_fail "$label is not sensitive and never extractable: $(cat access.txt)"
done
OPENSSL_CONF=$HW_SW_CNF pkcs11-tool --module "$HW_P11_MODULE" --token-label "$HW_P11_TOKEN" \
    --list-objects >nologin.txt 2>&1 || true
grep -q "Private Key Object" nologin.txt && hw_fail "private keys are visible without a login (CKA_PRIVATE false)"
grep -q "Public Key Object" nologin.txt || hw_fail "public keys are not readable without a login"
hw_log "ok: private keys sensitive, never extractable, private; public keys public"

# --- list, pubkey -------------------------------------------------------------------
cli 0 list --uri "$T" "${PINSRC[@]}"
for alg in "${ALGS[@]}"; do
    grep -qP "\t${alg}\t$(label_of "$alg")\$" cli.out || hw_fail "list does not show $alg: $(cat cli.out)"
done
hw_log "ok: list --uri"

# Issue 7.12: no HWKEY_PKCS11_* variable, no --pin-source: the module and the PIN
# come from pkcs11-module / pkcs11-pin-source in OPENSSL_CONF's hwkey section.
cp cli.out list-env.out
timeout -k 5 "$HW_TIMEOUT" env -u HWKEY_PKCS11_MODULE -u HWKEY_PKCS11_PIN_SOURCE "$HWKEY_BIN" \
    list --uri "$T" >list-cnf.out 2>list-cnf.err || hw_fail "hwkey list with the settings of openssl.cnf only: $(cat list-cnf.err)"
cmp -s list-env.out list-cnf.out || hw_fail "list with openssl.cnf's module differs: $(cat list-cnf.out)"
hw_log "ok: the CLI uses pkcs11-module and pkcs11-pin-source from openssl.cnf"

echo 0000 >wrong.pin
for alg in "${ALGS[@]}"; do
    label=$(label_of "$alg")
    cli 0 pubkey "$T;object=$label;type=private" "${PINSRC[@]}"
    cp cli.out "$label.pub"
    # keygen's reference file (type=private) needs no PIN either (issue 7.2): the
    # key pair's public object is read; a wrong PIN given is never used.
    cli 0 pubkey "$label.pem" --pin-source "file:$PWD/wrong.pin"
    cmp -s cli.out "$label.pub" || hw_fail "pubkey REFFILE differs from pubkey URI for $label"
    [[ ! -s cli.err ]] || hw_fail "pubkey REFFILE printed: $(cat cli.err)"
    # A public key object needs no PIN at all.
    cli 0 pubkey "$T;object=$label;type=public"
    cmp -s cli.out "$label.pub" || hw_fail "pubkey type=public differs for $label"
    # The store agrees (openssl with hwkey from openssl.cnf).
    ossl pkey -in "$T;object=$label;type=private" -pubout -out "$label.store.pub" 2>store.err ||
        hw_fail "openssl pkey -in $T;object=$label: $(cat store.err)"
    cmp -s "$label.store.pub" "$label.pub" || hw_fail "the store's public key differs for $label"
    ossl pkey -pubin -in "$T;object=$label;type=public" -out "$label.store2.pub" 2>store.err ||
        hw_fail "openssl pkey -pubin type=public $label: $(cat store.err)"
    cmp -s "$label.store2.pub" "$label.pub" || hw_fail "store type=public differs for $label"
done
hw_log "ok: pubkey URI / REFFILE / type=public, equal to the store's"

# --- signatures through the store, verified in software ------------------------------
for alg in "${ALGS[@]}"; do
    label=$(label_of "$alg")
    if [[ $alg == ed25519 ]]; then dg=(); else dg=(-digest sha256); fi
    for key in "$T;object=$label" "$label.pem"; do
        rm -f sig
        ossl pkeyutl -sign -rawin "${dg[@]}" -inkey "$key" -in msg -out sig 2>sign.err ||
            hw_fail "pkeyutl -sign $alg with $key: $(cat sign.err)"
        sw pkeyutl -verify -rawin "${dg[@]}" -pubin -inkey "$label.pub" -in msg -sigfile sig \
            >/dev/null 2>&1 || hw_fail "the $alg signature with $key does not verify in software"
    done
done
hw_log "ok: every key signs through the store and its reference file (EdDSA included)"

# Ed25519 X.509: openssl req signs with the token key; the default provider verifies.
ossl req -new -x509 -key "$T;object=c-ed25519" -subj /CN=ed25519-token -days 2 -out ed.crt 2>req.err ||
    hw_fail "openssl req -x509 with the Ed25519 token key: $(cat req.err)"
sw verify -CAfile ed.crt ed.crt >/dev/null 2>&1 || hw_fail "the Ed25519 self-signed certificate does not verify"
hw_log "ok: Ed25519 self-signed certificate"

# --- certificates and type hints in the store ----------------------------------------------
ossl req -new -x509 -key "$T;object=c-ec-P-256;type=private" -subj /CN=web -days 2 -out web.crt 2>req.err ||
    hw_fail "openssl req -x509 with the P-256 token key: $(cat req.err)"
sw x509 -in web.crt -outform DER -out web.der
cli 0 list --uri "$T;object=c-ec-P-256" "${PINSRC[@]}"
id=$(grep -o 'id=[^;]*' cli.out | head -1 | sed 's/^id=//; s/%//g')
[[ -n $id ]] || hw_fail "no id for c-ec-P-256 in hwkey list"
p11tool --write-object web.der --type cert --label c-ec-P-256 --id "$id" >/dev/null 2>&1 ||
    hw_fail "pkcs11-tool --write-object cert"
ossl x509 -in "$T;object=c-ec-P-256;type=cert" -noout -subject >subj.txt 2>x509.err ||
    hw_fail "openssl x509 -in type=cert: $(cat x509.err)"
grep -q "CN = web" subj.txt || hw_fail "wrong certificate subject: $(cat subj.txt)"
ossl x509 -in "$T;object=c-ec-P-256" -noout -subject >subj.txt 2>x509.err ||
    hw_fail "openssl x509 -in (no type): $(cat x509.err)"
# no type: the private key and the certificate
ossl storeutl "$T;object=c-ec-P-256" >all.txt 2>storeutl.err || hw_fail "storeutl: $(cat storeutl.err)"
grep -q "^0: Pkey" all.txt && grep -q "^1: Certificate" all.txt && grep -q "Total found: 2" all.txt ||
    hw_fail "storeutl without type= should give the private key then the certificate: $(grep -E '^[0-9]+:|Total' all.txt)"
ossl storeutl -certs "$T;object=c-ec-P-256" >certs.txt 2>storeutl.err || hw_fail "storeutl -certs: $(cat storeutl.err)"
grep -q "Total found: 1" certs.txt && grep -q "^0: Certificate" certs.txt ||
    hw_fail "storeutl -certs should give the certificate only: $(grep -E '^[0-9]+:|Total' certs.txt)"
# the certificate's public key, and a certificate-only URI for pubkey
ossl pkey -pubin -in "$T;object=c-ec-P-256;type=cert" -out cert.pub 2>pkey.err || hw_fail "pkey -pubin type=cert: $(cat pkey.err)"
cmp -s cert.pub c-ec-P-256.pub || hw_fail "the certificate's public key differs from the key's"
hw_expect_fail "no certificate|nothing in" "x509 -in a key-only URI" ossl x509 -in "$T;object=c-rsa-2048;type=cert" -noout
hw_log "ok: certificates, storeutl with and without -certs, expect hints"

# --- provider order and default_properties ----------------------------------------------
hw_write_p11_cnf before.cnf before
cp "$OPENSSL_CONF" props.cnf
sed -i 's/^providers = provider_sect$/providers = provider_sect\nalg_section = algorithm_sect/' props.cnf
printf '[algorithm_sect]\ndefault_properties = ?provider=default\n' >>props.cnf
for cnf in before.cnf props.cnf; do
    for label in c-ec-P-256 c-rsa-2048 c-ed25519; do
        if [[ $label == c-ed25519 ]]; then dg=(); else dg=(-digest sha256); fi
        rm -f sig
        OPENSSL_CONF=$cnf ossl pkeyutl -sign -rawin "${dg[@]}" -inkey "$T;object=$label;type=private" \
            -in msg -out sig 2>sign.err || hw_fail "$cnf: sign with $label: $(cat sign.err)"
        sw pkeyutl -verify -rawin "${dg[@]}" -pubin -inkey "$label.pub" -in msg -sigfile sig >/dev/null 2>&1 ||
            hw_fail "$cnf: $label signature does not verify"
    done
done
hw_log "ok: store keys sign with hwkey listed first and with ?provider=default"

# --- PIN from the application's passphrase callback (-passin) ------------------------------
grep -v '^pkcs11-pin-source' "$OPENSSL_CONF" >nopin.cnf
rm -f sig
OPENSSL_CONF=nopin.cnf ossl pkeyutl -sign -rawin -digest sha256 -inkey "$T;object=c-ec-P-256" \
    -passin "pass:$HW_P11_PIN" -in msg -out sig 2>sign.err || hw_fail "-passin PIN: $(cat sign.err)"
sw pkeyutl -verify -rawin -digest sha256 -pubin -inkey c-ec-P-256.pub -in msg -sigfile sig >/dev/null 2>&1 ||
    hw_fail "-passin signature does not verify"
hw_expect_fail "CKR_PIN_INCORRECT" "-passin wrong PIN" env OPENSSL_CONF=nopin.cnf timeout 60 openssl pkeyutl \
    -sign -rawin -digest sha256 -inkey "$T;object=c-ec-P-256" -passin pass:0000 -in msg -out sig
# a public key needs no PIN, even with none configured and no callback answer
OPENSSL_CONF=nopin.cnf ossl pkey -pubin -in "$T;object=c-ec-P-256;type=public" -out nopin.pub </dev/null 2>pkey.err ||
    hw_fail "type=public without any PIN: $(cat pkey.err)"
hw_log "ok: PIN from -passin; wrong -passin PIN says CKR_PIN_INCORRECT; public keys need none"

# --- errors: one line, exit 1; usage errors exit 2 ------------------------------------
echo 0000 >wrong.pin
fails 1 "CKR_PIN_INCORRECT" list --uri "$T" --pin-source "file:$PWD/wrong.pin"
fails 1 "key not found.*no-such-key" pubkey "$T;object=no-such-key" "${PINSRC[@]}"
fails 1 "key not found" delete "$T;object=no-such-key" "${PINSRC[@]}"
CLI_MODULE=/nonexistent/libpkcs11.so fails 1 "/nonexistent/libpkcs11.so" list --uri "$T" "${PINSRC[@]}"
CLI_MODULE=/nonexistent/libpkcs11.so fails 1 "/nonexistent/libpkcs11.so" keygen ec:P-256 --uri "$T;object=x" "${PINSRC[@]}"
fails 1 "token" list --uri "pkcs11:token=no-such-token" "${PINSRC[@]}"
fails 1 "already has a private key" keygen ec:P-256 --uri "$T;object=c-ec-P-256" "${PINSRC[@]}"
fails 1 "PIN" keygen ec:P-256 --uri "$T;object=nopin" --pin-source env:HWKEY_TEST_UNSET_VARIABLE
fails 2 "usage error.*unknown algorithm" keygen ec:P-999 --uri "$T;object=x"
fails 2 "usage error" list --uri
hw_log "ok: wrong PIN, missing object, missing module, missing token, duplicates: one line each"

# --- a PIN given in the URI never leaves the process (issue 7.1) ---------------------
# decoded_ref FILE: the URI inside a reference file (its DER, as text).
decoded_ref() { sed '1d;$d' "$1" | base64 -d | strings -n 4; }
pinned="$T;object=pinned?pin-value=$HW_P11_PIN"
cli 0 keygen ec:P-256 --uri "$pinned" --out pinned.pem
! grep -q 'pin-value' cli.out || hw_fail "keygen printed the PIN: $(cat cli.out)"
grep -q 'object=pinned' cli.out || hw_fail "keygen printed no URI: $(cat cli.out)"
! decoded_ref pinned.pem | grep -q 'pin-value' || hw_fail "keygen wrote the PIN into the reference file"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out soft.pem 2>/dev/null
cli 0 import soft.pem --uri "$T;object=pinned-imp?pin-value=$HW_P11_PIN" --out pinned-imp.pem
! grep -q 'pin-value' cli.out || hw_fail "import printed the PIN: $(cat cli.out)"
! decoded_ref pinned-imp.pem | grep -q 'pin-value' || hw_fail "import wrote the PIN into the reference file"
# The key still works with the PIN from a pin-source, and openssl writes no PIN back either.
HWKEY_PKCS11_PIN_SOURCE=file:$HW_P11_PIN_FILE ossl pkey -in "$pinned" -out written.pem 2>pkey.err ||
    hw_fail "openssl pkey -in URI with pin-value: $(cat pkey.err)"
! decoded_ref written.pem | grep -q 'pin-value' || hw_fail "openssl pkey wrote the PIN into the reference file"
decoded_ref written.pem | grep -q 'object=pinned' || hw_fail "openssl pkey wrote no reference to the key"
hw_assert_p11prov_ref written.pem
# pin-source may stay: it names where the PIN is, not the PIN.
cli 0 keygen ec:P-256 --uri "$T;object=srcpin?pin-source=file:$HW_P11_PIN_FILE" --out srcpin.pem
decoded_ref srcpin.pem | grep -q 'pin-source' || hw_fail "keygen dropped the pin-source"
hw_log "ok: a pin-value never reaches a reference file or stdout (keygen, import, openssl pkey); pin-source kept"

# --- delete -----------------------------------------------------------------------
cli 0 delete "$T;object=c-rsa-4096" "${PINSRC[@]}"
cli 0 list --uri "$T" "${PINSRC[@]}"
! grep -q "c-rsa-4096" cli.out || hw_fail "deleted key still listed"
grep -q "c-rsa-2048" cli.out || hw_fail "delete removed another key"
cli 0 delete c-ed25519.pem "${PINSRC[@]}"
fails 1 "key not found" pubkey c-ed25519.pem "${PINSRC[@]}"
OPENSSL_CONF=$HW_SW_CNF pkcs11-tool --module "$HW_P11_MODULE" --token-label "$HW_P11_TOKEN" \
    --list-objects >after.txt 2>&1 || true
! grep -q "c-ed25519\|c-rsa-4096" after.txt || hw_fail "delete left the public key behind"
hw_log "ok: delete by URI and by reference file (private and public objects)"

# --- no module configured: p11-kit's proxy (its path from pkg-config at build time) ----
if grep -qs "softhsm" /usr/share/p11-kit/modules/*.module; then
    rc=0
    env -u HWKEY_PKCS11_MODULE OPENSSL_CONF="$HW_SW_CNF" timeout -k 5 "$HW_TIMEOUT" "$HWKEY_BIN" \
        list --uri "$T" "${PINSRC[@]}" >proxy.out 2>proxy.err || rc=$?
    ((rc == 0)) || hw_fail "list through the p11-kit proxy: exit $rc: $(head -c 600 proxy.err)"
    grep -q "c-rsa-2048" proxy.out || hw_fail "the p11-kit proxy did not reach the token: $(cat proxy.out)"
    hw_log "ok: with no module configured, the p11-kit proxy reaches the SoftHSM token"
fi

hw_log "PASS"
