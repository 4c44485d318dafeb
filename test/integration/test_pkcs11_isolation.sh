#!/usr/bin/env bash
# Isolation without hardware (docs/isolation.md): SoftHSM runs in another
# process, `p11-kit server`, and hwkey talks to it through p11-kit's client
# module (pkcs11-module = .../p11-kit-client.so, P11_KIT_SERVER_ADDRESS).
# The application's process never loads SoftHSM nor sees its token store:
#   - keys made through the client (hwkey keygen --uri) and on the server
#     side (pkcs11-tool on SoftHSM) sign through openssl(1); verified in
#     software; RSA decryption and TLS through s_server work the same way
#   - the client process (s_server holding the key) has no libsofthsm2.so
#     mapped and cannot read the token store (SOFTHSM2_CONF points nowhere)
#   - the keys are sensitive and never extractable (so their private value
#     cannot reach the client), and reading them as objects fails
#   - with the server stopped, signing fails with a clear error, no hang
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing p11-kit
CLIENT_MODULE=$HW_P11KIT_CLIENT
[[ -f $CLIENT_MODULE ]] || { echo "SKIP: $CLIENT_MODULE not installed (p11-kit-modules)" >&2; exit 77; }
hw_p11_setup

head -c 4000 /dev/urandom >msg
# Server side: SoftHSM with its token store, in its own process.
p11tool --keypairgen --key-type EC:prime256v1 --label iso-tool --id 71 >/dev/null 2>&1 ||
    hw_fail "pkcs11-tool --keypairgen on the server side"
SOCK=$HW_DIR/p11kit.sock
p11-kit server --provider "$HW_P11_MODULE" -f -n "$SOCK" "pkcs11:token=$HW_P11_TOKEN" \
    >server.env 2>server.err &
SERVER_PID=$!
hw_register_pid "$SERVER_PID"
for ((i = 0; i < 100; i++)); do
    [[ -S $SOCK ]] && grep -q P11_KIT_SERVER_ADDRESS server.env && break
    kill -0 "$SERVER_PID" 2>/dev/null || hw_fail "p11-kit server exited: $(cat server.err)"
    sleep 0.1
done
[[ -S $SOCK ]] || hw_fail "p11-kit server made no socket: $(cat server.err)"
eval "$(grep P11_KIT_SERVER_ADDRESS server.env)"
[[ $P11_KIT_SERVER_ADDRESS == "unix:path=$SOCK" ]] || hw_fail "unexpected server address: $P11_KIT_SERVER_ADDRESS"
export P11_KIT_SERVER_ADDRESS

# Client side: no access to SoftHSM's store, hwkey through p11-kit-client.so.
export SOFTHSM2_CONF=$HW_DIR/no-such-softhsm2.conf
hw_write_p11_cnf "$HW_DIR/openssl.cnf" after "$CLIENT_MODULE"
ctool() {
    OPENSSL_CONF=$HW_SW_CNF timeout -k 5 60 pkcs11-tool --module "$CLIENT_MODULE" \
        --token-label "$HW_P11_TOKEN" --login --pin "$HW_P11_PIN" "$@"
}
HWKEY_PKCS11_MODULE=$CLIENT_MODULE HWKEY_PKCS11_PIN_SOURCE=file:$HW_P11_PIN_FILE timeout 60 \
    "$HWKEY_BIN" keygen ec:P-256 --uri "pkcs11:token=$HW_P11_TOKEN;object=iso-ec" --out iso-ec.pem \
    >/dev/null 2>kg.err || hw_fail "hwkey keygen through p11-kit-client.so: $(cat kg.err)"
HWKEY_PKCS11_MODULE=$CLIENT_MODULE HWKEY_PKCS11_PIN_SOURCE=file:$HW_P11_PIN_FILE timeout 60 \
    "$HWKEY_BIN" keygen rsa:2048 --uri "pkcs11:token=$HW_P11_TOKEN;object=iso-rsa" --out iso-rsa.pem \
    >/dev/null 2>kg.err || hw_fail "hwkey keygen rsa:2048 through p11-kit-client.so: $(cat kg.err)"
hw_p11_ref "pkcs11:token=$HW_P11_TOKEN;object=iso-tool;type=private" iso-tool.pem

for k in iso-ec iso-rsa iso-tool; do
    ossl pkey -in "$k.pem" -pubout -out "$k.pub" 2>err || hw_fail "$k: openssl pkey through p11-kit server: $(head -3 err)"
    for md in sha256 sha384; do
        ossl dgst "-$md" -sign "$k.pem" -out "$k.sig" msg 2>err ||
            hw_fail "$k: openssl dgst -sign through p11-kit server: $(head -3 err)"
        sw dgst "-$md" -verify "$k.pub" -signature "$k.sig" msg >/dev/null ||
            hw_fail "$k: signature made through p11-kit server does not verify"
    done
done
printf 'isolated secret %s\n' "$RANDOM$RANDOM" >secret.txt
sw pkeyutl -encrypt -pubin -inkey iso-rsa.pub -in secret.txt -out ct -pkeyopt rsa_padding_mode:oaep
ossl pkeyutl -decrypt -inkey iso-rsa.pem -in ct -out pt -pkeyopt rsa_padding_mode:oaep 2>err ||
    hw_fail "OAEP decrypt through p11-kit server: $(head -3 err)"
