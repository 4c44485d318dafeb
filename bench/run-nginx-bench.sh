#!/usr/bin/env bash
# Usage: bench/run-nginx-bench.sh BUILDDIR [--rounds N] [--seconds S] [--keep]
#
# Full TLS handshakes per second served by Debian's nginx (2 workers,
# ssl_session_cache off, ssl_session_tickets off, a tiny static file), measured
# with wrk (-t2 -c8, "Connection: close": every request is a new connection
# and a full handshake), side by side in one run, for these contenders:
#   sw-ec       software EC P-256 key, default provider only
#   hwkey-tpm-ec   hwkey, TPM EC P-256 key file (`hwkey keygen`), direct swtpm TCTI
#   hwkey-p11-ec   hwkey, SoftHSM EC P-256 key through a PKCS#11 reference file
#   tpm2o-ec    Debian's tpm2-openssl, the same TPM key file, openssl.cnf with
#               default_properties = ?provider=tpm2 (its documented TLS setup)
#   tpm2o-ec-noprop  the same without default_properties
#   sw-rsa      software RSA-2048 key
#   hwkey-tpm-rsa  hwkey, TPM RSA-2048 key file
# Each contender has its own nginx on a free loopback port.  Contenders run in
# interleaved rounds (the order rotating each round) of S seconds each; the
# figure is the median over rounds of completed requests/s, the ratio the
# median over rounds of (contender / software key of the same type, same round).
# A round counts only when wrk reports no socket errors and no non-2xx answers.
#   --rounds N   rounds (default 3)      --seconds S  seconds per wrk run (default 3)
#   --keep       keep the work directory (logs, configurations, keys)
# Exit 1 when a software or hwkey contender has no valid figure (tpm2-openssl's
# failures are expected and reported, not fatal), 2 on a usage error.
# Builds nothing; BUILDDIR must hold a built tree (.libs/hwkey.so, hwkey).
# Everything runs in a mktemp -d directory; every process started is stopped by
# pid on exit.  Not a test (not in make check).  Needs root (nginx workers run
# as nobody, as Debian's do).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
. "$top/scripts/lib-proc.sh"

rounds=3
secs=3
keep=0
build=
while [[ $# -gt 0 ]]; do
    case $1 in
    --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
    --seconds) secs=${2:?--seconds needs a number}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run-nginx-bench: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) build=$1; shift ;;
    esac
done
[[ -n $build ]] || { echo "usage: run-nginx-bench.sh BUILDDIR [--rounds N] [--seconds S] [--keep]" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ && $secs =~ ^[1-9][0-9]*$ ]] || { echo "run-nginx-bench: --rounds/--seconds take positive integers" >&2; exit 2; }
build=$(cd "$build" && pwd)
provider=$build/.libs/hwkey.so
cli=$build/hwkey
NGINX=${NGINX:-/usr/sbin/nginx}
p11_module=/usr/lib/softhsm/libsofthsm2.so
tpm2_module=$(pkg-config --variable=modulesdir libcrypto 2>/dev/null || true)/tpm2.so
for f in "$provider" "$cli"; do
    [[ -e $f ]] || { echo "run-nginx-bench: $f not found: build the tree first (make)" >&2; exit 1; }
done
for cmd in wrk curl openssl swtpm swtpm_setup tpm2_getcap softhsm2-util timeout "$NGINX"; do
    command -v "$cmd" >/dev/null || { echo "run-nginx-bench: $cmd not found" >&2; exit 1; }
done
[[ -f $p11_module ]] || { echo "run-nginx-bench: $p11_module not found (softhsm2)" >&2; exit 1; }
have_t2o=1
[[ -f $tpm2_module ]] || { echo "run-nginx-bench: $tpm2_module not found: tpm2-openssl contenders skipped" >&2; have_t2o=0; }
((EUID == 0)) || { echo "run-nginx-bench: run as root (nginx workers switch to nobody)" >&2; exit 1; }

