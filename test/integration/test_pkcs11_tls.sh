#!/usr/bin/env bash
# TLS with PKCS#11 token keys (SoftHSM): openssl s_server holds the key,
# named by a reference file, and a self-signed certificate made with it
# (`openssl req -x509 -key ref.pem`); s_client (default provider only)
# connects with TLS 1.2 and TLS 1.3, verifies the chain and fetches a file
# whose content must come back.  EC P-256 (hwkey keygen), EC P-384
# (pkcs11-tool), RSA 2048 (hwkey keygen) with RSA-PSS, PKCS#1 v1.5 and the
# RSA key exchange (the token decrypts the premaster secret).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_p11_setup

mkdir www
token="hwkey-p11-$RANDOM-$RANDOM-$$"
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

hw_p11_keygen ec:P-256 tls-ec256 key-ec256.pem
hw_p11_keygen rsa:2048 tls-rsa2048 key-rsa2048.pem
p11tool --keypairgen --key-type EC:secp384r1 --label tls-ec384 --id 38 >/dev/null 2>&1 ||
    hw_fail "pkcs11-tool --keypairgen EC:secp384r1"
hw_p11_ref "pkcs11:token=$HW_P11_TOKEN;object=tls-ec384;type=private" key-ec384.pem

for kind in ec256 ec384 rsa2048; do
    key=key-$kind.pem
    crt=${key%.pem}.crt
    ossl req -x509 -new -key "$key" -subj /CN=hwkey.test -days 2 \
        -addext "subjectAltName=DNS:hwkey.test,IP:127.0.0.1" -out "$crt" 2>req.err ||
        hw_fail "$kind: openssl req -x509 -key $key: $(head -3 req.err)"
    # the certificate's key is the token's key
    ossl pkey -in "$key" -pubout | cmp -s - <(sw x509 -in "$crt" -noout -pubkey) ||
        hw_fail "$kind: certificate public key differs from the token key's"

    if [[ $kind == rsa* ]]; then n=6; else n=2; fi
    start_server "$key" "$crt" "$n"
    client tls1_3 "$crt"
    client tls1_2 "$crt"
    if [[ $kind == rsa* ]]; then
        client tls1_3 "$crt" -sigalgs rsa_pss_rsae_sha384
        grep -q "Peer signature type: RSA-PSS" "$CLIENT_LOG" || hw_fail "$kind: TLS 1.3 did not use RSA-PSS"
        client tls1_2 "$crt" -sigalgs rsa_pkcs1_sha256
        grep -q "Peer signature type: RSA$" "$CLIENT_LOG" || hw_fail "$kind: TLS 1.2 did not use PKCS#1 v1.5"
        client tls1_2 "$crt" -sigalgs rsa_pss_rsae_sha512
        grep -q "Peer signature type: RSA-PSS" "$CLIENT_LOG" || hw_fail "$kind: TLS 1.2 did not use RSA-PSS"
        client tls1_2 "$crt" -cipher AES128-GCM-SHA256
        grep -q "Cipher is AES128-GCM-SHA256" "$CLIENT_LOG" || hw_fail "$kind: RSA key exchange not used"
    else
        grep -q "Peer signature type: ECDSA" "$CLIENT_LOG" || hw_fail "$kind: no ECDSA signature"
    fi
    for ((i = 0; i < 100; i++)); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
    rc=0
    wait "$SRV_PID" || rc=$?
    ((rc == 0)) || hw_fail "$kind: s_server exit $rc: $(tail -5 "server.$SRV_PORT.log")"
    hw_log "$kind: TLS 1.2 and 1.3 with the token key ok"
done
echo "PASS: $HW_TEST"
