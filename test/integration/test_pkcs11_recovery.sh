#!/usr/bin/env bash
# Recovery after the device leaves and returns (issue 6), through p11-kit's
# client: SoftHSM runs behind `p11-kit server`, which is SIGKILLed (with the
# child that serves our connection) while a long-lived client keeps signing,
# then started again on the same socket.  The client (p11_faults keepsign:
# the backend as the provider drives it, one signature every 20 ms) must,
# without a restart:
#   1. outage: fail, not hang, while the server is away (every failed
#      signature < 4 s, exactly one error each, naming the module and the
#      CKR_ code), sign again after the server's return (within 8 s: a bound
#      for a loaded machine, not the figure, which is printed), and log one
#      line when the token is lost and one when it is back (not one per
#      signature)
#   2. a blip: the server killed and back before the next call: that call
#      succeeds (re-initialise, log in, re-find, retry once), no failure.
# Timing that matters is made deterministic with the stop point p11-sign
# (util/testhook.h): the client stops itself inside a signature, with its
# session taken, the test kills (and in 2. restarts) the server, then lets
# it continue into the dead connection.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing p11-kit setsid
CLIENT_MODULE=$HW_P11KIT_CLIENT
[[ -f $CLIENT_MODULE ]] || { echo "SKIP: $CLIENT_MODULE not installed (p11-kit-modules)" >&2; exit 77; }
hw_p11_setup
DRIVER=$top_builddir/test/integration/p11_faults
[[ -x $DRIVER ]] || hw_fail "$DRIVER not built (make check builds it)"

p11tool --keypairgen --key-type EC:prime256v1 --label rec-ec --id 72 >/dev/null 2>&1 ||
    hw_fail "pkcs11-tool --keypairgen on the server side"
SOCK=$HW_DIR/p11kit.sock
trap 'rc=$?; hw_p11kit_kill; (exit $rc); hw_cleanup' EXIT
now_ms() { date +%s%3N; }

# run_client TAG STOP_COUNT: keepsign in the background, stopping itself at
# the STOP_COUNT-th pass of p11-sign; sets DRV (timeout's pid) and DPID (the
# stopped driver's pid) once it has stopped.
run_client() {
    local tag=$1 count=$2 i
    rm -f "$tag.stopped" "$tag.done"
    HWKEY_TEST_STOP_AT=p11-sign HWKEY_TEST_STOP_COUNT=$count HWKEY_TEST_STOP_FILE=$HW_DIR/$tag.stopped \
        HWKEY_PKCS11_MODULE=$CLIENT_MODULE HWKEY_PKCS11_PIN_SOURCE=file:$HW_P11_PIN_FILE HWKEY_LOG=1 \
        P11_KIT_SERVER_ADDRESS=unix:path=$SOCK SOFTHSM2_CONF=$HW_DIR/no-such-softhsm2.conf \
        timeout -k 5 120 "$DRIVER" keepsign "pkcs11:token=$HW_P11_TOKEN;id=%72" "$HW_DIR/$tag.done" 20 \
        >"$tag.out" 2>"$tag.err" &
    DRV=$!
    hw_register_pid "$DRV"
    for ((i = 0; i < 600; i++)); do
        [[ -s $tag.stopped ]] && break
        kill -0 "$DRV" 2>/dev/null || hw_fail "$tag: client exited early: $(cat "$tag.err")"
        sleep 0.05
    done
    [[ -s $tag.stopped ]] || hw_fail "$tag: the client never reached the stop point p11-sign"
    DPID=$(awk '{print $1; exit}' "$tag.stopped")
    [[ $(awk '{print $3; exit}' "/proc/$DPID/stat") == T ]] || hw_fail "$tag: client $DPID not stopped"
}
finish_client() {
    local tag=$1 rc=0
    touch "$tag.done"
    wait "$DRV" || rc=$?
    ((rc == 0)) || hw_fail "$tag: client exited $rc (killed by a signal? SIGPIPE is 141): $(tail -3 "$tag.err")"
}

# --- 1. an outage of 3 s ----------------------------------------------------
hw_p11kit_start "$SOCK"
run_client outage 25
ok_before=$(grep -c '^ok' outage.out || true)
((ok_before >= 24)) || hw_fail "outage: only $ok_before signatures before the stop point"
hw_p11kit_kill
t_kill=$(now_ms)
kill -CONT "$DPID"
sleep 3                          # the outage itself (the back-off reaches its 800 ms ceiling)
hw_p11kit_start "$SOCK"
t_back=$(now_ms)
for ((i = 0; i < 200; i++)); do
    n=$(awk -v t="$t_back" '$1 == "ok" && $2 >= t' outage.out | wc -l)
    ((n >= 20)) && break
    sleep 0.05
