#!/usr/bin/env bash
# The hwkey CLI against a real swtpm (ARCHITECTURE.md §6): keygen for every
# algorithm, pubkey agrees with openssl(1) through the provider, persist /
# list / delete round trip, --force, --tcti over HWKEY_TPM2_TCTI, and bad
# inputs: each fails with exactly one stderr line, exit 1 (operation) or 2
# (usage), no crash and no output or temporary file left behind.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_setup

KEYS=(ec:P-256 ec:P-384 rsa:2048 rsa:3072)
keyfile() { echo "key-${1/:/-}.pem"; }

# run_cli EXPECTED_RC STDOUT STDERR ARGS...: runs hwkey, checks the exit code.
run_cli() {
    local want=$1 out=$2 err=$3 rc=0
    shift 3
    hw_hwkey "$@" >"$out" 2>"$err" || rc=$?
    hw_no_crash "$rc" "$err" "hwkey $*"
    ((rc == want)) || hw_fail "hwkey $*: exit $rc, expected $want: $(head -c 600 "$err")"
}

# fails_cleanly RC REGEX ARGS...: exit RC, one stderr line matching REGEX, no stdout.
fails_cleanly() {
    local want=$1 regex=$2
    shift 2
    run_cli "$want" fail.out fail.err "$@"
    assert_one_error_line fail.err "^hwkey: .*$regex"
    [[ ! -s fail.out ]] || hw_fail "hwkey $*: wrote to stdout on failure: $(head -c 200 fail.out)"
}

no_temp_files() {
    local left
    left=$(find . -maxdepth 1 -name '.hwkey-tmp-*' | head -3)
    [[ -z $left ]] || hw_fail "temporary files left behind: $left"
}

pub_der() { sw pkey -pubin -in "$1" -outform DER -out "$2" 2>/dev/null || hw_fail "$1 is not a public key PEM"; }

# --- keygen and pubkey for every algorithm -----------------------------------
for alg in "${KEYS[@]}"; do
    k=$(keyfile "$alg")
    run_cli 0 "$k.out" "$k.err" keygen "$alg" --out "$k"
    grep -q -- "-----BEGIN TSS2 PRIVATE KEY-----" "$k" || hw_fail "keygen $alg: no TSS2 PEM in $k"
    [[ $(stat -c %a "$k") == 600 ]] || hw_fail "keygen $alg: $k has mode $(stat -c %a "$k"), expected 600"
    if [[ $alg == rsa:* ]]; then
        grep -q "generating $alg in the TPM" "$k.err" || hw_fail "keygen $alg: no progress line on stderr"
    else
        [[ ! -s $k.err ]] || hw_fail "keygen $alg: unexpected stderr: $(cat "$k.err")"
    fi
    run_cli 0 "$k.cli.pub" "$k.cli.err" pubkey "$k"
    pub_der "$k.cli.pub" "$k.cli.der"
    ossl pkey -in "$k" -pubout -out "$k.ossl.pub" 2>"$k.ossl.err" ||
        hw_fail "openssl pkey -in $k -pubout: $(cat "$k.ossl.err")"
    pub_der "$k.ossl.pub" "$k.ossl.der"
    cmp -s "$k.cli.der" "$k.ossl.der" || hw_fail "$alg: hwkey pubkey and openssl pkey -pubout differ"
    # the right key type and size
    sw pkey -pubin -in "$k.cli.pub" -text -noout >"$k.txt"
    case $alg in
        ec:P-256) grep -q "NIST CURVE: P-256" "$k.txt" ;;
        ec:P-384) grep -q "NIST CURVE: P-384" "$k.txt" ;;
        rsa:2048) grep -q "Public-Key: (2048 bit)" "$k.txt" ;;
        rsa:3072) grep -q "Public-Key: (3072 bit)" "$k.txt" ;;
    esac || hw_fail "keygen $alg made: $(head -2 "$k.txt")"
done
cmp -s key-ec-P-256.pem.cli.der key-ec-P-384.pem.cli.der && hw_fail "two keygens gave the same key"
no_temp_files

# DER form of the same key file
sed -e '1d' -e '$d' key-ec-P-256.pem | base64 -d >key-ec-P-256.der
run_cli 0 der.pub der.err pubkey key-ec-P-256.der
pub_der der.pub der.der
cmp -s der.der key-ec-P-256.pem.cli.der || hw_fail "pubkey of the DER key file differs from the PEM one"

