#!/usr/bin/env bash
# Failover under nginx (docs/failover.md): Debian's nginx, 4 workers, the key
# loaded in the master from a reference file naming it by label only, held by
# two independent tokens (lib-failover.sh); wrk with "Connection: close" (every
# request a full handshake) for 12 s; token a unplugged from 3 s to 7 s.
#   - 0 failed handshakes (wrk: no socket error, no non-2xx)
#   - every worker forked from the master re-resolved both tokens (both used
#     before the unplug, summed over the workers' per-process counters)
#   - token a takes no operation while unplugged, and takes operations again
#     after it is plugged back
#   - at most one "out" and one "back" line per worker; nginx stops cleanly
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
NGINX=${HWKEY_TEST_NGINX:-/usr/sbin/nginx}
[[ -x $NGINX ]] || { echo "SKIP: $NGINX not installed" >&2; exit 77; }
skip_if_missing curl wrk
hw_p11_setup
. "$top_srcdir/test/integration/lib-failover.sh"
fo_setup
export P11_LATENCY_STATS=$HW_DIR/%m.%p.stats
fo_import_same web EC
fo_write_cnf fo.cnf
hw_p11_ref "pkcs11:object=web;type=private" web.ref
OPENSSL_CONF=fo.cnf ossl req -x509 -new -key web.ref -subj /CN=hwkey.test -days 2 \
    -addext "subjectAltName=IP:127.0.0.1" -out web.crt 2>req.err ||
    hw_fail "certificate with the failover key: $(cat req.err)"
rm -f "$HW_DIR"/lat-*.stats
mkdir -p www logs tmp
echo "failover page" >www/index.html
PORT=$(hw_free_port)
hw_nginx4_conf "$PORT" "$HW_DIR/web.crt" "$HW_DIR/web.ref" "root root" SOFTHSM2_CONF \
    P11_LATENCY_MODULE P11_LATENCY_TOKEN P11_LATENCY_CONTROL P11_LATENCY_STATS
OPENSSL_CONF=$HW_DIR/fo.cnf hw_nginx4_start "$PORT"
curl -s --fail --max-time 10 --cacert web.crt -o /dev/null "https://127.0.0.1:$PORT/" ||
    hw_fail "first handshake failed: $(tail -5 logs/error.log)"

OPENSSL_CONF=$HW_SW_CNF timeout -k 5 60 wrk -t2 -c16 -d12s --timeout 10s -H 'Connection: close' \
    "https://127.0.0.1:$PORT/" >wrk.log 2>&1 &
WRK=$!
sleep 2.5
a0=$(fo_ops lat-a) b0=$(fo_ops lat-b)
((a0 > 10 && b0 > 10)) || hw_fail "before the unplug not both tokens used (a=$a0 b=$b0)"
sleep 0.5
fo_unplug lat-a
sleep 0.5
a1=$(fo_ops lat-a)
sleep 3.5
a2=$(fo_ops lat-a)
fo_plug lat-a
wait "$WRK" || hw_fail "wrk failed: $(cat wrk.log)"
a3=$(fo_ops lat-a)
grep -qE 'Socket errors|Non-2xx' wrk.log && hw_fail "handshakes failed during the unplug: $(cat wrk.log) $(grep -v '\[info\]' logs/error.log | tail -5)"
reqs=$(sed -nE 's/^ *([0-9]+) requests in.*/\1/p' wrk.log)
((${reqs:-0} > 100)) || hw_fail "only ${reqs:-0} handshakes in 12 s: $(cat wrk.log)"
((a2 - a1 <= 8)) || hw_fail "token a took $((a2 - a1)) operations while unplugged"
((a3 > a2)) || hw_fail "token a not used after it was plugged back (ops $a2 -> $a3)"
n_out=$(cat logs/error.log nginx.out | grep -c 'token "ha-lat-a" .* out (' || true)
n_back=$(cat logs/error.log nginx.out | grep -c 'token "ha-lat-a" .* back after' || true)
((n_out >= 1 && n_out <= 4 && n_back >= 1 && n_back <= 4)) ||
    hw_fail "expected 1..4 out and back lines (one per worker at most), got $n_out/$n_back"
kill -QUIT "$NGX"
for ((i = 0; i < 150; i++)); do kill -0 "$NGX" 2>/dev/null || break; sleep 0.1; done
grep -qE 'exited on signal|segmentation|core dumped' logs/error.log nginx.out &&
    hw_fail "a worker died: $(grep -E 'exited on signal' logs/error.log | head -3)"
hw_log "nginx 4 workers: $reqs handshakes, 0 failed; token a: +$((a2 - a1)) ops while unplugged, +$((a3 - a2)) after; out/back lines $n_out/$n_back"
