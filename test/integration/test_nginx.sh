#!/usr/bin/env bash
# Debian's nginx serves HTTPS with TPM keys (EC P-256, RSA 2048, and a P-256
# key with an auth value given through ssl_password_file), the provider
# loaded from openssl.cnf.  nginx loads the keys in the master and
# forks 2 workers, which do every handshake: the fork path of ARCHITECTURE.md §7.
# curl fetches pages over many new connections; nginx is stopped by pid.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
# HWKEY_TEST_NGINX: a wrapper (scripts/asan-check.sh preloads the ASan runtime)
NGINX=${HWKEY_TEST_NGINX:-/usr/sbin/nginx}
[[ -x $NGINX ]] || { echo "SKIP: $NGINX not installed" >&2; exit 77; }
skip_if_missing curl
hw_setup

# Workers run as nobody: they must reach the files (not the keys' secrets,
# which never leave the TPM).
chmod 0755 "$HW_DIR"
mkdir -p www logs tmp
for i in 1 2 3 4 5; do echo "page $i $RANDOM$RANDOM" >"www/page$i.html"; done
chmod -R a+rX www

printf 'nginx auth %s\n' "$RANDOM$RANDOM" >pw.txt
for alg in ec:P-256 rsa:2048 auth:ec:P-256; do
    key=key-${alg//:/-}.pem
    pass=()
    if [[ $alg == auth:* ]]; then
        hw_keygen "${alg#auth:}" "$key" --auth-file pw.txt
        pass=(-passin file:pw.txt)
    else
        hw_keygen "$alg" "$key"
    fi
    ossl req -x509 -new -key "$key" "${pass[@]}" -subj /CN=hwkey.test -days 2 \
        -addext "subjectAltName=DNS:hwkey.test,IP:127.0.0.1" -out "${key%.pem}.crt" ||
        hw_fail "$alg: cannot make a certificate"
done

hw_nginx_start key "" ec:key-ec-P-256.crt:key-ec-P-256.pem rsa:key-rsa-2048.crt:key-rsa-2048.pem \
    auth:key-auth-ec-P-256.crt:key-auth-ec-P-256.pem:pw.txt

declare -A CRT=([ec]=key-ec-P-256.crt [rsa]=key-rsa-2048.crt [auth]=key-auth-ec-P-256.crt)
for kind in ec rsa auth; do
    crt=${CRT[$kind]}
    hw_nginx_fetch "$kind" "$crt"
    hw_log "$kind key: 20 HTTPS requests over new connections: ok"
done
grep -Eq 'TLSv1\.3|HTTP/1\.1" 200' logs/access.log || hw_fail "access log shows no request"

# Graceful stop: workers finish and exit; none may die on a signal.
hw_nginx_stop 'exited on signal|\[(alert|crit|emerg)\]'
[[ -z $(hw_transient_handles) ]] || hw_fail "transient objects left in the TPM: $(hw_transient_handles | tr '\n' ' ')"
echo "PASS: $HW_TEST"
