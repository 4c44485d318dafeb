#!/usr/bin/env bash
# TLS with a TPM key: openssl s_server holds the key and a certificate made
# from it; s_client (software only) connects with TLS 1.2 and TLS 1.3, checks
# the certificate chain, and fetches a file whose content must come back.
# EC (P-256, P-384) and RSA keys; for RSA also PKCS#1 v1.5 signatures in TLS 1.2
# and the RSA key exchange (the TPM decrypts the premaster secret).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing openssl
hw_setup

mkdir www
token="hwkey-$RANDOM-$RANDOM-$$"
echo "$token" >www/token.txt

# start_server KEY CERT NACCEPT: s_server in the background on a free port;
# sets SRV_PORT and SRV_PID.  Retries on a bind race.
start_server() {
    local key=$1 crt=$2 naccept=$3 attempt i
    for ((attempt = 0; attempt < 5; attempt++)); do
        SRV_PORT=$(hw_free_port)
        (cd www && exec timeout -k 5 "$HW_TIMEOUT" openssl s_server -accept "127.0.0.1:$SRV_PORT" \
            -key "$HW_DIR/$key" -cert "$HW_DIR/$crt" -naccept "$naccept" -WWW \
            </dev/null >"$HW_DIR/server.$SRV_PORT.log" 2>&1) &
        SRV_PID=$!
        hw_register_pid "$SRV_PID"
        for ((i = 0; i < 100; i++)); do
            if grep -q '^ACCEPT' "$HW_DIR/server.$SRV_PORT.log" 2>/dev/null; then return 0; fi
            kill -0 "$SRV_PID" 2>/dev/null || break
            sleep 0.1
        done
        grep -q 'Address already in use' "$HW_DIR/server.$SRV_PORT.log" ||
            hw_fail "s_server with $key did not start: $(tail -5 "$HW_DIR/server.$SRV_PORT.log")"
    done
    hw_fail "s_server: no free port after 5 attempts"
}

# client PROTO CRT [S_CLIENT ARGS...]: one connection, GET /token.txt.
client() {
    local proto=$1 crt=$2 out rc=0
    shift 2
    out=$HW_DIR/client.$SRV_PORT.$proto.$RANDOM.log
    printf 'GET /token.txt HTTP/1.0\r\n\r\n' |
        OPENSSL_CONF=$HW_SW_CNF timeout -k 5 60 openssl s_client -connect "127.0.0.1:$SRV_PORT" \
            "-$proto" -CAfile "$crt" -verify_return_error -servername hwkey.test -ign_eof "$@" \
            >"$out" 2>&1 || rc=$?
    CLIENT_LOG=$out
    ((rc == 0)) || hw_fail "s_client -$proto $*: exit $rc: $(grep -i error "$out" | head -3)
server: $(tail -5 "$HW_DIR/server.$SRV_PORT.log")"
    grep -q "Verify return code: 0 (ok)" "$out" || hw_fail "s_client -$proto: certificate not verified"
    case $proto in
        tls1_3) grep -q "New, TLSv1.3, Cipher is" "$out" || hw_fail "no TLS 1.3 handshake" ;;
        tls1_2) grep -q "Protocol  : TLSv1.2" "$out" || hw_fail "no TLS 1.2 handshake" ;;
    esac
    grep -q "^HTTP/1.0 200 ok" "$out" || hw_fail "s_client -$proto $*: no HTTP answer from the server"
    grep -qx "$token" "$out" || hw_fail "s_client -$proto $*: data did not come back through TLS"
}

for alg in ec:P-256 ec:P-384 rsa:2048 rsa:3072; do
    key=key-${alg/:/-}.pem
    crt=${key%.pem}.crt
    hw_keygen "$alg" "$key"
    ossl req -x509 -new -key "$key" -subj /CN=hwkey.test -days 2 \
        -addext "subjectAltName=DNS:hwkey.test,IP:127.0.0.1" -out "$crt" ||
        hw_fail "$alg: cannot make a self-signed certificate"

    if [[ $alg == rsa:* ]]; then n=6; else n=2; fi
    start_server "$key" "$crt" "$n"
    client tls1_3 "$crt"
    client tls1_2 "$crt"
    if [[ $alg == rsa:* ]]; then
        client tls1_3 "$crt" -sigalgs rsa_pss_rsae_sha384
        grep -q "Peer signature type: RSA-PSS" "$CLIENT_LOG" || hw_fail "$alg: TLS 1.3 did not use RSA-PSS"
        client tls1_2 "$crt" -sigalgs rsa_pkcs1_sha256
        grep -q "Peer signature type: RSA$" "$CLIENT_LOG" || hw_fail "$alg: TLS 1.2 did not use PKCS#1 v1.5"
        client tls1_2 "$crt" -sigalgs rsa_pss_rsae_sha512
        grep -q "Peer signature type: RSA-PSS" "$CLIENT_LOG" || hw_fail "$alg: TLS 1.2 did not use RSA-PSS"
        # RSA key exchange: the premaster secret is decrypted by the TPM.
        client tls1_2 "$crt" -cipher AES128-GCM-SHA256
        grep -q "Cipher is AES128-GCM-SHA256" "$CLIENT_LOG" || hw_fail "$alg: RSA key exchange not used"
    else
        grep -q "Peer signature type: ECDSA" "$CLIENT_LOG" || hw_fail "$alg: no ECDSA signature"
    fi
    # -naccept: the server exits by itself after the expected connections.
    for ((i = 0; i < 100; i++)); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
    rc=0
    wait "$SRV_PID" || rc=$?
    ((rc == 0)) || hw_fail "$alg: s_server exit $rc: $(tail -5 "server.$SRV_PORT.log")"
    hw_log "$alg: TLS 1.2 and 1.3 ok"
done
echo "PASS: $HW_TEST"
