#!/usr/bin/env bash
# PCR-bound TPM keys and data keys (hwkey keygen/datakey --pcr), swtpm:
#  - the key file records one PolicyPCR step per PCR (+ PolicyAuthValue with
#    an auth value) in the TSS2 policy [1] field; the object's authPolicy is
#    set and userWithAuth is clear (no password session can bypass it);
#  - through the provider (openssl pkeyutl) a bound key signs, derives (EC)
#    and decrypts (RSA); with an auth value both are required;
#  - after tpm2_pcrextend of a bound PCR, sign and decrypt fail with
#    "policy check failed: PCR 7 changed"; a key bound to other PCRs and an
#    unbound key still work; two changed PCRs are both named;
#  - a bound data key: hwkey decrypt works, then, after the extend, refuses
#    with one line naming the PCR and writes no plaintext;
#  - the unseal through the policy session keeps the data key and the auth
#    value off the bus (pcap: TCTI);
#  - through tpm2-abrmd (keys kept loaded) the same, when installed;
#  - the re-seal around an update that docs/pcr-policy.md prescribes works;
#  - no transient object and no session is left in the TPM;
#  - bad --pcr uses: one usage line, exit 2, no file; an inactive PCR bank:
#    one line naming it, exit 1, no file.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing tpm2_pcrextend tpm2_startauthsession tpm2_policypcr tpm2_flushcontext tpm2_getcap tpm2_print od base64 dd
hw_setup
echo "message to sign $RANDOM" >msg
printf 'pcr-auth-%s\n' "$RANDOM$RANDOM" >pw.txt
printf 'not-the-auth\n' >badpw.txt

# extend PCR: change one sha256 PCR the way a firmware or kernel update would
extend() {
    tpm2_pcrextend "$1:sha256=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" ||
        hw_fail "tpm2_pcrextend $1"
}
sign_ok() { # KEY [ARGS...]: signs through the provider, verifies in software
    local key=$1
    shift
    ossl pkeyutl -sign -inkey "$key" "$@" -rawin -digest sha256 -in msg -out "$key.sig" 2>"$key.err" ||
        hw_fail "signing with $key: $(cat "$key.err")"
    # pubkey needs no auth value, also for a key that has one (and refuses one).
    hw_hwkey pubkey "$key" >"$key.pub" || hw_fail "hwkey pubkey $key"
    sw pkeyutl -verify -pubin -inkey "$key.pub" -rawin -digest sha256 -in msg -sigfile "$key.sig" \
        >/dev/null || hw_fail "$key: signature does not verify"
}
no_leftovers() {
    local left
    left=$(hw_transient_handles)
    [[ -z $left ]] || hw_fail "$1: transient objects left in the TPM: $left"
    left=$(timeout 30 tpm2_getcap handles-loaded-session | grep -o '0x[0-9a-fA-F]*' || true)
    [[ -z $left ]] || hw_fail "$1: sessions left loaded in the TPM: $left"
    left=$(timeout 30 tpm2_getcap handles-saved-session | grep -o '0x[0-9a-fA-F]*' || true)
    [[ -z $left ]] || hw_fail "$1: sessions left (saved) in the TPM: $left"
}
CHANGED='policy check failed'

# --- bad uses: usage error, one line, no file ---------------------------------
expect_usage() { # REGEX ARGS...
    local regex=$1 rc=0
    shift
    hw_hwkey "$@" </dev/null >/dev/null 2>usage.err || rc=$?
    hw_no_crash "$rc" usage.err "hwkey $*"
    ((rc == 2)) || hw_fail "hwkey $*: exit $rc, expected 2: $(cat usage.err)"
    assert_one_error_line usage.err "$regex"
    [[ ! -e bad.out ]] || hw_fail "hwkey $*: wrote bad.out"
}
expect_usage 'unknown PCR bank "md5"' keygen ec:P-256 --out bad.out --pcr md5:7
expect_usage '0\.\.23' keygen ec:P-256 --out bad.out --pcr sha256:24
expect_usage 'PCR 7 is listed twice' keygen ec:P-256 --out bad.out --pcr sha256:7,7
expect_usage 'expected BANK:N' datakey --out bad.out --pcr 7
expect_usage 'not --persist' keygen ec:P-256 --persist 0x81000042 --pcr sha256:7
expect_usage 'PKCS#11 token has no PCRs' keygen ec:P-256 --uri 'pkcs11:token=t;object=k' \
    --out bad.out --pcr sha256:7
expect_usage 'PKCS#11 KEK has no PCRs' datakey --out bad.out --uri 'pkcs11:token=t;object=k' \
    --pcr sha256:7

