#!/usr/bin/env bash
# hwkey demo on a fresh Debian 12 machine, one command:
#   installs the dependencies, builds, starts a software TPM (swtpm) in a
#   temporary directory, makes a TPM key with `hwkey keygen`, signs and
#   verifies a file, makes a self-signed certificate, completes a TLS 1.3
#   handshake through `openssl s_server` holding the TPM key, then serves
#   HTTPS from nginx with the same key and fetches a page.  If a SoftHSM token
#   can be set up, the same sign/verify with a PKCS#11 key.  Stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=$PWD
build=${BUILD_DIR:-$src/build}
. "$src/scripts/lib-proc.sh"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '    $ %s\n' "$*"; "$@"; }

say "Installing dependencies (scripts/install-deps.sh)"
scripts/install-deps.sh

say "Building hwkey in $build"
if [[ ! -x $src/configure || $src/configure.ac -nt $src/configure || $src/Makefile.am -nt $src/Makefile.in ]]; then
    autoreconf -fi
fi
mkdir -p "$build"
(cd "$build" && { [[ -f Makefile ]] || "$src/configure" -q; } && make -j2 >/dev/null)
HWKEY=$build/hwkey
HWKEY_SO=$build/.libs/hwkey.so

work=$(mktemp -d /tmp/hwkey-demo.XXXXXX)
pids=()
cleanup() {
    local rc=$? p
    set +e
    for p in "${pids[@]}"; do hwkey_stop_pid "$p"; done
    "$src/scripts/swtpm-stop.sh" "$work/swtpm"
    [[ -n ${softhsm_dir:-} ]] && rm -rf "$softhsm_dir"
    rm -rf "$work"
    ((rc == 0)) || echo "demo: FAILED (exit $rc)" >&2
    exit "$rc"
}
trap cleanup EXIT
cd "$work"

say "Starting a software TPM (swtpm) on a free loopback port"
read -r port swtpm_pid < <("$src/scripts/swtpm-start.sh" "$work/swtpm")
tcti="swtpm:host=127.0.0.1,port=$port"
echo "    swtpm pid $swtpm_pid, TCTI $tcti"
export HWKEY_TPM2_TCTI=$tcti

cat >openssl.cnf <<CNF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
hwkey = hwkey_sect
[default_sect]
activate = 1
[hwkey_sect]
module = $HWKEY_SO
tpm2-tcti = $tcti
activate = 1
CNF
printf 'openssl_conf = openssl_init\n[openssl_init]\nproviders = p\n[p]\ndefault = d\n[d]\nactivate = 1\n' >software.cnf
echo "    openssl.cnf loads the default provider and hwkey ($HWKEY_SO)"
export OPENSSL_CONF=$work/openssl.cnf

say "The TPM as hwkey sees it"
run "$HWKEY" info || true

say "1. A P-256 key generated inside the TPM"
run "$HWKEY" keygen ec:P-256 --out key.pem
echo "    key.pem holds only the TPM-wrapped blob:"
sed 's/^/      /' key.pem | head -4
echo "      ..."
run "$HWKEY" pubkey key.pem >key.pub
echo "    public key: $(openssl pkey -pubin -in key.pub -noout -text | grep -m1 'ASN1 OID')"

say "2. Sign a file with the TPM key, verify it in software"
head -c 100000 /dev/urandom >document.bin
run openssl pkeyutl -sign -inkey key.pem -rawin -digest sha256 -in document.bin -out document.sig
echo "    verification by the default provider alone (hwkey not loaded):"
OPENSSL_CONF=$work/software.cnf run openssl pkeyutl -verify -pubin -inkey key.pub -rawin -digest sha256 \
    -in document.bin -sigfile document.sig

say "3. A self-signed certificate signed by the TPM key"
run openssl req -x509 -new -key key.pem -subj /CN=hwkey-demo -days 30 \
    -addext "subjectAltName=DNS:hwkey-demo,IP:127.0.0.1" -out cert.pem
openssl x509 -in cert.pem -noout -subject -dates | sed 's/^/    /'

say "4. One TLS 1.3 handshake: openssl s_server holds the TPM key"
mkdir -p www
echo "hello from a TPM-backed TLS server" >www/hello.txt
tls_port=$(hwkey_free_port)
(cd www && exec openssl s_server -accept "127.0.0.1:$tls_port" -key "$work/key.pem" -cert "$work/cert.pem" \
    -naccept 1 -WWW </dev/null >"$work/s_server.log" 2>&1) &
