# shellcheck shell=bash disable=SC2034  # variables set here are used by the tests
# Sourced by every integration test (bash).  Runs under `make check`, where
# top_builddir/top_srcdir are exported, or standalone:
#   top_builddir=/path/to/build test/integration/test_x.sh
# (top_builddir defaults to the current directory when it holds .libs/hwkey.so,
# else to the source tree, i.e. an in-tree build).
#
# hw_setup:   temp dir, a fresh manufactured swtpm on free loopback ports,
#             openssl.cnf with default + hwkey (OPENSSL_CONF exported), and a
#             trap that stops everything started (by pid) and removes the dir.
# Exit 77 = skip (a tool is missing), 1 = failure.

set -euo pipefail

: "${top_srcdir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
if [[ -z ${top_builddir:-} ]]; then
    # standalone: the current directory if it is a build tree, else in-tree
    if [[ -f $PWD/.libs/hwkey.so ]]; then top_builddir=$PWD; else top_builddir=$top_srcdir; fi
fi
top_srcdir=$(cd "$top_srcdir" && pwd)
top_builddir=$(cd "$top_builddir" && pwd)
export top_srcdir top_builddir

. "$top_srcdir/scripts/lib-proc.sh"

HWKEY_SO=$top_builddir/.libs/hwkey.so
HWKEY_BIN=$top_builddir/hwkey
HW_TEST=$(basename "$0" .sh)
# Every TPM-touching command runs under a timeout: a hang must fail, not stall CI.
HW_TIMEOUT=${HW_TIMEOUT:-120}

# Nothing from the caller's environment may change what the tests see.
unset HWKEY_TPM2_TCTI HWKEY_TPM2_PARENT HWKEY_LOG HWKEY_ASYNC HWKEY_ASYNC_THREADS TPM2OPENSSL_TCTI OPENSSL_MODULES \
    HWKEY_PKCS11_MODULE HWKEY_PKCS11_PIN_SOURCE HWKEY_PKCS11_QUIRKS HWKEY_PKCS11_MODULES \
    HWKEY_PKCS11_FAILOVER 2>/dev/null || true

HW_DIR=
HW_PIDS=()          # extra processes to stop at exit (servers, ...)
HW_TABRMD_DIRS=()

hw_log() { printf '%s: %s\n' "$HW_TEST" "$*" >&2; }

hw_fail() {
    printf 'FAIL: %s: %s\n' "$HW_TEST" "$*" >&2
    exit 1
}

skip_if_missing() {
    local cmd
    for cmd in "$@"; do
        if ! command -v "$cmd" >/dev/null 2>&1; then
            printf 'SKIP: %s: %s not installed (scripts/install-deps.sh)\n' "$HW_TEST" "$cmd" >&2
            exit 77
        fi
    done
}

# hw_free_port [COUNT]: a free loopback port (COUNT consecutive ones).
hw_free_port() { hwkey_free_port "${1:-1}"; }

hw_register_pid() { HW_PIDS+=("$1"); }

