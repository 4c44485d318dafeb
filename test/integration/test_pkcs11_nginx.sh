#!/usr/bin/env bash
# Debian's nginx serves HTTPS with PKCS#11 token keys (SoftHSM) named by
# reference files in ssl_certificate_key: an EC P-256 key made by
# `hwkey keygen --uri` and an RSA 2048 key made by pkcs11-tool.  The provider
# is loaded only through openssl.cnf (OPENSSL_CONF in the environment and
# `env OPENSSL_CONF;`).  nginx loads the keys in the master and forks 2
# workers (running as nobody, as Debian's nginx does), which do every
# handshake: the fork path of ARCHITECTURE.md §7 (stale object handles after
# fork fail every handshake with other providers).  curl fetches pages over
# new connections; nginx is stopped by pid with QUIT and must exit cleanly,
# with no worker killed by a signal (TRAPS.md: SoftHSM teardown at exit).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
# HWKEY_TEST_NGINX: a wrapper (scripts/asan-check.sh preloads the ASan runtime)
NGINX=${HWKEY_TEST_NGINX:-/usr/sbin/nginx}
[[ -x $NGINX ]] || { echo "SKIP: $NGINX not installed" >&2; exit 77; }
skip_if_missing curl
hw_p11_setup

hw_p11_keygen ec:P-256 ngx-ec key-ec.pem
p11tool --keypairgen --key-type rsa:2048 --label ngx-rsa --id 62 >/dev/null 2>&1 ||
    hw_fail "pkcs11-tool --keypairgen rsa:2048"
hw_p11_ref "pkcs11:token=$HW_P11_TOKEN;object=ngx-rsa;type=private" key-rsa.pem
for kind in ec rsa; do
    ossl req -x509 -new -key "key-$kind.pem" -subj /CN=hwkey.test -days 2 \
        -addext "subjectAltName=DNS:hwkey.test,IP:127.0.0.1" -out "key-$kind.crt" 2>req.err ||
        hw_fail "$kind: cannot make a certificate with the token key: $(head -3 req.err)"
done

# Workers run as nobody and open the token after fork: they need the token
# store and the PIN file (nothing else; the keys never leave the token).
chmod 0755 "$HW_DIR"
chown -R nobody "$HW_DIR/softhsm" "$HW_P11_PIN_FILE"
mkdir -p www logs tmp
for i in 1 2 3 4 5; do echo "page $i $RANDOM$RANDOM" >"www/page$i.html"; done
chmod -R a+rX www

hw_nginx_start -T 60 "token key" $'user nobody nogroup;\nenv SOFTHSM2_CONF;' \
    ec:key-ec.crt:key-ec.pem rsa:key-rsa.crt:key-rsa.pem

for kind in ec rsa; do
    crt=key-$kind.crt
    hw_nginx_fetch "$kind" "$crt"
    hw_log "$kind token key: 20 HTTPS requests over new connections through 2 workers: ok"
done
# both workers served (the fork path in each, not just one lucky worker)
served_by=$(grep -c . logs/access.log)
((served_by >= 40)) || hw_fail "access log has $served_by requests, expected 40"

# Graceful stop: workers finish and exit; none may die on a signal.
hw_nginx_stop -D 'exited on signal|signal 11|\[(alert|crit|emerg)\]'
grep -q 'exited with code 0' logs/error.log || hw_fail "error log does not show the workers exiting with code 0"
echo "PASS: $HW_TEST"
