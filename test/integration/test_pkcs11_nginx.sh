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

declare -A PORT
write_conf() {
    cat >nginx.conf <<CONF
daemon off;
master_process on;
worker_processes 2;
user nobody nogroup;
pid $HW_DIR/nginx.pid;
error_log $HW_DIR/logs/error.log info;
env OPENSSL_CONF;
env SOFTHSM2_CONF;
events { worker_connections 64; }
http {
    access_log $HW_DIR/logs/access.log;
    client_body_temp_path $HW_DIR/tmp/body;
    proxy_temp_path $HW_DIR/tmp/proxy;
    fastcgi_temp_path $HW_DIR/tmp/fastcgi;
    uwsgi_temp_path $HW_DIR/tmp/uwsgi;
    scgi_temp_path $HW_DIR/tmp/scgi;
    ssl_session_cache off;
    ssl_session_tickets off;
    server {
        listen 127.0.0.1:${PORT[ec]} ssl;
        ssl_certificate $HW_DIR/key-ec.crt;
        ssl_certificate_key $HW_DIR/key-ec.pem;
        root $HW_DIR/www;
    }
    server {
        listen 127.0.0.1:${PORT[rsa]} ssl;
        ssl_certificate $HW_DIR/key-rsa.crt;
        ssl_certificate_key $HW_DIR/key-rsa.pem;
        root $HW_DIR/www;
    }
}
CONF
}

started=0
for ((attempt = 0; attempt < 5 && started == 0; attempt++)); do
    PORT[ec]=$(hw_free_port)
    PORT[rsa]=$(hw_free_port)
    [[ ${PORT[ec]} != "${PORT[rsa]}" ]] || continue
    write_conf
    timeout 60 "$NGINX" -t -p "$HW_DIR" -c "$HW_DIR/nginx.conf" -e "$HW_DIR/logs/error.log" >nginx-t.log 2>&1 ||
        hw_fail "nginx -t rejects the configuration (token key not loaded?): $(cat nginx-t.log)"
    "$NGINX" -p "$HW_DIR" -c "$HW_DIR/nginx.conf" -e "$HW_DIR/logs/error.log" </dev/null >nginx.out 2>&1 &
    NGINX_PID=$!
    hw_register_pid "$NGINX_PID"
    for ((i = 0; i < 100; i++)); do
        if hwkey_port_busy "${PORT[ec]}" && hwkey_port_busy "${PORT[rsa]}"; then
            started=1
            break
        fi
        kill -0 "$NGINX_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ((started == 0)); then
        kill -0 "$NGINX_PID" 2>/dev/null && hwkey_stop_pid "$NGINX_PID" nginx
        grep -q 'Address already in use' logs/error.log nginx.out ||
            hw_fail "nginx did not start: $(tail -5 logs/error.log nginx.out)"
    fi
done
((started == 1)) || hw_fail "nginx: no free port after 5 attempts"
for ((i = 0; i < 50; i++)); do
    workers=$(ps -o pid= --ppid "$NGINX_PID" | wc -l)
    ((workers < 2)) || break
    sleep 0.1
done
((workers == 2)) || hw_fail "expected 2 nginx workers, found $workers"

for kind in ec rsa; do
    crt=key-$kind.crt
    for round in 1 2 3; do
        for i in 1 2 3 4 5; do
            # a new curl process each time: a new TCP connection, a full handshake
            body=$(curl --silent --show-error --fail --max-time 30 --cacert "$crt" \
                "https://127.0.0.1:${PORT[$kind]}/page$i.html" 2>curl.err) ||
                hw_fail "$kind: curl page$i (round $round): $(cat curl.err); nginx: $(tail -3 logs/error.log)"
            [[ $body == "$(cat "www/page$i.html")" ]] || hw_fail "$kind: page$i came back wrong"
        done
    done
    urls=()
    for i in 1 2 3 4 5; do urls+=("https://127.0.0.1:${PORT[$kind]}/page$i.html"); done
    curl --silent --show-error --fail --max-time 60 --cacert "$crt" -H 'Connection: close' \
        "${urls[@]}" >multi.out 2>curl.err || hw_fail "$kind: curl with 5 URLs: $(cat curl.err)"
    [[ $(grep -c '^page' multi.out) == 5 ]] || hw_fail "$kind: not all 5 pages came back"
    hw_log "$kind token key: 20 HTTPS requests over new connections through 2 workers: ok"
done
# both workers served (the fork path in each, not just one lucky worker)
served_by=$(grep -c . logs/access.log)
((served_by >= 40)) || hw_fail "access log has $served_by requests, expected 40"

# Graceful stop: workers finish and exit; none may die on a signal.
kill -QUIT "$NGINX_PID"
rc=0
for ((i = 0; i < 150; i++)); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$NGINX_PID" 2>/dev/null && hw_fail "nginx did not exit within 15 s of QUIT"
wait "$NGINX_PID" || rc=$?
((rc == 0)) || hw_fail "nginx exited with $rc"
if grep -E 'exited on signal|signal 11|\[(alert|crit|emerg)\]' logs/error.log; then
    hw_fail "nginx error log shows crashes or critical errors"
fi
grep -q 'exited with code 0' logs/error.log || hw_fail "error log does not show the workers exiting with code 0"
echo "PASS: $HW_TEST"
