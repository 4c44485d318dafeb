#!/usr/bin/env bash
# Usage: bench/run-async-bench.sh BUILDDIR [--rounds N] [--seconds S] [--keep]
#
# Full TLS handshakes per second with a slow (remote) token, HAProxy 2.6 with
# one thread, with and without ssl-mode-async, side by side in one run.
# The token is SoftHSM behind test/p11_latency (P11_LATENCY_OP_US per
# private-key operation: 0, 2 ms and 10 ms: a network HSM), key EC P-256.
#   ha-sync-0  ha-sync-2  ha-sync-10     HAProxy, synchronous (the event loop waits)
#   ha-async-0 ha-async-2 ha-async-10    HAProxy, ssl-mode-async (hwkey offloads)
#   ngx2-10  ngx16-10                    nginx (no async mode), 2 / 16 workers, 10 ms
# Load: wrk -t2 -c64, "Connection: close" (every request a full handshake),
# from the same machine.  Contenders run in interleaved rounds; the figure is
# the median over rounds of requests/s; a round with a socket error or a
# non-2xx answer is not counted.  Printed ratios (issue 9's targets):
#   async-10 / async-0   (target >= 0.8: the latency is hidden)
#   async-10 / sync-10   (target >= 5: one event loop, many operations in flight)
# Builds test/p11_latency/p11_latency.la in BUILDDIR if needed.  Everything
# runs in a mktemp -d directory; every process started is stopped by pid.
# Not a test (not in make check).  Run as root (nginx workers as root too, so
# they can use the SoftHSM token this script makes; docs/operations.md for production).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
. "$top/scripts/lib-proc.sh"

rounds=3 secs=3 keep=0 build=
while [[ $# -gt 0 ]]; do
    case $1 in
    --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
    --seconds) secs=${2:?--seconds needs a number}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run-async-bench: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) build=$1; shift ;;
    esac
done
[[ -n $build ]] || { echo "usage: run-async-bench.sh BUILDDIR [--rounds N] [--seconds S] [--keep]" >&2; exit 2; }
build=$(cd "$build" && pwd)
provider=$build/.libs/hwkey.so cli=$build/hwkey
p11_module=/usr/lib/softhsm/libsofthsm2.so
NGINX=${NGINX:-/usr/sbin/nginx}
die() { echo "run-async-bench: $*" >&2; exit 1; }
for cmd in wrk haproxy openssl softhsm2-util "$NGINX"; do
    command -v "$cmd" >/dev/null || die "$cmd not found (scripts/install-deps.sh)"
done
[[ -e $provider && -e $cli ]] || die "build the tree first (make)"
make -s -C "$build" test/p11_latency/p11_latency.la >/dev/null || die "cannot build p11_latency.la"
lat_so=$build/test/p11_latency/.libs/p11_latency.so

work=$(mktemp -d "${TMPDIR:-/tmp}/hwkey-async-bench.XXXXXX")
chmod 755 "$work"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do hwkey_stop_pid "$p"; done
    ((keep)) && echo "run-async-bench: kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

env_p11=$(HWKEY_SOFTHSM_LABEL=hwkey-async-bench HWKEY_SOFTHSM_PIN=1234 \
    "$top/scripts/softhsm-setup.sh" "$work/softhsm") || die "cannot create a SoftHSM token"
eval "$env_p11"
printf '1234\n' >user.pin
no_tpm="swtpm:host=127.0.0.1,port=$(hwkey_free_port 2)"
cnf_head() { printf '%s\n' "openssl_conf = openssl_init" "[openssl_init]" "providers = provider_sect" "$@"; }
cnf_head "[provider_sect]" "default = default_sect" "[default_sect]" "activate = 1" >sw.cnf
cnf_head "[provider_sect]" "default = default_sect" "hwkey = hwkey_sect" "[default_sect]" "activate = 1" \
    "[hwkey_sect]" "module = $provider" "tpm2-tcti = $no_tpm" "pkcs11-module = $lat_so" \
    "pkcs11-pin-source = file:$work/user.pin" "activate = 1" >lat.cnf
export P11_LATENCY_MODULE=$p11_module

HWKEY_PKCS11_MODULE=$p11_module HWKEY_PKCS11_PIN_SOURCE=file:$work/user.pin "$cli" keygen ec:P-256 \
    --uri 'pkcs11:token=hwkey-async-bench;object=web' --out key.pem >/dev/null 2>keygen.err ||
    die "hwkey keygen: $(cat keygen.err)"
OPENSSL_CONF=lat.cnf openssl req -x509 -new -key key.pem -subj /CN=bench -days 2 -out crt.pem 2>req.err ||
    die "certificate: $(cat req.err)"
cat crt.pem key.pem >haproxy.pem