# --- refusing to overwrite, --force -------------------------------------------
sum=$(sha256sum key-ec-P-256.pem)
fails_cleanly 1 "exists; use --force" keygen ec:P-256 --out key-ec-P-256.pem
[[ $(sha256sum key-ec-P-256.pem) == "$sum" ]] || hw_fail "keygen without --force changed an existing file"
run_cli 0 force.out force.err keygen ec:P-256 --out key-ec-P-256.pem --force
[[ $(sha256sum key-ec-P-256.pem) != "$sum" ]] || hw_fail "keygen --force did not replace the file"
no_temp_files

# --- --tcti wins over HWKEY_TPM2_TCTI -----------------------------------------
dead_port=$(hw_free_port 2)
DEAD_TCTI="swtpm:host=127.0.0.1,port=$dead_port"
HW_CLI_TCTI=$DEAD_TCTI run_cli 0 tcti.out tcti.err --tcti "$HW_TCTI" pubkey key-ec-P-384.pem
HW_CLI_TCTI=$DEAD_TCTI run_cli 0 tcti2.out tcti2.err pubkey --tcti "$HW_TCTI" key-ec-P-384.pem

# --- persist / list / delete round trip ---------------------------------------
H=0x81000123
run_cli 0 persist.out persist.err keygen ec:P-256 --persist "$H" --out persist.ref
grep -qx "handle:$H" persist.out || hw_fail "keygen --persist printed: $(cat persist.out)"
grep -q -- "-----BEGIN HWKEY KEY URI-----" persist.ref || hw_fail "keygen --persist --out wrote no reference file"
run_cli 0 list.out list.err list --tpm2
grep -qE "^handle:$H[[:space:]]+ec:P-256" list.out || hw_fail "list does not show handle:$H: $(cat list.out)"
run_cli 0 h.pub h.err pubkey "handle:$H"
run_cli 0 ref.pub ref.err pubkey persist.ref
pub_der h.pub h.der
pub_der ref.pub ref.der
cmp -s h.der ref.der || hw_fail "pubkey of handle:$H and of its reference file differ"
ossl pkey -in "handle:$H" -pubout -out h.ossl.pub 2>h.ossl.err || hw_fail "openssl pkey -in handle:$H: $(cat h.ossl.err)"
pub_der h.ossl.pub h.ossl.der
cmp -s h.der h.ossl.der || hw_fail "hwkey pubkey and openssl pkey disagree on handle:$H"
fails_cleanly 1 "" keygen ec:P-256 --persist "$H" --out persist2.ref
[[ ! -e persist2.ref ]] || hw_fail "a failed keygen --persist left persist2.ref"
run_cli 0 del.out del.err delete "handle:$H"
run_cli 0 list2.out list2.err list
grep -q "handle:$H" list2.out && hw_fail "handle:$H still listed after delete"
fails_cleanly 1 "handle:$H" pubkey "handle:$H"
fails_cleanly 1 "handle:$H" delete "handle:$H"
no_temp_files

# --- bad inputs: operation failures (exit 1) ----------------------------------
head -c 700 /dev/urandom >corrupt.pem
fails_cleanly 1 "invalid key file" pubkey corrupt.pem
head -c 300 key-rsa-2048.pem >truncated-pem.pem
fails_cleanly 1 "invalid key file" pubkey truncated-pem.pem
head -c 100 key-ec-P-256.der >truncated.der
fails_cleanly 1 "invalid key file" pubkey truncated.der
{ echo "-----BEGIN TSS2 PRIVATE KEY-----"; head -c 90 key-ec-P-256.der | base64; echo "-----END TSS2 PRIVATE KEY-----"; } >truncated-der.pem
fails_cleanly 1 "invalid key file" pubkey truncated-der.pem
: >empty.pem
fails_cleanly 1 "invalid key file" pubkey empty.pem
sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out soft.pem 2>/dev/null
fails_cleanly 1 "invalid key file: .*PRIVATE KEY" pubkey soft.pem
fails_cleanly 1 "key not found" pubkey does-not-exist.pem
# A key file carries its public key: no TPM needed to print it (nginx's master
# loads keys the same way, connecting only where it signs).  A handle: needs one.
run_cli 0 dead.pub dead.err --tcti "$DEAD_TCTI" pubkey key-ec-P-384.pem
cmp -s dead.pub key-ec-P-384.pem.cli.pub || hw_fail "pubkey without a TPM differs"
fails_cleanly 1 "device unreachable" --tcti "$DEAD_TCTI" pubkey handle:0x81000001
fails_cleanly 1 "device unreachable" --tcti "$DEAD_TCTI" keygen ec:P-256 --out unreachable.pem
fails_cleanly 1 "device unreachable" --tcti "$DEAD_TCTI" keygen rsa:3072 --out unreachable.pem
[[ ! -e unreachable.pem ]] || hw_fail "keygen with an unreachable TPM left unreachable.pem"
fails_cleanly 1 "device unreachable" --tcti "$DEAD_TCTI" list --tpm2
fails_cleanly 1 "auth file" keygen ec:P-256 --out auth.pem --auth-file does-not-exist
[[ ! -e auth.pem ]] || hw_fail "keygen with a bad --auth-file left auth.pem"
head -c 200 /dev/zero | tr '\0' x >long-auth
fails_cleanly 1 "auth file long-auth must hold 0..128 bytes" keygen ec:P-256 --out auth.pem --auth-file long-auth
[[ ! -e auth.pem ]] || hw_fail "keygen with a too long --auth-file left auth.pem"
fails_cleanly 1 "cannot create a file" keygen ec:P-256 --out /nonexistent-dir/k.pem
no_temp_files