done
finish_client outage

fails=$(awk -v t="$t_kill" '$1 == "fail" && $2 >= t' outage.out | wc -l)
((fails >= 20)) || hw_fail "outage: only $fails failed signatures while the server was away"
slow=$(awk -v t="$t_kill" '$1 == "fail" && $2 >= t && $3 >= 4000' outage.out | wc -l)
((slow == 0)) || hw_fail "outage: $slow failures took 4 s or more: $(awk '$1 == "fail" && $3 >= 4000' outage.out | head -2)"
max_fail=$(awk -v t="$t_kill" '$1 == "fail" && $2 >= t {if ($3 > m) m = $3} END {print m + 0}' outage.out)
multi=$(awk '$1 == "fail" && $4 != 1' outage.out | wc -l)
((multi == 0)) || hw_fail "outage: failures with other than one error: $(awk '$1 == "fail" && $4 != 1' outage.out | head -2)"
grep '^fail' outage.out | grep -qv 'p11-kit-client.so' && hw_fail "outage: an error that does not name the module: $(grep '^fail' outage.out | grep -v p11-kit-client.so | head -1)"
grep '^fail' outage.out | grep -qv 'CKR_' && hw_fail "outage: an error without the module's CKR_ code: $(grep '^fail' outage.out | grep -v CKR_ | head -1)"
during=$(awk -v a="$t_kill" -v b="$t_back" '$1 == "ok" && $2 >= a && $2 < b' outage.out | wc -l)
((during == 0)) || hw_fail "outage: $during signatures succeeded while the server was down (not killed?)"
first_ok=$(awk -v t="$t_back" '$1 == "ok" && $2 >= t {print $2 + $3 - t; exit}' outage.out)
[[ -n $first_ok ]] || hw_fail "outage: no signature after the server came back: $(tail -3 outage.out)"
((first_ok <= 8000)) || hw_fail "outage: first signature ${first_ok} ms after the server came back (bound 8000)"
after=$(awk -v t="$t_back" '$1 == "ok" && $2 >= t' outage.out | wc -l)
fails_after=$(awk -v t="$t_back" '$1 == "fail" && $2 >= t' outage.out | wc -l)
lost=$(grep -c 'pkcs11: lost' outage.err || true)
back=$(grep -c 'is back after' outage.err || true)
((lost == 1 && back == 1)) || hw_fail "outage: expected one 'lost' and one 'back' log line, got $lost and $back: $(head -5 outage.err)"
grep -v -e 'pkcs11: lost' -e 'is back after' outage.err | grep -q . &&
    hw_fail "outage: other log lines: $(grep -v -e 'pkcs11: lost' -e 'is back after' outage.err | head -3)"
hw_log "outage: $ok_before ok before; $fails failures while away, slowest ${max_fail} ms, one error each"
hw_log "outage: first signature ${first_ok} ms after the server's return, $after ok after ($fails_after failures after the return, while the back-off ran out); log: $(tr '\n' '|' <outage.err)"

# --- 2. a blip: killed and back before the next call --------------------------
run_client blip 10
hw_p11kit_kill
hw_p11kit_start "$SOCK"
kill -CONT "$DPID"
for ((i = 0; i < 200; i++)); do
    (($(grep -c '^ok' blip.out || true) >= 20)) && break
    sleep 0.05
done
finish_client blip
nfail=$(grep -c '^fail' blip.out || true)
((nfail == 0)) || hw_fail "blip: $nfail signatures failed although the server was back: $(grep '^fail' blip.out | head -2)"
(($(grep -c '^ok' blip.out) >= 20)) || hw_fail "blip: the client stopped signing: $(tail -3 blip.out)"
grep -q 'answered CKR_.*re-initialised it' blip.err || hw_fail "blip: no log line for the re-initialisation: $(cat blip.err)"
hw_log "blip: the signature in flight when the server was replaced succeeded; $(grep -c '^ok' blip.out) ok, 0 failed; log: $(tr '\n' '|' <blip.err)"
echo "PASS: $HW_TEST"
