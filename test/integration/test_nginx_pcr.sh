#!/usr/bin/env bash
# nginx with a PCR-bound TPM key (hwkey keygen --pcr): the master loads the
# key file, the 2 forked workers satisfy its policy for every handshake.
#  - pages come back over new connections (full handshakes);
#  - after tpm2_pcrextend of the bound PCR, handshakes on that server fail,
#    nginx's error log names "policy check failed: PCR 11 changed", while
#    a server with an unbound key in the same workers keeps serving (the
#    failure marks nothing broken: no reconnect, no lost device);
#  - nginx stops cleanly; nothing is left in the TPM.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
NGINX=${HWKEY_TEST_NGINX:-/usr/sbin/nginx}
[[ -x $NGINX ]] || { echo "SKIP: $NGINX not installed" >&2; exit 77; }
skip_if_missing curl tpm2_pcrextend od
hw_setup
chmod 0755 "$HW_DIR"
mkdir -p www logs tmp
for i in 1 2 3 4 5; do echo "page $i $RANDOM$RANDOM" >"www/page$i.html"; done
chmod -R a+rX www

hw_keygen ec:P-256 bound.pem --pcr sha256:11
hw_keygen ec:P-256 free.pem
for k in bound free; do
    ossl req -x509 -new -key $k.pem -subj /CN=hwkey.test -days 2 \
        -addext "subjectAltName=DNS:hwkey.test,IP:127.0.0.1" -out $k.crt ||
        hw_fail "$k: cannot make a certificate"
done
hw_nginx_start key "" bound:bound.crt:bound.pem free:free.crt:free.pem
hw_nginx_fetch bound bound.crt
hw_nginx_fetch free free.crt
hw_log "PCR-bound key: 20 HTTPS requests through the workers: ok"

tpm2_pcrextend "11:sha256=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" || hw_fail "tpm2_pcrextend 11"
for i in 1 2 3; do
    if curl --silent --max-time 30 --cacert bound.crt "https://127.0.0.1:${HW_NGINX_PORT[bound]}/page1.html" \
        >/dev/null 2>&1; then
        hw_fail "a handshake with the PCR-bound key succeeded after PCR 11 changed"
    fi
done
grep -q 'policy check failed.*PCR 11 changed' logs/error.log ||
    hw_fail "nginx's error log does not name the changed PCR: $(tail -5 logs/error.log)"
hw_nginx_fetch free free.crt
kill -0 "$HW_NGINX_PID" || hw_fail "nginx died"
hw_log "after PCR 11 changed: the bound server refuses with the PCR named, the other serves"

# [crit] is how nginx logs a failed handshake: only the policy failures may be there.
! grep '\[crit\]' logs/error.log | grep -v 'policy check failed: *PCR 11 changed' ||
    hw_fail "nginx logged other critical errors"
hw_nginx_stop 'exited on signal|\[(alert|emerg)\]'
[[ -z $(hw_transient_handles) ]] || hw_fail "transient objects left in the TPM: $(hw_transient_handles | tr '\n' ' ')"
hw_log "PASS"
