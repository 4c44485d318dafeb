#!/usr/bin/env bash
# nginx keeps serving through a device that leaves and returns (issue 6):
# Debian's nginx, 4 workers, an EC key on SoftHSM behind `p11-kit server`
# (docs/isolation.md), reached through p11-kit-client.so.  The server (with
# the children serving each worker's connection) is SIGKILLed for 3 s, then
# started again on the same socket; nginx is not restarted.
#   - while it is away every handshake fails instead of hanging (each curl < 4 s)
#   - a handshake succeeds again after its return, and from 6 s after its
#     return 200 handshakes (8 at a time, over all workers) have 0 failures:
#     every worker is back without a restart.  The bounds are generous on
#     purpose (no timed pass/fail on a shared CI machine: a 2 s bound failed
#     once); how fast it comes back is a figure, printed here and measured by
#     bench/run-fault-bench.sh (p11kit path)
#   - the error log has at most one "lost" and one "back" line per worker
#   - nginx stops cleanly, no worker died on a signal
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
NGINX=${HWKEY_TEST_NGINX:-/usr/sbin/nginx}
[[ -x $NGINX ]] || { echo "SKIP: $NGINX not installed" >&2; exit 77; }
skip_if_missing curl p11-kit setsid
CLIENT_MODULE=$HW_P11KIT_CLIENT
[[ -f $CLIENT_MODULE ]] || { echo "SKIP: $CLIENT_MODULE not installed (p11-kit-modules)" >&2; exit 77; }
hw_p11_setup

p11tool --keypairgen --key-type EC:prime256v1 --label ngxrec --id 75 >/dev/null 2>&1 ||
    hw_fail "pkcs11-tool --keypairgen on the server side"
SOCK=$HW_DIR/p11kit.sock
trap 'rc=$?; hw_p11kit_kill; (exit $rc); hw_cleanup' EXIT
now_ms() { date +%s%3N; }

hw_p11kit_start "$SOCK"
export P11_KIT_SERVER_ADDRESS=unix:path=$SOCK
export SOFTHSM2_CONF=$HW_DIR/no-such-softhsm2.conf      # the client side never reads the store
hw_write_p11_cnf "$HW_DIR/openssl.cnf" after "$CLIENT_MODULE"
hw_p11_ref "pkcs11:token=$HW_P11_TOKEN;id=%75;type=private" key.pem
ossl req -x509 -new -key key.pem -subj /CN=hwkey.test -days 2 \
    -addext "subjectAltName=IP:127.0.0.1" -out key.crt 2>req.err ||
    hw_fail "cannot make a certificate through p11-kit server: $(head -3 req.err)"
mkdir -p www logs tmp
echo "recovery page $RANDOM" >www/index.html

PORT=$(hw_free_port)
hw_nginx4_conf "$PORT" "$HW_DIR/key.crt" "$HW_DIR/key.pem" "root root" P11_KIT_SERVER_ADDRESS
hw_nginx4_start "$PORT"

# fetch: one handshake; prints "ok|fail SECONDS"
fetch() {
    local out
    if out=$(curl --silent --fail --max-time 5 --cacert key.crt -o /dev/null -w '%{time_total}' \
        "https://127.0.0.1:$PORT/" 2>/dev/null); then
        echo "ok $out"
    else
        echo "fail ${out:-5}"
    fi
}
# batch N: N handshakes, 8 at a time; prints the number of failures
batch() {
    local n=$1 i
    for ((i = 0; i < n; i++)); do
        fetch &
        (((i + 1) % 8 == 0)) && wait
    done >batch.out
    wait
    grep -c '^fail' batch.out || true
}

f=$(batch 80)
((f == 0)) || hw_fail "before the outage: $f of 80 handshakes failed: $(tail -3 logs/error.log)"
workers_before=$(awk '$2 == 200 {print $1}' logs/access.log | sort -u | wc -l)
hw_log "before: 80 handshakes ok, served by $workers_before workers"

# --- the outage ------------------------------------------------------------
hw_p11kit_kill
t_kill=$(now_ms)
: >outage.out
while (($(now_ms) - t_kill < 3000)); do fetch >>outage.out; sleep 0.05; done
n_out=$(wc -l <outage.out)
ok_out=$(grep -c '^ok' outage.out || true)
((ok_out == 0)) || hw_fail "$ok_out handshakes succeeded with the server killed"
slowest=$(awk '{if ($2 > m) m = $2} END {print m + 0}' outage.out)
# Fails, not hangs: the bound (4 s, curl's limit is 5 s) is far above the figure printed.
awk '$2 >= 4.0 {bad = 1} END {exit bad}' outage.out || hw_fail "outage: handshakes took 4 s or more to fail: $(sort -k2 -n outage.out | tail -2)"
hw_log "outage: $n_out handshakes, all failed, slowest ${slowest} s"

hw_p11kit_start "$SOCK"
t_back=$(now_ms)
first=
while (($(now_ms) - t_back < 5000)); do
    r=$(fetch)
    if [[ $r == ok* ]]; then first=$(($(now_ms) - t_back)); break; fi
    sleep 0.02
done
[[ -n $first ]] || hw_fail "no handshake succeeded within 5 s of the server's return: $(tail -5 logs/error.log)"
# From 6 s after the return every worker must serve (the back-off is at most 800 ms).
while (($(now_ms) - t_back < 6000)); do sleep 0.05; done
seen=$(wc -l <logs/access.log)
f=$(batch 200)
((f == 0)) || hw_fail "from 6 s after the return: $f of 200 handshakes failed: $(grep -i 'hwkey\|pkcs11' logs/error.log | tail -3)"
workers_after=$(tail -n +"$((seen + 1))" logs/access.log | awk '$2 == 200 {print $1}' | sort -u | wc -l)
lost=$(grep -c 'pkcs11: lost' logs/error.log || true)
back=$(grep -c 'is back after\|re-initialised it' logs/error.log || true)
((lost <= 4 && back <= 4)) || hw_fail "log: $lost 'lost' and $back 'back' lines for 4 workers (one per worker expected)"
hw_log "back: first handshake ${first} ms after the server's return; from 6 s on 200/200 ok; served by $workers_after workers; log lines: $lost lost, $back back"

kill -QUIT "$NGX"
for ((i = 0; i < 150; i++)); do kill -0 "$NGX" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$NGX" 2>/dev/null || hw_fail "nginx did not exit within 15 s of QUIT"
! grep -E 'exited on signal|signal 11' logs/error.log || hw_fail "a worker died on a signal"
echo "PASS: $HW_TEST"
