#!/usr/bin/env bash
# hwkey import --wipe-source, into the TPM (swtpm) or, with
# HWKEY_WIPE_BACKEND=pkcs11 (test_import_wipe_pkcs11.sh), onto a SoftHSM token:
#  - with --yes: the import works (the imported key signs, the signature
#    verifies with the software public key), the software key file is gone,
#    its blocks were overwritten (read through a descriptor held open), and
#    stderr says plainly that copies elsewhere are not covered;
#  - on a terminal (script(1) gives one): "yes" wipes, another answer imports
#    nothing and leaves the file; without a terminal and without --yes: usage
#    error, nothing imported;
#  - a failed import leaves the source intact;
#  - symbolic link, second hard link, FIFO, --out naming the key itself:
#    refused before anything is imported, the file intact; --yes alone is a
#    usage error.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing script cmp mkfifo
BACKEND=${HWKEY_WIPE_BACKEND:-tpm2}
if [[ $BACKEND == pkcs11 ]]; then
    HW_TEST=${HW_TEST}_pkcs11
    hw_p11_setup
    CLI_ENV=(HWKEY_PKCS11_MODULE="$HW_P11_MODULE" HWKEY_PKCS11_PIN_SOURCE="file:$HW_P11_PIN_FILE")
    # dest NAME: where NAME's import goes; keyref NAME: what openssl signs with
    dest() { echo --uri "pkcs11:token=$HW_P11_TOKEN;object=$1" --out "$1.ref"; }
    keyref() { echo "$1.ref"; }
else
    hw_setup
    CLI_ENV=(HWKEY_TPM2_TCTI="$HW_TCTI")
    dest() { echo --out "$1.tss"; }
    keyref() { echo "$1.tss"; }
fi
echo "message $RANDOM" >msg

cli() { env "${CLI_ENV[@]}" timeout -k 5 "$HW_TIMEOUT" "$HWKEY_BIN" "$@"; }
# on_tty ANSWER ARGS...: the CLI on a pseudo-terminal, ANSWER typed at it
on_tty() {
    local answer=$1 cmd
    shift
    printf -v cmd '%q ' env "${CLI_ENV[@]}" "$HWKEY_BIN" "$@"
    printf '%s\n' "$answer" | timeout -k 5 "$HW_TIMEOUT" script -qec "$cmd" /dev/null
}
newkey() {
    sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.pem"
    cp "$1.pem" "$1.backup"
    sw pkey -in "$1.pem" -pubout -out "$1.pub"
}
intact() { cmp -s "$1.pem" "$1.backup" || hw_fail "$2: $1.pem changed or vanished"; }
signs() {
    ossl pkeyutl -sign -inkey "$(keyref "$1")" -rawin -digest sha256 -in msg -out "$1.sig" ||
        hw_fail "signing with the imported $1"
    sw pkeyutl -verify -pubin -inkey "$1.pub" -rawin -digest sha256 -in msg -sigfile "$1.sig" \
        >/dev/null || hw_fail "$1: the imported key's signature does not verify"
}
# refused RC REGEX NAME ARGS...: exit RC, one line matching REGEX, NAME intact, nothing imported
refused() {
    local want=$1 regex=$2 name=$3 rc=0
    shift 3
    cli "$@" </dev/null >/dev/null 2>refused.err || rc=$?
    hw_no_crash "$rc" refused.err "hwkey $*"
    ((rc == want)) || hw_fail "hwkey $*: exit $rc, expected $want: $(cat refused.err)"
    assert_one_error_line refused.err "$regex"
    intact "$name" "hwkey $*"
    [[ ! -e $name.tss && ! -e $name.ref ]] || hw_fail "hwkey $*: wrote an output file"
}

# --- --yes: imported, then overwritten and removed --------------------------------
newkey k1
exec 3<k1.pem # the blocks stay reachable through this descriptor after the unlink
# shellcheck disable=SC2046
cli import k1.pem $(dest k1) --wipe-source --yes </dev/null >/dev/null 2>k1.err ||
    hw_fail "import --wipe-source --yes: $(cat k1.err)"