# Nothing from the caller's environment may change what is measured.
unset HWKEY_TPM2_TCTI HWKEY_TPM2_PARENT HWKEY_LOG TPM2OPENSSL_TCTI OPENSSL_MODULES OPENSSL_CONF \
    HWKEY_PKCS11_MODULE HWKEY_PKCS11_PIN_SOURCE HWKEY_PKCS11_QUIRKS SOFTHSM2_CONF 2>/dev/null || true

work=$(mktemp -d "${TMPDIR:-/tmp}/hwkey-nginx-bench.XXXXXX")
PIDS=()
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
    local rc=$? i
    set +e
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do hwkey_stop_pid "${PIDS[i]}" nginx; done
    "$top/scripts/swtpm-stop.sh" "$work/swtpm" 2>/dev/null
    "$top/scripts/swtpm-stop.sh" "$work/swtpm-t2o" 2>/dev/null
    if ((keep)); then echo "run-nginx-bench: kept $work" >&2; else rm -rf "$work"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$work"
log() { printf 'run-nginx-bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --- devices -----------------------------------------------------------------
out=$("$top/scripts/swtpm-start.sh" "$work/swtpm") || die "cannot start swtpm"
read -r tpm_port tpm_pid <<<"$out"
tcti="swtpm:host=127.0.0.1,port=$tpm_port"

env_p11=$(HWKEY_SOFTHSM_LABEL=hwkey-nginx-bench HWKEY_SOFTHSM_PIN=1234 \
    "$top/scripts/softhsm-setup.sh" "$work/softhsm") || die "cannot create a SoftHSM token"
eval "$env_p11"    # exports SOFTHSM2_CONF (nginx keeps it for workers: env SOFTHSM2_CONF;)
printf '1234\n' >"$work/user.pin"
no_tpm="swtpm:host=127.0.0.1,port=$(hwkey_free_port 2)"

# --- openssl.cnf per contender ---------------------------------------------------
cnf_head() { printf '%s\n' "openssl_conf = openssl_init" "[openssl_init]" "providers = provider_sect" "$@"; }
cnf_head "[provider_sect]" "default = default_sect" "[default_sect]" "activate = 1" >sw.cnf
cnf_head "[provider_sect]" "default = default_sect" "hwkey = hwkey_sect" "[default_sect]" "activate = 1" \
    "[hwkey_sect]" "module = $provider" "tpm2-tcti = $tcti" "activate = 1" >hwkey-tpm.cnf
cnf_head "[provider_sect]" "default = default_sect" "hwkey = hwkey_sect" "[default_sect]" "activate = 1" \
    "[hwkey_sect]" "module = $provider" "tpm2-tcti = $no_tpm" "pkcs11-module = $p11_module" \
    "pkcs11-pin-source = file:$work/user.pin" "activate = 1" >hwkey-p11.cnf
cnf_head "alg_section = algorithm_sect" "[provider_sect]" "default = default_sect" "tpm2 = tpm2_sect" \
    "[default_sect]" "activate = 1" "[tpm2_sect]" "module = $tpm2_module" "activate = 1" \
    "[algorithm_sect]" "default_properties = ?provider=tpm2" >tpm2o.cnf
cnf_head "[provider_sect]" "default = default_sect" "tpm2 = tpm2_sect" \
    "[default_sect]" "activate = 1" "[tpm2_sect]" "module = $tpm2_module" "activate = 1" >tpm2o-noprop.cnf

# --- keys and certificates ---------------------------------------------------------
mkcert() { # CNF KEY: a self-signed certificate KEY.crt made with the key itself
    OPENSSL_CONF=$work/$1 timeout -k 5 120 openssl req -x509 -new -key "$2" -subj /CN=hwkey.bench -days 2 \
        -addext "subjectAltName=IP:127.0.0.1" -out "${2%.pem}.crt" 2>"$2.err" ||
        die "cannot make a certificate with $2: $(head -3 "$2.err")"
}
OPENSSL_CONF=$work/sw.cnf openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sw-ec.pem 2>/dev/null
OPENSSL_CONF=$work/sw.cnf openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sw-rsa.pem 2>/dev/null
for alg in ec:P-256 rsa:2048; do
    k=tpm-${alg%%:*}.pem
    HWKEY_TPM2_TCTI=$tcti timeout -k 5 120 "$cli" keygen "$alg" --out "$k" >/dev/null 2>"$k.err" ||
        die "hwkey keygen $alg: $(cat "$k.err")"
done
HWKEY_PKCS11_MODULE=$p11_module HWKEY_PKCS11_PIN_SOURCE=file:$work/user.pin timeout -k 5 120 "$cli" keygen \
    ec:P-256 --uri "pkcs11:token=hwkey-nginx-bench;object=ngx-ec" --out p11-ec.pem >/dev/null 2>p11-ec.err ||
    die "hwkey keygen ec:P-256 --uri: $(cat p11-ec.err)"
grep -q -- '-----BEGIN PKCS#11 PROVIDER URI-----' p11-ec.pem || die "hwkey keygen --uri wrote no reference file"
mkcert sw.cnf sw-ec.pem
mkcert sw.cnf sw-rsa.pem
mkcert hwkey-tpm.cnf tpm-ec.pem
mkcert hwkey-tpm.cnf tpm-rsa.pem
mkcert hwkey-p11.cnf p11-ec.pem

# tpm2-openssl gets a clone of the same TPM (state copied after the keys were
# made: same seeds, so the very same key file loads there) on its own swtpm.
# It keeps objects loaded and shares one TPM connection across fork; on its
# own TPM that cannot spoil the hwkey figures, whatever it does.
if ((have_t2o)); then
    mkdir -p "$work/swtpm-t2o"
    cp -a "$work/swtpm/tpmstate" "$work/swtpm-t2o/"
    out=$("$top/scripts/swtpm-start.sh" "$work/swtpm-t2o") || die "cannot start the second swtpm"
    read -r t2o_port t2o_pid <<<"$out"
    t2o_tcti="swtpm:host=127.0.0.1,port=$t2o_port"
fi

# Workers run as nobody: they read the pages and (SoftHSM) the token store and
# the PIN file; no key secret is in a file they can read.
chmod 0755 "$work"
chown -R nobody "$work/softhsm" "$work/user.pin"
mkdir -p www
printf 'ok\n' >www/index.html
chmod -R a+rX www

# --- contenders -------------------------------------------------------------------
# name|cnf|key|extra env (VAR=VALUE, also kept by nginx through env VAR;)|reference
C_LIST=(
    "sw-ec|sw.cnf|sw-ec.pem||sw-ec"
    "hwkey-tpm-ec|hwkey-tpm.cnf|tpm-ec.pem||sw-ec"
    "hwkey-p11-ec|hwkey-p11.cnf|p11-ec.pem|SOFTHSM2_CONF=$SOFTHSM2_CONF|sw-ec"
)
if ((have_t2o)); then
    C_LIST+=("tpm2o-ec|tpm2o.cnf|tpm-ec.pem|TPM2OPENSSL_TCTI=$t2o_tcti|sw-ec"
        "tpm2o-ec-noprop|tpm2o-noprop.cnf|tpm-ec.pem|TPM2OPENSSL_TCTI=$t2o_tcti|sw-ec")
fi
C_LIST+=("sw-rsa|sw.cnf|sw-rsa.pem||sw-rsa" "hwkey-tpm-rsa|hwkey-tpm.cnf|tpm-rsa.pem||sw-rsa")
declare -A CNF KEY XENV REF PORT NPID STATUS NOTE ERRLINE WRKERR TLS
NOTES=()
NAMES=()
for c in "${C_LIST[@]}"; do
    IFS='|' read -r n cnf key xenv ref <<<"$c"
    NAMES+=("$n")
    CNF[$n]=$cnf KEY[$n]=$key XENV[$n]=$xenv REF[$n]=$ref STATUS[$n]=ok NOTE[$n]='' ERRLINE[$n]='' WRKERR[$n]=0
done

write_conf() { # NAME PORT
    local n=$1 d=$work/ngx-$1 envline=
    [[ -n ${XENV[$n]} ]] && envline="env ${XENV[$n]%%=*};"
    mkdir -p "$d/logs" "$d/tmp"
    cat >"$d/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 2;
user nobody nogroup;
pid $d/nginx.pid;
error_log $d/logs/error.log info;
env OPENSSL_CONF;
$envline
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    ssl_session_cache off;
    ssl_session_tickets off;
    server {
        listen 127.0.0.1:$2 ssl;
        ssl_certificate $work/${KEY[$n]%.pem}.crt;
        ssl_certificate_key $work/${KEY[$n]};
        root $work/www;
    }
}
CONF
}

