#!/usr/bin/env bash
# Asynchronous device calls (util/offload.c) under HAProxy 2.6 with
# ssl-mode-async and one thread: a slow token (p11_latency.so, 300 ms per
# private-key operation) must not serialise the handshakes.
#  - 12 clients at once, EC P-256 key: all succeed, and the token sees
#    several operations in flight at the same time (max >= 3); without
#    ssl-mode-async the same load never overlaps (max == 1): this is what
#    shows the event loop no longer waits for the device.
#  - RSA key: TLS 1.3 (RSA-PSS signature) and TLS 1.2 RSA key exchange
#    (decryption) through async.
#  - a client that hangs up while its signature is in flight (seen in the
#    token's in-flight counter, not guessed with a sleep): HAProxy keeps
#    serving, no crash.
#  - load with a fast token (wrk, 32 connections, 4 s): the device often
#    answers before the job pauses; 0 errors and HAProxy alive (a wait fd
#    registered in a run that never paused once crashed HAProxy here).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
skip_if_missing haproxy curl
hw_p11_setup

LAT_SO=$top_builddir/test/p11_latency/.libs/p11_latency.so
[[ -f $LAT_SO ]] || hw_fail "$LAT_SO not built (make check builds it)"
export P11_LATENCY_MODULE=$HW_P11_MODULE P11_LATENCY_STATS=$HW_DIR/stats
hw_write_p11_cnf lat.cnf after "$LAT_SO"

# Keys on the token, certificates, HAProxy's crt files (certificate + reference file).
for kind in ec rsa; do
    case $kind in ec) alg=ec:P-256 ;; rsa) alg=rsa:2048 ;; esac
    hw_p11_keygen "$alg" "async-$kind" "key-$kind.pem"
    OPENSSL_CONF=lat.cnf ossl req -x509 -new -key "key-$kind.pem" -subj /CN=hwkey.test -days 2 \
        -addext subjectAltName=DNS:hwkey.test -out "crt-$kind.pem" 2>req.err \
        || hw_fail "certificate for the $kind key: $(cat req.err)"
    cat "crt-$kind.pem" "key-$kind.pem" >"haproxy-$kind.pem"
done

HA_PID=
# ha_start MODE(async|sync) [OP_US [HOLD_FOR]]: HAProxy, one thread, both keys on their
# own ports; the token takes OP_US (default 300 ms) per private-key operation, and with
# HOLD_FOR each operation waits (10 s at most) until that many have been in flight at once.
ha_start() {
    local mode=$1 op_us=${2:-300000} hold=${3:-0} i
    PORT_EC=$(hw_free_port) PORT_RSA=$(hw_free_port)
    {
        echo "global"
        echo "    nbthread 1"
        echo "    tune.ssl.cachesize 0"
        [[ $mode == async ]] && echo "    ssl-mode-async"
        echo "    pidfile $HW_DIR/haproxy.pid"
        echo "defaults"
        echo "    mode http"
        echo "    timeout connect 10s"
        echo "    timeout client 60s"
        echo "    timeout server 60s"
        echo "frontend fe_ec"
        echo "    bind 127.0.0.1:$PORT_EC ssl crt $HW_DIR/haproxy-ec.pem no-tls-tickets"
        echo "    http-request return status 200 content-type text/plain string ok-ec"
        echo "frontend fe_rsa"
        echo "    bind 127.0.0.1:$PORT_RSA ssl crt $HW_DIR/haproxy-rsa.pem no-tls-tickets ssl-min-ver TLSv1.2"
        echo "    http-request return status 200 content-type text/plain string ok-rsa"
    } >haproxy.cfg
    rm -f "$P11_LATENCY_STATS"
    OPENSSL_CONF=$HW_DIR/lat.cnf P11_LATENCY_OP_US=$op_us P11_LATENCY_HOLD_FOR=$hold \
        haproxy -db -f haproxy.cfg \
        >haproxy.$mode.log 2>&1 &
    HA_PID=$!
    hw_register_pid "$HA_PID"
    for ((i = 0; i < 100; i++)); do
        curl -sk --max-time 20 "https://127.0.0.1:$PORT_EC/" >/dev/null 2>&1 && return 0
        kill -0 "$HA_PID" 2>/dev/null || break
        sleep 0.2
    done
    hw_fail "haproxy ($mode) did not serve: $(tail -5 haproxy.$mode.log)"
}

ha_stop() {
    kill "$HA_PID" 2>/dev/null || true
    wait "$HA_PID" 2>/dev/null || true
    grep -qiE 'segmentation|core dumped|abort' haproxy.*.log && hw_fail "haproxy crashed: $(tail -5 haproxy.*.log)"
    HA_PID=
}

# burst N PORT: N clients at once, each a full handshake; prints how many got the page.
burst() {
    local n=$1 port=$2 i ok=0
    local pids=()
    for ((i = 0; i < n; i++)); do
        curl -sk --max-time 60 -o "burst.$i" "https://127.0.0.1:$port/" &
        pids+=($!)
    done
    for ((i = 0; i < n; i++)); do
        wait "${pids[$i]}" && grep -q '^ok-' "burst.$i" && ok=$((ok + 1))
    done
    echo "$ok"
}

max_inflight() { sed -n 's/.*max=\([0-9]*\).*/\1/p' "$P11_LATENCY_STATS"; }

