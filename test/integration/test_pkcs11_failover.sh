#!/usr/bin/env bash
# Failover and load sharing across two tokens holding the same key
# (pkcs11-failover, src/backend/pkcs11/p11_replicas.c, docs/failover.md).
# Two independent "HSMs" in one process: two copies of p11_latency.so over
# two copies of SoftHSM, each showing its own token (lib-failover.sh).
#  1. a key under the same label but with another public key on the second
#     token is not used (one replica, one log line saying why)
#  2. the same key imported onto both: found on 2 tokens; a signing loop
#     (2 threads) uses both (round robin); one unplugged: 0 failed
#     signatures, it is no longer used; plugged back: used again; exactly one
#     "out" and one "back" log line
#  3. fork: children re-resolve both replicas and sign
#  4. both unplugged at load: one clear error; bad pkcs11-modules/-failover: one line
#  5. HAProxy (2 threads) under wrk, token a unplugged for 4 s: 0 failed
#     handshakes, token a used again; the same with ssl-mode-async
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_p11_setup
. "$top_srcdir/test/integration/lib-failover.sh"
fo_setup

fo_import_same web EC
fo_keygen_each other
export HWKEY_PKCS11_MODULES=$FO_MODULES HWKEY_PKCS11_FAILOVER=yes
export HWKEY_PKCS11_PIN_SOURCE=file:$HW_P11_PIN_FILE HWKEY_LOG=2
DRIVER=$top_builddir/test/integration/p11_driver
URI='pkcs11:object=web;type=private'
drv() { timeout -k 5 "$HW_TIMEOUT" "$DRIVER" "$@"; }

# 1. Same label, different public key: not a replica.
drv sign 'pkcs11:object=other;type=private' ecdsa SHA256 >other.out 2>other.err ||
    hw_fail "sign with the key of the first token: $(cat other.err)"
grep -q 'key "other" on 1 token (failover: no other token holds it)' other.err || hw_fail "a different key was taken as a replica: $(cat other.err)"
grep -q 'token "ha-lat-b" .* holds a different key under "other"' other.err ||
    hw_fail "no log line for the different key: $(cat other.err)"

# 2. The same key on both tokens, under a signing loop.
rm -f "$HW_DIR"/lat-*.stats
drv loop "$URI" 16 2 >loop.out 2>loop.err &
LOOP=$!
hw_register_pid "$LOOP"
wait_ops() { # wait_ops COPY MIN: until COPY has done more than MIN operations (10 s)
    local i
    for ((i = 0; i < 100; i++)); do
        (($(fo_ops "$1") > $2)) && return 0
        sleep 0.1
    done
    return 1
}
wait_ops lat-a 20 && wait_ops lat-b 20 ||
    hw_fail "round robin: not both tokens used (ops a=$(fo_ops lat-a) b=$(fo_ops lat-b)): $(cat loop.err)"
grep -q 'key "web" on 2 token(s)' loop.err || hw_fail "replica set not found: $(cat loop.err)"
fo_unplug lat-a
sleep 0.5
a_out=$(fo_ops lat-a) b_out=$(fo_ops lat-b)
sleep 3
a_still=$(fo_ops lat-a) b_still=$(fo_ops lat-b)
((a_still - a_out <= 2)) || hw_fail "the unplugged token still got $((a_still - a_out)) operations"
((b_still - b_out > 20)) || hw_fail "the remaining token did only $((b_still - b_out)) operations in 3 s"
fo_plug lat-a
wait_ops lat-a $((a_still + 20)) || hw_fail "plugged back, token a not used again (ops $(fo_ops lat-a))"
rc=0
wait "$LOOP" || rc=$?
grep -q 'fail=0' loop.out && ((rc == 0)) || hw_fail "signatures failed during the unplug: $(cat loop.out) $(head -20 loop.err)"
n_out=$(grep -c 'token "ha-lat-a" .* out (' loop.err || true)
n_back=$(grep -c 'token "ha-lat-a" .* back after' loop.err || true)
((n_out == 1 && n_back == 1)) || hw_fail "expected one out and one back line, got $n_out/$n_back: $(cat loop.err)"
# The module-level recovery lines (p11_recover.c) stay quiet: the replica says it.
n_other=$(grep -cE 'pkcs11: (lost |.* answered .*re-initialised|.* is back after)' loop.err || true)
((n_other == 0)) || hw_fail "module-level recovery lines besides the replica's: $(cat loop.err)"
hw_log "loop: $(cat loop.out); unplugged a: +$((a_still - a_out)) ops on a, +$((b_still - b_out)) on b in 3 s; back: a=$(fo_ops lat-a)"

# 3. Fork: each child re-initialises both modules and re-finds both objects.
drv fork "$URI" 4 >fork.out 2>fork.err || hw_fail "fork: $(cat fork.out fork.err)"

# 4. Every token gone at load: one clear error.
fo_unplug lat-a
fo_unplug lat-b
rc=0
HWKEY_LOG=0 drv sign "$URI" ecdsa SHA256 >down.out 2>down.err || rc=$?
((rc == 1)) || hw_fail "signed with both tokens unplugged (rc $rc)"
grep -q 'no token of the 2 configured module(s) holds a usable private key' down.err ||
    hw_fail "both unplugged: unclear error: $(cat down.err)"
fo_plug lat-a
fo_plug lat-b

# Bad configuration: one line naming the problem.
rc=0
HWKEY_PKCS11_MODULES="$HW_DIR/lat-a.so,,$HW_DIR/lat-b.so" timeout 30 "$HWKEY_BIN" pubkey "$URI" >bad.out 2>bad.err || rc=$?
((rc == 1)) || hw_fail "an empty pkcs11-modules entry was accepted (rc $rc)"
assert_one_error_line bad.err 'pkcs11-modules has an empty entry'
rc=0
HWKEY_PKCS11_FAILOVER=maybe timeout 30 "$HWKEY_BIN" pubkey "$URI" >bad.out 2>bad.err || rc=$?
((rc == 1)) || hw_fail "pkcs11-failover=maybe was accepted (rc $rc)"
assert_one_error_line bad.err 'HWKEY_PKCS11_FAILOVER must be yes or no, got "maybe"'

# 5. HAProxy under load, one token unplugged during the run: 0 failed handshakes.
if ! command -v haproxy >/dev/null || ! command -v wrk >/dev/null; then
    hw_log "SKIP part 5: haproxy or wrk not installed"
    exit 0
fi
. "$top_srcdir/test/integration/lib-failover-load.sh"
fo_load_run 12 3 7 >load.out || hw_fail "load run: $(cat load.out)"
hw_log "haproxy: $(tail -1 load.out)"
grep -q 'lost=0 ' load.out || hw_fail "handshakes lost: $(cat load.out)"
grep -q 'used_again=yes' load.out || hw_fail "token a not used after plugging back: $(cat load.out)"
# The same with ssl-mode-async: the retry on the other token happens in hwkey's worker thread.
FO_ASYNC=1 fo_load_run 10 3 6 >load-async.out || hw_fail "async load run: $(cat load-async.out)"
hw_log "haproxy ssl-mode-async: $(tail -1 load-async.out)"
grep -q 'lost=0 ' load-async.out || hw_fail "async: handshakes lost: $(cat load-async.out)"
grep -q 'used_again=yes' load-async.out || hw_fail "async: token a not used after plugging back: $(cat load-async.out)"
