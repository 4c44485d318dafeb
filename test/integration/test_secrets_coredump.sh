#!/usr/bin/env bash
# No copy of a secret in ordinary memory (docs/threat-model.md, "Secret
# policy"): a process is stopped at a known point, dumped with gcore, and the
# dump searched for the secret's bytes.  gcore leaves out MADV_DONTDUMP
# mappings (gdb reads the "dd" flag in /proc/PID/smaps) and cannot read
# memfd_secret pages at all, so hwkey's protected copy is not in the dump:
# every copy found is one in ordinary memory, and the test wants none.
#  1. hwkey encrypt, stopped right after the TPM unsealed the data key (test
#     point datakey-unwrapped): the 32 key bytes (learned by unsealing the
#     same file with datakey_driver) appear 0 times.
#     Again with a data key that has an auth value (--auth-file): the auth
#     value appears 0 times.
#  2. A program that loaded a TPM key with a 32-character auth value and
#     signed with it 3 times, stopped after the last signature: the auth
#     value appears 0 times.  Without a resource manager (load/flush per
#     signature) and through tpm2-abrmd (the key stays loaded), each in the
#     process that loaded the key and in a child forked after the load that
#     signs (an nginx worker).
# Controls, so that a zero means something: each dump holds a non-secret
# byte string the process is known to hold at that point (the data key
# file's sealed blob; the signing key's public point).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing gcore gdb od base64 tpm2_getrandom
grep -qw aes /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo ||
    { echo "SKIP: $HW_TEST: this CPU lacks AES-NI/PCLMULQDQ" >&2; exit 77; }
DK_DRIVER=$top_builddir/test/integration/datakey_driver
DRIVER=$top_builddir/test/integration/secrets_driver
[[ -x $DK_DRIVER && -x $DRIVER ]] || hw_fail "test drivers not built (make check builds them)"
hw_setup

hex_of() { od -An -tx1 -v | tr -d ' \n'; }
# The DER inside a PEM file, as hex.
pem_der_hex() { sed '/^-----/d' "$1" | base64 -d | hex_of; }

# wait_stopped FILE PID WHAT: PID wrote its line to FILE (it is about to stop).
wait_stopped() {
    local i
    for ((i = 0; i < 6000; i++)); do
        grep -q "^$2\\b" "$1" 2>/dev/null && break
        kill -0 "$2" 2>/dev/null || hw_fail "$3: exited before its stop point"
        sleep 0.02
    done
    grep -q "^$2\\b" "$1" 2>/dev/null || hw_fail "$3: never reached its stop point"
    # The line is written just before SIGSTOP: wait for the state to say so.
    for ((i = 0; i < 6000; i++)); do
        [[ $(awk '{print $3}' "/proc/$2/stat" 2>/dev/null) == T ]] && return 0
        sleep 0.02
    done
    hw_fail "$3: did not stop"
}

# dump PID NAME: core of PID in NAME (gcore leaves PID stopped).
dump() {
    # What protected memory the process has, for the log: memfd_secret
    # mappings (unreadable to gdb) and MADV_DONTDUMP ones (left out).
    hw_log "$2: $(grep -c secretmem "/proc/$1/maps" || true) memfd_secret and" \
        "$(grep -c '^VmFlags:.* dd' "/proc/$1/smaps" || true) MADV_DONTDUMP mappings"
    timeout -k 5 "$HW_TIMEOUT" gcore -o "$2" "$1" >"$2.log" 2>&1 || hw_fail "gcore $1: $(tail -3 "$2.log")"
    mv "$2.$1" "$2"
    [[ $(stat -c %s "$2") -gt 100000 ]] || hw_fail "gcore wrote an implausibly small dump"
}

count() { "$DRIVER" count "$1" "$2" 2>>count.log; }

# ---- 1. data key after the unseal -----------------------------------------
hw_hwkey datakey --out dk.pem 2>dk.err || hw_fail "hwkey datakey: $(cat dk.err)"
dk=$(HWKEY_TPM2_TCTI=$HW_TCTI "$DK_DRIVER" dk.pem) || hw_fail "datakey_driver could not unseal dk.pem"
[[ $dk =~ ^[0-9a-f]{64}$ ]] || hw_fail "datakey_driver printed no 32-byte key"
head -c 100000 /dev/urandom >plain
: >stop.txt
HWKEY_TEST_STOP_AT=datakey-unwrapped HWKEY_TEST_STOP_FILE=$HW_DIR/stop.txt \
    hw_hwkey encrypt --key dk.pem -in plain -out plain.enc 2>enc.err &
job=$!
# hw_hwkey runs hwkey under timeout: the line names hwkey's own pid.
for ((i = 0; i < 6000; i++)); do [[ -s stop.txt ]] && break; sleep 0.02; done
pid=$(awk '{print $1; exit}' stop.txt)
[[ -n $pid ]] || hw_fail "hwkey encrypt never reached datakey-unwrapped: $(cat enc.err)"
wait_stopped stop.txt "$pid" "hwkey encrypt"
dump "$pid" core.encrypt
kill -CONT "$pid"
rc=0
wait "$job" || rc=$?
((rc == 0)) || hw_fail "hwkey encrypt after the dump: exit $rc: $(cat enc.err)"
hw_hwkey decrypt --key dk.pem -in plain.enc -out plain.dec 2>dec.err || hw_fail "decrypt: $(cat dec.err)"
cmp -s plain plain.dec || hw_fail "the dumped encryption does not decrypt to its input"

