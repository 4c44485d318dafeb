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
unset HWKEY_TPM2_TCTI HWKEY_TPM2_PARENT HWKEY_LOG TPM2OPENSSL_TCTI OPENSSL_MODULES \
    HWKEY_PKCS11_MODULE HWKEY_PKCS11_PIN_SOURCE HWKEY_PKCS11_QUIRKS 2>/dev/null || true

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
    HW_TABRMD_TCTI=$("$top_srcdir/scripts/tabrmd-start.sh" "$dir" "$HW_PORT") ||
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

# hw_p11_ref URI FILE: a reference file made by hand (docs/pkcs11.md), the
# body pkcs11-provider's SEQUENCE { VisibleString desc, UTF8String uri }.
hw_p11_ref() {
    local uri=$1 file=$2
    printf 'asn1 = SEQUENCE:ref\n[ref]\ndesc = VISIBLESTRING:hwkey test key\nuri = UTF8:%s\n' \
        "$uri" >"$file.asn1"
    {
        echo "-----BEGIN PKCS#11 PROVIDER URI-----"
        OPENSSL_CONF=$HW_SW_CNF openssl asn1parse -genconf "$file.asn1" -noout -out - | base64 -w 64
        echo "-----END PKCS#11 PROVIDER URI-----"
    } >"$file" || hw_fail "cannot write the reference file $file"
}

# hw_p11_store_supported: true once `openssl pkey -in 'pkcs11:...'` is
# served by an OSSL_STORE loader for the pkcs11: scheme.
hw_p11_store_supported() {
    local uri=$1
    ossl pkey -in "$uri" -pubout -out "$HW_DIR/store-probe.pub" 2>"$HW_DIR/store-probe.err" && return 0
    ! grep -q 'unregistered scheme:.*scheme=pkcs11' "$HW_DIR/store-probe.err"
}