[[ ! -e k1.pem ]] || hw_fail "k1.pem still exists after --wipe-source"
grep -q 'k1.pem overwritten and removed; copies elsewhere (backups, snapshots, other disks' k1.err ||
    hw_fail "no plain statement that copies are not covered: $(cat k1.err)"
cat <&3 >k1.after
exec 3<&-
[[ $(stat -c %s k1.after) == $(stat -c %s k1.backup) ]] || hw_fail "the wiped file changed size"
! grep -q 'PRIVATE KEY' k1.after || hw_fail "the key's blocks were unlinked, not overwritten"
! cmp -s k1.after k1.backup || hw_fail "the key file was not overwritten"
signs k1
hw_log "$BACKEND: --wipe-source --yes: imported, overwritten, removed"

# --- on a terminal: asked --------------------------------------------------------
newkey k2
# shellcheck disable=SC2046
on_tty no import k2.pem $(dest k2) --wipe-source >k2.tty 2>&1 && hw_fail "answer 'no' succeeded"
grep -q 'Type yes to continue' k2.tty || hw_fail "no question on the terminal: $(cat k2.tty)"
grep -q 'not confirmed' k2.tty || hw_fail "answer 'no': no clear refusal: $(cat k2.tty)"
intact k2 "answer 'no'"
[[ ! -e k2.tss && ! -e k2.ref ]] || hw_fail "answer 'no' imported the key anyway"
# shellcheck disable=SC2046
on_tty yes import k2.pem $(dest k2) --wipe-source >k2.tty 2>&1 || hw_fail "answer 'yes': $(cat k2.tty)"
[[ ! -e k2.pem ]] || hw_fail "answer 'yes': k2.pem still exists"
signs k2
hw_log "$BACKEND: on a terminal, 'no' keeps the file and imports nothing, 'yes' wipes"

# --- refusals: the source stays --------------------------------------------------
newkey k3
# shellcheck disable=SC2046
refused 2 'stdin is not one: add --yes' k3 import k3.pem $(dest k3) --wipe-source
# shellcheck disable=SC2046
refused 2 'yes only answers --wipe-source' k3 import k3.pem $(dest k3) --yes
ln -s k3.pem link.pem
# shellcheck disable=SC2046
refused 1 'link.pem is a symbolic link' k3 import link.pem $(dest k3) --wipe-source --yes
ln k3.pem hard.pem
# shellcheck disable=SC2046
refused 1 'has 2 hard links' k3 import k3.pem $(dest k3) --wipe-source --yes
rm hard.pem
refused 2 'is the software key itself' k3 import k3.pem --out k3.pem --force --wipe-source --yes
mkfifo fifo.pem
# shellcheck disable=SC2046
refused 1 'fifo.pem is not a regular file' k3 import fifo.pem $(dest k3) --wipe-source --yes
# A failed import: the device refuses (TPM: unreachable; token: the label is taken).
if [[ $BACKEND == pkcs11 ]]; then
    # shellcheck disable=SC2046
    refused 1 'already' k3 import k3.pem --uri "pkcs11:token=$HW_P11_TOKEN;object=k1" \
        --wipe-source --yes
else
    CLI_ENV=(HWKEY_TPM2_TCTI="swtpm:host=127.0.0.1,port=$(hw_free_port 2)")
    refused 1 'unreachable' k3 import k3.pem --out k3.tss --wipe-source --yes
    CLI_ENV=(HWKEY_TPM2_TCTI="$HW_TCTI")
fi
sw genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out k4.pem 2>/dev/null
cp k4.pem k4.backup
# shellcheck disable=SC2046
refused 1 'RSA-1024|RSA keys of 1024 bits' k4 import k4.pem $(dest k4) --wipe-source --yes
hw_log "$BACKEND: refusals and failed imports leave the source intact"
hw_log "PASS"