# A key with an auth value: the TPM enforces the value keygen was given.
printf 'correct horse\n' >auth-file
run_cli 0 authk.out authk.err keygen ec:P-256 --out authkey.pem --auth-file auth-file
run_cli 0 authk.pub authk.err pubkey authkey.pem
printf 'message\n' >msg
ossl pkeyutl -sign -rawin -digest sha256 -in msg -inkey authkey.pem -passin 'pass:correct horse' \
    -out auth.sig 2>auth.err || hw_fail "signing with the right auth value: $(cat auth.err)"
sw pkeyutl -verify -rawin -digest sha256 -in msg -pubin -inkey authk.pub -sigfile auth.sig \
    >/dev/null 2>&1 || hw_fail "signature made with the auth key does not verify"
hw_expect_fail "authorization failed.*TPM_RC_(AUTH_FAIL|BAD_AUTH)" "signing with a wrong auth value" \
    ossl pkeyutl -sign -rawin -digest sha256 -in msg -inkey authkey.pem -passin pass:wrong -out bad.sig

# --- bad inputs: usage errors (exit 2) ----------------------------------------
fails_cleanly 2 "usage error: unknown algorithm" keygen ec:P-999 --out bad-alg.pem
[[ ! -e bad-alg.pem ]] || hw_fail "keygen with an unknown ALG left bad-alg.pem"
fails_cleanly 2 "usage error: unknown algorithm" keygen rsa:4097 --out bad-alg.pem
fails_cleanly 2 "usage error" keygen
fails_cleanly 2 "usage error: --out FILE is required" keygen ec:P-256
fails_cleanly 2 "usage error: --persist" keygen ec:P-256 --persist 0x1234 --out p.pem
fails_cleanly 2 "usage error" keygen ec:P-256 --out
fails_cleanly 2 "usage error" pubkey
fails_cleanly 2 "usage error" pubkey a.pem b.pem
fails_cleanly 2 "usage error" delete
fails_cleanly 2 "usage error" list --bogus
fails_cleanly 2 "usage error" info extra
fails_cleanly 2 "usage error: no command" 
fails_cleanly 2 "usage error: unknown command" frobnicate
fails_cleanly 2 "usage error" --bogus info
[[ ! -e p.pem ]] || hw_fail "a usage error left p.pem"
no_temp_files

# --- help, version, info ------------------------------------------------------
for cmd in info keygen pubkey list delete; do
    run_cli 0 help.out help.err "$cmd" --help
    grep -q "^usage: hwkey $cmd" help.out || hw_fail "hwkey $cmd --help: $(head -2 help.out)"
done
run_cli 0 help.out help.err --help
for cmd in info keygen pubkey list delete; do
    grep -qE "^  $cmd " help.out || hw_fail "hwkey --help does not list $cmd"
done
run_cli 0 version.out version.err --version
grep -qE '^hwkey [0-9]+\.[0-9]+' version.out || hw_fail "hwkey --version: $(cat version.out)"
run_cli 0 info.out info.err info
grep -q "^tpm2:" info.out || hw_fail "hwkey info does not describe the TPM: $(head -3 info.out)"

hw_log "ok"
