#!/usr/bin/env bash
# Which key management ends up holding a device key (docs/traps-openssl.md):
# loaded through PEM_read_bio_PrivateKey (nginx, curl) and through OSSL_STORE
# (openssl pkey/req/s_server), from a TSS2 PEM file, a TSS2 DER file, a
# reference file and handle:, with default + hwkey active from openssl.cnf,
# without and with default_properties = ?provider=default.  Each must give a
# key held by hwkey that signs (a key exported to the default provider would
# have lost its private half).  Then: errors of our own files reach the
# PEM_read path, and foreign files still load through the default provider.
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
hw_setup

LOADCHECK=$top_builddir/test/integration/loadcheck
[[ -x $LOADCHECK ]] || hw_fail "$LOADCHECK not built (make check builds it)"
hw_write_cnf pref.cnf "$HW_TCTI" "?provider=default"

hw_keygen ec:P-256 ec.pem
hw_keygen rsa:2048 rsa.pem
sed -e '1d' -e '$d' ec.pem | base64 -d >ec.der
H=0x81000042
hw_hwkey keygen ec:P-384 --persist "$H" --out handle.ref >/dev/null 2>persist.err ||
    hw_fail "keygen --persist: $(cat persist.err)"

check() {
    local cnf=$1 mode=$2 key=$3 out rc=0
    out=$(OPENSSL_CONF=$cnf timeout -k 5 "$HW_TIMEOUT" "$LOADCHECK" "$mode" "$key" 2>"check.err") || rc=$?
    hw_no_crash "$rc" check.err "loadcheck $mode $key"
    [[ $out == "provider=hwkey sign=ok" ]] ||
        hw_fail "$(basename "$cnf") $mode $key: $out (expected provider=hwkey sign=ok): $(head -c 400 check.err)"
}

for cnf in "$OPENSSL_CONF" "$HW_DIR/pref.cnf"; do
    for key in ec.pem rsa.pem handle.ref; do
        check "$cnf" pem "$key"
        check "$cnf" store "$key"
    done
    check "$cnf" store ec.der
    check "$cnf" store "handle:$H"
done

# openssl(1) itself, through the 'file:' store
for cnf in "$OPENSSL_CONF" "$HW_DIR/pref.cnf"; do
    OPENSSL_CONF=$cnf ossl pkey -in rsa.pem -pubout -out rsa.pub 2>err || hw_fail "openssl pkey -in rsa.pem: $(cat err)"
    grep -q "BEGIN PUBLIC KEY" rsa.pub || hw_fail "openssl pkey -in rsa.pem -pubout printed no key"
    OPENSSL_CONF=$cnf ossl pkey -in "handle:$H" -pubout -out h.pub 2>err || hw_fail "openssl pkey -in handle:$H: $(cat err)"
done

# Our file, failing: the device's reason reaches PEM_read_bio_PrivateKey's caller.
dead=$(hw_free_port 2)
hw_write_cnf dead.cnf "swtpm:host=127.0.0.1,port=$dead"
rc=0
OPENSSL_CONF=$HW_DIR/dead.cnf "$LOADCHECK" pem ec.pem >dead.out 2>dead.err || rc=$?
((rc == 1)) || hw_fail "loading through an unreachable TPM: exit $rc"
grep -q "device unreachable" dead.err || hw_fail "unreachable TPM not named: $(head -c 400 dead.err)"

# A malformed handle: names what is expected.
hw_expect_fail "expected handle:0x81000000..0x81FFFFFF" "openssl pkey -in handle:xyz" \
    ossl pkey -in handle:xyz -pubout

# Not ours: software keys still load through the default provider, no hwkey noise.
sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out soft.pem 2>/dev/null
out=$("$LOADCHECK" pem soft.pem 2>soft.err) || hw_fail "software key through PEM_read: $(cat soft.err)"
[[ $out == "provider=default sign=ok" ]] || hw_fail "software key: $out"
[[ ! -s soft.err ]] || hw_fail "software key left errors: $(head -c 300 soft.err)"
out=$("$LOADCHECK" store soft.pem 2>soft.err) || hw_fail "software key through the store: $(cat soft.err)"
[[ $out == "provider=default sign=ok" ]] || hw_fail "software key (store): $out"

hw_log "ok"
