#!/usr/bin/env bash
# Many processes, one key, one TPM with about 3 transient object slots.
# 1. Plain swtpm socket (no resource manager): 8 processes sign at once with
#    the same key file, several times each; all succeed, all signatures verify,
#    and no transient object is left in the TPM afterwards.
# 2. The same through tpm2-abrmd.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_setup

NPROC=8
ROUNDS=4
head -c 4096 /dev/urandom >msg

hw_keygen ec:P-256 key-ec.pem
hw_keygen rsa:2048 key-rsa.pem
for k in key-ec.pem key-rsa.pem; do
    ossl pkey -in "$k" -pubout -out "$k.pub" || hw_fail "pkey -pubout $k"
done

slots=$(tpm2_getcap properties-variable | sed -n 's/^TPM2_PT_HR_TRANSIENT_AVAIL: *//p')
hw_log "TPM transient slots available: ${slots:-?}"

# signer N KEY: ROUNDS signatures in one process each time.
signer() {
    local n=$1 key=$2 r
    for ((r = 0; r < ROUNDS; r++)); do
        ossl pkeyutl -sign -inkey "$key" -rawin -digest sha256 -in msg -out "sig.$key.$n.$r" ||
            { echo "signer $n round $r failed" >&2; return 1; }
    done
}

run_storm() {
    local label=$1 key n pids=() failed=0 r
    for key in key-ec.pem key-rsa.pem; do
        rm -f sig.*
        pids=()
        for ((n = 0; n < NPROC; n++)); do
            signer "$n" "$key" 2>"signer.$n.err" &
            pids+=($!)
        done
        failed=0
        for ((n = 0; n < NPROC; n++)); do
            if ! wait "${pids[n]}"; then
                failed=$((failed + 1))
                hw_log "$label $key: process $n failed: $(tail -3 "signer.$n.err")"
            fi
        done
        ((failed == 0)) || hw_fail "$label $key: $failed of $NPROC concurrent signers failed"
        for ((n = 0; n < NPROC; n++)); do
            for ((r = 0; r < ROUNDS; r++)); do
                sw pkeyutl -verify -pubin -inkey "$key.pub" -rawin -digest sha256 -in msg \
                    -sigfile "sig.$key.$n.$r" >/dev/null ||
                    hw_fail "$label $key: signature $n.$r does not verify"
            done
        done
        left=$(hw_transient_handles | tr '\n' ' ')
        [[ -z $left ]] || hw_fail "$label $key: transient objects left in the TPM: $left"
        hw_log "$label $key: $((NPROC * ROUNDS)) signatures from $NPROC processes at once: ok"
    done
}

run_storm "swtpm, no resource manager"

hw_tabrmd
hw_write_cnf "$HW_DIR/openssl-tabrmd.cnf" "$HW_TABRMD_TCTI"
export OPENSSL_CONF=$HW_DIR/openssl-tabrmd.cnf
run_storm "through tpm2-abrmd"

echo "PASS: $HW_TEST"