pids+=($!)
for ((i = 0; i < 100; i++)); do grep -q '^ACCEPT' s_server.log 2>/dev/null && break; sleep 0.1; done
printf '    $ openssl s_client -connect 127.0.0.1:%s -tls1_3 -CAfile cert.pem\n' "$tls_port"
printf 'GET /hello.txt HTTP/1.0\r\n\r\n' |
    OPENSSL_CONF=$work/software.cnf openssl s_client -connect "127.0.0.1:$tls_port" -tls1_3 \
        -CAfile cert.pem -verify_return_error -servername hwkey-demo -ign_eof >s_client.log 2>&1
grep -E 'New, TLSv1.3|Peer signature type|Verify return code' s_client.log | sed 's/^ */    /' | sort -u
grep -q 'hello from a TPM-backed' s_client.log || { echo "demo: no data through TLS" >&2; exit 1; }
echo "    received: $(grep 'hello from' s_client.log)"

say "5. nginx serves HTTPS with the TPM key (key loaded in the master, used by 2 workers)"
chmod 0755 "$work"
chmod -R a+rX www
mkdir -p logs tmp
ngx_port=$(hwkey_free_port)
cat >nginx.conf <<CONF
daemon off;
master_process on;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/logs/error.log;
env OPENSSL_CONF;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $work/tmp/body;
    proxy_temp_path $work/tmp/proxy;
    fastcgi_temp_path $work/tmp/fastcgi;
    uwsgi_temp_path $work/tmp/uwsgi;
    scgi_temp_path $work/tmp/scgi;
    server {
        listen 127.0.0.1:$ngx_port ssl;
        ssl_certificate     $work/cert.pem;
        ssl_certificate_key $work/key.pem;    # the TPM key file
        root $work/www;
    }
}
CONF
/usr/sbin/nginx -p "$work" -c "$work/nginx.conf" -e "$work/logs/error.log" </dev/null >nginx.out 2>&1 &
ngx_pid=$!
pids+=("$ngx_pid")
for ((i = 0; i < 100; i++)); do hwkey_port_busy "$ngx_port" && break; sleep 0.1; done
run curl --silent --show-error --fail --cacert cert.pem "https://127.0.0.1:$ngx_port/hello.txt"
kill -QUIT "$ngx_pid"
wait "$ngx_pid" || true

if [[ -x $src/scripts/softhsm-setup.sh ]]; then
    say "6. The same with a PKCS#11 key on a SoftHSM token"
    softhsm_dir=$(mktemp -d /tmp/hwkey-demo-softhsm.XXXXXX)
    if eval "$("$src/scripts/softhsm-setup.sh" "$softhsm_dir" 2>/dev/null)" &&
        printf '1234' >"$softhsm_dir/pin" &&
        HWKEY_PKCS11_MODULE=${HWKEY_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so} \
            HWKEY_PKCS11_PIN_SOURCE=file:$softhsm_dir/pin \
            "$HWKEY" keygen ec:P-256 --uri 'pkcs11:token=hwkey-test;object=demo' --out p11key.pem 2>p11.err &&
        HWKEY_PKCS11_MODULE=${HWKEY_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so} \
            HWKEY_PKCS11_PIN_SOURCE=file:$softhsm_dir/pin \
            openssl pkeyutl -sign -inkey p11key.pem -rawin -digest sha256 -in document.bin -out p11.sig 2>>p11.err &&
        HWKEY_PKCS11_MODULE=${HWKEY_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so} \
            HWKEY_PKCS11_PIN_SOURCE=file:$softhsm_dir/pin \
            "$HWKEY" pubkey p11key.pem >p11key.pub 2>>p11.err &&
        OPENSSL_CONF=$work/software.cnf openssl pkeyutl -verify -pubin -inkey p11key.pub -rawin \
            -digest sha256 -in document.bin -sigfile p11.sig 2>>p11.err; then
        echo "    key generated on the token, reference file p11key.pem, signature verified in software"
        p11_done=1
    else
        echo "    (skipped: the PKCS#11 path is not available in this build: $(head -1 p11.err 2>/dev/null))"
    fi
fi

say "Done"
cat <<TXT
    - the TPM generated a P-256 key; key.pem holds only its TPM-wrapped blob
    - openssl(1) signed a file through hwkey; the default provider verified it
    - a self-signed certificate was signed by the TPM key
    - a TLS 1.3 handshake completed with the TPM key in openssl s_server
    - nginx served HTTPS with the TPM key file as ssl_certificate_key${p11_done:+
    - a SoftHSM token generated a P-256 key; openssl signed through its PKCS#11 reference file}
    Stopping swtpm and removing $work.
TXT
