#!/usr/bin/env bash
# Usage: tabrmd-start.sh DIR PORT   (PORT: swtpm's TCP port, or a TCTI such as swtpm:path=SOCK)
# Puts tpm2-abrmd (a resource manager) in front of the swtpm listening on
# 127.0.0.1:PORT.  It runs on a private D-Bus session bus (no system bus is
# needed) under a unique name.  Prints the client TCTI on stdout:
#   tabrmd:bus_name=NAME,bus_type=session
# and writes DIR/tabrmd.env, to be sourced by clients: it exports
# DBUS_SESSION_BUS_ADDRESS, which the tabrmd TCTI needs too.
# Stop with tabrmd-stop.sh DIR.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib-proc.sh"

dir=${1:?usage: tabrmd-start.sh DIR PORT}
port=${2:?usage: tabrmd-start.sh DIR PORT}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

for cmd in dbus-daemon tpm2-abrmd tpm2_getcap; do
    command -v "$cmd" >/dev/null || { echo "tabrmd-start: $cmd not found (run scripts/install-deps.sh)" >&2; exit 1; }
done

bus=$dir/dbus.sock
rm -f "$bus"
dbus-daemon --session --nofork --nopidfile --address="unix:path=$bus" \
    </dev/null >"$dir/dbus.log" 2>&1 &
echo $! >"$dir/dbus.pid"
for ((i = 0; i < 50; i++)); do
    [[ -S $bus ]] && break
    sleep 0.1
done
[[ -S $bus ]] || { echo "tabrmd-start: dbus-daemon did not start (see $dir/dbus.log)" >&2; exit 1; }
export DBUS_SESSION_BUS_ADDRESS="unix:path=$bus"

# Bus names: dot-separated elements that do not start with a digit.
name="com.intel.tss2.Tabrmd.hwkey_$$_${RANDOM}"
tcti="tabrmd:bus_name=$name,bus_type=session"
# PORT may also be a whole TCTI string (swtpm:path=SOCK for swtpm on a Unix socket).
case $port in
*:*) tpm_tcti=$port ;;
*) tpm_tcti="swtpm:host=127.0.0.1,port=$port" ;;
esac
tpm2-abrmd --allow-root --session --dbus-name="$name" \
    --tcti="$tpm_tcti" \
    </dev/null >"$dir/tabrmd.log" 2>&1 &
echo $! >"$dir/tabrmd.pid"
abrmd_pid=$!

for ((i = 0; i < 100; i++)); do
    if TPM2TOOLS_TCTI="$tcti" tpm2_getcap properties-fixed >/dev/null 2>&1; then
        printf 'export DBUS_SESSION_BUS_ADDRESS=%q\n' "$DBUS_SESSION_BUS_ADDRESS" >"$dir/tabrmd.env"
        printf 'TABRMD_TCTI=%q\n' "$tcti" >>"$dir/tabrmd.env"
        echo "$tcti"
        exit 0
    fi
    kill -0 "$abrmd_pid" 2>/dev/null || break
    sleep 0.1
done
echo "tabrmd-start: tpm2-abrmd does not answer on $tcti (see $dir/tabrmd.log):" >&2
tail -5 "$dir/tabrmd.log" >&2 || true
hwkey_stop_pidfile "$dir/tabrmd.pid" tpm2-abrmd
hwkey_stop_pidfile "$dir/dbus.pid" dbus-daemon
exit 1
