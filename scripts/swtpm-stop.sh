#!/usr/bin/env bash
# Usage: swtpm-stop.sh DIR — stops the swtpm that swtpm-start.sh DIR started.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib-proc.sh"
dir=${1:?usage: swtpm-stop.sh DIR}
hwkey_stop_pidfile "$dir/swtpm.pid" swtpm
