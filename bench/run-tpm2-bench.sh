#!/usr/bin/env bash
# Usage: bench/run-tpm2-bench.sh [BUILDDIR] [--keys hwkey|tpm2-openssl] [--keep] [-- TPM2_BENCH_OPTIONS]
#
# Runs bench/tpm2_bench (bench/README.md) against a fresh swtpm, directly and
# through tpm2-abrmd.  Builds nothing: BUILDDIR (default .) must hold a built
# tree (bench/tpm2_bench, .libs/hwkey.so, hwkey).  Everything it starts lives
# in a mktemp -d directory and is stopped by pid on exit.
#   --keys K   who makes the key files: hwkey (`hwkey keygen`, default) or
#              tpm2-openssl (`openssl genpkey -provider tpm2`); if the chosen
#              maker fails or the other provider cannot load its key, the
#              other maker is tried.
#   --keep     keep the work directory (captures, logs, keys)
# Options after -- go to tpm2_bench, e.g. `-- --quick` or `-- -t 10`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
. "$top/scripts/lib-proc.sh"

build=.
keys=hwkey
keep=0
if [[ $# -gt 0 && $1 != -* ]]; then build=$1; shift; fi
while [[ $# -gt 0 ]]; do
    case $1 in
    --keys) keys=${2:?--keys needs hwkey or tpm2-openssl}; shift 2 ;;
    --keep) keep=1; shift ;;
    --) shift; break ;;
    -h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-tpm2-bench: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
build=$(cd "$build" && pwd)
bench=$build/bench/tpm2_bench
module=$build/.libs/hwkey.so
cli=$build/hwkey
tpm2_module=${TPM2_OPENSSL_MODULE:-$(pkg-config --variable=modulesdir libcrypto)/tpm2.so}
for f in "$bench" "$module"; do
    [[ -e $f ]] || { echo "run-tpm2-bench: $f not found: build the tree first (make)" >&2; exit 1; }
done
[[ -e $tpm2_module ]] || { echo "run-tpm2-bench: $tpm2_module not found (apt-get install tpm2-openssl)" >&2; exit 1; }

work=$(mktemp -d /tmp/hwkey-bench.XXXXXX)
count_pid=
cleanup() {
    hwkey_stop_pid "$count_pid" tpm2-abrmd
    "$top/scripts/tabrmd-stop.sh" "$work/rm" || true
    "$top/scripts/swtpm-stop.sh" "$work/tpm" || true
    if ((keep)); then echo "run-tpm2-bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

started=$("$top/scripts/swtpm-start.sh" "$work/tpm")
port=${started%% *}
direct_tcti="swtpm:host=127.0.0.1,port=$port"
rm_tcti=$("$top/scripts/tabrmd-start.sh" "$work/rm" "$port")
. "$work/rm/tabrmd.env" # DBUS_SESSION_BUS_ADDRESS for the tabrmd TCTI
export DBUS_SESSION_BUS_ADDRESS

# A second resource manager on the same bus and TPM, used only by the counting
# passes: its own TCTI is pcap, so the commands that really reach the TPM behind
# a resource manager are counted too.  The timed runs use the first one.
count_name="com.intel.tss2.Tabrmd.hwkeybench_$$_${RANDOM}"
count_tcti="tabrmd:bus_name=$count_name,bus_type=session"
TCTI_PCAP_FILE=$work/device.pcap tpm2-abrmd --allow-root --session --dbus-name="$count_name" \
    --tcti="pcap:$direct_tcti" </dev/null >"$work/count-abrmd.log" 2>&1 &
count_pid=$!
for ((i = 0; i < 100; i++)); do
    TPM2TOOLS_TCTI=$count_tcti tpm2_getcap properties-fixed >/dev/null 2>&1 && break
    kill -0 "$count_pid" 2>/dev/null || { cat "$work/count-abrmd.log" >&2; exit 1; }
    sleep 0.1
done

# ---- key files: made by one, loadable by both ----------------------------------
make_key() { # MAKER ALG FILE
    case $1 in
    hwkey)
        HWKEY_TPM2_TCTI=$rm_tcti "$cli" keygen "$2" --out "$3" ;;
    tpm2-openssl)
        local opts
        case $2 in
        ec:P-256) opts=(-algorithm EC -pkeyopt group:P-256) ;;
        rsa:2048) opts=(-algorithm RSA -pkeyopt bits:2048) ;;
        esac
        TPM2OPENSSL_TCTI=$rm_tcti openssl genpkey -provider "$tpm2_module" -provider default \
            "${opts[@]}" -out "$3" ;;
    esac
}
loads_in() { # PROVIDER FILE: the provider reads the key file and exports its public key
    case $1 in
    hwkey) HWKEY_TPM2_TCTI=$rm_tcti openssl pkey -provider "$module" -provider default \
        -in "$2" -pubout ;;
    tpm2-openssl) TPM2OPENSSL_TCTI=$rm_tcti openssl pkey -provider "$tpm2_module" \
        -provider default -in "$2" -pubout ;;
    esac
}
other() { [[ $1 == hwkey ]] && echo tpm2-openssl || echo hwkey; }

key_made_by=
for maker in "$keys" "$(other "$keys")"; do
    ok=1
    for alg in ec:P-256 rsa:2048; do
        f=$work/${alg%%:*}.pem
        if ! make_key "$maker" "$alg" "$f" >"$work/keygen.log" 2>&1; then
            echo "run-tpm2-bench: $maker could not make a $alg key:" >&2
            tail -3 "$work/keygen.log" >&2
            ok=0; break
        fi
        for p in hwkey tpm2-openssl; do
            if ! loads_in "$p" "$f" >"$work/load.log" 2>&1; then
                echo "run-tpm2-bench: $p cannot load the $alg key made by $maker:" >&2
                tail -3 "$work/load.log" >&2
                ok=0
            fi
        done
        ((ok)) || break
    done
    if ((ok)); then key_made_by=$maker; break; fi
done
if [[ -z $key_made_by ]]; then
    echo "run-tpm2-bench: no key file both providers load; running with tpm2-openssl's keys" >&2
    key_made_by=tpm2-openssl
    make_key tpm2-openssl ec:P-256 "$work/ec.pem" >"$work/keygen.log" 2>&1
    make_key tpm2-openssl rsa:2048 "$work/rsa.pem" >>"$work/keygen.log" 2>&1
fi

echo "run-tpm2-bench: swtpm 127.0.0.1:$port, tpm2-abrmd $rm_tcti, keys made by $key_made_by"
"$bench" --rm-tcti "$rm_tcti" --direct-tcti "$direct_tcti" \
    --rm-count-tcti "$count_tcti" --rm-device-pcap "$work/device.pcap" \
    --ec "$work/ec.pem" --rsa "$work/rsa.pem" \
    --hwkey-module "$module" --tpm2-module "$tpm2_module" --workdir "$work" "$@"
