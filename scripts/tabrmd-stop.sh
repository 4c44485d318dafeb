#!/usr/bin/env bash
# Usage: tabrmd-stop.sh DIR — stops what tabrmd-start.sh DIR started.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib-proc.sh"
dir=${1:?usage: tabrmd-stop.sh DIR}
hwkey_stop_pidfile "$dir/tabrmd.pid" tpm2-abrmd
hwkey_stop_pidfile "$dir/dbus.pid" dbus-daemon
rm -f "$dir/dbus.sock" "$dir/tabrmd.env"