# first_error NAME: the first line of its error log that names a failure,
# without the timestamp and pid prefix.
first_error() {
    grep -m1 -E 'SSL_do_handshake\(\) failed|\[(error|crit|alert|emerg)\]|exited on signal' \
        "$work/ngx-$1/logs/error.log" 2>/dev/null | sed -E 's/^[0-9\/]+ [0-9:]+ //; s/[0-9]+#[0-9]+: (\*[0-9]+ )?//' || true
}

start_nginx() { # NAME: starts its nginx (time-boxed), sets PORT/NPID or STATUS=failed
    local n=$1 d=$work/ngx-$1 attempt i started=0 pid port envs=(OPENSSL_CONF="$work/${CNF[$1]}")
    [[ -n ${XENV[$n]} ]] && envs+=("${XENV[$n]}")
    for ((attempt = 0; attempt < 5 && started == 0; attempt++)); do
        port=$(hwkey_free_port)
        write_conf "$n" "$port"
        : >"$d/logs/error.log"
        env "${envs[@]}" "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" </dev/null >"$d/nginx.out" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        # the master loads the key before it listens: 30 s at most
        for ((i = 0; i < 300; i++)); do
            if hwkey_port_busy "$port" && (($(ps -o pid= --ppid "$pid" | wc -l) >= 2)); then started=1; break; fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if ((started == 0)); then
            hwkey_stop_pid "$pid" nginx
            grep -q 'Address already in use' "$d/logs/error.log" "$d/nginx.out" || break
        fi
    done
    if ((started == 0)); then
        STATUS[$n]=failed
        NOTE[$n]="nginx did not start"
        ERRLINE[$n]=$(grep -m1 -E '\[(emerg|alert|crit|error)\]' "$d/logs/error.log" "$d/nginx.out" | sed -E 's/^[^:]*://' || true)
        return 0
    fi
    PORT[$n]=$port NPID[$n]=$pid
}

