#!/usr/bin/env bash
# Node.js with a TPM key through hwkey (issue 7.15, README "Node.js"): Node
# reads only the `nodejs_conf` section of openssl.cnf, not `openssl_conf`.
#   - with `nodejs_conf = openssl_init`: crypto.createPrivateKey() loads a
#     TSS2 key file, crypto.sign() signs in the TPM, and the default provider
#     alone verifies the signature with the key's public half (hwkey pubkey);
#     tls.createServer() with the key file serves a verified TLS handshake
#   - with only `openssl_conf`: Node does not load hwkey (the key file is
#     "unsupported"), unless started with --openssl-shared-config
# Exit 77 without node.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
skip_if_missing node
hw_setup

hw_keygen ec:P-256 key.pem
hw_hwkey pubkey key.pem >key.pub 2>pub.err || hw_fail "hwkey pubkey: $(cat pub.err)"
printf 'signed by node %s\n' "$RANDOM" >msg
cat >sign.js <<'JS'
const crypto = require('crypto');
const fs = require('fs');
const key = crypto.createPrivateKey(fs.readFileSync(process.argv[2]));
fs.writeFileSync(process.argv[4], crypto.sign('sha256', fs.readFileSync(process.argv[3]), key));
JS

# node.cnf: the test's openssl.cnf plus nodejs_conf; shared.cnf: openssl_conf only
{ echo "nodejs_conf = openssl_init"; cat "$OPENSSL_CONF"; } >node.cnf
cp "$OPENSSL_CONF" shared.cnf
grep -q "^openssl_conf = openssl_init" shared.cnf || hw_fail "the test's openssl.cnf has no openssl_conf line"

node_sign() { # CNF SIG [NODE_OPTIONS...]
    local cnf=$1 sig=$2
    shift 2
    OPENSSL_CONF=$PWD/$cnf timeout -k 5 "$HW_TIMEOUT" node "$@" sign.js key.pem msg "$sig" >"$sig.out" 2>&1
}
verify() { sw pkeyutl -verify -rawin -digest sha256 -pubin -inkey key.pub -in msg -sigfile "$1" >/dev/null 2>&1; }

node_sign node.cnf sig1 || hw_fail "node with nodejs_conf: $(tail -5 sig1.out)"
verify sig1 || hw_fail "node's signature with the TPM key does not verify"
hw_log "ok: node with nodejs_conf = openssl_init signs with the TPM key"

# A TLS server: one handshake with the TPM key, the certificate verified by the client.
ossl req -x509 -new -key key.pem -subj /CN=node.test -days 2 -out key.crt 2>req.err ||
    hw_fail "openssl req -x509 with the TPM key: $(cat req.err)"
cat >server.js <<'JS'
const tls = require('tls');
const fs = require('fs');
const server = tls.createServer({key: fs.readFileSync('key.pem'), cert: fs.readFileSync('key.crt')},
    (c) => { c.end('served by node\n'); server.close(); });
server.listen(0, '127.0.0.1', () => { fs.writeFileSync('port.txt', String(server.address().port)); });
JS
rm -f port.txt
OPENSSL_CONF=$PWD/node.cnf timeout -k 5 60 node server.js >server.out 2>&1 &
server_pid=$!
hw_register_pid "$server_pid"
for ((i = 0; i < 100; i++)); do [[ -s port.txt ]] && break; sleep 0.1; done
[[ -s port.txt ]] || hw_fail "the node TLS server did not start: $(tail -3 server.out)"
echo | sw s_client -connect "127.0.0.1:$(cat port.txt)" -CAfile key.crt -verify_return_error \
    -servername node.test -ign_eof >client.out 2>&1 || true # node closes without close_notify
grep -q "^Verify return code: 0 (ok)" client.out && grep -q "Peer signature type: ECDSA" client.out ||
    hw_fail "TLS handshake with node: $(grep -m3 -iE 'error|verify' client.out)"
grep -q "served by node" client.out || hw_fail "the node TLS server sent nothing: $(tail -5 client.out)"
wait "$server_pid" || hw_fail "the node TLS server failed: $(tail -3 server.out)"
hw_log "ok: a node TLS server completes a handshake with the TPM key"

if node_sign shared.cnf sig2; then
    hw_fail "node loaded hwkey without nodejs_conf: the documented trap is gone, update the docs"
fi
grep -q "unsupported\|UNSUPPORTED" sig2.out || hw_fail "node without nodejs_conf failed otherwise: $(tail -3 sig2.out)"
node_sign shared.cnf sig3 --openssl-shared-config || hw_fail "node --openssl-shared-config: $(tail -5 sig3.out)"
verify sig3 || hw_fail "node --openssl-shared-config: the signature does not verify"
hw_log "ok: without nodejs_conf node ignores hwkey; --openssl-shared-config reads openssl_conf"
hw_log "PASS"