declare -A PORT=()
NAMES=()
start_haproxy() { # NAME MODE LATENCY_US
    local n=$1 mode=$2 us=$3 i
    PORT[$n]=$(hwkey_free_port)
    {
        echo "global"; echo "    nbthread 1"; echo "    maxconn 1000"
        # every connection a full handshake: no session cache, no tickets
        echo "    tune.ssl.cachesize 0"
        [[ $mode == async ]] && echo "    ssl-mode-async"
        echo "defaults"; echo "    mode http"; echo "    timeout connect 10s"
        echo "    timeout client 30s"; echo "    timeout server 30s"
        echo "frontend fe"; echo "    bind 127.0.0.1:${PORT[$n]} ssl crt $work/haproxy.pem no-tls-tickets"
        echo "    http-request return status 200 content-type text/plain string ok"
    } >"$n.cfg"
    OPENSSL_CONF=$work/lat.cnf P11_LATENCY_OP_US=$us haproxy -db -f "$n.cfg" >"$n.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$n")
}
start_nginx() { # NAME WORKERS LATENCY_US
    local n=$1 w=$2 us=$3
    PORT[$n]=$(hwkey_free_port)
    mkdir -p "$n/logs" "$n/tmp"
    cat >"$n/nginx.conf" <<CONF
daemon off;
user root;
worker_processes $w;
pid $work/$n/nginx.pid;
error_log $work/$n/logs/error.log error;
env OPENSSL_CONF; env SOFTHSM2_CONF; env P11_LATENCY_MODULE; env P11_LATENCY_OP_US;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $work/$n/tmp;
    server {
        listen 127.0.0.1:${PORT[$n]} ssl;
        ssl_certificate $work/crt.pem;
        ssl_certificate_key $work/key.pem;
        ssl_session_cache off; ssl_session_tickets off;
        location / { return 200 "ok\n"; }
    }
}
CONF
    OPENSSL_CONF=$work/lat.cnf P11_LATENCY_OP_US=$us "$NGINX" -c "$work/$n/nginx.conf" -p "$work/$n" \
        >"$n.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$n")
}

for ms in 0 2 10; do
    start_haproxy "ha-sync-$ms" sync $((ms * 1000))
    start_haproxy "ha-async-$ms" async $((ms * 1000))
done
start_nginx ngx2-10 2 10000
start_nginx ngx16-10 16 10000

for n in "${NAMES[@]}"; do
    ok=0
    for ((i = 0; i < 100; i++)); do
        OPENSSL_CONF=$work/sw.cnf curl -sk --max-time 5 "https://127.0.0.1:${PORT[$n]}/" >/dev/null 2>&1 && { ok=1; break; }
        sleep 0.2
    done
    ((ok)) || die "$n does not serve: $(tail -3 "$n.log" 2>/dev/null; tail -3 "$n/logs/error.log" 2>/dev/null)"
done

# run_wrk NAME SECONDS: prints "RATE ERRORS"
run_wrk() {
    local n=$1 s=$2 f=$work/$1.wrk.$RANDOM reqs el errs=0 non2xx=0
    OPENSSL_CONF=$work/sw.cnf timeout -k 2 $((s + 20)) wrk -t2 -c64 -d"${s}s" --timeout 10s \
        -H "Connection: close" "https://127.0.0.1:${PORT[$n]}/" >"$f" 2>&1 || true
    read -r reqs el < <(sed -nE 's/^ *([0-9]+) requests in ([0-9.]+)(m?s).*/\1 \2 \3/p' "$f" |
        awk '{ t = ($3 == "ms") ? $2 / 1000 : $2; print $1, t }') || true
    grep -q 'Socket errors' "$f" && errs=$(sed -nE 's/.*connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+).*/\1 \2 \3 \4/p' "$f" | awk '{ print $1 + $2 + $3 + $4 }')
    grep -q 'Non-2xx' "$f" && non2xx=$(sed -nE 's/.*Non-2xx or 3xx responses: ([0-9]+).*/\1/p' "$f")
    [[ -n ${reqs:-} ]] || { echo "0 -1"; return 0; }
    awk -v r="$reqs" -v t="$el" -v e=$((errs + non2xx)) 'BEGIN { printf "%.1f %d\n", (t > 0 ? r / t : 0), e }'
}
median() { tr ' ' '\n' | awk NF | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A RATES=() BAD=()
for n in "${NAMES[@]}"; do run_wrk "$n" 1 >/dev/null; done   # warm-up: logins, first handshakes
for ((r = 0; r < rounds; r++)); do
    for ((k = 0; k < ${#NAMES[@]}; k++)); do
        n=${NAMES[$(((k + r) % ${#NAMES[@]}))]}
        read -r rate errs < <(run_wrk "$n" "$secs")
        if [[ $errs == 0 ]]; then RATES[$n]+=" $rate"; else BAD[$n]=$((${BAD[$n]:-0} + 1)); fi
    done
done

printf '\nhwkey async bench: HAProxy %s (nbthread 1) and nginx %s, SoftHSM EC P-256 behind p11_latency;\n' \
    "$(haproxy -v | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p')" "$("$NGINX" -v 2>&1 | sed 's|.*nginx/||')"
printf 'wrk -t2 -c64 Connection: close, %d rounds x %d s, interleaved; machine: %s cores\n\n' "$rounds" "$secs" "$(nproc)"
printf '%-12s %10s  %s\n' contender 'hs/s' 'per round (rounds with errors not counted)'
declare -A MED=()
for n in "${NAMES[@]}"; do
    MED[$n]=$(median <<<"${RATES[$n]:-}")
    printf '%-12s %10s  %s%s\n' "$n" "${MED[$n]}" "${RATES[$n]:-}" "${BAD[$n]:+  ($((BAD[$n])) rounds with errors)}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
echo
printf 'async-10 / async-0 = %s   (target >= 0.8)\n' "$(ratio "${MED[ha-async-10]}" "${MED[ha-async-0]}")"
printf 'async-10 / sync-10 = %s   (target >= 5)\n' "$(ratio "${MED[ha-async-10]}" "${MED[ha-sync-10]}")"
printf 'async-2  / sync-2  = %s\n' "$(ratio "${MED[ha-async-2]}" "${MED[ha-sync-2]}")"
printf 'async-0  / sync-0  = %s   (the cost of the hand-over when the device is fast)\n' "$(ratio "${MED[ha-async-0]}" "${MED[ha-sync-0]}")"
printf 'nginx 16 workers / 2 workers at 10 ms = %s\n' "$(ratio "${MED[ngx16-10]}" "${MED[ngx2-10]}")"
