#!/usr/bin/env bash
# A deployment mistake that must explain itself (issue 6): Debian's nginx
# started as root with `user nobody;` and 4 workers, a SoftHSM token key, and
# a token store the workers cannot read (Debian's /var/lib/softhsm/tokens is
# root:softhsm 2770; here root-only 0700 is the same for nobody).  The
# master (root) loads the key; each worker, after fork, cannot use the token.
# nginx's error log must then carry one clear line per worker naming the
# token store path, the worker's uid and what to change (group / chmod),
# with the provider's reason first in the handshake's error (not SoftHSM's
# leftover "no such engine" lines).  Then the store is fixed and nginx
# reloaded: the new workers serve.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
NGINX=${HWKEY_TEST_NGINX:-/usr/sbin/nginx}
[[ -x $NGINX ]] || { echo "SKIP: $NGINX not installed" >&2; exit 77; }
skip_if_missing curl
[[ $(id -u) == 0 ]] || { echo "SKIP: $HW_TEST needs root (nginx must switch its workers to nobody)" >&2; exit 77; }
hw_p11_setup

hw_p11_keygen ec:P-256 perm-ec key-ec.pem
ossl req -x509 -new -key key-ec.pem -subj /CN=hwkey.test -days 2 \
    -addext "subjectAltName=IP:127.0.0.1" -out key-ec.crt 2>req.err ||
    hw_fail "cannot make a certificate with the token key: $(head -3 req.err)"
TOKENDIR=$(awk -F' *= *' '$1 == "directories.tokendir" {print $2}' "$SOFTHSM2_CONF")
[[ -d $TOKENDIR ]] || hw_fail "no token directory in $SOFTHSM2_CONF"
# Everything but the token store is readable by the workers: the store is the one cause.
chmod 0755 "$HW_DIR" "$HW_DIR/softhsm"
chmod 0644 "$SOFTHSM2_CONF" "$HW_P11_PIN_FILE"
chown -R root:root "$TOKENDIR"
chmod 0700 "$TOKENDIR"
mkdir -p www logs tmp
echo "perm page $RANDOM" >www/index.html
chmod -R a+rX www

PORT=$(hw_free_port)
hw_nginx4_conf "$PORT" "$HW_DIR/key-ec.crt" "$HW_DIR/key-ec.pem" "nobody nogroup" SOFTHSM2_CONF
hw_nginx4_start "$PORT"
for ((i = 0; i < 50; i++)); do (($(ps -o pid= --ppid "$NGX" | wc -l) >= 4)) && break; sleep 0.1; done
for w in $(ps -o pid= --ppid "$NGX"); do
    [[ $(stat -c %U "/proc/$w") == nobody ]] || hw_fail "worker $w does not run as nobody"
done

# Handshakes fail (4 workers: enough connections that every worker tries).
served=0
for ((i = 0; i < 16; i++)); do
    curl --silent --fail --max-time 10 --cacert key-ec.crt "https://127.0.0.1:$PORT/" >/dev/null 2>&1 &&
        served=$((served + 1))
done
((served == 0)) || hw_fail "$served handshakes succeeded with a token store the workers cannot read"
nobody_uid=$(id -u nobody)
hint=$(grep -m1 "SoftHSM token store $TOKENDIR .*uid $nobody_uid" logs/error.log || true)
[[ -n $hint ]] || hw_fail "error log does not name the token store and uid $nobody_uid: $(grep -iE 'hwkey|pkcs11|SSL' logs/error.log | head -5)"
grep -q "chmod" <<<"$hint" && grep -q "group" <<<"$hint" || hw_fail "the message does not say what to change: $hint"
grep -q "CKR_" <<<"$hint" || hw_fail "the message lacks the module's own CKR_ code: $hint"
# The provider's reason comes first in the handshake's error, before any leftover SoftHSM noise.
hs=$(grep -m1 'SSL_do_handshake() failed\|SSL_do_handshake\|ssl' logs/error.log | grep -m1 'error:' || true)
if [[ -n $hs ]]; then
    first=$(grep -o 'error:[^ ]*' <<<"$hs" | head -1)
    [[ $first == *hwkey* || $first == *provider* || $hs == *"(SSL: error:"*hwkey* ]] ||
        hw_log "note: first error of the handshake line: $first"
    grep -q 'no such engine' <<<"$hs" && hw_fail "SoftHSM's leftover 'no such engine' is in the handshake error: $hs"
fi
lines=$(grep -c "SoftHSM token store $TOKENDIR" logs/error.log)
lost=$(grep -c 'pkcs11: lost' logs/error.log || true)
hw_log "error log ($lines lines with the hint, $lost 'lost' lines for 16 handshakes): $hint"

# Half fixed, as on Debian: the store is root:GROUP 2770, but the token
# directory inside is still root's 0700 (softhsm2-util ran as root): the
# message must now name that directory.
chgrp nogroup "$TOKENDIR"
chmod 2770 "$TOKENDIR"
: >logs/error.log
kill -HUP "$NGX"
sleep 1                      # the reload: old workers leave, new ones start
for ((i = 0; i < 16; i++)); do
    curl --silent --fail --max-time 10 --cacert key-ec.crt "https://127.0.0.1:$PORT/" >/dev/null 2>&1 &&
        hw_fail "a handshake succeeded with the token directory still 0700"
done
sub=$(grep -m1 -o "SoftHSM token directory $TOKENDIR/[^ ]* (owner root:root, mode 0700)[^;]*uid $nobody_uid" logs/error.log || true)
[[ -n $sub ]] || hw_fail "error log does not name the 0700 token directory: $(grep -iE 'hwkey|pkcs11' logs/error.log | head -3)"
hw_log "store 2770 but token directory 0700: $sub"

# Fixed as the message says (group + chmod), then reloaded: the new workers serve.
chgrp -R nogroup "$TOKENDIR"
chmod -R g+rwX "$TOKENDIR"
kill -HUP "$NGX"
ok=0
for ((i = 0; i < 100 && ok < 10; i++)); do
    if curl --silent --fail --max-time 10 --cacert key-ec.crt "https://127.0.0.1:$PORT/" >page.out 2>/dev/null; then
        ok=$((ok + 1))
    else
        sleep 0.1
    fi
done
((ok >= 10)) || hw_fail "after fixing the store and reloading, only $ok handshakes succeeded: $(tail -5 logs/error.log)"
grep -qx "$(cat www/index.html)" page.out || hw_fail "the page came back wrong"
hw_log "after chgrp nogroup + chmod g+rwX and a reload: 10 handshakes ok"
kill -QUIT "$NGX"
for ((i = 0; i < 150; i++)); do kill -0 "$NGX" 2>/dev/null || break; sleep 0.1; done
! grep -E 'exited on signal|signal 11' logs/error.log || hw_fail "a worker crashed"
echo "PASS: $HW_TEST"
