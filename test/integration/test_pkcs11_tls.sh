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

hw_tls_www hwkey-p11

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

    hw_tls_roundtrip "$kind" "$key" "$crt"
    hw_log "$kind: TLS 1.2 and 1.3 with the token key ok"
done
echo "PASS: $HW_TEST"