# A bank the TPM has not activated (swtpm: only sha256): one line naming it, exit 1, no file.
if timeout 30 tpm2_getcap pcrs | grep -qE '^ *- sha384: \[ \]'; then
    rc=0
    hw_hwkey keygen ec:P-256 --out bad.out --pcr sha384:3 </dev/null 2>bank.err || rc=$?
    ((rc == 1)) || hw_fail "--pcr on an inactive bank: exit $rc, expected 1: $(cat bank.err)"
    assert_one_error_line bank.err 'no sha384 value for PCR 3 \(no such PCR bank active'
    [[ ! -e bad.out ]] || hw_fail "--pcr on an inactive bank wrote a key file"
fi

# --- keys bound to PCRs ----------------------------------------------------------
hw_keygen ec:P-256 ec07.tss --pcr sha256:0,7
hw_keygen ec:P-256 ec02.tss --pcr sha256:0,2
hw_keygen ec:P-256 ec34.tss --pcr sha256:3,4
hw_keygen rsa:2048 rsa7.tss --pcr sha256:7 --auth-file pw.txt
hw_keygen ec:P-256 free.tss

# The file: policy [1] with one TPM2_PolicyPCR (0x17F) per PCR, then
# TPM2_PolicyAuthValue (0x16B) when there is an auth value.
steps() { sw asn1parse -in "$1" | grep -A1 'cont \[ 0 \]' | grep -o 'INTEGER *:[0-9A-F]*' | sed 's/.*://' | tr '\n' ' '; }
[[ $(steps ec07.tss) == "017F 017F " ]] || hw_fail "ec07.tss policy steps: '$(steps ec07.tss)'"
[[ $(steps rsa7.tss) == "017F 016B " ]] || hw_fail "rsa7.tss policy steps: '$(steps rsa7.tss)'"
[[ -z $(steps free.tss) ]] || hw_fail "an unbound key has policy steps: '$(steps free.tss)'"
# The public area (the key file's first OCTET STRING, read by tpm2_print):
# authPolicy set, userWithAuth clear.
print_public() {
    local line off hl len
    sed '1d;$d' "$1" | base64 -d >"$1.der"
    line=$(sw asn1parse -inform DER -in "$1.der" | grep 'd=1 .*OCTET STRING' | head -1)
    off=${line%%:*}
    hl=$(sed 's/.*hl= *\([0-9]*\).*/\1/' <<<"$line")
    len=$(sed 's/.* l= *\([0-9]*\).*/\1/' <<<"$line")
    dd if="$1.der" of="$1.pubarea" bs=1 skip=$((off + hl)) count="$len" status=none
    tpm2_print -t TPM2B_PUBLIC "$1.pubarea" >"$1.print" 2>&1 || hw_fail "tpm2_print $1: $(cat "$1.print")"
    grep -q 'fixedtpm' "$1.print" || hw_fail "tpm2_print $1 shows no attributes: $(cat "$1.print")"
}
print_public ec07.tss
! grep -q 'userwithauth' ec07.tss.print || hw_fail "a PCR-bound key has userWithAuth set"
grep -qE '^authorization policy: [0-9a-f]{64}$' ec07.tss.print ||
    hw_fail "a PCR-bound key has no authPolicy: $(cat ec07.tss.print)"
print_public free.tss
grep -q 'userwithauth' free.tss.print || hw_fail "control: no userwithauth shown for an unbound key"
# The digest is the one tpm2-tools computes for the same PCR (a trial session).
hw_keygen ec:P-256 ec9.tss --pcr sha256:9
print_public ec9.tss
timeout 60 tpm2_startauthsession -S trial.ctx || hw_fail "tpm2_startauthsession (trial)"
timeout 60 tpm2_policypcr -Q -S trial.ctx -l sha256:9 -L pcr9.policy || hw_fail "tpm2_policypcr"
timeout 30 tpm2_flushcontext trial.ctx || hw_fail "tpm2_flushcontext trial.ctx"
grep -q "^authorization policy: $(od -An -tx1 -v pcr9.policy | tr -d ' \n')\$" ec9.tss.print ||
    hw_fail "authPolicy differs from tpm2_policypcr's: $(grep policy ec9.tss.print)"

ossl pkey -in ec07.tss -text -noout | grep -q 'Private key: held by TPM 2.0 .*use bound by a policy' ||
    hw_fail "openssl pkey -text does not say the key is bound by a policy"

# Everything works while the PCRs are as they were.
sign_ok ec07.tss
sign_ok ec02.tss
sign_ok ec34.tss
sign_ok free.tss
sign_ok rsa7.tss -passin file:pw.txt
# RSA-PSS with the application's salt length: padded in software, the TPM's raw RSA op.
ossl pkeyutl -sign -inkey rsa7.tss -passin file:pw.txt -rawin -digest sha256 -in msg \
    -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:20 -out pss.sig || hw_fail "PSS with rsa7.tss"