hw_cleanup() {
    local rc=$? i
    set +e
    for ((i = ${#HW_PIDS[@]} - 1; i >= 0; i--)); do
        hwkey_stop_pid "${HW_PIDS[i]}"
    done
    for i in "${HW_TABRMD_DIRS[@]}"; do
        "$top_srcdir/scripts/tabrmd-stop.sh" "$i"
    done
    if [[ -n $HW_DIR && -d $HW_DIR ]]; then
        "$top_srcdir/scripts/swtpm-stop.sh" "$HW_DIR/swtpm"
        if ((rc != 0 && rc != 77)) && [[ -s $HW_DIR/swtpm/swtpm.log ]]; then
            hw_log "last swtpm log lines:"
            tail -5 "$HW_DIR/swtpm/swtpm.log" >&2
        fi
        if [[ -n ${HW_KEEP:-} ]]; then
            hw_log "kept $HW_DIR"
        else
            rm -rf "$HW_DIR"
        fi
    fi
    exit "$rc"
}

# hw_write_cnf FILE TCTI [DEFAULT_PROPERTIES]: openssl.cnf that activates
# the default provider and hwkey (by full path) with tpm2-tcti = TCTI.
hw_write_cnf() {
    local file=$1 tcti=$2 props=${3:-}
    {
        echo "openssl_conf = openssl_init"
        echo "[openssl_init]"
        echo "providers = provider_sect"
        [[ -n $props ]] && echo "alg_section = algorithm_sect"
        echo "[provider_sect]"
        echo "default = default_sect"
        echo "hwkey = hwkey_sect"
        echo "[default_sect]"
        echo "activate = 1"
        echo "[hwkey_sect]"
        echo "module = $HWKEY_SO"
        echo "tpm2-tcti = $tcti"
        echo "activate = 1"
        if [[ -n $props ]]; then
            echo "[algorithm_sect]"
            echo "default_properties = $props"
        fi
    } >"$file"
}

# Software-only configuration: the default provider and nothing else.
hw_write_sw_cnf() {
    printf '%s\n' "openssl_conf = openssl_init" "[openssl_init]" "providers = provider_sect" \
        "[provider_sect]" "default = default_sect" "[default_sect]" "activate = 1" >"$1"
}

hw_setup() {
    skip_if_missing openssl swtpm swtpm_setup tpm2_getcap timeout
    [[ -f $HWKEY_SO ]] || hw_fail "$HWKEY_SO not built (set top_builddir, run make)"
    [[ -x $HWKEY_BIN ]] || hw_fail "$HWKEY_BIN not built (set top_builddir, run make)"
    HW_DIR=$(mktemp -d "${TMPDIR:-/tmp}/hwkey-$HW_TEST.XXXXXX")
    trap hw_cleanup EXIT
    local out
    out=$("$top_srcdir/scripts/swtpm-start.sh" "$HW_DIR/swtpm") || hw_fail "cannot start swtpm"
    read -r HW_PORT HW_SWTPM_PID <<<"$out"
    HW_TCTI="swtpm:host=127.0.0.1,port=$HW_PORT"
    export TPM2TOOLS_TCTI=$HW_TCTI
    hw_write_cnf "$HW_DIR/openssl.cnf" "$HW_TCTI"
    hw_write_sw_cnf "$HW_DIR/openssl-sw.cnf"
    export OPENSSL_CONF=$HW_DIR/openssl.cnf
    HW_SW_CNF=$HW_DIR/openssl-sw.cnf
    cd "$HW_DIR"
}

# hw_tabrmd: tpm2-abrmd in front of the test's swtpm; sets HW_TABRMD_TCTI
# and exports DBUS_SESSION_BUS_ADDRESS.
hw_tabrmd() {
    skip_if_missing tpm2-abrmd dbus-daemon
    local dir=$HW_DIR/tabrmd
    HW_TABRMD_DIRS+=("$dir")
    # HW_TABRMD_TPM: the TPM's TCTI when it is not hw_setup's TCP swtpm
    HW_TABRMD_TCTI=$("$top_srcdir/scripts/tabrmd-start.sh" "$dir" "${HW_TABRMD_TPM:-$HW_PORT}") ||
        hw_fail "cannot start tpm2-abrmd"
    . "$dir/tabrmd.env"
}

# Runners.  ossl: openssl with hwkey (OPENSSL_CONF); sw: default provider only.
ossl() { timeout -k 5 "$HW_TIMEOUT" openssl "$@"; }
sw() { OPENSSL_CONF=$HW_SW_CNF timeout -k 5 "$HW_TIMEOUT" openssl "$@"; }
# The CLI reads the TCTI from the environment (ARCHITECTURE.md §5).
hw_hwkey() { HWKEY_TPM2_TCTI=${HW_CLI_TCTI:-$HW_TCTI} timeout -k 5 "$HW_TIMEOUT" "$HWKEY_BIN" "$@"; }

# hw_keygen ALG FILE [ARGS...]: a TPM key through `hwkey keygen`.
hw_keygen() {
    local alg=$1 file=$2
    shift 2
    hw_hwkey keygen "$alg" --out "$file" "$@" 2>"$file.err" ||
        hw_fail "hwkey keygen $alg --out $file: $(cat "$file.err")"
    grep -q -- "-----BEGIN TSS2 PRIVATE KEY-----" "$file" ||
        hw_fail "hwkey keygen $alg wrote no TSS2 PRIVATE KEY PEM"
}

# hw_no_crash RC STDERR_FILE WHAT: the process ended by itself, cleanly.
hw_no_crash() {
    local rc=$1 err=$2 what=$3
    ((rc != 124)) || hw_fail "$what: timed out after ${HW_TIMEOUT}s"
    ((rc < 126)) || hw_fail "$what: exit $rc (killed by a signal or not runnable): $(tail -3 "$err")"
    if grep -qiE 'segmentation fault|core dumped|aborted|AddressSanitizer|double free|stack smashing' "$err"; then
        hw_fail "$what: crashed: $(tail -3 "$err")"
    fi
}

# hw_expect_fail REGEX WHAT CMD...: CMD must fail (non-zero, no crash) and
# its stderr must match REGEX (the message naming the failure).
hw_expect_fail() {
    local regex=$1 what=$2 rc=0 err
    shift 2
    err=$(mktemp "$HW_DIR/err.XXXXXX")
    "$@" >/dev/null 2>"$err" || rc=$?
    ((rc != 0)) || hw_fail "$what: succeeded, expected a failure"
    hw_no_crash "$rc" "$err" "$what"
    grep -qE "$regex" "$err" || hw_fail "$what: message does not name the failure (/$regex/): $(head -c 600 "$err")"
    HW_LAST_ERR=$err
}

# assert_one_error_line FILE [REGEX]: the CLI contract: exactly one
# non-empty line on stderr (matching REGEX if given).
assert_one_error_line() {
    local file=$1 regex=${2:-} n
    n=$(grep -c . "$file" || true)
    ((n == 1)) || hw_fail "expected one error line, got $n: $(head -c 600 "$file")"
    [[ -z $regex ]] || grep -qE "$regex" "$file" || hw_fail "error line does not match /$regex/: $(cat "$file")"
}

# hw_flip_byte FILE OFFSET: changes one byte in place (XOR 0x5a, never a no-op).
hw_flip_byte() {
    local file=$1 pos=$2 byte
    byte=$(od -An -tu1 -j "$pos" -N1 "$file" | tr -d ' ')
    [[ -n $byte ]] || hw_fail "hw_flip_byte: $file has no byte at $pos"
    printf "\\x$(printf %02x $((byte ^ 0x5a)))" | dd of="$file" bs=1 seek="$pos" conv=notrunc status=none
}

# hw_transient_handles: the transient handles left in the TPM (one a line).
hw_transient_handles() {
    TPM2TOOLS_TCTI=$HW_TCTI timeout 30 tpm2_getcap handles-transient | grep -o '0x[0-9a-fA-F]*' || true
}

# ---------------------------------------------------------------------------
# PKCS#11 on SoftHSM (test_pkcs11_*.sh).  hw_p11_setup is hw_setup's
# counterpart without a TPM: temp dir, a fresh SoftHSM token (scripts/
# softhsm-setup.sh, SOFTHSM2_CONF exported), a PIN file, and openssl.cnf
# with default + hwkey (pkcs11-module, pkcs11-pin-source = file:PIN),
# OPENSSL_CONF exported.  Sets HW_P11_MODULE, HW_P11_TOKEN, HW_P11_PIN,
# HW_P11_PIN_FILE, HW_SW_CNF.  The TPM backend gets a TCTI that nothing
# listens on, so no test depends on a host TPM.
HW_P11_MODULE=/usr/lib/softhsm/libsofthsm2.so
# p11-kit's client module (p11-kit server tests): where p11-kit says its modules are.
HW_P11KIT_CLIENT=$(pkg-config --variable=p11_module_path p11-kit-1 2>/dev/null)/p11-kit-client.so
HW_P11_TOKEN=hwkey-test
HW_P11_PIN=1234

# hw_write_p11_cnf FILE [ORDER] [MODULE] [PIN_SOURCE]: ORDER = after (default
# provider listed first, the default) | before (hwkey first) | noconf (hwkey
# without any pkcs11 parameter).  MODULE/PIN_SOURCE default to the test's.
hw_write_p11_cnf() {
    local file=$1 order=${2:-after} module=${3:-$HW_P11_MODULE} pinsrc=${4:-file:$HW_P11_PIN_FILE}
    {
        echo "openssl_conf = openssl_init"
        echo "[openssl_init]"
        echo "providers = provider_sect"
        echo "[provider_sect]"
        [[ $order == before ]] && echo "hwkey = hwkey_sect"
        echo "default = default_sect"
        [[ $order != before ]] && echo "hwkey = hwkey_sect"
        echo "[default_sect]"
        echo "activate = 1"
        echo "[hwkey_sect]"
        echo "module = $HWKEY_SO"
        echo "tpm2-tcti = $HW_P11_NO_TPM"
        if [[ $order != noconf ]]; then
            echo "pkcs11-module = $module"
            echo "pkcs11-pin-source = $pinsrc"
        fi
        echo "activate = 1"
    } >"$file"
}

hw_p11_setup() {
    skip_if_missing openssl pkcs11-tool softhsm2-util timeout
    if [[ ! -f $HW_P11_MODULE ]]; then
        printf 'SKIP: %s: %s not installed (softhsm2)\n' "$HW_TEST" "$HW_P11_MODULE" >&2
        exit 77
    fi
    [[ -f $HWKEY_SO ]] || hw_fail "$HWKEY_SO not built (set top_builddir, run make)"
    [[ -x $HWKEY_BIN ]] || hw_fail "$HWKEY_BIN not built (set top_builddir, run make)"
    HW_DIR=$(mktemp -d "${TMPDIR:-/tmp}/hwkey-$HW_TEST.XXXXXX")
    trap hw_cleanup EXIT
    local env
    env=$(HWKEY_SOFTHSM_LABEL=$HW_P11_TOKEN HWKEY_SOFTHSM_PIN=$HW_P11_PIN \
        "$top_srcdir/scripts/softhsm-setup.sh" "$HW_DIR/softhsm") || hw_fail "cannot create a SoftHSM token"
    eval "$env"
    HW_P11_PIN_FILE=$HW_DIR/user.pin
    printf '%s\n' "$HW_P11_PIN" >"$HW_P11_PIN_FILE"
    HW_P11_NO_TPM="swtpm:host=127.0.0.1,port=$(hw_free_port 2)"
    hw_write_p11_cnf "$HW_DIR/openssl.cnf"
    hw_write_sw_cnf "$HW_DIR/openssl-sw.cnf"
    export OPENSSL_CONF=$HW_DIR/openssl.cnf
    HW_SW_CNF=$HW_DIR/openssl-sw.cnf
    cd "$HW_DIR"
}

# p11tool ARGS...: pkcs11-tool on the test token, logged in, with the
# software-only openssl.cnf (pkcs11-tool itself uses OpenSSL).
p11tool() {
    OPENSSL_CONF=$HW_SW_CNF timeout -k 5 "$HW_TIMEOUT" pkcs11-tool --module "$HW_P11_MODULE" \
        --token-label "$HW_P11_TOKEN" --login --pin "$HW_P11_PIN" "$@"
}

# hw_p11_hwkey ARGS...: the CLI with the token's module and PIN file.
hw_p11_hwkey() {
    HWKEY_PKCS11_MODULE=$HW_P11_MODULE HWKEY_PKCS11_PIN_SOURCE=file:$HW_P11_PIN_FILE \
        timeout -k 5 "$HW_TIMEOUT" "$HWKEY_BIN" "$@"
}

# hw_p11_keygen ALG LABEL FILE: a key on the token through `hwkey keygen
# --uri`, FILE = the reference file it writes.
hw_p11_keygen() {
    local alg=$1 label=$2 file=$3
    hw_p11_hwkey keygen "$alg" --uri "pkcs11:token=$HW_P11_TOKEN;object=$label" --out "$file" \
        >"$file.out" 2>"$file.err" || hw_fail "hwkey keygen $alg --uri ...object=$label: $(cat "$file.err")"
    grep -q -- "-----BEGIN PKCS#11 PROVIDER URI-----" "$file" ||
        hw_fail "hwkey keygen $alg --uri wrote no PKCS#11 PROVIDER URI reference file"
}

# hw_p11_ref URI FILE [DESC]: a reference file made by hand (docs/pkcs11.md),
# the body pkcs11-provider's SEQUENCE { VisibleString desc, UTF8String uri }
# with its description "PKCS#11 Provider URI v1.0" unless DESC is given
# (hwkey reads any description; files of hwkey < 7.8 carry another one).
hw_p11_ref() {
    local uri=$1 file=$2 desc=${3:-PKCS#11 Provider URI v1.0}
    hw_p11prov_der "$uri" "$desc" "$file.der"
    {
        echo "-----BEGIN PKCS#11 PROVIDER URI-----"
        base64 -w 64 <"$file.der"
        echo "-----END PKCS#11 PROVIDER URI-----"
    } >"$file" || hw_fail "cannot write the reference file $file"
}

# hw_p11prov_der URI DESC OUT: the DER of pkcs11-provider's P11PROV_PK11_URI
# (src/pk11_uri.pre: SEQUENCE { desc VISIBLESTRING, uri UTF8STRING }), built
# by openssl asn1parse -genconf, independently of hwkey's encoder.
hw_p11prov_der() {
    local uri=$1 desc=$2 out=$3
    # openssl.cnf syntax: '#' starts a comment and '$' a variable unless escaped.
    desc=$(sed 's/[\\#$]/\\&/g' <<<"$desc")
    uri=$(sed 's/[\\#$]/\\&/g' <<<"$uri")
    printf 'asn1 = SEQUENCE:ref\n[ref]\ndesc = VISIBLESTRING:%s\nuri = UTF8:%s\n' \
        "$desc" "$uri" >"$out.asn1"
    OPENSSL_CONF=$HW_SW_CNF openssl asn1parse -genconf "$out.asn1" -noout -out "$out" ||
        hw_fail "openssl asn1parse -genconf cannot encode the reference to $uri"
}

# hw_assert_p11prov_ref FILE: FILE is byte for byte the reference file that
# pkcs11-provider 1.2 reads: label "PKCS#11 PROVIDER URI", DER body equal to
# hw_p11prov_der of its own URI with the description "PKCS#11 Provider URI v1.0"
# (pkcs11-provider skips any other description).
hw_assert_p11prov_ref() {
    local file=$1 uri
    [[ $(head -1 "$file") == "-----BEGIN PKCS#11 PROVIDER URI-----" &&
        $(tail -1 "$file") == "-----END PKCS#11 PROVIDER URI-----" ]] ||
        hw_fail "$file is not a PKCS#11 PROVIDER URI PEM block: $(head -c 200 "$file")"
    sed '1d;$d' "$file" | base64 -d >"$file.body" || hw_fail "$file: the PEM body is not base64"
    uri=$(OPENSSL_CONF=$HW_SW_CNF openssl asn1parse -inform DER -in "$file.body" |
        sed -n 's/^.*prim: UTF8STRING *://p')
    [[ $uri == pkcs11:* ]] || hw_fail "$file holds no UTF8String pkcs11: URI"
    hw_p11prov_der "$uri" "PKCS#11 Provider URI v1.0" "$file.expect"
    cmp -s "$file.body" "$file.expect" ||
        hw_fail "$file is not pkcs11-provider's format: $(OPENSSL_CONF=$HW_SW_CNF openssl asn1parse -inform DER -in "$file.body" 2>&1)"
}

# hw_p11_store_supported: true once `openssl pkey -in 'pkcs11:...'` is
# served by an OSSL_STORE loader for the pkcs11: scheme.
hw_p11_store_supported() {
    local uri=$1
    ossl pkey -in "$uri" -pubout -out "$HW_DIR/store-probe.pub" 2>"$HW_DIR/store-probe.err" && return 0
    ! grep -q 'unregistered scheme:.*scheme=pkcs11' "$HW_DIR/store-probe.err"
}

# ---------------------------------------------------------------------------
# TLS round trips with openssl s_server/s_client (test_tls.sh,
# test_pkcs11_tls.sh).  hw_tls_www: a www/ directory in the test dir with
# token.txt holding a fresh random token (HW_TLS_TOKEN = PREFIX-...).
hw_tls_www() {
    mkdir www
    HW_TLS_TOKEN="$1-$RANDOM-$RANDOM-$$"
    echo "$HW_TLS_TOKEN" >www/token.txt
}

# hw_tls_start_server KEY CERT NACCEPT [S_SERVER ARGS...]: s_server in the
# background on a free port, serving www/; sets SRV_PORT and SRV_PID.
# Retries on a bind race.  hwkey logs at level 3 into the server log, so
# hw_tls_no_export can check what the handshakes did.
hw_tls_start_server() {
    local key=$1 crt=$2 naccept=$3 attempt i
    shift 3
    for ((attempt = 0; attempt < 5; attempt++)); do
        SRV_PORT=$(hw_free_port)
        (cd www && HWKEY_LOG=3 exec timeout -k 5 "$HW_TIMEOUT" openssl s_server -accept "127.0.0.1:$SRV_PORT" \
            -key "$HW_DIR/$key" -cert "$HW_DIR/$crt" -naccept "$naccept" -WWW "$@" \
            </dev/null >"$HW_DIR/server.$SRV_PORT.log" 2>&1) &
        SRV_PID=$!
        hw_register_pid "$SRV_PID"
        for ((i = 0; i < 100; i++)); do
            if grep -q '^ACCEPT' "$HW_DIR/server.$SRV_PORT.log" 2>/dev/null; then return 0; fi
            kill -0 "$SRV_PID" 2>/dev/null || break
            sleep 0.1
        done
        grep -q 'Address already in use' "$HW_DIR/server.$SRV_PORT.log" ||
            hw_fail "s_server with $key did not start: $(tail -5 "$HW_DIR/server.$SRV_PORT.log")"
    done
    hw_fail "s_server: no free port after 5 attempts"
}

# hw_tls_no_export NAME: after the s_server of hw_tls_start_server has
# exited, its log must show that it started with hwkey logging and that
# OpenSSL never tried to export the device key to another provider (issue
# 7.16: libssl's per-handshake EVP_PKEY_digestsign_supports_digest and
# EVP_DigestSignInit_ex fetched the default provider's ECDSA first and
# tried, "refusing to export the private half", twice per handshake).
hw_tls_no_export() {
    local name=$1 log=$HW_DIR/server.$SRV_PORT.log n
    grep -q 'hwkey\[[0-9]*\]: ' "$log" || hw_fail "$name: s_server logged nothing from hwkey (HWKEY_LOG=3 not in effect?)"
    n=$(grep -c 'refusing to export' "$log" || true)
    ((n == 0)) || hw_fail "$name: OpenSSL tried $n times to export the device key during the handshakes"
}

# hw_tls_client PROTO CRT [S_CLIENT ARGS...]: one connection (default
# provider only), GET /token.txt; the token must come back.  Sets CLIENT_LOG.
hw_tls_client() {
    local proto=$1 crt=$2 out rc=0
    shift 2
    out=$HW_DIR/client.$SRV_PORT.$proto.$RANDOM.log
    printf 'GET /token.txt HTTP/1.0\r\n\r\n' |
        OPENSSL_CONF=$HW_SW_CNF timeout -k 5 60 openssl s_client -connect "127.0.0.1:$SRV_PORT" \
            "-$proto" -CAfile "$crt" -verify_return_error -servername hwkey.test -ign_eof "$@" \
            >"$out" 2>&1 || rc=$?
    CLIENT_LOG=$out
    ((rc == 0)) || hw_fail "s_client -$proto $*: exit $rc: $(grep -i error "$out" | head -3)
server: $(tail -5 "$HW_DIR/server.$SRV_PORT.log")"
    grep -q "Verify return code: 0 (ok)" "$out" || hw_fail "s_client -$proto: certificate not verified"
    case $proto in
        tls1_3) grep -q "New, TLSv1.3, Cipher is" "$out" || hw_fail "no TLS 1.3 handshake" ;;
        tls1_2) grep -q "Protocol  : TLSv1.2" "$out" || hw_fail "no TLS 1.2 handshake" ;;
    esac
    grep -q "^HTTP/1.0 200 ok" "$out" || hw_fail "s_client -$proto $*: no HTTP answer from the server"
    grep -qx "$HW_TLS_TOKEN" "$out" || hw_fail "s_client -$proto $*: data did not come back through TLS"
}

# hw_tls_roundtrip NAME KEY CRT: s_server with KEY/CRT; TLS 1.3 and 1.2
# connections.  NAME starting with "rsa" (rsa:2048, rsa2048): also RSA-PSS
# in both, PKCS#1 v1.5 in TLS 1.2 and the RSA key exchange (the key decrypts
# the premaster secret); else an ECDSA signature is required.  The server
# must then exit by itself (-naccept) with status 0.  NAME labels messages.
hw_tls_roundtrip() {
    local name=$1 key=$2 crt=$3 n i rc
    if [[ $name == rsa* ]]; then n=6; else n=2; fi
    hw_tls_start_server "$key" "$crt" "$n"
    hw_tls_client tls1_3 "$crt"
    hw_tls_client tls1_2 "$crt"
    if [[ $name == rsa* ]]; then
        hw_tls_client tls1_3 "$crt" -sigalgs rsa_pss_rsae_sha384
        grep -q "Peer signature type: RSA-PSS" "$CLIENT_LOG" || hw_fail "$name: TLS 1.3 did not use RSA-PSS"
        hw_tls_client tls1_2 "$crt" -sigalgs rsa_pkcs1_sha256
        grep -q "Peer signature type: RSA$" "$CLIENT_LOG" || hw_fail "$name: TLS 1.2 did not use PKCS#1 v1.5"
        hw_tls_client tls1_2 "$crt" -sigalgs rsa_pss_rsae_sha512
        grep -q "Peer signature type: RSA-PSS" "$CLIENT_LOG" || hw_fail "$name: TLS 1.2 did not use RSA-PSS"
        # RSA key exchange: the premaster secret is decrypted by the key's device.
        hw_tls_client tls1_2 "$crt" -cipher AES128-GCM-SHA256
        grep -q "Cipher is AES128-GCM-SHA256" "$CLIENT_LOG" || hw_fail "$name: RSA key exchange not used"
    else
        grep -q "Peer signature type: ECDSA" "$CLIENT_LOG" || hw_fail "$name: no ECDSA signature"
    fi
    # -naccept: the server exits by itself after the expected connections.
    for ((i = 0; i < 100; i++)); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
    rc=0
    wait "$SRV_PID" || rc=$?
    ((rc == 0)) || hw_fail "$name: s_server exit $rc: $(tail -5 "$HW_DIR/server.$SRV_PORT.log")"
    hw_tls_no_export "$name"
}

# hw_ecdsa_digests NAME KEY: ECDSA with KEY (an EC device key file in the test
# dir) over every digest the application may choose, including those a TPM
# lacks (SHA-224, SHA-3, SHA-512/224): pkeyutl -rawin -digest, and a
# precomputed digest (pkeyutl -in DIGEST, no digest named), each verified by
# the default provider alone with the exported public key, and a tampered
# message rejected.  Then TLS 1.2 through s_server with KEY, where the client
# offers only one ECDSA signature algorithm (SHA-1 at security level 0, as
# tlsfuzzer does); the handshake must use it.  Issue 7.5.
hw_ecdsa_digests() {
    local name=$1 key=$2 pub=$2.pub d sa digest_of
    declare -A digest_of=([ECDSA+SHA1]=SHA1 [ECDSA+SHA224]=SHA224 [ECDSA+SHA256]=SHA256
        [ECDSA+SHA384]=SHA384 [ECDSA+SHA512]=SHA512)
    ossl pkey -in "$key" -pubout -out "$pub" || hw_fail "$name: pkey -pubout"
    [[ -f msg ]] || head -c 999 /dev/urandom >msg
    cp msg msg.tampered && printf 'x' >>msg.tampered
    for d in sha1 sha224 sha256 sha384 sha512 sha3-256 sha3-384 sha3-512 sha512-224; do
        rm -f sig sig2
        ossl pkeyutl -sign -inkey "$key" -rawin -digest "$d" -in msg -out sig 2>sign.err ||
            hw_fail "$name $d: pkeyutl -sign -rawin: $(tail -1 sign.err)"
        sw pkeyutl -verify -pubin -inkey "$pub" -rawin -digest "$d" -in msg -sigfile sig >/dev/null ||
            hw_fail "$name $d: the signature does not verify in software"
        if sw pkeyutl -verify -pubin -inkey "$pub" -rawin -digest "$d" -in msg.tampered \
            -sigfile sig >/dev/null 2>&1; then
            hw_fail "$name $d: the software verifier accepted a tampered message"
        fi
        sw dgst "-$d" -binary -out dig msg
        ossl pkeyutl -sign -inkey "$key" -in dig -out sig2 2>sign.err ||
            hw_fail "$name $d: pkeyutl -sign of a bare digest: $(tail -1 sign.err)"
        sw pkeyutl -verify -pubin -inkey "$pub" -in dig -sigfile sig2 >/dev/null ||
            hw_fail "$name $d: the bare-digest signature does not verify in software"
    done
    hw_log "$name: ECDSA with 9 digests verifies in software"
    [[ -d www ]] || hw_tls_www ecdsa
    ossl req -x509 -new -key "$key" -subj /CN=hwkey.test -days 2 -out "$key.crt" \
        -addext "subjectAltName=DNS:hwkey.test" 2>req.err || hw_fail "$name: req -x509: $(cat req.err)"
    hw_tls_start_server "$key" "$key.crt" "${#digest_of[@]}" -cipher 'DEFAULT:@SECLEVEL=0'
    for sa in "${!digest_of[@]}"; do
        hw_tls_client tls1_2 "$key.crt" -sigalgs "$sa" -cipher 'DEFAULT:@SECLEVEL=0'
        grep -q "Peer signing digest: ${digest_of[$sa]}$" "$CLIENT_LOG" ||
            hw_fail "$name: TLS 1.2 with -sigalgs $sa did not sign with ${digest_of[$sa]}"
        grep -q "Peer signature type: ECDSA" "$CLIENT_LOG" || hw_fail "$name: $sa: no ECDSA signature"
    done
    wait "$SRV_PID" || hw_fail "$name: s_server exit $?: $(tail -5 "$HW_DIR/server.$SRV_PORT.log")"
    hw_tls_no_export "$name"
    hw_log "$name: TLS 1.2 with ${!digest_of[*]}: ok"
}

# hw_cms_ecdh NAME KEY: CMS/S-MIME key agreement with an EC device key (issue
# 7.9): messages encrypted in software (default provider only) to a
# certificate of KEY, with the X9.63 KDF over SHA-1 (the default), SHA-256,
# SHA-384 and SHA-512 and AES-128/256 key wrap, are decrypted by `openssl cms
# -decrypt -inkey KEY` and must give the plaintext back; the ECDH secret
# comes from the device and the KDF runs in software.  A message for another
# recipient must fail to decrypt.
hw_cms_ecdh() {
    local name=$1 key=$2 md cipher n=0
    ossl req -x509 -new -key "$key" -subj /CN=recipient -days 2 -out "$key.cms.crt" 2>req.err ||
        hw_fail "$name: req -x509: $(cat req.err)"
    head -c 3000 /dev/urandom >cms.plain
    for md in default sha256 sha384 sha512; do
        for cipher in aes-128-cbc aes-256-gcm; do
            local opts=()
            [[ $md == default ]] || opts=(-keyopt "ecdh_kdf_md:$md")
            sw cms -encrypt -binary "-$cipher" -recip "$key.cms.crt" "${opts[@]}" -in cms.plain \
                -out cms.msg 2>cms.err || hw_fail "$name: software cms -encrypt ($md, $cipher): $(cat cms.err)"
            rm -f cms.dec
            ossl cms -decrypt -binary -recip "$key.cms.crt" -inkey "$key" -in cms.msg -out cms.dec \
                2>cms.err || hw_fail "$name: cms -decrypt with the device key ($md, $cipher): $(cat cms.err)"
            cmp -s cms.plain cms.dec || hw_fail "$name: cms -decrypt ($md, $cipher) gave other data"
            n=$((n + 1))
        done
    done
    # A message for another EC recipient: the device's secret differs, so must the result.
    sw req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key \
        -subj /CN=other -days 2 -out other.crt 2>/dev/null
    sw cms -encrypt -binary -aes-128-cbc -recip other.crt -in cms.plain -out cms.other
    hw_expect_fail '.' "$name: cms -decrypt of a message for another recipient" \
        ossl cms -decrypt -binary -recip "$key.cms.crt" -inkey "$key" -in cms.other -out cms.dec
    hw_log "$name: $n CMS messages encrypted in software decrypted with the device key"
}

# ---------------------------------------------------------------------------
# nginx (test_nginx.sh, test_pkcs11_nginx.sh).  $NGINX is the binary (set by
# the test).  Files live in the test dir: nginx.conf, logs/, tmp/, www/.
# HW_NGINX_PORT[KIND] = the port of the server for KIND; HW_NGINX_PID.
declare -A HW_NGINX_PORT=()
HW_NGINX_PID=

# hw_nginx_conf MAIN_EXTRA SERVER...: writes nginx.conf (2 workers, no TLS
# session reuse: every connection is a full handshake).  MAIN_EXTRA: more
# main-context lines (may be empty).  SERVER = KIND:CRT:KEY[:PASSWORD_FILE],
# files relative to the test dir, listening on HW_NGINX_PORT[KIND].
hw_nginx_conf() {
    local extra=$1 spec kind crt key pw
    shift
    {
        printf '%s\n' "daemon off;" "master_process on;" "worker_processes 2;" \
            "pid $HW_DIR/nginx.pid;" "error_log $HW_DIR/logs/error.log info;" "env OPENSSL_CONF;"
        [[ -z $extra ]] || printf '%s\n' "$extra"
        cat <<CONF
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
CONF
        for spec in "$@"; do
            IFS=: read -r kind crt key pw <<<"$spec"
            echo "    server {"
            echo "        listen 127.0.0.1:${HW_NGINX_PORT[$kind]} ssl;"
            echo "        ssl_certificate $HW_DIR/$crt;"
            echo "        ssl_certificate_key $HW_DIR/$key;"
            [[ -z $pw ]] || echo "        ssl_password_file $HW_DIR/$pw;"
            echo "        root $HW_DIR/www;"
            echo "    }"
        done
        echo "}"
    } >nginx.conf
}

# hw_nginx_start [-T SECS] KEYWHAT MAIN_EXTRA SERVER...: free ports for each
# SERVER's KIND, nginx.conf (hw_nginx_conf), `nginx -t` (under timeout SECS
# with -T; KEYWHAT names the keys in its message), then nginx in the
# background until every port listens (retried on a bind race) and its 2
# workers exist.  Sets HW_NGINX_PORT and HW_NGINX_PID.
hw_nginx_start() {
    local tmo=() what extra kinds=() spec attempt i started=0 up workers
    if [[ $1 == -T ]]; then tmo=(timeout "$2"); shift 2; fi
    what=$1 extra=$2
    shift 2
    for spec in "$@"; do kinds+=("${spec%%:*}"); done
    for ((attempt = 0; attempt < 5 && started == 0; attempt++)); do
        for spec in "${kinds[@]}"; do HW_NGINX_PORT[$spec]=$(hw_free_port); done
        [[ $(printf '%s\n' "${HW_NGINX_PORT[@]}" | sort -u | wc -l) == "${#kinds[@]}" ]] || continue
        hw_nginx_conf "$extra" "$@"
        "${tmo[@]}" "$NGINX" -t -p "$HW_DIR" -c "$HW_DIR/nginx.conf" -e "$HW_DIR/logs/error.log" >nginx-t.log 2>&1 ||
            hw_fail "nginx -t rejects the configuration ($what not loaded?): $(cat nginx-t.log)"
        "$NGINX" -p "$HW_DIR" -c "$HW_DIR/nginx.conf" -e "$HW_DIR/logs/error.log" </dev/null >nginx.out 2>&1 &
        HW_NGINX_PID=$!
        hw_register_pid "$HW_NGINX_PID"
        for ((i = 0; i < 100; i++)); do
            up=1
            for spec in "${kinds[@]}"; do hwkey_port_busy "${HW_NGINX_PORT[$spec]}" || { up=0; break; }; done
            if ((up)); then
                started=1
                break
            fi
            kill -0 "$HW_NGINX_PID" 2>/dev/null || break
            sleep 0.1
        done
        if ((started == 0)); then
            kill -0 "$HW_NGINX_PID" 2>/dev/null && hwkey_stop_pid "$HW_NGINX_PID" nginx
            grep -q 'Address already in use' logs/error.log nginx.out ||
                hw_fail "nginx did not start: $(tail -5 logs/error.log nginx.out)"
        fi
    done
    ((started == 1)) || hw_fail "nginx: no free port after 5 attempts"
    for ((i = 0; i < 50; i++)); do
        workers=$(ps -o pid= --ppid "$HW_NGINX_PID" | wc -l)
        ((workers < 2)) || break
        sleep 0.1
    done
    ((workers == 2)) || hw_fail "expected 2 nginx workers, found $workers"
}

# hw_nginx_fetch KIND CRT: www/page1..5.html from KIND's server, 3 rounds of
# one curl (a new TCP connection, a full handshake) per page, then the 5 in
# one curl; every page must come back intact.
hw_nginx_fetch() {
    local kind=$1 crt=$2 round i body urls=()
    for round in 1 2 3; do
        for i in 1 2 3 4 5; do
            # a new curl process each time: a new TCP connection, a full handshake
            body=$(curl --silent --show-error --fail --max-time 30 --cacert "$crt" \
                "https://127.0.0.1:${HW_NGINX_PORT[$kind]}/page$i.html" 2>curl.err) ||
                hw_fail "$kind: curl page$i (round $round): $(cat curl.err); nginx: $(tail -3 logs/error.log)"
            [[ $body == "$(cat "www/page$i.html")" ]] || hw_fail "$kind: page$i came back wrong"
        done
    done
    # Several requests, each on its own connection, in one curl.
    for i in 1 2 3 4 5; do urls+=("https://127.0.0.1:${HW_NGINX_PORT[$kind]}/page$i.html"); done
    curl --silent --show-error --fail --max-time 60 --cacert "$crt" -H 'Connection: close' \
        "${urls[@]}" >multi.out 2>curl.err || hw_fail "$kind: curl with 5 URLs: $(cat curl.err)"
    [[ $(grep -c '^page' multi.out) == 5 ]] || hw_fail "$kind: not all 5 pages came back"
}

# hw_nginx_stop [-D] CRASH_REGEX: graceful stop (QUIT): the workers finish
# and exit; nginx must exit 0 and its error log must not match CRASH_REGEX.
# -D: also fail if nginx is still running 15 s after QUIT (else wait for it).
hw_nginx_stop() {
    local deadline=0 regex i rc=0
    if [[ $1 == -D ]]; then deadline=1; shift; fi
    regex=$1
    kill -QUIT "$HW_NGINX_PID"
    for ((i = 0; i < 150; i++)); do kill -0 "$HW_NGINX_PID" 2>/dev/null || break; sleep 0.1; done
    if ((deadline)) && kill -0 "$HW_NGINX_PID" 2>/dev/null; then
        hw_fail "nginx did not exit within 15 s of QUIT"
    fi
    wait "$HW_NGINX_PID" || rc=$?
    ((rc == 0)) || hw_fail "nginx exited with $rc"
    if grep -E "$regex" logs/error.log; then
        hw_fail "nginx error log shows crashes or critical errors"
    fi
}

# ---------------------------------------------------------------------------
# nginx as operators run it, for the PKCS#11 fault tests (test_pkcs11_nginx_*,
# test_pkcs11_failover_nginx): 4 workers, no session reuse (every connection a
# full handshake), access log lines "$pid $status".
# hw_nginx4_conf PORT CRT KEY "USER GROUP" [ENV...]: writes nginx.conf in the
# test dir; ENV are the variables passed to the workers besides OPENSSL_CONF.
hw_nginx4_conf() {
    local port=$1 crt=$2 key=$3 user=$4 name
    shift 4
    mkdir -p "$HW_DIR/logs" "$HW_DIR/tmp"
    {
        printf '%s\n' "daemon off;" "master_process on;" "worker_processes 4;" "user $user;" \
            "pid $HW_DIR/nginx.pid;" "error_log $HW_DIR/logs/error.log info;" "env OPENSSL_CONF;"
        for name in "$@"; do printf 'env %s;\n' "$name"; done
        cat <<CONF
events { worker_connections 128; }
http {
    log_format w '\$pid \$status';
    access_log $HW_DIR/logs/access.log w;
    client_body_temp_path $HW_DIR/tmp/body;
    proxy_temp_path $HW_DIR/tmp/proxy;
    fastcgi_temp_path $HW_DIR/tmp/fastcgi;
    uwsgi_temp_path $HW_DIR/tmp/uwsgi;
    scgi_temp_path $HW_DIR/tmp/scgi;
    ssl_session_cache off;
    ssl_session_tickets off;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $crt;
        ssl_certificate_key $key;
        root $HW_DIR/www;
    }
}
CONF
    } >"$HW_DIR/nginx.conf"
}

# hw_nginx4_start PORT: nginx -t, then nginx in the background on the test
# dir's nginx.conf (the caller's environment); NGX = the master's pid; waits
# until PORT listens.
hw_nginx4_start() {
    local port=$1 i
    timeout 60 "$NGINX" -t -p "$HW_DIR" -c "$HW_DIR/nginx.conf" -e "$HW_DIR/logs/error.log" \
        >"$HW_DIR/nginx-t.log" 2>&1 || hw_fail "nginx -t: $(cat "$HW_DIR/nginx-t.log")"
    "$NGINX" -p "$HW_DIR" -c "$HW_DIR/nginx.conf" -e "$HW_DIR/logs/error.log" </dev/null \
        >"$HW_DIR/nginx.out" 2>&1 &
    NGX=$!
    hw_register_pid "$NGX"
    for ((i = 0; i < 100; i++)); do
        hwkey_port_busy "$port" && return 0
        kill -0 "$NGX" 2>/dev/null || break
        sleep 0.1
    done
    hw_fail "nginx did not start: $(tail -5 "$HW_DIR/logs/error.log" "$HW_DIR/nginx.out")"
}

# ---------------------------------------------------------------------------
# `p11-kit server` in front of the test's SoftHSM token (test_pkcs11_recovery,
# test_pkcs11_nginx_recovery).  hw_p11kit_start SOCK: the server in its own
# session (its per-connection children die with it), SoftHSM's configuration
# as hw_p11_setup made it (HW_P11KIT_SOFTHSM2_CONF, kept even if the caller
# later points SOFTHSM2_CONF elsewhere); sets HW_P11KIT_PID.  hw_p11kit_kill
# kills the whole session.  The caller's EXIT trap must call hw_p11kit_kill.
HW_P11KIT_PID=
hw_p11kit_start() {
    local sock=$1 i
    : "${HW_P11KIT_SOFTHSM2_CONF:=$SOFTHSM2_CONF}"
    rm -f "$sock"
    SOFTHSM2_CONF=$HW_P11KIT_SOFTHSM2_CONF setsid p11-kit server --provider "$HW_P11_MODULE" -f \
        -n "$sock" "pkcs11:token=$HW_P11_TOKEN" >"$HW_DIR/server.env" 2>>"$HW_DIR/server.err" &
    HW_P11KIT_PID=$!
    for ((i = 0; i < 200; i++)); do
        [[ -S $sock ]] && return 0
        kill -0 "$HW_P11KIT_PID" 2>/dev/null || break
        sleep 0.05
    done
    hw_fail "p11-kit server did not start: $(cat "$HW_DIR/server.err")"
}
hw_p11kit_kill() {
    [[ -n $HW_P11KIT_PID ]] || return 0
    kill -KILL -- "-$HW_P11KIT_PID" 2>/dev/null || true
    wait "$HW_P11KIT_PID" 2>/dev/null || true
    HW_P11KIT_PID=
}
