#!/usr/bin/env bash
# The test module p11_latency.so (test/p11_latency/): forwards to SoftHSM,
# adds latency, and can be unplugged.  Checks what tests and benchmarks rely
# on: hwkey signs through it; a private-key operation takes at least the
# configured delay; unplugged, a new process gets CKR_DEVICE_ERROR naming the
# failure; plugged back, a new process signs again.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
hw_p11_setup

LAT_SO=$top_builddir/test/p11_latency/.libs/p11_latency.so
[[ -f $LAT_SO ]] || hw_fail "$LAT_SO not built (make check builds it)"
export P11_LATENCY_MODULE=$HW_P11_MODULE P11_LATENCY_CONTROL=$HW_DIR/link

hw_p11_keygen ec:P-256 lat ref.pem
printf 'hello' >msg
hw_write_p11_cnf lat.cnf after "$LAT_SO"

sign() { OPENSSL_CONF=lat.cnf timeout -k 5 60 openssl pkeyutl -sign -inkey ref.pem -rawin -digest sha256 -in msg -out "$1"; }
verify() { sw pkeyutl -verify -inkey pub.pem -pubin -rawin -digest sha256 -in msg -sigfile "$1" >/dev/null; }
hw_p11_hwkey pubkey ref.pem >pub.pem 2>pub.err || hw_fail "pubkey: $(cat pub.err)"

# 1. Plugged, no delay: a signature that verifies.
sign sig0 2>err0 || hw_fail "sign through p11_latency.so: $(cat err0)"
verify sig0 || hw_fail "signature through p11_latency.so does not verify"

# 2. A private-key operation takes at least P11_LATENCY_OP_US (a lower bound: sleeps only add).
start=$(date +%s%N)
P11_LATENCY_OP_US=400000 sign sig1 2>err1 || hw_fail "sign with latency: $(cat err1)"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
((elapsed_ms >= 400)) || hw_fail "a 400 ms operation delay took only $elapsed_ms ms"
verify sig1 || hw_fail "signature with latency does not verify"

# 3. Unplugged: one clear error naming the module's code, no crash.
echo unplugged >"$P11_LATENCY_CONTROL"
rc=0
sign sig2 2>err2 || rc=$?
((rc != 0)) || hw_fail "signed while the device was unplugged"
hw_no_crash "$rc" err2 "sign while unplugged"
grep -q 'CKR_DEVICE_ERROR' err2 || { cat err2; hw_fail "unplugged: no CKR_DEVICE_ERROR in the error"; }

# 4. Plugged back: a new process signs again.
echo plugged >"$P11_LATENCY_CONTROL"
sign sig3 2>err3 || hw_fail "sign after plugging back: $(cat err3)"
verify sig3 || hw_fail "signature after plugging back does not verify"
hw_log "p11_latency.so: signs, delays >= ${elapsed_ms} ms for 400 ms, unplug gives CKR_DEVICE_ERROR, replug works"