sw pkeyutl -verify -pubin -inkey rsa7.tss.pub -rawin -digest sha256 -in msg -sigfile pss.sig \
    -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:20 >/dev/null || hw_fail "rsa7.tss: PSS does not verify"
sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.pem
sw pkey -in peer.pem -pubout -out peer.pub
ossl pkeyutl -derive -inkey ec07.tss -peerkey peer.pub -out z.hw || hw_fail "ECDH with ec07.tss"
sw pkeyutl -derive -inkey peer.pem -peerkey ec07.tss.pub -out z.sw
cmp -s z.hw z.sw || hw_fail "ECDH with a PCR-bound key differs from the software result"
head -c 32 /dev/urandom >plain
sw pkeyutl -encrypt -pubin -inkey rsa7.tss.pub -pkeyopt rsa_padding_mode:oaep -in plain -out rsa.enc
ossl pkeyutl -decrypt -inkey rsa7.tss -passin file:pw.txt -pkeyopt rsa_padding_mode:oaep \
    -in rsa.enc -out rsa.dec || hw_fail "OAEP decryption with rsa7.tss"
cmp -s plain rsa.dec || hw_fail "rsa7.tss decrypted something else"
# PolicyAuthValue: the PCRs alone are not enough.
hw_expect_fail 'AUTH_FAIL|authorization failed' "rsa7.tss with the wrong auth value" \
    ossl pkeyutl -sign -inkey rsa7.tss -passin file:badpw.txt -rawin -digest sha256 -in msg -out bad.sig

# Data keys, with and without an auth value.
hw_hwkey datakey --out dk8.pem --pcr sha256:8 || hw_fail "hwkey datakey --pcr"
hw_hwkey datakey --out dk8a.pem --pcr sha256:8 --auth-file pw.txt || hw_fail "datakey --pcr --auth-file"
[[ $(steps dk8.pem) == "017F " ]] || hw_fail "dk8.pem policy steps: '$(steps dk8.pem)'"
head -c 100000 /dev/urandom >data
for dk in dk8 dk8a; do
    auth=()
    [[ $dk == dk8a ]] && auth=(--auth-file pw.txt)
    hw_hwkey encrypt --key $dk.pem "${auth[@]}" -in data -out $dk.ct || hw_fail "encrypt with $dk"
    hw_hwkey decrypt --key $dk.pem "${auth[@]}" -in $dk.ct -out $dk.back 2>$dk.err ||
        hw_fail "decrypt with the PCR-bound $dk: $(cat $dk.err)"
    cmp -s data $dk.back || hw_fail "$dk: decrypted something else"
done
hw_expect_fail 'AUTH_FAIL|authorization failed' "dk8a with the wrong auth value" \
    hw_hwkey decrypt --key dk8a.pem --auth-file badpw.txt -in dk8a.ct -out bad.out
# docs/pcr-policy.md's re-seal around an update, as written there: to a bridge key
# before, to a key bound to the new value after.
hw_hwkey datakey --out dk9.pem --pcr sha256:9 || hw_fail "datakey --pcr sha256:9"
hw_hwkey encrypt --key dk9.pem -in data -out reseal.enc || hw_fail "encrypt with dk9"
hw_hwkey datakey --out bridge.key --pcr sha256:7 || hw_fail "bridge data key"
hw_hwkey decrypt --key dk9.pem -in reseal.enc | hw_hwkey encrypt --key bridge.key -out reseal.enc.new &&
    mv reseal.enc.new reseal.enc || hw_fail "re-seal to the bridge key"
extend 9
hw_hwkey datakey --out dk9.pem --pcr sha256:9 --force || hw_fail "datakey after the update"
hw_hwkey decrypt --key bridge.key -in reseal.enc | hw_hwkey encrypt --key dk9.pem -out reseal.enc.new &&
    mv reseal.enc.new reseal.enc || hw_fail "re-seal to the new PCR 9 value"