# Control: the sealed blob (part of the key file, in the CLI's heap) is found.
blob=$(pem_der_hex dk.pem | tail -c 128)
n=$(count core.encrypt "hex:$blob")
((n >= 1)) || hw_fail "control: the data key file's bytes are not in the dump of hwkey encrypt"
n=$(count core.encrypt "hex:$dk")
hw_log "hwkey encrypt at datakey-unwrapped: data key found $n times outside protected memory"
((n == 0)) || hw_fail "the unsealed data key is in ordinary memory of hwkey encrypt ($n copies)"

# ---- 1b. a data key with an auth value, given by --auth-file ----------------
# The CLI reads the file with read(2) into protected memory: stdio would
# leave a copy in its own buffer, freed without a wipe.
dpw=$(head -c 600 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 32)
((${#dpw} == 32)) || hw_fail "could not make a random auth value"
printf '%s\n' "$dpw" >dpw.txt
hw_hwkey datakey --auth-file dpw.txt --out dk2.pem 2>dk2.err || hw_fail "hwkey datakey --auth-file: $(cat dk2.err)"
: >stop2.txt
HWKEY_TEST_STOP_AT=datakey-unwrapped HWKEY_TEST_STOP_FILE=$HW_DIR/stop2.txt \
    hw_hwkey encrypt --key dk2.pem --auth-file dpw.txt -in plain -out plain2.enc 2>enc2.err &
job=$!
for ((i = 0; i < 6000; i++)); do [[ -s stop2.txt ]] && break; sleep 0.02; done
pid=$(awk '{print $1; exit}' stop2.txt)
[[ -n $pid ]] || hw_fail "hwkey encrypt --auth-file never reached datakey-unwrapped: $(cat enc2.err)"
wait_stopped stop2.txt "$pid" "hwkey encrypt --auth-file"
dump "$pid" core.encrypt2
kill -CONT "$pid"
rc=0
wait "$job" || rc=$?
((rc == 0)) || hw_fail "hwkey encrypt --auth-file after the dump: exit $rc: $(cat enc2.err)"
n=$(count core.encrypt2 "hex:$(pem_der_hex dk2.pem | tail -c 128)")
((n >= 1)) || hw_fail "control: the data key file's bytes are not in the dump of hwkey encrypt --auth-file"
n=$(count core.encrypt2 "file:dpw.txt")
hw_log "hwkey encrypt --auth-file at datakey-unwrapped: auth value found $n times outside protected memory"
((n == 0)) || hw_fail "the data key's auth value is in ordinary memory of hwkey encrypt ($n copies)"
rm -f core.encrypt core.encrypt2

# ---- 2. a key's auth value after signatures --------------------------------
pw=$(head -c 600 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 32)
((${#pw} == 32)) || hw_fail "could not make a random auth value"
printf '%s\n' "$pw" >pw.txt
hw_keygen ec:P-256 key.pem --auth-file pw.txt
hw_hwkey pubkey key.pem >key.pub 2>pub.err || hw_fail "hwkey pubkey: $(cat pub.err)"
point=$(openssl pkey -pubin -in key.pub -outform DER | hex_of | tail -c 130)

# sign_and_dump NAME [fork]: the driver signs 3 times under OPENSSL_CONF and
# stops; with fork, a child forked after the key was loaded does (nginx).
sign_and_dump() {
    local name=$1 mode=${2:-sign} job pid rc=0 n
    : >"stop.$name"
    HWKEY_LOG=2 "$DRIVER" "$mode" key.pem pw.txt 3 "$HW_DIR/stop.$name" 2>"sign.$name.err" &
    job=$!
    for ((i = 0; i < 6000; i++)); do [[ -s stop.$name ]] && break; sleep 0.02; done
    pid=$(awk '{print $1; exit}' "stop.$name")
    [[ -n $pid ]] || hw_fail "signer ($name) never stopped: $(tail -5 "sign.$name.err")"
    wait_stopped "stop.$name" "$pid" "signer ($name)"
    dump "$pid" "core.$name"
    kill -CONT "$pid"
    wait "$job" || rc=$?
    ((rc == 0)) || hw_fail "signer ($name): exit $rc: $(tail -5 "sign.$name.err")"
    # The scrub of ESYS's session copy is local: it must never reach the TPM.
    ! grep -q "scrub command was sent" "sign.$name.err" ||
        hw_fail "signer ($name): the session scrub sent a command to the TPM"
    n=$(count "core.$name" "hex:$point")
    ((n >= 1)) || hw_fail "control ($name): the key's public point is not in the dump"
    n=$(count "core.$name" "file:pw.txt")
    hw_log "signer ($name) after 3 signatures: auth value found $n times outside protected memory"
    ((n == 0)) || hw_fail "the key's auth value is in ordinary memory of the signer ($name, $n copies)"
    rm -f "core.$name"
}

sign_and_dump direct
sign_and_dump direct-forked fork
if command -v tpm2-abrmd >/dev/null && command -v dbus-daemon >/dev/null; then
    hw_tabrmd
    hw_write_cnf "$HW_DIR/openssl-rm.cnf" "$HW_TABRMD_TCTI"
    OPENSSL_CONF=$HW_DIR/openssl-rm.cnf sign_and_dump rm
    OPENSSL_CONF=$HW_DIR/openssl-rm.cnf sign_and_dump rm-forked fork
else
    hw_log "tpm2-abrmd not installed: the resource-manager case is not run"
fi

echo "PASS: $HW_TEST"
