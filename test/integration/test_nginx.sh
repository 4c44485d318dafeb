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

declare -A PORT
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

write_conf() {
    cat >nginx.conf <<CONF
daemon off;
master_process on;
worker_processes 2;
pid $HW_DIR/nginx.pid;
error_log $HW_DIR/logs/error.log info;
env OPENSSL_CONF;
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
        ssl_certificate $HW_DIR/key-ec-P-256.crt;
        ssl_certificate_key $HW_DIR/key-ec-P-256.pem;
        root $HW_DIR/www;
    }
    server {
        listen 127.0.0.1:${PORT[rsa]} ssl;
        ssl_certificate $HW_DIR/key-rsa-2048.crt;
        ssl_certificate_key $HW_DIR/key-rsa-2048.pem;
        root $HW_DIR/www;
    }
    server {
        listen 127.0.0.1:${PORT[auth]} ssl;
        ssl_certificate $HW_DIR/key-auth-ec-P-256.crt;
        ssl_certificate_key $HW_DIR/key-auth-ec-P-256.pem;
        ssl_password_file $HW_DIR/pw.txt;
        root $HW_DIR/www;
    }
}
CONF
}

started=0
for ((attempt = 0; attempt < 5 && started == 0; attempt++)); do
    PORT[ec]=$(hw_free_port)
    PORT[rsa]=$(hw_free_port)
    PORT[auth]=$(hw_free_port)
    [[ $(printf '%s\n' "${PORT[@]}" | sort -u | wc -l) == 3 ]] || continue
    write_conf
    "$NGINX" -t -p "$HW_DIR" -c "$HW_DIR/nginx.conf" -e "$HW_DIR/logs/error.log" >nginx-t.log 2>&1 ||
        hw_fail "nginx -t rejects the configuration (key not loaded?): $(cat nginx-t.log)"
    "$NGINX" -p "$HW_DIR" -c "$HW_DIR/nginx.conf" -e "$HW_DIR/logs/error.log" </dev/null >nginx.out 2>&1 &
    NGINX_PID=$!
    hw_register_pid "$NGINX_PID"
    for ((i = 0; i < 100; i++)); do
        if hwkey_port_busy "${PORT[ec]}" && hwkey_port_busy "${PORT[rsa]}" &&
            hwkey_port_busy "${PORT[auth]}"; then
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

declare -A CRT=([ec]=key-ec-P-256.crt [rsa]=key-rsa-2048.crt [auth]=key-auth-ec-P-256.crt)
for kind in ec rsa auth; do
    crt=${CRT[$kind]}
    for round in 1 2 3; do
        for i in 1 2 3 4 5; do
            # a new curl process each time: a new TCP connection, a full handshake
            body=$(curl --silent --show-error --fail --max-time 30 --cacert "$crt" \
                "https://127.0.0.1:${PORT[$kind]}/page$i.html" 2>curl.err) ||
                hw_fail "$kind: curl page$i (round $round): $(cat curl.err); nginx: $(tail -3 logs/error.log)"
            [[ $body == "$(cat "www/page$i.html")" ]] || hw_fail "$kind: page$i came back wrong"
        done
    done
    # Several requests, each on its own connection, in one curl.
    urls=()
    for i in 1 2 3 4 5; do urls+=("https://127.0.0.1:${PORT[$kind]}/page$i.html"); done
    curl --silent --show-error --fail --max-time 60 --cacert "$crt" -H 'Connection: close' \
        "${urls[@]}" >multi.out 2>curl.err || hw_fail "$kind: curl with 5 URLs: $(cat curl.err)"
    [[ $(grep -c '^page' multi.out) == 5 ]] || hw_fail "$kind: not all 5 pages came back"
    hw_log "$kind key: 20 HTTPS requests over new connections: ok"
done
grep -Eq 'TLSv1\.3|HTTP/1\.1" 200' logs/access.log || hw_fail "access log shows no request"

# Graceful stop: workers finish and exit; none may die on a signal.
kill -QUIT "$NGINX_PID"
rc=0
for ((i = 0; i < 150; i++)); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
wait "$NGINX_PID" || rc=$?
((rc == 0)) || hw_fail "nginx exited with $rc"
if grep -E 'exited on signal|\[(alert|crit|emerg)\]' logs/error.log; then
    hw_fail "nginx error log shows crashes or critical errors"
fi
[[ -z $(hw_transient_handles) ]] || hw_fail "transient objects left in the TPM: $(hw_transient_handles | tr '\n' ' ')"
echo "PASS: $HW_TEST"
