# shellcheck shell=bash
# Two independent "HSMs" in one process, for the failover tests and the
# failover benchmark (docs/failover.md).  Sourced after lib.sh's hw_p11_setup.
#
# fo_setup: copies SoftHSM and p11_latency.so to $HW_DIR/softhsm-lat-{a,b}.so
# and $HW_DIR/lat-{a,b}.so (a copy at another path is a separate instance:
# finalizing one leaves the other alone), makes two tokens ha-lat-a and
# ha-lat-b (each copy shows only its own: P11_LATENCY_TOKEN=ha-%m), and
# exports per-copy control and stats files ($HW_DIR/lat-a.link, lat-a.stats).
# Sets FO_MODULES (the pkcs11-modules list).
#
# fo_import_same LABEL ALG: one software key imported onto both tokens.
# fo_keygen_each LABEL: a different key under the same label on each token.
# fo_ops lat-a|lat-b: private-key operations the copy has done (0 if none yet; summed
# over processes when P11_LATENCY_STATS holds "%p").
# fo_unplug / fo_plug lat-a|lat-b.
# fo_write_cnf FILE: openssl.cnf with hwkey, pkcs11-failover = yes, both modules.

FO_PIN=1234

fo_setup() {
    local lat_so=$top_builddir/test/p11_latency/.libs/p11_latency.so c
    [[ -f $lat_so ]] || hw_fail "$lat_so not built (make check builds it)"
    for c in lat-a lat-b; do
        cp "$HW_P11_MODULE" "$HW_DIR/softhsm-$c.so"
        cp "$lat_so" "$HW_DIR/$c.so"
        softhsm2-util --init-token --free --label "ha-$c" --pin "$FO_PIN" --so-pin 5678 \
            >/dev/null || hw_fail "softhsm2-util --init-token ha-$c"
        echo plugged >"$HW_DIR/$c.link"
    done
    export P11_LATENCY_MODULE=$HW_DIR/softhsm-%m.so P11_LATENCY_TOKEN=ha-%m
    export P11_LATENCY_CONTROL=$HW_DIR/%m.link P11_LATENCY_STATS=$HW_DIR/%m.stats
    FO_MODULES="$HW_DIR/lat-a.so,$HW_DIR/lat-b.so"
}

# The CLI on one token (through SoftHSM directly: provisioning, not failover).
fo_hwkey() {
    HWKEY_PKCS11_MODULE=$HW_P11_MODULE HWKEY_PKCS11_PIN_SOURCE=file:$HW_P11_PIN_FILE \
        timeout -k 5 "$HW_TIMEOUT" "$HWKEY_BIN" "$@"
}

fo_import_same() {
    local label=$1 alg=${2:-EC} c
    case $alg in
    EC) sw genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$label.soft.pem" ;;
    RSA) sw genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$label.soft.pem" ;;
    esac
    for c in lat-a lat-b; do
        fo_hwkey import "$label.soft.pem" --uri "pkcs11:token=ha-$c;object=$label" \
            --out "$label.$c.ref" >/dev/null 2>"$label.$c.err" ||
            hw_fail "hwkey import onto ha-$c: $(cat "$label.$c.err")"
    done
    rm -f "$label.soft.pem"
}

fo_keygen_each() {
    local label=$1 c
    for c in lat-a lat-b; do
        fo_hwkey keygen ec:P-256 --uri "pkcs11:token=ha-$c;object=$label" --out "$label.$c.ref" \
            >/dev/null 2>"$label.$c.err" || hw_fail "hwkey keygen on ha-$c: $(cat "$label.$c.err")"
    done
}

fo_ops() { # summed over the per-process files when P11_LATENCY_STATS has "%p"
    local f v sum=0
    for f in "$HW_DIR/$1.stats" "$HW_DIR/$1".[0-9]*.stats; do
        [[ -f $f ]] || continue
        v=$(sed -n 's/.*ops=\([0-9]*\).*/\1/p' "$f" 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

fo_unplug() { echo unplugged >"$HW_DIR/$1.link"; }
fo_plug() { echo plugged >"$HW_DIR/$1.link"; }

fo_write_cnf() {
    local file=$1
    {
        echo "openssl_conf = openssl_init"
        echo "[openssl_init]"
        echo "providers = provider_sect"
        echo "[provider_sect]"
        echo "default = default_sect"
        echo "hwkey = hwkey_sect"
        echo "[default_sect]"
        echo "activate = 1"
        echo "[hwkey_sect]"
        echo "module = $HWKEY_SO"
        echo "tpm2-tcti = $HW_P11_NO_TPM"
        echo "pkcs11-modules = $FO_MODULES"
        echo "pkcs11-failover = yes"
        echo "pkcs11-pin-source = file:$HW_P11_PIN_FILE"
        echo "log-level = 1"
        echo "activate = 1"
    } >"$file"
}
