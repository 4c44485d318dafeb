#!/usr/bin/env bash
# One fork-and-lock model (issue 6, util/forkgate.h) for PKCS#11 keys on
# SoftHSM, in-process:
#   - fork while 4 threads sign with one token key: 40 forks, each child
#     signs once (a fresh session in a new token epoch) and exits 0; no
#     child may hang (each run is bounded by timeout), the threads keep
#     signing throughout; repeated 3 times
#   - a passphrase callback that forks (as a pinentry helper would): the
#     child exits at once, the parent gets the PIN, logs in and signs; the
#     callback runs outside every provider lock and outside the fork gate, so
#     the fork neither deadlocks nor trips the gate's "fork() inside a device
#     operation" warning
#   - the same with SoftHSM set to reset on fork (as a remote HSM would):
#     children re-initialise the module and log in with the inherited PIN
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_p11_setup
DRIVER=$top_builddir/test/integration/p11_faults
[[ -x $DRIVER ]] || hw_fail "$DRIVER not built (make check builds it)"
p11tool --keypairgen --key-type EC:prime256v1 --label fl-ec --id 73 >/dev/null 2>&1 ||
    hw_fail "pkcs11-tool --keypairgen"
p11tool --keypairgen --key-type rsa:2048 --label fl-rsa --id 74 >/dev/null 2>&1 ||
    hw_fail "pkcs11-tool --keypairgen rsa:2048"

drive() {
    HWKEY_PKCS11_MODULE=$HW_P11_MODULE HWKEY_LOG=1 timeout -k 5 120 "$DRIVER" "$@"
}

for key in fl-ec fl-rsa; do
    for run in 1 2 3; do
        start=$(date +%s%3N)
        rc=0
        HWKEY_PKCS11_PIN_SOURCE=file:$HW_P11_PIN_FILE drive forkthreads \
            "pkcs11:token=$HW_P11_TOKEN;object=$key" 4 40 >ft.out 2>ft.err || rc=$?
        ((rc != 124 && rc != 137)) || hw_fail "$key run $run: forkthreads hung (timeout): $(tail -3 ft.err)"
        ((rc == 0)) || hw_fail "$key run $run: forkthreads failed ($rc): $(cat ft.out) $(tail -3 ft.err)"
        ! grep -q 'inside a device operation' ft.err || hw_fail "$key: fork inside the gate: $(cat ft.err)"
        hw_log "$key run $run: $(cat ft.out) in $(($(date +%s%3N) - start)) ms"
    done
done

rc=0
drive pinfork "pkcs11:token=$HW_P11_TOKEN;object=fl-ec" >pf.out 2>pf.err || rc=$?
((rc != 124 && rc != 137)) || hw_fail "pinfork: deadlock (timeout): $(cat pf.err)"
((rc == 0)) || hw_fail "pinfork failed ($rc): $(cat pf.out) $(cat pf.err)"
! grep -q 'inside a device operation' pf.err || hw_fail "pinfork: the callback ran inside the gate: $(cat pf.err)"
hw_log "$(cat pf.out)"

# A module that resets on fork: children re-initialise and log in again.
sed -i 's/^library.reset_on_fork = .*/library.reset_on_fork = true/' "$SOFTHSM2_CONF"
rc=0
HWKEY_PKCS11_PIN_SOURCE=file:$HW_P11_PIN_FILE drive forkthreads \
    "pkcs11:token=$HW_P11_TOKEN;object=fl-ec" 4 40 >ft.out 2>ft.err || rc=$?
((rc == 0)) || hw_fail "reset_on_fork: forkthreads failed ($rc): $(cat ft.out) $(tail -3 ft.err)"
hw_log "reset_on_fork: $(cat ft.out)"
echo "PASS: $HW_TEST"