stop_nginx() { # NAME: QUIT, wait up to 15 s, then TERM/KILL; notes crashes
    local n=$1 pid=${NPID[$1]:-} i rc=0
    [[ -n $pid ]] || return 0
    kill -QUIT "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        NOTE[$n]+="${NOTE[$n]:+; }nginx ignored QUIT for 15 s (killed)"
        hwkey_stop_pid "$pid" nginx
    fi
    wait "$pid" 2>/dev/null || rc=$?
    ((rc == 0)) || NOTE[$n]+="${NOTE[$n]:+; }nginx exited with $rc"
    if grep -q 'exited on signal' "$work/ngx-$n/logs/error.log"; then
        NOTE[$n]+="${NOTE[$n]:+; }worker died: $(grep -m1 -o 'worker process [0-9]* exited on signal [0-9]*.*' "$work/ngx-$n/logs/error.log")"
    fi
    NPID[$n]=
}

# run_wrk NAME SECONDS OUTFILE: prints "RATE ERRORS" (RATE = completed
# requests / wrk's own elapsed time; ERRORS = socket errors + non-2xx).
run_wrk() {
    local n=$1 s=$2 f=$3 reqs el errs=0 non2xx=0 wcpu
    # in a subshell whose `times` then gives wrk's own CPU time (children's line)
    (
        timeout -k 2 $((s + 15)) wrk -t2 -c8 -d"${s}s" --timeout 5s -H "Connection: close" \
            "https://127.0.0.1:${PORT[$n]}/" >"$f" 2>&1 || echo "wrk: exit $? (time-box $((s + 15)) s)" >>"$f"
        times >"$f.times" # not in a pipeline: that would be a new subshell with no children
    )
    wcpu=$(sed -n 2p "$f.times" | sed -E 's/([0-9]+)m([0-9.]+)s/\1 \2/g' | awk '{ printf "%.3f", $1 * 60 + $2 + $3 * 60 + $4 }')
    read -r reqs el < <(sed -nE 's/^ *([0-9]+) requests in ([0-9.]+)(m?s).*/\1 \2 \3/p' "$f" |
        awk '{ t = ($3 == "ms") ? $2 / 1000 : $2; print $1, t }') || true
    if grep -q 'Socket errors' "$f"; then
        errs=$(sed -nE 's/.*connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+).*/\1 \2 \3 \4/p' "$f" |
            awk '{ print $1 + $2 + $3 + $4 }')
    fi
    grep -q 'Non-2xx' "$f" && non2xx=$(sed -nE 's/.*Non-2xx or 3xx responses: ([0-9]+).*/\1/p' "$f")
    if [[ -z ${reqs:-} ]]; then
        echo "0 -1 $wcpu"
        return 0
    fi
    awk -v r="$reqs" -v t="$el" -v e=$((errs + non2xx)) -v c="$wcpu" 'BEGIN { printf "%.1f %d %s\n", (t > 0 ? r / t : 0), e, c }'
}

