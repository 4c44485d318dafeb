#!/usr/bin/env bash
# The nginx configurations that the documentation presents as complete are
# accepted by nginx as written: the ```nginx block of docs/operations.md
# ("A complete nginx.conf") and the README's.  Only absolute paths that need
# files are moved into the test directory (certificate, TPM key file made by
# `hwkey keygen`, logs, pid, root); everything else is kept verbatim.
# `nginx -t` then loads the TPM key through hwkey from openssl.cnf.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
NGINX=${HWKEY_TEST_NGINX:-/usr/sbin/nginx}
[[ -x $NGINX ]] || { echo "SKIP: $NGINX not installed" >&2; exit 77; }
getent passwd www-data >/dev/null || { echo "SKIP: no user www-data" >&2; exit 77; }
hw_setup

hw_keygen ec:P-256 key.pem
ossl req -x509 -new -key key.pem -subj /CN=www.example.org -days 2 -out cert.pem 2>req.err ||
    hw_fail "cannot make a certificate: $(cat req.err)"
mkdir -p logs www

# extract FILE AFTER_REGEX: the first ```nginx block after the line matching AFTER_REGEX
extract() {
    awk -v after="$2" '$0 ~ after { seen = 1 } seen && /^```nginx/ { inb = 1; next } inb && /^```/ { exit } inb' "$1"
}

check() { # NAME FILE AFTER_REGEX
    local name=$1 conf=$HW_DIR/$1.conf
    extract "$2" "$3" >"$conf.orig"
    [[ -s $conf.orig ]] || hw_fail "$name: no \`\`\`nginx block found in $2"
    grep -q '^events' "$conf.orig" || hw_fail "$name: no events block (nginx refuses a configuration without one)"
    sed -E -e "s#/etc/(hwkey|nginx/tls)/[a-z.]*(crt|cert\.pem)#$HW_DIR/cert.pem#" \
        -e "s#/etc/(hwkey|nginx/tls)/[a-z.]*(\.key|key\.pem)#$HW_DIR/key.pem#" \
        -e "s#/var/log/nginx/#$HW_DIR/logs/#g" -e "s#/run/nginx\.pid#$HW_DIR/nginx.pid#" \
        -e "s#/var/www/html#$HW_DIR/www#" "$conf.orig" >"$conf"
    if ! timeout 60 "$NGINX" -t -p "$HW_DIR" -c "$conf" -e "$HW_DIR/logs/error.log" >"$conf.t" 2>&1; then
        hw_fail "$name: nginx -t rejects it: $(cat "$conf.t")
--- as tested:
$(cat "$conf")"
    fi
    grep -q 'test is successful' "$conf.t" || hw_fail "$name: nginx -t: $(cat "$conf.t")"
    hw_log "$name: nginx -t accepts it: ok"
}

check operations "$top_srcdir/docs/operations.md" '^## 6\. A complete nginx\.conf'
check readme "$top_srcdir/README.md" '^## nginx'
echo "PASS: $HW_TEST"
