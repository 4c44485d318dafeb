#!/usr/bin/env bash
# Asynchronous device calls with TPM keys (swtpm, no resource manager):
# HAProxy 2.6 with ssl-mode-async and one thread serves bursts of full
# handshakes with an EC P-256 and an RSA-2048 TPM key (the TPM serialises its
# commands; the event loop must not), TLS 1.3 and TLS 1.2 (RSA: PSS
# signature and RSA key exchange), then `openssl s_server -async` with the
# same keys.  Every handshake must succeed; HAProxy must stay up.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
skip_if_missing haproxy curl
hw_setup

hw_keygen ec:P-256 key-ec.pem
hw_keygen rsa:2048 key-rsa.pem
for kind in ec rsa; do
    ossl req -x509 -new -key "key-$kind.pem" -subj /CN=hwkey.test -days 2 \
        -addext subjectAltName=DNS:hwkey.test -out "crt-$kind.pem" 2>req.err \
        || hw_fail "certificate for the TPM $kind key: $(cat req.err)"
    cat "crt-$kind.pem" "key-$kind.pem" >"haproxy-$kind.pem"
done

PORT_EC=$(hw_free_port) PORT_RSA=$(hw_free_port)
cat >haproxy.cfg <<CFG
global
    nbthread 1
    ssl-mode-async
    tune.ssl.cachesize 0
defaults
    mode http
    timeout connect 10s
    timeout client 60s
    timeout server 60s
frontend fe_ec
    bind 127.0.0.1:$PORT_EC ssl crt $HW_DIR/haproxy-ec.pem no-tls-tickets
    http-request return status 200 content-type text/plain string ok-ec
frontend fe_rsa
    bind 127.0.0.1:$PORT_RSA ssl crt $HW_DIR/haproxy-rsa.pem no-tls-tickets ssl-min-ver TLSv1.2
    http-request return status 200 content-type text/plain string ok-rsa
CFG
haproxy -db -f haproxy.cfg >haproxy.log 2>&1 &
HA_PID=$!
hw_register_pid "$HA_PID"
for ((i = 0; i < 100; i++)); do
    curl -sk --max-time 20 "https://127.0.0.1:$PORT_EC/" >/dev/null 2>&1 && break
    kill -0 "$HA_PID" 2>/dev/null || hw_fail "haproxy exited: $(tail -5 haproxy.log)"
    sleep 0.2
done

# burst N PORT TAG [CURL ARGS]: N clients at once; all must get the page.
burst() {
    local n=$1 port=$2 tag=$3 i ok=0 pids=()
    shift 3
    for ((i = 0; i < n; i++)); do
        OPENSSL_CONF=$HW_SW_CNF curl -sk --max-time 60 "$@" -o "burst.$tag.$i" "https://127.0.0.1:$port/" &
        pids+=($!)
    done
    for ((i = 0; i < n; i++)); do
        wait "${pids[$i]}" && grep -q "^ok-" "burst.$tag.$i" && ok=$((ok + 1))
    done
    ((ok == n)) || hw_fail "async TPM $tag: $ok of $n handshakes succeeded: $(tail -5 haproxy.log)"
}
burst 16 "$PORT_EC" ec-tls13 --tlsv1.3
burst 16 "$PORT_EC" ec-tls12 --tlsv1.2 --tls-max 1.2
burst 8 "$PORT_RSA" rsa-tls13 --tlsv1.3
burst 8 "$PORT_RSA" rsa-kx --tlsv1.2 --tls-max 1.2 --ciphers AES128-GCM-SHA256
kill -0 "$HA_PID" || hw_fail "haproxy died: $(tail -5 haproxy.log)"
hwkey_stop_pid "$HA_PID"

# openssl s_server -async: one connection at a time, the job paused on hwkey's fd.
for kind in ec rsa; do
    port=$(hw_free_port)
    mkdir -p www && echo "async-$kind" >www/index.txt
    (cd www && exec timeout -k 5 60 openssl s_server -async -accept "127.0.0.1:$port" \
        -key "$HW_DIR/key-$kind.pem" -cert "$HW_DIR/crt-$kind.pem" -naccept 2 -WWW \
        </dev/null >"$HW_DIR/s_server.$kind.log" 2>&1) &
    spid=$!
    hw_register_pid "$spid"
    # up to 30 s: a loaded machine starts s_server (and loads the TPM key) slowly
    for ((i = 0; i < 300; i++)); do grep -q '^ACCEPT' "s_server.$kind.log" 2>/dev/null && break; sleep 0.1; done
    grep -q '^ACCEPT' "s_server.$kind.log" || hw_fail "s_server -async $kind did not start: $(tail -5 "s_server.$kind.log")"
    for proto in tlsv1.3 tlsv1.2; do
        out=$(OPENSSL_CONF=$HW_SW_CNF curl -sk --max-time 30 "--$proto" --tls-max "${proto#tlsv}" \
            "https://127.0.0.1:$port/index.txt" 2>&1) || hw_fail "s_server -async $kind $proto: $out"
        [[ $out == "async-$kind" ]] || hw_fail "s_server -async $kind $proto: got '$out'"
    done
    wait "$spid" || hw_fail "s_server -async $kind exited with an error: $(tail -5 "s_server.$kind.log")"
done
hw_log "ssl-mode-async with TPM keys: 48 concurrent handshakes (EC/RSA, TLS 1.3/1.2, RSA kx); s_server -async EC and RSA"