# ticks PID...: user + system CPU clock ticks of these processes, 0 for gone ones
ticks() {
    local p sum=0 v
    for p in "$@"; do
        v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) || v=0
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
workers() { ps -o pid= --ppid "${NPID[$1]}" | tr -d ' ' | tr '\n' ' '; }

median() { tr ' ' '\n' | awk NF | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# --- start everything, check each with one verified request -------------------------
for n in "${NAMES[@]}"; do
    start_nginx "$n"
    [[ ${STATUS[$n]} == ok ]] || { log "$n: ${NOTE[$n]}: ${ERRLINE[$n]}"; continue; }
    if ! timeout 20 curl --silent --show-error --fail --max-time 15 --cacert "$work/${KEY[$n]%.pem}.crt" \
        "https://127.0.0.1:${PORT[$n]}/" >"ngx-$n/curl.out" 2>"ngx-$n/curl.err" ||
        [[ $(cat "ngx-$n/curl.out") != ok ]]; then
        NOTE[$n]="first HTTPS request failed ($(head -c 200 "ngx-$n/curl.err"))"
        ERRLINE[$n]=$(first_error "$n")
        log "$n: ${NOTE[$n]}; nginx: ${ERRLINE[$n]:-nothing logged}"
    fi
    # what wrk negotiates too (nginx's default ssl_protocols and ciphers)
    TLS[$n]=$(OPENSSL_CONF=$work/sw.cnf timeout 15 openssl s_client -brief -connect "127.0.0.1:${PORT[$n]}" \
        </dev/null 2>&1 | sed -nE 's/^Protocol version: //p; s/^Ciphersuite: //p; s/^Peer signature type: //p' | tr '\n' ' ' || true)
done

# warm-up: 1 s each (hwkey's workers open their device connections on first use)
for n in "${NAMES[@]}"; do
    [[ ${STATUS[$n]} == ok ]] && run_wrk "$n" 1 "ngx-$n/warmup.txt" >/dev/null
done

# --- interleaved rounds -----------------------------------------------------------------
log "$rounds rounds x ${secs} s per contender: wrk -t2 -c8 -d${secs}s -H 'Connection: close'"
declare -A R_RATE R_ERR W_TICKS T_TICKS WALL_NS K_MS
hz=$(getconf CLK_TCK)
status=0
nn=${#NAMES[@]}
# whole-machine busy ticks (all processes, ours and others'): the context of the figures
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
read -r mb0 mt0 < <(busy_ticks)
for ((r = 1; r <= rounds; r++)); do
    line="round $r:"
    for ((j = 0; j < nn; j++)); do
        n=${NAMES[(j + r - 1) % nn]}
        [[ ${STATUS[$n]} == ok ]] || continue
        tp=$tpm_pid
        [[ $n == tpm2o* ]] && tp=$t2o_pid
        read -ra wp <<<"$(workers "$n")"
        w0=$(ticks "${wp[@]}") t0=$(ticks "$tp") c0=$(date +%s%N)
        read -r rate errs wcpu < <(run_wrk "$n" "$secs" "ngx-$n/wrk-$r.txt")
        w1=$(ticks "${wp[@]}") t1=$(ticks "$tp") c1=$(date +%s%N)
        R_RATE[$n,$r]=$rate R_ERR[$n,$r]=$errs
        # CPU cores kept busy during the run: nginx's workers, the swtpm
        W_TICKS[$n]=$((${W_TICKS[$n]:-0} + w1 - w0)) T_TICKS[$n]=$((${T_TICKS[$n]:-0} + t1 - t0))
        WALL_NS[$n]=$((${WALL_NS[$n]:-0} + c1 - c0))
        K_MS[$n]=$((${K_MS[$n]:-0} + $(awk -v c="${wcpu:-0}" 'BEGIN { printf "%d", c * 1000 }')))
        line+=" $n=${rate}/s"
        ((errs == 0)) || line+="(errors:$errs)"
    done
    log "$line"
done

read -r mb1 mt1 < <(busy_ticks)
for n in "${NAMES[@]}"; do stop_nginx "$n"; done

# --- results ----------------------------------------------------------------------------
printf '\n%s, %s, wrk %s; 2 workers, no session cache/tickets; %d rounds x %d s per contender, interleaved\n' \
    "$("$NGINX" -v 2>&1 | sed 's/.*: //')" "$(openssl version | cut -d' ' -f1-2)" \
    "$(wrk --version 2>&1 | sed -n 's/^wrk \([^ ]*\).*/\1/p')" "$rounds" "$secs"
printf 'machine: %s cores, %.0f%% busy during the rounds (wrk + nginx + swtpm + anything else running)\n' "$(nproc)" \
    "$(awk -v b=$((mb1 - mb0)) -v t=$((mt1 - mt0)) 'BEGIN { print (t > 0 ? 100 * b / t : 0) }')"
printf '%-16s %8s %7s  %-22s %10s  %-8s %-16s %s\n' contender 'hs/s' ratio 'per round (hs/s)' 'wrk errors' verdict 'cores n/tpm/wrk' 'TLS (first request)'
for n in "${NAMES[@]}"; do
    rates='' ratios='' bad=0 per=''
    for ((r = 1; r <= rounds; r++)); do
        [[ -n ${R_RATE[$n,$r]:-} ]] || continue
        per+="${per:+ }${R_RATE[$n,$r]%.*}"
        if ((R_ERR[$n,$r] != 0)); then
            bad=$((bad + 1))
            ((R_ERR[$n,$r] > 0)) && WRKERR[$n]=$((WRKERR[$n] + R_ERR[$n,$r]))
            continue
        fi
        rates+=" ${R_RATE[$n,$r]}"
        ref=${REF[$n]}
        if [[ -n ${R_RATE[$ref,$r]:-} && ${R_ERR[$ref,$r]} == 0 ]]; then
            ratios+=" $(awk -v a="${R_RATE[$n,$r]}" -v b="${R_RATE[$ref,$r]}" 'BEGIN { if (b > 0) printf "%.4f", a / b }')"
        fi
    done
    med=$(median <<<"$rates")
    rat=$(median <<<"$ratios")
    [[ $rat != - ]] && rat=$(printf '%.2fx' "$rat")
    [[ $med != - ]] && med=$(printf '%.0f' "$med")
    # a figure is valid only with 0 wrk errors in every round and no
    # error-level line in nginx's log
    ngx_errs=$(grep -cE '\[(error|crit|alert|emerg)\]|exited on signal' "$work/ngx-$n/logs/error.log" 2>/dev/null || true)
    if [[ ${STATUS[$n]} != ok ]]; then
        verdict=FAILED per=-
    elif ((bad > 0)); then
        verdict=INVALID med=- rat=-
    elif ((${ngx_errs:-0} > 0)) || [[ -n ${NOTE[$n]} ]]; then
        verdict=SUSPECT
    else
        verdict=valid
    fi
    cores=-
    if ((${WALL_NS[$n]:-0} > 0)); then
        cores=$(awk -v w="${W_TICKS[$n]}" -v t="${T_TICKS[$n]}" -v k="${K_MS[$n]}" -v ns="${WALL_NS[$n]}" -v hz="$hz" \
            'BEGIN { s = ns / 1e9; printf "%.2f/%.2f/%.2f", w / hz / s, t / hz / s, k / 1000 / s }')
    fi
    [[ $verdict == valid || $n == tpm2o* ]] || status=1
    printf '%-16s %8s %7s  %-22s %10s  %-8s %-16s %s\n' "$n" "$med" "$rat" "$per" "${WRKERR[$n]}" "$verdict" "$cores" "${TLS[$n]:--}"
    if [[ $verdict != valid ]]; then
        [[ -z ${ERRLINE[$n]} ]] && ERRLINE[$n]=$(first_error "$n")
        NOTES+=("$n: $verdict${NOTE[$n]:+: ${NOTE[$n]}}; wrk failed $bad/$rounds rounds; nginx error log: ${ERRLINE[$n]:-nothing}")
        while read -r cnt line; do
            NOTES+=("    ${cnt}x $line")
        done < <(sed -nE '/\[notice\]|\[info\] .*(client|peer) closed/d; s/^[0-9\/]+ [0-9:]+ //; s/[0-9]+#[0-9]+: (\*[0-9]+ )?//; s/, client: .*//; p' \
            "$work/ngx-$n/logs/error.log" | sort | uniq -c | sort -rn | head -5)
    fi
done
printf '%s\n' "(hs/s: median over rounds of completed requests/s, each on a new connection; ratio: median over rounds" \
    "of hs/s over the software key of the same type in the same round; a round with any wrk socket error or" \
    "non-2xx answer is not counted; cores n/tpm/wrk: CPU cores busy during the timed runs in the 2 nginx" \
    "workers / the swtpm of the contender's key (sw and p11 rows: the idle hwkey swtpm) / wrk, out of $(nproc))"
if ((${#NOTES[@]} > 0)); then
    printf '\nnot valid (distinct nginx error-log lines, most frequent first):\n'
    printf '  %s\n' "${NOTES[@]}"
fi
for t in "$tcti" ${t2o_tcti:+"$t2o_tcti"}; do
    h=$(TPM2TOOLS_TCTI=$t timeout 30 tpm2_getcap handles-transient 2>/dev/null | grep -o '0x[0-9a-fA-F]*' | tr '\n' ' ' || true)
    printf 'transient objects left in the TPM at %s after nginx stopped: %s\n' "$t" "${h:-none}"
done
exit "$status"
