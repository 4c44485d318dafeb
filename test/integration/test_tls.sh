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

hw_tls_www hwkey

for alg in ec:P-256 ec:P-384 rsa:2048 rsa:3072; do
    key=key-${alg/:/-}.pem
    crt=${key%.pem}.crt
    hw_keygen "$alg" "$key"
    ossl req -x509 -new -key "$key" -subj /CN=hwkey.test -days 2 \
        -addext "subjectAltName=DNS:hwkey.test,IP:127.0.0.1" -out "$crt" ||
        hw_fail "$alg: cannot make a self-signed certificate"

    hw_tls_roundtrip "$alg" "$key" "$crt"
    hw_log "$alg: TLS 1.2 and 1.3 ok"
done
echo "PASS: $HW_TEST"