# 1. Synchronous baseline: the handshakes queue behind the device.
ha_start sync
rm -f "$P11_LATENCY_STATS"
ok=$(burst 6 "$PORT_EC")
((ok == 6)) || hw_fail "sync: only $ok of 6 handshakes succeeded"
sync_max=$(max_inflight)
((sync_max == 1)) || hw_fail "sync: $sync_max device operations overlapped on one thread (expected 1)"
ha_stop

# 2. ssl-mode-async: the same thread keeps many device operations in flight.  The token
#    holds each operation until 3 have been in flight at once (at most 10 s), so the
#    result does not depend on how fast 12 curl processes start on a loaded machine; a
#    HAProxy that serialised would never get there (max stays 1, each op waits 10 s).
ha_start async 300000 3
rm -f "$P11_LATENCY_STATS"
ok=$(burst 12 "$PORT_EC")
((ok == 12)) || hw_fail "async: only $ok of 12 handshakes succeeded: $(tail -5 haproxy.async.log)"
async_max=$(max_inflight)
((async_max >= 3)) || hw_fail "async: at most $async_max device operation(s) in flight (expected >= 3)"

# 3. RSA through async: TLS 1.3 (PSS signature) and the TLS 1.2 RSA key exchange (decrypt).
for args in "-tls1_3" "-tls1_2 -cipher AES128-GCM-SHA256"; do
    # shellcheck disable=SC2086
    printf 'GET / HTTP/1.0\r\n\r\n' | OPENSSL_CONF=$HW_SW_CNF timeout -k 5 60 openssl s_client \
        -connect "127.0.0.1:$PORT_RSA" $args -CAfile crt-rsa.pem -servername hwkey.test -ign_eof \
        >rsa.log 2>&1 || hw_fail "async RSA ($args): $(grep -i error rsa.log | head -3)"
    grep -q 'ok-rsa' rsa.log || hw_fail "async RSA ($args): no page"
done
grep -q 'Cipher is AES128-GCM-SHA256' rsa.log || hw_fail "async RSA: RSA key exchange not used"

# 4. A client that hangs up while its signature is in flight.
rm -f "$P11_LATENCY_STATS"
(exec sleep 60 | OPENSSL_CONF=$HW_SW_CNF openssl s_client -connect "127.0.0.1:$PORT_EC" \
    -servername hwkey.test >cancel.log 2>&1) &
cpid=$!
for ((i = 0; i < 200; i++)); do
    grep -q 'inflight=1' "$P11_LATENCY_STATS" 2>/dev/null && break
    sleep 0.05
done
grep -q 'inflight=1' "$P11_LATENCY_STATS" || hw_fail "the cancelled client's signature never started"
pkill -KILL -P "$cpid" 2>/dev/null || true
kill -KILL "$cpid" 2>/dev/null || true
wait "$cpid" 2>/dev/null || true
ok=$(burst 4 "$PORT_EC")
((ok == 4)) || hw_fail "after a cancelled handshake: only $ok of 4 succeeded"
kill -0 "$HA_PID" || hw_fail "haproxy died after a cancelled handshake"
ha_stop

# 5. Load with a fast token.
if command -v wrk >/dev/null; then
    ha_start async 0
    OPENSSL_CONF=$HW_SW_CNF timeout -k 5 60 wrk -t2 -c32 -d4s --timeout 10s -H 'Connection: close' \
        "https://127.0.0.1:$PORT_EC/" >wrk.log 2>&1 || hw_fail "wrk failed: $(cat wrk.log)"
    grep -qE 'Socket errors|Non-2xx' wrk.log && hw_fail "async under load: errors: $(cat wrk.log)"
    reqs=$(sed -nE 's/^ *([0-9]+) requests in.*/\1/p' wrk.log)
    ((${reqs:-0} > 100)) || hw_fail "async under load: only ${reqs:-0} handshakes in 4 s: $(cat wrk.log)"
    kill -0 "$HA_PID" || hw_fail "haproxy died under load: $(tail -5 haproxy.async.log)"
    ha_stop
fi
# 6. openssl s_server -async with the token keys (100 ms per operation): the job pauses on hwkey's fd.
for kind in ec rsa; do
    port=$(hw_free_port)
    mkdir -p www && echo "async-$kind" >www/index.txt
    (cd www && OPENSSL_CONF=$HW_DIR/lat.cnf P11_LATENCY_OP_US=100000 exec timeout -k 5 60 \
        openssl s_server -async -accept "127.0.0.1:$port" -key "$HW_DIR/key-$kind.pem" \
        -cert "$HW_DIR/crt-$kind.pem" -naccept 2 -WWW </dev/null >"$HW_DIR/s_server.$kind.log" 2>&1) &
    spid=$!
    hw_register_pid "$spid"
    for ((i = 0; i < 100; i++)); do grep -q '^ACCEPT' "s_server.$kind.log" 2>/dev/null && break; sleep 0.1; done
    for proto in 1.3 1.2; do
        out=$(OPENSSL_CONF=$HW_SW_CNF curl -sk --max-time 30 "--tlsv$proto" --tls-max "$proto" \
            "https://127.0.0.1:$port/index.txt" 2>&1) || hw_fail "s_server -async $kind TLS $proto: $out"
        [[ $out == "async-$kind" ]] || hw_fail "s_server -async $kind TLS $proto: got '$out'"
    done
    wait "$spid" || hw_fail "s_server -async $kind: $(tail -5 "s_server.$kind.log")"
done

hw_log "ssl-mode-async: 12 of 12 at once with up to $async_max device operations in flight on one thread (sync: $sync_max); RSA sign/decrypt; cancelled handshake survived; s_server -async EC/RSA"
