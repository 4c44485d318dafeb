# shellcheck shell=bash
# HAProxy under load with a failover key, one token unplugged during the run
# (test_pkcs11_failover.sh part 5, bench/run-failover-bench.sh).  Sourced
# after lib.sh's hw_p11_setup, lib-failover.sh's fo_setup and fo_import_same web.
#
# fo_load_run SECS UNPLUG_AT PLUG_AT [THREADS] [CONNS]: HAProxy (nbthread
# THREADS, default 2; full handshakes: no session cache, no tickets) serving
# with the key "web" on both tokens; wrk (CONNS connections, default 16,
# Connection: close) for SECS seconds; token a unplugged at UNPLUG_AT s and
# plugged back at PLUG_AT s.  Prints the handshake rate of each phase (from
# the tokens' operation counters: one signature per handshake) and
#   "requests=N lost=M used_again=yes|no out_lines=X back_lines=Y"
# where lost = wrk's socket errors + non-2xx answers.  FO_ASYNC=1: HAProxy
# with ssl-mode-async (the device calls run off the event loop, util/offload.c).

fo_load_run() {
    local secs=$1 unplug_at=$2 plug_at=$3 threads=${4:-2} conns=${5:-16} port i
    local t0 a0 b0 a1 b1 a2 b2 a3 b3 lost non2xx reqs again
    hw_p11_ref "pkcs11:object=web;type=private" web.ref
    fo_write_cnf fo.cnf
    OPENSSL_CONF=fo.cnf ossl req -x509 -new -key web.ref -subj /CN=hwkey.test -days 2 \
        -addext subjectAltName=DNS:hwkey.test -out web.crt 2>req.err ||
        { echo "certificate with the failover key: $(cat req.err)"; return 1; }
    cat web.crt web.ref >haproxy-web.pem
    port=$(hw_free_port)
    cat >haproxy-fo.cfg <<CFG
global
    nbthread $threads
    tune.ssl.cachesize 0
$([[ ${FO_ASYNC:-0} == 1 ]] && echo "    ssl-mode-async")
    pidfile $HW_DIR/haproxy-fo.pid
defaults
    mode http
    timeout connect 10s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:$port ssl crt $HW_DIR/haproxy-web.pem no-tls-tickets
    http-request return status 200 content-type text/plain string ok-fo
CFG
    fo_plug lat-a
    fo_plug lat-b
    OPENSSL_CONF=$HW_DIR/fo.cnf haproxy -db -f haproxy-fo.cfg >haproxy-fo.log 2>&1 &
    local ha=$!
    hw_register_pid "$ha"
    for ((i = 0; i < 100; i++)); do
        curl -sk --max-time 10 "https://127.0.0.1:$port/" 2>/dev/null | grep -q ok-fo && break
        kill -0 "$ha" 2>/dev/null || { echo "haproxy died: $(tail -5 haproxy-fo.log)"; return 1; }
        sleep 0.2
    done
    OPENSSL_CONF=$HW_SW_CNF timeout -k 5 $((secs + 30)) wrk -t2 -c"$conns" -d"${secs}s" \
        --timeout 10s -H 'Connection: close' "https://127.0.0.1:$port/" >wrk-fo.log 2>&1 &
    local wrk=$!
    t0=$(date +%s%N)
    at() { # at SECONDS: sleep until SECONDS after the start of the run
        local ms=$((($1 * 1000) - ($(date +%s%N) - t0) / 1000000))
        ((ms > 0)) && sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
        return 0
    }
    at 1
    a0=$(fo_ops lat-a) b0=$(fo_ops lat-b)
    at "$unplug_at"
    a1=$(fo_ops lat-a) b1=$(fo_ops lat-b)
    fo_unplug lat-a
    at "$plug_at"
    a2=$(fo_ops lat-a) b2=$(fo_ops lat-b)
    fo_plug lat-a
    at $((secs - 1))
    a3=$(fo_ops lat-a) b3=$(fo_ops lat-b)
    wait "$wrk" || { echo "wrk failed: $(cat wrk-fo.log)"; return 1; }
    kill "$ha" 2>/dev/null
    wait "$ha" 2>/dev/null || true
    reqs=$(sed -nE 's/^ *([0-9]+) requests in.*/\1/p' wrk-fo.log)
    lost=$(sed -nE 's/.*Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+).*/\1+\2+\3+\4/p' wrk-fo.log)
    non2xx=$(sed -nE 's/.*Non-2xx or 3xx responses: ([0-9]+).*/\1/p' wrk-fo.log | head -1)
    lost=$((${lost:-0} + ${non2xx:-0}))
    again=no
    ((a3 - a2 > 0)) && again=yes
    printf 'phase    secs  handshakes/s  (token a, token b operations)\n'
    printf 'before   %4d  %12d  (%d, %d)\n' $((unplug_at - 1)) $(((a1 - a0 + b1 - b0) / (unplug_at - 1))) $((a1 - a0)) $((b1 - b0))
    printf 'during   %4d  %12d  (%d, %d)\n' $((plug_at - unplug_at)) $(((a2 - a1 + b2 - b1) / (plug_at - unplug_at))) $((a2 - a1)) $((b2 - b1))
    printf 'after    %4d  %12d  (%d, %d)\n' $((secs - 1 - plug_at)) $(((a3 - a2 + b3 - b2) / (secs - 1 - plug_at))) $((a3 - a2)) $((b3 - b2))
    printf 'requests=%s lost=%s used_again=%s out_lines=%s back_lines=%s\n' "${reqs:-0}" "$lost" "$again" \
        "$(grep -c 'token "ha-lat-a" .* out (' haproxy-fo.log || true)" \
        "$(grep -c 'token "ha-lat-a" .* back after' haproxy-fo.log || true)"
    grep -qiE 'segmentation|core dumped|abort' haproxy-fo.log && { echo "haproxy crashed: $(tail -5 haproxy-fo.log)"; return 1; }
    return 0
}
