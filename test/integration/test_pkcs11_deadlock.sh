#!/usr/bin/env bash
# TRAPS.md, PKCS#11: SoftHSM runs OpenSSL inside the same process.  If hwkey
# became the implicit choice for a digest, RNG or cipher that SoftHSM
# fetches, SoftHSM would re-enter itself (C_OpenSession -> provider ->
# C_OpenSession) and deadlock on its own mutex; if hwkey touched the module
# while SoftHSM initialises OpenSSL, SoftHSM's C_Initialize would re-enter.
# With hwkey loaded from openssl.cnf listed after default, before default,
# and with no pkcs11 parameter at all, SoftHSM-backed work must complete:
#   - openssl(1) signing with a token key (reference file), verified
#   - openssl(1) digests, random bytes and AES (things SoftHSM fetches too)
#   - pkcs11-tool, a program that drives SoftHSM itself, with the same
#     openssl.cnf (its C_Initialize makes SoftHSM load openssl.cnf)
# Every command runs under `timeout 60`; a timeout is the deadlock.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_p11_setup

FAILS=()
bad() { printf 'FAIL: %s: %s\n' "$HW_TEST" "$*" >&2; FAILS+=("$*"); }

# run WHAT CMD...: under timeout 60; 124 = deadlock, >= 126 = crash.
run() {
    local what=$1 rc=0
    shift
    timeout -k 5 60 "$@" >run.out 2>run.err || rc=$?
    if ((rc == 124 || rc == 137)); then
        bad "$what: no answer after 60 s: the SoftHSM re-entry deadlock (TRAPS.md, PKCS#11) is back"
        return 1
    elif ((rc >= 126)) || grep -qiE 'segmentation fault|core dumped|aborted|assertion' run.err; then
        bad "$what: crashed (exit $rc): $(tail -3 run.err)"
        return 1
    elif ((rc != 0)); then
        bad "$what: exit $rc: $(head -3 run.err)"
        return 1
    fi
    return 0
}

head -c 5000 /dev/urandom >msg
hw_p11_keygen ec:P-256 dl-ec dl-ec.pem
hw_p11_keygen rsa:2048 dl-rsa dl-rsa.pem
p11tool --keypairgen --key-type rsa:2048 --label dl-tool --id 51 >/dev/null 2>&1 ||
    hw_fail "pkcs11-tool --keypairgen rsa:2048"

for order in noconf after before; do
    cnf=$HW_DIR/openssl-$order.cnf
    hw_write_p11_cnf "$cnf" "$order"
    n=${#FAILS[@]}
    export OPENSSL_CONF=$cnf
    # noconf: no pkcs11 parameter anywhere; the reference files' URIs name
    # the module and the PIN file themselves.
    sfx=
    if [[ $order == noconf ]]; then
        sfx=-self
        for k in dl-ec dl-rsa; do
            hw_p11_ref "pkcs11:token=$HW_P11_TOKEN;object=$k;type=private?module-path=$HW_P11_MODULE&pin-source=file:$HW_P11_PIN_FILE" "$k$sfx.pem"
        done
    fi
    for k in dl-ec dl-rsa; do
        rm -f "$k.sig" "$k.pub"
        if [[ $order == noconf ]]; then
            # Without a pkcs11 parameter hwkey may not offer token keys at all
            # (test_pkcs11_openssl.sh checks that): here only a hang counts.
            rc=0
            timeout -k 5 60 openssl dgst -sha256 -sign "$k$sfx.pem" -out "$k.sig" msg >run.out 2>run.err || rc=$?
            if ((rc == 124 || rc == 137)); then
                bad "$order: openssl dgst -sign $k$sfx.pem: no answer after 60 s: the SoftHSM re-entry deadlock (TRAPS.md, PKCS#11) is back"
            elif ((rc >= 126)); then
                bad "$order: openssl dgst -sign $k$sfx.pem: crashed (exit $rc): $(tail -3 run.err)"
            elif ((rc != 0)); then
                hw_log "NOTE: $order: openssl dgst -sign $k$sfx.pem ended without a hang but failed (exit $rc)"
            fi
            continue
        fi
        run "$order: openssl pkey -in $k.pem -pubout" openssl pkey -in "$k.pem" -pubout -out "$k.pub" &&
            run "$order: openssl dgst -sha256 -sign $k.pem" openssl dgst -sha256 -sign "$k.pem" \
                -out "$k.sig" msg &&
            { sw dgst -sha256 -verify "$k.pub" -signature "$k.sig" msg >/dev/null 2>&1 ||
                bad "$order: $k signature does not verify"; }
    done
    run "$order: openssl dgst -sha384" openssl dgst -sha384 msg || true
    run "$order: openssl rand" openssl rand -hex 32 || true
    run "$order: openssl enc -aes-256-cbc" openssl enc -aes-256-cbc -pbkdf2 -pass pass:x -in msg -out msg.enc || true
    # A program that uses SoftHSM itself, with hwkey active in openssl.cnf.
    # The key is named by label AND id: Debian 12's pkcs11-tool --sign with
    # --label alone fails C_SignFinal with CKR_GENERAL_ERROR, depending on the
    # order SoftHSM lists objects, once an EC key is also on the token
    # (reproduced with keys made by pkcs11-tool only and no openssl.cnf: not
    # hwkey); with --id it selects the same key and signs.
    run "$order: pkcs11-tool --list-objects (SoftHSM driven by the program, hwkey in openssl.cnf)" \
        pkcs11-tool --module "$HW_P11_MODULE" --token-label "$HW_P11_TOKEN" --login \
        --pin "$HW_P11_PIN" --list-objects || true
    run "$order: pkcs11-tool --sign (hwkey in openssl.cnf)" \
        pkcs11-tool --module "$HW_P11_MODULE" --token-label "$HW_P11_TOKEN" --login \
        --pin "$HW_P11_PIN" --sign --mechanism SHA256-RSA-PKCS --label dl-tool --id 51 -i msg -o p11.sig || true
    ((${#FAILS[@]} == n)) && hw_log "ok: hwkey $order default: SoftHSM signing, digests, RNG, pkcs11-tool all complete"
done
export OPENSSL_CONF=$HW_DIR/openssl.cnf

if ((${#FAILS[@]} > 0)); then
    printf 'FAIL: %s: %d case(s) failed:\n' "$HW_TEST" "${#FAILS[@]}" >&2
    printf '  - %s\n' "${FAILS[@]}" >&2
    exit 1
fi
echo "PASS: $HW_TEST"