cmp -s pt secret.txt || hw_fail "OAEP decrypt through p11-kit server: wrong plaintext"
hw_log "signing (EC, RSA; hwkey and pkcs11-tool keys) and decryption through p11-kit server: ok"

# The keys cannot leave the token: sensitive, never extractable, unreadable.
ctool --list-objects --type privkey >objects.txt 2>&1 || hw_fail "pkcs11-tool through the client: $(tail -3 objects.txt)"
for k in iso-ec iso-rsa; do
    access=$(awk -v l="label:      $k\$" '$0 ~ l {f=1} f && /Access:/ {print; exit}' objects.txt)
    [[ $access == *" sensitive"* && $access == *"always sensitive"* && $access == *"never extractable"* ]] ||
        hw_fail "$k: not sensitive and never extractable: '$access'"
    [[ $access != *", extractable"* ]] || hw_fail "$k: extractable: '$access'"
    if ctool --read-object --type privkey --label "$k" -o "$k.priv" >/dev/null 2>&1 && [[ -s $k.priv ]]; then
        hw_fail "$k: the private key object could be read through the client"
    fi
done
hw_log "keys are sensitive, never extractable, and cannot be read out: ok"

# A long-lived client: s_server holding the token key.  Its memory has no
# SoftHSM (no libsofthsm2.so mapped), only p11-kit's client module.
ossl req -x509 -new -key iso-ec.pem -subj /CN=hwkey.test -days 2 \
    -addext "subjectAltName=IP:127.0.0.1" -out iso-ec.crt 2>err || hw_fail "req -x509 through p11-kit: $(head -3 err)"
mkdir -p www && echo "isolated $RANDOM" >www/t.txt
for ((attempt = 0; attempt < 5; attempt++)); do
    port=$(hw_free_port)
    (cd www && exec timeout -k 5 "$HW_TIMEOUT" openssl s_server -accept "127.0.0.1:$port" \
        -key "$HW_DIR/iso-ec.pem" -cert "$HW_DIR/iso-ec.crt" -naccept 1 -WWW </dev/null >"$HW_DIR/srv.log" 2>&1) &
    SRV=$!
    hw_register_pid "$SRV"
    for ((i = 0; i < 100; i++)); do grep -q '^ACCEPT' srv.log 2>/dev/null && break; kill -0 "$SRV" 2>/dev/null || break; sleep 0.1; done
    grep -q '^ACCEPT' srv.log && break
    grep -q 'Address already in use' srv.log || hw_fail "s_server did not start: $(tail -3 srv.log)"
done
spid=$(pgrep -P "$SRV" -x openssl || true)
[[ -n $spid ]] || spid=$SRV
grep -q p11-kit-client "/proc/$spid/maps" || hw_fail "s_server ($spid) has not loaded p11-kit-client.so"
! grep -q libsofthsm2 "/proc/$spid/maps" || hw_fail "s_server ($spid) has SoftHSM mapped: not isolated"
# p11-kit server forks a child per client connection; that child runs SoftHSM.
holder=
for c in $SERVER_PID $(pgrep -P "$SERVER_PID" || true); do
    grep -q libsofthsm2 "/proc/$c/maps" 2>/dev/null && holder=$c
done
[[ -n $holder ]] || hw_fail "neither p11-kit server ($SERVER_PID) nor its children hold SoftHSM"
printf 'GET /t.txt HTTP/1.0\r\n\r\n' | OPENSSL_CONF=$HW_SW_CNF timeout 60 openssl s_client \
    -connect "127.0.0.1:$port" -tls1_3 -CAfile iso-ec.crt -verify_return_error -ign_eof >cli.log 2>&1 ||
    hw_fail "s_client to the isolated key: $(grep -i error cli.log | head -3)"
grep -qx "$(cat www/t.txt)" cli.log || hw_fail "TLS through the isolated key: data did not come back"
hw_log "TLS 1.3 with the key in another process; SoftHSM not in the client's memory: ok"

# Server gone: a clear error, no hang, no crash.
hwkey_stop_pid "$SERVER_PID" p11-kit-server
rc=0
ossl dgst -sha256 -sign iso-ec.pem -out x.sig msg >/dev/null 2>gone.err || rc=$?
((rc != 0)) || hw_fail "signing succeeded with the p11-kit server stopped"
hw_no_crash "$rc" gone.err "signing with the p11-kit server stopped"
rc=0
HWKEY_PKCS11_MODULE=$CLIENT_MODULE HWKEY_PKCS11_PIN_SOURCE=file:$HW_P11_PIN_FILE timeout 60 \
    "$HWKEY_BIN" pubkey iso-ec.pem >/dev/null 2>gone.err || rc=$?
((rc == 1)) || hw_fail "hwkey pubkey with the server stopped: exit $rc, expected 1"
grep -qiE 'token|unreachable|CKR_|not found|slot' gone.err || hw_fail "no clear error with the server stopped: $(cat gone.err)"
hw_log "server stopped: $(head -1 gone.err)"
echo "PASS: $HW_TEST"