hw_hwkey decrypt --key dk9.pem -in reseal.enc -out reseal.back || hw_fail "decrypt after re-sealing"
cmp -s data reseal.back || hw_fail "re-sealed data differs"
# The unseal through the policy session is still salted and response-encrypting:
# the data key and the auth value never cross the bus in the clear (pcap: TCTI).
if [[ -n $(find /usr/lib /lib -name 'libtss2-tcti-pcap.so*' 2>/dev/null | head -1) ]]; then
    key_hex=$(HWKEY_TPM2_TCTI=$HW_TCTI "$top_builddir/test/integration/datakey_driver" dk8.pem) ||
        hw_fail "datakey_driver dk8.pem"
    [[ $key_hex =~ ^[0-9a-f]{64}$ ]] || hw_fail "datakey_driver printed no key: $key_hex"
    for dk in dk8 dk8a; do
        auth=()
        [[ $dk == dk8a ]] && auth=(--auth-file pw.txt)
        TCTI_PCAP_FILE=$HW_DIR/$dk.pcap HW_CLI_TCTI="pcap:$HW_TCTI" \
            hw_hwkey decrypt --key $dk.pem "${auth[@]}" -in $dk.ct -out $dk.pcapback ||
            hw_fail "decrypt with $dk through pcap"
        dump=$(od -An -tx1 -v $dk.pcap | tr -d ' \n')
        [[ $dump == *0000015e* && $dump == *0000017f* ]] ||
            hw_fail "$dk.pcap: no Unseal (0x15e) and PolicyPCR (0x17f) recorded"
        if [[ $dk == dk8 ]]; then # datakey_driver unwraps only keys without an auth value
            [[ $dump != *"${key_hex:0:32}"* && $dump != *"${key_hex:32}"* ]] ||
                hw_fail "$dk: the data key crossed the bus in the clear"
        else
            ! grep -q -a -F -- "$(head -1 pw.txt)" $dk.pcap || hw_fail "$dk: the auth value crossed the bus"
        fi
    done
    hw_log "PCR-bound unseal: neither the data key nor the auth value on the bus"
fi
no_leftovers "before the extend"
hw_log "bound keys sign, derive, decrypt and unseal; the auth value is still required"

# --- a bound PCR changes ---------------------------------------------------------
extend 7
hw_expect_fail "$CHANGED.*PCR 7 changed" "ec07.tss after PCR 7 changed" \
    ossl pkeyutl -sign -inkey ec07.tss -rawin -digest sha256 -in msg -out bad.sig
! grep -q 'PCR 0' "$HW_LAST_ERR" || hw_fail "PCR 0 is named although it did not change"
hw_expect_fail "$CHANGED.*PCR 7 changed" "ECDH with ec07.tss after PCR 7 changed" \
    ossl pkeyutl -derive -inkey ec07.tss -peerkey peer.pub -out bad.z
hw_expect_fail "$CHANGED.*PCR 7 changed" "rsa7.tss decrypt after PCR 7 changed" \
    ossl pkeyutl -decrypt -inkey rsa7.tss -passin file:pw.txt -pkeyopt rsa_padding_mode:oaep \
    -in rsa.enc -out bad.dec
hw_expect_fail "$CHANGED.*PCR 7 changed" "rsa7.tss sign after PCR 7 changed" \
    ossl pkeyutl -sign -inkey rsa7.tss -passin file:pw.txt -rawin -digest sha256 -in msg -out bad.sig
sign_ok ec02.tss
sign_ok free.tss
extend 3
extend 4
hw_expect_fail "$CHANGED.*PCR 3,4 changed" "ec34.tss after PCRs 3 and 4 changed" \
    ossl pkeyutl -sign -inkey ec34.tss -rawin -digest sha256 -in msg -out bad.sig

extend 8
for dk in dk8 dk8a; do
    auth=()
    [[ $dk == dk8a ]] && auth=(--auth-file pw.txt)
    rc=0
    hw_hwkey decrypt --key $dk.pem "${auth[@]}" -in $dk.ct -out $dk.after 2>$dk.err || rc=$?
    hw_no_crash "$rc" $dk.err "decrypt with $dk after PCR 8 changed"
    ((rc == 1)) || hw_fail "decrypt with $dk after PCR 8 changed: exit $rc, expected 1"
    assert_one_error_line $dk.err "^hwkey: decrypt .*: policy check failed: PCR 8 changed"
    [[ ! -s $dk.after ]] || hw_fail "$dk: plaintext written although the policy failed"
done
no_leftovers "after the policy failures"
hw_log "after tpm2_pcrextend: 'policy check failed: PCR n changed' for keys and data keys"

# --- through a resource manager (keys stay loaded; the policy runs per use) ------
if command -v tpm2-abrmd >/dev/null && command -v dbus-daemon >/dev/null; then
    hw_tabrmd
    hw_write_cnf "$HW_DIR/openssl-rm.cnf" "$HW_TABRMD_TCTI"
    hw_keygen ec:P-256 ec5.tss --pcr sha256:5
    OPENSSL_CONF=$HW_DIR/openssl-rm.cnf sign_ok ec5.tss
    OPENSSL_CONF=$HW_DIR/openssl-rm.cnf sign_ok ec02.tss
    extend 5
    OPENSSL_CONF=$HW_DIR/openssl-rm.cnf hw_expect_fail "$CHANGED.*PCR 5 changed" \
        "ec5.tss through tpm2-abrmd after PCR 5 changed" \
        ossl pkeyutl -sign -inkey ec5.tss -rawin -digest sha256 -in msg -out bad.sig
    hw_log "through tpm2-abrmd: the same"
else
    hw_log "tpm2-abrmd not installed: resource-manager part skipped"
fi
hw_log "PASS"
