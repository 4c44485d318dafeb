#!/usr/bin/env bash
# Forking servers and TPM keys (issue 6, items 3 and 4), swtpm direct and
# through tpm2-abrmd:
# 1. nginx's shape: a key loaded in the parent through the provider, 4
#    children forked that sign 50 times each (the parent makes no TPM
#    connection for a key file: the TPM load is deferred to first use); the
#    same after the parent itself signed (connected) before forking; and a
#    handle: key, which the parent must read from the TPM (connection closed
#    before key_load returns).  A key file of another TPM loads (its public key
#    is in the file) and fails at the first signature, naming the reason.
# 2. Fork while signing: 4 threads sign while the main thread forks 40
#    times; every child signs once and exits 0 (a hang ends by the child's
#    alarm and fails).
# No transient object is left in the TPM afterwards.
# Through tpm2-abrmd a parent that itself used the key before forking cannot
# hand the TPM to its children (GLib's D-Bus does not survive fork): there the
# children must fail at once with the error that says so, not hang.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_setup

DRIVER=$top_builddir/test/integration/tpm2_fork_driver
[[ -x $DRIVER ]] || hw_fail "$DRIVER not built (make check builds it)"
drv() { timeout -k 5 "$HW_TIMEOUT" "$DRIVER" "$@"; }

hw_keygen ec:P-256 key-ec.pem
hw_hwkey keygen ec:P-256 --out key-persist.ref --persist 0x81000010 2>keygen.err ||
    hw_fail "keygen --persist: $(cat keygen.err)"

run_all() {
    local label=$1 parent_may_sign=$2 out t0 t1
    for key in key-ec.pem handle:0x81000010; do
        out=$(drv workers "$key" 4 50 2>err.txt) || hw_fail "$label $key: workers: $out $(tail -5 err.txt)"
        hw_log "$label $key: $out"
        if ((parent_may_sign)); then
            out=$(drv workers "$key" 4 50 parent-signs 2>err.txt) ||
                hw_fail "$label $key: workers after the parent signed: $out $(tail -5 err.txt)"
            hw_log "$label $key: $out"
        else
            t0=$(date +%s%N)
            drv workers "$key" 4 50 parent-signs >/dev/null 2>err.txt &&
                hw_fail "$label $key: children of a parent that used tabrmd: unexpectedly worked"
            t1=$(date +%s%N)
            grep -q "GLib's D-Bus connection does not survive fork" err.txt ||
                hw_fail "$label $key: parent signed first: no clear error: $(tail -3 err.txt)"
            (((t1 - t0) / 1000000 < 5000)) || hw_fail "$label $key: the refusal took $(((t1 - t0) / 1000000)) ms"
            hw_log "$label $key: parent signed first: children refused at once ($(((t1 - t0) / 1000000)) ms, clear error)"
        fi
    done
    if ((parent_may_sign)); then
        out=$(drv threads key-ec.pem 4 40 2>err.txt) || hw_fail "$label: fork while signing: $out $(tail -5 err.txt)"
        hw_log "$label: $out"
    fi
    left=$(hw_transient_handles | tr '\n' ' ')
    [[ -z $left ]] || hw_fail "$label: transient objects left in the TPM: $left"
}

run_all "swtpm direct" 1

# A key file of another TPM: loading it needs no TPM (and succeeds); the first
# signature says what is wrong.
out=$("$top_srcdir/scripts/swtpm-start.sh" "$HW_DIR/swtpm2") || hw_fail "cannot start a second swtpm"
read -r port2 pid2 <<<"$out"
hw_register_pid "$pid2"
HW_CLI_TCTI="swtpm:host=127.0.0.1,port=$port2" hw_keygen ec:P-256 other.pem
ossl pkey -in other.pem -pubout -out other.pub 2>other.err || hw_fail "pkey -pubout of another TPM's key: $(cat other.err)"
hw_expect_fail "does not belong to this TPM or parent" "signing with another TPM's key" \
    ossl pkeyutl -sign -inkey other.pem -rawin -digest sha256 -in other.pub -out other.sig
hw_log "another TPM's key: loads (public key from the file), first signature: $(grep -o 'key file does not belong[^:]*' "$HW_LAST_ERR" | head -1)"

hw_tabrmd
hw_write_cnf "$HW_DIR/openssl-tabrmd.cnf" "$HW_TABRMD_TCTI"
export OPENSSL_CONF=$HW_DIR/openssl-tabrmd.cnf
run_all "tpm2-abrmd" 0

echo "PASS: $HW_TEST"
