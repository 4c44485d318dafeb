#!/usr/bin/env bash
# Usage: swtpm-start.sh DIR
# Starts a manufactured swtpm (TPM 2.0, EK created) with its state in DIR, on
# a free loopback port P (control channel on P+1, as the swtpm TCTI expects),
# waits until it answers, and prints "PORT PID" on stdout.
# TCTI for clients: swtpm:host=127.0.0.1,port=PORT.  Stop with swtpm-stop.sh DIR.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib-proc.sh"

dir=${1:?usage: swtpm-start.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
state=$dir/tpmstate
mkdir -p "$state"

for cmd in swtpm swtpm_setup tpm2_getcap; do
    command -v "$cmd" >/dev/null || { echo "swtpm-start: $cmd not found (run scripts/install-deps.sh)" >&2; exit 1; }
done

# A local swtpm_setup config so the result does not depend on ~/.config or
# /etc: no certificate tool, just a sha256 PCR bank.  HWKEY_SWTPM_EK_CERT=1:
# also an RSA EK certificate in NV (0x01c00002) signed by a local CA made in
# DIR/localca by swtpm_localca (swtpm-tools), as a manufactured TPM has.
ek_cert=()
if [[ ! -s $state/tpm2-00.permall ]]; then
    printf 'active_pcr_banks = sha256\n' >"$dir/swtpm_setup.conf"
    if [[ ${HWKEY_SWTPM_EK_CERT:-} == 1 ]]; then
        mkdir -p "$dir/localca"
        printf '%s\n' "statedir = $dir/localca" "signingkey = $dir/localca/signkey.pem" \
            "issuercert = $dir/localca/issuercert.pem" "certserial = $dir/localca/certserial" \
            >"$dir/localca.conf"
        printf '%s\n' "create_certs_tool = $(command -v swtpm_localca)" \
            "create_certs_tool_config = $dir/localca.conf" >>"$dir/swtpm_setup.conf"
        ek_cert=(--create-ek-cert)
    fi
    if ! swtpm_setup --tpm2 --tpmstate "$state" --createek "${ek_cert[@]}" --overwrite \
        --config "$dir/swtpm_setup.conf" --logfile "$dir/swtpm_setup.log" >/dev/null 2>&1; then
        echo "swtpm-start: swtpm_setup failed:" >&2
        cat "$dir/swtpm_setup.log" >&2 || true
        exit 1
    fi
fi

pidfile=$dir/swtpm.pid
if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "swtpm-start: swtpm already running from $dir (pid $(cat "$pidfile"))" >&2
    exit 1
fi

started=0
for ((attempt = 0; attempt < 10; attempt++)); do
    port=$(hwkey_free_port 2)
    rm -f "$pidfile"
    # --daemon returns only after both sockets are bound: a bind race shows
    # as a non-zero exit and we try other ports.
    if swtpm socket --tpm2 --tpmstate dir="$state" \
        --server type=tcp,port="$port",bindaddr=127.0.0.1 \
        --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
        --flags not-need-init,startup-clear \
        --log file="$dir/swtpm.log",level=1 \
        --daemon --pid file="$pidfile" >>"$dir/swtpm.out" 2>&1; then
        started=1
        break
    fi
done
if ((started == 0)); then
    echo "swtpm-start: could not start swtpm (see $dir/swtpm.out):" >&2
    tail -5 "$dir/swtpm.out" >&2 || true
    exit 1
fi

for ((i = 0; i < 50; i++)); do
    [[ -s $pidfile ]] && break
    sleep 0.1
done
pid=$(tr -dc '0-9' <"$pidfile")

for ((i = 0; i < 100; i++)); do
    if TPM2TOOLS_TCTI="swtpm:host=127.0.0.1,port=$port" tpm2_getcap properties-fixed >/dev/null 2>&1; then
        echo "swtpm:host=127.0.0.1,port=$port" >"$dir/tcti"
        echo "$port $pid"
        exit 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
echo "swtpm-start: swtpm (pid $pid, port $port) does not answer" >&2
hwkey_stop_pid "$pid" swtpm
exit 1
